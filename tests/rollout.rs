//! Changing replay-guard while traffic flows: config reload (admin
//! `POST /reload` and SIGHUP) and the memory store's restart fence.

mod support;

use std::time::Duration;

use support::binary::ProxyProcess;
use support::client::{nonce, Req};
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;

fn config(upstream: &str, nonce_rule: bool, extra_route: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"

[store.memory]
restart_fence = false

[[routes]]
name = "payments"
path = "/payments"
freshness = {{ max_skew_secs = 300 }}
{nonce}

[[routes]]
name = "limited"
path = "/limited"
rate_limit = {{ per_minute = 2, burst = 2 }}
{extra_route}
"#,
        nonce = if nonce_rule {
            "nonce = { required = true }"
        } else {
            ""
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_without_dropping_in_flight_requests() {
    let upstream = Upstream::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&upstream.url(), false, "")).unwrap();
    let proxy = TestProxy::start_file(file.path()).await;
    let admin = proxy.admin.unwrap();
    let request = Req::post("/payments").fresh(T0, &nonce(1));
    // Report-free world before the change: the nonce is not checked.
    assert_eq!(request.send(proxy.addr).await.status, 200);
    assert_eq!(request.send(proxy.addr).await.status, 200);
    // Two requests spend the rate-limit burst of an unchanged route.
    assert_eq!(Req::get("/limited").send(proxy.addr).await.status, 200);
    assert_eq!(Req::get("/limited").send(proxy.addr).await.status, 200);
    assert_eq!(
        Req::get("/limited").send(proxy.addr).await.reason(),
        "rate_limited"
    );

    // A slow request in flight while the config changes.
    let addr = proxy.addr;
    let slow = tokio::spawn(async move {
        Req::get("/slow")
            .header("x-test-delay-ms", 500)
            .send(addr)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(
        file.path(),
        config(
            &upstream.url(),
            true,
            "[[routes]]\nname = \"new\"\npath = \"/new\"\n",
        ),
    )
    .unwrap();
    let reply = Req::post("/reload").send(admin).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        slow.await.unwrap().status,
        200,
        "in-flight request finished"
    );

    let fresh = Req::post("/payments").fresh(T0, &nonce(2));
    assert_eq!(fresh.send(proxy.addr).await.status, 200);
    let replay = fresh.send(proxy.addr).await;
    assert_eq!(
        (replay.status.as_u16(), replay.reason().as_str()),
        (409, "replayed_nonce")
    );
    // The unchanged route kept its limiter state.
    assert_eq!(
        Req::get("/limited").send(proxy.addr).await.reason(),
        "rate_limited"
    );
    // 2 payments + 2 limited + slow + 1 fresh payment.
    assert_eq!(upstream.count(), 6);
}

#[tokio::test]
async fn an_invalid_file_keeps_the_old_config_serving() {
    let upstream = Upstream::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&upstream.url(), true, "")).unwrap();
    let proxy = TestProxy::start_file(file.path()).await;
    let admin = proxy.admin.unwrap();
    std::fs::write(
        file.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"nope\"\n",
    )
    .unwrap();
    let reply = Req::post("/reload").send(admin).await;
    assert_eq!(reply.status, 422);
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(
        body.contains(":3:12: upstream"),
        "file:line:col in the answer: {body}"
    );
    // Still the old config: nonces are checked.
    let request = Req::post("/payments").fresh(T0, &nonce(3));
    assert_eq!(request.send(proxy.addr).await.status, 200);
    assert_eq!(request.send(proxy.addr).await.reason(), "replayed_nonce");
    let metrics = support::metrics::scrape(admin).await;
    assert!(
        metrics.contains(r#"replay_guard_config_reloads_total{result="error"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    let upstream = Upstream::start().await;
    let child = ProxyProcess::start(&config(&upstream.url(), false, ""));
    let addr = child.addr;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = Req::post("/payments").fresh(now, &nonce(4));
    assert_eq!(request.send(addr).await.status, 200);
    std::fs::write(child.config_path(), config(&upstream.url(), true, "")).unwrap();
    child.signal("HUP");
    let fresh = Req::post("/payments").fresh(now, &nonce(5));
    let mut status = 0;
    for _ in 0..50 {
        // Each attempt uses the same nonce: once the reload is in, the first
        // attempt is forwarded and the next one is a replay.
        let reply = fresh.send(addr).await;
        if reply.reason() == "replayed_nonce" {
            status = 409;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 409, "after SIGHUP the nonce rule applies");
}

#[tokio::test]
async fn restart_fence_refuses_timestamps_from_before_the_start() {
    let upstream = Upstream::start().await;
    let routes = "[store.memory]\nrestart_fence = true\n[[routes]]\nname = \"p\"\npath = \"/p\"\nfreshness = { max_skew_secs = 60 }\nnonce = {}\n";
    let proxy = TestProxy::start(&upstream.url(), routes).await;
    // Signed before the start: the store cannot know whether it was seen.
    let before = Req::post("/p")
        .fresh(T0 - 10, &nonce(6))
        .send(proxy.addr)
        .await;
    assert_eq!(
        (before.status.as_u16(), before.reason().as_str()),
        (400, "stale_timestamp")
    );
    let fresh = Req::post("/p").fresh(T0, &nonce(7)).send(proxy.addr).await;
    assert_eq!(fresh.status, 200, "the start's own second: not before it");
    assert_eq!(upstream.count(), 1);
    // One window after the start the fence is gone.
    proxy.clock.advance(Duration::from_secs(61));
    let later = Req::post("/p")
        .fresh(T0 + 30, &nonce(8))
        .send(proxy.addr)
        .await;
    assert_eq!(later.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_captured_before_a_restart_is_refused_after_it() {
    let upstream = Upstream::start().await;
    let routes =
        "[[routes]]\nname = \"p\"\npath = \"/p\"\nfreshness = { max_skew_secs = 60 }\nnonce = {}\n";
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n{routes}",
        upstream.url()
    );
    let mut first = ProxyProcess::start(&config);
    let addr = first.addr;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let captured = Req::post("/p").fresh(now, &nonce(9));
    assert_eq!(captured.send(addr).await.status, 200);
    // Restart in a later second than the capture.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    first.kill();
    let second = ProxyProcess::start(&config);
    let addr = second.addr;
    let replay = captured.send(addr).await;
    assert_eq!(
        (replay.status.as_u16(), replay.reason().as_str()),
        (400, "stale_timestamp")
    );
    assert_eq!(upstream.count(), 1, "the replay never reached the upstream");
    drop(second);
}

fn report_config(upstream: &str, mode: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"
max_body_bytes = 64

[store.memory]
restart_fence = false

[[keys]]
id = "k1"
secret = "report-mode-secret"

[[routes]]
name = "pay"
path = "/pay"
mode = "{mode}"
freshness = {{ max_skew_secs = 60 }}
nonce = {{ required = true }}
signature = {{ required = true }}
idempotency = {{ required = false, lease_secs = 36 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_forwards_would_be_rejections_and_counts_them() {
    let upstream = Upstream::start().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), report_config(&upstream.url(), "report")).unwrap();
    let proxy = TestProxy::start_file(file.path()).await;
    let admin = proxy.admin.unwrap();
    let host = proxy.host();
    let signed = |ts: u64, n: usize| {
        Req::post("/pay")
            .body("{}")
            .signed(&host, "k1", "report-mode-secret", ts, &nonce(n))
    };

    let first = signed(T0, 1).header("X-Replay-Guard-Report", "spoofed");
    assert_eq!(first.send(proxy.addr).await.status, 200);
    // Each would-be rejection is forwarded, with its reason for the upstream.
    let replay = first.send(proxy.addr).await;
    assert_eq!(replay.status, 200, "report mode forwards the replay");
    let stale = signed(T0 - 600, 2).send(proxy.addr).await;
    assert_eq!(stale.status, 200);
    let forged = Req::post("/pay")
        .body("{}")
        .signed(&host, "k1", "wrong-secret", T0, &nonce(3))
        .send(proxy.addr)
        .await;
    assert_eq!(forged.status, 200);
    // An idempotent retry is answered by the upstream, never from the store.
    let keyed = |n: usize| signed(T0, n).header("Idempotency-Key", "order-1");
    assert_eq!(keyed(4).send(proxy.addr).await.status, 200);
    let retry = keyed(5).send(proxy.addr).await;
    assert_eq!(retry.status, 200);
    assert!(retry.header("idempotent-replayed").is_none());
    // Body size protects the proxy itself: enforced in every mode.
    let big = signed(T0, 6).body(vec![b'x'; 100]).send(proxy.addr).await;
    assert_eq!(
        (big.status.as_u16(), big.reason().as_str()),
        (413, "body_too_large")
    );

    let seen = upstream.seen();
    let reports: Vec<Option<&str>> = seen
        .iter()
        .map(|s| {
            s.headers
                .get("x-replay-guard-report")
                .map(|v| v.to_str().unwrap())
        })
        .collect();
    assert_eq!(
        reports,
        vec![
            None,
            Some("replayed_nonce"),
            Some("stale_timestamp"),
            Some("bad_signature"),
            None,
            Some("idempotent_replay"),
        ]
    );
    let metrics = support::metrics::scrape(admin).await;
    for reason in [
        "replayed_nonce",
        "stale_timestamp",
        "bad_signature",
        "idempotent_replay",
    ] {
        let series =
            format!("replay_guard_report_only_total{{route=\"pay\",reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }

    // Switch to enforce: the next replay is refused, nothing forwarded.
    std::fs::write(file.path(), report_config(&upstream.url(), "enforce")).unwrap();
    assert_eq!(Req::post("/reload").send(admin).await.status, 200);
    let replay = first.send(proxy.addr).await;
    assert_eq!(
        (replay.status.as_u16(), replay.reason().as_str()),
        (409, "replayed_nonce")
    );
    assert_eq!(upstream.count(), 6);
}
