//! Decoding an inbox object: gzip (by configuration, or by a `.gz` name or gzip's magic
//! number), a decoded-size limit, UTF-8, and splitting into records — one per JSON line, and
//! Firehose's objects written back to back without a newline (`}{`) apart.

use std::convert::Infallible;

use chrono::{DateTime, Utc};

use super::error::BadObject;
use crate::config::Compression;
use crate::landing::records::{GunzipError, event_time, gunzip};

/// gzip's magic number: the first two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Is the object `key` with bytes `raw` to be gunzipped? `auto`: when its key ends in `.gz`
/// or its bytes start with gzip's magic number.
pub fn is_gzip(key: &str, raw: &[u8], compression: Compression) -> bool {
    match compression {
        Compression::Gzip => true,
        Compression::None => false,
        Compression::Auto => key.ends_with(".gz") || raw.starts_with(&GZIP_MAGIC),
    }
}

/// The text of the object `key`: `raw` gunzipped if it is to be ([`is_gzip`]; every member
/// of a multi-member gzip), at most `limit` bytes, checked to be UTF-8.
pub fn decode(
    key: &str,
    raw: &[u8],
    compression: Compression,
    limit: u64,
) -> Result<Vec<u8>, BadObject> {
    let too_large = |what| BadObject::TooLarge { what, limit };
    let out = if is_gzip(key, raw, compression) {
        gunzip(raw, limit, |_| Ok::<_, Infallible>(())).map_err(|e| match e {
            GunzipError::Corrupt(e) => BadObject::CorruptGzip {
                message: e.to_string(),
            },
            GunzipError::TooLarge => too_large("the decoded object"),
            GunzipError::Refused(never) => match never {},
        })?
    } else {
        if raw.len() as u64 > limit {
            return Err(too_large("the object"));
        }
        raw.to_vec()
    };
    if let Err(e) = std::str::from_utf8(&out) {
        return Err(BadObject::NotUtf8 {
            offset: e.valid_up_to(),
        });
    }
    Ok(out)
}

/// One record of an object, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// Its bytes (no line end).
    pub bytes: &'a [u8],
    /// Its `event_time`, if it has one that parses as RFC 3339.
    pub event_time: Option<DateTime<Utc>>,
    /// False for a line that is not a JSON object: landed anyway (silver quarantines it).
    pub is_object: bool,
}

/// The records of `text`: one per non-blank line, or several when a line holds JSON objects
/// written back to back (`{…}{…}`). A line that is not entirely JSON objects is one record
/// with `is_object` false.
pub fn records<'a>(text: &'a [u8], field: &'a str) -> impl Iterator<Item = Record<'a>> {
    text.split(|&b| b == b'\n')
        .map(trim)
        .filter(|l| !l.is_empty())
        .flat_map(move |l| split_line(l, field))
}

fn split_line<'a>(line: &'a [u8], field: &str) -> Vec<Record<'a>> {
    // The common line, one JSON object, is read once, for its event time.
    if let Ok(t) = event_time(line, field) {
        return vec![Record {
            bytes: line,
            event_time: t,
            is_object: true,
        }];
    }
    let mut out = Vec::with_capacity(1);
    let mut values =
        serde_json::Deserializer::from_slice(line).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    loop {
        match values.next() {
            None => return out,
            Some(Ok(_)) => {
                let end = values.byte_offset();
                let bytes = trim(&line[start..end]);
                if !bytes.starts_with(b"{") {
                    break;
                }
                out.push(Record {
                    bytes,
                    // A valid object whose event-time key repeats has no event time.
                    event_time: event_time(bytes, field).ok().flatten(),
                    is_object: true,
                });
                start = end;
            }
            Some(Err(_)) => break,
        }
    }
    vec![Record {
        bytes: line,
        event_time: None,
        is_object: false,
    }]
}

/// `b` without leading and trailing ASCII whitespace (a `\r` before the `\n` included).
fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    const TEXT: &[u8] = b"{\"a\":1,\"event_time\":\"2026-02-01T10:00:00Z\"}\n{\"a\":2}\n";

    #[test]
    fn gzip_is_detected_forced_or_off() {
        let gz = gzip(TEXT);
        assert_eq!(decode("x", &gz, Compression::Auto, 1 << 20).unwrap(), TEXT);
        assert_eq!(decode("x", &gz, Compression::Gzip, 1 << 20).unwrap(), TEXT);
        assert_eq!(decode("x", TEXT, Compression::Auto, 1 << 20).unwrap(), TEXT);
        assert_eq!(decode("x", TEXT, Compression::None, 1 << 20).unwrap(), TEXT);
        // Off: gzip bytes are taken as they are, and are not text.
        assert!(matches!(
            decode("x", &gz, Compression::None, 1 << 20),
            Err(BadObject::NotUtf8 { .. })
        ));
        // A `.gz` name, or forced, on plain text: not gzip.
        assert!(matches!(
            decode("x.gz", TEXT, Compression::Auto, 1 << 20),
            Err(BadObject::CorruptGzip { .. })
        ));
        assert_eq!(
            decode("x.gz", TEXT, Compression::None, 1 << 20).unwrap(),
            TEXT
        );
        assert!(matches!(
            decode("x", TEXT, Compression::Gzip, 1 << 20),
            Err(BadObject::CorruptGzip { .. })
        ));
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let mut gz = gzip(b"{\"a\":1}\n");
        gz.extend(gzip(b"{\"a\":2}\n"));
        assert_eq!(
            decode("x", &gz, Compression::Auto, 1 << 20).unwrap(),
            b"{\"a\":1}\n{\"a\":2}\n"
        );
    }

    #[test]
    fn corrupt_or_truncated_gzip_is_an_error() {
        let gz = gzip(TEXT);
        let truncated = &gz[..gz.len() / 2];
        assert!(matches!(
            decode("x", truncated, Compression::Auto, 1 << 20),
            Err(BadObject::CorruptGzip { .. })
        ));
        let mut damaged = gz.clone();
        for b in damaged.iter_mut().skip(12).take(8) {
            *b ^= 0x5a;
        }
        assert!(matches!(
            decode("x", &damaged, Compression::Auto, 1 << 20),
            Err(BadObject::CorruptGzip { .. })
        ));
    }

    #[test]
    fn the_decoded_size_is_limited() {
        let big = vec![b'x'; 10_000];
        let gz = gzip(&big);
        assert!(gz.len() < 1_000);
        assert_eq!(
            decode("x", &gz, Compression::Auto, 9_999),
            Err(BadObject::TooLarge {
                what: "the decoded object",
                limit: 9_999
            })
        );
        assert_eq!(
            decode("x", &gz, Compression::Auto, 10_000).unwrap().len(),
            10_000
        );
        assert!(matches!(
            decode("x", &big, Compression::None, 100),
            Err(BadObject::TooLarge { .. })
        ));
    }

    #[test]
    fn records_are_lines_and_back_to_back_objects() {
        let text = b"{\"a\":1,\"event_time\":\"2026-02-01T10:00:00Z\"}\r\n\n  \n{\"b\":2}{\"c\":3,\"event_time\":7}\nnot json\n{\"d\":4} trailing\n[1,2]\n{\"e\":5}";
        let r: Vec<_> = records(text, "event_time").collect();
        let bytes: Vec<&[u8]> = r.iter().map(|r| r.bytes).collect();
        assert_eq!(
            bytes,
            vec![
                &b"{\"a\":1,\"event_time\":\"2026-02-01T10:00:00Z\"}"[..],
                b"{\"b\":2}",
                b"{\"c\":3,\"event_time\":7}",
                b"not json",
                b"{\"d\":4} trailing",
                b"[1,2]",
                b"{\"e\":5}",
            ]
        );
        let objects: Vec<bool> = r.iter().map(|r| r.is_object).collect();
        assert_eq!(objects, [true, true, true, false, false, false, true]);
        assert_eq!(
            r[0].event_time,
            Some(crate::clock::parse_utc("2026-02-01T10:00:00Z").unwrap())
        );
        assert_eq!(r[2].event_time, None);
    }
}
