//! What the pages and the API show, read from the lake and cached briefly: DAG runs and task
//! instances (the scheduler's records), the catalog's partition metadata, Delta table
//! statistics (from the Delta log, no data file is read), the serving documents and task logs.
//!
//! Run records are re-listed at most every [`RUNS_TTL`]; only records whose ETag changed are
//! read again. Task instances of finished runs are cached with the ETag of their run record
//! (a clear rewrites it). Table statistics are cached for [`TABLES_TTL`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::catalog::tables::delta_tables;
use crate::clock::rfc3339_secs;
use crate::layers::serving::alerts::LATEST_KEY;
use crate::layers::serving::dashboards::dashboard_path;
use crate::pipeline::dags as all_dags;
use crate::scheduler::control;
use crate::scheduler::state::{RUNS_PREFIX, is_run_key, read_run, run_key};
use crate::scheduler::{Dag, DagRun, RunStore, TaskInstance};
use crate::store::Store;

use super::Error;

/// How long a listing of the run records is reused.
pub const RUNS_TTL: Duration = Duration::from_secs(3);
/// How long Delta table statistics are reused.
pub const TABLES_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct RunIndex {
    /// run.json key → (ETag or modification time, record).
    runs: HashMap<String, (String, DagRun)>,
    listed_at: Option<Instant>,
}

struct TableCache {
    at: Instant,
    tables: Vec<TableInfo>,
}

/// The lake as the UI sees it.
pub struct LakeView {
    runs: RunStore,
    index: Mutex<RunIndex>,
    /// Task instances of finished runs: run key → (run tag, instances).
    tis: Mutex<HashMap<String, (String, Vec<TaskInstance>)>>,
    tables: Mutex<Option<TableCache>>,
}

/// One Delta table, from its log.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// Query name (`silver_api_logs`).
    pub name: String,
    /// Lake path.
    pub path: String,
    /// Layer: bronze, silver, quarantine, gold or serving.
    pub layer: String,
    /// Current version.
    pub version: Option<u64>,
    /// Rows (from the add actions' statistics).
    pub rows: u64,
    /// Data files.
    pub files: u64,
    /// Bytes of the data files.
    pub bytes: u64,
    /// Partition columns.
    pub partition_columns: Vec<String>,
    /// Columns and their Delta types.
    pub schema: Vec<(String, String)>,
}

/// A DAG with its scheduling state.
#[derive(Debug, Clone, Serialize)]
pub struct DagSummary {
    /// The DAG.
    pub dag_id: String,
    /// What it does.
    pub description: String,
    /// Cron expression, `None` for manual DAGs.
    pub schedule: Option<String>,
    /// Paused DAGs get no scheduled runs.
    pub is_paused: bool,
    /// Tasks.
    pub tasks: usize,
    /// Runs recorded.
    pub runs: usize,
    /// Runs by state.
    pub runs_by_state: BTreeMap<String, usize>,
    /// The newest run.
    pub last_run: Option<RunBrief>,
    /// The next scheduled fire time after the newest scheduled run (Airflow's "next run"), or
    /// after now if the DAG has never run.
    pub next_fire_time: Option<String>,
}

/// A run, briefly.
#[derive(Debug, Clone, Serialize)]
pub struct RunBrief {
    /// Airflow's run id.
    pub run_id: String,
    /// Logical date.
    pub logical_date: String,
    /// State.
    pub state: String,
    /// How it was created.
    pub run_type: String,
    /// Data interval start.
    pub data_interval_start: String,
    /// Data interval end.
    pub data_interval_end: String,
    /// Seconds from start to end.
    pub duration_s: Option<f64>,
}

impl RunBrief {
    fn of(r: &DagRun) -> RunBrief {
        RunBrief {
            run_id: r.run_id.clone(),
            logical_date: rfc3339_secs(r.logical_date),
            state: r.state.as_str().into(),
            run_type: r.run_type.as_str().into(),
            data_interval_start: rfc3339_secs(r.data_interval_start),
            data_interval_end: rfc3339_secs(r.data_interval_end),
            duration_s: match (r.start_date, r.end_date) {
                (Some(s), Some(e)) => Some((e - s).num_milliseconds() as f64 / 1000.0),
                _ => None,
            },
        }
    }
}

/// One row of the grid: a run and the state of each task.
#[derive(Debug, Clone, Serialize)]
pub struct GridRun {
    /// The run.
    #[serde(flatten)]
    pub run: RunBrief,
    /// Task id → state (`none` if the task has no record yet).
    pub tasks: BTreeMap<String, String>,
}

/// The grid of a DAG: newest run first.
#[derive(Debug, Clone, Serialize)]
pub struct Grid {
    /// The DAG.
    pub dag_id: String,
    /// Task ids in the DAG's order.
    pub task_ids: Vec<String>,
    /// Runs, newest first.
    pub runs: Vec<GridRun>,
}

/// A run with its task instances.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    /// The run record.
    pub run: DagRun,
    /// Its task instances, in the DAG's order.
    pub task_instances: Vec<TaskInstance>,
}

/// An object's version tag: its ETag, else its modification time and size.
pub(super) fn tag_of(m: &object_store::ObjectMeta) -> String {
    m.e_tag
        .clone()
        .unwrap_or_else(|| format!("{}:{}", m.last_modified.timestamp_micros(), m.size))
}

impl LakeView {
    /// A view over `store`.
    pub fn new(store: Store) -> LakeView {
        LakeView {
            runs: RunStore::new(store, true),
            index: Mutex::new(RunIndex::default()),
            tis: Mutex::new(HashMap::new()),
            tables: Mutex::new(None),
        }
    }

    /// The lake.
    pub fn store(&self) -> &Store {
        self.runs.store()
    }

    /// The run records.
    pub fn run_store(&self) -> &RunStore {
        &self.runs
    }

    /// Forgets cached listings, so the next read sees a change made by an action.
    pub async fn invalidate(&self) {
        self.index.lock().await.listed_at = None;
    }

    /// Every run record, refreshed if the listing is older than [`RUNS_TTL`].
    pub async fn all_runs(&self) -> Result<Vec<DagRun>, Error> {
        let mut idx = self.index.lock().await;
        if idx.listed_at.is_none_or(|t| t.elapsed() >= RUNS_TTL) {
            let metas: Vec<object_store::ObjectMeta> = self
                .store()
                .list(&format!("{RUNS_PREFIX}/"))
                .try_filter(|m| futures::future::ready(is_run_key(m.location.as_ref())))
                .try_collect()
                .await
                .map_err(Error::lake)?;
            let mut fresh: HashMap<String, (String, DagRun)> = HashMap::with_capacity(metas.len());
            let mut stale = Vec::new();
            for m in metas {
                let key = m.location.to_string();
                let tag = tag_of(&m);
                match idx.runs.remove(&key) {
                    Some((old, run)) if old == tag => {
                        fresh.insert(key, (tag, run));
                    }
                    _ => stale.push((key, tag)),
                }
            }
            let store = self.store().clone();
            let read: Vec<(String, String, DagRun)> = futures::stream::iter(stale)
                .map(|(key, tag)| {
                    let store = store.clone();
                    async move {
                        let run = read_run(&store, &key).await.map_err(Error::lake)?;
                        Ok::<_, Error>(run.map(|r| (key, tag, r)))
                    }
                })
                .buffer_unordered(16)
                .try_filter_map(|x| futures::future::ready(Ok(x)))
                .try_collect()
                .await?;
            for (key, tag, run) in read {
                fresh.insert(key, (tag, run));
            }
            idx.runs = fresh;
            idx.listed_at = Some(Instant::now());
        }
        Ok(idx.runs.values().map(|(_, r)| r.clone()).collect())
    }

    /// Runs of one DAG, newest logical date first.
    pub async fn dag_runs(&self, dag_id: &str) -> Result<Vec<DagRun>, Error> {
        let mut runs: Vec<DagRun> = self
            .all_runs()
            .await?
            .into_iter()
            .filter(|r| r.dag_id == dag_id)
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.logical_date));
        Ok(runs)
    }

    /// Every DAG with its last run, run counts, pause state and next fire time.
    pub async fn dags(&self) -> Result<Vec<DagSummary>, Error> {
        let runs = self.all_runs().await?;
        let paused = control::paused(self.store()).await.map_err(Error::lake)?;
        let now = crate::clock::wall_now();
        Ok(all_dags()
            .iter()
            .map(|d| {
                let mine: Vec<&DagRun> = runs.iter().filter(|r| r.dag_id == d.dag_id).collect();
                let mut by_state = BTreeMap::new();
                for r in &mine {
                    *by_state.entry(r.state.as_str().to_string()).or_insert(0) += 1;
                }
                let last = mine.iter().max_by_key(|r| r.logical_date);
                let last_scheduled = mine
                    .iter()
                    .filter(|r| r.run_type == crate::scheduler::RunType::Scheduled)
                    .map(|r| r.logical_date)
                    .max();
                DagSummary {
                    dag_id: d.dag_id.clone(),
                    description: d.description.clone(),
                    schedule: d.schedule.expr().map(str::to_string),
                    is_paused: paused.contains(&d.dag_id),
                    tasks: d.tasks.len(),
                    runs: mine.len(),
                    runs_by_state: by_state,
                    last_run: last.map(|r| RunBrief::of(r)),
                    next_fire_time: d
                        .schedule
                        .next_after(last_scheduled.unwrap_or(now))
                        .map(rfc3339_secs),
                }
            })
            .collect())
    }

    /// The task instances of `run`, in the DAG's order; cached once the run has finished.
    pub async fn task_instances(
        &self,
        dag: &Dag,
        run: &DagRun,
    ) -> Result<Vec<TaskInstance>, Error> {
        let key = run_key(&run.dag_id, run.logical_date);
        let tag = {
            let idx = self.index.lock().await;
            idx.runs.get(&key).map(|(t, _)| t.clone())
        };
        if run.state.is_finished()
            && let Some(tag) = &tag
            && let Some((t, tis)) = self.tis.lock().await.get(&key)
            && t == tag
        {
            return Ok(tis.clone());
        }
        let ids: Vec<String> = dag.tasks.iter().map(|t| t.task_id.clone()).collect();
        let (runs, dag_id, t) = (self.runs.clone(), dag.dag_id.clone(), run.logical_date);
        let tis: Vec<Option<TaskInstance>> = futures::stream::iter(ids)
            .map(move |task| {
                let (runs, dag_id) = (runs.clone(), dag_id.clone());
                async move { runs.get_ti(&dag_id, t, &task).await }
            })
            .buffered(16)
            .try_collect()
            .await
            .map_err(Error::lake)?;
        let tis: Vec<TaskInstance> = tis.into_iter().flatten().collect();
        if run.state.is_finished()
            && let Some(tag) = tag
        {
            self.tis.lock().await.insert(key, (tag, tis.clone()));
        }
        Ok(tis)
    }

    /// The grid of `dag`: its newest `limit` runs with the state of every task.
    pub async fn grid(&self, dag: &Dag, limit: usize) -> Result<Grid, Error> {
        let runs = self.dag_runs(&dag.dag_id).await?;
        let mut rows = Vec::new();
        for run in runs.iter().take(limit) {
            let tis = self.task_instances(dag, run).await?;
            let tasks = dag
                .tasks
                .iter()
                .map(|t| {
                    let state = tis
                        .iter()
                        .find(|ti| ti.task_id == t.task_id)
                        .map_or("none", |ti| ti.state.as_str());
                    (t.task_id.clone(), state.to_string())
                })
                .collect();
            rows.push(GridRun {
                run: RunBrief::of(run),
                tasks,
            });
        }
        Ok(Grid {
            dag_id: dag.dag_id.clone(),
            task_ids: dag.tasks.iter().map(|t| t.task_id.clone()).collect(),
            runs: rows,
        })
    }

    /// One run with its task instances, `None` if not recorded.
    pub async fn run_detail(
        &self,
        dag: &Dag,
        t: DateTime<Utc>,
    ) -> Result<Option<RunDetail>, Error> {
        let Some(run) = self
            .runs
            .get_run(&dag.dag_id, t)
            .await
            .map_err(Error::lake)?
        else {
            return Ok(None);
        };
        let task_instances = self.task_instances(dag, &run).await?;
        Ok(Some(RunDetail {
            run,
            task_instances,
        }))
    }

    /// Statistics of every Delta table (cached for [`TABLES_TTL`]).
    pub async fn tables(&self) -> Result<Vec<TableInfo>, Error> {
        let mut cache = self.tables.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| c.at.elapsed() < TABLES_TTL) {
            return Ok(c.tables.clone());
        }
        let mut out = Vec::new();
        for t in delta_tables(self.store()).await.map_err(Error::lake)? {
            let Some(table) = self
                .store()
                .delta_table(&t.path)
                .await
                .map_err(Error::lake)?
            else {
                continue;
            };
            let snapshot = table.snapshot().map_err(Error::lake)?;
            let (mut rows, mut files, mut bytes) = (0u64, 0u64, 0u64);
            for f in snapshot.log_data().iter() {
                files += 1;
                bytes += f.size().max(0) as u64;
                rows += f.num_records().unwrap_or(0) as u64;
            }
            let schema = crate::store::table_fields(&table);
            let layer = match t.path.split('/').collect::<Vec<_>>().as_slice() {
                ["batch", layer, _] => layer.to_string(),
                _ => "serving".to_string(),
            };
            out.push(TableInfo {
                name: t.name,
                path: t.path,
                layer,
                version: table.version(),
                rows,
                files,
                bytes,
                partition_columns: snapshot.metadata().partition_columns().to_vec(),
                schema,
            });
        }
        *cache = Some(TableCache {
            at: Instant::now(),
            tables: out.clone(),
        });
        Ok(out)
    }

    /// A JSON document of the lake, `None` if absent.
    pub async fn json_doc(&self, key: &str) -> Result<Option<serde_json::Value>, Error> {
        match self.store().get_opt(key).await.map_err(Error::lake)? {
            Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
                Error::Corrupt {
                    key: key.to_string(),
                    reason: e.to_string(),
                }
            })?)),
            None => Ok(None),
        }
    }

    /// The catalog's partition metadata (`metadata/partition_metadata.json`).
    pub async fn partition_metadata(&self) -> Result<Option<serde_json::Value>, Error> {
        self.json_doc(crate::catalog::METADATA_KEY).await
    }

    /// The dashboards' documents, by name (absent ones are left out).
    pub async fn dashboards(&self) -> Result<BTreeMap<String, serde_json::Value>, Error> {
        let mut out = BTreeMap::new();
        for d in crate::pipeline::active().dashboards {
            if let Some(doc) = self
                .json_doc(&format!("{}.json", dashboard_path(d.name)))
                .await?
            {
                out.insert(d.name.to_string(), doc);
            }
        }
        Ok(out)
    }

    /// `serving/alerts/latest.json`.
    pub async fn alerts(&self) -> Result<Option<serde_json::Value>, Error> {
        self.json_doc(LATEST_KEY).await
    }
}

/// Runs by DAG and state, for `/metrics`.
pub fn runs_by_state(runs: &[DagRun]) -> BTreeMap<(String, &'static str), u64> {
    let mut m = BTreeMap::new();
    for r in runs {
        *m.entry((r.dag_id.clone(), r.state.as_str())).or_insert(0) += 1;
    }
    m
}
