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
    parse_component, supported as component_supported, DEFAULT_COMPONENTS,
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

/// TLS listener files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Client certificates (mTLS), when `client_ca_file` is set.
    pub client_auth: Option<ClientAuth>,
}

/// `[server.tls] client_ca_file` and `client_auth`: which CAs vouch for
/// client certificates, and whether a client must present one.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// The CA file (for messages).
    pub ca_file: PathBuf,
    /// The CA certificates read from it when the config was loaded.
    pub roots: std::sync::Arc<rustls::RootCertStore>,
    /// `client_auth = "required"` (the default): the handshake refuses a
    /// client without a verified certificate. `optional`: it is let in,
    /// and only `identity = "client_cert"` routes refuse it.
    pub required: bool,
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
        let config = validate::validate(raw, &mut problems, file, env);
        let errors = problems.into_lines();
        if errors.is_empty() {
            config.ok_or_else(|| ConfigErrors {
                errors: vec![format!("{file}: invalid configuration")],
            })
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
mod tests {
    use super::*;

    const MINIMAL: &str =
        "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\n";

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.errors,
        }
    }

    #[test]
    fn minimal_config_has_defaults() {
        let config = Config::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(config.server.max_body_bytes, 1_048_576);
        assert_eq!(config.server.unmatched, Unmatched::Forward);
        assert_eq!(config.store.kind, StoreKind::Memory);
        assert_eq!(config.store.on_error, OnStoreError::Reject);
        assert!(config.routes.is_empty());
    }

    #[test]
    fn workers_default_to_one_per_cpu_and_must_be_sensible() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(
            Config::parse(MINIMAL, "t.toml").unwrap().server.workers,
            cpus
        );
        let four = Config::parse(&format!("{MINIMAL}workers = 4\n"), "t.toml").unwrap();
        assert_eq!(four.server.workers, 4);
        for bad in ["0", "5000"] {
            let errs = errors(&format!("{MINIMAL}workers = {bad}\n"));
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].starts_with("t.toml:4:11: workers must be between 1 and 1024"),
                "{}",
                errs[0]
            );
        }
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = format!("{MINIMAL}upstream_timout_ms = 5\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:4:1: unknown field `upstream_timout_ms`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[0].contains("upstream_timeout_ms"),
            "lists what to write: {}",
            errs[0]
        );
    }

    #[test]
    fn unknown_methods_are_errors_with_a_suggestion_unless_listed_as_extensions() {
        let route = |methods: &str| {
            format!("{MINIMAL}[[routes]]\nname = \"a\"\nmethods = {methods}\npath = \"/p\"\n")
        };
        let errs = errors(&route(r#"["PSOT"]"#));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains(r#""PSOT" is not a registered HTTP method: did you mean "POST"?"#),
            "{errs:?}"
        );
        let errs = errors(&route(r#"["PURGE"]"#));
        assert!(errs[0].contains("extension_methods"), "{errs:?}");
        let text = route(r#"["purge", "post"]"#).replacen(
            "[server]\n",
            "[server]\nextension_methods = [\"PURGE\"]\n",
            1,
        );
        let config = Config::parse(&text, "t.toml").unwrap();
        let methods = config.routes[0].methods.clone().unwrap();
        assert_eq!(
            methods,
            vec![
                http::Method::from_bytes(b"PURGE").unwrap(),
                http::Method::POST
            ]
        );
    }

    #[test]
    fn every_route_problem_is_reported_at_once() {
        let text = format!(
            "{MINIMAL}[[routes]]\nname = \"a\"\npath = \"payments\"\n\n[[routes]]\nname = \"b\"\npath = \"/x\"\nidentity = \"key_id\"\nnonce = {{ required = true }}\n"
        );
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:6:8:") && e.contains("must start with '/'")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:11:12:") && e.contains("signature")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:12:9:") && e.contains("freshness")),
            "{errs:?}"
        );
    }

    #[test]
    fn lease_must_exceed_upstream_timeout_plus_the_clock_margin() {
        let text = "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\nupstream_timeout_ms = 30000\n[[routes]]\nname = \"p\"\npath = \"/p\"\nidempotency = { lease_secs = 10 }\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("lease_secs = 36"), "{}", errs[0]);
        // The replicas' clock margin counts: 30 s + 5 s by default.
        let ok = text.replace("lease_secs = 10", "lease_secs = 36");
        assert!(errors(&ok).is_empty());
        let narrow = text
            .replace("lease_secs = 10", "lease_secs = 31")
            .replace("[[routes]]", "[store]\nclock_margin_secs = 0\n[[routes]]");
        assert!(errors(&narrow).is_empty(), "{:?}", errors(&narrow));
        let at_margin = text.replace("lease_secs = 10", "lease_secs = 35");
        assert_eq!(errors(&at_margin).len(), 1);
    }

    #[test]
    fn bad_enum_value_says_what_is_allowed() {
        let errs = errors(&format!("{MINIMAL}unmatched = \"deny\"\n"));
        assert!(errs[0].starts_with("t.toml:4:13:"), "{errs:?}");
        assert!(
            errs[0].contains("forward") && errs[0].contains("reject"),
            "{errs:?}"
        );
    }

    #[test]
    fn missing_secret_env_is_an_error_without_the_value() {
        let text = format!(
            "{MINIMAL}[[keys]]\nid = \"k\"\nsecret_env = \"REPLAY_GUARD_TEST_SURELY_UNSET\"\n"
        );
        let errs = errors(&text);
        assert!(errs[0].starts_with("t.toml:6:14:"), "{errs:?}");
    }

    /// Variables and files that exist only in the test, never in the
    /// process: a parse that finds them read them through the fake.
    #[derive(Default)]
    struct FakeEnvironment {
        vars: BTreeMap<&'static str, &'static str>,
        files: BTreeMap<&'static str, &'static [u8]>,
    }

    impl Environment for FakeEnvironment {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).map(|v| (*v).to_owned())
        }

        fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            path.to_str()
                .and_then(|p| self.files.get(p))
                .map(|bytes| bytes.to_vec())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not in the fake"))
        }
    }

    fn fake() -> FakeEnvironment {
        FakeEnvironment {
            vars: BTreeMap::from([
                ("RG_FAKE_ONLY_BILLING", "from-the-fake-env"),
                ("RG_FAKE_ONLY_OLD", "old-secret"),
                ("RG_FAKE_ONLY_EMPTY", ""),
                ("AWS_REGION", "eu-north-1"),
            ]),
            files: BTreeMap::from([
                ("/fake/billing.key", &b"file-secret\r\n"[..]),
                ("/fake/old.key", &b"old-file-secret\n"[..]),
                ("/fake/empty.key", &b"\n"[..]),
            ]),
        }
    }

    #[test]
    fn secrets_come_from_the_injected_environment() {
        let text = format!(
            "{MINIMAL}[[keys]]\nid = \"env\"\nsecret_env = \"RG_FAKE_ONLY_BILLING\"\nprevious_secret_env = \"RG_FAKE_ONLY_OLD\"\n\
             [[keys]]\nid = \"file\"\nsecret_file = \"/fake/billing.key\"\nprevious_secret_file = \"/fake/old.key\"\n\
             [[keys]]\nid = \"rotated\"\nsecret_file = \"/fake/billing.key\"\nprevious_secret_env = \"RG_FAKE_ONLY_UNSET\"\n"
        );
        let config = Config::parse_with(&text, "t.toml", &fake()).unwrap();
        let secrets =
            |id: &str| -> Vec<&[u8]> { config.keys[id].secrets().map(Secret::expose).collect() };
        assert_eq!(
            secrets("env"),
            [&b"from-the-fake-env"[..], &b"old-secret"[..]]
        );
        assert!(!config.keys["env"].inline);
        assert_eq!(
            secrets("file"),
            [&b"file-secret"[..], &b"old-file-secret"[..]],
            "one trailing CRLF trimmed"
        );
        assert_eq!(
            secrets("rotated"),
            [&b"file-secret"[..]],
            "an unset previous secret is normal"
        );
        // The process has none of these: the real environment was not read.
        assert!(std::env::var("RG_FAKE_ONLY_BILLING").is_err());
        assert!(Config::parse(&text, "t.toml").is_err());
    }

    #[test]
    fn key_hash_secret_env_is_read_like_every_secret_env() {
        let set = format!("{MINIMAL}[store]\nkey_hash_secret_env = \"RG_FAKE_ONLY_BILLING\"\n");
        let config = Config::parse_with(&set, "t.toml", &fake()).unwrap();
        let secret = config.store.key_hash_secret.as_ref().map(Secret::expose);
        assert_eq!(secret, Some(&b"from-the-fake-env"[..]));
        assert!(!format!("{config:?}").contains("from-the-fake-env"));
        let unset = Config::parse_with(MINIMAL, "t.toml", &fake()).unwrap();
        assert!(unset.store.key_hash_secret.is_none());
        for name in ["RG_FAKE_ONLY_EMPTY", "RG_FAKE_ONLY_UNSET"] {
            let text = format!("{MINIMAL}[store]\nkey_hash_secret_env = \"{name}\"\n");
            let errs = Config::parse_with(&text, "t.toml", &fake())
                .unwrap_err()
                .errors;
            assert!(errs[0].starts_with("t.toml:5:23:"), "{errs:?}");
            assert!(errs[0].contains(name), "{errs:?}");
        }
    }

    #[test]
    fn injected_environment_problems_keep_their_messages() {
        let text = format!(
            "{MINIMAL}[[keys]]\nid = \"a\"\nsecret_env = \"RG_FAKE_ONLY_EMPTY\"\n\
             [[keys]]\nid = \"b\"\nsecret_file = \"/fake/missing.key\"\n\
             [[keys]]\nid = \"c\"\nsecret_file = \"/fake/empty.key\"\n"
        );
        let errs = Config::parse_with(&text, "t.toml", &fake())
            .unwrap_err()
            .errors;
        assert_eq!(
            errs,
            [
                "t.toml:6:14: environment variable RG_FAKE_ONLY_EMPTY is not set or empty: export it, or use secret_file",
                "t.toml:9:15: cannot read secret file /fake/missing.key: not in the fake",
                "t.toml:12:15: secret file /fake/empty.key is empty",
            ]
        );
        assert!(!errs.concat().contains("from-the-fake-env"));
    }

    #[test]
    fn dynamodb_region_comes_from_the_injected_environment() {
        let text =
            format!("{MINIMAL}[store]\nkind = \"dynamodb\"\n[store.dynamodb]\ntable = \"rg-t\"\n");
        let config = Config::parse_with(&text, "t.toml", &fake()).unwrap();
        assert_eq!(config.store.dynamodb.unwrap().region, "eu-north-1");
        let errs = Config::parse_with(&text, "t.toml", &FakeEnvironment::default())
            .unwrap_err()
            .errors;
        assert_eq!(
            errs,
            ["t.toml:6:1: [store.dynamodb] has no region: write region = \"us-east-1\" (or set AWS_REGION)"]
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let text = format!("{MINIMAL}[[keys]]\nid = \"k\"\nsecret = \"hunter2-very-secret\"\n");
        let config = Config::parse(&text, "t.toml").unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn rate_limit_divides_by_replicas() {
        let text = format!("{MINIMAL}[[routes]]\nname = \"r\"\npath = \"/r\"\nrate_limit = {{ per_second = 90, burst = 30, replicas = 3 }}\n");
        let config = Config::parse(&text, "t.toml").unwrap();
        let rate = config.routes[0].rate_limit.unwrap();
        assert_eq!(rate.quota.get(), 30);
        assert_eq!(rate.burst.get(), 10);
    }

    #[test]
    fn a_cluster_rate_limit_is_not_divided_and_a_bad_scope_is_reported() {
        let text = format!("{MINIMAL}[[routes]]\nname = \"r\"\npath = \"/r\"\nrate_limit = {{ per_second = 90, burst = 30, replicas = 3, scope = \"cluster\" }}\n");
        let config = Config::parse(&text, "t.toml").unwrap();
        let rate = config.routes[0].rate_limit.unwrap();
        assert_eq!((rate.quota.get(), rate.burst.get()), (90, 30));
        assert_eq!(rate.scope, RateScope::Cluster);
        assert_eq!(rate.replicas.get(), 3, "the fallback's divisor");
        let text = format!("{MINIMAL}[[routes]]\nname = \"r\"\npath = \"/r\"\nrate_limit = {{ per_second = 9, scope = \"global\" }}\n");
        let error = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(error.contains("scope \"global\" is not"), "{error}");
        assert!(error.contains("t.toml:"), "{error}");
    }
}
