//! Prometheus metrics (SPEC §7), exposed on the admin listener.
//!
//! Labels are bounded: route names from the config, reasons and outcomes
//! from fixed sets, store operation names. This module must never put a
//! path, an identity, a key, a nonce or a secret into a label.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// All metrics of one proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteOutcome, Counter>,
    rejections: Family<RouteReason, Counter>,
    upstream_duration: HistogramFamily<RouteLabel>,
    store_duration: HistogramFamily<OpLabel>,
    store_errors: Family<OpLabel, Counter>,
    fail_open: Family<RouteLabel, Counter>,
    /// Cluster rate-limit decisions taken per instance because the store
    /// failed (`on_error = "allow"`).
    rate_fallback: Family<RouteLabel, Counter>,
    lost_ownership: Family<OpLabel, Counter>,
    in_flight: Gauge,
    reloads: Family<ResultLabel, Counter>,
    report_only: Family<RouteReason, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
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
    /// Create and register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("replay_guard");
        let requests = Family::<RouteOutcome, Counter>::default();
        registry.register(
            "requests",
            "Requests by route and outcome",
            requests.clone(),
        );
        let rejections = Family::<RouteReason, Counter>::default();
        registry.register(
            "rejections",
            "Rejections by route and reason",
            rejections.clone(),
        );
        let upstream_duration: HistogramFamily<RouteLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Time to the upstream's response head",
            upstream_duration.clone(),
        );
        let store_duration: HistogramFamily<OpLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "store_duration_seconds",
            "Store call latency",
            store_duration.clone(),
        );
        let store_errors = Family::<OpLabel, Counter>::default();
        registry.register(
            "store_errors",
            "Store calls that failed",
            store_errors.clone(),
        );
        let fail_open = Family::<RouteLabel, Counter>::default();
        registry.register(
            "store_fail_open",
            "Requests forwarded unchecked because the store failed and on_error = \"allow\"",
            fail_open.clone(),
        );
        let rate_fallback = Family::<RouteLabel, Counter>::default();
        registry.register(
            "rate_limit_fallback",
            "Cluster rate-limit decisions taken by the per-instance fallback because the store failed (on_error = \"allow\")",
            rate_fallback.clone(),
        );
        let lost_ownership = Family::<OpLabel, Counter>::default();
        registry.register(
            "idempotency_lost_ownership",
            "Complete or release writes refused because another claimant took the key over",
            lost_ownership.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being handled",
            in_flight.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (ok, error)",
            reloads.clone(),
        );
        let report_only = Family::<RouteReason, Counter>::default();
        registry.register(
            "report_only",
            "Would-be rejections forwarded anyway by routes in report mode",
            report_only.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines never written (stderr slow, closed or failing); requests are unaffected",
            crate::log_output::dropped_lines().clone(),
        );
        Self {
            report_only,
            reloads,
            registry,
            requests,
            rejections,
            upstream_duration,
            store_duration,
            store_errors,
            fail_open,
            rate_fallback,
            lost_ownership,
            in_flight,
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
        RouteMetrics {
            forwarded: counter(Outcome::Forwarded),
            rejected: counter(Outcome::Rejected),
            replayed: counter(Outcome::Replayed),
            error: counter(Outcome::Error),
            upstream: self
                .upstream_duration
                .get_or_create(&RouteLabel {
                    route: route.to_owned(),
                })
                .clone(),
        }
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

    /// Count a cluster rate-limit decision taken by the per-instance
    /// fallback; `by = 0` only creates the series (at 0).
    pub fn rate_fallback(&self, route: &str, by: u64) {
        self.rate_fallback
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .inc_by(by);
    }

    /// Count a fenced write that lost its record.
    pub fn lost_ownership(&self, op: &str) {
        self.lost_ownership
            .get_or_create(&OpLabel { op: op.to_owned() })
            .inc();
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

    /// Count a configuration reload attempt.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }

    /// Track requests in flight.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Record one store call: its latency and, if it failed, an error.
    /// Called by [`crate::store::MeteredStore`].
    pub(crate) fn store_call(&self, op: &str, started: Instant, failed: bool) {
        let label = OpLabel { op: op.to_owned() };
        self.store_duration
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        if failed {
            self.store_errors.get_or_create(&label).inc();
        }
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

/// The request-path series of one route, resolved once at startup so a
/// request costs no label allocation or hashing.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    forwarded: Counter,
    rejected: Counter,
    replayed: Counter,
    error: Counter,
    upstream: Histogram,
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
}
