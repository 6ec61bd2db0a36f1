#!/usr/bin/env bash
# Sign one request for replay-guard, scheme v1, with openssl.
#
#   usage: SECRET=... sign.sh METHOD HOST PATH_AND_QUERY BODY_FILE KEY_ID [TIMESTAMP] [NONCE]
#
# HOST is the Host header you send (lowercase, port included unless 80/443);
# PATH_AND_QUERY is the normalised path plus "?query" exactly as sent; use
# /dev/null as BODY_FILE for no body. Prints `Name: value` lines for curl -H.
set -euo pipefail
method=$1 host=$2 path=$3 body=$4 key_id=$5
ts=${6:-$(date +%s)}
nonce=${7:-$(openssl rand -hex 16)}
body_sha=$(openssl dgst -sha256 -r "$body" | cut -d' ' -f1)
host=$(printf '%s' "$host" | tr '[:upper:]' '[:lower:]')
sig=$(printf 'v1\n%s\n%s\n%s\n%s\n%s\n%s' "$method" "$host" "$path" "$ts" "$nonce" "$body_sha" |
  openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
printf 'X-Request-Timestamp: %s\nX-Request-Nonce: %s\nX-Key-Id: %s\nX-Signature: v1=%s\n' \
  "$ts" "$nonce" "$key_id" "$sig"
