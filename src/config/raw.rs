//! The raw layer: serde structs that mirror the TOML file exactly.
//!
//! Every table refuses unknown keys (`deny_unknown_fields`), so a typo is
//! an error and never a silently ignored rule, and every value that can be
//! wrong keeps its position (`Spanned`) for a `file:line:col` message.
//!
//! This module must never hold a validated value, check a rule, read the
//! environment or a file: it only says what the file says. Validation
//! ([`super::validate`]) turns it into the typed [`super::Config`].

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Mode, OnStoreError, StoreKind, TimestampFormat, Unmatched};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) keys: Vec<Spanned<RawKey>>,
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    #[serde(default)]
    pub(super) routes: Vec<Spanned<RawRoute>>,
    pub(super) jwt: Option<Spanned<RawJwt>>,
}

/// `[jwt]`: bearer-token verification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    pub(super) header: Option<Spanned<String>>,
    pub(super) issuer: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) audiences: Vec<Spanned<String>>,
    pub(super) algorithms: Option<Vec<Spanned<String>>>,
    pub(super) jwks_file: Option<Spanned<PathBuf>>,
    pub(super) jwks_url: Option<Spanned<String>>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) jwks_refresh_secs: Option<Spanned<u64>>,
    pub(super) leeway_secs: Option<u64>,
    pub(super) cache_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Spanned<String>,
    pub(super) admin_listen: Option<Spanned<String>>,
    pub(super) upstream: Spanned<String>,
    pub(super) upstream_timeout_ms: Option<Spanned<u64>>,
    pub(super) upstream_connect_timeout_ms: Option<Spanned<u64>>,
    pub(super) max_body_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) unmatched: Unmatched,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<Spanned<String>>,
    pub(super) shutdown_grace_secs: Option<u64>,
    pub(super) max_connections: Option<Spanned<u64>>,
    pub(super) workers: Option<Spanned<u64>>,
    pub(super) max_uri_bytes: Option<Spanned<u64>>,
    pub(super) header_read_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) access_log: bool,
    pub(super) access_log_fields: Option<Vec<Spanned<String>>>,
    pub(super) watch_config: Option<bool>,
    #[serde(default)]
    pub(super) case_insensitive_paths: bool,
    #[serde(default)]
    pub(super) extension_methods: Vec<Spanned<String>>,
    pub(super) tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
    pub(super) client_ca_file: Option<Spanned<PathBuf>>,
    pub(super) client_auth: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    #[serde(default)]
    pub(super) kind: StoreKind,
    #[serde(default)]
    pub(super) on_error: OnStoreError,
    #[serde(default)]
    pub(super) memory: RawMemory,
    pub(super) dynamodb: Option<Spanned<RawDynamo>>,
    pub(super) clock_margin_secs: Option<u64>,
    /// Environment variable holding the key of the store keys' HMAC.
    pub(super) key_hash_secret_env: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMemory {
    pub(super) max_entries: Option<Spanned<u64>>,
    pub(super) restart_fence: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDynamo {
    #[serde(default = "default_table")]
    pub(super) table: String,
    pub(super) region: Option<String>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
}

fn default_table() -> String {
    "replay-guard".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) id: Spanned<String>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<PathBuf>>,
    pub(super) secret: Option<Spanned<String>>,
    pub(super) previous_secret_env: Option<Spanned<String>>,
    pub(super) previous_secret_file: Option<Spanned<PathBuf>>,
    pub(super) secret_encoding: Option<Spanned<String>>,
    pub(super) public_key_file: Option<Spanned<PathBuf>>,
    pub(super) previous_public_key_file: Option<Spanned<PathBuf>>,
    pub(super) algorithm: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    #[serde(default)]
    pub(super) headers: RawHeaders,
    #[serde(default)]
    pub(super) mode: Mode,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaders {
    pub(super) timestamp: Option<Spanned<String>>,
    pub(super) nonce: Option<Spanned<String>>,
    pub(super) signature: Option<Spanned<String>>,
    pub(super) key_id: Option<Spanned<String>>,
    pub(super) idempotency_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Spanned<String>,
    pub(super) methods: Option<Vec<Spanned<String>>>,
    pub(super) path: Spanned<String>,
    pub(super) identity: Option<Spanned<String>>,
    pub(super) mode: Option<Mode>,
    #[serde(default)]
    pub(super) headers: RawHeaders,
    pub(super) freshness: Option<Spanned<RawFreshness>>,
    pub(super) nonce: Option<Spanned<RawRequired>>,
    pub(super) signature: Option<Spanned<RawSignature>>,
    pub(super) idempotency: Option<Spanned<RawIdempotency>>,
    pub(super) rate_limit: Option<Spanned<RawRateLimit>>,
    pub(super) webhook: Option<Spanned<RawWebhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFreshness {
    pub(super) max_skew_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) format: TimestampFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequired {
    #[serde(default = "yes")]
    pub(super) required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignature {
    #[serde(default = "yes")]
    pub(super) required: bool,
    pub(super) scheme: Option<Spanned<String>>,
    pub(super) components: Option<Vec<Spanned<String>>>,
    pub(super) tag: Option<Spanned<String>>,
    pub(super) label: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdempotency {
    #[serde(default = "yes")]
    pub(super) required: bool,
    pub(super) ttl_secs: Option<Spanned<u64>>,
    pub(super) lease_secs: Option<Spanned<u64>>,
    pub(super) max_response_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) release_statuses: Vec<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub(super) per_second: Option<Spanned<u32>>,
    pub(super) per_minute: Option<Spanned<u32>>,
    pub(super) burst: Option<Spanned<u32>>,
    pub(super) replicas: Option<Spanned<u32>>,
    /// `"instance"` (default) or `"cluster"`; checked in validation.
    pub(super) scope: Option<Spanned<String>>,
}

/// `webhook = { provider = ..., secret_env | secret_file, ... }` on a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) provider: Spanned<String>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<PathBuf>>,
    pub(super) previous_secret_env: Option<Spanned<String>>,
    pub(super) previous_secret_file: Option<Spanned<PathBuf>>,
    pub(super) tolerance_secs: Option<Spanned<u64>>,
    pub(super) dedupe_ttl_secs: Option<Spanned<u64>>,
    pub(super) release_statuses: Option<Vec<Spanned<u16>>>,
}
