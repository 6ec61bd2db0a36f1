//! `replay-guard sign --scheme rfc9421`: the `Content-Digest`,
//! `Signature-Input` and `Signature` fields of one RFC 9421 request,
//! signed with an HMAC secret (`--secret-env` / `--secret-file`, with
//! `--secret-encoding`) or a private key file (`--private-key-file` and
//! `--algorithm`), with `created` (`--timestamp`), `nonce`, `tag` and the
//! covered components.
//!
//! Like the rest of `sign`, this must never take a secret on the command
//! line; and it refuses a URL path the proxy would rewrite, since RFC 9421
//! routes refuse those.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use http::Uri;

use replay_guard::checks::rfc9421::sign::SigningKey;
use replay_guard::client::{self, Rfc9421Request};
use replay_guard::clock::{Clock, SystemClock};
use replay_guard::config::{parse_component, Algorithm, Component, Secret, DEFAULT_COMPONENTS};

/// The options of `sign` that only `--scheme rfc9421` reads.
#[derive(Debug, Args)]
pub struct Rfc9421Args {
    /// RFC 9421: the algorithm (default hmac-sha256 with a secret; one of
    /// ed25519, ecdsa-p256-sha256, rsa-pss-sha512, rsa-v1_5-sha256 with
    /// --private-key-file).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// RFC 9421: PEM private key (PKCS#8 "PRIVATE KEY", or "RSA PRIVATE
    /// KEY" / "EC PRIVATE KEY") for an asymmetric algorithm.
    #[arg(long, conflicts_with_all = ["secret_env", "secret_file"])]
    pub private_key_file: Option<PathBuf>,
    /// RFC 9421: how the secret's text maps to HMAC key bytes.
    #[arg(long, value_enum, default_value_t = SecretEncoding::Utf8)]
    pub secret_encoding: SecretEncoding,
    /// RFC 9421: a covered component, e.g. @method or content-type (repeat;
    /// default @method @authority @path @query; content-digest is added
    /// for a body).
    #[arg(long = "component")]
    pub components: Vec<String>,
    /// RFC 9421: the `tag` parameter (the route's `tag`).
    #[arg(long)]
    pub tag: Option<String>,
    /// RFC 9421: the signature's label.
    #[arg(long, default_value = "sig1")]
    pub label: String,
}

/// `--secret-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretEncoding {
    /// The text's UTF-8 bytes.
    Utf8,
    /// Standard base64, padded.
    Base64,
}

impl Rfc9421Args {
    /// The RFC 9421 options given, for refusing them with `--scheme v1`.
    pub fn given(&self) -> Option<&'static str> {
        if self.algorithm.is_some() {
            Some("--algorithm")
        } else if self.private_key_file.is_some() {
            Some("--private-key-file")
        } else if !self.components.is_empty() {
            Some("--component")
        } else if self.tag.is_some() {
            Some("--tag")
        } else if self.secret_encoding != SecretEncoding::Utf8 {
            Some("--secret-encoding")
        } else {
            None
        }
    }
}

/// What `sign` says of the request besides the RFC 9421 options.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `--url`.
    pub url: &'a str,
    /// `--key-id`.
    pub key_id: &'a str,
    /// `--timestamp`: `created`, Unix seconds (now when absent).
    pub timestamp: Option<&'a str>,
    /// `--nonce` (a fresh one when absent).
    pub nonce: Option<&'a str>,
}

/// The headers of one RFC 9421 request: `opts` over `request`.
pub fn headers(
    opts: &Rfc9421Args,
    request: Request<'_>,
    method: &str,
    body: &[u8],
    extra: &[(String, String)],
    secret: impl FnOnce() -> Result<Secret, String>,
) -> Result<Vec<(String, String)>, String> {
    let (host, path_and_query, https) = target(request.url)?;
    let key = signing_key(
        opts.algorithm.as_deref(),
        opts.private_key_file.as_deref(),
        opts.secret_encoding,
        secret,
    )?;
    let components = components(&opts.components)?;
    let created = match request.timestamp {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| format!("--timestamp {text:?}: `created` is Unix seconds"))?,
        None => i64::try_from(SystemClock.now_secs()).unwrap_or(i64::MAX),
    };
    let nonce = request.nonce.map_or_else(client::new_nonce, str::to_owned);
    let signed = client::sign_rfc9421(
        &key,
        &Rfc9421Request {
            method,
            host: &host,
            path_and_query: &path_and_query,
            https,
            body,
            key_id: request.key_id,
            created,
            nonce: Some(&nonce),
            tag: opts.tag.as_deref(),
            label: &opts.label,
            components: &components,
            headers: extra,
        },
    )?;
    Ok(signed.headers)
}

/// `Host`, path and query, and whether the URL is `https`. RFC 9421 signs
/// the path as sent, and RFC 9421 routes refuse a path the proxy would
/// normalise: refuse it here, naming the normal form.
fn target(url: &str) -> Result<(String, String, bool), String> {
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("--url {url:?} is not a URL"))?;
    let host = client::host_for(&uri).ok_or_else(|| {
        "--url needs a scheme and host, e.g. http://127.0.0.1:8080/orders".to_owned()
    })?;
    let normal = replay_guard::path::normalize(uri.path())
        .map_err(|e| format!("--url {url:?}: the proxy refuses this path ({e})"))?;
    if normal != uri.path() {
        return Err(format!(
            "--url {url:?}: RFC 9421 signs the path as sent and the proxy refuses one it would rewrite; use the path {normal:?}"
        ));
    }
    let path_and_query = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    Ok((host, path_and_query, uri.scheme_str() == Some("https")))
}

/// The key: a private key file for an asymmetric algorithm, else the
/// secret decoded as `--secret-encoding` says (also loadgen's).
pub fn signing_key(
    algorithm: Option<&str>,
    private_key_file: Option<&Path>,
    encoding: SecretEncoding,
    secret: impl FnOnce() -> Result<Secret, String>,
) -> Result<SigningKey, String> {
    let algorithm = match algorithm {
        Some(name) => Some(Algorithm::from_name(name).ok_or_else(|| {
            format!("--algorithm {name:?} is unknown; write hmac-sha256, ed25519, ecdsa-p256-sha256, rsa-pss-sha512 or rsa-v1_5-sha256")
        })?),
        None => None,
    };
    if let Some(file) = private_key_file {
        let algorithm = algorithm.ok_or("--private-key-file needs --algorithm")?;
        let pem =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        return SigningKey::from_pem(algorithm, &pem)
            .map_err(|e| format!("{}: {e}", file.display()));
    }
    if algorithm.is_some_and(|a| a != Algorithm::HmacSha256) {
        return Err("an asymmetric --algorithm needs --private-key-file".into());
    }
    let secret = secret()?;
    Ok(SigningKey::Hmac(match encoding {
        SecretEncoding::Utf8 => secret,
        SecretEncoding::Base64 => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(secret.expose())
                .map_err(|_| {
                    "the secret is not valid base64 (--secret-encoding base64)".to_owned()
                })?;
            Secret::new(bytes)
        }
    }))
}

/// `--component`s, or the default ones (also loadgen's).
pub fn components(given: &[String]) -> Result<Vec<Component>, String> {
    if given.is_empty() {
        return Ok(DEFAULT_COMPONENTS
            .iter()
            .filter_map(|name| Component::named(name))
            .collect());
    }
    given
        .iter()
        .map(|text| parse_component(text).map_err(|e| format!("--component: {e}")))
        .collect()
}
