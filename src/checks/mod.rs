//! The checks of the request path, one module each, cheapest first:
//! [`rate_limit`] → [`freshness`] → [`signature`] (scheme `v1`) or
//! [`rfc9421`] → [`nonce`] → [`idempotency`]; on a webhook route,
//! [`webhook`] (the provider's scheme, then its delivery id claimed through
//! [`idempotency`]) instead of freshness, signature and nonce.
//!
//! Each check is whole in its module: it reads its own headers, builds its
//! own store keys, calls the store (through [`StoreAccess`]), applies
//! `on_error` and turns every outcome into a typed
//! [`Rejection`]. The two checks that write to the store, nonce and
//! idempotency, are also split in halves (`prepare`, `conclude`) so that
//! [`claim_request`] can send both claims in one store round trip. Each has one entry point
//! whose inputs (store, clock, rule, headers) are passed in, so it can be
//! unit-tested against the memory store and a manual clock without a
//! proxy. None of them builds an HTTP response, forwards anything or knows
//! about report mode.

pub mod content;
pub mod freshness;
pub mod idempotency;
pub mod nonce;
pub mod rate_limit;
pub mod rfc9421;
pub mod signature;
pub mod webhook;

use http::header::HeaderName;
use http::HeaderMap;

use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::{OnStoreError, Secret};
use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::store::{IdemOutcome, Store, StoreError};
pub use content::Content;

/// A header's value as text when present and non-empty (after trimming).
/// Non-UTF-8 or repeated headers count as present but unreadable: `Err(())`.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Result<&'a str, ()>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    match first.to_str() {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(Ok(text.trim())),
        Err(_) => Some(Err(())),
    }
}

/// What a check that writes to the store needs: the store, the clock the
/// conditions are decided on, and what to do when the store fails.
#[derive(Debug, Clone, Copy)]
pub struct StoreAccess<'a> {
    /// Replay state.
    pub store: &'a dyn Store,
    /// The proxy's clock (`:now` in every condition).
    pub clock: &'a dyn Clock,
    /// `[store] on_error`.
    pub on_error: OnStoreError,
    /// Where a fail-open is counted.
    pub metrics: &'a Metrics,
    /// The route's name, for the fail-open count and the log line.
    pub route: &'a str,
    /// The request's id, for the log line.
    pub request_id: &'a str,
    /// `[store] key_hash_secret_env`: when set, store keys are an HMAC
    /// under it instead of a plain SHA-256 (see [`hashed_key`]).
    pub key_hash: Option<&'a Secret>,
    /// Answers this process is still recording (an in-flight record it
    /// already answered is replayed from here).
    pub landing: &'a idempotency::Landing,
}

impl StoreAccess<'_> {
    /// Apply `on_error` to a failed store call: fail closed with a
    /// rejection, or fail open (`Ok`, counted and logged). Only an outage
    /// is ever failed open: a full memory store is 503 `store_full`, and a
    /// call the store refuses as invalid is 500 `internal_error`, logged
    /// with its cause.
    pub fn failed(&self, error: StoreError, op: &str) -> Result<(), Rejection> {
        let (route, request_id) = (self.route, self.request_id);
        match (self.on_error, &error) {
            (OnStoreError::Allow, StoreError::Unavailable(_)) => {
                self.metrics.fail_open(route);
                tracing::warn!(request_id, route, op, error = %error, "store failed; forwarding unchecked (on_error = \"allow\")");
                Ok(())
            }
            (_, StoreError::Full) => Err(Rejection::StoreFull),
            (_, StoreError::Invalid(_)) => {
                tracing::error!(request_id, route, op, error = %error, "store refused the call as invalid; refusing with 500 (a bug of ours, never failed open)");
                Err(Rejection::Internal)
            }
            (_, StoreError::Unavailable(_)) => {
                tracing::warn!(request_id, route, op, error = %error, "store failed; refusing (on_error = \"reject\")");
                Err(Rejection::StoreUnavailable)
            }
        }
    }
}

/// A store key holding no client text (SPEC §6): `<kind>#<h>`, `<h>` the
/// 32 lowercase hex digits of the first 16 bytes of SHA-256 — or of
/// HMAC-SHA256 under `key_hash` — over an unambiguous encoding of the kind,
/// the scope and the value (each length-prefixed, so no two different
/// (scope, value) pairs encode alike).
pub fn hashed_key(kind: &str, key_hash: Option<&Secret>, scope: &str, value: &str) -> String {
    let mut input = Vec::with_capacity(kind.len() + scope.len() + value.len() + 12);
    for part in [kind, scope, value] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        input.extend_from_slice(&len.to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    let digest: [u8; 32] = match key_hash.map(Secret::hmac_sha256) {
        Some(mut mac) => {
            mac.update(&input);
            mac.finalize().into_bytes().into()
        }
        // Unkeyed when no key_hash secret is configured.
        None => Sha256::digest(&input).into(),
    };
    format!("{kind}#{}", hex::encode(&digest[..16]))
}

/// The store-writing checks of one request, nonce then idempotency, in
/// **one** store round trip: both claims are sent at once
/// ([`Store::claim_pair`]) when the request carries both, so a client never
/// waits for two writes in sequence before its request is forwarded.
///
/// Decided in the spec's order, as if the nonce had been claimed first:
/// - the nonce refused (`replayed_nonce`, or a store failure failing
///   closed) refuses the request whatever the key's outcome; if the key's
///   claim landed, it is released before answering (fenced by the owner
///   token), so a replay never holds a key and never forwards;
/// - the nonce claimed (or failed open): the key's outcome decides —
///   forward holding the lease, the stored answer (a retry with a fresh
///   nonce still gets it), 409 in flight, 422 reused, or the store's
///   failure under `on_error`. The fresh nonce stays consumed in every one
///   of these cases, exactly as when the claims ran one after the other.
pub async fn claim_request(
    access: &StoreAccess<'_>,
    nonce: Option<nonce::Pending>,
    idem: Option<idempotency::Pending>,
) -> Result<idempotency::Step, Rejection> {
    let store = access.store;
    match (nonce, idem) {
        (None, None) => Ok(idempotency::Step::None),
        (Some(pending), None) => {
            nonce::conclude(access, store.claim_nonce(pending.claim()).await)?;
            Ok(idempotency::Step::None)
        }
        (None, Some(pending)) => {
            let outcome = store.claim_idempotency(pending.claim()).await;
            pending.conclude(access, outcome)
        }
        (Some(nonce_claim), Some(idem_claim)) => {
            let outcome = store
                .claim_pair(nonce_claim.claim(), idem_claim.claim())
                .await;
            let key_landed = matches!(outcome.idem, Ok(IdemOutcome::Claimed));
            if let Err(rejection) = nonce::conclude(access, outcome.nonce) {
                if key_landed {
                    idem_claim
                        .into_claim()
                        .release(store, access.metrics, access.request_id)
                        .await;
                }
                return Err(rejection);
            }
            idem_claim.conclude(access, outcome.idem)
        }
    }
}

/// A random token identifying one claim attempt (the `owner` of a record).
pub fn owner_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What the checks' unit tests run against: the memory store, a manual
/// clock at 2025-11-28T10:40:00Z and fresh metrics, failing closed.
#[cfg(test)]
pub(crate) struct Fixture {
    pub clock: std::sync::Arc<crate::clock::ManualClock>,
    pub store: crate::store::memory::MemoryStore,
    pub metrics: Metrics,
    pub landing: idempotency::Landing,
}

#[cfg(test)]
impl Fixture {
    pub fn new() -> Self {
        Self {
            clock: crate::clock::ManualClock::at_secs(1_764_326_400),
            store: crate::store::memory::MemoryStore::new(100),
            metrics: Metrics::new(),
            landing: idempotency::Landing::default(),
        }
    }

    pub fn access(&self) -> StoreAccess<'_> {
        StoreAccess {
            store: &self.store,
            clock: self.clock.as_ref(),
            on_error: OnStoreError::Reject,
            metrics: &self.metrics,
            route: "r",
            request_id: "test",
            key_hash: None,
            landing: &self.landing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claim_request_decides_the_nonce_first_and_gives_back_a_key_it_cannot_use() {
        use crate::checks::freshness::Fresh;
        use crate::checks::idempotency::{Request, Step};
        use http::{HeaderValue, Method};
        let fixture = Fixture::new();
        let access = fixture.access();
        let fresh = Fresh {
            millis: 1_764_326_400_000,
            seconds_ceil: 1_764_326_400,
            max_skew_secs: 120,
        };
        let rule = crate::config::Idempotency {
            required: true,
            ttl: std::time::Duration::from_secs(3600),
            lease: std::time::Duration::from_secs(60),
            max_response_bytes: 1024,
            release_statuses: vec![],
        };
        let name = HeaderName::from_static("idempotency-key");
        let claim = |nonce_value: &'static str, key: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from_static(key));
            let content = Content::new(b"{}");
            let request = Request {
                headers: &headers,
                method: &Method::POST,
                path: "/pay",
                query: None,
                body: &content,
            };
            let nonce = nonce::prepare(&access, Some(nonce_value), true, "a", &fresh);
            let idem = idempotency::prepare(&access, &rule, &name, "a", request);
            (nonce.unwrap(), idem.unwrap())
        };
        let (n, i) = claim("nonce-0000000000001", "k-1");
        assert!(matches!(
            claim_request(&access, n, i).await,
            Ok(Step::Claimed(_))
        ));
        // The same nonce with a fresh key: refused, and the key given back.
        let (n, i) = claim("nonce-0000000000001", "k-2");
        assert_eq!(
            claim_request(&access, n, i).await.unwrap_err(),
            Rejection::ReplayedNonce
        );
        let (n, i) = claim("nonce-0000000000002", "k-2");
        assert!(matches!(
            claim_request(&access, n, i).await,
            Ok(Step::Claimed(_))
        ));
        // A fresh nonce on a key in flight: 409, and the nonce is consumed.
        let (n, i) = claim("nonce-0000000000003", "k-1");
        assert!(matches!(
            claim_request(&access, n, i).await,
            Err(Rejection::IdempotencyInFlight { .. })
        ));
        let (n, i) = claim("nonce-0000000000003", "k-9");
        assert_eq!(
            claim_request(&access, n, i).await.unwrap_err(),
            Rejection::ReplayedNonce
        );
    }

    #[test]
    fn hashed_keys_hold_no_client_text_and_separate_scopes_kinds_and_secrets() {
        let key = hashed_key("nonce", None, "header:Bearer tok", "4f9c2a7e1b3d4c5a");
        let (kind, h) = key.split_once('#').expect("kind#hash");
        assert_eq!(kind, "nonce");
        assert_eq!(h.len(), 32);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(!key.contains("Bearer") && !key.contains("4f9c2a7e"));
        // The length prefixes keep ("a#b", "c") and ("a", "b#c") apart.
        assert_ne!(
            hashed_key("nonce", None, "a#b", "c"),
            hashed_key("nonce", None, "a", "b#c")
        );
        assert_ne!(
            hashed_key("nonce", None, "a", "v"),
            hashed_key("idem", None, "a", "v")[1..]
        );
        let secret = Secret::new(b"k1".to_vec());
        let other = Secret::new(b"k2".to_vec());
        let keyed = hashed_key("nonce", Some(&secret), "a", "v");
        assert_ne!(keyed, hashed_key("nonce", None, "a", "v"));
        assert_ne!(keyed, hashed_key("nonce", Some(&other), "a", "v"));
        assert_eq!(keyed, hashed_key("nonce", Some(&secret), "a", "v"));
    }
}
