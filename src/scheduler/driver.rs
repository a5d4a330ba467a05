//! Drives DAG runs through time: `simulate` (every fire time in a range, as fast as possible,
//! on a simulated clock), live mode (the wall clock, with catch-up of missed fire times on
//! start and resumption of runs a killed scheduler left unfinished) and `dags backfill`.
//! Runs with the same fire time execute in DAG-ID group order (`1-` … `5-`), the DAGs of one
//! group concurrently, so a downstream DAG sees everything upstream runs with earlier or equal
//! fire times produced.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use serde::Serialize;
use tokio::sync::watch;

use super::dag::Dag;
use super::error::Result;
use super::runner::{Reprocess, Runner};
use super::state::{DagRun, RunState, RunStore, RunType};

/// Counts of what a drive did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DriveSummary {
    /// Runs executed (or resumed) now.
    pub executed: u64,
    /// Runs that were already finished and left alone.
    pub already_done: u64,
    /// Executed runs by final state.
    pub by_state: BTreeMap<String, u64>,
    /// Executed runs by DAG and final state.
    pub by_dag: BTreeMap<String, BTreeMap<String, u64>>,
    /// First failures (DAG, logical date, failed tasks), at most 20.
    pub failures: Vec<String>,
    /// Real seconds.
    pub elapsed_s: f64,
}

impl DriveSummary {
    fn add(&mut self, run: &DagRun, executed: bool) {
        if !executed {
            self.already_done += 1;
            return;
        }
        self.executed += 1;
        *self.by_state.entry(run.state.as_str().into()).or_default() += 1;
        *self
            .by_dag
            .entry(run.dag_id.clone())
            .or_default()
            .entry(run.state.as_str().into())
            .or_default() += 1;
        if run.state == RunState::Failed && self.failures.len() < 20 {
            self.failures.push(format!(
                "{} {}: {}",
                run.dag_id,
                crate::clock::rfc3339_secs(run.logical_date),
                run.failed_tasks.join(", ")
            ));
        }
    }

    /// Adds what another drive counted (its runs ran beside these).
    fn merge(&mut self, other: DriveSummary) {
        self.executed += other.executed;
        self.already_done += other.already_done;
        for (state, n) in other.by_state {
            *self.by_state.entry(state).or_default() += n;
        }
        for (dag, states) in other.by_dag {
            let mine = self.by_dag.entry(dag).or_default();
            for (state, n) in states {
                *mine.entry(state).or_default() += n;
            }
        }
        let room = 20usize.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
    }

    /// Number of executed runs that failed.
    pub fn failed(&self) -> u64 {
        self.by_state.get("failed").copied().unwrap_or(0)
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let states: Vec<String> = self
            .by_state
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        format!(
            "{} runs executed ({}), {} already done, in {:.1} s",
            self.executed,
            if states.is_empty() {
                "none".into()
            } else {
                states.join(", ")
            },
            self.already_done,
            self.elapsed_s
        )
    }
}

/// The next fire time after each DAG's cursor; `None` when no DAG fires again.
fn next_tick(
    dags: &[&'static Dag],
    cursors: &BTreeMap<String, DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    dags.iter()
        .filter_map(|d| d.schedule.next_after(*cursors.get(&d.dag_id)?))
        .min()
}

/// The scheduled runs of every DAG whose next fire time is `t`, by DAG-ID group in order;
/// moves those DAGs' cursors to `t`. Paused DAGs let their fire times pass without a run (one
/// listing per tick).
async fn due_groups(
    runner: &Runner,
    dags: &[&'static Dag],
    cursors: &mut BTreeMap<String, DateTime<Utc>>,
    t: DateTime<Utc>,
) -> Result<Vec<Vec<&'static Dag>>> {
    let due: Vec<&'static Dag> = dags
        .iter()
        .copied()
        .filter(|d| {
            cursors
                .get(&d.dag_id)
                .and_then(|c| d.schedule.next_after(*c))
                == Some(t)
        })
        .collect();
    let paused = if due.is_empty() {
        Vec::new()
    } else {
        super::control::paused(runner.runs().store()).await?
    };
    let mut groups: BTreeMap<u32, Vec<&'static Dag>> = BTreeMap::new();
    for d in due {
        cursors.insert(d.dag_id.clone(), t);
        if paused.contains(&d.dag_id) {
            tracing::debug!(dag = %d.dag_id, "paused: no run at {}", crate::clock::rfc3339_secs(t));
            continue;
        }
        groups.entry(d.order_group()).or_default().push(d);
    }
    Ok(groups.into_values().collect())
}

/// Runs the `groups` of fire time `t` one after another, the DAGs of a group concurrently.
async fn run_groups(
    runner: &Runner,
    groups: &[Vec<&'static Dag>],
    t: DateTime<Utc>,
    summary: &mut DriveSummary,
) -> Result<()> {
    for group in groups {
        let results = futures::future::join_all(
            group
                .iter()
                .map(|d| runner.run_dag_counted(d, t, RunType::Scheduled, Reprocess::None)),
        )
        .await;
        for r in results {
            let (run, executed) = r?;
            summary.add(&run, executed);
        }
    }
    Ok(())
}

/// Executes the scheduled runs of every DAG whose next fire time is `t`, group by group.
async fn run_tick(
    runner: &Runner,
    dags: &[&'static Dag],
    cursors: &mut BTreeMap<String, DateTime<Utc>>,
    t: DateTime<Utc>,
    summary: &mut DriveSummary,
) -> Result<()> {
    let groups = due_groups(runner, dags, cursors, t).await?;
    run_groups(runner, &groups, t, summary).await
}

/// The last groups of a fire time that `simulate` runs with the next fire time's runs: those
/// made of [`Dag::as_of`] DAGs only, after every other group of theirs.
struct Held {
    t: DateTime<Utc>,
    groups: Vec<Vec<&'static Dag>>,
}

/// Splits the trailing groups of as-of DAGs off `groups`.
fn split_as_of(groups: &mut Vec<Vec<&'static Dag>>) -> Vec<Vec<&'static Dag>> {
    let first_held = groups
        .iter()
        .rposition(|g| !g.iter().all(|d| d.as_of))
        .map_or(0, |i| i + 1);
    groups.split_off(first_held)
}

/// Runs every scheduled run with fire time in (from, to], in time order (`simulate`). The
/// runner's clock must be a [`crate::clock::SimClock`]-like clock that this moves forward.
///
/// A downstream run sees everything that upstream runs with earlier or equal fire times
/// produced, as in live mode. One overlap keeps both cores busy: the as-of runs that end a
/// fire time (the serving DAG, [`Dag::as_of`]) go on while the next fire time's runs go, when
/// those are generator runs only (the speed layer's ingest, at the 5-minute fire times between
/// two serving runs). They read nothing of each other's: the serving run takes the objects
/// landed up to its own logical date, whatever lands meanwhile. A fire time with any other
/// run waits for the held runs first.
pub async fn simulate(
    runner: &Runner,
    sim: &crate::clock::SimClock,
    dags: &[&'static Dag],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    on_run: &mut dyn FnMut(&DriveSummary),
) -> Result<DriveSummary> {
    let began = std::time::Instant::now();
    let mut cursors: BTreeMap<String, DateTime<Utc>> = dags
        .iter()
        .filter(|d| d.schedule.expr().is_some())
        .map(|d| (d.dag_id.clone(), from))
        .collect();
    let mut summary = DriveSummary::default();
    let mut held: Option<Held> = None;
    while let Some(t) = next_tick(dags, &cursors).filter(|t| *t <= to) {
        sim.advance_to(t);
        let mut groups = due_groups(runner, dags, &mut cursors, t).await?;
        let generators_only = groups.iter().flatten().all(|d| d.generator);
        match held.take() {
            Some(h) if generators_only => {
                let mut theirs = DriveSummary::default();
                let (a, b) = futures::join!(
                    run_groups(runner, &h.groups, h.t, &mut theirs),
                    run_groups(runner, &groups, t, &mut summary)
                );
                summary.merge(theirs);
                a?;
                b?;
            }
            before => {
                if let Some(h) = before {
                    run_groups(runner, &h.groups, h.t, &mut summary).await?;
                }
                let tail = split_as_of(&mut groups);
                run_groups(runner, &groups, t, &mut summary).await?;
                if !tail.is_empty() {
                    held = Some(Held { t, groups: tail });
                }
            }
        }
        summary.elapsed_s = began.elapsed().as_secs_f64();
        on_run(&summary);
    }
    if let Some(h) = held.take() {
        run_groups(runner, &h.groups, h.t, &mut summary).await?;
    }
    summary.elapsed_s = began.elapsed().as_secs_f64();
    on_run(&summary);
    Ok(summary)
}

/// How many scheduled runs fall in (from, to] for these DAGs (progress bars).
pub fn count_runs(dags: &[&'static Dag], from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    dags.iter()
        .map(|d| d.schedule.fires_between(from, to).count() as u64)
        .sum()
}

/// Runs one DAG for every logical date in [from, to] (`dags backfill`, inclusive like
/// Airflow's), oldest first; `reprocess` decides what happens to existing runs.
pub async fn backfill(
    runner: &Runner,
    dag: &'static Dag,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    reprocess: Reprocess,
    on_run: &mut dyn FnMut(&DriveSummary),
) -> Result<DriveSummary> {
    let began = std::time::Instant::now();
    let mut summary = DriveSummary::default();
    let start = from - chrono::Duration::milliseconds(1);
    for t in dag.schedule.fires_between(start, to) {
        let (run, executed) = runner
            .run_dag_counted(dag, t, RunType::Backfill, reprocess)
            .await?;
        summary.add(&run, executed);
        summary.elapsed_s = began.elapsed().as_secs_f64();
        on_run(&summary);
    }
    summary.elapsed_s = began.elapsed().as_secs_f64();
    Ok(summary)
}

/// Live scheduling on the runner's (wall) clock until `shutdown` turns true: resumes
/// unfinished runs, catches up (all missed fire times with `catchup`, else the latest one),
/// then fires each DAG on its schedule.
pub async fn live(
    runner: &Runner,
    dags: &[&'static Dag],
    catchup: bool,
    mut shutdown: watch::Receiver<bool>,
    on_run: &mut dyn FnMut(&DriveSummary),
) -> Result<DriveSummary> {
    let began = std::time::Instant::now();
    let clock = runner.clock().clone();
    let now = clock.now();
    let mut summary = DriveSummary::default();
    let mut cursors = BTreeMap::new();
    for d in dags.iter().filter(|d| d.schedule.expr().is_some()) {
        // Scan this DAG's runs: resume unfinished ones, find the latest logical date.
        let mut latest: Option<DateTime<Utc>> = None;
        let mut unfinished = Vec::new();
        let mut runs = runner.runs().runs(Some(&d.dag_id));
        while let Some(run) = runs.try_next().await? {
            if !run.state.is_finished() {
                unfinished.push(run.logical_date);
            }
            if run.run_type == RunType::Scheduled && latest.is_none_or(|l| run.logical_date > l) {
                latest = Some(run.logical_date);
            }
        }
        for t in unfinished {
            tracing::info!(dag = %d.dag_id, logical_date = %crate::clock::rfc3339_secs(t), "resuming a run left unfinished");
            let run = runner
                .run_dag(d, t, RunType::Scheduled, Reprocess::None)
                .await?;
            summary.add(&run, true);
        }
        let newest_due = d.schedule.latest_at_or_before(now);
        let cursor = match (latest, newest_due) {
            (Some(l), _) if catchup => l,
            // Without catch-up (or without history) only the most recent fire time runs.
            (l, Some(n)) => {
                let before_newest = d.schedule.prev_before(n).unwrap_or(n);
                l.map_or(before_newest, |l| l.max(before_newest))
            }
            (Some(l), None) => l,
            (None, None) => now,
        };
        cursors.insert(d.dag_id.clone(), cursor);
    }
    let mut stopping = false;
    while let Some(t) = next_tick(dags, &cursors) {
        // Wait for the fire time, running manual runs queued by `dags trigger` meanwhile.
        loop {
            run_queued(runner, &mut summary).await?;
            let now = clock.now();
            stopping = stopping || *shutdown.borrow();
            if now >= t || stopping {
                break;
            }
            let wake = (now + chrono::Duration::seconds(QUEUE_POLL_S)).min(t);
            tokio::select! {
                _ = clock.sleep_until(wake) => {}
                r = shutdown.changed() => stopping = r.is_err() || *shutdown.borrow(),
            }
        }
        if stopping {
            break;
        }
        run_tick(runner, dags, &mut cursors, t, &mut summary).await?;
        summary.elapsed_s = began.elapsed().as_secs_f64();
        on_run(&summary);
    }
    summary.elapsed_s = began.elapsed().as_secs_f64();
    Ok(summary)
}

/// How often a live scheduler looks for runs queued by `dags trigger`.
const QUEUE_POLL_S: i64 = 2;

/// Executes the manual runs that `dags trigger` queued while this scheduler held the lease.
async fn run_queued(runner: &Runner, summary: &mut DriveSummary) -> Result<()> {
    for (key, q) in runner.runs().queued().await? {
        match runner.dag(&q.dag_id) {
            Some(dag) => {
                let (what, reprocess) = if q.clear {
                    ("clearing the failed tasks of", Reprocess::Failed)
                } else {
                    ("running", Reprocess::None)
                };
                tracing::info!(dag = %q.dag_id, logical_date = %crate::clock::rfc3339_secs(q.logical_date), "{what} a queued run");
                // A run that cannot be executed is recorded failed by the runner; an error here
                // (the run's records cannot be read or written) drops the entry with the reason
                // instead of stopping the scheduler at every restart.
                match runner
                    .run_dag(dag, q.logical_date, RunType::Manual, reprocess)
                    .await
                {
                    Ok(run) => summary.add(&run, true),
                    Err(e) => tracing::error!(
                        dag = %q.dag_id,
                        "dropping a queued run at {}: {}",
                        crate::clock::rfc3339_secs(q.logical_date),
                        crate::error_chain::error_chain(&e)
                    ),
                }
            }
            None => tracing::warn!(dag = %q.dag_id, "dropping a queued run of an unknown DAG"),
        }
        runner.runs().dequeue(&key).await?;
    }
    Ok(())
}

/// Lists runs with optional filters, newest logical date first.
pub async fn list_runs(
    runs: &RunStore,
    dag: Option<&str>,
    state: Option<RunState>,
) -> Result<Vec<DagRun>> {
    let mut runs: Vec<DagRun> = runs
        .runs(dag)
        .try_filter(|r| futures::future::ready(state.is_none_or(|s| r.state == s)))
        .try_collect()
        .await?;
    runs.sort_by(|a, b| {
        b.logical_date
            .cmp(&a.logical_date)
            .then_with(|| a.dag_id.cmp(&b.dag_id))
    });
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, SimClock, parse_utc};
    use crate::config::Config;
    use crate::pipeline::dag as dag_by_id;
    use crate::scheduler::{
        RunParams, RunStore, Schedule, TaskBody, TaskContext, TaskError, TaskPolicy, TaskResult,
    };
    use crate::store::Store;

    async fn runner(dir: &std::path::Path, at: &str) -> (Runner, Arc<SimClock>) {
        let cfg = Config {
            lake: dir.display().to_string(),
            ..Config::default()
        }
        .validate()
        .unwrap();
        let store = Store::open(&cfg).await.unwrap();
        let clock = Arc::new(SimClock::new(parse_utc(at).unwrap()));
        let params = RunParams {
            seed: 1,
            scale: 0.01,
            ..RunParams::default()
        };
        let r = Runner::new(
            RunStore::new(store, true),
            crate::pipeline::dags(),
            clock.clone(),
            params,
            false,
        );
        (r, clock)
    }

    /// When the task bodies of a test drive started and ended: `"<dag> <HH:MM> start|end"`.
    #[derive(Default)]
    struct Events(std::sync::Mutex<Vec<String>>);

    impl Events {
        fn push(&self, dag: &str, t: DateTime<Utc>, what: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{dag} {} {what}", t.format("%H:%M")));
        }

        fn at(&self, event: &str) -> usize {
            let events = self.0.lock().unwrap();
            events
                .iter()
                .position(|e| e == event)
                .unwrap_or_else(|| panic!("no {event:?} in {events:?}"))
        }
    }

    /// Records its start and end. A generator's step announces the latest logical date started
    /// on `started` (never moving it back); the step at `waits_at` ends only once a generator
    /// run of a later date has started (or fails after 30 s, so that a drive without the
    /// overlap fails instead of hanging).
    struct Step {
        events: Arc<Events>,
        started: tokio::sync::watch::Sender<Option<DateTime<Utc>>>,
        announces: bool,
        waits_at: Option<DateTime<Utc>>,
    }

    #[async_trait::async_trait]
    impl TaskBody for Step {
        async fn run(&self, ctx: &TaskContext) -> TaskResult {
            let t = ctx.logical_date;
            self.events.push(&ctx.dag_id, t, "start");
            if self.announces {
                self.started.send_if_modified(|s| {
                    let later = *s < Some(t);
                    if later {
                        *s = Some(t);
                    }
                    later
                });
            }
            if self.waits_at == Some(t) {
                let mut started = self.started.subscribe();
                let next = started.wait_for(|s| s.is_some_and(|s| s > t));
                if tokio::time::timeout(std::time::Duration::from_secs(30), next)
                    .await
                    .is_err()
                {
                    return Err(TaskError::fatal("the next generator run did not start"));
                }
            }
            self.events.push(&ctx.dag_id, t, "end");
            Ok(serde_json::Value::Null)
        }
    }

    /// The serving run of 00:10 goes on while the generator run of 00:15 goes (it waits for
    /// it to start); the run of 00:20 ends before the fire time of 00:25 starts anything, as
    /// that fire time has a run of another DAG; a downstream run starts after the upstream
    /// runs of its fire time end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simulate_lets_an_as_of_run_finish_beside_the_next_generator_runs() {
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(Events::default());
        let (started, _) = tokio::sync::watch::channel(None);
        let at = |s: &str| parse_utc(s).unwrap();
        let step = |announces: bool, waits_at: Option<DateTime<Utc>>| -> Arc<dyn TaskBody> {
            Arc::new(Step {
                events: Arc::clone(&events),
                started: started.clone(),
                announces,
                waits_at,
            })
        };
        let policy = TaskPolicy::new(0, 1, 1, 60);
        let cron = |c: &str| Schedule::cron(c).unwrap();
        let dags: &'static [Dag] = Box::leak(Box::new([
            Dag::new("2-gen", "", cron("*/5 * * * *"), 4)
                .generator()
                .task("land", &[], policy, step(true, None))
                .validated()
                .unwrap(),
            Dag::new("3-other", "", cron("25 * * * *"), 1)
                .task("read", &[], policy, step(false, None))
                .validated()
                .unwrap(),
            Dag::new("4-serve", "", cron("*/10 * * * *"), 1)
                .reading_as_of()
                .task(
                    "merge",
                    &[],
                    policy,
                    step(false, Some(at("2026-02-01T00:10:00Z"))),
                )
                .validated()
                .unwrap(),
        ]));
        let cfg = Config {
            lake: dir.path().display().to_string(),
            ..Config::default()
        }
        .validate()
        .unwrap();
        let store = Store::open(&cfg).await.unwrap();
        let sim = Arc::new(SimClock::new(at("2026-02-01T00:00:00Z")));
        let r = Runner::new(
            RunStore::new(store, true),
            dags,
            sim.clone(),
            RunParams::default(),
            false,
        );
        let all: Vec<&'static Dag> = dags.iter().collect();
        let summary = simulate(
            &r,
            &sim,
            &all,
            at("2026-02-01T00:00:00Z"),
            at("2026-02-01T00:25:00Z"),
            &mut |_| {},
        )
        .await
        .unwrap();
        assert_eq!(summary.by_state.get("success"), Some(&(5 + 1 + 2)));
        assert_eq!(summary.failed(), 0, "{:?}", summary.failures);
        let e = &events;
        // The overlap.
        assert!(e.at("2-gen 00:15 start") < e.at("4-serve 00:10 end"));
        // Upstream first within a fire time.
        assert!(e.at("2-gen 00:10 end") < e.at("4-serve 00:10 start"));
        assert!(e.at("2-gen 00:20 end") < e.at("4-serve 00:20 start"));
        // A fire time with another DAG's run waits for the held run.
        assert!(e.at("4-serve 00:20 end") < e.at("2-gen 00:25 start"));
        assert!(e.at("4-serve 00:20 end") < e.at("3-other 00:25 start"));
        assert!(e.at("2-gen 00:25 end") < e.at("3-other 00:25 start"));
    }

    /// A lake whose api_logs ingest DAG last ran at 00:05.
    async fn seeded() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = runner(dir.path(), "2026-02-01T00:05:00Z").await;
        let dag = dag_by_id("2-api_logs_realtime_ingest").unwrap();
        let t = parse_utc("2026-02-01T00:05:00Z").unwrap();
        r.run_dag(dag, t, RunType::Scheduled, Reprocess::None)
            .await
            .unwrap();
        dir
    }

    /// Runs live mode on the simulated clock until `stop_after` runs were executed.
    async fn live_until(r: &Runner, catchup: bool, stop_after: u64) -> Vec<String> {
        let dag = dag_by_id("2-api_logs_realtime_ingest").unwrap();
        let (tx, rx) = watch::channel(false);
        let mut on_run = |s: &DriveSummary| {
            if s.executed >= stop_after {
                let _ = tx.send(true);
            }
        };
        live(r, &[dag], catchup, rx, &mut on_run).await.unwrap();
        let mut dates: Vec<String> = list_runs(r.runs(), Some(&dag.dag_id), None)
            .await
            .unwrap()
            .iter()
            .map(|run| crate::clock::rfc3339_secs(run.logical_date))
            .collect();
        dates.sort();
        dates
    }

    #[tokio::test]
    async fn live_start_catches_up_every_missed_fire_time_with_catchup() {
        let dir = seeded().await;
        // The scheduler was down from 00:05 to 00:32.
        let (r, clock) = runner(dir.path(), "2026-02-01T00:32:00Z").await;
        let dates = live_until(&r, true, 5).await;
        let expect: Vec<String> = (1..=6)
            .map(|i| format!("2026-02-01T00:{:02}:00Z", i * 5))
            .collect();
        assert_eq!(
            dates, expect,
            "00:05 kept, 00:10 … 00:30 caught up in order"
        );
        assert!(clock.now() >= parse_utc("2026-02-01T00:30:00Z").unwrap());
    }

    #[tokio::test]
    async fn live_start_without_catchup_runs_only_the_latest_fire_time() {
        let dir = seeded().await;
        let (r, _) = runner(dir.path(), "2026-02-01T00:32:00Z").await;
        let dates = live_until(&r, false, 1).await;
        assert_eq!(dates, ["2026-02-01T00:05:00Z", "2026-02-01T00:30:00Z"]);
    }

    /// A queue entry planted with a date the scheduler cannot run (as a request could once
    /// queue): the run is recorded failed with the reason, the entry is gone, the valid entry
    /// beside it runs, and the scheduler goes on instead of aborting at every restart.
    #[tokio::test]
    async fn a_queued_run_that_cannot_be_executed_fails_with_a_reason() {
        use crate::scheduler::state::QueuedRun;
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = runner(dir.path(), "2026-02-01T00:07:00Z").await;
        let dag = dag_by_id("2-api_logs_realtime_ingest").unwrap();
        let far = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
            .unwrap()
            .to_utc();
        let past = chrono::DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let ok = parse_utc("2026-02-01T00:05:00Z").unwrap();
        for t in [far, past, ok] {
            r.runs()
                .enqueue(&QueuedRun {
                    dag_id: dag.dag_id.clone(),
                    logical_date: t,
                    clear: false,
                })
                .await
                .unwrap();
        }
        let mut summary = DriveSummary::default();
        run_queued(&r, &mut summary).await.unwrap();
        assert!(r.runs().queued().await.unwrap().is_empty());
        for t in [far, past] {
            let run = r.runs().get_run(&dag.dag_id, t).await.unwrap().unwrap();
            assert_eq!(run.state, RunState::Failed);
            let note = run.note.unwrap_or_default();
            assert!(note.contains("outside the supported range"), "{note}");
            assert!(run.failed_tasks.is_empty(), "no task ran");
        }
        let run = r.runs().get_run(&dag.dag_id, ok).await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Success);
        assert_eq!(run.note, None);
        assert_eq!(summary.executed, 3);
    }

    /// A run record read back with a data interval no schedule makes (as a bad date once
    /// recorded: the year 5000 to 9999) is refused before any task runs.
    #[tokio::test]
    async fn a_recorded_run_with_an_impossible_interval_is_not_executed() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = runner(dir.path(), "2026-02-01T00:07:00Z").await;
        let dag = dag_by_id("2-api_logs_realtime_ingest").unwrap();
        let t = parse_utc("2026-02-01T00:05:00Z").unwrap();
        let mut run = crate::scheduler::DagRun::new(dag, t, RunType::Manual, RunState::Queued, t);
        run.data_interval_start = parse_utc("1999-02-01T00:00:00Z").unwrap();
        r.runs().put_run(&run).await.unwrap();
        let run = r
            .run_dag(dag, t, RunType::Manual, Reprocess::None)
            .await
            .unwrap();
        assert_eq!(run.state, RunState::Failed);
        assert!(run.note.unwrap().contains("longer than 366 days"));
        let ti = r.runs().get_ti(&dag.dag_id, t, "ingest").await.unwrap();
        assert!(ti.is_none(), "no task instance was created");
    }
}
