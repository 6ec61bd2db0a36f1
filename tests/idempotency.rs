//! Idempotency keys end to end (SPEC §3, issue 4): a real upstream, the
//! real proxy on loopback, and every case run against both stores by
//! `store_matrix!` — the memory store (module `memory`) and DynamoDB
//! (moto, one request at a time; module `dynamodb`; and dynalite, the
//! stricter implementation, module `dynalite`). Each case
//! asserts the status, the `reason` and what the upstream received.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::binary::ProxyProcess;
use support::client::{nonce, Reply, Req};
use support::matrix::Backend;
use support::moto::MotoServer;
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTES: &str = r#"
[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
identity = "header:X-Client"
idempotency = { required = true, ttl_secs = 3600, lease_secs = 60, max_response_bytes = 1024, release_statuses = [503] }

[[routes]]
name = "transfer"
methods = ["POST"]
path = "/transfers"
identity = "header:X-Client"
freshness = { max_skew_secs = 120 }
nonce = { required = true }
idempotency = { required = false, ttl_secs = 3600, lease_secs = 60 }

[[routes]]
name = "charge"
methods = ["POST"]
path = "/charges"
identity = "header:X-Client"
idempotency = { required = true, ttl_secs = 86400, lease_secs = 60 }
"#;

/// A proxy on `backend` in front of `upstream_url`; `server_extra` goes
/// into `[server]`.
async fn proxy_for(backend: Backend, upstream_url: &str, server_extra: &str) -> TestProxy {
    let store = backend.store_toml().await;
    TestProxy::start(upstream_url, &format!("{server_extra}\n{store}\n{ROUTES}")).await
}

async fn setup(backend: Backend) -> (Upstream, TestProxy) {
    let upstream = Upstream::start().await;
    let proxy = proxy_for(backend, &upstream.url(), "").await;
    (upstream, proxy)
}

/// A payment POST from `client` with `key`.
fn pay(client: &str, key: &str, body: &str) -> Req {
    Req::post("/payments?currency=EUR")
        .header("X-Client", client)
        .header("Idempotency-Key", key)
        .body(body.to_owned())
}

/// Response headers, minus the ones that legitimately differ between the
/// first answer and a replay.
fn comparable_headers(reply: &Reply) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, value) in &reply.headers {
        if matches!(
            name.as_str(),
            "x-request-id" | "idempotent-replayed" | "set-cookie"
        ) {
            continue;
        }
        out.entry(name.as_str().to_owned())
            .or_default()
            .push(value.as_bytes().to_vec());
    }
    out
}

/// Wait (bounded) until the upstream has received `n` requests.
async fn until_upstream_saw(upstream: &Upstream, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.count() < n {
        assert!(Instant::now() < deadline, "upstream never saw {n} requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// Cases, each run on both stores.
// ---------------------------------------------------------------------------

async fn replay_returns_the_stored_answer(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let request = pay("alice", "order-1", r#"{"amount":1250}"#).header("x-test-status", 201);
    let first = request.send(proxy.addr).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.json()["hit"], 1);
    first.assert_not_replayed();
    assert_eq!(first.header("set-cookie").as_deref(), Some("session=abc"));

    proxy.until_recorded(1).await;
    for _ in 0..2 {
        let replay = request.send(proxy.addr).await;
        assert_eq!(replay.status, 201);
        assert_eq!(replay.body, first.body, "byte for byte");
        replay.assert_replayed();
        assert_eq!(comparable_headers(&replay), comparable_headers(&first));
        assert_eq!(replay.header("x-upstream").as_deref(), Some("legacy"));
        // Set-Cookie is deliberately not stored: a session cookie must not
        // be handed to whoever retries with the key.
        assert_eq!(replay.header("set-cookie"), None);
        // Hop-by-hop headers stay stripped on replays too.
        assert_eq!(replay.header("x-upstream-hop"), None);
        assert_eq!(replay.header("keep-alive"), None);
        assert!(replay.header("x-request-id").is_some());
        assert_ne!(replay.header("x-request-id"), first.header("x-request-id"));
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "the upstream executed exactly once");
    assert_eq!(seen[0].path_and_query, "/payments?currency=EUR");
    assert_eq!(&seen[0].body[..], br#"{"amount":1250}"#);
    assert_eq!(seen[0].headers["idempotency-key"], "order-1");
}

/// A client that retries the moment its answer arrives reaches the same
/// proxy before the completion record has landed (it is written after the
/// answer): the proxy answers from what it is still recording, never 409
/// and never a second run; a different request under the key is still 422.
async fn an_immediate_retry_is_the_stored_answer(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    for i in 0..20 {
        let key = format!("at-once-{i}");
        let first = pay("alice", &key, &format!("body {i}"))
            .send(proxy.addr)
            .await;
        assert_eq!(first.status, 200, "{:?}", first.body);
        first.assert_not_replayed();
        let retry = pay("alice", &key, &format!("body {i}"))
            .send(proxy.addr)
            .await;
        assert_eq!(retry.status, 200, "retry {i}: {:?}", retry.body);
        retry.assert_replayed();
        assert_eq!(retry.body, first.body);
        let other = pay("alice", &key, "another body").send(proxy.addr).await;
        assert_eq!(
            other.status_reason(),
            (422, "idempotency_key_reused".into())
        );
        let bob = pay("bob", &key, &format!("body {i}"))
            .send(proxy.addr)
            .await;
        bob.assert_not_replayed();
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 40, "alice's 20 and bob's 20, each once");
    for i in 0..20 {
        let body = format!("body {i}");
        let runs = seen
            .iter()
            .filter(|r| r.body[..] == *body.as_bytes())
            .count();
        assert_eq!(runs, 2, "{body}: once for alice, once for bob");
    }
}

async fn same_key_different_request_is_422(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    assert_eq!(
        pay("alice", "k-422", "a").send(proxy.addr).await.status,
        200
    );
    let cases = [
        pay("alice", "k-422", "b"),
        Req::post("/payments?currency=USD")
            .header("X-Client", "alice")
            .header("Idempotency-Key", "k-422")
            .body("a"),
    ];
    for request in cases {
        let reply = request.send(proxy.addr).await;
        assert_eq!(
            reply.status_reason(),
            (422, "idempotency_key_reused".into())
        );
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/problem+json")
        );
    }
    assert_eq!(upstream.count(), 1);
}

async fn duplicate_while_in_flight_is_409_with_retry_after(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let slow = pay("alice", "k-slow", "a").header("x-test-delay-ms", 800);
    let addr = proxy.addr;
    let first = tokio::spawn({
        let slow = slow.clone();
        async move { slow.send(addr).await }
    });
    until_upstream_saw(&upstream, 1).await;
    // The whole lease (60 s) remains, but the hint is a short poll
    // interval: the first attempt usually answers long before its lease ends.
    let dup = slow.send(proxy.addr).await;
    assert_eq!(dup.status_reason(), (409, "idempotency_in_flight".into()));
    assert_eq!(dup.header("retry-after").as_deref(), Some("2"));
    // With less than the hint left, the lease's remaining seconds bound it.
    proxy.clock.advance(Duration::from_millis(59_500));
    let dup = slow.send(proxy.addr).await;
    assert_eq!(dup.header("retry-after").as_deref(), Some("1"));
    // Different body while in flight: 422 wins over 409.
    let other = pay("alice", "k-slow", "b").send(proxy.addr).await;
    assert_eq!(
        other.status_reason(),
        (422, "idempotency_key_reused".into())
    );

    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    proxy.until_recorded(1).await;
    let replay = slow.send(proxy.addr).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, first.body);
    replay.assert_replayed();
    assert_eq!(upstream.count(), 1);
}

async fn fifty_concurrent_identical_requests_execute_once(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let request = pay("storm", "k-storm", "once").header("x-test-delay-ms", 100);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let request = request.clone();
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move { request.send(addr).await }));
    }
    let (mut original, mut replayed, mut in_flight) = (0, 0, 0);
    let mut bodies = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        match (reply.status.as_u16(), reply.header("idempotent-replayed")) {
            (200, None) => original += 1,
            (200, Some(marker)) => {
                assert_eq!(marker, "true");
                replayed += 1;
            }
            (409, _) => {
                assert_eq!(reply.reason(), "idempotency_in_flight");
                assert!(reply.header("retry-after").is_some());
                in_flight += 1;
                continue;
            }
            other => panic!("unexpected answer {other:?}: {:?}", reply.body),
        }
        bodies.push(reply.body);
    }
    assert_eq!(original, 1, "one caller got the original answer");
    assert_eq!(original + replayed + in_flight, 50);
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "every 200 is the same answer"
    );
    assert_eq!(upstream.count(), 1);
}

async fn missing_and_malformed_keys_are_400(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let missing = Req::post("/payments")
        .header("X-Client", "alice")
        .send(proxy.addr)
        .await;
    assert_eq!(
        missing.status_reason(),
        (400, "missing_idempotency_key".into())
    );
    let empty = pay("alice", "", "x").send(proxy.addr).await;
    assert_eq!(
        empty.status_reason(),
        (400, "missing_idempotency_key".into())
    );
    let too_long = "k".repeat(256);
    for bad in ["has space", too_long.as_str()] {
        let reply = pay("alice", bad, "x").send(proxy.addr).await;
        assert_eq!(
            reply.status_reason(),
            (400, "malformed_idempotency_key".into()),
            "{bad}"
        );
    }
    let twice = pay("alice", "a", "x")
        .header("Idempotency-Key", "b")
        .send(proxy.addr)
        .await;
    assert_eq!(
        twice.status_reason(),
        (400, "malformed_idempotency_key".into())
    );
    assert_eq!(upstream.count(), 0);
    // The longest legal key, with the draft's quoted form, is accepted.
    let longest = format!("\"{}\"", "k".repeat(253));
    assert_eq!(
        pay("alice", &longest, "x").send(proxy.addr).await.status,
        200
    );
    assert_eq!(upstream.count(), 1);
}

async fn keys_are_scoped_per_identity(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let alice = pay("alice", "shared-key", "same body");
    let bob = pay("bob", "shared-key", "same body");
    let a = alice.send(proxy.addr).await;
    let b = bob.send(proxy.addr).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    assert_eq!(
        b.header("idempotent-replayed"),
        None,
        "bob's key is his own"
    );
    assert_eq!(upstream.count(), 2);
    proxy.until_recorded(2).await;
    assert_eq!(alice.send(proxy.addr).await.body, a.body);
    assert_eq!(bob.send(proxy.addr).await.body, b.body);
    // Bob reusing his key with another body is his conflict, not alice's.
    let conflict = pay("bob", "shared-key", "other").send(proxy.addr).await;
    assert_eq!(
        conflict.status_reason(),
        (422, "idempotency_key_reused".into())
    );
    assert_eq!(upstream.count(), 2);
}

async fn connect_error_releases_the_claim(backend: Backend) {
    let closed: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = proxy_for(backend, &format!("http://{closed}"), "").await;
    let request = pay("alice", "k-connect", "a");
    let down = request.send(proxy.addr).await;
    assert_eq!(down.status_reason(), (502, "upstream_unavailable".into()));
    // The upstream comes back on the same address: the retry executes.
    let upstream = Upstream::start_at(closed).await;
    let retry = request.send(proxy.addr).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    retry.assert_not_replayed();
    assert_eq!(upstream.count(), 1);
    proxy.until_recorded(1).await;
    let replay = request.send(proxy.addr).await;
    replay.assert_replayed();
    assert_eq!(upstream.count(), 1);
}

async fn timeout_keeps_the_lease_until_it_expires(backend: Backend) {
    let upstream = Upstream::start().await;
    let proxy = proxy_for(backend, &upstream.url(), "upstream_timeout_ms = 300").await;
    let slow = pay("alice", "k-timeout", "a").header("x-test-delay-ms", 1500);
    let reply = slow.send(proxy.addr).await;
    assert_eq!(reply.status_reason(), (504, "upstream_timeout".into()));
    assert_eq!(
        upstream.count(),
        1,
        "it reached the upstream: it may have executed"
    );
    // A retry (without the delay) is refused while the lease lives.
    let retry = pay("alice", "k-timeout", "a");
    let refused = retry.send(proxy.addr).await;
    assert_eq!(
        refused.status_reason(),
        (409, "idempotency_in_flight".into())
    );
    assert_eq!(refused.header("retry-after").as_deref(), Some("2"));
    proxy.clock.advance(Duration::from_secs(60));
    let refused = retry.send(proxy.addr).await;
    assert_eq!(
        refused.status_reason(),
        (409, "idempotency_in_flight".into())
    );
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert_eq!(upstream.count(), 1);
    // After the lease: the retry claims the key and executes.
    proxy.clock.advance(Duration::from_secs(1));
    let retried = retry.send(proxy.addr).await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    retried.assert_not_replayed();
    assert_eq!(upstream.count(), 2);
    proxy.until_recorded(1).await;
    retry.send(proxy.addr).await.assert_replayed();
    assert_eq!(upstream.count(), 2);
}

async fn release_statuses_are_released_and_other_5xx_stored(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    // 503 is listed: released, so the retry runs again.
    let unavailable = pay("alice", "k-503", "a").header("x-test-status", 503);
    let reply = unavailable.send(proxy.addr).await;
    assert_eq!(reply.status, 503);
    reply.assert_not_replayed();
    let retry = pay("alice", "k-503", "a").send(proxy.addr).await;
    assert_eq!(retry.status, 200);
    retry.assert_not_replayed();
    assert_eq!(upstream.count(), 2);
    proxy.until_recorded(1).await;
    pay("alice", "k-503", "a")
        .send(proxy.addr)
        .await
        .assert_replayed();
    assert_eq!(upstream.count(), 2);

    // 500 is not listed: stored, as Stripe does.
    let failing = pay("alice", "k-500", "a").header("x-test-status", 500);
    let first = failing.send(proxy.addr).await;
    assert_eq!(first.status, 500);
    proxy.until_recorded(2).await;
    let again = pay("alice", "k-500", "a").send(proxy.addr).await;
    assert_eq!(again.status, 500);
    assert_eq!(again.body, first.body);
    again.assert_replayed();
    // So is a 4xx.
    let bad = pay("alice", "k-400", "a").header("x-test-status", 400);
    assert_eq!(bad.send(proxy.addr).await.status, 400);
    proxy.until_recorded(3).await;
    let bad_again = bad.send(proxy.addr).await;
    assert_eq!(bad_again.status, 400);
    bad_again.assert_replayed();
    assert_eq!(upstream.count(), 4);
}

async fn oversize_response_is_delivered_once_then_not_retained(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let big = pay("alice", "k-big", "a")
        .header("x-test-body-size", 5000)
        .header("x-test-status", 201);
    let first = big.send(proxy.addr).await;
    assert_eq!(first.status, 201);
    assert_eq!(
        first.body.len(),
        5000,
        "the first caller gets the whole body"
    );
    assert!(first.body.iter().all(|&b| b == b'x'));
    proxy.until_recorded(1).await;
    let replay = big.send(proxy.addr).await;
    assert_eq!(
        replay.status_reason(),
        (409, "idempotency_response_not_retained".into())
    );
    assert_eq!(replay.json()["original_status"], 201);
    assert_eq!(replay.header("retry-after"), None);
    assert_eq!(upstream.count(), 1, "never executed again");
    // Exactly at the limit is retained.
    let edge = pay("alice", "k-edge", "a").header("x-test-body-size", 1024);
    assert_eq!(edge.send(proxy.addr).await.body.len(), 1024);
    proxy.until_recorded(2).await;
    let replay = edge.send(proxy.addr).await;
    assert_eq!((replay.status.as_u16(), replay.body.len()), (200, 1024));
    replay.assert_replayed();
    assert_eq!(upstream.count(), 2);
}

async fn nonce_is_per_transmission_key_per_operation(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let attempt = |n: usize| {
        Req::post("/transfers")
            .header("X-Client", "alice")
            .header("Idempotency-Key", "transfer-1")
            .fresh(T0, &nonce(n))
            .body("move 10")
    };
    let first = attempt(1).send(proxy.addr).await;
    assert_eq!(first.status, 200);
    proxy.until_recorded(1).await;
    // A byte-for-byte resend is a replayed transmission.
    let resend = attempt(1).send(proxy.addr).await;
    assert_eq!(resend.status_reason(), (409, "replayed_nonce".into()));
    // A retry with a fresh timestamp and nonce and the same key: the
    // stored answer.
    proxy.clock.advance(Duration::from_secs(5));
    let retry = Req::post("/transfers")
        .header("X-Client", "alice")
        .header("Idempotency-Key", "transfer-1")
        .fresh(T0 + 5, &nonce(2))
        .body("move 10")
        .send(proxy.addr)
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body, first.body);
    retry.assert_replayed();
    // The key is optional on this route: without it, a fresh nonce runs.
    let keyless = Req::post("/transfers")
        .header("X-Client", "alice")
        .fresh(T0 + 5, &nonce(3))
        .body("move 10")
        .send(proxy.addr)
        .await;
    assert_eq!(keyless.status, 200);
    assert_eq!(upstream.count(), 2);
}

/// A transfer from alice with nonce `n` and `key` (route with both checks).
fn transfer(n: usize, key: &str) -> Req {
    Req::post("/transfers")
        .header("X-Client", "alice")
        .header("Idempotency-Key", key)
        .fresh(T0, &nonce(n))
        .body("move 10")
}

async fn a_replayed_nonce_never_holds_a_fresh_key(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    assert_eq!(transfer(1, "t-a").send(proxy.addr).await.status, 200);
    // A captured transmission replayed under another key: both claims go
    // out in one round trip, the nonce refuses it, and the key its claim
    // took is given back before the answer.
    let replay = transfer(1, "t-b").send(proxy.addr).await;
    assert_eq!(replay.status_reason(), (409, "replayed_nonce".into()));
    assert_eq!(upstream.count(), 1, "a replayed nonce never forwards");
    // So the key is free for the request that really carries it.
    let owner = transfer(2, "t-b").send(proxy.addr).await;
    assert_eq!(owner.status, 200, "{:?}", owner.body);
    owner.assert_not_replayed();
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["idempotency-key"], "t-b");
    assert_eq!(&seen[1].body[..], b"move 10");
}

async fn a_malformed_key_does_not_burn_the_nonce(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    // Both checks are validated before either claim is written.
    let malformed = transfer(1, "has space").send(proxy.addr).await;
    assert_eq!(
        malformed.status_reason(),
        (400, "malformed_idempotency_key".into())
    );
    assert_eq!(upstream.count(), 0);
    assert_eq!(transfer(1, "t-ok").send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 1);
}

async fn client_giving_up_does_not_abandon_the_first_attempt(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let slow = pay("alice", "k-gave-up", "a").header("x-test-delay-ms", 500);
    // The client times out and closes its connection while the upstream
    // is still working on the request.
    let gave_up = tokio::time::timeout(Duration::from_millis(150), slow.send(proxy.addr)).await;
    assert!(gave_up.is_err(), "the client was meant to give up first");
    until_upstream_saw(&upstream, 1).await;
    // Its retry must get the first attempt's answer once the upstream has
    // answered — never a second execution after the lease.
    let retry = pay("alice", "k-gave-up", "a");
    let deadline = Instant::now() + Duration::from_secs(5);
    let reply = loop {
        let reply = retry.send(proxy.addr).await;
        if reply.status != 409 || Instant::now() > deadline {
            break reply;
        }
        assert_eq!(reply.reason(), "idempotency_in_flight");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.assert_replayed();
    assert_eq!(upstream.count(), 1);
}

async fn a_stored_idempotent_response_is_never_served_to_another_identity(backend: Backend) {
    let (upstream, proxy) = setup(backend).await;
    let charge = |client: &str| {
        Req::post("/charges")
            .header("X-Client", client)
            .header("Idempotency-Key", "order-42")
            .body(r#"{"amount":1}"#)
    };
    let alice = charge("alice").send(proxy.addr).await;
    let bob = charge("bob").send(proxy.addr).await;
    assert_eq!((alice.status.as_u16(), bob.status.as_u16()), (200, 200));
    assert_eq!(alice.json()["hit"], 1);
    assert_eq!(bob.json()["hit"], 2, "bob executed, not alice's replay");
    assert!(bob.header("idempotent-replayed").is_none());
    assert_eq!(upstream.count(), 2);
    proxy.until_recorded(2).await;
    // Retries get each their own stored answer.
    let alice_again = charge("alice").send(proxy.addr).await;
    let bob_again = charge("bob").send(proxy.addr).await;
    assert_eq!(alice_again.json()["hit"], 1);
    assert_eq!(bob_again.json()["hit"], 2);
    alice_again.assert_replayed();
    bob_again.assert_replayed();
    // An identity that tries to reach into another's scope by spelling
    // (separators used in store keys) gets its own scope too.
    let sneaky = charge("alice#order-42").send(proxy.addr).await;
    assert_eq!(sneaky.json()["hit"], 3);
    assert_eq!(upstream.count(), 3);
    // No stored answer carries a cookie to whoever replays.
    assert!(alice_again.header("set-cookie").is_none());
}

/// An upstream that sends its response head after `head_delay`, then a
/// part of a longer body, then stalls.
async fn stalling_upstream(head_delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(head_delay).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                    .await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            });
        }
    });
    (addr, hits)
}

async fn stalled_response_body_is_bounded_by_the_upstream_timeout(backend: Backend) {
    // The head arrives just inside the timeout, then the body stalls: the
    // whole exchange must still end within one upstream timeout, or the
    // first attempt could outlive its lease and run twice.
    let (addr, hits) = stalling_upstream(Duration::from_millis(700)).await;
    let proxy = proxy_for(
        backend,
        &format!("http://{addr}"),
        "upstream_timeout_ms = 1000",
    )
    .await;
    let started = Instant::now();
    let reply = pay("alice", "k-stall", "a").send(proxy.addr).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status_reason(), (504, "upstream_timeout".into()));
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    proxy.until_recorded(1).await;
    // It reached the upstream and its head arrived: it executed. The key is
    // recorded completed without the lost answer (#17), so no retry —
    // before or after the lease — executes it again.
    let retry = pay("alice", "k-stall", "a").send(proxy.addr).await;
    assert_eq!(
        retry.status_reason(),
        (409, "idempotency_response_not_retained".into())
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

store_matrix! {
    targets {
        memory => Backend::Memory,
        dynamodb => Backend::Dynamo,
        dynalite => Backend::Dynalite,
    }
    cases {
        replay_returns_the_stored_answer,
        an_immediate_retry_is_the_stored_answer,
        same_key_different_request_is_422,
        duplicate_while_in_flight_is_409_with_retry_after,
        fifty_concurrent_identical_requests_execute_once,
        missing_and_malformed_keys_are_400,
        keys_are_scoped_per_identity,
        connect_error_releases_the_claim,
        timeout_keeps_the_lease_until_it_expires,
        release_statuses_are_released_and_other_5xx_stored,
        oversize_response_is_delivered_once_then_not_retained,
        nonce_is_per_transmission_key_per_operation,
        a_replayed_nonce_never_holds_a_fresh_key,
        a_malformed_key_does_not_burn_the_nonce,
        client_giving_up_does_not_abandon_the_first_attempt,
        stalled_response_body_is_bounded_by_the_upstream_timeout,
        a_stored_idempotent_response_is_never_served_to_another_identity,
    }
}

// ---------------------------------------------------------------------------
// A killed proxy process: its lease expires, then a retry executes.
// ---------------------------------------------------------------------------

/// A real proxy process's config on a fresh moto table (one route,
/// `create-payment`, idempotency with `lease_secs`).
async fn dynamo_process_toml(upstream: &Upstream, lease_secs: u64) -> String {
    let moto = MotoServer::shared();
    let settings = moto.fresh_table_settings().await;
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"
upstream_timeout_ms = 1500

[store]
kind = "dynamodb"
# One machine, one clock: no margin, so the lease can be short.
clock_margin_secs = 0
[store.dynamodb]
table = "{table}"
region = "us-east-1"
endpoint_url = "{endpoint}"
timeout_ms = 5000

[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
identity = "header:X-Client"
idempotency = {{ ttl_secs = 3600, lease_secs = {lease_secs} }}
"#,
        upstream = upstream.url(),
        table = settings.table,
        endpoint = moto.endpoint(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_a_claimed_request_whose_client_hung_up() {
    let upstream = Upstream::start().await;
    let toml = dynamo_process_toml(&upstream, 60).await;
    let mut first = ProxyProcess::start(&toml);
    // The client gives up while the upstream works; then the proxy is told
    // to stop. It must still record the upstream's answer before exiting.
    let slow = pay("alice", "k-sigterm", "a").header("x-test-delay-ms", 1_000);
    let gave_up = tokio::time::timeout(Duration::from_millis(200), slow.send(first.addr)).await;
    assert!(gave_up.is_err(), "the client was meant to give up first");
    until_upstream_saw(&upstream, 1).await;
    first.signal("TERM");
    let status = first.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}: {:?}", first.lines());

    // Without waiting, the key would stay leased for 60 s (409) and then
    // execute a second time; with it, the retry gets the recorded answer.
    let second = ProxyProcess::start(&toml);
    let retry = pay("alice", "k-sigterm", "a").send(second.addr).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    retry.assert_replayed();
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_of_a_killed_proxy_expires_then_a_retry_executes() {
    const LEASE_SECS: u64 = 2;
    let upstream = Upstream::start().await;
    let toml = dynamo_process_toml(&upstream, LEASE_SECS).await;
    let mut first = ProxyProcess::start(&toml);
    let slow = pay("alice", "k-killed", "a").header("x-test-delay-ms", 10_000);
    let addr = first.addr;
    let in_flight = tokio::spawn(async move {
        // The connection dies with the process; the client sees an error.
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let mut builder = http::Request::post(format!("http://{addr}{}", slow.path));
        for (name, value) in &slow.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(http_body_util::Full::new(slow.body.clone()))
            .unwrap();
        client.request(request).await.map(|r| r.status())
    });
    until_upstream_saw(&upstream, 1).await;
    let claimed_at = Instant::now();
    first.kill();
    let died = in_flight.await.unwrap();
    assert!(
        died.is_err(),
        "the killed proxy cannot have answered: {died:?}"
    );

    let second = ProxyProcess::start(&toml);
    let retry = pay("alice", "k-killed", "a");
    let refused = retry.send(second.addr).await;
    if claimed_at.elapsed() < Duration::from_millis(LEASE_SECS * 1000 - 300) {
        assert_eq!(
            refused.status_reason(),
            (409, "idempotency_in_flight".into())
        );
        let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=LEASE_SECS).contains(&wait), "Retry-After {wait}");
        assert_eq!(upstream.count(), 1);
    }
    // Retry (bounded) until the dead owner's lease has expired.
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECS + 8);
    let executed = loop {
        let reply = retry.send(second.addr).await;
        if reply.status != 409 {
            break reply;
        }
        assert_eq!(reply.reason(), "idempotency_in_flight");
        assert!(
            Instant::now() < deadline,
            "the dead owner's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(executed.status, 200, "{:?}", executed.body);
    executed.assert_not_replayed();
    assert!(claimed_at.elapsed() >= Duration::from_secs(LEASE_SECS) - Duration::from_millis(1000));
    assert_eq!(upstream.count(), 2, "exactly one re-execution");
    support::metrics::until_recorded(second.admin.expect("admin listener"), 1).await;
    let replay = retry.send(second.addr).await;
    replay.assert_replayed();
    assert_eq!(replay.body, executed.body);
    assert_eq!(upstream.count(), 2);
}
