//! What can go wrong answering a request, and the one place that says which HTTP status each
//! failure is ([`Error::status`]). An error is answered as JSON (`{"error": …}`) by the API
//! and the security layers ([`ApiError`]), and as a page by the HTML routes ([`PageError`]);
//! both show the same status and the same message ([`Error::message`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::pages;

/// An error of another module (the lake, the scheduler's records and control), kept whole.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the UI cannot answer a request as asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `ui`/`up` asked to listen off loopback without a token.
    #[error(
        "listening on {addr} (not loopback) needs a token: pass --token or set LAKEPIPE_UI_TOKEN"
    )]
    OpenWithoutToken { addr: std::net::SocketAddr },
    /// The listener failed.
    #[error("the UI's listener failed")]
    Serve(#[source] std::io::Error),

    /// A logical date in the path or query that is not one.
    #[error("logical date {date}: {reason}")]
    BadDate { date: String, reason: String },
    /// `?attempt=` that is not a number.
    #[error("attempt {value}: not a number")]
    BadAttempt { value: String },

    /// The UI has a token and the request does not carry it.
    #[error("this UI needs its token (Authorization: Bearer <token>, or ?token=<token>)")]
    NoToken,

    /// A `Host` the UI does not answer to (DNS rebinding).
    #[error("this UI does not answer to that Host (its listen address, or --allowed-host NAME)")]
    ForeignHost,
    /// An action whose `Sec-Fetch-Site` says it comes from another site.
    #[error("cross-site request refused: actions only from the UI's own pages")]
    CrossSite,
    /// An action whose `Origin` is not the UI.
    #[error("cross-origin request refused: Origin is not this UI")]
    CrossOrigin,
    /// A form action without this process's CSRF token.
    #[error("form without this UI's CSRF token: reload the page and try again")]
    NoCsrf,

    #[error("no DAG {id}")]
    NoDag { id: String },
    #[error("no run of {dag} at {date}")]
    NoRun { dag: String, date: String },
    #[error("no task {task} in {dag} at {at}")]
    NoTask {
        dag: String,
        task: String,
        at: String,
    },
    /// A log object absent from the lake (the API).
    #[error("no log {key} (try {attempt})")]
    NoLog { key: String, attempt: u32 },
    /// A task's log absent from the lake (the log page).
    #[error("no log of {task} try {attempt}")]
    NoTaskLog { task: String, attempt: u32 },
    #[error("no dashboard {name}")]
    NoDashboard { name: String },

    /// The scheduler's control refused an action (e.g. clearing a run that did not fail).
    #[error(transparent)]
    Refused { source: BoxError },

    /// A form body over the limit read for its CSRF token.
    #[error("form too large")]
    FormTooLarge,

    /// An API action sent as something a cross-site page can send without a preflight.
    #[error("API actions need Content-Type: application/json (or Authorization: Bearer <token>)")]
    NotJson,

    /// An ingest request from off loopback without a known token.
    #[error(
        "ingest from a non-loopback address needs a token: Authorization: Bearer <token> (an [ingest] token, or the UI's --token)"
    )]
    IngestToken,
    /// An ingest token that may not post to the stream.
    #[error("this token may not post to stream {stream}")]
    StreamNotAllowed { stream: String },
    /// An ingest request whose Content-Type is not JSON lines or JSON.
    #[error(
        "Content-Type {got} is not accepted: send application/x-ndjson, application/json, application/jsonlines or application/x-jsonlines"
    )]
    IngestMediaType { got: String },
    /// The ingest API refused or failed the request.
    #[error(transparent)]
    Ingest(#[from] crate::landing::api::Error),

    /// A JSON document of the lake that does not parse.
    #[error("corrupt {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// No CSRF secret: the OS gave no randomness.
    #[error("no randomness from the OS")]
    NoRandomness { source: getrandom::Error },
    /// Reading or writing the lake failed.
    #[error(transparent)]
    Lake { source: BoxError },
}

impl Error {
    /// A failure of the lake (or of a module reading it), whatever its error type.
    pub fn lake(source: impl Into<BoxError>) -> Error {
        Error::Lake {
            source: source.into(),
        }
    }

    /// An action the scheduler's control refused, whatever its error type.
    pub fn refused(source: impl Into<BoxError>) -> Error {
        Error::Refused {
            source: source.into(),
        }
    }

    /// The HTTP status of the error: the one place that decides it.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadDate { .. } | Error::BadAttempt { .. } => StatusCode::BAD_REQUEST,
            Error::NoToken | Error::IngestToken => StatusCode::UNAUTHORIZED,
            Error::ForeignHost
            | Error::CrossSite
            | Error::CrossOrigin
            | Error::NoCsrf
            | Error::StreamNotAllowed { .. } => StatusCode::FORBIDDEN,
            Error::IngestMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Ingest(e) => ingest_status(e),
            Error::NoDag { .. }
            | Error::NoRun { .. }
            | Error::NoTask { .. }
            | Error::NoLog { .. }
            | Error::NoTaskLog { .. }
            | Error::NoDashboard { .. } => StatusCode::NOT_FOUND,
            Error::Refused { .. } => StatusCode::CONFLICT,
            Error::FormTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Corrupt { .. }
            | Error::NoRandomness { .. }
            | Error::Lake { .. }
            | Error::OpenWithoutToken { .. }
            | Error::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for the statuses that
    /// ask for a retry.
    pub fn retry_after(&self) -> Option<u64> {
        (self.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(1)
    }

    /// What the user is told: the error and its causes, `: `-separated.
    pub fn message(&self) -> String {
        crate::error_chain::error_chain(self)
    }
}

/// The HTTP status of an ingest failure.
fn ingest_status(e: &crate::landing::api::Error) -> StatusCode {
    use crate::landing::api::Error as E;
    match e {
        E::UnknownStream { .. } => StatusCode::NOT_FOUND,
        E::BodyTooLarge { .. } | E::RecordTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        E::EmptyBody
        | E::BadFraming { .. }
        | E::BadGzip { .. }
        | E::UnsupportedEncoding { .. }
        | E::BodyRead { .. }
        | E::BadIdempotencyKey => StatusCode::BAD_REQUEST,
        E::KeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        E::KeyInUse { .. } => StatusCode::CONFLICT,
        E::Busy { .. } | E::Stopping | E::Store { .. } | E::Write { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        E::Corrupt { .. } | E::NoRandomness { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answered as JSON: `{"error": message}` with its status.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.0.status(),
            axum::Json(json!({ "error": self.0.message() })),
        )
            .into_response();
        if matches!(self.0, Error::NoToken | Error::IngestToken) {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.0.retry_after() {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

/// An error shown as a page: its status's reason as the title, its message in the body.
#[derive(Debug)]
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        (
            status,
            Html(pages::layout(
                status.canonical_reason().unwrap_or("error"),
                "",
                &format!("<p class=\"error\">{}</p>", pages::esc(&self.0.message())),
            )),
        )
            .into_response()
    }
}

/// What an API handler returns.
pub type ApiResult<T> = Result<T, ApiError>;
/// What a page handler returns.
pub type PageResult<T> = Result<T, PageError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lake_error_shows_its_causes_like_anyhow() {
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        let shown = format!("{e:#}");
        assert_eq!(Error::lake(e).message(), shown);
        assert_eq!(
            Error::lake(anyhow::anyhow!("x")).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let refused = Error::refused(anyhow::anyhow!("nothing to clear").context("clear"));
        assert_eq!(refused.message(), "clear: nothing to clear");
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        assert_eq!(Error::NoDag { id: "x".into() }.message(), "no DAG x");
    }
}
