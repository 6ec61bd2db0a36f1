//! A loopback HTTP link in front of a DynamoDB-compatible server (moto,
//! dynalite): the proxy's store calls go through it, so a test can see
//! them on the wire by operation (`X-Amz-Target`), refuse them all (an
//! outage that keeps the table), or hold, pair and answer them through a
//! [`Tap`]. Every address is 127.0.0.1.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// A future a [`Tap`] returns.
pub type TapFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a test does to the requests of one operation on the link.
pub trait Tap: Send + Sync + 'static {
    /// Before `op` is forwarded (after it is logged): wait, or answer it
    /// here (`Some`: the server never sees it).
    fn before<'a>(&'a self, _op: &'a str) -> TapFuture<'a, Option<Response<Full<Bytes>>>> {
        Box::pin(async { None })
    }

    /// After the server answered `op`.
    fn after<'a>(&'a self, _op: &'a str) -> TapFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// No tap: every request is forwarded as it is.
pub struct Plain;

impl Tap for Plain {}

/// The link.
pub struct StoreLink {
    /// Where the proxy's store endpoint points.
    pub addr: SocketAddr,
    /// The operation of every request that arrived, with ` (refused)`
    /// appended to those answered 503 for [`StoreLink::refuse`].
    pub ops: Arc<Mutex<Vec<String>>>,
    /// While set, every request is answered 503 and never reaches the
    /// server.
    pub refuse: Arc<AtomicBool>,
}

struct Shared {
    server: SocketAddr,
    ops: Arc<Mutex<Vec<String>>>,
    refuse: Arc<AtomicBool>,
    tap: Arc<dyn Tap>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl StoreLink {
    /// A link to `server` that forwards everything.
    pub async fn start(server: SocketAddr) -> StoreLink {
        StoreLink::with_tap(server, Arc::new(Plain)).await
    }

    /// A link to `server` whose requests pass through `tap`.
    pub async fn with_tap(server: SocketAddr, tap: Arc<dyn Tap>) -> StoreLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = StoreLink {
            addr: listener.local_addr().unwrap(),
            ops: Arc::default(),
            refuse: Arc::default(),
        };
        let shared = Arc::new(Shared {
            server,
            ops: link.ops.clone(),
            refuse: link.refuse.clone(),
            tap,
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.forward(request).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        link
    }

    /// The endpoint URL for `[store.dynamodb] endpoint_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The operations seen since the last call.
    pub fn take_ops(&self) -> Vec<String> {
        take(&self.ops)
    }
}

/// The operations in `ops`, emptied.
pub fn take(ops: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *ops.lock().unwrap())
}

/// A DynamoDB error response: `status` with the error `code`.
pub fn dynamodb_error(status: u16, code: &str) -> Response<Full<Bytes>> {
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"refused by the test link"}}"#
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

impl Shared {
    async fn forward(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (mut parts, body) = request.into_parts();
        let op = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('.').next())
            .unwrap_or("?")
            .to_owned();
        if self.refuse.load(Ordering::SeqCst) {
            self.ops.lock().unwrap().push(format!("{op} (refused)"));
            return Response::builder()
                .status(503)
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
        self.ops.lock().unwrap().push(op.clone());
        if let Some(answer) = self.tap.before(&op).await {
            return answer;
        }
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        parts.uri = format!("http://{}{path}", self.server).parse().unwrap();
        let response = match self
            .client
            .request(Request::from_parts(parts, Full::new(body)))
            .await
        {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                Response::from_parts(parts, Full::new(body))
            }
            Err(_) => Response::builder()
                .status(502)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        };
        self.tap.after(&op).await;
        response
    }
}
