//! Configuration: raw TOML → validated, typed, frozen [`Config`].
//!
//! Parsing happens in two layers. The raw layer (`raw`) mirrors the file
//! with serde structs that refuse unknown keys (`deny_unknown_fields`), so a
//! typo is an error and never a silently ignored rule. Validation
//! (`validate`) then turns them into typed values (durations as
//! [`Duration`], addresses as [`SocketAddr`], header names as
//! [`http::HeaderName`]), collecting *every* problem with its
//! `file:line:col` before failing once.
//!
//! This module holds the frozen result: [`Config`] and its server and
//! store parts here, the route rules in `rules` ([`Route`], [`Freshness`],
//! [`RateLimit`], …), keys in `secret` ([`Key`], [`Secret`]) and the
//! compiled [`PathPattern`] in `pattern`; all are re-exported here, so
//! every type is named `crate::config::…`. The route table
//! ([`crate::routes`]) depends on this module, never the reverse.
//!
//! Secrets are resolved while validating (from the environment or a file,
//! read through one injectable [`Environment`]) into [`Secret`], whose
//! `Debug` never prints the value. This module must never print, log or put
//! a secret value into an error message, and never read a variable or a
//! secret file except through the [`Environment`] it is given.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

mod access_log;
mod algorithm;
mod environment;
mod jwt;
mod pattern;
mod raw;
mod rfc9421;
mod rules;
mod schema;
mod secret;
mod validate;
mod webhook;

pub use crate::tls::{ClientAuth, TlsFiles};
pub use access_log::{AccessField, AccessLogFields};
pub use algorithm::{Algorithm, KeyMaterial, PublicKey};
pub use environment::{Environment, ProcessEnvironment};
pub use jwt::{JwksSource, JwtConfig, JwtKey, JwtKeys};
pub use pattern::PathPattern;
pub use rfc9421::{Component, Rfc9421Rule, SignatureScheme};
pub use rules::{
    Freshness, HeaderNames, Idempotency, Identity, Mode, RateLimit, RateScope, Route,
    TimestampFormat,
};
pub use secret::{Key, Secret};
#[cfg(test)]
pub(crate) use validate::webhook::standard_secret as standard_webhook_secret;
pub use webhook::{Webhook, WebhookProvider};

pub use validate::signature::{
    parse_component, support as component_support, supported as component_supported,
    DEFAULT_COMPONENTS,
};

use raw::RawConfig;
use validate::Problems;

// ---------------------------------------------------------------------------
// Typed layer: what the proxy runs on.
// ---------------------------------------------------------------------------

/// What to do with a request whose path no route names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Forward it unchecked (default: replay-guard protects named routes).
    #[default]
    Forward,
    /// Default-deny: 404 `route_not_allowed`.
    Reject,
}

/// Which store keeps replay state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded, single instance.
    #[default]
    Memory,
    /// Shared by replicas.
    Dynamodb,
}

/// What to do when the store cannot answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Fail closed: 503 `store_unavailable`, nothing forwarded.
    #[default]
    Reject,
    /// Fail open: forward unchecked, counted and logged.
    Allow,
}

/// The upstream, split for building request URIs.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin_listen: Option<SocketAddr>,
    /// Where accepted requests go.
    pub upstream: Upstream,
    /// Time to the upstream's response (headers and, where buffered, body).
    pub upstream_timeout: Duration,
    /// Time to connect to the upstream.
    pub upstream_connect_timeout: Duration,
    /// Body cap on protected routes.
    pub max_body_bytes: usize,
    /// Policy for unmatched paths.
    pub unmatched: Unmatched,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How long SIGTERM waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Concurrent client connections accepted at most.
    pub max_connections: usize,
    /// Threads serving the public listener, each with its own event loop
    /// and upstream connections (default: one per CPU).
    pub workers: usize,
    /// Longest request target (path and query) accepted → 414 beyond.
    pub max_uri_bytes: usize,
    /// Time a client has to send its request head.
    pub header_read_timeout: Duration,
    /// Optional TLS on the public listener.
    pub tls: Option<TlsFiles>,
    /// One `info` line per request, target `replay_guard::access`.
    pub access_log: bool,
    /// The fields of that line (`access_log_fields`).
    pub access_log_fields: AccessLogFields,
    /// Reload when the config file changes (`watch_config`, default on).
    pub watch_config: bool,
    /// Match routes case-insensitively (for upstreams that ignore case),
    /// so `/PAYMENTS` gets `/payments`' checks. Forwarded paths keep their case.
    pub case_insensitive_paths: bool,
    /// Method names routes may list beyond the registered HTTP methods
    /// (upper-cased).
    pub extension_methods: Vec<String>,
}

/// `[store.dynamodb]`.
#[derive(Debug, Clone)]
pub struct DynamoConfig {
    /// Table name.
    pub table: String,
    /// AWS region.
    pub region: String,
    /// Optional endpoint (local DynamoDB-compatible server).
    pub endpoint_url: Option<String>,
    /// Per-call timeout.
    pub timeout: Duration,
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Which store.
    pub kind: StoreKind,
    /// Fail closed or open.
    pub on_error: OnStoreError,
    /// `key_hash_secret_env`: the key of the HMAC that turns scope and
    /// value into a store key; `None`: plain SHA-256 (SPEC §6).
    pub key_hash_secret: Option<Secret>,
    /// Memory store bound.
    pub max_entries: usize,
    /// Memory store: refuse timestamps older than the process start for one
    /// skew window after start (the store forgot every nonce).
    pub restart_fence: bool,
    /// How far replicas' clocks may differ: `lease_secs` must exceed the
    /// upstream timeout by it, since a replica whose clock runs ahead sees
    /// a live lease as expired that much earlier.
    pub clock_margin: Duration,
    /// DynamoDB settings (when `kind = "dynamodb"`).
    pub dynamodb: Option<DynamoConfig>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages).
    pub source: String,
    /// `[server]`.
    pub server: Server,
    /// `[store]`.
    pub store: StoreConfig,
    /// HMAC keys by id.
    pub keys: BTreeMap<String, Key>,
    /// `[jwt]`: bearer-token verification for `jwt:<claim>` identities.
    pub jwt: Option<JwtConfig>,
    /// Routes, in match order.
    pub routes: Vec<Route>,
    /// Valid but almost certainly not meant (`file:line:col: warning: …`):
    /// `check` prints them, `run` logs them at startup.
    pub warnings: Vec<String>,
    /// Every other file the config was built from (secret, public key and
    /// JWKS files), with the TLS certificate, key and client CA files: a
    /// change to any of them is a reload's business (`watch_config`).
    pub files: Vec<PathBuf>,
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// Every problem found in one configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    /// One line per problem, `file:line:col: message`.
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Loading.
// ---------------------------------------------------------------------------

impl Config {
    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            errors: vec![format!("{file}: cannot read the config file: {e}")],
        })?;
        Self::parse(&text, &file)
    }

    /// Parse and validate TOML text; `file` names it in messages.
    /// Secrets and the AWS region come from this process's environment.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        Self::parse_with(text, file, &ProcessEnvironment)
    }

    /// [`Config::parse`], reading variables and secret files from `env`.
    pub fn parse_with(
        text: &str,
        file: &str,
        env: &dyn Environment,
    ) -> Result<Config, ConfigErrors> {
        let mut problems = Problems::new(file, text);
        // Unknown keys, wrong types and bad enum values, all at once,
        // before serde (which would stop at the first).
        let schema = schema::problems(text);
        if !schema.is_empty() {
            for finding in schema {
                problems.at(finding.span, hint_for(&finding.message));
            }
            return Err(ConfigErrors {
                errors: problems.into_lines(),
            });
        }
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let message = hint_for(e.message());
                match e.span() {
                    Some(span) => problems.at(span, message),
                    None => problems.whole(message),
                }
                return Err(ConfigErrors {
                    errors: problems.into_lines(),
                });
            }
        };
        let recording = environment::Recording::new(env);
        let config = validate::validate(raw, &mut problems, file, &recording);
        let errors = problems.into_lines();
        if errors.is_empty() {
            let mut config = config.ok_or_else(|| ConfigErrors {
                errors: vec![format!("{file}: invalid configuration")],
            })?;
            let mut files = recording.into_files();
            if let Some(tls) = &config.server.tls {
                let ca = tls.client_auth.iter().map(|auth| &auth.ca_file);
                for path in [&tls.cert_file, &tls.key_file].into_iter().chain(ca) {
                    if !files.contains(path) {
                        files.push(path.clone());
                    }
                }
            }
            config.files = files;
            Ok(config)
        } else {
            Err(ConfigErrors { errors })
        }
    }
}

/// A file read for its `[store]` table alone (`init-table`): every other
/// table is ignored, so signing secrets need not be present.
#[derive(Deserialize)]
struct StoreOnly {
    #[serde(default)]
    store: raw::RawStore,
}

impl StoreConfig {
    /// Read a config file's `[store]` table only, validated like
    /// [`Config::load`] validates it (every problem, with positions).
    pub fn load(path: &Path) -> Result<StoreConfig, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            errors: vec![format!("{file}: cannot read the config file: {e}")],
        })?;
        Self::parse_with(&text, &file, &ProcessEnvironment)
    }

    /// [`StoreConfig::load`] of TOML text, reading variables from `env`.
    pub fn parse_with(
        text: &str,
        file: &str,
        env: &dyn Environment,
    ) -> Result<StoreConfig, ConfigErrors> {
        let mut problems = Problems::new(file, text);
        let schema = schema::problems_in(text, "store");
        if !schema.is_empty() {
            for finding in schema {
                problems.at(finding.span, hint_for(&finding.message));
            }
            return Err(ConfigErrors {
                errors: problems.into_lines(),
            });
        }
        let raw: StoreOnly = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                match e.span() {
                    Some(span) => problems.at(span, e.message().trim_end()),
                    None => problems.whole(e.message().trim_end()),
                }
                return Err(ConfigErrors {
                    errors: problems.into_lines(),
                });
            }
        };
        let store = validate::validate_store_only(raw.store, &mut problems, env);
        let errors = problems.into_lines();
        match store {
            Some(store) if errors.is_empty() => Ok(store),
            _ if errors.is_empty() => Err(ConfigErrors {
                errors: vec![format!("{file}: invalid [store]")],
            }),
            _ => Err(ConfigErrors { errors }),
        }
    }
}

/// Make serde's messages say what to write instead where they do not.
fn hint_for(message: &str) -> String {
    let message = message.trim_end();
    // The schema pass's generic "add …" gives way to a worked example.
    let base = message.split(": add ").next().unwrap_or(message);
    if message.starts_with("missing field `server`") {
        let message = base;
        return format!("{message}: add a [server] table with listen and upstream");
    }
    if message.starts_with("missing field `listen`") {
        let message = base;
        return format!("{message}: write listen = \"0.0.0.0:8080\"");
    }
    if message.starts_with("missing field `upstream`") {
        let message = base;
        return format!("{message}: write upstream = \"http://127.0.0.1:9000\"");
    }
    message.to_owned()
}

#[cfg(test)]
mod tests;
