//! The checks phase of a matched, protected route, in the spec's order:
//!
//! ```text
//! identity (client_ip, header:, a verified jwt: claim or client_cert)
//!   → head checks (rate limit by that identity, declared size, freshness)
//!   → body (capped) → signature → identity → rate limit by key id → nonce
//!   → idempotency
//! ```
//!
//! A webhook route runs its provider's check (`webhook`) after the body
//! instead of signature, nonce and idempotency.
//!
//! Nonce and idempotency are validated first and then claimed together in
//! one store round trip ([`checks::claim_request`]), decided as if the
//! nonce had been claimed first.
//!
//! On a signed route the scope of nonces and idempotency keys is the
//! verified key, with a verified `jwt:` / `client_cert` identity
//! ([`identity::scope`]); an identity nobody checked only keys the rate
//! limit. A request refused as `replayed_nonce` gets its key-id
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
use crate::checks::{self, nonce, Content};
use crate::config::Identity;
use crate::identity::{self, RouteIdentity};
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
    /// The route's identity known before the body (`client_ip`,
    /// `header:`, `jwt:`, `client_cert`), or why it cannot be known:
    /// refused where it is first needed.
    identity: Result<Option<RouteIdentity>, Rejection>,
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
        // The one place the route's identity is determined.
        let identity = identity::resolve(
            &route.rule.identity,
            &parts.headers,
            identity::Connection {
                ip: ctx.peer.addr.ip(),
                cert: ctx.peer.client_cert(),
            },
            &self.config.server.trusted_proxies,
            self.jwt.as_deref(),
        )
        .await;
        let head = match self.head_checks(route, parts, identity, ctx).await {
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

    /// Rate limit by an identity known before the body, the declared
    /// body size, freshness. Async only for a cluster rate limit, which may
    /// wait for one reservation write.
    async fn head_checks(
        &self,
        route: &RouteState,
        parts: &Parts,
        identity: Result<Option<RouteIdentity>, Rejection>,
        ctx: &mut RequestCtx,
    ) -> Result<Head, Rejection> {
        let rule = &route.rule;
        if let (Some(limiter), false) = (&route.limiter, rule.identity == Identity::KeyId) {
            let id = match &identity {
                Ok(id) => id.as_ref().map_or("", RouteIdentity::as_str),
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
        if let Some(hook) = &rule.webhook {
            head.identity?;
            return self.webhook_checks(route, hook, parts, body, ctx).await;
        }
        // Hashed at most once, whichever checks read it.
        let content = Content::new(body);
        let signed = self.signature_step(route, parts, &content, head.fresh, ctx)?;
        let verified = signed.key;
        ctx.verified_key = verified.map(str::to_owned);
        let identity = head.identity?;
        if rule.identity == Identity::KeyId && verified.is_none() {
            return Err(Rejection::MissingSignature);
        }
        let scope = identity::scope(verified, identity.as_ref());
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
        // The field, not `ctx.request_id()`: the checks below set other fields.
        let access = self.store_access(&rule.name, ctx.request_id.to_str().unwrap_or("-"));
        // Both store-writing checks are validated first (a malformed key no
        // longer burns the nonce), then claimed in one round trip.
        let nonce = match (rule.nonce, &signed.fresh) {
            (Some(required), Some(fresh)) => {
                let value = match &signed.nonce {
                    NonceSource::Header => nonce::read(&parts.headers, &rule.headers.nonce)?,
                    NonceSource::Signed(value) => value.as_deref(),
                };
                nonce::prepare(&access, value, required, &scope, fresh)?
            }
            _ => None,
        };
        let idem = match &rule.idempotency {
            Some(idem) => {
                let request = idempotency::Request {
                    headers: &parts.headers,
                    method: &parts.method,
                    path: ctx.target.path(),
                    query: parts.uri.query(),
                    body: &content,
                };
                let name = &rule.headers.idempotency_key;
                idempotency::prepare(&access, idem, name, &scope, request)?
            }
            None => None,
        };
        let claimed = checks::claim_request(&access, nonce, idem).await;
        if let (Err(Rejection::ReplayedNonce), Some((limiter, key))) = (&claimed, charged) {
            limiter.refund(key);
            ctx.rate_limit = None;
        }
        claimed
    }
}
