//! Checking: a parsed TOML document (with spans) against a traced
//! [`Shape`], collecting every unknown key, missing key, wrong type and bad
//! enum value with its position and what to write instead.
//!
//! This module must never judge values beyond their shape (ranges of the
//! integer type, enum spellings): every rule about meaning stays in
//! validation.

use std::ops::Range;

use toml_edit::{Item, Key, Table, Value};

use super::trace::{Field, Shape};

/// One problem: where, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// Byte range in the file.
    pub(crate) span: Range<usize>,
    /// What is wrong and what to write instead.
    pub(crate) message: String,
}

/// Every finding of `root` against `shape`, in file order.
pub(crate) fn check(root: &Table, shape: &Shape) -> Vec<Finding> {
    let mut out = Vec::new();
    let entries: Vec<(&Key, &Item)> = root
        .iter()
        .filter_map(|(k, _)| root.get_key_value(k))
        .collect();
    table(&entries, 0..0, shape, "", &mut out);
    out.sort_by_key(|f| f.span.start);
    out
}

/// The nearest of `known` to `written`, when near enough to be a typo.
pub(crate) fn nearest<'a>(
    written: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = written.to_ascii_lowercase();
    let known: Vec<&'a str> = known.into_iter().collect();
    let close = known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    // `cert` for `cert_file`: a known name the written one begins.
    close.or_else(|| {
        (lower.len() >= 3)
            .then(|| known.iter().copied().find(|k| k.starts_with(&lower)))
            .flatten()
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn where_(path: &str) -> String {
    if path.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("in [{path}]")
    }
}

fn span_of(span: Option<Range<usize>>, fallback: &Range<usize>) -> Range<usize> {
    span.unwrap_or_else(|| fallback.clone())
}

/// A table's entries against a shape that should be a table.
fn table(
    entries: &[(&Key, &Item)],
    span: Range<usize>,
    shape: &Shape,
    path: &str,
    out: &mut Vec<Finding>,
) {
    match shape {
        Shape::Table { fields } => {
            for (key, item) in entries {
                let key_span = span_of(key.span(), &span);
                let name = key.get();
                match fields.iter().find(|f| f.name == name) {
                    Some(field) => self::item(item, key_span, &field.shape, &join(path, name), out),
                    None => out.push(Finding {
                        span: key_span,
                        message: unknown_key(name, fields, path),
                    }),
                }
            }
            for field in fields.iter().filter(|f| f.required) {
                if !entries.iter().any(|(k, _)| k.get() == field.name) {
                    out.push(Finding {
                        span: span.clone(),
                        message: format!(
                            "missing field `{}` {}: add {}",
                            field.name,
                            where_(path),
                            example(field.name, &field.shape, path)
                        ),
                    });
                }
            }
        }
        Shape::Map(inner) => {
            for (key, item) in entries {
                let key_span = span_of(key.span(), &span);
                self::item(item, key_span, inner, &join(path, key.get()), out);
            }
        }
        // A table names an enum variant with data: its contents are not traced.
        Shape::Any | Shape::Enum { .. } => {}
        Shape::Array(inner) if matches!(**inner, Shape::Table { .. }) => out.push(Finding {
            span,
            message: format!(
                "{} must be an array of tables, not a table: write [[{}]] (two brackets), once per entry",
                display_key(path),
                display_key(path)
            ),
        }),
        other => out.push(Finding {
            span,
            message: format!(
                "{} must be {}, not a table",
                display_key(path),
                expected(other)
            ),
        }),
    }
}

fn unknown_key(name: &str, fields: &[Field], path: &str) -> String {
    let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
    let hint = match nearest(name, known.iter().copied()) {
        Some(near) => format!(": did you mean `{near}`?"),
        None => String::new(),
    };
    format!(
        "unknown field `{name}` {}{hint} (known fields: {})",
        where_(path),
        known.join(", ")
    )
}

fn display_key(path: &str) -> &str {
    if path.is_empty() {
        "the file"
    } else {
        path
    }
}

/// One item (a value, a table or an array of tables).
pub(crate) fn item(
    item: &Item,
    key_span: Range<usize>,
    shape: &Shape,
    path: &str,
    out: &mut Vec<Finding>,
) {
    match item {
        Item::None => {}
        Item::Value(v) => value(v, key_span, shape, path, out),
        Item::Table(t) => {
            let entries: Vec<(&Key, &Item)> =
                t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect();
            table(&entries, span_of(t.span(), &key_span), shape, path, out);
        }
        Item::ArrayOfTables(array) => match shape {
            Shape::Array(inner) => {
                for (i, t) in array.iter().enumerate() {
                    let entries: Vec<(&Key, &Item)> =
                        t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect();
                    table(
                        &entries,
                        span_of(t.span(), &key_span),
                        inner,
                        &format!("{path}[{}]", i + 1),
                        out,
                    );
                }
            }
            Shape::Any => {}
            other => out.push(Finding {
                span: span_of(array.span(), &key_span),
                message: format!("{path} must be {}, not an array of tables", expected(other)),
            }),
        },
    }
}

/// One value against its shape.
fn value(v: &Value, key_span: Range<usize>, shape: &Shape, path: &str, out: &mut Vec<Finding>) {
    let span = span_of(v.span(), &key_span);
    let key = path.rsplit('.').next().unwrap_or(path);
    let wrong = |out: &mut Vec<Finding>, instead: Option<String>| {
        let instead = instead.map(|i| format!(": write {i}")).unwrap_or_default();
        out.push(Finding {
            span: span.clone(),
            message: format!(
                "{path} must be {}, not {}{instead}",
                expected(shape),
                found(v)
            ),
        });
    };
    match (shape, v) {
        (Shape::Any, _) => {}
        (Shape::Str, Value::String(_)) => {}
        (Shape::Str, other) => {
            let text = other.to_string();
            wrong(out, Some(format!("{key} = {:?}", text.trim())));
        }
        (Shape::Bool, Value::Boolean(_)) => {}
        (Shape::Bool, Value::String(s)) if matches!(s.value().as_str(), "true" | "false") => {
            wrong(out, Some(format!("{key} = {} (no quotes)", s.value())));
        }
        (Shape::Bool, _) => wrong(out, Some(format!("{key} = true or {key} = false"))),
        (Shape::Int { min, max }, Value::Integer(i)) => {
            let n = i128::from(*i.value());
            if n < *min || n > *max {
                out.push(Finding {
                    span,
                    message: format!(
                        "{path} = {n} is out of range: write a whole number from {min} to {max}"
                    ),
                });
            }
        }
        (Shape::Int { .. }, Value::String(s)) if s.value().trim().parse::<i64>().is_ok() => {
            wrong(
                out,
                Some(format!("{key} = {} (no quotes)", s.value().trim())),
            );
        }
        (Shape::Int { .. }, _) => wrong(out, None),
        (Shape::Float, Value::Float(_) | Value::Integer(_)) => {}
        (Shape::Float, _) => wrong(out, None),
        (Shape::Enum { variants }, Value::String(s)) => {
            let written = s.value();
            if !variants.contains(&written.as_str()) {
                let hint = match nearest(written, variants.iter().copied()) {
                    Some(near) => format!(": did you mean \"{near}\"?"),
                    None => String::new(),
                };
                out.push(Finding {
                    span,
                    message: format!(
                        "{key} = {written:?} is not one of {}{hint}",
                        quoted(variants)
                    ),
                });
            }
        }
        // A table names a variant with data: its contents are not traced.
        (Shape::Enum { .. }, Value::InlineTable(_)) => {}
        (Shape::Enum { variants }, _) => {
            wrong(out, variants.first().map(|v| format!("{key} = \"{v}\"")))
        }
        (Shape::Array(inner), Value::Array(array)) => {
            for (i, element) in array.iter().enumerate() {
                value(
                    element,
                    span.clone(),
                    inner,
                    &format!("{path}[{}]", i + 1),
                    out,
                );
            }
        }
        (Shape::Array(_), _) => wrong(out, Some(format!("{key} = [{}]", v.to_string().trim()))),
        (Shape::Table { .. } | Shape::Map(_), Value::InlineTable(t)) => {
            let entries: Vec<(&Key, &Item)> =
                t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect();
            table(&entries, span, shape, path, out);
        }
        (Shape::Table { .. } | Shape::Map(_), _) => wrong(out, None),
    }
}

/// A line that would satisfy a missing field of this shape.
fn example(name: &str, shape: &Shape, path: &str) -> String {
    match shape {
        Shape::Str => format!("{name} = \"…\""),
        Shape::Int { .. } | Shape::Float => format!("{name} = <number>"),
        Shape::Bool => format!("{name} = true"),
        Shape::Enum { variants } => format!("{name} = \"{}\"", variants.first().unwrap_or(&"…")),
        Shape::Array(_) => format!("{name} = […]"),
        Shape::Table { .. } | Shape::Map(_) => format!("a [{}] table", join(path, name)),
        Shape::Any => format!("{name} = …"),
    }
}

fn quoted(variants: &[&str]) -> String {
    variants
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a shape accepts, in words.
fn expected(shape: &Shape) -> String {
    match shape {
        Shape::Any => "any value".into(),
        Shape::Table { .. } => "a table".into(),
        Shape::Map(_) => "a table".into(),
        Shape::Array(inner) => format!("an array of {}", plural(inner)),
        Shape::Str => "a string in quotes".into(),
        Shape::Int { min, max } => format!("a whole number from {min} to {max}"),
        Shape::Float => "a number".into(),
        Shape::Bool => "true or false".into(),
        Shape::Enum { variants } => format!("one of {}", quoted(variants)),
    }
}

fn plural(shape: &Shape) -> String {
    match shape {
        Shape::Table { .. } | Shape::Map(_) => "tables".into(),
        Shape::Str => "strings".into(),
        Shape::Int { .. } => "whole numbers".into(),
        Shape::Bool => "booleans".into(),
        Shape::Enum { variants } => format!("{} strings", quoted(variants)),
        _ => "values".into(),
    }
}

/// What a value is, in words.
fn found(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}
