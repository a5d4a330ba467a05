//! The batch layer's one error type, and whether another attempt could succeed.

use deltalake::DeltaTableError;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;

use crate::layers::clean::{BrokenExpectation, find_in_chain};
use crate::layers::{sql, write};
use crate::scheduler::Retryable;

/// Why a batch operation failed. Retrying cannot fix a broken `fail` expectation, a missing
/// input or a lost file; everything else (the lake, Delta Lake, DataFusion, a check that may
/// hold on another attempt) may pass the next time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row broke an expectation whose action is `fail`.
    #[error(transparent)]
    Expectation(#[from] BrokenExpectation),
    /// The table an operation reads does not exist: its upstream task has not run.
    #[error("{path} does not exist: run {upstream} first")]
    MissingInput {
        /// The table.
        path: String,
        /// The task that makes it (`bronze_api_logs`).
        upstream: String,
    },
    /// A file the lineage listed for the run is gone from the lake.
    #[error("{key} was listed but is gone: the speed layer lost a file")]
    LostFile {
        /// Its key.
        key: String,
    },
    /// Silver's identity `bronze = silver + quarantine + duplicates` does not hold on the
    /// committed tables.
    #[error(
        "row accounting broken for {stream} on {dates:?}: bronze {bronze} != silver {silver} + quarantine {quarantine} + duplicates {duplicates} (read {read}, quarantined by the cleaner {quarantined})"
    )]
    Accounting {
        /// The stream.
        stream: String,
        /// The dates recomputed.
        dates: Vec<String>,
        /// Bronze rows of those dates.
        bronze: u64,
        /// Silver rows committed.
        silver: u64,
        /// Quarantine rows committed.
        quarantine: u64,
        /// Later copies found by the de-duplication.
        duplicates: u64,
        /// Rows the cleaner read.
        read: u64,
        /// Rows the cleaner quarantined.
        quarantined: u64,
    },
    /// The later copies dropped from silver's files are not those the de-duplication found.
    #[error(
        "{path}: the de-duplication found {found} later copies, but {dropped} rows were dropped from the files written; nothing committed"
    )]
    CopiesDropped {
        /// The silver table.
        path: String,
        /// Later copies found.
        found: u64,
        /// Rows dropped.
        dropped: u64,
    },
    /// The lake (a landed file, a lineage manifest).
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Another writer committed to the table while this run was writing it, and Delta's
    /// conflict check refused this run's commit: nothing of it was written.
    #[error(
        "{table}: another writer committed to this table at the same time; nothing \
         of this run was written: run the task again"
    )]
    Conflict {
        /// The table's path.
        table: String,
        /// What deltalake said.
        #[source]
        source: DeltaTableError,
    },
    /// Delta Lake, on one table.
    #[error("{source}")]
    Delta {
        /// The table's path (`batch/silver/api_logs`).
        table: String,
        /// What deltalake said.
        #[source]
        source: DeltaTableError,
    },
    /// DataFusion (planning or running a query).
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Arrow (building or converting rows).
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// The streaming writer of silver.
    #[error(transparent)]
    Write(#[from] write::Error),
    /// A count of rows per date.
    #[error(transparent)]
    Sql(#[from] sql::Error),
    /// A retention period too long to be a duration.
    #[error(transparent)]
    Retention(#[from] chrono::OutOfRangeError),
}

/// `Error::Delta` on `table`, for `map_err`.
pub fn delta(table: &str) -> impl FnOnce(DeltaTableError) -> Error + '_ {
    use deltalake::kernel::transaction::TransactionError;
    move |source| match &source {
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_),
        }
        | DeltaTableError::VersionAlreadyExists(_) => Error::Conflict {
            table: table.to_string(),
            source,
        },
        _ => Error::Delta {
            table: table.to_string(),
            source,
        },
    }
}

impl Error {
    /// This error, or the broken expectation inside it if a `fail` rule stopped the cleaning
    /// partitions (it reaches the task through DataFusion's and deltalake's wrappers).
    pub fn or_broken_expectation(self) -> Error {
        match find_in_chain::<BrokenExpectation>(&self) {
            Some(b) if !matches!(self, Error::Expectation(_)) => Error::Expectation(b.clone()),
            _ => self,
        }
    }
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Error::Expectation(_) | Error::MissingInput { .. } | Error::LostFile { .. }
        ) && !matches!(self, Error::Write(write::Error::Evolve(e)) if e.is_refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::TaskError;

    fn broken() -> BrokenExpectation {
        BrokenExpectation {
            rule: "status_code_valid".into(),
            key: "realtime/api_logs/f.jsonl".into(),
            line: 2,
            value: "299".into(),
        }
    }

    #[test]
    fn a_commit_refused_by_a_concurrent_writer_names_the_table_and_is_retried() {
        let e = delta("batch/bronze/api_logs")(DeltaTableError::VersionAlreadyExists(3));
        assert!(matches!(e, Error::Conflict { .. }));
        assert!(e.is_retryable());
        let msg = e.to_string();
        assert!(
            msg.starts_with("batch/bronze/api_logs: another writer committed"),
            "{msg}"
        );
        let other = delta("t")(DeltaTableError::NotATable("t".into()));
        assert!(matches!(other, Error::Delta { .. }));
    }

    #[test]
    fn a_fail_expectation_inside_datafusion_fails_the_task_without_retries() {
        let e: Error = DataFusionError::Shared(std::sync::Arc::new(
            DataFusionError::External(Box::new(broken())).context("silver"),
        ))
        .into();
        assert!(e.is_retryable(), "untyped, the error would be retried");
        let e = e.or_broken_expectation();
        assert!(matches!(&e, Error::Expectation(b) if *b == broken()));
        let task = TaskError::from(e);
        assert!(!task.is_retryable());
        assert_eq!(
            task.message(),
            "expectation `status_code_valid` (action fail) broken by realtime/api_logs/f.jsonl:2: 299"
        );
    }

    #[test]
    fn missing_inputs_and_lost_files_are_final_the_lake_is_retried() {
        let missing = Error::MissingInput {
            path: "batch/bronze/api_logs".into(),
            upstream: "bronze_api_logs".into(),
        };
        assert_eq!(
            missing.to_string(),
            "batch/bronze/api_logs does not exist: run bronze_api_logs first"
        );
        assert!(!missing.is_retryable());
        let lost = Error::LostFile { key: "k".into() };
        assert_eq!(
            lost.to_string(),
            "k was listed but is gone: the speed layer lost a file"
        );
        assert!(!lost.is_retryable());
        let delta = delta("batch/silver/api_logs")(DeltaTableError::Generic("boom".into()));
        assert!(delta.is_retryable());
        assert_eq!(
            TaskError::from(delta).message(),
            DeltaTableError::Generic("boom".into()).to_string()
        );
        assert!(Error::from(DataFusionError::Execution("x".into())).is_retryable());
    }
}
