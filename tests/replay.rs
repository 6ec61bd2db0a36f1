//! The replay checks end to end:
//!
//! - `freshness`: missing, malformed, stale and future timestamps (Unix
//!   seconds and RFC 3339) are refused with a problem+json answer, and the
//!   edges of the window pass;
//! - `nonce`: a replayed nonce is 409, malformed ones 400, identities
//!   (header, client IP behind trusted proxies) are separate scopes, and a
//!   storm of identical requests reaches the upstream once.
//!
//! A real upstream that records what it receives, the real proxy on
//! loopback with its manual clock. Each case asserts the status, the
//! `reason` and what the upstream received.

mod support;

use std::time::Duration;

use support::client::{nonce, Req};
use support::config;
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;

/// Payments, orders and a pass-through ([`config::payments_and_orders`])
/// in front of a fresh recording upstream; `extra` goes into `[server]`.
async fn setup_payments(extra: &str) -> (Upstream, TestProxy) {
    TestProxy::with_upstream(extra, &config::payments_and_orders()).await
}

// ---------------------------------------------------------- freshness

mod freshness {
    use super::*;

    #[tokio::test]
    async fn timestamp_problems_are_refused_and_never_forwarded() {
        let (upstream, proxy) = setup_payments("").await;
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
            .header("X-Client", "alice")
            .fresh(T0 - 120, &nonce(10))
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200);
        let reply = Req::post("/payments")
            .header("X-Client", "alice")
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
}

// -------------------------------------------------------------- nonce

mod nonce {
    use super::*;

    #[tokio::test]
    async fn replayed_nonce_is_409_and_identities_are_separate() {
        let (upstream, proxy) = setup_payments("").await;
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
        let (upstream, proxy) = setup_payments("").await;
        let missing = Req::post("/payments")
            .header("X-Client", "alice")
            .header("X-Request-Timestamp", T0)
            .send(proxy.addr)
            .await;
        assert_eq!(missing.status_reason(), (400, "missing_nonce".into()));
        for bad in [
            "short",
            "has space in the middle!",
            "semicolon;is;not;allowed",
        ] {
            let reply = Req::post("/payments")
                .header("X-Client", "alice")
                .fresh(T0, bad)
                .send(proxy.addr)
                .await;
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
        let (upstream, proxy) = setup_payments(server).await;
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
}
