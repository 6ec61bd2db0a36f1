//! The forward phase: send a request to the upstream — streamed on
//! pass-through and unmatched routes, buffered after the checks — with the
//! normalised path in origin form and the proxy's own headers, and stream
//! the answer back.
//!
//! It classifies failures by who caused them (a client's broken body is
//! `malformed_request`, never 502). It must never run a check, and never
//! forward with both framings or with a client's copy of a header the proxy
//! sets.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::access_log::{BytesIn, StreamedIn, UpstreamTime};
use super::ctx::RequestCtx;
use super::{Answer, Proxy};
use crate::body::{self, Body, BoxError};
use crate::forward;
use crate::metrics::Outcome;
use crate::rejection::{Malformed, Rejection};
use crate::upstream::{UpstreamBody, UpstreamError};

impl Proxy {
    /// Forward with the client's body streamed through.
    pub(super) async fn forward_streaming(
        &self,
        parts: Parts,
        body: Incoming,
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Rejection> {
        // A streamed body can fail half way because of the client (broken
        // chunk framing, hang-up): that is the client's fault, not the
        // upstream's, and must not be reported as 502.
        let (body, streamed) = if http_body::Body::is_end_stream(&body) {
            // Nothing to stream (a GET, or `Content-Length: 0`).
            (body::empty(), None)
        } else {
            let streamed = Arc::new(StreamedIn::default());
            let (counted, failed) = (streamed.clone(), streamed.clone());
            let body = body
                .map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        counted
                            .bytes
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    frame
                })
                .map_err(move |e| -> BoxError {
                    failed.failed.store(true, Ordering::Relaxed);
                    Box::new(e)
                })
                .boxed();
            ctx.bytes_in = BytesIn::Streamed(streamed.clone());
            (body, Some(streamed))
        };
        match self.send(parts, body, ctx).await {
            Ok(response) => Ok(Answer::forwarded(stream_response(response))),
            Err(_)
                if streamed
                    .as_ref()
                    .is_some_and(|s| s.failed.load(Ordering::Relaxed)) =>
            {
                ctx.close = true;
                Err(Rejection::MalformedRequest(Malformed::BodyUnreadable))
            }
            Err(error) => Err(upstream_rejection(error)),
        }
    }

    /// Forward a buffered (or unread) body and stream the answer back.
    pub(super) async fn forward_plain(
        &self,
        parts: Parts,
        body: Body,
        ctx: &RequestCtx,
    ) -> Result<Answer, Rejection> {
        let response = self
            .send(parts, body, ctx)
            .await
            .map_err(upstream_rejection)?;
        Ok(Answer::forwarded(stream_response(response)))
    }

    /// One exchange with the upstream, timed into the route's histogram.
    pub(super) async fn send(
        &self,
        mut parts: Parts,
        body: Body,
        ctx: &RequestCtx,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        // An absolute-form target's authority replaces Host (RFC 9112
        // §3.2.2): the upstream sees the host the signature covered.
        let client_host = match parts.uri.authority() {
            Some(authority) => {
                let host = HeaderValue::from_str(authority.as_str()).ok();
                if let Some(host) = &host {
                    parts.headers.insert(HOST, host.clone());
                }
                host
            }
            None => parts.headers.get(HOST).cloned(),
        };
        // The upstream gets the normalised path in origin form; a request
        // that already is exactly that is sent with its own URI.
        let normalized = ctx.target.path();
        if parts.uri.scheme().is_some() || parts.uri.path() != normalized {
            let target = match parts.uri.query() {
                Some(query) => format!("{normalized}?{query}"),
                None => normalized.to_owned(),
            };
            parts.uri = Uri::try_from(target).map_err(|_| UpstreamError::Other {
                target: self.upstream.name().to_owned(),
                cause: "could not build the upstream URI".into(),
            })?;
        }
        parts.version = Version::HTTP_11;
        let trusted = &self.config.server.trusted_proxies;
        let peer_ip = ctx.peer.addr.ip().to_canonical();
        let peer_trusted = !trusted.is_empty() && trusted.iter().any(|net| net.contains(&peer_ip));
        forward::upstream_headers(
            &mut parts.headers,
            &ctx.peer,
            peer_trusted,
            client_host.as_ref(),
            &ctx.request_id,
            ctx.verified_key.as_deref(),
            ctx.report,
        );
        // Only a delivery that passed its check is named verified: never one
        // a report-mode route forwards despite a refusal.
        if let (Some(provider), None) = (ctx.webhook_provider(), ctx.report) {
            let value = HeaderValue::from_static(provider);
            parts.headers.insert(forward::WEBHOOK_HEADER, value);
        }
        let started = Instant::now();
        let result = self
            .upstream
            .send(Request::from_parts(parts, body), ctx.peer.worker)
            .await;
        let took = started.elapsed();
        self.series(ctx).upstream(took.as_secs_f64());
        match result {
            Ok(mut response) => {
                // For the access log only: an extension allocates.
                if self.config.server.access_log {
                    response.extensions_mut().insert(UpstreamTime(took));
                }
                Ok(response)
            }
            Err(e) => {
                tracing::warn!(request_id = ctx.request_id(), route = ctx.route_name(), error = %e, "upstream request failed");
                Err(e)
            }
        }
    }
}

impl Answer {
    /// An answer the upstream gave.
    pub(super) fn forwarded(response: Response<Body>) -> Self {
        Self {
            response,
            outcome: Outcome::Forwarded,
        }
    }
}

/// Who failed: a timeout is 504, anything else 502.
pub(super) fn upstream_rejection(error: UpstreamError) -> Rejection {
    match error {
        UpstreamError::Timeout { .. } => Rejection::UpstreamTimeout,
        UpstreamError::Connect { .. } | UpstreamError::Other { .. } => {
            Rejection::UpstreamUnavailable
        }
    }
}

/// The upstream's answer with its hop-by-hop headers removed.
pub(super) fn stream_response(response: Response<UpstreamBody>) -> Response<Body> {
    let (mut head, body) = response.into_parts();
    forward::strip_hop_by_hop(&mut head.headers);
    Response::from_parts(head, body::boxed(body))
}
