//! From flags to the [`Base`] every probe request is built on: the URL
//! (only `http://` and `https://`), method, body and extra headers, and the
//! client profile — with `--config`/`--route`, the route's header names,
//! timestamp format, nonce, idempotency, identity header and v1 key, so the
//! valid request is built exactly as a client of that route would build
//! it; without them, the default replay headers of a generic API.
//!
//! This module reads the config file and the one named secret variable;
//! it must never print a secret, nor contact the network.

use std::path::Path;

use http::header::{HeaderName, HeaderValue};
use replay_guard::config::{Config, Identity, Route, Secret, SignatureScheme, TimestampFormat};

use super::request::{Base, Fresh, Names, Profile, Scheme, Signing};
use super::{Built, ProbeArgs};

/// Headers the probe writes itself, refused in `--header`.
const OWN_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// How far outside a generic API's window the stale timestamp lies.
const GENERIC_STALE_SECS: u64 = 3600;

/// Value of a route's `header:NAME` identity when `--header` gives none.
const PROBE_IDENTITY: &str = "replay-guard-probe";

/// The parts of `--url` (and `--method`) every request uses.
struct Url {
    scheme: String,
    authority: String,
    host: String,
    method: String,
    path: String,
    query: String,
    /// The normalised path, as the proxy matches and verifies it.
    normal: String,
}

/// `--url` (only `http://` and `https://`, no userinfo) and `--method`.
fn parse_url(args: &ProbeArgs) -> Result<Url, String> {
    let uri: http::Uri = args
        .url
        .parse()
        .map_err(|_| format!("--url {:?} is not a URL", args.url))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "--url {:?}: only http:// and https:// URLs are probed",
            args.url
        ));
    }
    let authority = uri.authority().ok_or("--url needs a host")?.as_str();
    if authority.contains('@') {
        return Err("--url must not carry user:password@".into());
    }
    let method = args.method.to_ascii_uppercase();
    http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("--method {:?} is not an HTTP method", args.method))?;
    let path = uri.path().to_owned();
    let normal = replay_guard::path::normalize(&path)
        .map_err(|e| format!("--url path {path:?}: {e}"))?
        .into_owned();
    Ok(Url {
        scheme: scheme.to_owned(),
        authority: authority.to_owned(),
        host: replay_guard::client::host_for(&uri).ok_or("--url needs a host")?,
        method,
        query: uri.query().map(|q| format!("?{q}")).unwrap_or_default(),
        path,
        normal,
    })
}

/// `--body` or `--body-file`.
fn read_body(args: &ProbeArgs) -> Result<Vec<u8>, String> {
    match (&args.body, &args.body_file) {
        (Some(body), _) => Ok(body.clone().into_bytes()),
        (None, Some(file)) => {
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
        }
        (None, None) => Ok(Vec::new()),
    }
}

fn has(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Build the base request and profile from the arguments.
pub fn build(args: &ProbeArgs) -> Result<Built, String> {
    if args.private_key_file.is_some() && args.route.is_none() {
        return Err(
            "--private-key-file signs RFC 9421 and needs the route (--config and --route)".into(),
        );
    }
    let url = parse_url(args)?;
    let body = read_body(args)?;
    let mut extra = parse_headers(&args.headers)?;
    if !body.is_empty() && !has(&extra, "content-type") {
        let json = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        let kind = if json {
            "application/json"
        } else {
            "application/octet-stream"
        };
        extra.push(("Content-Type".into(), kind.into()));
    }
    let mut built = Built {
        base: Base {
            signed_path_and_query: format!("{}{}", url.normal, url.query),
            scheme: url.scheme,
            authority: url.authority,
            host: url.host,
            method: url.method,
            path: url.path,
            query: url.query,
            body,
            extra,
            profile: generic_profile(args)?,
        },
        profile_text: "generic replay headers: no --config/--route".to_owned(),
        route: None,
        bypasses_pointless: None,
        notes: Vec::new(),
    };
    if let (Some(file), Some(name)) = (&args.config, &args.route) {
        apply_route(args, file, name, &url.normal, &mut built)?;
    }
    Ok(built)
}

/// With `--config`/`--route`: the route's profile, identity header and
/// notes replace the generic ones.
fn apply_route(
    args: &ProbeArgs,
    file: &Path,
    name: &str,
    normal: &str,
    built: &mut Built,
) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| format!("{e}"))?;
    let route = config
        .routes
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| route_not_found(file, name, &config))?;
    let base = &mut built.base;
    check_route_fits(route, &base.method, normal, &mut built.notes);
    if let Identity::Header(header) = &route.identity {
        if !has(&base.extra, header.as_str()) {
            base.extra.push((header.to_string(), PROBE_IDENTITY.into()));
            built.notes.push(format!(
                "identity header {header}: {PROBE_IDENTITY} (give --header to choose)"
            ));
        }
    }
    base.profile = route_profile(args, &config, route, &mut built.notes)?;
    if let (Some(signing), Scheme::Rfc9421 { .. }) = (&base.profile.signing, &base.profile.scheme) {
        // Once here, so that a request the probe cannot sign is a usage
        // error, never a report of vacuous refusals.
        base.rfc9421_headers(signing, &Fresh::now(), &base.extra)
            .map_err(|e| format!("route {name}: cannot sign its RFC 9421 requests: {e}"))?;
    }
    built.profile_text = format!("route {name} from {}", file.display());
    built.route = Some(name.to_owned());
    built.bypasses_pointless = pointless_bypasses(route);
    Ok(())
}

/// `--header 'Name: value'` lines, validated.
fn parse_headers(lines: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("--header {line:?}: write 'Name: value'"))?;
        let (name, value) = (name.trim(), value.trim());
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("--header {line:?}: bad header name"))?;
        HeaderValue::from_str(value).map_err(|_| format!("--header {line:?}: bad header value"))?;
        if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("--header {name}: probe writes this header itself"));
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn route_not_found(file: &Path, name: &str, config: &Config) -> String {
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    format!(
        "{} has no route {name:?}; its routes: {}",
        file.display(),
        names.join(", ")
    )
}

/// Notes when the URL's method or path is not what the route covers.
fn check_route_fits(route: &Route, method: &str, normal: &str, notes: &mut Vec<String>) {
    let key = replay_guard::path::match_key(normal);
    if !route.path.matches(&key) {
        notes.push(format!("the URL's path {normal} does not match route {}'s path: the attacks test something else", route.name));
    }
    if let Some(methods) = &route.methods {
        if !methods.iter().any(|m| m.as_str() == method) {
            notes.push(format!(
                "route {} does not list {method}: give --method",
                route.name
            ));
        }
    }
}

/// Why a bare request proves nothing on this route (no required rule).
fn pointless_bypasses(route: &Route) -> Option<String> {
    let refuses_bare = route.freshness.is_some()
        || route.nonce == Some(true)
        || route.signature == Some(true)
        || route.idempotency.as_ref().is_some_and(|i| i.required);
    (!refuses_bare).then(|| format!("route {} requires nothing a bare request lacks", route.name))
}

/// The profile of a client of `route`.
fn route_profile(
    args: &ProbeArgs,
    config: &Config,
    route: &Route,
    notes: &mut Vec<String>,
) -> Result<Profile, String> {
    let h = &route.headers;
    let names = Names {
        timestamp: h.timestamp.to_string(),
        nonce: h.nonce.to_string(),
        signature: h.signature.to_string(),
        key_id: h.key_id.to_string(),
        idempotency_key: h.idempotency_key.to_string(),
    };
    let signing = match route.signature {
        Some(_) => route_key(args, config, notes)?,
        None => explicit_key(args)?,
    };
    if route.signature == Some(true) && signing.is_none() {
        return Err(format!(
            "route {} signs, but the config has no key: give --key-id and --secret-env",
            route.name
        ));
    }
    let scheme = match &route.scheme {
        SignatureScheme::V1 => Scheme::V1,
        SignatureScheme::Rfc9421(rule) => {
            notes.push(format!(
                "route {} signs RFC 9421: created and nonce are signature parameters",
                route.name
            ));
            Scheme::Rfc9421 {
                components: rule.components.clone(),
                tag: rule.tag.clone(),
                label: rule.label.clone().unwrap_or_else(|| "sig1".to_owned()),
            }
        }
    };
    if matches!(scheme, Scheme::V1) && args.private_key_file.is_some() {
        return Err(format!(
            "--private-key-file signs RFC 9421; route {} is scheme v1, which signs with a secret (--secret-env)",
            route.name
        ));
    }
    Ok(Profile {
        scheme,
        names,
        format: route.freshness.map_or(TimestampFormat::Unix, |f| f.format),
        stale_secs: route
            .freshness
            .map_or(GENERIC_STALE_SECS, |f| f.max_skew.as_secs() + 300),
        nonce: route.nonce.is_some(),
        idempotency: route.idempotency.is_some(),
        signing,
    })
}

/// The key to sign with on a signing route: `--key-id` (with
/// `--secret-env`, or the config's secret for it), else the config's first.
fn route_key(
    args: &ProbeArgs,
    config: &Config,
    notes: &mut Vec<String>,
) -> Result<Option<Signing>, String> {
    if let Some(signing) = explicit_key(args)? {
        return Ok(Some(signing));
    }
    if let Some(id) = &args.key_id {
        let key = config
            .keys
            .get(id)
            .ok_or_else(|| format!("--key-id {id}: not a key of the config"))?;
        return Ok(Some(Signing::secret(id.clone(), v1_secret(key)?)));
    }
    let Some(key) = config.keys.values().next() else {
        return Ok(None);
    };
    if config.keys.len() > 1 {
        notes.push(format!(
            "signing with key {} (the config's first; choose with --key-id)",
            key.id
        ));
    }
    Ok(Some(Signing::secret(key.id.clone(), v1_secret(key)?)))
}

/// The key's current HMAC secret: probe signs with a secret (scheme `v1`,
/// or RFC 9421 HMAC-SHA256), which a public key cannot.
fn v1_secret(key: &replay_guard::config::Key) -> Result<Secret, String> {
    key.secrets().next().cloned().ok_or_else(|| {
        format!(
            "key {}: a public key; give its private key (--key-id {} --private-key-file F --algorithm A), or choose a key with a secret",
            key.id, key.id
        )
    })
}

/// `--key-id` with `--secret-env`, or with `--private-key-file` and
/// `--algorithm`, when given.
fn explicit_key(args: &ProbeArgs) -> Result<Option<Signing>, String> {
    let Some(id) = &args.key_id else {
        return Ok(None);
    };
    if let Some(file) = &args.private_key_file {
        let key = crate::cli::sign_rfc9421::signing_key(
            args.algorithm.as_deref(),
            Some(file),
            crate::cli::sign_rfc9421::SecretEncoding::Utf8,
            || Err("no secret with a private key".to_owned()),
        )?;
        return Ok(Some(Signing {
            key_id: id.clone(),
            key: std::sync::Arc::new(key),
        }));
    }
    let Some(var) = &args.secret_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(Some(Signing::secret(
            id.clone(),
            Secret::new(value.into_bytes()),
        ))),
        _ => Err(format!("environment variable {var} is not set or empty")),
    }
}

/// The profile of a generic API: default header names, Unix seconds, a
/// nonce and an `Idempotency-Key` on every request, v1 signing only with
/// `--key-id` and `--secret-env`.
fn generic_profile(args: &ProbeArgs) -> Result<Profile, String> {
    if args.config.is_none() && args.key_id.is_some() && args.secret_env.is_none() {
        return Err("--key-id without --config needs --secret-env".into());
    }
    Ok(Profile {
        names: Names::default(),
        format: TimestampFormat::Unix,
        stale_secs: GENERIC_STALE_SECS,
        nonce: true,
        idempotency: true,
        signing: explicit_key(args)?,
        scheme: Scheme::V1,
    })
}
