//! Benchmark helper: the floor under replay-guard's pass-through cost.
//!
//! A reverse proxy made of the parts replay-guard's request path stands
//! on and nothing else: hyper's HTTP/1 server on one current-thread tokio
//! runtime per worker thread (as `[server] workers`), and replay-guard's
//! upstream pool (`replay_guard::upstream`). No route table, no checks, no
//! header hygiene, no metrics, no request id, no graceful shutdown. CPU per
//! request measured against it shows how much of replay-guard's cost is
//! its own code and how much is the HTTP stack (BENCHMARKS.md).
//!
//! `cargo run --release --example hyper_floor -- 127.0.0.1:18086 \
//!     http://127.0.0.1:18080 2 60`
//!
//! Only for loopback benchmarks: it refuses a non-loopback listen address
//! and exits by itself after SECONDS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use replay_guard::body::{self, Body};
use replay_guard::config;
use replay_guard::upstream::Upstream;
use tokio::net::TcpSocket;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The allocator replay-guard's binary uses, so the comparison is like
/// for like.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hyper_floor LISTEN UPSTREAM_URL WORKERS SECONDS";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let target: Uri = args.next().ok_or(usage)?.parse()?;
    let workers: usize = args.next().ok_or(usage)?.parse()?;
    let seconds: u64 = args.next().ok_or(usage)?.parse()?;
    if !listen.ip().is_loopback() {
        return Err("hyper_floor listens on loopback addresses only".into());
    }
    let upstream = config::Upstream {
        scheme: target.scheme().cloned().ok_or(usage)?,
        authority: target.authority().cloned().ok_or(usage)?,
    };
    let upstream = Upstream::new(
        &upstream,
        Duration::from_secs(2),
        Duration::from_secs(30),
        workers,
    );
    let threads: Vec<_> = (0..workers.max(1))
        .map(|index| {
            let upstream = upstream.clone();
            std::thread::spawn(move || worker(index, listen, upstream, seconds))
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a worker thread panicked")??;
    }
    Ok(())
}

/// One worker: its own listening socket on `listen` (`SO_REUSEPORT`: the
/// kernel spreads connections over the workers), its own event loop.
fn worker(index: usize, listen: SocketAddr, upstream: Upstream, seconds: u64) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(1024)?;
        let stop = tokio::time::sleep(Duration::from_secs(seconds));
        tokio::pin!(stop);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                () = &mut stop => return Ok(()),
            };
            stream.set_nodelay(true)?;
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let upstream = upstream.clone();
                    async move { Ok::<_, Infallible>(forward(&upstream, request, index).await) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Send the request on as it came; any failure is a bare 502.
async fn forward(upstream: &Upstream, request: Request<Incoming>, worker: usize) -> Response<Body> {
    let request = request.map(body::boxed);
    match upstream.send(request, worker).await {
        Ok(response) => response.map(body::boxed),
        Err(_) => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}
