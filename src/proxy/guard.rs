//! The checks phase of a matched, protected route, in the spec's order:
//!
//! ```text
//! head checks (rate limit by an unverified identity, declared size, freshness)
//!   → body (capped) → signature → identity → rate limit by key id → nonce
//!   → idempotency
//! ```
//!
//! On a signed route the scope of nonces and idempotency keys is the
//! verified key ([`identity::scope`]); an identity nobody checked only keys
//! the rate limit. A request refused as `replayed_nonce` gets its key-id
//! rate-limit cell back, so a captured request never spends the budget of
//! the key it claims to be (and still costs one store write at most); a
//! throttled request never reaches the nonce claim, so it never burns its
//! nonce.
//!
//! Each step is one call into its check module; the first failure stops
//! and is handed back as [`Refused`] with whatever is left of the body, so
//! that the one report-mode decision (in the request path) can still
//! forward it. Stateless checks run before anything that writes to the
//! store, so forged, stale or throttled requests never cost a store write.
//! This phase must never forward a request or build a response.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use hyper::body::Incoming;

use super::ctx::RequestCtx;
use super::framing::{content_length, read_body};
use super::scheme::NonceSource;
use super::{Proxy, RouteState};
use crate::checks::freshness::{self, Fence, Fresh};
use crate::checks::idempotency::{self, Step};
use crate::checks::{nonce, StoreAccess};
use crate::config::Identity;
use crate::identity;
use crate::rejection::Rejection;

/// What the checks established for a request that passed them.
pub struct Checked {
    /// The buffered body.
    pub body: Bytes,
    /// What idempotency asks of the forward step.
    pub idempotency: Step,
}

/// A failed check, with whatever is left of the body.
pub struct Refused {
    /// Why.
    pub rejection: Rejection,
    /// The body, as far as it was read.
    pub body: BodyState,
}

/// How far the request body was read when a check failed.
pub enum BodyState {
    /// Not read yet: can still be streamed.
    Unread(Incoming),
    /// Buffered in full.
    Read(Bytes),
    /// Partly consumed (too large or broken): cannot be forwarded.
    Lost,
}

/// What the head checks learnt before the body was read.
struct Head {
    /// The identity known without verification (`client_ip`, `header:`),
    /// or why it cannot be known: refused where it is first needed.
    identity: Result<Option<String>, Rejection>,
    /// The timestamp that passed freshness, when the route checks it.
    fresh: Option<Fresh>,
}

impl Proxy {
    /// Every check of a protected route, in order; the first failure stops.
    pub(super) async fn run_checks(
        &self,
        route: &Arc<RouteState>,
        parts: &Parts,
        body: Incoming,
        ctx: &mut RequestCtx,
    ) -> Result<Checked, Refused> {
        let head = match self.head_checks(route, parts, ctx).await {
            Ok(head) => head,
            Err(rejection) => {
                return Err(Refused {
                    rejection,
                    body: BodyState::Unread(body),
                })
            }
        };
        let max_body = self.config.server.max_body_bytes;
        let body = match read_body(body, max_body, self.upstream.timeout()).await {
            Ok(body) => body,
            Err(rejection) => {
                return Err(Refused {
                    rejection,
                    body: BodyState::Lost,
                })
            }
        };
        match self.body_checks(route, parts, &body, head, ctx).await {
            Ok(idempotency) => Ok(Checked { body, idempotency }),
            Err(rejection) => Err(Refused {
                rejection,
                body: BodyState::Read(body),
            }),
        }
    }

    /// Rate limit by an identity known before any parsing, the declared
    /// body size, freshness. Async only for a cluster rate limit, which may
    /// wait for one reservation write.
    async fn head_checks(
        &self,
        route: &RouteState,
        parts: &Parts,
        ctx: &mut RequestCtx,
    ) -> Result<Head, Rejection> {
        let rule = &route.rule;
        let identity = identity::unverified(
            &rule.identity,
            &parts.headers,
            ctx.peer.addr.ip(),
            &self.config.server.trusted_proxies,
        );
        if let (Some(limiter), false) = (&route.limiter, rule.identity == Identity::KeyId) {
            let id = match &identity {
                Ok(id) => id.as_deref().unwrap_or(""),
                Err(rejection) => return Err(rejection.clone()),
            };
            ctx.identity_tag = Some(identity::log_tag(id));
            ctx.rate_limit = Some(limiter.check(id).await?);
        }
        // The proxy never holds more than max_body_bytes: refuse a declared
        // larger body before reading anything.
        if content_length(parts).is_some_and(|len| len > self.config.server.max_body_bytes as u64) {
            return Err(Rejection::BodyTooLarge);
        }
        let fences: &[Fence] = if rule.nonce.is_some() {
            &route.fences
        } else {
            &[]
        };
        // An RFC 9421 route's freshness is its signed `created`, checked
        // with the signature.
        let fresh = match &rule.freshness {
            Some(freshness) if rule.scheme.rfc9421().is_none() => Some(freshness::check(
                &parts.headers,
                &rule.headers.timestamp,
                freshness,
                self.clock.as_ref(),
                fences,
            )?),
            _ => None,
        };
        Ok(Head { identity, fresh })
    }

    /// Signature, identity and scope, rate limit by key id, nonce,
    /// idempotency.
    async fn body_checks(
        &self,
        route: &RouteState,
        parts: &Parts,
        body: &Bytes,
        head: Head,
        ctx: &mut RequestCtx,
    ) -> Result<Step, Rejection> {
        let rule = &route.rule;
        let signed = self.signature_step(route, parts, body, head.fresh, ctx)?;
        let verified = signed.key;
        ctx.verified_key = verified.map(str::to_owned);
        let unverified = head.identity?;
        if rule.identity == Identity::KeyId && verified.is_none() {
            return Err(Rejection::MissingSignature);
        }
        let scope = identity::scope(verified, unverified.as_deref());
        if ctx.identity_tag.is_none() {
            ctx.identity_tag = Some(identity::log_tag(&scope));
        }
        // The verified key's budget: a cell that a replay takes is given back.
        let charged = match (&route.limiter, verified) {
            (Some(limiter), Some(key)) if rule.identity == Identity::KeyId => {
                ctx.rate_limit = Some(limiter.check(key).await?);
                Some((limiter, key))
            }
            _ => None,
        };
        let access = StoreAccess {
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            on_error: self.config.store.on_error,
            metrics: &self.metrics,
            route: &rule.name,
            key_hash: self.config.store.key_hash_secret.as_ref(),
        };
        if let (Some(required), Some(fresh)) = (rule.nonce, &signed.fresh) {
            let claimed = match &signed.nonce {
                NonceSource::Header => {
                    let name = &rule.headers.nonce;
                    nonce::check(&access, &parts.headers, name, required, &scope, fresh).await
                }
                NonceSource::Signed(value) => {
                    nonce::claim(&access, value.as_deref(), required, &scope, fresh).await
                }
            };
            if let (Err(Rejection::ReplayedNonce), Some((limiter, key))) = (&claimed, charged) {
                limiter.refund(key);
                ctx.rate_limit = None;
            }
            claimed?;
        }
        let Some(idem) = &rule.idempotency else {
            return Ok(Step::None);
        };
        let request = idempotency::Request {
            headers: &parts.headers,
            method: &parts.method,
            path: ctx.target.path(),
            query: parts.uri.query(),
            body,
        };
        let name = &rule.headers.idempotency_key;
        idempotency::check(&access, idem, name, &scope, request).await
    }
}
