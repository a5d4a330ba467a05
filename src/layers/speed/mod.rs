//! The speed layer: the body of the five `2-<stream>_realtime_ingest` DAGs. A run generates
//! its data interval's events and lands them as one JSON-lines object per event-time hour:
//! `realtime/<stream>/date=YYYY-MM-DD/hour=HH/<stream>_<interval start>.jsonl`; late events
//! go to their own (older) hour partition with the suffix `_late`, events stamped after the
//! interval (future timestamps) with `_future`. Keys and bytes are a pure function of
//! (seed, stream, interval), and every object is written create-only, so a re-run lands
//! nothing twice. `verify` reads back what `ingest` reported.

pub mod dag;

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Timelike as _, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use crate::clock::{compact, rfc3339_secs};
use crate::scheduler::{Fatal, TaskBody, TaskContext, TaskResult};
use crate::sources::stream::{StreamSpec, generate_interval};
use crate::store::{ObjectAttrs, WriteOutcome};

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

/// What `ingest` returns (the XCom that `verify` and the UI read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestOutput {
    /// The stream.
    pub stream: String,
    /// Events generated for the interval (faulty lines included).
    pub events: u64,
    /// Faults mixed in, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Objects, by key order.
    pub objects: Vec<LandedObject>,
}

struct Ingest {
    spec: &'static StreamSpec,
}

#[async_trait::async_trait]
impl TaskBody for Ingest {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Ingest {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let (start, end) = ctx.data_interval;
        let stream = self.spec.name;
        let generated = generate_interval(
            self.spec,
            ctx.params.seed,
            start,
            end,
            ctx.params.scale,
            ctx.params.fault_rate,
        );
        let faults: BTreeMap<String, u64> = generated
            .faults
            .0
            .iter()
            .map(|(k, v)| (format!("{k:?}"), *v))
            .collect();
        ctx.log.info(format!(
            "generated {} {stream} events for [{}, {}) (seed {}, scale {}, faults {:?})",
            generated.events.len(),
            rfc3339_secs(start),
            rfc3339_secs(end),
            ctx.params.seed,
            ctx.params.scale,
            faults
        ));
        // Group lines by target object; an interval is bounded, so this is small.
        let mut objects: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
        for e in &generated.events {
            let entry = objects
                .entry(object_key(stream, e.event_time, start, end))
                .or_default();
            entry.0 += 1;
            entry.1.extend_from_slice(e.line.as_bytes());
            entry.1.push(b'\n');
        }
        let events = generated.events.len() as u64;
        drop(generated);
        let attrs = |lines: u64| ObjectAttrs {
            content_type: Some("application/x-ndjson".into()),
            metadata: vec![
                ("stream".into(), stream.into()),
                (
                    "interval".into(),
                    format!("{}/{}", rfc3339_secs(start), rfc3339_secs(end)),
                ),
                ("lines".into(), lines.to_string()),
            ],
        };
        let store = &ctx.store;
        let landed: Vec<LandedObject> = futures::stream::iter(objects)
            .map(|(key, (lines, body))| {
                let attrs = attrs(lines);
                async move {
                    let bytes = body.len() as u64;
                    let outcome = store
                        .put_new(&key, Bytes::from(body), &attrs)
                        .await
                        .map_err(|e| match e {
                            // Different bytes under a deterministic key: retrying cannot help.
                            crate::store::Error::Conflict { .. } => {
                                anyhow::Error::new(Fatal(e.to_string()))
                            }
                            other => anyhow::Error::new(other),
                        })?;
                    let outcome = match outcome {
                        WriteOutcome::Created => "created",
                        WriteOutcome::AlreadyPresent => "already_present",
                    };
                    anyhow::Ok(LandedObject {
                        key,
                        lines,
                        bytes,
                        outcome: outcome.into(),
                    })
                }
            })
            .buffered(8)
            .try_collect()
            .await?;
        for o in &landed {
            ctx.log.info(format!(
                "{} {} ({} lines, {} bytes)",
                o.outcome, o.key, o.lines, o.bytes
            ));
        }
        let out = IngestOutput {
            stream: stream.into(),
            events,
            faults,
            objects: landed,
        };
        Ok(serde_json::to_value(out)?)
    }
}

struct Verify;

#[async_trait::async_trait]
impl TaskBody for Verify {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Verify {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let out: IngestOutput = serde_json::from_value(
            ctx.upstream
                .get("ingest")
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no output from upstream task ingest"))?,
        )?;
        let mut checked = 0u64;
        for o in &out.objects {
            let meta = ctx.store.head(&o.key).await?.ok_or_else(|| {
                anyhow::anyhow!("{} is missing: ingest reported it landed", o.key)
            })?;
            if meta.size != o.bytes {
                anyhow::bail!(
                    "{} holds {} bytes, ingest wrote {}: another writer replaced it",
                    o.key,
                    meta.size,
                    o.bytes
                );
            }
            checked += 1;
        }
        let lines: u64 = out.objects.iter().map(|o| o.lines).sum();
        if lines != out.events {
            anyhow::bail!(
                "ingest generated {} events but landed {lines} lines",
                out.events
            );
        }
        ctx.log
            .info(format!("verified {checked} objects, {lines} lines"));
        Ok(serde_json::json!({ "objects": checked, "lines": lines }))
    }
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
