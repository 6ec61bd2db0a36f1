//! Standard Webhooks (Svix and the senders that adopted the spec):
//! `webhook-id`, `webhook-timestamp` and `webhook-signature`, a
//! space-separated list of `<version>,<base64>`; each `v1` is an
//! HMAC-SHA256 over `<id>.<timestamp>.<raw body>` keyed with the base64
//! part of the `whsec_...` secret (decoded once, by validation). Any
//! matching `v1` passes; other versions (`v1a`, asymmetric) are ignored.
//! The timestamp must be within the tolerance both ways (the reference
//! libraries use five minutes). The signed `webhook-id` is the delivery
//! id: a sender keeps it across retries.
//!
//! This module must never verify against an id or a timestamp other than
//! the headers' own text.

use base64::Engine as _;
use http::header::HeaderName;
use http::HeaderMap;

use super::{any_matches, fresh_timestamp, header};
use crate::config::Webhook;
use crate::rejection::Rejection;

/// The message id (the delivery id).
pub const ID: HeaderName = HeaderName::from_static("webhook-id");
/// The signed timestamp.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// The signature list.
pub const SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Verify a Standard Webhooks delivery at `now`; its `webhook-id`.
pub fn verify(
    hook: &Webhook,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<String, Rejection> {
    let ts = fresh_timestamp(headers, &TIMESTAMP, now, hook)?;
    let list = header(
        headers,
        &SIGNATURE,
        Rejection::MissingSignature,
        Rejection::BadSignature,
    )?;
    let id = header(
        headers,
        &ID,
        Rejection::MissingIdempotencyKey,
        Rejection::MalformedIdempotencyKey,
    )?;
    let candidates: Vec<Vec<u8>> = list
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, b64)| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(Rejection::BadSignature);
    }
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
    if !any_matches(&hook.secrets, &parts, &candidates) {
        return Err(Rejection::BadSignature);
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, hook};
    use super::*;
    use crate::config::{Secret, WebhookProvider};

    /// The Standard Webhooks specification's test vector (also the one the
    /// reference libraries' tests sign).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &str = r#"{"test": 2432232314}"#;
    const SIGNED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const NOW: u64 = 1_614_265_330;

    fn rule(secrets: &[&str]) -> Webhook {
        let mut rule = hook(WebhookProvider::StandardWebhooks, &[]);
        rule.secrets = secrets
            .iter()
            .map(|s| {
                crate::config::standard_webhook_secret(&Secret::new(s.as_bytes().to_vec())).unwrap()
            })
            .collect();
        rule
    }

    fn run(
        rule: &Webhook,
        id: &str,
        ts: &str,
        sig: &str,
        body: &str,
        now: u64,
    ) -> Result<String, Rejection> {
        let map = headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ]);
        verify(rule, &map, body.as_bytes(), now)
    }

    #[test]
    fn the_spec_vector_verifies_alone_or_in_a_list() {
        let r = rule(&[SECRET]);
        assert_eq!(run(&r, ID_, TS, SIGNED, BODY, NOW).as_deref(), Ok(ID_));
        let list = format!("v1,bm9wZQ== v1a,AAAA {SIGNED}");
        assert!(run(&r, ID_, TS, &list, BODY, NOW).is_ok());
        let rotated = rule(&["whsec_c2VjcmV0MQ", SECRET]);
        assert!(run(&rotated, ID_, TS, SIGNED, BODY, NOW).is_ok());
    }

    #[test]
    fn tampering_wrong_secret_clock_and_missing_headers_are_refused() {
        let r = rule(&[SECRET]);
        let bad = Err(Rejection::BadSignature);
        assert_eq!(
            run(&r, ID_, TS, SIGNED, r#"{"test": 2432232315}"#, NOW),
            bad
        );
        assert_eq!(
            run(&r, "msg_other", TS, SIGNED, BODY, NOW),
            bad,
            "the id is signed"
        );
        assert_eq!(run(&r, ID_, "1614265331", SIGNED, BODY, NOW), bad);
        assert_eq!(
            run(&rule(&["whsec_c2VjcmV0MQ"]), ID_, TS, SIGNED, BODY, NOW),
            bad
        );
        assert_eq!(run(&r, ID_, TS, "v1a,g0hM9SsE", BODY, NOW), bad);
        assert_eq!(run(&r, ID_, TS, "v2,x", BODY, NOW), bad);
        assert_eq!(
            run(&r, ID_, TS, SIGNED, BODY, NOW + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            run(&r, ID_, TS, SIGNED, BODY, NOW - 301),
            Err(Rejection::FutureTimestamp)
        );
        let map = headers(&[("webhook-timestamp", TS), ("webhook-signature", SIGNED)]);
        assert_eq!(
            verify(&r, &map, BODY.as_bytes(), NOW),
            Err(Rejection::MissingIdempotencyKey)
        );
        let map = headers(&[("webhook-id", ID_), ("webhook-timestamp", TS)]);
        assert_eq!(
            verify(&r, &map, BODY.as_bytes(), NOW),
            Err(Rejection::MissingSignature)
        );
        let map = headers(&[("webhook-id", ID_), ("webhook-signature", SIGNED)]);
        assert_eq!(
            verify(&r, &map, BODY.as_bytes(), NOW),
            Err(Rejection::MissingTimestamp)
        );
    }
}
