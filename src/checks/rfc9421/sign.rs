//! The client side of RFC 9421, for `replay-guard sign`, loadgen, the
//! demo and tests: `Content-Digest` when there is a body, the signature
//! base built by the same [`super::base`] the proxy verifies with, and
//! `Signature-Input` / `Signature` with a secret or a private key.
//!
//! This module must never be called by the request path (it signs; the
//! proxy only verifies), and never print a key.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    RSA_PSS_SHA512,
};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Uri};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::base::{signature_base, Message};
use super::digest::{self, DigestAlgorithm, CONTENT_DIGEST};
use super::fields;
use super::params::{SIGNATURE, SIGNATURE_INPUT};
use crate::config::{Algorithm, Component, Secret};

/// A key to sign with.
pub enum SigningKey {
    /// `hmac-sha256` with a shared secret.
    Hmac(Secret),
    /// `ed25519`.
    Ed25519(Ed25519KeyPair),
    /// `ecdsa-p256-sha256`.
    EcdsaP256(EcdsaKeyPair),
    /// `rsa-pss-sha512` or `rsa-v1_5-sha256`.
    Rsa(RsaKeyPair, Algorithm),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.algorithm())
    }
}

impl SigningKey {
    /// A private key from a PEM file's bytes (PKCS#8 `PRIVATE KEY`, or
    /// `RSA PRIVATE KEY` / `EC PRIVATE KEY`) for an asymmetric algorithm.
    pub fn from_pem(algorithm: Algorithm, pem: &[u8]) -> Result<SigningKey, String> {
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("no PEM private key found: {e}"))?;
        let bytes = der.secret_der();
        let rejected =
            |e: aws_lc_rs::error::KeyRejected| format!("not a {algorithm} private key: {e}");
        Ok(match algorithm {
            Algorithm::HmacSha256 => {
                return Err("hmac-sha256 signs with a secret, not a private key".into())
            }
            Algorithm::Ed25519 => {
                SigningKey::Ed25519(Ed25519KeyPair::from_pkcs8(bytes).map_err(rejected)?)
            }
            Algorithm::EcdsaP256Sha256 => SigningKey::EcdsaP256(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
                    .map_err(rejected)?,
            ),
            Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256 => {
                let pair = match &der {
                    PrivateKeyDer::Pkcs1(_) => RsaKeyPair::from_der(bytes),
                    _ => RsaKeyPair::from_pkcs8(bytes),
                };
                SigningKey::Rsa(pair.map_err(rejected)?, algorithm)
            }
        })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Hmac(_) => Algorithm::HmacSha256,
            SigningKey::Ed25519(_) => Algorithm::Ed25519,
            SigningKey::EcdsaP256(_) => Algorithm::EcdsaP256Sha256,
            SigningKey::Rsa(_, algorithm) => *algorithm,
        }
    }

    /// `HTTP_SIGN` over a signature base.
    pub fn sign(&self, base: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        let failed = |_| "signing failed".to_owned();
        match self {
            SigningKey::Hmac(secret) => Ok(super::verify::hmac_sign(secret, base)),
            SigningKey::Ed25519(pair) => Ok(pair.sign(base).as_ref().to_vec()),
            SigningKey::EcdsaP256(pair) => pair
                .sign(&rng, base)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            SigningKey::Rsa(pair, algorithm) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                let padding = if *algorithm == Algorithm::RsaPssSha512 {
                    &RSA_PSS_SHA512
                } else {
                    &RSA_PKCS1_SHA256
                };
                pair.sign(padding, &rng, base, &mut out).map_err(failed)?;
                Ok(out)
            }
        }
    }
}

/// What to put into one signature.
#[derive(Debug, Clone)]
pub struct Signer<'a> {
    /// The Dictionary label, e.g. `sig1`.
    pub label: &'a str,
    /// Covered components, in order (`content-digest` is appended when
    /// there is a body and it is not listed).
    pub components: &'a [Component],
    /// `keyid`.
    pub key_id: &'a str,
    /// `created`, Unix seconds.
    pub created: i64,
    /// `expires`, Unix seconds.
    pub expires: Option<i64>,
    /// `nonce`.
    pub nonce: Option<&'a str>,
    /// `tag`.
    pub tag: Option<&'a str>,
    /// Whether to send the `alg` parameter.
    pub alg: bool,
}

/// The request to sign.
#[derive(Debug, Clone, Copy)]
pub struct Unsigned<'a> {
    /// Method.
    pub method: &'a Method,
    /// Target (origin form; the authority comes from `Host`).
    pub uri: &'a Uri,
    /// Headers the client sends (at least `Host`).
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
    /// Whether it goes over TLS.
    pub https: bool,
}

fn param(params: &mut sfv::Parameters, name: &'static str, value: sfv::BareItem) {
    params.insert(sfv::KeyRef::constant(name).to_owned(), value);
}

fn string(text: &str) -> Result<sfv::BareItem, String> {
    sfv::StringRef::from_str(text)
        .map(|s| sfv::BareItem::String(s.to_owned()))
        .map_err(|_| format!("{text:?} is not a printable ASCII string"))
}

/// The headers to add to `request`: `Content-Digest` (SHA-256, when there
/// is a body and it has none), `Signature-Input` and `Signature`.
pub fn sign(
    key: &SigningKey,
    signer: &Signer<'_>,
    request: Unsigned<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut headers = request.headers.clone();
    let mut added = Vec::new();
    let mut components: Vec<sfv::Item> =
        signer.components.iter().map(|c| c.item().clone()).collect();
    if !request.body.is_empty() {
        if !headers.contains_key(&CONTENT_DIGEST) {
            let value =
                HeaderValue::from_str(&digest::header_value(request.body, DigestAlgorithm::Sha256))
                    .map_err(|e| e.to_string())?;
            headers.insert(CONTENT_DIGEST, value.clone());
            added.push((CONTENT_DIGEST, value));
        }
        if !signer
            .components
            .iter()
            .any(|c| c.name() == CONTENT_DIGEST.as_str())
        {
            components.push(sfv::Item::new(string(CONTENT_DIGEST.as_str())?));
        }
    }
    let mut params = sfv::Parameters::new();
    param(
        &mut params,
        "created",
        sfv::BareItem::Integer(sfv::Integer::try_from(signer.created).map_err(|e| e.to_string())?),
    );
    param(&mut params, "keyid", string(signer.key_id)?);
    if signer.alg {
        param(&mut params, "alg", string(key.algorithm().name())?);
    }
    if let Some(expires) = signer.expires {
        param(
            &mut params,
            "expires",
            sfv::BareItem::Integer(sfv::Integer::try_from(expires).map_err(|e| e.to_string())?),
        );
    }
    if let Some(nonce) = signer.nonce {
        param(&mut params, "nonce", string(nonce)?);
    }
    if let Some(tag) = signer.tag {
        param(&mut params, "tag", string(tag)?);
    }
    let input = sfv::InnerList::with_params(components, params);
    let label = sfv::KeyRef::from_str(signer.label)
        .map_err(|_| format!("{:?} is not a signature label", signer.label))?
        .to_owned();
    let mut input_dict = sfv::Dictionary::new();
    input_dict.insert(label.clone(), input.into());
    let input_text = sfv::FieldType::serialize(&input_dict).unwrap_or_default();
    // The base is built from the field as the verifier reads it.
    let inputs = fields::inputs(&input_text).map_err(|e| e.to_string())?;
    let Some((_, Some(parsed))) = inputs.first() else {
        return Err("the signature input does not read back".to_owned());
    };
    let message = Message {
        method: request.method,
        uri: request.uri,
        headers: &headers,
        https: request.https,
    };
    let base = signature_base(&message, parsed).map_err(|e| e.0)?;
    let signature = key.sign(base.as_bytes())?;
    let mut signature_dict = sfv::Dictionary::new();
    signature_dict.insert(label, sfv::BareItem::ByteSequence(signature).into());
    let signature_text = sfv::FieldType::serialize(&signature_dict).unwrap_or_default();
    for (name, text) in [(SIGNATURE_INPUT, &input_text), (SIGNATURE, &signature_text)] {
        added.push((
            name,
            HeaderValue::from_str(text).map_err(|e| e.to_string())?,
        ));
    }
    Ok(added)
}
