//! The UI's routes and their layers: the router over a lake ([`router`], [`router_with`])
//! and serving it ([`serve`], [`serve_with`]). Every response passes [`guard::guard`] (Host,
//! security headers), then [`auth::auth`] (the token), then, for an action,
//! [`guard::writes`] (same-origin, CSRF) — except the ingest API (`POST /ingest/<stream>`),
//! which passes only [`guard::guard`] and checks its own callers ([`ingest`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use super::events::Events;
use super::state::{Access, AppState};
use super::{api, auth, events, guard, html, ingest};
use crate::landing::api::Ingest;
use crate::store::Store;

/// Default address of the UI.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The router over `store` for a UI listening on `listen`; with a token, every request must
/// carry it.
pub fn router(store: Store, listen: SocketAddr, access: Access) -> Result<Router, super::Error> {
    router_with(store, listen, access, None)
}

/// [`router`] with the ingest API (`POST /ingest/<stream>`) when `ingest` is given.
pub fn router_with(
    store: Store,
    listen: SocketAddr,
    access: Access,
    ingest: Option<Ingest>,
) -> Result<Router, super::Error> {
    Ok(app(store, listen, access, ingest)?.0)
}

/// The router and its live events' channel (closed on shutdown, see [`serve_with`]).
fn app(
    store: Store,
    listen: SocketAddr,
    access: Access,
    ingest: Option<Ingest>,
) -> Result<(Router, Arc<Events>), super::Error> {
    let with_ingest = ingest.is_some();
    let state = AppState::new(store, listen, access, ingest)?;
    let events = state.events.clone();
    let mut routes = Router::new()
        // Pages.
        .route("/", get(html::dags_html))
        .route("/dags/{dag}", get(html::grid_html))
        .route("/dags/{dag}/runs/{date}", get(html::run_html))
        .route(
            "/dags/{dag}/runs/{date}/tasks/{task}/log",
            get(html::log_html),
        )
        .route("/lake", get(html::lake_html))
        .route("/dashboards", get(html::dashboards_html))
        .route("/dashboards/fragment", get(html::dashboards_fragment))
        .route("/alerts", get(html::alerts_html))
        // Form actions: the API's actions, answered with a redirect back.
        .route("/dags/{dag}/trigger", post(html::trigger_form))
        .route("/dags/{dag}/pause", post(html::pause_form))
        .route("/dags/{dag}/unpause", post(html::unpause_form))
        .route("/dags/{dag}/runs/{date}/clear", post(html::clear_form))
        // JSON API.
        .route("/api/dags", get(api::api_dags))
        .route("/api/dags/{dag}", get(api::api_dag))
        .route("/api/dags/{dag}/grid", get(api::api_grid))
        .route("/api/dags/{dag}/runs/{date}", get(api::api_run))
        .route(
            "/api/dags/{dag}/runs/{date}/tasks/{task}/log",
            get(api::api_log),
        )
        .route("/api/dags/{dag}/trigger", post(api::api_trigger))
        .route("/api/dags/{dag}/pause", post(api::api_pause))
        .route("/api/dags/{dag}/unpause", post(api::api_unpause))
        .route("/api/dags/{dag}/runs/{date}/clear", post(api::api_clear))
        .route("/api/lake", get(api::api_lake))
        .route("/api/dashboards", get(api::api_dashboards))
        .route("/api/dashboards/{name}", get(api::api_dashboard))
        .route("/api/alerts", get(api::api_alerts))
        .route("/api/events", get(events::api_events))
        .route("/metrics", get(api::metrics_text))
        .route("/static/style.css", get(html::style_css))
        .route("/static/ui.js", get(html::ui_js))
        .layer(middleware::from_fn_with_state(state.clone(), guard::writes))
        .layer(middleware::from_fn_with_state(state.clone(), auth::auth));
    if with_ingest {
        // Added after the token and write layers, so only `guard` wraps it: it checks its
        // own tokens, origin and content type.
        routes = routes.route("/ingest/{stream}", post(ingest::ingest));
    }
    // Outermost: every response, a refusal by `auth` too, gets the security headers.
    let routes = routes
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .with_state(state);
    Ok((routes, events))
}

/// Serves the UI on `listener` until `shutdown` resolves.
pub async fn serve(
    store: Store,
    listener: tokio::net::TcpListener,
    access: Access,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), super::Error> {
    serve_with(store, listener, access, None, shutdown).await
}

/// [`serve`] with the ingest API when `ingest` is given. After `shutdown` resolves it takes
/// no new connections, ends the live event streams (`GET /api/events`) and returns once every
/// request in flight is answered (ingest requests once their records are landed).
pub async fn serve_with(
    store: Store,
    listener: tokio::net::TcpListener,
    access: Access,
    ingest: Option<Ingest>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), super::Error> {
    let listen = listener.local_addr().map_err(super::Error::Serve)?;
    let (app, events) = app(store, listen, access, ingest)?;
    // Event streams never end by themselves: ended on shutdown, so that it does not wait.
    let shutdown = async move {
        shutdown.await;
        events.close();
    };
    // The peer's address: the ingest API needs no token from loopback only.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(super::Error::Serve)
}
