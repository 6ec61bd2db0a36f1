//! Which route a request is, and what reaches the upstream:
//!
//! - `paths`: every spelling of a protected path (dot segments, percent
//!   encoding, case, matrix parameters) gets that route's checks or is
//!   refused as malformed, and unmatched paths are forwarded or denied as
//!   `unmatched` says;
//! - `forwarding`: what the upstream receives (method, path, body,
//!   `X-Forwarded-*`, Host, no hop-by-hop headers either way), and 502/504
//!   when it is down or slow.
//!
//! A real upstream that records what it receives, the real proxy on
//! loopback. Each case asserts the status, the `reason` and what the
//! upstream received.

mod support;

use support::client::{expect_each_post, nonce, Req};
use support::config;
use support::proxy::{TestProxy, T0};
use support::raw::{expect_raw, signed_raw};
use support::upstream::Upstream;

/// The hostile-input config ([`config::guarded`]) in front of a fresh
/// recording upstream; `extra` goes into `[server]`.
async fn setup(extra: &str) -> (Upstream, TestProxy) {
    TestProxy::with_upstream(extra, &config::guarded()).await
}

/// Payments, orders and a pass-through ([`config::payments_and_orders`])
/// in front of a fresh recording upstream; `extra` goes into `[server]`.
async fn setup_payments(extra: &str) -> (Upstream, TestProxy) {
    TestProxy::with_upstream(extra, &config::payments_and_orders()).await
}

// -------------------------------------------------------------- paths

mod paths {
    use super::*;

    /// A fresh POST to `spelling` (nonce 1) passes; the same nonce on
    /// `/payments` is then a replay: one route, one nonce scope.
    async fn expect_one_nonce_scope(proxy: &TestProxy, spelling: &str) {
        let reply = Req::post(spelling)
            .header("X-Client", "alice")
            .fresh(T0, &nonce(1))
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200, "{spelling}: {:?}", reply.body);
        let replay = Req::post("/payments")
            .header("X-Client", "alice")
            .fresh(T0, &nonce(1))
            .send(proxy.addr)
            .await;
        assert_eq!(replay.reason(), "replayed_nonce", "after {spelling}");
    }

    #[tokio::test]
    async fn no_spelling_of_a_protected_path_bypasses_its_checks() {
        let (upstream, proxy) = setup_payments("").await;
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
            .header("X-Client", "alice")
            .fresh(T0, &nonce(5))
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(upstream.seen()[0].path_and_query, "/payments/");
    }

    #[tokio::test]
    async fn a_mixed_case_path_is_not_the_route_and_default_deny_refuses_it() {
        // Paths are case-sensitive (RFC 3986 §6.2.2.1): `/PAYMENTS` is not
        // `/payments`. With `unmatched = "reject"` it never reaches the
        // upstream; an operator whose upstream folds case must use
        // `unmatched = "reject"` (or, later, `case_insensitive_paths`).
        let (upstream, proxy) = setup("unmatched = \"reject\"").await;
        expect_each_post(
            proxy.addr,
            &["/PAYMENTS", "/Payments", "/payMents/", "/%50ayments"],
            404,
            "route_not_allowed",
        )
        .await;
        assert_eq!(upstream.count(), 0);
    }

    #[tokio::test]
    async fn case_insensitive_paths_gives_mixed_case_the_routes_checks() {
        let (upstream, proxy) = setup("case_insensitive_paths = true").await;
        expect_each_post(
            proxy.addr,
            &["/PAYMENTS", "/Payments", "/payMents/", "/%50ayments"],
            400,
            "missing_timestamp",
        )
        .await;
        expect_one_nonce_scope(&proxy, "/PAYMENTS").await;
        assert_eq!(upstream.paths(), vec!["/PAYMENTS"]);
    }

    #[tokio::test]
    async fn encoded_slashes_and_backslashes_are_refused_as_malformed() {
        let (upstream, proxy) = setup("").await;
        expect_each_post(
            proxy.addr,
            &[
                "/pay%2Fments",
                "/payments%2f",
                "/x%2F..%2Fpayments",
                "/x%5C..%5Cpayments",
                "/public/%2e%2e%2fpayments",
                "/payments%00",
                "/public/%5cpayments",
                "/pay%zzments",
                "/pay%",
                // Tomcat/Spring strip `;…` and then climb: `/payments` to them.
                "/public/..;/payments",
                "/public/%2e%2e;/payments",
                "/public/.;x/../..;/payments",
            ],
            400,
            "malformed_request",
        )
        .await;
        // A literal backslash or control bytes on the wire: refused by the
        // HTTP layer (bare 400) or by the proxy (malformed_request).
        for request in [
            "POST /x\\..\\payments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "POST /public\\..\\payments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "POST /pay\tments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "POST /pay\x7fments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ] {
            expect_raw(proxy.addr, request, &[400], &format!("{request:?}")).await;
        }
        // `*` and authority-form targets are not paths.
        for request in [
            "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "CONNECT payments.internal:443 HTTP/1.1\r\nHost: payments.internal:443\r\nConnection: close\r\n\r\n",
        ] {
            expect_raw(proxy.addr, request, &[400], &format!("{request:?}")).await;
        }
        assert_eq!(upstream.count(), 0, "{:?}", upstream.paths());
    }

    #[tokio::test]
    async fn matrix_parameters_get_the_routes_checks_and_are_forwarded_as_sent() {
        let (upstream, proxy) = setup("").await;
        expect_each_post(
            proxy.addr,
            &[
                "/payments;x=1",
                "/payments;",
                "/payments;/",
                "/payments;jsessionid=abc?q=1",
                "/%70ayments;a=b",
                // A parameter-only segment is no segment to the route table.
                "/;x/payments",
                "/;/payments;y",
            ],
            400,
            "missing_timestamp",
        )
        .await;
        assert_eq!(upstream.count(), 0);
        // The nonce is spent whatever spelling carries it.
        expect_one_nonce_scope(&proxy, "/payments;x=1").await;
        assert_eq!(upstream.paths(), vec!["/payments;x=1"]);
    }

    #[tokio::test]
    async fn unmatched_reject_is_default_deny() {
        let (upstream, proxy) = setup_payments("unmatched = \"reject\"").await;
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
        let (upstream, proxy) = setup_payments("").await;
        let reply = Req::get("/anything/else?q=1").send(proxy.addr).await;
        assert_eq!(reply.status, 200);
        assert_eq!(upstream.seen()[0].path_and_query, "/anything/else?q=1");
    }
}

// --------------------------------------------------------- forwarding

mod forwarding {
    use super::*;

    #[tokio::test]
    async fn fresh_request_is_forwarded_once_with_its_body() {
        let (upstream, proxy) = setup_payments("").await;
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
    async fn hop_by_hop_headers_are_removed_both_ways() {
        let (upstream, proxy) = setup_payments("").await;
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
    async fn an_absolute_form_target_reaches_the_upstream_with_the_signed_host() {
        let (upstream, proxy) = setup("").await;
        let request = signed_raw(
            "http://evil.example/signed",
            &["payments.internal"],
            "evil.example",
            config::BILLING,
            &nonce(2),
        );
        expect_raw(proxy.addr, &request, &[200], "").await;
        let seen = upstream.seen();
        assert_eq!(seen[0].headers["host"], "evil.example");
        assert_eq!(seen[0].headers["x-forwarded-host"], "evil.example");
    }

    #[tokio::test]
    async fn upstream_down_is_502_and_slow_upstream_is_504() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let proxy =
            TestProxy::start(&format!("http://{closed}"), &config::payments_and_orders()).await;
        let reply = Req::get("/public/x").send(proxy.addr).await;
        assert_eq!(reply.status_reason(), (502, "upstream_unavailable".into()));

        let upstream = Upstream::start().await;
        let proxy = TestProxy::start(
            &upstream.url(),
            &format!(
                "upstream_timeout_ms = 200\n{}",
                config::payments_and_orders()
            ),
        )
        .await;
        let reply = Req::get("/public/slow")
            .header("x-test-delay-ms", 2000)
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status_reason(), (504, "upstream_timeout".into()));
        assert_eq!(upstream.count(), 1);
    }
}
