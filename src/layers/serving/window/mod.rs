//! The serving layer's windows, kept from run to run: for each stream, the rows of
//! `serving/unified/<stream>` that a dashboard or an alert rule of the active pipeline may read
//! at the run's logical time T — event time at or after the oldest window start, and midnight
//! for a dashboard that reads `today` — and, for each data file of the look-back dates, its
//! figures (events, from batch, from speed, last event time) for `analytics`.
//!
//! A run advances a stream's window by reading only the Delta commits made since it last
//! looked and, of those, only the data files they add; files a commit removes leave the window
//! with their rows; a compaction (`dataChange: false`) re-files the rows it merged without
//! reading them; rows older than the window leave it. So a run costs the new rows plus the
//! window it holds, never the day or the table's history, and never a re-read of a window.
//!
//! The checkpoint of this state is the unified table itself: what the window holds is a function
//! of the table's version and T. A new process (a restart, a kill -9, another worker) rebuilds
//! it once by reading the window's rows and the look-back dates' figures ([`read`]); anything a
//! commit says that the incremental path does not follow — a schema change, a log entry gone,
//! a window that starts earlier than the one held, a removed file it does not hold — rebuilds
//! it too. The dashboards' and alerts' SQL stays the definition: the window is registered as
//! `unified_<stream>` and the same views `w` and `today` are made over it
//! (`LAKEPIPE_SERVING_VERIFY=1` compares every run with the same SQL over the Delta table).

mod read;
mod today;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Duration, Utc};
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array as _, AsArray as _, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Action;
use serde::Serialize;

use super::unified::unified_path;
use super::{Error, Result, log_info};
use crate::clock::rfc3339_secs;
use crate::layers::batch::lineage::LOOKBACK_DAYS;
use crate::scheduler::task::TaskLog;
use crate::store::Store;

pub use self::read::Figures;
use self::today::TodayFilter;

/// Commit-info key of the newest speed-layer object a unified commit includes.
pub const NEWEST_OBJECT_KEY: &str = "lakepipe.newest_object";
/// Commit-info key of when that object was landed (RFC 3339).
pub const NEWEST_LANDED_KEY: &str = "lakepipe.newest_landed";

/// What a serving document includes of one stream: the unified table's version and the newest
/// speed-layer object in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamMark {
    /// Version of `serving/unified/<stream>` the run read.
    pub unified_version: u64,
    /// The newest speed-layer object whose rows it holds (by landing time), if known.
    pub newest_object: Option<String>,
    /// When that object was landed.
    pub newest_landed: Option<String>,
}

/// The watermark of a serving document: the run's logical time and, per stream, what it read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Watermark {
    /// The run's logical time: every window ends there.
    pub logical_time: String,
    /// The newest landing time among the streams' newest objects.
    pub newest_landed: Option<String>,
    /// By stream.
    pub streams: BTreeMap<String, StreamMark>,
}

impl Watermark {
    fn new(t: DateTime<Utc>) -> Watermark {
        Watermark {
            logical_time: rfc3339_secs(t),
            ..Watermark::default()
        }
    }

    fn add(&mut self, stream: &str, mark: StreamMark) {
        if let Some(l) = &mark.newest_landed
            && self.newest_landed.as_ref().is_none_or(|n| n < l)
        {
            self.newest_landed = Some(l.clone());
        }
        self.streams.insert(stream.to_string(), mark);
    }

    /// As JSON, for documents.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The rows and figures of one data file of the unified table.
#[derive(Debug, Clone)]
struct FileRows {
    /// Its date partition.
    date: String,
    /// Its rows in the window (event time at or after the window's start).
    rows: Vec<RecordBatch>,
    /// Figures of all its rows.
    figures: Figures,
    /// Its rows with event time before this (micros) are only those `today` may read
    /// ([`TodayFilter`]); `i64::MIN` until it is pruned.
    pruned_to: i64,
}

/// The window of one stream, as of a version of its unified table.
struct Held {
    /// The table: its log store reads the commits after `version`; its snapshot (of `version`
    /// or older) gives the schema and layout, which followed commits do not change.
    table: DeltaTable,
    version: u64,
    /// Rows with event time at or after this are held.
    lo: DateTime<Utc>,
    /// Figures are held for files of dates at or after this.
    since: String,
    /// By data file name.
    files: BTreeMap<String, FileRows>,
    /// The rows' schema (the table's, as scanned).
    schema: SchemaRef,
    /// What the stream's dashboards read of `today`, if they do not read all of it.
    today: Option<TodayFilter>,
    /// The newest boundary it was pruned to ([`Held::prune`]): a run whose windows start
    /// earlier rebuilds it.
    pruned_to: Option<DateTime<Utc>>,
    /// The newest speed-layer object the table's commits name.
    newest: (Option<String>, Option<String>),
    /// When the log was last listed for its newest version (see [`Held::follow`]).
    listed: std::time::Instant,
}

/// How long a window follows commits without listing the log: a commit file the log cleanup
/// removed before a run read it would otherwise hide the commits after it.
const LIST_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// How a run's window of a stream was brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Advance {
    /// Built from the table (first use in this process, or a change it does not follow).
    Rebuilt,
    /// New commits followed.
    Advanced,
    /// Nothing new.
    Current,
}

impl Advance {
    fn describe(self) -> &'static str {
        match self {
            Advance::Rebuilt => "rebuilt from the table",
            Advance::Advanced => "advanced by the new commits",
            Advance::Current => "current",
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Held>>>;

/// The windows of this process, by lake and stream.
static WINDOWS: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Default::default);

fn slot(store: &Store, stream: &str) -> Slot {
    let key = format!("{}\u{0}{stream}", store.url());
    let mut m = WINDOWS.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(m.entry(key).or_default())
}

/// Whether a dashboard's SQL reads the view `today`.
pub fn reads_today(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.match_indices("today").any(|(i, w)| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + w.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

/// The start of the rows a run at `t` needs of `stream`: its longest window (dashboards and
/// rules), and midnight if a dashboard of the stream reads `today`. `None` if nothing reads it.
pub fn window_start(stream: &str, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let full = full_start(stream, t)?;
    Some(match today_sqls(stream).is_empty() {
        true => full,
        false => full.min(midnight(t)),
    })
}

/// The start of the rows a run at `t` may read of `stream` other than through `today`: its
/// longest window (dashboards and rules). Older rows are read only through `today`.
fn full_start(stream: &str, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let p = crate::pipeline::active();
    let dashboards = p.dashboards.iter().filter(|d| d.stream == stream);
    let rules = p.rules.iter().filter(|r| r.stream == stream);
    dashboards
        .map(|d| d.minutes)
        .chain(rules.map(|r| r.minutes))
        .max()
        .map(|m| t - Duration::minutes(m))
}

/// The SQL of the dashboards of `stream` that read `today`.
fn today_sqls(stream: &str) -> Vec<&'static str> {
    crate::pipeline::active()
        .dashboards
        .iter()
        .filter(|d| d.stream == stream && reads_today(d.sql))
        .map(|d| d.sql)
        .collect()
}

/// What the dashboards of `stream` that read `today` read of it ([`TodayFilter`]); `None` if
/// none reads it or one may read all of it.
async fn today_filter(stream: &str, schema: &SchemaRef) -> Option<TodayFilter> {
    let sqls = today_sqls(stream);
    if sqls.is_empty() {
        return None;
    }
    TodayFilter::of(&sqls, schema).await
}

/// Midnight (UTC) of `t`'s date.
pub fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|m| m.and_utc())
        .unwrap_or(t)
}

/// The first date whose files' figures a run at `t` keeps (the batch layer's look-back).
fn figures_since(t: DateTime<Utc>) -> String {
    (t - Duration::days(LOOKBACK_DAYS))
        .format("%Y-%m-%d")
        .to_string()
}

/// The name a data file is known by: its file name (unique in a table), however a path names it.
fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

impl Held {
    /// Builds the window of `stream` at `t` from the table, or `None` without a table.
    async fn build(
        store: &Store,
        stream: &str,
        t: DateTime<Utc>,
        lo: DateTime<Utc>,
    ) -> Result<Option<Held>> {
        let path = unified_path(stream);
        let Some(table) = store
            .delta_table(&path)
            .await
            .map_err(Error::delta(&path))?
        else {
            return Ok(None);
        };
        let version = table.version().unwrap_or_default();
        let since = figures_since(t);
        let (schema, files) = read::files(&table, None, lo, &since).await?;
        let newest = read::newest_object(&table).await;
        let today = today_filter(stream, &schema).await;
        Ok(Some(Held {
            table,
            version,
            lo,
            since,
            files,
            schema,
            today,
            pruned_to: None,
            newest,
            listed: std::time::Instant::now(),
        }))
    }

    /// Follows the commits after the held version, one by one: the rows of the files each
    /// adds are read from the table at that version (a later compaction may merge them), the
    /// files it removes leave, a compaction re-files their rows. Returns why the window must be
    /// rebuilt instead, if it must.
    async fn follow(&mut self, path: &str) -> Result<Option<&'static str>> {
        let log = self.table.log_store();
        loop {
            let next = self.version + 1;
            let Some(actions) = crate::store::commit_actions(&self.table, next)
                .await
                .map_err(Error::delta(path))?
            else {
                if self.listed.elapsed() >= LIST_EVERY {
                    let latest = log
                        .get_latest_version(self.version)
                        .await
                        .map_err(Error::delta(path))?;
                    self.listed = std::time::Instant::now();
                    if latest > self.version {
                        return Ok(Some("commits were removed before the window read them"));
                    }
                }
                break;
            };
            let mut removed: Vec<(String, bool)> = Vec::new();
            let mut added: Vec<(String, String, bool)> = Vec::new();
            for a in actions {
                match a {
                    Action::Metadata(_) | Action::Protocol(_) => {
                        return Ok(Some("the table's schema or protocol changed"));
                    }
                    Action::Remove(r) => removed.push((file_name(&r.path), r.data_change)),
                    Action::Add(a) => {
                        let date = a
                            .partition_values
                            .get("date")
                            .cloned()
                            .flatten()
                            .unwrap_or_default();
                        added.push((a.path, date, a.data_change));
                    }
                    Action::CommitInfo(ci) => {
                        if let Some(o) = ci.info.get(NEWEST_OBJECT_KEY).and_then(|o| o.as_str()) {
                            self.newest.0 = Some(o.to_string());
                            self.newest.1 = ci
                                .info
                                .get(NEWEST_LANDED_KEY)
                                .and_then(|l| l.as_str())
                                .map(str::to_string);
                        }
                    }
                    _ => {}
                }
            }
            // A compaction: the rows of the files it removed, re-filed under the one file it
            // added per date.
            let mut merged: BTreeMap<String, FileRows> = BTreeMap::new();
            for (name, data_change) in removed {
                match self.files.remove(&name) {
                    Some(f) if !data_change => {
                        let m = merged.entry(f.date.clone()).or_insert_with(|| FileRows {
                            date: f.date.clone(),
                            rows: Vec::new(),
                            figures: Figures::default(),
                            pruned_to: i64::MAX,
                        });
                        m.rows.extend(f.rows);
                        m.figures.merge(&f.figures);
                        m.pruned_to = m.pruned_to.min(f.pruned_to);
                    }
                    Some(_) => {}
                    None if !data_change => return Ok(Some("a compaction of files not held")),
                    // A file of a date older than the figures held.
                    None => {}
                }
            }
            let mut to_read = Vec::new();
            for (p, date, data_change) in added {
                if date < self.since {
                    continue;
                }
                if data_change {
                    to_read.push((p, date));
                } else if let Some(m) = merged.remove(&date) {
                    self.files.insert(file_name(&p), m);
                } else {
                    return Ok(Some("a compaction adding files it did not merge"));
                }
            }
            if !merged.is_empty() {
                return Ok(Some("a compaction without its merged file"));
            }
            if !to_read.is_empty() {
                let direct =
                    read::added(&self.table, &self.schema, &to_read, self.lo, &self.since).await?;
                let files = match direct {
                    Some(files) => files,
                    None => {
                        self.table
                            .update_incremental(Some(next))
                            .await
                            .map_err(Error::delta(path))?;
                        let paths = to_read.into_iter().map(|(p, _)| p).collect();
                        read::files(&self.table, Some(paths), self.lo, &self.since)
                            .await?
                            .1
                    }
                };
                self.files.extend(files);
            }
            self.version = next;
        }
        // The table's snapshot is not brought up to `version`: bringing a snapshot up to date
        // replays every file of the table, and a window needs only its log store and its
        // schema, which a followed commit never changes (one that does rebuilds the window).
        Ok(None)
    }

    /// Drops what a run at `t` no longer needs.
    fn evict(&mut self, lo: DateTime<Utc>, since: &str) -> Result<()> {
        self.files.retain(|_, f| f.date.as_str() >= since);
        if lo > self.lo {
            let lo_micros = lo.timestamp_micros();
            for f in self.files.values_mut() {
                if f.figures.last_event_time.is_some_and(|l| l < lo_micros) {
                    f.rows.clear();
                    continue;
                }
                let mut kept = Vec::with_capacity(f.rows.len());
                for b in f.rows.drain(..) {
                    let b = read::rows_from(&b, lo_micros)?;
                    if b.num_rows() > 0 {
                        kept.push(b);
                    }
                }
                f.rows = kept;
            }
            self.lo = lo;
        }
        self.since = since.to_string();
        Ok(())
    }

    /// Keeps, of the rows older than `full_from` (the start of every window but `today`), only
    /// those `today` may read ([`TodayFilter`]). A file is pruned again only when the boundary
    /// has passed some of its rows: each run reads the rows of its windows, not of the day.
    fn prune(&mut self, full_from: DateTime<Utc>) {
        let Some(today) = &self.today else {
            return;
        };
        self.pruned_to = self.pruned_to.max(Some(full_from));
        let full_from = full_from.timestamp_micros();
        for f in self.files.values_mut() {
            if f.pruned_to >= full_from {
                continue;
            }
            let all_pruned = f.figures.last_event_time.is_some_and(|l| l < f.pruned_to);
            if !all_pruned {
                let mut kept = Vec::with_capacity(f.rows.len());
                for b in f.rows.drain(..) {
                    let b = today.keep(&b, full_from);
                    if b.num_rows() > 0 {
                        kept.push(b);
                    }
                }
                f.rows = kept;
            }
            f.pruned_to = full_from;
        }
    }

    fn mark(&self) -> StreamMark {
        StreamMark {
            unified_version: self.version,
            newest_object: self.newest.0.clone(),
            newest_landed: self.newest.1.clone(),
        }
    }
}

/// Brings the window of `stream` up to the table's newest version for a run at `t` that reads
/// rows from `lo`; `None` if the stream has no unified table.
async fn advance<'a>(
    store: &Store,
    stream: &str,
    t: DateTime<Utc>,
    lo: DateTime<Utc>,
    guard: &'a mut Option<Held>,
) -> Result<(Option<&'a Held>, Advance)> {
    let since = figures_since(t);
    let path = unified_path(stream);
    let full_from = full_start(stream, t).unwrap_or(lo).max(lo);
    let usable = guard.as_ref().is_some_and(|h| {
        h.lo <= lo
            && h.since.as_str() <= since.as_str()
            && h.pruned_to.is_none_or(|p| p <= full_from)
    });
    if usable && let Some(h) = guard.as_mut() {
        let before = h.version;
        match h.follow(&path).await? {
            None => {
                h.evict(lo, &since)?;
                h.prune(full_from);
                let how = match h.version == before {
                    true => Advance::Current,
                    false => Advance::Advanced,
                };
                return Ok((guard.as_ref(), how));
            }
            Some(why) => tracing::debug!(stream, why, "rebuilding the serving window"),
        }
    }
    *guard = Held::build(store, stream, t, lo).await?;
    if let Some(h) = guard.as_mut() {
        h.prune(full_from);
    }
    Ok((guard.as_ref(), Advance::Rebuilt))
}

/// A DataFusion session whose `unified_<stream>` is the window of each stream of `streams` at
/// `t` (those with a unified table); the views of [`super::window_view_sql`] work over it as
/// over the Delta table. Returns the streams present and the watermark.
pub async fn session(
    store: &Store,
    streams: &[&'static str],
    t: DateTime<Utc>,
    log: Option<&TaskLog>,
) -> Result<(SessionContext, Vec<&'static str>, Watermark, Rows)> {
    let ctx = super::session()?;
    let mut present = Vec::new();
    let mut by_stream = Rows::new();
    let mut mark = Watermark::new(t);
    let unique: std::collections::BTreeSet<&'static str> = streams.iter().copied().collect();
    for s in unique {
        let slot = slot(store, s);
        let mut guard = slot.lock().await;
        let Some(lo) = window_start(s, t) else {
            continue;
        };
        let (held, how) = advance(store, s, t, lo, &mut guard).await?;
        let Some(h) = held else { continue };
        let rows: usize = h
            .files
            .values()
            .flat_map(|f| &f.rows)
            .map(|b| b.num_rows())
            .sum();
        log_info(
            log,
            format!(
                "window of {s}: {} at version {} ({rows} rows since {})",
                how.describe(),
                h.version,
                rfc3339_secs(h.lo)
            ),
        );
        let rows: Vec<RecordBatch> = h
            .files
            .values()
            .flat_map(|f| f.rows.iter().cloned())
            .collect();
        by_stream.insert(s, (Arc::clone(&h.schema), rows.clone()));
        let table = MemTable::try_new(Arc::clone(&h.schema), vec![rows])
            .map_err(Error::datafusion(format!("the window of {s}")))?;
        ctx.register_table(format!("unified_{s}"), Arc::new(table))
            .map_err(Error::datafusion(format!("registering the window of {s}")))?;
        mark.add(s, h.mark());
        present.push(s);
    }
    Ok((ctx, present, mark, by_stream))
}

/// What a dashboards or alerts run reads: the windows ([`session`]), what they include, and
/// with `LAKEPIPE_SERVING_VERIFY` the same tables from Delta ([`super::verify`]).
pub struct Reading {
    /// `unified_<stream>` as the windows.
    pub ctx: SessionContext,
    /// The streams with a unified table.
    pub present: Vec<&'static str>,
    /// What the windows include.
    pub watermark: Watermark,
    /// The rows of each window, as registered (`unified_<stream>`).
    pub rows: Rows,
    /// `unified_<stream>` as the Delta tables, when runs check themselves.
    pub reference: Option<SessionContext>,
}

/// The schema and rows of the windows, by stream.
pub type Rows = BTreeMap<&'static str, (SchemaRef, Vec<RecordBatch>)>;

/// The rows of `batches` with event time in [`start`, `end`): the view `w` of
/// [`super::window_view_sql`] over them (whose date filter the event time implies).
pub fn rows_between(
    batches: &[RecordBatch],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<RecordBatch>> {
    let (lo, hi) = (start.timestamp_micros(), end.timestamp_micros());
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        if !matches!(
            b.column_by_name("event_time").map(|c| c.data_type()),
            Some(DataType::Timestamp(TimeUnit::Microsecond, _))
        ) {
            return Err(not_a_window("no microsecond event_time column"));
        }
        let kept = read::rows_in(b, lo, hi)?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    Ok(out)
}

/// The error of window rows without a column the window has.
fn not_a_window(detail: &str) -> Error {
    Error::Arrow {
        what: "the rows of a window",
        source: deltalake::arrow::error::ArrowError::SchemaError(format!(
            "the window has {detail}"
        )),
    }
}

/// `rows` by `_source` (`batch` and `speed` always present): over the rows of `w`
/// ([`rows_between`]), the same figures as `SELECT _source, count(*) FROM w GROUP BY _source`,
/// without planning a query.
pub fn source_counts(rows: &[RecordBatch]) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::from([("batch".to_string(), 0), ("speed".to_string(), 0)]);
    for b in rows {
        let source = b
            .column_by_name("_source")
            .ok_or_else(|| not_a_window("no _source column"))?;
        let source = cast(source, &DataType::Utf8)
            .map_err(Error::arrow("counting the window's rows by source"))?;
        for s in source.as_string::<i32>().iter().flatten() {
            *counts.entry(s.to_string()).or_default() += 1;
        }
    }
    Ok(counts)
}

/// The [`Reading`] of `streams` for a run at `t`.
pub async fn reading(
    store: &Store,
    streams: &[&'static str],
    t: DateTime<Utc>,
    log: Option<&TaskLog>,
) -> Result<Reading> {
    let (ctx, present, watermark, rows) = session(store, streams, t, log).await?;
    let reference = match super::verify::enabled() {
        true => Some(super::verify::reference(store, streams).await?),
        false => None,
    };
    Ok(Reading {
        ctx,
        present,
        watermark,
        rows,
        reference,
    })
}

/// Per date of `dates` that has rows, the figures of `stream`'s unified table (summed over its
/// files), from the window; `None` if the stream has no unified table.
pub async fn date_figures(
    store: &Store,
    stream: &'static str,
    t: DateTime<Utc>,
    dates: &[String],
) -> Result<Option<BTreeMap<String, Figures>>> {
    let slot = slot(store, stream);
    let mut guard = slot.lock().await;
    // Analytics reads a stream's files even when no dashboard or rule reads its rows.
    let lo = window_start(stream, t).unwrap_or(t);
    let (held, _) = advance(store, stream, t, lo, &mut guard).await?;
    let Some(h) = held else { return Ok(None) };
    let mut by_date: BTreeMap<String, Figures> = BTreeMap::new();
    for f in h.files.values() {
        if dates.contains(&f.date) {
            by_date.entry(f.date.clone()).or_default().merge(&f.figures);
        }
    }
    Ok(Some(by_date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_is_read_only_where_the_sql_names_it() {
        assert!(reads_today("SELECT sum(x) FROM today WHERE a"));
        assert!(reads_today("FROM w CROSS JOIN (SELECT 1 FROM TODAY)"));
        assert!(!reads_today("SELECT revenue_today FROM w"));
        assert!(!reads_today("SELECT today_total, x_today FROM w"));
    }

    #[test]
    fn files_are_known_by_their_name_however_a_path_names_them() {
        assert_eq!(
            file_name("date=2026-02-01/part-00001-abc.c000.snappy.parquet"),
            "part-00001-abc.c000.snappy.parquet"
        );
        assert_eq!(
            file_name(
                "file:///tmp/lake/serving/unified/x/date=2026-02-01/part-00001-abc.c000.snappy.parquet"
            ),
            "part-00001-abc.c000.snappy.parquet"
        );
    }
}
