//! The speed layer's DAGs: one `2-<stream>_realtime_ingest` per generated stream, every 5 minutes, with
//! `ingest` ([`super::IngestBuilder`]) then `verify` ([`super::VerifyBuilder`]).

use std::sync::Arc;

use crate::scheduler::{Dag, Schedule, TaskPolicy};
use crate::sources::stream::generated_streams;

/// Ingest tasks must finish well inside their 5-minute interval.
const POLICY: TaskPolicy = TaskPolicy::new(3, 10, 120, 240);

/// The ID of the ingest DAG of a stream.
pub fn dag_id(stream: &str) -> String {
    format!("2-{stream}_realtime_ingest")
}

/// The ingest DAGs with their bodies: one per stream with a generator (a declared stream
/// without one takes its events from the ingest API and inboxes only).
pub fn dags() -> Result<Vec<Dag>, String> {
    generated_streams()
        .map(|spec| {
            let s = spec.name;
            Ok(Dag::new(
                &dag_id(s),
                &format!("speed layer: land the interval's {s} events under realtime/{s}/"),
                Schedule::cron("*/5 * * * *")?,
                4,
            )
            .generator()
            .task(
                "ingest",
                &[],
                POLICY,
                Arc::new(super::ingest::Ingest { spec }),
            )
            .task(
                "verify",
                &["ingest"],
                POLICY,
                Arc::new(super::verify::Verify),
            ))
        })
        .collect()
}
