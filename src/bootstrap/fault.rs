//! How an S3 request of a bucket setting failed ([`Fault`]), read from the SDK error: not
//! configured, not implemented by the server, an unparsable reply, or anything else.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{BuildError, ProvideErrorMetadata, SdkError};
use serde_json::Value;

use crate::store::source_chain;

/// How a request failed.
#[derive(Debug)]
pub(super) enum Fault {
    /// The setting is not configured (NoSuch…Configuration).
    Absent,
    /// The server lacks the API.
    NotImplemented(String),
    /// The server answered 200 with a body the SDK cannot parse (moto's reply for a bucket
    /// that never had versioning): the state is unknown, so it is applied.
    Unreadable(String),
    /// Anything else.
    Other(String),
}

/// The fault of a failed request.
pub(super) fn fault<E>(e: &SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().unwrap_or_default();
    let message = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => source_chain(e),
    };
    if code == "NotImplemented" || status == Some(501) {
        Fault::NotImplemented(message)
    } else if status == Some(200) {
        Fault::Unreadable(message)
    } else if code != "NoSuchBucket"
        && (code.starts_with("NoSuch") || code.ends_with("NotFoundError"))
    {
        Fault::Absent
    } else if code == "AccessDenied" || status == Some(403) {
        Fault::Other(format!(
            "access denied ({message}): the credentials may not manage this bucket"
        ))
    } else {
        Fault::Other(message)
    }
}

/// A setting that is not configured reads as `Null`; any other fault stays one.
pub(super) fn absent_is_null(f: Fault) -> Result<Value, Fault> {
    match f {
        Fault::Absent => Ok(Value::Null),
        f => Err(f),
    }
}

/// A request that could not be built.
pub(super) fn built(e: BuildError) -> Fault {
    Fault::Other(e.to_string())
}
