//! `identity = "jwt:<claim>"`: verify the bearer token a client already
//! sends and read one claim of it as the client's identity.
//!
//! The token comes from `[jwt] header` (`Authorization: Bearer <token>` by
//! default). It is verified with `jsonwebtoken` (on aws-lc-rs): its `alg`
//! must be on the `algorithms` allow-list (`none` never is: the crate has
//! no such algorithm); an HMAC algorithm is checked only against
//! `secret_env`, an asymmetric one only against a JWKS public key of the
//! same family (and the key's own `alg`, when the JWKS names one), so an
//! HS256 token "signed" with a public key as its secret never verifies.
//! `iss` and `aud` are checked by the crate; `exp` (required) and `nbf`
//! against the proxy's injected clock, with `leeway_secs`.
//!
//! The JWKS ([`JwtKeys`]) is refreshed every `jwks_refresh_secs` by a task
//! that ends with its config generation; a refresh that fails keeps the
//! last good set. A token whose `kid` is unknown triggers one refresh at
//! most every [`ON_DEMAND_INTERVAL`], shared by all requests waiting for
//! it (key rotation without waiting for the schedule, and no amplification
//! of a flood of made-up `kid`s).
//!
//! The token is forwarded to the upstream unchanged (this module only reads
//! it). It must never appear in a log line, a metric, an error body or a
//! store key: only the claim leaves this module, and that only into a
//! scope (hashed) or a log tag (hashed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::checks::header_text;
use crate::clock::SharedClock;
use crate::config::{JwksSource, JwtConfig, JwtKeys};
use crate::metrics::JwksSeries;
use crate::rejection::Rejection;

/// The least time between two refreshes caused by an unknown `kid`.
pub const ON_DEMAND_INTERVAL: Duration = Duration::from_secs(10);
/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Verifies bearer tokens for one config generation.
#[derive(Debug)]
pub struct JwtVerifier {
    /// `[jwt]`.
    config: JwtConfig,
    /// The crate's checks per allowed algorithm (`iss`, `aud`; time is
    /// ours).
    validations: Vec<(Algorithm, Validation)>,
    /// `secret_env` as an HMAC key.
    hmac: Option<DecodingKey>,
    /// The last good JWKS.
    keys: ArcSwap<JwtKeys>,
    /// Refreshes so far (successful or not): a request that waited for a
    /// refresh knows whether one happened meanwhile.
    generation: AtomicU64,
    /// Serialises refreshes; holds when the last on-demand one started.
    refreshing: tokio::sync::Mutex<Option<Instant>>,
    /// JWKS fetches so far (for tests and metrics).
    fetches: AtomicU64,
    /// Refreshes by result and the keys in use, for `/metrics`.
    series: JwksSeries,
    /// The proxy's clock for `exp` and `nbf`.
    clock: SharedClock,
    /// Tokens that verified, by SHA-256, until their `exp`.
    cache: Cache,
}

/// Verified tokens: SHA-256 of the token → `exp` and the claims a route
/// asked for. Bounded (`cache_entries`; full: emptied, then refilled),
/// emptied on every JWKS refresh (a key withdrawn from the set stops
/// verifying at once), and per config generation. Only successes are
/// remembered; every hit still checks `exp` on the proxy's clock. No token
/// text is kept.
#[derive(Debug, Default)]
struct Cache {
    capacity: usize,
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], Cached>>,
}

#[derive(Debug)]
struct Cached {
    /// The token's `exp`.
    exp: u64,
    /// The verified claims (the token's own, as decoded).
    claims: Arc<Map<String, Value>>,
}

impl Cache {
    fn get(&self, digest: &[u8; 32], now: u64, leeway: u64) -> Option<Arc<Map<String, Value>>> {
        if self.capacity == 0 {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let hit = entries.get(digest)?;
        (hit.exp.saturating_add(leeway) > now).then(|| hit.claims.clone())
    }

    fn put(&self, digest: [u8; 32], exp: u64, claims: Arc<Map<String, Value>>) {
        if self.capacity == 0 {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity {
                entries.clear();
            }
            entries.insert(digest, Cached { exp, claims });
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

impl JwtVerifier {
    /// A verifier for `config`. The keys are `jwks_file`'s as the config
    /// read them; for a `jwks_url` they are `previous`'s when it fetched
    /// the same URL (a reload keeps the keys), else empty until the first
    /// fetch ([`JwtVerifier::spawn_refresh`] starts one at once).
    pub fn new(
        config: &JwtConfig,
        clock: SharedClock,
        previous: Option<&JwtVerifier>,
        series: JwksSeries,
    ) -> Arc<JwtVerifier> {
        let keys = match (&config.jwks, &config.file_keys, previous) {
            (Some(JwksSource::File(_)), Some(keys), _) => keys.clone(),
            (Some(source @ JwksSource::Url(_)), _, Some(old))
                if old.config.jwks.as_ref() == Some(source) =>
            {
                JwtKeys::clone(&old.keys.load())
            }
            _ => JwtKeys::default(),
        };
        let validations = config
            .algorithms
            .iter()
            .map(|alg| (*alg, validation(config, *alg)))
            .collect();
        let hmac = config
            .secret
            .as_ref()
            .and_then(|secret| DecodingKey::from_secret(secret.expose()).ok());
        series.set_keys(keys.keys.len());
        Arc::new(JwtVerifier {
            config: config.clone(),
            validations,
            hmac,
            keys: ArcSwap::from_pointee(keys),
            generation: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            series,
            clock,
            cache: Cache {
                capacity: config.cache_entries,
                ..Cache::default()
            },
        })
    }

    /// Refresh the JWKS every `jwks_refresh_secs` (a `jwks_url` with no
    /// keys yet at once) on the current runtime, until the verifier is
    /// dropped. Nothing to do without a JWKS or a runtime.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let Some(source) = self.config.jwks.clone() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let fetch_now = matches!(source, JwksSource::Url(_)) && self.keys.load().keys.is_empty();
        let period = self.config.refresh;
        let verifier: Weak<JwtVerifier> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut first = fetch_now;
            loop {
                if !first {
                    tokio::time::sleep(period).await;
                }
                first = false;
                let Some(verifier) = verifier.upgrade() else {
                    break;
                };
                // A refresh a request ran meanwhile counts for this round.
                let seen = verifier.generation.load(Ordering::Acquire);
                let _guard = verifier.refreshing.lock().await;
                if verifier.generation.load(Ordering::Acquire) == seen {
                    verifier.refresh().await;
                }
            }
        });
    }

    /// JWKS fetches (or file reads) so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The value of `claim` of the request's verified bearer token: a
    /// string as it is, a number as its JSON text. Absent token:
    /// `missing_token`; one that does not verify: `bad_token`; no such
    /// claim: `missing_identity`; a claim of another type:
    /// `malformed_identity`.
    pub async fn verify(&self, headers: &HeaderMap, claim: &str) -> Result<String, Rejection> {
        let token = bearer(headers, &self.config.header)?;
        let now = self.clock.now_secs();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let claims = match self.cache.get(&digest, now, self.config.leeway_secs) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_token(token).await?);
                if let Some(exp) = claims.get("exp").and_then(numeric_date) {
                    self.cache.put(digest, exp, claims.clone());
                }
                claims
            }
        };
        match claims.get(claim) {
            None | Some(Value::Null) => Err(Rejection::MissingIdentity),
            Some(Value::String(text)) if text.is_empty() => Err(Rejection::MissingIdentity),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(Value::Number(number)) => Ok(number.to_string()),
            Some(_) => Err(Rejection::MalformedIdentity),
        }
    }

    /// Verify one token: header, algorithm, key, signature, `iss`, `aud`,
    /// lifetime. The claims, or `bad_token`.
    async fn verify_token(&self, token: &str) -> Result<Map<String, Value>, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad("header", &e))?;
        let Some((alg, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg)
        else {
            tracing::debug!(alg = ?header.alg, "bearer token refused: algorithm not allowed");
            return Err(Rejection::BadToken);
        };
        let claims = if alg.family() == AlgorithmFamily::Hmac {
            let key = self.hmac.as_ref().ok_or(Rejection::BadToken)?;
            decode(token, key, validation)?
        } else {
            self.decode_with_jwks(token, &header, *alg, validation)
                .await?
        };
        self.check_lifetime(&claims)?;
        Ok(claims)
    }

    /// Verify against the JWKS key(s) the token may name; an unknown `kid`
    /// refreshes the set once (rate-limited) and tries again.
    async fn decode_with_jwks(
        &self,
        token: &str,
        header: &Header,
        alg: Algorithm,
        validation: &Validation,
    ) -> Result<Map<String, Value>, Rejection> {
        let seen = self.generation.load(Ordering::Acquire);
        if let Some(result) = self.try_keys(token, header, alg, validation) {
            return result;
        }
        self.refresh_on_demand(seen).await;
        match self.try_keys(token, header, alg, validation) {
            Some(result) => result,
            None => {
                tracing::debug!(
                    kid_known = false,
                    "bearer token refused: no key for its kid"
                );
                Err(Rejection::BadToken)
            }
        }
    }

    /// `None` when the set has no key for the token; else the first key's
    /// verdict that verifies it (or the refusal).
    fn try_keys(
        &self,
        token: &str,
        header: &Header,
        alg: Algorithm,
        validation: &Validation,
    ) -> Option<Result<Map<String, Value>, Rejection>> {
        let keys = self.keys.load();
        let mut candidates = keys.keys.iter().filter(|key| {
            key.accepts(alg)
                && match (&header.kid, &key.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        });
        let first = candidates.next()?;
        let mut verdict = decode(token, &first.key, validation);
        for key in candidates {
            if verdict.is_ok() {
                break;
            }
            verdict = decode(token, &key.key, validation);
        }
        Some(verdict)
    }

    /// One refresh for a request that met an unknown `kid`, unless one
    /// happened since it looked (`seen`) or one ran less than
    /// [`ON_DEMAND_INTERVAL`] ago.
    async fn refresh_on_demand(&self, seen: u64) {
        if self.config.jwks.is_none() {
            return;
        }
        let mut last = self.refreshing.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < ON_DEMAND_INTERVAL) {
            return;
        }
        // The first load of an empty set (a jwks_url before its first
        // fetch) is not rate-limited, nor does it count.
        if !self.keys.load().keys.is_empty() {
            *last = Some(Instant::now());
        }
        self.refresh().await;
    }

    /// Fetch (or re-read) the JWKS; keep the last good set on failure.
    /// The caller holds `refreshing`.
    async fn refresh(&self) {
        let Some(source) = &self.config.jwks else {
            return;
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = match source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            JwksSource::Url(url) => fetch(url).await,
        };
        match fetched.and_then(|bytes| JwtKeys::parse(&bytes)) {
            Ok(keys) => {
                tracing::debug!(keys = keys.keys.len(), "JWKS refreshed");
                self.series.refreshed(keys.keys.len());
                self.keys.store(Arc::new(keys));
                self.cache.clear();
            }
            Err(why) => {
                self.series.failed();
                tracing::warn!(error = %why, "JWKS refresh failed; keeping the last good key set");
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// `exp` (required) and `nbf` against the proxy's clock, with leeway.
    fn check_lifetime(&self, claims: &Map<String, Value>) -> Result<(), Rejection> {
        let now = self.clock.now_secs();
        let leeway = self.config.leeway_secs;
        let Some(exp) = claims.get("exp").and_then(numeric_date) else {
            tracing::debug!("bearer token refused: no numeric exp");
            return Err(Rejection::BadToken);
        };
        if exp.saturating_add(leeway) <= now {
            tracing::debug!("bearer token refused: expired");
            return Err(Rejection::BadToken);
        }
        match claims.get("nbf") {
            None => Ok(()),
            Some(nbf) => match numeric_date(nbf) {
                Some(nbf) if nbf <= now.saturating_add(leeway) => Ok(()),
                _ => {
                    tracing::debug!("bearer token refused: not yet valid");
                    Err(Rejection::BadToken)
                }
            },
        }
    }
}

/// The crate's checks for one algorithm: the signature, `iss` and `aud`
/// (each required when configured). Time claims are checked on the
/// proxy's clock instead ([`JwtVerifier::check_lifetime`]).
fn validation(config: &JwtConfig, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    validation.required_spec_claims.clear();
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        validation.required_spec_claims.insert("iss".to_owned());
    }
    if config.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&config.audiences);
        validation.required_spec_claims.insert("aud".to_owned());
    }
    validation
}

/// Verify and decode; every failure is `bad_token` (logged by kind only).
fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, Rejection> {
    jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| bad("verification", &e))
}

/// Log why a token was refused by category only: the crate's messages may
/// quote parts of the token.
fn bad(step: &str, error: &jsonwebtoken::errors::Error) -> Rejection {
    use jsonwebtoken::errors::ErrorKind;
    let why = match error.kind() {
        ErrorKind::InvalidSignature => "signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm",
        ErrorKind::InvalidIssuer => "issuer",
        ErrorKind::InvalidAudience => "audience",
        ErrorKind::MissingRequiredClaim(_) => "missing claim",
        ErrorKind::InvalidKeyFormat | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey => {
            "key"
        }
        _ => "malformed",
    };
    tracing::debug!(step, why, "bearer token refused");
    Rejection::BadToken
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional.
fn numeric_date(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// The token of `Bearer <token>` in `header` (the scheme is
/// case-insensitive; a header other than `Authorization` may also carry
/// the bare token). Absent, empty or another scheme (`Basic …`):
/// `missing_token`; repeated or not text: `bad_token`.
fn bearer<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Result<&'a str, Rejection> {
    let value = match header_text(headers, name) {
        None => return Err(Rejection::MissingToken),
        Some(Err(())) => return Err(Rejection::BadToken),
        Some(Ok(value)) => value,
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = rest.trim();
        return if token.is_empty() {
            Err(Rejection::MissingToken)
        } else {
            Ok(token)
        };
    }
    if name == http::header::AUTHORIZATION || !rest.is_empty() {
        return Err(Rejection::MissingToken);
    }
    Ok(value)
}

/// GET a JWKS over http(s), bounded in time and size.
async fn fetch(url: &http::Uri) -> Result<Vec<u8>, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .map_err(|e| format!("no root certificates for https: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Empty<Bytes>>(connector);
    let request = Request::get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(FETCH_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let body = tokio::time::timeout(
        FETCH_TIMEOUT,
        Limited::new(response.into_body(), MAX_JWKS_BYTES).collect(),
    )
    .await
    .map_err(|_| "timed out reading the body".to_owned())?
    .map_err(|e| format!("body: {e}"))?;
    Ok(body.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_read_from_the_bearer_scheme_only() {
        let name = http::header::AUTHORIZATION;
        assert_eq!(bearer(&auth("Bearer abc"), &name), Ok("abc"));
        assert_eq!(bearer(&auth("bearer  abc "), &name), Ok("abc"));
        assert_eq!(
            bearer(&auth("Basic dXNlcjpwdw=="), &name),
            Err(Rejection::MissingToken)
        );
        assert_eq!(bearer(&auth("Bearer"), &name), Err(Rejection::MissingToken));
        assert_eq!(bearer(&auth("abc"), &name), Err(Rejection::MissingToken));
        assert_eq!(
            bearer(&HeaderMap::new(), &name),
            Err(Rejection::MissingToken)
        );
        let mut twice = auth("Bearer a");
        twice.append("authorization", HeaderValue::from_static("Bearer b"));
        assert_eq!(bearer(&twice, &name), Err(Rejection::BadToken));
        let custom = http::HeaderName::from_static("x-token");
        let mut headers = HeaderMap::new();
        headers.insert("x-token", HeaderValue::from_static("abc"));
        assert_eq!(bearer(&headers, &custom), Ok("abc"));
    }

    #[test]
    fn numeric_dates_accept_integers_and_fractions_only() {
        assert_eq!(numeric_date(&serde_json::json!(10)), Some(10));
        assert_eq!(numeric_date(&serde_json::json!(10.7)), Some(10));
        assert_eq!(numeric_date(&serde_json::json!(-1)), None);
        assert_eq!(numeric_date(&serde_json::json!("10")), None);
    }
}
