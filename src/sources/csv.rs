//! CSV files of the landing dataset `csv_files` (RFC 4180, CRLF): every row's timestamp lies
//! inside the file's 10-second slot.

use chrono::{DateTime, Duration, Utc};
use rand::Rng as _;

use super::{LineFaults, rng_for, round_to, scaled};
use crate::clock::rfc3339_secs;

/// Source name (also the `source` metadata value).
pub const SOURCE: &str = "csv";
/// Header row.
pub const HEADER: &str = "id,timestamp,value,category,status";
/// Data rows per file at scale 1.
pub const ROWS: usize = 100;
/// Allowed `category` values.
pub const CATEGORIES: &[&str] = &["A", "B", "C", "D"];
/// Allowed `status` values.
pub const STATUSES: &[&str] = &["active", "inactive", "pending"];
/// Slot length: rows are spread over it.
pub const SLOT_SECONDS: i64 = 10;

/// Renders file `n` of its day for the slot starting at `slot`; returns the body and the
/// number of data rows. `fault_rate` mixes in malformed and duplicate rows, counted in `faults`.
pub fn render(
    seed: u64,
    slot: DateTime<Utc>,
    n: u64,
    scale: f64,
    fault_rate: f64,
    faults: &mut LineFaults,
) -> (String, usize) {
    let mut rng = rng_for(seed, SOURCE, slot, 0);
    let rows = scaled(ROWS, scale);
    let mut out = String::with_capacity(64 * (rows + 1));
    out.push_str(HEADER);
    out.push_str("\r\n");
    let mut lines = Vec::with_capacity(rows);
    for i in 0..rows {
        let ts = slot + Duration::milliseconds((i as i64 * SLOT_SECONDS * 1000) / rows as i64);
        let value = round_to(rng.random_range(10.0..=1000.0), 2);
        let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
        let status = STATUSES[rng.random_range(0..STATUSES.len())];
        lines.push(format!(
            "row_{n}_{i},{},{value:.2},{category},{status}",
            rfc3339_secs(ts)
        ));
    }
    let rows_written = faults.apply(&mut lines, seed, SOURCE, slot, fault_rate);
    for l in lines {
        out.push_str(&l);
        out.push_str("\r\n");
    }
    (out, rows_written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    #[test]
    fn rows_are_valid_and_inside_the_slot() {
        let t = parse_utc("2026-02-01T23:59:50Z").unwrap();
        let (body, rows) = render(42, t, 8639, 1.0, 0.0, &mut LineFaults::default());
        assert_eq!(rows, 100);
        assert!(body.ends_with("\r\n"));
        let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines.len(), 101);
        for (i, l) in lines[1..].iter().enumerate() {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 5, "{l}");
            assert_eq!(f[0], format!("row_8639_{i}"));
            let ts = parse_utc(f[1]).unwrap();
            assert!(ts >= t && ts < t + Duration::seconds(SLOT_SECONDS), "{l}");
            let v: f64 = f[2].parse().unwrap();
            assert!((10.0..=1000.0).contains(&v));
            assert_eq!(f[2].split('.').nth(1).map(str::len), Some(2), "{l}");
            assert!(
                CATEGORIES.contains(&f[3]) && STATUSES.contains(&f[4]),
                "{l}"
            );
        }
        assert!(
            (2_500..=5_500).contains(&body.len()),
            "{} bytes",
            body.len()
        );
    }

    #[test]
    fn faults_are_counted() {
        let t = parse_utc("2026-02-01T00:00:00Z").unwrap();
        let mut faults = LineFaults::default();
        let (body, rows) = render(42, t, 0, 1.0, 0.2, &mut faults);
        assert!(faults.malformed + faults.duplicate > 0);
        assert_eq!(rows, 100 + faults.duplicate as usize);
        let short = body
            .split("\r\n")
            .filter(|l| !l.is_empty() && l.split(',').count() != 5);
        assert_eq!(short.count() as u64, faults.malformed);
    }
}
