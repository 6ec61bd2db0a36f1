//! The schema pass: every unknown key, missing key, wrong type and bad enum
//! value of a config file, found before serde runs, each with its span and
//! what to write instead ("did you mean" for near misses).
//!
//! serde's `deny_unknown_fields` and typed fields stop at the first
//! problem; this pass reports them all at once. The list of known keys is
//! never written by hand: `trace` derives the [`Shape`] of the raw serde
//! structs from their own `Deserialize` impls (field names, types, enum
//! variants, which fields are required), and `check` walks the parsed
//! document (toml_edit, which keeps spans) against it. A key added to a raw
//! struct is known here without any other change. serde still does the
//! actual deserialisation once this pass finds nothing.
//!
//! This module must never judge what a value means (that is validation's
//! job) and never refuse what serde would accept: a type it cannot trace is
//! accepted whatever is written.

mod capture;
mod check;
mod shape;
mod trace;

use std::sync::OnceLock;

pub(crate) use check::Finding;
#[cfg(test)]
use trace::Field;
pub(crate) use trace::{shape_of, Shape};

use super::raw::RawConfig;

/// The traced shape of the whole config file (traced once per process).
pub(crate) fn config_shape() -> &'static Shape {
    static SHAPE: OnceLock<Shape> = OnceLock::new();
    SHAPE.get_or_init(shape_of::<RawConfig>)
}

/// Every schema problem of `text`; empty when the text is not even TOML
/// (the parser's own error is reported by the caller then).
pub(crate) fn problems(text: &str) -> Vec<Finding> {
    match toml_edit::ImDocument::parse(text) {
        Ok(doc) => check::check(doc.as_table(), config_shape()),
        Err(_) => Vec::new(),
    }
}

/// The schema problems of one top-level table of `text` only (e.g.
/// `store` for `init-table`, which needs nothing else).
pub(crate) fn problems_in(text: &str, table: &str) -> Vec<Finding> {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        return Vec::new();
    };
    let Shape::Table { fields } = config_shape() else {
        return Vec::new();
    };
    let (Some(field), Some((key, item))) = (
        fields.iter().find(|f| f.name == table),
        doc.as_table().get_key_value(table),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    check::item(
        item,
        key.span().unwrap_or(0..0),
        &field.shape,
        table,
        &mut out,
    );
    out.sort_by_key(|f| f.span.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(shape: &'a Shape, name: &str) -> &'a Field {
        match shape {
            Shape::Table { fields } => fields.iter().find(|f| f.name == name).unwrap(),
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn the_raw_structs_are_traced_whole() {
        let shape = config_shape();
        let server = field(shape, "server");
        assert!(server.required);
        assert!(!field(shape, "store").required);
        assert!(field(&server.shape, "listen").required);
        assert_eq!(field(&server.shape, "listen").shape, Shape::Str);
        assert!(!field(&server.shape, "admin_listen").required);
        assert_eq!(
            field(&server.shape, "unmatched").shape,
            Shape::Enum {
                variants: &["forward", "reject"]
            }
        );
        let Shape::Array(route) = &field(shape, "routes").shape else {
            panic!("routes is an array");
        };
        assert!(field(route, "name").required);
        let Shape::Table { .. } = field(route, "rate_limit").shape else {
            panic!("rate_limit is a table");
        };
        let Shape::Array(statuses) =
            &field(&field(route, "idempotency").shape, "release_statuses").shape
        else {
            panic!("release_statuses is an array");
        };
        assert_eq!(**statuses, Shape::Int { min: 0, max: 65535 });
    }

    /// Every field of every raw struct has a traced shape: a type the
    /// tracer cannot follow would be accepted unchecked, so adding one
    /// fails here first (make it traceable, or accept `Any` here).
    #[test]
    fn no_field_is_left_untraced() {
        fn walk(shape: &Shape, path: &str, untraced: &mut Vec<String>) {
            match shape {
                Shape::Any => untraced.push(path.to_owned()),
                Shape::Table { fields } => {
                    for f in fields {
                        walk(&f.shape, &format!("{path}.{}", f.name), untraced);
                    }
                }
                Shape::Array(inner) | Shape::Map(inner) => walk(inner, path, untraced),
                _ => {}
            }
        }
        let mut untraced = Vec::new();
        walk(config_shape(), "", &mut untraced);
        assert!(untraced.is_empty(), "untraced: {untraced:?}");
    }

    /// serde's aliases are accepted spellings: the traced names include
    /// them, so the schema pass never refuses what serde would take.
    #[test]
    fn aliases_and_renames_are_traced_as_serde_sees_them() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Raw {
            #[serde(alias = "old_name", rename = "new-name")]
            new_name: Option<u8>,
            switch: Option<Switch>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        #[allow(dead_code)]
        enum Switch {
            #[serde(alias = "yes")]
            On,
            Off,
        }
        let shape = shape_of::<Raw>();
        let Shape::Table { fields } = &shape else {
            panic!("{shape:?}")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        assert!(
            names.contains(&"new-name") && names.contains(&"old_name"),
            "{names:?}"
        );
        let Shape::Enum { variants } = field(&shape, "switch").shape else {
            panic!("{shape:?}")
        };
        assert!(
            variants.contains(&"on") && variants.contains(&"yes"),
            "{variants:?}"
        );
    }

    /// An enum whose variants carry data (`client_auth = "off"` or a table
    /// naming a variant) is accepted in every form serde takes, and the
    /// fields after it are still traced.
    #[test]
    fn enum_variants_with_data_are_accepted_in_either_form() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Raw {
            auth: Option<Auth>,
            after: Option<bool>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        #[allow(dead_code)]
        enum Auth {
            Required { ca: String },
            Off,
        }
        let shape = shape_of::<Raw>();
        assert_eq!(field(&shape, "after").shape, Shape::Bool, "{shape:?}");
        for text in [
            "auth = \"off\"\n",
            "auth = { required = { ca = \"x\" } }\n",
            "[auth.required]\nca = \"x\"\n",
        ] {
            let doc = toml_edit::ImDocument::parse(text).unwrap();
            assert!(check::check(doc.as_table(), &shape).is_empty(), "{text}");
        }
        let doc = toml_edit::ImDocument::parse("auth = \"of\"\nafter = 1\n").unwrap();
        assert_eq!(check::check(doc.as_table(), &shape).len(), 2);
    }

    /// Any prefix of a real file never panics the pass (it runs before
    /// serde on every `check`, start and reload), and mistyped values of a
    /// real file are each found.
    #[test]
    fn truncated_and_mistyped_files_never_panic() {
        let text = include_str!("../../../config.example.toml");
        for end in (0..text.len())
            .filter(|i| text.is_char_boundary(*i))
            .step_by(3)
        {
            let _ = problems(&text[..end]);
        }
        let mistyped = text
            .replace("listen = \"", "listen = 1 #")
            .replace("max_entries = 1_000_000", "max_entries = \"many\"")
            .replace("restart_fence = true", "restart_fence = 1");
        assert_eq!(problems(&mistyped).len(), 4, "{:#?}", problems(&mistyped));
    }

    #[test]
    fn a_single_bracket_routes_table_says_to_write_two() {
        let text = "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\n[routes]\nname = \"a\"\npath = \"/a\"\n";
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("write [[routes]]"), "{found:?}");
    }

    #[test]
    fn every_schema_problem_is_found_at_once_with_a_suggestion() {
        let text = "[server]\nlisten = 8080\nupstream = \"http://127.0.0.1:9000\"\nunmached = \"reject\"\nunmatched = \"rejct\"\naccess_log = \"true\"\n\n[[routes]]\nname = \"a\"\npath = \"/a\"\nrate_limit = { per_secnd = 5 }\nidempotency = { release_statuses = [70000] }\n\n[[routes]]\npath = \"/b\"\n";
        let found: Vec<String> = problems(text)
            .into_iter()
            .map(|f| {
                let (line, col) = crate::config::validate::line_col(text, f.span.start);
                format!("{line}:{col}: {}", f.message)
            })
            .collect();
        let expect = [
            "2:10: server.listen must be a string in quotes, not an integer: write listen = \"8080\"",
            "4:1: unknown field `unmached` in [server]: did you mean `unmatched`?",
            "5:13: unmatched = \"rejct\" is not one of \"forward\", \"reject\": did you mean \"reject\"?",
            "6:14: server.access_log must be true or false, not a string: write access_log = true (no quotes)",
            "11:16: unknown field `per_secnd` in [routes[1].rate_limit]: did you mean `per_second`?",
            "12:37: routes[1].idempotency.release_statuses[1] = 70000 is out of range",
            "missing field `name` in [routes[2]]",
        ];
        assert_eq!(found.len(), expect.len(), "{found:#?}");
        for (got, want) in found.iter().zip(expect) {
            assert!(got.contains(want), "{got}\n  does not contain\n{want}");
        }
    }
}
