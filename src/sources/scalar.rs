//! Borrowed JSON values for the hot path: [`Scalar`] is what silver's parser produces for each
//! field of an event line (strings borrowed from the line unless they hold escapes), and what
//! the schema checks of [`super::stream::Field`] read. [`parse_record`] parses one line into
//! the slots a stream declares, skipping other keys without building them, so cleaning a day
//! of events does not allocate a map per line as `serde_json::Value` would.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess};
use serde_json::Value;

/// One JSON value, borrowing its strings where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// `null`, or a key that is absent.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// A positive integer beyond `i64`.
    UInt(u64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// An array.
    List(Vec<Scalar<'a>>),
    /// An object (never valid for a field; kept to report it).
    Object(serde_json::Map<String, Value>),
}

impl<'a> Scalar<'a> {
    /// Whether this is JSON null.
    pub fn is_null(&self) -> bool {
        matches!(self, Scalar::Null)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one that fits `i64` (as `serde_json::Value::as_i64`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a number (as `serde_json::Value::as_f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::UInt(u) => Some(*u as f64),
            Scalar::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A borrowed view of a `serde_json::Value` (strings are not copied).
    pub fn of_value(v: &'a Value) -> Scalar<'a> {
        match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Scalar::Int(i),
                (None, Some(u)) => Scalar::UInt(u),
                _ => Scalar::Float(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
            Value::Array(a) => Scalar::List(a.iter().map(Scalar::of_value).collect()),
            Value::Object(m) => Scalar::Object(m.clone()),
        }
    }

    /// The owned `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(i) => Value::from(*i),
            Scalar::UInt(u) => Value::from(*u),
            Scalar::Float(f) => Value::from(*f),
            Scalar::Str(s) => Value::String(s.to_string()),
            Scalar::List(a) => Value::Array(a.iter().map(Scalar::to_value).collect()),
            Scalar::Object(m) => Value::Object(m.clone()),
        }
    }
}

/// Renders as JSON text, exactly as `serde_json::Value` does (what quarantine records as the
/// offending value).
impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_value().fmt(f)
    }
}

struct ScalarVisitor;

impl<'de> de::Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(i64::try_from(v).map_or(Scalar::UInt(v), Scalar::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ScalarSeed)? {
            out.push(v);
        }
        Ok(Scalar::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
        let v: serde_json::Map<String, Value> =
            serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Scalar::Object(v))
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// The slot of a key among `names`, or `None` for keys the record does not keep. Lines of a
/// stream carry their keys in one order, so the slot after the previous key's (`hint`) is
/// tried first: one comparison per key instead of a scan of the names.
struct KeySeed<'n> {
    names: &'n [&'n str],
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> de::Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        if self.names.get(self.hint) == Some(&v) {
            return Ok(Some(self.hint));
        }
        Ok(self.names.iter().position(|n| *n == v))
    }
}

/// Parses the JSON object in `line` into one slot per name of `names` (absent keys are
/// [`Scalar::Null`]; a repeated key keeps its last value, as `serde_json::Value` does). Any
/// text that is not one JSON object is an error, with serde_json's message.
pub fn parse_record<'a>(line: &'a str, names: &[&str]) -> Result<Vec<Scalar<'a>>, String> {
    struct Record<'n> {
        names: &'n [&'n str],
    }
    impl<'de> de::Visitor<'de> for Record<'_> {
        type Value = Vec<Scalar<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Scalar<'de>>, A::Error> {
            let mut slots = vec![Scalar::Null; self.names.len()];
            let mut hint = 0;
            while let Some(slot) = map.next_key_seed(KeySeed {
                names: self.names,
                hint,
            })? {
                match slot {
                    Some(i) => {
                        slots[i] = map.next_value_seed(ScalarSeed)?;
                        hint = i + 1;
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(slots)
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let slots = (&mut de)
        .deserialize_map(Record { names })
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_names_and_strings_are_borrowed() {
        let line = r#"{"b": "x", "skip": {"deep": [1, 2]}, "a": 7, "c": [" t ", "u\n"], "d": 1.5}"#;
        let s = parse_record(line, &["a", "b", "c", "missing", "d"]).unwrap();
        assert_eq!(s[0], Scalar::Int(7));
        assert!(matches!(&s[1], Scalar::Str(Cow::Borrowed("x"))));
        assert_eq!(
            s[2],
            Scalar::List(vec![
                Scalar::Str(Cow::Borrowed(" t ")),
                Scalar::Str(Cow::Owned("u\n".into()))
            ])
        );
        assert!(s[3].is_null());
        assert_eq!(s[4].as_f64(), Some(1.5));
    }

    #[test]
    fn anything_but_one_object_is_an_error() {
        for bad in [
            "",
            "[1]",
            "\"s\"",
            "{\"a\": 1",
            "{\"a\": 1} {}",
            "{\"a\": tru}",
        ] {
            assert!(parse_record(bad, &["a"]).is_err(), "{bad}");
            assert!(serde_json::from_str::<Value>(bad).map_or(true, |v| !v.is_object()));
        }
        // Escaped keys still find their slot; the last of a repeated key wins.
        let s = parse_record(r#"{"\u0061": 1, "a": 2}"#, &["a"]).unwrap();
        assert_eq!(s[0], Scalar::Int(2));
    }

    #[test]
    fn renders_and_converts_like_serde_json() {
        let v: Value = serde_json::from_str(
            r#"{"n": null, "f": 200.0, "i": -3, "u": 18446744073709551615, "s": "q\"", "o": {"k": [true]}}"#,
        )
        .unwrap();
        for (k, x) in v.as_object().unwrap() {
            let s = Scalar::of_value(x);
            assert_eq!(s.to_string(), x.to_string(), "{k}");
            assert_eq!(s.as_i64(), x.as_i64(), "{k}");
            assert_eq!(s.as_f64(), x.as_f64(), "{k}");
            let line = format!("{{\"x\": {x}}}");
            assert_eq!(parse_record(&line, &["x"]).unwrap()[0], s, "{k}");
        }
    }
}
