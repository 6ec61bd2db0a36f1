//! The demo's built-in upstream: a tiny "legacy payments service" on
//! 127.0.0.1:0 that counts and records what reaches it.
//!
//! It answers every request with `200 {"payment_id":"pay_N","hit":N}`, so a
//! replayed answer is visibly the first one. It exists only for
//! `replay-guard demo`; it must never listen on anything but loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path_and_query: String,
    /// Body bytes.
    pub body: Bytes,
}

/// The running demo upstream. Stops when dropped.
#[derive(Debug)]
pub struct DemoUpstream {
    /// Where it listens (always loopback).
    pub addr: SocketAddr,
    /// Every request received, in order.
    received: Arc<Mutex<Vec<Received>>>,
    /// The accept loop, aborted on drop.
    task: JoinHandle<()>,
}

impl DemoUpstream {
    /// Listen on 127.0.0.1 with a free port and start answering.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(answer(request, &log).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// How many requests it received.
    pub fn hits(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

impl Drop for DemoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(request: Request<Incoming>, log: &Mutex<Vec<Received>>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let hit = {
        let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        log.push(Received {
            method: parts.method.to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |pq| pq.to_string()),
            body,
        });
        log.len()
    };
    let mut response = Response::new(Full::new(Bytes::from(format!(
        "{{\"payment_id\":\"pay_{hit}\",\"hit\":{hit}}}"
    ))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
