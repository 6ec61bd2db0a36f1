//! Forwarding to the upstream: header hygiene both ways.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1, plus those named in `Connection`)
//! never cross the proxy; `X-Forwarded-For/-Proto/-Host` are set for the
//! upstream; a client-supplied `X-Replay-Guard-Key-Id` is always dropped.
//! This module must never decide whether a request may be forwarded — the
//! checks do that.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use http::HeaderMap;

/// Header the proxy sets after a verified signature.
pub const KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-replay-guard-key-id");
/// Header naming the would-be rejection of a route in report mode.
pub const REPORT_HEADER: HeaderName = HeaderName::from_static("x-replay-guard-report");
/// Request id header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the old `Keep-Alive` and
/// `Proxy-Connection`), as parsed names: comparing them costs no parsing.
const HOP_BY_HOP: [HeaderName; 9] = [
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

/// Remove hop-by-hop headers and those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, &[]);
}

/// Remove hop-by-hop headers, those named in `Connection`, and `extra`.
/// One pass over the names present (usually none match, and nothing is
/// allocated) instead of a hash lookup per candidate name.
fn strip(headers: &mut HeaderMap, extra: &[HeaderName]) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) || extra.contains(name) || named.contains(name))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Prepare request headers for the upstream.
pub fn upstream_headers(
    headers: &mut HeaderMap,
    peer: IpAddr,
    client_host: Option<&HeaderValue>,
    https: bool,
    request_id: &HeaderValue,
    verified_key: Option<&str>,
    report: Option<&str>,
) {
    // Client copies of the proxy's own headers never reach the upstream.
    strip(headers, &[KEY_ID_HEADER, REPORT_HEADER]);
    if let Some(reason) = report.and_then(|r| HeaderValue::from_str(r).ok()) {
        headers.insert(REPORT_HEADER, reason);
    }
    if let Some(key) = verified_key.and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert(KEY_ID_HEADER, key);
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let mut appended = String::with_capacity(64);
    for value in headers.get_all(&xff).iter().filter_map(|v| v.to_str().ok()) {
        appended.push_str(value);
        appended.push_str(", ");
    }
    let _ = write!(appended, "{peer}");
    if let Ok(value) = HeaderValue::from_str(&appended) {
        headers.insert(xff, value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    if let Some(host) = client_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        if !headers.contains_key(HOST) {
            headers.insert(HOST, host.clone());
        }
    }
    headers.insert(REQUEST_ID_HEADER, request_id.clone());
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
}
