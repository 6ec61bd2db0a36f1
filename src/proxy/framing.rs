//! Framing: what the proxy refuses about a request's message before it
//! looks at any route — both framings, several `Host` headers, an overlong
//! target, a path that cannot be normalised unambiguously — and the capped,
//! timed read of a body that a check needs whole.
//!
//! This phase must never forward anything, and never let a request with
//! both `Content-Length` and `Transfer-Encoding` go on (RFC 9112 §6.1).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::ctx::RequestCtx;
use crate::config::Server;
use crate::forward::REQUEST_ID_HEADER;
use crate::path;
use crate::rejection::{Malformed, Rejection};

/// The framing phase: refuse what must never be forwarded, then record the
/// normalised path in `ctx`.
pub fn check(parts: &Parts, server: &Server, ctx: &mut RequestCtx) -> Result<(), Rejection> {
    if parts.headers.contains_key(TRANSFER_ENCODING) && parts.headers.contains_key(CONTENT_LENGTH) {
        ctx.close = true;
        return Err(Rejection::MalformedRequest(Malformed::BothFramings));
    }
    // One Host only (RFC 9112 §3.2): the signature covers one host.
    if parts.headers.get_all(HOST).iter().nth(1).is_some() {
        ctx.close = true;
        return Err(Rejection::MalformedRequest(Malformed::SeveralHosts));
    }
    if parts
        .uri
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(Rejection::MalformedRequest(Malformed::Userinfo));
    }
    let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > server.max_uri_bytes {
        return Err(Rejection::UriTooLong);
    }
    let normalized = path::normalize(parts.uri.path())
        .map_err(|_| Rejection::MalformedRequest(Malformed::AmbiguousPath))?;
    ctx.target.set_normalized(normalized);
    Ok(())
}

/// The declared body length, when it parses.
pub fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The body phase: read the whole body, at most `limit` bytes, within
/// `timeout`.
pub async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Rejection> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Rejection::MalformedRequest(Malformed::BodyTimeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Rejection::BodyTooLarge)
        }
        Ok(Err(_)) => Err(Rejection::MalformedRequest(Malformed::BodyUnreadable)),
    }
}

/// Keep a sane client request id, or make one.
pub fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    if let Some(value) = headers.get(REQUEST_ID_HEADER) {
        let bytes = value.as_bytes();
        if (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return value.clone();
        }
    }
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}
