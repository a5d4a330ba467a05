//! Reading the unified table into a window: the rows of the given data files (or of all of them)
//! from a start time, split by the file they come from, and each file's figures.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray as _, BooleanArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::StreamExt as _;
use object_store::ObjectStoreExt as _;

use super::{FileRows, NEWEST_LANDED_KEY, NEWEST_OBJECT_KEY, file_name};
use crate::layers::serving::{Error, Result, collect, conform_columns, ts_sql};
use crate::layers::sql;

/// The column the scan adds with each row's data file.
const FILE_COLUMN: &str = "__lakepipe_file";

/// Figures of a data file (or of a date: the sum over its files), for `analytics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Rows.
    pub events: u64,
    /// Rows from the batch layer.
    pub from_batch: u64,
    /// Rows from the speed layer.
    pub from_speed: u64,
    /// The newest event time (micros since the epoch).
    pub last_event_time: Option<i64>,
}

impl Figures {
    /// Adds `other`'s rows.
    pub fn merge(&mut self, other: &Figures) {
        self.events += other.events;
        self.from_batch += other.from_batch;
        self.from_speed += other.from_speed;
        self.last_event_time = match (self.last_event_time, other.last_event_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Reads `paths` of `table` (all its files if `None`): the figures of those of dates at or
/// after `since`, and their rows with event time at or after `lo`. Returns the rows' schema.
pub(super) async fn files(
    table: &DeltaTable,
    paths: Option<Vec<String>>,
    lo: DateTime<Utc>,
    since: &str,
) -> Result<(SchemaRef, BTreeMap<String, FileRows>)> {
    let what = || format!("reading {} into the serving window", table.table_url());
    let ctx = sql::session().map_err(Error::batch)?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(Error::delta(table.table_url().as_str()))?;
    let mut provider = table.table_provider().with_file_column(FILE_COLUMN);
    if let Some(p) = paths {
        provider = provider.with_file_paths(p);
    }
    let provider = provider.await.map_err(Error::datafusion(what()))?;
    ctx.register_table("t", provider)
        .map_err(Error::datafusion(what()))?;
    let since_sql = since.replace('\'', "''");
    let (_, figure_batches) = collect(
        ctx.sql(&format!(
            "SELECT CAST({FILE_COLUMN} AS VARCHAR) AS f, CAST(date AS VARCHAR) AS d, count(*) AS n,
               sum(CASE WHEN _source = 'batch' THEN 1 ELSE 0 END) AS b,
               sum(CASE WHEN _source = 'speed' THEN 1 ELSE 0 END) AS s,
               max(event_time) AS m
             FROM t WHERE date >= '{since_sql}' GROUP BY 1, 2"
        ))
        .await
        .map_err(Error::datafusion(what()))?,
    )
    .await?;
    let mut out: BTreeMap<String, FileRows> = BTreeMap::new();
    for b in &figure_batches {
        let text = |i: usize| cast(b.column(i), &DataType::Utf8).map_err(Error::arrow("figures"));
        let int = |i: usize| cast(b.column(i), &DataType::Int64).map_err(Error::arrow("figures"));
        let (f, d, n, nb, ns) = (text(0)?, text(1)?, int(2)?, int(3)?, int(4)?);
        let m = cast(
            b.column(5),
            &DataType::Timestamp(deltalake::arrow::datatypes::TimeUnit::Microsecond, None),
        )
        .map_err(Error::arrow("figures"))?;
        let (f, d) = (f.as_string::<i32>(), d.as_string::<i32>());
        let (n, nb, ns) = (
            n.as_primitive::<deltalake::arrow::datatypes::Int64Type>(),
            nb.as_primitive::<deltalake::arrow::datatypes::Int64Type>(),
            ns.as_primitive::<deltalake::arrow::datatypes::Int64Type>(),
        );
        let m = m.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            out.insert(
                file_name(f.value(i)),
                FileRows {
                    date: d.value(i).to_string(),
                    rows: Vec::new(),
                    pruned_to: i64::MIN,
                    figures: Figures {
                        events: n.value(i).max(0) as u64,
                        from_batch: nb.value(i).max(0) as u64,
                        from_speed: ns.value(i).max(0) as u64,
                        last_event_time: m.is_valid(i).then(|| m.value(i)),
                    },
                },
            );
        }
    }
    let lo_date = lo.format("%Y-%m-%d").to_string();
    let df = ctx
        .sql(&format!(
            "SELECT * FROM t WHERE date >= '{lo_date}' AND event_time >= {}",
            ts_sql(lo)
        ))
        .await
        .map_err(Error::datafusion(what()))?;
    let (schema, batches) = collect(df).await?;
    let file_idx = schema
        .index_of(FILE_COLUMN)
        .map_err(Error::arrow("the file column"))?;
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|i| *i != file_idx)
        .collect();
    let rows_schema = Arc::new(
        schema
            .project(&keep)
            .map_err(Error::arrow("the window's schema"))?,
    );
    for b in batches {
        let files = cast(b.column(file_idx), &DataType::Utf8).map_err(Error::arrow("files"))?;
        let files: &StringArray = files.as_string::<i32>();
        let b = b
            .project(&keep)
            .map_err(Error::arrow("the window's rows"))?;
        let mut names: Vec<&str> = files.iter().flatten().collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let part = if files.len() > 0 && files.iter().all(|f| f == Some(name)) {
                b.clone()
            } else {
                let mask: BooleanArray = files.iter().map(|f| Some(f == Some(name))).collect();
                filter_record_batch(&b, &mask).map_err(Error::arrow("the window's rows"))?
            };
            // A file whose date is before the figures held (a wide window) still gives rows.
            let entry = out.entry(file_name(name)).or_insert_with(|| FileRows {
                date: lo_date.clone(),
                rows: Vec::new(),
                figures: Figures::default(),
                pruned_to: i64::MIN,
            });
            entry.rows.push(part);
        }
    }
    Ok((rows_schema, out))
}

/// Reads the data files `added` (path in the table, `date` partition value) that commits after
/// the window's version added, straight from their Parquet objects: the same figures and rows as
/// [`files`] with those paths (`schema` is the window's, as that scan gave it), without planning
/// a scan of the table, which replays every file of its snapshot at each run. `None` when the
/// table is not laid out as this reads it (partitioned by something else than `date`, column
/// mapping): then [`files`] reads them.
pub(super) async fn added(
    table: &DeltaTable,
    schema: &SchemaRef,
    added: &[(String, String)],
    lo: DateTime<Utc>,
    since: &str,
) -> Result<Option<BTreeMap<String, FileRows>>> {
    let what = || table.table_url().to_string();
    let snapshot = table.snapshot().map_err(Error::delta(what()))?;
    let metadata = snapshot.metadata();
    let mapped = metadata
        .configuration()
        .get("delta.columnMapping.mode")
        .is_some_and(|m| m != "none");
    let partitions = metadata.partition_columns();
    if mapped || partitions.len() != 1 || partitions[0] != "date" {
        return Ok(None);
    }
    let objects = table.log_store().object_store(None);
    let lo_micros = lo.timestamp_micros();
    let lo_date = lo.format("%Y-%m-%d").to_string();
    let mut out = BTreeMap::new();
    for (path, date) in added {
        if date.as_str() < since {
            continue;
        }
        let location = object_store::path::Path::parse(path).map_err(|e| Error::Delta {
            table: what(),
            source: deltalake::DeltaTableError::from(object_store::Error::from(e)),
        })?;
        let bytes = objects
            .get(&location)
            .await
            .map_err(|e| Error::delta(what())(e.into()))?
            .bytes()
            .await
            .map_err(|e| Error::delta(what())(e.into()))?;
        // Decoding a day's file (after a batch run's recompute) takes a while: off the runtime.
        let (schema, date_of, lo_date) = (Arc::clone(schema), date.clone(), lo_date.clone());
        let file = tokio::task::spawn_blocking(move || {
            decode(bytes, &schema, &date_of, lo_micros, &lo_date)
        })
        .await
        .map_err(Error::batch)??;
        out.insert(file_name(path), file);
    }
    Ok(Some(out))
}

/// The figures and the rows from `lo` (micros; none if `date` is before `lo_date`) of the
/// Parquet file `bytes` of the date `date`, as the window's `schema` has them.
fn decode(
    bytes: bytes::Bytes,
    schema: &SchemaRef,
    date: &str,
    lo: i64,
    lo_date: &str,
) -> Result<FileRows> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(Error::batch)?;
    let mut file = FileRows {
        date: date.to_string(),
        rows: Vec::new(),
        figures: Figures::default(),
        pruned_to: i64::MIN,
    };
    for b in reader {
        let b = b.map_err(Error::arrow("reading a unified data file"))?;
        let b = conform(&b, schema, date)?;
        file.figures.merge(&figures_of(&b)?);
        if date >= lo_date {
            let rows = rows_from(&b, lo)?;
            if rows.num_rows() > 0 {
                file.rows.push(rows);
            }
        }
    }
    Ok(file)
}

/// `b` (a data file's rows) as the window's `schema` has them: its columns by name, cast where
/// the file's type differs (a time zone's spelling), `date` from the partition value, and
/// columns the file predates as nulls.
fn conform(b: &RecordBatch, schema: &SchemaRef, date: &str) -> Result<RecordBatch> {
    conform_columns(b, schema, "a unified data file's rows", |f, n| {
        match f.name() == "date" {
            true => Arc::new(StringArray::from(vec![date; n])) as ArrayRef,
            false => new_null_array(f.data_type(), n),
        }
    })
}

/// The figures of `b`'s rows: what the figures query of [`files`] gives for one file.
fn figures_of(b: &RecordBatch) -> Result<Figures> {
    let mut f = Figures {
        events: b.num_rows() as u64,
        ..Figures::default()
    };
    if let Some(source) = b.column_by_name("_source") {
        let source = cast(source, &DataType::Utf8).map_err(Error::arrow("figures"))?;
        for s in source.as_string::<i32>().iter().flatten() {
            match s {
                "batch" => f.from_batch += 1,
                "speed" => f.from_speed += 1,
                _ => {}
            }
        }
    }
    if let Some(ts) = b.column_by_name("event_time") {
        let ts = cast(
            ts,
            &DataType::Timestamp(deltalake::arrow::datatypes::TimeUnit::Microsecond, None),
        )
        .map_err(Error::arrow("figures"))?;
        f.last_event_time =
            deltalake::arrow::compute::max(ts.as_primitive::<TimestampMicrosecondType>());
    }
    Ok(f)
}

/// The rows of `b` with `event_time` at or after `lo` (micros). A batch wholly at or after
/// `lo` is returned as it is (shared, not copied).
pub(super) fn rows_from(b: &RecordBatch, lo: i64) -> Result<RecordBatch> {
    rows_in(b, lo, i64::MAX)
}

/// The rows of `b` with `event_time` in [`lo`, `hi`) (micros). A batch wholly inside is
/// returned as it is (shared, not copied); one without a microsecond `event_time` whole.
pub(super) fn rows_in(b: &RecordBatch, lo: i64, hi: i64) -> Result<RecordBatch> {
    let Some(col) = b.column_by_name("event_time") else {
        return Ok(b.clone());
    };
    let Some(ts) = col.as_any().downcast_ref::<TimestampMicrosecondArray>() else {
        return Ok(b.clone());
    };
    let inside = |v: i64| (lo..hi).contains(&v);
    if ts.null_count() == 0
        && deltalake::arrow::compute::min(ts).is_some_and(inside)
        && deltalake::arrow::compute::max(ts).is_some_and(inside)
    {
        return Ok(b.clone());
    }
    let mask: BooleanArray = ts.iter().map(|v| Some(v.is_some_and(inside))).collect();
    filter_record_batch(b, &mask).map_err(Error::arrow("the rows of a window"))
}

/// The newest speed-layer object the table's recent commits name (and when it was landed).
pub(super) async fn newest_object(table: &DeltaTable) -> (Option<String>, Option<String>) {
    let mut history = table.history(Some(200));
    while let Some(ci) = history.next().await {
        let Ok(ci) = ci else { break };
        if let Some(o) = ci.info.get(NEWEST_OBJECT_KEY).and_then(|o| o.as_str()) {
            let landed = ci
                .info
                .get(NEWEST_LANDED_KEY)
                .and_then(|l| l.as_str())
                .map(str::to_string);
            return (Some(o.to_string()), landed);
        }
    }
    (None, None)
}
