//! Client keys and their secrets (the public-key side is in
//! [`super::KeyMaterial`]).
//!
//! [`Secret`] wraps the bytes of an HMAC secret; its `Debug` never shows
//! them, so a logged or printed [`Key`] or [`super::Config`] stays safe.
//! This module must never print, log or format a secret value (the bytes
//! leave only through [`Secret::expose`], for the HMAC), and never read one
//! from the environment or a file: validation does that.
//!
//! Every HMAC a secret keys starts from [`Secret::hmac_sha256`]: the keyed
//! state (the inner and outer pads, already hashed) is computed once when
//! the secret is loaded, so a request clones it instead of hashing the key
//! again (two SHA-256 blocks a request).

use std::fmt;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::KeyMaterial;

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    /// Boxed: the state is a few hundred bytes and keys are cloned rarely.
    keyed: Box<Hmac<Sha256>>,
}

impl Secret {
    /// Wrap raw secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        // HMAC takes a key of any length, so this cannot fail; the
        // fallback (an all-zero key, infallible) is unreachable, not a panic.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&bytes)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        Self {
            bytes,
            keyed: Box::new(keyed),
        }
    }

    /// The bytes, for validation and the client-side tools; the request
    /// path keys its HMACs with [`Secret::hmac_sha256`].
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// A fresh HMAC-SHA256 keyed with this secret (a clone of the keyed
    /// state computed once at load).
    pub fn hmac_sha256(&self) -> Hmac<Sha256> {
        (*self.keyed).clone()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Secret {}

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
