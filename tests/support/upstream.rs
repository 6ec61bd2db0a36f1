//! A fake legacy service on 127.0.0.1:0 that records every request.
//!
//! Behaviour is steered per request by headers the proxy forwards:
//! `x-test-delay-ms` (sleep before answering), `x-test-status` (status
//! code), `x-test-body-size` (answer with that many bytes),
//! `x-test-header-bytes` (add an `x-test-padding` header that long),
//! `x-test-ratelimit` (answer with the upstream's own `RateLimit` fields). By default it
//! answers 200 with `{"hit":N}` where N counts requests received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// Start on a given loopback address, e.g. one a proxy already points
    /// at while nothing listened there ("the upstream comes back").
    /// Retries the bind briefly (bounded) in case the port lingers.
    pub async fn start_at(addr: SocketAddr) -> Upstream {
        assert!(addr.ip().is_loopback(), "tests stay on loopback");
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(addr).await {
                Ok(listener) => return Self::serve(listener),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot bind the upstream on {addr}: {last:?}");
    }

    fn serve(listener: TcpListener) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(answer(req, log).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The path and query of every request received so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path_and_query).collect()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn answer(req: Request<Incoming>, log: Arc<Mutex<Vec<Seen>>>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let n = {
        let mut log = log.lock().unwrap();
        log.push(Seen {
            method: parts.method.to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers.clone(),
            body,
        });
        log.len()
    };
    if let Some(ms) = header("x-test-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = header("x-test-status")
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let body = match header("x-test-body-size") {
        Some(size) => Bytes::from(vec![b'x'; size as usize]),
        None => Bytes::from(format!("{{\"hit\":{n}}}")),
    };
    let padding = "p".repeat(header("x-test-header-bytes").unwrap_or(0) as usize);
    let mut response = Response::builder();
    if !padding.is_empty() {
        response = response.header("x-test-padding", padding);
    }
    if parts.headers.contains_key("x-test-ratelimit") {
        // The upstream's own rate-limit fields (draft-ietf-httpapi-ratelimit-headers).
        response = response
            .header("ratelimit-policy", "\"upstream\";q=1000;w=3600")
            .header("ratelimit", "\"upstream\";r=999;t=3600");
    }
    response
        .status(status)
        .header("content-type", "application/json")
        .header("x-upstream", "legacy")
        .header("connection", "x-upstream-hop")
        .header("x-upstream-hop", "must-not-reach-client")
        .header("keep-alive", "timeout=5")
        .header("set-cookie", "session=abc")
        .body(Full::new(body))
        .unwrap()
}
