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
        proxy.until_recorded(1).await;
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

mod addresses {
    use super::*;

    /// A proxy whose listener sees IPv4 peers as IPv4-mapped IPv6 (as a
    /// dual-stack `[::]` listener does), on loopback only, behind a
    /// trusted load balancer at 127.0.0.1.
    async fn setup() -> (Upstream, TestProxy) {
        let upstream = Upstream::start().await;
        let charge = Route::post("charge", "/charges")
            .identity("client_ip")
            .idempotency("{ required = true, ttl_secs = 3600, lease_secs = 60 }")
            .rate_limit("{ per_second = 1, burst = 1 }");
        let toml = format!(
            "[server]\nlisten = \"[::ffff:127.0.0.1]:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{}\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n{charge}",
            upstream.url()
        );
        (upstream, TestProxy::start_full(&toml).await)
    }

    fn charge(client: &str) -> Req {
        Req::post("/charges")
            .header("X-Forwarded-For", client)
            .header("Idempotency-Key", "op-1")
            .body("{}")
    }

    #[tokio::test]
    async fn clients_behind_a_mapped_load_balancer_stay_apart() {
        let (upstream, proxy) = setup().await;
        assert!(proxy.addr.is_ipv6(), "{}", proxy.addr);
        let alice = charge("198.51.100.1").send(proxy.addr).await;
        assert_eq!(alice.status, 200);
        alice.assert_not_replayed();
        // Another client with the same key runs its own operation, not
        // alice's stored answer, and has its own rate budget.
        let bob = charge("198.51.100.2").send(proxy.addr).await;
        assert_eq!(bob.status, 200);
        bob.assert_not_replayed();
        assert_eq!(upstream.count(), 2);
        // A hop written with a port is the same client.
        let alice_port = charge("198.51.100.1:5555").send(proxy.addr).await;
        assert_eq!(alice_port.status_reason(), (429, "rate_limited".into()));
        assert_eq!(upstream.count(), 2);
        let seen = upstream.seen();
        assert_eq!(
            seen[0].headers["x-forwarded-for"],
            "198.51.100.1, 127.0.0.1"
        );
        assert_eq!(
            seen[0].headers["forwarded"],
            "for=127.0.0.1;proto=http;host=\"".to_owned() + &proxy.host() + "\""
        );
    }
}

mod paths {
    use super::*;

    #[tokio::test]
    async fn encoded_controls_are_refused_and_trailing_spellings_get_the_checks() {
        let (upstream, proxy) =
            TestProxy::with_upstream("", &config::routes([config::create_payment()])).await;
        let controls = [
            "/payments%09",
            "/payments%0A",
            "/payments%0D",
            "/payments%1F",
            "/payments%7F",
            "/pay%00ments",
        ];
        support::client::expect_each_post(proxy.addr, &controls, 400, "malformed_request").await;
        let trailing = [
            "/payments%20",
            "/payments.",
            "/payments..",
            "/payments.%20",
            "/payments%20/",
        ];
        support::client::expect_each_post(proxy.addr, &trailing, 400, "missing_timestamp").await;
        assert_eq!(
            upstream.count(),
            0,
            "no spelling reached the upstream unchecked"
        );
        // One route, one nonce scope, and the path is forwarded as sent.
        let first = Req::post("/payments.")
            .header("X-Client", "alice")
            .fresh(T0, &nonce(1))
            .send(proxy.addr)
            .await;
        assert_eq!(first.status, 200);
        let replay = Req::post("/payments%20")
            .header("X-Client", "alice")
            .fresh(T0, &nonce(1))
            .send(proxy.addr)
            .await;
        assert_eq!(replay.status_reason(), (409, "replayed_nonce".into()));
        assert_eq!(upstream.paths(), vec!["/payments."]);
    }
}

mod forwarding {
    use super::*;

    #[tokio::test]
    async fn a_clients_forwarded_header_never_reaches_the_upstream() {
        let (upstream, proxy) =
            TestProxy::with_upstream("", &config::routes([config::public()])).await;
        let reply = Req::get("/public/a")
            .header("Forwarded", "for=10.0.0.1;host=admin.internal;proto=https")
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200);
        let seen = upstream.seen();
        let forwarded: Vec<_> = seen[0].headers.get_all("forwarded").iter().collect();
        assert_eq!(forwarded.len(), 1);
        let ours = forwarded[0].to_str().unwrap();
        assert!(ours.starts_with("for=127.0.0.1;proto=http"), "{ours}");
        assert!(
            !ours.contains("10.0.0.1") && !ours.contains("admin.internal"),
            "{ours}"
        );
    }

    #[tokio::test]
    async fn a_target_with_userinfo_is_refused() {
        let (upstream, proxy) =
            TestProxy::with_upstream("", &config::routes([config::public()])).await;
        let request = format!(
            "GET http://user:pw@{}/public/a HTTP/1.1\r\nHost: {}\r\n\r\n",
            proxy.host(),
            proxy.host()
        );
        let reply = expect_raw(proxy.addr, request, &[400], "userinfo").await;
        assert_eq!(reply.reason(), "malformed_request");
        assert_eq!(upstream.count(), 0);
    }
}

mod idempotency_key {
    use super::*;

    #[tokio::test]
    async fn a_quoted_and_a_bare_key_are_the_same_operation() {
        let charge = Route::post("charge", "/charges")
            .identity("header:X-Client")
            .idempotency("{ required = true, ttl_secs = 3600, lease_secs = 60 }");
        let (upstream, proxy) = TestProxy::with_upstream("", &config::routes([charge])).await;
        let send = |key: &'static str| {
            Req::post("/charges")
                .header("X-Client", "alice")
                .header("Idempotency-Key", key)
                .body("{}")
        };
        let first = send("\"op-7\"").send(proxy.addr).await;
        assert_eq!(first.status, 200);
        first.assert_not_replayed();
        proxy.until_recorded(1).await;
        let bare = send("op-7").send(proxy.addr).await;
        bare.assert_replayed();
        let quoted = send("\"op-7\"").send(proxy.addr).await;
        quoted.assert_replayed();
        assert_eq!(
            send("\"op-7").send(proxy.addr).await.reason(),
            "malformed_idempotency_key"
        );
        assert_eq!(upstream.count(), 1);
    }
}

mod retention {
    use super::*;

    fn config(upstream: &str, skew: u64) -> String {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n[store.memory]\nrestart_fence = false\n{}",
            Route::post("pay", "/pay").freshness(skew).nonce()
        )
    }

    #[tokio::test]
    async fn a_reload_that_widens_the_window_keeps_old_nonces_protected() {
        let upstream = Upstream::start().await;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), config(&upstream.url(), 60)).unwrap();
        let proxy = TestProxy::start_file(file.path()).await;
        let captured = Req::post("/pay").fresh(T0, &nonce(1));
        assert_eq!(captured.send(proxy.addr).await.status, 200);
        // Widen 60 s → 300 s; the captured request's nonce record lasts
        // T0 + 60 + 60 s.
        std::fs::write(file.path(), config(&upstream.url(), 300)).unwrap();
        let reload = Req::post("/reload").send(proxy.admin.unwrap()).await;
        assert_eq!(reload.status, 200, "{:?}", reload.body);
        proxy.clock.advance(std::time::Duration::from_secs(125));
        let replay = captured.send(proxy.addr).await;
        assert_eq!(replay.status_reason(), (400, "stale_timestamp".into()));
        // Fresh requests pass; so does one stored before the reload whose
        // record is still kept.
        let fresh = Req::post("/pay").fresh(T0 + 125, &nonce(2));
        assert_eq!(fresh.send(proxy.addr).await.status, 200);
        assert_eq!(upstream.count(), 2, "the captured request executed once");
    }
}

mod broken_answer {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that answers every request with a head promising 100
    /// bytes, sends 5 and hangs up; it counts what it executed.
    async fn breaking_upstream() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let executed = Arc::new(AtomicUsize::new(0));
        let count = executed.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    let mut read = 0;
                    while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = stream
                        .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\nshort")
                        .await;
                });
            }
        });
        (url, executed)
    }

    #[tokio::test]
    async fn an_answer_whose_body_breaks_is_recorded_so_a_retry_never_executes_again() {
        let (url, executed) = breaking_upstream().await;
        let charge = Route::post("charge", "/charges")
            .identity("header:X-Client")
            .idempotency("{ required = true, ttl_secs = 3600, lease_secs = 60 }");
        let proxy = TestProxy::start(&url, &config::routes([charge])).await;
        let request = Req::post("/charges")
            .header("X-Client", "alice")
            .header("Idempotency-Key", "op-1")
            .body("{}");
        let first = request.send(proxy.addr).await;
        assert_eq!(first.status_reason(), (502, "upstream_unavailable".into()));
        // After the lease, too, the retry is answered from the record.
        proxy.clock.advance(std::time::Duration::from_secs(61));
        let retry = request.send(proxy.addr).await;
        assert_eq!(
            retry.status_reason(),
            (409, "idempotency_response_not_retained".into())
        );
        assert_eq!(retry.json()["original_status"], 201);
        assert_eq!(executed.load(Ordering::SeqCst), 1, "executed once");
    }
}
