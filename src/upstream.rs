//! The upstream connection pool: keep-alive HTTP/1.1 connections to the
//! one upstream, reused last-in first-out, with the connect and response
//! timeouts.
//!
//! There is exactly one upstream, so the pool is a stack of idle
//! connections behind one short lock — no per-host map, no waiter queue,
//! no task per request — one stack per worker event loop, named by the
//! caller of [`Upstream::send`] (the worker that accepted the client's
//! connection), so a worker reuses the connections its own event loop
//! drives. A connection goes back on the stack it came from when its
//! response body has been read to the end; a body dropped half way takes
//! its connection with it (hyper closes it). A request is sent again only
//! when hyper hands it back unwritten because a reused connection closed
//! first: nothing that may have reached the upstream is ever re-sent.
//!
//! This module must never decide whether a request may be forwarded (the
//! checks do) and never touch headers beyond `Host` (see
//! [`crate::forward`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::body::Body;
use crate::config;

/// Idle connections kept at most (the rest are closed when they come back).
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts for one request when reused connections turn out closed.
const MAX_ATTEMPTS: usize = 3;

/// What the upstream client reports when it fails. The text names the
/// upstream's address and why (for the log line; never for the client).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be made: the request never left.
    #[error("cannot connect to {target}: {cause}")]
    Connect {
        /// `scheme://authority` dialled.
        target: String,
        /// Why: `connection refused`, `connect timeout after 1 s`, a TLS
        /// error, a DNS failure.
        cause: String,
    },
    /// No response in time: the upstream may have executed the request.
    #[error("no response from {target} within {after}")]
    Timeout {
        /// `scheme://authority` dialled.
        target: String,
        /// The configured `upstream_timeout_ms`, as text (`30 s`).
        after: String,
    },
    /// The connection failed after the request may have been sent.
    #[error("upstream {target} failed: {cause}")]
    Other {
        /// `scheme://authority` dialled.
        target: String,
        /// What hyper said.
        cause: String,
    },
}

impl UpstreamError {
    /// Whether the request certainly never reached the upstream.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }
}

/// A duration as an operator writes it: `30 s`, `1.5 s`, `250 ms`.
pub fn human_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} s", duration.as_secs_f64())
    }
}

/// Why a connection attempt failed, from the error's source chain: the
/// typed causes operators act on (refused, timed out, TLS) by name, else
/// the chain's messages.
fn connect_cause(error: &(dyn std::error::Error + 'static), connect_timeout: Duration) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            // An io::Error's `source()` skips the error it wraps: look inside.
            if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                return format!("TLS error: {tls}");
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut => {
                    return format!("connect timeout after {}", human_duration(connect_timeout))
                }
                _ => {}
            }
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return format!("TLS error: {tls}");
        }
        let text = current.to_string();
        if messages.last() != Some(&text) {
            messages.push(text);
        }
        next = current.source();
    }
    messages.join(": ")
}

/// The pooled upstream client; clones share the pool.
#[derive(Clone)]
pub struct Upstream {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("target", &self.pool.target)
            .field("timeout", &self.pool.timeout)
            .finish_non_exhaustive()
    }
}

struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority`, for error messages.
    name: String,
    /// The connect timeout, for error messages.
    connect_timeout: Duration,
    /// `scheme://authority/`, what the connector dials.
    target: Uri,
    /// `Host` for a request that arrived without one.
    host: Option<HeaderValue>,
    timeout: Duration,
    /// Idle connections per thread, most recently used at the back.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Upstream {
    /// A pool for `upstream` with a connect timeout and a response timeout,
    /// with one idle stack for each of up to `threads` sending threads.
    pub fn new(
        upstream: &config::Upstream,
        connect_timeout: Duration,
        timeout: Duration,
        threads: usize,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let target = Uri::builder()
            .scheme(upstream.scheme.clone())
            .authority(upstream.authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        Self {
            pool: Arc::new(Pool {
                connector: https_connector(connector),
                name: format!("{}://{}", upstream.scheme, upstream.authority),
                connect_timeout,
                target,
                host: HeaderValue::from_str(upstream.authority.as_str()).ok(),
                timeout,
                idle: (0..threads.max(1))
                    .map(|_| Mutex::new(VecDeque::new()))
                    .collect(),
            }),
        }
    }

    /// `scheme://authority` of the upstream, for log lines.
    pub fn name(&self) -> &str {
        &self.pool.name
    }

    /// The response timeout.
    pub fn timeout(&self) -> Duration {
        self.pool.timeout
    }

    /// Send a request whose URI is in origin form (`/path?query`); the
    /// timeout covers connecting and the response head.
    /// `worker` names the sending event loop: each has its own stack of
    /// idle connections (any number is taken modulo the stacks).
    pub async fn send(
        &self,
        mut request: Request<Body>,
        worker: usize,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let shard = worker % self.pool.idle.len();
        if !request.headers().contains_key(HOST) {
            if let Some(host) = &self.pool.host {
                request.headers_mut().insert(HOST, host.clone());
            }
        }
        match tokio::time::timeout(self.pool.timeout, self.exchange(request, shard)).await {
            Err(_) => Err(UpstreamError::Timeout {
                target: self.pool.name.clone(),
                after: human_duration(self.pool.timeout),
            }),
            Ok(result) => result,
        }
    }

    async fn exchange(
        &self,
        mut request: Request<Body>,
        shard: usize,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        for _ in 1..MAX_ATTEMPTS {
            let Some(mut sender) = self.pool.checkout(shard) else {
                break;
            };
            if sender.ready().await.is_err() {
                continue; // closed while idle
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.pool.wrap(response, sender, shard)),
                Err(mut error) => match error.take_message() {
                    // Handed back unwritten: the connection closed first.
                    Some(unsent) => request = unsent,
                    None => return Err(self.pool.other(&error.into_error())),
                },
            }
        }
        // Boxed: connecting is rare, and its future would otherwise make
        // every request's future larger.
        let mut sender = Box::pin(self.pool.connect()).await?;
        match sender.send_request(request).await {
            Ok(response) => Ok(self.pool.wrap(response, sender, shard)),
            Err(error) => Err(self.pool.other(&error)),
        }
    }
}

impl Pool {
    /// The most recently used idle connection of stack `shard` that is
    /// still open.
    fn checkout(&self, shard: usize) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.get(shard)?.lock().ok()?;
        while let Some(entry) = idle.pop_back() {
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Put a connection whose response was read to the end back on stack
    /// `shard`.
    fn checkin(&self, sender: SendRequest<Body>, shard: usize) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let Some(Ok(mut idle)) = self.idle.get(shard).map(Mutex::lock) else {
            return;
        };
        // The oldest connections sit at the front: close the stale ones.
        while idle
            .front()
            .is_some_and(|entry| now.duration_since(entry.since) >= IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { sender, since: now });
        }
    }

    /// A failure after the request may have been sent.
    fn other(&self, error: &hyper::Error) -> UpstreamError {
        UpstreamError::Other {
            target: self.name.clone(),
            cause: connect_cause(error, self.connect_timeout),
        }
    }

    /// A failed connection attempt, with its cause.
    fn connect_error(&self, error: &(dyn std::error::Error + 'static)) -> UpstreamError {
        UpstreamError::Connect {
            target: self.name.clone(),
            cause: connect_cause(error, self.connect_timeout),
        }
    }

    /// A new connection, driven by its own task until it closes.
    async fn connect(&self) -> Result<SendRequest<Body>, UpstreamError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| self.connect_error(e.as_ref()))?;
        let io = connector
            .call(self.target.clone())
            .await
            .map_err(|e| self.connect_error(e.as_ref()))?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| self.connect_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn wrap(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: SendRequest<Body>,
        shard: usize,
    ) -> Response<UpstreamBody> {
        response.map(|body| UpstreamBody {
            body,
            lease: Some(Lease {
                sender,
                pool: Arc::clone(self),
                shard,
            }),
        })
    }
}

struct Lease {
    sender: SendRequest<Body>,
    pool: Arc<Pool>,
    /// The idle stack it came from and goes back to.
    shard: usize,
}

/// An upstream response body; its connection returns to the pool once the
/// body has been read to the end.
pub struct UpstreamBody {
    body: Incoming,
    /// The connection, until it goes back to the pool (at the end of the
    /// body) or is dropped with a half-read body.
    lease: Option<Lease>,
}

impl UpstreamBody {
    fn finish(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.checkin(lease.sender, lease.shard);
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body with nothing (left) to read may never be polled to its
        // end; one read to the end has already given its connection back.
        if self.body.is_end_stream() {
            self.finish();
        }
    }
}

/// Wrap the TCP connector with TLS for `https://` upstreams, verified
/// against the system's root certificates.
fn https_connector(connector: HttpConnector) -> HttpsConnector<HttpConnector> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_provider_and_native_roots(provider.clone()) {
        Ok(builder) => builder,
        Err(e) => {
            tracing::warn!(error = %e, "no system root certificates: https:// upstreams will fail verification");
            // The default protocol versions are always supported by aws-lc-rs.
            let Ok(versions) = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
            else {
                unreachable!("aws-lc-rs supports rustls' default protocol versions")
            };
            let config = versions
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    builder
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector)
}
