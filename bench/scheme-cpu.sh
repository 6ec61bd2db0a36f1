#!/usr/bin/env bash
# The CPU an RFC 9421 route costs against a v1 route (issue 21), measured
# on the hardware, in the same run: callgrind's counts (bench/callgrind.sh)
# are noise-free but run SHA-256 in software (valgrind hides SHA-NI from
# the process), which over-weights hashing, and both schemes hash.
#
#   bench/scheme-cpu.sh BIN [BIN ...]   # BIN: a release replay-guard
#   ROUNDS=5 REQUESTS=20000 bench/scheme-cpu.sh BIN
#
# For each binary: `run` with bench/replay-guard-bench.toml in front of
# the bench's nginx upstream, then ROUNDS interleaved rounds of
# `loadgen --requests REQUESTS` (fresh signed requests, 64-byte bodies,
# -c CONC) to /protected (v1: freshness, signature, nonce) and /rfc9421
# (the same rules, RFC 9421 HMAC-SHA256 covering @method @authority
# @path @query content-digest, created and nonce signed). CPU µs per
# request is the proxy's user + system time (/proc) over the requests
# sent; the ratio is rfc9421 / v1 per round, and its median.
# Everything on 127.0.0.1, every run bounded; every process stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-20000}
CONC=${CONC:-16}
OUT=${OUT:-$(mktemp -d /tmp/rg-scheme-cpu.XXXXXX)}
export RG_BENCH_SECRET=${RG_BENCH_SECRET:-scheme-cpu-secret}
export PATH="$PATH:/usr/sbin"
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN ...]" >&2; exit 2; }
command -v nginx >/dev/null || { echo "nginx is missing (apt-get install nginx-light)" >&2; exit 2; }
mkdir -p "$OUT/tmp"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}
cpu_ticks() { # pid: utime + stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}
TICK=$(getconf CLK_TCK)

nginx -p "$OUT/" -c "$ROOT/bench/nginx-upstream.conf" -e stderr 2>"$OUT/nginx-upstream.log" &
PIDS+=($!)
wait_port 18080

echo "# RFC 9421 vs v1, CPU per request: $(nproc) cores, $REQUESTS requests per run, -c$CONC, $ROUNDS rounds"
echo
echo "| build | round | v1 µs/request | rfc9421 µs/request | rfc9421 / v1 |"
echo "|---|---|---|---|---|"
for bin in "$@"; do
    label=$(basename "$bin")
    RUST_LOG=warn "$bin" run --config "$ROOT/bench/replay-guard-bench.toml" 2>"$OUT/$label.log" &
    proxy=$!
    PIDS+=($proxy)
    wait_port 18082
    wait_port 19901
    lg=("$bin" loadgen --quiet --json --key-id bench-client --secret-env RG_BENCH_SECRET
        --body-size 64 --concurrency "$CONC")
    "${lg[@]}" --requests 2000 --url http://127.0.0.1:18082/protected >/dev/null  # warm-up
    ratios=()
    for round in $(seq 1 "$ROUNDS"); do
        declare -A us=()
        for route in protected rfc9421; do
            extra=()
            [ "$route" = rfc9421 ] && extra=(--scheme rfc9421)
            file=$OUT/$label-$route-$round.json
            before=$(cpu_ticks "$proxy")
            "${lg[@]}" --requests "$REQUESTS" "${extra[@]}" --url "http://127.0.0.1:18082/$route" >"$file" || true
            after=$(cpu_ticks "$proxy")
            us[$route]=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); b,a,t=map(float,sys.argv[2:]); print(f'{(a-b)/t*1e6/max(r[\"sent\"],1):.2f}')" "$file" "$before" "$after" "$TICK")
        done
        ratio=$(python3 -c "import sys; v,r=map(float,sys.argv[1:]); print(f'{r/v:.3f}')" "${us[protected]}" "${us[rfc9421]}")
        ratios+=("$ratio")
        echo "| $label | $round | ${us[protected]} | ${us[rfc9421]} | $ratio |"
        unset us
    done
    echo "| $label | median | | | $(python3 -c "import statistics,sys; print(f'{statistics.median(map(float,sys.argv[1:])):.3f}')" "${ratios[@]}") |"
    kill -TERM "$proxy"
    wait "$proxy" 2>/dev/null || true
done
echo
echo "(raw loadgen outputs in $OUT)"
