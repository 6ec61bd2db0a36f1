//! The access log (`access_log = true`): one `info` line per request,
//! target `replay_guard::access`, with the fields `access_log_fields`
//! chooses, written when the answer's body has been sent (or dropped), so
//! that `bytes_out` and `duration_ms` cover the whole answer. Under
//! `--log-format json` it is one JSON object whose `fields` hold exactly
//! the chosen fields.
//!
//! This module must never log a header value, a path or query, a nonce, a
//! key or a client's identity text: `identity` is the identity's short hash
//! tag and `key_id` a configured key's id.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::{Body, BoxError};
use crate::config::{AccessField, AccessLogFields};

/// The upstream's time to its response head, carried in the response's
/// extensions from the forward phase to the access log.
#[derive(Debug, Clone, Copy)]
pub(super) struct UpstreamTime(pub(super) Duration);

/// A streamed request body's progress: whether the client broke it, and
/// how many bytes were read.
#[derive(Debug, Default)]
pub struct StreamedIn {
    /// The client's body failed (broken framing, hang-up).
    pub failed: AtomicBool,
    /// Data bytes read so far.
    pub bytes: AtomicU64,
}

/// How much of the request body was read.
#[derive(Debug, Clone, Default)]
pub enum BytesIn {
    /// None (no body, or refused before reading it).
    #[default]
    Unread,
    /// Buffered for the checks.
    Read(u64),
    /// Streamed to the upstream; counted as it goes.
    Streamed(Arc<StreamedIn>),
}

impl BytesIn {
    fn get(&self) -> u64 {
        match self {
            BytesIn::Unread => 0,
            BytesIn::Read(n) => *n,
            BytesIn::Streamed(streamed) => streamed.bytes.load(Ordering::Relaxed),
        }
    }
}

/// What the line says, gathered at respond time.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) fields: AccessLogFields,
    pub(super) request_id: HeaderValue,
    pub(super) method: Method,
    pub(super) route: String,
    pub(super) status: u16,
    pub(super) reason: Option<&'static str>,
    pub(super) started: Instant,
    pub(super) upstream: Option<Duration>,
    pub(super) bytes_in: BytesIn,
    pub(super) client: SocketAddr,
    pub(super) key_id: Option<String>,
    pub(super) identity: Option<String>,
}

impl Entry {
    fn write(&self, bytes_out: u64) {
        let has = |field| self.fields.has(field);
        // Milliseconds to the microsecond: `1.584`, not `1.5835029999999999`.
        let ms = |d: Duration| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        tracing::info!(
            target: "replay_guard::access",
            request_id = has(AccessField::RequestId).then(|| self.request_id.to_str().unwrap_or("-")),
            method = has(AccessField::Method).then(|| self.method.as_str()),
            route = has(AccessField::Route).then_some(self.route.as_str()),
            status = has(AccessField::Status).then_some(self.status),
            reason = self.reason.filter(|_| has(AccessField::Reason)),
            duration_ms = has(AccessField::DurationMs).then(|| ms(self.started.elapsed())),
            upstream_ms = self.upstream.filter(|_| has(AccessField::UpstreamMs)).map(ms),
            bytes_in = has(AccessField::BytesIn).then(|| self.bytes_in.get()),
            bytes_out = has(AccessField::BytesOut).then_some(bytes_out),
            client = has(AccessField::Client).then(|| tracing::field::display(self.client)),
            key_id = self.key_id.as_deref().filter(|_| has(AccessField::KeyId)),
            identity = self.identity.as_deref().filter(|_| has(AccessField::Identity)),
            "access"
        );
    }
}

/// The answer's body, counted; the line is written when it is dropped
/// (after its last byte, or when the client hung up).
pub(super) struct Logged {
    inner: Body,
    sent: u64,
    entry: Entry,
}

impl Logged {
    /// Wrap `inner`.
    pub(super) fn wrap(inner: Body, entry: Entry) -> Body {
        http_body_util::BodyExt::boxed(Logged {
            inner,
            sent: 0,
            entry,
        })
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.sent += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.entry.write(self.sent);
    }
}
