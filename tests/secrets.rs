//! Secrets and client data stay secret: no signing secret (current or
//! previous), nonce, idempotency key or signature value appears in the
//! logs (debug level, text and JSON), in `check`'s output or in
//! `/metrics`, whatever the request's outcome. The real binary as a child
//! process in front of a real recording upstream, on loopback.

mod support;

use support::binary::ProxyProcess;
use support::client::{nonce, Req};
use support::config::Route;
use support::upstream::Upstream;

/// The body of the signed requests.
const SIGNED_BODY: &str = r#"{"amount":1250,"currency":"EUR"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_nonce_idempotency_key_or_signature_in_debug_logs_or_metrics() {
    let upstream = Upstream::start().await;
    let secret = "log-canary-secret-7d1f0c9e";
    let signed = Route::post("signed", "/signed")
        .identity("key_id")
        .freshness(120)
        .nonce()
        .signature()
        .idempotency("{ required = true }");
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{}"

[[keys]]
id = "billing-svc"
secret_env = "RG_ADVERSARIAL_SECRET"

{signed}"#,
        upstream.url()
    );
    let mut process = ProxyProcess::start_with_env(
        &config,
        &[("RG_ADVERSARIAL_SECRET", secret), ("RUST_LOG", "debug")],
    );
    let (addr, admin) = (process.addr, process.admin.unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let nonce_value = "nonce-canary-0123456789abcdef";
    let idem_key = "idem-canary-key-5a5a5a";
    let host = addr.to_string();
    let request = Req::post("/signed")
        .header("Idempotency-Key", idem_key)
        .body(r#"{"amount":1}"#)
        .signed(&host, "billing-svc", secret, now, nonce_value);
    let signature = request
        .headers
        .iter()
        .find(|(name, _)| name == "X-Signature")
        .map(|(_, value)| value.trim_start_matches("v1=").to_owned())
        .unwrap();
    let first = request.send(addr).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let replay = request.send(addr).await;
    assert_eq!(replay.reason(), "replayed_nonce");
    let forged = Req::post("/signed")
        .header("Idempotency-Key", idem_key)
        .body(r#"{"amount":1}"#)
        .signed(
            &host,
            "billing-svc",
            "wrong-secret",
            now,
            "nonce-canary-forged-0000001",
        );
    assert_eq!(forged.send(addr).await.reason(), "bad_signature");
    let malformed = Req::post("/signed")
        .header("Idempotency-Key", "idem canary with spaces")
        .body("x")
        .signed(
            &host,
            "billing-svc",
            secret,
            now,
            "nonce-canary-malformed-00001",
        );
    assert_eq!(
        malformed.send(addr).await.reason(),
        "malformed_idempotency_key"
    );
    assert_eq!(upstream.count(), 1);
    let metrics = Req::get("/metrics").send(admin).await;
    assert_eq!(metrics.status, 200);
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    // The last rejection's line: every line before it is in too.
    process.until_line("malformed_idempotency_key").await;
    process.kill();
    let lines = process.lines();
    assert!(
        lines.iter().any(|l| l.contains("request rejected")),
        "{lines:?}"
    );
    for canary in [
        secret,
        nonce_value,
        "nonce-canary",
        idem_key,
        "idem canary",
        signature.as_str(),
        "wrong-secret",
    ] {
        assert!(!metrics.contains(canary), "{canary} in /metrics");
        for line in &lines {
            assert!(!line.contains(canary), "{canary} logged: {line}");
        }
    }
}

/// The real binary, run with `RUST_LOG=debug`: no log line of a failing
/// (or succeeding) signed request, and nothing `check` prints, contains a
/// secret value.
#[tokio::test]
async fn secrets_never_appear_in_logs_or_check_output() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const CURRENT: &str = "logtest-current-secret-0c9d2e71";
    const PREVIOUS: &str = "logtest-previous-secret-77ab14f3";
    let upstream = Upstream::start().await;
    let mut secret_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(secret_file, "{CURRENT}").unwrap();
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write!(
        config,
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"

[[keys]]
id = "billing-svc"
secret_file = "{file}"
previous_secret_env = "RG_LOGTEST_PREVIOUS"

[[routes]]
name = "signed"
path = "/v1/{{*rest}}"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}
signature = {{ required = true }}
"#,
        upstream = upstream.url(),
        file = secret_file.path().display(),
    )
    .unwrap();

    let bin = env!("CARGO_BIN_EXE_replay-guard");
    for format in ["text", "json"] {
        let check = Command::new(bin)
            .args(["--log-format", format, "check", "--config"])
            .arg(config.path())
            .env("RUST_LOG", "debug")
            .env("RG_LOGTEST_PREVIOUS", PREVIOUS)
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(
            printed.contains("billing-svc"),
            "check lists the key: {printed}"
        );
        assert!(
            !printed.contains(CURRENT) && !printed.contains(PREVIOUS),
            "{printed}"
        );

        let mut child = Command::new(bin)
            .args(["--log-format", format, "run", "--config"])
            .arg(config.path())
            .env("RUST_LOG", "debug")
            .env("RG_LOGTEST_PREVIOUS", PREVIOUS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let captured = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel::<std::net::SocketAddr>();
        let reader = {
            let captured = captured.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("listening") {
                        if let Some(addr) = loopback_addr(&line) {
                            let _ = addr_tx.send(addr);
                        }
                    }
                    captured.lock().unwrap().push_str(&line);
                    captured.lock().unwrap().push('\n');
                }
            })
        };
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "proxy did not report its address: {}",
                    captured.lock().unwrap()
                );
            }
        };

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let host = addr.to_string();
        let sign = |secret: &str, key: &str, n: usize| {
            Req::post("/v1/payments")
                .body(SIGNED_BODY)
                .signed(&host, key, secret, now, &nonce(n))
        };
        let forged = sign("not-the-secret", "billing-svc", 1);
        assert_eq!(forged.send(addr).await.reason(), "bad_signature");
        let tampered = {
            let mut r = sign(CURRENT, "billing-svc", 2);
            r.body = "tampered".into();
            r
        };
        assert_eq!(tampered.send(addr).await.reason(), "bad_signature");
        assert_eq!(
            sign(CURRENT, "nobody", 3).send(addr).await.reason(),
            "unknown_key"
        );
        let unsigned = sign(CURRENT, "billing-svc", 4).without_header("X-Signature");
        assert_eq!(unsigned.send(addr).await.reason(), "missing_signature");
        let good = sign(CURRENT, "billing-svc", 5);
        assert_eq!(good.send(addr).await.status, 200);
        assert_eq!(good.send(addr).await.reason(), "replayed_nonce");
        assert_eq!(
            sign(PREVIOUS, "billing-svc", 6).send(addr).await.status,
            200
        );

        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        let logs = captured.lock().unwrap().clone();
        assert!(
            logs.contains("bad_signature"),
            "rejections are logged: {logs}"
        );
        assert!(logs.contains("DEBUG"), "debug logging was on: {logs}");
        assert!(
            !logs.contains(CURRENT),
            "current secret in the {format} logs:\n{logs}"
        );
        assert!(
            !logs.contains(PREVIOUS),
            "previous secret in the {format} logs:\n{logs}"
        );
    }
}

/// The first `127.0.0.1:PORT` in a log line (text or JSON).
fn loopback_addr(line: &str) -> Option<std::net::SocketAddr> {
    let start = line.find("127.0.0.1:")?;
    let rest = &line[start + "127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    format!("127.0.0.1:{digits}").parse().ok()
}
