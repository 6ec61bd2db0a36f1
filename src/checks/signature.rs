//! Signature, scheme `v1`: HMAC-SHA256 over a canonical string that binds
//! method, host, path and query, timestamp, nonce and the body's SHA-256.
//!
//! ```text
//! v1\n<METHOD>\n<host>\n<path>[?<raw query>]\n<timestamp>\n<nonce>\n<hex sha256(body)>
//! ```
//!
//! The signature header carries one or more comma-separated `v1=<hex>`
//! values (rotation); one valid value against the key's current or previous
//! secret is enough. Verification is constant-time (`Mac::verify_slice`).
//! [`check`] is the entry point: it reads the key-id, signature, timestamp
//! and nonce headers of a route, builds the signed parts and verifies them.
//! A second scheme would be another function returning the verified key id;
//! the request path only sees [`check`]'s result. This module must never
//! log, return or compare a secret other than through the HMAC, and never
//! say which part of the canonical string differed.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use http::header::HOST;
use http::request::Parts;
use sha2::{Digest, Sha256};

use super::{header_text, Content};
use crate::config::{Key, Route, Secret};
use crate::rejection::Rejection;

type HmacSha256 = Hmac<Sha256>;

/// At most this many `v1=` values are tried per request (bounds CPU).
const MAX_CANDIDATES: usize = 4;

/// The request parts a `v1` signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// Request method, e.g. `POST`.
    pub method: &'a str,
    /// Host as the client addressed it (lowercased by the proxy).
    pub host: &'a str,
    /// Path and, if any, `?` and the raw query.
    pub path_and_query: &'a str,
    /// The timestamp header value as sent.
    pub timestamp: &'a str,
    /// The nonce header value as sent (empty when the route has no nonce).
    pub nonce: &'a str,
    /// Lowercase hex SHA-256 of the body.
    pub body_sha256: &'a str,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The canonical string of scheme `v1`.
pub fn canonical(parts: &Signed<'_>) -> String {
    format!(
        "v1\n{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        parts.host,
        parts.path_and_query,
        parts.timestamp,
        parts.nonce,
        parts.body_sha256
    )
}

/// The keyed HMAC of a secret (always `Some`: the keyed state is computed
/// when the secret is loaded).
fn mac(secret: &Secret) -> Option<HmacSha256> {
    Some(secret.hmac_sha256())
}

/// The `X-Signature` value for a request: `v1=<hex>` (client side).
pub fn sign(secret: &Secret, parts: &Signed<'_>) -> String {
    let Some(mut mac) = mac(secret) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(canonical(parts).as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The well-formed `v1=` values of a signature header (others ignored).
fn candidates(header: &str) -> Vec<[u8; 32]> {
    header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
        .filter_map(|hex| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(hex, &mut out).ok().map(|()| out)
        })
        .take(MAX_CANDIDATES)
        .collect()
}

/// The signature check of a route: `Ok(None)` when the route has no
/// signature rule (or an optional one the request does not use), the
/// verified key id otherwise. `path` is the normalised path the proxy
/// matched and forwards.
pub fn check<'k>(
    keys: &'k BTreeMap<String, Key>,
    route: &Route,
    parts: &Parts,
    path: &str,
    body: &Content<'_>,
) -> Result<Option<&'k str>, Rejection> {
    let Some(required) = route.signature else {
        return Ok(None);
    };
    let names = &route.headers;
    let key_id = header_text(&parts.headers, &names.key_id);
    let sig = header_text(&parts.headers, &names.signature);
    let (key_id, sig) = match (key_id, sig) {
        (None, None) if !required => return Ok(None),
        (Some(Ok(key_id)), Some(Ok(sig))) => (key_id, sig),
        (None, _) | (_, None) => return Err(Rejection::MissingSignature),
        _ => return Err(Rejection::BadSignature),
    };
    let timestamp = match header_text(&parts.headers, &names.timestamp) {
        Some(Ok(value)) => value,
        _ => return Err(Rejection::MissingTimestamp),
    };
    let nonce = match header_text(&parts.headers, &names.nonce) {
        Some(Ok(value)) => value,
        _ => "",
    };
    let host = request_host(parts).to_ascii_lowercase();
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let body_sha256 = hex::encode(body.sha256());
    let signed = Signed {
        method: parts.method.as_str(),
        host: &host,
        path_and_query: &path_and_query,
        timestamp,
        nonce,
        body_sha256: &body_sha256,
    };
    verify(keys, key_id, sig, &signed).map(Some)
}

/// The host the client addressed: the absolute-form authority, else `Host`.
fn request_host(parts: &Parts) -> &str {
    if let Some(authority) = parts.uri.authority() {
        return authority.as_str();
    }
    parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
}

/// Verify the signature for `key_id`; returns the verified key's id.
pub fn verify<'k>(
    keys: &'k BTreeMap<String, Key>,
    key_id: &str,
    signature_header: &str,
    parts: &Signed<'_>,
) -> Result<&'k str, Rejection> {
    let key = keys.get(key_id).ok_or(Rejection::UnknownKey)?;
    let values = candidates(signature_header);
    if values.is_empty() {
        return Err(Rejection::BadSignature);
    }
    let canonical = canonical(parts);
    for secret in key.secrets() {
        let Some(mut base) = mac(secret) else {
            continue;
        };
        base.update(canonical.as_bytes());
        for value in &values {
            if base.clone().verify_slice(value).is_ok() {
                return Ok(&key.id);
            }
        }
    }
    Err(Rejection::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyMaterial;

    const BODY: &str = r#"{"amount":1250,"currency":"EUR"}"#;

    fn kat_parts(body_sha: &str) -> Signed<'_> {
        Signed {
            method: "POST",
            host: "payments.internal:8080",
            path_and_query: "/payments?dry_run=false",
            timestamp: "1764326400",
            nonce: "4f9c2a7e1b3d4c5a8e6f7a9b0c1d2e3f",
            body_sha256: body_sha,
        }
    }

    fn keys() -> BTreeMap<String, Key> {
        let mut keys = BTreeMap::new();
        keys.insert(
            "billing-svc".to_owned(),
            Key {
                id: "billing-svc".into(),
                material: KeyMaterial::Secret {
                    current: Secret::new(b"new-secret".to_vec()),
                    previous: Some(Secret::new(b"s3cr3t-billing".to_vec())),
                },
                inline: false,
            },
        );
        keys
    }

    #[test]
    fn known_answer_from_the_spec() {
        let body_sha = sha256_hex(BODY.as_bytes());
        assert_eq!(
            body_sha,
            "eeee78fb20f8fbb03fb016f376c0389d6be5286bbce3a472be2a2b376b3953d4"
        );
        let secret = Secret::new(b"s3cr3t-billing".to_vec());
        assert_eq!(
            sign(&secret, &kat_parts(&body_sha)),
            "v1=a500ea0bce531bc6c180bd3f5bf683024cf55c8b32ecc7c6b158c0ef67da7dbc"
        );
    }

    #[test]
    fn previous_secret_and_several_values_verify() {
        let body_sha = sha256_hex(BODY.as_bytes());
        let parts = kat_parts(&body_sha);
        let header = "v1=0000000000000000000000000000000000000000000000000000000000000000, v1=a500ea0bce531bc6c180bd3f5bf683024cf55c8b32ecc7c6b158c0ef67da7dbc";
        assert_eq!(
            verify(&keys(), "billing-svc", header, &parts),
            Ok("billing-svc")
        );
    }

    #[test]
    fn failures_are_typed() {
        let body_sha = sha256_hex(BODY.as_bytes());
        let parts = kat_parts(&body_sha);
        let good = "v1=a500ea0bce531bc6c180bd3f5bf683024cf55c8b32ecc7c6b158c0ef67da7dbc";
        assert_eq!(
            verify(&keys(), "nobody", good, &parts),
            Err(Rejection::UnknownKey)
        );
        assert_eq!(
            verify(&keys(), "billing-svc", "v2=abc", &parts),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify(&keys(), "billing-svc", &good.to_uppercase(), &parts),
            Err(Rejection::BadSignature)
        );
        let tampered = Signed {
            path_and_query: "/payments?dry_run=true",
            ..parts
        };
        assert_eq!(
            verify(&keys(), "billing-svc", good, &tampered),
            Err(Rejection::BadSignature)
        );
    }
}

/// The entry point, driven the way the request path drives it: a route
/// from TOML, a request head, the normalised path and the body.
#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::config::Config;
    use http::Request;

    const TOML: &str = r#"
[server]
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:9"
[[keys]]
id = "billing-svc"
secret = "s3cr3t-billing"
[[routes]]
name = "pay"
path = "/payments"
freshness = { max_skew_secs = 120 }
nonce = { required = true }
signature = { required = true }
[[routes]]
name = "optional"
path = "/optional"
freshness = { max_skew_secs = 120 }
signature = { required = false }
"#;
    const GOOD: &str = "v1=a500ea0bce531bc6c180bd3f5bf683024cf55c8b32ecc7c6b158c0ef67da7dbc";
    const BODY: &[u8] = br#"{"amount":1250,"currency":"EUR"}"#;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::post("/payments?dry_run=false")
            .header("host", "Payments.Internal:8080")
            .header("x-request-timestamp", "1764326400")
            .header("x-request-nonce", "4f9c2a7e1b3d4c5a8e6f7a9b0c1d2e3f");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_spec_example_verifies_and_every_failure_is_typed() {
        let config = Config::parse(TOML, "t.toml").unwrap();
        let (pay, optional) = (&config.routes[0], &config.routes[1]);
        let check = |route, parts: &Parts, path: &str, body: &[u8]| {
            super::check(&config.keys, route, parts, path, &Content::new(body))
        };
        let signed = parts(&[("x-key-id", "billing-svc"), ("x-signature", GOOD)]);
        assert_eq!(
            check(pay, &signed, "/payments", BODY),
            Ok(Some("billing-svc")),
            "host is compared lowercased"
        );
        assert_eq!(
            check(pay, &signed, "/payments", b"{}"),
            Err(Rejection::BadSignature),
            "the body is covered"
        );
        assert_eq!(
            check(pay, &signed, "/payments/", BODY),
            Err(Rejection::BadSignature),
            "the normalised path is covered"
        );
        assert_eq!(
            check(pay, &parts(&[("x-signature", GOOD)]), "/payments", BODY),
            Err(Rejection::MissingSignature)
        );
        assert_eq!(
            check(pay, &parts(&[]), "/payments", BODY),
            Err(Rejection::MissingSignature)
        );
        let unknown = parts(&[("x-key-id", "nobody"), ("x-signature", GOOD)]);
        assert_eq!(
            check(pay, &unknown, "/payments", BODY),
            Err(Rejection::UnknownKey)
        );
        assert_eq!(check(optional, &parts(&[]), "/optional", BODY), Ok(None));
    }
}
