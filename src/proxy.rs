//! The request path, top to bottom in one place:
//!
//! ```text
//! framing → normalise path → route → rate limit → freshness → body
//!   → signature → (rate limit, key_id identity) → nonce → idempotency
//!   → forward → record idempotent response → answer
//! ```
//!
//! Each step either passes the request on or returns a
//! [`Rejection`]; [`Proxy::handle`] is the one place a rejection becomes a
//! response, is logged and counted. Stateless checks run before anything
//! that writes to the store, so forged, stale or throttled requests never
//! cost a store write.
//!
//! `Proxy::check` runs the checks and hands back the buffered body with a
//! refusal, so a route in report mode (`mode = "report"`) can still forward
//! the request — with its would-be rejection counted, logged and named to
//! the upstream in `X-Replay-Guard-Report`.
//!
//! This module must never forward a request whose checks failed (outside
//! report mode), and never forward unchecked because the store failed
//! unless the operator chose `on_error = "allow"`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, BodyStream, Limited, StreamBody};
use hyper::body::{Frame, Incoming};

use crate::body::{self, Body, BoxError};
use crate::checks::rate_limit::{Admitted, Limiter};
use crate::checks::{freshness, header_text, idempotency, nonce, signature};
use crate::clock::SharedClock;
use crate::config::{Config, Identity, Mode, OnStoreError, Route, Unmatched};
use crate::forward::{self, Peer, REQUEST_ID_HEADER};
use crate::identity;
use crate::metrics::{Metrics, Outcome, RouteMetrics};
use crate::path;
use crate::rejection::Rejection;
use crate::routes::RouteTable;
use crate::store::{
    Fenced, IdemClaim, NonceClaim, NonceOutcome, Store, StoreError, StoredResponse,
};
use crate::upstream::{Upstream, UpstreamBody, UpstreamError};
use tokio_util::task::TaskTracker;

/// Response header marking a stored idempotent answer.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Route label for requests no route names.
const UNMATCHED: &str = "unmatched";

/// Everything the request path needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    /// The validated configuration.
    config: Arc<Config>,
    /// Routes in match order.
    table: RouteTable,
    /// One limiter per route (by index), where the route has a rate limit.
    /// Shared with the next config generation when the route's rule is
    /// unchanged, so a reload keeps rate-limit state.
    limiters: Vec<Option<Arc<Limiter>>>,
    /// When the process started (restart fence for the memory store).
    started: std::time::Duration,
    /// Replay state (already wrapped for metrics).
    store: Arc<dyn Store>,
    /// Time source for every check.
    clock: SharedClock,
    /// Pooled upstream client.
    upstream: Upstream,
    /// Counters and histograms.
    metrics: Arc<Metrics>,
    /// Request series per route (by index), resolved once.
    route_metrics: Vec<RouteMetrics>,
    /// Request series of unmatched paths.
    unmatched_metrics: RouteMetrics,
    /// Claimed idempotent requests running on their own tasks; shared by
    /// every config generation so that shutdown can wait for them.
    detached: TaskTracker,
}

/// Per-request facts gathered on the way, for the log line and metrics.
#[derive(Debug, Default)]
struct Ctx {
    /// Index of the matched route (`None`: unmatched).
    route: Option<usize>,
    /// Hash tag of the identity, once known.
    identity_tag: Option<String>,
    /// `RateLimit-Policy` and `RateLimit` headers for the answer.
    rate_limit: Option<Admitted>,
    /// Close the client connection after answering (framing problems).
    close: bool,
}

/// How one request goes upstream, apart from its head and body: the
/// normalised path, who sent it, and what the proxy adds to it.
#[derive(Debug, Clone, Copy)]
struct Outbound<'a> {
    /// The normalised path (matched, signed and forwarded).
    normalized: &'a str,
    /// The client end of the connection (`X-Forwarded-For/-Proto`).
    peer: &'a Peer,
    /// The request id (forwarded and returned).
    request_id: &'a HeaderValue,
    /// The verified key id, for `X-Replay-Guard-Key-Id`.
    verified_key: Option<&'a str>,
    /// A report-mode would-be rejection, for `X-Replay-Guard-Report`.
    report: Option<&'static str>,
}

/// What the checks established for a request that passed them.
struct Checked<'r> {
    /// The verified key id, when a signature was checked.
    verified_key: Option<String>,
    /// What idempotency asks of the forward step.
    idempotency: IdempotencyStep<'r>,
}

/// The idempotency outcome of the checks.
enum IdempotencyStep<'r> {
    /// No idempotency key on this request (or the route has no rule).
    None,
    /// We hold the lease: forward, then complete or release.
    Claimed(Claim<'r>),
    /// A completed record answers this request.
    Replay(StoredResponse),
}

/// A claimed idempotency key.
struct Claim<'r> {
    pk: String,
    owner: String,
    rule: &'r crate::config::Idempotency,
}

/// A failed check, with whatever is left of the body.
struct Refused {
    rejection: Rejection,
    body: BodyState,
}

/// How far the request body was read when a check failed.
enum BodyState {
    /// Not read yet: can still be streamed.
    Unread(Incoming),
    /// Buffered in full.
    Read(Bytes),
    /// Partly consumed (too large or broken): cannot be forwarded.
    Lost,
}

/// A claimed idempotent request, forwarded and recorded on its own task:
/// everything it needs, owned. Bounded by the upstream and store timeouts.
struct Detached {
    proxy: Arc<Proxy>,
    /// Index of the matched route (its idempotency rule and name).
    route: usize,
    parts: Parts,
    body: Bytes,
    normalized: String,
    peer: Peer,
    request_id: HeaderValue,
    verified_key: Option<String>,
    pk: String,
    owner: String,
}

impl Detached {
    async fn run(self) -> Result<Answer, Rejection> {
        let proxy = &self.proxy;
        let Some(route) = proxy.config.routes.get(self.route) else {
            return Err(Rejection::Internal);
        };
        let Some(rule) = route.idempotency.as_ref() else {
            return Err(Rejection::Internal);
        };
        let out = Outbound {
            normalized: &self.normalized,
            peer: &self.peer,
            request_id: &self.request_id,
            verified_key: self.verified_key.as_deref(),
            report: None,
        };
        let claim = Claim {
            pk: self.pk,
            owner: self.owner,
            rule,
        };
        let mut ctx = Ctx {
            route: Some(self.route),
            ..Ctx::default()
        };
        proxy
            .forward_and_record(self.parts, self.body, out, claim, route, &mut ctx)
            .await
    }
}

/// Counts a request in `replay_guard_in_flight_requests` until dropped
/// (also when the client hangs up and the request future is dropped).
struct InFlight<'m>(&'m Metrics);

impl<'m> InFlight<'m> {
    fn enter(metrics: &'m Metrics) -> Self {
        metrics.in_flight().inc();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight().dec();
    }
}

/// A successful pass through the request path.
struct Answer {
    response: Response<Body>,
    outcome: Outcome,
}

impl Proxy {
    /// Build the request path over a store, a clock and metrics.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let started = clock.now();
        Self::build(
            config,
            store,
            clock,
            metrics,
            started,
            &[],
            TaskTracker::new(),
        )
    }

    /// The next config generation: same store, clock, metrics and start
    /// time; limiters of routes whose name and rule are unchanged are kept.
    pub fn reload(&self, config: Arc<Config>) -> Self {
        let previous: Vec<(&str, &Arc<Limiter>)> = self
            .config
            .routes
            .iter()
            .zip(&self.limiters)
            .filter_map(|(route, limiter)| limiter.as_ref().map(|l| (route.name.as_str(), l)))
            .collect();
        Self::build(
            config,
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.started,
            &previous,
            self.detached.clone(),
        )
    }

    fn build(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        started: std::time::Duration,
        previous: &[(&str, &Arc<Limiter>)],
        detached: TaskTracker,
    ) -> Self {
        let table = RouteTable::new(config.routes.clone());
        let limiters = config
            .routes
            .iter()
            .map(|route| {
                let rule = route.rate_limit?;
                let kept = previous
                    .iter()
                    .find(|(name, limiter)| *name == route.name && *limiter.rule() == rule)
                    .map(|(_, limiter)| Arc::clone(limiter));
                Some(kept.unwrap_or_else(|| Arc::new(Limiter::new(rule, clock.clone()))))
            })
            .collect();
        let upstream = Upstream::new(
            &config.server.upstream,
            config.server.upstream_connect_timeout,
            config.server.upstream_timeout,
            config.server.workers,
        );
        let route_metrics = config
            .routes
            .iter()
            .map(|route| metrics.route(&route.name))
            .collect();
        let unmatched_metrics = metrics.route(UNMATCHED);
        Self {
            route_metrics,
            unmatched_metrics,
            config,
            table,
            limiters,
            started,
            store,
            clock,
            upstream,
            metrics,
            detached,
        }
    }

    /// The configuration this proxy runs on.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metrics, for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store, for `/readyz`.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Claimed idempotent requests still being forwarded or recorded on
    /// their own tasks (a client may have hung up on them). Shutdown closes
    /// the tracker and waits for them, so their answers are recorded
    /// instead of their keys staying leased.
    pub fn detached_tasks(&self) -> &TaskTracker {
        &self.detached
    }

    /// Forget idle rate-limit identities (run on a schedule).
    pub fn sweep_limiters(&self) {
        for limiter in self.limiters.iter().flatten() {
            limiter.sweep();
        }
    }

    /// Handle one request: never fails, always answers.
    ///
    /// The future may be dropped when the client hangs up; the only part
    /// that must then still finish — forwarding a request whose
    /// idempotency key is claimed and recording its answer — runs on its
    /// own task (see [`Detached`]).
    ///
    /// Never fails: the `Result` is the shape hyper's service expects, so
    /// the server can box this future directly.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Peer,
    ) -> Result<Response<Body>, Infallible> {
        let request_id = request_id(request.headers());
        let started = Instant::now();
        let method = request.method().clone();
        let mut ctx = Ctx::default();
        let in_flight = InFlight::enter(&self.metrics);
        let result = self.process(request, &peer, &request_id, &mut ctx).await;
        drop(in_flight);
        let mut response = match result {
            Ok(answer) => {
                self.series(&ctx).request(answer.outcome);
                answer.response
            }
            Err(rejection) => {
                let outcome = if rejection.is_server_side() {
                    Outcome::Error
                } else {
                    Outcome::Rejected
                };
                let route = self.route_name(&ctx);
                self.series(&ctx).request(outcome);
                self.metrics.rejection(route, rejection.reason());
                let id = request_id.to_str().unwrap_or("-");
                if rejection.is_server_side() {
                    tracing::warn!(
                        request_id = id,
                        route,
                        reason = rejection.reason(),
                        identity = ctx.identity_tag.as_deref().unwrap_or("-"),
                        "request failed"
                    );
                } else {
                    tracing::info!(
                        request_id = id,
                        route,
                        reason = rejection.reason(),
                        identity = ctx.identity_tag.as_deref().unwrap_or("-"),
                        "request rejected"
                    );
                }
                rejection.to_response(id)
            }
        };
        // The upstream's HTTP version is its own business: answer as HTTP/1.1
        // (hyper ignores this on HTTP/2 connections).
        *response.version_mut() = Version::HTTP_11;
        let headers = response.headers_mut();
        headers.insert(REQUEST_ID_HEADER, request_id);
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
                request_id = response.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-"),
                method = %method,
                route = self.route_name(&ctx),
                status = response.status().as_u16(),
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                "access"
            );
        }
        Ok(response)
    }

    async fn process(
        self: &Arc<Self>,
        request: Request<Incoming>,
        peer: &Peer,
        request_id: &HeaderValue,
        ctx: &mut Ctx,
    ) -> Result<Answer, Rejection> {
        let (parts, body) = request.into_parts();

        // Framing: never forward a request with both framings (RFC 9112 §6.1).
        if parts.headers.contains_key(TRANSFER_ENCODING)
            && parts.headers.contains_key(CONTENT_LENGTH)
        {
            ctx.close = true;
            return Err(Rejection::MalformedRequest(
                "The request has both Content-Length and Transfer-Encoding.",
            ));
        }
        // One Host only (RFC 9112 §3.2): the signature covers one host.
        if parts.headers.get_all(HOST).iter().nth(1).is_some() {
            ctx.close = true;
            return Err(Rejection::MalformedRequest(
                "The request has more than one Host header.",
            ));
        }
        let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if target_len > self.config.server.max_uri_bytes {
            return Err(Rejection::UriTooLong);
        }
        // The normalised path usually is the request's own path, borrowed
        // from a copy of the URI (a reference count) so `parts` can move on.
        let target = parts.uri.clone();
        let normalized = path::normalize(target.path()).map_err(|_| {
            Rejection::MalformedRequest("The request path is ambiguous (encoded slash, backslash, control character or broken escape).")
        })?;
        let key = path::match_key(&normalized);
        let out = Outbound {
            normalized: &normalized,
            peer,
            request_id,
            verified_key: None,
            report: None,
        };
        let key = if self.config.server.case_insensitive_paths {
            std::borrow::Cow::Owned(key.to_ascii_lowercase())
        } else {
            key
        };

        // Route.
        let Some((index, route)) = self.table.find(&parts.method, &key) else {
            if self.config.server.unmatched == Unmatched::Reject {
                return Err(Rejection::RouteNotAllowed);
            }
            return self.forward_streaming(parts, body, out, ctx).await;
        };
        ctx.route = Some(index);
        if route.is_pass_through() {
            return self.forward_streaming(parts, body, out, ctx).await;
        }
        // Checks, then forward (report mode forwards a would-be rejection).
        let (checked, body) = match self.check(index, route, &parts, body, &out, ctx).await {
            Ok(checked) => checked,
            Err(refused) => {
                if !self.report_only(route, &refused, ctx) {
                    return Err(refused.rejection);
                }
                let reason = refused.rejection.reason();
                let body = match refused.body {
                    BodyState::Read(bytes) => body::full(bytes),
                    BodyState::Unread(incoming) => body::boxed(incoming),
                    BodyState::Lost => return Err(refused.rejection),
                };
                let out = Outbound {
                    report: Some(reason),
                    ..out
                };
                return self.forward_plain(parts, body, out, ctx).await;
            }
        };
        let report = match &checked.idempotency {
            IdempotencyStep::Replay(_) if route.mode == Mode::Report => {
                // Report mode never serves a stored answer: the upstream answers.
                self.count_report(route, "idempotent_replay", ctx);
                Some("idempotent_replay")
            }
            _ => None,
        };
        let out = Outbound {
            verified_key: checked.verified_key.as_deref(),
            report,
            ..out
        };
        match checked.idempotency {
            IdempotencyStep::Replay(stored) if report.is_none() => Ok(Answer {
                response: replay_response(stored),
                outcome: Outcome::Replayed,
            }),
            IdempotencyStep::Claimed(claim) => {
                // From here the attempt must end in a recorded answer or a
                // released claim even if the client hangs up (which drops
                // this future), or the client's retry would wait out the
                // lease and then execute the request a second time.
                let detached = Detached {
                    proxy: Arc::clone(self),
                    route: index,
                    parts,
                    body,
                    normalized: normalized.clone().into_owned(),
                    peer: peer.clone(),
                    request_id: request_id.clone(),
                    verified_key: checked.verified_key.clone(),
                    pk: claim.pk,
                    owner: claim.owner,
                };
                match self.detached.spawn(detached.run()).await {
                    Ok(result) => result,
                    Err(e) => {
                        tracing::error!(error = %e, "idempotent forward task failed");
                        Err(Rejection::Internal)
                    }
                }
            }
            IdempotencyStep::None | IdempotencyStep::Replay(_) => {
                self.forward_plain(parts, body::full(body), out, ctx).await
            }
        }
    }

    /// Every check of a matched route, in order; the first failure stops.
    /// Returns the buffered body with the outcome so that report mode can
    /// still forward the request.
    async fn check<'r>(
        &self,
        index: usize,
        route: &'r Route,
        parts: &Parts,
        body: Incoming,
        out: &Outbound<'_>,
        ctx: &mut Ctx,
    ) -> Result<(Checked<'r>, Bytes), Refused> {
        let (normalized, peer) = (out.normalized, out.peer);
        let limiter = self.limiters.get(index).and_then(Option::as_deref);
        let unread = |rejection: Rejection, body: Incoming| Refused {
            rejection,
            body: BodyState::Unread(body),
        };

        // Rate limit by an identity known before any parsing.
        let mut identity = match &route.identity {
            Identity::ClientIp => Some(
                identity::client_ip(
                    peer.addr.ip(),
                    &parts.headers,
                    &self.config.server.trusted_proxies,
                )
                .to_string(),
            ),
            Identity::Header(name) => Some(match header_text(&parts.headers, name) {
                Some(Ok(value)) => value.to_owned(),
                _ => String::new(),
            }),
            Identity::KeyId => None,
        };
        if let (Some(limiter), Some(id)) = (limiter, identity.as_deref()) {
            ctx.identity_tag = Some(identity::log_tag(id));
            match limiter.check(id) {
                Ok(admitted) => ctx.rate_limit = Some(admitted),
                Err(rejection) => return Err(unread(rejection, body)),
            }
        }

        // Cheap body-size refusal before reading anything (always enforced:
        // the proxy never holds more than max_body_bytes).
        let max_body = self.config.server.max_body_bytes;
        if content_length(parts).is_some_and(|len| len > max_body as u64) {
            return Err(Refused {
                rejection: Rejection::BodyTooLarge,
                body: BodyState::Lost,
            });
        }

        // Freshness.
        let fresh = match &route.freshness {
            Some(rule) => {
                let fresh = freshness::check(
                    &parts.headers,
                    &route.headers.timestamp,
                    rule,
                    self.clock.as_ref(),
                )
                .and_then(|fresh| {
                    if route.nonce.is_some() {
                        self.restart_fence(&fresh, rule.max_skew)?;
                    }
                    Ok(fresh)
                });
                match fresh {
                    Ok(fresh) => Some((fresh, rule.max_skew.as_secs())),
                    Err(rejection) => return Err(unread(rejection, body)),
                }
            }
            None => None,
        };

        // Body, buffered and capped.
        let body = match read_body(body, max_body, self.upstream.timeout()).await {
            Ok(body) => body,
            Err(rejection) => {
                return Err(Refused {
                    rejection,
                    body: BodyState::Lost,
                })
            }
        };
        let read = |rejection: Rejection, body: &Bytes| Refused {
            rejection,
            body: BodyState::Read(body.clone()),
        };

        // Signature.
        let verified_key = match self.verify_signature(route, parts, normalized, &body) {
            Ok(key) => key.map(str::to_owned),
            Err(rejection) => return Err(read(rejection, &body)),
        };
        if route.identity == Identity::KeyId {
            let Some(key) = verified_key.as_deref() else {
                return Err(read(Rejection::MissingSignature, &body));
            };
            ctx.identity_tag = Some(identity::log_tag(key));
            if let Some(limiter) = limiter {
                match limiter.check(key) {
                    Ok(admitted) => ctx.rate_limit = Some(admitted),
                    Err(rejection) => return Err(read(rejection, &body)),
                }
            }
            identity = Some(key.to_owned());
        }
        let scope = identity::encode(identity.as_deref().unwrap_or(""));
        if ctx.identity_tag.is_none() {
            ctx.identity_tag = Some(identity::log_tag(&scope));
        }

        // Nonce.
        if let (Some(required), Some((fresh, skew))) = (route.nonce, fresh) {
            if let Err(rejection) = self
                .claim_nonce(route, parts, &scope, &fresh, skew, required)
                .await
            {
                return Err(read(rejection, &body));
            }
        }

        // Idempotency.
        let idempotency = match self
            .claim_idempotency(route, parts, normalized, &scope, &body)
            .await
        {
            Ok(step) => step,
            Err(rejection) => return Err(read(rejection, &body)),
        };
        Ok((
            Checked {
                verified_key,
                idempotency,
            },
            body,
        ))
    }

    /// The nonce step: well-formed, then claimed for the identity.
    async fn claim_nonce(
        &self,
        route: &Route,
        parts: &Parts,
        scope: &str,
        fresh: &freshness::Fresh,
        skew: u64,
        required: bool,
    ) -> Result<(), Rejection> {
        let value = match header_text(&parts.headers, &route.headers.nonce) {
            None if required => return Err(Rejection::MissingNonce),
            None => return Ok(()),
            Some(Err(())) => return Err(Rejection::MalformedNonce),
            Some(Ok(value)) => value,
        };
        nonce::validate(value)?;
        let pk = nonce::record_key(scope, value);
        let owner = owner_token();
        let claim = NonceClaim {
            pk: &pk,
            owner: &owner,
            expires_at: nonce::expires_at(fresh.seconds_ceil, skew),
            now: self.clock.now_secs(),
        };
        match self.store.claim_nonce(claim).await {
            Ok(NonceOutcome::Claimed) => Ok(()),
            Ok(NonceOutcome::Replayed) => Err(Rejection::ReplayedNonce),
            Err(e) => self.on_store_error(e, &route.name, "claim_nonce"),
        }
    }

    /// The idempotency step: claim the key, or find its stored answer.
    async fn claim_idempotency<'r>(
        &self,
        route: &'r Route,
        parts: &Parts,
        normalized: &str,
        scope: &str,
        body: &Bytes,
    ) -> Result<IdempotencyStep<'r>, Rejection> {
        let Some(rule) = &route.idempotency else {
            return Ok(IdempotencyStep::None);
        };
        let key = match header_text(&parts.headers, &route.headers.idempotency_key) {
            None if rule.required => return Err(Rejection::MissingIdempotencyKey),
            None => return Ok(IdempotencyStep::None),
            Some(Err(())) => return Err(Rejection::MalformedIdempotencyKey),
            Some(Ok(key)) => key,
        };
        idempotency::validate(key)?;
        let pk = idempotency::record_key(scope, key);
        let owner = owner_token();
        let fingerprint =
            idempotency::fingerprint(parts.method.as_str(), normalized, parts.uri.query(), body);
        let now = self.clock.now_secs();
        let lease_until = now + rule.lease.as_secs();
        let outcome = self
            .store
            .claim_idempotency(IdemClaim {
                pk: &pk,
                owner: &owner,
                fingerprint: &fingerprint,
                lease_until,
                expires_at: lease_until,
                now,
            })
            .await;
        match outcome {
            Ok(outcome) => Ok(match idempotency::decide(outcome, &fingerprint, now)? {
                idempotency::Decision::Forward => {
                    IdempotencyStep::Claimed(Claim { pk, owner, rule })
                }
                idempotency::Decision::Replay(stored) => IdempotencyStep::Replay(stored),
            }),
            Err(e) => {
                self.on_store_error(e, &route.name, "claim_idempotency")?;
                Ok(IdempotencyStep::None)
            }
        }
    }

    /// Report mode: whether a refused request is forwarded anyway, after
    /// counting and logging the would-be rejection.
    fn report_only(&self, route: &Route, refused: &Refused, ctx: &Ctx) -> bool {
        if route.mode != Mode::Report
            || !refused.rejection.is_reportable()
            || matches!(refused.body, BodyState::Lost)
        {
            return false;
        }
        self.count_report(route, refused.rejection.reason(), ctx);
        true
    }

    fn count_report(&self, route: &Route, reason: &'static str, ctx: &Ctx) {
        self.metrics.report_only(&route.name, reason);
        tracing::info!(
            route = %route.name,
            reason,
            identity = ctx.identity_tag.as_deref().unwrap_or("-"),
            "would reject (report mode): forwarding"
        );
    }

    /// Forward and stream the answer back (no idempotency record).
    async fn forward_plain(
        &self,
        parts: Parts,
        body: Body,
        out: Outbound<'_>,
        ctx: &mut Ctx,
    ) -> Result<Answer, Rejection> {
        let response = self
            .send(parts, body, out, ctx)
            .await
            .map_err(upstream_rejection)?;
        Ok(Answer {
            response: stream_response(response),
            outcome: Outcome::Forwarded,
        })
    }

    /// Forward a request whose idempotency key we claimed, record the
    /// answer (or release the claim), and answer the caller.
    async fn forward_and_record(
        self: &Arc<Self>,
        parts: Parts,
        body: Bytes,
        out: Outbound<'_>,
        claim: Claim<'_>,
        route: &Route,
        ctx: &mut Ctx,
    ) -> Result<Answer, Rejection> {
        let Claim { pk, owner, rule } = claim;
        // One deadline covers the response head and the buffered body: the
        // first attempt must end within `upstream_timeout` so that it
        // cannot outlive its lease.
        let deadline = tokio::time::Instant::now() + self.upstream.timeout();
        let sent = self.send(parts, body::full(body), out, ctx).await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                if matches!(error, UpstreamError::Connect) {
                    // Never reached the upstream: a retry may run.
                    self.release(&pk, &owner).await;
                }
                // Timeout or a failure after sending: it may have executed;
                // the lease stays until it expires.
                return Err(upstream_rejection(error));
            }
        };
        let status = response.status().as_u16();
        if rule.release_statuses.contains(&status) {
            self.release(&pk, &owner).await;
            return Ok(Answer {
                response: stream_response(response),
                outcome: Outcome::Forwarded,
            });
        }
        let (mut head, upstream_body) = response.into_parts();
        forward::strip_hop_by_hop(&mut head.headers);
        let buffered = tokio::time::timeout_at(
            deadline,
            buffer_up_to(upstream_body, rule.max_response_bytes),
        )
        .await;
        // Either way it reached the upstream: the lease is kept.
        let (kept, rest) = match buffered {
            Ok(Ok(buffered)) => buffered,
            Ok(Err(_)) => return Err(Rejection::UpstreamUnavailable),
            Err(_) => return Err(Rejection::UpstreamTimeout),
        };
        let stored = StoredResponse {
            status,
            headers: head
                .headers
                .iter()
                .filter(|(name, _)| *name != http::header::SET_COOKIE)
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect(),
            body: if rest.is_none() {
                Some(kept.clone())
            } else {
                None
            },
        };
        let expires_at = self.clock.now_secs() + rule.ttl.as_secs();
        match self
            .store
            .complete_idempotency(&pk, &owner, &stored, expires_at)
            .await
        {
            Ok(Fenced::Done) => {}
            Ok(Fenced::LostOwnership) => {
                self.metrics.lost_ownership("complete_idempotency");
                tracing::warn!(route = %route.name, "idempotency record was taken over before completion; answering the caller anyway");
            }
            Err(e) => {
                tracing::warn!(route = %route.name, error = %e, "could not store the idempotent response; answering the caller anyway, storing it in the background");
                self.complete_later(pk, owner, stored, expires_at, rule.lease);
            }
        }
        let body = match rest {
            None => body::full(kept),
            Some(rest) => chain(kept, rest),
        };
        Ok(Answer {
            response: Response::from_parts(head, body),
            outcome: Outcome::Forwarded,
        })
    }

    /// An answered request whose answer the store would not take (it was
    /// unreachable): keep offering the answer, with growing pauses, for one
    /// lease. While the lease lasts a retry gets 409 `idempotency_in_flight`;
    /// once the answer is stored, the stored answer — without this, the
    /// lease would expire and the retry would execute the request again.
    /// Fenced by the owner token like every completion: if the record was
    /// taken over meanwhile, nothing is overwritten. Shutdown waits for it
    /// within `shutdown_grace_secs`.
    fn complete_later(
        self: &Arc<Self>,
        pk: String,
        owner: String,
        stored: StoredResponse,
        expires_at: u64,
        lease: std::time::Duration,
    ) {
        let proxy = Arc::clone(self);
        self.detached.spawn(async move {
            let give_up = tokio::time::Instant::now() + lease;
            let mut pause = std::time::Duration::from_millis(100);
            loop {
                tokio::time::sleep(pause).await;
                let result = proxy
                    .store
                    .complete_idempotency(&pk, &owner, &stored, expires_at)
                    .await;
                match result {
                    Ok(Fenced::Done) => {
                        tracing::info!("stored an idempotent response on a later attempt");
                        return;
                    }
                    Ok(Fenced::LostOwnership) => {
                        proxy.metrics.lost_ownership("complete_idempotency");
                        return;
                    }
                    Err(e) if tokio::time::Instant::now() + pause >= give_up => {
                        tracing::error!(error = %e, "gave up storing an idempotent response: once its lease ends, a retry executes again");
                        return;
                    }
                    Err(_) => pause = (pause * 2).min(std::time::Duration::from_secs(5)),
                }
            }
        });
    }

    /// The memory store forgot every nonce at restart: for one skew window
    /// after start, a timestamp from before the start could be a replay the
    /// store cannot recognise. Compared in whole seconds (the start rounded
    /// down), so clients signing in the start's own second are not refused.
    fn restart_fence(
        &self,
        fresh: &freshness::Fresh,
        skew: std::time::Duration,
    ) -> Result<(), Rejection> {
        if !self.config.store.restart_fence || self.clock.now() >= self.started + skew {
            return Ok(());
        }
        if fresh.millis < i128::from(self.started.as_secs()) * 1000 {
            return Err(Rejection::StaleTimestamp);
        }
        Ok(())
    }

    /// The matched route's name, or `unmatched`.
    fn route_name(&self, ctx: &Ctx) -> &str {
        ctx.route
            .and_then(|i| self.config.routes.get(i))
            .map_or(UNMATCHED, |route| route.name.as_str())
    }

    /// The matched route's request series.
    fn series(&self, ctx: &Ctx) -> &RouteMetrics {
        ctx.route
            .and_then(|i| self.route_metrics.get(i))
            .unwrap_or(&self.unmatched_metrics)
    }

    /// Apply `on_error`: fail closed with a rejection, or fail open.
    fn on_store_error(&self, error: StoreError, route: &str, op: &str) -> Result<(), Rejection> {
        match (self.config.store.on_error, &error) {
            (OnStoreError::Allow, StoreError::Unavailable(_)) => {
                self.metrics.fail_open(route);
                tracing::warn!(route, op, error = %error, "store failed; forwarding unchecked (on_error = \"allow\")");
                Ok(())
            }
            (_, StoreError::Full) => Err(Rejection::StoreFull),
            _ => {
                tracing::warn!(route, op, error = %error, "store failed; refusing (on_error = \"reject\")");
                Err(Rejection::StoreUnavailable)
            }
        }
    }

    async fn release(&self, pk: &str, owner: &str) {
        match self.store.release_idempotency(pk, owner).await {
            Ok(Fenced::Done) => {}
            Ok(Fenced::LostOwnership) => self.metrics.lost_ownership("release_idempotency"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release an idempotency claim; it expires with its lease")
            }
        }
    }

    fn verify_signature<'k>(
        &'k self,
        route: &Route,
        parts: &Parts,
        normalized: &str,
        body: &Bytes,
    ) -> Result<Option<&'k str>, Rejection> {
        let Some(required) = route.signature else {
            return Ok(None);
        };
        let key_id = header_text(&parts.headers, &route.headers.key_id);
        let sig = header_text(&parts.headers, &route.headers.signature);
        let (key_id, sig) = match (key_id, sig) {
            (None, None) if !required => return Ok(None),
            (Some(Ok(key_id)), Some(Ok(sig))) => (key_id, sig),
            (None, _) | (_, None) => return Err(Rejection::MissingSignature),
            _ => return Err(Rejection::BadSignature),
        };
        let timestamp = match header_text(&parts.headers, &route.headers.timestamp) {
            Some(Ok(value)) => value,
            _ => return Err(Rejection::MissingTimestamp),
        };
        let nonce = match header_text(&parts.headers, &route.headers.nonce) {
            Some(Ok(value)) => value,
            _ => "",
        };
        let host = request_host(parts).to_ascii_lowercase();
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{normalized}?{query}"),
            None => normalized.to_owned(),
        };
        let body_sha256 = signature::sha256_hex(body);
        let signed = signature::Signed {
            method: parts.method.as_str(),
            host: &host,
            path_and_query: &path_and_query,
            timestamp,
            nonce,
            body_sha256: &body_sha256,
        };
        signature::verify(&self.config.keys, key_id, sig, &signed).map(Some)
    }

    async fn forward_streaming(
        &self,
        parts: Parts,
        body: Incoming,
        out: Outbound<'_>,
        ctx: &mut Ctx,
    ) -> Result<Answer, Rejection> {
        // A streamed body can fail half way because of the client (broken
        // chunk framing, hang-up): that is the client's fault, not the
        // upstream's, and must not be reported as 502.
        let (body, client_failed) = if http_body::Body::is_end_stream(&body) {
            // Nothing to stream (a GET, or `Content-Length: 0`).
            (body::empty(), None)
        } else {
            let client_failed = Arc::new(AtomicBool::new(false));
            let flag = client_failed.clone();
            let body = body
                .map_err(move |e| -> BoxError {
                    flag.store(true, Ordering::Relaxed);
                    Box::new(e)
                })
                .boxed();
            (body, Some(client_failed))
        };
        let sent = self.send(parts, body, out, ctx).await;
        match sent {
            Ok(response) => Ok(Answer {
                response: stream_response(response),
                outcome: Outcome::Forwarded,
            }),
            Err(_)
                if client_failed
                    .as_ref()
                    .is_some_and(|failed| failed.load(Ordering::Relaxed)) =>
            {
                ctx.close = true;
                Err(Rejection::MalformedRequest(
                    "The request body could not be read.",
                ))
            }
            Err(error) => Err(upstream_rejection(error)),
        }
    }

    async fn send(
        &self,
        mut parts: Parts,
        body: Body,
        out: Outbound<'_>,
        ctx: &Ctx,
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
        let normalized = out.normalized;
        if parts.uri.scheme().is_some() || parts.uri.path() != normalized {
            let target = match parts.uri.query() {
                Some(query) => format!("{normalized}?{query}"),
                None => normalized.to_owned(),
            };
            parts.uri = Uri::try_from(target)
                .map_err(|_| UpstreamError::Other("could not build the upstream URI".into()))?;
        }
        parts.version = Version::HTTP_11;
        forward::upstream_headers(
            &mut parts.headers,
            out.peer,
            client_host.as_ref(),
            out.request_id,
            out.verified_key,
            out.report,
        );
        let started = Instant::now();
        let result = self.upstream.send(Request::from_parts(parts, body)).await;
        self.series(ctx).upstream(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            tracing::warn!(route = self.route_name(ctx), error = %e, "upstream request failed");
        }
        result
    }
}

fn upstream_rejection(error: UpstreamError) -> Rejection {
    match error {
        UpstreamError::Timeout => Rejection::UpstreamTimeout,
        UpstreamError::Connect | UpstreamError::Other(_) => Rejection::UpstreamUnavailable,
    }
}

/// The host the client addressed: the absolute-form authority, else `Host`.
fn request_host(parts: &Parts) -> &str {
    if let Some(authority) = parts.uri.authority() {
        return authority.as_str();
    }
    parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
}

fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// A random token identifying one claim attempt.
fn owner_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Keep a sane client request id, or make one.
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
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

async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Rejection> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Rejection::MalformedRequest(
            "The request body was not received in time.",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Rejection::BodyTooLarge)
        }
        Ok(Err(_)) => Err(Rejection::MalformedRequest(
            "The request body could not be read.",
        )),
    }
}

/// Read at most `limit` bytes; if more arrive, hand back the rest unread.
async fn buffer_up_to(
    mut body: UpstreamBody,
    limit: usize,
) -> Result<(Bytes, Option<UpstreamBody>), hyper::Error> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buffer.extend_from_slice(&data);
            if buffer.len() > limit {
                return Ok((buffer.freeze(), Some(body)));
            }
        }
    }
    Ok((buffer.freeze(), None))
}

/// Bytes already read, followed by the rest of a streaming body.
fn chain(head: Bytes, rest: UpstreamBody) -> Body {
    let first = stream::once(async move { Ok::<_, BoxError>(Frame::data(head)) });
    let tail = BodyStream::new(rest).map(|frame| frame.map_err(|e| -> BoxError { Box::new(e) }));
    BodyExt::boxed(StreamBody::new(first.chain(tail)))
}

fn stream_response(response: Response<UpstreamBody>) -> Response<Body> {
    let (mut head, body) = response.into_parts();
    forward::strip_hop_by_hop(&mut head.headers);
    Response::from_parts(head, body::boxed(body))
}

fn replay_response(stored: StoredResponse) -> Response<Body> {
    let mut response = Response::new(body::full(stored.body.unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}
