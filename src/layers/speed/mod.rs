//! The speed layer: the body of the five `2-<stream>_realtime_ingest` DAGs. A run generates
//! its data interval's events and lands them as one JSON-lines object per event-time hour:
//! `realtime/<stream>/date=YYYY-MM-DD/hour=HH/<stream>_<interval start>.jsonl`; late events
//! go to their own (older) hour partition with the suffix `_late`, events stamped after the
//! interval (future timestamps) with `_future`. Keys and bytes are a pure function of
//! (seed, stream, interval), and every object is written create-only, so a re-run lands
//! nothing twice. `verify` reads back what `ingest` reported.
//!
//! Both are operations in the delta-rs manner ([`IngestBuilder`], [`VerifyBuilder`]): a
//! builder that plans (pure), then executes, and returns typed metrics; [`dag`] attaches them
//! to the DAGs.

pub mod dag;
pub mod error;
pub mod ingest;
pub mod verify;

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike as _, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::compact;
pub use error::Error;
pub use ingest::{IngestBuilder, IngestPlan};
pub use verify::{VerifyBuilder, VerifyMetrics};

/// Prefix of the speed layer.
pub const PREFIX: &str = "realtime";

/// Where an event of `stream` at `t` lands, for the run whose interval is [start, end).
pub fn object_key(
    stream: &str,
    t: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> String {
    let suffix = if t < start {
        "_late"
    } else if t >= end {
        "_future"
    } else {
        ""
    };
    format!(
        "{PREFIX}/{stream}/date={}/hour={:02}/{stream}_{}{suffix}.jsonl",
        t.format("%Y-%m-%d"),
        t.hour(),
        compact(start)
    )
}

/// One landed object, as `ingest` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandedObject {
    /// Object key.
    pub key: String,
    /// Events (lines) in it.
    pub lines: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// `created` or `already_present`.
    pub outcome: String,
}

/// What `ingest` returns: its metrics, the XCom that `verify` and the UI read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestMetrics {
    /// The stream.
    pub stream: String,
    /// Events generated for the interval (faulty lines included).
    pub events: u64,
    /// Faults mixed in, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Objects, by key order.
    pub objects: Vec<LandedObject>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    #[test]
    fn keys_follow_event_time_with_late_and_future_suffixes() {
        let s = parse_utc("2026-02-01T23:55:00Z").unwrap();
        let e = parse_utc("2026-02-02T00:00:00Z").unwrap();
        assert_eq!(
            object_key("api_logs", parse_utc("2026-02-01T23:57:01Z").unwrap(), s, e),
            "realtime/api_logs/date=2026-02-01/hour=23/api_logs_20260201T235500Z.jsonl"
        );
        assert_eq!(
            object_key("api_logs", parse_utc("2026-01-30T04:10:00Z").unwrap(), s, e),
            "realtime/api_logs/date=2026-01-30/hour=04/api_logs_20260201T235500Z_late.jsonl"
        );
        assert_eq!(
            object_key("api_logs", e, s, e),
            "realtime/api_logs/date=2026-02-02/hour=00/api_logs_20260201T235500Z_future.jsonl"
        );
    }
}
