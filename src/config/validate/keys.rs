//! Validation of `[[keys]]`: key ids and their secrets, resolved from the
//! environment, a file or (demos only) the config itself.
//!
//! This module must never print, log or put a secret value into an error
//! message (names of variables and files only), and never read a variable
//! or a file except through the injected [`Environment`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::Problems;
use crate::config::raw::RawKey;
use crate::config::{Environment, Key, Secret};

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
        let current = current_secret(&key, env, p);
        let previous = previous_secret(&key, env, p);
        if keys.contains_key(&id) {
            p.at(key.id.span(), format!("key id {id:?} is defined twice"));
            continue;
        }
        if let Some(current) = current {
            keys.insert(
                id.clone(),
                Key {
                    id,
                    current,
                    previous,
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
        + usize::from(key.secret.is_some());
    if sources != 1 {
        p.at(
            span,
            format!("key {id:?} needs exactly one of secret_env, secret_file or secret (inline, demos only)"),
        );
        return false;
    }
    true
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
fn read_secret_file(
    path: &Spanned<PathBuf>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<Secret> {
    match env.read_file(path.get_ref()) {
        Ok(mut bytes) => {
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
        Err(e) => {
            p.at(
                path.span(),
                format!("cannot read secret file {}: {e}", path.get_ref().display()),
            );
            None
        }
    }
}
