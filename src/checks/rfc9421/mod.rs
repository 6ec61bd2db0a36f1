//! Signature, scheme `rfc9421`: RFC 9421 HTTP Message Signatures, with
//! the replay rules the RFC leaves to the application enforced.
//!
//! [`check`] is the entry point, the RFC 9421 twin of
//! [`super::signature::check`]: it reads `Signature-Input` / `Signature`
//! ([`params`]), picks the signature the route names (its `label`, else
//! every one with its `tag`, else all, in order), and accepts the first
//! that passes, in this order:
//!
//! ```text
//! keyid known → alg matches the key → tag → covers the route's components
//!   (+ content-digest when there is a body) → created fresh, expires not
//!   passed → signature base (base) verifies (verify) → Content-Digest
//!   matches the body (digest) when covered
//! ```
//!
//! The signature covers the request as the client sent it (RFC 9421 signs
//! the target as received), while the proxy matches and forwards the
//! normalised path. So that a path spelling can never verify for one
//! route and be matched (or forwarded) as another, a request whose path is
//! not already in normal form is refused as `bad_signature` on these
//! routes: the upstream always receives exactly the signed path.
//!
//! The result carries the verified key id, the freshness of `created` and
//! the `nonce` parameter, which the nonce phase claims exactly like a
//! header nonce. This module must never write to the store, never log a
//! signature, a signature base or a secret, and never accept a signature
//! that does not cover what the route requires.

pub mod base;
pub mod digest;
pub mod fields;
pub mod params;
pub mod sign;
pub mod verify;

#[cfg(test)]
mod check_tests;
#[cfg(test)]
mod known_answers;

use std::collections::BTreeMap;

use http::request::Parts;

use super::freshness::{self, Fence, Fresh};
use super::Content;
use crate::clock::Clock;
use crate::config::{Freshness, Key, Rfc9421Rule, Route};
use crate::rejection::Rejection;
use base::Message;
use fields::Input;
use params::{Candidate, Fields};

/// At most this many signatures are verified per request (bounds CPU).
pub const MAX_VERIFIED: usize = 4;

/// The request as the check reads it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method, target and headers as received.
    pub parts: &'a Parts,
    /// The normalised path the proxy matched and forwards.
    pub path: &'a str,
    /// The buffered body.
    pub body: &'a Content<'a>,
    /// Whether the request arrived over TLS (`@scheme`).
    pub https: bool,
}

/// The clock freshness is decided on, and the route's fences (the memory
/// store's restart fence, a widened skew) where it has nonces.
#[derive(Clone, Copy)]
pub struct Now<'a> {
    /// The proxy's clock.
    pub clock: &'a dyn Clock,
    /// Refuse a `created` whose nonce the store may have forgotten.
    pub fences: &'a [Fence],
}

/// What a verified signature established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'k> {
    /// The verified key's id.
    pub key_id: &'k str,
    /// `created`, checked against the route's freshness.
    pub fresh: Fresh,
    /// The signed `nonce` parameter, for the nonce phase.
    pub nonce: Option<String>,
}

/// The RFC 9421 signature check of a route: `Ok(None)` when the route has
/// no signature rule (or an optional one the request does not use).
pub fn check<'k>(
    keys: &'k BTreeMap<String, Key>,
    route: &Route,
    rule: &Rfc9421Rule,
    request: &Request<'_>,
    now: Now<'_>,
) -> Result<Option<Verified<'k>>, Rejection> {
    let Some(required) = route.signature else {
        return Ok(None);
    };
    // Validation refuses a signature rule without freshness.
    let freshness = route.freshness.as_ref().ok_or(Rejection::Internal)?;
    let Some(fields) = Fields::read(&request.parts.headers)? else {
        return if required {
            Err(Rejection::MissingSignature)
        } else {
            Ok(None)
        };
    };
    let all = fields.candidates()?;
    if request.parts.uri.path() != request.path {
        return Err(Rejection::BadSignature);
    }
    let named = |c: &&Candidate| rule.label.as_ref().is_none_or(|label| label == c.label);
    let tagged = |c: &&Candidate| {
        rule.tag.is_none() || c.params().ok().and_then(|p| p.tag) == rule.tag.as_deref()
    };
    let mut first_error = None;
    for candidate in all.iter().filter(named).filter(tagged).take(MAX_VERIFIED) {
        match verify_one(keys, rule, request, freshness, now, candidate) {
            Ok(verified) => return Ok(Some(verified)),
            Err(rejection) => {
                first_error.get_or_insert(rejection);
            }
        }
    }
    Err(first_error.unwrap_or(Rejection::BadSignature))
}

/// One signature, every rule in order.
fn verify_one<'k>(
    keys: &'k BTreeMap<String, Key>,
    rule: &Rfc9421Rule,
    request: &Request<'_>,
    freshness: &Freshness,
    now: Now<'_>,
    candidate: &Candidate,
) -> Result<Verified<'k>, Rejection> {
    let params = candidate.params()?;
    let key_id = params.keyid.ok_or(Rejection::MissingSignature)?;
    let key = keys.get(key_id).ok_or(Rejection::UnknownKey)?;
    let algorithm = key.material.algorithm();
    if params.alg.is_some_and(|alg| alg != algorithm.name()) {
        return Err(Rejection::BadSignature);
    }
    if rule.tag.is_some() && params.tag != rule.tag.as_deref() {
        return Err(Rejection::BadSignature);
    }
    let input = &candidate.input;
    covers_what_the_route_requires(input, rule, request.body)?;
    let created = params.created.ok_or(Rejection::MissingTimestamp)?;
    let fresh = freshness::instant(i128::from(created) * 1000, freshness, now.clock, now.fences)?;
    if params
        .expires
        .is_some_and(|expires| i128::from(expires) * 1000 < now.clock.now().as_millis() as i128)
    {
        return Err(Rejection::StaleTimestamp);
    }
    let message = Message {
        method: &request.parts.method,
        uri: &request.parts.uri,
        headers: &request.parts.headers,
        https: request.https,
    };
    let base = base::signature_base(&message, input).map_err(|_| Rejection::BadSignature)?;
    if !verify::verifies(&key.material, base.as_bytes(), &candidate.signature) {
        return Err(Rejection::BadSignature);
    }
    if input
        .components
        .iter()
        .any(|c| c.name() == digest::CONTENT_DIGEST.as_str())
    {
        digest::verify(&request.parts.headers, request.body)?;
    }
    Ok(Verified {
        key_id: &key.id,
        fresh,
        nonce: params.nonce.map(str::to_owned),
    })
}

/// Every configured component is covered, and `content-digest` (whole, or
/// `;sf`) when the request has a body.
fn covers_what_the_route_requires(
    input: &Input<'_>,
    rule: &Rfc9421Rule,
    body: &Content<'_>,
) -> Result<(), Rejection> {
    let covered = &input.components;
    let all_configured = rule
        .components
        .iter()
        .all(|wanted| covered.iter().any(|c| base::names(c, wanted)));
    let digest_covered = covered
        .iter()
        .any(|c| c.name() == digest::CONTENT_DIGEST.as_str() && !c.params.contains("key"));
    if all_configured && (body.is_empty() || digest_covered) {
        Ok(())
    } else {
        Err(Rejection::BadSignature)
    }
}
