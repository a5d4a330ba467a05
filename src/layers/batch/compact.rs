//! Compaction and retention of the lake's Delta tables: `compact` (the last task of
//! `3-batch_etl_all_streams`) merges the small files ([`merge_tier`]) of the date partitions
//! the batch run rewrote, in every table it rewrote; `lakepipe compact` (Delta optimize of
//! every small file) and `lakepipe vacuum` do the same for whole tables by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::{FilterOp, FilterValue};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use super::error::delta;
use super::lineage::{self, Manifest};
use super::{Error, info};
use crate::layers::write::{TARGET_FILE_BYTES, parquet_properties_for};
use crate::scheduler::task::{TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::sources::stream::all_streams;
use crate::store::Store;

/// What compaction did to one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compacted {
    /// Files written.
    pub files_added: u64,
    /// Small files replaced.
    pub files_removed: u64,
    /// Partitions that had files merged.
    pub partitions: u64,
}

/// Optimizes the table at `path`, only the `dates` partitions if given, with `props` in the
/// commit if given; `None` if there is no table.
pub async fn compact_table(
    store: &Store,
    path: &str,
    dates: Option<&[String]>,
    props: Option<CommitProperties>,
) -> Result<Option<Compacted>, Error> {
    compact_table_to(store, path, dates, props, TARGET_FILE_BYTES).await
}

/// [`compact_table`] with another target size: only files smaller than `target` are merged,
/// into files of up to `target` bytes.
pub async fn compact_table_to(
    store: &Store,
    path: &str,
    dates: Option<&[String]>,
    props: Option<CommitProperties>,
    target: u64,
) -> Result<Option<Compacted>, Error> {
    let Some(table) = store.delta_table(path).await.map_err(delta(path))? else {
        return Ok(None);
    };
    let values: Vec<&str> = dates
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect();
    let filters = [("date", FilterOp::In, FilterValue::Set(values))];
    // The layers' Parquet settings for the table's columns, as the files merged were written:
    // Snappy, not optimize's own default, zstd (merging a day of unified api_logs took 0.82 s
    // with it, 0.47 s without), and no dictionary for columns whose values are all distinct
    // (hashing each value into a dictionary that Parquet then drops was half of a merge's
    // encoding time in a profile of serving upkeep).
    let schema = table
        .snapshot()
        .map_err(delta(path))?
        .snapshot()
        .arrow_schema();
    let mut op = table
        .optimize()
        .with_writer_properties(parquet_properties_for(&schema).build())
        .with_target_size(std::num::NonZeroU64::new(target.max(1)).expect("non-zero"));
    if dates.is_some() {
        op = op.with_filters(&filters);
    }
    if let Some(props) = props {
        op = op.with_commit_properties(props);
    }
    let (_, m) = op.await.map_err(delta(path))?;
    Ok(Some(Compacted {
        files_added: m.num_files_added,
        files_removed: m.num_files_removed,
        partitions: m.partitions_optimized,
    }))
}

/// Files of this size or less are always small.
pub const SMALL_FILE_BYTES: u64 = 1 << 20;

/// The files of a partition (their sizes) that a compaction merges, and their bytes: from the
/// smallest up, each file no larger than the ones before it together (or than
/// [`SMALL_FILE_BYTES`]), and below the writers' target size. Merging them into one file of
/// their total leaves the larger files untouched, so appends every few seconds do not make
/// each compaction rewrite the whole day, nor a late file the date's batch output.
pub fn merge_tier(mut sizes: Vec<u64>) -> (u64, u64) {
    sizes.sort_unstable();
    let (mut n, mut bytes) = (0, 0u64);
    for s in sizes {
        if s >= TARGET_FILE_BYTES || s > bytes.max(SMALL_FILE_BYTES) {
            break;
        }
        n += 1;
        bytes += s;
    }
    (n, bytes)
}

/// Whether the table at `snapshot` is partitioned by `date`.
pub fn partitioned_by_date(snapshot: &deltalake::table::state::DeltaTableState) -> bool {
    snapshot
        .metadata()
        .partition_columns()
        .iter()
        .any(|c| c == "date")
}

/// The small-file tier ([`merge_tier`]) of each partition of the table at `snapshot` that has
/// one, by `date` (`""` for a table not partitioned by date): (files, bytes).
pub fn small_files(
    snapshot: &deltalake::table::state::DeltaTableState,
) -> BTreeMap<String, (u64, u64)> {
    let by_date = partitioned_by_date(snapshot);
    let mut sizes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for f in snapshot.log_data().iter() {
        let date = match by_date {
            true => f
                .partition_values_map()
                .remove("date")
                .flatten()
                .unwrap_or_default(),
            false => String::new(),
        };
        sizes
            .entry(date)
            .or_default()
            .push(u64::try_from(f.size()).unwrap_or_default());
    }
    sizes
        .into_iter()
        .map(|(date, sizes)| (date, merge_tier(sizes)))
        .filter(|(_, (n, _))| *n > 0)
        .collect()
}

/// Merges, in each of the `dates` partitions of the table at `path`, the small files
/// ([`merge_tier`]) into one, where there are two or more: one Delta optimize per partition,
/// with a target just above their bytes, so larger files are left as they are (deltalake
/// merges the files next to each other in the log; a small one with a larger file between
/// them stays). `None` if there is no table. A date written by two batch runs (its first
/// hours at 02:00 of the date, the rest the next day) keeps its two files: merging them
/// rewrote the whole day of the table to add a tenth of it.
pub async fn compact_small_files(
    store: &Store,
    path: &str,
    dates: &[String],
) -> Result<Option<Compacted>, Error> {
    let Some(table) = store.delta_table(path).await.map_err(delta(path))? else {
        return Ok(None);
    };
    let tiers = small_files(table.snapshot().map_err(delta(path))?);
    let mut out = Compacted::default();
    for date in dates {
        let Some((files, bytes)) = tiers.get(date).copied() else {
            continue;
        };
        if files < 2 {
            continue;
        }
        if let Some(c) = merge_small_files(store, path, Some(date), bytes, None).await? {
            out.files_added += c.files_added;
            out.files_removed += c.files_removed;
            out.partitions += c.partitions;
        }
    }
    Ok(Some(out))
}

/// Merges the small-file tier of `bytes` ([`merge_tier`]) of the `date` partition of the
/// table at `path` (the whole table if `None`) into one file: Delta optimize with a target
/// just above their bytes, so the files already merged into larger ones stay as they are
/// until the small ones add up to their size (a row is rewritten a logarithmic number of
/// times, not once per compaction). `props` in the commit if given; `None` if there is no
/// table.
pub async fn merge_small_files(
    store: &Store,
    path: &str,
    date: Option<&String>,
    bytes: u64,
    props: Option<CommitProperties>,
) -> Result<Option<Compacted>, Error> {
    let dates = date.map(std::slice::from_ref);
    let target = (bytes + 1).min(TARGET_FILE_BYTES);
    compact_table_to(store, path, dates, props, target).await
}

/// Deletes files no longer referenced by the table at `path` and older than `retain`;
/// returns how many were deleted. Below Delta's 7-day default the caller has said so
/// explicitly.
pub async fn vacuum_table(store: &Store, path: &str, retain: Duration) -> Result<usize, Error> {
    vacuum_table_as_of(store, path, retain, None, None).await
}

/// [`vacuum_table`] judged at `now_millis` (Unix milliseconds of the clock that the files'
/// removal times are compared with; `None`: the wall clock), with `props` in the vacuum's
/// commits if given.
pub async fn vacuum_table_as_of(
    store: &Store,
    path: &str,
    retain: Duration,
    now_millis: Option<i64>,
    props: Option<CommitProperties>,
) -> Result<usize, Error> {
    let Some(table) = store.delta_table(path).await.map_err(delta(path))? else {
        return Ok(0);
    };
    let retain = chrono::Duration::from_std(retain)?;
    let mut op = table
        .vacuum()
        .with_retention_period(retain)
        .with_enforce_retention_duration(retain >= chrono::Duration::days(7));
    if let Some(now) = now_millis {
        op = op.with_clock(Arc::new(FixedClock(now)));
    }
    if let Some(props) = props {
        op = op.with_commit_properties(props);
    }
    let (_, m) = op.await.map_err(delta(path))?;
    Ok(m.files_deleted.len())
}

/// Deletes the data files that the commits of the table at `path` from version `after` (the
/// last vacuum's cut, read again: a file that vacuum left is deleted now) up to and including
/// `to` removed, unless the table holds them again; returns how many it deleted.
///
/// [`vacuum_table_as_of`] deletes every expired tombstone the log still holds: Delta keeps a
/// removed file's tombstone for `delta.deletedFileRetentionDuration` (7 days by default, by the
/// wall clock), and deltalake counts a file already gone as deleted, so a vacuum every hour
/// deleted a week of files again each time. This reads only the commits since the last vacuum.
/// `None` when it cannot stand in for a vacuum — a commit of the range is no longer in the log,
/// or a removal it does not handle (an absolute path, a deletion vector): vacuum the table.
/// The count leaves out files already gone where the store says so (a local lake); S3 answers
/// a delete of a missing key as done, so there version `after`'s files are counted again.
pub async fn delete_removed(
    store: &Store,
    path: &str,
    after: u64,
    to: u64,
) -> Result<Option<usize>, Error> {
    use deltalake::kernel::Action;
    use futures::{StreamExt as _, TryStreamExt as _};
    use object_store::path::Path;

    let Some(table) = store.delta_table(path).await.map_err(delta(path))? else {
        return Ok(Some(0));
    };
    let mut removed: Vec<Path> = Vec::new();
    for version in after..=to {
        let Some(actions) = crate::store::commit_actions(&table, version)
            .await
            .map_err(delta(path))?
        else {
            return Ok(None);
        };
        for action in actions {
            if let Action::Remove(r) = action {
                if r.path.contains("://") || r.deletion_vector.is_some() {
                    return Ok(None);
                }
                // As deltalake's vacuum names a tombstone's file (percent-encoding kept).
                removed.push(Path::parse(&r.path).unwrap_or_else(|_| Path::from(r.path.as_str())));
            }
        }
    }
    if removed.is_empty() {
        return Ok(Some(0));
    }
    let live: std::collections::HashSet<Path> = table
        .snapshot()
        .map_err(delta(path))?
        .log_data()
        .iter()
        .map(|f| f.object_store_path())
        .collect();
    removed.retain(|p| !live.contains(p));
    removed.sort();
    removed.dedup();
    let deleted: Vec<bool> = table
        .log_store()
        .object_store(None)
        .delete_stream(futures::stream::iter(removed).map(Ok).boxed())
        .map(|r| match r {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        })
        .try_collect()
        .await
        .map_err(|e| delta(path)(deltalake::DeltaTableError::from(e)))?;
    Ok(Some(deleted.into_iter().filter(|d| *d).count()))
}

/// deltalake's vacuum clock stopped at one instant (Unix milliseconds).
#[derive(Debug)]
struct FixedClock(i64);

impl deltalake::operations::vacuum::Clock for FixedClock {
    fn current_timestamp_millis(&self) -> i64 {
        self.0
    }
}

/// The body of `compact`.
pub struct Compact;

#[async_trait::async_trait]
impl TaskBody for Compact {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = CompactBuilder::new(&ctx.store, ctx.logical_date)
            .with_log(&ctx.log)
            .await?;
        // Compaction rewrites files of a table into the same table: its input and output.
        for path in metrics.tables.keys() {
            ctx.rewrote_table(path).await;
        }
        output(&metrics)
    }
}

/// Tables optimized at once. Merging a date's few files is one bin of Delta optimize, on one
/// core; tables one after another left the other core idle (the 5 bronze merges of a
/// simulated day took 1.6 s). As many as the batch run's tasks at once
/// ([`super::dag::ACTIVE_TASKS`]): the same bound on memory.
const TABLES_AT_ONCE: usize = super::dag::ACTIVE_TASKS;

/// What `compact` did: for each table it optimized (that exists and had dates to compact),
/// by path, what compaction did to it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct CompactMetrics {
    /// By table path.
    pub tables: BTreeMap<String, Compacted>,
}

/// What `compact` will do for one run, decided without I/O: every table the batch run
/// rewrote, in DAG order (bronze, silver, quarantine of each stream, then the gold facts),
/// with the date partitions to optimize; tables of streams the run did not touch are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactPlan {
    /// (table path, dates), the dates never empty.
    pub tables: Vec<(String, Vec<String>)>,
}

impl CompactPlan {
    /// The plan of the run at `logical_date` whose lineage manifests, by stream, are
    /// `manifests`.
    pub fn new(_logical_date: DateTime<Utc>, manifests: &BTreeMap<String, Manifest>) -> Self {
        let dates_of: BTreeMap<&str, Vec<String>> = manifests
            .iter()
            .map(|(s, m)| (s.as_str(), m.dates()))
            .collect();
        let mut tables: Vec<(String, &str)> = Vec::new();
        for s in all_streams() {
            for layer in ["bronze", "silver", "quarantine"] {
                tables.push((super::table_path(layer, s.name), s.name));
            }
        }
        for f in crate::pipeline::active().facts {
            tables.push((super::table_path("gold", f.name), f.stream));
        }
        CompactPlan {
            tables: tables
                .into_iter()
                .filter_map(|(path, stream)| {
                    let dates = dates_of.get(stream).cloned().unwrap_or_default();
                    (!dates.is_empty()).then_some((path, dates))
                })
                .collect(),
        }
    }

    /// Optimizes the planned partitions of each table that exists.
    pub async fn execute(
        &self,
        store: &Store,
        log: Option<&TaskLog>,
    ) -> Result<CompactMetrics, Error> {
        let mut out = CompactMetrics::default();
        let merges: Vec<_> = self
            .tables
            .iter()
            .map(|(path, dates)| async move {
                Ok::<_, Error>((path, compact_small_files(store, path, dates).await?))
            })
            .collect();
        let mut merges = futures::stream::iter(merges).buffered(TABLES_AT_ONCE);
        while let Some((path, compacted)) = merges.try_next().await? {
            if let Some(c) = compacted {
                info(
                    log,
                    format!(
                        "{path}: {} files merged into {} over {} partitions",
                        c.files_removed, c.files_added, c.partitions
                    ),
                );
                out.tables.insert(path.clone(), c);
            }
        }
        Ok(out)
    }
}

/// `compact` as an operation: loads every stream's lineage manifest, plans, optimizes.
pub struct CompactBuilder<'a> {
    store: &'a Store,
    logical_date: DateTime<Utc>,
    log: Option<&'a TaskLog>,
}

impl<'a> CompactBuilder<'a> {
    /// `compact` in the run at `logical_date`.
    pub fn new(store: &'a Store, logical_date: DateTime<Utc>) -> Self {
        CompactBuilder {
            store,
            logical_date,
            log: None,
        }
    }

    /// Writes progress lines to `log`.
    pub fn with_log(mut self, log: &'a TaskLog) -> Self {
        self.log = Some(log);
        self
    }

    async fn run(self) -> Result<CompactMetrics, Error> {
        let mut manifests = BTreeMap::new();
        for s in all_streams() {
            let m = lineage::plan(self.store, s.name, self.logical_date).await?;
            manifests.insert(s.name.to_string(), m);
        }
        CompactPlan::new(self.logical_date, &manifests)
            .execute(self.store, self.log)
            .await
    }
}

impl<'a> std::future::IntoFuture for CompactBuilder<'a> {
    type Output = Result<CompactMetrics, Error>;
    type IntoFuture = futures::future::BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::batch::lineage::ConsumedFile;

    fn manifest(stream: &str, dates: &[&str]) -> Manifest {
        Manifest {
            stream: stream.into(),
            batch_run: "2026-02-02T02:00:00Z".into(),
            files: dates
                .iter()
                .map(|d| ConsumedFile {
                    key: format!("realtime/{stream}/date={d}/hour=10/f.jsonl"),
                    date: (*d).into(),
                    ingest_run: format!("{d}T10:05:00Z"),
                    bytes: 0,
                })
                .collect(),
            silver_committed: false,
            txn: None,
        }
    }

    #[test]
    fn the_plan_lists_the_tables_of_the_touched_streams_without_a_store() {
        let run = crate::clock::parse_utc("2026-02-02T02:00:00Z").unwrap();
        let mut manifests: BTreeMap<String, Manifest> = all_streams()
            .iter()
            .map(|s| (s.name.to_string(), manifest(s.name, &[])))
            .collect();
        manifests.insert(
            "financial_transactions".into(),
            manifest("financial_transactions", &["2026-02-01", "2026-01-31"]),
        );
        let plan = CompactPlan::new(run, &manifests);
        let dates = vec!["2026-01-31".to_string(), "2026-02-01".to_string()];
        let expected: Vec<(String, Vec<String>)> = [
            "batch/bronze/financial_transactions",
            "batch/silver/financial_transactions",
            "batch/quarantine/financial_transactions",
            "batch/gold/fact_financial_daily",
            "batch/gold/fact_fraud_summary",
        ]
        .into_iter()
        .map(|p| (p.to_string(), dates.clone()))
        .collect();
        assert_eq!(plan.tables, expected);
    }

    #[test]
    fn metrics_are_the_task_output_an_object_by_table() {
        assert_eq!(
            serde_json::to_value(CompactMetrics::default()).unwrap(),
            serde_json::json!({})
        );
        let m = CompactMetrics {
            tables: BTreeMap::from([(
                "batch/bronze/api_logs".to_string(),
                Compacted {
                    files_added: 1,
                    files_removed: 3,
                    partitions: 1,
                },
            )]),
        };
        let json = serde_json::json!({
            "batch/bronze/api_logs": { "files_added": 1, "files_removed": 3, "partitions": 1 },
        });
        assert_eq!(serde_json::to_value(&m).unwrap(), json);
        assert_eq!(serde_json::from_value::<CompactMetrics>(json).unwrap(), m);
    }

    /// A local lake whose table `t` was made by one append (one file) of `rows` rows per value
    /// of `values`: a column `n` of that value, and `_line`, the row's number in its file.
    async fn appended(values: &[i64], rows: usize) -> (tempfile::TempDir, Store) {
        use deltalake::arrow::array::{Int64Array, RecordBatch};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};

        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("_line", DataType::Int64, false),
        ]));
        for n in values {
            let b = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(vec![*n; rows])),
                    Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                ],
            )
            .unwrap();
            store
                .delta_table_or_new("t")
                .await
                .unwrap()
                .write(vec![b])
                .await
                .unwrap();
        }
        (dir, store)
    }

    /// A merged file is written with the layers' Parquet settings for its columns, as the
    /// files it replaces were: Snappy, not optimize's default (zstd), and a dictionary only for
    /// a column whose values repeat (`n`), not for one whose values are distinct (`_line`).
    #[tokio::test]
    async fn a_merged_file_is_written_with_the_layers_parquet_settings() {
        use deltalake::parquet::basic::Compression;
        use deltalake::parquet::file::reader::{FileReader as _, SerializedFileReader};

        let (dir, store) = appended(&[1, 2], 1000).await;
        let merged = compact_table(&store, "t", None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((merged.files_removed, merged.files_added), (2, 1));
        let table = store.delta_table("t").await.unwrap().unwrap();
        let files: Vec<String> = table
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect();
        assert_eq!(files.len(), 1);
        let file = std::fs::File::open(dir.path().join("t").join(&files[0])).unwrap();
        let meta = SerializedFileReader::new(file).unwrap().metadata().clone();
        let codecs: Vec<Compression> = meta
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns().iter().map(|c| c.compression()))
            .collect();
        assert!(!codecs.is_empty());
        assert!(
            codecs.iter().all(|c| *c == Compression::SNAPPY),
            "{codecs:?}"
        );
        let dictionary = |column: &str| -> Vec<bool> {
            meta.row_groups()
                .iter()
                .flat_map(|rg| rg.columns())
                .filter(|c| c.column_path().string() == column)
                .map(|c| c.dictionary_page_offset().is_some())
                .collect()
        };
        assert_eq!(dictionary("n"), [true]);
        assert_eq!(dictionary("_line"), [false]);
    }

    /// A vacuum since the last cut deletes the files the commits after it removed, each once,
    /// and leaves a range whose commits are gone to a vacuum of the table.
    #[tokio::test]
    async fn only_the_files_removed_since_the_last_cut_are_deleted() {
        let (dir, store) = appended(&[1, 2, 3], 10).await;
        // Version 3: the three files merged into one.
        let merged = compact_table(&store, "t", None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((merged.files_removed, merged.files_added), (3, 1));
        let parquet = || {
            std::fs::read_dir(dir.path().join("t"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".parquet")
                })
                .count()
        };
        assert_eq!(parquet(), 4);
        // The appends removed nothing.
        assert_eq!(delete_removed(&store, "t", 0, 2).await.unwrap(), Some(0));
        assert_eq!(parquet(), 4);
        assert_eq!(delete_removed(&store, "t", 2, 3).await.unwrap(), Some(3));
        assert_eq!(parquet(), 1);
        let table = store.delta_table("t").await.unwrap().unwrap();
        assert_eq!(table.snapshot().unwrap().log_data().num_files(), 1);
        // Again: nothing is left to delete, and nothing is counted.
        assert_eq!(delete_removed(&store, "t", 2, 3).await.unwrap(), Some(0));
        // A commit of the range gone from the log: the caller vacuums the table instead.
        std::fs::remove_file(dir.path().join("t/_delta_log/00000000000000000001.json")).unwrap();
        assert_eq!(delete_removed(&store, "t", 0, 3).await.unwrap(), None);
    }

    #[test]
    fn a_merge_takes_the_small_files_and_leaves_the_larger_tiers() {
        let mb = 1u64 << 20;
        // Sixteen appends of 60 kB and a file of 1 MiB merged before: all merge (the 1 MiB
        // file is no larger than the small ones together).
        let mut sizes = vec![60_000; 16];
        sizes.push(mb);
        assert_eq!(merge_tier(sizes), (17, 16 * 60_000 + mb));
        // A day's big file stays: it is larger than everything smaller together.
        let mut sizes = vec![60_000; 16];
        sizes.extend([8 * mb, 2 * mb]);
        assert_eq!(merge_tier(sizes), (16, 16 * 60_000));
        // Files at the writers' target size never merge.
        assert_eq!(merge_tier(vec![TARGET_FILE_BYTES; 3]), (0, 0));
        assert_eq!(merge_tier(Vec::new()), (0, 0));
    }

    /// Rows for date partition `date`: `rows` values from a linear congruential sequence
    /// (Parquet cannot shrink them much), appended as one file to the table `p`.
    async fn append_to_date(store: &Store, date: &str, rows: usize, seed: i64) {
        use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("date", DataType::Utf8, false),
        ]));
        let values: Vec<i64> = (0..rows as i64)
            .map(|i| {
                (i + seed)
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .rotate_left(17)
            })
            .collect();
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(values)),
                Arc::new(StringArray::from(vec![date; rows])),
            ],
        )
        .unwrap();
        store
            .delta_table_or_new("p")
            .await
            .unwrap()
            .write(vec![b])
            .with_partition_columns(["date"])
            .await
            .unwrap();
    }

    /// The live files of `p` in `date`'s partition: (path, size).
    async fn files_of(store: &Store, date: &str) -> Vec<(String, u64)> {
        let table = store.delta_table("p").await.unwrap().unwrap();
        let mut files: Vec<(String, u64)> = table
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .filter(|f| f.path().contains(&format!("date={date}")))
            .map(|f| (f.path().to_string(), f.size() as u64))
            .collect();
        files.sort();
        files
    }

    /// The batch run's `compact` merges a date's small files and leaves its large one: a date
    /// written by two batch runs keeps its two files (merging them rewrote the whole day), late
    /// files are merged into one once there are two, and dates not asked for are left alone.
    #[tokio::test]
    async fn only_the_small_files_of_the_dates_asked_for_are_merged() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let dates = vec!["2026-02-01".to_string()];
        // The day's batch output: its first hours, written at 02:00 of the date, and the rest,
        // written the next day (both above 1 MiB, the second larger than the first).
        append_to_date(&store, "2026-02-01", 150_000, 0).await;
        append_to_date(&store, "2026-02-01", 300_000, 1).await;
        let day = files_of(&store, "2026-02-01").await;
        assert!(day.iter().all(|(_, s)| *s > SMALL_FILE_BYTES), "{day:?}");
        let none = compact_small_files(&store, "p", &dates)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(none, Compacted::default());
        assert_eq!(files_of(&store, "2026-02-01").await, day);
        // Two late files: merged into one; the day's two files stay.
        append_to_date(&store, "2026-02-01", 10, 2).await;
        append_to_date(&store, "2026-02-01", 10, 3).await;
        // Another date's small files, not asked for.
        append_to_date(&store, "2026-02-02", 10, 4).await;
        append_to_date(&store, "2026-02-02", 10, 5).await;
        let merged = compact_small_files(&store, "p", &dates)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            merged,
            Compacted {
                files_added: 1,
                files_removed: 2,
                partitions: 1
            }
        );
        let after = files_of(&store, "2026-02-01").await;
        assert_eq!(after.len(), 3, "{after:?}");
        assert!(day.iter().all(|f| after.contains(f)), "{after:?}");
        assert_eq!(files_of(&store, "2026-02-02").await.len(), 2);
        // No table: nothing to do.
        assert_eq!(
            compact_small_files(&store, "missing", &dates)
                .await
                .unwrap(),
            None
        );
    }
}
