#!/usr/bin/env bash
# Instructions per request (callgrind) of verified identities: a
# `jwt:sub` route with an RS256 token and with an ES256 token, against a
# `client_ip` route, in the same process and run. Each route has the same
# (never reached) rate limit, so the only difference is how the identity
# is resolved. Tokens and the JWKS are made by PyJWT
# (tests/support/jwt_client.py); wrk sends one token per route (a client
# session reusing its token), once with the verification cache
# (`cache_entries`, default) and once without (`cache_entries = 0`).
# Everything on 127.0.0.1, every run bounded.
#
#   bench/callgrind-identity.sh BIN
#   DUR=10 bench/callgrind-identity.sh BIN
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=${DUR:-10}
OUT=${OUT:-$(mktemp -d /tmp/rg-callgrind-identity.XXXXXX)}
BIN=${1:?usage: $0 BIN}
mkdir -p "$OUT/tmp" "$OUT/keys"
. "$ROOT/bench/lib.sh"
export PATH="$PATH:/usr/sbin"
for tool in valgrind callgrind_annotate wrk nginx python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done

answered() { # route: requests the proxy answered on it
    python3 "$ROOT/bench/lib.py" metric "http://127.0.0.1:19901/metrics" \
        replay_guard_requests_total "route=\"$1\""
}

CLIENT="$ROOT/tests/support/jwt_client.py"
python3 "$CLIENT" keygen "$OUT/keys" bench >"$OUT/keys/jwks.json"
now=$(date +%s)
TOKENS=$(python3 "$CLIENT" mint <<JSON
[{"alg": "RS256", "kid": "bench-RS256", "key_file": "$OUT/keys/RS256.key.pem",
  "claims": {"sub": "bench-client", "iss": "https://auth.bench/", "aud": "bench", "exp": $((now + 86400))}},
 {"alg": "ES256", "kid": "bench-ES256", "key_file": "$OUT/keys/ES256.key.pem",
  "claims": {"sub": "bench-client", "iss": "https://auth.bench/", "aud": "bench", "exp": $((now + 86400))}}]
JSON
)
RS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[0])' "$TOKENS")
ES=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[1])' "$TOKENS")

cat >"$OUT/replay-guard.toml" <<TOML
[server]
listen = "127.0.0.1:18082"
admin_listen = "127.0.0.1:19901"
upstream = "http://127.0.0.1:18080"

[jwt]
issuer = "https://auth.bench/"
audiences = ["bench"]
algorithms = ["RS256", "ES256"]
jwks_file = "$OUT/keys/jwks.json"
cache_entries = CACHE_ENTRIES

[[routes]]
name = "by-ip"
path = "/by-ip"
identity = "client_ip"
rate_limit = { per_second = 1000000, burst = 1000000 }

[[routes]]
name = "jwt-rs256"
path = "/jwt-rs256"
identity = "jwt:sub"
rate_limit = { per_second = 1000000, burst = 1000000 }

[[routes]]
name = "jwt-es256"
path = "/jwt-es256"
identity = "jwt:sub"
rate_limit = { per_second = 1000000, burst = 1000000 }
TOML

sed 's/CACHE_ENTRIES/10000/' "$OUT/replay-guard.toml" >"$OUT/cached.toml"
sed 's/CACHE_ENTRIES/0/' "$OUT/replay-guard.toml" >"$OUT/uncached.toml"

nginx -p "$OUT/" -c "$ROOT/bench/nginx-upstream.conf" -e stderr 2>"$OUT/nginx-upstream.log" &
PIDS+=($!)
wait_port 18080

profile() { # config route wrk-args...
    local config=$1 route=$2
    shift 2
    local file="$OUT/callgrind.$config.$route"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$BIN" run --config "$OUT/$config.toml" 2>"$OUT/$config.$route.log" &
    local pid=$!
    wait_port 18082
    wait_port 19901
    wrk -t1 -c8 -d"${DUR}s" "$@" "http://127.0.0.1:18082/$route" >"$OUT/$config.$route.wrk" 2>&1 || true
    local n total
    n=$(answered "$route")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    callgrind_annotate "$file" >"$file.txt" 2>/dev/null
    total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$file.txt")
    python3 -c "import sys; t,n=float(sys.argv[1]),float(sys.argv[2]); print(f'| $config | $route | {int(n)} | {t/max(n,1):,.0f} |')" "$total" "$n"
}

echo "| config | route | requests | instructions per request |"
echo "|---|---|---|---|"
profile cached by-ip
profile uncached jwt-rs256 -H "Authorization: Bearer $RS"
profile uncached jwt-es256 -H "Authorization: Bearer $ES"
profile cached jwt-rs256 -H "Authorization: Bearer $RS"
profile cached jwt-es256 -H "Authorization: Bearer $ES"
echo
echo "(raw profiles in $OUT)"
