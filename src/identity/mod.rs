//! Who the client is, for the scope of its nonces and idempotency keys and
//! for its rate limit (SPEC §3.1), one module per kind:
//!
//! - `unverified`: `client_ip` (the address behind `trusted_proxies`) and
//!   `header:NAME` — claims nobody checked;
//! - [`jwt`]: `jwt:<claim>` — a claim of a bearer token verified against
//!   `[jwt]`;
//! - [`client_cert`]: `client_cert` — the names of the client certificate
//!   the TLS handshake verified;
//! - `scope`: how identities become scopes, store-key text and log tags.
//!
//! [`resolve`] is the one place a route's identity is determined. This
//! module must never trust a header from a peer outside `trusted_proxies`,
//! never treat an unverified claim as verified, and never put an
//! identity's or a token's text into a log line or a store key (scopes are
//! hashed into store keys, identities into log tags).

pub mod client_cert;
pub mod jwt;
mod scope;
mod unverified;

use http::HeaderMap;
use ipnet::IpNet;

pub use client_cert::CertIdentity;
pub use jwt::JwtVerifier;
pub use scope::{encode, log_tag, scope};
pub use unverified::{client_ip, unverified, MAX_HEADER_IDENTITY};

use crate::config::Identity;
use crate::rejection::Rejection;

/// A route's identity of a request, tagged with its kind (`ip:`, `hdr:`,
/// `jwt:<claim>#`, `cert:<uri|dns|cn>:`) so that identities of different
/// kinds never share a scope or a rate-limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteIdentity {
    /// The kind-tagged identity. Client text: only ever hashed.
    pub text: String,
    /// Verified by the proxy (`jwt:`, `client_cert`): part of the scope
    /// even on a signed route.
    pub verified: bool,
}

impl RouteIdentity {
    /// The kind-tagged text (the rate-limit key).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// What the connection a request came on says of its client.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The TCP peer's address.
    pub ip: std::net::IpAddr,
    /// The client certificate the TLS handshake verified (mTLS), if any.
    pub cert: Option<&'a CertIdentity>,
}

/// The identity `identity` names for a request on `connection`, known before
/// the body is read: `Ok(None)` for `key_id` (known once the signature is
/// verified). `client_ip` and `header:` as [`unverified`] reads them; a
/// `jwt:` claim of the verified bearer token (`missing_token`,
/// `bad_token`, `missing_identity`); `client_cert` the connection's
/// verified certificate (`missing_identity` without one).
pub async fn resolve(
    identity: &Identity,
    headers: &HeaderMap,
    connection: Connection<'_>,
    trusted: &[IpNet],
    jwt: Option<&JwtVerifier>,
) -> Result<Option<RouteIdentity>, Rejection> {
    match identity {
        Identity::Jwt(claim) => {
            // Validation refuses a jwt: route without [jwt].
            let verifier = jwt.ok_or(Rejection::BadToken)?;
            let value = verifier.verify(headers, claim).await?;
            Ok(Some(RouteIdentity {
                text: format!("jwt:{}#{value}", encode(claim)),
                verified: true,
            }))
        }
        Identity::ClientCert => match connection.cert {
            Some(cert) => Ok(Some(RouteIdentity {
                text: cert.scoped(),
                verified: true,
            })),
            None => Err(Rejection::MissingIdentity),
        },
        other => Ok(
            unverified(other, headers, connection.ip, trusted)?.map(|text| RouteIdentity {
                text,
                verified: false,
            }),
        ),
    }
}
