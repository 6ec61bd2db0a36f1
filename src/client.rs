//! Client-side helpers: produce the headers a client must send for one
//! signed request, and the `Host` a client sends for a URL. Used by
//! `replay-guard sign`, the demo and loadgen, and by tests and examples
//! acting as clients.
//!
//! This module must never be used by the proxy's verifying side except
//! through the shared canonical string in [`crate::checks::signature`].

use http::Uri;

use crate::checks::signature::{self, Signed};
use crate::config::Secret;

/// A fresh random nonce: 32 lowercase hex characters.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The headers of one signed request.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    /// (name, value) pairs in the order a client should send them.
    pub headers: Vec<(String, String)>,
}

/// What to sign.
#[derive(Debug, Clone)]
pub struct SignRequest<'a> {
    /// Method, e.g. `POST`.
    pub method: &'a str,
    /// Host and optional port as sent in `Host`.
    pub host: &'a str,
    /// Path plus optional `?query`, as sent.
    pub path_and_query: &'a str,
    /// Body bytes.
    pub body: &'a [u8],
    /// Timestamp header value.
    pub timestamp: String,
    /// Nonce header value.
    pub nonce: String,
    /// Key id.
    pub key_id: &'a str,
}

/// Default header names.
pub mod names {
    /// Timestamp header.
    pub const TIMESTAMP: &str = "X-Request-Timestamp";
    /// Nonce header.
    pub const NONCE: &str = "X-Request-Nonce";
    /// Signature header.
    pub const SIGNATURE: &str = "X-Signature";
    /// Key id header.
    pub const KEY_ID: &str = "X-Key-Id";
}

/// Sign one request with the default header names.
pub fn sign(secret: &Secret, request: &SignRequest<'_>) -> SignedHeaders {
    let body_sha256 = signature::sha256_hex(request.body);
    let host = request.host.to_ascii_lowercase();
    let signature = signature::sign(
        secret,
        &Signed {
            method: request.method,
            host: &host,
            path_and_query: request.path_and_query,
            timestamp: &request.timestamp,
            nonce: &request.nonce,
            body_sha256: &body_sha256,
        },
    );
    SignedHeaders {
        headers: vec![
            (names::TIMESTAMP.into(), request.timestamp.clone()),
            (names::NONCE.into(), request.nonce.clone()),
            (names::KEY_ID.into(), request.key_id.to_owned()),
            (names::SIGNATURE.into(), signature),
        ],
    }
}

/// The Host header a client sends for a URL (default ports omitted).
pub fn host_for(uri: &Uri) -> Option<String> {
    let authority = uri.authority()?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    Some(match authority.port_u16() {
        Some(port) if port == default_port => authority.host().to_owned(),
        _ => authority.as_str().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_for_omits_only_the_default_port() {
        let host = |url: &str| host_for(&url.parse().unwrap());
        assert_eq!(
            host("http://api.internal/x").as_deref(),
            Some("api.internal")
        );
        assert_eq!(
            host("http://api.internal:80/x").as_deref(),
            Some("api.internal")
        );
        assert_eq!(
            host("https://api.internal:443/").as_deref(),
            Some("api.internal")
        );
        assert_eq!(
            host("http://api.internal:443/").as_deref(),
            Some("api.internal:443")
        );
        assert_eq!(
            host("http://127.0.0.1:8080/p").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(host("/relative/only"), None);
    }
}
