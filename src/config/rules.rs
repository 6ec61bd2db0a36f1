//! The typed rules of one route: what a request must carry to be
//! forwarded — freshness, nonce, signature, idempotency, rate limit — and
//! how to read it (header names, identity, mode).
//!
//! These are plain, validated, immutable values built by
//! validation; the checks in [`crate::checks`] read them. This
//! module must never parse, validate or perform I/O, and never depend on the
//! route table ([`crate::routes`]) or the request path.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use serde::Deserialize;

use super::PathPattern;

/// Whether a route's checks refuse requests or only report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse what fails a check (default).
    #[default]
    Enforce,
    /// Run every check (store writes included) but forward anyway; count
    /// and log the would-be rejection and name it to the upstream.
    Report,
}

/// How the timestamp header is written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// Integer seconds since the epoch.
    #[default]
    Unix,
    /// Integer milliseconds since the epoch.
    UnixMs,
    /// RFC 3339, e.g. `2025-11-28T10:40:00Z`.
    Rfc3339,
    /// IMF-fixdate, e.g. `Fri, 28 Nov 2025 10:40:00 GMT`.
    HttpDate,
}

impl fmt::Display for TimestampFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimestampFormat::Unix => "unix",
            TimestampFormat::UnixMs => "unix_ms",
            TimestampFormat::Rfc3339 => "rfc3339",
            TimestampFormat::HttpDate => "http_date",
        })
    }
}

/// The header names one route reads.
#[derive(Debug, Clone)]
pub struct HeaderNames {
    /// Request timestamp.
    pub timestamp: HeaderName,
    /// Per-transmission nonce.
    pub nonce: HeaderName,
    /// `v1=<hex>` signature.
    pub signature: HeaderName,
    /// Key id.
    pub key_id: HeaderName,
    /// Idempotency key.
    pub idempotency_key: HeaderName,
}

/// Who the client is, for nonce, idempotency and rate-limit scoping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The verified key id (requires a required signature).
    KeyId,
    /// The client address, honouring `trusted_proxies`.
    ClientIp,
    /// The value of a request header (not authenticated).
    Header(HeaderName),
    /// A claim of the bearer token verified against `[jwt]`.
    Jwt(String),
    /// The verified client certificate (mTLS): first URI SAN, else first
    /// DNS SAN, else subject CN.
    ClientCert,
}

impl Identity {
    /// Whether the identity is verified by the proxy before it scopes
    /// anything (`jwt:`, `client_cert`), as opposed to a claim nobody
    /// checked (`client_ip`, `header:`) or the signing key.
    pub fn is_verified_claim(&self) -> bool {
        matches!(self, Identity::Jwt(_) | Identity::ClientCert)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::KeyId => f.write_str("key_id"),
            Identity::ClientIp => f.write_str("client_ip"),
            Identity::Header(name) => write!(f, "header:{name}"),
            Identity::Jwt(claim) => write!(f, "jwt:{claim}"),
            Identity::ClientCert => f.write_str("client_cert"),
        }
    }
}

/// Freshness rule.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// Accepted distance between the timestamp and the proxy clock, both ways.
    pub max_skew: Duration,
    /// How the timestamp is written.
    pub format: TimestampFormat,
}

/// Idempotency rule.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// Whether a request without a key is refused.
    pub required: bool,
    /// How long a completed record is kept.
    pub ttl: Duration,
    /// How long a claimant holds an in-flight record.
    pub lease: Duration,
    /// Larger response bodies are delivered but not retained.
    pub max_response_bytes: usize,
    /// Upstream statuses that release the claim instead of storing it.
    pub release_statuses: Vec<u16>,
}

/// Where a rate limit's state lives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// Each proxy instance keeps its own buckets (the default).
    #[default]
    Instance,
    /// One bucket per identity shared by every replica, in the DynamoDB
    /// table (`rate#<h>` items). On the memory store the same as
    /// `Instance`.
    Cluster,
}

/// Rate-limit rule (GCRA, per identity; per instance or per cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Replenishment: one cell per this period.
    pub period: Duration,
    /// Requests per window (for the `RateLimit-Policy` header).
    pub quota: NonZeroU32,
    /// Window of the quota in seconds.
    pub window_secs: u64,
    /// Burst size.
    pub burst: NonZeroU32,
    /// Where the state lives. For `Instance`, `quota` and `burst` are
    /// already divided by `replicas`; for `Cluster` they are the whole
    /// cluster's.
    pub scope: RateScope,
    /// `replicas` as written (default 1): the divisor of an `Instance`
    /// limit, and of a `Cluster` limit's per-instance fallback when the
    /// store fails and `on_error = "allow"`.
    pub replicas: NonZeroU32,
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// Methods it applies to; `None` means every method.
    pub methods: Option<Vec<Method>>,
    /// Compiled path pattern.
    pub path: PathPattern,
    /// Who the client is.
    pub identity: Identity,
    /// Enforce or report.
    pub mode: Mode,
    /// Header names (defaults overridden per route).
    pub headers: HeaderNames,
    /// Timestamp rule.
    pub freshness: Option<Freshness>,
    /// Nonce rule: `Some(required)`.
    pub nonce: Option<bool>,
    /// Signature rule: `Some(required)`.
    pub signature: Option<bool>,
    /// How a signature is written and verified (`v1` unless the route's
    /// signature table says `scheme = "rfc9421"`).
    pub scheme: super::SignatureScheme,
    /// Idempotency rule.
    pub idempotency: Option<Idempotency>,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Webhook receiver profile: the provider's own signature, timestamp
    /// and delivery id replace freshness, signature, nonce and idempotency.
    pub webhook: Option<super::Webhook>,
}

impl Route {
    /// Whether the route has no rule at all (a plain pass-through).
    pub fn is_pass_through(&self) -> bool {
        self.freshness.is_none()
            && self.nonce.is_none()
            && self.signature.is_none()
            && self.idempotency.is_none()
            && self.rate_limit.is_none()
            && self.webhook.is_none()
    }

    /// Whether the body must be buffered (and capped) before forwarding.
    pub fn buffers_body(&self) -> bool {
        !self.is_pass_through()
    }
}
