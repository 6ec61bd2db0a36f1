//! The typed `[jwt]` section and the keys bearer tokens are verified
//! against: a JWKS (from `jwks_file` or `jwks_url`) parsed into
//! [`JwtKeys`], or an HS256 secret from `secret_env`.
//!
//! [`JwtKeys::parse`] is the one JWKS parser: validation uses it for
//! `jwks_file` (so `check` and reload refuse a file that does not parse)
//! and the verifier ([`crate::identity::jwt`]) for every refresh. A JWKS
//! key is always asymmetric: a symmetric (`oct`) key in a JWKS is refused,
//! so an HMAC algorithm can never be checked against a public key (the
//! algorithm-confusion attack). This module must never perform I/O, and
//! never print key material.

use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::Secret;

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file (re-read on reload and every refresh).
    File(PathBuf),
    /// An `http(s)://` URL (fetched at start and every refresh).
    Url(http::Uri),
}

/// `[jwt]`: how a bearer token is found and verified.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The header carrying `Bearer <token>` (default `Authorization`).
    pub header: HeaderName,
    /// The required `iss`, when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must match), when any.
    pub audiences: Vec<String>,
    /// The allow-list of `alg` values; never `none`.
    pub algorithms: Vec<Algorithm>,
    /// The JWKS for asymmetric algorithms.
    pub jwks: Option<JwksSource>,
    /// `jwks_file`'s keys as read when the config was loaded.
    pub file_keys: Option<JwtKeys>,
    /// The HMAC secret for HS256/384/512 (`secret_env`).
    pub secret: Option<Secret>,
    /// How often the JWKS is refreshed.
    pub refresh: Duration,
    /// Allowed clock difference for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Verified tokens remembered (by their SHA-256) until their `exp`, at
    /// most this many; 0 verifies every request's token.
    pub cache_entries: usize,
}

/// One verification key from a JWKS.
#[derive(Clone)]
pub struct JwtKey {
    /// The key's `kid`, when it has one.
    pub kid: Option<String>,
    /// The key's `alg`, when the JWKS names one: a token must then use it.
    pub alg: Option<Algorithm>,
    /// RSA, EC or Ed — never HMAC.
    pub family: AlgorithmFamily,
    /// The public key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl JwtKey {
    /// Whether this key may verify a token signed with `alg`: same family,
    /// and the key's own `alg` when it names one.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        alg.family() == self.family && self.alg.is_none_or(|own| own == alg)
    }
}

/// The usable keys of one JWKS.
#[derive(Debug, Clone, Default)]
pub struct JwtKeys {
    /// The keys, in the JWKS's order.
    pub keys: Vec<JwtKey>,
}

impl JwtKeys {
    /// Parse a JWKS document (`{"keys": [...]}`). Keys of unknown types
    /// and keys for encryption (`"use": "enc"`) are skipped; a symmetric
    /// (`oct`) key is an error, and so is a set with no usable key.
    pub fn parse(bytes: &[u8]) -> Result<JwtKeys, String> {
        let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
                AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
                AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
                AlgorithmParameters::OctetKey(_) => {
                    return Err(format!(
                        "key {} is a symmetric (oct) key: a JWKS holds public keys only; HS256 uses [jwt] secret_env",
                        i + 1
                    ))
                }
                _ => continue,
            };
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(alg) => match key_algorithm(alg) {
                    Some(alg) if alg.family() == family => Some(alg),
                    _ => {
                        return Err(format!(
                            "key {} names an alg that does not fit its key type",
                            i + 1
                        ))
                    }
                },
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("key {} is not a valid public key: {e}", i + 1))?;
            keys.push(JwtKey {
                kid: jwk.common.key_id.clone(),
                alg,
                family,
                key,
            });
        }
        if keys.is_empty() {
            return Err("the JWKS holds no usable signing key (RSA, EC or OKP)".into());
        }
        Ok(JwtKeys { keys })
    }
}

/// The signing algorithm a JWK's `alg` names (`None` for encryption
/// algorithms).
fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    alg.to_string().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_keys_in_a_jwks_are_refused() {
        let oct = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#;
        assert!(JwtKeys::parse(oct).unwrap_err().contains("symmetric"));
        assert!(JwtKeys::parse(b"{}").is_err());
        assert!(JwtKeys::parse(br#"{"keys":[]}"#).is_err());
    }

    #[test]
    fn ed25519_keys_parse_with_their_kid() {
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed","alg":"EdDSA"}]}"#;
        let keys = JwtKeys::parse(jwks).unwrap();
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].kid.as_deref(), Some("ed"));
        assert!(keys.keys[0].accepts(Algorithm::EdDSA));
        assert!(!keys.keys[0].accepts(Algorithm::HS256));
    }
}
