//! Validation of `[[keys]]`: key ids and their secrets, resolved from the
//! environment, a file or (demos only) the config itself, decoded as
//! `secret_encoding` says; public keys are loaded by [`super::public_key`].
//!
//! This module must never print, log or put a secret value into an error
//! message (names of variables and files only), and never read a variable
//! or a file except through the injected [`Environment`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::public_key;
use super::Problems;
use crate::config::raw::RawKey;
use crate::config::{Algorithm, Environment, Key, KeyMaterial, Secret};

/// Every valid key by id; invalid and duplicate ones are reported.
pub(super) fn validate_keys(
    raw: Vec<Spanned<RawKey>>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> BTreeMap<String, Key> {
    let mut keys = BTreeMap::new();
    for entry in raw {
        let span = entry.span();
        let key = entry.into_inner();
        let id = key.id.get_ref().clone();
        if !has_id_and_one_source(&key, &id, span, p) {
            continue;
        }
        let material = if key.public_key_file.is_some() {
            public_key::material(&key, &id, env, p)
        } else {
            secret_material(&key, &id, env, p)
        };
        if keys.contains_key(&id) {
            p.at(key.id.span(), format!("key id {id:?} is defined twice"));
            continue;
        }
        if let Some(material) = material {
            keys.insert(
                id.clone(),
                Key {
                    id,
                    material,
                    inline: key.secret.is_some(),
                },
            );
        }
    }
    keys
}

/// Whether the id is usable and exactly one current-secret source is given.
fn has_id_and_one_source(key: &RawKey, id: &str, span: Range<usize>, p: &mut Problems<'_>) -> bool {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
        p.at(
            key.id.span(),
            "key id must be 1 or more visible ASCII characters, e.g. \"billing-svc\"",
        );
        return false;
    }
    let sources = usize::from(key.secret_env.is_some())
        + usize::from(key.secret_file.is_some())
        + usize::from(key.secret.is_some())
        + usize::from(key.public_key_file.is_some());
    if sources != 1 {
        p.at(
            span,
            format!("key {id:?} needs exactly one of secret_env, secret_file, secret (inline, demos only) or public_key_file (with algorithm)"),
        );
        return false;
    }
    true
}

/// An HMAC key: `algorithm` absent or `hmac-sha256`, the secrets decoded
/// as `secret_encoding` says; `None` (reported) when anything is wrong.
fn secret_material(
    key: &RawKey,
    id: &str,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<KeyMaterial> {
    let mut ok = true;
    if let Some(algorithm) = &key.algorithm {
        if Algorithm::from_name(algorithm.get_ref()) != Some(Algorithm::HmacSha256) {
            p.at(algorithm.span(), format!(
                "key {id:?} has a secret, so its algorithm is \"hmac-sha256\" (the default); {:?} needs public_key_file",
                algorithm.get_ref()
            ));
            ok = false;
        }
    }
    if let Some(previous) = &key.previous_public_key_file {
        p.at(
            previous.span(),
            "previous_public_key_file needs public_key_file; a secret key rotates with previous_secret_env or previous_secret_file",
        );
        ok = false;
    }
    let encoding = secret_encoding(key.secret_encoding.as_ref(), p);
    let current = current_secret(key, env, p);
    let previous = previous_secret(key, env, p);
    let (Some(encoding), Some(current)) = (encoding, current) else {
        return None;
    };
    let decode = |secret: Secret, p: &mut Problems<'_>| decode_secret(secret, encoding, key, id, p);
    let current = decode(current, p);
    let previous = match previous {
        Some(previous) => Some(decode(previous, p)?),
        None => None,
    };
    (ok).then_some(KeyMaterial::Secret {
        current: current?,
        previous,
    })
}

/// How a secret's text maps to HMAC key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretEncoding {
    /// The text's UTF-8 bytes (default).
    Utf8,
    /// Standard base64 (RFC 4648 §4, padded), as RFC 9421's
    /// `test-shared-secret` is written.
    Base64,
}

fn secret_encoding(
    value: Option<&Spanned<String>>,
    p: &mut Problems<'_>,
) -> Option<SecretEncoding> {
    match value.map(|v| v.get_ref().as_str()) {
        None | Some("utf8") => Some(SecretEncoding::Utf8),
        Some("base64") => Some(SecretEncoding::Base64),
        Some(other) => {
            if let Some(v) = value {
                p.at(v.span(), format!("secret_encoding {other:?} is unknown; write \"utf8\" (the default) or \"base64\""));
            }
            None
        }
    }
}

/// The HMAC key bytes of a secret's text; a secret that is not valid
/// base64 is reported without its value.
fn decode_secret(
    secret: Secret,
    encoding: SecretEncoding,
    key: &RawKey,
    id: &str,
    p: &mut Problems<'_>,
) -> Option<Secret> {
    use base64::Engine as _;
    if encoding == SecretEncoding::Utf8 {
        return Some(secret);
    }
    match base64::engine::general_purpose::STANDARD.decode(secret.expose()) {
        Ok(bytes) if !bytes.is_empty() => Some(Secret::new(bytes)),
        _ => {
            let at = key
                .secret_encoding
                .as_ref()
                .map_or(key.id.span(), |e| e.span());
            p.at(at, format!("a secret of key {id:?} is not valid base64 (RFC 4648, with padding); check the value, or write secret_encoding = \"utf8\""));
            None
        }
    }
}

/// The current secret from its one source.
fn current_secret(key: &RawKey, env: &dyn Environment, p: &mut Problems<'_>) -> Option<Secret> {
    if let Some(name) = &key.secret_env {
        read_secret_env(name, env, p)
    } else if let Some(file) = &key.secret_file {
        read_secret_file(file, env, p)
    } else {
        key.secret.as_ref().and_then(|s| {
            if s.get_ref().is_empty() {
                p.at(s.span(), "secret is empty");
                None
            } else {
                Some(Secret::new(s.get_ref().as_bytes().to_vec()))
            }
        })
    }
}

/// The previous secret, if one is configured and (for a variable) set.
fn previous_secret(key: &RawKey, env: &dyn Environment, p: &mut Problems<'_>) -> Option<Secret> {
    match (&key.previous_secret_env, &key.previous_secret_file) {
        (Some(_), Some(file)) => {
            p.at(
                file.span(),
                "write previous_secret_env or previous_secret_file, not both",
            );
            None
        }
        // An unset previous secret is normal once a rotation is over.
        (Some(name), None) => env
            .var(name.get_ref())
            .filter(|v| !v.is_empty())
            .map(|v| Secret::new(v.into_bytes())),
        (None, Some(file)) => read_secret_file(file, env, p),
        (None, None) => None,
    }
}

pub(super) fn read_secret_env(
    name: &Spanned<String>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<Secret> {
    match env.var(name.get_ref()) {
        Some(value) if !value.is_empty() => Some(Secret::new(value.into_bytes())),
        _ => {
            p.at(
                name.span(),
                format!(
                    "environment variable {} is not set or empty: export it, or use secret_file",
                    name.get_ref()
                ),
            );
            None
        }
    }
}

/// A secret file's bytes without one trailing newline (`\n` or `\r\n`).
pub(super) fn read_secret_file(
    path: &Spanned<PathBuf>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<Secret> {
    let mut bytes = super::read_file(path, "secret file", env, p)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        p.at(
            path.span(),
            format!("secret file {} is empty", path.get_ref().display()),
        );
        return None;
    }
    Some(Secret::new(bytes))
}
