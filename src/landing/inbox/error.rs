//! Errors of the inboxes, with the inbox and the key they concern.

/// Errors of an inbox pass. A bad object is never an error (it is quarantined), nor is an
/// object that could not be read this time (it is retried on the next pass).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The inbox's `url` is not a location (validation normally catches this first).
    #[error("inbox {inbox}: bad url `{url}`: {reason}")]
    Location {
        inbox: String,
        url: String,
        reason: String,
    },
    /// The inbox cannot be opened or listed.
    #[error("inbox {inbox}: cannot read {url}: {source}")]
    Source {
        inbox: String,
        url: String,
        #[source]
        source: crate::store::Error,
    },
    /// A write or read of the lake (landed records, the ledger) failed.
    #[error("inbox {inbox}: {source}")]
    Lake {
        inbox: String,
        #[source]
        source: crate::store::Error,
    },
    /// A ledger record in the lake cannot be read back.
    #[error("inbox {inbox}: ledger record {key} is unreadable: {source}")]
    Ledger {
        inbox: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Result with the inbox [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an object is quarantined whole instead of landed: it can never be taken as it is, so it
/// is set aside once (with this reason) and never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadObject {
    /// The bytes are not a valid gzip stream (truncated, damaged, not gzip at all).
    #[error("corrupt gzip: {message}")]
    CorruptGzip { message: String },
    /// The object, or what it decodes to, is over the size limit.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    /// The decoded bytes are not UTF-8, so they cannot be split into JSON lines.
    #[error("not UTF-8 text: invalid byte sequence at decoded byte {offset}")]
    NotUtf8 { offset: usize },
    /// The object was listed but was gone when it was read.
    #[error("listed but gone when read")]
    Vanished,
}
