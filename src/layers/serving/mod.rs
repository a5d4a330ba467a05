//! The serving layer: the bodies of `4-serving_layer_merge` (every 10 minutes, or `[serving]
//! schedule`).
//!
//! - `unified_<stream>` merges batch and speed results into `serving/unified/<stream>` so that
//!   every event counts exactly once at every moment ([`unified`]).
//! - `dashboards` computes the five dashboards of SPEC over windows ending at the run's logical
//!   time, as Delta snapshots under `serving/dashboards/` and JSON documents ([`dashboards`]).
//! - `alerts` raises fraud, API and IoT alerts, each once, into `serving/alerts/history` and
//!   `serving/alerts/latest.json` ([`alerts`]).
//!   New alerts are then delivered to the configured webhook receivers ([`deliver`]).
//! - `analytics` keeps per stream and date figures and the per-domain master summary
//!   ([`analytics`]).
//! - `upkeep` compacts, checkpoints and vacuums every serving table and trims its log, so that
//!   file counts and log length stay bounded at any tick ([`upkeep`]).
//!
//! Windows are relative to the run's logical time T and end at T (exclusive), never the wall
//! clock. Dashboards, alerts and analytics read the windows kept in memory from run to run
//! ([`window`]): a run reads what the unified tables gained since the last one, never a window
//! again from Delta.

pub mod alerts;
pub mod analytics;
pub mod dag;
pub mod dashboards;
pub mod deliver;
pub mod error;
pub mod live;
pub mod prepared;
pub mod unified;
pub mod upkeep;
pub mod verify;
pub mod window;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{Field, SchemaRef};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;

pub use self::alerts::{AlertsBuilder, AlertsMetrics};
pub use self::analytics::{AnalyticsBuilder, AnalyticsMetrics};
pub use self::dashboards::{DashboardsBuilder, DashboardsMetrics};
pub use self::error::{Error, Result};
pub use self::unified::{UnifiedBuilder, UnifiedMetrics};
pub use self::upkeep::{UpkeepBuilder, UpkeepMetrics};
use crate::clock::rfc3339_secs;
use crate::layers::batch::compact::Compacted;
use crate::layers::sql;
use crate::layers::write;
use crate::scheduler::task::log_info;
use crate::store::{Store, register_delta};

/// The serving DAG.
pub const DAG_ID: &str = "4-serving_layer_merge";

/// SQL literal of the UTC instant `t`, typed like `event_time`.
pub fn ts_sql(t: DateTime<Utc>) -> String {
    format!(
        "arrow_cast('{}', 'Timestamp(Microsecond, Some(\"UTC\"))')",
        rfc3339_secs(t)
    )
}

/// Event dates (`YYYY-MM-DD`) that the window [`start`, `end`) touches.
pub fn dates_between(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let first = start.date_naive();
    let last = (end - Duration::microseconds(1)).date_naive().max(first);
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| d.to_string())
        .collect()
}

/// A DataFusion session for a serving run's queries over its windows and figures: one
/// partition. Their inputs are a few thousand rows in memory and a serving stage runs its tasks'
/// queries side by side, so splitting a query's rows over the cores only added repartitioning,
/// partial aggregates and their merge (7–9 % of the user CPU time of two simulated days).
pub fn session() -> Result<SessionContext> {
    let ctx = sql::session().map_err(Error::batch)?;
    sql::set_options(&ctx, |o| o.execution.target_partitions = 1);
    Ok(ctx)
}

/// A DataFusion session over the unified tables: registers `unified_<stream>` for each stream
/// in `streams` whose table exists, and returns the ones that do.
pub async fn unified_session(
    store: &Store,
    streams: &[&'static str],
) -> Result<(SessionContext, Vec<&'static str>)> {
    let ctx = sql::session().map_err(Error::batch)?;
    let mut present = Vec::new();
    let unique: std::collections::BTreeSet<&'static str> = streams.iter().copied().collect();
    for s in &unique {
        let path = unified::unified_path(s);
        if let Some(t) = store
            .delta_table(&path)
            .await
            .map_err(Error::delta(&path))?
        {
            let name = format!("unified_{s}");
            register_delta(&ctx, &name, &t)
                .await
                .map_err(Error::datafusion(format!("registering {name}")))?;
            present.push(*s);
        }
    }
    Ok((ctx, present))
}

/// SQL of the view `name`: the rows of `unified_<stream>` with event time in [`start`, `end`)
/// (partitions pruned by date).
pub fn window_view_sql(
    name: &str,
    stream: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> String {
    format!(
        "CREATE OR REPLACE VIEW {name} AS SELECT * FROM unified_{stream} WHERE {} AND event_time >= {} AND event_time < {}",
        sql::in_dates(&dates_between(start, end)),
        ts_sql(start),
        ts_sql(end)
    )
}

/// Runs `df` and returns its rows with its schema (also when there are none).
pub async fn collect(df: DataFrame) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut batches = df.collect().await.map_err(Error::datafusion("collect"))?;
    batches.retain(|b| b.num_rows() > 0);
    Ok((schema, batches))
}

/// `b` with the columns of `schema`, taken by name (a column `b` lacks is `missing(field,
/// rows)`) and cast to its types. `what` names the rows for errors.
pub fn conform_columns(
    b: &RecordBatch,
    schema: &SchemaRef,
    what: &'static str,
    missing: impl Fn(&Field, usize) -> ArrayRef,
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let column = match b.column_by_name(f.name()) {
                Some(c) => Arc::clone(c),
                None => missing(f, b.num_rows()),
            };
            cast(&column, f.data_type()).map_err(Error::arrow(what))
        })
        .collect::<Result<_>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(Error::arrow(what))
}

/// Rows as JSON objects.
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<serde_json::Value>> {
    let mut w = deltalake::arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        w.write(b).map_err(Error::arrow("rows as JSON"))?;
    }
    w.finish().map_err(Error::arrow("rows as JSON"))?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(Error::json("rows as JSON"))
}

/// Replaces the whole Delta table at `path` by `batches` (a snapshot), in one commit labelled
/// with the serving run `t`.
pub async fn overwrite_snapshot(
    store: &Store,
    path: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    t: DateTime<Utc>,
) -> Result<u64> {
    let (schema, batches) = signed(schema, batches)?;
    let batches = if batches.is_empty() {
        vec![RecordBatch::new_empty(Arc::clone(&schema))]
    } else {
        batches
    };
    let table = store
        .delta_table_or_new(path)
        .await
        .map_err(Error::delta(path))?;
    // The usual run: the table has the rows' columns; the files are replaced without planning.
    if same_columns(&table, &schema) {
        let table = write::write_batches(table, batches, write::Replace::All, run_label(t))
            .await
            .map_err(Error::delta(path))?;
        store.keep_table(path, &table);
        return Ok(table.version().unwrap_or_default());
    }
    let table = table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
        .with_commit_properties(run_label(t))
        .await
        .map_err(Error::delta(path))?;
    store.keep_table(path, &table);
    Ok(table.version().unwrap_or_default())
}

/// Whether `table` exists with the columns of `schema` (by name, as Delta types them), each
/// column that may be null in `schema` nullable in the table: rows of `schema` can then be
/// written to it as they are.
pub(crate) fn same_columns(table: &deltalake::DeltaTable, schema: &SchemaRef) -> bool {
    use delta_kernel::engine::arrow_conversion::TryIntoKernel as _;
    let wanted: Option<deltalake::kernel::StructType> = schema.as_ref().try_into_kernel().ok();
    let (Ok(snapshot), Some(wanted)) = (table.snapshot(), wanted) else {
        return false;
    };
    let current = snapshot.schema();
    current.fields().count() == wanted.fields().count()
        && wanted.fields().all(|w| {
            current.field(w.name()).is_some_and(|c| {
                c.data_type() == w.data_type() && (c.is_nullable() || !w.is_nullable())
            })
        })
}

/// `batches` with their unsigned integer columns (`row_number()`, `rank()` give `UInt64`) cast
/// to the signed type Delta has for them: Delta has no unsigned types, and a Parquet file with an
/// unsigned column under a `long` in the table's schema is refused by readers that check
/// (Polars: "data type mismatch"). A value that does not fit is an error, never a null.
fn signed(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    use deltalake::arrow::compute::{CastOptions, cast_with_options};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    let to = |t: &DataType| match t {
        DataType::UInt8 => Some(DataType::Int16),
        DataType::UInt16 => Some(DataType::Int32),
        DataType::UInt32 | DataType::UInt64 => Some(DataType::Int64),
        _ => None,
    };
    if !schema.fields().iter().any(|f| to(f.data_type()).is_some()) {
        return Ok((schema, batches));
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match to(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    let signed_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let batches = batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(signed_schema.fields())
                .map(|(c, f)| match c.data_type() == f.data_type() {
                    true => Ok(Arc::clone(c)),
                    false => cast_with_options(c, f.data_type(), &options),
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::arrow("an unsigned column as signed"))?;
            RecordBatch::try_new(Arc::clone(&signed_schema), columns)
                .map_err(Error::arrow("an unsigned column as signed"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((signed_schema, batches))
}

/// Commit properties naming the serving run.
pub fn run_label(t: DateTime<Utc>) -> CommitProperties {
    serving_commit().with_metadata([(
        unified::RUN_KEY.to_string(),
        serde_json::Value::from(rfc3339_secs(t)),
    )])
}

/// Properties of every serving-layer commit: no expired-log cleanup after the commit. That
/// cleanup lists the whole `_delta_log` (three `stat`s per entry on a local lake) after every
/// commit and judges expiry by the wall clock; `upkeep` removes expired log entries instead,
/// on its schedule and in the runs' logical time ([`upkeep`]).
pub fn serving_commit() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

/// Serialises the serving operations of this process that write `what` (`unified_<stream>`,
/// `dashboards`, `alerts`, `analytics`) in the lake at `store`: a live run and a scheduled run
/// of the same operation take turns, so that neither appends what the other is appending.
pub async fn exclusive(store: &Store, what: &str) -> tokio::sync::OwnedMutexGuard<()> {
    type Locks = std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: std::sync::LazyLock<Locks> = std::sync::LazyLock::new(Default::default);
    let lock = {
        let mut m = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry(format!("{}\u{0}{what}", store.url())).or_default())
    };
    lock.lock_owned().await
}

/// Records the unified tables of `streams` as read by `ctx`'s attempt (for its lineage).
pub async fn read_unified<'a>(
    ctx: &crate::scheduler::TaskContext,
    streams: impl IntoIterator<Item = &'a str>,
) {
    for stream in streams {
        ctx.read_table(&unified::unified_path(stream), None).await;
    }
}

/// Writes a small JSON document for UIs and BI tools.
pub async fn put_json(store: &Store, key: &str, doc: &serde_json::Value) -> Result<()> {
    Ok(store.put_json(key, doc).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    /// One row of the one-column tables of these tests: `n`.
    pub(super) fn n_row(n: i64) -> RecordBatch {
        use deltalake::arrow::array::Int64Array;
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![n]))]).unwrap()
    }

    /// The creation of a table of one `long` column `n` at `path`.
    pub(super) async fn n_table(
        store: &Store,
        path: &str,
    ) -> deltalake::operations::create::CreateBuilder {
        use deltalake::kernel::{DataType as DeltaType, PrimitiveType};
        store
            .delta_table_or_new(path)
            .await
            .unwrap()
            .create()
            .with_column("n", DeltaType::Primitive(PrimitiveType::Long), true, None)
    }

    /// A serving commit leaves expired log entries for `upkeep` (which judges expiry in logical
    /// time); delta-rs's own cleanup, which the other commit keeps, removes them.
    #[tokio::test]
    async fn serving_commits_leave_expired_log_entries_to_upkeep() {
        use deltalake::TableProperty;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let t = parse_utc("2026-02-01T00:00:00Z").unwrap();
        let first_entry_left = |path: &str| {
            dir.path()
                .join(path)
                .join("_delta_log/00000000000000000000.json")
                .exists()
        };
        for (path, props) in [
            ("serving", run_label(t)),
            ("default", CommitProperties::default()),
        ] {
            // Every entry of this table's log expires at once.
            let mut table = n_table(&store, path)
                .await
                .with_configuration_property(
                    TableProperty::LogRetentionDuration,
                    Some("interval 0 seconds"),
                )
                .await
                .unwrap();
            for n in 0..2 {
                table = table.write(vec![n_row(n)]).await.unwrap();
            }
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .unwrap();
            table
                .write(vec![n_row(9)])
                .with_commit_properties(props)
                .await
                .unwrap();
        }
        assert!(first_entry_left("serving"));
        assert!(!first_entry_left("default"));
    }

    /// A snapshot of a `row_number()` column is a signed `long` in the table and in its
    /// Parquet files; a value beyond `i64` is refused.
    #[tokio::test]
    async fn snapshots_store_unsigned_columns_as_signed() {
        use deltalake::arrow::array::UInt64Array;
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "rank",
            DataType::UInt64,
            false,
        )]));
        let batch = |v: Vec<u64>| {
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(UInt64Array::from(v))]).unwrap()
        };
        let t = parse_utc("2026-02-01T00:00:00Z").unwrap();
        overwrite_snapshot(&store, "d", Arc::clone(&schema), vec![batch(vec![1, 2])], t)
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        assert_eq!(files.len(), 1);
        let reader =
            deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&files[0]).unwrap(),
            )
            .unwrap();
        assert_eq!(reader.schema().field(0).data_type(), &DataType::Int64);
        let table = store.delta_table("d").await.unwrap().unwrap();
        let delta_schema = table.snapshot().unwrap().schema();
        assert_eq!(
            delta_schema.fields().next().unwrap().data_type(),
            &deltalake::kernel::DataType::Primitive(deltalake::kernel::PrimitiveType::Long)
        );
        let too_big =
            overwrite_snapshot(&store, "d", schema.clone(), vec![batch(vec![u64::MAX])], t).await;
        assert!(too_big.is_err());
    }

    #[test]
    fn windows_touch_the_dates_they_span() {
        let at = |s: &str| parse_utc(s).unwrap();
        assert_eq!(
            dates_between(at("2026-02-01T23:50:00Z"), at("2026-02-02T00:00:00Z")),
            ["2026-02-01"]
        );
        assert_eq!(
            dates_between(at("2026-02-01T23:50:00Z"), at("2026-02-02T00:10:00Z")),
            ["2026-02-01", "2026-02-02"]
        );
        assert_eq!(
            dates_between(at("2026-02-02T00:00:00Z"), at("2026-02-02T02:00:00Z")),
            ["2026-02-02"]
        );
    }
}
