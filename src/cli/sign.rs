//! `replay-guard sign`: print the headers a client must send for one signed
//! request, as a ready-to-run curl command, as `Name: value` lines (for
//! `curl -H @file`), or as JSON. The secret is read from an environment
//! variable or a file — never from the command line, where `ps` shows it.
//! The path is signed in the normal form the proxy verifies and forwards.
//! `--scheme rfc9421` prints RFC 9421 fields instead
//! ([`super::sign_rfc9421`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::sign_rfc9421::{self, Rfc9421Args};
use http::Uri;

use replay_guard::client::{self, SignRequest};
use replay_guard::clock::{Clock, SystemClock};
use replay_guard::config::Secret;

/// Arguments of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// HTTP method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// Full URL the client sends the request to (through the proxy).
    #[arg(long)]
    pub url: String,
    /// Request body as a string.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// File holding the request body.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Key id.
    #[arg(long)]
    pub key_id: String,
    /// Environment variable holding the secret.
    #[arg(
        long,
        required_unless_present_any = ["secret_file", "private_key_file"],
        conflicts_with = "secret_file"
    )]
    pub secret_env: Option<String>,
    /// File holding the secret (a trailing newline is dropped).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Timestamp to sign (default: now, Unix seconds; RFC 9421: `created`).
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Nonce to sign (default: 32 random hex characters).
    #[arg(long)]
    pub nonce: Option<String>,
    /// A further header the request carries, 'Name: value' (repeatable),
    /// e.g. `--header 'Idempotency-Key: order-42'`: printed with the signed
    /// ones; with `--scheme rfc9421` a `--component` naming it covers it.
    #[arg(long = "header", value_name = "'NAME: value'")]
    pub headers: Vec<String>,
    /// Output form.
    #[arg(long, value_enum, default_value_t = SignFormat::Curl)]
    pub format: SignFormat,
    /// Signature scheme: the route's `signature.scheme`.
    #[arg(long, value_enum, default_value_t = Scheme::V1)]
    pub scheme: Scheme,
    /// Options of `--scheme rfc9421`.
    #[command(flatten)]
    pub rfc9421: Rfc9421Args,
}

/// `--scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    /// replay-guard's own HMAC canonical string.
    V1,
    /// RFC 9421 HTTP Message Signatures.
    Rfc9421,
}

/// Output forms of `sign`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SignFormat {
    /// A complete curl command line.
    Curl,
    /// `Name: value` lines, for `curl -H @file`.
    Headers,
    /// A JSON object of header names to values.
    Json,
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Run `sign`: read the URL, body and secret, sign, print in the chosen form.
pub fn run(args: &SignArgs) -> Result<(), ExitCode> {
    let fail = |message: String| {
        eprintln!("{message}");
        ExitCode::from(1)
    };
    let method = args.method.to_ascii_uppercase();
    let body = body(args).map_err(fail)?;
    let extra = parse_headers(&args.headers).map_err(fail)?;
    let mut headers = match args.scheme {
        Scheme::Rfc9421 => {
            let request = sign_rfc9421::Request {
                url: &args.url,
                key_id: &args.key_id,
                timestamp: args.timestamp.as_deref(),
                nonce: args.nonce.as_deref(),
            };
            sign_rfc9421::headers(&args.rfc9421, request, &method, &body, &extra, || {
                secret(args)
            })
            .map_err(fail)?
        }
        Scheme::V1 => {
            if let Some(option) = args.rfc9421.given() {
                return Err(fail(format!("{option} needs --scheme rfc9421")));
            }
            sign_v1(args, &method, &body).map_err(fail)?
        }
    };
    headers.extend(extra);
    match args.format {
        SignFormat::Headers => print_header_lines(&headers),
        SignFormat::Json => print_json(&headers),
        SignFormat::Curl => println!("{}", curl_command(args, &method, &headers)),
    }
    Ok(())
}

/// The headers a request's signature is made of: a `--header` must not
/// replace one of them.
const SIGNED: [&str; 7] = [
    "x-request-timestamp",
    "x-request-nonce",
    "x-signature",
    "x-key-id",
    "signature",
    "signature-input",
    "content-digest",
];

/// `--header 'Name: value'` lines, validated (also loadgen's).
pub fn parse_headers(lines: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("--header {line:?}: write 'Name: value'"))?;
        let (name, value) = (name.trim(), value.trim());
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("--header {line:?}: {name:?} is not a header name"))?;
        http::HeaderValue::from_str(value)
            .map_err(|_| format!("--header {line:?}: the value is not a header value"))?;
        if SIGNED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "--header {name}: this header is part of the signature; sign writes it itself"
            ));
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

/// The headers of one `v1` request.
fn sign_v1(args: &SignArgs, method: &str, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let (host, path_and_query) = signed_target(&args.url)?;
    let secret = secret(args)?;
    let signed = client::sign(
        &secret,
        &SignRequest {
            method,
            host: &host,
            path_and_query: &path_and_query,
            body,
            timestamp: args
                .timestamp
                .clone()
                .unwrap_or_else(|| SystemClock.now_secs().to_string()),
            nonce: args.nonce.clone().unwrap_or_else(client::new_nonce),
            key_id: &args.key_id,
        },
    );
    Ok(signed.headers)
}

/// The `Host` and the path and query to sign for `url`.
///
/// The proxy verifies the path it forwards: the normalised one. Sign
/// that, so every spelling of the URL (and curl's own dot-segment
/// resolution) verifies.
fn signed_target(url: &str) -> Result<(String, String), String> {
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("--url {url:?} is not a URL"))?;
    let host = client::host_for(&uri).ok_or_else(|| {
        "--url needs a scheme and host, e.g. http://127.0.0.1:8080/payments".to_owned()
    })?;
    let path = replay_guard::path::normalize(uri.path())
        .map_err(|e| format!("--url {url:?}: the proxy refuses this path ({e})"))?;
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    Ok((host, path_and_query))
}

/// `--body`, `--body-file` or an empty body.
fn body(args: &SignArgs) -> Result<Vec<u8>, String> {
    match (&args.body, &args.body_file) {
        (Some(body), _) => Ok(body.clone().into_bytes()),
        (None, Some(file)) => read_file(file),
        (None, None) => Ok(Vec::new()),
    }
}

/// The secret from `--secret-env` or `--secret-file` (without a trailing
/// newline).
fn secret(args: &SignArgs) -> Result<Secret, String> {
    match (&args.secret_env, &args.secret_file) {
        (Some(var), _) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Secret::new(value.into_bytes())),
            _ => Err(format!("environment variable {var} is not set or empty")),
        },
        (None, Some(file)) => {
            let mut bytes = read_file(file)?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            Ok(Secret::new(bytes))
        }
        (None, None) => Err("give --secret-env VAR or --secret-file PATH".into()),
    }
}

fn read_file(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// `Name: value` lines, for `curl -H @file`.
fn print_header_lines(headers: &[(String, String)]) {
    for (name, value) in headers {
        println!("{name}: {value}");
    }
}

/// One JSON object of header names to values.
fn print_json(headers: &[(String, String)]) {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    println!("{}", serde_json::Value::Object(map));
}

/// A curl command line sending the signed request, one argument per
/// continued line.
fn curl_command(args: &SignArgs, method: &str, headers: &[(String, String)]) -> String {
    let mut parts = vec![format!("curl -sS -X {method}")];
    for (name, value) in headers {
        parts.push(format!("-H {}", shell_quote(&format!("{name}: {value}"))));
    }
    if let Some(file) = &args.body_file {
        parts.push(format!(
            "--data-binary @{}",
            shell_quote(&file.display().to_string())
        ));
    } else if let Some(body) = &args.body {
        parts.push(format!("--data-binary {}", shell_quote(body)));
    }
    parts.push(shell_quote(&args.url));
    parts.join(" \\\n  ")
}
