//! Prometheus metrics (SPEC §7), exposed on the admin listener.
//!
//! Labels are bounded: route names from the config, reasons and outcomes
//! from fixed sets, store operation names. This module must never put a
//! path, an identity, a key, a nonce or a secret into a label.
//!
//! Every counter series of a configured route is created at startup (at
//! 0): its outcomes and the rejection reasons its rules can produce
//! ([`reasons`]). Duration histograms reach the configured upstream
//! timeout. `process_*` series come from [`process`]; they and
//! `replay_guard_build_info` are the only series without the prefix rule
//! (`process_*` carry no prefix, like every other exporter's).

mod jwks;
mod memory;
mod process;
mod reasons;
mod reload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

pub use jwks::JwksSeries;
use memory::{MemoryCollector, MemorySource};
use reload::ReloadSeries;

use crate::config::{Route, Unmatched};

/// The upstream timeout the histograms reach when none is given (the
/// default `upstream_timeout_ms`).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOutcome {
    route: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteReason {
    route: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    route: String,
    provider: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    /// A store operation's name: always one of ours, never client text, so
    /// a `&'static str` (no allocation per store call).
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// Builds the histograms of one family with the same buckets.
#[derive(Clone, Debug)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type HistogramFamily<L> = Family<L, Histogram, Buckets>;

/// Store calls: 0.25 ms .. ~8 s (a store call's own timeout is shorter).
fn store_buckets() -> Buckets {
    Buckets(exponential_buckets(0.000_25, 2.0, 16).collect())
}

/// Requests and upstream calls: 0.25 ms doubling to ~8 s, then coarser
/// steps, up to and including the upstream timeout (a request slower than
/// the timeout is refused, so it lands in `+Inf` only when its body or the
/// store took the rest).
fn request_buckets(upstream_timeout: Duration) -> Buckets {
    let timeout = upstream_timeout.as_secs_f64().max(0.001);
    let coarse = [
        10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0,
    ];
    let mut buckets: Vec<f64> = exponential_buckets(0.000_25, 2.0, 16)
        .chain(coarse)
        .filter(|&bound| bound < timeout)
        .collect();
    buckets.push(timeout);
    Buckets(buckets.into())
}

/// Register `metric` under `name` and hand it back.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// All metrics of one proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteOutcome, Counter>,
    rejections: Family<RouteReason, Counter>,
    upstream_duration: HistogramFamily<RouteLabel>,
    request_duration: HistogramFamily<RouteLabel>,
    store_duration: HistogramFamily<OpLabel>,
    store_errors: Family<OpLabel, Counter>,
    fail_open: Family<RouteLabel, Counter>,
    /// Cluster rate-limit decisions taken per instance because the store
    /// failed (`on_error = "allow"`).
    rate_fallback: Family<RouteLabel, Counter>,
    lost_ownership: Family<OpLabel, Counter>,
    in_flight: Gauge,
    reloads: ReloadSeries,
    jwks: jwks::JwksFamilies,
    report_only: Family<RouteReason, Counter>,
    webhooks: Family<WebhookLabels, Counter>,
    memory: MemoryCollector,
}

/// Request outcome label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent to the upstream and answered.
    Forwarded,
    /// Refused by a check.
    Rejected,
    /// Answered from a stored idempotent response.
    Replayed,
    /// Upstream or store failure.
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
            Outcome::Replayed => "replayed",
            Outcome::Error => "error",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, with histograms reaching the default upstream timeout.
    pub fn new() -> Self {
        Self::with_upstream_timeout(DEFAULT_UPSTREAM_TIMEOUT)
    }

    /// Every metric, with request and upstream histograms whose buckets
    /// reach `upstream_timeout`.
    pub fn with_upstream_timeout(upstream_timeout: Duration) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let memory = MemoryCollector::default();
        let registry = root.sub_registry_with_prefix("replay_guard");
        registry.register_collector(Box::new(memory.clone()));
        registry.register(
            "build",
            "The running build (value 1)",
            Info::new(VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            }),
        );
        let requests = request_families(registry, upstream_timeout);
        let store = store_families(registry);
        let reloads = ReloadSeries::register(registry);
        let jwks = jwks::JwksFamilies::register(registry);
        let in_flight = add(
            registry,
            "in_flight_requests",
            "Requests being handled",
            Gauge::default(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines never written (stderr slow, closed or failing); requests are unaffected",
            crate::log_output::dropped_lines().clone(),
        );
        Self {
            registry: root,
            requests: requests.requests,
            rejections: requests.rejections,
            upstream_duration: requests.upstream_duration,
            request_duration: requests.request_duration,
            report_only: requests.report_only,
            webhooks: requests.webhooks,
            store_duration: store.duration,
            store_errors: store.errors,
            fail_open: store.fail_open,
            rate_fallback: store.rate_fallback,
            lost_ownership: store.lost_ownership,
            in_flight,
            reloads,
            jwks,
            memory,
        }
    }

    /// The pre-resolved request series of one route. Every outcome's series
    /// is exported from startup, at zero until it moves.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let counter = |outcome: Outcome| {
            self.requests
                .get_or_create(&RouteOutcome {
                    route: route.to_owned(),
                    outcome: outcome.label().to_owned(),
                })
                .clone()
        };
        let label = RouteLabel {
            route: route.to_owned(),
        };
        RouteMetrics {
            forwarded: counter(Outcome::Forwarded),
            rejected: counter(Outcome::Rejected),
            replayed: counter(Outcome::Replayed),
            error: counter(Outcome::Error),
            upstream: self.upstream_duration.get_or_create(&label).clone(),
            duration: self.request_duration.get_or_create(&label).clone(),
        }
    }

    /// Create, at 0, the rejection series of every reason `rule` can
    /// produce, its report-only series in report mode and its fail-open
    /// series where it uses the store, plus its outcomes
    /// ([`Metrics::route`]).
    pub fn prepare_route(&self, rule: &Route) -> RouteMetrics {
        let reasons = reasons::for_route(rule);
        self.zero_rejections(&rule.name, &reasons);
        if rule.nonce.is_some() || rule.idempotency.is_some() {
            let _ = self.fail_open.get_or_create(&RouteLabel {
                route: rule.name.clone(),
            });
        }
        self.zero_store_series(rule);
        if rule.mode == crate::config::Mode::Report {
            for reason in reasons.iter().chain(&["idempotent_replay"]) {
                let _ = self.report_only.get_or_create(&RouteReason {
                    route: rule.name.clone(),
                    reason: (*reason).to_owned(),
                });
            }
        }
        self.route(&rule.name)
    }

    /// Create, at 0, the store error series of the operations `rule` calls
    /// and, where it fences idempotency records, its lost-ownership series,
    /// so that an alert on their rate has a series before the first error.
    fn zero_store_series(&self, rule: &Route) {
        let idempotency = rule.idempotency.is_some() || rule.webhook.is_some();
        let cluster = rule
            .rate_limit
            .as_ref()
            .is_some_and(|r| r.scope == crate::config::RateScope::Cluster);
        let ops = [
            (rule.nonce.is_some(), &["claim_nonce"][..]),
            (
                idempotency,
                &[
                    "claim_idempotency",
                    "complete_idempotency",
                    "release_idempotency",
                ][..],
            ),
            (cluster, &["reserve_rate"][..]),
        ];
        for op in ops
            .iter()
            .filter(|(used, _)| *used)
            .flat_map(|(_, ops)| *ops)
        {
            let _ = self.store_errors.get_or_create(&OpLabel { op });
        }
        if idempotency {
            for op in ["complete_idempotency", "release_idempotency"] {
                let _ = self.lost_ownership.get_or_create(&OpLabel { op });
            }
        }
    }

    /// The series of requests no route names (`route = "unmatched"`), with
    /// its rejection series at 0.
    pub fn prepare_unmatched(&self, label: &str, unmatched: Unmatched) -> RouteMetrics {
        self.zero_rejections(label, &reasons::for_unmatched(unmatched));
        self.route(label)
    }

    fn zero_rejections(&self, route: &str, reasons: &[&'static str]) {
        for reason in reasons {
            let _ = self.rejections.get_or_create(&RouteReason {
                route: route.to_owned(),
                reason: (*reason).to_owned(),
            });
        }
    }

    /// Export the memory store's live records (read at each scrape) and
    /// its capacity. The first call wins; later ones are ignored.
    pub fn memory_store(
        &self,
        capacity: usize,
        entries: impl Fn() -> usize + Send + Sync + 'static,
    ) {
        let _ = self.memory.0.set(MemorySource {
            capacity,
            entries: Box::new(entries),
        });
    }

    /// Count one rejection.
    pub fn rejection(&self, route: &str, reason: &str) {
        self.rejections
            .get_or_create(&RouteReason {
                route: route.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Count a request forwarded unchecked under `on_error = "allow"`.
    pub fn fail_open(&self, route: &str) {
        self.fail_open
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .inc();
    }

    /// Count a fenced write that lost its record.
    pub fn lost_ownership(&self, op: &'static str) {
        self.lost_ownership.get_or_create(&OpLabel { op }).inc();
    }

    /// Count a would-be rejection forwarded in report mode.
    pub fn report_only(&self, route: &str, reason: &str) {
        self.report_only
            .get_or_create(&RouteReason {
                route: route.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The series of a JWKS read from `source` (`file` or `url`).
    pub fn jwks(&self, source: &str) -> JwksSeries {
        self.jwks.series(source)
    }

    /// Count a configuration reload attempt that took `took`.
    pub fn reload(&self, ok: bool, took: Duration) {
        self.reloads.record(ok, took);
    }

    /// Track requests in flight.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Record one store call: its latency and, if it failed, an error.
    /// Called by [`crate::store::MeteredStore`].
    pub(crate) fn store_call(&self, op: &'static str, started: Instant, failed: bool) {
        let label = OpLabel { op };
        self.store_duration
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        if failed {
            self.store_errors.get_or_create(&label).inc();
        }
    }

    /// Count a cluster rate-limit decision taken by the per-instance
    /// fallback; `by = 0` only creates the series (at 0).
    pub fn rate_fallback(&self, route: &str, by: u64) {
        self.rate_fallback
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .inc_by(by);
    }

    /// Export every outcome series of a webhook route, at zero.
    pub fn webhook_series(&self, route: &str, provider: &str) {
        for outcome in [
            Outcome::Forwarded,
            Outcome::Rejected,
            Outcome::Replayed,
            Outcome::Error,
        ] {
            drop(self.webhooks.get_or_create(&WebhookLabels {
                route: route.to_owned(),
                provider: provider.to_owned(),
                outcome: outcome.label().to_owned(),
            }));
        }
    }

    /// Count one delivery to a webhook route.
    pub fn webhook(&self, route: &str, provider: &str, outcome: Outcome) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                route: route.to_owned(),
                provider: provider.to_owned(),
                outcome: outcome.label().to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The per-route request families.
struct RequestFamilies {
    requests: Family<RouteOutcome, Counter>,
    webhooks: Family<WebhookLabels, Counter>,
    rejections: Family<RouteReason, Counter>,
    report_only: Family<RouteReason, Counter>,
    upstream_duration: HistogramFamily<RouteLabel>,
    request_duration: HistogramFamily<RouteLabel>,
}

fn request_families(registry: &mut Registry, upstream_timeout: Duration) -> RequestFamilies {
    let buckets = request_buckets(upstream_timeout);
    RequestFamilies {
        requests: add(
            registry,
            "requests",
            "Requests by route and outcome",
            Family::default(),
        ),
        rejections: add(
            registry,
            "rejections",
            "Rejections by route and reason",
            Family::default(),
        ),
        upstream_duration: add(
            registry,
            "upstream_duration_seconds",
            "Time to the upstream's response head",
            Family::new_with_constructor(buckets.clone()),
        ),
        request_duration: add(
            registry,
            "request_duration_seconds",
            "Time from the request's arrival to the proxy's response head, every outcome",
            Family::new_with_constructor(buckets),
        ),
        report_only: add(
            registry,
            "report_only",
            "Would-be rejections forwarded anyway by routes in report mode",
            Family::default(),
        ),
        webhooks: add(
            registry,
            "webhook_deliveries",
            "Webhook deliveries by route, provider and outcome (forwarded, rejected, replayed, error)",
            Family::default(),
        ),
    }
}

/// The store families.
struct StoreFamilies {
    duration: HistogramFamily<OpLabel>,
    errors: Family<OpLabel, Counter>,
    fail_open: Family<RouteLabel, Counter>,
    rate_fallback: Family<RouteLabel, Counter>,
    lost_ownership: Family<OpLabel, Counter>,
}

fn store_families(registry: &mut Registry) -> StoreFamilies {
    StoreFamilies {
        duration: add(
            registry,
            "store_duration_seconds",
            "Store call latency",
            Family::new_with_constructor(store_buckets()),
        ),
        errors: add(
            registry,
            "store_errors",
            "Store calls that failed",
            Family::default(),
        ),
        fail_open: add(
            registry,
            "store_fail_open",
            "Requests forwarded unchecked because the store failed and on_error = \"allow\"",
            Family::default(),
        ),
        rate_fallback: add(
            registry,
            "rate_limit_fallback",
            "Cluster rate-limit decisions taken by the per-instance fallback because the store failed (on_error = \"allow\")",
            Family::default(),
        ),
        lost_ownership: add(
            registry,
            "idempotency_lost_ownership",
            "Complete or release writes refused because another claimant took the key over",
            Family::default(),
        ),
    }
}

/// The request-path series of one route, resolved once at startup so a
/// request costs no label allocation or hashing.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    forwarded: Counter,
    rejected: Counter,
    replayed: Counter,
    error: Counter,
    upstream: Histogram,
    duration: Histogram,
}

impl RouteMetrics {
    /// Count one finished request.
    pub fn request(&self, outcome: Outcome) {
        match outcome {
            Outcome::Forwarded => self.forwarded.inc(),
            Outcome::Rejected => self.rejected.inc(),
            Outcome::Replayed => self.replayed.inc(),
            Outcome::Error => self.error.inc(),
        };
    }

    /// Record the upstream's response time.
    pub fn upstream(&self, seconds: f64) {
        self.upstream.observe(seconds);
    }

    /// Record a request's time to its response head.
    pub fn duration(&self, seconds: f64) {
        self.duration.observe(seconds);
    }
}

#[cfg(test)]
mod tests;
