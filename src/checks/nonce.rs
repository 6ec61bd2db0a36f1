//! Nonce: well-formed, then claimed atomically in the store for the
//! request's identity, remembered until its timestamp could no longer pass
//! freshness (`timestamp + max_skew + 60 s`).
//!
//! This check must never run before freshness (and the signature, where
//! required), so forged or stale requests never write to the store.

use crate::rejection::Rejection;

/// Margin for clock differences between replicas.
pub const CLOCK_MARGIN_SECS: u64 = 60;

/// Whether a nonce is 16–128 characters of `[A-Za-z0-9._~+/=-]`.
pub fn validate(nonce: &str) -> Result<(), Rejection> {
    let ok = (16..=128).contains(&nonce.len())
        && nonce.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'/' | b'=' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Rejection::MalformedNonce)
    }
}

/// The store key of a nonce for an encoded identity.
pub fn record_key(identity: &str, nonce: &str) -> String {
    format!("nonce#{identity}#{nonce}")
}

/// When the record may be forgotten.
pub fn expires_at(timestamp_secs_ceil: u64, max_skew_secs: u64) -> u64 {
    timestamp_secs_ceil
        .saturating_add(max_skew_secs)
        .saturating_add(CLOCK_MARGIN_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_alphabet_and_length() {
        assert!(validate("4f9c2a7e1b3d4c5a8e6f7a9b0c1d2e3f").is_ok());
        assert!(validate("abcdefghijklmnop").is_ok());
        assert!(validate("aB3._~+/=-aaaaaa").is_ok());
        assert_eq!(validate("short"), Err(Rejection::MalformedNonce));
        assert_eq!(validate(&"a".repeat(129)), Err(Rejection::MalformedNonce));
        assert!(validate(&"a".repeat(128)).is_ok());
        assert_eq!(
            validate("abcdefghijklmnop#"),
            Err(Rejection::MalformedNonce)
        );
        assert_eq!(
            validate("abcdefghijklmnop q"),
            Err(Rejection::MalformedNonce)
        );
    }
}
