//! Validation: the raw layer ([`super::raw`]) → the typed, frozen
//! [`Config`].
//!
//! Values become typed (durations as [`Duration`], addresses as
//! `SocketAddr`, header names as `HeaderName`) and every problem is
//! collected with its `file:line:col` ([`Problems`]) before failing once,
//! so one run lists them all. Secrets are resolved here into
//! [`super::Secret`].
//!
//! This module must never print or log, never put a secret value into an
//! error message, and never perform I/O except through the injected
//! environment.

mod identity;
mod keys;
mod public_key;
mod route;
mod server;
pub(crate) mod signature;
mod startup;
mod warnings;
pub(crate) mod webhook;

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::raw::RawConfig;
use super::{Config, Environment, StoreKind};

/// Collects problems with positions while validating.
pub(super) struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    lines: Vec<String>,
    warnings: Vec<String>,
}

impl<'a> Problems<'a> {
    /// No problems yet in `text`, named `file` in messages.
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            text,
            lines: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A warning at a position: `file:line:col: warning: message`. Warnings
    /// never make a file invalid.
    pub(super) fn warn_at(&mut self, span: Range<usize>, message: impl fmt::Display) {
        let (line, col) = line_col(self.text, span.start);
        self.warnings
            .push(format!("{}:{line}:{col}: warning: {message}", self.file));
    }

    /// A problem at a position: `file:line:col: message`.
    pub(super) fn at(&mut self, span: Range<usize>, message: impl fmt::Display) {
        let (line, col) = line_col(self.text, span.start);
        self.lines
            .push(format!("{}:{line}:{col}: {message}", self.file));
    }

    /// A problem of the whole file: `file: message`.
    pub(super) fn whole(&mut self, message: impl fmt::Display) {
        self.lines.push(format!("{}: {message}", self.file));
    }

    /// Every problem so far, one line each, in the order found.
    pub(super) fn into_lines(self) -> Vec<String> {
        self.lines
    }

    /// The one "must be at least" rule: `value` when it is at least `min`;
    /// otherwise `None`, reported at `span` as
    /// `"{what} must be at least {min}{per}"` (`per` is empty or names
    /// what the minimum counts, e.g. `" per replica"`).
    fn at_least<T: PartialOrd + fmt::Display>(
        &mut self,
        span: Range<usize>,
        value: T,
        min: T,
        what: &str,
        per: &str,
    ) -> Option<T> {
        if value >= min {
            return Some(value);
        }
        self.at(span, format!("{what} must be at least {min}{per}"));
        None
    }

    /// An optional number `key` with a minimum: its value, or `default`
    /// when it is absent or (reported) below `min`.
    fn at_least_or(
        &mut self,
        value: &Option<Spanned<u64>>,
        min: u64,
        default: u64,
        key: &str,
    ) -> u64 {
        value
            .as_ref()
            .and_then(|v| self.at_least(v.span(), *v.get_ref(), min, key, ""))
            .unwrap_or(default)
    }
}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

/// A positive number of milliseconds (`default` when absent or zero).
fn millis(value: &Option<Spanned<u64>>, default: u64, key: &str, p: &mut Problems<'_>) -> Duration {
    Duration::from_millis(p.at_least_or(value, 1, default, key))
}

/// What the store imposes on a route's rules.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreLimits {
    /// `[store] clock_margin_secs`: a lease must outlast the upstream
    /// timeout by it.
    pub(super) clock_margin: Duration,
    /// The largest `max_response_bytes` the store can keep in one record
    /// (`Some` for DynamoDB's 400 KB item limit).
    pub(super) response_cap: Option<u64>,
}

/// A positive number of seconds (`default` when absent or zero).
fn secs(value: &Option<Spanned<u64>>, default: u64, key: &str, p: &mut Problems<'_>) -> Duration {
    Duration::from_secs(p.at_least_or(value, 1, default, key))
}

/// A count or size as `usize`, saturating on 32-bit targets.
fn size(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The bytes of the file `file` names, read through `env`; `None` with
/// "cannot read `what` PATH: why" reported at its span.
pub(super) fn read_file(
    file: &Spanned<std::path::PathBuf>,
    what: &str,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<Vec<u8>> {
    match env.read_file(file.get_ref()) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            p.at(
                file.span(),
                format!("cannot read {what} {}: {e}", file.get_ref().display()),
            );
            None
        }
    }
}

/// Validate a whole raw file, reading variables and secret files from
/// `env` only; `None` when a part the config cannot do without (server,
/// store) is invalid. Problems go to `p`.
pub(super) fn validate(
    raw: RawConfig,
    p: &mut Problems<'_>,
    file: &str,
    env: &dyn Environment,
) -> Option<Config> {
    let spans = startup::Spans {
        admin_listen: raw.server.admin_listen.as_ref().map(Spanned::span),
        tls: raw.server.tls.as_ref().map(Spanned::span),
    };
    let client_auth = raw
        .server
        .tls
        .as_ref()
        .and_then(|tls| identity::validate_client_auth(tls, env, p));
    let client_ca = raw
        .server
        .tls
        .as_ref()
        .is_some_and(|tls| tls.get_ref().client_ca_file.is_some());
    let mut server = server::validate_server(raw.server, p);
    if let Some(tls) = server.as_mut().and_then(|s| s.tls.as_mut()) {
        tls.client_auth = client_auth;
    }
    if let Some(server) = &server {
        startup::check(server, &spans, env, p);
    }
    let jwt_written = raw.jwt.is_some();
    let jwt = identity::validate_jwt(raw.jwt, env, p);
    // A stored answer must fit one DynamoDB item.
    let response_cap = (raw.store.kind == StoreKind::Dynamodb)
        .then_some(crate::store::dynamodb::MAX_RESPONSE_BYTES as u64);
    let store = server::validate_store(raw.store, env, p);
    let keys = keys::validate_keys(raw.keys, env, p);
    let defaults = route::header_names(&raw.defaults.headers, None, p);
    let default_mode = raw.defaults.mode;
    let mut names = HashSet::new();
    let mut routes = Vec::new();
    let route_spans: Vec<warnings::RouteSpans> = raw
        .routes
        .iter()
        .map(|r| warnings::RouteSpans {
            whole: r.span(),
            methods: r
                .get_ref()
                .methods
                .as_ref()
                .and_then(|m| m.first())
                .map(Spanned::span),
            identity: r.get_ref().identity.as_ref().map(Spanned::span),
            idempotency: r.get_ref().idempotency.as_ref().map(Spanned::span),
        })
        .collect();
    for raw_route in raw.routes {
        identity::check_route_sources(raw_route.get_ref(), jwt_written, client_ca, p);
        if let Some(route) = route::validate_route(
            raw_route,
            &defaults,
            default_mode,
            server.as_ref(),
            StoreLimits {
                clock_margin: store
                    .as_ref()
                    .map_or(Duration::from_secs(5), |s| s.clock_margin),
                response_cap,
            },
            &mut names,
            env,
            p,
        ) {
            routes.push(route);
        }
    }
    if let (Some(server), Some(store)) = (server, store) {
        if routes.len() == route_spans.len() {
            warnings::check(&server, &routes, &route_spans, p);
        }
        return Some(Config {
            source: file.to_owned(),
            server,
            store,
            keys,
            jwt,
            routes,
            warnings: std::mem::take(&mut p.warnings),
            files: Vec::new(),
        });
    }
    None
}

/// `[store]` alone (for `init-table`).
pub(super) fn validate_store_only(
    raw: crate::config::raw::RawStore,
    p: &mut Problems<'_>,
    env: &dyn Environment,
) -> Option<crate::config::StoreConfig> {
    server::validate_store(raw, env, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }

    #[test]
    fn at_least_reports_once_with_the_minimum() {
        let mut p = Problems::new("t.toml", "x = 0\n");
        assert_eq!(p.at_least(4..5, 0u64, 1, "x", ""), None);
        assert_eq!(p.at_least(4..5, 16u64, 16, "x", ""), Some(16));
        assert_eq!(p.at_least(4..5, 0u32, 1, "burst", " per replica"), None);
        assert_eq!(
            p.into_lines(),
            [
                "t.toml:1:5: x must be at least 1",
                "t.toml:1:5: burst must be at least 1 per replica",
            ]
        );
    }
}
