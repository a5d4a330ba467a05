//! Web UI and JSON API over the lake (`lakepipe ui`, and beside the scheduler in `lakepipe
//! up`): DAGs and Airflow's grid, runs with task attempts and logs, the lake (catalog datasets
//! and Delta tables), the serving dashboards as charts, alerts, and Prometheus `/metrics`.
//!
//! Everything is read from the lake through [`data::LakeView`]; the only writes are the
//! actions — trigger a DAG, clear a failed run's tasks, pause / unpause — which are recorded
//! exactly as their CLI counterparts record them ([`crate::scheduler::control`]) and carried
//! out by the scheduler holding the lake's lease. Pages are rendered on the server
//! ([`pages`], [`charts`]) with their stylesheet compiled into the binary.
//!
//! Listening on a non-loopback address requires a token; every request must then carry it
//! (`Authorization: Bearer`, the `lakepipe_token` cookie, or `?token=` once, which sets the
//! cookie and redirects to the same URL without it). Whatever the token, [`guard`] refuses a
//! foreign `Host` and cross-site actions, and sets a Content-Security-Policy without inline
//! script on every response.
//!
//! One file per role: `router.rs` builds the routes and their layers over the handlers'
//! shared state (`state.rs`); `auth.rs` checks the token and [`guard`] the Host, origin and
//! CSRF token of every request; `api.rs` answers the JSON API and `html.rs` the pages and
//! forms, both reading the request through `params.rs` (the one DAG lookup) and acting
//! through `actions.rs`; `events.rs` tells the dashboards page when a serving run
//! lands (`GET /api/events`, server-sent events); `ingest.rs` answers the ingest API (`POST /ingest/<stream>`, in `up`
//! and `serve`) over [`crate::landing::api`]; `error.rs` is the one place an [`Error`]
//! becomes an HTTP status.

mod actions;
mod api;
mod auth;
mod charts;
mod data;
mod error;
mod events;
pub mod guard;
mod html;
mod ingest;
mod metrics;
mod pages;
mod params;
mod router;
mod state;
#[cfg(test)]
mod tests;
mod timeseries;

pub use auth::check_listen;
pub use error::Error;
pub use router::{DEFAULT_LISTEN, router, router_with, serve, serve_with};
pub use state::Access;
