//! Unit tests of the metrics registry: buckets, start-up series, and the
//! series every route gets at zero.

use super::*;

#[test]
fn request_buckets_reach_the_upstream_timeout() {
    let buckets = request_buckets(Duration::from_secs(30));
    assert_eq!(buckets.0.last(), Some(&30.0));
    assert!(buckets.0.contains(&8.192) && buckets.0.contains(&20.0));
    assert!(buckets.0.windows(2).all(|w| w[0] < w[1]));
    let buckets = request_buckets(Duration::from_millis(1500));
    assert_eq!(buckets.0.last(), Some(&1.5));
    assert!(buckets.0.iter().all(|&b| b <= 1.5));
}

#[test]
fn build_info_and_reload_series_are_there_from_the_start() {
    let text = Metrics::new().encode();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(
            "replay_guard_build_info{{version=\"{version}\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains("replay_guard_config_reloads_total{result=\"error\"} 0"));
    assert!(text.contains("replay_guard_config_last_reload_successful 1"));
}

/// A route's store operations have their error series at 0 from startup,
/// and an idempotency route its lost-ownership series.
#[test]
fn store_series_of_the_operations_a_route_calls_start_at_zero() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\
        [[routes]]\nname = \"idem\"\npath = \"/i\"\nidempotency = { required = true }\n\
        [[routes]]\nname = \"plain\"\npath = \"/p\"\n";
    let config = crate::config::Config::parse(toml, "test.toml").unwrap();
    let metrics = Metrics::new();
    for route in &config.routes {
        let _ = metrics.prepare_route(route);
    }
    let text = metrics.encode();
    for op in [
        "claim_idempotency",
        "complete_idempotency",
        "release_idempotency",
    ] {
        assert!(
            text.contains(&format!("replay_guard_store_errors_total{{op=\"{op}\"}} 0")),
            "{op}: {text}"
        );
    }
    for op in ["complete_idempotency", "release_idempotency"] {
        assert!(
            text.contains(&format!(
                "replay_guard_idempotency_lost_ownership_total{{op=\"{op}\"}} 0"
            )),
            "{op}: {text}"
        );
    }
    assert!(
        !text.contains("op=\"claim_nonce\""),
        "no route claims nonces"
    );
    assert!(!text.contains("op=\"reserve_rate\""));
}
