//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 over the
//! raw body keyed with the webhook secret's UTF-8 bytes. GitHub signs no
//! timestamp, so nothing here can tell a fresh delivery from a captured
//! one: deduplication is the only replay defence. The delivery id is the
//! verified MAC (lowercase hex), not `X-GitHub-Delivery`: that GUID is not
//! signed, so a captured delivery re-sent under a GUID the attacker chose
//! would otherwise be forwarded again. GitHub's redeliveries carry the
//! same body, so they are still recognised; two distinct events with
//! byte-identical bodies within `dedupe_ttl_secs` are one delivery (GitHub
//! payloads carry their own ids, so this does not happen in practice).
//!
//! This module must never accept the legacy SHA-1 `X-Hub-Signature`, and
//! never key a delivery by anything the signature does not cover.

use http::header::HeaderName;
use http::HeaderMap;

use super::{any_matches, header};
use crate::config::Webhook;
use crate::rejection::Rejection;

/// GitHub's SHA-256 signature header.
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");

/// Verify a GitHub delivery; its delivery id (the verified MAC).
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
    if !any_matches(&hook.secrets, &[body], std::slice::from_ref(&candidate)) {
        return Err(Rejection::BadSignature);
    }
    // Lowercase hex of the verified MAC: one id however it was spelt.
    Ok(format!("signature:{}", hex::encode(candidate)))
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
    fn the_documented_vector_verifies_and_yields_the_verified_mac() {
        let rule = hook(WebhookProvider::Github, &[SECRET]);
        let id = format!("signature:{}", SIGNED.trim_start_matches("sha256="));
        assert_eq!(run(&rule, SIGNED, BODY), Ok(id.clone()));
        // Another spelling of the same MAC, or another GUID, is the same delivery.
        assert_eq!(
            run(
                &rule,
                &SIGNED.to_uppercase().replace("SHA256=", "sha256="),
                BODY
            ),
            Ok(id.clone())
        );
        let other_guid = headers(&[
            ("x-hub-signature-256", SIGNED),
            ("x-github-delivery", "attacker"),
        ]);
        assert_eq!(verify(&rule, &other_guid, BODY), Ok(id));
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
        assert!(
            verify(&rule, &no_guid, BODY).is_ok(),
            "the GUID is not needed"
        );
    }
}
