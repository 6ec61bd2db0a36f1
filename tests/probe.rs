//! `replay-guard probe` against real processes: the real binary probing a
//! real replay-guard (a child process on the system clock) in front of the
//! counting upstream, and the counting upstream alone. Each test states
//! what the probe must conclude (exit code, the missing defence it names)
//! and what the upstream executed because of it.

mod support;

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::binary::{command, ProxyProcess};
use support::upstream::Upstream;

const SECRET_ENV: &str = "PROBE_TEST_BILLING_SECRET";
const SECRET: &str = "probe-test-secret-8c1d";

/// Run `replay-guard probe ARGS` to completion (within 60 s, else the
/// test fails and the child is killed), with the billing secret in its
/// environment.
async fn probe(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let child = command()
            .env(SECRET_ENV, SECRET)
            .arg("probe")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn replay-guard probe");
        let id = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(output) => output.expect("probe output"),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(id.to_string())
                    .status();
                panic!("probe {args:?} did not finish within 60 s");
            }
        }
    })
    .await
    .unwrap()
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `[server]` for a proxy in front of `upstream`.
fn server(upstream: &Upstream, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n{extra}\n[[keys]]\nid = \"billing-svc\"\nsecret_env = \"{SECRET_ENV}\"\n",
        upstream.url()
    )
}

/// Every replay rule on `/payments`, for every method.
const WELL_CONFIGURED: &str = r#"
[[routes]]
name = "payments"
path = "/payments"
identity = "key_id"
freshness = { max_skew_secs = 120 }
nonce = { required = true }
signature = { required = true }
idempotency = { required = true, ttl_secs = 86400, lease_secs = 60 }
"#;

/// The same rules, but only for `POST`, with unmatched paths forwarded.
const POST_ONLY: &str = r#"
[[routes]]
name = "payments"
methods = ["POST"]
path = "/payments"
identity = "key_id"
freshness = { max_skew_secs = 120 }
nonce = { required = true }
signature = { required = true }
"#;

/// Run the probe with `items` and `--json`, expect exit `code`, and read
/// its report.
async fn probe_report(items: &[&str], code: i32) -> serde_json::Value {
    let mut argv = args(items);
    argv.push("--json".to_owned());
    let output = probe(argv).await;
    assert_exit(&output, code);
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// The attack `id` of a `--json` report.
#[track_caller]
fn attack<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["attacks"]
        .as_array()
        .and_then(|attacks| attacks.iter().find(|a| a["id"] == id))
        .unwrap_or_else(|| panic!("{id} in {report:#}"))
}

/// A real proxy (child process) and the path of the config file it runs,
/// to hand to the probe as `--config`.
fn proxy(toml: &str) -> (ProxyProcess, String) {
    let process = ProxyProcess::start_with_env(toml, &[(SECRET_ENV, SECRET)]);
    let config = process.config_path().display().to_string();
    (process, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_configured_deployment_refuses_everything_and_executes_at_most_n() {
    let upstream = Upstream::start().await;
    // The default `unmatched = "forward"`: every spelling and method the
    // probe tries must get the route's checks (#17), not default-deny.
    let (proxy, config) = proxy(&format!("{}{WELL_CONFIGURED}", server(&upstream, "")));
    let url = format!("http://{}/payments", proxy.addr);
    let output = probe(args(&[
        "--url",
        &url,
        "--body",
        r#"{"amount":1250}"#,
        "--config",
        &config,
        "--route",
        "payments",
        "--allow-execute",
        "10",
    ]))
    .await;
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("every attack was refused (exit 0)"), "{text}");
    assert!(
        text.contains("missing_timestamp") && text.contains("replayed_nonce"),
        "{text}"
    );
    // The valid request once and one copy of the storm's request; the
    // replay, the retry (stored answer) and every attack never arrived.
    assert!(upstream.count() <= 10);
    assert_eq!(upstream.count(), 2, "{:?}", upstream.paths());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_an_unprotected_upstream_accepts_missing_timestamps_and_replays() {
    let upstream = Upstream::start().await;
    let url = format!("{}/payments", upstream.url());
    let output = probe(args(&[
        "--url",
        &url,
        "--body",
        "{}",
        "--allow-execute",
        "5",
    ]))
    .await;
    assert_exit(&output, 1);
    let text = stdout(&output);
    assert!(
        text.contains("accepts requests without a timestamp"),
        "{text}"
    );
    assert!(text.contains("accepts a byte-for-byte replay"), "{text}");
    assert!(
        text.contains("executed a retry with the same Idempotency-Key"),
        "{text}"
    );
    assert!(text.contains("executed 2 of 2 concurrent copies"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_a_post_only_route_lets_put_through() {
    let upstream = Upstream::start().await;
    let (proxy, config) = proxy(&format!("{}{POST_ONLY}", server(&upstream, "")));
    let url = format!("http://{}/payments", proxy.addr);
    let output = probe(args(&[
        "--url", &url, "--body", "{}", "--config", &config, "--route", "payments",
    ]))
    .await;
    assert_exit(&output, 1);
    let text = stdout(&output);
    assert!(
        text.contains("PUT /payments reached the upstream unchecked"),
        "{text}"
    );
    assert!(
        upstream.seen().iter().any(|s| s.method == "PUT"),
        "the upstream executed the PUT"
    );
    // The POST route's own checks held.
    assert!(
        text.contains("missing_timestamp") && text.contains("bad_signature"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_names_each_attack_with_its_evidence() {
    let upstream = Upstream::start().await;
    let (proxy, config) = proxy(&format!("{}{POST_ONLY}", server(&upstream, "")));
    let url = format!("http://{}/payments", proxy.addr);
    let report = probe_report(
        &[
            "--url",
            &url,
            "--config",
            &config,
            "--route",
            "payments",
            "--allow-execute",
            "2",
        ],
        1,
    )
    .await;
    assert_eq!(report["verdict"], "got_through");
    assert_eq!(report["exit_code"], 1);
    assert_eq!(report["route"], "payments");
    assert_eq!(
        report["valid_request"]["verdict"], "got_through",
        "{report:#}"
    );
    let attacks = report["attacks"].as_array().unwrap();
    let by_id = |id: &str| attack(&report, id);
    let put = by_id("method-put");
    assert_eq!(
        (put["verdict"].as_str(), put["status"].as_u64()),
        (Some("got_through"), Some(200))
    );
    assert!(put["note"].as_str().unwrap().contains("PUT /payments"));
    let stale = by_id("stale-timestamp");
    assert_eq!(
        (stale["verdict"].as_str(), stale["reason"].as_str()),
        (Some("refused"), Some("stale_timestamp"))
    );
    assert!(stale["ms"].is_u64());
    let replay = by_id("replay");
    assert_eq!(
        (replay["verdict"].as_str(), replay["reason"].as_str()),
        (Some("refused"), Some("replayed_nonce"))
    );
    assert_eq!(by_id("storm")["verdict"], "skipped");
    let summary = &report["summary"];
    let total: u64 = ["refused", "got_through", "inconclusive", "skipped"]
        .iter()
        .map(|k| summary[k].as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, attacks.len());
}

/// An RFC 9421 route: the probe signs `Signature-Input`/`Signature` (with
/// `created` and `nonce` as parameters), so each attack is refused by the
/// check it aims at — never by a missing signature — and the replay and
/// the storm meet the signed nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rfc9421_route_is_probed_with_rfc9421_signatures() {
    let upstream = Upstream::start().await;
    let route = r#"
[[routes]]
name = "orders"
path = "/orders"
identity = "key_id"
freshness = { max_skew_secs = 120 }
nonce = { required = true }
signature = { required = true, scheme = "rfc9421", tag = "partner-api" }
"#;
    let (proxy, config) = proxy(&format!("{}{route}", server(&upstream, "")));
    let url = format!("http://{}/orders", proxy.addr);
    let report = probe_report(
        &[
            "--url",
            &url,
            "--body",
            r#"{"item":"widget"}"#,
            "--config",
            &config,
            "--route",
            "orders",
            "--allow-execute",
            "10",
        ],
        0,
    )
    .await;
    assert_eq!(report["valid_request"]["status"], 200, "{report:#}");
    let reason = |id: &str| {
        let attack = attack(&report, id);
        (
            attack["verdict"].as_str().unwrap_or_default().to_owned(),
            attack["reason"].as_str().unwrap_or_default().to_owned(),
        )
    };
    for (id, expected) in [
        ("stale-timestamp", "stale_timestamp"),
        ("future-timestamp", "future_timestamp"),
        ("malformed-nonce", "malformed_nonce"),
        ("forged-signature", "bad_signature"),
        ("unknown-key", "unknown_key"),
        ("replay", "replayed_nonce"),
        ("no-replay-headers", "missing_signature"),
    ] {
        assert_eq!(
            reason(id),
            ("refused".to_owned(), expected.to_owned()),
            "{id}: {report:#}"
        );
    }
    assert_eq!(reason("no-timestamp").0, "skipped");
    // The valid request and one copy of the storm executed; nothing else.
    assert_eq!(upstream.count(), 2, "{:?}", upstream.paths());
    for seen in upstream.seen() {
        let input = seen
            .headers
            .get("signature-input")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            input.contains("tag=\"partner-api\"") && input.contains("\"content-digest\""),
            "every executed request carried the route's RFC 9421 signature: {input:?}"
        );
    }
}

/// An RFC 9421 route whose key is a public key: the probe signs with the
/// client's private key (`--private-key-file`, a key pair made by the
/// `cryptography` library), and refuses to guess without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rfc9421_public_key_route_is_probed_with_the_private_key() {
    let upstream = Upstream::start().await;
    let keys = support::httpsig::keys_dir();
    let route = format!(
        r#"
[[keys]]
id = "partner-ed"
public_key_file = {:?}
algorithm = "ed25519"

[[routes]]
name = "orders"
path = "/orders"
identity = "key_id"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}
signature = {{ required = true, scheme = "rfc9421" }}
"#,
        keys.join("ed25519.pub.pem").display().to_string()
    );
    let (proxy, config) = proxy(&format!("{}{route}", server(&upstream, "")));
    let url = format!("http://{}/orders", proxy.addr);
    let private = keys.join("ed25519.key.pem").display().to_string();
    let report = probe_report(
        &[
            "--url",
            &url,
            "--config",
            &config,
            "--route",
            "orders",
            "--key-id",
            "partner-ed",
            "--private-key-file",
            &private,
            "--algorithm",
            "ed25519",
            "--allow-execute",
            "4",
        ],
        0,
    )
    .await;
    assert_eq!(report["valid_request"]["status"], 200, "{report:#}");
    assert_eq!(
        attack(&report, "stale-timestamp")["reason"],
        "stale_timestamp",
        "{report:#}"
    );
    assert_eq!(
        attack(&report, "replay")["reason"],
        "replayed_nonce",
        "{report:#}"
    );
    assert!(upstream.count() <= 4);

    // Without the private key: a usage error naming what to give.
    let output = probe(args(&[
        "--url",
        &url,
        "--config",
        &config,
        "--route",
        "orders",
        "--key-id",
        "partner-ed",
    ]))
    .await;
    assert_exit(&output, 2);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--private-key-file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_every_request_and_sends_nothing() {
    let upstream = Upstream::start().await;
    let url = format!("{}/payments", upstream.url());
    let output = probe(args(&[
        "--url",
        &url,
        "--body",
        "{}",
        "--allow-execute",
        "5",
        "--dry-run",
    ]))
    .await;
    assert_exit(&output, 0);
    let text = stdout(&output);
    for expected in [
        "### no-timestamp",
        "### method-put",
        "PUT /payments HTTP/1.1",
        "Transfer-Encoding: chunked",
        "### valid request",
        "(dry run: nothing was sent)",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
    assert!(String::from_utf8_lossy(&output.stderr).contains("WARNING"));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_and_unreachable_targets_exit_2() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for bad in [
        args(&["--url", "ftp://127.0.0.1/payments"]),
        args(&["--url", "http://127.0.0.1:1/p", "--allow-execute", "0"]),
        args(&["--url", "http://127.0.0.1:1/p", "--header", "no colon"]),
        args(&["--url", &format!("http://{closed}/payments")]),
    ] {
        let output = probe(bad.clone()).await;
        assert_exit(&output, 2);
        assert!(!output.stderr.is_empty(), "{bad:?} says why");
    }
}
