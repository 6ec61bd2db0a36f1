//! What a loadgen run found: per-worker [`Tally`]s of what each request
//! came to, merged into one [`Report`] with latency percentiles, counts by
//! status, reason, error and kind, printed as text or serialised as JSON.
//!
//! This file only counts and formats; it must never send or wait. The
//! report's text and JSON shape are an interface (scripts and tests read
//! `--json`): field names and line formats must not drift.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::plan::{Kind, Plan};
use super::LoadgenError;

/// Latency histogram upper bound, in microseconds (values above saturate).
const MAX_LATENCY_US: u64 = 120_000_000;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds.
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Counts for one kind of request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindCounts {
    /// Requests of this kind sent (answered or failed).
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 2xx with `Idempotent-Replayed: true` (a stored answer).
    pub stored_answer: u64,
}

impl KindCounts {
    fn add(&mut self, other: &KindCounts) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.stored_answer += other.stored_answer;
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Target.
    pub url: String,
    /// Method.
    pub method: String,
    /// `closed-loop` or `open-loop`.
    pub mode: &'static str,
    /// Workers / connections.
    pub concurrency: usize,
    /// Target rate (open-loop), requests per second.
    pub target_rps: Option<f64>,
    /// Wall time of the run, seconds.
    pub elapsed_secs: f64,
    /// Requests sent (= sum of statuses + sum of errors).
    pub sent: u64,
    /// Achieved requests per second.
    pub rps: f64,
    /// Latency of answered requests, milliseconds.
    pub latency_ms: Latency,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Rejections by problem+json `reason`.
    pub reasons: BTreeMap<String, u64>,
    /// Requests with no answer, by kind (`timeout`, `connect`, `io`).
    pub errors: BTreeMap<String, u64>,
    /// New operations.
    pub fresh: KindCounts,
    /// Verbatim resends of admitted requests.
    pub replays: KindCounts,
    /// Verbatim replays answered 2xx. Must be 0.
    pub replays_admitted: u64,
    /// Same Idempotency-Key, fresh nonce.
    pub idempotent_retries: KindCounts,
}

impl Report {
    /// The report of a run of `plan` that took `elapsed` and came to `total`.
    pub(super) fn new(plan: &Plan, total: Tally, elapsed: Duration) -> Self {
        let elapsed = elapsed.as_secs_f64();
        let sent = total.fresh.sent + total.replays.sent + total.retries.sent;
        Self {
            url: plan.url.clone(),
            method: plan.method.to_string(),
            mode: if plan.rate.is_some() {
                "open-loop"
            } else {
                "closed-loop"
            },
            concurrency: plan.concurrency,
            target_rps: plan.rate,
            elapsed_secs: elapsed,
            sent,
            rps: if elapsed > 0.0 {
                sent as f64 / elapsed
            } else {
                0.0
            },
            latency_ms: Latency::of(&total.histogram),
            statuses: total.statuses,
            reasons: total.reasons,
            errors: total.errors,
            fresh: total.fresh,
            replays: total.replays,
            replays_admitted: total.replays_admitted,
            idempotent_retries: total.retries,
        }
    }

    /// Human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "replay-guard loadgen: {} {}", self.method, self.url);
        let _ = match self.target_rps {
            Some(rate) => writeln!(
                out,
                "mode: open-loop at {rate} req/s, {} connections (latency from the scheduled send time: no coordinated omission)",
                self.concurrency
            ),
            None => writeln!(
                out,
                "mode: closed-loop, {} connections (latency = service time; use --rate for open-loop)",
                self.concurrency
            ),
        };
        let _ = writeln!(
            out,
            "sent: {} in {:.2} s = {:.1} req/s",
            self.sent, self.elapsed_secs, self.rps
        );
        let _ = writeln!(
            out,
            "  fresh {} ({} 2xx), replays {} (verbatim resends), idempotent retries {} ({} stored answers)",
            self.fresh.sent,
            self.fresh.ok,
            self.replays.sent,
            self.idempotent_retries.sent,
            self.idempotent_retries.stored_answer
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3})",
            l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
        );
        let _ = writeln!(out, "status: {}", counts_list(&self.statuses));
        let _ = writeln!(out, "reasons: {}", counts_list(&self.reasons));
        let _ = writeln!(out, "errors: {}", counts_list(&self.errors));
        let verdict = if self.replays_admitted == 0 && self.replays.sent == 0 {
            "none sent: nothing admitted to replay yet, or --replay-ratio 0"
        } else if self.replays_admitted == 0 {
            "OK"
        } else {
            "FAILED: the target forwarded replays"
        };
        let _ = writeln!(
            out,
            "replays admitted: {} of {} ({verdict})",
            self.replays_admitted, self.replays.sent
        );
        out
    }
}

/// `key: count, key: count`, or `none`.
fn counts_list<K: Display>(counts: &BTreeMap<K, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(key, n)| format!("{key}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one request came to.
pub(super) enum Outcome {
    /// The target answered.
    Answered {
        /// HTTP status.
        status: u16,
        /// The problem+json `reason`, if the answer was one.
        reason: Option<String>,
        /// `Idempotent-Replayed: true` (a stored answer).
        stored_answer: bool,
    },
    /// No answer: `timeout`, `connect` or `io`.
    Failed(&'static str),
}

/// Per-worker tallies, merged at the end.
pub(super) struct Tally {
    /// Latency of answered requests, microseconds.
    histogram: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    reasons: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    fresh: KindCounts,
    replays: KindCounts,
    replays_admitted: u64,
    retries: KindCounts,
}

impl Tally {
    /// Nothing counted yet.
    pub fn new() -> Result<Self, LoadgenError> {
        Ok(Self {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .map_err(|e| LoadgenError::Usage(format!("histogram: {e}")))?,
            statuses: BTreeMap::new(),
            reasons: BTreeMap::new(),
            errors: BTreeMap::new(),
            fresh: KindCounts::default(),
            replays: KindCounts::default(),
            replays_admitted: 0,
            retries: KindCounts::default(),
        })
    }

    /// Count one request of `kind` that came to `outcome` after `latency`;
    /// whether it was answered 2xx.
    pub fn record(&mut self, kind: Kind, outcome: Outcome, latency: Duration) -> bool {
        let counts = match kind {
            Kind::Fresh => &mut self.fresh,
            Kind::Replay => &mut self.replays,
            Kind::Retry => &mut self.retries,
        };
        counts.sent += 1;
        let (status, reason, stored_answer) = match outcome {
            Outcome::Failed(why) => {
                bump(&mut self.errors, why.to_owned());
                return false;
            }
            Outcome::Answered {
                status,
                reason,
                stored_answer,
            } => (status, reason, stored_answer),
        };
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
        bump(&mut self.statuses, status);
        if let Some(reason) = reason {
            bump(&mut self.reasons, reason);
        }
        let ok = (200..300).contains(&status);
        if ok {
            counts.ok += 1;
            if stored_answer {
                counts.stored_answer += 1;
            }
            if kind == Kind::Replay {
                self.replays_admitted += 1;
            }
        }
        ok
    }

    /// Add another worker's tally to this one.
    pub fn merge(&mut self, other: Tally) {
        let _ = self.histogram.add(&other.histogram);
        add_counts(&mut self.statuses, other.statuses);
        add_counts(&mut self.reasons, other.reasons);
        add_counts(&mut self.errors, other.errors);
        self.fresh.add(&other.fresh);
        self.replays.add(&other.replays);
        self.retries.add(&other.retries);
        self.replays_admitted += other.replays_admitted;
    }
}

fn bump<K: Ord>(counts: &mut BTreeMap<K, u64>, key: K) {
    *counts.entry(key).or_default() += 1;
}

fn add_counts<K: Ord>(counts: &mut BTreeMap<K, u64>, other: BTreeMap<K, u64>) {
    for (key, n) in other {
        *counts.entry(key).or_default() += n;
    }
}
