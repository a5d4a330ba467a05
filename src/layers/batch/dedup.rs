//! Silver's de-duplication: of the typed rows of one silver pass, keeps the first landed row of
//! each id — by ingest run, file, line, the lineage order silver and the serving layer share —
//! and counts the others, in memory that does not grow with the day.
//!
//! It is a grace hash, not a sort. Each input partition spreads its rows over hash buckets of
//! the id and spills them to one temporary Arrow IPC file, one message per bucket and chunk of
//! rows. Lineage strings, the same for every row of a file, are spilled as numbers into a
//! table of their values ([`Interner`]) and turned back into strings on the way out. Rows of
//! one id always share a bucket, so buckets are independent: the output partitions take turns
//! over them, and each bucket is read back and de-duplicated with a hash map of its own ids.
//! A bucket holds about [`BUCKET_ROWS`] rows whatever the day's size, and one larger than
//! [`BUCKET_MEMORY`] (one id repeated very often) is read twice instead of held. A row costs
//! one hash, one write and one read of a temporary file (in the page cache, mostly) and one map
//! lookup; no row is compared with another unless their ids are equal.
//!
//! It yields the first landed rows, or only the later copies
//! ([`FirstLanded::yielding_later_copies`]): silver spills the keys of its rows alone and
//! writes the rows meanwhile, then drops the few later copies from the files written.

use std::collections::HashMap;
use std::fs::File;
use std::hash::BuildHasher as _;
use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray as _, BooleanArray, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use deltalake::arrow::compute::{BatchCoalescer, interleave_record_batch, take};
use deltalake::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef, UInt32Type};
use deltalake::arrow::ipc::reader::FileReader;
use deltalake::arrow::ipc::writer::FileWriter;
use deltalake::datafusion::common::hash_utils::{
    QualityRandomState, RandomState as FastRandomState,
};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::physical_plan::stream::{
    RecordBatchReceiverStreamBuilder, RecordBatchStreamAdapter,
};
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties as _, SendableRecordBatchStream,
};
use futures::{StreamExt as _, TryStreamExt as _};

type Result<T> = std::result::Result<T, DataFusionError>;

/// Rows per bucket that [`bucket_count`] aims at: a bucket is held in memory while it is
/// de-duplicated (about 20 MiB of typed rows).
pub const BUCKET_ROWS: u64 = 64 * 1024;

/// Most buckets of one pass: beyond `MAX_BUCKETS * BUCKET_ROWS` rows, buckets grow.
pub const MAX_BUCKETS: u64 = 1024;

/// A bucket whose rows take more memory than this is read twice rather than held.
pub const BUCKET_MEMORY: usize = 128 << 20;

/// Rows an input partition gathers before it spreads them over the buckets.
const CHUNK_ROWS: usize = 64 * 1024;

/// Rows per output batch.
const OUTPUT_ROWS: usize = 8192;

/// How many buckets a pass over about `rows` rows uses.
pub fn bucket_count(rows: u64) -> usize {
    rows.div_ceil(BUCKET_ROWS).clamp(1, MAX_BUCKETS) as usize
}

/// The hash that picks an id's bucket: fixed, so a re-run spreads the same ids the same way.
const BUCKET_HASH: QualityRandomState = QualityRandomState::with_seed(0x6c61_6b65_7069_7065);

/// The hash of the per-bucket maps: seeded apart from [`BUCKET_HASH`], so the ids of one
/// bucket still spread over its map.
const MAP_HASH: FastRandomState = FastRandomState::with_seed(0x6465_6475_7000_0001);

/// The bucket of an id.
fn bucket_of(id: &str, buckets: usize) -> usize {
    (BUCKET_HASH.hash_one(id) % buckets as u64) as usize
}

/// Positions of the columns the de-duplication reads: the id and the landing order, and the
/// other columns whose values repeat row after row.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The stream's id (UTF-8).
    pub id: usize,
    /// `_ingest_run` (UTF-8).
    pub ingest_run: usize,
    /// `_source_key` (UTF-8).
    pub source_key: usize,
    /// `_line` (Int64).
    pub line: usize,
    /// Further UTF-8 columns with few values (the rest of the lineage), spilled as numbers like
    /// `ingest_run` and `source_key`.
    pub repeated: Vec<usize>,
}

/// The values of the spilled UTF-8 columns with few values, numbered as met.
#[derive(Debug, Default)]
struct Interner {
    numbers: HashMap<Box<str>, u32>,
    values: Vec<Box<str>>,
}

impl Interner {
    fn number(&mut self, v: &str) -> u32 {
        if let Some(n) = self.numbers.get(v) {
            return *n;
        }
        let n = self.values.len() as u32;
        self.values.push(v.into());
        self.numbers.insert(v.into(), n);
        n
    }
}

/// The numbers of the values of `column` in `b` (nulls stay null); a row with the value of the
/// row before does not look it up.
fn numbered(b: &RecordBatch, column: usize, interner: &Mutex<Interner>) -> Result<ArrayRef> {
    let values = strings(b, column)?;
    let mut last: Option<(&str, u32)> = None;
    let mut interner = interner.lock().unwrap_or_else(|p| p.into_inner());
    let numbers: UInt32Array = values
        .iter()
        .map(|v| {
            v.map(|v| match last {
                Some((l, n)) if l == v => n,
                _ => {
                    let n = interner.number(v);
                    last = Some((v, n));
                    n
                }
            })
        })
        .collect();
    Ok(Arc::new(numbers))
}

/// The de-duplication of one pass, shared by its output partitions ([`Self::partitions`]): the
/// first to run spills the whole input, then each takes its share of the buckets.
pub struct FirstLanded {
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    /// `schema` with the numbered columns as UInt32: the spill files' schema.
    spilled_schema: SchemaRef,
    columns: Columns,
    /// Positions of the numbered columns: `ingest_run`, `source_key`, then `repeated`.
    numbered: Vec<usize>,
    interners: Vec<Mutex<Interner>>,
    buckets: usize,
    outputs: usize,
    bucket_memory: usize,
    spilled: tokio::sync::OnceCell<std::result::Result<Arc<Spilled>, Arc<DataFusionError>>>,
    /// Whether the output is the later copies instead of the first landed rows.
    later_copies: bool,
    duplicates: AtomicU64,
    read_twice: AtomicU64,
}

/// The whole input, spilled.
struct Spilled {
    /// One per input partition.
    spills: Vec<Spill>,
    /// The values of each numbered column, by number.
    values: Vec<StringArray>,
}

impl std::fmt::Debug for FirstLanded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstLanded")
            .field("buckets", &self.buckets)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// One input partition's rows, spilled: the file, and for each bucket the numbers of its
/// messages in it.
struct Spill {
    file: tempfile::NamedTempFile,
    messages: Vec<Vec<usize>>,
}

impl FirstLanded {
    /// The de-duplication of `input`'s rows (all its partitions), in `outputs` partitions,
    /// over [`bucket_count`]`(rows)` buckets: `rows` is about how many rows `input` has.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        columns: Columns,
        rows: u64,
        outputs: usize,
    ) -> FirstLanded {
        let schema = input.schema();
        let numbered: Vec<usize> = [columns.ingest_run, columns.source_key]
            .into_iter()
            .chain(columns.repeated.iter().copied())
            .collect();
        let spilled_schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| match numbered.contains(&i) {
                    true => f.as_ref().clone().with_data_type(DataType::UInt32),
                    false => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ));
        FirstLanded {
            interners: numbered.iter().map(|_| Mutex::default()).collect(),
            numbered,
            spilled_schema,
            schema,
            input,
            columns,
            buckets: bucket_count(rows),
            outputs: outputs.max(1),
            bucket_memory: BUCKET_MEMORY,
            spilled: tokio::sync::OnceCell::new(),
            later_copies: false,
            duplicates: AtomicU64::new(0),
            read_twice: AtomicU64::new(0),
        }
    }

    /// Reads buckets whose rows take more than `bytes` twice instead of holding them
    /// (default [`BUCKET_MEMORY`]); tests use a small one to take the twice-read path.
    #[cfg(test)]
    pub fn with_bucket_memory(mut self, bytes: usize) -> FirstLanded {
        self.bucket_memory = bytes;
        self
    }

    /// Yields the later copies of each id instead of the first landed rows: for a consumer
    /// that has the rows already and only needs to know which to drop (silver writes its rows
    /// as they are cleaned and de-duplicates their keys alone). A bucket without later copies
    /// is then read once.
    pub fn yielding_later_copies(mut self) -> FirstLanded {
        self.later_copies = true;
        self
    }

    /// The output partitions.
    fn partitions(self: &Arc<Self>) -> Vec<Arc<dyn PartitionStream>> {
        (0..self.outputs)
            .map(|partition| {
                Arc::new(Output {
                    shared: Arc::clone(self),
                    partition,
                }) as Arc<dyn PartitionStream>
            })
            .collect()
    }

    /// The output partitions merged into one, each still run on a task of its own: for a
    /// consumer that reads one stream (silver takes the later copies this way). The bounded
    /// channel here holds the buckets back while the consumer is busy, so rows it has not
    /// caught up with do not pile up in memory.
    pub fn merged(self: &Arc<Self>) -> Arc<dyn PartitionStream> {
        Arc::new(Merged {
            outputs: self.partitions(),
            schema: self.schema.clone(),
        })
    }

    /// Rows dropped as later copies of an id, so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::SeqCst)
    }

    /// Buckets so far that outgrew their memory and were read twice.
    pub fn buckets_read_twice(&self) -> u64 {
        self.read_twice.load(Ordering::SeqCst)
    }

    /// The input, spilled: by the first caller, with every input partition on its own task;
    /// the others wait for it.
    async fn spill(self: &Arc<Self>, ctx: Arc<TaskContext>) -> Result<Arc<Spilled>> {
        self.spilled
            .get_or_init(|| async { self.spill_all(ctx).await.map(Arc::new).map_err(Arc::new) })
            .await
            .clone()
            .map_err(DataFusionError::Shared)
    }

    async fn spill_all(self: &Arc<Self>, ctx: Arc<TaskContext>) -> Result<Spilled> {
        let n = self.input.output_partitioning().partition_count();
        // Dropped, say on an error, the set aborts the partitions still running.
        let mut tasks = tokio::task::JoinSet::new();
        for p in 0..n {
            let input = self.input.execute(p, Arc::clone(&ctx))?;
            let this = Arc::clone(self);
            tasks.spawn(async move { (p, this.spill_partition(input).await) });
        }
        let mut spills: Vec<Option<Spill>> = (0..n).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (p, spill) = joined.map_err(|e| DataFusionError::External(Box::new(e)))?;
            spills[p] = Some(spill?);
        }
        let values = self
            .interners
            .iter()
            .map(|i| {
                let i = i.lock().unwrap_or_else(|p| p.into_inner());
                StringArray::from_iter_values(i.values.iter())
            })
            .collect();
        Ok(Spilled {
            spills: spills.into_iter().flatten().collect(),
            values,
        })
    }

    /// Spills one input partition: numbers the repeated strings, gathers [`CHUNK_ROWS`] rows,
    /// groups them by bucket (in input order within a bucket) and writes each bucket's share
    /// as one message.
    async fn spill_partition(&self, mut input: SendableRecordBatchStream) -> Result<Spill> {
        let file = tempfile::NamedTempFile::new()?;
        let mut writer = FileWriter::try_new_buffered(file.reopen()?, &self.spilled_schema)?;
        let mut messages: Vec<Vec<usize>> = vec![Vec::new(); self.buckets];
        let mut written = 0;
        let mut chunk: Vec<RecordBatch> = Vec::new();
        let mut rows = 0;
        loop {
            let next = input.next().await.transpose()?;
            let end = next.is_none();
            if let Some(b) = next {
                rows += b.num_rows();
                chunk.push(self.to_spilled(&b)?);
            }
            if rows >= CHUNK_ROWS || (end && rows > 0) {
                let (grouped, starts) = self.group_by_bucket(&chunk, rows)?;
                for (k, bounds) in starts.windows(2).enumerate() {
                    if bounds[1] > bounds[0] {
                        writer.write(&grouped.slice(bounds[0], bounds[1] - bounds[0]))?;
                        messages[k].push(written);
                        written += 1;
                    }
                }
                chunk.clear();
                rows = 0;
            }
            if end {
                break;
            }
        }
        writer.finish()?;
        Ok(Spill { file, messages })
    }

    /// `b` in the spill files' schema: the repeated strings numbered.
    fn to_spilled(&self, b: &RecordBatch) -> Result<RecordBatch> {
        let mut columns = b.columns().to_vec();
        for (column, interner) in self.numbered.iter().zip(&self.interners) {
            columns[*column] = numbered(b, *column, interner)?;
        }
        Ok(RecordBatch::try_new(self.spilled_schema.clone(), columns)?)
    }

    /// The rows of `chunk` (`rows` in all) grouped by bucket, and where each bucket starts
    /// (`buckets + 1` bounds): a counting sort.
    fn group_by_bucket(
        &self,
        chunk: &[RecordBatch],
        rows: usize,
    ) -> Result<(RecordBatch, Vec<usize>)> {
        let mut of: Vec<u32> = Vec::with_capacity(rows);
        let mut starts = vec![0usize; self.buckets + 1];
        for b in chunk {
            let ids = strings(b, self.columns.id)?;
            for i in 0..b.num_rows() {
                let k = bucket_of(ids.value(i), self.buckets);
                of.push(k as u32);
                starts[k + 1] += 1;
            }
        }
        for k in 0..self.buckets {
            starts[k + 1] += starts[k];
        }
        let mut at = starts.clone();
        let mut order = vec![(0, 0); rows];
        let positions = chunk
            .iter()
            .enumerate()
            .flat_map(|(bi, b)| (0..b.num_rows()).map(move |i| (bi, i)));
        for (pos, k) in positions.zip(&of) {
            order[at[*k as usize]] = pos;
            at[*k as usize] += 1;
        }
        let refs: Vec<&RecordBatch> = chunk.iter().collect();
        Ok((interleave_record_batch(&refs, &order)?, starts))
    }

    /// `b` (spilled) with the numbered columns back as strings.
    fn restored(&self, b: RecordBatch, values: &[StringArray]) -> Result<RecordBatch> {
        let mut columns = b.columns().to_vec();
        for (column, values) in self.numbered.iter().zip(values) {
            columns[*column] = take(values, numbers(&b, *column)?, None)?;
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Notes the rows of `b` (spilled), numbered from `row` on, in `first`: the first landed
    /// copy of each id so far; the row numbers of the copies that are not go to `later`.
    fn landings<'a, K>(
        &self,
        first: &mut HashMap<K, Landing, FastRandomState>,
        b: &'a RecordBatch,
        row: &mut u64,
        later: &mut Vec<u64>,
        values: &[StringArray],
    ) -> Result<()>
    where
        K: From<&'a str> + std::borrow::Borrow<str> + std::hash::Hash + Eq,
    {
        let c = &self.columns;
        let ids = strings(b, c.id)?;
        let (runs, keys) = (numbers(b, c.ingest_run)?, numbers(b, c.source_key)?);
        let lines: &Int64Array = b
            .column(c.line)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| DataFusionError::Internal("_line is not an Int64 column".into()))?;
        for i in 0..b.num_rows() {
            let this = Landing {
                run: runs.value(i),
                key: keys.value(i),
                line: lines.value(i),
                row: *row,
            };
            *row += 1;
            let id = ids.value(i);
            match first.get_mut(id) {
                None => {
                    first.insert(K::from(id), this);
                }
                Some(kept) if earlier(&this, kept, values) => {
                    later.push(kept.row);
                    *kept = this;
                }
                Some(_) => later.push(this.row),
            }
        }
        Ok(())
    }

    /// The rows of `bucket` that are the first landed of their id (or, with
    /// [`Self::yielding_later_copies`], the others), in batches of [`OUTPUT_ROWS`], still
    /// numbered (restored one batch at a time on the way out, so a bucket waiting for the
    /// consumer holds numbers, not strings); counts the others.
    fn rows_of_bucket(
        &self,
        spilled: &Spilled,
        readers: &mut [FileReader<BufReader<File>>],
        bucket: usize,
    ) -> Result<Vec<RecordBatch>> {
        // Pass 1: the first landed copy of each id, and the row numbers of the later ones. A
        // bucket that fits is held, and its map borrows the ids from it; once the bucket
        // outgrows `bucket_memory`, the ids are copied into a map instead and the rows go.
        let mut later: Vec<u64> = Vec::new();
        let mut row = 0u64;
        let mut held: Vec<RecordBatch> = Vec::new();
        let mut held_bytes = 0;
        let mut owned: Option<HashMap<Box<str>, Landing, FastRandomState>> = None;
        for_each_message(&spilled.spills, readers, bucket, |b| {
            if let Some(first) = owned.as_mut() {
                return self.landings(first, &b, &mut row, &mut later, &spilled.values);
            }
            held_bytes += held_memory(&b);
            if held_bytes <= self.bucket_memory {
                held.push(b);
                return Ok(());
            }
            let mut first = HashMap::with_hasher(MAP_HASH);
            for h in held.drain(..).chain([b]) {
                self.landings(&mut first, &h, &mut row, &mut later, &spilled.values)?;
            }
            owned = Some(first);
            self.read_twice.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })?;
        if owned.is_none() {
            let rows = held.iter().map(RecordBatch::num_rows).sum();
            let mut first: HashMap<&str, Landing, FastRandomState> =
                HashMap::with_capacity_and_hasher(rows, MAP_HASH);
            for b in &held {
                self.landings(&mut first, b, &mut row, &mut later, &spilled.values)?;
            }
        }
        self.duplicates
            .fetch_add(later.len() as u64, Ordering::Relaxed);
        later.sort_unstable();

        if self.later_copies && later.is_empty() {
            return Ok(Vec::new());
        }

        // Pass 2: the rows again, without the later copies (or only those), their strings
        // restored.
        let mut out = BatchCoalescer::new(self.spilled_schema.clone(), OUTPUT_ROWS);
        let mut later = later.into_iter().peekable();
        let mut row = 0u64;
        let later_copies = self.later_copies;
        let mut keep = |b: RecordBatch| -> Result<()> {
            let n = b.num_rows() as u64;
            if later.peek().is_some_and(|l| *l < row + n) {
                let mask: BooleanArray = (row..row + n)
                    .map(|r| Some(later.next_if_eq(&r).is_some() == later_copies))
                    .collect();
                out.push_batch_with_filter(b, &mask)?;
            } else if !later_copies {
                out.push_batch(b)?;
            }
            row += n;
            Ok(())
        };
        match owned {
            None => held.into_iter().try_for_each(&mut keep)?,
            Some(_) => for_each_message(&spilled.spills, readers, bucket, &mut keep)?,
        }
        out.finish_buffered_batch()?;
        Ok(std::iter::from_fn(|| out.next_completed_batch()).collect())
    }
}

/// The memory that holding `b` keeps: the bytes its columns span. Not
/// `get_array_memory_size`, which counts a shared buffer once per array that slices it, and
/// every column of a message read from a spill file slices the message's one body.
fn held_memory(b: &RecordBatch) -> usize {
    b.columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Calls `f` with each spilled message of `bucket`, input partition by input partition.
fn for_each_message(
    spills: &[Spill],
    readers: &mut [FileReader<BufReader<File>>],
    bucket: usize,
    mut f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    for (spill, reader) in spills.iter().zip(readers) {
        for &m in &spill.messages[bucket] {
            reader.set_index(m)?;
            let b = reader.next().ok_or_else(|| {
                DataFusionError::Internal(format!("spilled message {m} is missing"))
            })??;
            f(b)?;
        }
    }
    Ok(())
}

/// Column `i` of `b` as UTF-8.
fn strings(b: &RecordBatch, i: usize) -> Result<&StringArray> {
    b.column(i).as_string_opt::<i32>().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "column {} is {}, not UTF-8",
            b.schema().field(i).name(),
            b.column(i).data_type()
        ))
    })
}

/// Column `i` of `b` as the numbers of an [`Interner`].
fn numbers(b: &RecordBatch, i: usize) -> Result<&UInt32Array> {
    b.column(i).as_primitive_opt::<UInt32Type>().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "column {} is not numbered",
            b.schema().field(i).name()
        ))
    })
}

/// Where a copy of an id landed: ingest run and source key (their numbers), line, and its row
/// number in the bucket.
#[derive(Debug, Clone, Copy)]
struct Landing {
    run: u32,
    key: u32,
    line: i64,
    row: u64,
}

/// Whether `a` landed before `b`: by ingest run, source key, line (`values`: the strings of
/// the run and key numbers).
fn earlier(a: &Landing, b: &Landing, values: &[StringArray]) -> bool {
    if (a.run, a.key) == (b.run, b.key) {
        return a.line < b.line;
    }
    let key = |l: &Landing| {
        (
            values[0].value(l.run as usize),
            values[1].value(l.key as usize),
            l.line,
        )
    };
    key(a) < key(b)
}

/// One output partition of a [`FirstLanded`]: buckets `partition`, `partition + outputs`, …
#[derive(Debug)]
struct Output {
    shared: Arc<FirstLanded>,
    partition: usize,
}

impl PartitionStream for Output {
    fn schema(&self) -> &SchemaRef {
        &self.shared.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let shared = Arc::clone(&self.shared);
        let partition = self.partition;
        let rows = futures::stream::once(async move {
            let spilled = shared.spill(ctx).await?;
            let mut readers = spilled
                .spills
                .iter()
                .map(|s| {
                    Ok(FileReader::try_new_buffered(
                        File::open(s.file.path())?,
                        None,
                    )?)
                })
                .collect::<Result<Vec<_>>>()?;
            let buckets: Vec<usize> = (partition..shared.buckets)
                .step_by(shared.outputs)
                .collect();
            let batches = futures::stream::iter(buckets).map(move |bucket| {
                let rows = shared.rows_of_bucket(&spilled, &mut readers, bucket)?;
                let (shared, spilled) = (Arc::clone(&shared), Arc::clone(&spilled));
                Ok::<_, DataFusionError>(futures::stream::iter(
                    rows.into_iter()
                        .map(move |b| shared.restored(b, &spilled.values)),
                ))
            });
            Ok::<_, DataFusionError>(batches.try_flatten())
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            self.shared.schema.clone(),
            rows,
        ))
    }
}

/// [`FirstLanded::merged`].
struct Merged {
    outputs: Vec<Arc<dyn PartitionStream>>,
    schema: SchemaRef,
}

impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merged")
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl PartitionStream for Merged {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut merged =
            RecordBatchReceiverStreamBuilder::new(self.schema.clone(), self.outputs.len());
        for output in &self.outputs {
            let mut rows = output.execute(Arc::clone(&ctx));
            let tx = merged.tx();
            merged.spawn(async move {
                while let Some(b) = rows.next().await {
                    let failed = b.is_err();
                    if tx.send(b).await.is_err() || failed {
                        break;
                    }
                }
                Ok(())
            });
        }
        merged.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::ArrayRef;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::memory::MemorySourceConfig;
    use deltalake::datafusion::prelude::SessionContext;

    fn columns() -> Columns {
        Columns {
            id: 0,
            ingest_run: 1,
            source_key: 2,
            line: 3,
            repeated: vec![4],
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("_ingest_run", DataType::Utf8, false),
            Field::new("_source_key", DataType::Utf8, false),
            Field::new("_line", DataType::Int64, false),
            Field::new("tag", DataType::Utf8, true),
        ]))
    }

    /// The value of the repeated column `tag` for a row with this line: a few values, and nulls.
    fn tag_of(line: i64) -> Option<String> {
        (line % 7 != 0).then(|| format!("tag-{}", line % 3))
    }

    /// Rows (id, run, key, line) in batches of `per_batch`.
    fn batches(rows: &[(String, String, String, i64)], per_batch: usize) -> Vec<RecordBatch> {
        rows.chunks(per_batch)
            .map(|c| {
                let col = |f: fn(&(String, String, String, i64)) -> &str| -> ArrayRef {
                    Arc::new(StringArray::from_iter_values(c.iter().map(f)))
                };
                RecordBatch::try_new(
                    schema(),
                    vec![
                        col(|r| &r.0),
                        col(|r| &r.1),
                        col(|r| &r.2),
                        Arc::new(Int64Array::from_iter_values(c.iter().map(|r| r.3))),
                        Arc::new(StringArray::from_iter(c.iter().map(|r| tag_of(r.3)))),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    /// The (id, run, key, line) of every row of `batches`; checks that the repeated column
    /// came back as it went in.
    fn rows_of(batches: &[RecordBatch]) -> Vec<(String, String, String, i64)> {
        let mut out = Vec::new();
        for b in batches {
            let (ids, runs, keys) = (
                strings(b, 0).unwrap(),
                strings(b, 1).unwrap(),
                strings(b, 2).unwrap(),
            );
            let lines = b.column(3).as_primitive::<Int64Type>();
            let tags = b.column(4).as_string::<i32>();
            for i in 0..b.num_rows() {
                let tag = tags.is_valid(i).then(|| tags.value(i).to_string());
                assert_eq!(tag, tag_of(lines.value(i)), "the repeated column, restored");
                out.push((
                    ids.value(i).into(),
                    runs.value(i).into(),
                    keys.value(i).into(),
                    lines.value(i),
                ));
            }
        }
        out
    }

    /// Runs the de-duplication over `partitions`; returns the sorted output rows, the count
    /// of duplicates and how many buckets were read twice.
    async fn run(
        partitions: Vec<Vec<RecordBatch>>,
        rows: u64,
        outputs: usize,
        bucket_memory: usize,
    ) -> (Vec<(String, String, String, i64)>, u64, u64) {
        let input = MemorySourceConfig::try_new_exec(&partitions, schema(), None).unwrap();
        let dedup = Arc::new(
            FirstLanded::new(input, columns(), rows, outputs).with_bucket_memory(bucket_memory),
        );
        let ctx = SessionContext::new().task_ctx();
        let mut out = Vec::new();
        let streams: Vec<_> = dedup
            .partitions()
            .iter()
            .map(|p| p.execute(Arc::clone(&ctx)))
            .collect();
        // Every output partition runs at once, as under DataFusion.
        for batches in
            futures::future::join_all(streams.into_iter().map(|s| s.try_collect::<Vec<_>>())).await
        {
            out.extend(rows_of(&batches.unwrap()));
        }
        out.sort();
        (out, dedup.duplicates(), dedup.buckets_read_twice())
    }

    /// `n` rows over `ids` ids, from a few runs and files, in a scrambled order.
    fn noisy_rows(n: usize, ids: usize) -> Vec<(String, String, String, i64)> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let y = x as usize;
                (
                    format!("id-{}", y % ids),
                    format!("run-{}", (y >> 20) % 3),
                    format!("key-{}", (y >> 24) % 5),
                    ((y >> 32) % 1000) as i64,
                )
            })
            .collect()
    }

    /// The first landed row of each id, by run, key, line: the rule, computed plainly.
    fn expected(rows: &[(String, String, String, i64)]) -> Vec<(String, String, String, i64)> {
        let mut first: std::collections::BTreeMap<&str, &(String, String, String, i64)> =
            Default::default();
        for r in rows {
            let e = first.entry(&r.0).or_insert(r);
            if (&r.1, &r.2, r.3) < (&e.1, &e.2, e.3) {
                *e = r;
            }
        }
        first.into_values().cloned().collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_the_first_landed_copy_of_each_id_across_partitions_and_buckets() {
        let rows = noisy_rows(20_000, 6_000);
        let want = expected(&rows);
        let (a, b) = rows.split_at(rows.len() / 3);
        for (buckets, outputs) in [(1, 1), (7, 2), (64, 3)] {
            let (got, duplicates, read_twice) = run(
                vec![batches(a, 1000), batches(b, 777)],
                buckets * BUCKET_ROWS,
                outputs,
                BUCKET_MEMORY,
            )
            .await;
            assert_eq!(got, want, "{buckets} buckets, {outputs} outputs");
            assert_eq!(duplicates as usize, rows.len() - want.len());
            assert_eq!(read_twice, 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bucket_too_large_to_hold_is_read_twice_with_the_same_result() {
        let rows = noisy_rows(5_000, 50);
        let (got, duplicates, read_twice) =
            run(vec![batches(&rows, 300)], 3 * BUCKET_ROWS, 2, 1).await;
        assert_eq!(got, expected(&rows));
        assert_eq!(duplicates, 4_950);
        assert_eq!(read_twice, 3, "every bucket");
    }

    /// A bucket read back from its spill file is measured by the bytes its rows take: each
    /// message's columns share one buffer, which must not be counted once per column.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bucket_that_fits_is_held_once_read_from_its_spill_file() {
        let rows = noisy_rows(20_000, 6_000);
        let input = vec![batches(&rows, 1000)];
        let bytes: usize = input[0]
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let (got, _, read_twice) = run(input, BUCKET_ROWS, 1, 2 * bytes).await;
        assert_eq!(got, expected(&rows));
        assert_eq!(read_twice, 0, "a {bytes}-byte bucket fits in {}", 2 * bytes);
    }

    /// The merged output over two input partitions of `rows` (the later copies instead if
    /// `later`), sorted, and the count of duplicates.
    async fn merged_rows(
        rows: &[(String, String, String, i64)],
        later: bool,
    ) -> (Vec<(String, String, String, i64)>, u64) {
        let (a, b) = rows.split_at(rows.len() / 2);
        let input =
            MemorySourceConfig::try_new_exec(&[batches(a, 1000), batches(b, 999)], schema(), None)
                .unwrap();
        let mut dedup = FirstLanded::new(input, columns(), 7 * BUCKET_ROWS, 3);
        if later {
            dedup = dedup.yielding_later_copies();
        }
        let dedup = Arc::new(dedup);
        let merged: Vec<RecordBatch> = dedup
            .merged()
            .execute(SessionContext::new().task_ctx())
            .try_collect()
            .await
            .unwrap();
        let mut got = rows_of(&merged);
        got.sort();
        (got, dedup.duplicates())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merged_outputs_are_one_stream_of_the_same_rows() {
        let rows = noisy_rows(20_000, 6_000);
        let (got, duplicates) = merged_rows(&rows, false).await;
        assert_eq!(got, expected(&rows));
        assert_eq!(duplicates as usize, rows.len() - got.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn later_copies_are_every_row_but_the_first_landed_of_its_id() {
        let rows = noisy_rows(20_000, 6_000);
        let (got, duplicates) = merged_rows(&rows, true).await;
        // Every row, less one copy of each first landed one.
        let mut want = rows.clone();
        want.sort();
        for first in expected(&rows) {
            let at = want.binary_search(&first).unwrap();
            want.remove(at);
        }
        assert_eq!(got, want);
        assert_eq!(duplicates as usize, got.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_input_no_rows() {
        let (got, duplicates, _) = run(vec![vec![], vec![]], 0, 2, BUCKET_MEMORY).await;
        assert!(got.is_empty());
        assert_eq!(duplicates, 0);
    }

    #[test]
    fn buckets_grow_with_the_rows_up_to_a_bound() {
        assert_eq!(bucket_count(0), 1);
        assert_eq!(bucket_count(BUCKET_ROWS), 1);
        assert_eq!(bucket_count(BUCKET_ROWS + 1), 2);
        assert_eq!(bucket_count(u64::MAX), MAX_BUCKETS as usize);
    }
}
