//! Reading the proxy's `/metrics` the way a scraper does: the Prometheus
//! text from the admin listener, and one sample's value by its exact series
//! (name and labels as written).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::Req;

/// The value of the sample written exactly as `series` (e.g.
/// `replay_guard_jwks_keys{source="url"}`), `None` when there is none.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The Prometheus text the admin listener `admin` serves.
pub async fn scrape(admin: SocketAddr) -> String {
    let reply = Req::get("/metrics").send(admin).await;
    assert_eq!(reply.status, 200, "GET /metrics");
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// Wait (bounded) until the proxy whose admin listener is `admin` has
/// finished `n` idempotency completion writes (see
/// `TestProxy::until_recorded`).
pub async fn until_recorded(admin: SocketAddr, n: usize) {
    let series = "replay_guard_store_duration_seconds_count{op=\"complete_idempotency\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if sample(&scrape(admin).await, series).unwrap_or(0.0) >= n as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} idempotency records never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
