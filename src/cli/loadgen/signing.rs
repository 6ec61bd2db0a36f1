//! The key a loadgen run signs with and the headers it adds to each new
//! transmission: scheme `v1` (timestamp, nonce, key id, `X-Signature`) or
//! RFC 9421 (`Content-Digest`, `Signature-Input`, `Signature` with
//! `created`, `nonce` and the route's `tag`, covering the default
//! components).
//!
//! Secrets come from an environment variable, private keys from a file;
//! this module must never take either from the command line, and it is
//! checked once (a trial signature) so that signing never fails mid-run.

use replay_guard::checks::rfc9421::sign::SigningKey;
use replay_guard::client::{self, Rfc9421Request, SignRequest};
use replay_guard::config::{Component, Secret};

use super::{LoadgenArgs, LoadgenError};
use crate::cli::sign::Scheme;
use crate::cli::sign_rfc9421;

/// How a run signs.
pub(super) enum Signing {
    /// Scheme `v1`: an HMAC secret.
    V1 {
        /// `X-Key-Id`.
        key_id: String,
        /// The secret.
        secret: Secret,
    },
    /// RFC 9421.
    Rfc9421 {
        /// `keyid`.
        key_id: String,
        /// The secret or private key.
        key: SigningKey,
        /// `tag`.
        tag: Option<String>,
        /// Covered components (the defaults).
        components: Vec<Component>,
    },
}

/// What one transmission signs.
pub(super) struct Transmission<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
    pub timestamp: u64,
    pub nonce: String,
}

fn usage(message: String) -> LoadgenError {
    LoadgenError::Usage(message)
}

impl Signing {
    /// The run's key from `--key-id` and `--secret-env` or (RFC 9421)
    /// `--private-key-file`; `None` when unsigned.
    pub(super) fn from_args(args: &LoadgenArgs) -> Result<Option<Signing>, LoadgenError> {
        let Some(key_id) = args.key_id.clone() else {
            return Ok(None);
        };
        let secret = || match args.secret_env.as_ref() {
            Some(var) => match std::env::var(var) {
                Ok(value) if !value.is_empty() => Ok(Secret::new(value.into_bytes())),
                _ => Err(format!("environment variable {var} is not set or empty")),
            },
            None => Err(
                "--key-id needs --secret-env (or, with --scheme rfc9421, --private-key-file)"
                    .to_owned(),
            ),
        };
        if args.scheme == Scheme::V1 {
            if args.private_key_file.is_some() || args.algorithm.is_some() || args.tag.is_some() {
                return Err(usage(
                    "--private-key-file, --algorithm and --tag need --scheme rfc9421".into(),
                ));
            }
            return Ok(Some(Signing::V1 {
                key_id,
                secret: secret().map_err(usage)?,
            }));
        }
        let key = sign_rfc9421::signing_key(
            args.algorithm.as_deref(),
            args.private_key_file.as_deref(),
            args.secret_encoding,
            secret,
        )
        .map_err(usage)?;
        let components = sign_rfc9421::components(&[]).map_err(usage)?;
        Ok(Some(Signing::Rfc9421 {
            key_id,
            key,
            tag: args.tag.clone(),
            components,
        }))
    }

    /// The headers one transmission carries.
    pub(super) fn headers(&self, t: Transmission<'_>) -> Result<Vec<(String, String)>, String> {
        match self {
            Signing::V1 { key_id, secret } => Ok(client::sign(
                secret,
                &SignRequest {
                    method: t.method,
                    host: t.host,
                    path_and_query: t.path_and_query,
                    body: t.body,
                    timestamp: t.timestamp.to_string(),
                    nonce: t.nonce,
                    key_id,
                },
            )
            .headers),
            Signing::Rfc9421 {
                key_id,
                key,
                tag,
                components,
            } => client::sign_rfc9421(
                key,
                &Rfc9421Request {
                    method: t.method,
                    host: t.host,
                    path_and_query: t.path_and_query,
                    https: false,
                    body: t.body,
                    key_id,
                    created: i64::try_from(t.timestamp).unwrap_or(i64::MAX),
                    nonce: Some(&t.nonce),
                    tag: tag.as_deref(),
                    label: "sig1",
                    components,
                    headers: &[],
                },
            )
            .map(|signed| signed.headers),
        }
    }
}
