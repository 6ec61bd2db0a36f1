//! The data of a schema trace: the [`Shape`] a type's TOML must have, and
//! what one trace leaves out and learns ([`Ctx`]). [`super::trace`] drives
//! traces and [`super::capture`] records them; both read and write these
//! values, which is all they share.
//!
//! This module must never decide what is valid, and never trace.

use std::cell::RefCell;
use std::fmt;

use serde::de;

/// What the TOML at one place must look like.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// Not traced: anything is accepted.
    Any,
    /// A struct: a table with exactly these keys.
    Table {
        /// Fields in declaration order.
        fields: Vec<Field>,
    },
    /// A map with free keys (`HashMap<String, T>`).
    Map(Box<Shape>),
    /// A sequence: an array (or an array of tables).
    Array(Box<Shape>),
    /// A string.
    Str,
    /// An integer in `min..=max`.
    Int {
        /// Smallest value.
        min: i128,
        /// Largest value.
        max: i128,
    },
    /// A float (integers are accepted too).
    Float,
    /// A boolean.
    Bool,
    /// A string naming one unit variant.
    Enum {
        /// The accepted spellings.
        variants: &'static [&'static str],
    },
}

/// One field of a struct.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    /// The key, as written in TOML (after serde's `rename`).
    pub(crate) name: &'static str,
    /// What its value must look like.
    pub(crate) shape: Shape,
    /// serde refuses the struct without it (no `Option`, no `default`).
    pub(crate) required: bool,
}

/// What one trace leaves out and learns.
#[derive(Default)]
pub(super) struct Ctx {
    /// The field left out to learn whether it is required.
    pub(super) omit: Option<Omit>,
    /// Alias spellings found so far: never presented.
    pub(super) aliases: Vec<Alias>,
    /// Aliases this trace ran into.
    pub(super) found: RefCell<Vec<Alias>>,
}

/// A second spelling of a field of the struct at `path`.
#[derive(Debug, Clone)]
pub(super) struct Alias {
    pub(super) path: Vec<&'static str>,
    pub(super) alias: &'static str,
    pub(super) field: String,
}

/// A field to leave out of one trace: the struct at `path` (field names
/// from the top), its field `field`.
pub(super) struct Omit {
    pub(super) path: Vec<&'static str>,
    pub(super) field: &'static str,
}

/// The error of a refused trace; never shown to anyone.
#[derive(Debug)]
pub(crate) struct TraceError(pub(super) String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}
