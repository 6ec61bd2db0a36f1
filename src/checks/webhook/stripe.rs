//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, each `v1`
//! an HMAC-SHA256 over `<t>.<raw body>` keyed with the endpoint secret's
//! UTF-8 bytes (`whsec_...` as shown, prefix included). Any matching `v1`
//! passes (Stripe sends several while an endpoint's secret is rolled);
//! other schemes (`v0`, test-mode extras) are ignored. `t` must be within
//! the tolerance both ways. The delivery id is the event's `id` from the
//! JSON body: Stripe redelivers an event with the same id and a fresh
//! signature.
//!
//! This module must never accept a `v1` it did not verify, and never read
//! the body as anything but the bytes that were signed (the JSON is parsed
//! only after verification, for the id).

use http::header::HeaderName;
use http::HeaderMap;

use super::{any_matches, header, json_string, unix_secs, within};
use crate::config::Webhook;
use crate::rejection::Rejection;

/// Stripe's signature header.
pub const SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

/// Verify a Stripe delivery at `now`; its event id.
pub fn verify(
    hook: &Webhook,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<String, Rejection> {
    let value = header(
        headers,
        &SIGNATURE,
        Rejection::MissingSignature,
        Rejection::BadSignature,
    )?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            // The first `t` counts, as in Stripe's own libraries.
            Some(("t", t)) if timestamp.is_none() => timestamp = Some(t),
            Some(("v1", hex)) => candidates.extend(hex::decode(hex).ok()),
            _ => {}
        }
    }
    let t = timestamp.ok_or(Rejection::MalformedTimestamp)?;
    let secs = unix_secs(t)?;
    within(secs, now, hook)?;
    if candidates.is_empty() {
        return Err(Rejection::BadSignature);
    }
    if !any_matches(&hook.secrets, &[t.as_bytes(), b".", body], &candidates) {
        return Err(Rejection::BadSignature);
    }
    json_string(body, "id").ok_or(Rejection::MissingIdempotencyKey)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, hook};
    use super::*;
    use crate::config::WebhookProvider;

    const NOW: u64 = 1_764_326_400;
    const BODY: &str = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
    /// Computed by Stripe's official Python SDK (`stripe` 16.1.0,
    /// `WebhookSignature.generate_signature_header(BODY,
    /// "whsec_test_secret", timestamp=1764326400)`); Stripe's docs publish
    /// the scheme but no fixed vector.
    const SIGNED: &str =
        "t=1764326400,v1=81ca8424e31a57cac95326d8af2682e60e6f2b5cb8f2c6f85dd512e01a564bee";

    fn stripe(secrets: &[&[u8]]) -> Webhook {
        hook(WebhookProvider::Stripe, secrets)
    }

    fn run(rule: &Webhook, signature: &str, body: &str, now: u64) -> Result<String, Rejection> {
        verify(
            rule,
            &headers(&[("stripe-signature", signature)]),
            body.as_bytes(),
            now,
        )
    }

    #[test]
    fn the_sdk_vector_verifies_and_yields_the_event_id() {
        let rule = stripe(&[b"whsec_test_secret"]);
        assert_eq!(
            run(&rule, SIGNED, BODY, NOW).as_deref(),
            Ok("evt_test_webhook")
        );
    }

    #[test]
    fn any_v1_of_several_and_the_previous_secret_pass() {
        let rotated = stripe(&[b"whsec_new", b"whsec_test_secret"]);
        assert!(run(&rotated, SIGNED, BODY, NOW).is_ok());
        let sig = SIGNED.replace("t=1764326400,", "t=1764326400,v0=abcd,v1=00ff,");
        assert!(run(&stripe(&[b"whsec_test_secret"]), &sig, BODY, NOW).is_ok());
    }

    #[test]
    fn tampering_wrong_secret_and_clock_are_refused() {
        let rule = stripe(&[b"whsec_test_secret"]);
        let tampered = BODY.replace("evt_test_webhook", "evt_test_webhooc");
        assert_eq!(
            run(&rule, SIGNED, &tampered, NOW),
            Err(Rejection::BadSignature)
        );
        let wrong = stripe(&[b"whsec_other"]);
        assert_eq!(run(&wrong, SIGNED, BODY, NOW), Err(Rejection::BadSignature));
        // The signed t, moved: the signature no longer matches.
        let moved = SIGNED.replace("t=1764326400", "t=1764326401");
        assert_eq!(run(&rule, &moved, BODY, NOW), Err(Rejection::BadSignature));
        assert_eq!(
            run(&rule, SIGNED, BODY, NOW + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            run(&rule, SIGNED, BODY, NOW - 301),
            Err(Rejection::FutureTimestamp)
        );
        assert!(run(&rule, SIGNED, BODY, NOW + 300).is_ok());
    }

    #[test]
    fn header_shapes() {
        let rule = stripe(&[b"whsec_test_secret"]);
        let none = verify(&rule, &HeaderMap::new(), BODY.as_bytes(), NOW);
        assert_eq!(none, Err(Rejection::MissingSignature));
        assert_eq!(
            run(&rule, "v1=81ca", BODY, NOW),
            Err(Rejection::MalformedTimestamp)
        );
        assert_eq!(
            run(&rule, "t=soon,v1=81ca", BODY, NOW),
            Err(Rejection::MalformedTimestamp)
        );
        assert_eq!(
            run(&rule, "t=1764326400", BODY, NOW),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            run(&rule, "t=1764326400,v1=zz", BODY, NOW),
            Err(Rejection::BadSignature)
        );
        let twice = headers(&[("stripe-signature", SIGNED), ("stripe-signature", SIGNED)]);
        assert_eq!(
            verify(&rule, &twice, BODY.as_bytes(), NOW),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn a_verified_body_without_an_event_id_has_no_delivery_id() {
        // `{}` signed as the scheme defines it.
        let rule = stripe(&[b"whsec_test_secret"]);
        let sig = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec_test_secret").unwrap();
            mac.update(b"1764326400.{}");
            format!(
                "t=1764326400,v1={}",
                hex::encode(mac.finalize().into_bytes())
            )
        };
        assert_eq!(
            run(&rule, &sig, "{}", NOW),
            Err(Rejection::MissingIdempotencyKey)
        );
    }
}
