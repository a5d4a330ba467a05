//! `POST /ingest/<stream>`: the HTTP side of the ingest API ([`crate::landing::api`]). Behind
//! [`super::guard::guard`] only (Host, headers), it checks its own callers: cross-site
//! requests are refused (403); from loopback no token is needed, from anywhere else an
//! `Authorization: Bearer` token of `[ingest] tokens` that allows the stream, or the UI's
//! `--token` (401 without a known token, 403 for a stream the token may not post to). The
//! body is read as it arrives against the in-flight budget (503 with `Retry-After` when it is
//! spent) and the size limit (413), then landed; the answer comes once it is durable.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use super::auth::{bearer, same};
use super::error::{ApiError, Error};
use super::guard::{request_host, same_origin};
use super::state::AppState;
use crate::landing::api::{
    self, Answer, Encoding, Error as IngestError, Ingest, check_key, count_records, count_request,
};
use crate::sources::stream::stream_by_name;

/// Content types of an ingest body.
const MEDIA_TYPES: [&str; 4] = [
    "application/x-ndjson",
    "application/json",
    "application/jsonlines",
    "application/x-jsonlines",
];

/// The handler: answers, and counts the request for `/metrics`.
pub(super) async fn ingest(
    State(st): State<AppState>,
    Path(stream): Path<String>,
    req: Request,
) -> Response {
    let res = match handle(&st, &stream, req).await {
        Ok(answer) => {
            let replayed = answer.replayed;
            let mut res = (StatusCode::OK, Json(answer)).into_response();
            if replayed {
                res.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            res
        }
        Err(e) => ApiError(e).into_response(),
    };
    let label = stream_by_name(&stream).map_or("unknown", |s| s.name);
    count_request(label, res.status().as_u16());
    res
}

/// Who may post to `stream` (see the module docs).
fn authorize(
    st: &AppState,
    ingest: &Ingest,
    stream: &str,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), Error> {
    if peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
        return Ok(());
    }
    let Some(token) = bearer(headers) else {
        return Err(Error::IngestToken);
    };
    if st.token.as_deref().is_some_and(|ui| same(token, ui)) {
        return Ok(());
    }
    // Every configured token is compared, so timing does not tell which one matched.
    let matching: Vec<_> = ingest
        .config()
        .tokens
        .iter()
        .filter(|t| same(token, &t.token))
        .collect();
    if matching.is_empty() {
        return Err(Error::IngestToken);
    }
    if stream_by_name(stream).is_some() && !matching.iter().any(|t| t.allows(stream)) {
        return Err(Error::StreamNotAllowed {
            stream: stream.to_string(),
        });
    }
    Ok(())
}

/// Refuses a request a browser sends for another site (any origin may not post events into
/// the lake on a user's behalf).
fn same_site(headers: &HeaderMap, host: &str) -> Result<(), Error> {
    if let Some(site) = headers.get("sec-fetch-site")
        && matches!(site.as_bytes(), b"cross-site" | b"same-site")
    {
        return Err(Error::CrossSite);
    }
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| same_origin(o, host))
    {
        return Err(Error::CrossOrigin);
    }
    Ok(())
}

/// The body's media type, if one the API reads.
fn media_type(headers: &HeaderMap) -> Result<(), Error> {
    let got = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mime = got.split(';').next().unwrap_or_default().trim();
    if MEDIA_TYPES.iter().any(|m| mime.eq_ignore_ascii_case(m)) {
        Ok(())
    } else {
        Err(Error::IngestMediaType {
            got: if got.is_empty() {
                "(none)".into()
            } else {
                got.chars().take(100).collect()
            },
        })
    }
}

async fn handle(st: &AppState, stream: &str, req: Request) -> Result<Answer, Error> {
    let Some(ingest) = &st.ingest else {
        return Err(IngestError::UnknownStream {
            stream: stream.to_string(),
        }
        .into());
    };
    let host = request_host(&req).unwrap_or_default();
    let headers = req.headers();
    same_site(headers, &host)?;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    authorize(st, ingest, stream, peer, headers)?;
    if stream_by_name(stream).is_none() {
        return Err(IngestError::UnknownStream {
            stream: stream.to_string(),
        }
        .into());
    }
    media_type(headers)?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(check_key(v.as_bytes())?),
        None => None,
    };
    let encoding = Encoding::parse(
        headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("(not ASCII)")),
    )?;
    let max_body = ingest.config().max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let receiving = ingest.receiving(stream);
    let mut reservation = ingest.reservation();
    if let Some(n) = declared {
        if n > max_body {
            return Err(IngestError::BodyTooLarge { limit: max_body }.into());
        }
        // Twice the body: its records are copied out of it when it is split.
        reservation.grow_to(2 * n)?;
    }
    let body = read_body(req.into_body(), declared, max_body, &mut reservation).await?;
    let (prepared, reservation) = ingest.prepare(stream, body, encoding, reservation).await?;
    let bytes = prepared.parsed.bytes();
    let answer = ingest
        .submit_received(stream, prepared, key.as_deref(), receiving)
        .await?;
    drop(reservation);
    if !answer.replayed {
        count_records(&answer.stream, answer.accepted, answer.rejected, bytes);
    }
    Ok(answer)
}

/// The whole body, within `max_body` bytes and the budget, read as it arrives.
async fn read_body(
    body: Body,
    declared: Option<u64>,
    max_body: u64,
    reservation: &mut api::Reservation,
) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(max_body) as usize);
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| IngestError::BodyRead {
            reason: e.to_string(),
        })?;
        let len = (out.len() + chunk.len()) as u64;
        if len > max_body {
            return Err(IngestError::BodyTooLarge { limit: max_body });
        }
        // Twice the body: its records are copied out of it when it is split.
        reservation.grow_to(2 * len)?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
