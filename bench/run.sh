#!/usr/bin/env bash
# replay-guard benchmarks: everything on 127.0.0.1, every duration bounded,
# every process started here stopped on exit. See bench/README.md.
#
#   bench/run.sh                 # all five measurements
#   ROUNDS=5 DUR=10 bench/run.sh # longer
#   SKIP_DYNAMO=1 bench/run.sh   # no moto (store-call counts on memory only)
#   BASELINE_BIN=/path/to/old/replay-guard bench/run.sh
#                                # also measure another build in (1) and (2),
#                                # interleaved with this one (before/after)
#
# Prints a markdown summary; raw outputs stay in $OUT (default: a temp dir).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}          # interleaved rounds per measurement
DUR=${DUR:-5}                # seconds per run
CONC=${CONC:-32}             # connections
NONCES=${NONCES:-1000000}    # live nonces for the footprint
STORM=${STORM:-1000}         # concurrent duplicates in the replay storm
WORKERS_ALT=${WORKERS_ALT:-4} # (1) also measures replay-guard with this many workers (0: skip)
FLOOR=${FLOOR:-1}            # (1) also measures examples/hyper_floor.rs, the bare HTTP stack (0: skip)
OUT=${OUT:-$(mktemp -d /tmp/rg-bench.XXXXXX)}
export RG_BENCH_SECRET=${RG_BENCH_SECRET:-bench-secret-$RANDOM$RANDOM}
mkdir -p "$OUT/tmp"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

log() { echo "== $*" >&2; }

# --- tools -------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

log "building (release)"
(cd "$ROOT" && cargo build --release --quiet --bin replay-guard --example footprint --example replay_storm --example hyper_floor)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/replay-guard
EX=$TARGET/release/examples

wait_port() { # port: bounded wait until something listens
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}
metric() { python3 "$ROOT/bench/lib.py" metric "http://127.0.0.1:$1/metrics" "${@:2}"; }

# --- servers -----------------------------------------------------------------
# The upstream runs in its own nginx instance, so that no proxy shares
# processes with it (nginx proxying to its own workers would skip the
# cross-process wake-ups every sidecar deployment pays).
log "starting the upstream (nginx :18080), nginx proxy (:18081), HAProxy (:18083), replay-guard (:18082)"
nginx -p "$OUT/" -c "$ROOT/bench/nginx-upstream.conf" -e stderr 2>"$OUT/nginx-upstream.log" &
PIDS+=($!)
nginx -p "$OUT/" -c "$ROOT/bench/nginx.conf" -e stderr 2>"$OUT/nginx.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
haproxy -db -f "$ROOT/bench/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)
RUST_LOG=warn "$BIN" run --config "$ROOT/bench/replay-guard-bench.toml" 2>"$OUT/replay-guard.log" &
RG_PID=$!
PIDS+=($RG_PID)
PASS_TARGETS=(nginx:18081 haproxy:18083 replay-guard:18082)
if [ "$WORKERS_ALT" != 0 ]; then
    # The same configuration with another `workers` (see BENCHMARKS.md: on
    # a machine shared with the load generator and the upstream, more
    # workers than cores shortens the tail at saturation).
    sed -e 's/^listen = .*/listen = "127.0.0.1:18085"/' \
        -e 's/^admin_listen = .*/admin_listen = "127.0.0.1:19905"/' \
        -e "s/^max_connections = .*/&\nworkers = $WORKERS_ALT/" \
        "$ROOT/bench/replay-guard-bench.toml" >"$OUT/replay-guard-workers.toml"
    RUST_LOG=warn "$BIN" run --config "$OUT/replay-guard-workers.toml" 2>"$OUT/replay-guard-workers.log" &
    RG_ALT_PID=$!
    PIDS+=($RG_ALT_PID)
    wait_port 18085
    PASS_TARGETS+=("rg-workers-$WORKERS_ALT:18085")
fi
if [ -n "${BASELINE_BIN:-}" ]; then
    # Another build of replay-guard (e.g. the commit before a change) on the
    # same configuration, measured in the same rounds.
    sed -e 's/^listen = .*/listen = "127.0.0.1:18087"/' \
        -e 's/^admin_listen = .*/admin_listen = "127.0.0.1:19907"/' \
        "$ROOT/bench/replay-guard-bench.toml" >"$OUT/replay-guard-baseline.toml"
    RUST_LOG=warn "$BASELINE_BIN" run --config "$OUT/replay-guard-baseline.toml" 2>"$OUT/replay-guard-baseline.log" &
    BASELINE_PID=$!
    PIDS+=($BASELINE_PID)
    wait_port 18087
    PASS_TARGETS+=("baseline:18087")
fi
if [ "$FLOOR" != 0 ]; then
    # hyper's server and replay-guard's upstream pool on the same worker
    # threads, without any of replay-guard's request path: what the HTTP
    # stack alone costs (exits by itself after an hour at the latest).
    "$EX/hyper_floor" 127.0.0.1:18086 http://127.0.0.1:18080 "$(nproc)" 3600 2>"$OUT/hyper-floor.log" &
    FLOOR_PID=$!
    PIDS+=($FLOOR_PID)
    wait_port 18086
    PASS_TARGETS+=("hyper-floor:18086")
fi
for port in 18080 18081 18082 18083 19901; do wait_port $port; done

# CPU time (user + system, in clock ticks) of processes and all their
# threads, and of an nginx master's workers: CPU per request is steadier
# than throughput on a shared machine.
ticks() {
    local total=0 task fields
    for pid in "$@"; do
        for task in /proc/"$pid"/task/*; do
            read -r -a fields <<<"$(sed 's/.*) //' "$task/stat" 2>/dev/null)" || continue
            total=$((total + fields[11] + fields[12]))
        done
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)
cpu_us_per_request() { # ticks-before ticks-after requests
    python3 -c "import sys; b,a,n=map(float,sys.argv[1:]); print(f'{(a-b)*1e6/$CLK_TCK/max(n,1):.2f}')" "$@"
}
NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
declare -A CPU_PIDS=([nginx]="$NGINX_WORKERS" [haproxy]="$HAPROXY_PID" [replay-guard]="$RG_PID")
[ "$WORKERS_ALT" != 0 ] && CPU_PIDS[rg-workers-$WORKERS_ALT]=$RG_ALT_PID
[ "$FLOOR" != 0 ] && CPU_PIDS[hyper-floor]=$FLOOR_PID
[ -n "${BASELINE_BIN:-}" ] && CPU_PIDS[baseline]=$BASELINE_PID

RESULTS=$OUT/results.tsv
: >"$RESULTS"

# --- 1. pass-through: replay-guard vs nginx vs HAProxy, wrk ------------------
log "1. pass-through, wrk -c$CONC -d${DUR}s, $ROUNDS interleaved rounds"
for target in "${PASS_TARGETS[@]}"; do  # warm-up
    wrk -t1 -c"$CONC" -d1s "http://127.0.0.1:${target##*:}/pass" >/dev/null
done
for round in $(seq 1 "$ROUNDS"); do
    for target in "${PASS_TARGETS[@]}"; do
        name=${target%%:*}; port=${target##*:}
        file=$OUT/wrk-$name-$round.txt
        before=$(ticks ${CPU_PIDS[$name]})
        wrk -t1 -c"$CONC" -d"${DUR}s" --latency -s "$ROOT/bench/percentiles.lua" "http://127.0.0.1:$port/pass" >"$file"
        after=$(ticks ${CPU_PIDS[$name]})
        read -r rps p99 requests <<<"$(python3 "$ROOT/bench/lib.py" wrk "$file")"
        echo "passthrough $name $round $rps $p99 $(cpu_us_per_request "$before" "$after" "$requests")" >>"$RESULTS"
    done
done

# --- 1b. the same three at one fixed offered load, open loop ----------------
# wrk's p99 above is taken at saturation (closed loop: each connection sends
# as fast as answers come back). Here every proxy gets the same schedule of
# requests (loadgen --rate, timed from each request's scheduled send time),
# by default half of nginx's median throughput from (1).
OPEN_RATE=${OPEN_RATE:-$(python3 -c "
import statistics, sys
rps = [float(l.split()[3]) for l in open(sys.argv[1]) if l.split()[:2] == ['passthrough', 'nginx']]
print(int(statistics.median(rps) / 2))" "$RESULTS")}
log "1b. pass-through at a fixed $OPEN_RATE req/s (open loop), loadgen -c$CONC -d${DUR}s"
for round in $(seq 1 "$ROUNDS"); do
    for target in "${PASS_TARGETS[@]}"; do
        name=${target%%:*}; port=${target##*:}
        file=$OUT/openloop-$name-$round.json
        before=$(ticks ${CPU_PIDS[$name]})
        "$BIN" loadgen --quiet --json --url "http://127.0.0.1:$port/pass" --rate "$OPEN_RATE" \
            --concurrency "$CONC" --duration "${DUR}s" >"$file"
        after=$(ticks ${CPU_PIDS[$name]})
        read -r rps p99 requests <<<"$(python3 "$ROOT/bench/lib.py" loadgen "$file")"
        echo "openloop $name $round $rps $p99 $(cpu_us_per_request "$before" "$after" "$requests")" >>"$RESULTS"
    done
done

# --- 2. protected route vs pass-through, loadgen -----------------------------
log "2. protected (freshness+signature+nonce) vs pass-through, loadgen -c$CONC -d${DUR}s"
LG=("$BIN" loadgen --quiet --json --key-id bench-client --secret-env RG_BENCH_SECRET
    --body-size 64 --concurrency "$CONC" --duration "${DUR}s")
before_nonce=$(metric 19901 replay_guard_store_duration_seconds_count 'op="claim_nonce"')
before_req=$(metric 19901 replay_guard_requests_total 'route="protected"')
PROTECTED_TARGETS=("rg:18082:$RG_PID")
[ -n "${BASELINE_BIN:-}" ] && PROTECTED_TARGETS+=("baseline:18087:$BASELINE_PID")
for round in $(seq 1 "$ROUNDS"); do
    for target in "${PROTECTED_TARGETS[@]}"; do
        IFS=: read -r name port pid <<<"$target"
        for route in pass protected; do
            file=$OUT/loadgen-$name-$route-$round.json
            before=$(ticks "$pid")
            "${LG[@]}" --url "http://127.0.0.1:$port/$route" >"$file"
            after=$(ticks "$pid")
            read -r rps p99 requests <<<"$(python3 "$ROOT/bench/lib.py" loadgen "$file")"
            echo "protected $name-$route $round $rps $p99 $(cpu_us_per_request "$before" "$after" "$requests")" >>"$RESULTS"
        done
    done
done
after_nonce=$(metric 19901 replay_guard_store_duration_seconds_count 'op="claim_nonce"')
after_req=$(metric 19901 replay_guard_requests_total 'route="protected"')

# --- 3. store calls per request ----------------------------------------------
log "3. store calls per request (memory store; DynamoDB via moto unless SKIP_DYNAMO=1)"
calls_report() { # admin-port route loadgen-json
    local port=$1 route=$2 file=$3 op
    echo "route $route: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("sent %d: fresh %d, verbatim replays %d, idempotent retries %d (stored answers %d), statuses %s" % (r["sent"], r["fresh"]["sent"], r["replays"]["sent"], r["idempotent_retries"]["sent"], r["idempotent_retries"]["stored_answer"], r["statuses"]))' "$file")"
    for op in claim_nonce claim_idempotency complete_idempotency release_idempotency; do
        echo "  $op: $(metric "$port" replay_guard_store_duration_seconds_count "op=\"$op\"")"
    done
    echo "  store errors: $(metric "$port" replay_guard_store_errors_total)"
}
{
    echo "memory store, route protected: claim_nonce calls $(python3 -c "print(int($after_nonce - $before_nonce))") for $(python3 -c "print(int($after_req - $before_req))") requests"
} >"$OUT/store-calls.txt"
if [ "${SKIP_DYNAMO:-0}" != 1 ] && python3 -c 'import moto' 2>/dev/null; then
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
    python3 "$ROOT/scripts/moto_locked.py" --port 18000 >"$OUT/moto.log" 2>&1 &
    PIDS+=($!)
    wait_port 18000
    "$BIN" init-table --config "$ROOT/bench/replay-guard-dynamodb.toml" >>"$OUT/moto.log"
    RUST_LOG=warn "$BIN" run --config "$ROOT/bench/replay-guard-dynamodb.toml" 2>"$OUT/replay-guard-dynamo.log" &
    PIDS+=($!)
    wait_port 18084
    LGD=("$BIN" loadgen --quiet --json --key-id bench-client --secret-env RG_BENCH_SECRET
         --body-size 64 --concurrency 4 --requests 300)
    "${LGD[@]}" --url http://127.0.0.1:18084/protected --replay-ratio 0.1 >"$OUT/dynamo-protected.json"
    {
        echo; echo "DynamoDB store (moto), after the nonce route only:"
        calls_report 19902 protected "$OUT/dynamo-protected.json"
    } >>"$OUT/store-calls.txt"
    "${LGD[@]}" --url http://127.0.0.1:18084/idem --replay-ratio 0.1 --idempotency --retry-ratio 0.2 >"$OUT/dynamo-idem.json"
    {
        echo; echo "DynamoDB store (moto), cumulative after the idempotent route too:"
        calls_report 19902 idem "$OUT/dynamo-idem.json"
    } >>"$OUT/store-calls.txt"
else
    echo "(DynamoDB counts skipped: moto not installed or SKIP_DYNAMO=1)" >>"$OUT/store-calls.txt"
fi

# --- 4. memory per live nonce / per rate-limit identity -----------------------
log "4. memory footprint at $NONCES live nonces"
"$EX/footprint" "$NONCES" 100000 >"$OUT/footprint.txt"

# --- 5. replay storm -----------------------------------------------------------
log "5. replay storm: $STORM concurrent duplicates"
fwd_before=$(metric 19901 replay_guard_requests_total 'route="protected"' 'outcome="forwarded"')
"$EX/replay_storm" http://127.0.0.1:18082/protected bench-client RG_BENCH_SECRET "$STORM" >"$OUT/storm.txt"
fwd_after=$(metric 19901 replay_guard_requests_total 'route="protected"' 'outcome="forwarded"')
echo "forwarded to the upstream: $(python3 -c "print(int($fwd_after - $fwd_before))")" >>"$OUT/storm.txt"
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$RG_PID/status")

# --- summary -------------------------------------------------------------------
echo
echo "# replay-guard benchmarks: $(nproc) cores, rounds=$ROUNDS, ${DUR}s each, $CONC connections"
echo "($(date -u +%F), $(uname -r), raw outputs in $OUT)"
echo
python3 "$ROOT/bench/lib.py" summary "$RESULTS"
echo
echo "## Store calls"
cat "$OUT/store-calls.txt"
echo
echo "## Memory"
cat "$OUT/footprint.txt"
echo "replay-guard peak RSS during the run: ${rss_kb} kB"
echo
echo "## Replay storm"
cat "$OUT/storm.txt"
