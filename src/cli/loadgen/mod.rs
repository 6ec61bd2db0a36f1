//! `replay-guard loadgen`: a load generator for fresh, signed, unique
//! traffic — what wrk, hey or oha cannot produce.
//!
//! Every request gets a fresh timestamp and a unique nonce and, with
//! `--key-id`/`--secret-env`, a valid `v1` signature (default header
//! names) — or with `--scheme rfc9421` an RFC 9421 signature (`created`,
//! `nonce`, `Content-Digest`; HMAC, or `--private-key-file`). Three kinds of request are mixed by fixed ratios over the
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
//!
//! # Layout
//!
//! - this file: the arguments, [`execute`] (a whole run) and [`run`] (the
//!   subcommand: print the report, choose the exit code);
//! - [`plan`]: the arguments checked and frozen — what each slot sends;
//! - [`signing`]: the key a run signs with, `v1` or RFC 9421;
//! - [`pool`]: the admitted operations that replays and retries reuse;
//! - [`worker`]: the shared client and the sending loop;
//! - [`report`]: counting what requests came to, and the text/JSON report;
//! - [`progress`]: the progress line on stderr.

mod plan;
mod pool;
mod progress;
mod report;
mod signing;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

pub use report::Report;

use plan::Plan;
use worker::Run;

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
    /// Key id to sign with (needs --secret-env, or with --scheme rfc9421
    /// --private-key-file).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Environment variable holding the key's secret.
    #[arg(long, requires = "key_id")]
    pub secret_env: Option<String>,
    /// Signature scheme of the target route.
    #[arg(long, value_enum, default_value_t = crate::cli::sign::Scheme::V1)]
    pub scheme: crate::cli::sign::Scheme,
    /// RFC 9421: PEM private key for an asymmetric --algorithm.
    #[arg(long, requires = "key_id", conflicts_with = "secret_env")]
    pub private_key_file: Option<PathBuf>,
    /// RFC 9421: the algorithm (default hmac-sha256 with --secret-env).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// RFC 9421: how the secret's text maps to HMAC key bytes.
    #[arg(long, value_enum, default_value_t = crate::cli::sign_rfc9421::SecretEncoding::Utf8)]
    pub secret_encoding: crate::cli::sign_rfc9421::SecretEncoding,
    /// RFC 9421: the `tag` parameter (the route's `tag`).
    #[arg(long)]
    pub tag: Option<String>,
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
    /// A further header on every request, 'Name: value' (repeatable), sent
    /// as is (not signed), e.g. an Authorization header the upstream needs.
    #[arg(long = "header", value_name = "'NAME: value'")]
    pub headers: Vec<String>,
    /// Per-request time limit (connect to last body byte).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr (it is shown only when stderr is a
    /// terminal anyway).
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

/// Run the load and return the report.
pub async fn execute(args: &LoadgenArgs) -> Result<Report, LoadgenError> {
    let run = Arc::new(Run::new(Plan::from_args(args)?));
    let started = Instant::now();
    let finished = Arc::new(AtomicBool::new(false));
    let progress = (!args.quiet).then(|| {
        let shown = progress::show(run.progress.clone(), started, finished.clone());
        tokio::spawn(shown)
    });
    let total = run.all_workers(started).await?;
    let elapsed = started.elapsed();
    finished.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    Ok(Report::new(&run.plan, total, elapsed))
}

/// Below this share of 2xx answers to new operations, the run measured
/// the target's refusals, not its work: loadgen says so and exits 3.
const MIN_ADMITTED_SHARE: f64 = 0.05;

/// Why a finished run does not measure what it was meant to: nothing new
/// was admitted, or nearly every answer was a refusal (with the top
/// reasons, so the operator sees `rate_limited` or `bad_signature`).
fn refused_load(report: &Report) -> Option<String> {
    let fresh = &report.fresh;
    if fresh.sent == 0 {
        return Some("no request was sent".into());
    }
    if fresh.ok as f64 >= fresh.sent as f64 * MIN_ADMITTED_SHARE {
        return None;
    }
    let mut causes: Vec<(String, u64)> = report
        .reasons
        .iter()
        .map(|(reason, n)| (reason.clone(), *n))
        .chain(
            report
                .errors
                .iter()
                .map(|(e, n)| (format!("{e} error"), *n)),
        )
        .collect();
    if causes.is_empty() {
        causes = report
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(status, n)| (format!("status {status}"), *n))
            .collect();
    }
    causes.sort_by_key(|c| std::cmp::Reverse(c.1));
    let top: Vec<String> = causes
        .iter()
        .take(3)
        .map(|(cause, n)| format!("{cause} x{n}"))
        .collect();
    let what = if fresh.ok == 0 {
        format!(
            "nothing was admitted: 0 of {} new requests answered 2xx",
            fresh.sent
        )
    } else {
        format!(
            "nearly every answer was a refusal: {} of {} new requests answered 2xx",
            fresh.ok, fresh.sent
        )
    };
    Some(format!(
        "{what} ({}); the numbers above measure refusals, not the target's work (a rate limit below --rate/--concurrency, a wrong key or secret, or a route that needs --idempotency?)",
        if top.is_empty() { "no answer".to_owned() } else { top.join(", ") }
    ))
}

/// Run `loadgen`: print the report; exit 2 if a replay was admitted, 3 if
/// the target refused (nearly) everything new.
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
    if let Some(why) = refused_load(&report) {
        eprintln!("loadgen: {why}");
        return Err(ExitCode::from(3));
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
}
