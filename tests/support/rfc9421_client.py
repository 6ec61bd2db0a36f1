"""An RFC 9421 client nobody here wrote: pyauth's `http-message-signatures`
(PyPI), driven by the Rust interoperability tests (tests/rfc9421.rs).

    python3 rfc9421_client.py keygen DIR   # PEM key pairs for every algorithm
    python3 rfc9421_client.py sign         # JSON list of requests on stdin,
                                           # JSON list of header lists out

Each request to sign: {"method", "url", "headers": [[name, value]], "body"
(text), "algorithm", "key_id", "private_key_file" | "secret_b64",
"created", "nonce", "tag", "label", "components"}. The output for each is
the headers the library added ([[name, value]]): Content-Digest (when a body
is given), Signature-Input and Signature. The library computes the digest and
the signature base itself; this script only feeds it.
"""

import base64
import datetime
import json
import os
import sys

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver
from http_message_signatures.algorithms import (
    ECDSA_P256_SHA256,
    ED25519,
    HMAC_SHA256,
    RSA_PSS_SHA512,
    RSA_V1_5_SHA256,
)

ALGORITHMS = {
    "hmac-sha256": HMAC_SHA256,
    "ed25519": ED25519,
    "ecdsa-p256-sha256": ECDSA_P256_SHA256,
    "rsa-pss-sha512": RSA_PSS_SHA512,
    "rsa-v1_5-sha256": RSA_V1_5_SHA256,
}


def keygen(directory):
    keys = {
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ecdsa-p256-sha256": ec.generate_private_key(ec.SECP256R1()),
        "rsa-pss-sha512": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa-v1_5-sha256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }
    for name, key in keys.items():
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with open(os.path.join(directory, f"{name}.key.pem"), "wb") as f:
            f.write(private)
        with open(os.path.join(directory, f"{name}.pub.pem"), "wb") as f:
            f.write(public)


class Resolver(HTTPSignatureKeyResolver):
    def __init__(self, spec):
        self.spec = spec

    def resolve_private_key(self, key_id):
        if "secret_b64" in self.spec:
            return base64.b64decode(self.spec["secret_b64"])
        with open(self.spec["private_key_file"], "rb") as f:
            return f.read()


def sign_one(spec):
    body = spec.get("body", "").encode()
    prepared = requests.Request(
        spec["method"], spec["url"], headers=dict(spec.get("headers", [])), data=body or None
    ).prepare()
    before = {k.lower() for k in prepared.headers}
    signer = HTTPMessageSigner(
        signature_algorithm=ALGORITHMS[spec["algorithm"]], key_resolver=Resolver(spec)
    )
    signer.sign(
        prepared,
        key_id=spec["key_id"],
        created=datetime.datetime.fromtimestamp(spec["created"], tz=datetime.timezone.utc),
        nonce=spec.get("nonce"),
        label=spec.get("label"),
        tag=spec.get("tag"),
        covered_component_ids=spec["components"],
        body=body if body else None,
    )
    return [[k, v] for k, v in prepared.headers.items() if k.lower() not in before]


def main():
    if sys.argv[1] == "keygen":
        keygen(sys.argv[2])
    elif sys.argv[1] == "sign":
        json.dump([sign_one(spec) for spec in json.load(sys.stdin)], sys.stdout)
    else:
        sys.exit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
