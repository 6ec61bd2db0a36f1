//! Configuration: raw TOML → validated, typed, frozen [`Config`].
//!
//! Parsing happens in two layers. Raw serde structs mirror the file and
//! refuse unknown keys (`deny_unknown_fields`), so a typo is an error and
//! never a silently ignored rule. Validation then turns them into typed
//! values (durations as [`Duration`], addresses as [`SocketAddr`], header
//! names as [`HeaderName`]), collecting *every* problem with its
//! `file:line:col` before failing once.
//!
//! Secrets are resolved here (from the environment or a file) into
//! [`Secret`], whose `Debug` never prints the value. This module must never
//! print, log or put a secret value into an error message.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Uri};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

mod pattern;
mod raw;
mod rules;
mod secret;

pub use pattern::PathPattern;
pub use rules::{
    Freshness, HeaderNames, Idempotency, Identity, Mode, RateLimit, Route, TimestampFormat,
};
pub use secret::{Key, Secret};

use raw::{RawConfig, RawHeaders, RawKey, RawRateLimit, RawRoute, RawServer, RawStore};

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
    /// One `info` line per request (method, route, status, duration).
    pub access_log: bool,
    /// Match routes case-insensitively (for upstreams that ignore case),
    /// so `/PAYMENTS` gets `/payments`' checks. Forwarded paths keep their case.
    pub case_insensitive_paths: bool,
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
    /// Memory store bound.
    pub max_entries: usize,
    /// Memory store: refuse timestamps older than the process start for one
    /// skew window after start (the store forgot every nonce).
    pub restart_fence: bool,
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
    /// Routes, in match order.
    pub routes: Vec<Route>,
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

/// Collects problems with positions while validating.
struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    lines: Vec<String>,
}

impl<'a> Problems<'a> {
    fn at(&mut self, span: Range<usize>, message: impl fmt::Display) {
        let (line, col) = line_col(self.text, span.start);
        self.lines
            .push(format!("{}:{line}:{col}: {message}", self.file));
    }

    fn whole(&mut self, message: impl fmt::Display) {
        self.lines.push(format!("{}: {message}", self.file));
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
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
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let mut problems = Problems {
            file,
            text,
            lines: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let message = hint_for(e.message());
                match e.span() {
                    Some(span) => problems.at(span, message),
                    None => problems.whole(message),
                }
                return Err(ConfigErrors {
                    errors: problems.lines,
                });
            }
        };
        let config = validate(raw, &mut problems, file);
        if problems.lines.is_empty() {
            config.ok_or_else(|| ConfigErrors {
                errors: vec![format!("{file}: invalid configuration")],
            })
        } else {
            Err(ConfigErrors {
                errors: problems.lines,
            })
        }
    }
}

/// Make serde's messages say what to write instead where they do not.
fn hint_for(message: &str) -> String {
    let message = message.trim_end();
    if message.starts_with("missing field `server`") {
        return format!("{message}: add a [server] table with listen and upstream");
    }
    if message.starts_with("missing field `listen`") {
        return format!("{message}: write listen = \"0.0.0.0:8080\"");
    }
    if message.starts_with("missing field `upstream`") {
        return format!("{message}: write upstream = \"http://127.0.0.1:9000\"");
    }
    message.to_owned()
}

fn parse_socket_addr(
    value: &Spanned<String>,
    key: &str,
    problems: &mut Problems<'_>,
) -> Option<SocketAddr> {
    match value.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.at(
                value.span(),
                format!(
                    "{key} = {:?} is not an IP:port; write for example \"127.0.0.1:8080\" or \"[::1]:8080\"",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

fn millis(value: &Option<Spanned<u64>>, default: u64, key: &str, p: &mut Problems<'_>) -> Duration {
    match value {
        Some(v) if *v.get_ref() == 0 => {
            p.at(v.span(), format!("{key} must be at least 1"));
            Duration::from_millis(default)
        }
        Some(v) => Duration::from_millis(*v.get_ref()),
        None => Duration::from_millis(default),
    }
}

fn validate(raw: RawConfig, p: &mut Problems<'_>, file: &str) -> Option<Config> {
    let server = validate_server(raw.server, p);
    let store = validate_store(raw.store, p);
    let keys = validate_keys(raw.keys, p);
    let defaults = header_names(&raw.defaults.headers, None, p);
    let default_mode = raw.defaults.mode;
    let mut names = HashSet::new();
    let mut routes = Vec::new();
    for raw_route in raw.routes {
        if let Some(route) = validate_route(
            raw_route,
            &defaults,
            default_mode,
            server.as_ref(),
            &mut names,
            p,
        ) {
            routes.push(route);
        }
    }
    if let (Some(server), Some(store)) = (server, store) {
        return Some(Config {
            source: file.to_owned(),
            server,
            store,
            keys,
            routes,
        });
    }
    None
}

fn validate_server(raw: RawServer, p: &mut Problems<'_>) -> Option<Server> {
    let listen = parse_socket_addr(&raw.listen, "listen", p);
    let admin_listen = raw
        .admin_listen
        .as_ref()
        .and_then(|a| parse_socket_addr(a, "admin_listen", p));
    let upstream = match raw.upstream.get_ref().parse::<Uri>() {
        Ok(uri) => match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority))
                if (scheme == &http::uri::Scheme::HTTP || scheme == &http::uri::Scheme::HTTPS)
                    && matches!(uri.path(), "" | "/")
                    && uri.query().is_none() =>
            {
                Some(Upstream {
                    scheme: scheme.clone(),
                    authority: authority.clone(),
                })
            }
            _ => {
                p.at(
                    raw.upstream.span(),
                    "upstream must be an http:// or https:// URL with a host and port and no path, e.g. \"http://127.0.0.1:9000\"",
                );
                None
            }
        },
        Err(_) => {
            p.at(
                raw.upstream.span(),
                "upstream is not a URL; write for example \"http://127.0.0.1:9000\"",
            );
            None
        }
    };
    let mut trusted_proxies = Vec::new();
    for entry in &raw.trusted_proxies {
        let text = entry.get_ref();
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => p.at(
                entry.span(),
                format!("trusted_proxies entry {text:?} is not an IP or CIDR; write e.g. \"10.0.0.0/8\" or \"127.0.0.1\""),
            ),
        }
    }
    let max_body_bytes = match &raw.max_body_bytes {
        Some(v) if *v.get_ref() == 0 => {
            p.at(v.span(), "max_body_bytes must be at least 1");
            1
        }
        Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
        None => 1024 * 1024,
    };
    let max_connections = match &raw.max_connections {
        Some(v) if *v.get_ref() == 0 => {
            p.at(v.span(), "max_connections must be at least 1");
            1
        }
        Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
        None => 10_000,
    };
    let workers = match &raw.workers {
        Some(v) if *v.get_ref() == 0 || *v.get_ref() > 1024 => {
            p.at(
                v.span(),
                "workers must be between 1 and 1024; leave it out for one per CPU",
            );
            1
        }
        Some(v) => usize::try_from(*v.get_ref()).unwrap_or(1),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let max_uri_bytes = match &raw.max_uri_bytes {
        Some(v) if *v.get_ref() < 16 => {
            p.at(v.span(), "max_uri_bytes must be at least 16");
            8192
        }
        Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
        None => 8192,
    };
    let tls = raw.tls.map(|t| {
        let t = t.into_inner();
        TlsFiles {
            cert_file: t.cert_file,
            key_file: t.key_file,
        }
    });
    Some(Server {
        listen: listen?,
        admin_listen,
        upstream: upstream?,
        upstream_timeout: millis(&raw.upstream_timeout_ms, 30_000, "upstream_timeout_ms", p),
        upstream_connect_timeout: millis(
            &raw.upstream_connect_timeout_ms,
            2_000,
            "upstream_connect_timeout_ms",
            p,
        ),
        max_body_bytes,
        unmatched: raw.unmatched,
        trusted_proxies,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(20)),
        max_connections,
        workers,
        max_uri_bytes,
        header_read_timeout: millis(
            &raw.header_read_timeout_ms,
            10_000,
            "header_read_timeout_ms",
            p,
        ),
        tls,
        access_log: raw.access_log,
        case_insensitive_paths: raw.case_insensitive_paths,
    })
}

fn validate_store(raw: RawStore, p: &mut Problems<'_>) -> Option<StoreConfig> {
    let max_entries = match &raw.memory.max_entries {
        Some(v) if *v.get_ref() == 0 => {
            p.at(v.span(), "max_entries must be at least 1");
            1
        }
        Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
        None => 1_000_000,
    };
    let dynamodb = match (raw.kind, raw.dynamodb) {
        (StoreKind::Dynamodb, None) => {
            p.whole(
                "store.kind = \"dynamodb\" needs a [store.dynamodb] table with table and region",
            );
            None
        }
        (_, Some(dynamo)) => {
            let span = dynamo.span();
            let dynamo = dynamo.into_inner();
            let region = dynamo
                .region
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
            if let Some(endpoint) = &dynamo.endpoint_url {
                if endpoint
                    .get_ref()
                    .parse::<Uri>()
                    .map_or(true, |u| u.scheme().is_none())
                {
                    p.at(
                        endpoint.span(),
                        "endpoint_url must be a URL, e.g. \"http://127.0.0.1:8000\"",
                    );
                }
            }
            match region {
                Some(region) if !region.is_empty() => Some(DynamoConfig {
                    table: dynamo.table,
                    region,
                    endpoint_url: dynamo.endpoint_url.map(Spanned::into_inner),
                    timeout: millis(&dynamo.timeout_ms, 250, "timeout_ms", p),
                }),
                _ => {
                    if raw.kind == StoreKind::Dynamodb {
                        p.at(span, "[store.dynamodb] has no region: write region = \"us-east-1\" (or set AWS_REGION)");
                    }
                    None
                }
            }
        }
        (StoreKind::Memory, None) => None,
    };
    if raw.kind == StoreKind::Dynamodb && dynamodb.is_none() {
        return None;
    }
    Some(StoreConfig {
        kind: raw.kind,
        on_error: raw.on_error,
        max_entries,
        restart_fence: raw.kind == StoreKind::Memory && raw.memory.restart_fence.unwrap_or(true),
        dynamodb,
    })
}

fn read_secret_env(name: &Spanned<String>, p: &mut Problems<'_>) -> Option<Secret> {
    match std::env::var(name.get_ref()) {
        Ok(value) if !value.is_empty() => Some(Secret::new(value.into_bytes())),
        _ => {
            p.at(
                name.span(),
                format!(
                    "environment variable {} is not set or empty: export it, or use secret_file",
                    name.get_ref()
                ),
            );
            None
        }
    }
}

fn read_secret_file(path: &Spanned<PathBuf>, p: &mut Problems<'_>) -> Option<Secret> {
    match std::fs::read(path.get_ref()) {
        Ok(mut bytes) => {
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            if bytes.is_empty() {
                p.at(
                    path.span(),
                    format!("secret file {} is empty", path.get_ref().display()),
                );
                return None;
            }
            Some(Secret::new(bytes))
        }
        Err(e) => {
            p.at(
                path.span(),
                format!("cannot read secret file {}: {e}", path.get_ref().display()),
            );
            None
        }
    }
}

fn validate_keys(raw: Vec<Spanned<RawKey>>, p: &mut Problems<'_>) -> BTreeMap<String, Key> {
    let mut keys = BTreeMap::new();
    for entry in raw {
        let span = entry.span();
        let key = entry.into_inner();
        let id = key.id.get_ref().clone();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
            p.at(
                key.id.span(),
                "key id must be 1 or more visible ASCII characters, e.g. \"billing-svc\"",
            );
            continue;
        }
        let sources = usize::from(key.secret_env.is_some())
            + usize::from(key.secret_file.is_some())
            + usize::from(key.secret.is_some());
        if sources != 1 {
            p.at(
                span,
                format!("key {id:?} needs exactly one of secret_env, secret_file or secret (inline, demos only)"),
            );
            continue;
        }
        let current = if let Some(env) = &key.secret_env {
            read_secret_env(env, p)
        } else if let Some(file) = &key.secret_file {
            read_secret_file(file, p)
        } else {
            key.secret.as_ref().and_then(|s| {
                if s.get_ref().is_empty() {
                    p.at(s.span(), "secret is empty");
                    None
                } else {
                    Some(Secret::new(s.get_ref().as_bytes().to_vec()))
                }
            })
        };
        let previous = match (&key.previous_secret_env, &key.previous_secret_file) {
            (Some(_), Some(file)) => {
                p.at(
                    file.span(),
                    "write previous_secret_env or previous_secret_file, not both",
                );
                None
            }
            // An unset previous secret is normal once a rotation is over.
            (Some(env), None) => std::env::var(env.get_ref())
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| Secret::new(v.into_bytes())),
            (None, Some(file)) => read_secret_file(file, p),
            (None, None) => None,
        };
        if keys.contains_key(&id) {
            p.at(key.id.span(), format!("key id {id:?} is defined twice"));
            continue;
        }
        if let Some(current) = current {
            keys.insert(
                id.clone(),
                Key {
                    id,
                    current,
                    previous,
                    inline: key.secret.is_some(),
                },
            );
        }
    }
    keys
}

fn header_name(value: &Spanned<String>, p: &mut Problems<'_>) -> Option<HeaderName> {
    match HeaderName::from_bytes(value.get_ref().as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            p.at(
                value.span(),
                format!("{:?} is not a valid header name", value.get_ref()),
            );
            None
        }
    }
}

fn header_names(raw: &RawHeaders, base: Option<&HeaderNames>, p: &mut Problems<'_>) -> HeaderNames {
    let pick = |value: &Option<Spanned<String>>,
                inherited: Option<&HeaderName>,
                default: &'static str,
                p: &mut Problems<'_>| {
        value
            .as_ref()
            .and_then(|v| header_name(v, p))
            .or_else(|| inherited.cloned())
            .unwrap_or_else(|| HeaderName::from_static(default))
    };
    HeaderNames {
        timestamp: pick(
            &raw.timestamp,
            base.map(|b| &b.timestamp),
            "x-request-timestamp",
            p,
        ),
        nonce: pick(&raw.nonce, base.map(|b| &b.nonce), "x-request-nonce", p),
        signature: pick(&raw.signature, base.map(|b| &b.signature), "x-signature", p),
        key_id: pick(&raw.key_id, base.map(|b| &b.key_id), "x-key-id", p),
        idempotency_key: pick(
            &raw.idempotency_key,
            base.map(|b| &b.idempotency_key),
            "idempotency-key",
            p,
        ),
    }
}

fn positive_secs(
    value: &Option<Spanned<u64>>,
    default: u64,
    key: &str,
    p: &mut Problems<'_>,
) -> Duration {
    match value {
        Some(v) if *v.get_ref() == 0 => {
            p.at(v.span(), format!("{key} must be at least 1"));
            Duration::from_secs(default)
        }
        Some(v) => Duration::from_secs(*v.get_ref()),
        None => Duration::from_secs(default),
    }
}

fn validate_route(
    raw: Spanned<RawRoute>,
    defaults: &HeaderNames,
    default_mode: Mode,
    server: Option<&Server>,
    names: &mut HashSet<String>,
    p: &mut Problems<'_>,
) -> Option<Route> {
    let route_span = raw.span();
    let raw = raw.into_inner();
    let name = raw.name.get_ref().clone();
    let mut ok = true;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        p.at(raw.name.span(), format!("route name {name:?} must use only letters, digits, '-', '_' and '.', e.g. \"create-payment\""));
        ok = false;
    } else if !names.insert(name.clone()) {
        p.at(
            raw.name.span(),
            format!("route name {name:?} is used twice; names label metrics and must be unique"),
        );
        ok = false;
    }
    let methods = raw.methods.as_ref().map(|methods| {
        methods
            .iter()
            .filter_map(|m| {
                let upper = m.get_ref().to_ascii_uppercase();
                match Method::from_bytes(upper.as_bytes()) {
                    Ok(method) if !upper.is_empty() => Some(method),
                    _ => {
                        p.at(
                            m.span(),
                            format!(
                                "{:?} is not an HTTP method; write e.g. \"POST\"",
                                m.get_ref()
                            ),
                        );
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
    });
    if let Some(methods) = &raw.methods {
        if methods.is_empty() {
            p.at(
                route_span.clone(),
                "methods = [] matches nothing: list methods, or remove the key for every method",
            );
            ok = false;
        }
    }
    let pattern = if server.is_some_and(|s| s.case_insensitive_paths) {
        raw.path.get_ref().to_ascii_lowercase()
    } else {
        raw.path.get_ref().clone()
    };
    let path = match PathPattern::compile(&pattern) {
        Ok(pattern) => Some(pattern),
        Err(message) => {
            p.at(raw.path.span(), message);
            None
        }
    };
    let headers = header_names(&raw.headers, Some(defaults), p);
    let freshness = raw.freshness.as_ref().map(|f| {
        let f = f.get_ref();
        Freshness {
            max_skew: positive_secs(&f.max_skew_secs, 300, "max_skew_secs", p),
            format: f.format,
        }
    });
    let nonce = raw.nonce.as_ref().map(|n| n.get_ref().required);
    let signature = raw.signature.as_ref().map(|s| s.get_ref().required);
    if let Some(nonce_rule) = &raw.nonce {
        if freshness.is_none() {
            p.at(nonce_rule.span(), "nonce needs freshness on the same route (a nonce is remembered only for its timestamp's window): add freshness = { max_skew_secs = 300 }");
            ok = false;
        }
    }
    if let Some(sig) = &raw.signature {
        if freshness.is_none() {
            p.at(sig.span(), "signature needs freshness on the same route (the signed timestamp must be checked): add freshness = { max_skew_secs = 300 }");
            ok = false;
        }
    }
    let identity = match &raw.identity {
        None if signature == Some(true) => Identity::KeyId,
        None => Identity::ClientIp,
        Some(v) => match v.get_ref().as_str() {
            "key_id" => {
                if signature != Some(true) {
                    p.at(v.span(), "identity = \"key_id\" needs signature = { required = true } on the route: an unverified key id is not an identity");
                    ok = false;
                }
                Identity::KeyId
            }
            "client_ip" => Identity::ClientIp,
            other => match other.strip_prefix("header:") {
                Some(name) => match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => Identity::Header(name),
                    Err(_) => {
                        p.at(v.span(), format!("{name:?} is not a valid header name; write identity = \"header:X-Client-Id\""));
                        ok = false;
                        Identity::ClientIp
                    }
                },
                None => {
                    p.at(v.span(), format!("identity {other:?} is unknown; write \"key_id\", \"client_ip\" or \"header:NAME\""));
                    ok = false;
                    Identity::ClientIp
                }
            },
        },
    };
    let idempotency = raw.idempotency.as_ref().map(|i| {
        let span = i.span();
        let i = i.get_ref();
        let lease = positive_secs(&i.lease_secs, 60, "lease_secs", p);
        let ttl = positive_secs(&i.ttl_secs, 86_400, "ttl_secs", p);
        if let Some(server) = server {
            if lease <= server.upstream_timeout {
                let at = i.lease_secs.as_ref().map_or(span.clone(), |l| l.span());
                p.at(at, format!(
                    "lease_secs ({}) must exceed upstream_timeout_ms ({} ms), or a slow first attempt could run twice; write lease_secs = {}",
                    lease.as_secs(),
                    server.upstream_timeout.as_millis(),
                    server.upstream_timeout.as_secs() + 1
                ));
            }
        }
        if ttl < lease {
            p.at(span.clone(), "ttl_secs must be at least lease_secs");
        }
        for status in &i.release_statuses {
            if !(100..=599).contains(status.get_ref()) {
                p.at(status.span(), format!("{} is not an HTTP status", status.get_ref()));
            }
        }
        Idempotency {
            required: i.required,
            ttl,
            lease,
            max_response_bytes: usize::try_from(i.max_response_bytes.unwrap_or(65_536)).unwrap_or(usize::MAX),
            release_statuses: i.release_statuses.iter().map(|s| *s.get_ref()).collect(),
        }
    });
    let rate_limit = raw.rate_limit.as_ref().and_then(|r| validate_rate(r, p));
    if raw.rate_limit.is_some() && rate_limit.is_none() {
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Route {
        name,
        methods,
        path: path?,
        identity,
        mode: raw.mode.unwrap_or(default_mode),
        headers,
        freshness,
        nonce,
        signature,
        idempotency,
        rate_limit,
    })
}

fn validate_rate(raw: &Spanned<RawRateLimit>, p: &mut Problems<'_>) -> Option<RateLimit> {
    let span = raw.span();
    let r = raw.get_ref();
    let replicas = match &r.replicas {
        Some(v) if *v.get_ref() == 0 => {
            p.at(v.span(), "replicas must be at least 1");
            return None;
        }
        Some(v) => *v.get_ref(),
        None => 1,
    };
    let (count, window_secs, count_span) = match (&r.per_second, &r.per_minute) {
        (Some(s), None) => (*s.get_ref(), 1u64, s.span()),
        (None, Some(m)) => (*m.get_ref(), 60u64, m.span()),
        _ => {
            p.at(span, "rate_limit needs exactly one of per_second or per_minute, e.g. { per_second = 50, burst = 100 }");
            return None;
        }
    };
    let per_replica = count / replicas;
    let Some(quota) = NonZeroU32::new(per_replica) else {
        p.at(count_span, "the rate must be at least 1 per replica");
        return None;
    };
    let burst = match &r.burst {
        Some(b) => match NonZeroU32::new(*b.get_ref() / replicas) {
            Some(b) => b,
            None => {
                p.at(b.span(), "burst must be at least 1 per replica");
                return None;
            }
        },
        None => quota,
    };
    let period = Duration::from_secs(window_secs) / quota.get();
    Some(RateLimit {
        period,
        quota,
        window_secs,
        burst,
    })
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
    fn lease_must_exceed_upstream_timeout() {
        let text = "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\nupstream_timeout_ms = 30000\n[[routes]]\nname = \"p\"\npath = \"/p\"\nidempotency = { lease_secs = 10 }\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("lease_secs = 31"), "{}", errs[0]);
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
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
