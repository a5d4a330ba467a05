//! The scheduler as one handle: what the CLI (and `lakepipe up`) asks of it — live
//! scheduling, `simulate`, `dags backfill|test|trigger|pause`, `tasks run|clear`, `runs list`,
//! `logs` — as calls that take the lease, build the runner on the right clock and drive it.
//! The caller parses, builds a [`Scheduler`] over an open lake, calls, and prints.
//!
//! What needs no lake is checked first, by a plan: [`SimulatePlan`] and [`BackfillPlan`] pick
//! the DAGs and count the runs (for a progress bar) before the lake is opened.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::control::{self, DagControl, Request};
use super::dag::Dag;
use super::driver::{self, DriveSummary};
use super::error::{Error, Result};
use super::lease::{Lease, LeaseError, LeaseInfo};
use super::runner::{Reprocess, Runner};
use super::state::{DagRun, RunState, RunStore, RunType, TaskInstance};
use super::task::RunParams;
use crate::clock::{Clock, SimClock, SystemClock, rfc3339_secs};
use crate::store::Store;

/// Lease time-to-live when none is set (the configuration's default).
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// The scheduler of one lake: its DAGs, the run parameters, and the lease settings.
#[derive(Debug, Clone)]
pub struct Scheduler {
    store: Store,
    dags: &'static [Dag],
    params: RunParams,
    lease_ttl: Duration,
}

/// How live scheduling runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveOptions {
    /// Run every fire time missed while no scheduler ran (else only the latest one).
    pub catchup: bool,
    /// Schedule the DAGs that generate synthetic events ([`Dag::generator`]); `serve` does not.
    pub generators: bool,
}

/// The DAGs and the range of a `simulate`, checked before the lake is opened.
#[derive(Debug, Clone)]
pub struct SimulatePlan {
    dags: Vec<&'static Dag>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl SimulatePlan {
    /// Every scheduled run of `only` (every scheduled DAG of `dags` if empty) with fire time
    /// in (from, to]; an unknown ID is [`Error::NoDag`].
    pub fn new(
        dags: &'static [Dag],
        only: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<SimulatePlan> {
        let dags = if only.is_empty() {
            dags.iter()
                .filter(|d| d.schedule.expr().is_some())
                .collect()
        } else {
            only.iter()
                .map(|id| super::dag::lookup(dags, id))
                .collect::<Result<_>>()?
        };
        Ok(SimulatePlan { dags, from, to })
    }

    /// How many runs it executes (at most: finished ones are left alone).
    pub fn runs(&self) -> u64 {
        driver::count_runs(&self.dags, self.from, self.to)
    }
}

/// The runs of a `dags backfill`, checked before the lake is opened.
#[derive(Debug, Clone, Copy)]
pub struct BackfillPlan {
    dag: &'static Dag,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    reprocess: Reprocess,
}

impl BackfillPlan {
    /// Every logical date of `dag` in [from, to]; a DAG without a schedule is
    /// [`Error::NotScheduled`].
    pub fn new(
        dag: &'static Dag,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        reprocess: Reprocess,
    ) -> Result<BackfillPlan> {
        if dag.schedule.expr().is_none() {
            return Err(Error::NotScheduled {
                dag: dag.dag_id.clone(),
            });
        }
        Ok(BackfillPlan {
            dag,
            from,
            to,
            reprocess,
        })
    }

    /// How many runs it covers.
    pub fn runs(&self) -> u64 {
        self.dag
            .schedule
            .fires_between(self.from - chrono::Duration::milliseconds(1), self.to)
            .count() as u64
    }
}

/// What became of a manual trigger or clear.
#[derive(Debug, Clone)]
pub enum RequestOutcome {
    /// No scheduler was running: it ran now, under the lease; the run's final record.
    Ran(DagRun),
    /// A scheduler holds the lease: recorded and queued for it (as Airflow's CLI does).
    Queued {
        /// The run as recorded.
        run: DagRun,
        /// The scheduler that will run it.
        holder: Box<LeaseInfo>,
    },
}

impl Scheduler {
    /// The scheduler of `dags` (`crate::pipeline::dags()`) over the lake `store`.
    pub fn new(store: Store, dags: &'static [Dag], params: RunParams) -> Scheduler {
        Scheduler {
            store,
            dags,
            params,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }

    /// Sets the lease's time-to-live (`scheduler.lease_ttl_s`).
    pub fn lease_ttl(mut self, ttl: Duration) -> Scheduler {
        self.lease_ttl = ttl;
        self
    }

    /// The lake.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The DAGs it schedules.
    pub fn dags(&self) -> &'static [Dag] {
        self.dags
    }

    /// The DAG with this ID, or [`Error::NoDag`] naming them all.
    pub fn dag(&self, dag_id: &str) -> Result<&'static Dag> {
        super::dag::lookup(self.dags, dag_id)
    }

    fn runner(&self, clock: Arc<dyn Clock>, record: bool, echo: bool) -> Runner {
        Runner::new(
            RunStore::new(self.store.clone(), record),
            self.dags,
            clock,
            self.params.clone(),
            echo,
        )
    }

    /// Takes the scheduler lease of the lake for `command`, or fails with who holds it
    /// ([`LeaseError::Held`]).
    pub async fn lease(&self, command: &str) -> Result<Lease> {
        let lease = Lease::acquire(&self.store, command, self.lease_ttl).await?;
        if self.store.create_mode().await? == crate::store::CreateMode::CheckThenPut {
            tracing::warn!(
                "this store ignores create-only writes: the lease cannot stop a scheduler started at the same instant; run one scheduler per lake"
            );
        }
        Ok(lease)
    }

    /// Live scheduling on the wall clock until `shutdown` turns true (`lakepipe up`), under
    /// `lease`, which the caller holds: `up` takes it before starting anything and keeps it
    /// until the landing streamers have stopped too. Logs each tick and each failed run.
    pub async fn live(
        &self,
        _lease: &Lease,
        opts: LiveOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Result<DriveSummary> {
        let r = self.runner(Arc::new(SystemClock), true, false);
        let dags: Vec<&'static Dag> = self
            .dags
            .iter()
            .filter(|d| opts.generators || !d.generator)
            .collect();
        let mut reported = 0;
        let mut on_run = |s: &DriveSummary| {
            tracing::info!("scheduler: {}", s.line());
            for f in s.failures.iter().skip(reported) {
                tracing::warn!("run failed: {f} (`lakepipe logs` shows why)");
            }
            reported = s.failures.len();
        };
        driver::live(&r, &dags, opts.catchup, shutdown, &mut on_run).await
    }

    /// Runs `plan` on a simulated clock under the lease (`simulate`); `on_run` sees the
    /// summary and the simulated time after each fire time. Stops if the lease is lost.
    pub async fn simulate(
        &self,
        plan: &SimulatePlan,
        mut on_run: impl FnMut(&DriveSummary, DateTime<Utc>),
    ) -> Result<DriveSummary> {
        let lease = self.lease("simulate").await?;
        let sim = Arc::new(SimClock::new(plan.from));
        let r = self.runner(sim.clone(), true, false);
        let mut lost = lease.lost();
        let mut on_run = |s: &DriveSummary| on_run(s, sim.now());
        let result = tokio::select! {
            r = driver::simulate(&r, &sim, &plan.dags, plan.from, plan.to, &mut on_run) => r,
            Ok(_) = lost.wait_for(|l| *l) => Err(Error::LeaseLost),
        };
        lease.release().await;
        result
    }

    /// Runs `plan` on the wall clock under the lease (`dags backfill`); `on_run` sees the
    /// summary after each run.
    pub async fn backfill(
        &self,
        plan: &BackfillPlan,
        mut on_run: impl FnMut(&DriveSummary),
    ) -> Result<DriveSummary> {
        let r = self.runner(Arc::new(SystemClock), true, false);
        let lease = self.lease("dags backfill").await?;
        let res = driver::backfill(
            &r,
            plan.dag,
            plan.from,
            plan.to,
            plan.reprocess,
            &mut on_run,
        )
        .await;
        lease.release().await;
        res
    }

    /// Runs `dag` in-process for one logical date, its task logs on stderr, recording nothing
    /// (`dags test`); no lease.
    pub async fn test(&self, dag: &Dag, logical_date: DateTime<Utc>) -> Result<DagRun> {
        self.runner(Arc::new(SystemClock), false, true)
            .run_dag(dag, logical_date, RunType::Manual, Reprocess::All)
            .await
    }

    /// Runs one task once for a logical date and records the attempt, its log on stderr
    /// (`tasks run`, called by an external Airflow, which retries); no lease.
    pub async fn run_task(
        &self,
        dag: &Dag,
        task_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<TaskInstance> {
        self.runner(Arc::new(SystemClock), true, true)
            .run_single_task(dag, task_id, logical_date)
            .await
    }

    /// A manual trigger or clear (`dags trigger`, `tasks clear`): checked against the recorded
    /// run, then executed now under the lease, or — when a scheduler holds the lease —
    /// recorded and queued for it.
    pub async fn request(
        &self,
        dag: &'static Dag,
        t: DateTime<Utc>,
        request: Request,
    ) -> Result<RequestOutcome> {
        let runs = RunStore::new(self.store.clone(), true);
        let existing = runs.get_run(&dag.dag_id, t).await?;
        control::check_request(dag, t, request, existing.as_ref())?;
        let command = match request {
            Request::Trigger => "dags trigger",
            Request::Clear => "tasks clear",
        };
        let lease = match self.lease(command).await {
            Ok(lease) => lease,
            Err(Error::Lease(LeaseError::Held(holder))) => {
                let run = control::enqueue(&runs, dag, t, request).await?;
                return Ok(RequestOutcome::Queued { run, holder });
            }
            Err(e) => return Err(e),
        };
        let reprocess = match request {
            Request::Trigger => Reprocess::None,
            Request::Clear => Reprocess::Failed,
        };
        let res = self
            .runner(Arc::new(SystemClock), true, false)
            .run_dag(dag, t, RunType::Manual, reprocess)
            .await;
        lease.release().await;
        res.map(RequestOutcome::Ran)
    }

    /// Pauses or unpauses `dag` (`dags pause|unpause`, by `cli` or `ui`); the record written.
    pub async fn set_paused(&self, dag: &Dag, paused: bool, by: &str) -> Result<DagControl> {
        control::set_paused(&self.store, dag, paused, by).await
    }

    /// Runs of one DAG (or all), optionally in one state, newest first (`runs list`).
    pub async fn list_runs(
        &self,
        dag: Option<&str>,
        state: Option<RunState>,
    ) -> Result<Vec<DagRun>> {
        driver::list_runs(&RunStore::new(self.store.clone(), true), dag, state).await
    }

    /// The log of one attempt of a task (the latest recorded one if `attempt` is `None`).
    pub async fn log(
        &self,
        dag: &Dag,
        task_id: &str,
        logical_date: DateTime<Utc>,
        attempt: Option<u32>,
    ) -> Result<Bytes> {
        let runs = RunStore::new(self.store.clone(), true);
        let at = || rfc3339_secs(logical_date);
        let attempt = match attempt {
            Some(a) => a,
            None => runs
                .get_ti(&dag.dag_id, logical_date, task_id)
                .await?
                .map(|ti| ti.try_number())
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::NoAttempt {
                    dag: dag.dag_id.clone(),
                    task: task_id.to_string(),
                    at: at(),
                })?,
        };
        runs.get_log(&dag.dag_id, logical_date, task_id, attempt)
            .await?
            .ok_or_else(|| Error::NoLog {
                dag: dag.dag_id.clone(),
                task: task_id.to_string(),
                at: at(),
                attempt,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    async fn lake() -> (tempfile::TempDir, Scheduler) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let sched = Scheduler::new(store, crate::pipeline::dags(), RunParams::default());
        (dir, sched)
    }

    #[test]
    fn plans_check_their_dags_before_the_lake_is_opened() {
        let dags = crate::pipeline::dags();
        let (from, to) = (
            parse_utc("2026-02-01T00:00:00Z").unwrap(),
            parse_utc("2026-02-01T01:00:00Z").unwrap(),
        );
        let e = SimulatePlan::new(dags, &["nope".into()], from, to).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no DAG `nope`; DAGs: 1-infra_s3_bootstrap, "),
            "{e}"
        );
        let one = SimulatePlan::new(dags, &["5-lake_catalog_refresh".into()], from, to).unwrap();
        assert_eq!(one.runs(), 1, "hourly: 01:00 only, the range is (from, to]");
        let all = SimulatePlan::new(dags, &[], from, to).unwrap();
        assert!(all.dags.iter().all(|d| d.schedule.expr().is_some()));

        let manual = crate::scheduler::dag::lookup(dags, "1-infra_s3_bootstrap").unwrap();
        let e = BackfillPlan::new(manual, from, to, Reprocess::None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "1-infra_s3_bootstrap has no schedule; use `lakepipe dags trigger`"
        );
        let hourly = crate::scheduler::dag::lookup(dags, "5-lake_catalog_refresh").unwrap();
        let plan = BackfillPlan::new(hourly, from, to, Reprocess::None).unwrap();
        assert_eq!(plan.runs(), 2, "00:00 and 01:00: the range is [from, to]");
    }

    #[tokio::test]
    async fn a_request_is_queued_for_the_scheduler_holding_the_lease() {
        let (_dir, sched) = lake().await;
        let dag = sched.dag("4-serving_layer_merge").unwrap();
        let t = parse_utc("2026-02-01T00:10:00Z").unwrap();
        let lease = sched.lease("up").await.unwrap();
        let e = sched.lease("simulate").await.unwrap_err();
        assert!(matches!(e, Error::Lease(LeaseError::Held(_))), "{e}");
        match sched.request(dag, t, Request::Trigger).await.unwrap() {
            RequestOutcome::Queued { run, holder } => {
                assert_eq!(holder.command, "up");
                assert_eq!(run.state, RunState::Queued);
            }
            other => panic!("{other:?}"),
        }
        let e = sched.request(dag, t, Request::Clear).await.unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        assert!(e.to_string().contains("only failed runs"), "{e}");
        lease.release().await;
    }

    #[tokio::test]
    async fn a_log_that_is_not_there_says_which() {
        let (_dir, sched) = lake().await;
        let dag = sched.dag("4-serving_layer_merge").unwrap();
        let t = parse_utc("2026-02-01T00:10:00Z").unwrap();
        let task = &dag.tasks[0].task_id;
        let e = sched.log(dag, task, t, None).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("no recorded attempt of 4-serving_layer_merge {task} at 2026-02-01T00:10:00Z")
        );
        let e = sched.log(dag, task, t, Some(2)).await.unwrap_err();
        assert!(e.to_string().ends_with("attempt 2"), "{e}");
    }
}
