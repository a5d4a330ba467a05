//! The UI's security layer: [`guard`] in front of every route (Host, headers), [`writes`]
//! behind the token check (actions):
//!
//! - **Host.** A request must name the UI by its listen address (`127.0.0.1:8080`), a loopback
//!   alias of it (`localhost:8080`, `[::1]:8080`) when it listens on loopback, any IP literal on
//!   its port when it listens on every interface, or a name given with `--allowed-host`.
//!   Anything else is refused (403), so a DNS-rebinding page cannot read the API.
//! - **Writes** (any method but GET, HEAD and OPTIONS) must come from the UI itself:
//!   `Sec-Fetch-Site: cross-site` / `same-site` and an `Origin` other than the request's own
//!   host are refused (403). A form action must carry the process's CSRF token (the hidden
//!   `csrf` field [`super::pages`] puts into every form); a JSON API write must be sent as
//!   `Content-Type: application/json` (which a cross-site page cannot send without a CORS
//!   preflight this server never answers) or carry the bearer token (415 otherwise).
//!   The ingest API (`POST /ingest/<stream>`) is not behind [`writes`]: it is posted by
//!   producers, not the UI's pages, and refuses cross-site requests itself (`super::ingest`).
//! - **Headers** on every response: a Content-Security-Policy without inline script
//!   ([`CSP`]), `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
//!   `Referrer-Policy: no-referrer`.

use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{has_bearer, same};
use super::error::{ApiError, Error};
use super::state::AppState;

/// The Content-Security-Policy of every response: scripts and styles only from the UI's own
/// static routes, never inline; no framing; forms post only to the UI.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
                       form-action 'self'";

/// Largest form body read for its CSRF token.
const FORM_LIMIT: usize = 16 * 1024;

/// The `Host`s the UI answers to.
#[derive(Debug, Clone)]
pub struct Hosts {
    port: u16,
    /// `(host, port)`, lower case, IPv6 in brackets.
    exact: Vec<(String, u16)>,
    /// Listening on every interface: any IP literal on `port`.
    any_ip: bool,
    /// `--allowed-host` names: `(name, None)` matches on any port.
    names: Vec<(String, Option<u16>)>,
}

impl Hosts {
    /// The hosts of a UI listening on `listen`, plus `allowed` (`NAME` or `NAME:PORT`).
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Hosts {
        let port = listen.port();
        let mut exact = vec![(host_of(listen.ip()), port)];
        if listen.ip().is_loopback() {
            for h in ["localhost", "127.0.0.1", "[::1]"] {
                exact.push((h.to_string(), port));
            }
        }
        let any_ip = listen.ip().is_unspecified();
        if any_ip {
            exact.push(("localhost".to_string(), port));
        }
        let names = allowed
            .iter()
            .filter_map(|a| split_host(a.trim()))
            .collect();
        Hosts {
            port,
            exact,
            any_ip,
            names,
        }
    }

    /// Whether the UI answers to `host` (a `Host` header or URI authority).
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let port_or_80 = port.unwrap_or(80);
        self.exact
            .iter()
            .any(|(h, p)| *h == name && *p == port_or_80)
            || (self.any_ip
                && port_or_80 == self.port
                && name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok())
            || self
                .names
                .iter()
                .any(|(h, p)| *h == name && p.is_none_or(|p| p == port_or_80))
    }
}

fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Checks an `--allowed-host` value: a host name or IP, optionally with `:PORT`.
pub fn parse_allowed_host(s: &str) -> Result<String, String> {
    match split_host(s) {
        Some((name, _))
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.[]:_".contains(c)) =>
        {
            Ok(s.to_ascii_lowercase())
        }
        _ => Err(format!(
            "`{s}` is not a host name (NAME or NAME:PORT, e.g. lakepipe.example.com)"
        )),
    }
}

/// `host[:port]` as (lower-case host, port); `None` if malformed.
fn split_host(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.to_ascii_lowercase();
    let (name, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (name, rest) = s.split_at(end + 1);
        match rest {
            "" => (name.to_string(), None),
            r => (name.to_string(), Some(r.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((name, port)) => (name.to_string(), Some(port)),
            None => (s.clone(), None),
        }
    };
    if name.is_empty() || name.contains(['/', '@', ' ', '\\']) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((name, port))
}

/// The host a request names: its `Host` header, else its URI's authority (HTTP/2).
pub(super) fn request_host(req: &Request) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok().map(str::to_string),
        None => req.uri().authority().map(|a| a.to_string()),
    }
}

/// Whether `origin` (an `Origin` header) is the same host and port as `host`.
pub(super) fn same_origin(origin: &str, host: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let (Some(oh), Some(op)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    oh.eq_ignore_ascii_case(&name)
        && match port {
            Some(p) => p == op,
            // A Host without a port is the scheme's default one.
            None => op == 80 || op == 443,
        }
}

/// A refusal, answered as JSON whatever the route.
fn refuse(why: Error) -> Response {
    ApiError(why).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Refuses a write that does not come from the UI itself; passes the request on (its body
/// read back in for a form) when it does.
async fn check_write(st: &AppState, req: Request, host: &str) -> Result<Request, Response> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(refuse(Error::CrossSite));
    }
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| same_origin(o, host))
    {
        return Err(refuse(Error::CrossOrigin));
    }
    if req.uri().path().starts_with("/api/") {
        if is_json(headers) || has_bearer(st, headers) {
            return Ok(req);
        }
        return Err(refuse(Error::NotJson));
    }
    // A form action: the body must carry the CSRF token of this process.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, FORM_LIMIT).await else {
        return Err(refuse(Error::FormTooLarge));
    };
    let ok = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .is_some_and(|(_, v)| same(&v, &st.csrf));
    if !ok {
        return Err(refuse(Error::NoCsrf));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The outer layer: refuses a foreign Host; sets the security headers on every response.
pub(super) async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let host_ok = request_host(&req).is_some_and(|h| st.hosts.allows(&h));
    let mut res = if host_ok {
        next.run(req).await
    } else {
        refuse(Error::ForeignHost)
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// The inner layer (after the token check): refuses an action that does not come from the UI.
pub(super) async fn writes(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    // `guard` let it in, so it names a Host.
    let host = request_host(&req).unwrap_or_default();
    match check_write(&st, req, &host).await {
        Ok(req) => next.run(req).await,
        Err(res) => res,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_a_loopback_listener() {
        let h = Hosts::new("127.0.0.1:8080".parse().unwrap(), &[]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "10.0.0.1:8080",
            "localhost:8080@evil",
            "",
            "[::1",
        ] {
            assert!(!h.allows(no), "{no}");
        }
    }

    #[test]
    fn hosts_of_any_interface_and_configured_names() {
        let h = Hosts::new(
            "0.0.0.0:80".parse().unwrap(),
            &["ui.example".into(), "other.example:9000".into()],
        );
        for ok in [
            "10.1.2.3",
            "10.1.2.3:80",
            "[fe80::1]:80",
            "localhost",
            "ui.example",
            "ui.example:8443",
            "other.example:9000",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for no in ["10.1.2.3:81", "evil.example", "other.example", "nip.io"] {
            assert!(!h.allows(no), "{no}");
        }
        let v6 = Hosts::new("[::1]:8080".parse().unwrap(), &[]);
        assert!(v6.allows("[::1]:8080") && v6.allows("localhost:8080"));
        assert!(parse_allowed_host("Lake.Example:9000").is_ok());
        assert!(parse_allowed_host("a/b").is_err() && parse_allowed_host("").is_err());
        assert!(parse_allowed_host("x:port").is_err());
    }

    #[test]
    fn origins() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("https://ui.example", "ui.example"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same_origin("null", "127.0.0.1:8080"));
    }
}
