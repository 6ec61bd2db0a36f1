//! The signature base of RFC 9421 §2.5: one line per covered component
//! (`"<identifier>": <value>`), derived components (§2.2) and HTTP fields
//! (§2.1, with `sf` and `key`) read from the request as received, and the
//! `"@signature-params"` line last.
//!
//! [`signature_base`] builds it for the verifier and for clients alike
//! (the signer in [`super::sign`] calls it too). It must never
//! silently drop or normalise what the RFC signs as received: a component
//! that cannot be derived is an error, never an empty value.

use std::fmt::Write as _;

use http::header::{HeaderName, HOST};
use http::{HeaderMap, Method, Uri};
use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::fields::{Covered, Input};
use crate::config::{component_support as support, Component};

pub use super::fields::MAX_COMPONENTS;

/// The HTML `application/x-www-form-urlencoded` percent-encode set: every
/// byte but ASCII alphanumerics and `*-._` (spaces as `%20`, RFC 9421
/// §2.2.8's examples).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Fields whose structured type replay-guard knows, for `;sf` (all are
/// Dictionaries).
const DICTIONARY_FIELDS: [&str; 7] = [
    "content-digest",
    "repr-digest",
    "want-content-digest",
    "want-repr-digest",
    "signature",
    "signature-input",
    "accept-signature",
];

/// The parts of a request a signature base reads.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The method, as received.
    pub method: &'a Method,
    /// The request target, as received.
    pub uri: &'a Uri,
    /// The header fields.
    pub headers: &'a HeaderMap,
    /// Whether the request arrived over TLS (for `@scheme`).
    pub https: bool,
}

/// Why a signature base cannot be built (the request is refused as
/// `bad_signature`; the reason is for tests and debugging only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, BaseError> {
    Err(BaseError(why.into()))
}

impl Message<'_> {
    /// `@scheme`: lowercase.
    pub fn scheme(&self) -> String {
        match self.uri.scheme_str() {
            Some(scheme) => scheme.to_ascii_lowercase(),
            None if self.https => "https".to_owned(),
            None => "http".to_owned(),
        }
    }

    /// `@authority`: the target's authority (absolute form) or `Host`,
    /// host lowercased, the scheme's default port omitted (RFC 9110 §4.2.3).
    pub fn authority(&self) -> Result<String, BaseError> {
        let mut out = String::new();
        self.push_authority(&mut out)?;
        Ok(out)
    }

    /// [`Message::authority`], appended to `out`.
    fn push_authority(&self, out: &mut String) -> Result<(), BaseError> {
        let authority = match self.uri.authority() {
            Some(authority) => authority.clone(),
            None => {
                let mut hosts = self.headers.get_all(HOST).iter();
                let (Some(host), None) = (hosts.next(), hosts.next()) else {
                    return err("one Host header is needed for @authority");
                };
                let Ok(authority) = http::uri::Authority::try_from(host.as_bytes()) else {
                    return err("Host is not an authority");
                };
                authority
            }
        };
        let https = self
            .uri
            .scheme_str()
            .map_or(self.https, |scheme| scheme.eq_ignore_ascii_case("https"));
        let default = if https { 443 } else { 80 };
        out.extend(authority.host().chars().map(|c| c.to_ascii_lowercase()));
        if let Some(port) = authority.port_u16().filter(|port| *port != default) {
            let _ = write!(out, ":{port}");
        }
        Ok(())
    }

    /// `@path`: as received, `/` when empty.
    pub fn path(&self) -> &str {
        match self.uri.path() {
            "" => "/",
            path => path,
        }
    }

    /// `@query`: `?` and the query as received, `?` alone when absent.
    pub fn query(&self) -> String {
        format!("?{}", self.uri.query().unwrap_or(""))
    }

    /// `@request-target`: the absolute form as received, else path and query.
    pub fn request_target(&self) -> String {
        if self.uri.scheme().is_some() || self.method == Method::CONNECT {
            return self.uri.to_string();
        }
        match self.uri.query() {
            Some(query) => format!("{}?{query}", self.path()),
            None => self.path().to_owned(),
        }
    }

    /// `@target-uri`: scheme, authority, path and query.
    pub fn target_uri(&self) -> Result<String, BaseError> {
        let query = self
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        Ok(format!(
            "{}://{}{}{query}",
            self.scheme(),
            self.authority()?,
            self.path()
        ))
    }

    /// `@query-param;name=`: the one value of the parameter whose encoded
    /// name is `name`, decoded and re-encoded (§2.2.8). A parameter given
    /// several times is an error (which one was signed is ambiguous).
    pub fn query_param(&self, name: &str) -> Result<String, BaseError> {
        let mut found = None;
        for pair in self
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if reencode(key) != name {
                continue;
            }
            if found.is_some() {
                return err("a signed query parameter occurs more than once");
            }
            found = Some(reencode(value));
        }
        found.map_or_else(|| err("a signed query parameter is absent"), Ok)
    }

    /// A field's value: every line trimmed and combined with ", ".
    pub fn field(&self, name: &str) -> Result<String, BaseError> {
        let mut out = String::new();
        self.push_field(name, &mut out)?;
        Ok(out)
    }

    /// [`Message::field`], appended to `out`.
    fn push_field(&self, name: &str, out: &mut String) -> Result<(), BaseError> {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return err("not a field name");
        };
        let mut values = self.headers.get_all(&name).iter();
        let Some(first) = values.next() else {
            return err("a signed field is absent");
        };
        for (at, value) in std::iter::once(first).chain(values).enumerate() {
            let Ok(text) = value.to_str() else {
                return err("a signed field is not visible ASCII");
            };
            if at > 0 {
                out.push_str(", ");
            }
            out.push_str(text.trim());
        }
        Ok(())
    }
}

/// Decode an `application/x-www-form-urlencoded` name or value, then
/// percent-encode it again with [`FORM`].
fn reencode(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    let decoded = percent_decode(spaced.as_bytes()).decode_utf8_lossy();
    utf8_percent_encode(&decoded, FORM).to_string()
}

/// A structured field serialised strictly (`;sf`, §2.1.1) or one member of
/// a Dictionary (`;key`, §2.1.2).
fn structured(message: &Message<'_>, component: &Covered<'_>) -> Result<String, BaseError> {
    let name = component.name();
    let value = message.field(name)?;
    let key = component.params.get("key").and_then(|k| k.as_string());
    if key.is_none() && !DICTIONARY_FIELDS.contains(&name) {
        return err("`sf` on a field whose structured type replay-guard does not know");
    }
    let dict: sfv::Dictionary = sfv::Parser::new(&value)
        .with_version(sfv::Version::Rfc8941)
        .parse()
        .map_err(|_| BaseError("a signed structured field does not parse".into()))?;
    let Some(key) = key else {
        return Ok(sfv::FieldType::serialize(&dict).unwrap_or_default());
    };
    let Some(member) = dict.get(key.as_str()) else {
        return err("a signed dictionary member is absent");
    };
    sfv::FieldType::serialize(&vec![member.clone()]).map_or_else(|| err("empty member"), Ok)
}

/// The value of one covered component, appended to `out`.
fn push_value(
    message: &Message<'_>,
    component: &Covered<'_>,
    out: &mut String,
) -> Result<(), BaseError> {
    let params = &component.params;
    support(
        component.name(),
        params.iter().map(|(k, v)| (k.as_str(), v)),
    )
    .map_err(BaseError)?;
    match component.name() {
        "@method" => out.push_str(message.method.as_str()),
        "@authority" => message.push_authority(out)?,
        "@path" => out.push_str(message.path()),
        "@query" => {
            out.push('?');
            out.push_str(message.uri.query().unwrap_or(""));
        }
        "@target-uri" => out.push_str(&message.target_uri()?),
        "@scheme" => out.push_str(&message.scheme()),
        "@request-target" => out.push_str(&message.request_target()),
        "@query-param" => {
            let name = params.get("name").and_then(|n| n.as_string());
            out.push_str(&message.query_param(name.map_or("", |n| n.as_str()))?);
        }
        _ if params.contains("sf") || params.contains("key") => {
            out.push_str(&structured(message, component)?);
        }
        name => message.push_field(name, out)?,
    }
    Ok(())
}

/// Whether a covered identifier names the configured component `wanted`
/// (the same name and parameters, whatever their order).
pub fn names(covered: &Covered<'_>, wanted: &Component) -> bool {
    let theirs = &wanted.item().params;
    covered.name() == wanted.name()
        && covered.params.len() == theirs.len()
        && covered
            .params
            .iter()
            .all(|(key, value)| theirs.get(key.as_str()).map(sfv::RefBareItem::from) == Some(value))
}

/// The signature base of `input` (covered components and parameters, as
/// in `Signature-Input`) over `message`.
pub fn signature_base(message: &Message<'_>, input: &Input<'_>) -> Result<String, BaseError> {
    if input.not_strings {
        return err("a component identifier is not a string");
    }
    let covered = &input.components;
    if covered.len() > MAX_COMPONENTS {
        return err("too many covered components");
    }
    // `@signature-params` first, for the identifiers it serializes.
    let mut params = String::with_capacity(256);
    let identifiers = input.serialize_into(&mut params);
    let mut base = String::with_capacity(512);
    for (at, (component, identifier)) in covered.iter().zip(identifiers).enumerate() {
        if covered[..at].iter().any(|c| c.same_as(component)) {
            return err("a component is covered twice");
        }
        base.push_str(params.get(identifier).unwrap_or_default());
        base.push_str(": ");
        let start = base.len();
        push_value(message, component, &mut base)?;
        if base[start..]
            .bytes()
            .any(|b| !(b == b'\t' || (b' '..=b'~').contains(&b)))
        {
            return err("a component value is not printable ASCII");
        }
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&params);
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut request = Request::post(target);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn message(parts: &http::request::Parts) -> Message<'_> {
        Message {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            https: false,
        }
    }

    /// The base of the inner list `s=(...)` in `text`.
    fn base_of(m: &Message<'_>, text: &str) -> Result<String, BaseError> {
        let all = crate::checks::rfc9421::fields::inputs(text).unwrap();
        match &all[..] {
            [(label, Some(input))] if label.as_str() == "s" => signature_base(m, input),
            _ => panic!("not one inner list"),
        }
    }

    /// RFC 9421 §2.2: the derived components of its examples.
    #[test]
    fn derived_components_as_the_rfc_derives_them() {
        let p = parts(
            "/path?param=value&foo=bar&baz=batman&qux=",
            &[("host", "WWW.Example.com:80")],
        );
        let m = message(&p);
        assert_eq!(m.authority().unwrap(), "www.example.com");
        assert_eq!(m.scheme(), "http");
        assert_eq!(
            m.target_uri().unwrap(),
            "http://www.example.com/path?param=value&foo=bar&baz=batman&qux="
        );
        assert_eq!(
            m.request_target(),
            "/path?param=value&foo=bar&baz=batman&qux="
        );
        assert_eq!(m.path(), "/path");
        assert_eq!(m.query(), "?param=value&foo=bar&baz=batman&qux=");
        assert_eq!(m.query_param("baz").unwrap(), "batman");
        assert_eq!(m.query_param("qux").unwrap(), "");
        assert!(m.query_param("absent").is_err());
        let https = Message { https: true, ..m };
        assert_eq!(
            https.authority().unwrap(),
            "www.example.com:80",
            "80 is not https' default"
        );
        let p = parts("/path", &[("host", "example.com")]);
        assert_eq!(message(&p).query(), "?");
        let p = parts("http://Example.COM:8080/a?b", &[]);
        assert_eq!(message(&p).request_target(), "http://Example.COM:8080/a?b");
        assert_eq!(message(&p).authority().unwrap(), "example.com:8080");
    }

    /// RFC 9421 §2.2.8's encoding example.
    #[test]
    fn query_params_are_decoded_then_re_encoded() {
        let p = parts(
            "/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something",
            &[("host", "example.com")],
        );
        let m = message(&p);
        assert_eq!(
            m.query_param("var").unwrap(),
            "this%20is%20a%20big%0Amultiline%20value"
        );
        assert_eq!(m.query_param("bar").unwrap(), "with%20plus%20whitespace");
        assert_eq!(m.query_param("fa%C3%A7ade%22%3A%20").unwrap(), "something");
        let twice = parts("/p?a=1&a=2", &[("host", "example.com")]);
        assert!(message(&twice).query_param("a").is_err());
    }

    /// RFC 9421 §2.1: combined field lines; `sf` and `key` (§2.1.1, §2.1.2).
    #[test]
    fn fields_combine_and_serialise_strictly() {
        let p = parts(
            "/",
            &[
                ("cache-control", "max-age=60"),
                ("cache-control", "   must-revalidate"),
                ("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c), d"),
                ("content-digest", "sha-256=:AAAA:,   sha-512=:AAAA:"),
            ],
        );
        let m = message(&p);
        assert_eq!(
            m.field("cache-control").unwrap(),
            "max-age=60, must-revalidate"
        );
        let line = |text: &str| base_of(&m, &format!("s=({text})"));
        assert_eq!(
            line("\"example-dict\";key=\"a\" \"example-dict\";key=\"d\" \"example-dict\";key=\"b\" \"example-dict\";key=\"c\"").unwrap(),
            "\"example-dict\";key=\"a\": 1\n\"example-dict\";key=\"d\": ?1\n\"example-dict\";key=\"b\": 2;x=1;y=2\n\"example-dict\";key=\"c\": (a b c)\n\"@signature-params\": (\"example-dict\";key=\"a\" \"example-dict\";key=\"d\" \"example-dict\";key=\"b\" \"example-dict\";key=\"c\")"
        );
        assert!(line("\"content-digest\";sf")
            .unwrap()
            .starts_with("\"content-digest\";sf: sha-256=:AAAA:, sha-512=:AAAA:\n"));
        assert!(
            line("\"example-dict\";sf").is_err(),
            "unknown structured type"
        );
        assert!(line("\"example-dict\";key=\"zz\"").is_err());
        assert!(line("\"absent\"").is_err());
        assert!(line("\"@method\" \"@method\"").is_err(), "covered twice");
        assert!(line("\"@status\"").is_err());
        assert!(line("\"set-cookie\";bs").is_err());
    }
}
