//! Reading `Signature-Input` and `Signature` (RFC 9421 §4.1, §4.2) as
//! RFC 8941 Dictionaries ([`super::fields`], `sfv`'s parser) into one
//! [`Candidate`] per label that has both an input and a signature, and
//! reading the signature parameters of §2.3 with their types.
//!
//! This module must never decide whether a signature is acceptable (that
//! is [`super::check`]'s), and never hand-parse a structured field.

use std::borrow::Cow;

use http::header::HeaderName;
use http::HeaderMap;
use sfv::GenericBareItem;

use super::fields::{self, Input, Params};
use crate::rejection::Rejection;

/// `Signature-Input`.
pub const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
/// `Signature`.
pub const SIGNATURE: HeaderName = HeaderName::from_static("signature");

/// At most this many labels are read from a request (bounds CPU).
pub const MAX_SIGNATURES: usize = 8;

/// The signature parameters of §2.3 that replay-guard reads. Others are
/// kept (they are signed, in [`Candidate::input`]) but not interpreted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigParams<'a> {
    /// `keyid`.
    pub keyid: Option<&'a str>,
    /// `created`, Unix seconds.
    pub created: Option<i64>,
    /// `expires`, Unix seconds.
    pub expires: Option<i64>,
    /// `nonce`.
    pub nonce: Option<&'a str>,
    /// `alg`.
    pub alg: Option<&'a str>,
    /// `tag`.
    pub tag: Option<&'a str>,
}

/// One labelled signature of a request, borrowing from [`Fields`].
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The Dictionary key in both fields.
    pub label: &'a str,
    /// The covered components and the parameters, as received.
    pub input: Input<'a>,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

impl Candidate<'_> {
    /// The parameters, typed; `Err` names what a badly typed one is.
    pub fn params(&self) -> Result<SigParams<'_>, Rejection> {
        typed(&self.input.params)
    }
}

/// Every line of a field, combined with ", " (RFC 9110 §5.3), borrowed
/// when there is one line; `None` when absent, `Err` when a line is not
/// visible ASCII.
pub fn combined<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Result<Cow<'h, str>, ()>> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    let Ok(first) = first.to_str() else {
        return Some(Err(()));
    };
    let Some(second) = lines.next() else {
        return Some(Ok(Cow::Borrowed(first.trim())));
    };
    let mut out = first.trim().to_owned();
    for line in std::iter::once(second).chain(lines) {
        match line.to_str() {
            Ok(text) => {
                out.push_str(", ");
                out.push_str(text.trim());
            }
            Err(_) => return Some(Err(())),
        }
    }
    Some(Ok(Cow::Owned(out)))
}

/// The two fields' text, combined; what the candidates borrow from.
#[derive(Debug, Clone)]
pub struct Fields<'h> {
    input: Cow<'h, str>,
    signature: Cow<'h, str>,
}

impl<'h> Fields<'h> {
    /// `Ok(None)` when the request has neither field, `MissingSignature`
    /// when it has only one, `BadSignature` when either is not visible
    /// ASCII.
    pub fn read(headers: &'h HeaderMap) -> Result<Option<Fields<'h>>, Rejection> {
        match (
            combined(headers, &SIGNATURE_INPUT),
            combined(headers, &SIGNATURE),
        ) {
            (None, None) => Ok(None),
            (Some(Ok(input)), Some(Ok(signature))) => Ok(Some(Fields { input, signature })),
            (None, _) | (_, None) => Err(Rejection::MissingSignature),
            _ => Err(Rejection::BadSignature),
        }
    }

    /// The request's signatures, in `Signature-Input` order;
    /// `BadSignature` when either field does not parse.
    pub fn candidates(&self) -> Result<Vec<Candidate<'_>>, Rejection> {
        let inputs = fields::inputs(&self.input).map_err(|_| Rejection::BadSignature)?;
        let mut signatures =
            fields::byte_sequences(&self.signature).map_err(|_| Rejection::BadSignature)?;
        let mut out = Vec::with_capacity(1);
        for (label, input) in inputs.into_iter().take(MAX_SIGNATURES) {
            let Some(input) = input else {
                continue;
            };
            let Some(signature) = signatures
                .iter_mut()
                .find(|(l, _)| *l == label)
                .and_then(|(_, bytes)| bytes.take())
            else {
                continue;
            };
            out.push(Candidate {
                label: label.as_str(),
                input,
                signature,
            });
        }
        Ok(out)
    }
}

/// The parameters of §2.3 with their types: Integers for `created` and
/// `expires` (else `MalformedTimestamp`), Strings for the others (else
/// `BadSignature`).
pub fn typed<'a>(params: &'a Params<'_>) -> Result<SigParams<'a>, Rejection> {
    let string = |name: &str| -> Result<Option<&'a str>, Rejection> {
        match params.get(name) {
            None => Ok(None),
            Some(GenericBareItem::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Rejection::BadSignature),
        }
    };
    let integer = |name: &str| -> Result<Option<i64>, Rejection> {
        match params.get(name) {
            None => Ok(None),
            Some(GenericBareItem::Integer(i)) => Ok(Some(i64::from(*i))),
            Some(_) => Err(Rejection::MalformedTimestamp),
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
        let fields = Fields::read(&h).unwrap().unwrap();
        let all = fields.candidates().unwrap();
        let labels: Vec<_> = all.iter().map(|c| c.label).collect();
        assert_eq!(labels, ["b", "a"]);
        assert_eq!(all[0].signature, [3, 4]);
        assert_eq!(
            all[0].params(),
            Ok(SigParams {
                keyid: Some("k"),
                created: Some(1),
                expires: Some(2),
                nonce: Some("n"),
                alg: Some("ed25519"),
                tag: Some("t"),
            })
        );
        assert_eq!(all[1].input.components.len(), 0);
    }

    #[test]
    fn absent_one_sided_malformed_and_mistyped() {
        let candidates = |h: &HeaderMap| {
            Fields::read(h).and_then(|f| f.map(|f| f.candidates().map(|c| c.len())).transpose())
        };
        let params = |h: &HeaderMap| {
            let fields = Fields::read(h).unwrap().unwrap();
            let all = fields.candidates().unwrap();
            all[0].params().map(|_| ())
        };
        assert_eq!(candidates(&HeaderMap::new()), Ok(None));
        assert_eq!(
            candidates(&headers(&["a=()"], &[])),
            Err(Rejection::MissingSignature)
        );
        assert_eq!(
            candidates(&headers(&[], &["a=:AA==:"])),
            Err(Rejection::MissingSignature)
        );
        assert_eq!(
            candidates(&headers(&["a=(\"@method\""], &["a=:AA==:"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            params(&headers(&["a=();created=\"1\""], &["a=:AA==:"])),
            Err(Rejection::MalformedTimestamp)
        );
        assert_eq!(
            params(&headers(&["a=();keyid=k"], &["a=:AA==:"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            candidates(&headers(&["a=()"], &["a=\"x\""])),
            Ok(Some(0)),
            "a signature that is not a byte sequence is no candidate"
        );
    }
}
