//! Text documents of the landing dataset `text_files`: a three-line header and generated prose.

use chrono::{DateTime, Utc};
use rand::Rng as _;

use super::{rng_for, scaled};
use crate::clock::rfc3339_secs;

/// Source name (also the `source` metadata value).
pub const SOURCE: &str = "text";
/// Prose lines per document at scale 1 (100 lines with the header).
pub const PROSE_LINES: usize = 97;

/// Short words keep a document at 2.5–5.5 KB, like the original's files.
const VOCABULARY: &[&str] = &[
    "data", "lake", "row", "file", "log", "key", "map", "set", "sum", "max", "min", "avg", "time",
    "day", "hour", "flow", "sink", "load", "read", "scan", "join", "sort", "tag", "raw", "gold",
    "disk", "node", "job", "run", "task", "dag", "s3", "put", "get", "list", "page", "byte", "bit",
    "the", "a", "of", "to", "and", "in", "is", "on", "by", "with", "from", "each", "new", "old",
];

/// Renders document `n` of its day for the slot starting at `slot`.
pub fn render(seed: u64, slot: DateTime<Utc>, n: u64, scale: f64) -> String {
    let mut rng = rng_for(seed, SOURCE, slot, 0);
    let mut out = String::with_capacity(4096);
    out.push_str(&format!("Document ID: {n}\n"));
    out.push_str(&format!("Generated at: {}\n", rfc3339_secs(slot)));
    out.push_str(&"-".repeat(50));
    out.push('\n');
    for _ in 0..scaled(PROSE_LINES, scale) {
        let words = rng.random_range(5..=15);
        for w in 0..words {
            let word = VOCABULARY[rng.random_range(0..VOCABULARY.len())];
            if w == 0 {
                let mut c = word.chars();
                if let Some(first) = c.next() {
                    out.push(first.to_ascii_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(word);
            }
        }
        out.push_str(".\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    #[test]
    fn header_lines_and_size() {
        let t = parse_utc("2026-02-01T14:30:20Z").unwrap();
        let doc = render(42, t, 7, 1.0);
        let lines: Vec<&str> = doc.lines().collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[0], "Document ID: 7");
        assert_eq!(lines[1], "Generated at: 2026-02-01T14:30:20Z");
        assert_eq!(lines[2], "-".repeat(50));
        assert!(doc.ends_with('\n'));
        for l in &lines[3..] {
            let words = l.split(' ').count();
            assert!((5..=15).contains(&words), "{l}");
        }
        assert!((2_500..=5_500).contains(&doc.len()), "{} bytes", doc.len());
        assert_eq!(doc, render(42, t, 7, 1.0));
        assert_ne!(doc, render(43, t, 7, 1.0));
    }

    #[test]
    fn scale_multiplies_prose_lines() {
        let t = parse_utc("2026-02-01T00:00:00Z").unwrap();
        assert_eq!(render(1, t, 0, 3.0).lines().count(), 3 + 3 * PROSE_LINES);
    }
}
