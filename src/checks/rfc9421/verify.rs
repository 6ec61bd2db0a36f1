//! The `HTTP_VERIFY` primitives of RFC 9421 §3.3 over a signature base:
//! HMAC-SHA256 (constant-time, `hmac`), and Ed25519, ECDSA P-256/SHA-256
//! (raw `r || s`), RSASSA-PSS/SHA-512 and RSASSA-PKCS1-v1_5/SHA-256
//! through `aws-lc-rs`. The current key and, during a rotation, the
//! previous one are tried.
//!
//! This module must never compare a MAC other than through
//! `Mac::verify_slice`, never log a signature or a secret, and never
//! verify with an algorithm other than the key's.

use hmac::Mac;

use crate::config::{KeyMaterial, Secret};

/// Whether `signature` is valid over `base` for the key's material.
pub fn verifies(material: &KeyMaterial, base: &[u8], signature: &[u8]) -> bool {
    match material {
        KeyMaterial::Secret { current, previous } => std::iter::once(current)
            .chain(previous)
            .any(|secret| hmac_verifies(secret, base, signature)),
        KeyMaterial::Public {
            current, previous, ..
        } => {
            current.verifies(base, signature)
                || previous
                    .as_ref()
                    .is_some_and(|key| key.verifies(base, signature))
        }
    }
}

/// Constant-time HMAC-SHA256 verification.
fn hmac_verifies(secret: &Secret, base: &[u8], signature: &[u8]) -> bool {
    let mut mac = secret.hmac_sha256();
    mac.update(base);
    mac.verify_slice(signature).is_ok()
}

/// The HMAC-SHA256 of `base` (client side).
pub fn hmac_sign(secret: &Secret, base: &[u8]) -> Vec<u8> {
    let mut mac = secret.hmac_sha256();
    mac.update(base);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Algorithm, PublicKey};
    use base64::Engine as _;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::SubjectPublicKeyInfoDer;

    /// RFC 9421 Appendix B.1.3, `test-key-ecc-p256`.
    pub const ECC_P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf
w0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END PUBLIC KEY-----
";

    pub fn public(algorithm: Algorithm, pem: &str) -> KeyMaterial {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).unwrap();
        KeyMaterial::Public {
            algorithm,
            current: PublicKey::from_spki(algorithm, der.as_ref()).unwrap(),
            previous: None,
        }
    }

    /// RFC 9421 Appendix B.2.4 signs a response (`@status`), which the
    /// proxy never verifies; its base and signature still check the
    /// fixed-size `r || s` ECDSA form.
    #[test]
    fn b24_ecdsa_p256_sha256_signature_verifies() {
        let base = "\"@status\": 200\n\"content-type\": application/json\n\"content-digest\": sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:\n\"content-length\": 23\n\"@signature-params\": (\"@status\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-ecc-p256\"";
        let signature = base64::engine::general_purpose::STANDARD
            .decode("wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw==")
            .unwrap();
        assert_eq!(signature.len(), 64, "raw r || s");
        let key = public(Algorithm::EcdsaP256Sha256, ECC_P256_PUBLIC);
        assert!(verifies(&key, base.as_bytes(), &signature));
        assert!(!verifies(&key, b"tampered", &signature));
        assert!(
            PublicKey::from_spki(Algorithm::Ed25519, &[0u8; 10]).is_none(),
            "garbage is not a key"
        );
    }

    #[test]
    fn hmac_tries_the_previous_secret_and_is_exact() {
        let key = KeyMaterial::Secret {
            current: Secret::new(b"new".to_vec()),
            previous: Some(Secret::new(b"old".to_vec())),
        };
        let old = hmac_sign(&Secret::new(b"old".to_vec()), b"base");
        assert!(verifies(&key, b"base", &old));
        assert!(!verifies(&key, b"base2", &old));
        assert!(!verifies(&key, b"base", &old[..31]));
    }
}
