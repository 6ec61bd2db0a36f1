//! The DynamoDB store behind the real proxy (issue 3), on moto: storms,
//! several replicas sharing one table (in-process and as real processes),
//! expired records, store outages and recovery, `on_error = "allow"`,
//! `init-table`, and the write cost of an idempotent request counted on
//! the wire. Everything stays on 127.0.0.1.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::binary::{config_file, run_cli, ProxyProcess};
use support::client::{nonce, Reply, Req};
use support::config::{self, dynamo_store, Route};
use support::moto::MotoServer;
use support::proxy::{TestProxy, T0};
use support::store_link::{take, StoreLink, Tap, TapFuture};
use support::upstream::Upstream;

/// Payments with three freshness windows (120 s, 10 s, 1000 s), and an
/// idempotent route.
fn routes() -> String {
    let fresh_nonce = |name: &str, path: &str, max_skew_secs: u64| {
        Route::post(name, path)
            .identity("header:X-Client")
            .freshness(max_skew_secs)
            .nonce()
    };
    config::routes([
        config::create_payment(),
        fresh_nonce("short-window", "/short", 10),
        fresh_nonce("long-window", "/long", 1000),
        Route::post("charge", "/charges")
            .identity("header:X-Client")
            .idempotency("{ ttl_secs = 100, lease_secs = 60 }"),
        fresh_nonce("pay-once", "/pay-once", 120)
            .idempotency("{ required = true, ttl_secs = 100, lease_secs = 60 }"),
    ])
}

/// A fresh table on the shared moto server.
async fn shared_table() -> String {
    MotoServer::shared().fresh_table_settings().await.table
}

async fn proxy_on(
    upstream: &Upstream,
    endpoint: &str,
    table: &str,
    on_error: &str,
    timeout_ms: u64,
) -> TestProxy {
    let store = dynamo_store(endpoint, table, timeout_ms, on_error);
    TestProxy::start(&upstream.url(), &format!("{store}\n{}", routes())).await
}

fn payment(n: usize) -> Req {
    Req::post("/payments")
        .header("X-Client", "alice")
        .fresh(T0, &nonce(n))
        .body("pay")
}

async fn admin_get(admin: SocketAddr, path: &str) -> Reply {
    Req::get(path).send(admin).await
}

/// The value of one sample line of the Prometheus text, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    support::metrics::sample(text, series).unwrap_or(0.0)
}

/// Send `request` to proxies round-robin, `copies` times concurrently;
/// returns (200s, 409 replayed_nonce).
async fn storm(request: &Req, proxies: &[SocketAddr], copies: usize) -> (usize, usize) {
    let mut tasks = Vec::new();
    for i in 0..copies {
        let request = request.clone();
        let addr = proxies[i % proxies.len()];
        tasks.push(tokio::spawn(async move { request.send(addr).await }));
    }
    let (mut ok, mut replayed) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status_reason() {
            (200, _) => ok += 1,
            (409, reason) if reason == "replayed_nonce" => replayed += 1,
            other => panic!("unexpected answer {other:?}: {:?}", reply.body),
        }
    }
    (ok, replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_200_identical_requests_reaches_the_upstream_once() {
    let upstream = Upstream::start().await;
    let table = shared_table().await;
    let endpoint = MotoServer::shared().endpoint();
    let proxy = proxy_on(&upstream, &endpoint, &table, "reject", 5000).await;
    let (ok, replayed) = storm(&payment(1), &[proxy.addr], 200).await;
    assert_eq!((ok, replayed), (1, 199));
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_sharing_a_table_forward_a_duplicate_once() {
    let upstream = Upstream::start().await;
    let table = shared_table().await;
    let endpoint = MotoServer::shared().endpoint();
    let a = proxy_on(&upstream, &endpoint, &table, "reject", 5000).await;
    let b = proxy_on(&upstream, &endpoint, &table, "reject", 5000).await;
    let (ok, replayed) = storm(&payment(7), &[a.addr, b.addr], 100).await;
    assert_eq!((ok, replayed), (1, 99));
    assert_eq!(upstream.count(), 1);
    // Idempotency across replicas: executed on one, replayed by the other.
    let charge = Req::post("/charges")
        .header("X-Client", "alice")
        .header("Idempotency-Key", "charge-1")
        .body("10 EUR");
    let first = charge.send(a.addr).await;
    assert_eq!(first.status, 200);
    a.until_recorded(1).await;
    let replay = charge.send(b.addr).await;
    assert_eq!(replay.body, first.body);
    replay.assert_replayed();
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxy_processes_sharing_a_table_forward_a_duplicate_once() {
    let upstream = Upstream::start().await;
    let table = shared_table().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n{}\n{}",
        upstream.url(),
        dynamo_store(&MotoServer::shared().endpoint(), &table, 5000, "reject"),
        routes()
    );
    let a = ProxyProcess::start(&toml);
    let b = ProxyProcess::start(&toml);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = Req::post("/payments")
        .header("X-Client", "alice")
        .fresh(now, &nonce(42))
        .body("pay once");
    let (ok, replayed) = storm(&request, &[a.addr, b.addr], 100).await;
    assert_eq!((ok, replayed), (1, 99));
    assert_eq!(upstream.count(), 1);
}

/// Every item of `table` whose `pk` contains `needle` (keys are hashes:
/// `nonce#` or `idem#` picks a kind), with its `expires_at`.
async fn items_like(table: &str, needle: &str) -> Vec<(String, u64)> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(MotoServer::shared().endpoint())
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let out = client
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan on moto");
    out.items()
        .iter()
        .filter_map(|item| {
            let pk = item.get("pk")?.as_s().ok()?;
            let expires_at = item.get("expires_at")?.as_n().ok()?.parse().ok()?;
            pk.contains(needle).then(|| (pk.clone(), expires_at))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_but_not_deleted_records_do_not_block_a_new_claim() {
    let upstream = Upstream::start().await;
    let table = shared_table().await;
    let endpoint = MotoServer::shared().endpoint();
    let proxy = proxy_on(&upstream, &endpoint, &table, "reject", 5000).await;
    let n = nonce(3);
    let short = || {
        Req::post("/short")
            .header("X-Client", "alice")
            .fresh(T0, &n)
    };
    let long = || Req::post("/long").header("X-Client", "alice").fresh(T0, &n);

    // Nonce: remembered until T0 + 10 (skew) + 60 on the short route.
    assert_eq!(short().send(proxy.addr).await.status, 200);
    assert_eq!(
        long().send(proxy.addr).await.status_reason(),
        (409, "replayed_nonce".into())
    );
    proxy.clock.advance(Duration::from_secs(71));
    let items = items_like(&table, "nonce#").await;
    assert_eq!(items.len(), 1, "the record is still in the table");
    assert!(items[0].1 < T0 + 71, "and it has expired: {items:?}");
    // Still fresh on the long route, and the expired record counts as absent.
    assert_eq!(long().send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 2);

    // Idempotency: a completed record past its ttl_secs is absent too.
    let charge = || {
        Req::post("/charges")
            .header("X-Client", "alice")
            .header("Idempotency-Key", "old-key")
            .body("10")
    };
    assert_eq!(charge().send(proxy.addr).await.status, 200);
    proxy.until_recorded(1).await;
    charge().send(proxy.addr).await.assert_replayed();
    proxy.clock.advance(Duration::from_secs(101));
    assert_eq!(
        items_like(&table, "idem#").await.len(),
        1,
        "not deleted yet"
    );
    let again = charge().send(proxy.addr).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.header("idempotent-replayed"),
        None,
        "a new claim, executed"
    );
    assert_eq!(upstream.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_is_503_then_recovers_without_restarting_the_proxy() {
    let moto = MotoServer::start();
    let table = moto.fresh_table_settings().await.table;
    let upstream = Upstream::start().await;
    let proxy = proxy_on(&upstream, &moto.endpoint(), &table, "reject", 300).await;
    let admin = proxy.admin.unwrap();
    assert_eq!(payment(1).send(proxy.addr).await.status, 200);
    assert_eq!(admin_get(admin, "/readyz").await.status, 200);

    moto.stop();
    for n in 2..4 {
        let reply = payment(n).send(proxy.addr).await;
        assert_eq!(reply.status_reason(), (503, "store_unavailable".into()));
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    }
    assert_eq!(
        upstream.count(),
        1,
        "nothing forwarded while the store is down"
    );
    assert_eq!(admin_get(admin, "/readyz").await.status, 503);
    let metrics = admin_get(admin, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        metric(&text, "replay_guard_store_errors_total{op=\"claim_nonce\"}") >= 2.0,
        "{text}"
    );

    moto.restart().await;
    // The first calls after the restart may meet pooled connections to the
    // old server: a bounded number of fresh attempts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 100;
    loop {
        n += 1;
        let reply = payment(n).send(proxy.addr).await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status_reason(), (503, "store_unavailable".into()));
        assert!(Instant::now() < deadline, "the proxy never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(admin_get(admin, "/readyz").await.status, 200);
    // And the recovered store still refuses a replay.
    assert_eq!(
        payment(n).send(proxy.addr).await.status_reason(),
        (409, "replayed_nonce".into())
    );
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_allow_forwards_and_stays_ready_while_the_store_is_down() {
    let moto = MotoServer::start();
    let table = moto.fresh_table_settings().await.table;
    moto.stop();
    let upstream = Upstream::start().await;
    let proxy = proxy_on(&upstream, &moto.endpoint(), &table, "allow", 300).await;
    let reply = payment(1).send(proxy.addr).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(upstream.count(), 1);
    // Fail open means unchecked: the same nonce passes again. That is the
    // documented price of on_error = "allow".
    assert_eq!(payment(1).send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 2);
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert_eq!(
        metric(
            &text,
            "replay_guard_store_fail_open_total{route=\"create-payment\"}"
        ),
        2.0,
        "{text}"
    );
    // An outage that does not refuse requests keeps the replica ready, so
    // a store outage never empties the Service; the body says degraded.
    let ready = admin_get(proxy.admin.unwrap(), "/readyz").await;
    assert_eq!(ready.status, 200);
    assert!(
        String::from_utf8_lossy(&ready.body).contains("degraded"),
        "{:?}",
        ready.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_table_twice_via_the_binary() {
    let moto = MotoServer::shared();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let table = format!("rg-init-{}-{nanos}", std::process::id());
    // Only [store] is read: no [server], and a key whose secret is not in
    // this environment (init-table runs where signing secrets are not).
    let config = config_file(&format!(
        "{}\n[[keys]]\nid = \"k\"\nsecret_env = \"RG_INIT_TABLE_SURELY_UNSET\"\n",
        dynamo_store(&moto.endpoint(), &table, 5000, "reject")
    ));
    let path = config.path().to_str().unwrap().to_owned();
    // A typo in [store] is still an error, with its position.
    let typo = config_file(&format!(
        "{}tabel = \"x\"\n",
        dynamo_store(&moto.endpoint(), &table, 5000, "reject")
    ));
    let output = run_cli(&["init-table", "--config", typo.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("did you mean `table`?"),
        "{output:?}"
    );
    // `replay-guard init-table --config <path>`: must succeed; its stdout.
    let init_table = |path: String| async move {
        let output =
            tokio::task::spawn_blocking(move || run_cli(&["init-table", "--config", &path]))
                .await
                .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let out = init_table(path.clone()).await;
    assert!(
        out.contains("created") && out.contains("enabled now"),
        "{out}"
    );
    let out = init_table(path).await;
    assert!(
        out.contains("already existed") && out.contains("already enabled"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Write cost, counted on the wire.
// ---------------------------------------------------------------------------

/// A loopback HTTP forwarder in front of moto.
struct Forwarder {
    addr: SocketAddr,
    /// The DynamoDB operation (`X-Amz-Target`) of every request that
    /// arrived, with ` (refused)` appended to those answered 503.
    ops: Arc<Mutex<Vec<String>>>,
    /// While set, requests are answered 503 and never reach moto: a store
    /// outage that keeps the table's contents.
    refuse: Arc<AtomicBool>,
    /// While set, an `UpdateItem` (a completion) is held back before it
    /// reaches the server.
    hold_updates: Arc<AtomicBool>,
    /// `UpdateItem`s the server has answered.
    updates_landed: Arc<AtomicUsize>,
    /// While set, a `PutItem` waits (up to 5 s) until another `PutItem` is
    /// in flight too: claims sent together pass at once, claims sent one
    /// after the other each wait out the 5 s alone.
    pair_puts: Arc<AtomicBool>,
    /// The most `PutItem`s ever in flight at once.
    peak_puts: Arc<AtomicUsize>,
}

async fn counting_forwarder(moto: SocketAddr) -> Forwarder {
    let tap = Arc::new(Pairing::default());
    let link = StoreLink::with_tap(moto, tap.clone()).await;
    Forwarder {
        addr: link.addr,
        ops: link.ops,
        refuse: link.refuse,
        hold_updates: tap.hold_updates.clone(),
        updates_landed: tap.updates_landed.clone(),
        pair_puts: tap.pair_puts.clone(),
        peak_puts: tap.peak_puts.clone(),
    }
}

/// What the [`Forwarder`]'s link does to `PutItem`s and `UpdateItem`s.
#[derive(Default)]
struct Pairing {
    hold_updates: Arc<AtomicBool>,
    updates_landed: Arc<AtomicUsize>,
    pair_puts: Arc<AtomicBool>,
    peak_puts: Arc<AtomicUsize>,
    /// `PutItem`s in flight now.
    puts: AtomicUsize,
}

impl Tap for Pairing {
    fn before<'a>(&'a self, op: &'a str) -> TapFuture<'a, Option<Response<Full<Bytes>>>> {
        Box::pin(async move {
            if op == "PutItem" {
                let deadline = Instant::now() + Duration::from_secs(5);
                let now = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak_puts.fetch_max(now, Ordering::SeqCst);
                while self.pair_puts.load(Ordering::SeqCst)
                    && self.puts.load(Ordering::SeqCst) < 2
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            if op == "UpdateItem" {
                let deadline = Instant::now() + Duration::from_secs(30);
                while self.hold_updates.load(Ordering::SeqCst) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            None
        })
    }

    fn after<'a>(&'a self, op: &'a str) -> TapFuture<'a, ()> {
        Box::pin(async move {
            if op == "PutItem" {
                // Leave the count up a moment so that the partner of a
                // pair, released by this one, still sees it in flight.
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.puts.fetch_sub(1, Ordering::SeqCst);
            }
            if op == "UpdateItem" {
                self.updates_landed.fetch_add(1, Ordering::SeqCst);
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_costs_two_writes_then_one_failed_write_per_replay() {
    // (and nonce + idempotency: three, then two per retry or replay)
    let moto = MotoServer::shared();
    let table = moto.fresh_table_settings().await.table;
    let moto_addr: SocketAddr = format!("127.0.0.1:{}", moto.port()).parse().unwrap();
    let Forwarder {
        addr: forwarder,
        ops,
        updates_landed,
        ..
    } = counting_forwarder(moto_addr).await;
    let upstream = Upstream::start().await;
    let proxy = proxy_on(
        &upstream,
        &format!("http://{forwarder}"),
        &table,
        "reject",
        5000,
    )
    .await;
    let charge = |body: &str| {
        Req::post("/charges")
            .header("X-Client", "alice")
            .header("Idempotency-Key", "cost-1")
            .body(body.to_owned())
    };

    let first = charge("10").send(proxy.addr).await;
    assert_eq!(first.status, 200);
    // The completion is written after the answer went out.
    until_landed(&updates_landed, 1).await;
    assert_eq!(take(&ops), ["PutItem", "UpdateItem"], "claim, complete");
    for _ in 0..3 {
        let replay = charge("10").send(proxy.addr).await;
        replay.assert_replayed();
    }
    assert_eq!(
        take(&ops),
        ["PutItem"; 3],
        "one failed conditional write per replay, no read"
    );
    let reused = charge("20").send(proxy.addr).await;
    assert_eq!(reused.status, 422);
    assert_eq!(
        take(&ops),
        ["PutItem"],
        "a conflict costs the same single write"
    );
    // A nonce costs exactly one write.
    assert_eq!(payment(1).send(proxy.addr).await.status, 200);
    assert_eq!(payment(1).send(proxy.addr).await.status, 409);
    assert_eq!(take(&ops), ["PutItem", "PutItem"]);
    assert_eq!(upstream.count(), 2);

    // Nonce + idempotency: both claims at once, the completion after.
    let sorted = |ops: &Mutex<Vec<String>>| {
        let mut ops = take(ops);
        ops.sort();
        ops
    };
    let pay_once = |n: usize, key: &str| {
        Req::post("/pay-once")
            .header("X-Client", "alice")
            .header("Idempotency-Key", key)
            .fresh(T0, &nonce(n))
            .body("pay")
    };
    assert_eq!(pay_once(10, "p-1").send(proxy.addr).await.status, 200);
    until_landed(&updates_landed, 2).await;
    assert_eq!(sorted(&ops), ["PutItem", "PutItem", "UpdateItem"]);
    // A retry with a fresh nonce: two writes (the nonce, the failed claim).
    pay_once(11, "p-1").send(proxy.addr).await.assert_replayed();
    assert_eq!(sorted(&ops), ["PutItem", "PutItem"]);
    // Its verbatim replay: both claims fail, two writes.
    let replay = pay_once(11, "p-1").send(proxy.addr).await;
    assert_eq!(replay.status_reason(), (409, "replayed_nonce".into()));
    assert_eq!(sorted(&ops), ["PutItem", "PutItem"]);
    // A replayed nonce whose key was free: the key it took is released.
    let replay = pay_once(11, "p-2").send(proxy.addr).await;
    assert_eq!(replay.status_reason(), (409, "replayed_nonce".into()));
    assert_eq!(sorted(&ops), ["DeleteItem", "PutItem", "PutItem"]);
    assert_eq!(upstream.count(), 3);

    // The same, from the proxy's own /metrics.
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    let count = |op: &str| {
        metric(
            &text,
            &format!("replay_guard_store_duration_seconds_count{{op=\"{op}\"}}"),
        )
    };
    assert_eq!(count("claim_idempotency"), 9.0, "{text}");
    assert_eq!(count("complete_idempotency"), 2.0, "{text}");
    assert_eq!(count("release_idempotency"), 1.0, "{text}");
    assert_eq!(count("claim_nonce"), 6.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_store_refused_is_stored_once_the_store_is_back() {
    let moto = MotoServer::shared();
    let table = moto.fresh_table_settings().await.table;
    let moto_addr: SocketAddr = format!("127.0.0.1:{}", moto.port()).parse().unwrap();
    let forwarder = counting_forwarder(moto_addr).await;
    let upstream = Upstream::start().await;
    let endpoint = format!("http://{}", forwarder.addr);
    let proxy = proxy_on(&upstream, &endpoint, &table, "reject", 300).await;
    let charge = Req::post("/charges")
        .header("X-Client", "alice")
        .header("Idempotency-Key", "outage-at-completion")
        .header("x-test-delay-ms", "500")
        .body("charge 10");

    // The claim lands; while the upstream works, the store goes away.
    let first = tokio::spawn({
        let charge = charge.clone();
        let addr = proxy.addr;
        async move { charge.send(addr).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    forwarder.refuse.store(true, Ordering::SeqCst);
    let first = first.await.unwrap();
    assert_eq!(
        first.status, 200,
        "the caller still gets the upstream's answer"
    );
    // The completion is written after the answer went out: it meets the
    // outage a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !forwarder
        .ops
        .lock()
        .unwrap()
        .contains(&"UpdateItem (refused)".to_owned())
    {
        assert!(Instant::now() < deadline, "the completion met the outage");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    take(&forwarder.ops);

    // While the store is away a retry cannot be checked: 503, not sent on.
    // Once it is back, a retry gets the answer: from this replica's memory
    // while the background completion is still pausing, from the store
    // once it lands (until then the lease holds the key elsewhere).
    let refused = charge.clone().send(proxy.addr).await;
    assert_eq!(refused.status_reason(), (503, "store_unavailable".into()));
    forwarder.refuse.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    let replayed = loop {
        let retry = charge.clone().send(proxy.addr).await;
        if retry.status == 200 {
            break retry;
        }
        assert_eq!(retry.status_reason(), (409, "idempotency_in_flight".into()));
        assert!(
            Instant::now() < deadline,
            "the answer was never stored: {:?}",
            take(&forwarder.ops)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    replayed.assert_replayed();
    assert_eq!(replayed.body, first.body);
    assert_eq!(upstream.count(), 1, "executed once");
    // Stored by a later completion: a replica that never saw the answer
    // (straight to moto) replays it from the table.
    until_landed(&forwarder.updates_landed, 1).await;
    let fresh = proxy_on(&upstream, &moto.endpoint(), &table, "reject", 5000).await;
    let from_store = charge.clone().send(fresh.addr).await;
    assert_eq!(from_store.status, 200, "{:?}", from_store.body);
    from_store.assert_replayed();
    assert_eq!(from_store.body, first.body);
    assert_eq!(upstream.count(), 1, "executed once");
}

/// Wait (bounded) until the forwarder has seen `n` completions answered.
async fn until_landed(landed: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while landed.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "{n} completions never landed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Issue 19 on one DynamoDB-compatible server at `endpoint` (a fresh
/// `table` on it): a request with a nonce and an idempotency key sends
/// both claims in one round trip and gets its answer while the completion
/// is still held back on the wire. A retry in that gap gets the answer on
/// the replica that holds it and 409 on another one; neither reaches the
/// upstream.
async fn one_round_trip_then_the_answer_before_the_record(endpoint: &str, table: &str) {
    let server: SocketAddr = endpoint.trim_start_matches("http://").parse().unwrap();
    let link = counting_forwarder(server).await;
    let upstream = Upstream::start().await;
    // Two replicas sharing the table through the link.
    let via_link = format!("http://{}", link.addr);
    let proxy = proxy_on(&upstream, &via_link, table, "reject", 5000).await;
    let other = proxy_on(&upstream, &via_link, table, "reject", 5000).await;
    let attempt = |n: usize| {
        Req::post("/pay-once")
            .header("X-Client", "alice")
            .header("Idempotency-Key", "pay-once-1")
            .fresh(T0, &nonce(n))
            .body("pay 10")
    };
    link.pair_puts.store(true, Ordering::SeqCst);
    link.hold_updates.store(true, Ordering::SeqCst);

    let first = attempt(1).send(proxy.addr).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    first.assert_not_replayed();
    assert_eq!(
        link.peak_puts.load(Ordering::SeqCst),
        2,
        "the nonce and key claims were in flight together: {:?}",
        take(&link.ops)
    );
    // The answer is here; the completion reached the wire and is held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !link.ops.lock().unwrap().contains(&"UpdateItem".to_owned()) {
        assert!(Instant::now() < deadline, "no completion was ever sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(link.updates_landed.load(Ordering::SeqCst), 0);

    // A retry in the gap, on the replica that answered: the answer it is
    // still recording, never a second run.
    let early = attempt(2).send(proxy.addr).await;
    assert_eq!(early.status, 200, "{:?}", early.body);
    early.assert_replayed();
    assert_eq!(early.body, first.body);
    assert_eq!(upstream.count(), 1);
    // On the other replica: the store says in flight.
    let elsewhere = attempt(4).send(other.addr).await;
    assert_eq!(
        elsewhere.status_reason(),
        (409, "idempotency_in_flight".into())
    );
    assert!(elsewhere.header("retry-after").is_some());
    assert_eq!(upstream.count(), 1);

    link.hold_updates.store(false, Ordering::SeqCst);
    until_landed(&link.updates_landed, 1).await;
    let retry = attempt(3).send(other.addr).await;
    assert_eq!(retry.status, 200);
    retry.assert_replayed();
    assert_eq!(retry.body, first.body);
    // The retry's own transmission replayed: its nonce was consumed.
    let resend = attempt(3).send(other.addr).await;
    assert_eq!(resend.status_reason(), (409, "replayed_nonce".into()));
    assert_eq!(link.peak_puts.load(Ordering::SeqCst), 2);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "executed once");
    assert_eq!(&seen[0].body[..], b"pay 10");
    other.shutdown().await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_one_round_trip_then_the_answer_before_the_record() {
    let settings = MotoServer::shared().fresh_table_settings().await;
    let endpoint = settings.endpoint_url.clone().unwrap();
    one_round_trip_then_the_answer_before_the_record(&endpoint, &settings.table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynalite_one_round_trip_then_the_answer_before_the_record() {
    let settings = support::dynalite::DynaliteServer::shared()
        .fresh_table_settings()
        .await;
    let endpoint = settings.endpoint_url.clone().unwrap();
    one_round_trip_then_the_answer_before_the_record(&endpoint, &settings.table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_held_completion() {
    let moto = MotoServer::shared();
    let table = moto.fresh_table_settings().await.table;
    let moto_addr: SocketAddr = format!("127.0.0.1:{}", moto.port()).parse().unwrap();
    let link = counting_forwarder(moto_addr).await;
    let upstream = Upstream::start().await;
    let endpoint = format!("http://{}", link.addr);
    let proxy = proxy_on(&upstream, &endpoint, &table, "reject", 5000).await;
    link.hold_updates.store(true, Ordering::SeqCst);
    let charge = Req::post("/charges")
        .header("X-Client", "alice")
        .header("Idempotency-Key", "held-at-shutdown")
        .body("charge 10");
    assert_eq!(charge.send(proxy.addr).await.status, 200);
    // Shutdown waits for the background completion (held on the wire).
    let shutdown = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the record"
    );
    link.hold_updates.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown ends once the record landed")
        .unwrap();
    assert_eq!(link.updates_landed.load(Ordering::SeqCst), 1);
}
