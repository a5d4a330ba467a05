//! Replaces the date partitions of a Delta table with rows written straight from the
//! partitions of a physical plan — through one streaming Parquet writer for the table, no
//! repartitioning, no copy of a row to split it by date — and commits them in one replace-where
//! commit. Silver writes this way: its rows are written while they are cleaned, and the few
//! that turn out to be later copies of an id ([`crate::layers::batch::dedup`], over the rows' keys alone) are
//! dropped from the files that hold them before the commit ([`Writes::drop_rows`]). Until the
//! commit no reader sees a written file; a task that fails leaves them as orphans for vacuum.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use delta_kernel::engine::arrow_conversion::{TryIntoArrow as _, TryIntoKernel as _};
use deltalake::arrow::array::{Array as _, ArrayRef};
use deltalake::arrow::array::{AsArray as _, BooleanArray, RecordBatch, StringArray};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Add, StructType};
use deltalake::logstore::parquet_reader::ParquetObjectReader;
use deltalake::parquet::arrow::ParquetRecordBatchStreamBuilder;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableError, Path};
use futures::TryStreamExt as _;
use object_store::ObjectStoreExt as _;

use super::Error;
use super::parquet::{TARGET_FILE_BYTES, parquet_properties_for};
use super::plan::{Replace, commit_adds, date_partition};
use crate::store::Store;

/// The columns that name a row of the lake's tables: the file it landed in and its line.
pub const ROW_KEY: [&str; 2] = ["_source_key", "_line"];

/// Later copies held at once while they are dropped from the written files; beyond, the files
/// are rewritten once per this many (a day of copies of copies, say).
pub const ROWS_HELD: usize = 1 << 20;

/// Rows written to one table for one commit: the table as read before, its schema, the one
/// writer every plan partition writes through (so a day becomes files of the target size, not
/// one smaller file per partition for compaction to merge again; the partitions compute their
/// batches at once and take turns only to encode them), and the files written.
pub struct Writes {
    table: DeltaTable,
    schema: SchemaRef,
    writer: tokio::sync::Mutex<Option<RecordBatchWriter>>,
    adds: Mutex<Vec<Add>>,
}

impl std::fmt::Debug for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writes")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl Writes {
    /// Writes to the table at `path` of rows of `schema` (created, partitioned by `date`, if
    /// missing). An existing table must have the columns of `schema` (matched by name, as
    /// Delta types them), but for its `stream` columns, which evolve
    /// ([`crate::layers::evolve::evolve`]): a column added is added to the table before
    /// anything is written, a change of type or a removal is refused.
    pub async fn open(
        store: &Store,
        path: &str,
        schema: SchemaRef,
        stream: &[String],
    ) -> Result<Writes, Error> {
        let wanted: StructType = schema.as_ref().try_into_kernel()?;
        let mut table = store.delta_table_or_new(path).await?;
        if table.version().is_none() {
            table = store
                .create_dated_table(table, path, wanted.fields().cloned().collect())
                .await?;
        }
        let (table, _) = crate::layers::evolve::evolve(
            table,
            path,
            schema.as_ref(),
            stream,
            CommitProperties::default(),
        )
        .await?;
        let current: Schema = (&table.snapshot()?.metadata().parse_schema()?).try_into_arrow()?;
        let wanted: Schema = (&wanted).try_into_arrow()?;
        let same = current.fields().len() == wanted.fields().len()
            && current.fields().iter().all(|a| {
                wanted
                    .field_with_name(a.name())
                    .is_ok_and(|b| a.data_type().equals_datatype(b.data_type()))
            });
        if !same {
            let names = |s: &Schema| -> Vec<String> {
                s.fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect()
            };
            return Err(Error::SchemaMismatch {
                path: path.to_string(),
                current: names(&current),
                wanted: names(&wanted),
            });
        }
        let schema = Arc::new(current);
        let writer = Self::writer_for(&table, &schema)?;
        Ok(Writes {
            table,
            schema,
            writer: tokio::sync::Mutex::new(Some(writer)),
            adds: Mutex::new(Vec::new()),
        })
    }

    /// `b` (of the plan's schema) in the table's ([`super::plan::conform`]).
    fn conform(&self, b: RecordBatch) -> Result<RecordBatch, DataFusionError> {
        Ok(super::plan::conform(&b, &self.schema)?)
    }

    fn writer_for(
        table: &DeltaTable,
        schema: &Schema,
    ) -> Result<RecordBatchWriter, DeltaTableError> {
        Ok(RecordBatchWriter::for_table(table)?
            .with_writer_properties(parquet_properties_for(schema).build())
            .with_target_file_size(TARGET_FILE_BYTES))
    }

    /// Closes the writer the plan partitions wrote through (once they all ended), adding its
    /// files; later calls do nothing.
    pub async fn finish(&self) -> Result<(), Error> {
        if let Some(mut w) = self.writer.lock().await.take() {
            let adds = w.flush().await?;
            self.adds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(adds);
        }
        Ok(())
    }

    /// A stream that, executed, writes the rows of partition `partition` of `plan` (of this
    /// table's schema) and yields the columns `keys` of them; the files are added to these
    /// writes by [`Self::finish`].
    pub fn writing(
        self: &Arc<Self>,
        plan: Arc<dyn ExecutionPlan>,
        partition: usize,
        keys: Vec<usize>,
    ) -> Result<Arc<dyn PartitionStream>, Error> {
        Ok(Arc::new(Writing {
            schema: Arc::new(plan.schema().project(&keys)?),
            writes: Arc::clone(self),
            plan,
            partition,
            keys,
        }))
    }

    /// Drops the rows named in `rows` from the files written (after [`Self::finish`]),
    /// rewriting the files that hold any; returns how many rows went.
    pub async fn drop_rows(&self, rows: &RowKeys) -> Result<u64, Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.finish().await?;
        let store = self.table.object_store();
        let adds = std::mem::take(&mut *self.adds.lock().unwrap_or_else(|p| p.into_inner()));
        let mut writer = Self::writer_for(&self.table, &self.schema)?;
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        for add in adds {
            let path = Path::from_url_path(&add.path)?;
            let read = |all: bool| {
                let store = Arc::clone(&store);
                let path = path.clone();
                async move {
                    let reader =
                        ParquetObjectReader::new(store, path).with_file_size(add.size as u64);
                    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
                    let builder = match all {
                        true => builder,
                        false => {
                            let mask = ProjectionMask::columns(builder.parquet_schema(), ROW_KEY);
                            builder.with_projection(mask)
                        }
                    };
                    Ok::<_, Error>(builder.build()?)
                }
            };
            // Most files hold none: their keys are read, not their rows.
            let mut keys = read(false).await?;
            let mut holds = false;
            while let Some(b) = keys.try_next().await? {
                if rows.mask(&b)?.false_count() > 0 {
                    holds = true;
                    break;
                }
            }
            if !holds {
                kept.push(add);
                continue;
            }
            let date = add
                .partition_values
                .get("date")
                .cloned()
                .flatten()
                .ok_or_else(|| Error::NoDatePartition {
                    path: add.path.clone(),
                })?;
            let partition = date_partition(&date);
            let mut all = read(true).await?;
            while let Some(b) = all.try_next().await? {
                let mask = rows.mask(&b)?;
                dropped += mask.false_count() as u64;
                writer
                    .write_partition(
                        filter_record_batch(&b, &mask)?,
                        &partition,
                        WriteMode::Default,
                    )
                    .await?;
            }
            store.delete(&path).await?;
        }
        kept.extend(writer.flush().await?);
        *self.adds.lock().unwrap_or_else(|p| p.into_inner()) = kept;
        Ok(dropped)
    }

    /// Commits the files written in place of every file of `dates` (replace-where), with
    /// `props`; returns the table's new version.
    pub async fn commit_replacing(
        &self,
        dates: &[String],
        props: CommitProperties,
    ) -> Result<u64, Error> {
        self.finish().await?;
        let adds = std::mem::take(&mut *self.adds.lock().unwrap_or_else(|p| p.into_inner()));
        let finalized = commit_adds(&self.table, adds, Replace::Dates(dates), props).await?;
        Ok(finalized.version())
    }

    /// Writes one batch: as it is when its rows share a date (the usual case: silver's rows
    /// come from one bronze file at a time), else one date at a time.
    async fn write(
        writer: &mut RecordBatchWriter,
        b: RecordBatch,
        date: usize,
    ) -> Result<(), DeltaTableError> {
        if b.num_rows() == 0 {
            return Ok(());
        }
        let dates: &StringArray = b
            .column(date)
            .as_string_opt()
            .ok_or_else(|| DeltaTableError::Generic("the date column is not UTF-8".to_string()))?;
        if dates.null_count() > 0 {
            return Err(DeltaTableError::Generic("a row has no date".to_string()));
        }
        let first = dates.value(0);
        if dates.iter().all(|d| d == Some(first)) {
            let partition = date_partition(first);
            return writer
                .write_partition(b, &partition, WriteMode::Default)
                .await
                .map(|_| ());
        }
        let mut seen: Vec<&str> = dates.iter().flatten().collect();
        seen.sort_unstable();
        seen.dedup();
        for d in seen {
            let mask: BooleanArray = dates.iter().map(|v| Some(v == Some(d))).collect();
            writer
                .write_partition(
                    filter_record_batch(&b, &mask)?,
                    &date_partition(d),
                    WriteMode::Default,
                )
                .await?;
        }
        Ok(())
    }
}

/// [`Writes::writing`].
#[derive(Debug)]
struct Writing {
    schema: SchemaRef,
    writes: Arc<Writes>,
    plan: Arc<dyn ExecutionPlan>,
    partition: usize,
    keys: Vec<usize>,
}

impl PartitionStream for Writing {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let started = self.plan.execute(self.partition, ctx).and_then(|rows| {
            let date = self.writes.schema.index_of("date")?;
            Ok((rows, date))
        });
        let writes = Arc::clone(&self.writes);
        let keys = self.keys.clone();
        let stream = futures::stream::once(async move { started })
            .map_ok(move |(rows, date)| {
                let (writes, keys) = (Arc::clone(&writes), keys.clone());
                rows.and_then(move |b| {
                    let (writes, keys) = (Arc::clone(&writes), keys.clone());
                    async move {
                        let k = b.project(&keys)?;
                        let b = writes.conform(b)?;
                        let mut writer = writes.writer.lock().await;
                        let w = writer.as_mut().ok_or_else(|| {
                            DataFusionError::Internal("rows written after the writer closed".into())
                        })?;
                        Writes::write(w, b, date).await.map_err(external)?;
                        Ok(k)
                    }
                })
            })
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// The source keys and lines of `b`'s columns `key` and `line` (strings read back from a file
/// may come as views).
fn key_columns(
    b: &RecordBatch,
    key: usize,
    line: usize,
) -> Result<(ArrayRef, &deltalake::arrow::array::Int64Array), Error> {
    let keys = deltalake::arrow::compute::cast(b.column(key), &DataType::Utf8)?;
    let lines = b
        .column(line)
        .as_primitive_opt::<Int64Type>()
        .ok_or(Error::LineNotInt64)?;
    Ok((keys, lines))
}

/// Rows named by file and line ([`ROW_KEY`]).
#[derive(Debug, Default)]
pub struct RowKeys {
    lines: HashMap<String, HashSet<i64>>,
    len: usize,
}

impl RowKeys {
    /// Adds the rows of `b`, whose columns `source_key` and `line` name them.
    pub fn add(&mut self, b: &RecordBatch, source_key: usize, line: usize) -> Result<(), Error> {
        let (keys, lines) = key_columns(b, source_key, line)?;
        for (k, l) in keys.as_string::<i32>().iter().zip(lines.iter()) {
            if let (Some(k), Some(l)) = (k, l) {
                let new = match self.lines.get_mut(k) {
                    Some(set) => set.insert(l),
                    None => self.lines.entry(k.to_string()).or_default().insert(l),
                };
                self.len += usize::from(new);
            }
        }
        Ok(())
    }

    /// How many rows are named.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is named.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every row.
    pub fn clear(&mut self) {
        self.lines.clear();
        self.len = 0;
    }

    /// Which rows of `b` (with the columns of [`ROW_KEY`]) are not named: the rows to keep.
    fn mask(&self, b: &RecordBatch) -> Result<BooleanArray, Error> {
        let schema = b.schema();
        let (keys, lines) = key_columns(
            b,
            schema.index_of(ROW_KEY[0])?,
            schema.index_of(ROW_KEY[1])?,
        )?;
        Ok(keys
            .as_string::<i32>()
            .iter()
            .zip(lines.iter())
            .map(|(k, l)| {
                let named = match (k, l) {
                    (Some(k), Some(l)) => self.lines.get(k).is_some_and(|s| s.contains(&l)),
                    _ => false,
                };
                Some(!named)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::Field;
    use deltalake::datafusion::datasource::memory::MemorySourceConfig;
    use deltalake::datafusion::physical_plan::streaming::StreamingTableExec;
    use deltalake::datafusion::prelude::SessionContext;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("_source_key", DataType::Utf8, false),
            Field::new("_line", DataType::Int64, false),
            // A string view, as DataFusion makes of some expressions: written as a string.
            Field::new("note", DataType::Utf8View, true),
            Field::new("date", DataType::Utf8, false),
        ]))
    }

    /// Rows (id, key, line, date), in one batch.
    fn batch(rows: &[(&str, &str, i64, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(deltalake::arrow::array::StringViewArray::from_iter_values(
                    rows.iter().map(|r| format!("note {}", r.2)),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    /// Writes `partitions` (one plan partition each) to `path` and returns the id column of
    /// the keys the writing streams yielded.
    async fn write(writes: &Arc<Writes>, partitions: Vec<Vec<RecordBatch>>) -> Vec<String> {
        let plan = MemorySourceConfig::try_new_exec(&partitions, schema(), None).unwrap();
        let streams = (0..partitions.len())
            .map(|p| writes.writing(plan.clone(), p, vec![0, 1, 2]).unwrap())
            .collect::<Vec<_>>();
        let exec = StreamingTableExec::try_new(
            streams[0].schema().clone(),
            streams,
            None,
            [],
            false,
            None,
        )
        .unwrap();
        let ctx = SessionContext::new().task_ctx();
        let mut ids = Vec::new();
        for p in 0..partitions.len() {
            let keys: Vec<RecordBatch> = exec
                .execute(p, ctx.clone())
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            for k in keys {
                assert_eq!(k.num_columns(), 3, "the key columns only");
                ids.extend(
                    k.column(0)
                        .as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(String::from),
                );
            }
        }
        ids
    }

    /// The table's rows as (id, line, note, date), sorted.
    async fn rows(store: &Store, path: &str) -> Vec<(String, i64, String, String)> {
        let table = store.delta_table(path).await.unwrap().unwrap();
        let ctx = SessionContext::new();
        crate::store::register_delta(&ctx, "t", &table)
            .await
            .unwrap();
        let batches = ctx
            .sql("SELECT id, _line, CAST(note AS VARCHAR) AS note, CAST(date AS VARCHAR) AS date FROM t ORDER BY id")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            let s =
                |i: usize| deltalake::arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
            let (id, note, date) = (s(0), s(2), s(3));
            let line = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                out.push((
                    id.as_string::<i32>().value(i).to_string(),
                    line.value(i),
                    note.as_string::<i32>().value(i).to_string(),
                    date.as_string::<i32>().value(i).to_string(),
                ));
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_are_written_by_date_named_rows_dropped_and_only_the_dates_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let path = "batch/t";
        let dates = |d: &[&str]| d.iter().map(|d| d.to_string()).collect::<Vec<_>>();

        // Two dates in one batch, and a partition of its own.
        let writes = Arc::new(Writes::open(&store, path, schema(), &[]).await.unwrap());
        let ids = write(
            &writes,
            vec![
                vec![batch(&[
                    ("a", "k1", 1, "2026-02-01"),
                    ("b", "k1", 2, "2026-02-02"),
                ])],
                vec![batch(&[
                    ("c", "k2", 1, "2026-02-01"),
                    ("a", "k2", 2, "2026-02-01"),
                ])],
            ],
        )
        .await;
        assert_eq!(ids.len(), 4, "a key per row written");
        // The later copy of `a` goes; a file without any is not rewritten.
        let mut later = RowKeys::default();
        later
            .add(&batch(&[("a", "k2", 2, "2026-02-01")]), 1, 2)
            .unwrap();
        later
            .add(&batch(&[("a", "k2", 2, "2026-02-01")]), 1, 2)
            .unwrap();
        assert_eq!(later.len(), 1, "a row named twice counts once");
        writes.finish().await.unwrap();
        let files = || -> Vec<String> {
            let adds = writes.adds.lock().unwrap();
            adds.iter().map(|a| a.path.clone()).collect()
        };
        let before = files();
        assert_eq!(writes.drop_rows(&later).await.unwrap(), 1);
        let after = files();
        assert_eq!(
            before.len(),
            2,
            "one file per date, whatever the partitions"
        );
        assert_eq!(
            before.iter().filter(|p| after.contains(p)).count(),
            1,
            "only the file holding the row is rewritten"
        );
        assert_eq!(after.len(), 2);
        writes
            .commit_replacing(
                &dates(&["2026-02-01", "2026-02-02"]),
                CommitProperties::default(),
            )
            .await
            .unwrap();
        let want = |r: &[(&str, i64, &str)]| -> Vec<(String, i64, String, String)> {
            r.iter()
                .map(|(id, line, d)| (id.to_string(), *line, format!("note {line}"), d.to_string()))
                .collect()
        };
        assert_eq!(
            rows(&store, path).await,
            want(&[
                ("a", 1, "2026-02-01"),
                ("b", 2, "2026-02-02"),
                ("c", 1, "2026-02-01")
            ])
        );

        // Replacing one date leaves the other as it was; a re-run gives the same table.
        for _ in 0..2 {
            let writes = Arc::new(Writes::open(&store, path, schema(), &[]).await.unwrap());
            write(&writes, vec![vec![batch(&[("d", "k3", 7, "2026-02-01")])]]).await;
            writes
                .commit_replacing(&dates(&["2026-02-01"]), CommitProperties::default())
                .await
                .unwrap();
            assert_eq!(
                rows(&store, path).await,
                want(&[("b", 2, "2026-02-02"), ("d", 7, "2026-02-01")])
            );
        }
    }

    #[tokio::test]
    async fn a_table_of_other_columns_is_refused_with_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        Writes::open(&store, "batch/t", schema(), &[])
            .await
            .unwrap();
        let other = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("date", DataType::Utf8, false),
        ]));
        let e = Writes::open(&store, "batch/t", other, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch/t: column id is string but this version of lakepipe writes int"),
            "{e}"
        );
    }
}
