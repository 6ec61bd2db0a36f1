//! RFC 9530 `Content-Digest`: a Dictionary of `algorithm = :digest:`
//! members computed over the message content as received.
//!
//! [`verify`] checks the field against the body: every `sha-256` and
//! `sha-512` member must match and at least one must be present (other
//! algorithms are ignored, RFC 9530 §2). [`header_value`] computes a field
//! for clients. This module must never accept a field without a supported
//! digest, nor one whose digest has the wrong length.

use http::header::HeaderName;
use http::HeaderMap;
use sha2::{Digest, Sha256, Sha512};

use super::fields::byte_sequences;
use super::params::combined;
use crate::checks::Content;
use crate::rejection::Rejection;

/// The field's name.
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");

/// A digest algorithm of the Hash Algorithms for HTTP Digest Fields registry
/// that replay-guard computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `sha-256`.
    Sha256,
    /// `sha-512`.
    Sha512,
}

impl DigestAlgorithm {
    /// The registry key, e.g. `sha-256`.
    pub fn key(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha-256",
            DigestAlgorithm::Sha512 => "sha-512",
        }
    }

    fn from_key(key: &str) -> Option<DigestAlgorithm> {
        match key {
            "sha-256" => Some(DigestAlgorithm::Sha256),
            "sha-512" => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }

    /// The digest of `content`.
    pub fn digest(self, content: &[u8]) -> Vec<u8> {
        match self {
            DigestAlgorithm::Sha256 => Sha256::digest(content).to_vec(),
            DigestAlgorithm::Sha512 => Sha512::digest(content).to_vec(),
        }
    }
}

/// The `Content-Digest` value of `content` with one algorithm, e.g.
/// `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`.
pub fn header_value(content: &[u8], algorithm: DigestAlgorithm) -> String {
    let mut dict = sfv::Dictionary::new();
    let key = sfv::KeyRef::constant(algorithm.key()).to_owned();
    dict.insert(
        key,
        sfv::BareItem::ByteSequence(algorithm.digest(content)).into(),
    );
    sfv::FieldType::serialize(&dict).unwrap_or_default()
}

/// Whether the request's `Content-Digest` (every line, combined) matches
/// `body`: `Err(BadContentDigest)` when it is absent, malformed, has no
/// `sha-256` or `sha-512` member, or any such member differs.
pub fn verify(headers: &HeaderMap, body: &Content<'_>) -> Result<(), Rejection> {
    let text = match combined(headers, &CONTENT_DIGEST) {
        Some(Ok(text)) => text,
        None | Some(Err(())) => return Err(Rejection::BadContentDigest),
    };
    let members = byte_sequences(&text).map_err(|_| Rejection::BadContentDigest)?;
    let mut checked = 0;
    for (key, member) in &members {
        let Some(algorithm) = DigestAlgorithm::from_key(key.as_str()) else {
            continue;
        };
        let Some(received) = member else {
            return Err(Rejection::BadContentDigest);
        };
        let matches = match algorithm {
            // The body's SHA-256 is shared with the other checks that hash it.
            DigestAlgorithm::Sha256 => received.as_slice() == body.sha256().as_slice(),
            DigestAlgorithm::Sha512 => received == &algorithm.digest(body.bytes()),
        };
        if !matches {
            return Err(Rejection::BadContentDigest);
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(Rejection::BadContentDigest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// [`super::verify`] over a body given as bytes.
    fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
        super::verify(headers, &Content::new(body))
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CONTENT_DIGEST, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    /// RFC 9530 §2 and Appendix B: `{"hello": "world"}` followed by LF,
    /// empty content, and the partial content `"world"}` + LF.
    #[test]
    fn rfc9530_examples() {
        let full = b"{\"hello\": \"world\"}\n";
        assert_eq!(
            header_value(full, DigestAlgorithm::Sha256),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
        );
        assert_eq!(
            header_value(full, DigestAlgorithm::Sha512),
            "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:"
        );
        assert_eq!(
            header_value(b"", DigestAlgorithm::Sha256),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
        assert_eq!(
            header_value(b"\"world\"}\n", DigestAlgorithm::Sha256),
            "sha-256=:jjcgBDWNAtbYUXI37CVG3gRuGOAjaaDRGpIUFsdyepQ=:"
        );
        let both = headers(&[
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:,\
             sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:",
        ]);
        assert_eq!(verify(&both, full), Ok(()));
        assert_eq!(
            verify(&both, b"{\"hello\": \"world\"}"),
            Err(Rejection::BadContentDigest)
        );
    }

    /// RFC 9421's test-request carries the SHA-512 of `{"hello": "world"}`.
    #[test]
    fn rfc9421_test_request_digest() {
        let field = headers(&["sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"]);
        assert_eq!(verify(&field, b"{\"hello\": \"world\"}"), Ok(()));
    }

    #[test]
    fn unsupported_malformed_or_mismatched_fields_are_refused() {
        let body = b"{}";
        let good = header_value(body, DigestAlgorithm::Sha256);
        assert_eq!(verify(&headers(&[&good]), body), Ok(()));
        assert_eq!(
            verify(&headers(&["unixsum=:AAAA:", &good]), body),
            Ok(()),
            "unknown algorithms are ignored"
        );
        for bad in [
            "unixsum=:AAAA:",
            "sha-256=:AAAA:",
            "sha-256=abc",
            "sha-256=:not base64",
            "sha-256=(:AAAA:)",
        ] {
            assert_eq!(
                verify(&headers(&[bad]), body),
                Err(Rejection::BadContentDigest),
                "{bad}"
            );
        }
        assert_eq!(
            verify(&HeaderMap::new(), body),
            Err(Rejection::BadContentDigest)
        );
        let wrong_512 = header_value(b"other", DigestAlgorithm::Sha512);
        assert_eq!(
            verify(&headers(&[&good, &wrong_512]), body),
            Err(Rejection::BadContentDigest),
            "every supported member must match"
        );
    }
}
