#!/usr/bin/env python3
"""Sign one request for replay-guard, scheme v1. Standard library only.

The signature is HMAC-SHA256, keyed with the secret's UTF-8 bytes, over

    v1\\n<METHOD>\\n<host>\\n<path>[?<raw query>]\\n<timestamp>\\n<nonce>\\n<hex sha256(body)>

where <host> is the Host header the client sends, lowercased (default ports
80/443 omitted, as curl and most clients send it), and <path> is the path the
proxy forwards: send it already normalised (no "//", no "." or ".."
segments, no percent-encoded unreserved characters), or the proxy verifies a
different string and answers 401 bad_signature.

As a program it prints the headers to send, one `Name: value` per line
(paste into `curl -H`, or `curl -H @file`), or a JSON object:

    export BILLING_SVC_SECRET=...
    python3 sign.py --key-id billing-svc --secret-env BILLING_SVC_SECRET \\
        --method POST --url 'http://127.0.0.1:8080/payments?dry_run=false' \\
        --body '{"amount":1250,"currency":"EUR"}'

As a module:

    from sign import sign_headers
    headers = sign_headers("POST", url, body_bytes, "billing-svc", secret)
    # then send url with these headers and exactly body_bytes
"""

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from urllib.parse import urlsplit

DEFAULT_NAMES = {
    "timestamp": "X-Request-Timestamp",
    "nonce": "X-Request-Nonce",
    "key_id": "X-Key-Id",
    "signature": "X-Signature",
}


def host_header(url):
    """The Host header a client sends for url, lowercased, default port omitted."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = "[" + host + "]"
    default_port = 443 if parts.scheme == "https" else 80
    if parts.port is not None and parts.port != default_port:
        host += ":" + str(parts.port)
    return host


def path_and_query(url):
    """Path plus "?" and the raw query, exactly as sent."""
    parts = urlsplit(url)
    path = parts.path or "/"
    without_fragment = url.split("#", 1)[0]
    if parts.query or without_fragment.endswith("?"):
        return path + "?" + parts.query
    return path


def canonical(method, host, path_query, timestamp, nonce, body):
    """The v1 canonical string (str)."""
    body_sha256 = hashlib.sha256(body).hexdigest()
    return "\n".join(
        ["v1", method.upper(), host.lower(), path_query, str(timestamp), nonce, body_sha256]
    )


def signature(secret, canonical_string):
    """`v1=<lowercase hex HMAC-SHA256>`; secret is str or bytes."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, canonical_string.encode("utf-8"), hashlib.sha256)
    return "v1=" + mac.hexdigest()


def sign_headers(method, url, body, key_id, secret, timestamp=None, nonce=None, names=None):
    """The headers of one signed request, as an ordered dict.

    body is bytes (b"" for none); timestamp defaults to now (Unix seconds),
    nonce to 32 random hex characters. names overrides header names (keys
    timestamp, nonce, key_id, signature) for routes that rename them.
    """
    names = dict(DEFAULT_NAMES, **(names or {}))
    if timestamp is None:
        timestamp = str(int(time.time()))
    if nonce is None:
        nonce = secrets.token_hex(16)
    text = canonical(method, host_header(url), path_and_query(url), timestamp, nonce, body)
    return {
        names["timestamp"]: str(timestamp),
        names["nonce"]: nonce,
        names["key_id"]: key_id,
        names["signature"]: signature(secret, text),
    }


def _read_secret(args):
    if args.secret_env:
        value = os.environ.get(args.secret_env, "")
        if not value:
            sys.exit("environment variable %s is not set or empty" % args.secret_env)
        return value.encode("utf-8")
    with open(args.secret_file, "rb") as f:
        value = f.read()
    return value[:-1] if value.endswith(b"\n") else value


def main(argv=None):
    p = argparse.ArgumentParser(description="Print the headers of one signed replay-guard request.")
    p.add_argument("--method", default="POST")
    p.add_argument("--url", required=True, help="full URL the client sends the request to")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", help="request body as a string")
    body.add_argument("--body-file", help="file holding the request body")
    p.add_argument("--key-id", required=True)
    secret = p.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret-env", help="environment variable holding the secret")
    secret.add_argument("--secret-file", help="file holding the secret (one trailing newline dropped)")
    p.add_argument("--timestamp", help="default: now, Unix seconds")
    p.add_argument("--nonce", help="default: 32 random hex characters")
    p.add_argument("--format", choices=["headers", "json"], default="headers")
    args = p.parse_args(argv)

    if args.body_file:
        with open(args.body_file, "rb") as f:
            payload = f.read()
    else:
        payload = (args.body or "").encode("utf-8")
    headers = sign_headers(
        args.method, args.url, payload, args.key_id, _read_secret(args), args.timestamp, args.nonce
    )
    if args.format == "json":
        print(json.dumps(headers))
    else:
        for name, value in headers.items():
            print("%s: %s" % (name, value))


if __name__ == "__main__":
    main()
