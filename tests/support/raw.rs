//! Raw bytes over a `TcpStream`, so the framing is exactly what an
//! attacker would send, and what came back.

use std::net::SocketAddr;
use std::time::Duration;

use replay_guard::client::{sign, SignRequest};
use replay_guard::config::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::proxy::T0;

/// How long a raw exchange waits for the proxy to close by default.
pub const WAIT: Duration = Duration::from_secs(2);

/// What came back on a raw connection.
#[derive(Debug)]
pub struct Raw {
    /// Everything read, lossily as text.
    pub text: String,
    /// Whether the proxy closed the connection before `wait` ran out.
    pub closed: bool,
}

impl Raw {
    /// Status codes of every response on the connection, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.text
            .match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| self.text.get(i + 9..i + 12)?.parse().ok())
            .collect()
    }

    /// The `reason` member of the first response, if it is a problem.
    pub fn reason(&self) -> String {
        let Some(start) = self.text.find("\"reason\":\"") else {
            return String::new();
        };
        let rest = &self.text[start + 10..];
        rest[..rest.find('"').unwrap_or(0)].to_owned()
    }
}

/// Send raw bytes, then read until the proxy closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The proxy may refuse and close before reading everything.
    let _ = stream.write_all(bytes).await;
    read_until_close(&mut stream, wait).await
}

/// [`raw`] with the default [`WAIT`], asserting the statuses of every
/// response on the connection; `what` names the case in failures.
pub async fn expect_raw(
    addr: SocketAddr,
    bytes: impl AsRef<[u8]>,
    statuses: &[u16],
    what: &str,
) -> Raw {
    let answer = raw(addr, bytes.as_ref(), WAIT).await;
    assert_eq!(answer.statuses(), statuses, "{what}: {answer:?}");
    answer
}

/// [`expect_raw`] for a request the proxy must refuse and hang up on:
/// one `status`, and the connection closed.
pub async fn expect_refused_and_closed(
    addr: SocketAddr,
    bytes: impl AsRef<[u8]>,
    status: u16,
    what: &str,
) {
    let answer = expect_raw(addr, bytes, &[status], what).await;
    assert!(answer.closed, "{what}");
}

/// Read until the proxy closes or `wait` passes.
pub async fn read_until_close(stream: &mut TcpStream, wait: Duration) -> Raw {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    Raw {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    }
}

/// A raw `POST <target>` of the body `{}` with one `Host` header per entry
/// of `hosts`, signed by `key_id` with `secret` at [`T0`] as sent to
/// `signed_host` + `/signed`.
pub fn signed_raw(
    target: &str,
    hosts: &[&str],
    signed_host: &str,
    (key_id, secret): (&str, &str),
    nonce: &str,
) -> String {
    let host_lines: String = hosts.iter().map(|h| format!("Host: {h}\r\n")).collect();
    let signed = sign(
        &Secret::new(secret.as_bytes().to_vec()),
        &SignRequest {
            method: "POST",
            host: signed_host,
            path_and_query: "/signed",
            body: b"{}",
            timestamp: T0.to_string(),
            nonce: nonce.to_owned(),
            key_id,
        },
    );
    let headers: String = signed
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    format!(
        "POST {target} HTTP/1.1\r\n{host_lines}{headers}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
}
