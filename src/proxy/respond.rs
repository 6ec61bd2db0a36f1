//! The respond phase: the one place an outcome of the request path becomes
//! the client's answer — a rejection turned into problem+json by
//! [`Rejection::to_response`], the request id, rate-limit and `Connection`
//! headers set, `Accept-Signature` on a 401 of an RFC 9421 route — and is
//! counted, logged and access-logged.
//!
//! Log lines carry the route, the reason and an identity tag (a short
//! hash); this phase must never log a header value, a nonce, a key or a
//! client's identity text.

use http::header::{HeaderName, HeaderValue, CONNECTION};
use http::{Response, StatusCode, Version};

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
        let mut response = match result {
            Ok(answer) => {
                self.series(&ctx).request(answer.outcome);
                answer.response
            }
            Err(rejection) => self.refuse(rejection, &ctx),
        };
        self.series(&ctx)
            .duration(ctx.started.elapsed().as_secs_f64());
        // The upstream's HTTP version is its own business: answer as HTTP/1.1
        // (hyper ignores this on HTTP/2 connections).
        *response.version_mut() = Version::HTTP_11;
        let headers = response.headers_mut();
        if let Some(admitted) = &ctx.rate_limit {
            if let Ok(value) = HeaderValue::from_str(&admitted.policy) {
                headers.insert(HeaderName::from_static("ratelimit-policy"), value);
            }
            if let Ok(value) = HeaderValue::from_str(&admitted.header) {
                headers.insert(HeaderName::from_static("ratelimit"), value);
            }
        }
        if ctx.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if self.config.server.access_log {
            tracing::info!(
                target: "replay_guard::access",
                request_id = ctx.request_id.to_str().unwrap_or("-"),
                method = %ctx.method,
                route = ctx.route_name(),
                status = response.status().as_u16(),
                duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
                "access"
            );
        }
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER, ctx.request_id);
        response
    }

    /// Count and log a rejection, and build its problem+json answer.
    fn refuse(&self, rejection: Rejection, ctx: &RequestCtx) -> Response<Body> {
        let route = ctx.route_name();
        let reason = rejection.reason();
        let identity = ctx.identity_tag();
        let id = ctx.request_id.to_str().unwrap_or("-");
        if rejection.is_server_side() {
            self.series(ctx).request(Outcome::Error);
            tracing::warn!(request_id = id, route, reason, identity, "request failed");
        } else {
            self.series(ctx).request(Outcome::Rejected);
            tracing::info!(request_id = id, route, reason, identity, "request rejected");
        }
        self.metrics.rejection(route, reason);
        let mut response = rejection.to_response(id);
        // A 401 on an RFC 9421 route names what the route requires.
        let challenge = ctx.route.as_ref().and_then(|r| r.rule.scheme.rfc9421());
        if let (StatusCode::UNAUTHORIZED, Some(scheme)) = (response.status(), challenge) {
            response
                .headers_mut()
                .insert(ACCEPT_SIGNATURE, scheme.accept_signature.clone());
        }
        response
    }
}

/// RFC 9421 §5.1.
const ACCEPT_SIGNATURE: HeaderName = HeaderName::from_static("accept-signature");

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
