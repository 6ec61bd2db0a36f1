//! Validation of a route's `signature = { ... }` table: `scheme` (`v1` or
//! `rfc9421`) and, for RFC 9421, the `components` a signature must cover
//! (parsed as RFC 9421 component identifiers and checked against what the
//! verifier can derive), the `tag` and `label`, and the `Accept-Signature`
//! a 401 on the route carries.
//!
//! This module must never perform I/O and never accept a component the
//! verifier cannot build into a signature base.

use http::header::HeaderName;
use http::HeaderValue;
use toml::Spanned;

use super::Problems;
use crate::config::raw::RawSignature;
use crate::config::{Component, Rfc9421Rule, SignatureScheme};

/// Derived components the verifier builds (RFC 9421 §2.2; `@status` is
/// for responses only).
pub const DERIVED: [&str; 8] = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@request-target",
    "@path",
    "@query",
    "@query-param",
];

/// What a route covers when it names no `components`.
pub const DEFAULT_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "@query"];

/// The route's scheme; `None` (reported) when the table is invalid.
/// `nonce_required` is the route's `nonce.required`, named in
/// `Accept-Signature`.
pub(super) fn validate_scheme(
    raw: &Spanned<RawSignature>,
    nonce_required: bool,
    p: &mut Problems<'_>,
) -> Option<SignatureScheme> {
    let sig = raw.get_ref();
    let scheme = sig.scheme.as_ref().map_or("v1", |s| s.get_ref().as_str());
    match scheme {
        "v1" => {
            for (present, key) in [
                (sig.components.as_ref().map(|_| raw.span()), "components"),
                (sig.tag.as_ref().map(Spanned::span), "tag"),
                (sig.label.as_ref().map(Spanned::span), "label"),
            ] {
                if let Some(span) = present {
                    p.at(span, format!("{key} is for scheme = \"rfc9421\"; scheme \"v1\" signs a fixed canonical string"));
                }
            }
            Some(SignatureScheme::V1)
        }
        "rfc9421" => rfc9421_rule(raw, nonce_required, p)
            .map(|rule| SignatureScheme::Rfc9421(Box::new(rule))),
        other => {
            let at = sig.scheme.as_ref().map_or(raw.span(), Spanned::span);
            p.at(
                at,
                format!("scheme {other:?} is unknown; write \"v1\" (the default) or \"rfc9421\""),
            );
            None
        }
    }
}

fn rfc9421_rule(
    raw: &Spanned<RawSignature>,
    nonce_required: bool,
    p: &mut Problems<'_>,
) -> Option<Rfc9421Rule> {
    let sig = raw.get_ref();
    let mut ok = true;
    let components = match &sig.components {
        Some(list) => {
            let mut parsed = Vec::new();
            for text in list {
                match parse_component(text.get_ref()) {
                    Ok(c) if parsed.iter().any(|seen: &Component| seen.same_as(&c)) => {
                        p.at(
                            text.span(),
                            format!("component {:?} is listed twice", text.get_ref()),
                        );
                        ok = false;
                    }
                    Ok(c) => parsed.push(c),
                    Err(message) => {
                        p.at(text.span(), message);
                        ok = false;
                    }
                }
            }
            parsed
        }
        None => DEFAULT_COMPONENTS
            .iter()
            .filter_map(|name| Component::named(name))
            .collect(),
    };
    if ok && !binds_the_request(&components) {
        p.at(raw.span(), "components must include \"@method\" and one of \"@path\", \"@target-uri\" or \"@request-target\", or a captured signature could be moved to another method or path; e.g. components = [\"@method\", \"@authority\", \"@path\", \"@query\"]");
        ok = false;
    }
    let tag = sig.tag.as_ref().and_then(|t| sf_string(t, "tag", p));
    let label = sig.label.as_ref().and_then(|l| sf_key(l, p));
    ok &= sig.tag.is_none() || tag.is_some();
    ok &= sig.label.is_none() || label.is_some();
    if !ok {
        return None;
    }
    let accept_signature = accept_signature(
        &components,
        tag.as_deref(),
        label.as_deref(),
        nonce_required,
    )?;
    Some(Rfc9421Rule {
        components,
        tag,
        label,
        accept_signature,
    })
}

/// Whether the components bind the method and the target.
fn binds_the_request(components: &[Component]) -> bool {
    let has = |name: &str| components.iter().any(|c| c.name() == name);
    has("@method") && (has("@path") || has("@target-uri") || has("@request-target"))
}

/// One configured component: a bare name (`"@method"`, `"content-type"`),
/// a name with parameters (`"@query-param;name=\"id\""`) or a serialized
/// identifier (`"\"example-dict\";key=\"a\""`).
pub fn parse_component(text: &str) -> Result<Component, String> {
    let serialized = if text.starts_with('"') {
        text.to_owned()
    } else {
        match text.split_once(';') {
            Some((name, params)) => format!("\"{name}\";{params}"),
            None => format!("\"{text}\""),
        }
    };
    let item = sfv::Parser::new(&serialized)
        .with_version(sfv::Version::Rfc8941)
        .parse::<sfv::Item>()
        .map_err(|_| format!("{text:?} is not a component identifier; write e.g. \"@method\", \"content-digest\" or \"@query-param;name=\\\"id\\\"\""))?;
    let component = Component::from_item(&item)
        .ok_or_else(|| format!("{text:?} is not a component identifier"))?;
    supported(&component).map(|()| component)
}

/// Whether the verifier can derive this component from a request.
pub fn supported(component: &Component) -> Result<(), String> {
    support(
        component.name(),
        component
            .item()
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), sfv::RefBareItem::from(v))),
    )
}

/// [`supported`] over a name and its parameters as received: the one rule
/// both the configuration and a request's covered components are held to.
/// It allocates only to explain a refusal.
pub fn support<'p>(
    name: &str,
    mut params: impl Iterator<Item = (&'p str, sfv::RefBareItem<'p>)>,
) -> Result<(), String> {
    if name.starts_with('@') {
        if !DERIVED.contains(&name) {
            return Err(format!(
                "derived component {name:?} is not supported on requests; use one of {}",
                DERIVED.join(", ")
            ));
        }
        let ok = if name == "@query-param" {
            matches!(
                (params.next(), params.next()),
                (Some(("name", sfv::RefBareItem::String(_))), None)
            )
        } else {
            params.next().is_none()
        };
        if !ok {
            return Err(match name {
                "@query-param" => "\"@query-param\" takes exactly one parameter, name=\"...\", e.g. \"@query-param;name=\\\"id\\\"\"".to_owned(),
                _ => format!("{name:?} takes no parameters"),
            });
        }
        return Ok(());
    }
    if name.is_empty()
        || name.bytes().any(|b| b.is_ascii_uppercase())
        || HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        return Err(format!("{name:?} is not a lowercase HTTP field name"));
    }
    for (param, value) in params {
        match (param, value) {
            ("sf", sfv::RefBareItem::Boolean(true)) | ("key", sfv::RefBareItem::String(_)) => {}
            ("bs" | "req" | "tr", _) => return Err(format!("the {param:?} component parameter is not supported (binary-wrapped, response and trailer components)")),
            _ => return Err(format!("{param:?} is not a field component parameter; use sf or key=\"...\"")),
        }
    }
    Ok(())
}

/// A `tag`: an RFC 8941 string of visible ASCII.
fn sf_string(value: &Spanned<String>, what: &str, p: &mut Problems<'_>) -> Option<String> {
    let text = value.get_ref();
    if text.is_empty() || sfv::StringRef::from_str(text).is_err() {
        p.at(
            value.span(),
            format!("{what} must be 1 or more printable ASCII characters, e.g. \"partner-api\""),
        );
        return None;
    }
    Some(text.clone())
}

/// A `label`: an RFC 8941 key (lowercase letters, digits, `_-.*`).
fn sf_key(value: &Spanned<String>, p: &mut Problems<'_>) -> Option<String> {
    let text = value.get_ref();
    if sfv::KeyRef::from_str(text).is_err() {
        p.at(value.span(), "label must be an RFC 8941 key: a lowercase letter or '*', then lowercase letters, digits, '_', '-', '.' or '*', e.g. \"sig1\"");
        return None;
    }
    Some(text.clone())
}

/// `Accept-Signature` (RFC 9421 §5.1): the label (the route's, else
/// `sig`), the components and `created`, `nonce` (when required) and `tag`.
fn accept_signature(
    components: &[Component],
    tag: Option<&str>,
    label: Option<&str>,
    nonce_required: bool,
) -> Option<HeaderValue> {
    let mut params = sfv::Parameters::new();
    params.insert(
        sfv::key_ref("created").to_owned(),
        sfv::BareItem::Boolean(true),
    );
    if nonce_required {
        params.insert(
            sfv::key_ref("nonce").to_owned(),
            sfv::BareItem::Boolean(true),
        );
    }
    if let Some(tag) = tag {
        let tag = sfv::StringRef::from_str(tag).ok()?.to_owned();
        params.insert(sfv::key_ref("tag").to_owned(), sfv::BareItem::String(tag));
    }
    let items = components.iter().map(|c| c.item().clone()).collect();
    let label = sfv::KeyRef::from_str(label.unwrap_or("sig"))
        .ok()?
        .to_owned();
    let mut dict = sfv::Dictionary::new();
    dict.insert(label, sfv::InnerList::with_params(items, params).into());
    let text = sfv::FieldType::serialize(&dict)?;
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_parse_in_three_spellings() {
        let plain = parse_component("@method").unwrap();
        assert_eq!(plain.name(), "@method");
        let with_param = parse_component("@query-param;name=\"id\"").unwrap();
        let serialized = parse_component("\"@query-param\";name=\"id\"").unwrap();
        assert!(with_param.same_as(&serialized));
        let dict = parse_component("example-dict;key=\"a\"").unwrap();
        assert_eq!(dict.name(), "example-dict");
    }

    #[test]
    fn unsupported_components_are_refused_with_a_reason() {
        for (text, why) in [
            ("@status", "not supported on requests"),
            ("@signature-params", "not supported on requests"),
            ("@method;x", "takes no parameters"),
            ("@query-param", "exactly one parameter"),
            ("Content-Type", "lowercase"),
            ("set-cookie;bs", "not supported"),
            ("date;req", "not supported"),
            ("date;foo", "not a field component parameter"),
            ("(\"a\")", "not a component identifier"),
        ] {
            let err = parse_component(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
