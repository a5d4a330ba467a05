//! `bronze_<stream>`: appends the speed-layer files the run consumes (see [`super::lineage`])
//! to `batch/bronze/<stream>` exactly as landed — one row per line, malformed lines included —
//! with lineage columns `_source_key`, `_line`, `_ingest_run`, `_batch_run`, partitioned by the
//! event date of the file's partition.
//!
//! `raw` is text. A line that is not valid UTF-8 is never silently rewritten: `raw` holds it
//! with U+FFFD in place of the broken bytes (for people and SQL), and the nullable binary
//! column `raw_bytes` holds the line exactly as landed — null on every valid line, so it costs
//! nothing there. Silver quarantines such a row under `valid_utf8`. Tables made before
//! `raw_bytes` existed get it added (a Delta schema change, its own commit) by the first run
//! that appends to them; their older files read it as null.
//!
//! Exactly once: the commit carries a Delta application transaction
//! (`lakepipe-bronze-<stream>`, version = the run's epoch seconds), written in the same atomic
//! commit as the data; a re-run that finds it committed writes nothing. Files are read one at a
//! time and streamed into Parquet files that roll at the optimizer's target size
//! ([`crate::layers::write::TARGET_FILE_BYTES`], so `compact` leaves them alone), in row groups of
//! [`crate::layers::write::ROW_GROUP_ROWS`]: memory does not grow with the day.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, Int64Builder, RecordBatch, StringBuilder, new_null_array,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::arrow::error::ArrowError;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, DataType as DeltaType, StructField, Transaction};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::delta;
use super::lineage::{self, ConsumedFile, Manifest};
use super::{Error, info};
use crate::clock::rfc3339_secs;
use crate::layers::write::{self, TARGET_FILE_BYTES, date_partition, parquet_properties_for};
use crate::scheduler::task::{TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::sources::stream::StreamSpec;
use crate::store::Store;

/// Columns of every bronze table: (name, is 64-bit integer), all non-null, then
/// [`RAW_BYTES`].
const COLUMNS: [(&str, bool); 6] = [
    ("raw", false),
    ("_source_key", false),
    ("_line", true),
    ("_ingest_run", false),
    ("_batch_run", false),
    ("date", false),
];

/// The last column of every bronze table: a line that is not valid UTF-8, exactly as landed
/// (binary, nullable; null for every valid line). Last, so that a table made before it existed
/// and given it by a schema change has the same columns in the same order as a new one.
pub const RAW_BYTES: &str = "raw_bytes";

/// Attempts of a bronze run whose commits other runs of the stream keep refusing.
const CONFLICT_ATTEMPTS: u32 = 8;

/// The body of `bronze_<stream>`.
pub struct Bronze {
    /// The stream.
    pub spec: &'static StreamSpec,
}

fn arrow_schema() -> Arc<Schema> {
    let mut fields: Vec<Field> = COLUMNS
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
        .collect();
    fields.push(Field::new(RAW_BYTES, DataType::Binary, true));
    Arc::new(Schema::new(fields))
}

/// Opens the table at `path`, creating it (partitioned by `date`) if missing.
pub async fn open_or_create(
    store: &Store,
    path: &str,
    fields: Vec<StructField>,
) -> Result<DeltaTable, Error> {
    let t = store.delta_table_or_new(path).await.map_err(delta(path))?;
    if t.version().is_some() {
        return Ok(t);
    }
    store
        .create_dated_table(t, path, fields)
        .await
        .map_err(delta(path))
}

fn raw_bytes_field() -> StructField {
    StructField::new(RAW_BYTES, DeltaType::BINARY, true)
}

fn delta_fields() -> Vec<StructField> {
    let mut fields: Vec<StructField> = COLUMNS
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
        .collect();
    fields.push(raw_bytes_field());
    fields
}

/// Builders of the `raw` lines and their numbers for `lines` lines of `bytes` bytes in all.
fn builders(lines: usize, bytes: usize) -> (StringBuilder, Int64Builder) {
    (
        StringBuilder::with_capacity(lines, bytes),
        Int64Builder::with_capacity(lines),
    )
}

/// The lines of `body` split as [`str::lines`] splits text (at `\n`, a `\r` before it dropped,
/// no empty line after a final `\n`), on bytes that need not be UTF-8.
fn byte_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split_inclusive(|b| *b == b'\n')
        .map(|l| match l.strip_suffix(b"\n") {
            Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
            None => l,
        })
}

/// The rows of one landed file, with lineage (`batch_run` empty when read by the serving layer).
pub fn file_batch(
    f: &ConsumedFile,
    body: &[u8],
    batch_run: &str,
) -> Result<RecordBatch, ArrowError> {
    // `from_utf8` checks ASCII a word at a time; only in a file that is not valid UTF-8 are the
    // lines checked one by one, and only those that are not get their bytes kept.
    let (raw, line_no, raw_bytes): (ArrayRef, ArrayRef, ArrayRef) = match std::str::from_utf8(body)
    {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let (mut raw, mut line_no) = builders(lines.len(), body.len());
            for (i, l) in lines.iter().enumerate() {
                raw.append_value(l);
                line_no.append_value(i as i64 + 1);
            }
            (
                Arc::new(raw.finish()),
                Arc::new(line_no.finish()),
                new_null_array(&DataType::Binary, lines.len()),
            )
        }
        Err(_) => {
            let lines: Vec<&[u8]> = byte_lines(body).collect();
            let (mut raw, mut line_no) = builders(lines.len(), body.len());
            let mut bytes = BinaryBuilder::with_capacity(lines.len(), 0);
            for (i, l) in lines.iter().enumerate() {
                match std::str::from_utf8(l) {
                    Ok(text) => {
                        raw.append_value(text);
                        bytes.append_null();
                    }
                    Err(_) => {
                        raw.append_value(String::from_utf8_lossy(l));
                        bytes.append_value(l);
                    }
                }
                line_no.append_value(i as i64 + 1);
            }
            (
                Arc::new(raw.finish()),
                Arc::new(line_no.finish()),
                Arc::new(bytes.finish()),
            )
        }
    };
    let n = raw.len();
    let repeat = |v: &str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * v.len());
        for _ in 0..n {
            b.append_value(v);
        }
        Arc::new(b.finish())
    };
    RecordBatch::try_new(
        arrow_schema(),
        vec![
            raw,
            repeat(&f.key),
            line_no,
            repeat(&f.ingest_run),
            repeat(batch_run),
            repeat(&f.date),
            raw_bytes,
        ],
    )
}

/// Parquet settings of bronze files: the layers' ([`parquet_properties_for`]), and the
/// `raw` lines — all different, and never filtered on — get neither a dictionary (it would
/// overflow after a page and fall back to plain anyway) nor min/max statistics; nor do the
/// `raw_bytes` of the lines that are not UTF-8.
fn writer_properties() -> WriterProperties {
    [ColumnPath::from("raw"), ColumnPath::from(RAW_BYTES)]
        .into_iter()
        .fold(parquet_properties_for(&arrow_schema()), |b, c| {
            b.set_column_dictionary_enabled(c.clone(), false)
                .set_column_statistics_enabled(c, EnabledStatistics::None)
        })
        .build()
}

/// `table` with the [`RAW_BYTES`] column, added by a schema change (its own commit: a nullable
/// column, null in the files written before) if the table was made before the column existed.
async fn with_raw_bytes(table: DeltaTable) -> Result<(DeltaTable, bool), DeltaTableError> {
    if table.snapshot()?.schema().field(RAW_BYTES).is_some() {
        return Ok((table, false));
    }
    let table = table.add_columns().with_fields([raw_bytes_field()]).await?;
    Ok((table, true))
}

/// Commits `adds` with the application transactions that mark the run as done.
async fn commit(
    table: &mut DeltaTable,
    adds: Vec<Action>,
    txns: Vec<Transaction>,
) -> Result<u64, DeltaTableError> {
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(vec!["date".into()]),
        predicate: None,
    };
    let props = CommitProperties::default().with_application_transactions(txns);
    let version = write::commit(table, adds, operation, props).await?;
    table.load().await?;
    Ok(version)
}

/// What `bronze_<stream>` did: the files and rows it appended, the dates they touch, the
/// table's version after, and whether the run was committed now or found committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BronzeMetrics {
    /// The stream.
    pub stream: String,
    /// Files the run consumes.
    pub files: usize,
    /// Rows appended (0 if already committed).
    pub rows: u64,
    /// Event dates the files touch.
    pub dates: Vec<String>,
    /// The table's version after the run.
    pub table_version: Option<u64>,
    /// Whether this attempt committed the run.
    pub state: BronzeState,
}

/// Whether `bronze_<stream>` committed the run's files or found them committed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BronzeState {
    /// Appended by this attempt.
    Committed,
    /// An earlier attempt's commit carries the run's application transaction: nothing done.
    AlreadyCommitted,
}

/// What `bronze_<stream>` will do for one run, decided without I/O from the run's lineage
/// manifest: the table, the application transaction that makes the append exactly-once, and
/// the files to append.
#[derive(Debug, Clone, PartialEq)]
pub struct BronzePlan {
    /// The stream.
    pub stream: &'static str,
    /// The run's logical date.
    pub run: DateTime<Utc>,
    /// `batch/bronze/<stream>`.
    pub path: String,
    /// The Delta application id (`lakepipe-bronze-<stream>`).
    pub app_id: String,
    /// The transaction version that marks the run done (its epoch seconds).
    pub txn_version: i64,
    /// `_batch_run` of the rows (RFC 3339).
    pub batch_run: String,
    /// The event dates the files touch.
    pub dates: Vec<String>,
    /// What the run consumes (recorded once the rows are committed).
    pub manifest: Manifest,
}

impl BronzePlan {
    /// The plan of `spec`'s bronze task in the run at `logical_date` that consumes `manifest`.
    pub fn new(
        spec: &'static StreamSpec,
        logical_date: DateTime<Utc>,
        manifest: &Manifest,
    ) -> Self {
        let stream = spec.name;
        BronzePlan {
            stream,
            run: logical_date,
            path: super::table_path("bronze", stream),
            app_id: format!("lakepipe-bronze-{stream}"),
            txn_version: logical_date.timestamp(),
            batch_run: rfc3339_secs(logical_date),
            dates: manifest.dates(),
            manifest: manifest.clone(),
        }
    }

    fn metrics(&self, rows: u64, version: Option<u64>, state: BronzeState) -> BronzeMetrics {
        BronzeMetrics {
            stream: self.stream.to_string(),
            files: self.manifest.files.len(),
            rows,
            dates: self.dates.clone(),
            table_version: version,
            state,
        }
    }

    /// The application transaction that marks this run's files committed.
    pub fn run_app_id(&self) -> String {
        format!("{}@{}", self.app_id, self.batch_run)
    }

    /// Appends the run's files to the table, exactly once per run.
    ///
    /// A run is committed when its own application transaction
    /// ([`BronzePlan::run_app_id`]) is in the table — or, for a run made before those existed,
    /// when the stream's transaction (`lakepipe-bronze-<stream>`) reached its epoch and its
    /// manifest was recorded (then recorded after the commit). A run not committed plans its
    /// files again from the runs that are, earlier or later: so a run made after a later one
    /// (a backfill with concurrency, a cleared run) takes the files nobody has committed, and
    /// none twice. Its manifest is recorded before the commit; every commit also carries the
    /// stream's transaction, so two runs of one stream committing at once conflict and one is
    /// refused (it plans again on its retry).
    pub async fn execute(
        &self,
        store: &Store,
        log: Option<&TaskLog>,
    ) -> Result<BronzeMetrics, Error> {
        let (path, app_id, run) = (&self.path, &self.app_id, self.run);
        let table = open_or_create(store, path, delta_fields()).await?;
        let txn_of = async |id: &str| {
            table
                .snapshot()
                .map_err(delta(path))?
                .transaction_version(table.log_store().as_ref(), id)
                .await
                .map_err(delta(path))
        };
        let run_app_id = self.run_app_id();
        let stream_txn = txn_of(app_id).await?;
        let recorded = lineage::recorded(store, self.stream, run).await?;
        let committed = txn_of(&run_app_id).await?.is_some()
            || (stream_txn.is_some_and(|v| v >= self.txn_version)
                && recorded.as_ref().is_some_and(|m| m.txn.is_none()));
        if committed {
            info(
                log,
                format!(
                    "{path}: batch run {} already committed (application transaction {run_app_id}); nothing to do",
                    self.batch_run,
                ),
            );
            if recorded.is_none() {
                lineage::record(store, run, &self.manifest).await?;
            }
            return Ok(self.metrics(
                0,
                Some(table.version().unwrap_or_default()),
                BronzeState::AlreadyCommitted,
            ));
        }
        let window_start = run - chrono::Duration::days(lineage::LOOKBACK_DAYS);
        let mut consumed = std::collections::HashSet::new();
        for m in lineage::manifests_from(store, self.stream, window_start).await? {
            let theirs = match &m.txn {
                _ if m.batch_run == self.batch_run => false,
                None => true,
                Some(id) => txn_of(id).await?.is_some(),
            };
            if theirs {
                consumed.extend(m.files.into_iter().map(|f| f.key));
            }
        }
        let manifest = Manifest {
            files: lineage::unconsumed(store, self.stream, run, &consumed).await?,
            txn: Some(run_app_id.clone()),
            ..self.manifest.clone()
        };
        if manifest.files != self.manifest.files {
            info(
                log,
                format!(
                    "{path}: planned again from the committed runs: {} files (the recorded plan had {})",
                    manifest.files.len(),
                    self.manifest.files.len()
                ),
            );
        }
        lineage::record(store, run, &manifest).await?;
        info(
            log,
            format!(
                "{path}: {} files to consume over dates {:?}",
                manifest.files.len(),
                manifest.dates()
            ),
        );
        let (mut table, added) = with_raw_bytes(table).await.map_err(delta(path))?;
        if added {
            info(
                log,
                format!(
                    "{path}: column {RAW_BYTES} added (the table predates it; its rows read it as null)"
                ),
            );
        }
        let mut writer = RecordBatchWriter::for_table(&table)
            .map_err(delta(path))?
            .with_writer_properties(writer_properties())
            .with_target_file_size(TARGET_FILE_BYTES);
        let mut rows = 0u64;
        for f in &manifest.files {
            let body = store
                .get_opt(&f.key)
                .await?
                .ok_or_else(|| Error::LostFile { key: f.key.clone() })?;
            let batch = file_batch(f, &body, &self.batch_run)?;
            rows += batch.num_rows() as u64;
            // A file's rows share its date: written to that partition as they are, not
            // regrouped by the writer (which copies every column of every batch to do it).
            writer
                .write_partition(batch, &date_partition(&f.date), WriteMode::Default)
                .await
                .map_err(delta(path))?;
        }
        let adds = writer
            .flush()
            .await
            .map_err(delta(path))?
            .into_iter()
            .map(Action::Add)
            .collect();
        let txns = vec![
            Transaction::new(app_id, self.txn_version.max(stream_txn.unwrap_or_default())),
            Transaction::new(run_app_id, self.txn_version),
        ];
        let version = commit(&mut table, adds, txns).await.map_err(delta(path))?;
        info(
            log,
            format!("{path}: {rows} rows committed as version {version}"),
        );
        Ok(BronzeMetrics {
            files: manifest.files.len(),
            dates: manifest.dates(),
            ..self.metrics(rows, Some(version), BronzeState::Committed)
        })
    }
}

/// `bronze_<stream>` as an operation: loads the run's lineage manifest, plans, appends.
pub struct BronzeBuilder<'a> {
    store: &'a Store,
    spec: &'static StreamSpec,
    logical_date: DateTime<Utc>,
    log: Option<&'a TaskLog>,
}

impl<'a> BronzeBuilder<'a> {
    /// The bronze task of `spec` in the run at `logical_date`.
    pub fn new(store: &'a Store, spec: &'static StreamSpec, logical_date: DateTime<Utc>) -> Self {
        BronzeBuilder {
            store,
            spec,
            logical_date,
            log: None,
        }
    }

    /// Writes progress lines to `log`.
    pub fn with_log(mut self, log: &'a TaskLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Plans and executes; a commit refused because another run of the stream committed at
    /// the same moment is planned and made again (up to [`CONFLICT_ATTEMPTS`] times).
    async fn run(self) -> Result<BronzeMetrics, Error> {
        let manifest = lineage::plan(self.store, self.spec.name, self.logical_date).await?;
        let plan = BronzePlan::new(self.spec, self.logical_date, &manifest);
        let mut attempt = 1;
        loop {
            match plan.execute(self.store, self.log).await {
                Err(e @ Error::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                    info(self.log, format!("{e}: planning again (attempt {attempt})"));
                    tracing::info!(error = %e, attempt, "bronze commit refused: planning again");
                    attempt += 1;
                    let pause =
                        std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), attempt)
                            % (200 * u64::from(attempt));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                other => return other,
            }
        }
    }
}

impl<'a> std::future::IntoFuture for BronzeBuilder<'a> {
    type Output = Result<BronzeMetrics, Error>;
    type IntoFuture = futures::future::BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[async_trait::async_trait]
impl TaskBody for Bronze {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = BronzeBuilder::new(&ctx.store, self.spec, ctx.logical_date)
            .with_log(&ctx.log)
            .await?;
        // Lineage of what changed: the speed layer's objects of the stream, as one partitioned
        // dataset, appended to the table.
        if metrics.rows > 0 {
            ctx.datasets
                .read(crate::scheduler::task::Dataset::at(format!(
                    "realtime/{}",
                    self.spec.name
                )));
            let path = super::table_path("bronze", self.spec.name);
            ctx.wrote_table(&path, Some(metrics.rows)).await;
        }
        output(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Array as _, AsArray as _};
    use deltalake::arrow::datatypes::Int64Type;

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

    fn file(date: &str, hour: &str) -> ConsumedFile {
        ConsumedFile {
            key: format!(
                "realtime/api_logs/date={date}/hour={hour}/api_logs_{}T{hour}0000Z.jsonl",
                date.replace('-', "")
            ),
            date: date.into(),
            ingest_run: format!("{date}T{hour}:05:00Z"),
            bytes: 0,
        }
    }

    fn plan() -> BronzePlan {
        let spec = &crate::sources::api_logs::SPEC;
        let run = crate::clock::parse_utc("2026-02-02T02:00:00Z").unwrap();
        let manifest = Manifest {
            stream: "api_logs".into(),
            batch_run: "2026-02-02T02:00:00Z".into(),
            files: vec![file("2026-02-01", "23"), file("2026-01-31", "10")],
            silver_committed: false,
            txn: None,
        };
        BronzePlan::new(spec, run, &manifest)
    }

    #[test]
    fn the_plan_names_table_transaction_and_dates_without_a_store() {
        let plan = plan();
        assert_eq!(plan.path, "batch/bronze/api_logs");
        assert_eq!(plan.app_id, "lakepipe-bronze-api_logs");
        assert_eq!(plan.txn_version, plan.run.timestamp());
        assert_eq!(plan.batch_run, "2026-02-02T02:00:00Z");
        assert_eq!(plan.dates, ["2026-01-31", "2026-02-01"]);
        assert_eq!(plan.manifest.files.len(), 2);
    }

    #[test]
    fn metrics_are_the_task_output_of_both_states() {
        let plan = plan();
        for (state, text) in [
            (BronzeState::Committed, "committed"),
            (BronzeState::AlreadyCommitted, "already_committed"),
        ] {
            let m = plan.metrics(5, Some(3), state);
            assert_eq!(
                serde_json::to_value(&m).unwrap(),
                serde_json::json!({
                    "stream": "api_logs",
                    "files": 2,
                    "rows": 5,
                    "dates": ["2026-01-31", "2026-02-01"],
                    "table_version": 3,
                    "state": text,
                })
            );
            let back: BronzeMetrics =
                serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn lines_are_split_on_bytes_as_on_text() {
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\r\n",
            "a\r",
            "a\rb\n",
            "a\n\nb",
            "\r\n\r\n",
            "x\r\r\n",
            "a\nb\r\nc",
        ] {
            let bytes: Vec<&[u8]> = byte_lines(text.as_bytes()).collect();
            let lines: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
            assert_eq!(bytes, lines, "{text:?}");
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_kept_as_landed_and_the_others_are_unaffected() {
        let bad: &[u8] = b"{\"log_id\":\"b\",\"user_agent\":\"x\xff\xfe\xc3\x28y\"}";
        let mut body = b"{\"log_id\":\"a\"}\r\n".to_vec();
        body.extend_from_slice(bad);
        body.extend_from_slice(b"\n\nnot json \xc3\xa9\n");
        let b = file_batch(&file("2026-02-01", "10"), &body, "2026-02-02T02:00:00Z").unwrap();
        assert_eq!(b.num_rows(), 4);
        let raw = b.column_by_name("raw").unwrap().as_string::<i32>();
        assert_eq!(raw.value(0), "{\"log_id\":\"a\"}");
        assert_eq!(raw.value(1), String::from_utf8_lossy(bad));
        assert!(raw.value(1).contains('\u{FFFD}'));
        assert_eq!(raw.value(2), "");
        assert_eq!(raw.value(3), "not json é");
        let bytes = b.column_by_name(RAW_BYTES).unwrap().as_binary::<i32>();
        assert_eq!(bytes.null_count(), 3);
        assert!(bytes.is_valid(1));
        assert_eq!(bytes.value(1), bad);
        let line = b
            .column_by_name("_line")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(line.values().to_vec(), [1, 2, 3, 4]);
        // A valid file gets the column, all null.
        let ok = file_batch(&file("2026-02-01", "10"), b"a\nb\n", "").unwrap();
        let bytes = ok.column_by_name(RAW_BYTES).unwrap();
        assert_eq!((bytes.len(), bytes.null_count()), (2, 2));
    }

    /// Rows of `sql` over the table at `path` as `t`, each column cast to text.
    async fn rows(store: &Store, path: &str, sql: &str) -> Vec<Vec<String>> {
        let table = store.delta_table(path).await.unwrap().unwrap();
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        crate::store::register_delta(&ctx, "t", &table)
            .await
            .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in batches {
            let cols: Vec<ArrayRef> = b
                .columns()
                .iter()
                .map(|c| deltalake::arrow::compute::cast(c, &DataType::Utf8).unwrap())
                .collect();
            for i in 0..b.num_rows() {
                out.push(
                    cols.iter()
                        .map(|c| c.as_string::<i32>().value(i).to_string())
                        .collect(),
                );
            }
        }
        out
    }

    fn context(store: &Store, task: &str, run: &str) -> TaskContext {
        let at = crate::clock::parse_utc(run).unwrap();
        TaskContext {
            store: store.clone(),
            dag_id: super::super::DAG_ID.into(),
            task_id: task.into(),
            logical_date: at,
            data_interval: (at - chrono::Duration::days(1), at),
            try_number: 1,
            params: crate::scheduler::RunParams::default(),
            upstream: Default::default(),
            log: crate::scheduler::task::TaskLog::new(false),
            datasets: Default::default(),
        }
    }

    fn api_line(id: &str, user_agent: &[u8]) -> Vec<u8> {
        let mut l = format!(
            "{{\"log_id\":\"{id}\",\"event_time\":\"2026-02-01T10:00:00Z\",\"request_id\":\"r\",\"method\":\"GET\",\"endpoint\":\"/api/v1/users\",\"status_code\":200,\"response_time_ms\":10.0,\"client_ip\":\"10.0.0.1\",\"user_agent\":\""
        )
        .into_bytes();
        l.extend_from_slice(user_agent);
        l.extend_from_slice(
            b"\",\"region\":\"us-east-1\",\"api_key_id\":\"k\",\"bytes_sent\":1,\"bytes_received\":1}",
        );
        l
    }

    #[tokio::test]
    async fn a_table_made_before_raw_bytes_is_still_read_then_given_the_column_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let spec = &crate::sources::api_logs::SPEC;
        let path = super::super::table_path("bronze", spec.name);
        let run = "2026-02-02T02:00:00Z";
        // A bronze table of the old schema, holding one row of an earlier batch run.
        let old: Vec<StructField> = delta_fields()
            .into_iter()
            .filter(|f| f.name() != RAW_BYTES)
            .collect();
        let mut table = open_or_create(&store, &path, old).await.unwrap();
        let earlier = file("2026-02-01", "09");
        let rows_of_earlier = file_batch(&earlier, &api_line("old", b"ua"), run).unwrap();
        let rows_of_earlier = rows_of_earlier.project(&[0, 1, 2, 3, 4, 5]).unwrap();
        let mut w = RecordBatchWriter::for_table(&table).unwrap();
        w.write_partition(
            rows_of_earlier,
            &date_partition("2026-02-01"),
            WriteMode::Default,
        )
        .await
        .unwrap();
        let adds = w
            .flush()
            .await
            .unwrap()
            .into_iter()
            .map(Action::Add)
            .collect();
        let app_id = "lakepipe-bronze-api_logs";
        commit(&mut table, adds, vec![Transaction::new(app_id, 1)])
            .await
            .unwrap();
        // The speed layer holds a file with a line that is not UTF-8.
        let landed = file("2026-02-01", "10");
        let mut body = api_line("new", b"ua");
        body.push(b'\n');
        let bad = api_line("bad", b"x\xff\xfe\xc3\x28");
        body.extend_from_slice(&bad);
        body.push(b'\n');
        store
            .put(&landed.key, body.into(), &Default::default())
            .await
            .unwrap();
        let silver = super::super::silver::Silver { spec };

        // Silver reads the old table as it is.
        let out = silver
            .run(&context(&store, "silver_api_logs", run))
            .await
            .unwrap();
        assert_eq!(
            (out["rows_in"].as_u64(), out["silver"].as_u64()),
            (Some(1), Some(1)),
            "{out}"
        );

        // Bronze adds the column, then appends, the bytes of the broken line kept.
        let ctx = context(&store, "bronze_api_logs", run);
        let out = Bronze { spec }.run(&ctx).await.unwrap();
        assert_eq!(out["rows"], 2, "{out}");
        assert!(
            ctx.log.text().contains("column raw_bytes added"),
            "{}",
            ctx.log.text()
        );
        let table = store.delta_table(&path).await.unwrap().unwrap();
        let field = table.snapshot().unwrap().schema().field(RAW_BYTES).cloned();
        assert_eq!(field, Some(raw_bytes_field()));
        // Compaction merges the file without the column and the one with it.
        let dates = ["2026-02-01".to_string()];
        let merged = super::super::compact::compact_table(&store, &path, Some(&dates), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((merged.files_removed, merged.files_added), (2, 1));
        assert_eq!(
            rows(
                &store,
                &path,
                "SELECT _source_key, CAST(_line AS VARCHAR), encode(raw_bytes, 'hex') FROM t WHERE raw_bytes IS NOT NULL"
            )
            .await,
            [[
                landed.key.clone(),
                "2".into(),
                bad.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ]]
        );
        // The row of the old file reads the column as null.
        assert_eq!(
            rows(
                &store,
                &path,
                "SELECT _source_key FROM t WHERE raw_bytes IS NULL ORDER BY _source_key"
            )
            .await,
            [[earlier.key.clone()], [landed.key.clone()]]
        );

        // Silver reads old and new rows: the broken line goes to quarantine with its rule.
        let out = silver
            .run(&context(&store, "silver_api_logs", run))
            .await
            .unwrap();
        assert_eq!(out["rows_in"], 3, "{out}");
        assert_eq!(out["silver"], 2, "{out}");
        assert_eq!(
            out["quarantined_by_rule"],
            serde_json::json!({"valid_utf8": 1})
        );
        let quarantine = super::super::table_path("quarantine", spec.name);
        let at = bad.iter().position(|b| *b == 0xff).unwrap();
        assert_eq!(
            rows(
                &store,
                &quarantine,
                "SELECT rule, value, _source_key, CAST(_line AS VARCHAR) FROM t"
            )
            .await,
            [[
                "valid_utf8".to_string(),
                format!("invalid UTF-8 at byte {at}: ff"),
                landed.key.clone(),
                "2".into()
            ]]
        );
    }

    #[test]
    fn raw_lines_and_line_numbers_get_no_dictionary_and_lineage_keeps_one() {
        let props = writer_properties();
        let col = |c: &str| ColumnPath::from(c);
        for c in ["raw", RAW_BYTES] {
            assert!(!props.dictionary_enabled(&col(c)), "{c}");
            assert_eq!(
                props.statistics_enabled(&col(c)),
                EnabledStatistics::None,
                "{c}"
            );
        }
        assert!(!props.dictionary_enabled(&col("_line")));
        assert!(props.dictionary_enabled(&col("_source_key")));
        assert_ne!(
            props.statistics_enabled(&col("_source_key")),
            EnabledStatistics::None
        );
    }
}
