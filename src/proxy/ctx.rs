//! The one per-request context: what the phases of the request path learn
//! about a request on the way — who sent it, which route it matched, the
//! normalised path, the verified key, the rate-limit headers — and what the
//! answer, the log line and the metrics need of it.
//!
//! It is plain data: it must never hold a secret, and identities appear in
//! it only as log tags (a short hash), never as the client's text.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Uri};

use super::access_log::BytesIn;
use super::RouteState;
use crate::checks::rate_limit::Admitted;
use crate::forward::Peer;

/// The request target: the URI as received and, when it was not already
/// normal, the normalised path that is matched, signed and forwarded.
#[derive(Debug, Clone)]
pub struct Target {
    /// The request's URI (a cheap reference-counted copy).
    pub uri: Uri,
    /// The normalised path, when it differs from `uri.path()`.
    normalized: Option<String>,
}

impl Target {
    /// The normalised path (after framing; before it, the raw path).
    pub fn path(&self) -> &str {
        self.normalized
            .as_deref()
            .unwrap_or_else(|| self.uri.path())
    }

    /// Record the normalised path.
    pub fn set_normalized(&mut self, path: std::borrow::Cow<'_, str>) {
        self.normalized = match path {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(path) => Some(path),
        };
    }
}

/// Everything one request carries through the phases.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// `X-Request-Id`: the client's when sane, else generated.
    pub request_id: HeaderValue,
    /// The client end of the connection.
    pub peer: Peer,
    /// The request method (for the access log).
    pub method: Method,
    /// When the proxy started handling the request.
    pub started: Instant,
    /// The request target and its normalised path.
    pub target: Target,
    /// The matched route (`None`: unmatched).
    pub route: Option<Arc<RouteState>>,
    /// Hash tag of the identity, once known (for log lines).
    pub identity_tag: Option<String>,
    /// `RateLimit-Policy` and `RateLimit` headers for the answer.
    pub rate_limit: Option<Admitted>,
    /// The verified key id, for `X-Replay-Guard-Key-Id`.
    pub verified_key: Option<String>,
    /// A report-mode would-be rejection, for `X-Replay-Guard-Report`.
    pub report: Option<&'static str>,
    /// Close the client connection after answering (framing problems).
    pub close: bool,
    /// How much of the request body was read (for the access log).
    pub bytes_in: BytesIn,
}

impl RequestCtx {
    /// A fresh context for a request from `peer`.
    pub fn new(request_id: HeaderValue, peer: Peer, method: Method, uri: Uri) -> Self {
        Self {
            request_id,
            peer,
            method,
            started: Instant::now(),
            target: Target {
                uri,
                normalized: None,
            },
            route: None,
            identity_tag: None,
            rate_limit: None,
            verified_key: None,
            report: None,
            close: false,
            bytes_in: BytesIn::Unread,
        }
    }

    /// The matched route's name, or `unmatched`.
    pub fn route_name(&self) -> &str {
        self.route
            .as_ref()
            .map_or(super::UNMATCHED, |route| route.rule.name.as_str())
    }

    /// The matched route's webhook provider, if it is a webhook route.
    pub fn webhook_provider(&self) -> Option<&'static str> {
        let route = self.route.as_ref()?;
        route.rule.webhook.as_ref().map(|hook| hook.provider.name())
    }

    /// The request id for log lines (every request-scoped line carries it).
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    /// The identity tag for log lines, or `-`.
    pub fn identity_tag(&self) -> &str {
        self.identity_tag.as_deref().unwrap_or("-")
    }
}
