//! Validation of a `[[keys]]` entry with `public_key_file`: the algorithm
//! it names and the PEM `SubjectPublicKeyInfo` ("BEGIN PUBLIC KEY") files,
//! current and previous, parsed for that algorithm by `aws-lc-rs` so that a
//! bad key fails `check` instead of every request.
//!
//! This module must never read a file except through the injected
//! [`Environment`], and never accept a key for an algorithm it was not
//! parsed for.

use std::path::PathBuf;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use toml::Spanned;

use super::Problems;
use crate::config::raw::RawKey;
use crate::config::{Algorithm, Environment, KeyMaterial, PublicKey};

/// The public-key material of an entry; `None` (reported) when the
/// algorithm or a key file is wrong.
pub(super) fn material(
    key: &RawKey,
    id: &str,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<KeyMaterial> {
    for (present, name) in [
        (
            key.secret_encoding.as_ref().map(Spanned::span),
            "secret_encoding",
        ),
        (
            key.previous_secret_env.as_ref().map(Spanned::span),
            "previous_secret_env",
        ),
        (
            key.previous_secret_file.as_ref().map(Spanned::span),
            "previous_secret_file",
        ),
    ] {
        if let Some(span) = present {
            p.at(span, format!("{name} is for secret keys; key {id:?} has a public_key_file (rotate it with previous_public_key_file)"));
        }
    }
    let algorithm = asymmetric_algorithm(key, id, p)?;
    let file = key.public_key_file.as_ref()?;
    let current = load(file, algorithm, env, p);
    let previous = match &key.previous_public_key_file {
        Some(previous) => Some(load(previous, algorithm, env, p)?),
        None => None,
    };
    Some(KeyMaterial::Public {
        algorithm,
        current: current?,
        previous,
    })
}

/// The entry's `algorithm`, which a public key must name.
fn asymmetric_algorithm(key: &RawKey, id: &str, p: &mut Problems<'_>) -> Option<Algorithm> {
    let choices = "\"ed25519\", \"ecdsa-p256-sha256\", \"rsa-pss-sha512\" or \"rsa-v1_5-sha256\"";
    let Some(value) = &key.algorithm else {
        p.at(
            key.id.span(),
            format!("key {id:?} has a public_key_file and needs algorithm = {choices}"),
        );
        return None;
    };
    match Algorithm::from_name(value.get_ref()) {
        Some(Algorithm::HmacSha256) => {
            p.at(value.span(), format!("hmac-sha256 keys are secrets (secret_env or secret_file), not public_key_file; for a public key write algorithm = {choices}"));
            None
        }
        Some(algorithm) => Some(algorithm),
        None => {
            p.at(
                value.span(),
                format!(
                    "algorithm {:?} is unknown; write {choices}",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

/// One PEM file's public key, parsed for `algorithm`.
fn load(
    file: &Spanned<PathBuf>,
    algorithm: Algorithm,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<PublicKey> {
    let path = file.get_ref().display();
    let bytes = match env.read_file(file.get_ref()) {
        Ok(bytes) => bytes,
        Err(e) => {
            p.at(
                file.span(),
                format!("cannot read public key file {path}: {e}"),
            );
            return None;
        }
    };
    let Ok(der) = SubjectPublicKeyInfoDer::from_pem_slice(&bytes) else {
        p.at(file.span(), format!(
            "{path} holds no PEM public key (\"-----BEGIN PUBLIC KEY-----\", SubjectPublicKeyInfo); export one with `openssl pkey -in PRIVATE.pem -pubout`"
        ));
        return None;
    };
    let key = PublicKey::from_spki(algorithm, der.as_ref());
    if key.is_none() {
        p.at(file.span(), format!(
            "{path} is not a valid {algorithm} public key (RSA keys need 2048 to 8192 bits; ECDSA keys the P-256 curve)"
        ));
    }
    key
}
