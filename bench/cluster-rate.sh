#!/usr/bin/env bash
# Cluster rate limits (issue 25): what a `scope = "cluster"` limit costs
# against an `instance` limit of the same rule, in the same run.
#
#   bench/cluster-rate.sh BIN              # BIN: a release replay-guard
#   RATE=500 LIMIT=1000 DUR=10 ROUNDS=3 LINK_MS=2 bench/cluster-rate.sh BIN
#   CALLGRIND=0 bench/cluster-rate.sh BIN  # skip the instruction counts
#
# One proxy on DynamoDB (moto on :18010, reached through
# bench/latency_link.py on :18011, which adds LINK_MS to every store round
# trip), in front of the bench's nginx upstream (:18080), with two routes
# of one rule, `per_second = LIMIT` (burst = LIMIT), one identity
# (client_ip, everything from 127.0.0.1):
#   /instance  scope = "instance"      /cluster  scope = "cluster"
# 1. Open loop: `loadgen --rate RATE` for DUR seconds per route, rounds
#    interleaved: rps, p50/p99 latency (from the scheduled send time), CPU
#    µs per request of the proxy (user + system from /proc), and for
#    /cluster the store writes (`reserve_rate` calls) per admitted request.
# 2. CALLGRIND=1 (default): the proxy under callgrind, one run per route,
#    `loadgen --rate CG_RATE --requests REQUESTS`: instructions per request
#    (the whole process's, divided by the requests it answered), and the
#    difference cluster − instance. The batch size follows the demand, so
#    the instruction count at CG_RATE includes CG_RATE's write share.
# Everything on 127.0.0.1, every run bounded; every process stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${RATE:-500}
LIMIT=${LIMIT:-1000}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
LINK_MS=${LINK_MS:-2}
CALLGRIND=${CALLGRIND:-1}
CG_RATE=${CG_RATE:-250}
REQUESTS=${REQUESTS:-3000}
OUT=${OUT:-$(mktemp -d /tmp/rg-cluster-rate.XXXXXX)}
export PATH="$PATH:/usr/sbin"
[ $# -eq 1 ] || { echo "usage: $0 BIN" >&2; exit 2; }
BIN=$1
mkdir -p "$OUT/tmp"
. "$ROOT/bench/lib.sh"

metric() { # name label...
    python3 "$ROOT/bench/lib.py" metric "http://127.0.0.1:19990/metrics" "$@"
}

nginx -p "$OUT/" -c "$ROOT/bench/nginx-upstream.conf" -e stderr 2>"$OUT/nginx-upstream.log" &
PIDS+=($!)
python3 "$ROOT/scripts/moto_locked.py" --port 18010 >"$OUT/moto.log" 2>&1 &
PIDS+=($!)
python3 "$ROOT/bench/latency_link.py" --listen 18011 --target 18010 --delay-ms "$LINK_MS" >"$OUT/link.log" 2>&1 &
PIDS+=($!)
wait_port 18080
wait_port 18010
wait_port 18011

CONFIG=$OUT/cluster-bench.toml
cat >"$CONFIG" <<TOML
[server]
listen = "127.0.0.1:18090"
admin_listen = "127.0.0.1:19990"
upstream = "http://127.0.0.1:18080"

[store]
kind = "dynamodb"

[store.dynamodb]
table = "rg-cluster-bench"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:18011"
timeout_ms = 2000

[[routes]]
name = "instance"
path = "/instance"
identity = "client_ip"
rate_limit = { per_second = $LIMIT }

[[routes]]
name = "cluster"
path = "/cluster"
identity = "client_ip"
rate_limit = { per_second = $LIMIT, scope = "cluster" }
TOML
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
"$BIN" init-table --config "$CONFIG" >"$OUT/init-table.log"

echo "# cluster rate limit vs instance: $(nproc) cores, $RATE req/s against $LIMIT/s, ${DUR}s x $ROUNDS rounds, store link +${LINK_MS} ms"
echo
RUST_LOG=warn "$BIN" run --config "$CONFIG" 2>"$OUT/proxy.log" &
PROXY=$!
PIDS+=($PROXY)
wait_port 18090
wait_port 19990
TICK=$(getconf CLK_TCK)
echo "| route | round | rps | p50 ms | p99 ms | non-2xx | CPU µs/request |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
    for route in instance cluster; do
        file=$OUT/loadgen-$route-$round.json
        before=$(cpu_ticks "$PROXY")
        "$BIN" loadgen --quiet --json --url "http://127.0.0.1:18090/$route" --method GET \
            --rate "$RATE" --duration "${DUR}s" --concurrency 64 >"$file" || true
        after=$(cpu_ticks "$PROXY")
        python3 - "$file" "$before" "$after" "$TICK" "$route" "$round" <<'PY'
import json, sys
path, before, after, tick, route, rnd = sys.argv[1:]
r = json.load(open(path))
bad = sum(v for k, v in r["statuses"].items() if not k.startswith("2")) + sum(r["errors"].values())
cpu = (int(after) - int(before)) / int(tick) * 1e6 / max(r["sent"], 1)
print(f"| {route} | {rnd} | {r['rps']:.0f} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} | {bad} | {cpu:.1f} |")
PY
    done
done
writes=$(metric replay_guard_store_duration_seconds_count 'op="reserve_rate"')
admitted=$(metric replay_guard_requests_total 'route="cluster"' 'outcome="forwarded"')
refused=$(metric replay_guard_rejections_total 'route="cluster"')
echo
python3 -c "import sys; w,a,r=map(float,sys.argv[1:]); print(f'/cluster: {int(a)} admitted, {int(r)} refused, {int(w)} reserve_rate writes = {w/max(a,1):.4f} writes per admitted request ({w/max(a,1)*1e6:,.0f} per million)')" "$writes" "$admitted" "$refused"
kill -TERM "$PROXY"; wait "$PROXY" 2>/dev/null || true

if [ "$CALLGRIND" = 1 ]; then
    echo
    echo "| route | requests | instructions per request |"
    echo "|---|---|---|"
    for route in instance cluster; do
        file=$OUT/callgrind.$route
        RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$file" \
            "$BIN" run --config "$CONFIG" 2>"$OUT/callgrind-$route.log" &
        pid=$!
        wait_port 18090
        wait_port 19990
        "$BIN" loadgen --quiet --json --url "http://127.0.0.1:18090/$route" --method GET \
            --rate "$CG_RATE" --requests "$REQUESTS" --concurrency 32 >"$OUT/callgrind-$route.json" || true
        n=$(metric replay_guard_requests_total "route=\"$route\"")
        w=$(metric replay_guard_store_duration_seconds_count 'op="reserve_rate"')
        kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
        callgrind_annotate "$file" >"$file.txt" 2>/dev/null
        total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$file.txt")
        echo "$route $total $n $w" >>"$OUT/callgrind.rows"
        python3 -c "import sys; t,n,w=map(float,sys.argv[1:]); print(f'| $route | {int(n)} ({int(w)} reserve_rate writes) | {t/max(n,1):,.0f} |')" "$total" "$n" "$w"
    done
    python3 - "$OUT/callgrind.rows" <<'PY'
import sys
rows = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(sys.argv[1])}
per = {k: t / max(n, 1) for k, (t, n, _w) in rows.items()}
d = per["cluster"] - per["instance"]
print(f"\nadded by scope = \"cluster\": {d:,.0f} instructions per request ({d / per['instance'] * 100:+.1f}%)")
PY
fi
echo
echo "(raw outputs in $OUT)"
