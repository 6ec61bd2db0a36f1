#!/usr/bin/env bash
# Instructions per request (callgrind): noise-free on a shared machine,
# where wall-clock and CPU-time ratios move more between runs than the
# changes being measured. Everything on 127.0.0.1, every run bounded.
#
#   bench/callgrind.sh BIN [BIN ...]     # e.g. an old build and a new one
#   REQUESTS=3000 bench/callgrind.sh ...
#
# For each binary: `run` under callgrind with bench/replay-guard-bench.toml
# in front of the bench's nginx upstream; wrk drives the pass-through route
# for DUR seconds, then loadgen sends REQUESTS fresh signed requests to the
# protected route (freshness + signature + nonce), then the same plus an
# Idempotency-Key per operation on /idem (RETRY_RATIO=0.2 makes a fifth of
# them retries of an earlier operation), then the protected route's rules
# with an RFC 9421 HMAC signature on /rfc9421; SIGTERM. Instructions
# are the whole process's (callgrind's totals) divided by the requests the
# proxy answered, one profile per route.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=${DUR:-10}
REQUESTS=${REQUESTS:-2000}
OUT=${OUT:-$(mktemp -d /tmp/rg-callgrind.XXXXXX)}
export RG_BENCH_SECRET=${RG_BENCH_SECRET:-callgrind-secret}
mkdir -p "$OUT/tmp"
. "$ROOT/bench/lib.sh"
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN ...]" >&2; exit 2; }
for tool in valgrind callgrind_annotate wrk nginx; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
        echo "$tool is missing (apt-get install valgrind wrk nginx-light)" >&2
        exit 2
    }
done
export PATH="$PATH:/usr/sbin"

answered() { # admin port, route: requests the proxy answered on it
    python3 "$ROOT/bench/lib.py" metric "http://127.0.0.1:$1/metrics" \
        replay_guard_requests_total "route=\"$2\""
}

nginx -p "$OUT/" -c "$ROOT/bench/nginx-upstream.conf" -e stderr 2>"$OUT/nginx-upstream.log" &
PIDS+=($!)
wait_port 18080

# One profile of `bin` while `drive` sends traffic to `route`.
profile() { # label bin route drive...
    local label=$1 bin=$2 route=$3
    shift 3
    local file="$OUT/callgrind.$label.$route"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$bin" run --config "$ROOT/bench/replay-guard-bench.toml" 2>"$OUT/$label.$route.log" &
    local pid=$!
    wait_port 18082
    wait_port 19901
    "$@" >"$OUT/$label.$route.drive" 2>&1 || true
    local n
    n=$(answered 19901 "$route")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    local total
    callgrind_annotate "$file" >"$file.txt" 2>/dev/null
    total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$file.txt")
    python3 -c "import sys; t,n=float(sys.argv[1]),float(sys.argv[2]); print(f'| $label | $route | {int(n)} | {t/max(n,1):,.0f} |')" "$total" "$n"
}

echo "| build | route | requests | instructions per request |"
echo "|---|---|---|---|"
for bin in "$@"; do
    label=$(basename "$bin")
    profile "$label" "$bin" pass wrk -t1 -c8 -d"${DUR}s" http://127.0.0.1:18082/pass
    profile "$label" "$bin" protected "$bin" loadgen --quiet --json --url http://127.0.0.1:18082/protected \
        --key-id bench-client --secret-env RG_BENCH_SECRET --body-size 64 --concurrency 8 --requests "$REQUESTS"
    profile "$label" "$bin" idem "$bin" loadgen --quiet --json --url http://127.0.0.1:18082/idem \
        --key-id bench-client --secret-env RG_BENCH_SECRET --body-size 64 --concurrency 8 --requests "$REQUESTS" \
        --idempotency --retry-ratio "${RETRY_RATIO:-0}"
    profile "$label" "$bin" rfc9421 "$bin" loadgen --quiet --json --url http://127.0.0.1:18082/rfc9421 \
        --scheme rfc9421 --key-id bench-client --secret-env RG_BENCH_SECRET --body-size 64 --concurrency 8 --requests "$REQUESTS"
done
echo
echo "(raw profiles in $OUT)"
