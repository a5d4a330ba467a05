//! Errors of the speed layer, with the key or figures they are about.

/// Why an ingest or verify attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A deterministic key already holds different bytes: another writer, or a change of the
    /// generator. Retrying cannot help.
    #[error("{source}")]
    Conflict {
        /// The key.
        key: String,
        /// The store's refusal.
        source: crate::store::Error,
    },
    /// The lake could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// `verify` ran without the output of `ingest`.
    #[error("no output from upstream task ingest")]
    NoIngestOutput,
    /// The output of `ingest` could not be read as [`super::IngestMetrics`].
    #[error("the output of ingest cannot be read: {0}")]
    BadIngestOutput(serde_json::Error),
    /// An object `ingest` reported is not in the lake.
    #[error("{key} is missing: ingest reported it landed")]
    Missing {
        /// The key.
        key: String,
    },
    /// An object holds other bytes than `ingest` wrote.
    #[error("{key} holds {size} bytes, ingest wrote {wrote}: another writer replaced it")]
    Replaced {
        /// The key.
        key: String,
        /// Its size in the lake.
        size: u64,
        /// What ingest wrote.
        wrote: u64,
    },
    /// The objects hold another number of lines than events were generated.
    #[error("ingest generated {events} events but landed {lines} lines")]
    Miscounted {
        /// Events generated.
        events: u64,
        /// Lines landed.
        lines: u64,
    },
}

impl crate::scheduler::Retryable for Error {
    fn is_retryable(&self) -> bool {
        !matches!(self, Error::Conflict { .. })
    }
}

impl Error {
    /// A store error of a create-only put of `key`: a conflict is its own kind.
    pub(super) fn put(key: &str, e: crate::store::Error) -> Error {
        match e {
            crate::store::Error::Conflict { .. } => Error::Conflict {
                key: key.to_string(),
                source: e,
            },
            other => Error::Store(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Retryable as _;

    #[test]
    fn only_a_conflict_is_final() {
        let conflict = Error::put(
            "k",
            crate::store::Error::Conflict {
                key: "k".into(),
                existing: 1,
                new: 2,
            },
        );
        assert!(!conflict.is_retryable());
        assert!(conflict.to_string().contains("refusing to overwrite"));
        assert!(Error::Missing { key: "k".into() }.is_retryable());
    }
}
