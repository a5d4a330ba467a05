//! File-level lineage of the batch layer, like a streaming checkpoint: which speed-layer files
//! each batch run consumed, one manifest per (stream, batch run) under
//! `_lakepipe/lineage/<stream>/<run YYYYMMDDTHHMMSSZ>.json`.
//!
//! The batch run at D takes every file landed at or before D (by a generator run with logical
//! date ≤ D, or by the ingest API or an inbox at a time ≤ D: [`landed_at`]) that no
//! earlier batch run consumed, whatever its event date (late files re-open older dates).
//! Listing is incremental: only date partitions from D − [`LOOKBACK_DAYS`] are listed (late
//! events are at most 72 h old), and only the manifests of that window are read. A re-run of
//! the same batch run reuses its manifest, so it reads exactly the same files.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::clock::{compact, rfc3339_secs};
use crate::layers::speed::{PREFIX as SPEED_PREFIX, landed_at};
use crate::store::Store;

/// Folder of the manifests.
pub const PREFIX: &str = "_lakepipe/lineage";
/// How far back (days before the run) speed-layer partitions are listed.
pub const LOOKBACK_DAYS: i64 = 5;

/// One consumed speed-layer file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConsumedFile {
    /// Object key.
    pub key: String,
    /// Event date of its partition (`YYYY-MM-DD`).
    pub date: String,
    /// When it was landed (RFC 3339): the logical date of the generator run that landed it,
    /// or the time the ingest API or an inbox landed it. Kept as `_ingest_run` in bronze.
    pub ingest_run: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// What one batch run consumed for one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Stream.
    pub stream: String,
    /// Logical date of the batch run (RFC 3339).
    pub batch_run: String,
    /// Files, by key.
    pub files: Vec<ConsumedFile>,
    /// Whether silver holds these files' rows (set by `silver_<stream>`): until then the
    /// serving layer reads them from the speed layer.
    #[serde(default)]
    pub silver_committed: bool,
    /// The application transaction (in `bronze_<stream>`) whose presence marks the run's
    /// files committed. Manifests are recorded before bronze commits them since 2026-12-05,
    /// with this set; an older manifest (none) was recorded after its commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
}

impl Manifest {
    /// Event dates the files touch (the dates to recompute), sorted.
    pub fn dates(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| f.date.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// Key of the manifest of `stream` for the batch run at `run`.
pub fn manifest_key(stream: &str, run: DateTime<Utc>) -> String {
    format!("{PREFIX}/{stream}/{}.json", compact(run))
}

/// The manifest of the batch run at `run`: the recorded one on a re-run, else a new plan.
pub async fn plan(
    store: &Store,
    stream: &str,
    run: DateTime<Utc>,
) -> crate::store::Result<Manifest> {
    if let Some(m) = read_manifest(store, &manifest_key(stream, run)).await? {
        return Ok(m);
    }
    let window_start = run - Duration::days(LOOKBACK_DAYS);
    let consumed: HashSet<String> = manifests(store, stream, window_start, run)
        .await?
        .into_iter()
        .filter(|m| m.batch_run != rfc3339_secs(run))
        .flat_map(|m| m.files.into_iter().map(|f| f.key))
        .collect();
    let files = landed(store, stream, window_start, run)
        .await?
        .into_iter()
        .filter(|f| !consumed.contains(&f.key))
        .collect();
    Ok(Manifest {
        stream: stream.to_string(),
        batch_run: rfc3339_secs(run),
        files,
        silver_committed: false,
        txn: None,
    })
}

/// The recorded manifest of `stream` for the batch run at `run`, if any.
pub async fn recorded(
    store: &Store,
    stream: &str,
    run: DateTime<Utc>,
) -> crate::store::Result<Option<Manifest>> {
    read_manifest(store, &manifest_key(stream, run)).await
}

/// The files a run at `run` consumes when `consumed` holds the keys other runs have committed:
/// every speed-layer file landed up to `run` in the look-back that is not among them.
pub async fn unconsumed(
    store: &Store,
    stream: &str,
    run: DateTime<Utc>,
    consumed: &HashSet<String>,
) -> crate::store::Result<Vec<ConsumedFile>> {
    let window_start = run - Duration::days(LOOKBACK_DAYS);
    Ok(landed(store, stream, window_start, run)
        .await?
        .into_iter()
        .filter(|f| !consumed.contains(&f.key))
        .collect())
}

/// The manifests of the batch runs from `from` on, later runs included.
pub async fn manifests_from(
    store: &Store,
    stream: &str,
    from: DateTime<Utc>,
) -> crate::store::Result<Vec<Manifest>> {
    let folder = format!("{PREFIX}/{stream}");
    let mut listing = store.list_after(&folder, &format!("{folder}/{}", compact(from)));
    let mut out = Vec::new();
    while let Some(meta) = listing.next().await {
        out.extend(read_manifest(store, meta?.location.as_ref()).await?);
    }
    Ok(out)
}

/// The manifest at `key`, if any. An unreadable one is an error, never skipped: its files
/// would be consumed twice.
async fn read_manifest(store: &Store, key: &str) -> crate::store::Result<Option<Manifest>> {
    let Some(b) = store.get_opt(key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&b)
        .map(Some)
        .map_err(|e| crate::store::Error::Request {
            op: "GET",
            key: key.to_string(),
            message: format!("unreadable lineage manifest: {e}"),
        })
}

/// The manifests of the batch runs in [`from`, `until`].
pub async fn manifests(
    store: &Store,
    stream: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> crate::store::Result<Vec<Manifest>> {
    let folder = format!("{PREFIX}/{stream}");
    let mut listing = store.list_after(&folder, &format!("{folder}/{}", compact(from)));
    let last = manifest_key(stream, until);
    let mut out = Vec::new();
    while let Some(meta) = listing.next().await {
        let key = meta?.location.to_string();
        if key > last {
            continue;
        }
        out.extend(read_manifest(store, &key).await?);
    }
    Ok(out)
}

/// Speed-layer files of `stream` landed up to `until`, in event-date
/// partitions from `from`'s date on, by key.
pub async fn landed(
    store: &Store,
    stream: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> crate::store::Result<Vec<ConsumedFile>> {
    let root = format!("{SPEED_PREFIX}/{stream}");
    let offset = format!("{root}/date={}", from.format("%Y-%m-%d"));
    let mut files = Vec::new();
    for meta in store.list_after_cached(&root, &offset).await? {
        let key = meta.location.to_string();
        let Some(name) = key.rsplit('/').next() else {
            continue;
        };
        let Some(landed_by) = landed_at(stream, name) else {
            continue; // not a speed-layer file (the catalog reports it)
        };
        if landed_by > until {
            continue;
        }
        let Some(date) = key
            .split('/')
            .find_map(|s| s.strip_prefix("date="))
            .map(str::to_string)
        else {
            continue;
        };
        files.push(ConsumedFile {
            key,
            date,
            ingest_run: rfc3339_secs(landed_by),
            bytes: meta.size,
        });
    }
    files.sort();
    Ok(files)
}

/// Records a manifest (bronze: before it commits the files, with [`Manifest::txn`] set).
pub async fn record(store: &Store, run: DateTime<Utc>, m: &Manifest) -> crate::store::Result<()> {
    store.put_json(&manifest_key(&m.stream, run), m).await
}
