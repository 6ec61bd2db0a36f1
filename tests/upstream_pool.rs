//! The upstream connection pool, seen from a raw-socket upstream that
//! counts connections and requests: keep-alive connections are reused
//! (including after empty bodies), an upstream that silently closes
//! every connection still gets each request exactly once, and a body
//! dropped half way never puts a half-read connection back.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::client::Req;
use support::proxy::TestProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `Content-Length: 2`, connection kept open.
    KeepAlive,
    /// `Content-Length: 0`, connection kept open.
    EmptyBody,
    /// Answers, then closes the connection without saying so.
    SilentClose,
    /// Answers the first request on a connection; reads the second whole,
    /// then closes without answering (it may have executed it).
    DropSecond,
}

#[derive(Clone)]
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    bodies: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl RawUpstream {
    async fn start(mode: Mode) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = RawUpstream {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            requests: Arc::default(),
            bodies: Arc::default(),
        };
        let shared = upstream.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, mode, shared.clone()));
            }
        });
        upstream
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests read so far.
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The request bodies received, in order.
    fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Serve requests on one connection (bounded by the client closing it).
async fn serve(mut stream: TcpStream, mode: Mode, upstream: RawUpstream) {
    let mut buffer = Vec::new();
    let mut served = 0;
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        upstream.requests.fetch_add(1, Ordering::SeqCst);
        upstream.bodies.lock().unwrap().push(body);
        served += 1;
        if mode == Mode::DropSecond && served == 2 {
            return;
        }
        let answer: &[u8] = match mode {
            Mode::EmptyBody => b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        };
        if stream.write_all(answer).await.is_err() {
            return;
        }
        if mode == Mode::SilentClose {
            return;
        }
    }
}

/// One worker, so every request is sent from one thread and the
/// connection counts are exact (each worker keeps its own connections).
const PASS: &str = "workers = 1\n[[routes]]\nname = \"pass\"\npath = \"/{*rest}\"\n";

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let upstream = RawUpstream::start(Mode::KeepAlive).await;
    let proxy = TestProxy::start(&upstream.url(), PASS).await;
    for i in 0..20 {
        let reply = Req::get(&format!("/r/{i}")).send(proxy.addr).await;
        assert_eq!(reply.status, 200, "request {i}");
        assert_eq!(&reply.body[..], b"ok");
    }
    assert_eq!(upstream.requests(), 20);
    assert_eq!(upstream.connections(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn each_worker_keeps_its_own_connections() {
    let upstream = RawUpstream::start(Mode::KeepAlive).await;
    let routes = PASS.replace("workers = 1", "workers = 3");
    let proxy = TestProxy::start(&upstream.url(), &routes).await;
    for i in 0..30 {
        let reply = Req::get(&format!("/r/{i}")).send(proxy.addr).await;
        assert_eq!(reply.status, 200, "request {i}");
    }
    assert_eq!(upstream.requests(), 30);
    let connections = upstream.connections();
    assert!(
        (1..=3).contains(&connections),
        "{connections} upstream connections for 30 sequential requests on 3 workers"
    );
    proxy.shutdown().await;
}

/// One GET on an open client connection; the answer's body must be `ok`.
async fn get_on(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\nok") {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn client_connections_are_spread_over_the_workers() {
    // Two client connections go to the two workers (the one with fewer
    // open connections gets the next), and each worker keeps its own
    // upstream connection: two upstream connections, whatever the order.
    let upstream = RawUpstream::start(Mode::KeepAlive).await;
    let routes = PASS.replace("workers = 1", "workers = 2");
    let proxy = TestProxy::start(&upstream.url(), &routes).await;
    let mut a = TcpStream::connect(proxy.addr).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..5 {
        get_on(&mut a).await;
        get_on(&mut b).await;
    }
    assert_eq!(upstream.requests(), 10);
    assert_eq!(upstream.connections(), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn empty_bodies_also_give_the_connection_back() {
    let upstream = RawUpstream::start(Mode::EmptyBody).await;
    let proxy = TestProxy::start(&upstream.url(), PASS).await;
    for i in 0..10 {
        let reply = Req::get("/empty").send(proxy.addr).await;
        assert_eq!(reply.status, 200, "request {i}");
        assert!(reply.body.is_empty());
    }
    assert_eq!(upstream.requests(), 10);
    assert_eq!(upstream.connections(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_upstream_closing_every_connection_gets_each_request_once() {
    let upstream = RawUpstream::start(Mode::SilentClose).await;
    let proxy = TestProxy::start(&upstream.url(), PASS).await;
    for i in 0..30 {
        let reply = Req::post("/pay")
            .body(format!("payment {i}"))
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200, "request {i}: {:?}", reply.body);
    }
    // Every request reached the upstream exactly once, in order.
    let bodies = upstream.bodies();
    let expected: Vec<Vec<u8>> = (0..30)
        .map(|i| format!("payment {i}").into_bytes())
        .collect();
    assert_eq!(bodies, expected);
    assert_eq!(upstream.connections(), 30);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_request_that_reached_the_upstream_is_never_sent_again() {
    let upstream = RawUpstream::start(Mode::DropSecond).await;
    let proxy = TestProxy::start(&upstream.url(), PASS).await;
    let first = Req::post("/pay").body("first").send(proxy.addr).await;
    assert_eq!(first.status, 200);
    // Sent on the reused connection, read by the upstream, never answered:
    // a 502, not a second delivery on a new connection.
    let second = Req::post("/pay").body("second").send(proxy.addr).await;
    assert_eq!(second.status, 502);
    assert_eq!(second.reason(), "upstream_unavailable");
    let bodies = upstream.bodies();
    assert_eq!(bodies, vec![b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(upstream.connections(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_open_at_most_one_connection_each() {
    let upstream = RawUpstream::start(Mode::KeepAlive).await;
    let proxy = TestProxy::start(&upstream.url(), PASS).await;
    for _ in 0..3 {
        let requests: Vec<Req> = (0..16).map(|i| Req::get(&format!("/c/{i}"))).collect();
        let replies =
            futures_util::future::join_all(requests.iter().map(|r| r.send(proxy.addr))).await;
        assert!(replies.iter().all(|r| r.status == 200));
    }
    assert_eq!(upstream.requests(), 48);
    let connections = upstream.connections();
    assert!(
        (1..=16).contains(&connections),
        "{connections} connections for 16 concurrent requests, 3 rounds"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_body_dropped_half_way_does_not_return_its_connection() {
    // The regular test upstream streams a large body; the client reads the
    // head only and hangs up, then a second request must still succeed
    // with a whole, fresh answer.
    let upstream = support::upstream::Upstream::start().await;
    let proxy = TestProxy::start(&upstream.url(), PASS).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nhost: a\r\nx-test-body-size: 4000000\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    drop(stream);
    for _ in 0..5 {
        let reply = Req::get("/small").send(proxy.addr).await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.json()["hit"].is_u64(),
            "a whole answer: {:?}",
            reply.body
        );
    }
    assert_eq!(upstream.count(), 6);
    proxy.shutdown().await;
}
