//! `replay-guard sign`: print the headers a client must send for one signed
//! request, as a ready-to-run curl command, as `Name: value` lines (for
//! `curl -H @file`), or as JSON. The secret is read from an environment
//! variable or a file — never from the command line, where `ps` shows it.
//! The path is signed in the normal form the proxy verifies and forwards.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
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
        required_unless_present = "secret_file",
        conflicts_with = "secret_file"
    )]
    pub secret_env: Option<String>,
    /// File holding the secret (a trailing newline is dropped).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Timestamp to sign (default: now, Unix seconds).
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Nonce to sign (default: 32 random hex characters).
    #[arg(long)]
    pub nonce: Option<String>,
    /// Output form.
    #[arg(long, value_enum, default_value_t = SignFormat::Curl)]
    pub format: SignFormat,
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

/// Run `sign`.
pub fn run(args: &SignArgs) -> Result<(), ExitCode> {
    let fail = |message: String| {
        eprintln!("{message}");
        ExitCode::from(1)
    };
    let uri: Uri = args
        .url
        .parse()
        .map_err(|_| fail(format!("--url {:?} is not a URL", args.url)))?;
    let host = client::host_for(&uri).ok_or_else(|| {
        fail("--url needs a scheme and host, e.g. http://127.0.0.1:8080/payments".into())
    })?;
    // The proxy verifies the path it forwards: the normalised one. Sign
    // that, so every spelling of the URL (and curl's own dot-segment
    // resolution) verifies.
    let path = replay_guard::path::normalize(uri.path()).map_err(|e| {
        fail(format!(
            "--url {:?}: the proxy refuses this path ({e})",
            args.url
        ))
    })?;
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone().into_bytes(),
        (None, Some(file)) => {
            std::fs::read(file).map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?
        }
        (None, None) => Vec::new(),
    };
    let secret = match (&args.secret_env, &args.secret_file) {
        (Some(var), _) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Secret::new(value.into_bytes()),
            _ => {
                return Err(fail(format!(
                    "environment variable {var} is not set or empty"
                )))
            }
        },
        (None, Some(file)) => {
            let mut bytes = std::fs::read(file)
                .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            Secret::new(bytes)
        }
        (None, None) => return Err(fail("give --secret-env VAR or --secret-file PATH".into())),
    };
    let method = args.method.to_ascii_uppercase();
    let signed = client::sign(
        &secret,
        &SignRequest {
            method: &method,
            host: &host,
            path_and_query: &path_and_query,
            body: &body,
            timestamp: args
                .timestamp
                .clone()
                .unwrap_or_else(|| SystemClock.now_secs().to_string()),
            nonce: args.nonce.clone().unwrap_or_else(client::new_nonce),
            key_id: &args.key_id,
        },
    );
    match args.format {
        SignFormat::Headers => {
            for (name, value) in &signed.headers {
                println!("{name}: {value}");
            }
        }
        SignFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> = signed
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
                .collect();
            println!("{}", serde_json::Value::Object(map));
        }
        SignFormat::Curl => {
            let mut line = format!("curl -sS -X {method}");
            for (name, value) in &signed.headers {
                line.push_str(&format!(
                    " \\\n  -H {}",
                    shell_quote(&format!("{name}: {value}"))
                ));
            }
            if let Some(file) = &args.body_file {
                line.push_str(&format!(
                    " \\\n  --data-binary @{}",
                    shell_quote(&file.display().to_string())
                ));
            } else if let Some(body) = &args.body {
                line.push_str(&format!(" \\\n  --data-binary {}", shell_quote(body)));
            }
            line.push_str(&format!(" \\\n  {}", shell_quote(&args.url)));
            println!("{line}");
        }
    }
    Ok(())
}
