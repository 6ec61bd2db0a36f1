#!/usr/bin/env bash
# The CPU an RFC 9421 route costs against a v1 route (issue 21), measured
# on the hardware, in the same run: callgrind's counts (bench/callgrind.sh)
# are noise-free but run SHA-256 in software (valgrind hides SHA-NI from
# the process), which over-weights hashing, and both schemes hash.
#
#   bench/scheme-cpu.sh BIN [BIN ...]   # BIN: a release replay-guard
#   ROUNDS=5 REQUESTS=20000 bench/scheme-cpu.sh BIN
#   RATE=0 bench/scheme-cpu.sh BIN      # closed loop (as fast as answered)
#
# For each binary: `run` with bench/replay-guard-bench.toml in front of
# the bench's nginx upstream, then ROUNDS interleaved rounds of
# `loadgen --requests REQUESTS --rate RATE` (open loop at a fixed rate
# the machine carries, default 2000/s, so that every route is served
# request by request: closed loop, a route whose client signs more slowly
# is answered in smaller batches and pays more wake-ups per request;
# fresh signed requests, 64-byte bodies, -c CONC) to /protected (v1: freshness, signature, nonce) and /rfc9421
# (the same rules, RFC 9421 HMAC-SHA256 covering @method @authority
# @path @query content-digest, created and nonce signed). CPU µs per
# request is the proxy's user + system time (/proc) over the requests
# sent; the ratio is rfc9421 / v1 per round, and its median. /ed25519 is
# the /rfc9421 route with an Ed25519 key (generated here with openssl).
#
# Whole-process CPU on 2 shared cores moves ±15% between rounds, more than
# the difference measured, so the script also runs examples/scheme_check.rs
# (STEP=0 skips it): the signature step alone, each scheme, on this CPU,
# and from it the whole-request ratio (v1's median µs + the step's
# difference) / v1's median µs of the last BIN.
# Everything on 127.0.0.1, every run bounded; every process stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-20000}
CONC=${CONC:-16}
RATE=${RATE:-2000}
OUT=${OUT:-$(mktemp -d /tmp/rg-scheme-cpu.XXXXXX)}
export RG_BENCH_SECRET=${RG_BENCH_SECRET:-scheme-cpu-secret}
export PATH="$PATH:/usr/sbin"
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN ...]" >&2; exit 2; }
STEP=${STEP:-1}
for tool in nginx openssl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install nginx-light openssl)" >&2; exit 2; }
done
mkdir -p "$OUT/tmp"
. "$ROOT/bench/lib.sh"

TICK=$(getconf CLK_TCK)

openssl genpkey -algorithm ed25519 -out "$OUT/ed25519.pem" 2>/dev/null
openssl pkey -in "$OUT/ed25519.pem" -pubout -out "$OUT/ed25519.pub.pem"
CONFIG=$OUT/bench.toml
cat "$ROOT/bench/replay-guard-bench.toml" - >"$CONFIG" <<TOML

[[keys]]
id = "bench-ed25519"
public_key_file = "$OUT/ed25519.pub.pem"
algorithm = "ed25519"

[[routes]]
name = "ed25519"
methods = ["POST"]
path = "/ed25519"
identity = "key_id"
freshness = { max_skew_secs = 120 }
signature = { required = true, scheme = "rfc9421" }
nonce = { required = true }
TOML

nginx -p "$OUT/" -c "$ROOT/bench/nginx-upstream.conf" -e stderr 2>"$OUT/nginx-upstream.log" &
PIDS+=($!)
wait_port 18080

echo "# RFC 9421 vs v1, CPU per request: $(nproc) cores, $REQUESTS requests per run at ${RATE}/s (0: closed loop), -c$CONC, $ROUNDS rounds"
echo
echo "| build | round | v1 µs/request | rfc9421 HMAC µs/request | rfc9421 / v1 | rfc9421 Ed25519 µs/request | Ed25519 / v1 |"
echo "|---|---|---|---|---|---|---|"
for bin in "$@"; do
    label=$(basename "$bin")
    RUST_LOG=warn "$bin" run --config "$CONFIG" 2>"$OUT/$label.log" &
    proxy=$!
    PIDS+=($proxy)
    wait_port 18082
    wait_port 19901
    lg=("$bin" loadgen --quiet --json --body-size 64 --concurrency "$CONC")
    [ "$RATE" != 0 ] && lg+=(--rate "$RATE")
    hmac=(--key-id bench-client --secret-env RG_BENCH_SECRET)
    "${lg[@]}" "${hmac[@]}" --requests 2000 --url http://127.0.0.1:18082/protected >/dev/null  # warm-up
    ratios=() ed_ratios=() v1s=()
    for round in $(seq 1 "$ROUNDS"); do
        declare -A us=()
        for route in protected rfc9421 ed25519; do
            extra=("${hmac[@]}")
            [ "$route" = rfc9421 ] && extra+=(--scheme rfc9421)
            [ "$route" = ed25519 ] && extra=(--scheme rfc9421 --algorithm ed25519
                --private-key-file "$OUT/ed25519.pem" --key-id bench-ed25519)
            file=$OUT/$label-$route-$round.json
            before=$(cpu_ticks "$proxy")
            "${lg[@]}" --requests "$REQUESTS" "${extra[@]}" --url "http://127.0.0.1:18082/$route" >"$file" || true
            after=$(cpu_ticks "$proxy")
            us[$route]=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); b,a,t=map(float,sys.argv[2:]); print(f'{(a-b)/t*1e6/max(r[\"sent\"],1):.2f}')" "$file" "$before" "$after" "$TICK")
        done
        ratio=$(python3 -c "import sys; v,r=map(float,sys.argv[1:]); print(f'{r/v:.3f}')" "${us[protected]}" "${us[rfc9421]}")
        ed_ratio=$(python3 -c "import sys; v,r=map(float,sys.argv[1:]); print(f'{r/v:.3f}')" "${us[protected]}" "${us[ed25519]}")
        ratios+=("$ratio") ed_ratios+=("$ed_ratio") v1s+=("${us[protected]}")
        echo "| $label | $round | ${us[protected]} | ${us[rfc9421]} | $ratio | ${us[ed25519]} | $ed_ratio |"
        unset us
    done
    median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float,sys.argv[1:])):.3f}')" "$@"; }
    V1_MEDIAN=$(median "${v1s[@]}")
    echo "| $label | median | $V1_MEDIAN | | $(median "${ratios[@]}") | | $(median "${ed_ratios[@]}") |"
    kill -TERM "$proxy"
    wait "$proxy" 2>/dev/null || true
done
if [ "$STEP" = 1 ]; then
    echo
    (cd "$ROOT" && cargo build --release --quiet --example scheme_check)
    step=$("${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/scheme_check" 100000 9)
    echo "$step"
    python3 - "$step" "$V1_MEDIAN" <<'PY'
import re, sys
step, v1 = sys.argv[1], float(sys.argv[2])
hmac, ed = (float(x) / 1000 for x in re.findall(r"\(\+(\d+)\)", step))
print(f"whole request, from the step: HMAC ({v1:.2f} + {hmac:.2f}) / {v1:.2f} = {(v1 + hmac) / v1:.3f}; "
      f"Ed25519 ({v1:.2f} + {ed:.2f}) / {v1:.2f} = {(v1 + ed) / v1:.3f}")
PY
fi
echo
echo "(raw loadgen outputs in $OUT)"
