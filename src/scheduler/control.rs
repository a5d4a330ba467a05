//! Operator controls shared by the CLI and the web UI, recorded in the lake like the rest of
//! the scheduler's state: pausing a DAG (`_lakepipe/dags/<dag_id>.json`, Airflow's
//! `is_paused`), and manual requests — trigger a run, clear a run's failed tasks — which a
//! running scheduler picks up from its queue.
//!
//! A paused DAG gets no scheduled runs: its fire times pass without a run (as in Airflow with
//! `catchup=False`; `dags backfill` fills them). Manual triggers and clears still run.

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};

use super::dag::Dag;
use super::error::{Error, Refusal, Result};
use super::state::{DagRun, QueuedRun, RunState, RunStore, RunType};
use crate::store::Store;

/// Prefix of the per-DAG control records.
pub const DAGS_PREFIX: &str = "_lakepipe/dags";

/// Whether a DAG is paused, and who said so last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DagControl {
    /// The DAG.
    pub dag_id: String,
    /// Paused DAGs get no scheduled runs.
    pub is_paused: bool,
    /// When it was last changed.
    pub changed_at: DateTime<Utc>,
    /// Who changed it (`cli`, `ui`).
    pub changed_by: String,
}

fn control_key(dag_id: &str) -> String {
    format!("{DAGS_PREFIX}/{dag_id}.json")
}

/// Pauses or unpauses `dag`; returns the record written.
pub async fn set_paused(store: &Store, dag: &Dag, paused: bool, by: &str) -> Result<DagControl> {
    let c = DagControl {
        dag_id: dag.dag_id.clone(),
        is_paused: paused,
        changed_at: crate::clock::wall_now(),
        changed_by: by.to_string(),
    };
    store.put_json(&control_key(&dag.dag_id), &c).await?;
    Ok(c)
}

/// The control records of every DAG that has one (one listing).
pub async fn controls(store: &Store) -> Result<Vec<DagControl>> {
    let metas: Vec<_> = store.list(&format!("{DAGS_PREFIX}/")).try_collect().await?;
    let mut out = Vec::with_capacity(metas.len());
    for m in metas {
        let key = m.location.to_string();
        if let Some(body) = store.get_opt(&key).await? {
            match serde_json::from_slice::<DagControl>(&body) {
                Ok(c) => out.push(c),
                Err(e) => return Err(Error::corrupt("control record", &key, e)),
            }
        }
    }
    Ok(out)
}

/// IDs of the paused DAGs.
pub async fn paused(store: &Store) -> Result<Vec<String>> {
    Ok(controls(store)
        .await?
        .into_iter()
        .filter(|c| c.is_paused)
        .map(|c| c.dag_id)
        .collect())
}

/// A manual request for a DAG run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A new manual run (`dags trigger`).
    Trigger,
    /// Re-run the failed tasks of a finished run and their downstream (`tasks clear`).
    Clear,
}

/// Checks that `request` makes sense for the run recorded at `t` (if any), with the message a
/// user needs when it does not.
pub fn check_request(
    dag: &Dag,
    t: DateTime<Utc>,
    request: Request,
    existing: Option<&DagRun>,
) -> Result<()> {
    let at = crate::clock::rfc3339_secs(t);
    let dag = dag.dag_id.clone();
    let refusal = match (request, existing) {
        (Request::Trigger, Some(run)) if run.state.is_finished() => Refusal::AlreadyRun {
            dag,
            run_type: run.run_type.as_str(),
            at,
            state: run.state.as_str(),
        },
        (Request::Clear, None) => Refusal::NoRun { dag, at },
        (Request::Clear, Some(run)) if run.state != RunState::Failed => Refusal::NotFailed {
            dag,
            at,
            state: run.state.as_str(),
        },
        _ => return Ok(()),
    };
    Err(refusal.into())
}

/// Records `request` for the scheduler that holds the lease: the run record (a new manual run
/// is recorded as queued, as Airflow does) and the queue entry. Returns the run as recorded.
pub async fn enqueue(
    runs: &RunStore,
    dag: &Dag,
    t: DateTime<Utc>,
    request: Request,
) -> Result<DagRun> {
    let existing = runs.get_run(&dag.dag_id, t).await?;
    check_request(dag, t, request, existing.as_ref())?;
    let run = match existing {
        Some(run) => run,
        None => {
            let run = DagRun::new(
                dag,
                t,
                RunType::Manual,
                RunState::Queued,
                crate::clock::wall_now(),
            );
            runs.put_run(&run).await?;
            run
        }
    };
    runs.enqueue(&QueuedRun {
        dag_id: dag.dag_id.clone(),
        logical_date: t,
        clear: request == Request::Clear,
    })
    .await?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::dag as dag_by_id;

    async fn lake() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        (dir, store)
    }

    #[tokio::test]
    async fn pause_and_unpause_are_recorded_per_dag() {
        let (_d, store) = lake().await;
        let dag = dag_by_id("4-serving_layer_merge").unwrap();
        assert!(paused(&store).await.unwrap().is_empty());
        set_paused(&store, dag, true, "cli").await.unwrap();
        assert_eq!(paused(&store).await.unwrap(), vec![dag.dag_id.clone()]);
        let c = set_paused(&store, dag, false, "ui").await.unwrap();
        assert!(paused(&store).await.unwrap().is_empty());
        assert_eq!(controls(&store).await.unwrap(), vec![c]);
    }

    #[tokio::test]
    async fn requests_are_checked_against_the_recorded_run() {
        let (_d, store) = lake().await;
        let runs = RunStore::new(store, true);
        let dag = dag_by_id("4-serving_layer_merge").unwrap();
        let t = crate::clock::parse_utc("2026-02-01T00:10:00Z").unwrap();
        let err = enqueue(&runs, dag, t, Request::Clear).await.unwrap_err();
        assert!(err.to_string().contains("no run"), "{err}");
        let run = enqueue(&runs, dag, t, Request::Trigger).await.unwrap();
        assert_eq!(run.state, RunState::Queued);
        assert_eq!(run.run_type, RunType::Manual);
        let queued = runs.queued().await.unwrap();
        assert_eq!(queued.len(), 1);
        assert!(!queued[0].1.clear);

        let mut done = run.clone();
        done.state = RunState::Success;
        runs.put_run(&done).await.unwrap();
        let err = enqueue(&runs, dag, t, Request::Trigger).await.unwrap_err();
        assert!(err.to_string().contains("already has"), "{err}");
        let err = enqueue(&runs, dag, t, Request::Clear).await.unwrap_err();
        assert!(err.to_string().contains("only failed runs"), "{err}");
        done.state = RunState::Failed;
        runs.put_run(&done).await.unwrap();
        enqueue(&runs, dag, t, Request::Clear).await.unwrap();
        let queued = runs.queued().await.unwrap();
        assert_eq!(queued.len(), 1, "same key: the clear replaces the trigger");
        assert!(queued[0].1.clear);
    }
}
