//! Cluster rate limits (`scope = "cluster"`, issue 25, SPEC §2.1 and §6):
//! two real proxies sharing one DynamoDB table, on moto and on dynalite.
//! Each proxy talks to the store through a loopback forwarder that records
//! every DynamoDB operation on the wire (and can answer 503 instead: a
//! store outage that keeps the table). Refills happen by moving both
//! proxies' manual clocks, never by sleeping. Every case asserts the
//! statuses, the `reason`, the headers and what the upstream received.
//!
//! The route under test: `per_second = 5, burst = 5`. Its largest batch is
//! `max(1, burst / 10) = 1`, so the documented overshoot bound
//! (N × the cells a replica may hold) is 0 and the cluster admits exactly
//! the burst. `/bulk` (burst 100: batches up to 10, refilled ahead) and
//! `/fast` (1000/s) show the batches.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use support::client::{Reply, Req};
use support::config::{self, dynamo_store, Route};
use support::dynalite::DynaliteServer;
use support::moto::MotoServer;
use support::proxy::TestProxy;
use support::store_link::{take, StoreLink};
use support::upstream::Upstream;

/// The DynamoDB-compatible server a case runs on.
#[derive(Debug, Clone, Copy)]
enum Server {
    Moto,
    Dynalite,
}

impl Server {
    fn endpoint(self) -> String {
        match self {
            Server::Moto => MotoServer::shared().endpoint(),
            Server::Dynalite => DynaliteServer::shared().endpoint(),
        }
    }

    async fn fresh_table(self) -> String {
        match self {
            Server::Moto => MotoServer::shared().fresh_table_settings().await.table,
            Server::Dynalite => DynaliteServer::shared().fresh_table_settings().await.table,
        }
    }

    /// Whether a failed conditional write returns the old item (moto
    /// does; dynalite does not, so each conflict costs one `GetItem`).
    fn returns_old_items(self) -> bool {
        matches!(self, Server::Moto)
    }
}

/// Runs each case on moto and on dynalite.
macro_rules! on_both_servers {
    ($($case:ident),* $(,)?) => {
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Server::Moto).await
                }
            )*
        }
        mod dynalite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Server::Dynalite).await
                }
            )*
        }
    };
}

on_both_servers!(
    a_burst_of_40_over_two_replicas_admits_the_burst_once,
    after_the_refill_the_budget_is_shared_again,
    a_dead_replica_leaves_the_whole_budget_to_the_survivor,
    batches_cost_fewer_writes_than_requests_and_never_exceed_the_budget,
    under_the_limit_a_write_serves_many_requests,
    store_down_fails_closed_and_nothing_is_forwarded,
    store_down_falls_back_to_a_per_instance_share,
);

/// The most cells one replica may hold unspent on `/bulk` (burst 100):
/// max_batch = 10, refilled ahead, so 10 + 10 / 4 (docs/rate-limiting.md).
const MAX_HELD_BULK: usize = 12;

/// Two replicas on one table, each behind its own recording forwarder.
struct Cluster {
    upstream: Upstream,
    a: TestProxy,
    b: TestProxy,
    fa: StoreLink,
    fb: StoreLink,
    table: String,
}

/// The routes: `/search` 5/s burst 5, `/bulk` 100/s burst 100, both
/// cluster-wide and keyed by `X-Client`; `extra` is appended to both rules.
fn routes(extra: &str) -> String {
    config::routes([
        Route::any("search", "/search")
            .identity("header:X-Client")
            .rate_limit(&format!(
                "{{ per_second = 5, burst = 5, scope = \"cluster\"{extra} }}"
            )),
        Route::any("bulk", "/bulk")
            .identity("header:X-Client")
            .rate_limit(&format!(
                "{{ per_second = 100, burst = 100, scope = \"cluster\"{extra} }}"
            )),
        Route::any("fast", "/fast")
            .identity("header:X-Client")
            .rate_limit(&format!(
                "{{ per_second = 1000, scope = \"cluster\"{extra} }}"
            )),
    ])
}

async fn cluster(server: Server, on_error: &str, extra: &str) -> Cluster {
    let table = server.fresh_table().await;
    let target: SocketAddr = server
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let upstream = Upstream::start().await;
    let fa = counting_forwarder(target).await;
    let fb = counting_forwarder(target).await;
    let start = |forwarder: SocketAddr| {
        let store = dynamo_store(&format!("http://{forwarder}"), &table, 5000, on_error);
        let body = format!("{store}\n{}", routes(extra));
        let upstream = upstream.url();
        async move { TestProxy::start(&upstream, &body).await }
    };
    let a = start(fa.addr).await;
    let b = start(fb.addr).await;
    Cluster {
        upstream,
        a,
        b,
        fa,
        fb,
        table,
    }
}

impl Cluster {
    fn advance(&self, by: Duration) {
        self.a.clock.advance(by);
        self.b.clock.advance(by);
    }

    /// Every DynamoDB operation both replicas sent since the last call.
    fn ops(&self) -> Vec<String> {
        let mut ops = take(&self.fa.ops);
        ops.extend(take(&self.fb.ops));
        ops
    }
}

fn search(who: &str) -> Req {
    Req::get("/search").header("X-Client", who)
}

fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| o.as_str() == op).count()
}

fn assert_rate_limited(reply: &Reply, retry_after: &str) {
    assert_eq!(reply.status_reason(), (429, "rate_limited".into()));
    assert_eq!(reply.header("retry-after").as_deref(), Some(retry_after));
    assert_eq!(
        reply.header("ratelimit-policy").as_deref(),
        Some("\"default\";q=5;w=1")
    );
    assert_eq!(
        reply.header("ratelimit").as_deref(),
        Some(format!("\"default\";r=0;t={retry_after}").as_str())
    );
}

/// Send `copies` of `request` concurrently, alternating between the
/// proxies; returns the replies.
async fn burst(request: &Req, proxies: &[SocketAddr], copies: usize) -> Vec<Reply> {
    let mut tasks = Vec::new();
    for i in 0..copies {
        let request = request.clone();
        let addr = proxies[i % proxies.len()];
        tasks.push(tokio::spawn(async move { request.send(addr).await }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

async fn a_burst_of_40_over_two_replicas_admits_the_burst_once(server: Server) {
    let c = cluster(server, "reject", "").await;
    let replies = burst(&search("alice"), &[c.a.addr, c.b.addr], 40).await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(admitted, 5, "burst 5, overshoot bound 2 × (1 − 1) = 0");
    for reply in replies.iter().filter(|r| r.status != 200) {
        // The 5 cells came back one per 200 ms: the next is 0.2 s away.
        assert_rate_limited(reply, "1");
    }
    assert_eq!(
        c.upstream.count(),
        5,
        "only the admitted reached the upstream"
    );
    assert!(c
        .upstream
        .seen()
        .iter()
        .all(|seen| seen.path_and_query == "/search"
            && seen.headers.get("x-client").is_some_and(|v| v == "alice")));

    // Store cost: one write per admitted cell, plus at most a few writes
    // per replica that learnt the bucket was empty; never one per request.
    let ops = c.ops();
    let writes = count(&ops, "PutItem");
    assert!((5..=5 + 2 * 4).contains(&writes), "{ops:?}");
    if server.returns_old_items() {
        assert_eq!(
            count(&ops, "GetItem"),
            0,
            "conflicts read from ALL_OLD: {ops:?}"
        );
    } else {
        // No old item from a failed write: each conflict is read once (and
        // the replicas did conflict: each started from a full bucket).
        let reads = count(&ops, "GetItem");
        assert!((1..=writes - 5).contains(&reads), "{ops:?}");
    }

    // Refusals now come from each replica's "not before": no store traffic.
    for i in 0..20 {
        let proxy = if i % 2 == 0 { &c.a } else { &c.b };
        assert_rate_limited(&search("alice").send(proxy.addr).await, "1");
    }
    assert_eq!(
        c.ops(),
        Vec::<String>::new(),
        "a flood of refusals costs no write"
    );
    assert_eq!(c.upstream.count(), 5);

    // The one record holds no client text: `rate#<32 hex>`.
    let items = scan(&server.endpoint(), &c.table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let pk = match items[0].get("pk") {
        Some(AttributeValue::S(pk)) => pk.clone(),
        other => panic!("pk {other:?}"),
    };
    let hex = pk.strip_prefix("rate#").expect("rate# item");
    assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!format!("{items:?}").contains("alice"));
}

async fn after_the_refill_the_budget_is_shared_again(server: Server) {
    let c = cluster(server, "reject", "").await;
    let mut admitted_by = [0, 0];
    for round in 0..2 {
        if round == 1 {
            c.advance(Duration::from_secs(1));
        }
        let mut headers = Vec::new();
        for i in 0..10 {
            let proxy = if i % 2 == 0 { &c.a } else { &c.b };
            let reply = search("alice").send(proxy.addr).await;
            if reply.status == 200 {
                admitted_by[i % 2] += 1;
                headers.push(reply.header("ratelimit").unwrap());
            } else {
                assert_rate_limited(&reply, "1");
            }
        }
        // Alternating a, b, a, b, a: each answer counts what both took.
        assert_eq!(
            headers,
            [4, 3, 2, 1, 0]
                .map(|r| format!("\"default\";r={r};t=1"))
                .to_vec(),
            "round {round}"
        );
    }
    assert_eq!(admitted_by, [6, 4], "both replicas spend the one budget");
    assert_eq!(c.upstream.count(), 10);
}

async fn a_dead_replica_leaves_the_whole_budget_to_the_survivor(server: Server) {
    let c = cluster(server, "reject", "").await;
    for i in 0..5 {
        let proxy = if i % 2 == 0 { &c.a } else { &c.b };
        assert_eq!(search("alice").send(proxy.addr).await.status, 200);
    }
    // Replica a also holds unspent cells of a bulk batch when it dies.
    let bulk = Req::get("/bulk").header("X-Client", "alice");
    for _ in 0..30 {
        assert_eq!(bulk.send(c.a.addr).await.status, 200);
    }
    let Cluster { upstream, a, b, .. } = c;
    a.shutdown().await;
    // Until the refill, the survivor gets what is left of the one bucket:
    // a's unspent cells are lost (never admitted twice).
    let left = burst(&bulk, &[b.addr], 100).await;
    let left = left.iter().filter(|r| r.status == 200).count();
    assert!(
        (100 - 30 - MAX_HELD_BULK..=70).contains(&left),
        "100 − 30 spent − ≤ {MAX_HELD_BULK} held: {left}"
    );
    b.clock.advance(Duration::from_secs(1));
    let replies = burst(&search("alice"), &[b.addr], 12).await;
    assert_eq!(
        replies.iter().filter(|r| r.status == 200).count(),
        5,
        "the survivor has the whole burst, not half"
    );
    let replies = burst(&bulk, &[b.addr], 130).await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 100);
    assert_eq!(upstream.count(), 5 + 30 + left + 5 + 100);
}

async fn batches_cost_fewer_writes_than_requests_and_never_exceed_the_budget(server: Server) {
    let c = cluster(server, "reject", "").await;
    let bulk = Req::get("/bulk").header("X-Client", "bob");
    // 400 requests, 2 ms apart on both clocks, alternating replicas: 500/s
    // against 100/s: at most the burst plus the refill plus the cells the
    // two replicas may hold (2 × MAX_HELD_BULK).
    let mut admitted = Vec::new();
    for i in 0..400 {
        c.advance(Duration::from_millis(2));
        let proxy = if i % 2 == 0 { &c.a } else { &c.b };
        let reply = bulk.send(proxy.addr).await;
        if reply.status == 200 {
            admitted.push(i);
        } else {
            assert_eq!(reply.reason(), "rate_limited");
        }
    }
    // Over the whole 0.8 s: the burst plus 80 refilled, plus the overshoot.
    assert!(
        (150..=100 + 80 + 2 * MAX_HELD_BULK).contains(&admitted.len()),
        "{}",
        admitted.len()
    );
    assert_eq!(c.upstream.count(), admitted.len());
    let writes = count(&c.ops(), "PutItem");
    assert!(
        writes < admitted.len(),
        "batches: {writes} writes for {} admitted",
        admitted.len()
    );
}

async fn under_the_limit_a_write_serves_many_requests(server: Server) {
    let c = cluster(server, "reject", "").await;
    // 500 requests per second (2 ms apart on both clocks, alternating
    // replicas) against 1000/s, burst 1000: every one is admitted, and each
    // replica's batches grow to its demand over 100 ms (250/s → 25).
    let fast = Req::get("/fast").header("X-Client", "carol");
    for i in 0..400 {
        c.advance(Duration::from_millis(2));
        let proxy = if i % 2 == 0 { &c.a } else { &c.b };
        let reply = fast.send(proxy.addr).await;
        assert_eq!(reply.status, 200, "request {i}: {:?}", reply.body);
    }
    assert_eq!(c.upstream.count(), 400);
    let ops = c.ops();
    let writes = count(&ops, "PutItem");
    assert!(
        writes * 5 < 400,
        "{writes} writes for 400 admitted requests: {ops:?}"
    );
    println!("{server:?}: {writes} reservation writes for 400 admitted requests");
}

async fn store_down_fails_closed_and_nothing_is_forwarded(server: Server) {
    let c = cluster(server, "reject", "").await;
    assert_eq!(search("alice").send(c.a.addr).await.status, 200);
    assert_eq!(c.ops(), ["PutItem"]);
    c.fa.refuse.store(true, Ordering::SeqCst);
    c.fb.refuse.store(true, Ordering::SeqCst);
    for i in 0..6 {
        let proxy = if i % 2 == 0 { &c.a } else { &c.b };
        let reply = search(&format!("client-{i}")).send(proxy.addr).await;
        assert_eq!(reply.status_reason(), (503, "store_unavailable".into()));
        assert!(reply.header("retry-after").is_some());
    }
    assert_eq!(
        c.upstream.count(),
        1,
        "nothing forwarded while failing closed"
    );
    // Each replica tried the store once, then left it alone for 1 s.
    let ops = c.ops();
    assert!(ops.iter().all(|op| op == "PutItem (refused)"), "{ops:?}");
    assert!(
        ops.len() <= 2 * 3,
        "one call (SDK retries included) per replica: {ops:?}"
    );

    c.fa.refuse.store(false, Ordering::SeqCst);
    c.fb.refuse.store(false, Ordering::SeqCst);
    c.advance(Duration::from_secs(1));
    assert_eq!(search("alice").send(c.b.addr).await.status, 200);
    assert_eq!(c.upstream.count(), 2);
}

async fn store_down_falls_back_to_a_per_instance_share(server: Server) {
    // replicas = 2: each replica's fallback admits burst 5 / 2 = 2.
    let c = cluster(server, "allow", ", replicas = 2").await;
    c.fa.refuse.store(true, Ordering::SeqCst);
    c.fb.refuse.store(true, Ordering::SeqCst);
    let mut admitted = [0, 0];
    for i in 0..12 {
        let proxy = if i % 2 == 0 { &c.a } else { &c.b };
        let reply = search("alice").send(proxy.addr).await;
        if reply.status == 200 {
            admitted[i % 2] += 1;
        } else {
            assert_eq!(reply.status_reason(), (429, "rate_limited".into()));
            assert_eq!(
                reply.header("ratelimit-policy").as_deref(),
                Some("\"default\";q=2;w=1"),
                "the fallback's own policy"
            );
        }
    }
    assert_eq!(admitted, [2, 2], "rate / replicas on each instance");
    assert_eq!(c.upstream.count(), 4);
    let text = support::metrics::scrape(c.a.admin.unwrap()).await;
    assert!(
        text.contains("replay_guard_rate_limit_fallback_total{route=\"search\"} 6"),
        "{text}"
    );
    assert!(text.contains("replay_guard_rate_limit_fallback_total{route=\"bulk\"} 0"));

    // The store is back: after the backoff the shared budget decides again.
    c.fa.refuse.store(false, Ordering::SeqCst);
    c.fb.refuse.store(false, Ordering::SeqCst);
    c.advance(Duration::from_secs(1));
    let replies = burst(&search("alice"), &[c.a.addr, c.b.addr], 12).await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 5);
}

// ---------------------------------------------------------------------------
// The store link, counted on the wire (as in tests/dynamodb.rs).
// ---------------------------------------------------------------------------

/// A loopback link in front of the DynamoDB server, counting and refusing
/// store calls on the wire.
async fn counting_forwarder(target: SocketAddr) -> StoreLink {
    StoreLink::start(target).await
}

/// Every item of `table`.
async fn scan(endpoint: &str, table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let out = client.scan().table_name(table).send().await.expect("scan");
    out.items.unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The memory store: `cluster` is `instance`, and `check` says so.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_memory_store_cluster_is_per_instance() {
    let upstream = Upstream::start().await;
    let body = format!("[store]\nkind = \"memory\"\n{}", routes(""));
    let a = TestProxy::start(&upstream.url(), &body).await;
    let b = TestProxy::start(&upstream.url(), &body).await;
    for proxy in [&a, &b] {
        let replies = burst(&search("alice"), &[proxy.addr], 8).await;
        assert_eq!(
            replies.iter().filter(|r| r.status == 200).count(),
            5,
            "each instance has its own burst"
        );
    }
    assert_eq!(upstream.count(), 10);
}

#[test]
fn check_warns_that_cluster_on_memory_is_per_instance() {
    use support::binary::{command, config_file};
    let file = config_file(&format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\n{}",
        routes("")
    ));
    let output = command()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("rate(5/1s burst 5 cluster)"), "{table}");
    assert!(
        table.contains("warning: route search: rate_limit scope = \"cluster\" on the memory store is the same as \"instance\""),
        "{table}"
    );
}
