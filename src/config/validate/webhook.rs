//! Validation of a route's `webhook = { provider = ... }` table: the
//! provider name, exactly one secret source (plus an optional previous
//! secret for rotation), the tolerance, the dedupe TTL and the statuses
//! that release a delivery id; and that the route has none of the rules a
//! webhook profile replaces (`signature`, `freshness`, `nonce`,
//! `idempotency`).
//!
//! This module must never print, log or put a secret value into an error
//! message (names of variables and files only), and never read a variable
//! or a file except through the injected [`Environment`].

use std::time::Duration;

use toml::Spanned;

use super::keys::{read_secret_env, read_secret_file};
use super::StoreLimits;
use super::{size, Problems};
use crate::config::raw::{RawRoute, RawWebhook};
use crate::config::{Environment, Idempotency, Secret, Server, Webhook, WebhookProvider};

/// Default `tolerance_secs`: what Stripe's, Slack's and the Standard
/// Webhooks libraries use.
const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// Default `dedupe_ttl_secs`: 7 days, longer than any provider retries
/// (Stripe: 3 days; Standard Webhooks/Svix: about 1.5 days) and than the
/// window in which GitHub offers manual redelivery is typically used.
const DEFAULT_DEDUPE_TTL_SECS: u64 = 7 * 86_400;
/// The shortest lease: a duplicate arriving while the first is forwarded
/// is told to come back (409) at least this long.
const MIN_LEASE_SECS: u64 = 60;
/// Stored answers of a webhook (providers only read the status).
const MAX_RESPONSE_BYTES: usize = 65_536;

/// The webhook rule of `route`; `None` (reported) when anything is wrong.
pub(super) fn validate_webhook(
    route: &RawRoute,
    raw: &Spanned<RawWebhook>,
    server: Option<&Server>,
    limits: StoreLimits,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<Webhook> {
    let span = raw.span();
    let w = raw.get_ref();
    let mut ok = exclusive(route, p);
    let provider = WebhookProvider::from_name(w.provider.get_ref());
    if provider.is_none() {
        p.at(
            w.provider.span(),
            format!(
                "webhook provider {:?} is unknown; write \"stripe\", \"github\", \"slack\" or \"standard-webhooks\"",
                w.provider.get_ref()
            ),
        );
        ok = false;
    }
    let tolerance = match (&w.tolerance_secs, provider) {
        (Some(t), Some(WebhookProvider::Github)) => {
            p.at(t.span(), "GitHub deliveries carry no timestamp, so tolerance_secs means nothing here; remove it (deduplication by X-GitHub-Delivery is the replay defence)");
            ok = false;
            Duration::ZERO
        }
        (Some(t), _) if *t.get_ref() == 0 => {
            p.at(t.span(), "tolerance_secs must be at least 1");
            ok = false;
            Duration::ZERO
        }
        (Some(t), _) => Duration::from_secs(*t.get_ref()),
        (None, _) => Duration::from_secs(DEFAULT_TOLERANCE_SECS),
    };
    let ttl = match &w.dedupe_ttl_secs {
        Some(t) if *t.get_ref() == 0 => {
            p.at(t.span(), "dedupe_ttl_secs must be at least 1");
            ok = false;
            Duration::ZERO
        }
        Some(t) => Duration::from_secs(*t.get_ref()),
        None => Duration::from_secs(DEFAULT_DEDUPE_TTL_SECS),
    };
    let release_statuses = match &w.release_statuses {
        Some(list) => {
            for status in list {
                if !(100..=599).contains(status.get_ref()) {
                    p.at(
                        status.span(),
                        format!("{} is not an HTTP status", status.get_ref()),
                    );
                    ok = false;
                }
            }
            list.iter().map(|s| *s.get_ref()).collect()
        }
        None => (500..=599).collect(),
    };
    // The lease outlasts the upstream timeout and the replicas' clock
    // margin, so a duplicate never runs beside a slow first attempt.
    let minimum = server.map_or(Duration::ZERO, |s| s.upstream_timeout) + limits.clock_margin;
    let lease = Duration::from_secs(MIN_LEASE_SECS.max(minimum.as_secs() + 1));
    if ok && ttl < lease {
        let at = w
            .dedupe_ttl_secs
            .as_ref()
            .map_or(span.clone(), |t| t.span());
        p.at(
            at,
            format!(
                "dedupe_ttl_secs must be at least the claim's lease ({} s)",
                lease.as_secs()
            ),
        );
        ok = false;
    }
    let secrets = secrets(w, provider, span, env, p);
    let (Some(provider), Some(secrets), true) = (provider, secrets, ok) else {
        return None;
    };
    Some(Webhook {
        provider,
        secrets,
        tolerance,
        dedupe: Idempotency {
            required: true,
            ttl,
            lease,
            max_response_bytes: size(MAX_RESPONSE_BYTES as u64),
            release_statuses,
        },
    })
}

/// A webhook route verifies the provider's own signature, timestamp and
/// delivery id: the rules those replace are refused where they are written.
fn exclusive(route: &RawRoute, p: &mut Problems<'_>) -> bool {
    let mut ok = true;
    let mut refuse = |span: std::ops::Range<usize>, name: &str, p: &mut Problems<'_>| {
        p.at(span, format!(
            "{name} cannot be combined with webhook on one route: the webhook profile verifies the provider's own signature and timestamp and deduplicates by its delivery id; remove {name}"
        ));
        ok = false;
    };
    if let Some(s) = &route.signature {
        refuse(s.span(), "signature", p);
    }
    if let Some(f) = &route.freshness {
        refuse(f.span(), "freshness", p);
    }
    if let Some(n) = &route.nonce {
        refuse(n.span(), "nonce", p);
    }
    if let Some(i) = &route.idempotency {
        refuse(i.span(), "idempotency", p);
    }
    ok
}

/// The current secret from its one source, then the previous one if set;
/// a Standard Webhooks secret is decoded from `whsec_<base64>`.
fn secrets(
    w: &RawWebhook,
    provider: Option<WebhookProvider>,
    span: std::ops::Range<usize>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<Vec<Secret>> {
    let current = match (&w.secret_env, &w.secret_file) {
        (Some(name), None) => read_secret_env(name, env, p),
        (None, Some(file)) => read_secret_file(file, env, p),
        _ => {
            p.at(
                span.clone(),
                "webhook needs exactly one of secret_env or secret_file (the provider's signing secret)",
            );
            None
        }
    };
    let previous = match (&w.previous_secret_env, &w.previous_secret_file) {
        (Some(_), Some(file)) => {
            p.at(
                file.span(),
                "write previous_secret_env or previous_secret_file, not both",
            );
            return None;
        }
        // An unset previous secret is normal once a rotation is over.
        (Some(name), None) => env
            .var(name.get_ref())
            .filter(|v| !v.is_empty())
            .map(|v| Secret::new(v.into_bytes())),
        (None, Some(file)) => Some(read_secret_file(file, env, p)?),
        (None, None) => None,
    };
    let mut secrets = vec![current?];
    secrets.extend(previous);
    if provider != Some(WebhookProvider::StandardWebhooks) {
        return Some(secrets);
    }
    let decoded: Option<Vec<Secret>> = secrets.iter().map(standard_secret).collect();
    if decoded.is_none() {
        let at = w
            .secret_env
            .as_ref()
            .map(Spanned::span)
            .or_else(|| w.secret_file.as_ref().map(Spanned::span))
            .unwrap_or(span);
        p.at(at, "a Standard Webhooks secret must be whsec_ followed by base64 (the form the sender shows); check the value");
    }
    decoded
}

/// The HMAC key of a Standard Webhooks secret: the base64 after an
/// optional `whsec_` prefix (padding optional, as the reference libraries
/// accept it).
pub(crate) fn standard_secret(secret: &Secret) -> Option<Secret> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text = secret.expose();
    let text = text.strip_prefix(b"whsec_").unwrap_or(text);
    match LENIENT.decode(text) {
        Ok(bytes) if !bytes.is_empty() => Some(Secret::new(bytes)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Secrets that exist only in the test.
    struct Fake;

    impl Environment for Fake {
        fn var(&self, name: &str) -> Option<String> {
            match name {
                "RG_T_STRIPE" => Some("whsec_stripe".into()),
                "RG_T_OLD" => Some("whsec_old".into()),
                "RG_T_SW" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
                _ => None,
            }
        }

        fn read_file(&self, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
            match path.to_str() {
                Some("/fake/gh") => Ok(b"gh-secret\n".to_vec()),
                _ => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "fake")),
            }
        }
    }

    const SERVER: &str =
        "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\n";

    fn parse(route: &str) -> Result<Config, Vec<String>> {
        let text = format!("{SERVER}[[routes]]\nname = \"hook\"\npath = \"/hook\"\n{route}\n");
        Config::parse_with(&text, "t.toml", &Fake).map_err(|e| e.errors)
    }

    #[test]
    fn defaults_rotation_and_files() {
        let config = parse(r#"webhook = { provider = "stripe", secret_env = "RG_T_STRIPE", previous_secret_env = "RG_T_OLD" }"#).unwrap();
        let hook = config.routes[0].webhook.clone().unwrap();
        assert_eq!(hook.provider, WebhookProvider::Stripe);
        assert_eq!(hook.secrets.len(), 2);
        assert_eq!(hook.secrets[0].expose(), b"whsec_stripe");
        assert_eq!(hook.tolerance, Duration::from_secs(300));
        assert_eq!(hook.dedupe.ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(
            hook.dedupe.release_statuses,
            (500..=599).collect::<Vec<u16>>()
        );
        assert!(
            hook.dedupe.lease > Duration::from_secs(30),
            "outlasts the upstream timeout"
        );
        assert!(!config.routes[0].is_pass_through());
        let gh = parse(r#"webhook = { provider = "github", secret_file = "/fake/gh", dedupe_ttl_secs = 3600, release_statuses = [500, 503] }"#).unwrap();
        let hook = gh.routes[0].webhook.clone().unwrap();
        assert_eq!(hook.secrets[0].expose(), b"gh-secret");
        assert_eq!(hook.dedupe.ttl, Duration::from_secs(3600));
        assert_eq!(hook.dedupe.release_statuses, vec![500, 503]);
        let sw = parse(r#"webhook = { provider = "standard-webhooks", secret_env = "RG_T_SW", tolerance_secs = 60 }"#).unwrap();
        let hook = sw.routes[0].webhook.clone().unwrap();
        assert_eq!(
            hook.secrets[0].expose().len(),
            24,
            "the base64 part, decoded"
        );
        assert_eq!(hook.tolerance, Duration::from_secs(60));
    }

    #[test]
    fn exclusive_with_the_rules_it_replaces_at_their_positions() {
        let errors = parse("freshness = { max_skew_secs = 60 }\nnonce = { required = true }\nsignature = { required = true }\nidempotency = { required = true }\nwebhook = { provider = \"slack\", secret_env = \"RG_T_STRIPE\" }").unwrap_err();
        for (name, line) in [
            ("freshness", 7),
            ("nonce", 8),
            ("signature", 9),
            ("idempotency", 10),
        ] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(&format!("t.toml:{line}:"))
                        && e.contains(&format!("{name} cannot be combined with webhook"))),
                "{name}: {errors:?}"
            );
        }
    }

    #[test]
    fn every_mistake_is_reported_with_its_position() {
        let cases = [
            (
                r#"webhook = { provider = "paypal", secret_env = "RG_T_STRIPE" }"#,
                "t.toml:7:24: webhook provider \"paypal\" is unknown",
            ),
            (
                r#"webhook = { provider = "github", secret_env = "RG_T_STRIPE", tolerance_secs = 300 }"#,
                "t.toml:7:79: GitHub deliveries carry no timestamp",
            ),
            (
                r#"webhook = { provider = "stripe" }"#,
                "t.toml:7:11: webhook needs exactly one of secret_env or secret_file",
            ),
            (
                r#"webhook = { provider = "stripe", secret_env = "RG_T_UNSET" }"#,
                "t.toml:7:47: environment variable RG_T_UNSET is not set",
            ),
            (
                r#"webhook = { provider = "standard-webhooks", secret_env = "RG_T_STRIPE" }"#,
                "t.toml:7:58: a Standard Webhooks secret must be whsec_ followed by base64",
            ),
            (
                r#"webhook = { provider = "stripe", secret_env = "RG_T_STRIPE", release_statuses = [700] }"#,
                "t.toml:7:82: 700 is not an HTTP status",
            ),
            (
                r#"webhook = { provider = "stripe", secret_env = "RG_T_STRIPE", dedupe_ttl_secs = 10 }"#,
                "t.toml:7:80: dedupe_ttl_secs must be at least the claim's lease",
            ),
            (
                r#"webhook = { provider = "stripe", secret_env = "RG_T_STRIPE", tolerance = 5 }"#,
                "t.toml:7:62: unknown field `tolerance`",
            ),
        ];
        for (route, expected) in cases {
            let errors = parse(route).unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{route}: {errors:?}"
            );
            assert!(
                !errors.iter().any(|e| e.contains("whsec_stripe")),
                "no secret in a message: {errors:?}"
            );
        }
    }

    #[test]
    fn standard_secrets_decode_with_or_without_prefix_and_padding() {
        let with = standard_secret(&Secret::new(
            b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec(),
        ));
        let without = standard_secret(&Secret::new(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec()));
        assert!(with.is_some());
        assert_eq!(with, without);
        assert!(standard_secret(&Secret::new(b"whsec_c2VjcmV0".to_vec())).is_some());
        assert!(standard_secret(&Secret::new(b"whsec_c2VjcmV0MQ".to_vec())).is_some());
        assert!(standard_secret(&Secret::new(b"whsec_not base64!".to_vec())).is_none());
        assert!(standard_secret(&Secret::new(b"whsec_".to_vec())).is_none());
    }
}
