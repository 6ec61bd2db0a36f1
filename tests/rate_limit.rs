//! Rate limiting end to end (SPEC §3 step 1, §4 `rate_limited`): the real
//! proxy with its manual clock, so refills happen by moving time, never by
//! sleeping. Each case asserts the status, the `reason`, the headers and
//! how many requests reached the upstream.

mod support;

use std::time::Duration;

use support::client::{nonce, Req};
use support::config::{self, Route};
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;

const SECRET: &str = "ratetest-billing-secret-6a02c3";
const OTHER_SECRET: &str = "ratetest-other-secret-1fd9e8";

/// Two keys with their secrets in the environment, and five rate-limited
/// routes: per client (two alike, one slow), per client IP, per signing key.
fn keys_and_routes() -> String {
    let by_client = |name: &str, path: &str, rate_limit: &str| {
        Route::any(name, path)
            .identity("header:X-Client")
            .rate_limit(rate_limit)
    };
    let routes = config::routes([
        by_client("search", "/search", "{ per_second = 1, burst = 3 }"),
        by_client("export", "/export", "{ per_second = 1, burst = 3 }"),
        by_client("slow", "/slow", "{ per_minute = 2, burst = 1 }"),
        Route::any("by-ip", "/by-ip").rate_limit("{ per_second = 1, burst = 2 }"),
        Route::any("signed", "/signed")
            .freshness(300)
            .nonce()
            .signature()
            .rate_limit("{ per_minute = 60, burst = 2 }"),
    ]);
    let billing = config::key_env("billing-svc", "RG_RATETEST_BILLING");
    let other = config::key_env("other-svc", "RG_RATETEST_OTHER");
    format!("{billing}\n{other}\n{routes}")
}

async fn setup(server_extra: &str) -> (Upstream, TestProxy) {
    std::env::set_var("RG_RATETEST_BILLING", SECRET);
    std::env::set_var("RG_RATETEST_OTHER", OTHER_SECRET);
    TestProxy::with_upstream(server_extra, &keys_and_routes()).await
}

fn client(path: &str, who: &str) -> Req {
    Req::get(path).header("X-Client", who)
}

/// Send `client(path, who)` once per entry of `statuses`, in order; each
/// answer must have that status.
async fn expect_statuses(proxy: &TestProxy, path: &str, who: &str, statuses: &[u16]) {
    for (i, &status) in statuses.iter().enumerate() {
        let reply = client(path, who).send(proxy.addr).await;
        assert_eq!(reply.status, status, "{path} as {who}, request {i}");
    }
}

#[tokio::test]
async fn burst_then_429_with_retry_after_and_ratelimit_headers() {
    let (upstream, proxy) = setup("").await;
    // The burst passes; each answer says what is left and when it is full.
    for (remaining, reset) in [(2, 1), (1, 2), (0, 3)] {
        let reply = client("/search", "alice").send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(
            reply.header("ratelimit").as_deref(),
            Some(format!("\"default\";r={remaining};t={reset}").as_str())
        );
        assert_eq!(
            reply.header("ratelimit-policy").as_deref(),
            Some("\"default\";q=3;w=3")
        );
    }
    for _ in 0..5 {
        let reply = client("/search", "alice").send(proxy.addr).await;
        assert_eq!(reply.status, 429);
        assert_eq!(reply.reason(), "rate_limited");
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
        assert_eq!(
            reply.header("ratelimit-policy").as_deref(),
            Some("\"default\";q=3;w=3")
        );
        assert_eq!(
            reply.header("ratelimit").as_deref(),
            Some("\"default\";r=0;t=1")
        );
    }
    assert_eq!(upstream.count(), 3, "nothing beyond the burst is forwarded");
}

#[tokio::test]
async fn retry_after_counts_down_and_rounds_up() {
    let (upstream, proxy) = setup("").await;
    // 2 per minute, burst 1: one request, then one every 30 s.
    expect_statuses(&proxy, "/slow", "alice", &[200]).await;
    let reply = client("/slow", "alice").send(proxy.addr).await;
    assert_eq!(reply.reason(), "rate_limited");
    assert_eq!(reply.header("retry-after").as_deref(), Some("30"));
    assert_eq!(
        reply.header("ratelimit-policy").as_deref(),
        Some("\"default\";q=1;w=30")
    );
    proxy.clock.advance(Duration::from_millis(10_500));
    let reply = client("/slow", "alice").send(proxy.addr).await;
    assert_eq!(
        reply.header("retry-after").as_deref(),
        Some("20"),
        "19.5 s rounds up"
    );
    proxy.clock.advance(Duration::from_millis(19_499));
    let reply = client("/slow", "alice").send(proxy.addr).await;
    assert_eq!(
        reply.header("retry-after").as_deref(),
        Some("1"),
        "1 ms rounds up to 1 s"
    );
    proxy.clock.advance(Duration::from_millis(1));
    assert_eq!(client("/slow", "alice").send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn buckets_refill_as_the_clock_moves() {
    let (upstream, proxy) = setup("").await;
    expect_statuses(&proxy, "/search", "alice", &[200, 200, 200, 429]).await;
    proxy.clock.advance(Duration::from_millis(999));
    expect_statuses(&proxy, "/search", "alice", &[429]).await;
    proxy.clock.advance(Duration::from_millis(1));
    expect_statuses(&proxy, "/search", "alice", &[200, 429]).await;
    // A long pause refills the whole burst, never more.
    proxy.clock.advance(Duration::from_secs(60));
    expect_statuses(&proxy, "/search", "alice", &[200, 200, 200, 429]).await;
    assert_eq!(upstream.count(), 7);
}

#[tokio::test]
async fn identities_and_routes_are_independent() {
    let (upstream, proxy) = setup("").await;
    expect_statuses(&proxy, "/search", "alice", &[200, 200, 200, 429]).await;
    // Another identity on the same route.
    expect_statuses(&proxy, "/search", "bob", &[200, 200, 200, 429]).await;
    // The same identity on another route.
    expect_statuses(&proxy, "/export", "alice", &[200, 200, 200, 429]).await;
    assert_eq!(upstream.count(), 9);
}

#[tokio::test]
async fn spoofed_x_forwarded_for_from_an_untrusted_peer_does_not_change_the_key() {
    let (upstream, proxy) = setup("").await;
    for i in 0..2 {
        let reply = Req::get("/by-ip")
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200);
    }
    for i in 2..10 {
        let reply = Req::get("/by-ip")
            .header("X-Forwarded-For", format!("198.51.100.{i}, 203.0.113.{i}"))
            .send(proxy.addr)
            .await;
        assert_eq!(
            reply.reason(),
            "rate_limited",
            "spoofed hop {i} got a new bucket"
        );
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_names_the_client() {
    let (upstream, proxy) = setup("trusted_proxies = [\"127.0.0.0/8\"]").await;
    let from = |ip: &str| Req::get("/by-ip").header("X-Forwarded-For", ip);
    for _ in 0..2 {
        assert_eq!(from("198.51.100.1").send(proxy.addr).await.status, 200);
    }
    assert_eq!(from("198.51.100.1").send(proxy.addr).await.status, 429);
    assert_eq!(from("198.51.100.2").send(proxy.addr).await.status, 200);
    // A value the client prepended is not believed: the rightmost
    // untrusted hop is the client.
    let prepended = from("6.6.6.6, 198.51.100.1").send(proxy.addr).await;
    assert_eq!(prepended.status, 429);
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn forged_signatures_never_spend_the_real_keys_budget() {
    let (upstream, proxy) = setup("").await;
    let signed = |key: &str, secret: &str, n: usize| {
        Req::post("/signed")
            .body("{}")
            .signed(&proxy.host(), key, secret, T0, &nonce(n))
    };
    for n in 0..20 {
        let reply = signed("billing-svc", "attacker-guess", n)
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 401, "forged request {n}: {:?}", reply.body);
        assert_eq!(reply.reason(), "bad_signature");
    }
    // Unsigned requests naming the key do not count either.
    let unsigned = Req::post("/signed")
        .fresh(T0, &nonce(100))
        .header("X-Key-Id", "billing-svc");
    assert_eq!(
        unsigned.send(proxy.addr).await.reason(),
        "missing_signature"
    );
    assert_eq!(upstream.count(), 0);

    // The real client still has its whole burst.
    for n in 200..202 {
        let reply = signed("billing-svc", SECRET, n).send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    let reply = signed("billing-svc", SECRET, 202).send(proxy.addr).await;
    assert_eq!(reply.reason(), "rate_limited");
    assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    // Another key has its own budget.
    assert_eq!(
        signed("other-svc", OTHER_SECRET, 300)
            .send(proxy.addr)
            .await
            .status,
        200
    );
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn a_throttled_signed_request_does_not_burn_its_nonce() {
    let (upstream, proxy) = setup("").await;
    let signed = |n: usize| {
        Req::post("/signed")
            .body("{}")
            .signed(&proxy.host(), "billing-svc", SECRET, T0, &nonce(n))
    };
    assert_eq!(signed(1).send(proxy.addr).await.status, 200);
    assert_eq!(signed(2).send(proxy.addr).await.status, 200);
    assert_eq!(signed(3).send(proxy.addr).await.reason(), "rate_limited");
    proxy.clock.advance(Duration::from_secs(1));
    assert_eq!(
        signed(3).send(proxy.addr).await.status,
        200,
        "nonce 3 was not claimed by the 429"
    );
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn the_proxys_ratelimit_fields_are_added_to_the_upstreams_never_written_over() {
    let (upstream, proxy) = setup("").await;
    let reply = client("/search", "alice")
        .header("x-test-ratelimit", 1)
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let all = |name: &str| -> Vec<String> {
        reply
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        all("ratelimit-policy"),
        ["\"upstream\";q=1000;w=3600", "\"default\";q=3;w=3"],
        "the upstream's policy first, the proxy's appended"
    );
    assert_eq!(
        all("ratelimit"),
        ["\"upstream\";r=999;t=3600", "\"default\";r=2;t=1"]
    );
    assert_eq!(upstream.count(), 1);
}
