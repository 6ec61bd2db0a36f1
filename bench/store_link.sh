#!/usr/bin/env bash
# Store round trips a client waits for, per rule mix (bench/README.md, 6).
#
# moto (127.0.0.1:18010) ← latency_link +D ms per round trip (:18011)
#   ← replay-guard on DynamoDB (:18094) → a trivial upstream (:18090)
#
# For each route of bench/replay-guard-store-link.toml, N sequential
# requests (loadgen, one connection); the result per mix is
# (median − pass-through median) / D: the store round trips on the
# client's critical path. Everything on 127.0.0.1, bounded, every process
# started here stopped on exit.
#
#   bench/store_link.sh                     # D=25 N=100, builds release
#   BIN=/tmp/old/replay-guard bench/store_link.sh   # measure another build
#   D=50 N=200 bench/store_link.sh
#   RATE=5 bench/store_link.sh              # spaced: each request alone at moto
#                                           # (moto serves one call at a time, so a
#                                           # background completion delays the next
#                                           # request's claim; DynamoDB would not)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=${D:-25}
N=${N:-100}
RATE=${RATE:-}   # requests per second (open-loop, spaced); unset: back to back
OUT=${OUT:-$(mktemp -d /tmp/rg-link.XXXXXX)}
mkdir -p "$OUT"
export RG_BENCH_SECRET=${RG_BENCH_SECRET:-bench-secret-$RANDOM$RANDOM}
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
log() { echo "== $*" >&2; }
wait_port() {
    for _ in $(seq 1 100); do
        (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2; return 1
}

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${BIN:-}" ] || [ -z "${LINK:-}" ]; then
    log "building (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin replay-guard --example latency_link)
fi
BIN=${BIN:-$TARGET/release/replay-guard}
LINK=${LINK:-$TARGET/release/examples/latency_link}
CONFIG=$ROOT/bench/replay-guard-store-link.toml

python3 "$ROOT/scripts/moto_locked.py" --port 18010 >"$OUT/moto.log" 2>&1 &
PIDS+=($!)
"$LINK" upstream 127.0.0.1:18090 &
PIDS+=($!)
wait_port 18010; wait_port 18090
LINK_PID=
start_link() { # delay_ms
    if [ -n "$LINK_PID" ]; then kill "$LINK_PID"; wait "$LINK_PID" 2>/dev/null || true; fi
    "$LINK" link 127.0.0.1:18011 127.0.0.1:18010 "$1" 2>>"$OUT/link.log" &
    LINK_PID=$!
    PIDS+=($LINK_PID)
    wait_port 18011
}
start_link "$D"
"$BIN" init-table --config "$CONFIG" >"$OUT/init.log"
"$BIN" run --config "$CONFIG" 2>"$OUT/proxy.log" &
PIDS+=($!)
wait_port 18094

run() { # name path [loadgen args...]: N sequential requests, report in $OUT/name.json
    local name=$1 path=$2; shift 2
    local pace=(); [ -n "$RATE" ] && pace=(--rate "$RATE")
    "$BIN" loadgen "${pace[@]}" --url "http://127.0.0.1:18094$path" --concurrency 1 --requests "$N" \
        --body-size 64 --json --quiet "$@" >"$OUT/$name.json"
}
SIGN=(--key-id bench-client --secret-env RG_BENCH_SECRET)
IDEM=(--idempotency --retry-ratio 0)
mixes() { # tag: every mix once
    local tag=$1
    run "warmup-$tag" /nonce-idem "${IDEM[@]}"
    run "pass-$tag" /pass
    run "nonce-$tag" /nonce
    run "idem-$tag" /idem "${IDEM[@]}"
    run "nonce_idem-$tag" /nonce-idem "${IDEM[@]}"
    run "signed-$tag" /signed "${IDEM[@]}" "${SIGN[@]}"
    run "pass2-$tag" /pass
}
mixes "d$D"
curl -s http://127.0.0.1:19904/metrics >"$OUT/metrics.txt"
start_link 0
mixes d0

PACE="back to back"; [ -n "$RATE" ] && PACE="$RATE per second, open-loop"
echo "D = $D ms, N = $N sequential requests per route (one connection, $PACE); medians in ms."
echo "rt = (median at D − pass-through median) / D: round trips the client waits for,"
echo "moto's own processing included; rt0 = (median at D − median at D = 0) / D: the"
echo "round trips alone."
echo
echo "| mix | median, D = 0 | median, D = $D | rt | rt0 |"
echo "|---|---|---|---|---|"
python3 - "$D" "$OUT" <<'PY'
import json, sys
d = float(sys.argv[1]); out = sys.argv[2]
def p50(name, tag):
    return json.load(open(f"{out}/{name}-{tag}.json"))["latency_ms"]["p50"]
hi, lo = f"d{int(d)}", "d0"
p = (p50("pass", hi) + p50("pass2", hi)) / 2
print(f"| pass-through | {p50('pass', lo):.2f} / {p50('pass2', lo):.2f} | {p50('pass', hi):.2f} / {p50('pass2', hi):.2f} | — | — |")
names = [("nonce", "nonce only"), ("idem", "idempotency only"), ("nonce_idem", "nonce + idempotency"),
         ("signed", "signed v1 (signature + nonce + idempotency)")]
for key, name in names:
    a, z = p50(key, hi), p50(key, lo)
    print(f"| {name} | {z:.1f} | {a:.1f} | {(a - p) / d:.2f} | {(a - z) / d:.2f} |")
PY
echo
echo "store calls and requests after the D = $D mixes (from /metrics):"
grep '^replay_guard_store_duration_seconds_count' "$OUT/metrics.txt" || true
grep '^replay_guard_requests_total' "$OUT/metrics.txt" | grep -v ' 0$' || true
echo "(raw outputs in $OUT)"
