//! Slack: `X-Slack-Signature: v0=<hex>`, an HMAC-SHA256 over
//! `v0:<X-Slack-Request-Timestamp>:<raw body>` keyed with the signing
//! secret's UTF-8 bytes; the timestamp must be within the tolerance (Slack
//! says five minutes) both ways. The delivery id is the Events API's
//! `event_id` from a JSON body (Slack retries an event with the same one);
//! other requests (slash commands, interactivity: form bodies) have none,
//! so the signature itself is the id — a byte-for-byte replay inside the
//! window is a duplicate.
//!
//! This module must never verify against a timestamp other than the
//! header's own text, which is what Slack signed.

use http::header::HeaderName;
use http::HeaderMap;

use super::{any_matches, fresh_timestamp, header, json_string};
use crate::config::Webhook;
use crate::rejection::Rejection;

/// Slack's signature header.
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");
/// Slack's signed timestamp.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-slack-request-timestamp");

/// Verify a Slack request at `now`; its delivery id.
pub fn verify(
    hook: &Webhook,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<String, Rejection> {
    let ts = fresh_timestamp(headers, &TIMESTAMP, now, hook)?;
    let value = header(
        headers,
        &SIGNATURE,
        Rejection::MissingSignature,
        Rejection::BadSignature,
    )?;
    let candidate = value
        .strip_prefix("v0=")
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(Rejection::BadSignature)?;
    if !any_matches(
        &hook.secrets,
        &[b"v0:", ts.as_bytes(), b":", body],
        std::slice::from_ref(&candidate),
    ) {
        return Err(Rejection::BadSignature);
    }
    Ok(match json_string(body, "event_id") {
        Some(event) => format!("event:{event}"),
        // Lowercase hex of the verified MAC: one id however it was spelt.
        None => format!("signature:{}", hex::encode(candidate)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, hook};
    use super::*;
    use crate::config::WebhookProvider;

    /// Slack's documented example ("Verifying requests from Slack").
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNED: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const NOW: u64 = 1_531_420_618;

    fn run(rule: &Webhook, ts: &str, sig: &str, body: &str, now: u64) -> Result<String, Rejection> {
        let map = headers(&[
            ("x-slack-request-timestamp", ts),
            ("x-slack-signature", sig),
        ]);
        verify(rule, &map, body.as_bytes(), now)
    }

    #[test]
    fn the_documented_example_verifies_and_its_signature_is_the_id() {
        let rule = hook(WebhookProvider::Slack, &[SECRET]);
        let id = run(&rule, TS, SIGNED, BODY, NOW).unwrap();
        assert_eq!(id, format!("signature:{}", &SIGNED[3..]));
        let upper = format!("v0={}", SIGNED[3..].to_ascii_uppercase());
        assert_eq!(run(&rule, TS, &upper, BODY, NOW), Ok(id), "one id per MAC");
    }

    #[test]
    fn an_events_api_body_is_identified_by_its_event_id() {
        let rule = hook(WebhookProvider::Slack, &[b"s3cr3t"]);
        let body = r#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{}}"#;
        let sig = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cr3t").unwrap();
            mac.update(format!("v0:{TS}:{body}").as_bytes());
            format!("v0={}", hex::encode(mac.finalize().into_bytes()))
        };
        assert_eq!(
            run(&rule, TS, &sig, body, NOW).as_deref(),
            Ok("event:Ev08MFMKH6")
        );
    }

    #[test]
    fn tampering_wrong_secret_clock_and_missing_headers_are_refused() {
        let rule = hook(WebhookProvider::Slack, &[SECRET]);
        let tampered = BODY.replace("foobar", "foobaz");
        assert_eq!(
            run(&rule, TS, SIGNED, &tampered, NOW),
            Err(Rejection::BadSignature)
        );
        let wrong = hook(
            WebhookProvider::Slack,
            &[b"8f742231b10e8888abcd99yyyzzz85a6"],
        );
        assert_eq!(
            run(&wrong, TS, SIGNED, BODY, NOW),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            run(&rule, "1531420619", SIGNED, BODY, NOW),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            run(&rule, TS, SIGNED, BODY, NOW + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            run(&rule, TS, SIGNED, BODY, NOW - 301),
            Err(Rejection::FutureTimestamp)
        );
        assert_eq!(
            run(&rule, "soon", SIGNED, BODY, NOW),
            Err(Rejection::MalformedTimestamp)
        );
        assert_eq!(
            run(&rule, TS, "v1=a211", BODY, NOW),
            Err(Rejection::BadSignature)
        );
        let no_ts = headers(&[("x-slack-signature", SIGNED)]);
        assert_eq!(
            verify(&rule, &no_ts, BODY.as_bytes(), NOW),
            Err(Rejection::MissingTimestamp)
        );
        let no_sig = headers(&[("x-slack-request-timestamp", TS)]);
        assert_eq!(
            verify(&rule, &no_sig, BODY.as_bytes(), NOW),
            Err(Rejection::MissingSignature)
        );
    }
}
