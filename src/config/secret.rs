//! Client keys and their secrets (the public-key side is in
//! [`super::KeyMaterial`]).
//!
//! [`Secret`] wraps the bytes of an HMAC secret; its `Debug` never shows
//! them, so a logged or printed [`Key`] or [`super::Config`] stays safe.
//! This module must never print, log or format a secret value (the bytes
//! leave only through [`Secret::expose`], for the HMAC), and never read one
//! from the environment or a file: validation does that.

use std::fmt;

use super::KeyMaterial;

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap raw secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes, for the HMAC and nothing else.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// One client key: its id and what verifies its signatures.
#[derive(Debug, Clone)]
pub struct Key {
    /// The id clients send in the key-id header (`v1`) or as the `keyid`
    /// signature parameter (RFC 9421).
    pub id: String,
    /// The secret or public key, current and previous.
    pub material: KeyMaterial,
    /// Whether the secret was written inline in the file (demo only).
    pub inline: bool,
}

impl Key {
    /// The HMAC secrets, current first, then the previous one; none for a
    /// public key (so a `v1` signature never verifies against one).
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        let (current, previous) = match &self.material {
            KeyMaterial::Secret { current, previous } => (Some(current), previous.as_ref()),
            KeyMaterial::Public { .. } => (None, None),
        };
        current.into_iter().chain(previous)
    }
}
