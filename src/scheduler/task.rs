//! What a task body sees and returns: the [`TaskBody`] trait, its [`TaskContext`] (data
//! interval, lake, upstream outputs, a log), and the [`TaskError`] whose [`Retryable`] source
//! decides whether a failure is retried.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::store::Store;

/// A task's implementation, attached to its task by the layer that declares the DAG.
#[async_trait::async_trait]
pub trait TaskBody: Send + Sync {
    /// Runs the task for `ctx`'s data interval. Must be idempotent for that interval: running
    /// it twice leaves the lake as running it once. Returns a small JSON summary (Airflow's
    /// XCom), kept in the task-instance record and passed to downstream tasks.
    async fn run(&self, ctx: &TaskContext) -> TaskResult;
}

/// What a task body returns: its output (XCom), or why the attempt failed.
pub type TaskResult = Result<serde_json::Value, TaskError>;

/// An error that knows whether another attempt could succeed: each layer's typed error
/// implements it, and a body's `?` turns it into a [`TaskError`].
pub trait Retryable: std::error::Error + Send + Sync + 'static {
    /// `false` for failures that retrying cannot fix (conflicting data, a broken expectation
    /// whose action is `fail`, a missing input): the task fails at once, whatever its retries.
    fn is_retryable(&self) -> bool;
}

/// A failed attempt: the error with its chain of causes, and whether to retry.
#[derive(Debug)]
pub struct TaskError {
    error: Box<dyn std::error::Error + Send + Sync>,
    retryable: bool,
}

impl TaskError {
    /// A failure that another attempt may not repeat (I/O, a timeout).
    pub fn retryable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TaskError {
        TaskError {
            error: error.into(),
            retryable: true,
        }
    }

    /// A failure that another attempt would repeat.
    pub fn fatal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TaskError {
        TaskError {
            error: error.into(),
            retryable: false,
        }
    }

    /// May another attempt succeed?
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The error and its causes, `: `-separated.
    pub fn message(&self) -> String {
        crate::error_chain::error_chain(self.error.as_ref())
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl<E: Retryable> From<E> for TaskError {
    fn from(e: E) -> TaskError {
        TaskError {
            retryable: e.is_retryable(),
            error: Box::new(e),
        }
    }
}

/// A task's output (XCom) from its typed metrics.
pub fn output<M: serde::Serialize>(metrics: &M) -> TaskResult {
    serde_json::to_value(metrics).map_err(TaskError::fatal)
}

/// Options every run shares: generator seed, volume, faults, and test hooks.
#[derive(Debug, Clone, Default)]
pub struct RunParams {
    /// Generator seed.
    pub seed: u64,
    /// Multiplier of events per run.
    pub scale: f64,
    /// Fraction of faulty events.
    pub fault_rate: f64,
    /// `dag_id:task_id` pairs whose every attempt fails (test hook, `--fail-task`).
    pub fail_tasks: Vec<String>,
    /// Webhooks the `alerts` task delivers new alerts to (`[[receiver]]`).
    pub receivers: Vec<crate::config::ReceiverConfig>,
    /// Compaction, checkpoints and retention of the serving tables (`[upkeep]`).
    pub upkeep: crate::config::UpkeepConfig,
    /// Where the OpenLineage events of each attempt go (`[lineage]`).
    pub lineage: crate::config::LineageConfig,
    /// The Glue database the catalog DAG registers the tables in (`[glue] enabled`).
    pub glue: Option<crate::config::GlueTarget>,
}

/// The task log of one attempt: kept in memory (task logs are small) and written to the lake
/// when the attempt ends; echoed to stderr when asked (`dags test`).
#[derive(Debug, Default)]
pub struct TaskLog {
    lines: Mutex<Vec<String>>,
    echo: bool,
}

impl TaskLog {
    /// A log that also prints each line to stderr if `echo`.
    pub fn new(echo: bool) -> TaskLog {
        TaskLog {
            lines: Mutex::new(Vec::new()),
            echo,
        }
    }

    /// Adds a line with a UTC timestamp and level.
    pub fn line(&self, level: &str, msg: impl AsRef<str>) {
        let line = format!(
            "[{}] {level:<5} {}",
            crate::clock::rfc3339_millis(crate::clock::wall_now()),
            msg.as_ref()
        );
        if self.echo {
            eprintln!("{line}");
        }
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// Adds an INFO line.
    pub fn info(&self, msg: impl AsRef<str>) {
        self.line("INFO", msg);
    }

    /// The whole log so far.
    pub fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = lines.join("\n");
        s.push('\n');
        s
    }
}

/// Adds an INFO line to `log`, if an operation was given one.
pub fn log_info(log: Option<&TaskLog>, msg: impl AsRef<str>) {
    if let Some(log) = log {
        log.info(msg);
    }
}

/// Everything a task body may use.
#[derive(Debug)]
pub struct TaskContext {
    /// The lake.
    pub store: Store,
    /// The DAG.
    pub dag_id: String,
    /// The task.
    pub task_id: String,
    /// The run's logical date (its fire time).
    pub logical_date: DateTime<Utc>,
    /// The data interval [start, end).
    pub data_interval: (DateTime<Utc>, DateTime<Utc>),
    /// 1-based attempt number.
    pub try_number: u32,
    /// Seed, scale, faults.
    pub params: RunParams,
    /// Outputs of the upstream tasks, by task ID.
    pub upstream: BTreeMap<String, serde_json::Value>,
    /// The attempt's log.
    pub log: TaskLog,
    /// What the attempt read and wrote, for its OpenLineage events.
    pub datasets: Datasets,
}

/// A dataset a task read or wrote: an object or a Delta table of the lake, by its key or
/// path in the lake, with what is known of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// Key (an object) or path (a Delta table) in the lake.
    pub name: String,
    /// Rows (events, lines) read or written.
    pub rows: Option<u64>,
    /// Bytes read or written.
    pub bytes: Option<u64>,
    /// Columns and their types (a Delta table's schema).
    pub fields: Vec<(String, String)>,
}

impl Dataset {
    /// The dataset at `name`, nothing else known.
    pub fn at(name: impl Into<String>) -> Dataset {
        Dataset {
            name: name.into(),
            ..Dataset::default()
        }
    }

    /// With `rows`.
    pub fn rows(self, rows: u64) -> Dataset {
        Dataset {
            rows: Some(rows),
            ..self
        }
    }

    /// With `bytes`.
    pub fn bytes(self, bytes: u64) -> Dataset {
        Dataset {
            bytes: Some(bytes),
            ..self
        }
    }

    /// The Delta table at `path` of `store` with its columns; `None` if there is none there.
    /// A table that cannot be opened is named without its columns (and the reason logged).
    pub async fn of_table(store: &Store, path: &str) -> Option<Dataset> {
        match store.delta_table(path).await {
            Ok(Some(t)) => Some(Dataset::table(path, &t)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(table = path, "lineage: cannot read the table's schema: {e}");
                Some(Dataset::at(path))
            }
        }
    }

    /// The Delta table at `path` with `table`'s columns.
    pub fn table(path: impl Into<String>, table: &deltalake::DeltaTable) -> Dataset {
        Dataset {
            name: path.into(),
            fields: crate::store::table_fields(table),
            ..Dataset::default()
        }
    }
}

impl TaskContext {
    /// Records the Delta table at `path` as read, with its columns and `rows` if known, when
    /// lineage is recorded and the table exists.
    pub async fn read_table(&self, path: &str, rows: Option<u64>) {
        if self.datasets.is_recording()
            && let Some(d) = Dataset::of_table(&self.store, path).await
        {
            self.datasets.read(Dataset { rows, ..d });
        }
    }

    /// Records the Delta table at `path` as written, as [`TaskContext::read_table`] does.
    pub async fn wrote_table(&self, path: &str, rows: Option<u64>) {
        if self.datasets.is_recording()
            && let Some(d) = Dataset::of_table(&self.store, path).await
        {
            self.datasets.wrote(Dataset { rows, ..d });
        }
    }

    /// Records the Delta table at `path` as both read and written (compaction, checkpoints
    /// and vacuum rewrite a table in place), opening it once.
    pub async fn rewrote_table(&self, path: &str) {
        if self.datasets.is_recording()
            && let Some(d) = Dataset::of_table(&self.store, path).await
        {
            self.datasets.read(d.clone());
            self.datasets.wrote(d);
        }
    }
}

/// The inputs and outputs of one attempt, as its body reports them. Kept only when they are
/// sent anywhere (`[lineage]`); otherwise recording them does nothing.
#[derive(Debug, Default)]
pub struct Datasets {
    recording: bool,
    read: Mutex<Vec<Dataset>>,
    written: Mutex<Vec<Dataset>>,
}

impl Datasets {
    /// Datasets that are kept if `recording` (`[lineage]` is set), else dropped.
    pub fn new(recording: bool) -> Datasets {
        Datasets {
            recording,
            ..Datasets::default()
        }
    }

    /// Whether recorded datasets are kept: bodies skip the reads only lineage needs otherwise.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Records an input.
    pub fn read(&self, d: Dataset) {
        if self.recording {
            self.read.lock().unwrap_or_else(|p| p.into_inner()).push(d);
        }
    }

    /// Records an output.
    pub fn wrote(&self, d: Dataset) {
        if self.recording {
            self.written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(d);
        }
    }

    /// Inputs and outputs so far.
    pub fn snapshot(&self) -> (Vec<Dataset>, Vec<Dataset>) {
        (
            self.read.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            self.written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}
