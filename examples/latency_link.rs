//! Benchmark helper: a fixed-latency TCP link, and a trivial upstream.
//!
//! ```text
//! latency_link link LISTEN TARGET DELAY_MS   # forward LISTEN → TARGET, +DELAY_MS per round trip
//! latency_link upstream LISTEN               # answer every request 200 {"ok":true}
//! ```
//!
//! `link` accepts TCP connections on LISTEN and forwards each to TARGET;
//! every chunk read in either direction is written out DELAY_MS/2 after
//! it was read, so a request/response exchange takes DELAY_MS longer — one
//! "round trip" of a store in another zone. The link is pipelined: each
//! chunk is timestamped when read and released at its own deadline, so
//! chunks in flight overlap and concurrent requests each pay the delay
//! once, not one after the other. `bench/store_link.sh` puts it between
//! replay-guard and moto to count the store round trips a client waits for.
//!
//! Only for loopback benchmarks: it refuses a non-loopback listen address,
//! holds at most 512 connections and 256 chunks per direction per
//! connection, and never inspects what it forwards.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// Most connections held at once.
const MAX_CONNECTIONS: usize = 512;
/// Most chunks waiting for their deadline, per direction and connection.
const MAX_CHUNKS: usize = 256;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: latency_link link LISTEN TARGET DELAY_MS | latency_link upstream LISTEN";
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["link", listen, target, delay_ms] => {
            let listen: SocketAddr = listen.parse()?;
            let target: SocketAddr = target.parse()?;
            let delay = Duration::from_micros(delay_ms.parse::<u64>()? * 1000 / 2);
            link(loopback(listen)?, target, delay).await
        }
        ["upstream", listen] => upstream(loopback(listen.parse()?)?).await,
        _ => Err(usage.into()),
    }
}

fn loopback(addr: SocketAddr) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err("latency_link listens on a loopback address only".into())
    }
}

/// Accept and forward, each direction delayed by `delay` (half the round trip).
async fn link(
    listen: SocketAddr,
    target: SocketAddr,
    delay: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    eprintln!(
        "latency_link: {listen} -> {target}, +{} ms per round trip",
        delay.as_millis() * 2
    );
    loop {
        let (client, _) = listener.accept().await?;
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // over the cap: dropped
        };
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pipe(client_read, server_write, delay),
                pipe(server_read, client_write, delay)
            );
        });
    }
}

/// Copy `from` to `to`, each chunk written `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(MAX_CHUNKS);
    let reader = async move {
        loop {
            let mut buffer = BytesMut::with_capacity(16 * 1024);
            match from.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let due = Instant::now() + delay;
                    if tx.send((due, buffer.freeze())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A trivial HTTP/1.1 upstream: 200 `{"ok":true}` to everything.
async fn upstream(listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(|_request: Request<Incoming>| async {
                let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(response)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
