//! `unified_<stream>`: `serving/unified/<stream>` = silver rows of the files the batch layer has
//! consumed (and committed to silver) ∪ speed-layer rows of the files it has not, cleaned by
//! the same rules, de-duplicated by id (first landed wins) — every event exactly once at every
//! moment: before a batch run, right after it, and when late files arrive.
//!
//! Each run makes at most one data commit, labelled with the run's logical date
//! (`lakepipe.serving_run` in the commit info), and on the hour a compaction of the partitions
//! it appended to (same rows, fewer files, same label):
//! - **append** (the usual case): the speed files landed since the last run are cleaned,
//!   de-duplicated among themselves, anti-joined against the ids their dates already hold, and
//!   appended. A re-run appends nothing: every id is already there.
//! - **recompute**: when a batch run has committed silver since the last serving run (or the
//!   table or its state is new), the dates that run touched — plus the dates of new speed files —
//!   are replaced (replace-where) by silver ∪ the speed files silver does not hold yet.
//!
//! Which files unified holds is kept in `_lakepipe/serving/<stream>.json`, written after the
//! commit; if it is lost, the next run recomputes the look-back window.
//!
//! A speed row is checked as the batch run that will consume its file will check it (the first
//! batch fire at or after the file's ingest run), so a row's verdict does not change when the
//! batch takes over.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Duration, Timelike as _, Utc};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext as DfTaskContext;
use deltalake::datafusion::physical_plan::SendableRecordBatchStream;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::clock::{parse_utc, rfc3339_secs};
use crate::layers::batch::lineage::{self, ConsumedFile, LOOKBACK_DAYS};
use crate::layers::batch::{self, bronze, compact, table_path};
use crate::layers::clean::{self, Cleaner, Counts, expectations};
use crate::layers::sql;
use crate::layers::write::{self, Write};
use crate::scheduler::{TaskBody, TaskContext, TaskResult, dag_by_id};
use crate::sources::stream::StreamSpec;
use crate::store::{ObjectAttrs, Store, register_delta};

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
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Batch runs whose silver rows it holds.
    batch_runs: BTreeSet<String>,
    /// Speed-layer files not yet in silver whose rows it holds: key → event date.
    speed_files: BTreeMap<String, String>,
}

/// The batch run that will consume a file landed by the ingest run at `ingest_run`: the first
/// fire of the batch schedule at or after it.
pub fn consuming_batch_run(ingest_run: DateTime<Utc>) -> DateTime<Utc> {
    let Some(dag) = dag_by_id(batch::DAG_ID) else {
        return ingest_run;
    };
    if dag.schedule.fires_at(ingest_run) {
        return ingest_run;
    }
    dag.schedule.next_after(ingest_run).unwrap_or(ingest_run)
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
        let store = self.store.clone();
        let counts = Arc::clone(&self.counts);
        let stream = futures::stream::iter(self.files.clone()).then(move |(f, cleaner)| {
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
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// What a run does.
#[derive(Debug, PartialEq)]
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

/// The body of `unified_<stream>`.
pub struct Unified {
    /// The stream.
    pub spec: &'static StreamSpec,
}

#[async_trait::async_trait]
impl TaskBody for Unified {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Unified {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let spec = self.spec;
        let stream = spec.name;
        let store = &ctx.store;
        let t = ctx.logical_date;
        let window = t - Duration::days(LOOKBACK_DAYS);
        let manifests = lineage::manifests(store, stream, window, t).await?;
        let committed: Vec<&lineage::Manifest> =
            manifests.iter().filter(|m| m.silver_committed).collect();
        let in_silver: HashSet<&str> = committed
            .iter()
            .flat_map(|m| m.files.iter().map(|f| f.key.as_str()))
            .collect();
        let unconsumed: Vec<ConsumedFile> = lineage::landed(store, stream, window, t)
            .await?
            .into_iter()
            .filter(|f| !in_silver.contains(f.key.as_str()))
            .collect();
        let path = unified_path(stream);
        let existing = store.delta_table(&path).await?;
        let mut state: State = match (&existing, store.get_opt(&state_key(stream)).await?) {
            (Some(_), Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                ctx.log.info(format!(
                    "unreadable serving state ({e}): recomputing the look-back window"
                ));
                State::default()
            }),
            _ => State::default(),
        };
        let decided = plan(existing.is_some(), &state, &committed, &unconsumed);

        let df_ctx = sql::session()?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let (speed_files, dates, replace) = match &decided {
            Plan::Nothing => {
                ctx.log.info("no new speed file and no new batch run");
                return Ok(serde_json::json!({ "stream": stream, "mode": "none" }));
            }
            Plan::Append(files) => {
                let dates: Vec<String> = files
                    .iter()
                    .map(|f| f.date.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                (files.clone(), dates, false)
            }
            Plan::Recompute(dates) => {
                let files = unconsumed
                    .iter()
                    .filter(|f| dates.contains(&f.date))
                    .cloned()
                    .collect();
                (files, dates.clone(), true)
            }
        };
        ctx.log.info(format!(
            "{path}: {} {dates:?} from {} speed file(s)",
            if replace {
                "recomputing"
            } else {
                "appending to"
            },
            speed_files.len()
        ));
        df_ctx.register_table(
            "speed_clean",
            Arc::new(StreamingTable::try_new(
                clean::clean_schema(spec),
                vec![Arc::new(SpeedFiles::new(
                    store,
                    spec,
                    speed_files.clone(),
                    Arc::clone(&counts),
                )?)],
            )?),
        )?;
        let sql = self
            .sql(&df_ctx, store, existing.as_ref(), &dates, replace)
            .await?;
        let plan = df_ctx.sql(&sql).await?.into_unoptimized_plan();
        let props = || {
            CommitProperties::default().with_metadata([(
                RUN_KEY.to_string(),
                serde_json::Value::from(rfc3339_secs(t)),
            )])
        };
        let target = match existing {
            Some(t) => t,
            None => store.delta_table_or_new(&path).await?,
        };
        let table = write::write_plan(
            target,
            &df_ctx,
            plan,
            if replace {
                Write::ReplaceDates(&dates)
            } else {
                Write::Append
            },
            props(),
        )
        .await?;

        // Record what the table now holds.
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
        let oldest_run = rfc3339_secs(window);
        state.batch_runs.retain(|r| *r >= oldest_run);
        store
            .put(
                &state_key(stream),
                Bytes::from(serde_json::to_vec(&state)?),
                &ObjectAttrs::default(),
            )
            .await?;
        // Each append leaves one small file in its dates' partitions. Once an hour they are
        // merged (Delta optimize of those dates, labelled with this run like the append), so
        // the windows every serving task reads stay a handful of files instead of up to 144.
        let compacted = if !replace && t.minute() == 0 {
            compact::compact_table(store, &path, Some(&dates), Some(props())).await?
        } else {
            None
        };
        if let Some(c) = &compacted {
            ctx.log.info(format!(
                "{path}: hourly compaction merged {} files into {}",
                c.files_removed, c.files_added
            ));
        }
        let c = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(serde_json::json!({
            "compacted": compacted,
            "stream": stream,
            "mode": if replace { "recompute" } else { "append" },
            "version": table.version(),
            "dates": dates,
            "speed_files": speed_files.len(),
            "speed_rows_read": c.rows_in,
            "speed_rows_dropped": c.quarantined.values().sum::<u64>(),
        }))
    }
}

impl Unified {
    /// The SQL of a run: new speed rows not yet in the table (append), or silver ∪ speed rows
    /// of `dates` (recompute), de-duplicated by id, first landed wins.
    async fn sql(
        &self,
        df_ctx: &SessionContext,
        store: &Store,
        existing: Option<&deltalake::DeltaTable>,
        dates: &[String],
        replace: bool,
    ) -> anyhow::Result<String> {
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
        if !replace {
            let Some(table) = existing else {
                return Ok(first_landed(&speed));
            };
            register_delta(df_ctx, "unified", table).await?;
            return Ok(format!(
                "SELECT * FROM ({}) s WHERE NOT EXISTS (SELECT 1 FROM unified u WHERE u.{} AND u.\"{id}\" = s.\"{id}\")",
                first_landed(&speed),
                sql::in_dates(dates)
            ));
        }
        let input = match store.delta_table(&table_path("silver", spec.name)).await? {
            Some(silver) => {
                register_delta(df_ctx, "silver", &silver).await?;
                format!(
                    "SELECT {col_list}, 'batch' AS _source FROM silver WHERE {} UNION ALL SELECT {col_list}, _source FROM ({speed})",
                    sql::in_dates(dates)
                )
            }
            None => speed,
        };
        Ok(first_landed(&input))
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
}
