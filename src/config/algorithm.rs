//! Signing algorithms and the verification material of a `[[keys]]` entry:
//! an HMAC secret (scheme `v1` and RFC 9421 `hmac-sha256`) or a parsed
//! public key (RFC 9421 `ed25519`, `ecdsa-p256-sha256`, `rsa-pss-sha512`,
//! `rsa-v1_5-sha256`).
//!
//! Public keys are parsed once, when the config is validated, into
//! `aws-lc-rs` [`ParsedPublicKey`]s; the request path only verifies. This
//! module must never read a file or the environment (validation does), and
//! never print a secret: [`KeyMaterial`]'s `Debug` shows only the
//! algorithm.

use std::fmt;

use aws_lc_rs::signature::{
    ParsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ED25519,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA512,
};

use super::Secret;

/// An RFC 9421 signature algorithm (HTTP Signature Algorithms registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `hmac-sha256` (RFC 9421 §3.3.3): a shared secret.
    HmacSha256,
    /// `ed25519` (§3.3.6).
    Ed25519,
    /// `ecdsa-p256-sha256` (§3.3.4): the signature is raw `r || s`.
    EcdsaP256Sha256,
    /// `rsa-pss-sha512` (§3.3.1).
    RsaPssSha512,
    /// `rsa-v1_5-sha256` (§3.3.2).
    RsaV15Sha256,
}

impl Algorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::HmacSha256,
        Algorithm::Ed25519,
        Algorithm::EcdsaP256Sha256,
        Algorithm::RsaPssSha512,
        Algorithm::RsaV15Sha256,
    ];

    /// The registry name, as written in `algorithm = "..."` and the `alg`
    /// signature parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Algorithm::RsaPssSha512 => "rsa-pss-sha512",
            Algorithm::RsaV15Sha256 => "rsa-v1_5-sha256",
        }
    }

    /// The algorithm named `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The `aws-lc-rs` verification algorithm of an asymmetric algorithm;
    /// `None` for HMAC.
    pub fn verification(self) -> Option<&'static dyn VerificationAlgorithm> {
        match self {
            Algorithm::HmacSha256 => None,
            Algorithm::Ed25519 => Some(&ED25519),
            Algorithm::EcdsaP256Sha256 => Some(&ECDSA_P256_SHA256_FIXED),
            Algorithm::RsaPssSha512 => Some(&RSA_PSS_2048_8192_SHA512),
            Algorithm::RsaV15Sha256 => Some(&RSA_PKCS1_2048_8192_SHA256),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A public key parsed for one algorithm.
#[derive(Clone)]
pub struct PublicKey(ParsedPublicKey);

impl PublicKey {
    /// Parse DER `SubjectPublicKeyInfo` bytes for `algorithm`; `None` when
    /// the bytes are not such a key (or `algorithm` is HMAC).
    pub fn from_spki(algorithm: Algorithm, der: &[u8]) -> Option<PublicKey> {
        let verification = algorithm.verification()?;
        ParsedPublicKey::new(verification, der).ok().map(PublicKey)
    }

    /// Whether `signature` is a valid signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(..)")
    }
}

/// What verifies a key's signatures: the current and, during a rotation,
/// the previous secret or public key.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// An HMAC-SHA256 secret (scheme `v1`, or RFC 9421 `hmac-sha256`).
    Secret {
        /// The current secret.
        current: Secret,
        /// The previous secret, accepted during rotation.
        previous: Option<Secret>,
    },
    /// A public key of an asymmetric algorithm (RFC 9421 only).
    Public {
        /// Which algorithm the keys are for.
        algorithm: Algorithm,
        /// The current public key.
        current: PublicKey,
        /// The previous public key, accepted during rotation.
        previous: Option<PublicKey>,
    },
}

impl KeyMaterial {
    /// The algorithm this material verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            KeyMaterial::Secret { .. } => Algorithm::HmacSha256,
            KeyMaterial::Public { algorithm, .. } => *algorithm,
        }
    }
}
