//! What can go wrong in a serving task, with what it concerns (the table, the query, the key) kept
//! as fields; and whether another attempt may succeed ([`Retryable`]).
//!
//! Each variant shows the message of the error it wraps, unchanged, so that a failed task
//! reports what it reported before these errors were typed; the context fields are for code
//! and for `{:?}`.

use deltalake::DeltaTableError;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;

use crate::scheduler::Retryable;

/// An error of another module kept whole (a batch-layer helper's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a serving operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing an object of the lake failed.
    #[error("{source}")]
    Store {
        #[from]
        source: crate::store::Error,
    },
    /// Loading, writing or creating the Delta table at `table` failed.
    #[error("{source}")]
    Delta {
        table: String,
        source: DeltaTableError,
    },
    /// Planning or running a query failed (`what` says which).
    #[error("{source}")]
    DataFusion {
        what: String,
        source: DataFusionError,
    },
    /// Sorting, casting, filtering or encoding Arrow data failed.
    #[error("{source}")]
    Arrow {
        what: &'static str,
        source: ArrowError,
    },
    /// A JSON document or row could not be encoded or decoded.
    #[error("{source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    /// A helper of the batch layer (session, compaction) failed.
    #[error("{source}")]
    Batch { source: BoxError },
    /// The unified table's stream columns cannot evolve to the declaration's (a refused
    /// change), or adding a column failed.
    #[error("{source}")]
    Evolve {
        source: Box<crate::layers::evolve::Error>,
    },
    /// Delivering alerts to the receivers could not go on (the lake, not a receiver).
    #[error("{source}")]
    Deliver {
        #[from]
        source: super::deliver::Error,
    },
    /// Alert rows without a column every alert has.
    #[error("alerts have no column {column}")]
    NoAlertColumn { column: String },
    /// Alert rows whose `alert_id` is not text.
    #[error("alert_id is not a string column")]
    AlertIdNotText,
    /// The incremental path gave other rows than the declared SQL over the Delta tables
    /// ([`super::verify`]).
    #[error("{what} differs from the same SQL over the unified tables: {detail}")]
    Diverged { what: String, detail: String },
}

/// Result with the serving [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A batch-layer helper's error, whatever its type (`anyhow::Error`, a typed error).
    pub fn batch(e: impl Into<BoxError>) -> Error {
        Error::Batch { source: e.into() }
    }

    /// For `map_err`: a Delta error of the table at `table`.
    pub fn delta(table: impl Into<String>) -> impl FnOnce(DeltaTableError) -> Error {
        let table = table.into();
        move |source| Error::Delta { table, source }
    }

    /// For `map_err`: a DataFusion error while doing `what`.
    pub fn datafusion(what: impl Into<String>) -> impl FnOnce(DataFusionError) -> Error {
        let what = what.into();
        move |source| Error::DataFusion { what, source }
    }

    /// For `map_err`: an Arrow error while doing `what`.
    pub fn arrow(what: &'static str) -> impl FnOnce(ArrowError) -> Error {
        move |source| Error::Arrow { what, source }
    }

    /// For `map_err`: a JSON error while doing `what`.
    pub fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> Error {
        move |source| Error::Json { what, source }
    }
}

/// Every serving failure is retried, as before its errors were typed: lake I/O, Delta commits
/// and queries may pass on another attempt, and nothing here was ever final. A broken `fail` expectation met while cleaning speed rows
/// reaches serving inside a DataFusion or Delta error, and was retried too.
impl From<crate::layers::evolve::Error> for Error {
    fn from(e: crate::layers::evolve::Error) -> Error {
        Error::Evolve {
            source: Box::new(e),
        }
    }
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        match self {
            Error::Store { .. }
            | Error::Delta { .. }
            | Error::DataFusion { .. }
            | Error::Batch { .. }
            | Error::Deliver { .. } => true,
            Error::Arrow { .. }
            | Error::Json { .. }
            | Error::NoAlertColumn { .. }
            | Error::AlertIdNotText => true,
            Error::Evolve { source } => !source.is_refused(),
            Error::Diverged { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::TaskError;

    #[test]
    fn every_serving_error_is_retried_with_the_message_of_its_cause() {
        let e = Error::batch(anyhow::anyhow!("session failed"));
        assert!(e.is_retryable());
        let te = TaskError::from(e);
        assert!(te.is_retryable());
        assert_eq!(te.message(), "session failed");

        let e = Error::datafusion("query of w")(DataFusionError::Plan("no table w".into()));
        assert_eq!(e.to_string(), "Error during planning: no table w");
        assert_eq!(
            TaskError::from(e).message(),
            "Error during planning: no table w"
        );

        let te = TaskError::from(Error::NoAlertColumn {
            column: "alert_id".into(),
        });
        assert!(te.is_retryable());
        assert_eq!(te.message(), "alerts have no column alert_id");
    }
}
