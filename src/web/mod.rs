//! Web UI and JSON API over the lake (DAG grid, logs, lake browser, dashboards, alerts).
//!
//! Built by the web UI issue; read-only over [`crate::store::Store`] except explicit actions.
