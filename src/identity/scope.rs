//! The scope of a request's nonces and idempotency keys, and how an
//! identity appears in store keys and log lines.
//!
//! Every identity is tagged with its kind (`ip:`, `hdr:`, `jwt:<claim>#`,
//! `cert:<name kind>:`, `key:`), so identities of different kinds never
//! share a scope (`ip:10.0.0.1` ≠ `hdr:10.0.0.1`). On a signed route the
//! verified key id is always part of the scope. The scope is hashed into
//! store keys ([`crate::checks::hashed_key`]); this module must never put
//! an identity's text anywhere but into that hash or a [`log_tag`].

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::RouteIdentity;

/// The scope of a request's nonces and idempotency keys, encoded for
/// store keys.
///
/// - A route whose signature was verified: the verified key (`key:<id>`),
///   joined (`#`) with the route's identity when that one is verified too
///   (`jwt:`, `client_cert`). An identity nobody checked (client address,
///   header) never opens a new scope for a captured signed request.
/// - Otherwise the route's identity (empty when it names none it could
///   use).
///
/// [`encode`] never leaves a `#`, so a joined scope cannot be confused with
/// a single one, nor split two ways.
pub fn scope(verified_key: Option<&str>, identity: Option<&RouteIdentity>) -> String {
    match (verified_key, identity) {
        (Some(key), Some(identity)) if identity.verified => format!(
            "{}#{}",
            encode(&format!("key:{key}")),
            encode(&identity.text)
        ),
        (Some(key), _) => encode(&format!("key:{key}")),
        (None, identity) => encode(identity.map_or("", |i| i.text.as_str())),
    }
}

/// An identity made safe for store keys: `#`, `%`, controls, spaces and
/// non-ASCII bytes are percent-encoded so `<identity>#<value>` can never be
/// ambiguous.
pub fn encode(identity: &str) -> String {
    if identity
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'#' && b != b'%')
    {
        return identity.to_owned();
    }
    let mut out = String::with_capacity(identity.len() + 8);
    for b in identity.bytes() {
        if b.is_ascii_graphic() && b != b'#' && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A short, non-reversible tag of an identity for log lines.
pub fn log_tag(identity: &str) -> String {
    hex::encode(&Sha256::digest(identity.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str, verified: bool) -> RouteIdentity {
        RouteIdentity {
            text: text.to_owned(),
            verified,
        }
    }

    #[test]
    fn encoding_keeps_keys_unambiguous() {
        assert_eq!(encode("billing-svc"), "billing-svc");
        assert_eq!(encode("a#b"), "a%23b");
        assert_eq!(encode("50%"), "50%25");
        assert_ne!(encode("a#b"), encode("a%23b"));
    }

    #[test]
    fn kinds_never_share_a_scope_and_signed_scopes_keep_the_key() {
        let kinds = [
            id("ip:10.0.0.1", false),
            id("hdr:10.0.0.1", false),
            id("jwt:sub#10.0.0.1", true),
            id("jwt:email#10.0.0.1", true),
            id("cert:dns:10.0.0.1", true),
            id("cert:uri:10.0.0.1", true),
        ];
        let scopes: std::collections::HashSet<String> =
            kinds.iter().map(|i| scope(None, Some(i))).collect();
        assert_eq!(scopes.len(), kinds.len());
        // Signed: the key always, a verified identity too, an unverified
        // one never.
        assert_eq!(scope(Some("k"), Some(&kinds[0])), "key:k");
        assert_eq!(scope(Some("k"), Some(&kinds[1])), "key:k");
        assert_eq!(scope(Some("k"), None), "key:k");
        assert_eq!(
            scope(Some("k"), Some(&kinds[2])),
            "key:k#jwt:sub%2310.0.0.1"
        );
        assert_ne!(
            scope(Some("k"), Some(&kinds[4])),
            scope(Some("k2"), Some(&kinds[4]))
        );
        // A key id with '#' cannot forge a joined scope.
        assert_ne!(
            scope(Some("k#jwt:sub%2310.0.0.1"), None),
            scope(Some("k"), Some(&kinds[2]))
        );
    }
}
