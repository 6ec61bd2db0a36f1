//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 over the
//! raw body keyed with the webhook secret's UTF-8 bytes. GitHub signs no
//! timestamp, so nothing here can tell a fresh delivery from a captured
//! one: deduplication by `X-GitHub-Delivery` (a GUID GitHub keeps across
//! redeliveries) is the only replay defence, and that header is not
//! signed (see the README's Webhooks section for what that means).
//!
//! This module must never accept the legacy SHA-1 `X-Hub-Signature`.

use http::header::HeaderName;
use http::HeaderMap;

use super::{any_matches, header};
use crate::config::Webhook;
use crate::rejection::Rejection;

/// GitHub's SHA-256 signature header.
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// GitHub's delivery GUID.
pub const DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");

/// Verify a GitHub delivery; its delivery GUID.
pub fn verify(hook: &Webhook, headers: &HeaderMap, body: &[u8]) -> Result<String, Rejection> {
    let value = header(
        headers,
        &SIGNATURE,
        Rejection::MissingSignature,
        Rejection::BadSignature,
    )?;
    let candidate = value
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(Rejection::BadSignature)?;
    if !any_matches(&hook.secrets, &[body], &[candidate]) {
        return Err(Rejection::BadSignature);
    }
    let id = header(
        headers,
        &DELIVERY,
        Rejection::MissingIdempotencyKey,
        Rejection::MalformedIdempotencyKey,
    )?;
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, hook};
    use super::*;
    use crate::config::WebhookProvider;

    /// GitHub's documented test vector ("Validating webhook deliveries").
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNED: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const GUID: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

    fn run(rule: &Webhook, sig: &str, body: &[u8]) -> Result<String, Rejection> {
        let map = headers(&[("x-hub-signature-256", sig), ("x-github-delivery", GUID)]);
        verify(rule, &map, body)
    }

    #[test]
    fn the_documented_vector_verifies_and_yields_the_delivery_guid() {
        let rule = hook(WebhookProvider::Github, &[SECRET]);
        assert_eq!(run(&rule, SIGNED, BODY).as_deref(), Ok(GUID));
        let rotated = hook(WebhookProvider::Github, &[b"new secret", SECRET]);
        assert!(run(&rotated, SIGNED, BODY).is_ok());
    }

    #[test]
    fn tampering_a_wrong_secret_and_other_spellings_are_refused() {
        let rule = hook(WebhookProvider::Github, &[SECRET]);
        assert_eq!(
            run(&rule, SIGNED, b"Hello, World?"),
            Err(Rejection::BadSignature)
        );
        let wrong = hook(WebhookProvider::Github, &[b"It's a secret to everybody"]);
        assert_eq!(run(&wrong, SIGNED, BODY), Err(Rejection::BadSignature));
        let sha1 = SIGNED.replace("sha256=", "sha1=");
        assert_eq!(run(&rule, &sha1, BODY), Err(Rejection::BadSignature));
        assert_eq!(run(&rule, "sha256=", BODY), Err(Rejection::BadSignature));
        let none = headers(&[("x-hub-signature", "sha1=abc"), ("x-github-delivery", GUID)]);
        assert_eq!(verify(&rule, &none, BODY), Err(Rejection::MissingSignature));
        let no_guid = headers(&[("x-hub-signature-256", SIGNED)]);
        assert_eq!(
            verify(&rule, &no_guid, BODY),
            Err(Rejection::MissingIdempotencyKey)
        );
    }
}
