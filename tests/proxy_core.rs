//! The proxy core end to end: a real upstream, the real proxy on loopback,
//! HTTP over TCP. Each case asserts the status, the `reason` and what the
//! upstream received.

mod support;

use std::time::Duration;

use support::client::{expect_each_post, nonce, Req};
use support::config::{self, Route};
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Payments with a nonce, orders with an RFC 3339 timestamp only, and a
/// pass-through.
fn protected() -> String {
    let orders = Route::any("orders", "/orders/{id}")
        .set("freshness", r#"{ max_skew_secs = 60, format = "rfc3339" }"#);
    config::routes([config::create_payment(), orders, config::public()])
}

async fn setup(extra: &str) -> (Upstream, TestProxy) {
    TestProxy::with_upstream(extra, &protected()).await
}

#[tokio::test]
async fn fresh_request_is_forwarded_once_with_its_body() {
    let (upstream, proxy) = setup("").await;
    let reply = Req::post("/payments?dry_run=false")
        .header("X-Client", "alice")
        .fresh(T0, &nonce(1))
        .body(r#"{"amount":1250}"#)
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["hit"], 1);
    assert!(reply.header("x-request-id").is_some());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path_and_query, "/payments?dry_run=false");
    assert_eq!(&seen[0].body[..], br#"{"amount":1250}"#);
    assert_eq!(seen[0].headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "http");
    assert_eq!(seen[0].headers["x-forwarded-host"], proxy.host().as_str());
    assert_eq!(
        seen[0].headers["x-request-id"].to_str().unwrap(),
        reply.header("x-request-id").unwrap()
    );
}

#[tokio::test]
async fn timestamp_problems_are_refused_and_never_forwarded() {
    let (upstream, proxy) = setup("").await;
    let cases: Vec<(Req, &str)> = vec![
        (
            Req::post("/payments").header("X-Request-Nonce", nonce(1)),
            "missing_timestamp",
        ),
        (
            Req::post("/payments")
                .header("X-Request-Timestamp", "")
                .header("X-Request-Nonce", nonce(1)),
            "missing_timestamp",
        ),
        (
            Req::post("/payments")
                .fresh(0, &nonce(2))
                .header("X-Request-Timestamp", "yesterday"),
            "malformed_timestamp",
        ),
        (
            Req::post("/payments").fresh(T0 - 121, &nonce(3)),
            "stale_timestamp",
        ),
        (
            Req::post("/payments").fresh(T0 + 121, &nonce(4)),
            "future_timestamp",
        ),
        (
            Req::get("/orders/7").header("X-Request-Timestamp", "1764326400"),
            "malformed_timestamp",
        ),
        (
            Req::get("/orders/7").header("X-Request-Timestamp", "2025-11-28T10:38:59Z"),
            "stale_timestamp",
        ),
    ];
    for (request, reason) in cases {
        let reply = request.send(proxy.addr).await;
        assert_eq!(reply.status, 400, "{reason}: {:?}", reply.body);
        assert_eq!(reply.reason(), reason);
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert!(reply.header("x-request-id").is_some());
        let problem = reply.json();
        assert_eq!(problem["status"], 400);
        assert!(
            problem["title"].is_string()
                && problem["detail"].is_string()
                && problem["type"].is_string()
        );
    }
    assert_eq!(upstream.count(), 0);
    // Edges of the window pass.
    let reply = Req::post("/payments")
        .fresh(T0 - 120, &nonce(10))
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200);
    let reply = Req::post("/payments")
        .fresh(T0 + 120, &nonce(11))
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200);
    let reply = Req::get("/orders/7")
        .header("X-Request-Timestamp", "2025-11-28T10:40:30Z")
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn replayed_nonce_is_409_and_identities_are_separate() {
    let (upstream, proxy) = setup("").await;
    let request = Req::post("/payments")
        .header("X-Client", "alice")
        .fresh(T0, &nonce(1))
        .body("pay");
    assert_eq!(request.send(proxy.addr).await.status, 200);
    let replay = request.send(proxy.addr).await;
    assert_eq!(replay.status, 409);
    assert_eq!(replay.reason(), "replayed_nonce");
    // Same nonce, other identity: its own scope.
    let bob = Req::post("/payments")
        .header("X-Client", "bob")
        .fresh(T0, &nonce(1));
    assert_eq!(bob.send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 2);
    // Still a replay later in the window, after the clock moved.
    proxy.clock.advance(Duration::from_secs(100));
    assert_eq!(request.send(proxy.addr).await.reason(), "replayed_nonce");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn nonce_format_is_checked() {
    let (upstream, proxy) = setup("").await;
    let missing = Req::post("/payments")
        .header("X-Request-Timestamp", T0)
        .send(proxy.addr)
        .await;
    assert_eq!(missing.status_reason(), (400, "missing_nonce".into()));
    for bad in [
        "short",
        "has space in the middle!",
        "semicolon;is;not;allowed",
    ] {
        let reply = Req::post("/payments").fresh(T0, bad).send(proxy.addr).await;
        assert_eq!(
            reply.status_reason(),
            (400, "malformed_nonce".into()),
            "{bad}"
        );
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_identical_requests_reaches_the_upstream_once() {
    storm("workers = 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_across_four_workers_reaches_the_upstream_once() {
    storm("workers = 4").await;
}

/// 200 identical requests on 200 connections at once: one forwarded.
async fn storm(server: &str) {
    let (upstream, proxy) = setup(server).await;
    let request = Req::post("/payments")
        .header("X-Client", "storm")
        .fresh(T0, &nonce(77))
        .body("once");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let request = request.clone();
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move { request.send(addr).await }));
    }
    let mut ok = 0;
    let mut replayed = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match (reply.status.as_u16(), reply.reason().as_str()) {
            (200, _) => ok += 1,
            (409, "replayed_nonce") => replayed += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((ok, replayed), (1, 199));
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn no_spelling_of_a_protected_path_bypasses_its_checks() {
    let (upstream, proxy) = setup("").await;
    let spellings = [
        "/payments",
        "/payments/",
        "//payments",
        "/./payments",
        "/a/../payments",
        "/%70ayments",
        "/%2e/payments",
        "/payments;x=1",
        "/payments?x=1",
    ];
    expect_each_post(proxy.addr, &spellings, 400, "missing_timestamp").await;
    let refused = ["/pay%2Fments", "/payments%2F", "/x%5C..%5Cpayments"];
    expect_each_post(proxy.addr, &refused, 400, "malformed_request").await;
    assert_eq!(upstream.count(), 0);
    // The normalised path is what the upstream receives.
    let reply = Req::post("//a/../%70ayments/")
        .fresh(T0, &nonce(5))
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.seen()[0].path_and_query, "/payments/");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let (upstream, proxy) = setup("").await;
    let reply = Req::get("/public/x")
        .header("Connection", "X-Client-Hop")
        .header("X-Client-Hop", "secret-hop")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Authorization", "Basic abc")
        .header("TE", "trailers")
        .header("X-Replay-Guard-Key-Id", "spoofed")
        .header("X-End-To-End", "kept")
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200);
    let seen = &upstream.seen()[0];
    for gone in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "x-replay-guard-key-id",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-end-to-end"], "kept");
    assert!(reply.header("x-upstream-hop").is_none());
    assert!(reply.header("keep-alive").is_none());
    assert_eq!(reply.header("x-upstream").as_deref(), Some("legacy"));
}

#[tokio::test]
async fn large_bodies_on_protected_routes_are_413() {
    let (upstream, proxy) = setup("max_body_bytes = 1024").await;
    let reply = Req::post("/payments")
        .fresh(T0, &nonce(1))
        .body(vec![b'a'; 2048])
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status_reason(), (413, "body_too_large".into()));
    assert_eq!(upstream.count(), 0);
    // Pass-through routes stream any size.
    let reply = Req::post("/public/upload")
        .body(vec![b'b'; 200_000])
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.seen()[0].body.len(), 200_000);
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = TestProxy::start(&format!("http://{closed}"), &protected()).await;
    let reply = Req::get("/public/x").send(proxy.addr).await;
    assert_eq!(reply.status_reason(), (502, "upstream_unavailable".into()));

    let upstream = Upstream::start().await;
    let proxy = TestProxy::start(
        &upstream.url(),
        &format!("upstream_timeout_ms = 200\n{}", protected()),
    )
    .await;
    let reply = Req::get("/public/slow")
        .header("x-test-delay-ms", 2000)
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status_reason(), (504, "upstream_timeout".into()));
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn unmatched_reject_is_default_deny() {
    let (upstream, proxy) = setup("unmatched = \"reject\"").await;
    let reply = Req::get("/admin").send(proxy.addr).await;
    assert_eq!(reply.status_reason(), (404, "route_not_allowed".into()));
    // Path matches a route but not its methods: unmatched too.
    let reply = Req::get("/payments").send(proxy.addr).await;
    assert_eq!(reply.status_reason(), (404, "route_not_allowed".into()));
    assert_eq!(upstream.count(), 0);
    let reply = Req::get("/public/ok").send(proxy.addr).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn unmatched_forward_passes_unknown_paths() {
    let (upstream, proxy) = setup("").await;
    let reply = Req::get("/anything/else?q=1").send(proxy.addr).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.seen()[0].path_and_query, "/anything/else?q=1");
}

#[tokio::test]
async fn client_ip_identity_believes_only_trusted_proxies() {
    let upstream = Upstream::start().await;
    let routes = r#"
[[routes]]
name = "ip-scoped"
path = "/ip"
identity = "client_ip"
freshness = {}
nonce = {}
"#;
    // 127.0.0.1 (the test client) is a trusted proxy: X-Forwarded-For counts.
    let trusted = TestProxy::start(
        &upstream.url(),
        &format!("trusted_proxies = [\"127.0.0.0/8\"]\n{routes}"),
    )
    .await;
    let a = Req::post("/ip")
        .header("X-Forwarded-For", "198.51.100.1")
        .fresh(T0, &nonce(1));
    let b = Req::post("/ip")
        .header("X-Forwarded-For", "198.51.100.2")
        .fresh(T0, &nonce(1));
    assert_eq!(a.send(trusted.addr).await.status, 200);
    assert_eq!(
        b.send(trusted.addr).await.status,
        200,
        "another client IP is another scope"
    );
    assert_eq!(a.send(trusted.addr).await.reason(), "replayed_nonce");
    // Without trust, a spoofed header does not change the identity.
    let untrusted = TestProxy::start(&upstream.url(), routes).await;
    assert_eq!(a.send(untrusted.addr).await.status, 200);
    assert_eq!(b.send(untrusted.addr).await.reason(), "replayed_nonce");
    let last = upstream.seen().pop().unwrap();
    assert_eq!(last.headers["x-forwarded-for"], "198.51.100.1, 127.0.0.1");
}

/// Send raw bytes, read until the server closes or a timeout.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_never_forwarded_with_both() {
    // hyper frames such a request by Transfer-Encoding alone, drops
    // Content-Length and closes the connection after answering
    // (RFC 9112 §6.1): the bytes behind the chunked body are never read as a
    // second request, and the upstream never sees both headers.
    let (upstream, proxy) = setup("").await;
    let smuggle = b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw_exchange(proxy.addr, smuggle).await;
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one answer, then the connection closes: {answer}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path_and_query, "/public/a");
    assert!(!seen[0].headers.contains_key("content-length"));
    assert!(seen[0].body.is_empty());
    // Transfer-Encoding not ending in chunked, and an invalid
    // Content-Length, are refused by the HTTP layer with a bare 400.
    let bad_te = b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd";
    let answer = raw_exchange(proxy.addr, bad_te).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let bad_length = b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nabcd";
    let answer = raw_exchange(proxy.addr, bad_length).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(upstream.count(), 1);
}
