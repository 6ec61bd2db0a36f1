"""Bearer tokens minted by a JWT library nobody here wrote: PyJWT (PyPI,
with its `crypto` extra), driven by the Rust tests (tests/jwt.rs).

    python3 jwt_client.py keygen DIR PREFIX   # RS256, ES256, EdDSA key pairs in DIR;
                                              # prints their JWKS (kid PREFIX-<alg>)
    python3 jwt_client.py mint                # JSON list of specs on stdin,
                                              # JSON list of tokens out

Each spec: {"alg", "claims", "kid"?, "key_file"? (PEM private key),
"secret"? (HMAC secret text)}. Two hostile forms the library refuses to
make on purpose are built by hand from the same pieces: {"alg": "none"}
(an unsigned token, RFC 7519 §6) and {"confusion_pem_file": PATH}, an HS256
token whose HMAC secret is the bytes of an RSA public key PEM (the classic
algorithm-confusion attack).
"""

import base64
import hashlib
import hmac
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def keygen(directory, prefix):
    keys = {
        "RS256": (rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
        "ES256": (ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
        "EdDSA": (ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
    }
    jwks = []
    for alg, (key, algorithm) in keys.items():
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with open(os.path.join(directory, f"{alg}.key.pem"), "wb") as f:
            f.write(private)
        with open(os.path.join(directory, f"{alg}.pub.pem"), "wb") as f:
            f.write(public)
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        jwk.update({"kid": f"{prefix}-{alg}", "alg": alg, "use": "sig"})
        jwks.append(jwk)
    print(json.dumps({"keys": jwks}))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def by_hand(header, claims, secret):
    signing_input = (
        b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    )
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def mint(spec):
    claims = spec["claims"]
    headers = {"kid": spec["kid"]} if "kid" in spec else {}
    if "confusion_pem_file" in spec:
        with open(spec["confusion_pem_file"], "rb") as f:
            secret = f.read()
        return by_hand({"alg": "HS256", "typ": "JWT", **headers}, claims, secret)
    if spec["alg"] == "none":
        return by_hand({"alg": "none", "typ": "JWT", **headers}, claims, None)
    if "key_file" in spec:
        with open(spec["key_file"], "rb") as f:
            key = f.read()
    else:
        key = spec["secret"]
    return jwt.encode(claims, key, algorithm=spec["alg"], headers=headers or None)


def main():
    if sys.argv[1] == "keygen":
        keygen(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "mint":
        specs = json.load(sys.stdin)
        print(json.dumps([mint(spec) for spec in specs]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
