//! Validation of what verified identities need: `[jwt]` (algorithms,
//! where the keys come from, issuer, audiences, leeway) and `[server.tls]
//! client_ca_file` / `client_auth` (mTLS), and that a route naming
//! `jwt:<claim>` or `client_cert` has them.
//!
//! The JWKS file and the CA file are read here, through the injected
//! [`Environment`], so `check` and reload refuse a file that does not
//! parse, naming it. This module must never print key material and never
//! fetch a `jwks_url` (that is the verifier's job at run time).

use std::sync::Arc;

use http::header::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use toml::Spanned;

use super::{secs, Problems};
use crate::config::raw::{RawJwt, RawRoute, RawTls};
use crate::config::{ClientAuth, Environment, JwksSource, JwtConfig, JwtKeys};

/// The algorithms a `[jwt]` without `algorithms` accepts: every
/// asymmetric one with a JWKS, HS256 with a secret.
const DEFAULT_ASYMMETRIC: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// `[jwt]`; `None` (with its problems reported) when it is absent or
/// invalid.
pub(super) fn validate_jwt(
    raw: Option<Spanned<RawJwt>>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<JwtConfig> {
    let raw = raw?;
    let span = raw.span();
    let raw = raw.into_inner();
    let mut ok = true;
    let header = match &raw.header {
        None => http::header::AUTHORIZATION,
        Some(name) => match HeaderName::from_bytes(name.get_ref().as_bytes()) {
            Ok(name) => name,
            Err(_) => {
                p.at(
                    name.span(),
                    format!("{:?} is not a valid header name", name.get_ref()),
                );
                ok = false;
                http::header::AUTHORIZATION
            }
        },
    };
    let jwks = match (&raw.jwks_file, &raw.jwks_url) {
        (Some(_), Some(url)) => {
            p.at(url.span(), "[jwt] takes jwks_file or jwks_url, not both");
            ok = false;
            None
        }
        (Some(file), None) => Some(JwksSource::File(file.get_ref().clone())),
        (None, Some(url)) => match jwks_url(url, p) {
            Some(uri) => Some(JwksSource::Url(uri)),
            None => {
                ok = false;
                None
            }
        },
        (None, None) => None,
    };
    let file_keys = match &raw.jwks_file {
        Some(file) => match read_jwks(file, env, p) {
            Some(keys) => Some(keys),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let secret = match &raw.secret_env {
        Some(name) => match super::keys::read_secret_env(name, env, p) {
            Some(secret) => Some(secret),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    if jwks.is_none() && raw.secret_env.is_none() && ok {
        p.at(span.clone(), "[jwt] needs keys: jwks_file or jwks_url (RS256, ES256, EdDSA, ...) or secret_env (HS256)");
        ok = false;
    }
    let algorithms = match &raw.algorithms {
        Some(names) => parse_algorithms(names, &raw, p)?,
        None => {
            let mut algorithms = Vec::new();
            if raw.jwks_file.is_some() || raw.jwks_url.is_some() {
                algorithms.extend(DEFAULT_ASYMMETRIC);
            }
            if raw.secret_env.is_some() {
                algorithms.push(Algorithm::HS256);
            }
            algorithms
        }
    };
    if let Some(issuer) = &raw.issuer {
        if issuer.get_ref().is_empty() {
            p.at(
                issuer.span(),
                "issuer must not be empty; leave it out to accept any iss",
            );
            ok = false;
        }
    }
    let refresh = secs(&raw.jwks_refresh_secs, 300, "jwks_refresh_secs", p);
    if !ok {
        return None;
    }
    Some(JwtConfig {
        header,
        issuer: raw.issuer.map(Spanned::into_inner),
        audiences: raw.audiences.into_iter().map(Spanned::into_inner).collect(),
        algorithms,
        jwks,
        file_keys,
        secret,
        refresh,
        leeway_secs: raw.leeway_secs.unwrap_or(30),
        cache_entries: super::size(raw.cache_entries.unwrap_or(10_000)),
    })
}

/// `jwks_url`: an `http://` or `https://` URL with a host.
fn jwks_url(url: &Spanned<String>, p: &mut Problems<'_>) -> Option<http::Uri> {
    match url.get_ref().parse::<http::Uri>() {
        Ok(uri)
            if uri.authority().is_some()
                && matches!(uri.scheme_str(), Some("http") | Some("https")) =>
        {
            Some(uri)
        }
        _ => {
            p.at(url.span(), "jwks_url must be an http:// or https:// URL, e.g. \"https://auth.example.com/.well-known/jwks.json\"");
            None
        }
    }
}

/// The keys of `jwks_file`, read through the environment.
fn read_jwks(
    file: &Spanned<std::path::PathBuf>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<JwtKeys> {
    let path = file.get_ref();
    let bytes = super::read_file(file, "JWKS file", env, p)?;
    match JwtKeys::parse(&bytes) {
        Ok(keys) => Some(keys),
        Err(why) => {
            p.at(
                file.span(),
                format!("JWKS file {} is unusable: {why}", path.display()),
            );
            None
        }
    }
}

/// `algorithms`: known JWS names, never `none`; HMAC ones need
/// `secret_env`, the others a JWKS.
fn parse_algorithms(
    names: &[Spanned<String>],
    raw: &RawJwt,
    p: &mut Problems<'_>,
) -> Option<Vec<Algorithm>> {
    let mut algorithms = Vec::new();
    let mut ok = true;
    let has_jwks = raw.jwks_file.is_some() || raw.jwks_url.is_some();
    for name in names {
        let text = name.get_ref();
        if text.eq_ignore_ascii_case("none") {
            p.at(
                name.span(),
                "alg \"none\" is never accepted: an unsigned token proves nothing",
            );
            ok = false;
            continue;
        }
        let Ok(alg) = text.parse::<Algorithm>() else {
            p.at(name.span(), format!("{text:?} is not a JWS algorithm; write e.g. \"RS256\", \"ES256\", \"EdDSA\" or \"HS256\""));
            ok = false;
            continue;
        };
        let hmac = alg.family() == AlgorithmFamily::Hmac;
        if hmac && raw.secret_env.is_none() {
            p.at(name.span(), format!("{text} is an HMAC algorithm: it needs [jwt] secret_env (it is never checked against a JWKS public key)"));
            ok = false;
        }
        if !hmac && !has_jwks {
            p.at(
                name.span(),
                format!("{text} needs a JWKS: write jwks_file or jwks_url"),
            );
            ok = false;
        }
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() && ok {
        p.whole("[jwt] algorithms is empty: list the algorithms tokens may use");
        ok = false;
    }
    ok.then_some(algorithms)
}

/// `[server.tls] client_ca_file` and `client_auth`; `None` when mTLS is
/// not configured or invalid (reported).
pub(super) fn validate_client_auth(
    raw: &Spanned<RawTls>,
    env: &dyn Environment,
    p: &mut Problems<'_>,
) -> Option<ClientAuth> {
    let tls = raw.get_ref();
    let required = match &tls.client_auth {
        None => true,
        Some(mode) => match mode.get_ref().as_str() {
            "required" => true,
            "optional" => false,
            other => {
                p.at(
                    mode.span(),
                    format!("client_auth {other:?} is unknown; write \"required\" or \"optional\""),
                );
                return None;
            }
        },
    };
    let Some(file) = &tls.client_ca_file else {
        if let Some(mode) = &tls.client_auth {
            p.at(
                mode.span(),
                "client_auth needs client_ca_file: the CA certificates that vouch for clients",
            );
        }
        return None;
    };
    let path = file.get_ref();
    let bytes = super::read_file(file, "client CA file", env, p)?;
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let added = cert
            .map_err(|e| e.to_string())
            .and_then(|cert| roots.add(cert).map_err(|e| e.to_string()));
        match added {
            Ok(()) => found += 1,
            Err(why) => {
                p.at(
                    file.span(),
                    format!(
                        "client CA file {} holds a certificate that does not parse: {why}",
                        path.display()
                    ),
                );
                return None;
            }
        }
    }
    if found == 0 {
        p.at(
            file.span(),
            format!("client CA file {} holds no PEM certificate", path.display()),
        );
        return None;
    }
    Some(ClientAuth {
        ca_file: path.clone(),
        roots: Arc::new(roots),
        required,
    })
}

/// A route naming `jwt:<claim>` needs `[jwt]`; one naming `client_cert`
/// needs `[server.tls] client_ca_file`.
pub(super) fn check_route_sources(
    route: &RawRoute,
    jwt: bool,
    client_ca: bool,
    p: &mut Problems<'_>,
) {
    let Some(identity) = &route.identity else {
        return;
    };
    let text = identity.get_ref();
    if text.starts_with("jwt:") && !jwt {
        p.at(identity.span(), format!("identity = {text:?} needs a [jwt] section (issuer, algorithms, jwks_file / jwks_url or secret_env)"));
    }
    if text == "client_cert" && !client_ca {
        p.at(identity.span(), "identity = \"client_cert\" needs [server.tls] client_ca_file: only a certificate the proxy verified is an identity");
    }
}
