//! A request's path and query read as the lake's things, the same way for the API and the
//! pages: a DAG by its ID ([`find_dag`], the web's one lookup), a logical date, a task's
//! attempt and a grid's length. What is not there or does not parse is an [`Error`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Error;
use super::state::AppState;
use crate::clock::{parse_utc, rfc3339_secs};
use crate::pipeline::dag as dag_by_id;
use crate::scheduler::Dag;

/// Runs shown in a grid unless `?limit=` says otherwise.
const GRID_RUNS: usize = 25;

/// The DAG `id` names.
pub(super) fn find_dag(id: &str) -> Result<&'static Dag, Error> {
    dag_by_id(id).ok_or_else(|| Error::NoDag { id: id.to_string() })
}

/// A logical date as a path or query gives it.
pub(super) fn parse_date(s: &str) -> Result<DateTime<Utc>, Error> {
    parse_utc(s).map_err(|reason| Error::BadDate {
        date: s.to_string(),
        reason,
    })
}

/// How many runs a grid shows: `?limit=`, else [`GRID_RUNS`].
pub(super) fn grid_limit(q: &HashMap<String, String>) -> usize {
    q.get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(GRID_RUNS)
}

/// The attempt asked for (`?attempt=N`), else the last one recorded.
pub(super) async fn attempt_of(
    st: &AppState,
    dag: &Dag,
    t: DateTime<Utc>,
    task: &str,
    q: &HashMap<String, String>,
) -> Result<u32, Error> {
    if let Some(a) = q.get("attempt") {
        return a
            .parse()
            .map_err(|_| Error::BadAttempt { value: a.clone() });
    }
    let ti = st
        .view
        .run_store()
        .get_ti(&dag.dag_id, t, task)
        .await
        .map_err(Error::lake)?
        .ok_or_else(|| Error::NoTask {
            dag: dag.dag_id.clone(),
            task: task.to_string(),
            at: rfc3339_secs(t),
        })?;
    Ok(ti.try_number().max(1))
}
