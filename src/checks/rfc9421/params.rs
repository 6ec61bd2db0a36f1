//! Parsing `Signature-Input` and `Signature` (RFC 9421 §4.1, §4.2) as
//! RFC 8941 Dictionaries, with the `sfv` crate, into one [`Candidate`] per
//! label that has both an input and a signature, and reading the
//! signature parameters of §2.3 with their types.
//!
//! This module must never decide whether a signature is acceptable (that
//! is [`super::check`]'s), and never hand-parse a structured field.

use http::header::HeaderName;
use http::HeaderMap;

use crate::rejection::Rejection;

/// `Signature-Input`.
pub const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
/// `Signature`.
pub const SIGNATURE: HeaderName = HeaderName::from_static("signature");

/// At most this many labels are read from a request (bounds CPU).
pub const MAX_SIGNATURES: usize = 8;

/// The signature parameters of §2.3 that replay-guard reads. Others are
/// kept (they are signed, in [`Candidate::input`]) but not interpreted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigParams {
    /// `keyid`.
    pub keyid: Option<String>,
    /// `created`, Unix seconds.
    pub created: Option<i64>,
    /// `expires`, Unix seconds.
    pub expires: Option<i64>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `alg`.
    pub alg: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
}

/// One labelled signature of a request.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The Dictionary key in both fields.
    pub label: String,
    /// The covered components and the parameters, as received.
    pub input: sfv::InnerList,
    /// The parameters, typed; `Err` names what a badly typed one is.
    pub params: Result<SigParams, Rejection>,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Every line of a field, combined with ", " (RFC 9110 §5.3); `None` when
/// absent, `Err` when a line is not visible ASCII.
fn combined(headers: &HeaderMap, name: &HeaderName) -> Option<Result<String, ()>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut out = Vec::new();
    for line in lines {
        match line.to_str() {
            Ok(text) => out.push(text.trim()),
            Err(_) => return Some(Err(())),
        }
    }
    Some(Ok(out.join(", ")))
}

fn dictionary(text: &str) -> Result<sfv::Dictionary, Rejection> {
    sfv::Parser::new(text)
        .with_version(sfv::Version::Rfc8941)
        .parse()
        .map_err(|_| Rejection::BadSignature)
}

/// The request's signatures, in `Signature-Input` order: `Ok(None)` when
/// it has neither field, `MissingSignature` when it has only one,
/// `BadSignature` when either does not parse.
pub fn candidates(headers: &HeaderMap) -> Result<Option<Vec<Candidate>>, Rejection> {
    let (input, signature) = match (
        combined(headers, &SIGNATURE_INPUT),
        combined(headers, &SIGNATURE),
    ) {
        (None, None) => return Ok(None),
        (Some(Ok(input)), Some(Ok(signature))) => (input, signature),
        (None, _) | (_, None) => return Err(Rejection::MissingSignature),
        _ => return Err(Rejection::BadSignature),
    };
    let inputs = dictionary(&input)?;
    let signatures = dictionary(&signature)?;
    let mut out = Vec::new();
    for (label, entry) in inputs.into_iter().take(MAX_SIGNATURES) {
        let sfv::ListEntry::InnerList(list) = entry else {
            continue;
        };
        let Some(sfv::ListEntry::Item(item)) = signatures.get(label.as_str()) else {
            continue;
        };
        let Some(bytes) = item.bare_item.as_byte_sequence() else {
            continue;
        };
        out.push(Candidate {
            label: label.as_str().to_owned(),
            params: typed(&list.params),
            input: list,
            signature: bytes.to_vec(),
        });
    }
    Ok(Some(out))
}

/// The parameters of §2.3 with their types: Integers for `created` and
/// `expires` (else `MalformedTimestamp`), Strings for the others (else
/// `BadSignature`).
pub fn typed(params: &sfv::Parameters) -> Result<SigParams, Rejection> {
    let string = |name: &str| -> Result<Option<String>, Rejection> {
        match params.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_string()
                .map(|s| Some(s.as_str().to_owned()))
                .ok_or(Rejection::BadSignature),
        }
    };
    let integer = |name: &str| -> Result<Option<i64>, Rejection> {
        match params.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_integer()
                .map(|i| Some(i64::from(i)))
                .ok_or(Rejection::MalformedTimestamp),
        }
    };
    Ok(SigParams {
        keyid: string("keyid")?,
        created: integer("created")?,
        expires: integer("expires")?,
        nonce: string("nonce")?,
        alg: string("alg")?,
        tag: string("tag")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(input: &[&str], signature: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in input {
            headers.append(SIGNATURE_INPUT, HeaderValue::from_str(v).unwrap());
        }
        for v in signature {
            headers.append(SIGNATURE, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn labels_pair_up_across_lines_in_input_order() {
        let h = headers(
            &[
                "b=(\"@method\");created=1;keyid=\"k\";nonce=\"n\";alg=\"ed25519\";tag=\"t\";expires=2",
                "a=();created=3, lonely=()",
            ],
            &["a=:AAEC:, b=:AwQ=:", "unused=:AA==:"],
        );
        let all = candidates(&h).unwrap().unwrap();
        let labels: Vec<_> = all.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["b", "a"]);
        assert_eq!(all[0].signature, [3, 4]);
        assert_eq!(
            all[0].params,
            Ok(SigParams {
                keyid: Some("k".into()),
                created: Some(1),
                expires: Some(2),
                nonce: Some("n".into()),
                alg: Some("ed25519".into()),
                tag: Some("t".into()),
            })
        );
        assert_eq!(all[1].input.items.len(), 0);
    }

    #[test]
    fn absent_one_sided_malformed_and_mistyped() {
        assert_eq!(
            candidates(&HeaderMap::new()).unwrap().map(|v| v.len()),
            None
        );
        assert_eq!(
            candidates(&headers(&["a=()"], &[])).unwrap_err(),
            Rejection::MissingSignature
        );
        assert_eq!(
            candidates(&headers(&[], &["a=:AA==:"])).unwrap_err(),
            Rejection::MissingSignature
        );
        assert_eq!(
            candidates(&headers(&["a=(\"@method\""], &["a=:AA==:"])).unwrap_err(),
            Rejection::BadSignature
        );
        let mistyped = candidates(&headers(&["a=();created=\"1\""], &["a=:AA==:"]))
            .unwrap()
            .unwrap();
        assert_eq!(mistyped[0].params, Err(Rejection::MalformedTimestamp));
        let mistyped = candidates(&headers(&["a=();keyid=k"], &["a=:AA==:"]))
            .unwrap()
            .unwrap();
        assert_eq!(mistyped[0].params, Err(Rejection::BadSignature));
        let not_bytes = candidates(&headers(&["a=()"], &["a=\"x\""]))
            .unwrap()
            .unwrap();
        assert!(
            not_bytes.is_empty(),
            "a signature that is not a byte sequence is no candidate"
        );
    }
}
