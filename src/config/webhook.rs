//! The typed webhook rule of a route (`webhook = { provider = ... }`):
//! which provider's scheme verifies a delivery, with which secrets, how
//! far its timestamp may be from the proxy's clock, and the idempotency
//! rule its delivery id is claimed under.
//!
//! Plain validated values built by validation; [`crate::checks::webhook`]
//! reads them. This module must never parse, validate, perform I/O or
//! print a secret (a [`Secret`]'s `Debug` is redacted).

use std::fmt;
use std::time::Duration;

use super::{Idempotency, Secret};

/// Whose webhook scheme a route verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookProvider {
    /// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]` over `<t>.<body>`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex>` over the body; no timestamp.
    Github,
    /// `X-Slack-Signature: v0=<hex>` over `v0:<ts>:<body>`.
    Slack,
    /// Standard Webhooks (Svix and others): `webhook-id`,
    /// `webhook-timestamp`, `webhook-signature: v1,<base64> ...` over
    /// `<id>.<timestamp>.<body>`.
    StandardWebhooks,
}

impl WebhookProvider {
    /// Every provider, in the order the docs list them.
    pub const ALL: [WebhookProvider; 4] = [
        WebhookProvider::Stripe,
        WebhookProvider::Github,
        WebhookProvider::Slack,
        WebhookProvider::StandardWebhooks,
    ];

    /// The name written in the config, in metric labels and in
    /// `X-Replay-Guard-Webhook`.
    pub fn name(self) -> &'static str {
        match self {
            WebhookProvider::Stripe => "stripe",
            WebhookProvider::Github => "github",
            WebhookProvider::Slack => "slack",
            WebhookProvider::StandardWebhooks => "standard-webhooks",
        }
    }

    /// The provider a config name means.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the scheme signs a timestamp (all but GitHub).
    pub fn has_timestamp(self) -> bool {
        self != WebhookProvider::Github
    }
}

impl fmt::Display for WebhookProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A route's webhook rule.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Whose scheme.
    pub provider: WebhookProvider,
    /// HMAC keys, current first, then the previous one during a rotation
    /// (for Standard Webhooks already base64-decoded from `whsec_...`).
    pub secrets: Vec<Secret>,
    /// Accepted distance between the signed timestamp and the proxy's
    /// clock, both ways (unused for GitHub, which signs none).
    pub tolerance: Duration,
    /// How the delivery id is claimed: `ttl` is `dedupe_ttl_secs`,
    /// `release_statuses` the upstream answers after which a redelivery is
    /// forwarded again.
    pub dedupe: Idempotency,
}
