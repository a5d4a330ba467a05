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
}
