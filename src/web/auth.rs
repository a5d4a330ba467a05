//! Authentication by token: where the UI may listen without one ([`check_listen`]), the
//! token check in front of every route ([`auth`]: `Authorization: Bearer`, the
//! `lakepipe_token` cookie, or `?token=` once, which sets the cookie and redirects to the same
//! URL without it), the constant-time comparison every secret is checked with ([`same`]), and
//! the process's random CSRF token ([`csrf_token`]).

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::error::{ApiError, Error};
use super::state::AppState;

/// Checks where the UI may listen: a non-loopback address needs a token.
pub fn check_listen(addr: &SocketAddr, token: Option<&str>) -> Result<(), Error> {
    if !addr.ip().is_loopback() && token.is_none_or(str::is_empty) {
        return Err(Error::OpenWithoutToken { addr: *addr });
    }
    Ok(())
}

/// A fresh random CSRF token (128 bits from the OS, hex).
pub(super) fn csrf_token() -> Result<String, Error> {
    crate::hex::random_hex::<16>().map_err(|source| Error::NoRandomness { source })
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("lakepipe_token="))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The bearer token a request carries, if any.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether the request carries the UI's bearer token.
pub(super) fn has_bearer(st: &AppState, headers: &HeaderMap) -> bool {
    st.token
        .as_deref()
        .is_some_and(|token| bearer(headers).is_some_and(|b| same(b, token)))
}

/// The token check: with a token, a request without it is refused (401).
pub(super) async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = st.token.as_deref() else {
        return next.run(req).await;
    };
    let query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let ok = bearer(req.headers()).is_some_and(|b| same(b, token))
        || cookie_token(req.headers()).is_some_and(|c| same(c, token))
        || query.as_deref().is_some_and(|q| same(q, token));
    if !ok {
        return ApiError(Error::NoToken).into_response();
    }
    let set_cookie = query.is_some();
    // `?token=` in a browser: set the cookie and send it to the same URL without the token,
    // so the token stays out of the history, bookmarks and what the page links to.
    let mut res = if set_cookie && matches!(*req.method(), Method::GET | Method::HEAD) {
        Redirect::to(&without_token(req.uri())).into_response()
    } else {
        next.run(req).await
    };
    if set_cookie
        && let Ok(v) = HeaderValue::from_str(&format!(
            "lakepipe_token={token}; Path=/; HttpOnly; SameSite=Strict"
        ))
    {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `uri`'s path and query without its `token` parameter.
fn without_token(uri: &axum::http::Uri) -> String {
    let rest: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    if rest.is_empty() {
        return uri.path().to_string();
    }
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    format!("{}?{q}", uri.path())
}
