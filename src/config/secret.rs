//! Client keys and their secrets.
//!
//! [`Secret`] wraps the bytes of an HMAC secret; its `Debug` never shows
//! them, so a logged or printed [`Key`] or [`super::Config`] stays safe.
//! This module must never print, log or format a secret value (the bytes
//! leave only through [`Secret::expose`], for the HMAC), and never read one
//! from the environment or a file: validation does that.

use std::fmt;

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

/// One HMAC client key.
#[derive(Debug, Clone)]
pub struct Key {
    /// The id clients send in the key-id header.
    pub id: String,
    /// The current secret.
    pub current: Secret,
    /// The previous secret, accepted during rotation.
    pub previous: Option<Secret>,
    /// Whether the secret was written inline in the file (demo only).
    pub inline: bool,
}
