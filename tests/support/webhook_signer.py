"""Webhook deliveries signed by each provider's own library, nobody here
wrote any of them: Stripe's `stripe`, Slack's `slack_sdk` and the Standard
Webhooks reference library `standardwebhooks` (PyPI), and GitHub's
`@octokit/webhooks-methods` (npm, in .tools/, run with node). Driven by the
Rust end-to-end tests (tests/webhook.rs); scripts/test.sh installs them.

    python3 webhook_signer.py    # JSON list of deliveries on stdin,
                                 # JSON list of header lists out

Each delivery: {"provider": "stripe" | "github" | "slack" |
"standard-webhooks", "secret", "body" (text), "timestamp" (Unix seconds;
ignored for github), "id" (github's X-GitHub-Delivery and the Standard
Webhooks webhook-id)}. The output for each is [[name, value], ...]: the
headers the provider sends. This script only feeds the libraries; the
signature bases are theirs.
"""

import datetime
import json
import os
import subprocess
import sys

import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OCTOKIT = os.path.join(
    ROOT, ".tools", "node_modules", "@octokit", "webhooks-methods", "dist-node", "index.js"
)

# GitHub's library is JavaScript (ESM): one node process signs every
# github delivery of the batch.
NODE_SIGNER = """
import { sign } from %s;
const input = JSON.parse(await new Promise((ok) => {
  let text = ""; process.stdin.on("data", (c) => (text += c)); process.stdin.on("end", () => ok(text));
}));
const out = [];
for (const d of input) out.push(await sign(d.secret, d.body));
process.stdout.write(JSON.stringify(out));
"""


def sign_github(deliveries):
    if not deliveries:
        return []
    script = NODE_SIGNER % json.dumps("file://" + OCTOKIT)
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        input=json.dumps(deliveries),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def sign_one(d, github_signature):
    provider, secret, body = d["provider"], d["secret"], d["body"]
    if provider == "stripe":
        header = stripe.WebhookSignature.generate_signature_header(
            body, secret, timestamp=d["timestamp"]
        )
        return [["Stripe-Signature", header]]
    if provider == "slack":
        ts = str(d["timestamp"])
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        return [["X-Slack-Request-Timestamp", ts], ["X-Slack-Signature", signature]]
    if provider == "standard-webhooks":
        when = datetime.datetime.fromtimestamp(d["timestamp"], tz=datetime.timezone.utc)
        signature = Webhook(secret).sign(d["id"], when, body)
        return [
            ["webhook-id", d["id"]],
            ["webhook-timestamp", str(d["timestamp"])],
            ["webhook-signature", signature],
        ]
    if provider == "github":
        return [
            ["X-GitHub-Event", "push"],
            ["X-GitHub-Delivery", d["id"]],
            ["X-Hub-Signature-256", github_signature],
        ]
    raise SystemExit(f"unknown provider {provider!r}")


def main():
    deliveries = json.load(sys.stdin)
    github = iter(sign_github([d for d in deliveries if d["provider"] == "github"]))
    out = [
        sign_one(d, next(github) if d["provider"] == "github" else None) for d in deliveries
    ]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
