//! Idempotency keys (after draft-ietf-httpapi-idempotency-key-header): the
//! key's format, the request fingerprint, and what a claim outcome means
//! for the caller.
//!
//! The request path claims, forwards, then completes or releases; this
//! module holds the pure parts of that: it must never talk to the store or
//! the upstream itself.

use sha2::{Digest, Sha256};

use crate::rejection::Rejection;
use crate::store::{IdemOutcome, StoredResponse};

/// Whether a key is 1–255 visible ASCII characters.
pub fn validate(key: &str) -> Result<(), Rejection> {
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Rejection::MalformedIdempotencyKey)
    }
}

/// The store key of an idempotency key for an encoded identity.
pub fn record_key(identity: &str, key: &str) -> String {
    format!("idem#{identity}#{key}")
}

/// Lowercase hex SHA-256 over method, normalised path, raw query and body.
pub fn fingerprint(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    if let Some(query) = query {
        hasher.update(b"?");
        hasher.update(query.as_bytes());
    }
    hasher.update(b"\n");
    hasher.update(Sha256::digest(body));
    hex::encode(hasher.finalize())
}

/// What the request path does after a claim.
#[derive(Debug)]
pub enum Decision {
    /// We hold the lease: forward, then complete or release.
    Forward,
    /// Answer with the stored response (marked `Idempotent-Replayed: true`).
    Replay(StoredResponse),
}

/// Turn a claim outcome into a decision or a rejection.
pub fn decide(outcome: IdemOutcome, fingerprint: &str, now: u64) -> Result<Decision, Rejection> {
    match outcome {
        IdemOutcome::Claimed => Ok(Decision::Forward),
        IdemOutcome::InFlight {
            fingerprint: held, ..
        } if held != fingerprint => Err(Rejection::IdempotencyKeyReused),
        IdemOutcome::InFlight { lease_until, .. } => Err(Rejection::IdempotencyInFlight {
            retry_after: lease_until.saturating_sub(now).max(1),
        }),
        IdemOutcome::Completed {
            fingerprint: held, ..
        } if held != fingerprint => Err(Rejection::IdempotencyKeyReused),
        IdemOutcome::Completed { response, .. } => match response.body {
            Some(_) => Ok(Decision::Replay(response)),
            None => Err(Rejection::IdempotencyResponseNotRetained {
                original_status: response.status,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format() {
        assert!(validate("a").is_ok());
        assert!(validate(&"k".repeat(255)).is_ok());
        assert!(validate(&"k".repeat(256)).is_err());
        assert!(validate("has space").is_err());
        assert!(validate("\"quoted-ok\"").is_ok());
    }

    #[test]
    fn fingerprint_covers_every_part() {
        let base = fingerprint("POST", "/p", Some("a=1"), b"{}");
        assert_ne!(base, fingerprint("PUT", "/p", Some("a=1"), b"{}"));
        assert_ne!(base, fingerprint("POST", "/q", Some("a=1"), b"{}"));
        assert_ne!(base, fingerprint("POST", "/p", Some("a=2"), b"{}"));
        assert_ne!(base, fingerprint("POST", "/p", None, b"{}"));
        assert_ne!(base, fingerprint("POST", "/p", Some("a=1"), b"{ }"));
        assert_eq!(base, fingerprint("POST", "/p", Some("a=1"), b"{}"));
    }

    #[test]
    fn in_flight_retry_after_rounds_up_to_at_least_one() {
        let outcome = IdemOutcome::InFlight {
            fingerprint: "f".into(),
            lease_until: 100,
        };
        assert!(matches!(
            decide(outcome, "f", 100),
            Err(Rejection::IdempotencyInFlight { retry_after: 1 })
        ));
        let outcome = IdemOutcome::InFlight {
            fingerprint: "f".into(),
            lease_until: 130,
        };
        assert!(matches!(
            decide(outcome, "f", 100),
            Err(Rejection::IdempotencyInFlight { retry_after: 30 })
        ));
        let outcome = IdemOutcome::InFlight {
            fingerprint: "f".into(),
            lease_until: 130,
        };
        assert!(matches!(
            decide(outcome, "g", 100),
            Err(Rejection::IdempotencyKeyReused)
        ));
    }
}
