//! The UI's only writes, shared by the API and the forms: trigger a DAG or clear a run
//! ([`act`]), pause or unpause a DAG ([`set_paused`]). They are recorded exactly as their CLI
//! counterparts record them ([`crate::scheduler::control`]) and carried out by the scheduler
//! holding the lake's lease; the outcome is the JSON the API answers.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Error;
use super::params::find_dag;
use super::state::AppState;
use crate::clock::rfc3339_secs;
use crate::scheduler::Dag;
use crate::scheduler::control::{self, Request as Action};
use crate::scheduler::lease;

/// Carries out an action; returns what the API answers.
pub(super) async fn act(
    st: &AppState,
    dag: &Dag,
    action: Action,
    t: DateTime<Utc>,
) -> Result<serde_json::Value, Error> {
    let run = control::enqueue(st.view.run_store(), dag, t, action)
        .await
        .map_err(Error::refused)?;
    st.view.invalidate().await;
    let holder = lease::holder(st.view.store()).await.map_err(Error::lake)?;
    let message = match &holder {
        Some(h) => format!(
            "{} {}: queued for the running scheduler (`lakepipe {}`, pid {} on {})",
            dag.dag_id,
            rfc3339_secs(t),
            h.command,
            h.pid,
            h.host
        ),
        None => format!(
            "{} {}: queued; no scheduler is running on this lake — `lakepipe up` runs it",
            dag.dag_id,
            rfc3339_secs(t)
        ),
    };
    Ok(json!({ "run": run, "queued": true, "scheduler": holder, "message": message }))
}

/// Pauses or unpauses the DAG `dag` names; returns its control record.
pub(super) async fn set_paused(
    st: &AppState,
    dag: &str,
    paused: bool,
) -> Result<serde_json::Value, Error> {
    let d = find_dag(dag)?;
    let c = control::set_paused(st.view.store(), d, paused, "ui")
        .await
        .map_err(Error::lake)?;
    serde_json::to_value(c).map_err(Error::lake)
}
