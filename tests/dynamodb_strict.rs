//! What a lenient DynamoDB-compatible server hides (issue 18), through the
//! real proxy: store keys that hold no client text (the raw table is
//! scanned), DynamoDB's 400 KB item limit, and which store errors are
//! outages. The table cases run on moto and on dynalite (the stricter
//! implementation: it refuses an oversized item whole, as DynamoDB does);
//! the error cases put a small shim in front of moto that answers chosen
//! operations with a chosen DynamoDB error.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use replay_guard::store::dynamodb::{DynamoSettings, MAX_RESPONSE_BYTES};
use support::client::{nonce, Req};
use support::config::dynamo_store;
use support::dynalite::DynaliteServer;
use support::moto::MotoServer;
use support::proxy::{TestProxy, T0};
use support::store_link::{dynamodb_error, StoreLink, Tap, TapFuture};
use support::upstream::Upstream;

/// Text a client sends that must never reach the table.
const TOKEN: &str = "Bearer tok-SECRET-1f2e3d";
const KEY: &str = "order-4711-jane.doe@example.com";

/// The DynamoDB servers a table case runs on.
#[derive(Debug, Clone, Copy)]
enum Server {
    Moto,
    Dynalite,
}

impl Server {
    async fn fresh_table(self) -> DynamoSettings {
        match self {
            Server::Moto => MotoServer::shared().fresh_table_settings().await,
            Server::Dynalite => DynaliteServer::shared().fresh_table_settings().await,
        }
    }
}

fn routes(max_response_bytes: usize) -> String {
    format!(
        r#"
[[routes]]
name = "pay"
methods = ["POST"]
path = "/payments"
identity = "header:Authorization"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}
idempotency = {{ required = true, ttl_secs = 3600, lease_secs = 60, max_response_bytes = {max_response_bytes} }}
"#
    )
}

/// A proxy on a fresh table of `server`; `extra` goes into `[store]`.
async fn proxy_on(upstream: &Upstream, settings: &DynamoSettings, extra: &str) -> TestProxy {
    let endpoint = settings.endpoint_url.as_deref().unwrap_or_default();
    let store = dynamo_store(endpoint, &settings.table, 5000, "reject");
    let store = store.replacen("[store]\n", &format!("[store]\n{extra}"), 1);
    let body = format!("{store}\n{}", routes(MAX_RESPONSE_BYTES));
    TestProxy::start(&upstream.url(), &body).await
}

fn payment(n: usize) -> Req {
    Req::post("/payments")
        .header("Authorization", TOKEN)
        .header("Idempotency-Key", KEY)
        .fresh(T0, &nonce(n))
        .body("pay")
}

/// Every item of the table, raw.
async fn scan(settings: &DynamoSettings) -> Vec<HashMap<String, AttributeValue>> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(settings.endpoint_url.clone().unwrap_or_default())
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let out = client
        .scan()
        .table_name(&settings.table)
        .send()
        .await
        .expect("scan");
    out.items.unwrap_or_default()
}

/// Every string and binary value of an item, as lossy text.
fn texts(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    item.values()
        .filter_map(|value| match value {
            AttributeValue::S(s) => Some(s.clone()),
            AttributeValue::B(b) => Some(String::from_utf8_lossy(b.as_ref()).into_owned()),
            _ => None,
        })
        .collect()
}

fn pks(items: &[HashMap<String, AttributeValue>]) -> Vec<String> {
    let mut pks: Vec<String> = items
        .iter()
        .filter_map(|item| item.get("pk")?.as_s().ok().cloned())
        .collect();
    pks.sort();
    pks
}

/// Keys are `nonce#<32 hex>` / `idem#<32 hex>`; no identity, nonce or
/// idempotency key appears in any key or attribute; the keyed variant
/// (`key_hash_secret_env`) writes other keys than the unkeyed one.
async fn store_keys_hold_no_client_text(server: Server) {
    std::env::set_var("RG_TEST_STRICT_KEY_HASH", "key-hash-secret-for-tests");
    let upstream = Upstream::start().await;
    let plain = server.fresh_table().await;
    let keyed = server.fresh_table().await;
    let extra = "key_hash_secret_env = \"RG_TEST_STRICT_KEY_HASH\"\n";
    for (settings, extra) in [(&plain, ""), (&keyed, extra)] {
        let proxy = proxy_on(&upstream, settings, extra).await;
        let reply = payment(1).send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    assert_eq!(upstream.count(), 2);

    let (plain_items, keyed_items) = (scan(&plain).await, scan(&keyed).await);
    assert_eq!(plain_items.len(), 2, "one nonce and one idempotency item");
    let secret_texts = [TOKEN, "tok-SECRET", KEY, "jane.doe", &nonce(1)];
    for item in plain_items.iter().chain(&keyed_items) {
        for text in texts(item) {
            for secret in secret_texts {
                assert!(!text.contains(secret), "{secret:?} stored in {item:?}");
            }
        }
    }
    for pk in pks(&plain_items).iter().chain(&pks(&keyed_items)) {
        let (kind, h) = pk.split_once('#').expect("kind#hash");
        assert!(kind == "nonce" || kind == "idem", "{pk}");
        assert_eq!(h.len(), 32, "{pk}");
        assert!(
            h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{pk}"
        );
    }
    let (plain_pks, keyed_pks) = (pks(&plain_items), pks(&keyed_items));
    assert_eq!(keyed_pks.len(), 2);
    for pk in &keyed_pks {
        assert!(!plain_pks.contains(pk), "keyed {pk} equals an unkeyed key");
    }
}

/// An answer whose item would exceed 400 KB (a body at the route's largest
/// allowed `max_response_bytes` plus 20 KB of headers) is delivered once,
/// recorded completed without its body, and a retry is 409
/// `idempotency_response_not_retained` — never left in flight.
async fn an_answer_too_large_for_one_item_is_recorded_not_retained(server: Server) {
    let upstream = Upstream::start().await;
    let settings = server.fresh_table().await;
    let proxy = proxy_on(&upstream, &settings, "").await;
    let big = |n: usize| {
        payment(n)
            .header("x-test-body-size", MAX_RESPONSE_BYTES)
            .header("x-test-header-bytes", 20_000)
    };
    let first = big(1).send(proxy.addr).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body.len(),
        MAX_RESPONSE_BYTES,
        "delivered whole, once"
    );
    let retry = big(2).send(proxy.addr).await;
    assert_eq!(
        retry.status_reason(),
        (409, "idempotency_response_not_retained".into()),
        "{:?}",
        retry.body
    );
    assert_eq!(retry.json()["original_status"], 200);
    assert!(retry.header("retry-after").is_none());
    assert_eq!(upstream.count(), 1, "never executed twice");
}

store_matrix! {
    targets {
        moto => Server::Moto,
        dynalite => Server::Dynalite,
    }
    cases {
        store_keys_hold_no_client_text,
        an_answer_too_large_for_one_item_is_recorded_not_retained,
    }
}

#[test]
fn check_refuses_a_max_response_bytes_that_cannot_fit_one_item() {
    let toml = |kind: &str, max: usize| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\
             [store]\nkind = \"{kind}\"\n[store.dynamodb]\nregion = \"us-east-1\"\n{}",
            routes(max)
        )
    };
    let parse = |text: String| replay_guard::config::Config::parse(&text, "t.toml");
    assert!(parse(toml("dynamodb", MAX_RESPONSE_BYTES)).is_ok());
    assert!(parse(toml("memory", 4 * MAX_RESPONSE_BYTES)).is_ok());
    let errors = parse(toml("dynamodb", MAX_RESPONSE_BYTES + 1))
        .unwrap_err()
        .errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("t.toml:16:"), "{errors:?}");
    assert!(
        errors[0].contains(&format!("the maximum is {MAX_RESPONSE_BYTES}")),
        "{errors:?}"
    );
}

// ---------------------------------------------------------------------------
// Store errors: an invalid call is our bug (500, never failed open); only
// throttling, 5xx, timeouts and connection failures are outages.
// ---------------------------------------------------------------------------

/// A loopback link in front of moto that answers every request for the
/// operations in `refused` with `status` and DynamoDB error `code`, and
/// forwards the rest.
async fn refusing_shim(
    moto: SocketAddr,
    refused: &'static [&'static str],
    status: u16,
    code: &'static str,
) -> SocketAddr {
    struct Refusing {
        refused: &'static [&'static str],
        status: u16,
        code: &'static str,
    }
    impl Tap for Refusing {
        fn before<'a>(&'a self, op: &'a str) -> TapFuture<'a, Option<Response<Full<Bytes>>>> {
            let answer = self
                .refused
                .contains(&op)
                .then(|| dynamodb_error(self.status, self.code));
            Box::pin(async move { answer })
        }
    }
    let tap = Arc::new(Refusing {
        refused,
        status,
        code,
    });
    StoreLink::with_tap(moto, tap).await.addr
}

/// A proxy with `on_error = "allow"` whose store calls go through a shim
/// refusing `refused` operations.
async fn allow_proxy_behind_shim(
    upstream: &Upstream,
    refused: &'static [&'static str],
    status: u16,
    code: &'static str,
) -> TestProxy {
    let moto = MotoServer::shared();
    let table = moto.fresh_table_settings().await.table;
    let moto_addr: SocketAddr = format!("127.0.0.1:{}", moto.port()).parse().unwrap();
    let shim = refusing_shim(moto_addr, refused, status, code).await;
    let store = dynamo_store(&format!("http://{shim}"), &table, 5000, "allow");
    TestProxy::start(&upstream.url(), &format!("{store}\n{}", routes(65_536))).await
}

/// The value of one sample line of the Prometheus text, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    support::metrics::sample(text, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_store_refuses_as_invalid_is_500_and_never_failed_open() {
    let upstream = Upstream::start().await;
    let proxy = allow_proxy_behind_shim(
        &upstream,
        &["PutItem", "GetItem"],
        400,
        "ValidationException",
    )
    .await;
    for n in 1..=3 {
        let reply = payment(n).send(proxy.addr).await;
        assert_eq!(
            reply.status_reason(),
            (500, "internal_error".into()),
            "{:?}",
            reply.body
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains("ValidationException"));
    }
    assert_eq!(
        upstream.count(),
        0,
        "nothing forwarded, whatever on_error says"
    );
    let admin = proxy.admin.unwrap();
    let text = support::metrics::scrape(admin).await;
    assert_eq!(
        metric(
            &text,
            r#"replay_guard_store_errors_total{op="claim_nonce"}"#
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"replay_guard_store_fail_open_total{route="pay"}"#),
        0.0,
        "{text}"
    );
    // A store that refuses our calls refuses requests: not ready.
    assert_eq!(Req::get("/readyz").send(admin).await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_are_outages_failed_open_under_allow() {
    for (status, code) in [(400, "ThrottlingException"), (500, "InternalServerError")] {
        let upstream = Upstream::start().await;
        let proxy = allow_proxy_behind_shim(&upstream, &["PutItem"], status, code).await;
        let reply = payment(1).send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{code}: {:?}", reply.body);
        assert_eq!(upstream.count(), 1, "{code}: failed open, as configured");
        let admin = proxy.admin.unwrap();
        let text = support::metrics::scrape(admin).await;
        assert!(
            metric(&text, r#"replay_guard_store_fail_open_total{route="pay"}"#) >= 1.0,
            "{code}: {text}"
        );
    }
}
