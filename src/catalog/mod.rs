//! Catalog of the lake (`lakepipe catalog refresh`, DAG `5-lake_catalog_refresh`): walks the
//! landing datasets and the speed layer with paginated listings, verifies every key against
//! its dataset's template, counts objects and bytes per partition, and publishes
//! `metadata/partition_metadata.json` (small: per partition, never per key), Athena DDL under
//! `metadata/athena/` and an operation log under `logs/s3_orchestrator/`; with `[glue]` on
//! (or `--glue`), it also registers the same tables in the Glue Data Catalog.
//!
//! Refreshes are incremental: `_lakepipe/catalog/state.json` remembers, per listing root, the
//! newest partition seen; the next refresh lists only from there (minus the dataset's
//! look-back, which covers the speed layer's late files) and keeps the older partitions'
//! figures. `--full` lists everything again. It never writes data objects.

pub mod athena;
pub mod dag;
pub mod datasets;
pub mod glue;
pub mod query;
pub mod tables;

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::clock::rfc3339_secs;
use crate::store::oplog::OpLog;
use crate::store::{LakeUrl, ObjectAttrs, Store};
pub use datasets::{Dataset, Layout, datasets};

/// The catalog's output document.
pub const METADATA_KEY: &str = "metadata/partition_metadata.json";
/// Where the incremental state lives.
pub const STATE_KEY: &str = "_lakepipe/catalog/state.json";
/// S3 does not move objects smaller than this to other storage classes.
pub const SMALL_OBJECT_BYTES: u64 = 128 * 1024;
/// Most anomalies listed in the metadata (all are counted).
pub const MAX_LISTED_ANOMALIES: usize = 1000;
/// DDL files written at once.
const DDL_WRITES_AT_ONCE: usize = 8;

/// Errors of a refresh.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing, encoding or writing failed (never reported as zero objects).
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Registering the tables in Glue failed (the DDL files are written by then).
    #[error(transparent)]
    Glue(#[from] glue::GlueError),
    /// Glue tables point at S3; a local lake has no S3 location of its own.
    #[error(
        "registering the tables in Glue needs their S3 location, and the lake is local: pass --athena-location s3://bucket/prefix (where the lake's files are), or use a lake on S3"
    )]
    GlueNeedsS3Location,
}

/// Figures of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStats {
    /// Partition path below the dataset (`year=2026/month=02/day=01`).
    pub partition: String,
    /// Objects in it.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects under 128 KB (never transitioned by S3 lifecycle rules).
    pub small_objects: u64,
    /// Smallest key.
    pub first_key: String,
    /// Largest key.
    pub last_key: String,
    /// Newest modification time (UTC).
    pub last_modified: String,
}

impl PartitionStats {
    fn add(&mut self, key: &str, meta: &ObjectMeta) {
        self.objects += 1;
        self.bytes += meta.size;
        if meta.size < SMALL_OBJECT_BYTES {
            self.small_objects += 1;
        }
        if self.first_key.is_empty() || key < self.first_key.as_str() {
            self.first_key = key.to_string();
        }
        if key > self.last_key.as_str() {
            self.last_key = key.to_string();
        }
        let modified = rfc3339_secs(meta.last_modified);
        if modified > self.last_modified {
            self.last_modified = modified;
        }
    }
}

/// A key that does not fit its dataset's layout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Anomaly {
    /// Dataset.
    pub dataset: String,
    /// The offending key (a folder ends with `/`).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Per listing root: where the last refresh stopped and the anomalies found there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RootState {
    /// Newest partition seen below the root.
    watermark: Option<String>,
    anomalies: Vec<Anomaly>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DatasetState {
    /// By full partition path (fan-out folder included).
    partitions: BTreeMap<String, PartitionStats>,
    /// By root key.
    roots: BTreeMap<String, RootState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    datasets: BTreeMap<String, DatasetState>,
}

/// What one dataset's refresh did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Dataset.
    pub dataset: String,
    /// Partitions listed this time (new, or re-checked because they may have grown).
    pub listed_partitions: Vec<String>,
    /// Objects listed this time.
    pub listed_objects: u64,
    /// Partitions known.
    pub partitions: usize,
    /// Objects known.
    pub total_objects: u64,
    /// Bytes known.
    pub total_bytes: u64,
    /// Anomalies known.
    pub anomalies: usize,
}

/// What a refresh did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// `full` or `incremental`.
    pub mode: String,
    /// Per dataset.
    pub datasets: Vec<DatasetSummary>,
    /// The metadata document written.
    pub metadata_key: String,
    /// The DDL files written.
    pub ddl_keys: Vec<String>,
    /// Anomalies in total.
    pub anomalies: usize,
    /// What registering the tables in Glue did, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glue: Option<glue::GlueMetrics>,
}

/// Options of a refresh.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// List everything, ignoring the saved state.
    pub full: bool,
    /// S3 location the Athena DDL points at (default: the lake itself if on S3).
    pub athena_location: Option<String>,
    /// Also register the tables in this Glue database.
    pub glue: Option<crate::config::GlueTarget>,
}

/// Refreshes the catalog of `store`.
pub async fn refresh(store: &Store, opts: &Options, log: &OpLog) -> Result<Summary, Error> {
    if opts.glue.is_some()
        && opts.athena_location.is_none()
        && matches!(store.url(), LakeUrl::Local(_))
    {
        return Err(Error::GlueNeedsS3Location);
    }
    let generated_at = crate::clock::wall_now();
    let mut state: State = if opts.full {
        State::default()
    } else {
        match store.get_opt(STATE_KEY).await? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!("catalog state unreadable ({e}); listing everything");
                State::default()
            }),
            None => State::default(),
        }
    };
    let mode = if opts.full { "full" } else { "incremental" };
    log.info(
        "refresh.start",
        &[("mode", mode.into()), ("lake", store.url().to_string())],
    );
    let all = datasets();
    let mut summaries = Vec::new();
    for ds in &all {
        let st = state.datasets.entry(ds.name.clone()).or_default();
        let summary = refresh_dataset(store, ds, st, log).await?;
        log.info(
            "dataset",
            &[
                ("dataset", ds.name.clone()),
                (
                    "listed_partitions",
                    summary.listed_partitions.len().to_string(),
                ),
                ("listed_objects", summary.listed_objects.to_string()),
                ("partitions", summary.partitions.to_string()),
                ("objects", summary.total_objects.to_string()),
                ("bytes", summary.total_bytes.to_string()),
                ("anomalies", summary.anomalies.to_string()),
            ],
        );
        summaries.push(summary);
    }
    let doc = metadata_document(store, &all, &state, generated_at);
    store.put_json(METADATA_KEY, &doc).await?;
    store.put_json(STATE_KEY, &state).await?;
    log.info("metadata.written", &[("key", METADATA_KEY.into())]);

    let location = athena_location(store, opts);
    let delta = tables::delta_tables(store).await?;
    let defs = tables::tables(&all, &delta, &location);
    // One file per table, written a few at once (on S3 each is a request).
    let attrs = ObjectAttrs {
        content_type: Some("application/sql".into()),
        metadata: Vec::new(),
    };
    let ddl_keys: Vec<String> = futures::stream::iter(athena::ddl(&defs, &location))
        .map(|(name, sql)| {
            let key = format!("{}/{name}.sql", athena::PREFIX);
            let attrs = &attrs;
            async move {
                store.put(&key, Bytes::from(sql), attrs).await?;
                Ok::<_, crate::store::Error>(key)
            }
        })
        .buffered(DDL_WRITES_AT_ONCE)
        .try_collect()
        .await?;
    log.info(
        "ddl.written",
        &[
            ("files", ddl_keys.len().to_string()),
            ("location", location.clone()),
        ],
    );
    let glue = match &opts.glue {
        Some(target) => Some(register_in_glue(target, defs, &location, log).await?),
        None => None,
    };
    let anomalies = summaries.iter().map(|s| s.anomalies).sum();
    Ok(Summary {
        mode: mode.into(),
        datasets: summaries,
        metadata_key: METADATA_KEY.into(),
        ddl_keys,
        anomalies,
        glue,
    })
}

/// Registers `defs` in the Glue database of `target`, logging what changed.
async fn register_in_glue(
    target: &crate::config::GlueTarget,
    defs: Vec<tables::TableDef>,
    location: &str,
    log: &OpLog,
) -> Result<glue::GlueMetrics, Error> {
    let plan = glue::GlueSync::new(glue::client(target).await, &target.database)
        .with_catalog_id(target.catalog_id.clone())
        .with_description(format!("Tables of the lakepipe lake at {location}"))
        .with_tables(defs)
        .plan()
        .await?;
    let m = plan.execute().await?;
    let updated: Vec<String> = m
        .updated
        .iter()
        .map(|(t, fields)| format!("{t} ({})", fields.join(", ")))
        .collect();
    log.info(
        "glue.registered",
        &[
            ("database", m.database.clone()),
            ("database_created", m.database_created.to_string()),
            ("created", m.created.len().to_string()),
            ("updated", updated.join("; ")),
            ("unchanged", m.unchanged.to_string()),
        ],
    );
    Ok(m)
}

/// The S3 location the DDL points at: the flag, else the lake if it is on S3, else the
/// default bucket (a local lake has no S3 location; the DDL says so in a comment).
fn athena_location(store: &Store, opts: &Options) -> String {
    if let Some(l) = &opts.athena_location {
        return l.trim_end_matches('/').to_string();
    }
    match store.url() {
        LakeUrl::S3 { .. } => store.url().to_string(),
        LakeUrl::Local(_) => format!("s3://{}", crate::bootstrap::DEFAULT_BUCKET),
    }
}

/// Refreshes one dataset in `st`.
async fn refresh_dataset(
    store: &Store,
    ds: &Dataset,
    st: &mut DatasetState,
    log: &OpLog,
) -> Result<DatasetSummary, Error> {
    let mut listed = Walk::default();
    match &ds.fanout {
        None => walk_root(store, ds, &ds.prefix, "", st, &mut listed).await?,
        Some(f) => {
            // One level down: the fan-out folders are roots; anything else is an anomaly,
            // listed in full every time (it is not supposed to exist at all).
            let (dirs, objects) = store.list_dir(&ds.prefix).await?;
            let mut stray = Vec::new();
            for o in objects {
                let key = o.location.to_string();
                if key != ds.prefix {
                    stray.push(anomaly(ds, &key, outside_layout(ds)));
                }
            }
            for dir in dirs {
                let name = dir.rsplit('/').next().unwrap_or_default();
                if f.pattern.is_match(name) {
                    walk_root(store, ds, &dir, &format!("{name}/"), st, &mut listed).await?;
                } else {
                    let mut all = store.list(&dir);
                    while let Some(meta) = all.next().await {
                        let key = meta?.location.to_string();
                        stray.push(anomaly(
                            ds,
                            &key,
                            format!(
                                "folder `{name}` is not {}=<value> (expected {})",
                                f.key,
                                ds.template()
                            ),
                        ));
                    }
                }
            }
            listed.anomalies.extend(stray.iter().cloned());
            st.roots.insert(
                ds.prefix.clone(),
                RootState {
                    watermark: None,
                    anomalies: stray,
                },
            );
        }
    }
    for a in &listed.anomalies {
        log.event(
            crate::store::oplog::Level::Warn,
            "anomaly",
            &[
                ("dataset", a.dataset.clone()),
                ("key", a.key.clone()),
                ("reason", a.reason.clone()),
            ],
        );
    }
    Ok(DatasetSummary {
        dataset: ds.name.clone(),
        listed_partitions: listed.partitions,
        listed_objects: listed.objects,
        partitions: st.partitions.len(),
        total_objects: st.partitions.values().map(|p| p.objects).sum(),
        total_bytes: st.partitions.values().map(|p| p.bytes).sum(),
        anomalies: st.roots.values().map(|r| r.anomalies.len()).sum(),
    })
}

/// What this refresh listed.
#[derive(Debug, Default)]
struct Walk {
    partitions: Vec<String>,
    objects: u64,
    anomalies: Vec<Anomaly>,
}

/// Reason of a key that is not below a partition of `ds`.
fn outside_layout(ds: &Dataset) -> String {
    format!(
        "outside the partition layout (expected {}/<file>)",
        ds.template()
    )
}

fn anomaly(ds: &Dataset, key: &str, reason: String) -> Anomaly {
    Anomaly {
        dataset: ds.name.clone(),
        key: key.to_string(),
        reason,
    }
}

/// Lists one root (a dataset, or one fan-out folder of it) from where the last refresh
/// stopped, and merges what it finds into `st`.
async fn walk_root(
    store: &Store,
    ds: &Dataset,
    root: &str,
    part_prefix: &str,
    st: &mut DatasetState,
    listed: &mut Walk,
) -> Result<(), Error> {
    let rs = st.roots.entry(root.to_string()).or_default();
    // Re-list from the newest partition seen, minus the look-back: it may still be growing.
    let from: Option<String> = rs.watermark.as_ref().map(|w| {
        let segs: Vec<&str> = w.split('/').collect();
        match ds.layout.parse(&segs) {
            Some(t) => ds.layout.format(t - ds.lookback),
            None => w.clone(),
        }
    });
    let offset_key = from.as_ref().map(|p| format!("{root}/{p}"));
    // From an offset, the objects of the look-back window: on a local lake only the folders
    // from the offset on are read (those unchanged since the last refresh not at all), where
    // object_store's local listing walks the whole history to filter it; S3 starts after it.
    let mut listing = match &offset_key {
        Some(o) => futures::stream::iter(store.list_after_cached(root, o).await?)
            .map(Ok)
            .boxed(),
        None => store.list(root),
    };
    // Forget what is about to be listed again.
    let redo = |part: &str| match &from {
        None => true,
        Some(p) => part >= p.as_str(),
    };
    st.partitions
        .retain(|full, _| full.strip_prefix(part_prefix).is_none_or(|rel| !redo(rel)));
    rs.anomalies.retain(|a| {
        offset_key
            .as_ref()
            .is_some_and(|o| a.key.as_str() <= o.as_str())
    });

    let depth = ds.layout.depth();
    let mut fresh: BTreeMap<String, PartitionStats> = BTreeMap::new();
    let mut markers: BTreeMap<String, String> = BTreeMap::new();
    let mut found = Vec::new();
    let mut newest = rs.watermark.clone();
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let key = meta.location.to_string();
        let Some(rel) = key.strip_prefix(root).and_then(|r| r.strip_prefix('/')) else {
            continue; // the root's own folder marker
        };
        listed.objects += 1;
        let segs: Vec<&str> = rel.split('/').collect();
        let n = segs.len().min(depth);
        let partition = ds.layout.parse(&segs[..n]).map(|_| segs[..n].join("/"));
        let Some(part) = partition else {
            let reason = if segs.len() <= depth {
                outside_layout(ds)
            } else {
                format!(
                    "partition `{}` does not match {}",
                    segs[..depth].join("/"),
                    ds.layout.template()
                )
            };
            found.push(anomaly(ds, &key, reason));
            continue;
        };
        if newest.as_ref().is_none_or(|w| part > *w) {
            newest = Some(part.clone());
        }
        if segs.len() == depth {
            if meta.size == 0 {
                markers.insert(part, format!("{key}/"));
            } else {
                found.push(anomaly(
                    ds,
                    &key,
                    "object named like a partition folder".into(),
                ));
            }
            continue;
        }
        let full = format!("{part_prefix}{part}");
        fresh
            .entry(full.clone())
            .or_insert_with(|| PartitionStats {
                partition: full,
                objects: 0,
                bytes: 0,
                small_objects: 0,
                first_key: String::new(),
                last_key: String::new(),
                last_modified: String::new(),
            })
            .add(&key, &meta);
        if segs.len() > depth + 1 {
            found.push(anomaly(
                ds,
                &key,
                format!(
                    "nested below the partition (expected {}/<file>)",
                    ds.template()
                ),
            ));
        } else if !ds.file.is_match(segs[depth]) {
            found.push(anomaly(
                ds,
                &key,
                format!("file name does not match {}", ds.file_hint),
            ));
        }
        if meta.size == 0 {
            found.push(anomaly(ds, &key, "zero-byte object".into()));
        }
    }
    for (part, marker) in markers {
        if !fresh.contains_key(&format!("{part_prefix}{part}")) {
            found.push(anomaly(
                ds,
                &marker,
                "empty partition (folder marker without objects)".into(),
            ));
        }
    }
    listed.partitions.extend(fresh.keys().cloned());
    st.partitions.extend(fresh);
    rs_update(st, root, newest, &found);
    listed.anomalies.extend(found);
    Ok(())
}

fn rs_update(st: &mut DatasetState, root: &str, newest: Option<String>, found: &[Anomaly]) {
    let rs = st.roots.entry(root.to_string()).or_default();
    rs.watermark = newest;
    rs.anomalies.extend(found.iter().cloned());
    rs.anomalies.sort();
    rs.anomalies.dedup();
}

/// `metadata/partition_metadata.json` (SPEC "Catalog").
fn metadata_document(
    store: &Store,
    all: &[Dataset],
    state: &State,
    generated_at: DateTime<Utc>,
) -> serde_json::Value {
    use serde_json::json;
    let (bucket, prefix) = match store.url() {
        LakeUrl::S3 { bucket, prefix } => (json!(bucket), prefix.clone()),
        LakeUrl::Local(_) => (serde_json::Value::Null, String::new()),
    };
    let mut partitions = serde_json::Map::new();
    let mut config = serde_json::Map::new();
    let mut small = serde_json::Map::new();
    let mut anomalies: Vec<&Anomaly> = Vec::new();
    let empty = DatasetState::default();
    for ds in all {
        let st = state.datasets.get(&ds.name).unwrap_or(&empty);
        let objects: u64 = st.partitions.values().map(|p| p.objects).sum();
        let bytes: u64 = st.partitions.values().map(|p| p.bytes).sum();
        partitions.insert(
            ds.name.clone(),
            json!({
                "total_objects": objects,
                "total_bytes": bytes,
                "total_size_mb": (bytes as f64 / 1_048_576.0 * 1000.0).round() / 1000.0,
                "partition_count": st.partitions.len(),
                "by_partition": st.partitions.values().collect::<Vec<_>>(),
            }),
        );
        config.insert(
            ds.name.clone(),
            json!({
                "prefix": format!("{}/", ds.prefix),
                "partition_keys": ds.partition_keys(),
                "format": ds.format,
                "file_pattern": ds.file_hint,
            }),
        );
        small.insert(
            ds.name.clone(),
            json!(st.partitions.values().map(|p| p.small_objects).sum::<u64>()),
        );
        anomalies.extend(st.roots.values().flat_map(|r| r.anomalies.iter()));
    }
    let total = anomalies.len();
    anomalies.truncate(MAX_LISTED_ANOMALIES);
    json!({
        "generated_at": rfc3339_secs(generated_at),
        "lake": store.url().to_string(),
        "bucket_name": bucket,
        "prefix": prefix,
        "partitions": partitions,
        "config": config,
        "anomalies": anomalies,
        "anomalies_total": total,
        "small_objects": small,
        "small_object_threshold_bytes": SMALL_OBJECT_BYTES,
    })
}
