//! The process survives its own log output (SPEC §5, issue 18): a real
//! `replay-guard run` whose stderr reader has exited (every log write
//! fails with EPIPE) keeps answering requests, including the rejections
//! it logs, reloads on `POST /reload`, counts the lost lines, and drains
//! and exits 0 on SIGTERM.

mod support;

use std::time::{Duration, Instant};

use support::binary::ProxyProcess;
use support::client::Req;
use support::upstream::Upstream;

fn toml(upstream: &Upstream) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{}"
shutdown_grace_secs = 5

[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}
"#,
        upstream.url()
    )
}

/// The value of an unlabelled series in the Prometheus text.
fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_pipe_never_stops_requests_reload_or_sigterm() {
    let upstream = Upstream::start().await;
    let mut proxy = ProxyProcess::start_then_close_stderr(&toml(&upstream));
    let admin = proxy.admin.expect("admin listener");
    // Let the reader thread drop its end of the pipe.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for _ in 0..20 {
        // A rejection: logged at info, so each one writes to the dead pipe.
        let reply = Req::post("/payments").send(proxy.addr).await;
        assert_eq!(reply.status_reason(), (400, "missing_timestamp".into()));
        // A plain forward, logged too.
        let reply = Req::get("/other").send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    assert_eq!(
        upstream.count(),
        20,
        "only the pass-through requests arrive"
    );

    let reload = Req::post("/reload").send(admin).await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);

    let metrics = Req::get("/metrics").send(admin).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let dropped = series(&text, "replay_guard_log_lines_dropped_total");
    assert!(
        dropped.is_some_and(|n| n >= 20.0),
        "lost lines are counted: {dropped:?}"
    );

    let asked = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM drains and exits 0: {status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );
}
