//! Executes one DAG run with Airflow's task semantics: tasks start when their upstreams
//! succeeded (independent tasks run concurrently), a failed upstream marks its downstream
//! `upstream_failed`, a failed attempt is retried after an exponential back-off, and an attempt
//! that exceeds its execution timeout is cancelled and counts as a failure. Every state change
//! is recorded in the lake before the next step, so a killed scheduler resumes where it was.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::stream::{FuturesUnordered, StreamExt as _};

use super::dag::{Dag, TaskSpec};
use super::error::{Error, Result};
use super::openlineage::{self, Attempt as LineageAttempt, EventType};
use super::state::{Attempt, DagRun, RunState, RunStore, RunType, TaskInstance, TaskState};
use super::task::{Datasets, RunParams, TaskContext, TaskError, TaskLog};
use crate::clock::{Clock, rfc3339_secs};

/// What to do with a run that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reprocess {
    /// Finished runs stay as they are; unfinished ones resume.
    None,
    /// Failed tasks (and their downstream) of finished runs run again.
    Failed,
    /// Every task runs again.
    All,
}

/// A spawned task body, cancelled when dropped (on timeout, or with its run).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs DAG runs against a lake.
#[derive(Debug, Clone)]
pub struct Runner {
    runs: RunStore,
    dags: &'static [Dag],
    clock: Arc<dyn Clock>,
    params: RunParams,
    echo_logs: bool,
}

impl Runner {
    /// A runner of `dags` (`crate::pipeline::dags()`) recording into `runs` (use a
    /// non-recording [`RunStore`] for `dags test`).
    pub fn new(
        runs: RunStore,
        dags: &'static [Dag],
        clock: Arc<dyn Clock>,
        params: RunParams,
        echo_logs: bool,
    ) -> Runner {
        Runner {
            runs,
            dags,
            clock,
            params,
            echo_logs,
        }
    }

    /// The DAG with this ID.
    pub fn dag(&self, dag_id: &str) -> Option<&'static Dag> {
        super::dag::find(self.dags, dag_id)
    }

    /// The run store.
    pub fn runs(&self) -> &RunStore {
        &self.runs
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Executes (or resumes) the run of `dag` at `logical_date` and returns its final record.
    /// A finished run is returned untouched unless `reprocess` says otherwise.
    pub async fn run_dag(
        &self,
        dag: &Dag,
        logical_date: DateTime<Utc>,
        run_type: RunType,
        reprocess: Reprocess,
    ) -> Result<DagRun> {
        Ok(self
            .run_dag_counted(dag, logical_date, run_type, reprocess)
            .await?
            .0)
    }

    /// [`Runner::run_dag`], also saying whether the run was executed now (`false`: it was
    /// already finished and left alone).
    pub async fn run_dag_counted(
        &self,
        dag: &Dag,
        logical_date: DateTime<Utc>,
        run_type: RunType,
        reprocess: Reprocess,
    ) -> Result<(DagRun, bool)> {
        if let Err(reason) = crate::clock::check_supported(logical_date) {
            return self.refuse(dag, logical_date, run_type, None, reason).await;
        }
        let existing = self.runs.get_run(&dag.dag_id, logical_date).await?;
        let interval = existing
            .as_ref()
            .map(|r| (r.data_interval_start, r.data_interval_end))
            .unwrap_or_else(|| dag.schedule.data_interval(logical_date));
        if let Err(reason) = super::dag::Schedule::check_interval(interval.0, interval.1) {
            return self
                .refuse(dag, logical_date, run_type, existing, reason)
                .await;
        }
        if let Some(run) = existing.as_ref().filter(|run| {
            run.state.is_finished()
                && (reprocess == Reprocess::None
                    || (reprocess == Reprocess::Failed && run.state == RunState::Success))
        }) {
            return Ok((run.clone(), false));
        }
        let now = self.clock.now();
        let mut run = existing.unwrap_or_else(|| {
            DagRun::with_interval(dag, logical_date, run_type, RunState::Queued, now, interval)
        });
        run.state = RunState::Running;
        run.start_date = Some(now);
        run.end_date = None;
        run.failed_tasks.clear();
        run.note = None;
        self.runs.put_run(&run).await?;

        // Task instances: resume what is recorded, reset what is to be reprocessed.
        let mut tis: BTreeMap<String, TaskInstance> = BTreeMap::new();
        for t in &dag.tasks {
            let max_tries = t.policy.retries + 1;
            let recorded = if reprocess == Reprocess::All {
                None
            } else {
                self.runs
                    .get_ti(&dag.dag_id, logical_date, &t.task_id)
                    .await?
            };
            let mut ti = recorded.unwrap_or_else(|| {
                TaskInstance::new(&dag.dag_id, &t.task_id, logical_date, max_tries)
            });
            let clear = match ti.state {
                TaskState::Success | TaskState::Skipped => false,
                TaskState::Failed | TaskState::UpstreamFailed => reprocess != Reprocess::None,
                // Attempts cut short by a crash: run again (the body is idempotent).
                TaskState::Running | TaskState::Queued | TaskState::UpForRetry => true,
            };
            if clear {
                if ti.state == TaskState::Running
                    && let Some(a) = ti.attempts.last_mut()
                {
                    a.state = TaskState::Failed;
                    a.error = Some("the scheduler stopped during this attempt".into());
                }
                ti.max_tries = ti.try_number() + max_tries;
                ti.state = TaskState::Queued;
            }
            tis.insert(t.task_id.clone(), ti);
        }

        let mut in_flight = FuturesUnordered::new();
        let mut started: std::collections::BTreeSet<String> = tis
            .iter()
            .filter(|(_, ti)| ti.state != TaskState::Queued)
            .map(|(k, _)| k.clone())
            .collect();
        loop {
            // Start every task whose upstreams are final; propagate upstream failures.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for t in &dag.tasks {
                    if started.contains(&t.task_id) {
                        continue;
                    }
                    let ups: Vec<TaskState> = t.upstream.iter().map(|u| tis[u].state).collect();
                    if ups.iter().any(|s| s.is_failure()) {
                        let ti = tis.get_mut(&t.task_id).expect("every task has an instance");
                        ti.state = TaskState::UpstreamFailed;
                        self.runs.put_ti(ti).await?;
                        started.insert(t.task_id.clone());
                        progressed = true;
                    } else if ups.iter().all(|s| s.lets_downstream_run()) {
                        if dag.max_active_tasks.is_some_and(|n| in_flight.len() >= n) {
                            continue; // started when a running task finishes
                        }
                        started.insert(t.task_id.clone());
                        let upstream = t
                            .upstream
                            .iter()
                            .map(|u| (u.clone(), tis[u].output.clone().unwrap_or_default()))
                            .collect();
                        let ti = tis[&t.task_id].clone();
                        in_flight.push(self.run_task(&run, t, ti, upstream));
                    }
                }
            }
            match in_flight.next().await {
                Some(ti) => {
                    let ti = ti?;
                    tis.insert(ti.task_id.clone(), ti);
                }
                None => break,
            }
        }
        drop(in_flight);

        run.settle(
            tis.values().map(|ti| (ti.task_id.as_str(), Some(ti.state))),
            self.clock.now(),
        );
        self.runs.put_run(&run).await?;
        Ok((run, true))
    }

    /// Records the run at `logical_date` as failed without running a task, with `reason` as
    /// its note: a queued or recorded run that cannot be executed (a logical date or data
    /// interval outside what the scheduler supports) fails and the scheduler goes on.
    async fn refuse(
        &self,
        dag: &Dag,
        logical_date: DateTime<Utc>,
        run_type: RunType,
        existing: Option<DagRun>,
        reason: String,
    ) -> Result<(DagRun, bool)> {
        let now = self.clock.now();
        tracing::warn!(dag = %dag.dag_id, "run at {} cannot be executed: {reason}", rfc3339_secs(logical_date));
        // The interval is not computed from the schedule: that search is what an unsupported
        // date breaks.
        let mut run = existing.unwrap_or_else(|| {
            let at = (logical_date, logical_date);
            DagRun::with_interval(dag, logical_date, run_type, RunState::Failed, now, at)
        });
        run.state = RunState::Failed;
        run.end_date = Some(now);
        run.note = Some(format!("not run: {reason}"));
        self.runs.put_run(&run).await?;
        Ok((run, true))
    }

    /// Runs one task of a run with its retries; records every attempt and its log.
    async fn run_task(
        &self,
        run: &DagRun,
        spec: &TaskSpec,
        mut ti: TaskInstance,
        upstream: BTreeMap<String, serde_json::Value>,
    ) -> Result<TaskInstance> {
        loop {
            let retryable = self.attempt(run, spec, &mut ti, upstream.clone()).await?;
            match ti.state {
                TaskState::Success => {
                    self.runs.put_ti(&ti).await?;
                    return Ok(ti);
                }
                _ if retryable && ti.try_number() < ti.max_tries => {
                    let key = format!(
                        "{}:{}:{}",
                        run.dag_id,
                        spec.task_id,
                        rfc3339_secs(run.logical_date)
                    );
                    let delay = spec.policy.backoff(ti.try_number(), &key);
                    ti.state = TaskState::UpForRetry;
                    self.runs.put_ti(&ti).await?;
                    let at = self.clock.now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                    self.clock.sleep_until(at).await;
                }
                _ => {
                    ti.state = TaskState::Failed;
                    self.runs.put_ti(&ti).await?;
                    // As Airflow's task log ends: the reason, where the operator sees it.
                    let error = ti.attempts.last().and_then(|a| a.error.as_deref());
                    tracing::warn!(
                        "{} {} {}: failed after {} tries: {}",
                        run.dag_id,
                        rfc3339_secs(run.logical_date),
                        spec.task_id,
                        ti.try_number(),
                        error.unwrap_or("no error recorded")
                    );
                    return Ok(ti);
                }
            }
        }
    }

    /// One attempt: records it as running, executes the body under the timeout, writes the
    /// log and sets the outcome on `ti`, which the caller records once it has decided what
    /// follows (success, up_for_retry or failed). Returns whether a failure may be retried.
    async fn attempt(
        &self,
        run: &DagRun,
        spec: &TaskSpec,
        ti: &mut TaskInstance,
        upstream: BTreeMap<String, serde_json::Value>,
    ) -> Result<bool> {
        let try_number = ti.try_number() + 1;
        ti.state = TaskState::Running;
        ti.attempts.push(Attempt {
            try_number,
            state: TaskState::Running,
            start_date: self.clock.now(),
            end_date: None,
            duration_s: 0.0,
            error: None,
        });
        self.runs.put_ti(ti).await?;
        let ctx = Arc::new(TaskContext {
            store: self.runs.store().clone(),
            dag_id: run.dag_id.clone(),
            task_id: spec.task_id.clone(),
            logical_date: run.logical_date,
            data_interval: (run.data_interval_start, run.data_interval_end),
            try_number,
            params: self.params.clone(),
            upstream,
            log: TaskLog::new(self.echo_logs),
            datasets: Datasets::new(self.params.lineage.is_enabled()),
        });
        ctx.log.info(format!(
            "{} {} try {try_number}/{}: logical date {}, data interval [{}, {})",
            run.dag_id,
            spec.task_id,
            ti.max_tries,
            rfc3339_secs(run.logical_date),
            rfc3339_secs(run.data_interval_start),
            rfc3339_secs(run.data_interval_end)
        ));
        let lineage = LineageAttempt {
            dag_id: &run.dag_id,
            task_id: &spec.task_id,
            logical_date: run.logical_date,
            data_interval: (run.data_interval_start, run.data_interval_end),
            try_number,
        };
        self.lineage(&lineage, EventType::Start, &ctx, None).await;
        let began = Instant::now();
        let result = self.execute(spec, &ctx).await;
        let duration_s = began.elapsed().as_secs_f64();
        match &result {
            Ok(_) => {
                self.lineage(&lineage, EventType::Complete, &ctx, None)
                    .await
            }
            Err(e) => {
                let message = e.message();
                self.lineage(&lineage, EventType::Fail, &ctx, Some(&message))
                    .await
            }
        }
        let retryable = match &result {
            Ok(_) => true,
            Err(e) => e.is_retryable(),
        };
        let attempt = ti.attempts.last_mut().expect("pushed above");
        attempt.end_date = Some(self.clock.now());
        attempt.duration_s = duration_s;
        match result {
            Ok(output) => {
                ctx.log.info(format!("success in {duration_s:.3} s"));
                attempt.state = TaskState::Success;
                ti.state = TaskState::Success;
                ti.output = Some(output);
            }
            Err(e) => {
                let msg = e.message();
                ctx.log.line(
                    "ERROR",
                    format!("attempt {try_number} failed after {duration_s:.3} s: {msg}"),
                );
                attempt.state = TaskState::Failed;
                attempt.error = Some(msg);
                ti.state = TaskState::Failed;
            }
        }
        self.runs
            .put_log(
                &run.dag_id,
                run.logical_date,
                &spec.task_id,
                try_number,
                ctx.log.text(),
            )
            .await?;
        Ok(retryable)
    }

    /// Sends the OpenLineage event of `kind` for `attempt`, if `[lineage]` says where.
    async fn lineage(
        &self,
        attempt: &LineageAttempt<'_>,
        kind: EventType,
        ctx: &TaskContext,
        error: Option<&str>,
    ) {
        let config = &self.params.lineage;
        if !config.is_enabled() {
            return;
        }
        let event = openlineage::run_event(
            self.runs.store(),
            &config.namespace,
            attempt,
            kind,
            self.clock.now(),
            &ctx.datasets,
            error,
        );
        openlineage::emit(config, &event).await;
    }

    /// Runs the task's body on a task of its own — so that the tasks of a run that execute at
    /// once run on different cores, not in turn on the scheduler's thread — under the task's
    /// execution timeout, which cancels it. A panicking body fails its attempt.
    async fn execute(
        &self,
        spec: &TaskSpec,
        ctx: &Arc<TaskContext>,
    ) -> Result<serde_json::Value, TaskError> {
        let key = format!("{}:{}", ctx.dag_id, spec.task_id);
        if self.params.fail_tasks.iter().any(|f| f == &key) {
            return Err(TaskError::retryable(format!(
                "injected failure (--fail-task {key})"
            )));
        }
        let body = Arc::clone(&spec.body);
        let task_ctx = Arc::clone(ctx);
        let mut running = AbortOnDrop(tokio::spawn(async move { body.run(&task_ctx).await }));
        match tokio::time::timeout(spec.policy.execution_timeout, &mut running.0).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_panic() => {
                let panic = e.into_panic();
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(TaskError::retryable(format!(
                    "the task body panicked: {msg}"
                )))
            }
            Ok(Err(e)) => Err(TaskError::retryable(format!(
                "the task body was cancelled: {e}"
            ))),
            Err(_) => Err(TaskError::retryable(format!(
                "execution timeout: the attempt ran longer than {} s and was cancelled",
                spec.policy.execution_timeout.as_secs_f64()
            ))),
        }
    }

    /// Runs a single task of a run once (`tasks run`, called by an external Airflow): no
    /// retries here — the caller retries. Upstream outputs come from their recorded instances.
    /// Creates the run record if missing and updates its state from all task instances.
    pub async fn run_single_task(
        &self,
        dag: &Dag,
        task_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<TaskInstance> {
        let spec = dag.task_by_id(task_id).ok_or_else(|| Error::NoTask {
            dag: dag.dag_id.clone(),
            task: task_id.to_string(),
        })?;
        crate::clock::check_supported(logical_date).map_err(|reason| Error::BadDate { reason })?;
        let now = self.clock.now();
        let mut run = match self.runs.get_run(&dag.dag_id, logical_date).await? {
            Some(r) => r,
            None => DagRun::new(dag, logical_date, RunType::External, RunState::Running, now),
        };
        let mut upstream = BTreeMap::new();
        for u in &spec.upstream {
            let ti = self.runs.get_ti(&dag.dag_id, logical_date, u).await?;
            match ti {
                Some(ti) if ti.state.lets_downstream_run() => {
                    upstream.insert(u.clone(), ti.output.unwrap_or_default());
                }
                other => {
                    return Err(Error::UpstreamNotDone {
                        dag: dag.dag_id.clone(),
                        upstream: u.clone(),
                        at: rfc3339_secs(logical_date),
                        state: other.map(|t| t.state.as_str()).unwrap_or("none"),
                    });
                }
            }
        }
        run.state = RunState::Running;
        run.end_date = None;
        self.runs.put_run(&run).await?;
        let mut ti = self
            .runs
            .get_ti(&dag.dag_id, logical_date, task_id)
            .await?
            .unwrap_or_else(|| {
                TaskInstance::new(&dag.dag_id, task_id, logical_date, spec.policy.retries + 1)
            });
        ti.max_tries = ti.max_tries.max(ti.try_number() + 1);
        self.attempt(&run, spec, &mut ti, upstream).await?;
        self.runs.put_ti(&ti).await?;
        // The run's state follows its task instances. Another process running a task of the
        // same run (parallel `tasks run`, as Airflow's executors start them) may write the
        // record from reads older than this task's end: after each write the task instances
        // are read again, and the record written again until it says what they say. Every
        // writer checks after its last write, so the record ends consistent.
        let mut wrote = false;
        loop {
            let mut states = Vec::new();
            for t in &dag.tasks {
                let s = if t.task_id == task_id {
                    Some(ti.state)
                } else {
                    self.runs
                        .get_ti(&dag.dag_id, logical_date, &t.task_id)
                        .await?
                        .map(|x| x.state)
                };
                states.push((t.task_id.clone(), s));
            }
            let written = (run.state, run.failed_tasks.clone());
            run.settle(
                states.iter().map(|(t, s)| (t.as_str(), *s)),
                self.clock.now(),
            );
            if wrote && (run.state, &run.failed_tasks) == (written.0, &written.1) {
                break;
            }
            self.runs.put_run(&run).await?;
            wrote = true;
        }
        Ok(ti)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::clock::{SimClock, parse_utc};
    use crate::config::Config;
    use crate::scheduler::dag::{Schedule, TaskPolicy};
    use crate::scheduler::task::{TaskBody, TaskResult};
    use crate::store::Store;

    /// Fails its first `fail_first` attempts, then succeeds; or sleeps past any timeout.
    struct Flaky {
        fail_first: u32,
        calls: AtomicU32,
        hang: bool,
    }

    #[async_trait::async_trait]
    impl TaskBody for Flaky {
        async fn run(&self, ctx: &TaskContext) -> TaskResult {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            if n <= self.fail_first {
                return Err(TaskError::retryable(format!("boom {n}")));
            }
            Ok(
                serde_json::json!({ "calls": n, "upstream": ctx.upstream.keys().collect::<Vec<_>>() }),
            )
        }
    }

    fn flaky(fail_first: u32, hang: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            fail_first,
            calls: AtomicU32::new(0),
            hang,
        })
    }

    fn policy(retries: u32, timeout_ms: u64) -> TaskPolicy {
        TaskPolicy {
            retries,
            retry_delay: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(600),
            execution_timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// The body named `task` in `bodies`.
    fn body<B: TaskBody + 'static>(bodies: &[(&str, Arc<B>)], task: &str) -> Arc<dyn TaskBody> {
        let (_, b) = bodies
            .iter()
            .find(|(t, _)| *t == task)
            .expect("a body per task");
        b.clone()
    }

    /// a >> b >> c, and d independent.
    fn dag<B: TaskBody + 'static>(bodies: &[(&str, Arc<B>)], retries: u32, timeout_ms: u64) -> Dag {
        let p = policy(retries, timeout_ms);
        Dag::new("t-dag", "test", Schedule::cron("*/5 * * * *").unwrap(), 1)
            .task("a", &[], p, body(bodies, "a"))
            .task("b", &["a"], p, body(bodies, "b"))
            .task("c", &["b"], p, body(bodies, "c"))
            .task("d", &[], p, body(bodies, "d"))
            .validated()
            .unwrap()
    }

    async fn runner(dir: &std::path::Path) -> (Runner, Arc<SimClock>) {
        let cfg = Config {
            lake: dir.display().to_string(),
            ..Config::default()
        }
        .validate()
        .unwrap();
        let store = Store::open(&cfg).await.unwrap();
        let clock = Arc::new(SimClock::new(parse_utc("2026-02-01T00:05:00Z").unwrap()));
        let r = Runner::new(
            RunStore::new(store, true),
            &[],
            clock.clone(),
            RunParams::default(),
            false,
        );
        (r, clock)
    }

    fn t0() -> DateTime<Utc> {
        parse_utc("2026-02-01T00:05:00Z").unwrap()
    }

    #[tokio::test]
    async fn retries_with_backoff_until_success_and_passes_outputs_downstream() {
        let dir = tempfile::tempdir().unwrap();
        let a = flaky(2, false);
        let bodies = [
            ("a", a.clone()),
            ("b", flaky(0, false)),
            ("c", flaky(0, false)),
            ("d", flaky(0, false)),
        ];
        let (r, clock) = runner(dir.path()).await;
        let run = r
            .run_dag(
                &dag(&bodies, 3, 5000),
                t0(),
                RunType::Scheduled,
                Reprocess::None,
            )
            .await
            .unwrap();
        assert_eq!(run.state, RunState::Success);
        assert_eq!(a.calls.load(Ordering::SeqCst), 3);
        let ti = r.runs().get_ti("t-dag", t0(), "a").await.unwrap().unwrap();
        assert_eq!(ti.state, TaskState::Success);
        let states: Vec<TaskState> = ti.attempts.iter().map(|x| x.state).collect();
        assert_eq!(
            states,
            [TaskState::Failed, TaskState::Failed, TaskState::Success]
        );
        assert_eq!(ti.attempts[0].error.as_deref(), Some("boom 1"));
        // Back-off 10 s then 20 s (+ jitter) on the simulated clock.
        assert!(clock.now() >= t0() + chrono::Duration::seconds(30));
        let b = r.runs().get_ti("t-dag", t0(), "b").await.unwrap().unwrap();
        assert_eq!(b.output.unwrap()["upstream"], serde_json::json!(["a"]));
        assert_eq!(
            run.data_interval_start,
            parse_utc("2026-02-01T00:00:00Z").unwrap()
        );
        // Finished runs are not repeated.
        let again = r
            .run_dag(
                &dag(&bodies, 3, 5000),
                t0(),
                RunType::Scheduled,
                Reprocess::None,
            )
            .await
            .unwrap();
        assert_eq!(again, run);
        assert_eq!(a.calls.load(Ordering::SeqCst), 3);
    }

    /// Counts the attempts running at once.
    #[derive(Default)]
    struct Gauge {
        running: std::sync::atomic::AtomicUsize,
        peak: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl TaskBody for Gauge {
        async fn run(&self, _ctx: &TaskContext) -> TaskResult {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(serde_json::Value::Null)
        }
    }

    /// Records the thread it ran on; panics if asked.
    #[derive(Default)]
    struct Where {
        thread: std::sync::Mutex<Option<std::thread::ThreadId>>,
        panic: bool,
    }

    #[async_trait::async_trait]
    impl TaskBody for Where {
        async fn run(&self, _ctx: &TaskContext) -> TaskResult {
            *self.thread.lock().unwrap() = Some(std::thread::current().id());
            if self.panic {
                panic!("index out of bounds");
            }
            Ok(serde_json::Value::Null)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_run_on_the_runtime_s_workers_and_a_panic_fails_only_its_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let calm = Arc::new(Where::default());
        let panicky = Arc::new(Where {
            panic: true,
            ..Where::default()
        });
        let dag = Dag::new("t-dag", "test", Schedule::cron("*/5 * * * *").unwrap(), 1)
            .task("calm", &[], policy(0, 5000), calm.clone())
            .task("panicky", &[], policy(0, 5000), panicky)
            .validated()
            .unwrap();
        let (r, _) = runner(dir.path()).await;
        let run = r
            .run_dag(&dag, t0(), RunType::Scheduled, Reprocess::None)
            .await
            .unwrap();
        // The scheduler's loop runs on this thread; a body on it would keep the other tasks
        // of the run waiting.
        let body_thread = calm.thread.lock().unwrap().unwrap();
        assert_ne!(body_thread, std::thread::current().id());
        assert_eq!(run.state, RunState::Failed);
        assert_eq!(run.failed_tasks, ["panicky"]);
        let ti = r
            .runs()
            .get_ti("t-dag", t0(), "panicky")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ti.attempts[0].error.as_deref(),
            Some("the task body panicked: index out of bounds")
        );
        let calm_ti = r
            .runs()
            .get_ti("t-dag", t0(), "calm")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(calm_ti.state, TaskState::Success);
    }

    /// Ends together with the other bodies of its barrier.
    struct Together(tokio::sync::Barrier);

    #[async_trait::async_trait]
    impl TaskBody for Together {
        async fn run(&self, _ctx: &TaskContext) -> TaskResult {
            self.0.wait().await;
            Ok(serde_json::Value::Null)
        }
    }

    /// Two `tasks run` of one run that end together (two runners, as two processes) leave the
    /// run record in the state of its task instances, however their reads and writes of the
    /// record interleave.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_of_one_run_ending_together_leave_the_run_record_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let (r1, _) = runner(dir.path()).await;
        let (r2, _) = runner(dir.path()).await;
        for i in 0..40 {
            let body = Arc::new(Together(tokio::sync::Barrier::new(2)));
            let dag = Dag::new("t-dag", "test", Schedule::cron("*/5 * * * *").unwrap(), 1)
                .task("x", &[], policy(0, 5000), body.clone())
                .task("y", &[], policy(0, 5000), body)
                .validated()
                .unwrap();
            let t = t0() + chrono::Duration::minutes(5 * i);
            let (x, y) = tokio::join!(
                r1.run_single_task(&dag, "x", t),
                r2.run_single_task(&dag, "y", t)
            );
            assert_eq!(x.unwrap().state, TaskState::Success);
            assert_eq!(y.unwrap().state, TaskState::Success);
            let run = r1.runs().get_run("t-dag", t).await.unwrap().unwrap();
            assert_eq!(run.state, RunState::Success, "run {i}");
        }
    }

    #[tokio::test]
    async fn max_active_tasks_bounds_the_tasks_running_at_once() {
        for (limit, peak) in [(None, 4), (Some(2), 2), (Some(1), 1)] {
            let dir = tempfile::tempdir().unwrap();
            let gauge = Arc::new(Gauge::default());
            let mut dag = Dag::new("t-dag", "test", Schedule::cron("*/5 * * * *").unwrap(), 1);
            for t in ["a", "b", "c", "d"] {
                dag = dag.task(t, &[], policy(0, 5000), gauge.clone());
            }
            dag = dag.task("e", &["a", "b", "c", "d"], policy(0, 5000), gauge.clone());
            if let Some(n) = limit {
                dag = dag.max_active_tasks(n);
            }
            let (r, _) = runner(dir.path()).await;
            let run = r
                .run_dag(
                    &dag.validated().unwrap(),
                    t0(),
                    RunType::Scheduled,
                    Reprocess::None,
                )
                .await
                .unwrap();
            assert_eq!(run.state, RunState::Success, "{limit:?}");
            assert_eq!(gauge.peak.load(Ordering::SeqCst), peak, "{limit:?}");
        }
    }

    #[tokio::test]
    async fn a_failure_marks_downstream_upstream_failed_and_independent_tasks_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, d) = (flaky(99, false), flaky(0, false), flaky(0, false));
        let bodies = [
            ("a", a.clone()),
            ("b", b.clone()),
            ("c", flaky(0, false)),
            ("d", d.clone()),
        ];
        let (r, _) = runner(dir.path()).await;
        let run = r
            .run_dag(
                &dag(&bodies, 1, 5000),
                t0(),
                RunType::Scheduled,
                Reprocess::None,
            )
            .await
            .unwrap();
        assert_eq!(run.state, RunState::Failed);
        assert_eq!(run.failed_tasks, ["a", "b", "c"]);
        assert_eq!(a.calls.load(Ordering::SeqCst), 2, "one retry");
        assert_eq!(b.calls.load(Ordering::SeqCst), 0);
        assert_eq!(d.calls.load(Ordering::SeqCst), 1);
        for (task, state) in [
            ("a", TaskState::Failed),
            ("b", TaskState::UpstreamFailed),
            ("c", TaskState::UpstreamFailed),
            ("d", TaskState::Success),
        ] {
            assert_eq!(
                r.runs()
                    .get_ti("t-dag", t0(), task)
                    .await
                    .unwrap()
                    .unwrap()
                    .state,
                state,
                "{task}"
            );
        }
        // Reprocess failed: only a, b, c run again; d keeps its success.
        let a2 = flaky(0, false);
        let bodies = [
            ("a", a2.clone()),
            ("b", b.clone()),
            ("c", flaky(0, false)),
            ("d", d.clone()),
        ];
        let (r, _) = runner(dir.path()).await;
        let run = r
            .run_dag(
                &dag(&bodies, 1, 5000),
                t0(),
                RunType::Scheduled,
                Reprocess::Failed,
            )
            .await
            .unwrap();
        assert_eq!(run.state, RunState::Success);
        assert_eq!(d.calls.load(Ordering::SeqCst), 1);
        let ti = r.runs().get_ti("t-dag", t0(), "a").await.unwrap().unwrap();
        assert_eq!(ti.try_number(), 3, "try numbers continue after a clear");
    }

    #[tokio::test]
    async fn execution_timeout_cancels_the_attempt_and_counts_as_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let hang = flaky(0, true);
        let bodies = [
            ("a", hang.clone()),
            ("b", flaky(0, false)),
            ("c", flaky(0, false)),
            ("d", flaky(0, false)),
        ];
        let (r, _) = runner(dir.path()).await;
        let run = r
            .run_dag(
                &dag(&bodies, 1, 50),
                t0(),
                RunType::Scheduled,
                Reprocess::None,
            )
            .await
            .unwrap();
        assert_eq!(run.state, RunState::Failed);
        let ti = r.runs().get_ti("t-dag", t0(), "a").await.unwrap().unwrap();
        assert_eq!(ti.attempts.len(), 2, "a timed-out attempt is retried");
        assert!(
            ti.attempts[0]
                .error
                .as_deref()
                .unwrap()
                .contains("execution timeout")
        );
        let log = r
            .runs()
            .get_log("t-dag", t0(), "a", 2)
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&log).contains("execution timeout"));
    }

    /// Fails with an error that another attempt would repeat.
    struct Refuses(AtomicU32);

    #[async_trait::async_trait]
    impl TaskBody for Refuses {
        async fn run(&self, _ctx: &TaskContext) -> TaskResult {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(TaskError::fatal("conflicting data"))
        }
    }

    #[tokio::test]
    async fn fatal_errors_fail_at_once_and_interrupted_runs_resume() {
        let dir = tempfile::tempdir().unwrap();
        // An error that is not retryable fails the task at its first attempt, whatever its
        // retries.
        let refuses = Arc::new(Refuses(AtomicU32::new(0)));
        let d = Dag::new("t-dag", "test", Schedule::cron("*/5 * * * *").unwrap(), 1)
            .task("a", &[], policy(3, 5000), refuses.clone())
            .validated()
            .unwrap();
        let (r, _) = runner(dir.path()).await;
        let run = r
            .run_dag(&d, t0(), RunType::Scheduled, Reprocess::None)
            .await
            .unwrap();
        assert_eq!(run.state, RunState::Failed);
        assert_eq!(refuses.0.load(Ordering::SeqCst), 1);
        let ti = r.runs().get_ti("t-dag", t0(), "a").await.unwrap().unwrap();
        assert_eq!(ti.attempts.len(), 1);
        assert_eq!(ti.attempts[0].error.as_deref(), Some("conflicting data"));

        // A run a killed scheduler left running: its finished tasks stay, the rest re-run.
        let t1 = parse_utc("2026-02-01T00:10:00Z").unwrap();
        let bodies = [
            ("a", flaky(0, false)),
            ("b", flaky(0, false)),
            ("c", flaky(0, false)),
            ("d", flaky(0, false)),
        ];
        let (r, _) = runner(dir.path()).await;
        let d = dag(&bodies, 3, 5000);
        let mut run = r
            .run_dag(&d, t1, RunType::Scheduled, Reprocess::None)
            .await
            .unwrap();
        run.state = RunState::Running;
        r.runs().put_run(&run).await.unwrap();
        let mut b = r.runs().get_ti("t-dag", t1, "b").await.unwrap().unwrap();
        b.state = TaskState::Running;
        r.runs().put_ti(&b).await.unwrap();
        let a = flaky(0, false);
        let b_body = flaky(0, false);
        let bodies = [
            ("a", a.clone()),
            ("b", b_body.clone()),
            ("c", flaky(0, false)),
            ("d", flaky(0, false)),
        ];
        let (r, _) = runner(dir.path()).await;
        let resumed = r
            .run_dag(
                &dag(&bodies, 3, 5000),
                t1,
                RunType::Scheduled,
                Reprocess::None,
            )
            .await
            .unwrap();
        assert_eq!(resumed.state, RunState::Success);
        assert_eq!(a.calls.load(Ordering::SeqCst), 0, "a had succeeded");
        assert_eq!(b_body.calls.load(Ordering::SeqCst), 1, "b was interrupted");
        let b = r.runs().get_ti("t-dag", t1, "b").await.unwrap().unwrap();
        assert_eq!(b.attempts.len(), 2);
        assert_eq!(
            b.attempts[0].error.as_deref(),
            Some("the scheduler stopped during this attempt")
        );
    }
}
