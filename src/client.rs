//! Client-side helpers: produce the headers a client must send for one
//! signed request, and the `Host` a client sends for a URL. Used by
//! `replay-guard sign`, the demo and loadgen, and by tests and examples
//! acting as clients.
//!
//! Scheme `v1` ([`sign`]) and RFC 9421 ([`sign_rfc9421`], through the
//! same signature base the proxy verifies with).
//!
//! This module must never be used by the proxy's verifying side except
//! through the shared canonical string in [`crate::checks::signature`] and
//! the signature base in [`crate::checks::rfc9421::base`].

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::checks::rfc9421::{self, sign::Signer, sign::SigningKey, sign::Unsigned};
use crate::checks::signature::{self, Signed};
use crate::config::{Component, Secret};

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

/// One request to sign with RFC 9421 (scheme `rfc9421`).
#[derive(Debug, Clone)]
pub struct Rfc9421Request<'a> {
    /// Method, e.g. `POST`.
    pub method: &'a str,
    /// Host and optional port as sent in `Host`.
    pub host: &'a str,
    /// Path plus optional `?query`, as sent (in normal form: RFC 9421
    /// routes refuse a path the proxy would rewrite).
    pub path_and_query: &'a str,
    /// Whether the request goes over TLS (`@scheme`, `@target-uri`).
    pub https: bool,
    /// Body bytes (a non-empty body gets `Content-Digest`, covered).
    pub body: &'a [u8],
    /// `keyid`.
    pub key_id: &'a str,
    /// `created`, Unix seconds.
    pub created: i64,
    /// `nonce`.
    pub nonce: Option<&'a str>,
    /// `tag`.
    pub tag: Option<&'a str>,
    /// The signature's label, e.g. `sig1`.
    pub label: &'a str,
    /// Covered components.
    pub components: &'a [Component],
    /// Further headers the request carries (`Name`, `value`): a covered
    /// header component takes its value from here.
    pub headers: &'a [(String, String)],
}

/// Sign one request with RFC 9421: `Content-Digest` (when there is a
/// body), `Signature-Input` and `Signature`, in that order.
pub fn sign_rfc9421(
    key: &SigningKey,
    request: &Rfc9421Request<'_>,
) -> Result<SignedHeaders, String> {
    let method: Method = request
        .method
        .parse()
        .map_err(|_| format!("{:?} is not a method", request.method))?;
    let uri: Uri = request
        .path_and_query
        .parse()
        .map_err(|_| format!("{:?} is not a path and query", request.path_and_query))?;
    let mut headers = HeaderMap::new();
    let host = HeaderValue::from_str(request.host)
        .map_err(|_| format!("{:?} is not a host", request.host))?;
    headers.insert(HOST, host);
    for (name, value) in request.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("{value:?} is not a header value"))?;
        headers.append(name, value);
    }
    let signer = Signer {
        label: request.label,
        components: request.components,
        key_id: request.key_id,
        created: request.created,
        expires: None,
        nonce: request.nonce,
        tag: request.tag,
        alg: true,
    };
    let unsigned = Unsigned {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: request.body,
        https: request.https,
    };
    let added = rfc9421::sign::sign(key, &signer, unsigned)?;
    let headers = added
        .into_iter()
        .map(|(name, value)| {
            let name = match name.as_str() {
                "content-digest" => "Content-Digest".to_owned(),
                "signature-input" => "Signature-Input".to_owned(),
                "signature" => "Signature".to_owned(),
                other => other.to_owned(),
            };
            (name, value.to_str().unwrap_or_default().to_owned())
        })
        .collect();
    Ok(SignedHeaders { headers })
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
