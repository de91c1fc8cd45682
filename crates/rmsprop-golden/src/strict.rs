//! JSON read as `serde_json` reads it, except that an object with a key twice is an error:
//! `serde_json::Value` keeps the last of two `"x_rtol"` entries, so a second, lax
//! tolerance appended to a case would make a wrong value pass unseen.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A JSON value whose objects have no key twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom(format!("{v} is not a JSON number")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if object.insert(key.clone(), v).is_some() {
                return Err(de::Error::custom(format!("the key {key:?} appears twice in one object")));
            }
        }
        Ok(Value::Object(object))
    }
}

/// Parses `bytes` as JSON, refusing an object that holds a key twice (the error says which
/// key, with serde_json's line and column).
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // golden files nest a few levels; serde_json's own recursion limit (128) still applies
    let Strict(v) = Strict::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::from_slice;

    #[test]
    fn a_key_twice_is_an_error_at_any_depth() {
        let e = from_slice(br#"{"cases": [{"tolerance": {"x_rtol": 1e-6, "x_rtol": 1e300}}]}"#).unwrap_err();
        assert!(e.starts_with("the key \"x_rtol\" appears twice in one object"), "{e}");
        assert!(from_slice(br#"{"a": 1, "b": {"a": 2}}"#).is_ok(), "the same key in two objects is fine");
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = br#"{"x": [1, -2, 0.1, 1e-320, 1.7976931348623157e308], "b": true, "n": null, "s": "t"}"#;
        assert_eq!(from_slice(text).unwrap(), serde_json::from_slice::<serde_json::Value>(text).unwrap());
        assert!(from_slice(b"{} trailing").is_err());
    }
}
