//! The respond phase: the one place an outcome of the request path becomes
//! the client's answer — a rejection turned into problem+json by
//! [`Rejection::to_response`], the request id, rate-limit and `Connection`
//! headers set, `Accept-Signature` on a 401 of an RFC 9421 route — and is
//! counted, logged and access-logged.
//!
//! Log lines carry the route, the reason and an identity tag (a short
//! hash); this phase must never log a header value, a nonce, a key or a
//! client's identity text.

use http::header::{HeaderName, HeaderValue, CONNECTION, WWW_AUTHENTICATE};
use http::{Response, StatusCode, Version};

use super::access_log::{Entry, Logged, UpstreamTime};
use super::ctx::RequestCtx;
use super::{Answer, Proxy};
use crate::body::Body;
use crate::forward::REQUEST_ID_HEADER;
use crate::metrics::{Metrics, Outcome};
use crate::rejection::Rejection;

impl Proxy {
    /// Turn the request path's result into the answer.
    pub(super) fn respond(
        &self,
        result: Result<Answer, Rejection>,
        ctx: RequestCtx,
    ) -> Response<Body> {
        if let Some(provider) = ctx.webhook_provider() {
            let outcome = match &result {
                Ok(answer) => answer.outcome,
                Err(rejection) if rejection.is_server_side() => Outcome::Error,
                Err(_) => Outcome::Rejected,
            };
            self.metrics.webhook(ctx.route_name(), provider, outcome);
        }
        let (mut response, reason) = match result {
            Ok(answer) => {
                self.series(&ctx).request(answer.outcome);
                (answer.response, ctx.report)
            }
            Err(rejection) => {
                let reason = rejection.reason();
                (self.refuse(rejection, &ctx), Some(reason))
            }
        };
        self.series(&ctx)
            .duration(ctx.started.elapsed().as_secs_f64());
        // The upstream's HTTP version is its own business: answer as HTTP/1.1
        // (hyper ignores this on HTTP/2 connections).
        *response.version_mut() = Version::HTTP_11;
        let headers = response.headers_mut();
        // Appended, never written over: an upstream's own RateLimit fields
        // stay, and the proxy's policy is one more list member
        // (draft-ietf-httpapi-ratelimit-headers).
        if let Some(admitted) = &ctx.rate_limit {
            if let Ok(value) = HeaderValue::from_str(&admitted.policy) {
                headers.append(HeaderName::from_static("ratelimit-policy"), value);
            }
            if let Ok(value) = HeaderValue::from_str(&admitted.header) {
                headers.append(HeaderName::from_static("ratelimit"), value);
            }
        }
        if ctx.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if self.config.server.access_log {
            response = self.access_logged(response, reason, &ctx);
        }
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER, ctx.request_id);
        response
    }

    /// The answer whose body writes the access log line once sent.
    fn access_logged(
        &self,
        response: Response<Body>,
        reason: Option<&'static str>,
        ctx: &RequestCtx,
    ) -> Response<Body> {
        let (head, body) = response.into_parts();
        let entry = Entry {
            fields: self.config.server.access_log_fields,
            request_id: ctx.request_id.clone(),
            method: ctx.method.clone(),
            route: ctx.route_name().to_owned(),
            status: head.status.as_u16(),
            reason,
            started: ctx.started,
            upstream: head.extensions.get::<UpstreamTime>().map(|t| t.0),
            bytes_in: ctx.bytes_in.clone(),
            client: ctx.peer.addr,
            key_id: ctx.verified_key.clone(),
            identity: ctx.identity_tag.clone(),
        };
        Response::from_parts(head, Logged::wrap(body, entry))
    }

    /// Count and log a rejection, and build its problem+json answer.
    fn refuse(&self, rejection: Rejection, ctx: &RequestCtx) -> Response<Body> {
        let route = ctx.route_name();
        let reason = rejection.reason();
        let identity = ctx.identity_tag();
        let webhook = ctx.webhook_provider();
        let id = ctx.request_id.to_str().unwrap_or("-");
        if rejection.is_server_side() {
            self.series(ctx).request(Outcome::Error);
            tracing::warn!(
                request_id = id,
                route,
                reason,
                identity,
                webhook,
                "request failed"
            );
        } else {
            self.series(ctx).request(Outcome::Rejected);
            tracing::info!(
                request_id = id,
                route,
                reason,
                identity,
                webhook,
                "request rejected"
            );
        }
        self.metrics.rejection(route, reason);
        let mut response = rejection.to_response(id);
        if response.status() == StatusCode::UNAUTHORIZED {
            challenge(response.headers_mut(), reason, ctx);
        }
        response
    }
}

/// RFC 9421 §5.1.
const ACCEPT_SIGNATURE: HeaderName = HeaderName::from_static("accept-signature");

/// Every 401 says how to authenticate (RFC 9110 §11.6.1): a bearer
/// challenge for a token refusal (RFC 6750 §3), else a `Signature`
/// challenge naming the route's scheme; an RFC 9421 route adds
/// `Accept-Signature` with what it requires (RFC 9421 §5.1).
fn challenge(headers: &mut http::HeaderMap, reason: &str, ctx: &RequestCtx) {
    let rfc9421 = ctx.route.as_ref().and_then(|r| r.rule.scheme.rfc9421());
    let value = match (reason, rfc9421) {
        ("missing_token", _) => r#"Bearer realm="replay-guard""#,
        ("bad_token", _) => r#"Bearer realm="replay-guard", error="invalid_token""#,
        (_, Some(_)) => r#"Signature realm="replay-guard", scheme="rfc9421""#,
        (_, None) => r#"Signature realm="replay-guard", scheme="v1""#,
    };
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
    if let Some(scheme) = rfc9421 {
        headers.insert(ACCEPT_SIGNATURE, scheme.accept_signature.clone());
    }
}

/// Counts a request in `replay_guard_in_flight_requests` until dropped
/// (also when the client hangs up and the request future is dropped).
pub(super) struct InFlight<'m>(&'m Metrics);

impl<'m> InFlight<'m> {
    /// Count one more request in flight.
    pub(super) fn enter(metrics: &'m Metrics) -> Self {
        metrics.in_flight().inc();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight().dec();
    }
}
