#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time (not part of CI).
#
#   scripts/fuzz.sh              # 60 s per target
#   scripts/fuzz.sh 300          # 5 min per target
#   scripts/fuzz.sh 60 path_normalize timestamp_parse
#
# Needs `cargo install cargo-fuzz`. On a stable toolchain the nightly-only
# flags cargo-fuzz passes are unlocked with RUSTC_BOOTSTRAP=1; set
# FUZZ_SANITIZER=none to skip AddressSanitizer (faster; the code under test
# is safe Rust). New inputs go to a scratch corpus under fuzz/target, seeded
# from fuzz/corpus/<target> (which stays as committed); crashes land in
# fuzz/artifacts/<target>/ — add each as a regression unit test.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"

status=0
for target in "${targets[@]}"; do
  scratch="target/corpus/${target}"
  mkdir -p "$scratch" "artifacts/${target}"
  echo "== ${target}: ${seconds}s (sanitizer: ${sanitizer})"
  if ! cargo fuzz run -O -s "$sanitizer" "$target" "$scratch" "corpus/${target}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    echo "!! ${target}: crash — see fuzz/artifacts/${target}/" >&2
    status=1
  fi
done
exit "$status"
