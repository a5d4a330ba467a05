//! What the ingest API and the inboxes share about the records they land: gzip decoding within
//! a size limit ([`gunzip`]) and the one field they read of a record, its `event_time`
//! ([`EventTime`]), which decides its hour partition.

use std::io::Read as _;

use chrono::{DateTime, Utc};

/// Why [`gunzip`] stopped.
#[derive(Debug)]
pub enum GunzipError<E> {
    /// The bytes are not (complete) gzip.
    Corrupt(std::io::Error),
    /// The decoded bytes would exceed the limit.
    TooLarge,
    /// `grow` refused the next chunk.
    Refused(E),
}

/// Every member of the gzip `raw`, decoded 64 KiB at a time: at most `limit` bytes, and
/// `grow(decoded bytes so far, the next chunk included)` is asked before each chunk is kept
/// (the ingest API holds them against its budget; an inbox asks nothing).
pub fn gunzip<E>(
    raw: &[u8],
    limit: u64,
    mut grow: impl FnMut(u64) -> Result<(), E>,
) -> Result<Vec<u8>, GunzipError<E>> {
    let mut out = Vec::with_capacity((raw.len() as u64).saturating_mul(4).min(limit) as usize);
    let mut gz = flate2::read::MultiGzDecoder::new(raw);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = gz.read(&mut chunk).map_err(GunzipError::Corrupt)?;
        if n == 0 {
            return Ok(out);
        }
        let len = (out.len() + n) as u64;
        if len > limit {
            return Err(GunzipError::TooLarge);
        }
        grow(len).map_err(GunzipError::Refused)?;
        out.extend_from_slice(&chunk[..n]);
    }
}

/// The event time of a JSON object record: the value of its key `field` (the stream's declared
/// event-time key) when that is an RFC 3339 string; every other key is skipped unbuilt. `Err`
/// if `raw` is not one JSON object (or repeats `field`).
pub fn event_time(raw: &[u8], field: &str) -> Result<Option<DateTime<Utc>>, serde_json::Error> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_slice(raw);
    let t = EventTimeOf(field).deserialize(&mut de)?;
    de.end()?;
    Ok(t)
}

/// Reads one JSON object for the key it names.
struct EventTimeOf<'f>(&'f str);

impl<'de> serde::de::DeserializeSeed<'de> for EventTimeOf<'_> {
    type Value = Option<DateTime<Utc>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EventTimeOf<'_> {
    type Value = Option<DateTime<Utc>>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Option<Option<serde_json::Value>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.0 {
                if found.is_some() {
                    return Err(serde::de::Error::duplicate_field("event time"));
                }
                found = Some(Some(map.next_value()?));
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found
            .flatten()
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(|s| crate::clock::parse_utc(s).ok()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_keeps_to_its_limit_and_asks_before_each_chunk() {
        let body = vec![b'x'; 200 * 1024];
        let z = gzip(&body);
        let mut asked = Vec::new();
        let out = gunzip(&z, 1 << 20, |n| {
            asked.push(n);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(out, body);
        assert_eq!(asked.last(), Some(&(200 * 1024)));
        assert!(asked.len() >= 4, "{asked:?}");
        assert!(matches!(
            gunzip(&z, 100 * 1024, |_| Ok::<_, ()>(())),
            Err(GunzipError::TooLarge)
        ));
        assert!(matches!(
            gunzip(&z, 1 << 20, |n| if n > 64 * 1024 {
                Err("full")
            } else {
                Ok(())
            }),
            Err(GunzipError::Refused("full"))
        ));
        assert!(matches!(
            gunzip(&z[..z.len() / 2], 1 << 20, |_| Ok::<_, ()>(())),
            Err(GunzipError::Corrupt(_))
        ));
    }

    #[test]
    fn the_event_time_is_read_from_the_declared_key() {
        let t = |s: &str, k: &str| event_time(s.as_bytes(), k).unwrap();
        let at = crate::clock::parse_utc("2026-02-01T03:04:05Z").ok();
        assert_eq!(
            t(r#"{"ts":"2026-02-01T03:04:05Z","event_time":"x"}"#, "ts"),
            at
        );
        assert_eq!(t(r#"{"a\"b":"2026-02-01T03:04:05Z"}"#, "a\"b"), at);
        assert_eq!(t(r#"{"event_time":"2026-02-01T03:04:05Z"}"#, "ts"), None);
        assert!(event_time(br#"{"ts":"2026-02-01T03:04:05Z","ts":"x"}"#, "ts").is_err());
        assert!(event_time(b"[1]", "ts").is_err());
        assert!(event_time(b"{} {}", "ts").is_err());
    }

    #[test]
    fn the_event_time_is_an_rfc3339_string_or_nothing() {
        let t = |s: &str| event_time(s.as_bytes(), "event_time").unwrap();
        assert_eq!(
            t(r#"{"a":1,"event_time":"2026-02-01T03:04:05Z"}"#),
            Some(crate::clock::parse_utc("2026-02-01T03:04:05Z").unwrap())
        );
        assert_eq!(t(r#"{"event_time":7}"#), None);
        assert_eq!(t(r#"{"event_time":"yesterday"}"#), None);
        assert_eq!(t(r#"{"a":{"event_time":"2026-02-01T03:04:05Z"}}"#), None);
    }
}
