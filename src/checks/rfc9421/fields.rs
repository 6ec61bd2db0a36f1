//! The structured fields of RFC 9421 and RFC 9530 read into values that
//! borrow from the field text: `Signature-Input` (a Dictionary of Inner
//! Lists of component identifiers, [`inputs`]), and `Signature` and
//! `Content-Digest` (Dictionaries of Byte Sequences, [`byte_sequences`]).
//!
//! The parsing is `sfv`'s, through its visitor interface, so the request
//! path builds no maps and copies no strings. RFC 8941's rules for repeated
//! keys are kept exactly as `sfv`'s own `Dictionary` and `Parameters` keep
//! them (the last value wins, in the place of the first), so a value means
//! the same here as in the parsed types the signer and the tests use.
//!
//! Parsing stops at [`TooMany`]: more than [`MAX_MEMBERS`] members, or more
//! than [`MAX_PARAMS`] parameters on one item or list, or more than
//! [`MAX_COMPONENTS`] covered components in one list. A request carries a
//! handful of each; the bounds keep the linear lookups that collapse
//! repeated keys from costing quadratic time on a 64 KiB header.
//!
//! This module must never hand-parse a structured field, and never decide
//! whether a signature is acceptable.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;

use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, ParameterVisitor,
};
use sfv::{BareItemFromInput, GenericBareItem, KeyRef, RefBareItem, StringRef};

/// At most this many members are read from one Dictionary.
pub const MAX_MEMBERS: usize = 32;
/// At most this many parameters are read from one item or inner list.
pub const MAX_PARAMS: usize = 32;
/// At most this many covered components are read from one inner list.
pub const MAX_COMPONENTS: usize = 32;

/// A field with more members, parameters or components than the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany;

impl fmt::Display for TooMany {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("more members, parameters or components than a request may carry")
    }
}

impl std::error::Error for TooMany {}

/// Parameters as received, repeated names collapsed (last value, first
/// place).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params<'a>(Vec<(&'a KeyRef, BareItemFromInput<'a>)>);

impl<'a> Params<'a> {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&BareItemFromInput<'a>> {
        self.0
            .iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, value)| value)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How many distinct parameters there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Names and values in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a KeyRef, RefBareItem<'_>)> + Clone {
        self.0
            .iter()
            .map(|(key, value)| (*key, RefBareItem::from(value)))
    }

    /// The same parameters, whatever their order.
    pub fn same_as(&self, other: &Params<'_>) -> bool {
        self.len() == other.len()
            && self
                .0
                .iter()
                .all(|(key, value)| other.get(key.as_str()) == Some(value))
    }

    fn set(&mut self, key: &'a KeyRef, value: BareItemFromInput<'a>) -> Result<(), TooMany> {
        let full = self.0.len() >= MAX_PARAMS;
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None if full => return Err(TooMany),
            None => self.0.push((key, value)),
        }
        Ok(())
    }
}

/// One covered component identifier as received: a String and its
/// parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Covered<'a> {
    /// The component name, e.g. `@method` or `content-digest`.
    pub name: Cow<'a, StringRef>,
    /// Its parameters (`name`, `key`, `sf`, …).
    pub params: Params<'a>,
}

impl Covered<'_> {
    /// The name as text.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Whether two identifiers name the same component (parameter order
    /// does not change what is covered).
    pub fn same_as(&self, other: &Covered<'_>) -> bool {
        self.name == other.name && self.params.same_as(&other.params)
    }

    /// The identifier serialized (RFC 8941 §4.1.3), parameters in the
    /// order received, as it stands in a signature base.
    pub fn serialize_into(&self, out: &mut String) {
        let _ = sfv::ItemSerializer::with_buffer(out)
            .bare_item(&*self.name)
            .parameters(self.params.iter());
    }
}

/// One `Signature-Input` member that is an Inner List: the covered
/// components and the signature parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Input<'a> {
    /// The covered components, in order.
    pub components: Vec<Covered<'a>>,
    /// The signature parameters (`created`, `keyid`, …).
    pub params: Params<'a>,
    /// Some member of the list was not a String (no component identifier).
    pub not_strings: bool,
}

impl Input<'_> {
    /// The inner list serialized (RFC 8941 §4.1.1.1), the value of
    /// `@signature-params`, appended to `out`; returns where each covered
    /// component's identifier stands in `out` (the text a signature base
    /// line starts with), so that each is serialized once.
    pub fn serialize_into(&self, out: &mut String) -> Vec<std::ops::Range<usize>> {
        let mut at = Vec::with_capacity(self.components.len());
        // After "(", then after each " ".
        let mut start = out.len() + 1;
        let mut list = sfv::ListSerializer::with_buffer(out);
        let mut inner = list.inner_list();
        for component in &self.components {
            let buffer = inner
                .bare_item(&*component.name)
                .parameters(component.params.iter())
                .finish();
            let end = buffer.len();
            at.push(start..end);
            start = end + 1;
        }
        let _ = inner.finish().parameters(self.params.iter());
        at
    }
}

/// A Dictionary's members in order, repeated keys collapsed; `None` for a
/// member of another shape than the one read.
pub type Members<'a, T> = Vec<(&'a KeyRef, Option<T>)>;

/// `Signature-Input`: every member, `Some` for an Inner List.
pub fn inputs(text: &str) -> Result<Members<'_, Input<'_>>, sfv::Error> {
    sfv::Parser::new(text)
        .with_version(sfv::Version::Rfc8941)
        .parse_dictionary_with_visitor(Dictionary(Vec::with_capacity(2)))
}

/// `Signature` or `Content-Digest`: every member, `Some` for a Byte
/// Sequence item (its parameters are ignored).
pub fn byte_sequences(text: &str) -> Result<Members<'_, Vec<u8>>, sfv::Error> {
    sfv::Parser::new(text)
        .with_version(sfv::Version::Rfc8941)
        .parse_dictionary_with_visitor(Dictionary(Vec::with_capacity(2)))
}

/// The visitor of a Dictionary whose members are read as `T`.
struct Dictionary<'a, T>(Members<'a, T>);

/// The member being read: reset, then filled if of the right shape.
struct Slot<'s, T>(&'s mut Option<T>);

impl<'a, T> DictionaryVisitor<'a> for Dictionary<'a, T>
where
    for<'s> Slot<'s, T>: EntryVisitor<'a>,
{
    type Out = Members<'a, T>;
    type Error = TooMany;

    fn entry(&mut self, key: &'a KeyRef) -> Result<impl EntryVisitor<'a>, Self::Error> {
        let at = match self.0.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None if self.0.len() >= MAX_MEMBERS => return Err(TooMany),
            None => {
                self.0.push((key, None));
                self.0.len() - 1
            }
        };
        let slot = &mut self.0[at].1;
        *slot = None;
        Ok(Slot(slot))
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(self.0)
    }
}

impl<'a> EntryVisitor<'a> for Slot<'_, Input<'a>> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'a>, Self::Error> {
        Ok(Ignored)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'a>, Self::Error> {
        Ok(self.0.insert(Input {
            components: Vec::with_capacity(8),
            params: Params(Vec::with_capacity(6)),
            not_strings: false,
        }))
    }
}

impl<'a> InnerListVisitor<'a> for &mut Input<'a> {
    type Error = Infallible;

    fn item(&mut self) -> Result<impl ItemVisitor<'a>, Self::Error> {
        Ok(Component(self))
    }

    fn finish(self) -> Result<impl ParameterVisitor<'a>, Self::Error> {
        Ok(&mut self.params)
    }
}

/// One member of the inner list: a component identifier.
struct Component<'s, 'a>(&'s mut Input<'a>);

impl<'a> ItemVisitor<'a> for Component<'_, 'a> {
    type Out = Option<()>;
    type Error = TooMany;

    fn bare_item(
        self,
        bare_item: BareItemFromInput<'a>,
    ) -> Result<impl ParameterVisitor<'a, Out = Self::Out>, Self::Error> {
        let GenericBareItem::String(name) = bare_item else {
            self.0.not_strings = true;
            return Ok(None);
        };
        if self.0.components.len() >= MAX_COMPONENTS {
            return Err(TooMany);
        }
        self.0.components.push(Covered {
            name,
            params: Params::default(),
        });
        Ok(self.0.components.last_mut().map(|c| &mut c.params))
    }
}

impl<'a> ParameterVisitor<'a> for &mut Params<'a> {
    type Out = ();
    type Error = TooMany;

    fn parameter(
        &mut self,
        key: &'a KeyRef,
        value: BareItemFromInput<'a>,
    ) -> Result<(), Self::Error> {
        self.set(key, value)
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(())
    }
}

impl<'a> EntryVisitor<'a> for Slot<'_, Vec<u8>> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'a>, Self::Error> {
        Ok(self)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'a>, Self::Error> {
        Ok(Ignored)
    }
}

impl<'a> ItemVisitor<'a> for Slot<'_, Vec<u8>> {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        bare_item: BareItemFromInput<'a>,
    ) -> Result<impl ParameterVisitor<'a, Out = Self::Out>, Self::Error> {
        if let GenericBareItem::ByteSequence(bytes) = bare_item {
            *self.0 = Some(bytes);
        }
        Ok(Ignored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the visitor reads is what `sfv`'s own Dictionary reads, repeated
    /// keys included.
    #[test]
    fn reads_what_the_parsed_types_read() {
        for text in [
            r#"sig1=("@method" "@authority";x=1 "content-digest";key="sha-256");created=1;keyid="k";alg="hmac-sha256""#,
            r#"a=("x";p=1;q=2;p=3);n=1;n=2, b=1, a=("y")"#,
            r#"a=(1 "x" ?0), b=(), c=:AAEC:"#,
            r#"a=("x\"y" "p"), b=("z");keyid="a\\b""#,
        ] {
            let dict: sfv::Dictionary = sfv::Parser::new(text).parse().unwrap();
            let ours = inputs(text).unwrap();
            assert_eq!(ours.len(), dict.len(), "{text}");
            for ((key, input), (theirs_key, theirs)) in ours.iter().zip(&dict) {
                assert_eq!(*key, theirs_key.as_ref(), "{text}");
                match (input, theirs) {
                    (Some(input), sfv::ListEntry::InnerList(list)) => {
                        let mut serialized = String::new();
                        let at = input.serialize_into(&mut serialized);
                        for (range, component) in at.into_iter().zip(&input.components) {
                            let mut alone = String::new();
                            component.serialize_into(&mut alone);
                            assert_eq!(serialized[range].to_owned(), alone, "{text}");
                        }
                        let strings: Vec<_> = list
                            .items
                            .iter()
                            .filter(|i| i.bare_item.as_string().is_some())
                            .collect();
                        assert_eq!(input.not_strings, strings.len() != list.items.len());
                        if !input.not_strings {
                            let expected = sfv::FieldType::serialize(&vec![list.clone().into()])
                                .unwrap_or_default();
                            assert_eq!(serialized, expected, "{text}");
                        }
                    }
                    (None, sfv::ListEntry::Item(_)) => {}
                    other => panic!("{text}: {other:?}"),
                }
            }
        }
        let second = inputs(r#"a=("x";p=1;q=2;p=3);n=1;n=2, b=1, a=("y")"#).unwrap();
        assert_eq!(second[0].0.as_str(), "a", "a repeated key keeps its place");
        let a = second[0].1.as_ref().unwrap();
        assert_eq!(a.components.len(), 1, "and takes the last value");
        assert_eq!(a.components[0].name(), "y");
    }

    #[test]
    fn parameters_collapse_and_compare_whatever_the_order() {
        let all = inputs(r#"a=("x";p=1;q=2;p=3 "x";q=2;p=3 "x";p=3)"#).unwrap();
        let c = &all[0].1.as_ref().unwrap().components;
        let mut first = String::new();
        c[0].serialize_into(&mut first);
        assert_eq!(first, r#""x";p=3;q=2"#);
        assert!(c[0].same_as(&c[1]));
        assert!(!c[0].same_as(&c[2]));
        assert_eq!(
            c[0].params.get("p"),
            Some(&BareItemFromInput::Integer(3.into()))
        );
    }

    #[test]
    fn byte_sequences_and_other_shapes() {
        let all = byte_sequences("a=:AAEC:;x=1, b=1, c=(:AA==:), a=:AwQ=:, d").unwrap();
        let read: Vec<_> = all
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            read,
            [
                ("a", Some(&[3u8, 4][..])),
                ("b", None),
                ("c", None),
                ("d", None)
            ]
        );
        assert!(byte_sequences("a=:AAEC:,").is_err());
        assert!(inputs("a=(\"x\"").is_err());
        assert!(inputs("a=@1").is_err(), "RFC 8941 has no Dates");
    }

    /// Past the bounds parsing stops: a 64 KiB field of parameters or
    /// labels is refused, not collapsed key by key.
    #[test]
    fn members_parameters_and_components_are_bounded() {
        let params = |n: usize| (0..n).map(|i| format!(";p{i}")).collect::<String>();
        let members = |n: usize| {
            (0..n)
                .map(|i| format!("s{i}=()"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let items = |n: usize| (0..n).map(|i| format!("\"h{i}\" ")).collect::<String>();
        assert!(inputs(&format!("a=(){}", params(MAX_PARAMS))).is_ok());
        assert!(inputs(&format!("a=(){}", params(MAX_PARAMS + 1))).is_err());
        assert!(
            inputs(&format!("a=(){};p0;p1", params(MAX_PARAMS))).is_ok(),
            "a repeated parameter is not another one"
        );
        assert!(inputs(&format!("a=(\"x\"{})", params(MAX_PARAMS + 1))).is_err());
        assert!(inputs(&members(MAX_MEMBERS)).is_ok());
        assert!(inputs(&members(MAX_MEMBERS + 1)).is_err());
        assert!(byte_sequences(&members(MAX_MEMBERS + 1)).is_err());
        assert!(inputs(&format!("a=({})", items(MAX_COMPONENTS).trim())).is_ok());
        assert!(inputs(&format!("a=({})", items(MAX_COMPONENTS + 1).trim())).is_err());
        let huge = format!("a=(){}", params(12_000));
        assert!(huge.len() > 60_000);
        assert!(inputs(&huge).is_err());
    }
}
