//! The capturing `Deserializer` behind [`super::trace`]: it answers every
//! request of a derived `Deserialize` impl with a placeholder and records
//! what was asked for (fields, variants, primitives) as a [`Shape`].
//!
//! This module must never decide what is valid, and never run on a config
//! file: it only ever deserializes placeholders.

use std::cell::Cell;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::shape::{Alias, Ctx, Field, Shape, TraceError};

/// How deep tracing goes before it gives up (recursive types).
const MAX_DEPTH: usize = 32;

/// The capturing deserializer: writes the shape asked for into `out`.
pub(super) struct Capture<'a> {
    pub(super) out: &'a mut Shape,
    pub(super) depth: usize,
    /// Field names from the top to here.
    pub(super) path: Vec<&'static str>,
    pub(super) omit: &'a Ctx,
}

/// serde_spanned's marker names (toml's `Spanned<T>` is a struct with these
/// three fields as far as serde can see).
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";

macro_rules! int {
    ($method:ident, $visit:ident, $ty:ty, $one:expr) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
            *self.out = Shape::Int {
                min: i128::from(<$ty>::MIN),
                max: i128::from(<$ty>::MAX),
            };
            visitor.$visit($one)
        }
    };
}

impl<'de> de::Deserializer<'de> for Capture<'_> {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Any;
        Err(TraceError("not traceable".into()))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Bool;
        visitor.visit_bool(false)
    }

    int!(deserialize_i8, visit_i8, i8, 1);
    int!(deserialize_i16, visit_i16, i16, 1);
    int!(deserialize_i32, visit_i32, i32, 1);
    int!(deserialize_i64, visit_i64, i64, 1);
    int!(deserialize_u8, visit_u8, u8, 1);
    int!(deserialize_u16, visit_u16, u16, 1);
    int!(deserialize_u32, visit_u32, u32, 1);
    int!(deserialize_u64, visit_u64, u64, 1);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Float;
        visitor.visit_f32(1.0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Float;
        visitor.visit_f64(1.0)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Str;
        visitor.visit_char('a')
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Str;
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Str;
        visitor.visit_string(String::new())
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Any;
        visitor.visit_bytes(b"")
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Any;
        visitor.visit_byte_buf(Vec::new())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        // TOML has no null: an option is its value, or absent.
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Any;
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        if self.depth >= MAX_DEPTH {
            return self.deserialize_any(visitor);
        }
        *self.out = Shape::Array(Box::new(Shape::Any));
        let Shape::Array(element) = self.out else {
            return Err(TraceError("unreachable".into()));
        };
        visitor.visit_seq(OneElement {
            out: Some(element),
            depth: self.depth + 1,
            path: self.path,
            omit: self.omit,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        if self.depth >= MAX_DEPTH {
            return self.deserialize_any(visitor);
        }
        *self.out = Shape::Map(Box::new(Shape::Any));
        let Shape::Map(value) = self.out else {
            return Err(TraceError("unreachable".into()));
        };
        visitor.visit_map(Fields {
            keys: vec!["key"],
            next: 0,
            values: FieldValues::One(value),
            depth: self.depth + 1,
            path: self.path,
            omit: self.omit,
            presented: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        if self.depth >= MAX_DEPTH {
            return self.deserialize_any(visitor);
        }
        if name == SPANNED {
            // The value is the spanned type's; the span is two integers.
            return visitor.visit_map(Fields {
                keys: fields.to_vec(),
                next: 0,
                values: FieldValues::Spanned(self.out),
                depth: self.depth,
                path: self.path,
                omit: self.omit,
                presented: None,
            });
        }
        let omitted = self
            .omit
            .omit
            .as_ref()
            .filter(|o| o.path == self.path)
            .map(|o| o.field);
        let keys: Vec<&'static str> = fields
            .iter()
            .copied()
            .filter(|f| Some(*f) != omitted)
            .filter(|f| {
                !self
                    .omit
                    .aliases
                    .iter()
                    .any(|a| a.path == self.path && a.alias == *f)
            })
            .collect();
        *self.out = Shape::Table {
            fields: keys
                .iter()
                .map(|name| Field {
                    name,
                    shape: Shape::Any,
                    required: false,
                })
                .collect(),
        };
        let Shape::Table { fields: slots } = self.out else {
            return Err(TraceError("unreachable".into()));
        };
        let presented = Cell::new("");
        let ctx = self.omit;
        let path = self.path.clone();
        let result = visitor.visit_map(Fields {
            keys,
            next: 0,
            values: FieldValues::Struct(slots),
            depth: self.depth + 1,
            path: self.path,
            omit: self.omit,
            presented: Some(&presented),
        });
        if let Err(TraceError(message)) = &result {
            // The key just presented is another spelling of that field.
            if let Some(field) = message
                .strip_prefix("duplicate field `")
                .and_then(|m| m.strip_suffix('`'))
            {
                ctx.found.borrow_mut().push(Alias {
                    path,
                    alias: presented.get(),
                    field: field.to_owned(),
                });
            }
        }
        result
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        *self.out = Shape::Enum { variants };
        let first = variants
            .first()
            .ok_or_else(|| TraceError("an enum without variants".into()))?;
        visitor.visit_enum(FirstVariant {
            name: first,
            depth: self.depth + 1,
            ctx: self.omit,
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        *self.out = Shape::Str;
        visitor.visit_str("")
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }
}

/// A sequence of one element, traced into `out`.
struct OneElement<'a> {
    out: Option<&'a mut Shape>,
    depth: usize,
    path: Vec<&'static str>,
    omit: &'a Ctx,
}

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = TraceError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        match self.out.take() {
            Some(out) => seed
                .deserialize(Capture {
                    out,
                    depth: self.depth,
                    path: self.path.clone(),
                    omit: self.omit,
                })
                .map(Some),
            None => Ok(None),
        }
    }
}

/// Where the values of a [`Fields`] map are traced to.
enum FieldValues<'a> {
    /// A struct's fields, one slot each, in order.
    Struct(&'a mut Vec<Field>),
    /// A free map's one value shape.
    One(&'a mut Shape),
    /// A `Spanned<T>`: start and end are integers, the value is `T`'s.
    Spanned(&'a mut Shape),
}

/// A map that presents each key once with a capturing value.
struct Fields<'a> {
    keys: Vec<&'static str>,
    next: usize,
    values: FieldValues<'a>,
    depth: usize,
    path: Vec<&'static str>,
    omit: &'a Ctx,
    /// A struct's map: the key presented last.
    presented: Option<&'a Cell<&'static str>>,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        let Some(key) = self.keys.get(self.next) else {
            return Ok(None);
        };
        if let Some(presented) = self.presented {
            presented.set(key);
        }
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let index = self.next;
        self.next += 1;
        let depth = self.depth;
        let omit = self.omit;
        match &mut self.values {
            FieldValues::Struct(slots) => match slots.get_mut(index) {
                Some(field) => {
                    let mut path = self.path.clone();
                    path.push(field.name);
                    seed.deserialize(Capture {
                        out: &mut field.shape,
                        depth,
                        path,
                        omit,
                    })
                }
                None => Err(TraceError("no such field".into())),
            },
            FieldValues::One(out) => seed.deserialize(Capture {
                out,
                depth,
                path: self.path.clone(),
                omit,
            }),
            FieldValues::Spanned(out) => {
                if self.keys.get(index) == Some(&SPANNED_VALUE) {
                    seed.deserialize(Capture {
                        out,
                        depth,
                        path: self.path.clone(),
                        omit,
                    })
                } else {
                    seed.deserialize(0u64.into_deserializer())
                }
            }
        }
    }
}

/// An enum answered with its first variant, whatever its kind: its data
/// (a newtype or struct variant) is traced into a scratch shape, so the
/// parent goes on. The check accepts any table for a variant with data.
struct FirstVariant<'a> {
    name: &'static str,
    depth: usize,
    ctx: &'a Ctx,
}

impl FirstVariant<'_> {
    /// A capture whose shape is thrown away, on a path no omission or
    /// alias of the real structs can name.
    fn scratch<'s>(&'s self, out: &'s mut Shape) -> Capture<'s> {
        Capture {
            out,
            depth: self.depth,
            path: vec!["$variant"],
            omit: self.ctx,
        }
    }
}

impl<'de, 'a> de::EnumAccess<'de> for FirstVariant<'a> {
    type Error = TraceError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), TraceError> {
        let value = seed.deserialize(BorrowedStrDeserializer::new(self.name))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for FirstVariant<'_> {
    type Error = TraceError;

    fn unit_variant(self) -> Result<(), TraceError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, TraceError> {
        let mut scratch = Shape::Any;
        seed.deserialize(self.scratch(&mut scratch))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, TraceError> {
        Err(TraceError("tuple variants are not traced".into()))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let mut scratch = Shape::Any;
        de::Deserializer::deserialize_struct(self.scratch(&mut scratch), "variant", fields, visitor)
    }
}
