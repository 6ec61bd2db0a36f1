//! A small HTTP client for tests, plus request signing as a client would.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use replay_guard::client::{sign, SignRequest};
use replay_guard::config::Secret;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The problem+json `reason`, or "" when the answer is not a problem.
    pub fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_owned()
    }

    /// The status code and the `reason`, to compare in one assertion.
    pub fn status_reason(&self) -> (u16, String) {
        (self.status.as_u16(), self.reason())
    }

    /// Assert this is a stored answer replayed (`Idempotent-Replayed: true`).
    #[track_caller]
    pub fn assert_replayed(&self) {
        assert_eq!(
            self.header("idempotent-replayed").as_deref(),
            Some("true"),
            "not a replay: {} {:?}",
            self.status,
            self.body
        );
    }

    /// Assert this answer was executed, not replayed (no
    /// `Idempotent-Replayed`).
    #[track_caller]
    pub fn assert_not_replayed(&self) {
        assert_eq!(
            self.header("idempotent-replayed"),
            None,
            "a replay: {} {:?}",
            self.status,
            self.body
        );
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// One request builder.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.parse().unwrap(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn post(path: &str) -> Req {
        Req::new("POST", path)
    }

    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }

    pub fn header(mut self, name: &str, value: impl ToString) -> Req {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }

    /// Replace (or add) a header, keeping the others.
    pub fn replace_header(self, name: &str, value: impl ToString) -> Req {
        self.without_header(name).header(name, value)
    }

    /// Remove every value of a header.
    pub fn without_header(mut self, name: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Req {
        self.body = body.into();
        self
    }

    /// Add timestamp and nonce headers.
    pub fn fresh(self, timestamp: u64, nonce: &str) -> Req {
        self.header("X-Request-Timestamp", timestamp)
            .header("X-Request-Nonce", nonce)
    }

    /// Sign as a client would for `host` (the Host header the client sends).
    pub fn signed(
        mut self,
        host: &str,
        key_id: &str,
        secret: &str,
        timestamp: u64,
        nonce: &str,
    ) -> Req {
        let signed = sign(
            &Secret::new(secret.as_bytes().to_vec()),
            &SignRequest {
                method: self.method.as_str(),
                host,
                path_and_query: &self.path,
                body: &self.body,
                timestamp: timestamp.to_string(),
                nonce: nonce.to_owned(),
                key_id,
            },
        );
        for (name, value) in signed.headers {
            self.headers.push((name, value));
        }
        self
    }

    pub async fn send(&self, addr: SocketAddr) -> Reply {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(format!("http://{addr}{}", self.path));
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder.body(Full::new(self.body.clone())).unwrap();
        let response = client.request(request).await.expect("request to the proxy");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// A nonce unique within a test run.
pub fn nonce(i: usize) -> String {
    format!("test-nonce-{i:016}")
}

/// POST each of `paths` with no replay headers; every answer must be
/// `status` with `reason`.
pub async fn expect_each_post(addr: SocketAddr, paths: &[&str], status: u16, reason: &str) {
    for path in paths {
        let reply = Req::post(path).send(addr).await;
        assert_eq!(
            (reply.status.as_u16(), reply.reason().as_str()),
            (status, reason),
            "{path}"
        );
    }
}
