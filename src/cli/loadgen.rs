//! `replay-guard loadgen`: a load generator for fresh, signed, unique
//! traffic — what wrk, hey or oha cannot produce.
//!
//! Every request gets a fresh timestamp and a unique nonce and, with
//! `--key-id`/`--secret-env`, a valid `v1` signature (default header
//! names). Three kinds of request are mixed by fixed ratios over the
//! request sequence (so counts are reproducible):
//!
//! - **fresh**: a new operation; the target should forward it;
//! - **replay** (`--replay-ratio`): a byte-for-byte resend of an earlier
//!   request that was already answered 2xx; the target must refuse it.
//!   A replay answered 2xx is counted as *admitted* — that must stay 0, and
//!   the command exits 2 otherwise;
//! - **idempotent retry** (`--idempotency --retry-ratio`): an earlier
//!   operation again with the same `Idempotency-Key` and body but a fresh
//!   timestamp, nonce and signature; the target should answer the stored
//!   response (`Idempotent-Replayed: true`).
//!
//! Closed-loop without `--rate` (each of `--concurrency` workers sends its
//! next request when the last answer arrived; latency is service time);
//! open-loop with `--rate` (requests are scheduled at fixed intervals and
//! latency is measured from the scheduled time, so a stall is not hidden —
//! no coordinated omission). Every run is bounded by `--requests` and/or
//! `--duration`, and each request by `--timeout`.
//!
//! This module is a client: it must never be on the proxy's request path.

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;

use replay_guard::client::{self, SignRequest};
use replay_guard::clock::{Clock, SystemClock};
use replay_guard::config::Secret;

/// How many answered requests are kept for replays and retries.
const POOL_SIZE: usize = 4096;
/// Latency histogram upper bound, in microseconds (values above saturate).
const MAX_LATENCY_US: u64 = 120_000_000;

/// Arguments of `loadgen`.
#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Target URL (http://host:port/path?query), usually the proxy.
    #[arg(long)]
    pub url: String,
    /// HTTP method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// File holding the request body.
    #[arg(long, conflicts_with = "body_size")]
    pub body_file: Option<PathBuf>,
    /// Generate a JSON body of this many bytes (default: empty body).
    #[arg(long)]
    pub body_size: Option<usize>,
    /// Concurrent connections (workers).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Run this long (e.g. 10s, 500ms, 2m). With --requests, whichever ends first.
    #[arg(long, value_parser = parse_duration, required_unless_present = "requests")]
    pub duration: Option<Duration>,
    /// Send this many requests in total (replays and retries included).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Open-loop: schedule this many requests per second in total.
    /// Without it the load is closed-loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Key id to sign with (needs --secret-env).
    #[arg(long, requires = "secret_env")]
    pub key_id: Option<String>,
    /// Environment variable holding the key's secret.
    #[arg(long, requires = "key_id")]
    pub secret_env: Option<String>,
    /// Fraction of requests that re-send an earlier admitted request verbatim.
    #[arg(long, default_value_t = 0.0)]
    pub replay_ratio: f64,
    /// Add an Idempotency-Key (unique per operation) to every request.
    #[arg(long)]
    pub idempotency: bool,
    /// With --idempotency: fraction of requests that retry an earlier
    /// operation with a fresh nonce and the same key.
    #[arg(long, default_value_t = 0.1)]
    pub retry_ratio: f64,
    /// Per-request time limit (connect to last body byte).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// `10s`, `500ms`, `2m`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is out of range"))
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The arguments do not make a run.
    #[error("{0}")]
    Usage(String),
}

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
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(out, "status: {}", or_none(&statuses));
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        let _ = writeln!(out, "reasons: {}", or_none(&reasons));
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(e, n)| format!("{e}: {n}"))
            .collect();
        let _ = writeln!(out, "errors: {}", or_none(&errors));
        let verdict = if self.replays_admitted == 0 {
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

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// What kind of request a sequence slot sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fresh,
    Replay,
    Retry,
}

/// One operation that was answered 2xx: kept to be replayed or retried.
#[derive(Debug)]
struct Sent {
    /// The exact headers sent.
    headers: HeaderMap,
    /// The exact body sent.
    body: Bytes,
    /// Its Idempotency-Key, if any.
    idempotency_key: Option<String>,
}

/// Everything the workers share; read-only except the counters.
struct Plan {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    method: Method,
    host: String,
    path_and_query: String,
    body: Bytes,
    key: Option<(String, Secret)>,
    idempotency: bool,
    replay_ratio: f64,
    retry_ratio: f64,
    requests: Option<u64>,
    deadline: Option<Instant>,
    rate: Option<f64>,
    timeout: Duration,
    run_id: u64,
    /// Next sequence slot.
    next: AtomicU64,
    /// Requests finished (for the progress line).
    done: AtomicU64,
    /// Requests finished 2xx (for the progress line).
    done_ok: AtomicU64,
    /// Answered 2xx operations for replays and retries.
    pool: Mutex<VecDeque<Arc<Sent>>>,
}

/// Per-worker tallies, merged at the end.
struct Tally {
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
    fn new() -> Result<Self, LoadgenError> {
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

    fn merge(&mut self, other: Tally) {
        let _ = self.histogram.add(&other.histogram);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (mine, theirs) in [
            (&mut self.fresh, other.fresh),
            (&mut self.replays, other.replays),
            (&mut self.retries, other.retries),
        ] {
            mine.sent += theirs.sent;
            mine.ok += theirs.ok;
            mine.stored_answer += theirs.stored_answer;
        }
        self.replays_admitted += other.replays_admitted;
    }
}

/// Where slot `i` falls in [0, 1): the golden-ratio sequence, evenly
/// spread and deterministic, so the share of slots below `r` is `r` to
/// within a slot or two over any run length.
fn position(i: u64) -> f64 {
    const PHI_FRACTION: f64 = 0.618_033_988_749_894_9;
    ((i as f64 + 1.0) * PHI_FRACTION).fract()
}

impl Plan {
    fn kind(&self, slot: u64) -> Kind {
        let at = position(slot);
        if at < self.replay_ratio {
            Kind::Replay
        } else if self.idempotency && at < self.replay_ratio + self.retry_ratio {
            Kind::Retry
        } else {
            Kind::Fresh
        }
    }

    /// A unique nonce: the run id and the slot (32 characters).
    fn nonce(&self, slot: u64) -> String {
        format!("lg{:014x}{slot:016x}", self.run_id & 0x00ff_ffff_ffff_ffff)
    }

    /// Headers for a new transmission of `body` with `idempotency_key`.
    fn fresh_headers(&self, slot: u64, idempotency_key: Option<&str>) -> HeaderMap {
        let timestamp = SystemClock.now_secs().to_string();
        let nonce = self.nonce(slot);
        let mut pairs: Vec<(String, String)> = match &self.key {
            Some((key_id, secret)) => {
                client::sign(
                    secret,
                    &SignRequest {
                        method: self.method.as_str(),
                        host: &self.host,
                        path_and_query: &self.path_and_query,
                        body: &self.body,
                        timestamp,
                        nonce,
                        key_id,
                    },
                )
                .headers
            }
            None => vec![
                (client::names::TIMESTAMP.into(), timestamp),
                (client::names::NONCE.into(), nonce),
            ],
        };
        if let Some(key) = idempotency_key {
            pairs.push(("Idempotency-Key".into(), key.to_owned()));
        }
        let mut headers = HeaderMap::with_capacity(pairs.len() + 1);
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
        if !self.body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        headers
    }

    /// Pick an earlier admitted operation for slot `slot`.
    fn pick_earlier(&self, slot: u64) -> Option<Arc<Sent>> {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.is_empty() {
            return None;
        }
        let index = (slot.wrapping_mul(0x9E37_79B9_7F4A_7C15) % pool.len() as u64) as usize;
        pool.get(index).cloned()
    }

    fn remember(&self, sent: Arc<Sent>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() >= POOL_SIZE {
            pool.pop_front();
        }
        pool.push_back(sent);
    }

    /// Claim the next slot, or `None` when the run is over.
    fn claim(&self) -> Option<u64> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        if self.requests.is_some_and(|max| slot >= max) {
            return None;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        Some(slot)
    }
}

/// One answered (or failed) exchange.
enum Outcome {
    Answered {
        status: u16,
        reason: Option<String>,
        stored_answer: bool,
    },
    Failed(&'static str),
}

async fn exchange(plan: &Plan, headers: HeaderMap, body: Bytes) -> Outcome {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = plan.method.clone();
    *request.uri_mut() = plan.uri.clone();
    *request.headers_mut() = headers;
    let call = async {
        let response = plan.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                "connect"
            } else {
                "io"
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|_| "io")?.to_bytes();
        Ok::<_, &'static str>((parts, body))
    };
    match tokio::time::timeout(plan.timeout, call).await {
        Err(_) => Outcome::Failed("timeout"),
        Ok(Err(kind)) => Outcome::Failed(kind),
        Ok(Ok((parts, body))) => {
            let problem = parts
                .headers
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
            let reason = if problem {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("reason")?.as_str().map(str::to_owned))
            } else {
                None
            };
            Outcome::Answered {
                status: parts.status.as_u16(),
                reason,
                stored_answer: parts
                    .headers
                    .get("idempotent-replayed")
                    .is_some_and(|v| v.as_bytes() == b"true"),
            }
        }
    }
}

async fn worker(plan: Arc<Plan>, started: Instant) -> Result<Tally, LoadgenError> {
    let mut tally = Tally::new()?;
    while let Some(slot) = plan.claim() {
        // Open-loop: wait for this slot's scheduled time, and measure from it.
        let scheduled = match plan.rate {
            Some(rate) => {
                let at = started + Duration::from_secs_f64(slot as f64 / rate);
                if plan.deadline.is_some_and(|d| at >= d) {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        let mut kind = plan.kind(slot);
        let earlier = match kind {
            Kind::Fresh => None,
            Kind::Replay | Kind::Retry => plan.pick_earlier(slot),
        };
        if earlier.is_none() {
            // Nothing admitted yet to replay or retry: send a new operation.
            kind = Kind::Fresh;
        }
        let (headers, body, idempotency_key) = match (kind, earlier) {
            (Kind::Replay, Some(sent)) => (sent.headers.clone(), sent.body.clone(), None),
            (Kind::Retry, Some(sent)) => (
                plan.fresh_headers(slot, sent.idempotency_key.as_deref()),
                sent.body.clone(),
                None,
            ),
            _ => {
                let key = plan
                    .idempotency
                    .then(|| format!("lg-{:x}-{slot}", plan.run_id));
                (
                    plan.fresh_headers(slot, key.as_deref()),
                    plan.body.clone(),
                    key,
                )
            }
        };
        let kept = (kind == Kind::Fresh).then(|| headers.clone());
        let outcome = exchange(&plan, headers, body.clone()).await;
        let micros = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
        let counts = match kind {
            Kind::Fresh => &mut tally.fresh,
            Kind::Replay => &mut tally.replays,
            Kind::Retry => &mut tally.retries,
        };
        counts.sent += 1;
        plan.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Failed(why) => *tally.errors.entry(why.to_owned()).or_default() += 1,
            Outcome::Answered {
                status,
                reason,
                stored_answer,
            } => {
                tally.histogram.saturating_record(micros.max(1));
                *tally.statuses.entry(status).or_default() += 1;
                if let Some(reason) = reason {
                    *tally.reasons.entry(reason).or_default() += 1;
                }
                if (200..300).contains(&status) {
                    plan.done_ok.fetch_add(1, Ordering::Relaxed);
                    counts.ok += 1;
                    if stored_answer {
                        counts.stored_answer += 1;
                    }
                    match (kind, kept) {
                        (Kind::Replay, _) => tally.replays_admitted += 1,
                        (Kind::Fresh, Some(headers)) => plan.remember(Arc::new(Sent {
                            headers,
                            body,
                            idempotency_key,
                        })),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(tally)
}

fn build_plan(args: &LoadgenArgs) -> Result<Plan, LoadgenError> {
    let usage = |m: String| LoadgenError::Usage(m);
    let uri: Uri = args
        .url
        .parse()
        .map_err(|_| usage(format!("--url {:?} is not a URL", args.url)))?;
    if uri.scheme_str() != Some("http") {
        return Err(usage(
            "--url must be http://host:port/path (loadgen speaks plain HTTP)".into(),
        ));
    }
    let host = client::host_for(&uri).ok_or_else(|| usage("--url needs a host".into()))?;
    let path_and_query = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let method: Method = args
        .method
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| usage(format!("--method {:?} is not a method", args.method)))?;
    let body = match (&args.body_file, args.body_size) {
        (Some(file), _) => Bytes::from(
            std::fs::read(file)
                .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?,
        ),
        (None, Some(size)) => json_body(size),
        (None, None) => Bytes::new(),
    };
    let key = match (&args.key_id, &args.secret_env) {
        (Some(id), Some(var)) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Some((id.clone(), Secret::new(value.into_bytes()))),
            _ => {
                return Err(usage(format!(
                    "environment variable {var} is not set or empty"
                )))
            }
        },
        _ => None,
    };
    if args.concurrency == 0 {
        return Err(usage("--concurrency must be at least 1".into()));
    }
    for (name, ratio) in [
        ("--replay-ratio", args.replay_ratio),
        ("--retry-ratio", args.retry_ratio),
    ] {
        if !(0.0..1.0).contains(&ratio) {
            return Err(usage(format!("{name} must be in [0, 1)")));
        }
    }
    if args.replay_ratio
        + if args.idempotency {
            args.retry_ratio
        } else {
            0.0
        }
        >= 1.0
    {
        return Err(usage(
            "--replay-ratio plus --retry-ratio must stay below 1".into(),
        ));
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(usage("--rate must be a positive number".into()));
        }
    }
    if args.duration.is_none() && args.requests.is_none() {
        return Err(usage("give --duration or --requests".into()));
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(args.timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build(connector);
    Ok(Plan {
        client,
        uri,
        method,
        host,
        path_and_query,
        body,
        key,
        idempotency: args.idempotency,
        replay_ratio: args.replay_ratio,
        retry_ratio: args.retry_ratio,
        requests: args.requests,
        deadline: args.duration.map(|d| Instant::now() + d),
        rate: args.rate,
        timeout: args.timeout,
        run_id: rand::random(),
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        done_ok: AtomicU64::new(0),
        pool: Mutex::new(VecDeque::with_capacity(POOL_SIZE)),
    })
}

/// A JSON object body of exactly `size` bytes (at least `{}`).
fn json_body(size: usize) -> Bytes {
    const FRAME: &str = r#"{"pad":""}"#;
    if size < FRAME.len() {
        // `{` + spaces + `}`: still valid JSON.
        let mut body = vec![b' '; size.max(2)];
        body[0] = b'{';
        body[size.max(2) - 1] = b'}';
        return Bytes::from(body);
    }
    let mut body = String::with_capacity(size);
    body.push_str(r#"{"pad":""#);
    body.extend(std::iter::repeat_n('x', size - FRAME.len()));
    body.push_str(r#""}"#);
    Bytes::from(body)
}

/// Run the load and return the report.
pub async fn execute(args: &LoadgenArgs) -> Result<Report, LoadgenError> {
    let plan = Arc::new(build_plan(args)?);
    let started = Instant::now();
    let finished = Arc::new(AtomicBool::new(false));
    let progress = (!args.quiet).then(|| {
        let plan = plan.clone();
        let finished = finished.clone();
        tokio::spawn(progress_line(plan, started, finished))
    });
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(plan.clone(), started)))
        .collect();
    let mut total = Tally::new()?;
    for handle in workers {
        match handle.await {
            Ok(Ok(tally)) => total.merge(tally),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(LoadgenError::Usage(format!("a worker failed: {e}"))),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    finished.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    let sent = total.fresh.sent + total.replays.sent + total.retries.sent;
    let h = &total.histogram;
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Report {
        url: args.url.clone(),
        method: plan.method.to_string(),
        mode: if plan.rate.is_some() {
            "open-loop"
        } else {
            "closed-loop"
        },
        concurrency: args.concurrency,
        target_rps: plan.rate,
        elapsed_secs: elapsed,
        sent,
        rps: if elapsed > 0.0 {
            sent as f64 / elapsed
        } else {
            0.0
        },
        latency_ms: Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        },
        statuses: total.statuses,
        reasons: total.reasons,
        errors: total.errors,
        fresh: total.fresh,
        replays: total.replays,
        replays_admitted: total.replays_admitted,
        idempotent_retries: total.retries,
    })
}

/// A progress line on stderr: rewritten in place on a terminal, one line
/// every 5 s otherwise.
async fn progress_line(plan: Arc<Plan>, started: Instant, finished: Arc<AtomicBool>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let mut tick = tokio::time::interval_at((started + every).into(), every);
    let mut last = 0;
    let mut printed = false;
    while !finished.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
        }
        let done = plan.done.load(Ordering::Relaxed);
        let ok = plan.done_ok.load(Ordering::Relaxed);
        let line = format!(
            "[{:>6.1}s] sent {done}  2xx {ok}  other {}  ~{:.0} req/s",
            started.elapsed().as_secs_f64(),
            done - ok,
            (done - last) as f64 / every.as_secs_f64()
        );
        last = done;
        printed = true;
        if tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }
    if tty && printed {
        eprintln!();
    }
}

/// Run `loadgen`: print the report; exit 2 if a replay was admitted.
pub async fn run(args: LoadgenArgs) -> Result<(), ExitCode> {
    let report = execute(&args).await.map_err(|e| {
        eprintln!("loadgen: {e}");
        ExitCode::from(1)
    })?;
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("loadgen: cannot encode the report: {e}");
                return Err(ExitCode::from(2));
            }
        }
    } else {
        print!("{}", report.render());
    }
    if report.replays_admitted > 0 {
        eprintln!(
            "loadgen: {} replay(s) were admitted by the target",
            report.replays_admitted
        );
        return Err(ExitCode::from(2));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn ratios_pick_close_to_exact_counts() {
        let count = |n: u64, lo: f64, hi: f64| {
            (0..n).filter(|&i| (lo..hi).contains(&position(i))).count() as f64
        };
        for (n, lo, hi) in [
            (100, 0.0, 0.1),
            (1000, 0.0, 0.25),
            (150, 0.1, 0.3),
            (40, 0.0, 0.5),
        ] {
            let expected = n as f64 * (hi - lo);
            assert!((count(n, lo, hi) - expected).abs() <= 2.0, "{n} {lo} {hi}");
        }
        assert_eq!(count(100, 0.0, 0.0), 0.0);
    }

    #[test]
    fn json_bodies_have_the_asked_size() {
        for size in [0, 2, 5, 10, 11, 100, 4096] {
            let body = json_body(size);
            assert_eq!(body.len(), size.max(2), "{size}");
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
        }
    }
}
