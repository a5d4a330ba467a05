//! The scheduler's one error type: the lake, its records, the lease, and the requests it
//! refuses, each with the context a user needs.

use super::lease::LeaseError;

/// Why the scheduler could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the lake failed.
    #[error(transparent)]
    Store {
        /// The store's error.
        #[from]
        source: crate::store::Error,
    },
    /// A scheduler object of the lake does not parse.
    #[error("corrupt {what} {key}: {reason}")]
    Corrupt {
        /// What kind of object (`state object`, `control record`).
        what: &'static str,
        /// Its key.
        key: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A run record listed a moment ago is gone.
    #[error("{key} vanished while listing")]
    Vanished {
        /// Its key.
        key: String,
    },
    /// A manual request that makes no sense for the recorded run.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No DAG has this ID.
    #[error("no DAG `{id}`; DAGs: {}", .known.join(", "))]
    NoDag {
        /// The ID asked for.
        id: String,
        /// Every DAG ID.
        known: Vec<String>,
    },
    /// The DAG has no task with this ID.
    #[error("DAG {dag} has no task {task}; `lakepipe dags show {dag}` lists them")]
    NoTask {
        /// The DAG.
        dag: String,
        /// The task asked for.
        task: String,
    },
    /// A logical date the scheduler cannot run.
    #[error("logical date {reason}")]
    BadDate {
        /// Why (outside the supported range).
        reason: String,
    },
    /// `tasks run` of a task whose upstream has not succeeded.
    #[error(
        "upstream task {upstream} of {dag} has not succeeded for {at} (state: {state}); run it first"
    )]
    UpstreamNotDone {
        /// The DAG.
        dag: String,
        /// The upstream task.
        upstream: String,
        /// The logical date (RFC 3339).
        at: String,
        /// Its state (`none` if it never ran).
        state: &'static str,
    },
    /// A backfill of a DAG without a schedule.
    #[error("{dag} has no schedule; use `lakepipe dags trigger`")]
    NotScheduled {
        /// The DAG.
        dag: String,
    },
    /// No attempt of the task is recorded (its log was asked for without `--attempt`).
    #[error("no recorded attempt of {dag} {task} at {at}")]
    NoAttempt {
        /// The DAG.
        dag: String,
        /// The task.
        task: String,
        /// The logical date (RFC 3339).
        at: String,
    },
    /// The log of an attempt is not in the lake.
    #[error("no log for {dag} {task} at {at} attempt {attempt}")]
    NoLog {
        /// The DAG.
        dag: String,
        /// The task.
        task: String,
        /// The logical date (RFC 3339).
        at: String,
        /// The attempt.
        attempt: u32,
    },
    /// The scheduler lease could not be taken.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// Another process took the lease over while this one was scheduling.
    #[error("lost the scheduler lease to another process; stopped")]
    LeaseLost,
}

/// A manual request (trigger, clear) the recorded run does not allow.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A trigger of a run that already finished.
    #[error(
        "{dag} already has a {run_type} run at {at} (state {state}); clear its failed tasks or use `lakepipe dags backfill {dag} --from {at} --to {at} --reprocess all` to run it again"
    )]
    AlreadyRun {
        /// The DAG.
        dag: String,
        /// The recorded run's type.
        run_type: &'static str,
        /// The logical date (RFC 3339).
        at: String,
        /// The recorded run's state.
        state: &'static str,
    },
    /// A clear without a run.
    #[error("{dag} has no run at {at} to clear")]
    NoRun {
        /// The DAG.
        dag: String,
        /// The logical date (RFC 3339).
        at: String,
    },
    /// A clear of a run that did not fail.
    #[error("{dag} {at} is {state}: only failed runs have failed tasks to clear")]
    NotFailed {
        /// The DAG.
        dag: String,
        /// The logical date (RFC 3339).
        at: String,
        /// The run's state.
        state: &'static str,
    },
}

impl Error {
    /// A scheduler object at `key` that does not parse as JSON.
    pub(crate) fn corrupt(what: &'static str, key: &str, e: serde_json::Error) -> Error {
        Error::Corrupt {
            what,
            key: key.to_string(),
            reason: e.to_string(),
        }
    }
}

/// Result with the scheduler's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_texts() {
        let e = Error::NoDag {
            id: "nope".into(),
            known: vec!["a".into(), "b".into()],
        };
        assert_eq!(e.to_string(), "no DAG `nope`; DAGs: a, b");
        let e = serde_json::from_slice::<u32>(b"x").unwrap_err();
        let want = format!("corrupt control record k: {e}");
        assert_eq!(Error::corrupt("control record", "k", e).to_string(), want);
    }
}
