//! Client-side helpers: produce the headers a client must send for one
//! signed request. Used by `replay-guard sign`, the demo and loadgen, and
//! by tests acting as clients.
//!
//! This module must never be used by the proxy's verifying side except
//! through the shared canonical string in [`crate::checks::signature`].

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
