//! Which rejection reasons each configured route can produce, so that its
//! `replay_guard_rejections_total{route,reason}` series exist at 0 from
//! startup (rates and alerts work before the first event).
//!
//! This is an upper bound read off the route's rules: it must never name a
//! reason outside [`crate::rejection::Rejection`], and never depend on
//! request data.

use crate::config::{Identity, Route, SignatureScheme, Unmatched};
use crate::rejection::{Malformed, Rejection};

/// Reasons of the store-backed checks (nonce, idempotency).
fn store_failures() -> [Rejection; 3] {
    [
        Rejection::StoreUnavailable,
        Rejection::StoreFull,
        Rejection::Internal,
    ]
}

/// Every reason a request on `rule` can be refused with.
pub(super) fn for_route(rule: &Route) -> Vec<&'static str> {
    let mut reasons: Vec<Rejection> = vec![
        Rejection::UpstreamUnavailable,
        Rejection::UpstreamTimeout,
        Rejection::MalformedRequest(Malformed::BodyUnreadable),
    ];
    if !rule.is_pass_through() {
        reasons.push(Rejection::BodyTooLarge);
    }
    if rule.freshness.is_some() || matches!(rule.scheme, SignatureScheme::Rfc9421(_)) {
        reasons.extend([Rejection::StaleTimestamp, Rejection::FutureTimestamp]);
    }
    if rule.freshness.is_some() {
        reasons.extend([Rejection::MissingTimestamp, Rejection::MalformedTimestamp]);
    }
    if matches!(rule.identity, Identity::Header(_)) && !rule.is_pass_through() {
        reasons.extend([Rejection::MissingIdentity, Rejection::MalformedIdentity]);
    }
    if matches!(rule.identity, Identity::Jwt(_)) {
        reasons.extend([
            Rejection::MissingToken,
            Rejection::BadToken,
            Rejection::MissingIdentity,
            Rejection::MalformedIdentity,
        ]);
    }
    if matches!(rule.identity, Identity::ClientCert) {
        reasons.push(Rejection::MissingIdentity);
    }
    if rule.webhook.is_some() {
        // The provider's signature and timestamp, then the delivery id
        // claimed like an idempotency key.
        reasons.extend([
            Rejection::MissingSignature,
            Rejection::BadSignature,
            Rejection::MissingTimestamp,
            Rejection::MalformedTimestamp,
            Rejection::StaleTimestamp,
            Rejection::FutureTimestamp,
            Rejection::MissingIdempotencyKey,
            Rejection::MalformedIdempotencyKey,
            Rejection::IdempotencyInFlight { retry_after: 1 },
        ]);
        reasons.extend(store_failures());
    }
    if rule.signature.is_some() {
        reasons.extend([
            Rejection::MissingSignature,
            Rejection::UnknownKey,
            Rejection::BadSignature,
        ]);
        if matches!(rule.scheme, SignatureScheme::Rfc9421(_)) {
            reasons.push(Rejection::BadContentDigest);
        }
    }
    if rule.nonce.is_some() {
        reasons.extend([
            Rejection::MissingNonce,
            Rejection::MalformedNonce,
            Rejection::ReplayedNonce,
        ]);
        reasons.extend(store_failures());
    }
    if let Some(idempotency) = &rule.idempotency {
        if idempotency.required {
            reasons.push(Rejection::MissingIdempotencyKey);
        }
        reasons.extend([
            Rejection::MalformedIdempotencyKey,
            Rejection::IdempotencyInFlight { retry_after: 1 },
            Rejection::IdempotencyKeyReused,
            Rejection::IdempotencyResponseNotRetained { original_status: 0 },
        ]);
        reasons.extend(store_failures());
    }
    if rule.rate_limit.is_some() {
        reasons.push(Rejection::RateLimited {
            retry_after: 1,
            policy: String::new(),
            limit: String::new(),
        });
    }
    dedup(reasons)
}

/// Every reason a request no route names can be refused with: framing
/// (refused before routing), then `route_not_allowed` or the upstream's.
pub(super) fn for_unmatched(unmatched: Unmatched) -> Vec<&'static str> {
    let mut reasons = vec![
        Rejection::MalformedRequest(Malformed::AmbiguousPath),
        Rejection::UriTooLong,
    ];
    match unmatched {
        Unmatched::Reject => reasons.push(Rejection::RouteNotAllowed),
        Unmatched::Forward => {
            reasons.extend([Rejection::UpstreamUnavailable, Rejection::UpstreamTimeout])
        }
    }
    dedup(reasons)
}

fn dedup(reasons: Vec<Rejection>) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = reasons.iter().map(Rejection::reason).collect();
    names.sort_unstable();
    names.dedup();
    names
}
