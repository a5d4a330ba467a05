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
        Ok(slot_of(self.names, self.hint, v))
    }
}

/// The slot of `key` among `names`, trying the one at `hint` (after the previous key's) first.
fn slot_of(names: &[&str], hint: usize, key: &str) -> Option<usize> {
    match names.get(hint) {
        Some(n) if *n == key => Some(hint),
        _ => names.iter().position(|n| *n == key),
    }
}

/// Parses the JSON object in `line` into one slot per name of `names` (absent keys are
/// [`Scalar::Null`]; a repeated key keeps its last value, as `serde_json::Value` does). Any
/// text that is not one JSON object is an error, with serde_json's message.
///
/// Lines of the common shape — one flat object of strings without escapes, integers, decimal
/// numbers, booleans, nulls and lists of those — are read by [`flat::parse`] in one pass over
/// the bytes; any other line (escapes, nesting, exponents, big integers, anything malformed)
/// goes to serde_json, which gives the same values and the errors.
pub fn parse_record<'a>(line: &'a str, names: &[&str]) -> Result<Vec<Scalar<'a>>, String> {
    let mut slots = vec![Scalar::Null; names.len()];
    if flat::parse(line, names, &mut slots).is_some() {
        return Ok(slots);
    }
    parse_with_serde(line, names)
}

/// [`parse_record`] by serde_json alone.
fn parse_with_serde<'a>(line: &'a str, names: &[&str]) -> Result<Vec<Scalar<'a>>, String> {
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

/// The one-pass reader of flat JSON objects behind [`parse_record`]: `None` for any line it
/// does not take, which serde_json then reads. What it takes it reads as serde_json does.
mod flat {
    use super::{Cow, Scalar};

    struct Reader<'a> {
        text: &'a str,
        at: usize,
    }

    impl<'a> Reader<'a> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.at).copied()
        }

        fn skip_ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.at += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            (self.peek() == Some(c)).then(|| self.at += 1)
        }

        /// A string without escapes or control characters, after its opening quote: eight
        /// bytes at a time to the first quote, backslash or control character.
        fn string(&mut self) -> Option<&'a str> {
            const ONES: u64 = u64::from_le_bytes([0x01; 8]);
            const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
            // Bytes below `n` (n <= 0x80): exact up to the first one, which is all that is read.
            let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
            let bytes = self.text.as_bytes();
            let mut i = self.at;
            while let Some(word) = bytes.get(i..i + 8) {
                let w = u64::from_le_bytes(word.try_into().ok()?);
                let special = below(w ^ (ONES * u64::from(b'"')), 1)
                    | below(w ^ (ONES * u64::from(b'\\')), 1)
                    | below(w, 0x20);
                if special != 0 {
                    i += (special.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            loop {
                match *bytes.get(i)? {
                    b'"' => break,
                    b'\\' | 0..=0x1f => return None,
                    _ => i += 1,
                }
            }
            let s = &self.text[self.at..i];
            self.at = i + 1;
            Some(s)
        }

        /// A number without exponent: an integer that fits `i64`, or a decimal fraction of
        /// at most 15 digits (exact as a float, so dividing by a power of ten rounds it
        /// correctly, as every correct parser does).
        fn number(&mut self) -> Option<Scalar<'a>> {
            const POW10: [f64; 16] = [
                1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                1e15,
            ];
            let negative = self.eat(b'-').is_some();
            let first = self.at;
            let mut m: u64 = 0;
            let mut digits = 0usize;
            while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                m = m.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                digits += 1;
                self.at += 1;
            }
            // No leading zeros, no `-0` (serde_json reads it as a float).
            let leading_zero = self.text.as_bytes()[first..].first() == Some(&b'0');
            if digits == 0 || (leading_zero && (digits > 1 || negative)) {
                return None;
            }
            let whole = digits;
            if self.eat(b'.').is_some() {
                while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                    m = m.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                    digits += 1;
                    self.at += 1;
                }
                if digits == whole || digits > 15 {
                    return None;
                }
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                return None;
            }
            if digits == whole {
                let v = i64::try_from(m).ok()?;
                return Some(Scalar::Int(if negative { -v } else { v }));
            }
            let v = m as f64 / POW10[digits - whole];
            Some(Scalar::Float(if negative { -v } else { v }))
        }

        /// A value other than an object (or a list of such inside a list).
        fn value(&mut self, in_list: bool) -> Option<Scalar<'a>> {
            let word = |r: &mut Reader<'a>, w: &str, v: Scalar<'a>| {
                r.text[r.at..].starts_with(w).then(|| {
                    r.at += w.len();
                    v
                })
            };
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    self.string().map(|s| Scalar::Str(Cow::Borrowed(s)))
                }
                b't' => word(self, "true", Scalar::Bool(true)),
                b'f' => word(self, "false", Scalar::Bool(false)),
                b'n' => word(self, "null", Scalar::Null),
                b'-' | b'0'..=b'9' => self.number(),
                b'[' if !in_list => {
                    self.at += 1;
                    let mut items = Vec::new();
                    self.skip_ws();
                    if self.eat(b']').is_some() {
                        return Some(Scalar::List(items));
                    }
                    loop {
                        self.skip_ws();
                        items.push(self.value(true)?);
                        self.skip_ws();
                        match self.peek()? {
                            b',' => self.at += 1,
                            b']' => {
                                self.at += 1;
                                return Some(Scalar::List(items));
                            }
                            _ => return None,
                        }
                    }
                }
                _ => None,
            }
        }
    }

    /// Reads `line` into `slots` (one per name of `names`, all null on entry); `None` if the
    /// line is not of the shape this reader takes (the slots are then to be discarded).
    pub(super) fn parse<'a>(line: &'a str, names: &[&str], slots: &mut [Scalar<'a>]) -> Option<()> {
        let mut r = Reader { text: line, at: 0 };
        r.skip_ws();
        r.eat(b'{')?;
        r.skip_ws();
        let mut hint = 0;
        if r.eat(b'}').is_none() {
            loop {
                r.skip_ws();
                r.eat(b'"')?;
                let key = r.string()?;
                r.skip_ws();
                r.eat(b':')?;
                r.skip_ws();
                let value = r.value(false)?;
                if let Some(i) = super::slot_of(names, hint, key) {
                    slots[i] = value;
                    hint = i + 1;
                }
                r.skip_ws();
                match r.peek()? {
                    b',' => r.at += 1,
                    b'}' => {
                        r.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        r.skip_ws();
        (r.at == line.len()).then_some(())
    }
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

    /// Lines of every shape the one-pass reader meets or must pass on: each parses to what
    /// serde_json alone makes of it (the same slots, or an error).
    #[test]
    fn the_one_pass_reader_agrees_with_serde_json_or_passes_the_line_on() {
        let names = [
            "log_id",
            "event_time",
            "status_code",
            "response_time_ms",
            "tags",
            "ok",
            "s",
        ];
        let base = r#"{"log_id":"2ec00fa6-69a2","event_time":"2026-02-01T00:00:00.003Z","method":"GET","status_code":200,"response_time_ms":165.9,"tags":["a","b"],"ok":true,"s":null,"extra":[1,2.5,false]}"#;
        let mut lines: Vec<String> = vec![
            base.into(),
            "{}".into(),
            " { } ".into(),
            "{\"s\": \"x\"}\n".into(),
            "{\"s\":\"a\\\"b\"}".into(),
            "{\"s\":\"tab\there\"}".into(),
            "{\"status_code\":-0}".into(),
            "{\"status_code\":007}".into(),
            "{\"status_code\":1e3}".into(),
            "{\"status_code\":-12}".into(),
            "{\"status_code\":9223372036854775807}".into(),
            "{\"status_code\":9223372036854775808}".into(),
            "{\"status_code\":-9223372036854775809}".into(),
            "{\"response_time_ms\":0.1000000000000000055511151231257827}".into(),
            "{\"response_time_ms\":123456789.123456789}".into(),
            "{\"response_time_ms\":1.}".into(),
            "{\"response_time_ms\":.5}".into(),
            "{\"tags\":[]}".into(),
            "{\"tags\":[[1]]}".into(),
            "{\"tags\":[{\"a\":1}]}".into(),
            "{\"s\":{\"deep\":1}}".into(),
            "{\"s\":1,\"s\":2}".into(),
            "{\"s\":1,}".into(),
            "{\"s\" 1}".into(),
            "{\"s\":tru}".into(),
            "{\"s\":nul}".into(),
            "{\"s\":1} x".into(),
            "[1]".into(),
            "".into(),
            "{\"\\u0073\":1}".into(),
            "{\"s\":\"caf\u{e9}\"}".into(),
        ];
        // Cut and spliced variants of the common line.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % base.len();
            let mut l = base.to_string();
            match (x >> 40) % 4 {
                0 => l.truncate(at),
                1 => l.insert(
                    at,
                    [',', ':', '"', '[', ']', '{', '}', ' ', '-', '.', 'e', '0']
                        [(x >> 20) as usize % 12],
                ),
                2 => {
                    l.remove(at);
                }
                _ => l.replace_range(at..at + 1, "1"),
            }
            lines.push(l);
        }
        // A quote, backslash or control character at every place of a word, and beyond.
        for at in 0..20 {
            for c in ['"', '\\', '\t', '\u{1}', '\u{1f}', ' ', '\u{e9}', '\u{7f}'] {
                let text = format!("{}{c}{}", "x".repeat(at), "y".repeat(at % 9));
                lines.push(format!("{{\"s\":\"{text}\",\"ok\":true}}"));
                lines.push(format!("{{\"{text}\":1}}"));
            }
        }
        // Decimals of every length the reader takes, and just beyond.
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = 1 + (x % 17) as usize;
            let point = (x >> 8) as usize % digits;
            let text: String = (0..digits)
                .map(|i| char::from(b'0' + ((x >> (i * 3 % 60)) % 10) as u8))
                .collect();
            let (whole, frac) = text.split_at(point.max(1).min(digits));
            let whole = whole.trim_start_matches('0');
            let whole = if whole.is_empty() { "0" } else { whole };
            let sign = if x >> 63 == 1 { "-" } else { "" };
            lines.push(format!("{{\"response_time_ms\":{sign}{whole}.{frac}9}}"));
            lines.push(format!("{{\"status_code\":{sign}{whole}}}"));
        }
        for l in &lines {
            if !l.is_char_boundary(l.len()) {
                continue;
            }
            let fast = parse_record(l, &names);
            let slow = parse_with_serde(l, &names);
            match (&fast, &slow) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{l}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{l}: one-pass {fast:?}, serde_json {slow:?}"),
            }
        }
        // Most of these lines are the reader's own (the decimals and integers above).
        let taken = lines
            .iter()
            .filter(|l| flat::parse(l, &names, &mut vec![Scalar::Null; names.len()]).is_some())
            .count();
        assert!(
            taken > 6000,
            "{taken} of {} lines read in one pass",
            lines.len()
        );
        // The common line is read in one pass, strings still borrowed.
        let mut slots = vec![Scalar::Null; names.len()];
        assert!(flat::parse(base, &names, &mut slots).is_some());
        assert!(matches!(
            &slots[0],
            Scalar::Str(Cow::Borrowed("2ec00fa6-69a2"))
        ));
        assert_eq!(slots[3], Scalar::Float(165.9));
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
