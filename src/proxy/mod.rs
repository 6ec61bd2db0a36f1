//! The request path: named phases over one per-request context
//! ([`RequestCtx`]), sequenced by [`Proxy::handle`] in one short function.
//! The chart of the phases is in the crate docs ([`crate`], "The request
//! path").
//!
//! - `framing`: refuse what must never be forwarded; normalise the path.
//! - route: the first route whose methods and path match (below).
//! - `guard`: a protected route's checks, in order, each one call into
//!   its module under [`crate::checks`].
//! - report mode: the one decision whether a would-be refusal is forwarded
//!   anyway (below).
//! - `forward` / `record`: forward, replay a stored answer, or forward
//!   a claimed request and record its answer.
//! - `respond`: the one place an outcome becomes the answer, is counted
//!   and logged.
//!
//! This module must never forward a request whose checks failed (outside
//! report mode), and never forward unchecked because the store failed
//! unless the operator chose `on_error = "allow"`.

mod access_log;
mod ctx;
mod forward;
mod framing;
mod guard;
mod record;
mod respond;
mod scheme;
mod webhook;

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

pub use ctx::{RequestCtx, Target};
pub use record::REPLAYED_HEADER;

use crate::body::{self, Body};
use crate::checks::freshness::Fence;
use crate::checks::idempotency::{Landing, Step};
use crate::checks::nonce;
use crate::checks::rate_limit::cluster::ClusterParts;
use crate::checks::rate_limit::RateLimiter;
use crate::checks::StoreAccess;
use crate::clock::SharedClock;
use crate::config::{Config, JwksSource, Mode, RateScope, Route, StoreKind, Unmatched};
use crate::forward::Peer;
use crate::identity::JwtVerifier;
use crate::metrics::{JwksSeries, Metrics, Outcome, RouteMetrics};
use crate::path;
use crate::rejection::Rejection;
use crate::routes::{RouteTable, Routed};
use crate::store::Store;
use crate::upstream::Upstream;
use guard::{BodyState, Refused};
use respond::InFlight;

/// Route label for requests no route names.
const UNMATCHED: &str = "unmatched";

/// Everything the request path needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    /// The validated configuration.
    config: Arc<Config>,
    /// Each route's rule, limiter and metrics, in match (file) order.
    routes: RouteTable<Arc<RouteState>>,
    /// Request series of unmatched paths.
    unmatched: RouteMetrics,
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
    /// Claimed idempotent requests running on their own tasks; shared by
    /// every config generation so that shutdown can wait for them.
    detached: TaskTracker,
    /// Answers of those tasks whose records have not landed yet; shared by
    /// every config generation too.
    landing: Arc<Landing>,
    /// Bearer-token verification for `jwt:` identities (`[jwt]`), with
    /// this generation's JWKS.
    jwt: Option<Arc<JwtVerifier>>,
}

/// One configured route and its state: the rule, its rate limiter and its
/// metric series, resolved once per config generation.
#[derive(Debug)]
pub struct RouteState {
    /// The validated rule.
    pub rule: Route,
    /// The route's limiter, where it has a rate limit. Shared with the next
    /// config generation when the route's name and rule are unchanged, so a
    /// reload keeps rate-limit state.
    pub limiter: Option<Arc<RateLimiter>>,
    /// The route's request series.
    pub metrics: RouteMetrics,
    /// Timestamps whose nonce records may be missing (a memory store's
    /// restart, a reload that widened the skew): refused as stale.
    pub fences: Vec<Fence>,
}

impl AsRef<RouteState> for RouteState {
    fn as_ref(&self) -> &RouteState {
        self
    }
}

impl Routed for RouteState {
    fn route(&self) -> &Route {
        &self.rule
    }
}

/// A route's limiter: shared on DynamoDB when the rule says `cluster`;
/// per instance otherwise (on the memory store `cluster` is `instance`,
/// with a warning).
fn rate_limiter(
    config: &Config,
    rule: &Route,
    limit: crate::config::RateLimit,
    store: &Arc<dyn Store>,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
) -> RateLimiter {
    let shared = limit.scope == RateScope::Cluster;
    if shared && config.store.kind == StoreKind::Memory {
        tracing::warn!(
            route = %rule.name,
            "rate_limit scope = \"cluster\" on the memory store is per instance"
        );
    }
    let parts = (shared && config.store.kind == StoreKind::Dynamodb).then(|| ClusterParts {
        store: Arc::clone(store),
        on_error: config.store.on_error,
        metrics: Arc::clone(metrics),
        route: rule.name.clone(),
        key_hash: config.store.key_hash_secret.clone(),
    });
    RateLimiter::new(limit, clock.clone(), parts)
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
        let parts = Shared {
            store,
            clock,
            metrics,
            started,
            detached: TaskTracker::new(),
            landing: Arc::default(),
            jwt: None,
        };
        Self::build(config, parts, &[])
    }

    /// The next config generation: same store, clock, metrics and start
    /// time; limiters of routes whose name and rule are unchanged are kept.
    pub fn reload(&self, config: Arc<Config>) -> Self {
        let parts = Shared {
            store: self.store.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            started: self.started,
            detached: self.detached.clone(),
            landing: self.landing.clone(),
            jwt: self.jwt.clone(),
        };
        Self::build(config, parts, self.routes.routes())
    }

    fn build(config: Arc<Config>, shared: Shared, previous: &[Arc<RouteState>]) -> Self {
        let Shared {
            store,
            clock,
            metrics,
            started,
            detached,
            landing,
            jwt: previous_jwt,
        } = shared;
        let jwt = config.jwt.as_ref().map(|jwt| {
            let series = match &jwt.jwks {
                Some(JwksSource::File(_)) => metrics.jwks("file"),
                Some(JwksSource::Url(_)) => metrics.jwks("url"),
                None => JwksSeries::default(),
            };
            let verifier = JwtVerifier::new(jwt, clock.clone(), previous_jwt.as_deref(), series);
            verifier.spawn_refresh();
            verifier
        });
        let routes = config
            .routes
            .iter()
            .map(|rule| {
                let limiter = rule.rate_limit.map(|limit| {
                    let kept = previous.iter().find_map(|old| {
                        let limiter = old.limiter.as_ref()?;
                        (old.rule.name == rule.name && *limiter.rule() == limit)
                            .then(|| Arc::clone(limiter))
                    });
                    kept.unwrap_or_else(|| {
                        Arc::new(rate_limiter(&config, rule, limit, &store, &clock, &metrics))
                    })
                });
                let old = previous.iter().find(|old| old.rule.name == rule.name);
                let restart = config.store.restart_fence.then_some(started);
                if let Some(hook) = &rule.webhook {
                    metrics.webhook_series(&rule.name, hook.provider.name());
                }
                Arc::new(RouteState {
                    rule: rule.clone(),
                    limiter,
                    metrics: metrics.prepare_route(rule),
                    fences: fences(rule, old.map(AsRef::as_ref), restart, clock.now()),
                })
            })
            .collect();
        let routes = RouteTable::new(routes);
        let upstream = Upstream::new(
            &config.server.upstream,
            config.server.upstream_connect_timeout,
            config.server.upstream_timeout,
            config.server.workers,
        );
        Self {
            routes,
            unmatched: metrics.prepare_unmatched(UNMATCHED, config.server.unmatched),
            config,
            started,
            store,
            clock,
            upstream,
            metrics,
            detached,
            landing,
            jwt,
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

    /// The bearer-token verifier, when `[jwt]` is configured.
    pub fn jwt(&self) -> Option<&Arc<JwtVerifier>> {
        self.jwt.as_ref()
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

    /// What a store-writing check of route `route` needs, for the request
    /// `request_id`.
    fn store_access<'a>(&'a self, route: &'a str, request_id: &'a str) -> StoreAccess<'a> {
        StoreAccess {
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            on_error: self.config.store.on_error,
            metrics: &self.metrics,
            route,
            request_id,
            key_hash: self.config.store.key_hash_secret.as_ref(),
            landing: &self.landing,
        }
    }

    /// Forget idle rate-limit identities (run on a schedule).
    pub fn sweep_limiters(&self) {
        for limiter in self
            .routes
            .routes()
            .iter()
            .filter_map(|route| route.limiter.as_ref())
        {
            limiter.sweep();
        }
    }

    /// Handle one request: never fails, always answers.
    ///
    /// The future may be dropped when the client hangs up; the only part
    /// that must then still finish — forwarding a request whose
    /// idempotency key is claimed and recording its answer — runs on its
    /// own task. The `Result` is the shape hyper's service expects.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Peer,
    ) -> Result<Response<Body>, Infallible> {
        let request_id = framing::request_id(request.headers());
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let mut ctx = RequestCtx::new(request_id, peer, method, uri);
        let in_flight = InFlight::enter(&self.metrics);
        let result = self.phases(request, &mut ctx).await;
        drop(in_flight);
        Ok(self.respond(result, ctx))
    }

    /// The phases, top to bottom; the first refusal answers.
    async fn phases(
        self: &Arc<Self>,
        request: Request<Incoming>,
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Rejection> {
        let (parts, body) = request.into_parts();
        framing::check(&parts, &self.config.server, ctx)?;
        let Some(route) = self.route(&parts.method, ctx) else {
            if self.config.server.unmatched == Unmatched::Reject {
                return Err(Rejection::RouteNotAllowed);
            }
            return self.forward_streaming(parts, body, ctx).await;
        };
        ctx.route = Some(Arc::clone(&route));
        if route.rule.is_pass_through() {
            return self.forward_streaming(parts, body, ctx).await;
        }
        let checked = match self.run_checks(&route, &parts, body, ctx).await {
            Ok(checked) => checked,
            Err(refused) => return self.report_or_refuse(parts, refused, ctx).await,
        };
        ctx.bytes_in = access_log::BytesIn::Read(checked.body.len() as u64);
        match checked.idempotency {
            Step::Claimed(claim) => self.forward_claimed(parts, checked.body, claim, ctx).await,
            Step::Replay(stored) if !self.report_only(ctx, "idempotent_replay") => {
                Ok(record::replay(stored))
            }
            Step::Replay(_) | Step::None => {
                self.forward_plain(parts, body::full(checked.body), ctx)
                    .await
            }
        }
    }

    /// The route phase: the first route whose methods and normalised path
    /// match.
    fn route(&self, method: &Method, ctx: &RequestCtx) -> Option<Arc<RouteState>> {
        let key = path::match_key(ctx.target.path());
        let key = if self.config.server.case_insensitive_paths {
            Cow::Owned(key.to_ascii_lowercase())
        } else {
            key
        };
        self.routes.find(method, &key).cloned()
    }

    /// A refused request: answered with its rejection, or — in report mode,
    /// for a client-side check whose body is still whole — forwarded with
    /// the would-be rejection named to the upstream.
    async fn report_or_refuse(
        &self,
        parts: http::request::Parts,
        refused: Refused,
        ctx: &mut RequestCtx,
    ) -> Result<Answer, Rejection> {
        let Refused { rejection, body } = refused;
        let body = match body {
            _ if !rejection.is_reportable() => return Err(rejection),
            BodyState::Lost => return Err(rejection),
            BodyState::Read(bytes) => {
                ctx.bytes_in = access_log::BytesIn::Read(bytes.len() as u64);
                body::full(bytes)
            }
            BodyState::Unread(incoming) => body::boxed(incoming),
        };
        if !self.report_only(ctx, rejection.reason()) {
            return Err(rejection);
        }
        self.forward_plain(parts, body, ctx).await
    }

    /// Report mode, the one decision: on a route in report mode, count and
    /// log the would-be refusal `reason`, name it to the upstream, and say
    /// that the request goes on.
    fn report_only(&self, ctx: &mut RequestCtx, reason: &'static str) -> bool {
        let Some(route) = &ctx.route else {
            return false;
        };
        if route.rule.mode != Mode::Report {
            return false;
        }
        self.metrics.report_only(&route.rule.name, reason);
        tracing::info!(
            request_id = ctx.request_id(),
            route = %route.rule.name,
            reason,
            identity = ctx.identity_tag(),
            "would reject (report mode): forwarding"
        );
        ctx.report = Some(reason);
        true
    }

    /// The matched route's request series.
    fn series<'a>(&'a self, ctx: &'a RequestCtx) -> &'a RouteMetrics {
        ctx.route
            .as_ref()
            .map_or(&self.unmatched, |route| &route.metrics)
    }
}

/// A route's fences: the memory store's restart fence, then every earlier
/// generation's that can still refuse something, then one for this reload
/// if it widened the route's skew.
fn fences(
    rule: &Route,
    old: Option<&RouteState>,
    restart: Option<std::time::Duration>,
    now: std::time::Duration,
) -> Vec<Fence> {
    let Some(skew) = rule.freshness.as_ref().map(|f| f.max_skew) else {
        return Vec::new();
    };
    let mut fences: Vec<Fence> = match old {
        Some(old) => old
            .fences
            .iter()
            .copied()
            .filter(|f| f.is_live(skew, now))
            .collect(),
        None => restart.map(Fence::restart).into_iter().collect(),
    };
    let old_skew = old
        .filter(|old| old.rule.nonce.is_some())
        .and_then(|old| old.rule.freshness.as_ref())
        .map(|f| f.max_skew);
    if let Some(old_skew) = old_skew.filter(|old_skew| *old_skew < skew) {
        let margin = std::time::Duration::from_secs(nonce::CLOCK_MARGIN_SECS);
        fences.push(Fence::widened(now, old_skew, margin));
    }
    fences
}

/// What every config generation shares.
struct Shared {
    store: Arc<dyn Store>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    started: std::time::Duration,
    detached: TaskTracker,
    landing: Arc<Landing>,
    /// The previous generation's verifier (its fetched JWKS is kept).
    jwt: Option<Arc<JwtVerifier>>,
}
