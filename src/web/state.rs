//! What every handler shares: the view of the lake, the token, this process's CSRF token and
//! the hosts the UI answers to — built once from the UI's [`Access`] — and the ingest API.

use std::net::SocketAddr;
use std::sync::Arc;

use super::data::LakeView;
use super::events::Events;
use super::{Error, auth, guard};
use crate::landing::api::Ingest;
use crate::store::Store;

/// Who may use the UI: its token (required off loopback) and the host names it answers to
/// besides its listen address (`--allowed-host`, e.g. behind a reverse proxy).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub token: Option<String>,
    pub allowed_hosts: Vec<String>,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub(super) struct AppState {
    pub(super) view: Arc<LakeView>,
    pub(super) token: Option<Arc<str>>,
    /// This process's CSRF token: random, put into every form, checked on every form action.
    pub(super) csrf: Arc<str>,
    /// The `Host`s the UI answers to.
    pub(super) hosts: Arc<guard::Hosts>,
    /// The ingest API (`POST /ingest/<stream>`), in `up` and `serve` only.
    pub(super) ingest: Option<Ingest>,
    /// The live dashboards' poller and channel (`GET /api/events`).
    pub(super) events: Arc<Events>,
}

impl AppState {
    /// The state of a UI over `store` listening on `listen`, with the ingest API if given.
    pub(super) fn new(
        store: Store,
        listen: SocketAddr,
        access: Access,
        ingest: Option<Ingest>,
    ) -> Result<AppState, Error> {
        Ok(AppState {
            view: Arc::new(LakeView::new(store)),
            token: access.token.filter(|t| !t.is_empty()).map(Arc::from),
            csrf: Arc::from(auth::csrf_token()?),
            hosts: Arc::new(guard::Hosts::new(listen, &access.allowed_hosts)),
            ingest,
            events: Arc::new(Events::new()),
        })
    }
}
