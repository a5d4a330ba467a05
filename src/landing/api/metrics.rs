//! This process's ingest counters for `/metrics`: records by outcome, requests by status and
//! bytes landed, per stream (labels are known streams only, so they stay few).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestCounters {
    /// Records by (stream, `accepted` | `rejected`).
    pub records: BTreeMap<(String, &'static str), u64>,
    /// Requests by (stream, HTTP status).
    pub requests: BTreeMap<(String, u16), u64>,
    /// Bytes of accepted records by stream.
    pub bytes: BTreeMap<String, u64>,
    /// Bytes reserved by requests in flight.
    pub inflight_bytes: u64,
}

static COUNTERS: Mutex<Option<IngestCounters>> = Mutex::new(None);

fn update(f: impl FnOnce(&mut IngestCounters)) {
    let mut c = COUNTERS.lock().unwrap_or_else(|p| p.into_inner());
    f(c.get_or_insert_with(IngestCounters::default));
}

/// Counts a request answered with `status` (`stream` is `unknown` for an unknown stream).
pub fn count_request(stream: &str, status: u16) {
    update(|c| *c.requests.entry((stream.to_string(), status)).or_default() += 1);
}

/// Counts the records of an answered request.
pub fn count_records(stream: &str, accepted: u64, rejected: u64, bytes: u64) {
    update(|c| {
        *c.records
            .entry((stream.to_string(), "accepted"))
            .or_default() += accepted;
        *c.records
            .entry((stream.to_string(), "rejected"))
            .or_default() += rejected;
        *c.bytes.entry(stream.to_string()).or_default() += bytes;
    });
}

/// The counters now.
pub fn ingest_counters() -> IngestCounters {
    let c = COUNTERS.lock().unwrap_or_else(|p| p.into_inner());
    let mut snapshot = c.clone().unwrap_or_default();
    snapshot.inflight_bytes = super::budget::inflight_bytes();
    snapshot
}
