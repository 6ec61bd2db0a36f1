//! A request's buffered body (its content, in RFC 9530's words) as the
//! checks read it: the bytes, and their
//! SHA-256 computed at most once however many checks need it (the v1
//! canonical string, RFC 9530 `Content-Digest`, the idempotency
//! fingerprint).
//!
//! This type must never hold anything but the body as received.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The body and its SHA-256, on first use.
#[derive(Debug)]
pub struct Content<'a> {
    bytes: &'a [u8],
    sha256: OnceLock<[u8; 32]>,
}

impl<'a> Content<'a> {
    /// The body `bytes`, not hashed yet.
    pub fn new(bytes: &'a [u8]) -> Self {
        Content {
            bytes,
            sha256: OnceLock::new(),
        }
    }

    /// The bytes as received.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// SHA-256 of the bytes, computed on the first call.
    pub fn sha256(&self) -> &[u8; 32] {
        self.sha256
            .get_or_init(|| Sha256::digest(self.bytes).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_bodys_and_computed_once() {
        let body = Content::new(b"{\"hello\": \"world\"}\n");
        assert_eq!(
            hex::encode(body.sha256()),
            "44aff4ab2d7c3250525675a08f0cfa9591168cffe51791c5f5bbc417c15a6c38"
        );
        assert!(
            std::ptr::eq(body.sha256(), body.sha256()),
            "kept, not recomputed"
        );
        assert!(Content::new(b"").is_empty());
    }
}
