//! Scheduler state in the lake, no database: one JSON object per DAG run and one per task
//! instance under `_lakepipe/runs/<dag_id>/<logical date>/`, task logs under
//! `logs/<dag_id>/<logical date>/<task_id>/attempt=<n>.log` (Airflow's remote logging).
//! Every record is written whole with one PUT, so readers never see half a record.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use crate::clock::compact;
use crate::store::{ObjectAttrs, Store};

/// Prefix of all run records.
pub const RUNS_PREFIX: &str = "_lakepipe/runs";

/// Prefix of manual runs waiting for the scheduler that holds the lease.
pub const QUEUE_PREFIX: &str = "_lakepipe/queue";

/// A manual run waiting for the running scheduler: `_lakepipe/queue/<dag_id>__<date>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedRun {
    /// The DAG.
    pub dag_id: String,
    /// The logical date of the queued run.
    pub logical_date: DateTime<Utc>,
    /// Re-run the failed tasks of the recorded run (`tasks clear`) instead of a new run.
    #[serde(default)]
    pub clear: bool,
}

/// State of a DAG run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created, waiting for a scheduler.
    Queued,
    /// Tasks are being executed.
    Running,
    /// Every task succeeded (or was skipped).
    Success,
    /// At least one task failed.
    Failed,
}

impl RunState {
    /// Lower-case name, as in Airflow.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    /// Parses a lower-case state name.
    pub fn parse(s: &str) -> Option<RunState> {
        [
            RunState::Queued,
            RunState::Running,
            RunState::Success,
            RunState::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Finished runs are never repeated unless cleared.
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }
}

/// State of a task instance (Airflow's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for upstreams or a slot.
    Queued,
    /// An attempt is executing.
    Running,
    /// Done.
    Success,
    /// Failed after its last retry.
    Failed,
    /// An attempt failed; another follows after the back-off.
    UpForRetry,
    /// An upstream failed, so this task never ran.
    UpstreamFailed,
    /// Deliberately not run.
    Skipped,
}

impl TaskState {
    /// Lower-case name, as in Airflow.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
        }
    }

    /// Does this state let downstream tasks run?
    pub fn lets_downstream_run(self) -> bool {
        matches!(self, TaskState::Success | TaskState::Skipped)
    }

    /// A final state of a task that was not successful.
    pub fn is_failure(self) -> bool {
        matches!(self, TaskState::Failed | TaskState::UpstreamFailed)
    }
}

/// How a run came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    /// Created by the schedule (live or `simulate`).
    Scheduled,
    /// `dags trigger`.
    Manual,
    /// `dags backfill`.
    Backfill,
    /// Created by `tasks run` from an external orchestrator (Airflow).
    External,
}

impl RunType {
    /// Airflow's run-id prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
            RunType::External => "external",
        }
    }
}

/// A DAG run record: `_lakepipe/runs/<dag_id>/<logical date>/run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DagRun {
    /// The DAG.
    pub dag_id: String,
    /// Airflow-style run ID, e.g. `scheduled__2026-02-01T00:05:00Z`.
    pub run_id: String,
    /// How the run was created.
    pub run_type: RunType,
    /// The fire time; the run's identity.
    pub logical_date: DateTime<Utc>,
    /// Start of the data interval (inclusive).
    pub data_interval_start: DateTime<Utc>,
    /// End of the data interval (exclusive); equals the logical date for scheduled runs.
    pub data_interval_end: DateTime<Utc>,
    /// Current state.
    pub state: RunState,
    /// When the run was created (scheduler clock).
    pub queued_at: DateTime<Utc>,
    /// When it started (scheduler clock).
    pub start_date: Option<DateTime<Utc>>,
    /// When it finished (scheduler clock).
    pub end_date: Option<DateTime<Utc>>,
    /// Task IDs that ended failed or upstream_failed, for a quick look.
    #[serde(default)]
    pub failed_tasks: Vec<String>,
    /// Why the scheduler failed the run without running a task (Airflow's run note), e.g. a
    /// logical date outside the supported range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DagRun {
    /// Folds the states of the run's task instances (`None`: not run yet) into the run: its
    /// failed tasks, and its state once decided — success when every task let its downstream
    /// run, failed when a task failed — with the end date `now`.
    pub fn settle<'a>(
        &mut self,
        states: impl IntoIterator<Item = (&'a str, Option<TaskState>)>,
        now: DateTime<Utc>,
    ) {
        let states: Vec<(&str, Option<TaskState>)> = states.into_iter().collect();
        self.failed_tasks = states
            .iter()
            .filter(|(_, s)| s.is_some_and(TaskState::is_failure))
            .map(|(t, _)| t.to_string())
            .collect();
        if states
            .iter()
            .all(|(_, s)| s.is_some_and(TaskState::lets_downstream_run))
        {
            self.state = RunState::Success;
            self.end_date = Some(now);
        } else if !self.failed_tasks.is_empty() {
            self.state = RunState::Failed;
            self.end_date = Some(now);
        }
    }

    /// A new run record of `dag` at `logical_date`, created at `now` in `state`.
    pub fn new(
        dag: &super::Dag,
        logical_date: DateTime<Utc>,
        run_type: RunType,
        state: RunState,
        now: DateTime<Utc>,
    ) -> DagRun {
        let interval = dag.schedule.data_interval(logical_date);
        DagRun::with_interval(dag, logical_date, run_type, state, now, interval)
    }

    /// [`DagRun::new`] with the data interval given instead of computed from the schedule.
    pub fn with_interval(
        dag: &super::Dag,
        logical_date: DateTime<Utc>,
        run_type: RunType,
        state: RunState,
        now: DateTime<Utc>,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
    ) -> DagRun {
        DagRun {
            dag_id: dag.dag_id.clone(),
            run_id: DagRun::run_id_for(run_type, logical_date),
            run_type,
            logical_date,
            data_interval_start: start,
            data_interval_end: end,
            state,
            queued_at: now,
            start_date: (state == RunState::Running).then_some(now),
            end_date: None,
            failed_tasks: Vec::new(),
            note: None,
        }
    }

    /// Builds the run ID from type and logical date.
    pub fn run_id_for(run_type: RunType, logical_date: DateTime<Utc>) -> String {
        format!(
            "{}__{}",
            run_type.as_str(),
            crate::clock::rfc3339_secs(logical_date)
        )
    }
}

/// One attempt of a task instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based attempt number (Airflow's try_number).
    pub try_number: u32,
    /// How the attempt ended (running while in progress).
    pub state: TaskState,
    /// Start on the scheduler's clock (simulated time under `simulate`).
    pub start_date: DateTime<Utc>,
    /// End on the scheduler's clock.
    pub end_date: Option<DateTime<Utc>>,
    /// Real time the attempt took, in seconds.
    pub duration_s: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A task instance record: `_lakepipe/runs/<dag_id>/<logical date>/tasks/<task_id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInstance {
    /// The DAG.
    pub dag_id: String,
    /// The task.
    pub task_id: String,
    /// The run's logical date.
    pub logical_date: DateTime<Utc>,
    /// Current state.
    pub state: TaskState,
    /// Attempts so far, oldest first.
    pub attempts: Vec<Attempt>,
    /// 1 + retries.
    pub max_tries: u32,
    /// What the task reported (counts, keys): Airflow's XCom return value.
    pub output: Option<serde_json::Value>,
}

impl TaskInstance {
    /// A fresh, queued task instance.
    pub fn new(dag_id: &str, task_id: &str, logical_date: DateTime<Utc>, max_tries: u32) -> Self {
        TaskInstance {
            dag_id: dag_id.to_string(),
            task_id: task_id.to_string(),
            logical_date,
            state: TaskState::Queued,
            attempts: Vec::new(),
            max_tries,
            output: None,
        }
    }

    /// Number of attempts made.
    pub fn try_number(&self) -> u32 {
        self.attempts.len() as u32
    }
}

/// Key of a run's folder.
pub fn run_dir(dag_id: &str, logical_date: DateTime<Utc>) -> String {
    format!("{RUNS_PREFIX}/{dag_id}/{}", compact(logical_date))
}

/// Key of a run record.
pub fn run_key(dag_id: &str, logical_date: DateTime<Utc>) -> String {
    format!("{}/run.json", run_dir(dag_id, logical_date))
}

/// Whether a key listed under [`RUNS_PREFIX`] is a run record (not a task record).
pub fn is_run_key(key: &str) -> bool {
    key.ends_with("/run.json")
}

/// Reads the run record at `key` (from a listing); `None` if it is gone.
pub async fn read_run(store: &Store, key: &str) -> Result<Option<DagRun>> {
    match store.get_opt(key).await? {
        None => Ok(None),
        Some(body) => decode(key, &body).map(Some),
    }
}

/// Key of a task log.
pub fn log_key(dag_id: &str, logical_date: DateTime<Utc>, task_id: &str, attempt: u32) -> String {
    format!(
        "logs/{dag_id}/{}/{task_id}/attempt={attempt}.log",
        compact(logical_date)
    )
}

/// Reads and writes run records. With `record = false` (`dags test`) nothing is written and
/// nothing is read back, so a test run leaves no trace.
#[derive(Debug, Clone)]
pub struct RunStore {
    store: Store,
    record: bool,
}

/// Parses a state object, naming it if it is corrupt.
fn decode<T: for<'de> Deserialize<'de>>(key: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::corrupt("state object", key, e))
}

impl RunStore {
    /// A run store over the lake; `record = false` makes every write a no-op.
    pub fn new(store: Store, record: bool) -> RunStore {
        RunStore { store, record }
    }

    /// The lake.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>> {
        if !self.record {
            return Ok(None);
        }
        match self.store.get_opt(key).await? {
            None => Ok(None),
            Some(b) => decode(key, &b).map(Some),
        }
    }

    async fn put_json<T: Serialize>(&self, key: &str, v: &T) -> Result<()> {
        if !self.record {
            return Ok(());
        }
        Ok(self.store.put_json(key, v).await?)
    }

    /// The run of `dag_id` at `logical_date`, if recorded.
    pub async fn get_run(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<DagRun>> {
        self.get_json(&run_key(dag_id, logical_date)).await
    }

    /// Writes a run record.
    pub async fn put_run(&self, run: &DagRun) -> Result<()> {
        self.put_json(&run_key(&run.dag_id, run.logical_date), run)
            .await
    }

    /// A task instance, if recorded.
    pub async fn get_ti(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
        task_id: &str,
    ) -> Result<Option<TaskInstance>> {
        self.get_json(&format!(
            "{}/tasks/{task_id}.json",
            run_dir(dag_id, logical_date)
        ))
        .await
    }

    /// Writes a task instance record.
    pub async fn put_ti(&self, ti: &TaskInstance) -> Result<()> {
        self.put_json(
            &format!(
                "{}/tasks/{}.json",
                run_dir(&ti.dag_id, ti.logical_date),
                ti.task_id
            ),
            ti,
        )
        .await
    }

    /// Writes a task log.
    pub async fn put_log(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
        task_id: &str,
        attempt: u32,
        text: String,
    ) -> Result<()> {
        if !self.record {
            return Ok(());
        }
        let attrs = ObjectAttrs {
            content_type: Some("text/plain; charset=utf-8".into()),
            metadata: Vec::new(),
        };
        self.store
            .put(
                &log_key(dag_id, logical_date, task_id, attempt),
                Bytes::from(text),
                &attrs,
            )
            .await?;
        Ok(())
    }

    /// Reads a task log.
    pub async fn get_log(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
        task_id: &str,
        attempt: u32,
    ) -> Result<Option<Bytes>> {
        Ok(self
            .store
            .get_opt(&log_key(dag_id, logical_date, task_id, attempt))
            .await?)
    }

    /// Every run of one DAG (or of all DAGs), streamed page by page; the caller filters.
    pub fn runs(
        &self,
        dag_id: Option<&str>,
    ) -> futures::stream::BoxStream<'static, Result<DagRun>> {
        let prefix = match dag_id {
            Some(d) => format!("{RUNS_PREFIX}/{d}/"),
            None => format!("{RUNS_PREFIX}/"),
        };
        let store = self.store.clone();
        self.store
            .list(&prefix)
            .map_err(Error::from)
            .try_filter(|m| futures::future::ready(is_run_key(m.location.as_ref())))
            .map_ok(move |m| {
                let store = store.clone();
                async move {
                    let key = m.location.to_string();
                    read_run(&store, &key).await?.ok_or(Error::Vanished { key })
                }
            })
            .try_buffered(16)
            .boxed()
    }

    /// Queues a manual run for the scheduler that holds the lease.
    pub async fn enqueue(&self, q: &QueuedRun) -> Result<()> {
        let key = format!(
            "{QUEUE_PREFIX}/{}__{}.json",
            q.dag_id,
            compact(q.logical_date)
        );
        self.put_json(&key, q).await
    }

    /// Queued manual runs with their keys (delete a key with [`RunStore::dequeue`]).
    pub async fn queued(&self) -> Result<Vec<(String, QueuedRun)>> {
        let metas: Vec<_> = self
            .store
            .list(&format!("{QUEUE_PREFIX}/"))
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let key = m.location.to_string();
            match self.get_json::<QueuedRun>(&key).await {
                Ok(Some(q)) => out.push((key, q)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        "dropping an unreadable queue entry: {}",
                        crate::error_chain::error_chain(&e)
                    );
                    self.dequeue(&key).await?;
                }
            }
        }
        Ok(out)
    }

    /// Removes a queue entry.
    pub async fn dequeue(&self, key: &str) -> Result<()> {
        Ok(self.store.delete(key).await?)
    }
}
