//! `upkeep`: keeps every serving table small to open and small on storage, whatever the tick.
//!
//! Serving appends or overwrites on every run, so without upkeep each run leaves a data file
//! and a `_delta_log/*.json` commit behind for ever. For each table under `serving/`
//! (`unified/<stream>`, `dashboards/<name>`, `alerts/history`, `analytics/*`) the task:
//!
//! - **compacts** a date partition (or an unpartitioned table) holding more than
//!   `small_file_threshold` small files (Delta optimize, labelled with the run like the other
//!   serving commits: same rows, fewer files);
//! - **checkpoints** the log once it has grown by `checkpoint_every` commits since the last
//!   checkpoint;
//! - **removes log entries** older than `log_retention_hours`, below a checkpoint;
//! - **vacuums** the data files removed more than `retention_hours` ago.
//!
//! Retention is judged in the runs' logical time, not the wall clock, so that `simulate` over
//! days does what days of `up` do. Delta stamps removals and log files with wall-clock times,
//! so the task keeps, per table, *anchors*: the table's version (and that commit's wall-clock
//! timestamp) as seen by an upkeep run at logical time T, one every few minutes to an hour
//! (`anchor_step`). "Older than R" then means "at or before the version of the newest anchor
//! at or before T − R": log entries are cleaned up to that version, and vacuum runs with its
//! clock set to that commit's timestamp + R, which deletes exactly the files removed by then.
//! Live, logical and wall time agree and this is Delta's own rule, to one anchor step late.
//! Anchors live in `_lakepipe/upkeep/<table>.json`.
//!
//! Everything is decided by [`UpkeepPlan`] from what loading the table gives (its files, the
//! version, `_last_checkpoint`) and the anchors, without I/O; a run with nothing to do reads a
//! few small objects and writes nothing.

use std::collections::BTreeMap;
use std::future::IntoFuture;

use chrono::{DateTime, Duration, Utc};
use futures::TryStreamExt as _;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Error, Result, alerts, analytics, dashboards, log_info, run_label, unified};
use crate::clock::{parse_utc, rfc3339_secs};
use crate::config::UpkeepConfig;
use crate::layers::batch::compact;
use crate::scheduler::task::{TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::store::Store;

/// Every serving table of the active pipeline, in a stable order: the unified tables, the
/// dashboards, the alert history, the analytics.
pub fn serving_tables() -> Vec<String> {
    let active = crate::pipeline::active();
    let mut out: Vec<String> = active
        .streams
        .iter()
        .map(|s| unified::unified_path(s.name))
        .collect();
    out.extend(
        active
            .dashboards
            .iter()
            .map(|d| dashboards::dashboard_path(d.name)),
    );
    out.push(alerts::ALERTS_PATH.to_string());
    out.push(analytics::STREAM_DATES_PATH.to_string());
    out.push(analytics::MASTER_SUMMARY_PATH.to_string());
    out
}

/// Key of the upkeep record of the table at `path`.
fn record_key(path: &str) -> String {
    format!("_lakepipe/upkeep/{path}.json")
}

/// The Delta table's version seen by the upkeep run at `at`, with that commit's wall-clock
/// time: how logical time maps to the wall-clock stamps Delta writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The run's logical date (RFC 3339).
    pub at: String,
    /// The table's version then.
    pub version: u64,
    /// That commit's timestamp (Unix milliseconds, the writer's wall clock).
    pub wall_ms: i64,
}

/// What upkeep knows of a table between runs (`_lakepipe/upkeep/<table>.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Anchors, oldest first; those older than the log retention needs are dropped.
    pub anchors: Vec<Anchor>,
    /// Log entries were cleaned up to this version (the anchor version of the last cleanup).
    pub logs_cleaned_to: Option<u64>,
    /// Files removed up to this version were vacuumed.
    pub vacuumed_to: Option<u64>,
}

impl Record {
    /// The newest anchor at or before `cut`.
    fn anchor_at(&self, cut: DateTime<Utc>) -> Option<&Anchor> {
        self.anchors
            .iter()
            .rev()
            .find(|a| parse_utc(&a.at).is_ok_and(|at| at <= cut))
    }

    /// Whether the run at `t` adds an anchor: none yet, or the newest is `step` old or more.
    fn anchor_due(&self, t: DateTime<Utc>, step: Duration) -> bool {
        match self.anchors.last().map(|a| parse_utc(&a.at)) {
            None | Some(Err(_)) => true,
            Some(Ok(last)) => t >= last + step,
        }
    }
}

/// How far apart anchors are: a twelfth of the shorter retention, between 1 minute and 1
/// hour. Retention is honoured at most one step late, never early.
pub fn anchor_step(config: &UpkeepConfig) -> Duration {
    let shorter = config.retention_hours.min(config.log_retention_hours) as i64;
    (Duration::hours(shorter) / 12).clamp(Duration::minutes(1), Duration::hours(1))
}

/// A table as loaded: what planning needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TableState {
    /// Lake path.
    pub path: String,
    /// Current version.
    pub version: u64,
    /// Whether the table is partitioned by `date`.
    pub by_date: bool,
    /// Small live files, by `date` partition (`""` when the table is not partitioned): those
    /// a compaction would merge ([`compact::merge_tier`]).
    pub small_files: BTreeMap<String, u64>,
    /// Their bytes, by partition.
    pub small_bytes: BTreeMap<String, u64>,
    /// Version of the last checkpoint (`_delta_log/_last_checkpoint`), if any.
    pub last_checkpoint: Option<u64>,
    /// Wall-clock timestamp of the current version's commit, if read (only when an anchor is
    /// due).
    pub version_wall_ms: Option<i64>,
    /// The upkeep record.
    pub record: Record,
}

/// Where a vacuum stops: files removed at or before `version`, whose commit was written at
/// `wall_ms`; and where the last one stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VacuumCut {
    /// The anchor's version.
    pub version: u64,
    /// Its commit's wall-clock time (Unix milliseconds).
    pub wall_ms: i64,
    /// The last vacuum's cut (`None`: none yet): only the files removed since are deleted.
    pub after: Option<u64>,
}

/// What a run does to one table, decided without I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePlan {
    /// Lake path.
    pub path: String,
    /// Partitions to compact: `Some(dates)` for a table by date, `Some([])` for a whole
    /// unpartitioned table, `None`: nothing.
    pub compact: Option<Vec<String>>,
    /// Bytes of the small files of each partition to compact: the merge's target size is just
    /// above, so larger files stay as they are.
    pub merge_bytes: BTreeMap<String, u64>,
    /// Write a checkpoint (the log grew by `checkpoint_every` commits since the last one).
    pub checkpoint: bool,
    /// The last checkpoint's version when loaded (to judge again after this run's commits).
    pub last_checkpoint: Option<u64>,
    /// Remove log entries below the newest checkpoint at or before this version.
    pub cleanup_logs_to: Option<u64>,
    /// Vacuum the files removed up to this cut.
    pub vacuum: Option<VacuumCut>,
    /// The record after the run (written only if it changed).
    pub record: Record,
    /// Whether `record` differs from the one read.
    pub record_changed: bool,
}

impl TablePlan {
    /// Whether the run does anything to the table besides reading it.
    pub fn is_noop(&self) -> bool {
        self.compact.is_none()
            && !self.checkpoint
            && self.cleanup_logs_to.is_none()
            && self.vacuum.is_none()
            && !self.record_changed
    }
}

/// Whether a log at `version` whose last checkpoint is `last_checkpoint` is due another.
pub fn needs_checkpoint(version: u64, last_checkpoint: Option<u64>, every: u64) -> bool {
    // Without a checkpoint, version v has v + 1 commits (0 ..= v) to replay.
    let commits = match last_checkpoint {
        Some(c) => version.saturating_sub(c),
        None => version + 1,
    };
    commits >= every
}

/// Plans the upkeep of one table at logical time `t`.
pub fn plan_table(state: TableState, t: DateTime<Utc>, config: &UpkeepConfig) -> TablePlan {
    let threshold = config.small_file_threshold;
    let crowded: Vec<String> = state
        .small_files
        .iter()
        .filter(|(_, n)| **n > threshold)
        .map(|(d, _)| d.clone())
        .collect();
    let merge_bytes = crowded
        .iter()
        .map(|d| {
            (
                d.clone(),
                state.small_bytes.get(d).copied().unwrap_or_default(),
            )
        })
        .collect();
    let compact = match (crowded.is_empty(), state.by_date) {
        (true, _) => None,
        (false, true) => Some(crowded),
        (false, false) => Some(Vec::new()),
    };
    let checkpoint = needs_checkpoint(
        state.version,
        state.last_checkpoint,
        config.checkpoint_every,
    );

    let mut record = state.record.clone();
    // The anchor is the version before this run's own commits: they count as newer.
    if let Some(wall_ms) = state.version_wall_ms
        && record.anchor_due(t, anchor_step(config))
    {
        record.anchors.push(Anchor {
            at: rfc3339_secs(t),
            version: state.version,
            wall_ms,
        });
    }
    let log_cut = t - Duration::hours(config.log_retention_hours as i64);
    let file_cut = t - Duration::hours(config.retention_hours as i64);
    let log_anchor = record.anchor_at(log_cut).cloned();
    let file_anchor = record.anchor_at(file_cut).cloned();

    let cleanup_logs_to = log_anchor
        .as_ref()
        .map(|a| a.version)
        .filter(|v| record.logs_cleaned_to.is_none_or(|done| *v > done));
    if let Some(v) = cleanup_logs_to {
        record.logs_cleaned_to = Some(v);
    }
    let vacuum = file_anchor
        .as_ref()
        .filter(|a| record.vacuumed_to.is_none_or(|done| a.version > done))
        .map(|a| VacuumCut {
            version: a.version,
            wall_ms: a.wall_ms,
            after: record.vacuumed_to,
        });
    if let Some(c) = vacuum {
        record.vacuumed_to = Some(c.version);
    }
    // Anchors older than the one the log cut needs are needed no more (the file cut is
    // never older: log retention is at least file retention).
    if let Some(keep) = &log_anchor
        && let Some(i) = record.anchors.iter().position(|a| a == keep)
    {
        record.anchors.drain(..i);
    }
    let record_changed = record != state.record;
    TablePlan {
        path: state.path,
        compact,
        merge_bytes,
        checkpoint,
        last_checkpoint: state.last_checkpoint,
        cleanup_logs_to,
        vacuum,
        record,
        record_changed,
    }
}

/// A run of `upkeep`, decided without I/O: one plan per existing serving table.
#[derive(Debug, Clone, PartialEq)]
pub struct UpkeepPlan {
    /// The run's logical date.
    pub t: DateTime<Utc>,
    /// The tables, in [`serving_tables`] order.
    pub tables: Vec<TablePlan>,
}

impl UpkeepPlan {
    /// Plans the run at `t` over the loaded tables.
    pub fn new(t: DateTime<Utc>, states: Vec<TableState>, config: &UpkeepConfig) -> UpkeepPlan {
        UpkeepPlan {
            t,
            tables: states
                .into_iter()
                .map(|s| plan_table(s, t, config))
                .collect(),
        }
    }

    /// Compacts, vacuums, checkpoints and cleans up each table as planned, then writes the
    /// records that changed.
    async fn execute(
        self,
        store: &Store,
        config: &UpkeepConfig,
        log: Option<&TaskLog>,
    ) -> Result<UpkeepMetrics> {
        let t = self.t;
        let mut metrics = UpkeepMetrics {
            tables_checked: self.tables.len(),
            tables: BTreeMap::new(),
        };
        // Tables are upkept a few at once, each on a task of its own: compaction and
        // checkpoints are CPU work, and the task otherwise runs alone at the end of the run.
        // Dropping the set (a timeout cancels the task) cancels what is still running.
        let mut pending = self.tables.into_iter().filter(|p| !p.is_noop()).enumerate();
        let mut running = tokio::task::JoinSet::new();
        let mut finished = Vec::new();
        loop {
            while running.len() < TABLES_AT_ONCE
                && let Some((i, plan)) = pending.next()
            {
                let (store, config) = (store.clone(), config.clone());
                running.spawn(async move { (i, upkeep_table(&store, &config, t, plan).await) });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (i, done) = joined.map_err(|e| Error::Batch {
                source: Box::new(e),
            })?;
            finished.push((i, done?));
        }
        finished.sort_by_key(|(i, _)| *i);
        for (_, (path, done)) in finished {
            if !done.is_empty() {
                log_info(
                    log,
                    format!(
                        "{path}: {} small files compacted into {}, checkpoint {}, {} log files removed, {} files vacuumed",
                        done.files_compacted,
                        done.files_written,
                        done.checkpoint
                            .map_or_else(|| "none".to_string(), |v| format!("at v{v}")),
                        done.log_files_removed,
                        done.files_vacuumed
                    ),
                );
                metrics.tables.insert(path, done);
            }
        }
        if metrics.tables.is_empty() {
            log_info(
                log,
                format!(
                    "{} serving tables checked: nothing to do",
                    metrics.tables_checked
                ),
            );
        }
        Ok(metrics)
    }
}

/// Tables upkept at once by a run.
const TABLES_AT_ONCE: usize = 4;

/// Compacts, vacuums, checkpoints and cleans up one table as planned, then writes its record
/// if it changed; returns the table's path and what was done.
async fn upkeep_table(
    store: &Store,
    config: &UpkeepConfig,
    t: DateTime<Utc>,
    plan: TablePlan,
) -> Result<(String, TableUpkeep)> {
    let path = plan.path.as_str();
    let mut done = TableUpkeep::default();
    let mut committed = false;
    // Each partition's small-file tier is merged into one file ([`compact::merge_small_files`]).
    let partitions: Vec<Option<String>> = match &plan.compact {
        None => Vec::new(),
        Some(dates) if dates.is_empty() => vec![None],
        Some(dates) => dates.iter().cloned().map(Some).collect(),
    };
    for date in partitions {
        let bytes = plan
            .merge_bytes
            .get(date.as_deref().unwrap_or_default())
            .copied()
            .unwrap_or_default();
        if let Some(c) =
            compact::merge_small_files(store, path, date.as_ref(), bytes, Some(run_label(t)))
                .await
                .map_err(Error::batch)?
        {
            done.files_compacted += c.files_removed;
            done.files_written += c.files_added;
            committed |= c.files_removed > 0;
        }
    }
    if let Some(cut) = plan.vacuum {
        // The files removed since the last vacuum; the first vacuum (or one whose
        // commits are gone from the log) is Delta's, of every expired tombstone.
        let since_last = match cut.after {
            Some(after) => compact::delete_removed(store, path, after, cut.version)
                .await
                .map_err(Error::batch)?,
            None => None,
        };
        let n = match since_last {
            Some(n) => n,
            None => {
                let retain = std::time::Duration::from_secs(config.retention_hours * 3600);
                let now = cut.wall_ms + retain.as_millis() as i64;
                let n =
                    compact::vacuum_table_as_of(store, path, retain, Some(now), Some(run_label(t)))
                        .await
                        .map_err(Error::batch)?;
                committed |= n > 0;
                n
            }
        };
        done.files_vacuumed = n as u64;
    }
    let mut table = None;
    let checkpoint = if committed {
        let reloaded = store.delta_table(path).await.map_err(Error::delta(path))?;
        let due = reloaded.as_ref().is_some_and(|tb| {
            needs_checkpoint(
                tb.version().unwrap_or_default(),
                plan.last_checkpoint,
                config.checkpoint_every,
            )
        });
        table = reloaded;
        plan.checkpoint || due
    } else {
        plan.checkpoint
    };
    if checkpoint {
        let tb = match table.take() {
            Some(tb) => Some(tb),
            None => store.delta_table(path).await.map_err(Error::delta(path))?,
        };
        if let Some(tb) = tb {
            deltalake::checkpoints::create_checkpoint(&tb, None)
                .await
                .map_err(Error::delta(path))?;
            done.checkpoint = tb.version();
            table = Some(tb);
        }
    }
    if let Some(keep) = plan.cleanup_logs_to {
        let tb = match table.take() {
            Some(tb) => Some(tb),
            None => store.delta_table(path).await.map_err(Error::delta(path))?,
        };
        if let Some(tb) = tb {
            // A cutoff in the far future: the version alone decides (entries below the
            // newest checkpoint at or before `keep`).
            let n = deltalake::checkpoints::cleanup_expired_logs_for(
                keep,
                tb.log_store().as_ref(),
                i64::MAX,
                None,
            )
            .await
            .map_err(Error::delta(path))?;
            done.log_files_removed = n as u64;
        }
    }
    if plan.record_changed {
        store.put_json(&record_key(path), &plan.record).await?;
    }
    Ok((plan.path, done))
}

/// What a run of `upkeep` did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableUpkeep {
    /// Small files merged by compaction.
    pub files_compacted: u64,
    /// Files compaction wrote.
    pub files_written: u64,
    /// Version of the checkpoint written, if one was.
    pub checkpoint: Option<u64>,
    /// `_delta_log` entries removed (commits and older checkpoints).
    pub log_files_removed: u64,
    /// Data files deleted by vacuum.
    pub files_vacuumed: u64,
}

impl TableUpkeep {
    fn is_empty(&self) -> bool {
        *self == TableUpkeep::default()
    }
}

/// What a run of `upkeep` did, as it reports it (its task output): how many serving tables
/// exist, and by path those it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpkeepMetrics {
    /// Serving tables that exist and were looked at.
    pub tables_checked: usize,
    /// Tables something was done to, by path.
    pub tables: BTreeMap<String, TableUpkeep>,
}

/// The operation of `upkeep`: loads each serving table and its record, plans
/// ([`UpkeepPlan`]), executes.
pub struct UpkeepBuilder<'a> {
    store: &'a Store,
    logical_date: DateTime<Utc>,
    config: UpkeepConfig,
    log: Option<&'a TaskLog>,
}

impl<'a> UpkeepBuilder<'a> {
    /// The upkeep of the run at `logical_date`, with the default `[upkeep]` settings.
    pub fn new(store: &'a Store, logical_date: DateTime<Utc>) -> UpkeepBuilder<'a> {
        UpkeepBuilder {
            store,
            logical_date,
            config: UpkeepConfig::default(),
            log: None,
        }
    }

    /// Uses these `[upkeep]` settings.
    pub fn with_config(self, config: UpkeepConfig) -> UpkeepBuilder<'a> {
        UpkeepBuilder { config, ..self }
    }

    /// Writes what the run does to `log`.
    pub fn with_log(self, log: &'a TaskLog) -> UpkeepBuilder<'a> {
        UpkeepBuilder {
            log: Some(log),
            ..self
        }
    }

    /// Loads one table and what planning needs; `None` if there is no table at `path`.
    async fn load(&self, path: &str) -> Result<Option<TableState>> {
        let store = self.store;
        let Some(table) = store.delta_table(path).await.map_err(Error::delta(path))? else {
            return Ok(None);
        };
        let version = table.version().unwrap_or_default();
        let snapshot = table.snapshot().map_err(Error::delta(path))?;
        let by_date = compact::partitioned_by_date(snapshot);
        let mut small_files: BTreeMap<String, u64> = BTreeMap::new();
        let mut small_bytes: BTreeMap<String, u64> = BTreeMap::new();
        for (date, (n, bytes)) in compact::small_files(snapshot) {
            small_files.insert(date.clone(), n);
            small_bytes.insert(date, bytes);
        }
        let last_checkpoint = match store
            .get_opt(&format!("{path}/_delta_log/_last_checkpoint"))
            .await?
        {
            Some(b) => serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v["version"].as_u64()),
            None => None,
        };
        let record: Record = match store.get_opt(&record_key(path)).await? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                log_info(
                    self.log,
                    format!("{path}: unreadable upkeep record ({e}): starting a new one"),
                );
                Record::default()
            }),
            None => Record::default(),
        };
        // The current commit's wall-clock time, read only when an anchor is due.
        let version_wall_ms = if record.anchor_due(self.logical_date, anchor_step(&self.config)) {
            let infos: Vec<_> = table
                .history(Some(1))
                .try_collect()
                .await
                .map_err(Error::delta(path))?;
            infos.first().and_then(|i| i.timestamp)
        } else {
            None
        };
        Ok(Some(TableState {
            path: path.to_string(),
            version,
            by_date,
            small_files,
            small_bytes,
            last_checkpoint,
            version_wall_ms,
            record,
        }))
    }

    async fn run(self) -> Result<UpkeepMetrics> {
        let paths = serving_tables();
        let loaded = futures::future::try_join_all(paths.iter().map(|p| self.load(p))).await?;
        let states: Vec<TableState> = loaded.into_iter().flatten().collect();
        UpkeepPlan::new(self.logical_date, states, &self.config)
            .execute(self.store, &self.config, self.log)
            .await
    }
}

impl<'a> IntoFuture for UpkeepBuilder<'a> {
    type Output = Result<UpkeepMetrics>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The body of `upkeep`.
pub struct Upkeep;

#[async_trait::async_trait]
impl TaskBody for Upkeep {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = UpkeepBuilder::new(&ctx.store, ctx.logical_date)
            .with_config(ctx.params.upkeep.clone())
            .with_log(&ctx.log)
            .await?;
        // Compacting, checkpointing and vacuuming a table rewrite it in place: each table
        // something was done to is the task's input and output.
        for path in metrics.tables.keys() {
            ctx.rewrote_table(path).await;
        }
        output(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse_utc(s).unwrap()
    }

    fn config() -> UpkeepConfig {
        UpkeepConfig {
            retention_hours: 1,
            log_retention_hours: 2,
            checkpoint_every: 10,
            small_file_threshold: 4,
        }
    }

    /// Tables with something to do are upkept several at once, and every one of them is
    /// reported: in the metrics, and in the log in table order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_table_is_upkept_and_logged_in_table_order() {
        use crate::layers::serving::tests::{n_row, n_table};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        // More tables than are upkept at once, each of three small files.
        let paths: Vec<String> = serving_tables()
            .into_iter()
            .filter(|p| p.starts_with("serving/dashboards/"))
            .collect();
        assert!(paths.len() > TABLES_AT_ONCE, "{paths:?}");
        for path in &paths {
            let create = n_table(&store, path).await;
            let mut table = create.await.unwrap();
            for n in 0..3 {
                table = table.write(vec![n_row(n)]).await.unwrap();
            }
        }
        let config = UpkeepConfig {
            small_file_threshold: 2,
            ..config()
        };
        let log = TaskLog::new(false);
        let metrics = UpkeepBuilder::new(&store, at("2026-02-01T00:10:00Z"))
            .with_config(config)
            .with_log(&log)
            .await
            .unwrap();
        assert_eq!(metrics.tables_checked, paths.len());
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(metrics.tables.keys().cloned().collect::<Vec<_>>(), sorted);
        for (path, done) in &metrics.tables {
            assert_eq!((done.files_compacted, done.files_written), (3, 1), "{path}");
        }
        let text = log.text();
        let lines: Vec<usize> = paths
            .iter()
            .map(|p| {
                text.lines()
                    .position(|l| l.contains(&format!("{p}: 3 small files compacted into 1")))
                    .unwrap_or_else(|| panic!("{p} not in the log:\n{text}"))
            })
            .collect();
        assert!(lines.is_sorted(), "{lines:?}\n{text}");
    }

    fn state(version: u64, small: &[(&str, u64)], record: Record) -> TableState {
        TableState {
            path: "serving/unified/api_logs".into(),
            version,
            by_date: true,
            small_files: small.iter().map(|(d, n)| (d.to_string(), *n)).collect(),
            small_bytes: small
                .iter()
                .map(|(d, n)| (d.to_string(), *n * 1000))
                .collect(),
            last_checkpoint: Some(version),
            version_wall_ms: None,
            record,
        }
    }

    fn anchor(t: &str, version: u64) -> Anchor {
        Anchor {
            at: t.into(),
            version,
            wall_ms: 1_000 + version as i64,
        }
    }

    #[test]
    fn nothing_to_do_is_a_plan_that_touches_nothing() {
        let t = at("2026-02-01T00:30:00Z");
        let p = plan_table(
            state(5, &[("2026-02-01", 4)], Record::default()),
            t,
            &config(),
        );
        assert!(p.is_noop(), "{p:?}");
        assert_eq!(p.compact, None);
    }

    #[test]
    fn only_partitions_over_the_threshold_are_compacted() {
        let t = at("2026-02-01T00:30:00Z");
        let small = [("2026-01-31", 5), ("2026-02-01", 4), ("2026-02-02", 9)];
        let p = plan_table(state(5, &small, Record::default()), t, &config());
        assert_eq!(
            p.compact,
            Some(vec!["2026-01-31".to_string(), "2026-02-02".to_string()])
        );
        assert_eq!(
            p.merge_bytes,
            BTreeMap::from([
                ("2026-01-31".to_string(), 5000),
                ("2026-02-02".to_string(), 9000)
            ])
        );
        // An unpartitioned table is compacted whole.
        let mut s = state(5, &[("", 5)], Record::default());
        s.by_date = false;
        assert_eq!(plan_table(s, t, &config()).compact, Some(vec![]));
    }

    #[test]
    fn a_checkpoint_is_due_after_checkpoint_every_commits() {
        assert!(!needs_checkpoint(9, Some(0), 10));
        assert!(needs_checkpoint(10, Some(0), 10));
        assert!(
            !needs_checkpoint(8, None, 10),
            "versions 0..=8 are 9 commits"
        );
        assert!(needs_checkpoint(9, None, 10));
        let t = at("2026-02-01T00:30:00Z");
        let mut s = state(35, &[], Record::default());
        s.last_checkpoint = Some(25);
        let p = plan_table(s, t, &config());
        assert!(p.checkpoint && !p.is_noop());
        assert_eq!(p.last_checkpoint, Some(25));
    }

    #[test]
    fn anchors_are_recorded_one_step_apart_in_logical_time() {
        let c = config();
        assert_eq!(anchor_step(&c), Duration::minutes(5));
        assert_eq!(
            anchor_step(&UpkeepConfig::default()),
            Duration::hours(1),
            "168 h / 12, at most an hour"
        );
        let mut s = state(7, &[], Record::default());
        s.version_wall_ms = Some(42);
        let p = plan_table(s.clone(), at("2026-02-01T00:30:00Z"), &c);
        assert_eq!(
            p.record.anchors,
            [anchor_with("2026-02-01T00:30:00Z", 7, 42)]
        );
        assert!(p.record_changed);
        // Four minutes later: not yet; five: a new one.
        s.record = p.record.clone();
        assert!(
            plan_table(s.clone(), at("2026-02-01T00:34:00Z"), &c)
                .record
                .anchors
                .len()
                == 1
        );
        assert_eq!(
            plan_table(s, at("2026-02-01T00:35:00Z"), &c)
                .record
                .anchors
                .len(),
            2
        );
    }

    fn anchor_with(t: &str, version: u64, wall_ms: i64) -> Anchor {
        Anchor {
            at: t.into(),
            version,
            wall_ms,
        }
    }

    #[test]
    fn retention_is_judged_in_logical_time_through_the_anchors() {
        let c = config();
        let record = Record {
            anchors: vec![
                anchor("2026-02-01T00:00:00Z", 10),
                anchor("2026-02-01T00:30:00Z", 40),
                anchor("2026-02-01T01:00:00Z", 70),
                anchor("2026-02-01T01:30:00Z", 100),
            ],
            logs_cleaned_to: None,
            vacuumed_to: None,
        };
        // At 00:59 no anchor is an hour old yet …
        let p = plan_table(
            state(120, &[], record.clone()),
            at("2026-02-01T00:59:00Z"),
            &c,
        );
        assert_eq!((p.vacuum, p.cleanup_logs_to), (None, None));
        // … at 01:45 the files removed up to version 40 (seen at 00:30) are an hour old: vacuum
        // judges them at that commit's wall time + 1 h; the log (2 h) is not old enough.
        let p = plan_table(
            state(120, &[], record.clone()),
            at("2026-02-01T01:45:00Z"),
            &c,
        );
        assert_eq!(
            p.vacuum,
            Some(VacuumCut {
                version: 40,
                wall_ms: 1_040,
                after: None,
            })
        );
        assert_eq!(p.cleanup_logs_to, None);
        assert_eq!(p.record.vacuumed_to, Some(40));
        // Done once: the same cut is not vacuumed again.
        let again = plan_table(
            state(120, &[], p.record.clone()),
            at("2026-02-01T01:50:00Z"),
            &c,
        );
        assert_eq!(again.vacuum, None);
        // At 03:10 the log up to version 70 (01:00) is 2 h old; anchors before it go.
        let p = plan_table(state(120, &[], p.record), at("2026-02-01T03:10:00Z"), &c);
        assert_eq!(p.cleanup_logs_to, Some(70));
        // Only what was removed after the last cut (40) is deleted now.
        assert_eq!(
            p.vacuum.map(|v| (v.after, v.version)),
            Some((Some(40), 100))
        );
        assert_eq!(
            p.record
                .anchors
                .iter()
                .map(|a| a.version)
                .collect::<Vec<_>>(),
            [70, 100]
        );
        // A run at an older logical date (a backfill) vacuums and cleans nothing newer.
        let p2 = plan_table(
            state(130, &[], p.record.clone()),
            at("2026-02-01T01:20:00Z"),
            &c,
        );
        assert_eq!((p2.vacuum, p2.cleanup_logs_to), (None, None));
    }

    #[test]
    fn every_serving_table_of_the_pipeline_is_covered() {
        let tables = serving_tables();
        for s in crate::pipeline::active().streams {
            assert!(tables.contains(&format!("serving/unified/{}", s.name)));
        }
        for d in crate::pipeline::active().dashboards {
            assert!(tables.contains(&format!("serving/dashboards/{}", d.name)));
        }
        for p in [
            "serving/alerts/history",
            "serving/analytics/stream_dates",
            "serving/analytics/master_summary",
        ] {
            assert!(tables.iter().any(|t| t == p), "{p}");
        }
        assert_eq!(
            record_key("serving/alerts/history"),
            "_lakepipe/upkeep/serving/alerts/history.json"
        );
    }

    #[test]
    fn metrics_are_the_output() {
        let m = UpkeepMetrics {
            tables_checked: 2,
            tables: BTreeMap::from([(
                "serving/alerts/history".to_string(),
                TableUpkeep {
                    files_compacted: 9,
                    files_written: 1,
                    checkpoint: Some(30),
                    log_files_removed: 12,
                    files_vacuumed: 40,
                },
            )]),
        };
        let json = serde_json::json!({
            "tables_checked": 2,
            "tables": { "serving/alerts/history": {
                "files_compacted": 9, "files_written": 1, "checkpoint": 30,
                "log_files_removed": 12, "files_vacuumed": 40,
            }},
        });
        assert_eq!(serde_json::to_value(&m).unwrap(), json);
        assert_eq!(serde_json::from_value::<UpkeepMetrics>(json).unwrap(), m);
    }
}
