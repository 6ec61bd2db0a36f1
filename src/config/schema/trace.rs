//! Tracing: the [`Shape`] of a `Deserialize` type, read from the type's own
//! serde impl by a capturing `Deserializer`.
//!
//! serde's derive tells a deserializer everything the schema check needs:
//! `deserialize_struct` receives the field names (after `rename`), a unit
//! enum's `deserialize_enum` its variant names, and each field asks for the
//! primitive it wants (`deserialize_u16`, `deserialize_string`, …). The
//! [`Capture`] deserializer records those requests and answers each with a
//! placeholder value, so the derived visitor walks every field once. Nothing
//! is hand-maintained: a field added to a raw struct appears in the shape.
//!
//! This module must never decide what is valid; it only describes types. A
//! type it cannot trace (`deserialize_any`: untagged enums, `serde_json`
//! values, a custom impl that refuses the placeholder) becomes
//! [`Shape::Any`], which the check accepts whatever is written, so an
//! untraceable type never makes a valid file invalid.

use std::cell::RefCell;

use serde::Deserialize;

use super::capture::Capture;
use super::shape::{Alias, Ctx, Omit, TraceError};
pub(crate) use super::shape::{Field, Shape};

/// The shape of `T`, traced from its `Deserialize` impl.
///
/// Which fields are required is learnt by asking serde: the type is
/// traced once more per field with that field left out, and a field is
/// required when serde then answers `missing field`.
pub(crate) fn shape_of<'de, T: Deserialize<'de>>() -> Shape {
    // serde lists a field's aliases among the field names but refuses a
    // second spelling of one field ("duplicate field"): find the aliases
    // first, trace without them, then give each its field's shape.
    let mut ctx = Ctx::default();
    for _ in 0..1000 {
        let _ = trace::<T>(&ctx);
        let found = std::mem::take(&mut *ctx.found.borrow_mut());
        if found.is_empty() {
            break;
        }
        ctx.aliases.extend(found);
    }
    let mut shape = trace::<T>(&ctx);
    let mut paths = Vec::new();
    field_paths(&shape, &mut Vec::new(), &mut paths);
    for (path, field) in paths {
        let omit = Omit {
            path: path.clone(),
            field,
        };
        let with_omit = Ctx {
            omit: Some(omit),
            aliases: ctx.aliases.clone(),
            found: RefCell::default(),
        };
        let required = matches!(
            trace_result::<T>(&with_omit),
            Err(TraceError(message)) if message == format!("missing field `{field}`")
        );
        if required {
            mark_required(&mut shape, &path, field);
        }
    }
    for alias in &ctx.aliases {
        add_alias(&mut shape, alias);
    }
    shape
}

/// Give `alias` the shape of its field (never required: the field's other
/// spelling satisfies serde).
fn add_alias(shape: &mut Shape, alias: &Alias) {
    match shape {
        Shape::Table { fields } => match alias.path.split_first() {
            None => {
                let Some(of) = fields.iter().find(|f| f.name == alias.field).cloned() else {
                    return;
                };
                let at = fields
                    .iter()
                    .position(|f| f.name == alias.field)
                    .map_or(fields.len(), |i| i + 1);
                fields.insert(
                    at,
                    Field {
                        name: alias.alias,
                        shape: of.shape,
                        required: false,
                    },
                );
            }
            Some((first, rest)) => {
                if let Some(field) = fields.iter_mut().find(|f| f.name == *first) {
                    let nested = Alias {
                        path: rest.to_vec(),
                        ..alias.clone()
                    };
                    add_alias(&mut field.shape, &nested);
                }
            }
        },
        Shape::Array(inner) | Shape::Map(inner) => add_alias(inner, alias),
        _ => {}
    }
}

fn trace<'de, T: Deserialize<'de>>(omit: &Ctx) -> Shape {
    let mut shape = Shape::Any;
    // The result is a placeholder value (or an error from a type that
    // refused one); only the recorded shape matters.
    let _ = T::deserialize(Capture {
        out: &mut shape,
        depth: 0,
        path: Vec::new(),
        omit,
    });
    shape
}

fn trace_result<'de, T: Deserialize<'de>>(omit: &Ctx) -> Result<T, TraceError> {
    let mut shape = Shape::Any;
    T::deserialize(Capture {
        out: &mut shape,
        depth: 0,
        path: Vec::new(),
        omit,
    })
}

/// Every (struct path, field name) in `shape`.
fn field_paths(
    shape: &Shape,
    path: &mut Vec<&'static str>,
    out: &mut Vec<(Vec<&'static str>, &'static str)>,
) {
    match shape {
        Shape::Table { fields } => {
            for field in fields {
                out.push((path.clone(), field.name));
                path.push(field.name);
                field_paths(&field.shape, path, out);
                path.pop();
            }
        }
        Shape::Array(inner) | Shape::Map(inner) => field_paths(inner, path, out),
        _ => {}
    }
}

fn mark_required(shape: &mut Shape, path: &[&'static str], name: &'static str) {
    match shape {
        Shape::Table { fields } => match path.split_first() {
            None => {
                if let Some(field) = fields.iter_mut().find(|f| f.name == name) {
                    field.required = true;
                }
            }
            Some((first, rest)) => {
                if let Some(field) = fields.iter_mut().find(|f| f.name == *first) {
                    mark_required(&mut field.shape, rest, name);
                }
            }
        },
        Shape::Array(inner) | Shape::Map(inner) => mark_required(inner, path, name),
        _ => {}
    }
}
