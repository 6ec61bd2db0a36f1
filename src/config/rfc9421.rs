//! The typed signature scheme of a route: `v1` (replay-guard's own
//! canonical string, the default) or `rfc9421` (HTTP Message Signatures)
//! with what an RFC 9421 signature must cover and carry.
//!
//! Plain, validated, immutable values built by validation and read by
//! [`crate::checks::rfc9421`]. This module must never validate, perform
//! I/O or look at a request.

use http::HeaderValue;

/// Which signature scheme a signed route verifies.
#[derive(Debug, Clone, Default)]
pub enum SignatureScheme {
    /// `X-Signature: v1=<hex>` over replay-guard's canonical string.
    #[default]
    V1,
    /// RFC 9421 `Signature-Input` / `Signature`.
    Rfc9421(Box<Rfc9421Rule>),
}

impl SignatureScheme {
    /// The RFC 9421 rule, when the route uses that scheme.
    pub fn rfc9421(&self) -> Option<&Rfc9421Rule> {
        match self {
            SignatureScheme::V1 => None,
            SignatureScheme::Rfc9421(rule) => Some(rule),
        }
    }

    /// `v1` or `rfc9421`, as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            SignatureScheme::V1 => "v1",
            SignatureScheme::Rfc9421(_) => "rfc9421",
        }
    }
}

/// One covered component identifier (RFC 9421 §2): a name such as
/// `@method` or `content-digest` and its parameters (`name="..."` of
/// `@query-param`, `key="..."` and `sf` of a field).
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// The identifier as an RFC 8941 item: a String with parameters.
    item: sfv::Item,
    /// The serialization as received (parameters in order): the
    /// identifier's text in a signature base.
    serialized: String,
    /// The identity used to compare identifiers: the serialization with
    /// parameters sorted by name (parameter order does not change what is
    /// covered).
    identity: String,
}

impl Component {
    /// A component from its parsed identifier; `None` when the item is not
    /// a String (every component name is one).
    pub fn from_item(item: &sfv::Item) -> Option<Component> {
        let name = item.bare_item.as_string()?;
        let serialized = sfv::FieldType::serialize(item);
        if item.params.len() < 2 {
            // Nothing to sort: the identity is the serialization.
            return Some(Component {
                identity: serialized.clone(),
                serialized,
                item: item.clone(),
            });
        }
        let mut params: Vec<_> = item.params.iter().collect();
        params.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let sorted = sfv::Item::with_params(
            sfv::BareItem::String(name.to_owned()),
            params
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        Some(Component {
            identity: sfv::FieldType::serialize(&sorted),
            serialized,
            item: item.clone(),
        })
    }

    /// A bare component name without parameters (e.g. `@method`).
    pub fn named(name: &str) -> Option<Component> {
        let name = sfv::StringRef::from_str(name).ok()?;
        Component::from_item(&sfv::Item::new(name.to_owned()))
    }

    /// The component name, e.g. `@query-param` or `content-type`.
    pub fn name(&self) -> &str {
        self.item
            .bare_item
            .as_string()
            .map_or("", sfv::StringRef::as_str)
    }

    /// The identifier as an RFC 8941 item (name and parameters in order).
    pub fn item(&self) -> &sfv::Item {
        &self.item
    }

    /// The identifier serialized as received (RFC 8941 §4.1.3), as it
    /// stands in a signature base.
    pub fn serialized(&self) -> &str {
        &self.serialized
    }

    /// Whether two identifiers name the same component.
    pub fn same_as(&self, other: &Component) -> bool {
        self.identity == other.identity
    }
}

/// What a route with `scheme = "rfc9421"` requires of a signature.
#[derive(Debug, Clone)]
pub struct Rfc9421Rule {
    /// Components every accepted signature must cover (`content-digest` is
    /// added at request time when the request has a body).
    pub components: Vec<Component>,
    /// The `tag` parameter an accepted signature must carry, if any.
    pub tag: Option<String>,
    /// The signature label to verify, if the route names one.
    pub label: Option<String>,
    /// `Accept-Signature` for a 401 on this route: the label, components
    /// and parameters the route requires (RFC 9421 §5.1).
    pub accept_signature: HeaderValue,
}
