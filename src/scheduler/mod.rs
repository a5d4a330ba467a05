//! The embedded scheduler, with Airflow's semantics: DAGs as data (`dag`), cron fire times and
//! data intervals, task instances with retries, back-off and timeouts (`runner`), time-ordered
//! driving for live mode, catch-up, `simulate` and backfill (`driver`), all state and task logs
//! in the lake (`state`), a lease so only one scheduler writes a lake (`lease`), and the
//! registry where layers plug in task bodies (`task`); pause and manual requests shared by the
//! CLI and the web UI (`control`); the bodies of the bootstrap and catalog
//! DAGs live in `admin`.

pub mod admin;
pub mod airflow;
pub mod control;
pub mod dag;
pub mod driver;
pub mod lease;
pub mod runner;
pub mod state;
pub mod task;

pub use dag::{Dag, Schedule, TaskPolicy, TaskSpec, all_dags, dag_by_id};
pub use runner::{Reprocess, Runner};
pub use state::{DagRun, RunState, RunStore, RunType, TaskInstance, TaskState};
pub use task::{
    Fatal, Registry, Retryable, RunParams, TaskBody, TaskContext, TaskError, TaskResult,
};
