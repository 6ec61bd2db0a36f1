//! Nonce: well-formed, then claimed atomically in the store for the
//! request's scope, remembered until its timestamp could no longer pass
//! freshness (`timestamp + max_skew + 60 s`).
//!
//! [`check`] is the entry point: it reads the nonce header, validates it,
//! builds the record key, claims it and applies `on_error`. Its two halves,
//! [`prepare`] (validate, build the claim) and [`conclude`] (the outcome's
//! meaning), let the request path send this claim in the same round trip
//! as the idempotency claim. It must never
//! run before freshness (and the signature, where required), so forged or
//! stale requests never write to the store.

use http::header::HeaderName;
use http::HeaderMap;

use super::freshness::Fresh;
use super::{hashed_key, header_text, owner_token, StoreAccess};
use crate::config::Secret;
use crate::rejection::Rejection;
use crate::store::{NonceClaim, NonceOutcome, StoreError};

/// Margin for clock differences between replicas.
pub const CLOCK_MARGIN_SECS: u64 = 60;

/// The nonce check: the header `name` read, validated and claimed for
/// `scope` (an encoded identity) until `fresh`'s timestamp leaves the
/// `max_skew_secs` window. `required = false` lets a request without a
/// nonce pass unclaimed.
pub async fn check(
    access: &StoreAccess<'_>,
    headers: &HeaderMap,
    name: &HeaderName,
    required: bool,
    scope: &str,
    fresh: &Fresh,
) -> Result<(), Rejection> {
    claim(access, read(headers, name)?, required, scope, fresh).await
}

/// The nonce header's value, if any; a repeated or unreadable one is
/// malformed.
pub fn read<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Rejection> {
    match header_text(headers, name) {
        None => Ok(None),
        Some(Err(())) => Err(Rejection::MalformedNonce),
        Some(Ok(value)) => Ok(Some(value)),
    }
}

/// The nonce check of a value already read — the header's, or an RFC 9421
/// `nonce` signature parameter — validated and claimed exactly as
/// [`check`] does.
pub async fn claim(
    access: &StoreAccess<'_>,
    value: Option<&str>,
    required: bool,
    scope: &str,
    fresh: &Fresh,
) -> Result<(), Rejection> {
    let Some(pending) = prepare(access, value, required, scope, fresh)? else {
        return Ok(());
    };
    conclude(access, access.store.claim_nonce(pending.claim()).await)
}

/// A validated nonce whose record is ready to be claimed: the first half
/// of the check, so that the request path can send this claim together
/// with the idempotency claim ([`crate::checks::claim_request`]).
#[derive(Debug)]
pub struct Pending {
    pk: String,
    owner: String,
    expires_at: u64,
    now: u64,
}

impl Pending {
    /// The store claim of this nonce.
    pub fn claim(&self) -> NonceClaim<'_> {
        NonceClaim {
            pk: &self.pk,
            owner: &self.owner,
            expires_at: self.expires_at,
            now: self.now,
        }
    }
}

/// Validate a nonce value and build its claim; `None` when the route lets
/// a request without a nonce pass. Writes nothing.
pub fn prepare(
    access: &StoreAccess<'_>,
    value: Option<&str>,
    required: bool,
    scope: &str,
    fresh: &Fresh,
) -> Result<Option<Pending>, Rejection> {
    let value = match value.map(str::trim) {
        None | Some("") if required => return Err(Rejection::MissingNonce),
        None | Some("") => return Ok(None),
        Some(value) => value,
    };
    validate(value)?;
    Ok(Some(Pending {
        pk: record_key(access.key_hash, scope, value),
        owner: owner_token(),
        expires_at: expires_at(fresh.seconds_ceil, fresh.max_skew_secs),
        now: access.clock.now_secs(),
    }))
}

/// What a nonce claim's outcome means: pass, `replayed_nonce`, or the
/// store's failure under `on_error`.
pub fn conclude(
    access: &StoreAccess<'_>,
    outcome: Result<NonceOutcome, StoreError>,
) -> Result<(), Rejection> {
    match outcome {
        Ok(NonceOutcome::Claimed) => Ok(()),
        Ok(NonceOutcome::Replayed) => Err(Rejection::ReplayedNonce),
        Err(e) => access.failed(e, "claim_nonce"),
    }
}

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

/// The store key of a nonce in a scope: `nonce#<h>`, no client text
/// (see [`hashed_key`]).
pub fn record_key(key_hash: Option<&Secret>, scope: &str, nonce: &str) -> String {
    hashed_key("nonce", key_hash, scope, nonce)
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
    use crate::clock::Clock;
    use http::HeaderValue;

    #[tokio::test]
    async fn check_claims_once_per_scope_without_a_proxy() {
        let fixture = crate::checks::Fixture::new();
        let (access, clock) = (fixture.access(), &fixture.clock);
        let name = HeaderName::from_static("x-request-nonce");
        let mut headers = HeaderMap::new();
        let fresh = Fresh {
            millis: 1_764_326_400_000,
            seconds_ceil: 1_764_326_400,
            max_skew_secs: 120,
        };
        assert_eq!(
            check(&access, &headers, &name, true, "a", &fresh).await,
            Err(Rejection::MissingNonce)
        );
        assert_eq!(
            check(&access, &headers, &name, false, "a", &fresh).await,
            Ok(())
        );
        headers.insert(name.clone(), HeaderValue::from_static("short"));
        assert_eq!(
            check(&access, &headers, &name, true, "a", &fresh).await,
            Err(Rejection::MalformedNonce)
        );
        headers.insert(
            name.clone(),
            HeaderValue::from_static("4f9c2a7e1b3d4c5a8e6f7a9b0c1d2e3f"),
        );
        assert_eq!(
            check(&access, &headers, &name, true, "a", &fresh).await,
            Ok(())
        );
        assert_eq!(
            check(&access, &headers, &name, true, "a", &fresh).await,
            Err(Rejection::ReplayedNonce)
        );
        assert_eq!(
            check(&access, &headers, &name, true, "b", &fresh).await,
            Ok(())
        );
        // Remembered until timestamp + skew + margin, then forgotten.
        clock.advance(std::time::Duration::from_secs(120 + CLOCK_MARGIN_SECS + 1));
        assert!(clock.now_secs() > expires_at(fresh.seconds_ceil, 120));
        assert_eq!(
            check(&access, &headers, &name, true, "a", &fresh).await,
            Ok(())
        );
    }

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
