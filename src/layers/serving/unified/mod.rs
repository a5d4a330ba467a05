//! `unified_<stream>`: `serving/unified/<stream>` = silver rows of the files the batch layer has
//! consumed (and committed to silver) ∪ speed-layer rows of the files it has not, cleaned by
//! the same rules, de-duplicated by id (first landed wins) — every event exactly once at every
//! moment: before a batch run, right after it, and when late files arrive.
//!
//! Each run makes at most one data commit, labelled with the run's logical date
//! (`lakepipe.serving_run` in the commit info); the small files appends leave are merged by
//! the serving DAG's `upkeep` ([`super::upkeep`]):
//! - **append** (the usual case): the speed files landed since the last run are cleaned,
//!   de-duplicated among themselves, stripped of the ids their dates already hold (checked
//!   against this process's id filters, and in the table only for the ids the filters may
//!   hold: [`seen`]), and appended. A re-run appends nothing: every id is already there.
//! - **recompute**: when a batch run has committed silver since the last serving run (or the
//!   table or its state is new), the dates that run touched — plus the dates of new speed files —
//!   are replaced (replace-where) by silver ∪ the speed files silver does not hold yet — by
//!   silver's rows as they are when there are no such files and silver holds each id once over
//!   those dates, as each silver pass leaves them (checked, [`Input::Silver`]).
//!
//! Which files unified holds is kept in `_lakepipe/serving/<stream>.json`, written after the
//! commit; if it is lost, the next run recomputes the look-back window.
//!
//! A speed row is checked as the batch run that will consume its file will check it (the first
//! batch fire at or after the file's ingest run), so a row's verdict does not change when the
//! batch takes over.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext as DfTaskContext;
use deltalake::datafusion::physical_plan::SendableRecordBatchStream;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use super::{Error, Result, log_info, prepared, run_label};
use crate::clock::{parse_utc, rfc3339_secs};
use crate::layers::batch::lineage::{self, ConsumedFile, LOOKBACK_DAYS};
use crate::layers::batch::{self, bronze, table_path};
use crate::layers::clean::{self, Cleaner, Counts, expectations};
use crate::layers::evolve;
use crate::layers::sql;
use crate::layers::write::{self, Write};
use crate::scheduler::task::{Dataset, Datasets, TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::sources::stream::StreamSpec;
use crate::store::{ObjectAttrs, Store, register_delta};

mod seen;

/// Lake path of the unified table of `stream`.
pub fn unified_path(stream: &str) -> String {
    format!("serving/unified/{stream}")
}

/// Commit-info key holding the logical date of the serving run that made the commit.
pub const RUN_KEY: &str = "lakepipe.serving_run";

fn state_key(stream: &str) -> String {
    format!("_lakepipe/serving/{stream}.json")
}

/// What the unified table of a stream holds besides silver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    /// Batch runs whose silver rows it holds.
    batch_runs: BTreeSet<String>,
    /// Speed-layer files not yet in silver whose rows it holds: key → event date.
    speed_files: BTreeMap<String, String>,
}

/// The batch run that will consume a file landed by the ingest run at `ingest_run`: the first
/// fire of the batch schedule at or after it.
pub fn consuming_batch_run(ingest_run: DateTime<Utc>) -> DateTime<Utc> {
    let schedule = batch::dag::schedule();
    if schedule.fires_at(ingest_run) {
        return ingest_run;
    }
    schedule.next_after(ingest_run).unwrap_or(ingest_run)
}

/// Speed-layer files read raw and cleaned on the fly, as one DataFusion partition.
#[derive(Debug)]
struct SpeedFiles {
    store: Store,
    /// Each file with the cleaner of the batch run that will consume it.
    files: Vec<(ConsumedFile, Arc<Cleaner>)>,
    counts: Arc<Mutex<Counts>>,
    schema: SchemaRef,
}

impl SpeedFiles {
    fn new(
        store: &Store,
        spec: &'static StreamSpec,
        files: Vec<ConsumedFile>,
        counts: Arc<Mutex<Counts>>,
    ) -> Result<SpeedFiles, DataFusionError> {
        let mut cleaners: BTreeMap<DateTime<Utc>, Arc<Cleaner>> = BTreeMap::new();
        let mut with_cleaner = Vec::with_capacity(files.len());
        for f in files {
            let landed = parse_utc(&f.ingest_run).map_err(DataFusionError::Execution)?;
            let run = consuming_batch_run(landed);
            let cleaner = cleaners
                .entry(run)
                .or_insert_with(|| Arc::new(Cleaner::new(spec, run, expectations(spec))));
            with_cleaner.push((f, Arc::clone(cleaner)));
        }
        Ok(SpeedFiles {
            store: store.clone(),
            files: with_cleaner,
            counts,
            schema: clean::clean_schema(spec),
        })
    }
}

impl PartitionStream for SpeedFiles {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<DfTaskContext>) -> SendableRecordBatchStream {
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            self.rows(),
        ))
    }
}

impl SpeedFiles {
    /// The cleaned rows of the files, file by file in their order.
    fn rows(
        &self,
    ) -> impl futures::Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static {
        let store = self.store.clone();
        let counts = Arc::clone(&self.counts);
        futures::stream::iter(self.files.clone()).then(move |(f, cleaner)| {
            let store = store.clone();
            let counts = Arc::clone(&counts);
            async move {
                let body = store
                    .get_opt(&f.key)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
                    .ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "{} was listed but is gone: the speed layer lost a file",
                            f.key
                        ))
                    })?;
                let batch = bronze::file_batch(&f, &body, "")
                    .map_err(|e| DataFusionError::External(e.into()))?;
                cleaner.apply(&batch, &counts).map(|c| c.clean)
            }
        })
    }
}

/// What a run does.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    /// Nothing new.
    Nothing,
    /// Append the rows of new speed files.
    Append(Vec<ConsumedFile>),
    /// Replace these dates by silver ∪ the speed files silver does not hold.
    Recompute(Vec<String>),
}

/// Decides what to do from the inputs and the state.
fn plan(
    exists: bool,
    state: &State,
    committed: &[&lineage::Manifest],
    unconsumed: &[ConsumedFile],
) -> Plan {
    let new_files: Vec<ConsumedFile> = unconsumed
        .iter()
        .filter(|f| !state.speed_files.contains_key(&f.key))
        .cloned()
        .collect();
    let mut dates: BTreeSet<String> = BTreeSet::new();
    for m in committed {
        if !exists || !state.batch_runs.contains(&m.batch_run) {
            dates.extend(m.dates());
        }
    }
    if !exists {
        dates.extend(unconsumed.iter().map(|f| f.date.clone()));
    }
    if !dates.is_empty() {
        dates.extend(new_files.iter().map(|f| f.date.clone()));
        return Plan::Recompute(dates.into_iter().collect());
    }
    if new_files.is_empty() {
        Plan::Nothing
    } else {
        Plan::Append(new_files)
    }
}

/// Start of the look-back window of the run at `t`: the batch runs and speed files it reads.
fn lookback(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Duration::days(LOOKBACK_DAYS)
}

/// What a run reads from the lake before it can plan.
#[derive(Debug)]
struct Inputs {
    /// The batch runs' manifests in the look-back window.
    manifests: Vec<lineage::Manifest>,
    /// The speed files landed in the look-back window.
    landed: Vec<ConsumedFile>,
    /// The unified table, if it exists.
    existing: Option<deltalake::DeltaTable>,
    /// What the table holds besides silver (empty without a table or a readable state).
    state: State,
}

/// Where the rows a run writes come from (the `FROM` of its SQL, [`UnifiedPlan::sql`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// The cleaned speed rows (`speed_clean`) alone: an append to a new table, or a recompute
    /// without a silver table.
    Speed,
    /// The `dates` of the table registered as `silver` ∪ the speed rows.
    SilverAndSpeed,
    /// The `dates` of `silver` as they are: a recompute without speed rows, over dates in
    /// which silver holds each id once ([`silver_ids_unique`]), where keeping the first landed
    /// row of each id keeps every row. Silver de-duplicates each pass over its dates, so this
    /// is the usual recompute after a batch run; it reads silver once and sorts nothing, where
    /// the de-duplication read it twice and sorted its keys.
    Silver,
}

/// The commit a run makes.
#[derive(Debug, Clone, PartialEq)]
struct WritePlan {
    /// The speed files whose rows are read.
    speed_files: Vec<ConsumedFile>,
    /// The dates appended to or replaced.
    dates: Vec<String>,
    /// Replace `dates` (recompute) rather than append.
    replace: bool,
    /// What the table holds after the commit (written to the state key).
    state: State,
}

/// A run of `unified_<stream>`, decided from its [`Inputs`] without I/O.
#[derive(Debug, Clone)]
struct UnifiedPlan {
    /// The stream.
    spec: &'static StreamSpec,
    /// The run's logical date.
    t: DateTime<Utc>,
    /// Lake path of the unified table.
    path: String,
    /// The commit, if there is anything new.
    write: Option<WritePlan>,
}

impl UnifiedPlan {
    /// Plans the run at `t` from what the lake holds.
    fn new(
        spec: &'static StreamSpec,
        t: DateTime<Utc>,
        exists: bool,
        mut state: State,
        manifests: &[lineage::Manifest],
        landed: Vec<ConsumedFile>,
    ) -> UnifiedPlan {
        let window = lookback(t);
        let path = unified_path(spec.name);
        let committed: Vec<&lineage::Manifest> =
            manifests.iter().filter(|m| m.silver_committed).collect();
        let in_silver: HashSet<&str> = committed
            .iter()
            .flat_map(|m| m.files.iter().map(|f| f.key.as_str()))
            .collect();
        // The window holds the files landed in it and the batch runs that consume them (a
        // file is consumed by a batch run at or after its landing). A file landed before it,
        // in a date partition still listed, was consumed by a batch run before it, whose
        // manifest is not read: it is not taken for a new speed file.
        let oldest_run = rfc3339_secs(window);
        let unconsumed: Vec<ConsumedFile> = landed
            .into_iter()
            .filter(|f| f.ingest_run >= oldest_run && !in_silver.contains(f.key.as_str()))
            .collect();
        let (speed_files, dates, replace) = match plan(exists, &state, &committed, &unconsumed) {
            Plan::Nothing => {
                return UnifiedPlan {
                    spec,
                    t,
                    path,
                    write: None,
                };
            }
            Plan::Append(files) => {
                let dates: Vec<String> = files
                    .iter()
                    .map(|f| f.date.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                (files, dates, false)
            }
            Plan::Recompute(dates) => {
                let files = unconsumed
                    .iter()
                    .filter(|f| dates.contains(&f.date))
                    .cloned()
                    .collect();
                (files, dates, true)
            }
        };
        // What the table will hold.
        if replace {
            state.batch_runs = committed.iter().map(|m| m.batch_run.clone()).collect();
        }
        for f in &speed_files {
            state.speed_files.insert(f.key.clone(), f.date.clone());
        }
        let oldest = window.format("%Y-%m-%d").to_string();
        state
            .speed_files
            .retain(|k, d| *d >= oldest && !in_silver.contains(k.as_str()));
        state.batch_runs.retain(|r| *r >= oldest_run);
        UnifiedPlan {
            spec,
            t,
            path,
            write: Some(WritePlan {
                speed_files,
                dates,
                replace,
                state,
            }),
        }
    }

    /// The SQL of a run: new speed rows not yet in the table (append), or silver ∪ speed rows
    /// of `dates` (recompute), de-duplicated by id, first landed wins.
    fn sql(&self, dates: &[String], input: Input) -> String {
        let spec = self.spec;
        let id = spec.id_field;
        let derived = clean::derived(spec);
        let mut cols: Vec<String> = clean::clean_schema(spec)
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect();
        cols.extend(derived.iter().map(|(n, _)| format!("\"{n}\"")));
        let col_list = cols.join(", ");
        let derived_sql: String = derived
            .iter()
            .map(|(n, e)| format!(", {e} AS \"{n}\""))
            .collect();
        let speed = format!("SELECT *{derived_sql}, 'speed' AS _source FROM speed_clean");
        let first_landed = |input: &str| {
            format!(
                "SELECT {col_list}, _source FROM ({})",
                sql::first_landed(id, input)
            )
        };
        match input {
            Input::Speed => first_landed(&speed),
            Input::SilverAndSpeed => first_landed(&format!(
                "SELECT {col_list}, 'batch' AS _source FROM silver WHERE {} UNION ALL SELECT {col_list}, _source FROM ({speed})",
                sql::in_dates(dates)
            )),
            Input::Silver => format!(
                "SELECT {col_list}, 'batch' AS _source FROM silver WHERE {}",
                sql::in_dates(dates)
            ),
        }
    }

    /// Makes the run's commit and records what the table holds.
    async fn execute(
        self,
        store: &Store,
        existing: Option<deltalake::DeltaTable>,
        log: Option<&TaskLog>,
        datasets: Option<&Datasets>,
    ) -> Result<UnifiedMetrics> {
        let spec = self.spec;
        let stream = spec.name;
        let path = &self.path;
        let Some(write) = &self.write else {
            log_info(log, "no new speed file and no new batch run");
            return Ok(UnifiedMetrics::Unchanged(Unchanged {
                stream: stream.to_string(),
                mode: UnifiedMode::Nothing,
            }));
        };
        let counts = Arc::new(Mutex::new(Counts::default()));
        log_info(
            log,
            format!(
                "{path}: {} {:?} from {} speed file(s)",
                if write.replace {
                    "recomputing"
                } else {
                    "appending to"
                },
                write.dates,
                write.speed_files.len()
            ),
        );
        let speed = SpeedFiles::new(store, spec, write.speed_files.clone(), Arc::clone(&counts))
            .map_err(Error::datafusion("reading the speed files"))?;
        let (table, appended) = match (write.replace, existing) {
            (false, Some(table)) => {
                let (table, appended) = self.append(store, table, write, speed, log).await?;
                (table, Some(appended))
            }
            (_, existing) => {
                seen::forget(store, stream);
                let table = self
                    .rewrite(store, existing, write, speed, log, datasets)
                    .await?;
                (table, None)
            }
        };
        store.keep_table(path, &table);
        if let Some(d) = datasets.filter(|d| d.is_recording()) {
            for f in &write.speed_files {
                d.read(Dataset::at(&f.key).bytes(f.bytes));
            }
            let kept = appended.as_ref().map_or(Dataset::table(path, &table), |a| {
                Dataset::table(path, &table).rows(a.rows)
            });
            d.wrote(kept);
        }
        let held = appended.map(|a| {
            seen::remember(a.pending, table.version());
            a.held
        });

        // Record what the table now holds.
        store
            .put(
                &state_key(stream),
                Bytes::from(
                    serde_json::to_vec(&write.state).map_err(Error::json("the serving state"))?,
                ),
                &ObjectAttrs::default(),
            )
            .await?;
        let c = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(UnifiedMetrics::Written(Written {
            stream: stream.to_string(),
            mode: if write.replace {
                UnifiedMode::Recompute
            } else {
                UnifiedMode::Append
            },
            version: table.version(),
            dates: write.dates.clone(),
            speed_files: write.speed_files.len(),
            speed_rows_read: c.rows_in,
            speed_rows_dropped: c.quarantined.values().sum::<u64>(),
            ids_already_held: held.as_ref().map_or(0, |h| h.dropped),
            ids_looked_up: held.as_ref().map_or(0, |h| h.looked_up),
        }))
    }

    /// An append to the existing `table` (the usual run): the new speed rows, de-duplicated
    /// among themselves by the run's SQL (planned once per process: [`prepared`]), less the
    /// ids the table already holds ([`seen`]), written and committed without planning.
    async fn append(
        &self,
        store: &Store,
        table: deltalake::DeltaTable,
        write: &WritePlan,
        speed: SpeedFiles,
        log: Option<&TaskLog>,
    ) -> Result<(deltalake::DeltaTable, Appended)> {
        let spec = self.spec;
        let path = &self.path;
        let rows: Vec<RecordBatch> = speed
            .rows()
            .try_collect()
            .await
            .map_err(Error::datafusion(format!("reading the new rows of {path}")))?;
        let (schema, batches) = prepared::run(
            "the new rows of a unified table",
            &self.sql(&write.dates, Input::Speed),
            vec![prepared::Input {
                name: "speed_clean",
                schema: speed.schema,
                rows,
            }],
        )
        .await?;
        let (kept, held, pending) =
            seen::drop_held(store, spec.name, spec.id_field, &table, batches).await?;
        let rows = kept.iter().map(|b| b.num_rows() as u64).sum();
        let table = self.evolved(table, &schema, log).await?;
        let table = write::write_batches(
            table,
            kept,
            write::Replace::Nothing,
            commit_label(self.t, &write.speed_files),
        )
        .await
        .map_err(Error::delta(path))?;
        Ok((
            table,
            Appended {
                rows,
                held,
                pending,
            },
        ))
    }

    /// A recompute of `write.dates`, or the first write of a new table: the run's SQL over
    /// silver (if any) and the speed rows, written by deltalake's writer.
    async fn rewrite(
        &self,
        store: &Store,
        existing: Option<deltalake::DeltaTable>,
        write: &WritePlan,
        speed: SpeedFiles,
        log: Option<&TaskLog>,
        datasets: Option<&Datasets>,
    ) -> Result<deltalake::DeltaTable> {
        let stream = self.spec.name;
        let path = &self.path;
        let df_ctx = sql::session().map_err(Error::batch)?;
        let speed_table = StreamingTable::try_new(speed.schema.clone(), vec![Arc::new(speed)])
            .map_err(Error::datafusion("reading the speed files"))?;
        df_ctx
            .register_table("speed_clean", Arc::new(speed_table))
            .map_err(Error::datafusion("registering speed_clean"))?;
        let input = if !write.replace {
            Input::Speed
        } else {
            let silver_path = table_path("silver", stream);
            match store
                .delta_table(&silver_path)
                .await
                .map_err(Error::delta(&silver_path))?
            {
                Some(silver) => {
                    if let Some(d) = datasets {
                        d.read(Dataset::table(&silver_path, &silver));
                    }
                    register_delta(&df_ctx, "silver", &silver)
                        .await
                        .map_err(Error::datafusion(format!("registering {silver_path}")))?;
                    if write.speed_files.is_empty()
                        && silver_ids_unique(&df_ctx, self.spec.id_field, &write.dates)
                            .await
                            .map_err(Error::datafusion(format!(
                                "counting the ids of {silver_path}"
                            )))?
                    {
                        Input::Silver
                    } else {
                        Input::SilverAndSpeed
                    }
                }
                None => Input::Speed,
            }
        };
        let plan = df_ctx
            .sql(&self.sql(&write.dates, input))
            .await
            .map_err(Error::datafusion(format!("planning the rows of {path}")))?
            .into_unoptimized_plan();
        let target = match existing {
            Some(t) => t,
            None => store
                .delta_table_or_new(path)
                .await
                .map_err(Error::delta(path))?,
        };
        let target = self.evolved(target, plan.schema().as_arrow(), log).await?;
        write::write_plan(
            target,
            &df_ctx,
            plan,
            if write.replace {
                Write::ReplaceDates(&write.dates)
            } else {
                Write::Append
            },
            commit_label(self.t, &write.speed_files),
            &stats_columns(self.spec),
        )
        .await
        .map_err(Error::delta(path))
    }

    /// `table` with the declared columns of `rows` it lacks added first (a changed or removed
    /// one is refused before anything is written), and the table properties of
    /// [`stats_columns`] if an older table lacks them.
    async fn evolved(
        &self,
        table: deltalake::DeltaTable,
        rows: &deltalake::arrow::datatypes::Schema,
        log: Option<&TaskLog>,
    ) -> Result<deltalake::DeltaTable> {
        let (table, added) = evolve::evolve(
            table,
            &self.path,
            rows,
            &evolve::stream_columns(self.spec),
            run_label(self.t),
        )
        .await?;
        if !added.is_empty() {
            log_info(
                log,
                format!(
                    "{}: added column(s) {added:?} (older rows read as null)",
                    self.path
                ),
            );
        }
        // A table made before its file statistics were limited to the event time is given
        // the property once (a metadata-only commit); its older files keep their statistics.
        let Ok(snapshot) = table.snapshot() else {
            return Ok(table); // not created yet: the first write sets the property
        };
        let [(key, wanted)] = stats_columns(self.spec);
        if snapshot.metadata().configuration().get(key) == Some(&wanted) {
            return Ok(table);
        }
        let table = table
            .set_tbl_properties()
            .with_properties([(key.to_string(), wanted.clone())].into())
            .with_commit_properties(run_label(self.t))
            .await
            .map_err(Error::delta(&self.path))?;
        log_info(
            log,
            format!("{}: file statistics limited to {wanted}", self.path),
        );
        Ok(table)
    }
}

/// Whether the table registered as `silver` in `ctx` holds each `id` at most once over
/// `dates`: one hash aggregate of the ids (which spills beyond the session's memory limit),
/// answering at most one id held twice.
async fn silver_ids_unique(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    id: &str,
    dates: &[String],
) -> Result<bool, DataFusionError> {
    let twice = ctx
        .sql(&format!(
            "SELECT \"{id}\" FROM silver WHERE {} GROUP BY \"{id}\" HAVING count(*) > 1 LIMIT 1",
            sql::in_dates(dates)
        ))
        .await?
        .collect()
        .await?;
    Ok(twice.iter().all(|b| b.num_rows() == 0))
}

/// The table properties of a unified table: Delta file statistics (min, max, null count) of
/// the event time only, the column that reads of a window or a time range filter on. Every
/// commit re-reads the statistics of every file of the table (deltalake parses them from
/// JSON to update its snapshot); with every column's, two simulated days took 5–10 % more user
/// CPU time.
fn stats_columns(spec: &StreamSpec) -> [(&'static str, String); 1] {
    [(
        "delta.dataSkippingStatsColumns",
        spec.event_time_field.to_string(),
    )]
}

/// What an append wrote besides the table.
struct Appended {
    /// Rows appended.
    rows: u64,
    /// Ids found already held.
    held: seen::Held,
    /// The appended ids, for this process's id filters once committed.
    pending: seen::Pending,
}

/// The run's label ([`run_label`]) with the newest speed-layer object of `files` (by landing
/// time), which the windows report in their watermark ([`super::window`]).
fn commit_label(
    t: DateTime<Utc>,
    files: &[ConsumedFile],
) -> deltalake::kernel::transaction::CommitProperties {
    let mut meta = vec![(
        RUN_KEY.to_string(),
        serde_json::Value::from(rfc3339_secs(t)),
    )];
    if let Some(f) = files
        .iter()
        .max_by(|a, b| (&a.ingest_run, &a.key).cmp(&(&b.ingest_run, &b.key)))
    {
        meta.push((
            super::window::NEWEST_OBJECT_KEY.to_string(),
            serde_json::Value::from(f.key.clone()),
        ));
        meta.push((
            super::window::NEWEST_LANDED_KEY.to_string(),
            serde_json::Value::from(f.ingest_run.clone()),
        ));
    }
    super::serving_commit().with_metadata(meta)
}

/// The schema of the rows `spec`'s unified table is written with (planned over no rows).
pub async fn written_schema(
    spec: &'static StreamSpec,
) -> Result<deltalake::arrow::datatypes::Schema, DataFusionError> {
    let ctx = sql::session()?;
    let speed = deltalake::datafusion::datasource::MemTable::try_new(
        clean::clean_schema(spec),
        vec![vec![]],
    )?;
    ctx.register_table("speed_clean", Arc::new(speed))?;
    let p = UnifiedPlan {
        spec,
        t: DateTime::<Utc>::UNIX_EPOCH,
        path: unified_path(spec.name),
        write: None,
    };
    let plan = ctx
        .sql(&p.sql(&[], Input::Speed))
        .await?
        .into_unoptimized_plan();
    Ok(plan.schema().as_arrow().clone())
}

/// What a run of `unified_<stream>` did, as it reports it (its task output).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum UnifiedMetrics {
    /// One commit: rows appended or dates recomputed.
    Written(Written),
    /// Nothing new: no commit (`{"stream", "mode": "none"}`).
    Unchanged(Unchanged),
}

impl UnifiedMetrics {
    /// The dates the run appended to or replaced (none when nothing was new).
    pub fn dates(&self) -> &[String] {
        match self {
            UnifiedMetrics::Written(w) => &w.dates,
            UnifiedMetrics::Unchanged(_) => &[],
        }
    }
}

/// How a run changed the unified table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnifiedMode {
    /// Nothing new.
    #[serde(rename = "none")]
    Nothing,
    /// The rows of new speed files appended.
    #[serde(rename = "append")]
    Append,
    /// Dates replaced by silver ∪ the speed files silver does not hold.
    #[serde(rename = "recompute")]
    Recompute,
}

/// A run that committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Written {
    /// The stream.
    pub stream: String,
    /// Append or recompute.
    pub mode: UnifiedMode,
    /// The table's version after the commit.
    pub version: Option<u64>,
    /// Dates appended to or replaced.
    pub dates: Vec<String>,
    /// Speed files read.
    pub speed_files: usize,
    /// Speed rows read.
    pub speed_rows_read: u64,
    /// Speed rows dropped by the expectations.
    pub speed_rows_dropped: u64,
    /// New rows of an append dropped because the table already holds their id.
    #[serde(default)]
    pub ids_already_held: usize,
    /// Ids of an append the id filters may have held, looked up in the table ([`seen`]).
    #[serde(default)]
    pub ids_looked_up: usize,
}

/// A run with nothing new.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unchanged {
    /// The stream.
    pub stream: String,
    /// Always [`UnifiedMode::Nothing`].
    pub mode: UnifiedMode,
}

/// The operation of `unified_<stream>`: loads the lineage, the speed files landed and the
/// table's state, plans ([`UnifiedPlan`]), and makes at most one commit.
pub struct UnifiedBuilder<'a> {
    store: &'a Store,
    spec: &'static StreamSpec,
    logical_date: DateTime<Utc>,
    log: Option<&'a TaskLog>,
    datasets: Option<&'a Datasets>,
}

impl<'a> UnifiedBuilder<'a> {
    /// The run of `spec`'s unified table at `logical_date`.
    pub fn new(
        store: &'a Store,
        spec: &'static StreamSpec,
        logical_date: DateTime<Utc>,
    ) -> UnifiedBuilder<'a> {
        UnifiedBuilder {
            store,
            spec,
            logical_date,
            log: None,
            datasets: None,
        }
    }

    /// Writes what the run does to `log`.
    pub fn with_log(self, log: &'a TaskLog) -> UnifiedBuilder<'a> {
        UnifiedBuilder {
            log: Some(log),
            ..self
        }
    }

    /// Records the files and tables the run reads and the table it writes in `datasets`.
    pub fn with_datasets(self, datasets: &'a Datasets) -> UnifiedBuilder<'a> {
        UnifiedBuilder {
            datasets: Some(datasets),
            ..self
        }
    }

    /// Reads what planning needs.
    async fn load(&self) -> Result<Inputs> {
        let store = self.store;
        let stream = self.spec.name;
        let t = self.logical_date;
        let window = lookback(t);
        let manifests = lineage::manifests(store, stream, window, t).await?;
        let landed = lineage::landed(store, stream, window, t).await?;
        let path = unified_path(stream);
        let existing = store
            .delta_table(&path)
            .await
            .map_err(Error::delta(&path))?;
        let state: State = match (&existing, store.get_opt(&state_key(stream)).await?) {
            (Some(_), Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                log_info(
                    self.log,
                    format!("unreadable serving state ({e}): recomputing the look-back window"),
                );
                State::default()
            }),
            _ => State::default(),
        };
        Ok(Inputs {
            manifests,
            landed,
            existing,
            state,
        })
    }

    async fn run(self) -> Result<UnifiedMetrics> {
        let _turn = super::exclusive(self.store, &format!("unified_{}", self.spec.name)).await;
        let Inputs {
            manifests,
            landed,
            existing,
            state,
        } = self.load().await?;
        let plan = UnifiedPlan::new(
            self.spec,
            self.logical_date,
            existing.is_some(),
            state,
            &manifests,
            landed,
        );
        plan.execute(self.store, existing, self.log, self.datasets)
            .await
    }
}

impl<'a> IntoFuture for UnifiedBuilder<'a> {
    type Output = Result<UnifiedMetrics>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The body of `unified_<stream>`.
pub struct Unified {
    /// The stream.
    pub spec: &'static StreamSpec,
}

#[async_trait::async_trait]
impl TaskBody for Unified {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = UnifiedBuilder::new(&ctx.store, self.spec, ctx.logical_date)
            .with_log(&ctx.log)
            .with_datasets(&ctx.datasets)
            .await?;
        output(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str, date: &str) -> ConsumedFile {
        ConsumedFile {
            key: key.into(),
            date: date.into(),
            ingest_run: "2026-02-02T00:05:00Z".into(),
            bytes: 1,
        }
    }

    fn manifest(run: &str, files: Vec<ConsumedFile>) -> lineage::Manifest {
        lineage::Manifest {
            stream: "api_logs".into(),
            batch_run: run.into(),
            files,
            silver_committed: true,
            txn: None,
        }
    }

    #[test]
    fn plan_appends_new_files_and_recomputes_what_a_batch_run_touched() {
        let a = file("a", "2026-02-01");
        let b = file("b", "2026-02-02");
        let mut state = State::default();
        // A new table: everything in the window.
        assert_eq!(
            plan(false, &state, &[], std::slice::from_ref(&a)),
            Plan::Recompute(vec!["2026-02-01".into()])
        );
        state.speed_files.insert("a".into(), "2026-02-01".into());
        assert_eq!(
            plan(true, &state, &[], std::slice::from_ref(&a)),
            Plan::Nothing
        );
        assert_eq!(
            plan(true, &state, &[], &[a.clone(), b.clone()]),
            Plan::Append(vec![b.clone()])
        );
        // The batch run consumed `a`: its date is recomputed, with the new file's date.
        let m = manifest("2026-02-02T02:00:00Z", vec![a.clone()]);
        assert_eq!(
            plan(true, &state, &[&m], std::slice::from_ref(&b)),
            Plan::Recompute(vec!["2026-02-01".into(), "2026-02-02".into()])
        );
        state.batch_runs.insert(m.batch_run.clone());
        state.speed_files.insert("b".into(), "2026-02-02".into());
        assert_eq!(plan(true, &state, &[&m], &[b]), Plan::Nothing);
    }

    #[test]
    fn a_file_is_checked_as_the_batch_run_that_will_take_it() {
        let at = |s: &str| parse_utc(s).unwrap();
        assert_eq!(
            consuming_batch_run(at("2026-02-02T01:55:00Z")),
            at("2026-02-02T02:00:00Z")
        );
        assert_eq!(
            consuming_batch_run(at("2026-02-02T02:00:00Z")),
            at("2026-02-02T02:00:00Z")
        );
        assert_eq!(
            consuming_batch_run(at("2026-02-02T02:05:00Z")),
            at("2026-02-03T02:00:00Z")
        );
    }

    #[test]
    fn a_run_is_planned_without_the_lake() {
        let spec = crate::sources::stream::stream_by_name("api_logs").unwrap();
        let t = parse_utc("2026-02-02T03:00:00Z").unwrap();
        let a = file("realtime/api_logs/a", "2026-02-01");
        let b = file("realtime/api_logs/b", "2026-02-02");
        let stale = file("realtime/api_logs/old", "2026-01-20");
        // The batch run at 02:00 consumed `a`; `b` landed since; the state still lists `a`, a
        // speed file of a date out of the window, and a batch run out of the window.
        let mut state = State::default();
        state.speed_files.insert(a.key.clone(), a.date.clone());
        state
            .speed_files
            .insert(stale.key.clone(), stale.date.clone());
        state.batch_runs.insert("2026-01-01T02:00:00Z".into());
        let m = manifest("2026-02-02T02:00:00Z", vec![a.clone()]);
        let p = UnifiedPlan::new(
            spec,
            t,
            true,
            state.clone(),
            &[m],
            vec![a.clone(), b.clone()],
        );
        assert_eq!(p.path, "serving/unified/api_logs");
        let w = p.write.clone().unwrap();
        assert_eq!(w.dates, ["2026-02-01", "2026-02-02"]);
        assert!(w.replace);
        assert_eq!(w.speed_files, std::slice::from_ref(&b));
        assert_eq!(
            w.state.batch_runs,
            BTreeSet::from(["2026-02-02T02:00:00Z".to_string()])
        );
        assert_eq!(
            w.state.speed_files,
            BTreeMap::from([(b.key.clone(), b.date.clone())])
        );
        let sql = p.sql(&w.dates, Input::SilverAndSpeed);
        assert!(
            sql.contains("FROM silver WHERE date IN ('2026-02-01', '2026-02-02') UNION ALL"),
            "{sql}"
        );

        // Without a batch run: an append of `b` alone.
        let p = UnifiedPlan::new(spec, t, true, state, &[], vec![a, b.clone()]);
        let w = p.write.clone().unwrap();
        assert_eq!(
            (w.dates.as_slice(), w.replace),
            (&["2026-02-02".to_string()][..], false)
        );
        // The new rows, first landed wins among themselves (the table's ids are dropped after).
        let sql = p.sql(&w.dates, Input::Speed);
        assert!(
            sql.contains("lag(\"log_id\") OVER (ORDER BY \"log_id\", _ingest_run"),
            "{sql}"
        );
        assert!(!sql.contains("unified"));

        // Nothing new: no commit.
        let mut state = State::default();
        state.speed_files.insert(b.key.clone(), b.date.clone());
        let p = UnifiedPlan::new(spec, t + Duration::minutes(10), true, state, &[], vec![b]);
        assert!(p.write.is_none());
    }

    /// The day after a batch run leaves the look-back window, the files it consumed that are
    /// still in a listed date partition (landed before the run, after midnight) are not read
    /// again as new speed files: the table holds their rows from silver.
    #[test]
    fn files_landed_before_the_window_are_not_new() {
        let spec = crate::sources::stream::stream_by_name("api_logs").unwrap();
        let t = parse_utc("2026-02-06T02:10:00Z").unwrap();
        let early = ConsumedFile {
            ingest_run: "2026-02-01T01:55:00Z".into(),
            ..file("realtime/api_logs/date=2026-02-01/early", "2026-02-01")
        };
        let new = ConsumedFile {
            ingest_run: "2026-02-06T02:10:00Z".into(),
            ..file("realtime/api_logs/date=2026-02-06/new", "2026-02-06")
        };
        let mut state = State::default();
        state.batch_runs.insert("2026-02-06T02:00:00Z".into());
        let p = UnifiedPlan::new(spec, t, true, state, &[], vec![early, new.clone()]);
        let w = p.write.unwrap();
        assert_eq!((w.speed_files, w.replace), (vec![new.clone()], false));
        assert_eq!(
            w.state.speed_files,
            BTreeMap::from([(new.key.clone(), new.date.clone())])
        );
    }

    /// A recompute without speed rows reads silver as it is only where silver holds each id
    /// once over the dates recomputed: an id twice in one date, or in two of the dates (two
    /// silver passes), takes the de-duplication; an id twice across a date not recomputed
    /// does not matter.
    #[tokio::test]
    async fn silver_is_taken_as_it_is_only_where_its_ids_are_unique() {
        use deltalake::arrow::array::StringArray;
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        use deltalake::datafusion::datasource::MemTable;
        let schema = Arc::new(Schema::new(vec![
            Field::new("log_id", DataType::Utf8, false),
            Field::new("date", DataType::Utf8, false),
        ]));
        let rows = [
            ("a", "2026-02-01"),
            ("b", "2026-02-01"),
            ("c", "2026-02-02"),
            ("c", "2026-02-03"),
            ("d", "2026-02-04"),
            ("d", "2026-02-04"),
        ];
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        ctx.register_table(
            "silver",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        let unique = |dates: &[&str]| {
            let dates: Vec<String> = dates.iter().map(|d| d.to_string()).collect();
            let ctx = ctx.clone();
            async move { silver_ids_unique(&ctx, "log_id", &dates).await.unwrap() }
        };
        assert!(unique(&["2026-02-01", "2026-02-02"]).await);
        assert!(unique(&["2026-02-03"]).await);
        assert!(!unique(&["2026-02-02", "2026-02-03"]).await);
        assert!(!unique(&["2026-02-04"]).await);
        assert!(unique(&["2026-02-05"]).await);

        // Its SQL: the dates' rows, labelled batch, with no de-duplication.
        let spec = crate::sources::stream::stream_by_name("api_logs").unwrap();
        let p = UnifiedPlan {
            spec,
            t: DateTime::<Utc>::UNIX_EPOCH,
            path: unified_path(spec.name),
            write: None,
        };
        let dates = ["2026-02-01".to_string()];
        let sql = p.sql(&dates, Input::Silver);
        assert!(
            sql.ends_with("'batch' AS _source FROM silver WHERE date IN ('2026-02-01')"),
            "{sql}"
        );
        assert!(!sql.contains("lag("), "{sql}");
        // Its columns are those of the de-duplicated recompute, in the same order (then
        // `_source`).
        let columns = |sql: &str| {
            let select = &sql[..sql.find(" FROM ").unwrap()];
            select[..select.rfind(", ").unwrap()].to_string()
        };
        assert_eq!(
            columns(&sql),
            columns(&p.sql(&dates, Input::SilverAndSpeed))
        );
    }

    #[test]
    fn metrics_are_the_output_of_every_path() {
        let none = UnifiedMetrics::Unchanged(Unchanged {
            stream: "api_logs".into(),
            mode: UnifiedMode::Nothing,
        });
        let v = serde_json::to_value(&none).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "stream": "api_logs", "mode": "none" })
        );
        assert_eq!(v.to_string(), r#"{"mode":"none","stream":"api_logs"}"#);
        assert_eq!(serde_json::from_value::<UnifiedMetrics>(v).unwrap(), none);

        let appended = UnifiedMetrics::Written(Written {
            stream: "api_logs".into(),
            mode: UnifiedMode::Append,
            version: Some(7),
            dates: vec!["2026-02-02".into()],
            speed_files: 2,
            speed_rows_read: 120,
            speed_rows_dropped: 3,
            ids_already_held: 1,
            ids_looked_up: 2,
        });
        let today = serde_json::json!({
            "stream": "api_logs",
            "mode": "append",
            "version": Some(7u64),
            "dates": ["2026-02-02"],
            "speed_files": 2usize,
            "speed_rows_read": 120u64,
            "speed_rows_dropped": 3u64,
            "ids_already_held": 1usize,
            "ids_looked_up": 2usize,
        });
        let v = serde_json::to_value(&appended).unwrap();
        assert_eq!(v, today);
        assert_eq!(v.to_string(), today.to_string());
        assert_eq!(
            serde_json::from_value::<UnifiedMetrics>(v).unwrap(),
            appended
        );

        let recomputed = UnifiedMetrics::Written(Written {
            mode: UnifiedMode::Recompute,
            version: None,
            ..match appended {
                UnifiedMetrics::Written(w) => w,
                UnifiedMetrics::Unchanged(_) => unreachable!(),
            }
        });
        let v = serde_json::to_value(&recomputed).unwrap();
        assert_eq!(v["version"], serde_json::Value::Null);
        assert_eq!(v["mode"], "recompute");
        assert_eq!(v.as_object().unwrap().len(), 9);
        assert_eq!(recomputed.dates(), ["2026-02-02"]);
        assert_eq!(
            serde_json::from_value::<UnifiedMetrics>(v).unwrap(),
            recomputed
        );
    }
}
