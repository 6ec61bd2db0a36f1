//! Benchmark helper: a replay storm. Signs ONE request and sends N
//! byte-for-byte copies at once, each on its own connection, then reports
//! how many were answered 2xx (should be 1), the statuses, and the time
//! until every answer arrived.
//!
//! `RG_BENCH_SECRET=... cargo run --release --example replay_storm -- \
//!     http://127.0.0.1:18082/protected bench-client RG_BENCH_SECRET [N]`
//!
//! Only for loopback benchmarks: bounded (N requests, 30 s timeout).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use replay_guard::client::{self, host_for, SignRequest};
use replay_guard::clock::{Clock, SystemClock};
use replay_guard::config::Secret;
use tokio::sync::Barrier;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: replay_storm URL KEY_ID SECRET_ENV [N]";
    let url: Uri = args.next().ok_or(usage)?.parse()?;
    let key_id = args.next().ok_or(usage)?;
    let secret = std::env::var(args.next().ok_or(usage)?)?;
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let host = host_for(&url).ok_or("URL needs a host")?;
    let body = Bytes::from_static(br#"{"amount":1250,"currency":"EUR"}"#);
    let signed = client::sign(
        &Secret::new(secret.into_bytes()),
        &SignRequest {
            method: "POST",
            host: &host,
            path_and_query: url.path_and_query().map_or("/", |p| p.as_str()),
            body: &body,
            timestamp: SystemClock.now_secs().to_string(),
            nonce: client::new_nonce(),
            key_id: &key_id,
        },
    );
    let headers = Arc::new(signed.headers);
    // Open every connection first (a warm-up GET each), so the storm
    // measures the proxy, not TCP handshakes.
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build_http::<Full<Bytes>>();
        let (url, headers, body, barrier) =
            (url.clone(), headers.clone(), body.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let warm_url = format!("http://{}/pass", url.authority().map_or("", |a| a.as_str()));
            let warm = Request::get(warm_url).body(Full::new(Bytes::new()));
            if let Ok(warm) = warm {
                if let Ok(Ok(r)) =
                    tokio::time::timeout(Duration::from_secs(10), client.request(warm)).await
                {
                    let _ = r.into_body().collect().await;
                }
            }
            barrier.wait().await;
            let mut request = Request::post(url);
            for (name, value) in headers.iter() {
                request = request.header(name.as_str(), value.as_str());
            }
            let request = request.body(Full::new(body)).ok()?;
            let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
                .await
                .ok()?
                .ok()?;
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            Some((status, Instant::now()))
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut failed = 0;
    let mut last = started;
    for task in tasks {
        match task.await {
            Ok(Some((status, at))) => {
                *statuses.entry(status).or_default() += 1;
                last = last.max(at);
            }
            _ => failed += 1,
        }
    }
    let ok: usize = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    println!(
        "{{\"duplicates\":{n},\"admitted\":{ok},\"failed\":{failed},\"statuses\":{:?},\"all_answered_ms\":{:.2}}}",
        statuses.iter().map(|(s, c)| format!("{s}={c}")).collect::<Vec<_>>(),
        (last - started).as_secs_f64() * 1000.0
    );
    Ok(())
}
