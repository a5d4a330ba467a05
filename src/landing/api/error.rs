//! What can go wrong ingesting one request: the request's own faults (size, framing, its
//! idempotency key), the process being full or stopping, and the lake failing.

/// Why an ingest request is not landed as asked. `web::error` maps each variant to its
/// HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream is not one of the seed streams.
    #[error(
        "no stream `{stream}` (known: iot_sensors, api_logs, social_media, ecommerce_clickstream, financial_transactions)"
    )]
    UnknownStream { stream: String },
    /// The body (as sent, or after gzip decoding) is over `[ingest] max_body_bytes`.
    #[error("request body over {limit} bytes (ingest.max_body_bytes)")]
    BodyTooLarge { limit: u64 },
    /// One record is over `[ingest] max_record_bytes`: nothing of the request is landed.
    #[error(
        "record {index} has {size} bytes, over {limit} (ingest.max_record_bytes); nothing of this request was landed"
    )]
    RecordTooLarge { index: u64, size: u64, limit: u64 },
    /// The body holds no record at all.
    #[error("empty body: send newline-delimited JSON objects or a JSON array of objects")]
    EmptyBody,
    /// The body is not NDJSON nor a JSON array (e.g. starts with `[` but is no JSON array).
    #[error("bad framing: {reason}")]
    BadFraming { reason: String },
    /// A `Content-Encoding: gzip` body that does not decode.
    #[error("body is not valid gzip: {reason}")]
    BadGzip { reason: String },
    /// A `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding `{encoding}` (gzip or identity)")]
    UnsupportedEncoding { encoding: String },
    /// Reading the body failed (the client went away, or sent a malformed chunk).
    #[error("cannot read the request body: {reason}")]
    BodyRead { reason: String },
    /// The process holds `[ingest] max_inflight_bytes` of requests already.
    #[error(
        "ingest is at its in-flight limit ({limit} bytes, ingest.max_inflight_bytes); retry shortly"
    )]
    Busy { limit: u64 },
    /// An `Idempotency-Key` that is empty, too long or not printable ASCII.
    #[error("Idempotency-Key must be 1 to 255 printable ASCII characters")]
    BadIdempotencyKey,
    /// An `Idempotency-Key` already used for a request with another body.
    #[error("Idempotency-Key already used for a different body on stream {stream}")]
    KeyReused { stream: String },
    /// An `Idempotency-Key` another process is landing at this moment.
    #[error("Idempotency-Key is being used by another request on stream {stream}; retry")]
    KeyInUse { stream: String },
    /// The server is stopping and takes no more records.
    #[error("the ingest API is stopping; retry against the restarted server")]
    Stopping,
    /// An idempotency record of the lake that does not parse.
    #[error("corrupt idempotency record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// Writing to or reading from the lake failed; records of this request may be landed
    /// partly (retry with the same Idempotency-Key to land each exactly once).
    #[error("lake {op} failed")]
    Store {
        op: &'static str,
        #[source]
        source: crate::store::Error,
    },
    /// An object of the request could not be written (after the store's retries).
    #[error("landing {key} failed: {message}")]
    Write { key: String, message: String },
    /// The OS gave no randomness for the process id.
    #[error("no randomness from the OS")]
    NoRandomness { source: getrandom::Error },
}

/// Result with the ingest [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
