//! Validation of `[defaults]` and `[[routes]]`: names, methods, path
//! patterns, header names, identity and each rule, including the rules
//! that depend on each other (nonce and signature need freshness,
//! `identity = "key_id"` needs a required signature, the idempotency lease
//! must outlast the upstream timeout).
//!
//! This module must never perform I/O and never match a request: it only
//! builds the [`Route`]s that [`crate::routes`] matches.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::ops::Range;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use toml::Spanned;

use super::{secs, signature, size, Problems, StoreLimits};
use crate::config::raw::{RawHeaders, RawIdempotency, RawRateLimit, RawRoute};
use crate::config::{
    Environment, Freshness, HeaderNames, Idempotency, Identity, Mode, PathPattern, RateLimit,
    RateScope, Route, Server, SignatureScheme,
};

/// One route; `None` (with its problems reported) when it is invalid.
/// `names` collects the route names seen so far, to refuse duplicates;
/// `env` resolves a webhook table's secrets.
// Each argument is one independent input; a context struct would only
// rename them.
#[allow(clippy::too_many_arguments)]
pub(super) fn validate_route(
    raw: Spanned<RawRoute>,
    defaults: &HeaderNames,
    default_mode: Mode,
    server: Option<&Server>,
    limits: StoreLimits,
    names: &mut HashSet<String>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<Route> {
    let route_span = raw.span();
    let raw = raw.into_inner();
    let mut ok = check_name(&raw.name, names, p);
    let extensions = server.map_or(&[][..], |s| &s.extension_methods[..]);
    let methods = raw
        .methods
        .as_deref()
        .map(|m| parse_methods(m, extensions, p));
    if raw.methods.as_ref().is_some_and(Vec::is_empty) {
        p.at(
            route_span,
            "methods = [] matches nothing: list methods, or remove the key for every method",
        );
        ok = false;
    }
    let case_insensitive = server.is_some_and(|s| s.case_insensitive_paths);
    let path = compile_path(&raw.path, case_insensitive, p);
    let headers = header_names(&raw.headers, Some(defaults), p);
    let freshness = raw.freshness.as_ref().map(|f| {
        let f = f.get_ref();
        Freshness {
            max_skew: secs(&f.max_skew_secs, 300, "max_skew_secs", p),
            format: f.format,
        }
    });
    let nonce = raw.nonce.as_ref().map(|n| n.get_ref().required);
    let signature = raw.signature.as_ref().map(|s| s.get_ref().required);
    let scheme = match &raw.signature {
        Some(table) => signature::validate_scheme(table, nonce == Some(true), p),
        None => Some(SignatureScheme::V1),
    };
    ok &= rules_have_freshness(&raw, freshness.is_some(), p);
    let identity = parse_identity(raw.identity.as_ref(), signature, p);
    let idempotency = raw
        .idempotency
        .as_ref()
        .map(|i| validate_idempotency(i, server, limits, p));
    let rate_limit = raw.rate_limit.as_ref().and_then(|r| validate_rate(r, p));
    let webhook = raw
        .webhook
        .as_ref()
        .map(|w| super::webhook::validate_webhook(&raw, w, server, limits, env, p));
    ok &= !matches!(webhook, Some(None));
    ok &= identity.is_some() && (raw.rate_limit.is_none() || rate_limit.is_some());
    ok &= scheme.is_some();
    if let (Some(SignatureScheme::Rfc9421(_)), Some(nonce_rule), Some(false)) =
        (&scheme, &raw.nonce, signature)
    {
        p.at(nonce_rule.span(), "on a scheme = \"rfc9421\" route the nonce is a signature parameter: nonce needs signature = { required = true, ... }");
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Route {
        name: raw.name.into_inner(),
        methods,
        path: path?,
        identity: identity?,
        mode: raw.mode.unwrap_or(default_mode),
        headers,
        freshness,
        nonce,
        signature,
        scheme: scheme?,
        idempotency,
        rate_limit,
        webhook: webhook.flatten(),
    })
}

/// Whether the route name is well-formed and not used before.
fn check_name(name: &Spanned<String>, names: &mut HashSet<String>, p: &mut Problems<'_>) -> bool {
    let text = name.get_ref();
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        p.at(name.span(), format!("route name {text:?} must use only letters, digits, '-', '_' and '.', e.g. \"create-payment\""));
        return false;
    }
    if !names.insert(text.clone()) {
        p.at(
            name.span(),
            format!("route name {text:?} is used twice; names label metrics and must be unique"),
        );
        return false;
    }
    true
}

/// The methods registered with IANA (HTTP Method Registry); a route may
/// list others only when `[server] extension_methods` names them, so a typo
/// such as `"PSOT"` is an error rather than a route that never matches.
const REGISTERED_METHODS: &[&str] = &[
    "ACL",
    "BASELINE-CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "DELETE",
    "GET",
    "HEAD",
    "LABEL",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "OPTIONS",
    "ORDERPATCH",
    "PATCH",
    "POST",
    "PRI",
    "PROPFIND",
    "PROPPATCH",
    "PUT",
    "REBIND",
    "REPORT",
    "SEARCH",
    "TRACE",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
];

/// The methods, case-insensitively (upper-cased); unknown ones are
/// reported, with the nearest registered name, and skipped.
fn parse_methods(
    methods: &[Spanned<String>],
    extensions: &[String],
    p: &mut Problems<'_>,
) -> Vec<Method> {
    methods
        .iter()
        .filter_map(|m| {
            let upper = m.get_ref().to_ascii_uppercase();
            let known = REGISTERED_METHODS.contains(&upper.as_str()) || extensions.contains(&upper);
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if known => Some(method),
                _ => {
                    p.at(m.span(), unknown_method(m.get_ref(), &upper));
                    None
                }
            }
        })
        .collect()
}

/// What to write instead of an unknown method name.
fn unknown_method(name: &str, upper: &str) -> String {
    let nearest = REGISTERED_METHODS
        .iter()
        .map(|known| (strsim::damerau_levenshtein(upper, known), *known))
        .min();
    match nearest {
        Some((distance, known)) if distance <= 2 => format!(
            "{name:?} is not a registered HTTP method: did you mean \"{known}\"? (list an extension method in [server] extension_methods)"
        ),
        _ => format!(
            "{name:?} is not a registered HTTP method; write e.g. \"POST\", or list it in [server] extension_methods"
        ),
    }
}

/// The compiled path pattern (lower-cased for case-insensitive matching).
fn compile_path(
    path: &Spanned<String>,
    case_insensitive: bool,
    p: &mut Problems<'_>,
) -> Option<PathPattern> {
    let pattern = if case_insensitive {
        path.get_ref().to_ascii_lowercase()
    } else {
        path.get_ref().clone()
    };
    match PathPattern::compile(&pattern) {
        Ok(pattern) => Some(pattern),
        Err(message) => {
            p.at(path.span(), message);
            None
        }
    }
}

/// Whether nonce and signature, where given, come with freshness.
fn rules_have_freshness(raw: &RawRoute, has_freshness: bool, p: &mut Problems<'_>) -> bool {
    let mut ok = true;
    if let Some(nonce_rule) = &raw.nonce {
        if !has_freshness {
            p.at(nonce_rule.span(), "nonce needs freshness on the same route (a nonce is remembered only for its timestamp's window): add freshness = { max_skew_secs = 300 }");
            ok = false;
        }
    }
    if let Some(sig) = &raw.signature {
        if !has_freshness {
            p.at(sig.span(), "signature needs freshness on the same route (the signed timestamp must be checked): add freshness = { max_skew_secs = 300 }");
            ok = false;
        }
    }
    ok
}

/// `identity`, defaulting to the key id on signed routes and the client
/// address elsewhere; `None` (reported) when it is invalid.
fn parse_identity(
    value: Option<&Spanned<String>>,
    signature: Option<bool>,
    p: &mut Problems<'_>,
) -> Option<Identity> {
    let Some(v) = value else {
        return Some(if signature == Some(true) {
            Identity::KeyId
        } else {
            Identity::ClientIp
        });
    };
    match v.get_ref().as_str() {
        "key_id" => {
            if signature != Some(true) {
                p.at(v.span(), "identity = \"key_id\" needs signature = { required = true } on the route: an unverified key id is not an identity");
                return None;
            }
            Some(Identity::KeyId)
        }
        "client_ip" => Some(Identity::ClientIp),
        "client_cert" => Some(Identity::ClientCert),
        other if other.starts_with("jwt:") => {
            let claim = &other["jwt:".len()..];
            if claim.is_empty() || claim.contains(['#', '%']) || claim.chars().any(char::is_control)
            {
                p.at(
                    v.span(),
                    format!("{claim:?} is not a claim name; write identity = \"jwt:sub\""),
                );
                return None;
            }
            Some(Identity::Jwt(claim.to_owned()))
        }
        other => match other.strip_prefix("header:") {
            Some(name) => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => Some(Identity::Header(name)),
                Err(_) => {
                    p.at(v.span(), format!("{name:?} is not a valid header name; write identity = \"header:X-Client-Id\""));
                    None
                }
            },
            None => {
                p.at(v.span(), format!("identity {other:?} is unknown; write \"key_id\", \"client_ip\", \"header:NAME\", \"jwt:CLAIM\" or \"client_cert\""));
                None
            }
        },
    }
}

/// The idempotency rule; its problems are reported, never fatal to it.
fn validate_idempotency(
    raw: &Spanned<RawIdempotency>,
    server: Option<&Server>,
    limits: StoreLimits,
    p: &mut Problems<'_>,
) -> Idempotency {
    let span = raw.span();
    let i = raw.get_ref();
    let lease = secs(&i.lease_secs, 60, "lease_secs", p);
    let ttl = secs(&i.ttl_secs, 86_400, "ttl_secs", p);
    if let Some(server) = server {
        check_lease(
            lease,
            i,
            span.clone(),
            server.upstream_timeout + limits.clock_margin,
            p,
        );
    }
    if ttl < lease {
        p.at(span, "ttl_secs must be at least lease_secs");
    }
    for status in &i.release_statuses {
        if !(100..=599).contains(status.get_ref()) {
            p.at(
                status.span(),
                format!("{} is not an HTTP status", status.get_ref()),
            );
        }
    }
    let max_response_bytes = i
        .max_response_bytes
        .as_ref()
        .map_or(65_536, |m| *m.get_ref());
    if let (Some(cap), Some(written)) = (limits.response_cap, &i.max_response_bytes) {
        if max_response_bytes > cap {
            p.at(written.span(), format!(
                "max_response_bytes = {max_response_bytes} cannot fit DynamoDB's 400 KB item limit with kind = \"dynamodb\": the maximum is {cap}"
            ));
        }
    }
    Idempotency {
        required: i.required,
        ttl,
        lease,
        max_response_bytes: size(max_response_bytes),
        release_statuses: i.release_statuses.iter().map(|s| *s.get_ref()).collect(),
    }
}

/// The lease must outlast the upstream timeout plus the replicas' clock
/// margin (`minimum`), or a slow first attempt could be retried — by a
/// replica whose clock runs ahead — while it still runs.
fn check_lease(
    lease: Duration,
    raw: &RawIdempotency,
    span: Range<usize>,
    minimum: Duration,
    p: &mut Problems<'_>,
) {
    if lease <= minimum {
        let at = raw.lease_secs.as_ref().map_or(span, |l| l.span());
        p.at(at, format!(
            "lease_secs ({}) must exceed upstream_timeout_ms plus [store] clock_margin_secs ({} ms), or a slow first attempt could run twice; write lease_secs = {}",
            lease.as_secs(),
            minimum.as_millis(),
            minimum.as_secs() + 1
        ));
    }
}

/// The rate limit: per instance divided among `replicas`, or the whole
/// cluster's (`scope = "cluster"`, where `replicas` only divides the
/// per-instance fallback); `None` (reported) when it is invalid.
fn validate_rate(raw: &Spanned<RawRateLimit>, p: &mut Problems<'_>) -> Option<RateLimit> {
    let span = raw.span();
    let r = raw.get_ref();
    let scope = match r.scope.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("instance", _)) => RateScope::Instance,
        Some(("cluster", _)) => RateScope::Cluster,
        Some((other, span)) => {
            p.at(
                span,
                format!("rate_limit scope {other:?} is not \"instance\" or \"cluster\""),
            );
            return None;
        }
    };
    let replicas = match &r.replicas {
        Some(v) => p.at_least(v.span(), *v.get_ref(), 1, "replicas", "")?,
        None => 1,
    };
    // A cluster limit is the whole cluster's: nothing is divided.
    let divisor = match scope {
        RateScope::Instance => replicas,
        RateScope::Cluster => 1,
    };
    let (count, window_secs, count_span) = match (&r.per_second, &r.per_minute) {
        (Some(s), None) => (*s.get_ref(), 1u64, s.span()),
        (None, Some(m)) => (*m.get_ref(), 60u64, m.span()),
        _ => {
            p.at(span, "rate_limit needs exactly one of per_second or per_minute, e.g. { per_second = 50, burst = 100 }");
            return None;
        }
    };
    let quota = p
        .at_least(count_span, count / divisor, 1, "the rate", " per replica")
        .and_then(NonZeroU32::new)?;
    let burst = match &r.burst {
        Some(b) => p
            .at_least(b.span(), *b.get_ref() / divisor, 1, "burst", " per replica")
            .and_then(NonZeroU32::new)?,
        None => quota,
    };
    let period = Duration::from_secs(window_secs) / quota.get();
    Some(RateLimit {
        period,
        quota,
        window_secs,
        burst,
        scope,
        replicas: NonZeroU32::new(replicas)?,
    })
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

/// Header names: each written one, else `base`'s (the defaults), else the
/// built-in name. A bad name is reported and falls back the same way.
pub(super) fn header_names(
    raw: &RawHeaders,
    base: Option<&HeaderNames>,
    p: &mut Problems<'_>,
) -> HeaderNames {
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
