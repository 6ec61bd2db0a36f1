//! Idempotency keys (after draft-ietf-httpapi-idempotency-key-header): the
//! key's format, the request fingerprint, the claim and what its outcome
//! means, and the fenced writes that complete or release a claim.
//!
//! [`check`] is the entry point: it reads the key header, validates it,
//! builds the record key and fingerprint, claims it and applies `on_error`;
//! its halves [`prepare`] and [`Pending::conclude`] let the request path
//! send the claim in the same round trip as the nonce claim.
//! [`Landing`] holds the answers this process is still recording, so a
//! retry it receives before the record lands gets the stored answer.
//! A [`Claim`] it returns is completed or released by its holder (the
//! request path, after forwarding); every such write is conditional on the
//! claim's owner token. This module must never talk to the upstream.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, SET_COOKIE};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

use super::{hashed_key, header_text, owner_token, Content, StoreAccess};
use crate::config::{Idempotency, Secret};
use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::store::{Fenced, IdemClaim, IdemOutcome, Store, StoreError, StoredResponse};

mod landing;
pub use landing::{Answered, Held, Landing};

/// What the idempotency check asks of the rest of the request path.
#[derive(Debug)]
pub enum Step {
    /// No idempotency key on this request (or the route has no rule, or the
    /// store failed and `on_error = "allow"`): forward as usual.
    None,
    /// We hold the lease: forward, then complete or release.
    Claimed(Claim),
    /// A completed record answers this request.
    Replay(StoredResponse),
}

/// A claimed idempotency key: the record's key, our owner token, the
/// request's fingerprint and the rule it was claimed under.
#[derive(Debug, Clone)]
pub struct Claim {
    pk: String,
    owner: String,
    fingerprint: String,
    /// The route's idempotency rule.
    pub rule: Idempotency,
}

/// What the request looks like to the idempotency check.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request's headers (the key is read from them).
    pub headers: &'a HeaderMap,
    /// The method (fingerprinted).
    pub method: &'a Method,
    /// The normalised path (fingerprinted).
    pub path: &'a str,
    /// The raw query (fingerprinted).
    pub query: Option<&'a str>,
    /// The body (fingerprinted).
    pub body: &'a Content<'a>,
}

/// The idempotency check: the key header `name` under `rule`, scoped by
/// `scope` (an encoded identity).
pub async fn check(
    access: &StoreAccess<'_>,
    rule: &Idempotency,
    name: &HeaderName,
    scope: &str,
    request: Request<'_>,
) -> Result<Step, Rejection> {
    let Some(pending) = prepare(access, rule, name, scope, request)? else {
        return Ok(Step::None);
    };
    let outcome = access.store.claim_idempotency(pending.claim()).await;
    pending.conclude(access, outcome)
}

/// A validated key whose claim is ready to be sent: the first half of the
/// check, so that the request path can send it together with the nonce
/// claim ([`crate::checks::claim_request`]).
#[derive(Debug)]
pub struct Pending {
    claim: Claim,
    /// The answer this process is still recording under the key, looked
    /// up before the claim is sent ([`Landing`]).
    answered: Option<Answered>,
    lease_until: u64,
    now: u64,
}

/// Read and validate the key header and build the claim; `None` when the
/// request has no key and the rule does not require one. Writes nothing.
pub fn prepare(
    access: &StoreAccess<'_>,
    rule: &Idempotency,
    name: &HeaderName,
    scope: &str,
    request: Request<'_>,
) -> Result<Option<Pending>, Rejection> {
    let key = match header_text(request.headers, name) {
        None if rule.required => return Err(Rejection::MissingIdempotencyKey),
        None => return Ok(None),
        Some(Err(())) => return Err(Rejection::MalformedIdempotencyKey),
        Some(Ok(key)) => key,
    };
    let key = unquote(key)?;
    validate(&key)?;
    let now = access.clock.now_secs();
    let pk = record_key(access.key_hash, scope, &key);
    Ok(Some(Pending {
        answered: access.landing.answered(&pk),
        claim: Claim {
            pk,
            owner: owner_token(),
            fingerprint: fingerprint(
                request.method.as_str(),
                request.path,
                request.query,
                request.body,
            ),
            rule: rule.clone(),
        },
        lease_until: now + rule.lease.as_secs(),
        now,
    }))
}

impl Pending {
    /// The store claim of this key: in flight with a lease.
    pub fn claim(&self) -> IdemClaim<'_> {
        IdemClaim {
            pk: &self.claim.pk,
            owner: &self.claim.owner,
            fingerprint: &self.claim.fingerprint,
            lease_until: self.lease_until,
            expires_at: self.lease_until,
            now: self.now,
        }
    }

    /// The claim this would hold if its write landed, for a caller that
    /// must give it back (the request was refused for another reason).
    pub fn into_claim(self) -> Claim {
        self.claim
    }

    /// What the claim's outcome means: forward holding the lease, replay
    /// the stored answer (the store's, or one this process is still
    /// recording: [`Landing`]), a rejection, or the store's failure under
    /// `on_error` (failed open: forward without idempotency).
    pub fn conclude(
        self,
        access: &StoreAccess<'_>,
        outcome: Result<IdemOutcome, StoreError>,
    ) -> Result<Step, Rejection> {
        match outcome {
            Ok(outcome) => {
                let outcome = landing::resolve(outcome, self.answered);
                Ok(match decide(outcome, &self.claim.fingerprint, self.now)? {
                    Decision::Forward => Step::Claimed(self.claim),
                    Decision::Replay(stored) => Step::Replay(stored),
                })
            }
            Err(e) => {
                access.failed(e, "claim_idempotency")?;
                Ok(Step::None)
            }
        }
    }
}

impl Claim {
    /// Hold `stored` in `landing` while its record is written, so a retry
    /// this process receives meanwhile gets it (drop the guard once the
    /// write has ended).
    pub fn hold(&self, landing: &Arc<Landing>, stored: Arc<StoredResponse>) -> Held {
        landing.hold(&self.pk, &self.fingerprint, stored)
    }

    /// Record the answer: the record becomes completed until `expires_at`,
    /// unless another claimant took it over.
    pub async fn complete(
        &self,
        store: &dyn Store,
        stored: &StoredResponse,
        expires_at: u64,
    ) -> Result<Fenced, StoreError> {
        store
            .complete_idempotency(&self.pk, &self.owner, stored, expires_at)
            .await
    }

    /// Give the key back (the request never ran, or its answer is one the
    /// rule releases): a retry may run. A failure only logs: the record
    /// expires with its lease.
    pub async fn release(&self, store: &dyn Store, metrics: &Metrics, request_id: &str) {
        match store.release_idempotency(&self.pk, &self.owner).await {
            Ok(Fenced::Done) => {}
            Ok(Fenced::LostOwnership) => metrics.lost_ownership("release_idempotency"),
            Err(e) => {
                tracing::warn!(request_id, error = %e, "could not release an idempotency claim; it expires with its lease")
            }
        }
    }
}

/// The key as RFC 8941 sf-string (`"abc"`, the draft's form) or as the
/// bare token (`abc`): both spellings are one key. A quoted value must be
/// a well-formed sf-string (printable ASCII, `\\` escaping only `"` and
/// `\\`).
pub fn unquote(value: &str) -> Result<std::borrow::Cow<'_, str>, Rejection> {
    let Some(inner) = value.strip_prefix('"') else {
        return Ok(std::borrow::Cow::Borrowed(value));
    };
    let Some(inner) = inner.strip_suffix('"') else {
        return Err(Rejection::MalformedIdempotencyKey);
    };
    if !inner.contains('\\') && !inner.contains('"') {
        return Ok(std::borrow::Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => out.push(escaped),
                _ => return Err(Rejection::MalformedIdempotencyKey),
            },
            '"' => return Err(Rejection::MalformedIdempotencyKey),
            c => out.push(c),
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// What is kept of an upstream answer: its status, its end-to-end headers
/// but `Set-Cookie` (a replay never hands one client's session to a
/// retry), and the body when it was retained.
pub fn record(status: u16, headers: &HeaderMap, body: Option<Bytes>) -> StoredResponse {
    StoredResponse {
        status,
        headers: headers
            .iter()
            .filter(|(name, _)| *name != SET_COOKIE)
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body,
    }
}

/// Whether a key is 1–255 visible ASCII characters.
pub fn validate(key: &str) -> Result<(), Rejection> {
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Rejection::MalformedIdempotencyKey)
    }
}

/// The store key of an idempotency key in a scope: `idem#<h>`, no client
/// text (see [`hashed_key`]).
pub fn record_key(key_hash: Option<&Secret>, scope: &str, key: &str) -> String {
    hashed_key("idem", key_hash, scope, key)
}

/// Lowercase hex SHA-256 over method, normalised path, raw query and body.
pub fn fingerprint(method: &str, path: &str, query: Option<&str>, body: &Content<'_>) -> String {
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
    hasher.update(body.sha256());
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

/// The longest `Retry-After` on `idempotency_in_flight`: most first
/// attempts answer in well under the lease, so the hint is a short poll
/// interval bounded by the lease's remaining seconds, never the whole lease.
pub const IN_FLIGHT_RETRY_HINT_SECS: u64 = 2;

/// Turn a claim outcome into a decision or a rejection.
pub fn decide(outcome: IdemOutcome, fingerprint: &str, now: u64) -> Result<Decision, Rejection> {
    match outcome {
        IdemOutcome::Claimed => Ok(Decision::Forward),
        IdemOutcome::InFlight {
            fingerprint: held, ..
        } if held != fingerprint => Err(Rejection::IdempotencyKeyReused),
        IdemOutcome::InFlight { lease_until, .. } => Err(Rejection::IdempotencyInFlight {
            retry_after: lease_until
                .saturating_sub(now)
                .clamp(1, IN_FLIGHT_RETRY_HINT_SECS),
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
    fn quoted_and_bare_keys_are_one_key() {
        assert_eq!(unquote("abc").unwrap(), "abc");
        assert_eq!(unquote("\"abc\"").unwrap(), "abc");
        assert_eq!(unquote(r#""a\"b\\c""#).unwrap(), r#"a"b\c"#);
        assert_eq!(unquote("\"abc"), Err(Rejection::MalformedIdempotencyKey));
        assert_eq!(unquote(r#""a\x""#), Err(Rejection::MalformedIdempotencyKey));
        assert_eq!(unquote(r#""a"b""#), Err(Rejection::MalformedIdempotencyKey));
        assert!(validate(&unquote("\"\"").unwrap()).is_err(), "an empty key");
    }

    #[test]
    fn fingerprint_covers_every_part() {
        let of = |method, path, query, body: &[u8]| {
            fingerprint(method, path, query, &Content::new(body))
        };
        let base = of("POST", "/p", Some("a=1"), b"{}");
        assert_ne!(base, of("PUT", "/p", Some("a=1"), b"{}"));
        assert_ne!(base, of("POST", "/q", Some("a=1"), b"{}"));
        assert_ne!(base, of("POST", "/p", Some("a=2"), b"{}"));
        assert_ne!(base, of("POST", "/p", None, b"{}"));
        assert_ne!(base, of("POST", "/p", Some("a=1"), b"{ }"));
        assert_eq!(base, of("POST", "/p", Some("a=1"), b"{}"));
    }

    #[test]
    fn in_flight_retry_after_is_a_short_hint_bounded_by_the_lease() {
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
            Err(Rejection::IdempotencyInFlight { retry_after: 2 })
        ));
        let outcome = IdemOutcome::InFlight {
            fingerprint: "f".into(),
            lease_until: 101,
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
            decide(outcome, "g", 100),
            Err(Rejection::IdempotencyKeyReused)
        ));
    }
}

/// The entry point against the memory store and a manual clock.
#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::clock::Clock;
    use http::HeaderValue;
    use std::time::Duration;

    fn rule() -> Idempotency {
        Idempotency {
            required: true,
            ttl: Duration::from_secs(3600),
            lease: Duration::from_secs(60),
            max_response_bytes: 1024,
            release_statuses: vec![503],
        }
    }

    #[tokio::test]
    async fn claim_then_in_flight_then_replay_or_reuse() {
        let fixture = crate::checks::Fixture::new();
        let (access, clock, store) = (fixture.access(), &fixture.clock, &fixture.store);
        let name = HeaderName::from_static("idempotency-key");
        let mut headers = HeaderMap::new();
        fn request<'a>(headers: &'a HeaderMap, body: &'a Content<'a>) -> Request<'a> {
            Request {
                headers,
                method: &Method::POST,
                path: "/payments",
                query: None,
                body,
            }
        }
        let rule = rule();
        let (json, spaced) = (Content::new(b"{}"), Content::new(b"{ }"));
        let missing = check(&access, &rule, &name, "a", request(&headers, &json)).await;
        assert_eq!(missing.unwrap_err(), Rejection::MissingIdempotencyKey);
        headers.insert(name.clone(), HeaderValue::from_static("k-1"));
        let Ok(Step::Claimed(claim)) =
            check(&access, &rule, &name, "a", request(&headers, &json)).await
        else {
            panic!("the first request claims the key");
        };
        let again = check(&access, &rule, &name, "a", request(&headers, &json)).await;
        assert_eq!(
            again.unwrap_err(),
            Rejection::IdempotencyInFlight {
                retry_after: IN_FLIGHT_RETRY_HINT_SECS
            }
        );
        assert!(
            matches!(
                check(&access, &rule, &name, "b", request(&headers, &json)).await,
                Ok(Step::Claimed(_))
            ),
            "keys are scoped per identity"
        );
        let stored = record(201, &HeaderMap::new(), Some(Bytes::from_static(b"done")));
        let expires_at = clock.now_secs() + 3600;
        assert_eq!(
            claim.complete(store, &stored, expires_at).await.unwrap(),
            Fenced::Done
        );
        let Ok(Step::Replay(replayed)) =
            check(&access, &rule, &name, "a", request(&headers, &json)).await
        else {
            panic!("a completed key replays");
        };
        assert_eq!(replayed, stored);
        let reused = check(&access, &rule, &name, "a", request(&headers, &spaced)).await;
        assert_eq!(reused.unwrap_err(), Rejection::IdempotencyKeyReused);
    }
}
