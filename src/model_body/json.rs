//! The top-level `model` of a JSON body, read strictly: a body that JSON
//! parsers could read differently (two `model` keys, in whatever escapes;
//! anything but RFC 8259 JSON) names no model for certain.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::scope::model::Named;

const TWICE: &str = "the body names the model more than once";
const NOT_A_STRING: &str = "the body's model is not a string";
const OTHER_CASE: &str =
    "the body has a key that is `model` in another case, which some parsers read as the model";

/// What a JSON body says of its model. serde_json is strict RFC 8259 (no
/// comments, trailing commas, `NaN`, byte order mark, lone surrogates, or
/// data after the value) and compares keys after unescaping them, so
/// `{"model":"a","mod\u0065l":"b"}` is a repeat.
pub(crate) fn model(bytes: &[u8]) -> Named<'static> {
    parse(bytes).unwrap_or(Named::Unreadable("the body is not valid JSON"))
}

/// What a JSON body says of its model, or `None` if it is not JSON.
pub(crate) fn parse(bytes: &[u8]) -> Option<Named<'static>> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let named = (&mut deserializer).deserialize_any(Top).ok()?;
    if matches!(named, Named::Unreadable(_)) {
        return Some(named);
    }
    deserializer.end().ok()?;
    Some(named)
}

/// The document: an object may name a model; anything else names none.
struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Named<'static>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named<'static>, A::Error> {
        let mut found = Named::None;
        while let Some(key) = map.next_key::<String>()? {
            // Go's encoding/json matches field names in any case: `MODEL`
            // is the model to a Go upstream, no model to a Python one.
            if !key.eq_ignore_ascii_case("model") {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if key != "model" {
                return Ok(Named::Unreadable(OTHER_CASE));
            }
            if !matches!(found, Named::None) {
                return Ok(Named::Unreadable(TWICE));
            }
            found = match map.next_value::<Value>()?.0 {
                Some(model) => Named::Model(model.into()),
                None => Named::Unreadable(NOT_A_STRING),
            };
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Named<'static>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Named::None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Named<'static>, E> {
        Ok(Named::None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Named<'static>, E> {
        Ok(Named::None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Named<'static>, E> {
        Ok(Named::None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Named<'static>, E> {
        Ok(Named::None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Named<'static>, E> {
        Ok(Named::None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Named<'static>, E> {
        Ok(Named::None)
    }
}

/// The `model` value: a string, or `None` for anything else (read and
/// dropped).
struct Value(Option<String>);

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value(Some(s.to_owned())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
        Ok(Value(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value, E> {
        Ok(Value(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value, E> {
        Ok(Value(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Ok(Value(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Named<'static> {
        model(s.as_bytes())
    }

    #[test]
    fn the_top_level_model_only() {
        assert_eq!(
            m(r#"{"model":"gpt-4o","messages":[]}"#),
            Named::Model("gpt-4o".into())
        );
        assert_eq!(
            m(r#" {"messages":[{"model":"x"}],"model":"a"} "#),
            Named::Model("a".into())
        );
        assert_eq!(
            m(r#"{"mod\u0065l":"gpt-\u0034o"}"#),
            Named::Model("gpt-4o".into())
        );
        assert_eq!(m(r#"{"messages":[]}"#), Named::None);
        assert_eq!(m(r#"[{"model":"x"}]"#), Named::None);
        assert_eq!(m("\"model\""), Named::None);
    }

    #[test]
    fn what_parsers_could_read_differently_is_unreadable() {
        for body in [
            r#"{"model":"a","model":"b"}"#,
            r#"{"model":"a","mod\u0065l":"a"}"#,
            r#"{"model":"a","MODEL":"b"}"#,
            r#"{"Model":"a"}"#,
            r#"{"model":1}"#,
            r#"{"model":null}"#,
            r#"{"model":["a"]}"#,
            r#"{"model":"a",}"#,
            r#"{"model":"a"} {"model":"b"}"#,
            r#"{"model":"a"}x"#,
            "\u{feff}{\"model\":\"a\"}",
            r#"{"model":"a\ud800"}"#,
            r#"{"model":"a", "n": NaN}"#,
            r#"// c
{"model":"a"}"#,
            r#"{'model':'a'}"#,
            "",
        ] {
            assert!(matches!(m(body), Named::Unreadable(_)), "{body}");
        }
        assert!(matches!(
            model(b"{\"model\":\"a\xff\"}"),
            Named::Unreadable(_)
        ));
        // Skipped values are walked without recursion: deep nesting costs no
        // stack, and names no model.
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(m(&deep), Named::None);
        let deep_model = format!(
            "{{\"model\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(m(&deep_model), Named::Unreadable(_)));
    }
}
