//! The speed layer: the body of the five `2-<stream>_realtime_ingest` DAGs. A run generates
//! its data interval's events and lands them as one JSON-lines object per event-time hour:
//! `realtime/<stream>/date=YYYY-MM-DD/hour=HH/<stream>_<interval start>.jsonl`; late events
//! go to their own (older) hour partition with the suffix `_late`, events stamped after the
//! interval (future timestamps) with `_future`. Keys and bytes are a pure function of
//! (seed, stream, interval), and every object is written create-only, so a re-run lands
//! nothing twice. `verify` reads back what `ingest` reported.
//!
//! Real events land beside them, from the ingest API and the inboxes ([`crate::landing`]):
//! `<stream>_<landed YYYYMMDDTHHMMSSZ>_<writer>.jsonl` ([`landed_key`]). Every consumer
//! learns when an object was landed from its name ([`landed_at`]), never from who made it.
//!
//! Both are operations in the delta-rs manner ([`IngestBuilder`], [`VerifyBuilder`]): a
//! builder that plans (pure), then executes, and returns typed metrics; [`dag`] attaches them
//! to the DAGs.

pub mod dag;
pub mod error;
pub mod ingest;
pub mod signal;
pub mod verify;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDateTime, Timelike as _, Utc};
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
    hour_key(stream, t, &format!("{}{suffix}", compact(start)))
}

/// Length of a generator run's interval: its objects are landed this long after the interval
/// start their name carries.
const INGEST_INTERVAL_MINUTES: i64 = 5;

/// Where a record of `stream` with event time `t` lands when a writer other than a generator
/// run lands it at `landed`: `writer` is unique to that write (`api-<process>-<seq>`,
/// `inbox-<digest>`), so keys never collide between processes or restarts.
pub fn landed_key(stream: &str, t: DateTime<Utc>, landed: DateTime<Utc>, writer: &str) -> String {
    hour_key(stream, t, &format!("{}_{writer}", compact(landed)))
}

/// `realtime/<stream>/date=…/hour=HH/<stream>_<name>.jsonl`: the object `name` in the hour
/// partition of `t`.
fn hour_key(stream: &str, t: DateTime<Utc>, name: &str) -> String {
    format!(
        "{PREFIX}/{stream}/date={}/hour={:02}/{stream}_{name}.jsonl",
        t.format("%Y-%m-%d"),
        t.hour()
    )
}

/// The hour partition a real event goes to: its event time, unless it has none or is older
/// than the batch layer looks back (`lookback_days`) — then the hour it arrived, so the batch
/// layer still takes it and silver judges it (a record is never landed where nothing reads).
pub fn partition_time(
    event_time: Option<DateTime<Utc>>,
    arrived: DateTime<Utc>,
    lookback_days: i64,
) -> DateTime<Utc> {
    match event_time {
        Some(t) if t >= arrived - Duration::days(lookback_days - 1) => t,
        _ => arrived,
    }
}

/// When the speed-layer object named `file_name` was landed: a generator run's object
/// (`<stream>_<interval start>[_late|_future].jsonl`) at the end of its interval, another
/// writer's (`<stream>_<landed>_<writer>.jsonl`) at the time in its name. `None` for a name
/// that is neither (not a speed-layer object).
pub fn landed_at(stream: &str, file_name: &str) -> Option<DateTime<Utc>> {
    let rest = file_name.strip_prefix(stream)?.strip_prefix('_')?;
    let stamp = rest.get(..16)?;
    let t = NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()?
        .and_utc();
    let tail = rest.get(16..)?.strip_suffix(".jsonl")?;
    match tail {
        "" | "_late" | "_future" => Some(t + Duration::minutes(INGEST_INTERVAL_MINUTES)),
        w if w.starts_with("_api-") || w.starts_with("_inbox-") => Some(t),
        _ => None,
    }
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

    #[test]
    fn landed_time_comes_from_the_name_for_every_writer() {
        let t = landed_at("api_logs", "api_logs_20260201T235500Z_late.jsonl").unwrap();
        assert_eq!(crate::clock::rfc3339_secs(t), "2026-02-02T00:00:00Z");
        let t = landed_at("api_logs", "api_logs_20260201T235500Z.jsonl").unwrap();
        assert_eq!(crate::clock::rfc3339_secs(t), "2026-02-02T00:00:00Z");
        let key = landed_key(
            "api_logs",
            parse_utc("2026-02-01T03:04:05Z").unwrap(),
            parse_utc("2026-02-01T10:11:12Z").unwrap(),
            "api-0123456789abcdef-000007",
        );
        assert_eq!(
            key,
            "realtime/api_logs/date=2026-02-01/hour=03/api_logs_20260201T101112Z_api-0123456789abcdef-000007.jsonl"
        );
        let name = key.rsplit('/').next().unwrap();
        let t = landed_at("api_logs", name).unwrap();
        assert_eq!(crate::clock::rfc3339_secs(t), "2026-02-01T10:11:12Z");
        let t = landed_at("api_logs", "api_logs_20260201T101112Z_inbox-00ff.jsonl").unwrap();
        assert_eq!(crate::clock::rfc3339_secs(t), "2026-02-01T10:11:12Z");
        for bad in [
            "iot_sensors_20260201T235500Z.jsonl",
            "api_logs_garbage.jsonl",
            "api_logs_20260201T235500Z_other.jsonl",
            "api_logs_20260201T235500Z.jsonl#1",
        ] {
            assert!(landed_at("api_logs", bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn events_older_than_the_lookback_land_in_their_arrival_hour() {
        let now = parse_utc("2026-02-10T12:00:00Z").unwrap();
        let recent = parse_utc("2026-02-07T01:00:00Z").unwrap();
        let old = parse_utc("2026-02-01T01:00:00Z").unwrap();
        let future = parse_utc("2026-03-01T01:00:00Z").unwrap();
        assert_eq!(partition_time(Some(recent), now, 5), recent);
        assert_eq!(partition_time(Some(future), now, 5), future);
        assert_eq!(partition_time(Some(old), now, 5), now);
        assert_eq!(partition_time(None, now, 5), now);
    }
}
