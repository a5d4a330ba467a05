//! Generators of every dataset lakepipe moves: the three landing sources (`text`, `csv`,
//! `iot`) and the five Lambda event streams (one file each, schemas as data, machinery in
//! `stream`).
//!
//! Output is a pure function of (seed, source, time slot): no wall clock, no thread RNG, no
//! I/O. By default every value satisfies the silver rules; faults are opt-in and counted.

pub mod csv;
pub mod iot;
pub mod scalar;
pub mod stream;
pub mod text;

pub mod api_logs;
pub mod ecommerce_clickstream;
pub mod financial_transactions;
pub mod iot_sensors;
pub mod social_media;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

pub use stream::{FaultCounts, FaultKind, StreamSpec, generate_interval};

/// The deterministic random generator every source draws from.
pub type Rng = Pcg64Mcg;

/// A generator seeded by (seed, source name, slot time, salt): the same inputs always give
/// the same sequence, different inputs independent ones.
pub fn rng_for(seed: u64, source: &str, slot: DateTime<Utc>, salt: u64) -> Rng {
    let mut h = Fnv::new();
    h.write(&seed.to_le_bytes());
    h.write(source.as_bytes());
    h.write(&slot.timestamp_millis().to_le_bytes());
    h.write(&salt.to_le_bytes());
    Rng::seed_from_u64(h.finish())
}

/// A stable 64-bit hash of some parts (FNV-1a, finished with a mix so that nearby inputs give
/// unrelated outputs). Used for ids and per-entity attributes that must never change.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = Fnv::new();
    for p in parts {
        h.write(p);
        h.write(&[0xff]);
    }
    h.finish()
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        // splitmix64 finaliser
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A UUID (version 4 layout) drawn from a deterministic generator.
pub fn uuid_from(rng: &mut Rng) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Rounds to `decimals` decimal places (for values written with fixed precision).
pub fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// How many records a generator makes: `base` multiplied by the scale factor, at least 1.
pub fn scaled(base: usize, scale: f64) -> usize {
    ((base as f64 * scale).round() as usize).max(1)
}

/// Where a malformed-line fault cuts `line`: at three fifths of its bytes, moved back to the
/// start of a character so that the cut never splits one.
pub(crate) fn malformed_cut(line: &str) -> usize {
    (0..=line.len() * 3 / 5)
        .rev()
        .find(|&i| line.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn a_malformed_cut_never_splits_a_character() {
        assert_eq!(malformed_cut("abcdefghij"), 6);
        // Byte 6 is inside the two-byte "é" (bytes 5–6): the cut moves back to its start.
        let line = "abcdeé1234";
        assert_eq!(line.len(), 11);
        assert_eq!(malformed_cut(line), 5);
        assert_eq!(&line[..malformed_cut(line)], "abcde");
        assert_eq!(malformed_cut(""), 0);
    }

    #[test]
    fn rng_depends_on_every_input_and_nothing_else() {
        let t = crate::clock::parse_utc("2026-02-01T00:00:05Z").unwrap();
        let draw = |seed, src: &str, t, salt| rng_for(seed, src, t, salt).random::<u64>();
        assert_eq!(draw(1, "text", t, 0), draw(1, "text", t, 0));
        assert_ne!(draw(1, "text", t, 0), draw(2, "text", t, 0));
        assert_ne!(draw(1, "text", t, 0), draw(1, "csv", t, 0));
        assert_ne!(
            draw(1, "text", t, 0),
            draw(1, "text", t + chrono::Duration::seconds(5), 0)
        );
        assert_ne!(draw(1, "text", t, 0), draw(1, "text", t, 1));
    }

    #[test]
    fn uuids_are_deterministic_v4_layout() {
        let t = crate::clock::parse_utc("2026-02-01T00:00:00Z").unwrap();
        let a = uuid_from(&mut rng_for(1, "x", t, 0));
        let b = uuid_from(&mut rng_for(1, "x", t, 0));
        assert_eq!(a, b);
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 4);
    }
}

/// Line-level faults of the landing files (`--fault-rate`): a malformed line is cut short
/// (a CSV row loses fields, a JSON line stops parsing); a duplicate repeats the line before it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LineFaults {
    /// Lines cut short.
    pub malformed: u64,
    /// Lines repeated.
    pub duplicate: u64,
}

impl LineFaults {
    /// Mixes faults into `lines` at `rate` (0 = none) and returns the number of lines.
    /// Uses its own generator, so clean lines stay byte-identical at any rate.
    pub fn apply(
        &mut self,
        lines: &mut Vec<String>,
        seed: u64,
        source: &str,
        slot: DateTime<Utc>,
        rate: f64,
    ) -> usize {
        use rand::Rng as _;
        if rate <= 0.0 {
            return lines.len();
        }
        let mut rng = rng_for(seed, source, slot, 0xfa17);
        let mut out = Vec::with_capacity(lines.len() + 8);
        for line in lines.drain(..) {
            if rng.random_bool(rate.min(1.0)) {
                if rng.random_bool(0.5) {
                    out.push(line[..malformed_cut(&line)].to_string());
                    self.malformed += 1;
                } else {
                    out.push(line.clone());
                    out.push(line);
                    self.duplicate += 1;
                }
            } else {
                out.push(line);
            }
        }
        *lines = out;
        lines.len()
    }

    /// Adds another tally to this one.
    pub fn add(&mut self, other: &LineFaults) {
        self.malformed += other.malformed;
        self.duplicate += other.duplicate;
    }
}
