//! Webhook receivers: a route's `webhook = { provider = ... }` profile
//! verifies a delivery exactly as its provider documents it — Stripe
//! ([`stripe`]), GitHub ([`github`]), Slack ([`slack`]) or Standard
//! Webhooks ([`standard`]) — and then claims the provider's own delivery
//! id like an `Idempotency-Key` (through [`idempotency::check`], the
//! same claim, replay and release machinery), so that each delivery is
//! forwarded once: a redelivery after a 2xx gets the stored answer, one
//! after a failure is forwarded again, concurrent duplicates get 409.
//!
//! [`check`] is the entry point. Verification is stateless and runs before
//! the one store write; every MAC comparison is constant-time
//! (`Mac::verify_slice`), against the current and the previous secret.
//! This module must never log or store a delivery id, a signature or a
//! secret (the claimed key is a hash of the id, and the store key a hash
//! of that), and never talk to the upstream.

pub mod github;
pub mod slack;
pub mod standard;
pub mod stripe;

use bytes::Bytes;
use hmac::Mac;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

use super::idempotency::{self, Step};
use super::{Content, StoreAccess};
use crate::config::{Secret, Webhook, WebhookProvider};
use crate::rejection::Rejection;
use crate::store::StoredResponse;

/// The delivery as the webhook check sees it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The request's headers (signature, timestamp, delivery id).
    pub headers: &'a HeaderMap,
    /// The method (part of the claim's fingerprint).
    pub method: &'a Method,
    /// The normalised path (part of the claim's fingerprint).
    pub path: &'a str,
    /// The raw body, exactly as received: what the provider signed.
    pub body: &'a [u8],
}

/// The header the delivery id is handed to the idempotency check under.
const CLAIM_HEADER: HeaderName = HeaderName::from_static("idempotency-key");

/// The webhook check: verify the delivery with the route's provider
/// scheme, then claim its delivery id in the route's scope. What it asks
/// of the rest of the request path is the idempotency check's [`Step`].
pub async fn check(
    access: &StoreAccess<'_>,
    hook: &Webhook,
    delivery: Delivery<'_>,
) -> Result<Step, Rejection> {
    let now = access.clock.now_secs();
    let id = verify(hook, delivery.headers, delivery.body, now)?;
    // The claimed key is a digest of the provider's id: always a
    // well-formed key, never client text, and two spellings of one
    // signature (hex case) are already one id.
    let key = hex::encode(Sha256::digest(id.as_bytes()));
    let mut headers = HeaderMap::with_capacity(1);
    headers.insert(
        CLAIM_HEADER,
        HeaderValue::from_str(&key).map_err(|_| Rejection::Internal)?,
    );
    let scope = format!("webhook:{}:{}", hook.provider, access.route);
    // The fingerprint covers the method and path only: a delivery is one
    // operation by its id (a provider that re-serialises a redelivery still
    // gets the stored answer); its body is already authenticated.
    let request = idempotency::Request {
        headers: &headers,
        method: delivery.method,
        path: delivery.path,
        query: None,
        body: &Content::new(b""),
    };
    match idempotency::check(access, &hook.dedupe, &CLAIM_HEADER, &scope, request).await {
        // The first answer's body was too large to keep: the provider only
        // reads the status, so a redelivery gets that status, empty.
        Err(Rejection::IdempotencyResponseNotRetained { original_status }) => {
            Ok(Step::Replay(StoredResponse {
                status: original_status,
                headers: Vec::new(),
                body: Some(Bytes::new()),
            }))
        }
        other => other,
    }
}

/// Verify a delivery with its provider's scheme at `now` (epoch seconds);
/// its delivery id when it passes.
pub fn verify(
    hook: &Webhook,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<String, Rejection> {
    match hook.provider {
        WebhookProvider::Stripe => stripe::verify(hook, headers, body, now),
        WebhookProvider::Github => github::verify(hook, headers, body),
        WebhookProvider::Slack => slack::verify(hook, headers, body, now),
        WebhookProvider::StandardWebhooks => standard::verify(hook, headers, body, now),
    }
}

/// Whether any `candidate` MAC is HMAC-SHA256 over the concatenated
/// `parts` under any of `secrets` (constant-time per comparison).
fn any_matches(secrets: &[Secret], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    secrets.iter().any(|secret| {
        let mut mac = secret.hmac_sha256();
        for part in parts {
            mac.update(part);
        }
        candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    })
}

/// A header as text: absent or empty → `missing`; repeated or not
/// UTF-8 → `malformed`.
fn header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    missing: Rejection,
    malformed: Rejection,
) -> Result<&'a str, Rejection> {
    match super::header_text(headers, name) {
        None => Err(missing),
        Some(Err(())) => Err(malformed),
        Some(Ok(text)) => Ok(text),
    }
}

/// A timestamp header's text, once it is present, well formed and within
/// the route's tolerance of `now` (what the provider signed is the text).
fn fresh_timestamp<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    now: u64,
    hook: &Webhook,
) -> Result<&'a str, Rejection> {
    let ts = header(
        headers,
        name,
        Rejection::MissingTimestamp,
        Rejection::MalformedTimestamp,
    )?;
    within(unix_secs(ts)?, now, hook)?;
    Ok(ts)
}

/// Integer Unix seconds, digits only (no sign, no fraction).
fn unix_secs(text: &str) -> Result<u64, Rejection> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::MalformedTimestamp);
    }
    text.parse().map_err(|_| Rejection::MalformedTimestamp)
}

/// Whether a signed timestamp is within `tolerance` of `now`, both ways.
fn within(timestamp: u64, now: u64, hook: &Webhook) -> Result<(), Rejection> {
    let tolerance = hook.tolerance.as_secs();
    if now > timestamp.saturating_add(tolerance) {
        return Err(Rejection::StaleTimestamp);
    }
    if timestamp > now.saturating_add(tolerance) {
        return Err(Rejection::FutureTimestamp);
    }
    Ok(())
}

/// A top-level string member of a JSON object body, if the body is one.
fn json_string(body: &[u8], member: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.get(member)? {
        serde_json::Value::String(text) if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue};

    use crate::config::{Idempotency, Secret, Webhook, WebhookProvider};

    /// A rule for `provider` with the given secrets, 300 s tolerance.
    pub fn hook(provider: WebhookProvider, secrets: &[&[u8]]) -> Webhook {
        Webhook {
            provider,
            secrets: secrets.iter().map(|s| Secret::new(s.to_vec())).collect(),
            tolerance: Duration::from_secs(300),
            dedupe: Idempotency {
                required: true,
                ttl: Duration::from_secs(7 * 86_400),
                lease: Duration::from_secs(60),
                max_response_bytes: 65_536,
                release_statuses: (500..=599).collect(),
            },
        }
    }

    /// Headers from name/value pairs.
    pub fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{headers, hook};
    use super::*;
    use crate::clock::Clock;

    #[test]
    fn timestamps_are_digits_and_the_window_is_two_sided() {
        assert_eq!(unix_secs("1764326400"), Ok(1_764_326_400));
        for bad in ["", "+1764326400", "-5", "1764326400.5", "17e8", " 1"] {
            assert_eq!(
                unix_secs(bad),
                Err(Rejection::MalformedTimestamp),
                "{bad:?}"
            );
        }
        let rule = hook(WebhookProvider::Slack, &[b"s"]);
        assert_eq!(within(1000, 1300, &rule), Ok(()));
        assert_eq!(within(1000, 1301, &rule), Err(Rejection::StaleTimestamp));
        assert_eq!(within(1300, 1000, &rule), Ok(()));
        assert_eq!(within(1301, 1000, &rule), Err(Rejection::FutureTimestamp));
    }

    #[tokio::test]
    async fn a_delivery_is_claimed_once_by_its_id_in_the_route_scope() {
        let fixture = crate::checks::Fixture::new();
        let access = fixture.access();
        let rule = hook(WebhookProvider::Github, &[b"It's a Secret to Everybody"]);
        let body = b"Hello, World!";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let first = headers(&[("x-hub-signature-256", sig), ("x-github-delivery", "d-1")]);
        let delivery = |h| Delivery {
            headers: h,
            method: &Method::POST,
            path: "/hooks/github",
            body,
        };
        let Ok(Step::Claimed(claim)) = check(&access, &rule, delivery(&first)).await else {
            panic!("the first delivery is claimed");
        };
        assert_eq!(
            check(&access, &rule, delivery(&first)).await.unwrap_err(),
            Rejection::IdempotencyInFlight { retry_after: 2 }
        );
        // GitHub's GUID is not signed: another one is the same delivery.
        let other = headers(&[("x-hub-signature-256", sig), ("x-github-delivery", "d-2")]);
        assert_eq!(
            check(&access, &rule, delivery(&other)).await.unwrap_err(),
            Rejection::IdempotencyInFlight { retry_after: 2 }
        );
        // A first answer too large to keep: a redelivery gets its status.
        let stored = idempotency::record(202, &HeaderMap::new(), None);
        claim
            .complete(&fixture.store, &stored, fixture.clock.now_secs() + 3600)
            .await
            .unwrap();
        let Ok(Step::Replay(replayed)) = check(&access, &rule, delivery(&first)).await else {
            panic!("a completed delivery replays");
        };
        assert_eq!((replayed.status, replayed.body), (202, Some(Bytes::new())));
    }
}
