//! What a loadgen run sends: the arguments checked once and frozen into a
//! read-only [`Plan`] — target, method, body, signing key, the mix of
//! fresh / replay / retry slots and the pacing — and the headers each slot
//! carries.
//!
//! The plan only decides; it must never send anything or keep state that
//! changes during the run. Every new transmission gets a nonce no other
//! slot of the run uses (the run id and the slot), the secret comes from an
//! environment variable and never from the command line, and the target is
//! plain `http://` only.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Uri};

use replay_guard::client;
use replay_guard::clock::{Clock, SystemClock};

use super::pool::Sent;
use super::signing::{Signing, Transmission};
use super::{LoadgenArgs, LoadgenError};

/// What kind of request a sequence slot sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A new operation.
    Fresh,
    /// A byte-for-byte resend of an admitted operation.
    Replay,
    /// An admitted operation again with its Idempotency-Key, freshly signed.
    Retry,
}

/// Everything the workers read; nothing in it changes during the run.
pub(super) struct Plan {
    /// The target as given (for the report).
    pub url: String,
    /// The target, parsed.
    pub uri: Uri,
    /// The method every request uses.
    pub method: Method,
    /// The `Host` that is signed.
    host: String,
    /// The path and query that are signed.
    path_and_query: String,
    /// The body of every new operation.
    body: Bytes,
    /// The key to sign with (`v1` or RFC 9421); unsigned without.
    key: Option<Signing>,
    /// Whether new operations carry an Idempotency-Key.
    idempotency: bool,
    /// Share of slots that replay an admitted request verbatim.
    replay_ratio: f64,
    /// Share of slots that retry an admitted operation (with `idempotency`).
    retry_ratio: f64,
    /// Number of workers (and idle connections kept).
    pub concurrency: usize,
    /// Stop after this many slots.
    requests: Option<u64>,
    /// Stop at this instant.
    deadline: Option<Instant>,
    /// Open-loop rate in requests per second; closed-loop without.
    pub rate: Option<f64>,
    /// Per-request time limit.
    pub timeout: Duration,
    /// Makes this run's nonces and idempotency keys its own.
    run_id: u64,
    /// `--header`s, on every new transmission.
    extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Plan {
    /// Check the arguments, in the order their errors are reported.
    pub fn from_args(args: &LoadgenArgs) -> Result<Self, LoadgenError> {
        let (uri, host, path_and_query) = target(&args.url)?;
        let method = method(&args.method)?;
        let body = body(args.body_file.as_ref(), args.body_size)?;
        let key = Signing::from_args(args)?;
        if key
            .as_ref()
            .is_some_and(|k| matches!(k, Signing::Rfc9421 { .. }))
        {
            normal_path(&uri)?;
        }
        check_load(args)?;
        let extra_headers = extra_headers(args)?;
        let plan = Self {
            url: args.url.clone(),
            uri,
            method,
            host,
            path_and_query,
            body,
            key,
            idempotency: args.idempotency,
            replay_ratio: args.replay_ratio,
            retry_ratio: args.retry_ratio,
            concurrency: args.concurrency,
            requests: args.requests,
            deadline: args.duration.map(|d| Instant::now() + d),
            rate: args.rate,
            timeout: args.timeout,
            run_id: rand::random(),
            extra_headers,
        };
        // Sign once now, so that signing cannot fail mid-run.
        if let Some(key) = &plan.key {
            key.headers(plan.transmission(0)).map_err(usage)?;
        }
        Ok(plan)
    }

    /// Whether slot `slot` is still part of the run (by count and by time).
    pub fn within_bounds(&self, slot: u64) -> bool {
        self.requests.is_none_or(|max| slot < max)
            && self.deadline.is_none_or(|d| Instant::now() < d)
    }

    /// Open-loop: when slot `slot` is due, or `None` if that is past the
    /// deadline.
    pub fn scheduled_at(&self, rate: f64, slot: u64, started: Instant) -> Option<Instant> {
        let at = started + Duration::from_secs_f64(slot as f64 / rate);
        self.deadline.is_none_or(|d| at < d).then_some(at)
    }

    /// The kind the mix gives slot `slot`.
    pub fn kind(&self, slot: u64) -> Kind {
        let at = position(slot);
        if at < self.replay_ratio {
            Kind::Replay
        } else if self.idempotency && at < self.replay_ratio + self.retry_ratio {
            Kind::Retry
        } else {
            Kind::Fresh
        }
    }

    /// The request slot `slot` sends, given the admitted operation picked
    /// for a replay or retry; with none, a new operation.
    pub fn request(&self, kind: Kind, slot: u64, earlier: Option<&Sent>) -> (Kind, Sent) {
        match (kind, earlier) {
            (Kind::Replay, Some(sent)) => (
                Kind::Replay,
                Sent {
                    headers: sent.headers.clone(),
                    body: sent.body.clone(),
                    idempotency_key: None,
                },
            ),
            (Kind::Retry, Some(sent)) => (
                Kind::Retry,
                Sent {
                    headers: self.fresh_headers(slot, sent.idempotency_key.as_deref()),
                    body: sent.body.clone(),
                    idempotency_key: None,
                },
            ),
            // Nothing admitted yet to replay or retry: send a new operation.
            _ => (Kind::Fresh, self.new_operation(slot)),
        }
    }

    /// A new operation: the plan's body, its own Idempotency-Key if asked.
    fn new_operation(&self, slot: u64) -> Sent {
        let idempotency_key = self
            .idempotency
            .then(|| format!("lg-{:x}-{slot}", self.run_id));
        Sent {
            headers: self.fresh_headers(slot, idempotency_key.as_deref()),
            body: self.body.clone(),
            idempotency_key,
        }
    }

    /// A unique nonce: the run id and the slot (32 characters).
    fn nonce(&self, slot: u64) -> String {
        format!("lg{:014x}{slot:016x}", self.run_id & 0x00ff_ffff_ffff_ffff)
    }

    /// Headers for a new transmission of the body with `idempotency_key`.
    fn fresh_headers(&self, slot: u64, idempotency_key: Option<&str>) -> HeaderMap {
        let mut pairs = self.freshness_pairs(slot);
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
        for (name, value) in &self.extra_headers {
            headers.append(name.clone(), value.clone());
        }
        headers
    }

    /// Timestamp and nonce now, signed when the plan has a key.
    fn freshness_pairs(&self, slot: u64) -> Vec<(String, String)> {
        let transmission = self.transmission(slot);
        match &self.key {
            // The trial signature in `from_args` proved this cannot fail.
            Some(key) => key.headers(transmission).unwrap_or_default(),
            None => vec![
                (
                    client::names::TIMESTAMP.into(),
                    transmission.timestamp.to_string(),
                ),
                (client::names::NONCE.into(), transmission.nonce),
            ],
        }
    }

    /// What slot `slot` signs now.
    fn transmission(&self, slot: u64) -> Transmission<'_> {
        Transmission {
            method: self.method.as_str(),
            host: &self.host,
            path_and_query: &self.path_and_query,
            body: &self.body,
            timestamp: SystemClock.now_secs(),
            nonce: self.nonce(slot),
        }
    }
}

/// `--header`s, parsed like `sign`'s; `Idempotency-Key` is loadgen's own
/// with `--idempotency` (one per operation).
fn extra_headers(args: &LoadgenArgs) -> Result<Vec<(HeaderName, HeaderValue)>, LoadgenError> {
    let pairs = crate::cli::sign::parse_headers(&args.headers).map_err(usage)?;
    let mut out = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        if args.idempotency && name.eq_ignore_ascii_case("idempotency-key") {
            return Err(usage(
                "--header Idempotency-Key: --idempotency writes one per operation".into(),
            ));
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return Err(usage(format!("--header {name}: not a header")));
        };
        out.push((name, value));
    }
    Ok(out)
}

fn usage(message: String) -> LoadgenError {
    LoadgenError::Usage(message)
}

/// `--url`: a plain-HTTP URL with a host; the `Host` and path to sign.
fn target(url: &str) -> Result<(Uri, String, String), LoadgenError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| usage(format!("--url {url:?} is not a URL")))?;
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
    Ok((uri, host, path_and_query))
}

/// `--method`, in upper case.
fn method(text: &str) -> Result<Method, LoadgenError> {
    text.to_ascii_uppercase()
        .parse()
        .map_err(|_| usage(format!("--method {text:?} is not a method")))
}

/// `--body-file`, `--body-size` or an empty body.
fn body(file: Option<&PathBuf>, size: Option<usize>) -> Result<Bytes, LoadgenError> {
    Ok(match (file, size) {
        (Some(file), _) => Bytes::from(
            std::fs::read(file)
                .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?,
        ),
        (None, Some(size)) => json_body(size),
        (None, None) => Bytes::new(),
    })
}

/// RFC 9421 signs the path as sent and its routes refuse one the proxy
/// would rewrite.
fn normal_path(uri: &Uri) -> Result<(), LoadgenError> {
    match replay_guard::path::normalize(uri.path()) {
        Ok(normal) if normal == uri.path() => Ok(()),
        Ok(normal) => Err(usage(format!(
            "--url: RFC 9421 signs the path as sent and the proxy refuses one it would rewrite; use the path {normal:?}"
        ))),
        Err(e) => Err(usage(format!("--url: the proxy refuses this path ({e})"))),
    }
}

/// The numbers that shape the load: workers, mix, rate and bounds.
fn check_load(args: &LoadgenArgs) -> Result<(), LoadgenError> {
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
    let retry_share = if args.idempotency {
        args.retry_ratio
    } else {
        0.0
    };
    if args.replay_ratio + retry_share >= 1.0 {
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
    Ok(())
}

/// Where slot `i` falls in [0, 1): the golden-ratio sequence, evenly
/// spread and deterministic, so the share of slots below `r` is `r` to
/// within a slot or two over any run length.
fn position(i: u64) -> f64 {
    const PHI_FRACTION: f64 = 0.618_033_988_749_894_9;
    ((i as f64 + 1.0) * PHI_FRACTION).fract()
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

#[cfg(test)]
mod tests {
    use super::*;

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
