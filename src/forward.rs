//! Forwarding to the upstream: header hygiene both ways.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1, plus those named in `Connection`)
//! never cross the proxy; `X-Forwarded-For/-Proto/-Host` are set for the
//! upstream; client-supplied copies of the proxy's own headers
//! (`X-Replay-Guard-Key-Id`, `X-Replay-Guard-Client-Cert-Identity`,
//! `X-Replay-Guard-Report`, `X-Replay-Guard-Webhook`) are always dropped.
//! This module must never decide whether a request may be forwarded — the
//! checks do that.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, CONNECTION, FORWARDED, HOST};
use http::HeaderMap;

use crate::identity::client_cert::CertIdentity;

/// Header the proxy sets after a verified signature.
pub const KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-replay-guard-key-id");
/// Header carrying the verified client certificate's identity (mTLS).
pub const CLIENT_CERT_HEADER: HeaderName =
    HeaderName::from_static("x-replay-guard-client-cert-identity");
/// Header naming the would-be rejection of a route in report mode.
pub const REPORT_HEADER: HeaderName = HeaderName::from_static("x-replay-guard-report");
/// Header naming the provider whose webhook signature the proxy verified.
pub const WEBHOOK_HEADER: HeaderName = HeaderName::from_static("x-replay-guard-webhook");
/// Request id header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the old `Keep-Alive` and
/// `Proxy-Connection`), as parsed names: comparing them costs no parsing.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Headers only the proxy may set on the way upstream.
static PROXY_OWN: [HeaderName; 4] = [
    KEY_ID_HEADER,
    REPORT_HEADER,
    WEBHOOK_HEADER,
    CLIENT_CERT_HEADER,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client end of one connection, as the upstream is told about it.
/// Made once per connection: the address text is formatted once, not per
/// request.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// Whether the client used TLS (`X-Forwarded-Proto`).
    pub https: bool,
    /// `addr`'s IP as a header value (appended to `X-Forwarded-For`).
    ip: HeaderValue,
    /// This hop's `Forwarded` element without `host` (RFC 7239 §4:
    /// `for=192.0.2.1;proto=http`, an IPv6 node quoted and bracketed); a
    /// header value, so a clone per request is a reference count.
    forwarded: HeaderValue,
    /// The worker event loop serving the connection (its upstream
    /// connections are that worker's).
    pub worker: usize,
    /// The identity of the client certificate the TLS handshake verified
    /// (mTLS), once per connection.
    client_cert: Option<Arc<CertIdentity>>,
    /// `client_cert`'s name as a header value for the upstream.
    client_cert_header: Option<HeaderValue>,
}

impl Peer {
    /// Describe a connection from `addr`.
    pub fn new(addr: SocketAddr, https: bool) -> Self {
        let canonical = addr.ip().to_canonical();
        let ip = HeaderValue::from_str(&canonical.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let proto = if https { "https" } else { "http" };
        let forwarded = match canonical {
            std::net::IpAddr::V4(v4) => format!("for={v4};proto={proto}"),
            std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto={proto}"),
        };
        let forwarded = HeaderValue::from_str(&forwarded)
            .unwrap_or_else(|_| HeaderValue::from_static("for=unknown"));
        Self {
            addr,
            https,
            ip,
            forwarded,
            worker: 0,
            client_cert: None,
            client_cert_header: None,
        }
    }

    /// The same peer, with the client certificate its handshake verified.
    pub fn with_client_cert(self, cert: Option<CertIdentity>) -> Self {
        // Names are text; one with bytes a header cannot carry (controls)
        // still identifies the client, but is not passed on.
        let client_cert_header = cert
            .as_ref()
            .and_then(|c| HeaderValue::from_bytes(c.name.as_bytes()).ok());
        Self {
            client_cert: cert.map(Arc::new),
            client_cert_header,
            ..self
        }
    }

    /// The verified client certificate's identity, if any.
    pub fn client_cert(&self) -> Option<&CertIdentity> {
        self.client_cert.as_deref()
    }

    /// The same peer, served by worker `index`.
    pub fn on_worker(self, index: usize) -> Self {
        Self {
            worker: index,
            ..self
        }
    }
}

/// Remove hop-by-hop headers and those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, &[]);
}

/// Remove hop-by-hop headers, those named in `Connection`, and `extra`.
/// One pass over the names present, and nothing is allocated unless a
/// header must go or `Connection` names one that is not hop-by-hop anyway
/// (`Connection: keep-alive` does not): collecting nothing allocates
/// nothing.
fn strip(headers: &mut HeaderMap, extra: &[HeaderName]) {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            let known = token.eq_ignore_ascii_case("close")
                || HOP_BY_HOP
                    .iter()
                    .any(|name| token.eq_ignore_ascii_case(name.as_str()));
            if !known {
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
    }
    let doomed = |name: &HeaderName| {
        HOP_BY_HOP.contains(name) || extra.contains(name) || named.contains(name)
    };
    let gone: Vec<HeaderName> = headers
        .keys()
        .filter(|name| doomed(name))
        .cloned()
        .collect();
    for name in gone {
        headers.remove(name);
    }
}

/// Prepare request headers for the upstream. `peer_trusted`: the peer is
/// one of `trusted_proxies`, so the `Forwarded` elements it sends are kept
/// (a client's own are removed).
pub fn upstream_headers(
    headers: &mut HeaderMap,
    peer: &Peer,
    peer_trusted: bool,
    client_host: Option<&HeaderValue>,
    request_id: &HeaderValue,
    verified_key: Option<&str>,
    report: Option<&str>,
) {
    // Client copies of the proxy's own headers never reach the upstream.
    strip(headers, &PROXY_OWN);
    if let Some(reason) = report.and_then(|r| HeaderValue::from_str(r).ok()) {
        headers.insert(REPORT_HEADER, reason);
    }
    if let Some(key) = verified_key.and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert(KEY_ID_HEADER, key);
    }
    if let Some(identity) = &peer.client_cert_header {
        headers.insert(CLIENT_CERT_HEADER, identity.clone());
    }
    // Earlier hops first; usually there are none and nothing is formatted.
    let mut appended = String::new();
    for value in headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        appended.push_str(value);
        appended.push_str(", ");
    }
    let forwarded_for = if appended.is_empty() {
        Some(peer.ip.clone())
    } else {
        appended.push_str(peer.ip.to_str().unwrap_or("unknown"));
        HeaderValue::from_str(&appended).ok()
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if peer.https { "https" } else { "http" }),
    );
    if let Some(host) = client_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        if !headers.contains_key(HOST) {
            headers.insert(HOST, host.clone());
        }
    }
    forwarded(headers, peer, peer_trusted, client_host);
    headers.insert(REQUEST_ID_HEADER, request_id.clone());
}

/// `Forwarded` (RFC 7239): the elements of trusted proxies in front of us,
/// then our own hop; a client's own elements never reach the upstream.
fn forwarded(
    headers: &mut HeaderMap,
    peer: &Peer,
    peer_trusted: bool,
    client_host: Option<&HeaderValue>,
) {
    let host = client_host
        .and_then(|h| h.to_str().ok())
        .filter(|host| !host.contains(['"', '\\']));
    let earlier = peer_trusted.then(|| headers.get_all(FORWARDED).iter().count() > 0);
    if host.is_none() && earlier != Some(true) {
        headers.insert(FORWARDED, peer.forwarded.clone());
        return;
    }
    let ours = peer.forwarded.as_bytes();
    let mut value = Vec::with_capacity(ours.len() + host.map_or(0, |h| h.len() + 8));
    if earlier == Some(true) {
        for element in headers.get_all(FORWARDED) {
            value.extend_from_slice(element.as_bytes());
            value.extend_from_slice(b", ");
        }
    }
    value.extend_from_slice(ours);
    if let Some(host) = host {
        value.extend_from_slice(b";host=\"");
        value.extend_from_slice(host.as_bytes());
        value.push(b'"');
    }
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        Ok(value) => {
            headers.insert(FORWARDED, value);
        }
        Err(_) => {
            headers.remove(FORWARDED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("close, X-Secret-Hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-end-to-end"));
    }

    #[test]
    fn connection_keep_alive_alone_keeps_every_end_to_end_header() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("Keep-Alive"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-end-to-end"]);
    }

    #[test]
    fn forwarded_headers_name_the_peer_and_drop_client_copies_of_ours() {
        let peer = Peer::new("[2001:db8::7]:4711".parse().unwrap(), true);
        let id = HeaderValue::from_static("req-1");
        let mut headers = HeaderMap::new();
        headers.insert(KEY_ID_HEADER, HeaderValue::from_static("forged"));
        headers.insert(REPORT_HEADER, HeaderValue::from_static("forged"));
        headers.insert(CLIENT_CERT_HEADER, HeaderValue::from_static("forged"));
        upstream_headers(&mut headers, &peer, false, None, &id, None, None);
        assert!(!headers.contains_key(CLIENT_CERT_HEADER));
        assert_eq!(headers[X_FORWARDED_FOR], "2001:db8::7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert!(!headers.contains_key(KEY_ID_HEADER));
        assert!(!headers.contains_key(REPORT_HEADER));

        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.9"));
        upstream_headers(&mut headers, &peer, false, None, &id, Some("k1"), None);
        assert_eq!(
            headers[X_FORWARDED_FOR],
            "2001:db8::7, 192.0.2.9, 2001:db8::7"
        );
        assert_eq!(headers[KEY_ID_HEADER], "k1");
    }

    #[test]
    fn a_clients_forwarded_is_replaced_by_our_hop_a_trusted_proxys_kept() {
        let host = HeaderValue::from_static("pay.example:8080");
        let id = HeaderValue::from_static("req-1");
        let mapped = Peer::new("[::ffff:192.0.2.60]:4711".parse().unwrap(), false);
        let mut headers = HeaderMap::new();
        headers.insert(
            FORWARDED,
            HeaderValue::from_static("for=10.9.9.9;host=admin"),
        );
        upstream_headers(&mut headers, &mapped, false, Some(&host), &id, None, None);
        assert_eq!(
            headers.get_all(FORWARDED).iter().collect::<Vec<_>>(),
            ["for=192.0.2.60;proto=http;host=\"pay.example:8080\""]
        );
        assert_eq!(headers[X_FORWARDED_FOR], "192.0.2.60", "canonical address");
        let v6 = Peer::new("[2001:db8::7]:4711".parse().unwrap(), true);
        let mut headers = HeaderMap::new();
        headers.insert(FORWARDED, HeaderValue::from_static("for=203.0.113.5"));
        upstream_headers(&mut headers, &v6, true, None, &id, None, None);
        assert_eq!(
            headers[FORWARDED],
            "for=203.0.113.5, for=\"[2001:db8::7]\";proto=https"
        );
    }
}
