//! `bronze_<stream>`: appends the speed-layer files the run consumes (see [`super::lineage`])
//! to `batch/bronze/<stream>` exactly as landed — one row per line, malformed lines included —
//! with lineage columns `_source_key`, `_line`, `_ingest_run`, `_batch_run`, partitioned by the
//! event date of the file's partition.
//!
//! Exactly once: the commit carries a Delta application transaction
//! (`lakepipe-bronze-<stream>`, version = the run's epoch seconds), written in the same atomic
//! commit as the data; a re-run that finds it committed writes nothing. Files are read one at a
//! time and streamed into Parquet files that roll at the optimizer's target size
//! ([`super::compact::TARGET_FILE_BYTES`], so `compact` leaves them alone), in row groups of
//! [`super::ROW_GROUP_ROWS`]: memory does not grow with the day.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, DataType as DeltaType, StructField, Transaction};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter, WriteMode};

use super::lineage::{self, ConsumedFile};
use crate::clock::rfc3339_secs;
use crate::scheduler::{Fatal, TaskBody, TaskContext};
use crate::sources::stream::StreamSpec;
use crate::store::Store;

/// Columns of every bronze table: (name, is 64-bit integer).
const COLUMNS: [(&str, bool); 6] = [
    ("raw", false),
    ("_source_key", false),
    ("_line", true),
    ("_ingest_run", false),
    ("_batch_run", false),
    ("date", false),
];

/// The body of `bronze_<stream>`.
pub struct Bronze {
    /// The stream.
    pub spec: &'static StreamSpec,
}

fn arrow_schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|(n, long)| {
                Field::new(
                    *n,
                    if *long {
                        DataType::Int64
                    } else {
                        DataType::Utf8
                    },
                    false,
                )
            })
            .collect::<Vec<_>>(),
    ))
}

/// Opens the table at `path`, creating it (partitioned by `date`) if missing.
pub async fn open_or_create(
    store: &Store,
    path: &str,
    fields: Vec<StructField>,
) -> anyhow::Result<DeltaTable> {
    let t = store.delta_table_or_new(path).await?;
    if t.version().is_some() {
        return Ok(t);
    }
    Ok(t.create()
        .with_columns(fields)
        .with_partition_columns(["date"])
        .await?)
}

fn delta_fields() -> Vec<StructField> {
    COLUMNS
        .iter()
        .map(|(n, long)| {
            StructField::new(
                *n,
                if *long {
                    DeltaType::LONG
                } else {
                    DeltaType::STRING
                },
                false,
            )
        })
        .collect()
}

/// The rows of one landed file, with lineage (`batch_run` empty when read by the serving layer).
pub fn file_batch(f: &ConsumedFile, body: &[u8], batch_run: &str) -> anyhow::Result<RecordBatch> {
    // `from_utf8` checks ASCII a word at a time; the lossy form only runs on broken input.
    let text = match std::str::from_utf8(body) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    };
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    let mut raw = StringBuilder::with_capacity(n, body.len());
    let mut line_no = Int64Builder::with_capacity(n);
    for (i, l) in lines.iter().enumerate() {
        raw.append_value(l);
        line_no.append_value(i as i64 + 1);
    }
    let repeat = |v: &str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * v.len());
        for _ in 0..n {
            b.append_value(v);
        }
        Arc::new(b.finish())
    };
    Ok(RecordBatch::try_new(
        arrow_schema(),
        vec![
            Arc::new(raw.finish()),
            repeat(&f.key),
            Arc::new(line_no.finish()),
            repeat(&f.ingest_run),
            repeat(batch_run),
            repeat(&f.date),
        ],
    )?)
}

/// Parquet settings of bronze files: the layers' ([`super::parquet_properties_for`]), and the
/// `raw` lines — all different, and never filtered on — get neither a dictionary (it would
/// overflow after a page and fall back to plain anyway) nor min/max statistics.
fn writer_properties() -> WriterProperties {
    let raw = ColumnPath::from("raw");
    super::parquet_properties_for(&arrow_schema())
        .set_column_dictionary_enabled(raw.clone(), false)
        .set_column_statistics_enabled(raw, EnabledStatistics::None)
        .build()
}

/// Commits `adds` with the application transaction that marks the run as done.
async fn commit(
    table: &mut DeltaTable,
    adds: Vec<Action>,
    txn: Transaction,
) -> anyhow::Result<u64> {
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(vec!["date".into()]),
        predicate: None,
    };
    let props = CommitProperties::default().with_application_transaction(txn);
    let version = super::commit(table, adds, operation, props).await?;
    table.load().await?;
    Ok(version)
}

#[async_trait::async_trait]
impl TaskBody for Bronze {
    async fn run(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let stream = self.spec.name;
        let run = ctx.logical_date;
        let store = &ctx.store;
        let manifest = lineage::plan(store, stream, run).await?;
        let path = super::table_path("bronze", stream);
        let mut table = open_or_create(store, &path, delta_fields()).await?;
        let app_id = format!("lakepipe-bronze-{stream}");
        let committed = table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), &app_id)
            .await?;
        let summary = |rows: u64, version: Option<u64>, state: &str| {
            serde_json::json!({
                "stream": stream,
                "files": manifest.files.len(),
                "rows": rows,
                "dates": manifest.dates(),
                "table_version": version,
                "state": state,
            })
        };
        if committed.is_some_and(|v| v >= run.timestamp()) {
            ctx.log.info(format!(
                "{path}: batch run {} already committed (application transaction {app_id} at {}); nothing to do",
                rfc3339_secs(run),
                committed.unwrap_or_default()
            ));
            lineage::record(store, run, &manifest).await?;
            return Ok(summary(
                0,
                Some(table.version().unwrap_or_default()),
                "already_committed",
            ));
        }
        ctx.log.info(format!(
            "{path}: {} files to consume over dates {:?}",
            manifest.files.len(),
            manifest.dates()
        ));
        let batch_run = rfc3339_secs(run);
        let mut writer = RecordBatchWriter::for_table(&table)?
            .with_writer_properties(writer_properties())
            .with_target_file_size(super::compact::TARGET_FILE_BYTES);
        let mut rows = 0u64;
        for f in &manifest.files {
            let body = store.get_opt(&f.key).await?.ok_or_else(|| {
                Fatal(format!(
                    "{} was listed but is gone: the speed layer lost a file",
                    f.key
                ))
            })?;
            let batch = file_batch(f, &body, &batch_run)?;
            rows += batch.num_rows() as u64;
            // A file's rows share its date: written to that partition as they are, not
            // regrouped by the writer (which copies every column of every batch to do it).
            writer
                .write_partition(batch, &super::date_partition(&f.date), WriteMode::Default)
                .await?;
        }
        let adds = writer.flush().await?.into_iter().map(Action::Add).collect();
        let version = commit(&mut table, adds, Transaction::new(&app_id, run.timestamp())).await?;
        lineage::record(store, run, &manifest).await?;
        ctx.log.info(format!(
            "{path}: {rows} rows committed as version {version}"
        ));
        Ok(summary(rows, Some(version), "committed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_becomes_one_row_per_line_with_lineage() {
        let f = ConsumedFile {
            key: "realtime/api_logs/date=2026-02-01/hour=00/api_logs_20260201T000000Z.jsonl".into(),
            date: "2026-02-01".into(),
            ingest_run: "2026-02-01T00:05:00Z".into(),
            bytes: 0,
        };
        let b = file_batch(&f, b"{\"a\":1}\nnot json\n", "2026-02-02T02:00:00Z").unwrap();
        assert_eq!(b.num_rows(), 2);
        let raw = b
            .column(0)
            .as_any()
            .downcast_ref::<deltalake::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(raw.value(1), "not json");
        let line = b
            .column(2)
            .as_any()
            .downcast_ref::<deltalake::arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(line.value(1), 2);
    }

    #[test]
    fn raw_lines_and_line_numbers_get_no_dictionary_and_lineage_keeps_one() {
        let props = writer_properties();
        let col = |c: &str| ColumnPath::from(c);
        assert!(!props.dictionary_enabled(&col("raw")));
        assert_eq!(
            props.statistics_enabled(&col("raw")),
            EnabledStatistics::None
        );
        assert!(!props.dictionary_enabled(&col("_line")));
        assert!(props.dictionary_enabled(&col("_source_key")));
        assert_ne!(
            props.statistics_enabled(&col("_source_key")),
            EnabledStatistics::None
        );
    }
}
