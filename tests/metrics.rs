//! `/metrics` of the real binary (SPEC §7, second edition): build info,
//! end-to-end request durations, the memory store's size, reload time and
//! success, `process_*`, every counter series of a configured route at 0
//! from the start, and duration buckets that reach the upstream timeout.

mod support;

use support::binary::ProxyProcess;
use support::client::Req;
use support::upstream::Upstream;

fn toml(upstream: &Upstream, timeout_ms: u64) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{}"
upstream_timeout_ms = {timeout_ms}
unmatched = "reject"

[store.memory]
max_entries = 4321

[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}

[[routes]]
name = "search"
path = "/search"
rate_limit = {{ per_second = 1, burst = 5 }}

[[routes]]
name = "health"
path = "/health"
"#,
        upstream.url()
    )
}

async fn scrape(proxy: &ProxyProcess) -> String {
    support::metrics::scrape(proxy.admin.expect("admin listener")).await
}

use support::metrics::sample as value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_series_exists_at_zero_before_the_first_request() {
    let upstream = Upstream::start().await;
    let proxy = ProxyProcess::start(&toml(&upstream, 30_000));
    let text = scrape(&proxy).await;
    for route in ["create-payment", "search", "health", "unmatched"] {
        for outcome in ["forwarded", "rejected", "replayed", "error"] {
            let series =
                format!(r#"replay_guard_requests_total{{route="{route}",outcome="{outcome}"}}"#);
            assert_eq!(value(&text, &series), Some(0.0), "{series} in\n{text}");
        }
    }
    let rejections = |route: &str, reasons: &[&str]| {
        for reason in reasons {
            let series =
                format!(r#"replay_guard_rejections_total{{route="{route}",reason="{reason}"}}"#);
            assert_eq!(value(&text, &series), Some(0.0), "{series} in\n{text}");
        }
    };
    rejections(
        "create-payment",
        &[
            "missing_timestamp",
            "stale_timestamp",
            "future_timestamp",
            "missing_nonce",
            "replayed_nonce",
            "store_unavailable",
            "upstream_timeout",
        ],
    );
    rejections("search", &["rate_limited", "upstream_unavailable"]);
    assert_eq!(
        value(
            &text,
            r#"replay_guard_store_fail_open_total{route="create-payment"}"#
        ),
        Some(0.0)
    );
    rejections("unmatched", &["route_not_allowed", "malformed_request"]);
    // The store error series of the operations the routes call, at 0
    // before the first error; none for operations no route calls.
    assert_eq!(
        value(
            &text,
            r#"replay_guard_store_errors_total{op="claim_nonce"}"#
        ),
        Some(0.0),
        "{text}"
    );
    assert!(!text.contains(r#"replay_guard_store_errors_total{op="claim_idempotency"}"#));
    assert!(!text.contains("replay_guard_idempotency_lost_ownership_total{"));
    // Only reasons a route can produce: no nonce reasons on a rate limit.
    assert!(!text.contains(r#"route="search",reason="replayed_nonce""#));
    assert!(!text.contains(r#"route="health",reason="rate_limited""#));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_info_durations_memory_store_reloads_and_process_series() {
    let upstream = Upstream::start().await;
    let proxy = ProxyProcess::start(&toml(&upstream, 30_000));
    let reply = Req::get("/search").send(proxy.addr).await;
    assert_eq!(reply.status, 200);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let payment = Req::post("/payments").fresh(now, &support::client::nonce(7));
    assert_eq!(payment.send(proxy.addr).await.status, 200);
    assert_eq!(payment.send(proxy.addr).await.reason(), "replayed_nonce");
    let text = scrape(&proxy).await;

    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(
            &text,
            &format!(r#"replay_guard_build_info{{version="{version}"}}"#)
        ),
        Some(1.0),
        "{text}"
    );
    // End to end, every outcome: the forwarded search, the payment and its
    // refused replay.
    assert_eq!(
        value(
            &text,
            r#"replay_guard_request_duration_seconds_count{route="search"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"replay_guard_request_duration_seconds_count{route="create-payment"}"#
        ),
        Some(2.0)
    );
    // The nonce is one live record of at most 4321.
    assert_eq!(value(&text, "replay_guard_memory_store_entries"), Some(1.0));
    assert_eq!(
        value(&text, "replay_guard_memory_store_capacity"),
        Some(4321.0)
    );
    // Startup counts as a successful load; no reload has failed.
    assert_eq!(
        value(&text, "replay_guard_config_last_reload_successful"),
        Some(1.0)
    );
    let loaded = value(
        &text,
        "replay_guard_config_last_reload_success_timestamp_seconds",
    )
    .expect("reload timestamp");
    assert!((loaded - now as f64).abs() < 120.0, "{loaded} vs {now}");
    assert_eq!(
        value(
            &text,
            r#"replay_guard_config_reloads_total{result="error"}"#
        ),
        Some(0.0)
    );
    // process_* like every other exporter.
    assert!(
        value(&text, "process_cpu_seconds_total").is_some(),
        "{text}"
    );
    assert!(value(&text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6));
    assert!(value(&text, "process_open_fds").is_some_and(|n| n >= 3.0));
    assert!(value(&text, "process_start_time_seconds").is_some_and(|t| t > 1e9));
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_buckets_reach_the_configured_upstream_timeout() {
    let upstream = Upstream::start().await;
    for (timeout_ms, last) in [(30_000, "30.0"), (45_000, "45.0"), (1_500, "1.5")] {
        let proxy = ProxyProcess::start(&toml(&upstream, timeout_ms));
        let text = scrape(&proxy).await;
        for family in ["upstream_duration_seconds", "request_duration_seconds"] {
            let bucket = format!(r#"replay_guard_{family}_bucket{{le="{last}",route="search"}}"#);
            assert_eq!(value(&text, &bucket), Some(0.0), "{bucket} in\n{text}");
        }
    }
}
