//! Sending: one fresh connection per request to the URL's host and port
//! (TLS for `https://`, verified against the system roots), the request's
//! exact bytes written as they are, and the answer read back — status,
//! headers and body, bounded in size and time.
//!
//! Raw bytes rather than an HTTP client, so that duplicate `Host` headers,
//! both framings, absolute-form targets and odd path spellings reach the
//! target exactly as an attacker would send them. This module must never
//! connect anywhere but the one [`Target`], never retry, and never wait
//! longer than the target's timeout for one exchange.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The most of one answer that is read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The one place `probe` talks to.
#[derive(Clone)]
pub struct Target {
    /// Host name or address, as in the URL.
    host: String,
    /// Port (the scheme's default when the URL names none).
    port: u16,
    /// TLS for `https://`.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Bound on one whole exchange (connect, write, read).
    timeout: Duration,
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// replay-guard's problem+json `reason`, when the body is one.
    pub fn reason(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value["reason"].as_str().map(str::to_owned)
    }
}

/// What one exchange gave.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An answer, after `ms`.
    Answered { response: Response, ms: u64 },
    /// No answer: timeout, refused or reset connection, unreadable reply.
    Failed { error: String, ms: u64 },
}

impl Outcome {
    /// Milliseconds the exchange took.
    pub fn ms(&self) -> u64 {
        match self {
            Outcome::Answered { ms, .. } | Outcome::Failed { ms, .. } => *ms,
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Target {
    /// The target of a parsed `http://` or `https://` URI.
    pub fn new(uri: &http::Uri, timeout: Duration) -> Result<Target, String> {
        let authority = uri.authority().ok_or("the URL has no host")?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let https = uri.scheme_str() == Some("https");
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| format!("{host} is not a valid TLS server name"))?;
            Some((TlsConnector::from(Arc::new(tls_config()?)), name))
        } else {
            None
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            tls,
            timeout,
        })
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether a connection can be opened (and TLS negotiated).
    pub async fn reachable(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no connection within {:?}", self.timeout)),
        }
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                Ok(Box::new(tls))
            }
        }
    }

    /// Send `bytes` on a new connection and read one answer; `head` when
    /// the request was a HEAD (its answer has no body).
    pub async fn exchange(&self, bytes: &[u8], head: bool) -> Outcome {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, async {
            let mut stream = self.connect().await?;
            // A target may refuse and close before reading everything.
            let _ = stream.write_all(bytes).await;
            let _ = stream.flush().await;
            read_answer(&mut stream, head).await
        })
        .await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(Ok(response)) => Outcome::Answered { response, ms },
            Ok(Err(error)) => Outcome::Failed { error, ms },
            Err(_) => Outcome::Failed {
                error: format!("no answer within {} ms", self.timeout.as_millis()),
                ms,
            },
        }
    }
}

/// Client TLS with the system's root certificates.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    use hyper_rustls::ConfigBuilderExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_native_roots()
        .map_err(|e| format!("no system root certificates: {e}"))?
        .with_no_client_auth();
    Ok(config)
}

/// Read one response (skipping `1xx` interim answers).
async fn read_answer(stream: &mut Box<dyn Stream>, head: bool) -> Result<Response, String> {
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        let end = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break end;
            }
            if !read_more(stream, &mut buf).await? {
                return Err(if buf.is_empty() {
                    "connection closed without an answer".into()
                } else {
                    "connection closed inside the answer's head".into()
                });
            }
        };
        let (status, headers) = parse_head(&buf[..end])?;
        buf.drain(..end + 4);
        if (100..200).contains(&status) {
            continue;
        }
        let body = read_body(
            stream,
            buf,
            &headers,
            head || status == 204 || status == 304,
        )
        .await?;
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

/// Read more bytes; `false` at end of stream. Errors on a reset or on an
/// answer larger than [`MAX_ANSWER_BYTES`].
async fn read_more(stream: &mut Box<dyn Stream>, buf: &mut Vec<u8>) -> Result<bool, String> {
    if buf.len() > MAX_ANSWER_BYTES {
        return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
    }
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status code and headers of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP/1.x answer: {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

/// The body after the head: by `Transfer-Encoding: chunked`, by
/// `Content-Length`, or to the end of the stream.
async fn read_body(
    stream: &mut Box<dyn Stream>,
    mut buf: Vec<u8>,
    headers: &[(String, String)],
    none: bool,
) -> Result<Vec<u8>, String> {
    if none {
        return Ok(Vec::new());
    }
    let value = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if value("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            if let Some(body) = dechunk(&buf) {
                return Ok(body);
            }
            if !read_more(stream, &mut buf).await? {
                return Err("connection closed inside a chunked body".into());
            }
        }
    }
    if let Some(length) = value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < length.min(MAX_ANSWER_BYTES) {
            if !read_more(stream, &mut buf).await? {
                break;
            }
        }
        buf.truncate(length);
        return Ok(buf);
    }
    while read_more(stream, &mut buf).await? {}
    Ok(buf)
}

/// The body of a complete chunked encoding, `None` while incomplete.
fn dechunk(mut buf: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(buf, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&buf[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buf = &buf[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if buf.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_chunks_parse() {
        let (status, headers) =
            parse_head(b"HTTP/1.1 409 Conflict\r\nContent-Type: application/problem+json").unwrap();
        assert_eq!(status, 409);
        assert_eq!(headers[0].0, "content-type");
        assert!(parse_head(b"SSH-2.0-OpenSSH").is_err());
        assert_eq!(
            dechunk(b"2\r\n{}\r\n3\r\nabc\r\n0\r\n\r\n").unwrap(),
            b"{}abc"
        );
        assert_eq!(dechunk(b"2\r\n{}\r\n"), None);
    }
}
