//! Operating the sidecar: admin endpoints, metrics, logs, graceful
//! shutdown, TLS. Real upstream, real proxy (in-process or the binary),
//! HTTP over TCP on loopback.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use support::binary::ProxyProcess;
use support::client::{nonce, Req};
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;

const ROUTES: &str = r#"
[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
freshness = { max_skew_secs = 120 }
nonce = { required = true }
"#;

/// Parse the Prometheus text exposition into `series → value`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_a_scripted_sequence() {
    let upstream = Upstream::start().await;
    let proxy = TestProxy::start(&upstream.url(), ROUTES).await;
    let admin = proxy.admin.unwrap();
    let fresh = Req::post("/payments").fresh(T0, &nonce(1));
    assert_eq!(fresh.send(proxy.addr).await.status, 200);
    assert_eq!(fresh.send(proxy.addr).await.reason(), "replayed_nonce");
    assert_eq!(
        Req::post("/payments")
            .fresh(T0 - 500, &nonce(2))
            .send(proxy.addr)
            .await
            .reason(),
        "stale_timestamp"
    );
    assert_eq!(Req::get("/elsewhere").send(proxy.addr).await.status, 200);

    let reply = Req::get("/metrics").send(admin).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let metrics = parse_metrics(&text);
    let get = |series: &str| {
        metrics
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    };
    assert_eq!(
        get(r#"replay_guard_requests_total{route="create-payment",outcome="forwarded"}"#),
        1.0
    );
    assert_eq!(
        get(r#"replay_guard_requests_total{route="create-payment",outcome="rejected"}"#),
        2.0
    );
    assert_eq!(
        get(r#"replay_guard_requests_total{route="unmatched",outcome="forwarded"}"#),
        1.0
    );
    assert_eq!(
        get(r#"replay_guard_rejections_total{route="create-payment",reason="replayed_nonce"}"#),
        1.0
    );
    assert_eq!(
        get(r#"replay_guard_rejections_total{route="create-payment",reason="stale_timestamp"}"#),
        1.0
    );
    assert_eq!(
        get(r#"replay_guard_upstream_duration_seconds_count{route="create-payment"}"#),
        1.0
    );
    // Two nonce claims reached the store (fresh + replay); the stale one did not.
    assert_eq!(
        get(r#"replay_guard_store_duration_seconds_count{op="claim_nonce"}"#),
        2.0
    );
    assert!(!text.contains("test-nonce"), "no nonce in labels");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn admin_endpoints_live_only_on_the_admin_listener() {
    let upstream = Upstream::start().await;
    let proxy = TestProxy::start(
        &upstream.url(),
        &format!("unmatched = \"reject\"\n{ROUTES}"),
    )
    .await;
    let admin = proxy.admin.unwrap();
    assert_eq!(Req::get("/healthz").send(admin).await.status, 200);
    assert_eq!(Req::get("/readyz").send(admin).await.status, 200);
    assert_eq!(Req::get("/nope").send(admin).await.status, 404);
    let public = Req::get("/metrics").send(proxy.addr).await;
    assert_eq!(public.status_reason(), (404, "route_not_allowed".into()));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_turns_readyz_503_and_finishes_in_flight_requests() {
    let upstream = Upstream::start().await;
    let mut proxy = TestProxy::start(&upstream.url(), "shutdown_grace_secs = 10\n").await;
    let admin = proxy.admin.unwrap();
    let addr = proxy.addr;
    let slow = tokio::spawn(async move {
        Req::get("/slow")
            .header("x-test-delay-ms", 800)
            .send(addr)
            .await
    });
    // Wait until the upstream has the request.
    for _ in 0..100 {
        if upstream.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.count(), 1);
    let running = proxy.running.take().unwrap();
    let trigger = running.shutdown_trigger();
    let done = tokio::spawn(running.wait());
    trigger.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = Req::get("/readyz").send(admin).await;
    assert_eq!(
        ready.status, 503,
        "readyz must fail as soon as draining starts"
    );
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight request completes");
    tokio::time::timeout(Duration::from_secs(5), done)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_then_exits_0() {
    let upstream = Upstream::start().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\nshutdown_grace_secs = 10\n{ROUTES}",
        upstream.url()
    );
    let mut child = ProxyProcess::start(&config);
    let addr = child.addr;
    let slow = tokio::spawn(async move {
        Req::get("/slow")
            .header("x-test-delay-ms", 1000)
            .send(addr)
            .await
    });
    for _ in 0..200 {
        if upstream.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.signal("TERM");
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200);
    let (status, lines) = tokio::task::spawn_blocking(move || {
        (child.wait_exit(Duration::from_secs(10)), child.lines())
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(lines.iter().any(|l| l.contains("draining")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_reason_but_never_the_nonce() {
    let upstream = Upstream::start().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n{ROUTES}",
        upstream.url()
    );
    let mut child = ProxyProcess::start(&config);
    let addr = child.addr;
    let secret_nonce = "nonce-that-must-not-be-logged-0123";
    let reply = Req::post("/payments")
        .fresh(1, secret_nonce)
        .header("X-Request-Id", "req-abc-1")
        .send(addr)
        .await;
    assert_eq!(reply.reason(), "stale_timestamp");
    assert_eq!(reply.header("x-request-id").as_deref(), Some("req-abc-1"));
    child.until_line("request rejected").await;
    child.kill();
    let lines = child.lines();
    let rejection = lines
        .iter()
        .find(|l| l.contains("request rejected"))
        .unwrap_or_else(|| panic!("no rejection line in {lines:?}"));
    let json: serde_json::Value = serde_json::from_str(rejection).unwrap();
    assert_eq!(json["fields"]["reason"], "stale_timestamp");
    assert_eq!(json["fields"]["request_id"], "req-abc-1");
    assert_eq!(json["fields"]["route"], "create-payment");
    assert!(lines.iter().all(|l| !l.contains(secret_nonce)));
}

#[tokio::test]
async fn tls_listener_answers_over_https() {
    let upstream = Upstream::start().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let proxy = TestProxy::start(
        &upstream.url(),
        &format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n{ROUTES}",
            cert_path.display().to_string(),
            key_path.display().to_string()
        ),
    )
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
    let uri = format!("https://localhost:{}/hello", proxy.addr.port());
    let response = client.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn missing_tls_files_fail_startup_with_the_file_name() {
    // Refused while validating (so `check` refuses it too, see
    // tests/cli_check.rs), naming the file.
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n[server.tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n";
    let error = replay_guard::config::Config::parse(toml, "t.toml").unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/cert.pem"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_command_probes_the_admin_listener() {
    let upstream = Upstream::start().await;
    let proxy = TestProxy::start(&upstream.url(), "").await;
    let url = format!("http://{}/healthz", proxy.admin.unwrap());
    let probe = |url: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_replay-guard"))
                .args(["healthcheck", "--url", &url])
                .output()
                .unwrap()
        })
    };
    assert_eq!(probe(url).await.unwrap().status.code(), Some(0));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = probe(format!("http://{closed}/healthz")).await.unwrap();
    assert_eq!(down.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_is_off_by_default_and_one_line_per_request_when_on() {
    let upstream = Upstream::start().await;
    for on in [false, true] {
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\naccess_log = {on}\n",
            upstream.url()
        );
        let mut child = ProxyProcess::start(&config);
        assert_eq!(
            Req::get("/a?token=secret-query")
                .send(child.addr)
                .await
                .status,
            200
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        child.kill();
        let lines: Vec<String> = child
            .lines()
            .into_iter()
            .filter(|l| l.contains("\"access\""))
            .collect();
        if !on {
            assert!(lines.is_empty(), "{lines:?}");
            continue;
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        let json: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(json["fields"]["status"], 200);
        assert_eq!(json["fields"]["method"], "GET");
        assert_eq!(json["fields"]["route"], "unmatched");
        assert!(
            !lines[0].contains("secret-query"),
            "no query strings in logs"
        );
    }
}

#[tokio::test]
async fn https_upstreams_are_verified_against_trusted_roots() {
    // A TLS upstream with a self-signed certificate: no trusted root signs
    // it, so the proxy must refuse to talk to it (502), never fall back to
    // an unverified connection.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // The handshake fails on the client's side; count attempts.
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = acceptor.accept(stream).await;
        }
    });
    let proxy = TestProxy::start(&format!("https://localhost:{port}"), "").await;
    let reply = Req::get("/anything").send(proxy.addr).await;
    assert_eq!(reply.status_reason(), (502, "upstream_unavailable".into()));
    assert!(
        handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy did try TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_gauge_returns_to_zero_when_a_client_hangs_up() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start().await;
    let proxy = TestProxy::start(&upstream.url(), "").await;
    let admin = proxy.admin.unwrap();
    let gauge = |text: &str| parse_metrics(text)["replay_guard_in_flight_requests"];
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nx-test-delay-ms: 1500\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..100 {
        if upstream.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during = support::metrics::scrape(admin).await;
    assert_eq!(gauge(&during), 1.0);
    drop(stream);
    let mut after = f64::NAN;
    for _ in 0..50 {
        let text = support::metrics::scrape(admin).await;
        after = gauge(&text);
        if after == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(after, 0.0, "the hung-up request left the gauge");
}
