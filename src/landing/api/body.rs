//! A request body as records: gzip decoded within the size limit ([`decode`]), then split
//! ([`split`]) into NDJSON lines or the elements of one JSON array. Each record that is a JSON
//! object is accepted with its exact bytes (a line without its `\r`; an array element's raw
//! text, its whitespace newlines turned into spaces so it stays one line) and its
//! `event_time`; anything else is a per-record error. A record over the record limit refuses
//! the whole request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::budget::Reservation;
use super::error::{Error, Result};
use crate::landing::records::{GunzipError, event_time, gunzip};

/// How the body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As sent.
    Identity,
    /// gzip (one or more members).
    Gzip,
}

impl Encoding {
    /// The encoding a `Content-Encoding` header names; `None` (absent) is identity.
    pub fn parse(header: Option<&str>) -> Result<Encoding> {
        match header.map(|h| h.trim().to_ascii_lowercase()) {
            None => Ok(Encoding::Identity),
            Some(h) if h.is_empty() || h == "identity" => Ok(Encoding::Identity),
            Some(h) if h == "gzip" || h == "x-gzip" => Ok(Encoding::Gzip),
            Some(h) => Err(Error::UnsupportedEncoding { encoding: h }),
        }
    }
}

/// A record that is a JSON object, as it will be landed.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 0-based line (NDJSON) or element (array) number in the body.
    pub index: u64,
    /// The record's bytes, one line, without its newline.
    pub bytes: Vec<u8>,
    /// Its `event_time`, when it is an RFC 3339 string.
    pub event_time: Option<DateTime<Utc>>,
}

/// A record that is not landed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// 0-based line (NDJSON) or element (array) number in the body.
    pub index: u64,
    /// Why it was not landed.
    pub error: String,
}

/// A body split into records.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The JSON objects, in body order.
    pub records: Vec<Record>,
    /// The rest, in body order.
    pub errors: Vec<RecordError>,
}

impl Parsed {
    /// Bytes of the accepted records.
    pub fn bytes(&self) -> u64 {
        self.records.iter().map(|r| r.bytes.len() as u64).sum()
    }
}

/// Decodes `body` (gzip or not) within `max_body` bytes, holding what it decodes in `budget`.
pub fn decode(
    body: Vec<u8>,
    encoding: Encoding,
    max_body: u64,
    budget: &mut Reservation,
) -> Result<Vec<u8>> {
    if body.len() as u64 > max_body {
        return Err(Error::BodyTooLarge { limit: max_body });
    }
    if encoding == Encoding::Identity {
        return Ok(body);
    }
    let held = body.len() as u64;
    gunzip(&body, max_body, |n| budget.grow_to(held + n)).map_err(|e| match e {
        GunzipError::Corrupt(e) => Error::BadGzip {
            reason: e.to_string(),
        },
        GunzipError::TooLarge => Error::BodyTooLarge { limit: max_body },
        GunzipError::Refused(e) => e,
    })
}

/// Splits a decoded body into records (see the module docs).
pub fn split(body: &[u8], max_record: u64, field: &str) -> Result<Parsed> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let parsed = match start {
        None => return Err(Error::EmptyBody),
        Some(i) if body[i] == b'[' => split_array(&body[i..], max_record, field)?,
        Some(_) => split_lines(body, max_record, field)?,
    };
    if parsed.records.is_empty() && parsed.errors.is_empty() {
        return Err(Error::EmptyBody);
    }
    Ok(parsed)
}

fn split_lines(body: &[u8], max_record: u64, field: &str) -> Result<Parsed> {
    let mut parsed = Parsed::default();
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let index = index as u64;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() as u64 > max_record {
            return Err(Error::RecordTooLarge {
                index,
                size: line.len() as u64,
                limit: max_record,
            });
        }
        match judge(line, field) {
            Ok(event_time) => parsed.records.push(Record {
                index,
                bytes: line.to_vec(),
                event_time,
            }),
            Err(error) => parsed.errors.push(RecordError { index, error }),
        }
    }
    Ok(parsed)
}

/// The elements of a JSON array: the whole body must be one valid array.
fn split_array(body: &[u8], max_record: u64, field: &str) -> Result<Parsed> {
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body).map_err(|e| Error::BadFraming {
        reason: format!("the body starts with `[` but is not a JSON array: {e}"),
    })?;
    let mut parsed = Parsed::default();
    for (index, raw) in array_elements(body).into_iter().enumerate() {
        let index = index as u64;
        if raw.len() as u64 > max_record {
            return Err(Error::RecordTooLarge {
                index,
                size: raw.len() as u64,
                limit: max_record,
            });
        }
        match judge(raw, field) {
            Ok(event_time) => parsed.records.push(Record {
                index,
                // Outside strings a newline is whitespace (inside one it is invalid JSON).
                bytes: raw
                    .iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                    .collect(),
                event_time,
            }),
            Err(error) => parsed.errors.push(RecordError { index, error }),
        }
    }
    Ok(parsed)
}

/// The raw, trimmed text of each element of `array`, a valid JSON array.
fn array_elements(array: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut start = None;
    for (i, &b) in array.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == 1 {
                    start = Some(i + 1);
                    continue;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if (depth == 1 && b == b',') || (depth == 0 && b == b']') {
            if let Some(s) = start {
                let raw = array[s..i].trim_ascii();
                if !raw.is_empty() {
                    out.push(raw);
                }
            }
            start = Some(i + 1);
            if depth == 0 {
                break;
            }
        }
    }
    out
}

/// `Ok(event time)` for a JSON object, `Err(why)` for anything else.
fn judge(raw: &[u8], field: &str) -> std::result::Result<Option<DateTime<Utc>>, String> {
    if raw.trim_ascii_start().first() != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
            Ok(_) => "not a JSON object".to_string(),
            Err(e) => format!("not JSON: {e}"),
        });
    }
    match event_time(raw, field) {
        Ok(t) => Ok(t),
        // A valid object the probe cannot read (a repeated `event_time`): no event time.
        Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
            Ok(_) => Ok(None),
            Err(e) => Err(format!("not JSON: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::landing::api::budget::Budget;

    fn gzip(b: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn ndjson_lines_keep_their_bytes_and_errors_their_line_numbers() {
        let body = b"{\"a\":1, \"event_time\":\"2026-02-01T03:04:05Z\"}\r\n\n[1,2]\n{bad\n  {\"b\" : \"x\"}\n42";
        let p = split(body, 1024, "event_time").unwrap();
        let got: Vec<_> = p
            .records
            .iter()
            .map(|r| (r.index, r.bytes.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    0,
                    b"{\"a\":1, \"event_time\":\"2026-02-01T03:04:05Z\"}".to_vec()
                ),
                (4, b"  {\"b\" : \"x\"}".to_vec()),
            ]
        );
        assert_eq!(
            p.records[0].event_time,
            Some(crate::clock::parse_utc("2026-02-01T03:04:05Z").unwrap())
        );
        assert_eq!(p.records[1].event_time, None);
        let idx: Vec<_> = p.errors.iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![2, 3, 5]);
        assert_eq!(p.errors[0].error, "not a JSON object");
        assert!(p.errors[1].error.starts_with("not JSON"));
    }

    #[test]
    fn a_json_array_gives_its_elements_on_one_line_each() {
        let body = b" [ {\"a\": \"x,]}\\\"\"},\n {\n \"event_time\": 5 }, 7, [ {\"c\":1} ] ]\n";
        let p = split(body, 1024, "event_time").unwrap();
        let got: Vec<_> = p
            .records
            .iter()
            .map(|r| (r.index, r.bytes.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, b"{\"a\": \"x,]}\\\"\"}".to_vec()),
                (1, b"{  \"event_time\": 5 }".to_vec()),
            ]
        );
        let idx: Vec<_> = p.errors.iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![2, 3]);
        for r in &p.records {
            let v: serde_json::Value = serde_json::from_slice(&r.bytes).unwrap();
            assert!(v.is_object());
        }
    }

    #[test]
    fn framing_size_and_empty_bodies_are_refused() {
        assert!(matches!(
            split(b"[{\"a\":1}", 1024, "event_time"),
            Err(Error::BadFraming { .. })
        ));
        assert!(matches!(
            split(b"[{\"a\":1}] x", 1024, "event_time"),
            Err(Error::BadFraming { .. })
        ));
        assert!(matches!(
            split(b"  \n\r\n ", 1024, "event_time"),
            Err(Error::EmptyBody)
        ));
        assert!(matches!(
            split(b"[]", 1024, "event_time"),
            Err(Error::EmptyBody)
        ));
        let long = format!("{{\"a\":\"{}\"}}\n", "x".repeat(100));
        assert!(matches!(
            split(format!("{{}}\n{long}").as_bytes(), 50, "event_time"),
            Err(Error::RecordTooLarge {
                index: 1,
                limit: 50,
                ..
            })
        ));
        assert!(matches!(
            split(
                format!("[{{}}, {}]", long.trim()).as_bytes(),
                50,
                "event_time"
            ),
            Err(Error::RecordTooLarge { index: 1, .. })
        ));
    }

    #[test]
    fn gzip_decodes_within_the_body_limit_and_the_budget() {
        let budget = Budget::new(1 << 20);
        let plain = b"{\"a\":1}\n".repeat(1000);
        let mut r = budget.reservation();
        let out = decode(gzip(&plain), Encoding::Gzip, 1 << 20, &mut r).unwrap();
        assert_eq!(out, plain);
        assert!(r.bytes() >= plain.len() as u64);
        let mut r = budget.reservation();
        assert!(matches!(
            decode(gzip(&plain), Encoding::Gzip, 4000, &mut r),
            Err(Error::BodyTooLarge { limit: 4000 })
        ));
        let mut r = budget.reservation();
        assert!(matches!(
            decode(b"not gzip".to_vec(), Encoding::Gzip, 4000, &mut r),
            Err(Error::BadGzip { .. })
        ));
        let small = Budget::new(4096);
        let mut r = small.reservation();
        assert!(matches!(
            decode(gzip(&plain), Encoding::Gzip, 1 << 20, &mut r),
            Err(Error::Busy { .. })
        ));
        assert_eq!(Encoding::parse(Some("GZIP")).unwrap(), Encoding::Gzip);
        assert_eq!(Encoding::parse(None).unwrap(), Encoding::Identity);
        assert!(matches!(
            Encoding::parse(Some("br")),
            Err(Error::UnsupportedEncoding { .. })
        ));
    }
}
