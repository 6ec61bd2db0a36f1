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
