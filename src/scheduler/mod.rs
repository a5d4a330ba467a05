//! The embedded scheduler, with Airflow's semantics: DAGs as data (`dag`), cron fire times and
//! data intervals, task instances with retries, back-off and timeouts (`runner`), time-ordered
//! driving for live mode, catch-up, `simulate` and backfill (`driver`), all state and task logs
//! in the lake (`state`), a lease so only one scheduler writes a lake (`lease`), and what a
//! task body sees and returns (`task`); pause and manual requests shared by the CLI and the web
//! UI (`control`); one typed error (`error`), and the handle callers use (`handle`:
//! [`Scheduler`], whose calls take the lease, build the runner and drive it). It knows no DAG
//! of its own: the layers declare theirs, with their bodies, and `crate::pipeline` hands them
//! to it.

pub mod airflow;
pub mod control;
pub mod dag;
pub mod driver;
pub mod error;
pub mod handle;
pub mod lease;
pub mod openlineage;
pub mod runner;
pub mod state;
pub mod task;

pub use dag::{Dag, Schedule, TaskPolicy, TaskSpec};
pub use error::{Error, Refusal};
pub use handle::{BackfillPlan, LiveOptions, RequestOutcome, Scheduler, SimulatePlan};
pub use runner::{Reprocess, Runner};
pub use state::{DagRun, RunState, RunStore, RunType, TaskInstance, TaskState};
pub use task::{Retryable, RunParams, TaskBody, TaskContext, TaskError, TaskResult};
