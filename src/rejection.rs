//! Every reason the proxy answers instead of the upstream, and the one
//! place they become HTTP responses.
//!
//! Each check returns a [`Rejection`] named after the condition; the
//! request path never builds an error response itself. The body is
//! `application/problem+json` (RFC 9457) with a stable `reason` member and
//! says only what the client needs: details go to the log. This module must
//! never put a secret, a nonce, an idempotency key, a signature or a bearer
//! token into a response.

use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde_json::json;

use crate::body::{full, Body};

/// What is wrong with a request the proxy refuses as `malformed_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1).
    BothFramings,
    /// More than one `Host` header (RFC 9112 §3.2).
    SeveralHosts,
    /// An absolute-form target with userinfo (`http://user:pw@host/`),
    /// deprecated by RFC 9110 §4.2.4.
    Userinfo,
    /// An encoded slash, backslash, control character or broken escape.
    AmbiguousPath,
    /// The body did not arrive within the upstream timeout.
    BodyTimeout,
    /// The body's framing broke, or the client hung up while sending it.
    BodyUnreadable,
}

impl Malformed {
    fn detail(self) -> &'static str {
        match self {
            Malformed::BothFramings => "The request has both Content-Length and Transfer-Encoding.",
            Malformed::SeveralHosts => "The request has more than one Host header.",
            Malformed::Userinfo => "The request target carries user information (user:password@); send credentials in a header.",
            Malformed::AmbiguousPath => "The request path is ambiguous (encoded slash, backslash, control character or broken escape).",
            Malformed::BodyTimeout => "The request body was not received in time.",
            Malformed::BodyUnreadable => "The request body could not be read.",
        }
    }
}

/// Why a request was not forwarded (or its answer not passed on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The timestamp header is absent or empty.
    MissingTimestamp,
    /// The timestamp header does not parse in the route's format.
    MalformedTimestamp,
    /// The timestamp is older than the skew allows.
    StaleTimestamp,
    /// The timestamp is further ahead than the skew allows.
    FutureTimestamp,
    /// The nonce header is absent or empty.
    MissingNonce,
    /// The nonce is not 16–128 characters of `[A-Za-z0-9._~+/=-]`.
    MalformedNonce,
    /// The nonce was seen before for this identity.
    ReplayedNonce,
    /// The route's identity (a header) is absent or empty.
    MissingIdentity,
    /// The route's identity header is repeated, not UTF-8 or longer than
    /// 256 bytes.
    MalformedIdentity,
    /// The bearer token a `jwt:` identity needs is absent.
    MissingToken,
    /// The bearer token does not verify (signature, algorithm, `iss`,
    /// `aud`, `exp`, `nbf`, or it does not parse).
    BadToken,
    /// The key-id or signature header is absent or empty.
    MissingSignature,
    /// The key id names no configured key.
    UnknownKey,
    /// No `v1=` value (or no RFC 9421 signature) verifies.
    BadSignature,
    /// The signed `Content-Digest` does not match the body (RFC 9530).
    BadContentDigest,
    /// The idempotency key header is absent on a route that requires it.
    MissingIdempotencyKey,
    /// The idempotency key is not 1–255 visible ASCII characters.
    MalformedIdempotencyKey,
    /// The first request with this key is still running.
    IdempotencyInFlight {
        /// Seconds until its lease ends, rounded up.
        retry_after: u64,
    },
    /// The key was used with a different request.
    IdempotencyKeyReused,
    /// The first answer was too large to keep.
    IdempotencyResponseNotRetained {
        /// The status the first request got.
        original_status: u16,
    },
    /// Over the route's rate for this identity.
    RateLimited {
        /// Seconds until a request would pass, rounded up.
        retry_after: u64,
        /// `RateLimit-Policy` header value.
        policy: String,
        /// `RateLimit` header value.
        limit: String,
    },
    /// The body exceeds `max_body_bytes`.
    BodyTooLarge,
    /// No route names the path and `unmatched = "reject"`.
    RouteNotAllowed,
    /// Framing or a target the proxy refuses.
    MalformedRequest(Malformed),
    /// The request target is longer than `max_uri_bytes`.
    UriTooLong,
    /// The upstream could not be reached.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The store could not answer.
    StoreUnavailable,
    /// The memory store is full.
    StoreFull,
    /// A bug of ours (a task panicked): never forwarded twice.
    Internal,
}

impl Rejection {
    /// The stable `reason` string.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingTimestamp => "missing_timestamp",
            Rejection::MalformedTimestamp => "malformed_timestamp",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::FutureTimestamp => "future_timestamp",
            Rejection::MissingNonce => "missing_nonce",
            Rejection::MalformedNonce => "malformed_nonce",
            Rejection::ReplayedNonce => "replayed_nonce",
            Rejection::MissingIdentity => "missing_identity",
            Rejection::MalformedIdentity => "malformed_identity",
            Rejection::MissingToken => "missing_token",
            Rejection::BadToken => "bad_token",
            Rejection::MissingSignature => "missing_signature",
            Rejection::UnknownKey => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::BadContentDigest => "bad_content_digest",
            Rejection::MissingIdempotencyKey => "missing_idempotency_key",
            Rejection::MalformedIdempotencyKey => "malformed_idempotency_key",
            Rejection::IdempotencyInFlight { .. } => "idempotency_in_flight",
            Rejection::IdempotencyKeyReused => "idempotency_key_reused",
            Rejection::IdempotencyResponseNotRetained { .. } => "idempotency_response_not_retained",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::RouteNotAllowed => "route_not_allowed",
            Rejection::MalformedRequest(_) => "malformed_request",
            Rejection::UriTooLong => "uri_too_long",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::StoreUnavailable => "store_unavailable",
            Rejection::StoreFull => "store_full",
            Rejection::Internal => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingTimestamp
            | Rejection::MalformedTimestamp
            | Rejection::StaleTimestamp
            | Rejection::FutureTimestamp
            | Rejection::MissingNonce
            | Rejection::MalformedNonce
            | Rejection::MissingIdempotencyKey
            | Rejection::MalformedIdempotencyKey
            | Rejection::BadContentDigest
            | Rejection::MissingIdentity
            | Rejection::MalformedIdentity
            | Rejection::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::ReplayedNonce
            | Rejection::IdempotencyInFlight { .. }
            | Rejection::IdempotencyResponseNotRetained { .. } => StatusCode::CONFLICT,
            Rejection::MissingSignature
            | Rejection::UnknownKey
            | Rejection::BadSignature
            | Rejection::MissingToken
            | Rejection::BadToken => StatusCode::UNAUTHORIZED,
            Rejection::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UriTooLong => StatusCode::URI_TOO_LONG,
            Rejection::RouteNotAllowed => StatusCode::NOT_FOUND,
            Rejection::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::StoreUnavailable | Rejection::StoreFull => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the failure is ours or the upstream's (an `error` outcome in
    /// metrics) rather than the client's.
    pub fn is_server_side(&self) -> bool {
        matches!(
            self,
            Rejection::UpstreamUnavailable
                | Rejection::UpstreamTimeout
                | Rejection::StoreUnavailable
                | Rejection::StoreFull
                | Rejection::Internal
        )
    }

    /// Whether report mode may forward the request anyway: the client-side
    /// checks of a route. Never framing, routing, body size, upstream or
    /// store failures.
    pub fn is_reportable(&self) -> bool {
        !matches!(
            self,
            Rejection::BodyTooLarge
                | Rejection::UriTooLong
                | Rejection::RouteNotAllowed
                | Rejection::MalformedRequest(_)
                | Rejection::UpstreamUnavailable
                | Rejection::UpstreamTimeout
                | Rejection::StoreUnavailable
                | Rejection::StoreFull
                | Rejection::Internal
        )
    }

    fn title(&self) -> &'static str {
        match self {
            Rejection::MissingTimestamp => "Request timestamp missing",
            Rejection::MalformedTimestamp => "Request timestamp malformed",
            Rejection::StaleTimestamp => "Request timestamp too old",
            Rejection::FutureTimestamp => "Request timestamp in the future",
            Rejection::MissingNonce => "Request nonce missing",
            Rejection::MalformedNonce => "Request nonce malformed",
            Rejection::ReplayedNonce => "Request replayed",
            Rejection::MissingIdentity => "Client identity missing",
            Rejection::MalformedIdentity => "Client identity malformed",
            Rejection::MissingToken => "Bearer token missing",
            Rejection::BadToken => "Bearer token invalid",
            Rejection::MissingSignature => "Signature missing",
            Rejection::UnknownKey => "Unknown key",
            Rejection::BadSignature => "Signature invalid",
            Rejection::BadContentDigest => "Content digest mismatch",
            Rejection::MissingIdempotencyKey => "Idempotency key missing",
            Rejection::MalformedIdempotencyKey => "Idempotency key malformed",
            Rejection::IdempotencyInFlight { .. } => {
                "Request with this idempotency key in progress"
            }
            Rejection::IdempotencyKeyReused => "Idempotency key reused with a different request",
            Rejection::IdempotencyResponseNotRetained { .. } => "Original response not retained",
            Rejection::RateLimited { .. } => "Too many requests",
            Rejection::BodyTooLarge => "Request body too large",
            Rejection::RouteNotAllowed => "Route not allowed",
            Rejection::MalformedRequest(_) => "Malformed request",
            Rejection::UriTooLong => "Request target too long",
            Rejection::UpstreamUnavailable => "Upstream unavailable",
            Rejection::UpstreamTimeout => "Upstream timed out",
            Rejection::StoreUnavailable => "Replay store unavailable",
            Rejection::StoreFull => "Replay store full",
            Rejection::Internal => "Internal error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Rejection::MissingTimestamp => "The route requires a request timestamp header.".into(),
            Rejection::MalformedTimestamp => "The request timestamp does not parse in the route's format.".into(),
            Rejection::StaleTimestamp => "The request timestamp is outside the accepted window; send a fresh timestamp.".into(),
            Rejection::FutureTimestamp => "The request timestamp is ahead of the proxy's clock by more than the accepted skew.".into(),
            Rejection::MissingNonce => "The route requires a nonce header.".into(),
            Rejection::MalformedNonce => "A nonce is 16 to 128 characters of A-Z a-z 0-9 . _ ~ + / = -.".into(),
            Rejection::ReplayedNonce => "This nonce was already used; every transmission needs a new nonce.".into(),
            Rejection::MissingIdentity => "The route identifies clients by a request header, a bearer-token claim or a client certificate, and the request carries none.".into(),
            Rejection::MissingToken => "The route requires a bearer token.".into(),
            Rejection::BadToken => "The bearer token is not valid here (signature, algorithm, issuer, audience or lifetime).".into(),
            Rejection::MalformedIdentity => "The client identity header must appear once, as text of at most 256 bytes.".into(),
            Rejection::MissingSignature => "The route requires a signature: a key id and a v1 signature header, or RFC 9421 Signature-Input and Signature with a keyid.".into(),
            Rejection::UnknownKey => "The key id is not known.".into(),
            Rejection::BadSignature => "No signature verifies for this request, or none covers what the route requires.".into(),
            Rejection::BadContentDigest => "The Content-Digest does not match the request body.".into(),
            Rejection::MissingIdempotencyKey => "The route requires an idempotency key header.".into(),
            Rejection::MalformedIdempotencyKey => "An idempotency key is 1 to 255 visible ASCII characters.".into(),
            Rejection::IdempotencyInFlight { retry_after } => format!("A request with this idempotency key is still being processed; retry in {retry_after} s."),
            Rejection::IdempotencyKeyReused => "This idempotency key was used for a different request (method, path, query or body).".into(),
            Rejection::IdempotencyResponseNotRetained { original_status } => format!("The request was executed (status {original_status}) but its response was too large to keep for replay."),
            Rejection::RateLimited { retry_after, .. } => format!("Rate limit exceeded; retry in {retry_after} s."),
            Rejection::BodyTooLarge => "The request body exceeds the proxy's limit for this route.".into(),
            Rejection::RouteNotAllowed => "No route allows this method and path.".into(),
            Rejection::MalformedRequest(why) => why.detail().into(),
            Rejection::UriTooLong => "The request target exceeds the proxy's limit.".into(),
            Rejection::UpstreamUnavailable => "The upstream service could not be reached.".into(),
            Rejection::UpstreamTimeout => "The upstream service did not answer in time.".into(),
            Rejection::StoreUnavailable => "The replay store could not be reached; the request was not forwarded.".into(),
            Rejection::StoreFull => "The replay store is full; the request was not forwarded.".into(),
            Rejection::Internal => "The proxy failed; the request was not forwarded again.".into(),
        }
    }

    /// The problem+json response. `request_id` is echoed in the body.
    pub fn to_response(&self, request_id: &str) -> Response<Body> {
        let status = self.status();
        let mut problem = json!({
            "type": format!("urn:replay-guard:problem:{}", self.reason()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.detail(),
            "reason": self.reason(),
            "request_id": request_id,
        });
        if let Rejection::IdempotencyResponseNotRetained { original_status } = self {
            problem["original_status"] = json!(original_status);
        }
        let mut response = Response::new(full(problem.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let retry_after = match self {
            Rejection::IdempotencyInFlight { retry_after } => Some(*retry_after),
            Rejection::RateLimited { retry_after, .. } => Some(*retry_after),
            Rejection::StoreUnavailable | Rejection::StoreFull => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        // RFC 6750 §3: the challenge, and why a presented token failed.
        match self {
            Rejection::MissingToken => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Rejection::BadToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        if let Rejection::RateLimited { policy, limit, .. } = self {
            if let Ok(value) = HeaderValue::from_str(policy) {
                headers.insert("ratelimit-policy", value);
            }
            if let Ok(value) = HeaderValue::from_str(limit) {
                headers.insert("ratelimit", value);
            }
        }
        response
    }
}
