//! `loadgen` against the real proxy and a recording upstream on loopback:
//! the counts add up, every verbatim replay is refused, idempotent retries
//! get the stored answer, and the upstream receives exactly the fresh
//! requests. loadgen is a tool of the binary, not of the library: each run
//! is the real `replay-guard loadgen` as a child process, read through its
//! `--json` report.

mod support;

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use replay_guard::clock::{SharedClock, SystemClock};
use replay_guard::config::Config;
use replay_guard::server::{self, Running};
use serde::Deserialize;
use support::upstream::Upstream;

const SECRET: &str = "loadgen-test-secret";

/// Upstream + proxy on the system clock (loadgen signs with real time).
async fn setup() -> (Upstream, Running) {
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
upstream = "{}"

[[keys]]
id = "lg"
secret = "{SECRET}"

[[routes]]
name = "protected"
methods = ["POST"]
path = "/payments"
identity = "key_id"
freshness = {{ max_skew_secs = 60 }}
signature = {{ required = true }}
nonce = {{ required = true }}

[[routes]]
name = "idempotent"
methods = ["POST"]
path = "/orders"
identity = "key_id"
freshness = {{ max_skew_secs = 60 }}
signature = {{ required = true }}
nonce = {{ required = true }}
idempotency = {{ required = true, lease_secs = 60 }}

[[routes]]
name = "throttled"
path = "/throttled"
identity = "client_ip"
rate_limit = {{ per_minute = 1, burst = 1 }}

[[routes]]
name = "nonce-only"
path = "/unsigned"
identity = "client_ip"
freshness = {{ max_skew_secs = 60 }}
nonce = {{ required = true }}
"#,
        upstream.url()
    );
    let config = Config::parse(&toml, "loadgen-test.toml").expect("config");
    let clock: SharedClock = Arc::new(SystemClock);
    let running = server::start(config, clock).await.expect("proxy starts");
    (upstream, running)
}

/// Latency percentiles of the report, in milliseconds.
#[derive(Debug, Deserialize)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

/// Counts for one kind of request in the report.
#[derive(Debug, Deserialize)]
struct KindCounts {
    sent: u64,
    ok: u64,
    stored_answer: u64,
}

/// The parts of loadgen's `--json` report these tests read.
#[derive(Debug, Deserialize)]
struct Report {
    mode: String,
    sent: u64,
    latency_ms: Latency,
    statuses: BTreeMap<u16, u64>,
    reasons: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    fresh: KindCounts,
    replays: KindCounts,
    replays_admitted: u64,
    idempotent_retries: KindCounts,
    /// The report as printed, for failure messages.
    #[serde(skip)]
    text: String,
}

impl Report {
    fn render(&self) -> &str {
        &self.text
    }
}

/// Run `replay-guard loadgen <list>` (bounded: 60 s), with `env` set.
async fn loadgen_output(list: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay-guard"));
    command
        .arg("loadgen")
        .args(list)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().expect("binary starts");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("loadgen ends by itself")
        .expect("loadgen output");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Run `replay-guard loadgen --quiet --json <list>` and read its report.
/// It must run: the only failing exit allowed through is 2 for admitted
/// replays, which the tests assert on themselves (with the report).
async fn execute(list: &[&str], env: &[(&str, &str)]) -> Report {
    let mut all = vec!["--quiet", "--json"];
    all.extend_from_slice(list);
    let (status, stdout, stderr) = loadgen_output(&all, env).await;
    let mut report: Report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("loadgen runs ({status}): {e}\n{stdout}\n{stderr}"));
    report.text = stdout;
    assert!(
        status.success() || (status.code() == Some(2) && report.replays_admitted > 0),
        "loadgen runs ({status}): {}\n{stderr}",
        report.render()
    );
    report
}

fn assert_adds_up(report: &Report) {
    let answered: u64 = report.statuses.values().sum();
    let failed: u64 = report.errors.values().sum();
    assert_eq!(failed, 0, "{}", report.render());
    assert_eq!(report.sent, answered, "{}", report.render());
    assert_eq!(
        report.sent,
        report.fresh.sent + report.replays.sent + report.idempotent_retries.sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_load_with_replays_refuses_every_replay() {
    let (upstream, proxy) = setup().await;
    let url = format!("http://{}/payments", proxy.addr);
    let report = execute(
        &[
            "--url",
            &url,
            "--body-size",
            "64",
            "--concurrency",
            "4",
            "--requests",
            "200",
            "--replay-ratio",
            "0.2",
            "--key-id",
            "lg",
            "--secret-env",
            "RG_LOADGEN_TEST_SECRET_1",
        ],
        &[("RG_LOADGEN_TEST_SECRET_1", SECRET)],
    )
    .await;
    assert_adds_up(&report);
    assert_eq!(report.sent, 200);
    assert_eq!(report.mode, "closed-loop");
    // Replays are sent once something was admitted; nearly all 40 slots.
    assert!(report.replays.sent >= 35, "{}", report.render());
    assert_eq!(report.replays_admitted, 0, "{}", report.render());
    assert_eq!(
        report.reasons.get("replayed_nonce"),
        Some(&report.replays.sent)
    );
    assert_eq!(report.statuses.get(&409), Some(&report.replays.sent));
    assert_eq!(report.fresh.ok, report.fresh.sent, "{}", report.render());
    assert_eq!(report.statuses.get(&200), Some(&report.fresh.sent));
    // The upstream saw exactly the fresh requests, each signed and unique.
    let seen = upstream.seen();
    assert_eq!(seen.len() as u64, report.fresh.sent);
    let mut nonces: Vec<_> = seen
        .iter()
        .map(|s| s.headers["x-request-nonce"].clone())
        .collect();
    nonces.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    nonces.dedup();
    assert_eq!(nonces.len(), seen.len());
    assert!(seen
        .iter()
        .all(|s| s.body.len() == 64 && s.headers["x-replay-guard-key-id"] == "lg"));
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.max >= report.latency_ms.p99);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_get_the_stored_answer() {
    let (upstream, proxy) = setup().await;
    let url = format!("http://{}/orders", proxy.addr);
    let report = execute(
        &[
            "--url",
            &url,
            "--body-size",
            "32",
            "--concurrency",
            "3",
            "--requests",
            "150",
            "--replay-ratio",
            "0.1",
            "--idempotency",
            "--retry-ratio",
            "0.2",
            "--key-id",
            "lg",
            "--secret-env",
            "RG_LOADGEN_TEST_SECRET_2",
        ],
        &[("RG_LOADGEN_TEST_SECRET_2", SECRET)],
    )
    .await;
    assert_adds_up(&report);
    assert_eq!(report.replays_admitted, 0, "{}", report.render());
    assert!(report.idempotent_retries.sent >= 20, "{}", report.render());
    assert_eq!(report.idempotent_retries.ok, report.idempotent_retries.sent);
    assert_eq!(
        report.idempotent_retries.stored_answer,
        report.idempotent_retries.sent
    );
    assert_eq!(report.fresh.stored_answer, 0);
    assert_eq!(
        upstream.count() as u64,
        report.fresh.sent,
        "{}",
        report.render()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_is_bounded_and_unsigned_nonces_work() {
    let (upstream, proxy) = setup().await;
    let url = format!("http://{}/unsigned", proxy.addr);
    let list = [
        "--url",
        &url,
        "--method",
        "get",
        "--concurrency",
        "2",
        "--rate",
        "400",
        "--requests",
        "60",
        "--duration",
        "10s",
        "--replay-ratio",
        "0.5",
    ];
    let report = execute(&list, &[]).await;
    assert_adds_up(&report);
    assert_eq!(report.mode, "open-loop");
    assert_eq!(report.sent, 60);
    assert_eq!(report.replays_admitted, 0, "{}", report.render());
    assert_eq!(upstream.count() as u64, report.fresh.sent);
    // The human-readable report (the same run without --json) names the
    // mode too.
    let mut text_run = vec!["--quiet"];
    text_run.extend_from_slice(&list);
    let (status, text, stderr) = loadgen_output(&text_run, &[]).await;
    assert!(status.success(), "{text}\n{stderr}");
    assert!(text.contains("open-loop"), "{text}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_json_and_exits_zero() {
    let (upstream, proxy) = setup().await;
    let url = format!("http://{}/payments", proxy.addr);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay-guard"))
        .args([
            "loadgen",
            "--url",
            &url,
            "--concurrency",
            "2",
            "--requests",
            "40",
            "--replay-ratio",
            "0.25",
            "--key-id",
            "lg",
            "--secret-env",
            "RG_LOADGEN_TEST_SECRET_BIN",
            "--json",
        ])
        .env("RG_LOADGEN_TEST_SECRET_BIN", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("loadgen ends by itself")
        .expect("loadgen output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(json["sent"], 40);
    assert_eq!(json["replays_admitted"], 0);
    assert_eq!(json["mode"], "closed-loop");
    for field in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(json["latency_ms"][field].is_number(), "{field}");
    }
    let fresh = json["fresh"]["sent"].as_u64().unwrap_or(0);
    assert_eq!(json["statuses"]["200"].as_u64(), Some(fresh));
    assert_eq!(upstream.count() as u64, fresh);
    proxy.shutdown().await;
}

/// A run that measures refusals says so and exits 3: nothing admitted
/// (a wrong secret: every answer 401 `bad_signature`), or nearly every
/// answer a refusal (one admitted, the rest 429 `rate_limited`). The
/// report is still printed; nothing refused reached the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_the_target_refuses_exits_3_and_says_why() {
    let (upstream, proxy) = setup().await;
    let payments = format!("http://{}/payments", proxy.addr);
    let (status, stdout, stderr) = loadgen_output(
        &[
            "--url",
            &payments,
            "--requests",
            "50",
            "--concurrency",
            "2",
            "--key-id",
            "lg",
            "--secret-env",
            "RG_LOADGEN_WRONG_SECRET",
        ],
        &[("RG_LOADGEN_WRONG_SECRET", "not-the-secret")],
    )
    .await;
    assert_eq!(status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "nothing was admitted: 0 of 50 new requests answered 2xx (bad_signature x50)"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains("replays admitted: 0 of 0 (none sent"),
        "{stdout}"
    );
    assert_eq!(upstream.count(), 0);

    let throttled = format!("http://{}/throttled", proxy.addr);
    let (status, stdout, stderr) = loadgen_output(
        &[
            "--url",
            &throttled,
            "--method",
            "GET",
            "--requests",
            "60",
            "--concurrency",
            "2",
        ],
        &[],
    )
    .await;
    assert_eq!(status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("nearly every answer was a refusal: 1 of 60 new requests answered 2xx (rate_limited x59)"),
        "{stderr}"
    );
    assert_eq!(upstream.count(), 1);
}

/// `--header` goes on every request as given; without a terminal on
/// stderr there is no progress line even without `--quiet`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_headers_reach_the_upstream_and_no_progress_line_without_a_terminal() {
    let (upstream, proxy) = setup().await;
    let url = format!("http://{}/payments", proxy.addr);
    let (status, stdout, stderr) = loadgen_output(
        &[
            "--url",
            &url,
            "--duration",
            "1200ms",
            "--requests",
            "30",
            "--concurrency",
            "1",
            "--key-id",
            "lg",
            "--secret-env",
            "RG_LOADGEN_TEST_SECRET_H",
            "--header",
            "X-Tenant: blue",
            "--header",
            "X-Trace: a",
        ],
        &[("RG_LOADGEN_TEST_SECRET_H", SECRET)],
    )
    .await;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(stderr, "", "no progress line on a pipe");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 30);
    assert!(seen
        .iter()
        .all(|s| s.headers["x-tenant"] == "blue" && s.headers["x-trace"] == "a"));

    let (status, _, stderr) = loadgen_output(
        &[
            "--url",
            &url,
            "--requests",
            "1",
            "--idempotency",
            "--header",
            "Idempotency-Key: k",
        ],
        &[],
    )
    .await;
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("--idempotency writes one per operation"),
        "{stderr}"
    );
}

/// On a terminal (a pty from util-linux `script`), the progress line is
/// shown while the run goes on; the report is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_is_shown_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("util-linux script not installed: no pty to test with");
        return;
    }
    let (_upstream, proxy) = setup().await;
    let url = format!("http://{}/unsigned", proxy.addr);
    let line = format!(
        "{} loadgen --url {url} --method GET --rate 20 --duration 2500ms",
        env!("CARGO_BIN_EXE_replay-guard")
    );
    let mut command = tokio::process::Command::new("script");
    command
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("loadgen ends by itself")
        .expect("script runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("\r[") && text.contains("req/s"),
        "a progress line: {text:?}"
    );
    assert!(text.contains("replays admitted: 0 of 0"), "{text}");
}
