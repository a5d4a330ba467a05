//! DAGs as data: cron schedules (parsed by croner), task graphs with each task's body, and
//! per-task retry, back-off and timeout settings. The scheduler knows no DAG of its own: each
//! layer declares its DAGs with their bodies attached, and `crate::pipeline` hands the table
//! to the scheduler.

use std::collections::BTreeSet;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

use super::task::TaskBody;

/// When a DAG runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Only when triggered (`dags trigger`).
    Manual,
    /// A five-field cron expression, evaluated in UTC.
    Cron {
        /// The expression as written.
        expr: String,
        /// The parsed pattern.
        cron: Box<Cron>,
    },
}

impl Schedule {
    /// Parses a cron expression (five fields, UTC).
    pub fn cron(expr: &str) -> Result<Schedule, String> {
        let cron = Cron::from_str(expr).map_err(|e| format!("bad cron `{expr}`: {e}"))?;
        Ok(Schedule::Cron {
            expr: expr.to_string(),
            cron: Box::new(cron),
        })
    }

    /// The expression, or `None` for manual DAGs.
    pub fn expr(&self) -> Option<&str> {
        match self {
            Schedule::Manual => None,
            Schedule::Cron { expr, .. } => Some(expr),
        }
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::Cron { cron, .. } => cron.find_next_occurrence(&t, false).ok(),
        }
    }

    /// The last fire time strictly before `t`.
    pub fn prev_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::Cron { cron, .. } => cron.find_previous_occurrence(&t, false).ok(),
        }
    }

    /// The last fire time at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::Cron { cron, .. } => cron.find_previous_occurrence(&t, true).ok(),
        }
    }

    /// Is `t` a fire time of this schedule?
    pub fn fires_at(&self, t: DateTime<Utc>) -> bool {
        match self {
            Schedule::Manual => false,
            Schedule::Cron { cron, .. } => cron.is_time_matching(&t).unwrap_or(false),
        }
    }

    /// The data interval of the run with logical date `t`: [previous fire time, t). For a
    /// manual DAG, or a logical date that is not a fire time, the interval is the one that
    /// ends at `t` as if the schedule had fired there.
    pub fn data_interval(&self, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        match self.prev_before(t) {
            Some(start) => (start, t),
            None => (t, t),
        }
    }

    /// Why a run with this data interval cannot be executed, if it cannot: a bound outside the
    /// supported range ([`crate::clock::check_supported`]), an end before the start, or an
    /// interval longer than [`MAX_DATA_INTERVAL_DAYS`].
    pub fn check_interval(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), String> {
        crate::clock::check_supported(start).map_err(|e| format!("data interval start {e}"))?;
        crate::clock::check_supported(end).map_err(|e| format!("data interval end {e}"))?;
        if end < start {
            return Err("the data interval ends before it starts".into());
        }
        if end - start > chrono::Duration::days(MAX_DATA_INTERVAL_DAYS) {
            return Err(format!(
                "the data interval is longer than {MAX_DATA_INTERVAL_DAYS} days"
            ));
        }
        Ok(())
    }

    /// Fire times in (from, to], in order, computed lazily.
    pub fn fires_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut cursor = from;
        std::iter::from_fn(move || {
            let next = self.next_after(cursor)?;
            (next <= to).then(|| {
                cursor = next;
                next
            })
        })
    }
}

/// The longest data interval a run may have: a yearly schedule's.
pub const MAX_DATA_INTERVAL_DAYS: i64 = 366;

/// Retry, back-off and timeout settings of a task (Airflow's `default_args`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay before the first retry; doubles with each further retry.
    pub retry_delay: Duration,
    /// Upper bound of the back-off.
    pub max_retry_delay: Duration,
    /// An attempt running longer than this is killed and counts as a failure.
    pub execution_timeout: Duration,
}

impl TaskPolicy {
    /// `retries` retries after `delay_s` seconds, doubling up to `max_delay_s`; each attempt
    /// killed after `timeout_s`.
    pub const fn new(retries: u32, delay_s: u64, max_delay_s: u64, timeout_s: u64) -> TaskPolicy {
        TaskPolicy {
            retries,
            retry_delay: Duration::from_secs(delay_s),
            max_retry_delay: Duration::from_secs(max_delay_s),
            execution_timeout: Duration::from_secs(timeout_s),
        }
    }

    /// Delay before retry number `retry` (1-based), exponential with a deterministic jitter of
    /// up to +25 % derived from `jitter_key` (like Airflow's hash-based jitter), capped.
    pub fn backoff(&self, retry: u32, jitter_key: &str) -> Duration {
        let base = self.retry_delay.as_secs_f64() * 2f64.powi(retry.saturating_sub(1) as i32);
        let h = crate::sources::stable_hash(&[jitter_key.as_bytes(), &retry.to_le_bytes()]);
        let jitter = 1.0 + (h % 1000) as f64 / 4000.0;
        let secs = (base * jitter).min(self.max_retry_delay.as_secs_f64());
        Duration::from_secs_f64(secs)
    }
}

/// One task of a DAG, with the body that runs it.
#[derive(Clone)]
pub struct TaskSpec {
    /// Task ID, unique within its DAG.
    pub task_id: String,
    /// Tasks that must succeed first.
    pub upstream: Vec<String>,
    /// Retries, back-off and timeout.
    pub policy: TaskPolicy,
    /// What the task does.
    pub body: Arc<dyn TaskBody>,
}

impl std::fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpec")
            .field("task_id", &self.task_id)
            .field("upstream", &self.upstream)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A DAG: its identity, schedule and task graph.
#[derive(Debug, Clone)]
pub struct Dag {
    /// The DAG ID (`2-api_logs_realtime_ingest`, …).
    pub dag_id: String,
    /// One line on what it does.
    pub description: String,
    /// When it runs.
    pub schedule: Schedule,
    /// At most this many runs of the DAG at once.
    pub max_active_runs: usize,
    /// At most this many tasks of one run at once (Airflow's `max_active_tasks`); `None`: no
    /// limit.
    pub max_active_tasks: Option<usize>,
    /// It generates synthetic events (the speed layer's ingest DAGs): `lakepipe serve`, which
    /// takes real events only, does not schedule it.
    pub generator: bool,
    /// Of what [`Dag::generator`] DAGs write it reads only the objects landed up to its logical
    /// date (their keys name the fire time that landed them), and they read nothing it writes
    /// (the serving DAG): `simulate` lets a run of it finish while the generator runs of the
    /// next fire time go ([`super::driver::simulate`]).
    pub as_of: bool,
    /// Tasks in a topological order (upstreams first).
    pub tasks: Vec<TaskSpec>,
}

impl Dag {
    /// A DAG without tasks (add them with [`Dag::task`], then check with [`Dag::validated`]).
    pub fn new(dag_id: &str, description: &str, schedule: Schedule, max_active_runs: usize) -> Dag {
        Dag {
            dag_id: dag_id.to_string(),
            description: description.to_string(),
            schedule,
            max_active_runs,
            max_active_tasks: None,
            generator: false,
            as_of: false,
            tasks: Vec::new(),
        }
    }

    /// Marks the DAG as one that generates synthetic events.
    pub fn generator(mut self) -> Dag {
        self.generator = true;
        self
    }

    /// Marks the DAG as reading landed objects as of its logical date ([`Dag::as_of`]).
    pub fn reading_as_of(mut self) -> Dag {
        self.as_of = true;
        self
    }

    /// Limits the tasks of one run that execute at once.
    pub fn max_active_tasks(mut self, n: usize) -> Dag {
        self.max_active_tasks = Some(n.max(1));
        self
    }

    /// Adds a task and its body.
    pub fn task(
        mut self,
        task_id: impl Into<String>,
        upstream: &[&str],
        policy: TaskPolicy,
        body: Arc<dyn TaskBody>,
    ) -> Dag {
        self.tasks.push(TaskSpec {
            task_id: task_id.into(),
            upstream: upstream.iter().map(|s| s.to_string()).collect(),
            policy,
            body,
        });
        self
    }

    /// The task with this ID.
    pub fn task_by_id(&self, task_id: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.task_id == task_id)
    }

    /// `task_id` and everything downstream of it, transitively.
    pub fn with_downstream(&self, task_id: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::from([task_id.to_string()]);
        for t in &self.tasks {
            if t.upstream.iter().any(|u| out.contains(u)) {
                out.insert(t.task_id.clone());
            }
        }
        out
    }

    /// The group a DAG belongs to for same-time ordering: the number before the first `-`.
    pub fn order_group(&self) -> u32 {
        self.dag_id
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u32::MAX)
    }

    /// Checks the graph: unique task IDs, known upstreams, no cycles; orders the tasks so
    /// that every task comes after its upstreams.
    pub fn validated(mut self) -> Result<Dag, String> {
        let mut seen = BTreeSet::new();
        for t in &self.tasks {
            if !seen.insert(t.task_id.clone()) {
                return Err(format!("{}: duplicate task {}", self.dag_id, t.task_id));
            }
        }
        for t in &self.tasks {
            if let Some(u) = t.upstream.iter().find(|u| !seen.contains(*u)) {
                return Err(format!(
                    "{}: {} has unknown upstream {u}",
                    self.dag_id, t.task_id
                ));
            }
        }
        let mut ordered: Vec<TaskSpec> = Vec::with_capacity(self.tasks.len());
        let mut done = BTreeSet::new();
        while ordered.len() < self.tasks.len() {
            let ready: Vec<TaskSpec> = self
                .tasks
                .iter()
                .filter(|t| {
                    !done.contains(&t.task_id) && t.upstream.iter().all(|u| done.contains(u))
                })
                .cloned()
                .collect();
            if ready.is_empty() {
                return Err(format!("{}: the task graph has a cycle", self.dag_id));
            }
            for t in ready {
                done.insert(t.task_id.clone());
                ordered.push(t);
            }
        }
        self.tasks = ordered;
        Ok(self)
    }
}

/// Checks a pipeline's DAG table: every DAG [`Dag::validated`], DAG IDs unique; returns the
/// DAGs in DAG-ID order.
pub fn validated_table(dags: Vec<Dag>) -> Result<Vec<Dag>, String> {
    let mut dags: Vec<Dag> = dags
        .into_iter()
        .map(Dag::validated)
        .collect::<Result<_, _>>()?;
    dags.sort_by(|a, b| a.dag_id.cmp(&b.dag_id));
    if let Some(w) = dags.windows(2).find(|w| w[0].dag_id == w[1].dag_id) {
        return Err(format!("duplicate DAG ID {}", w[0].dag_id));
    }
    Ok(dags)
}

/// The DAG with this ID in `dags`.
pub fn find<'a>(dags: &'a [Dag], dag_id: &str) -> Option<&'a Dag> {
    dags.iter().find(|d| d.dag_id == dag_id)
}

/// [`find`], or [`Error::NoDag`](super::Error::NoDag) naming every DAG of `dags`.
pub fn lookup<'a>(dags: &'a [Dag], dag_id: &str) -> Result<&'a Dag, super::Error> {
    find(dags, dag_id).ok_or_else(|| super::Error::NoDag {
        id: dag_id.to_string(),
        known: dags.iter().map(|d| d.dag_id.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;
    use crate::scheduler::task::{TaskContext, TaskResult};

    fn t(s: &str) -> DateTime<Utc> {
        parse_utc(s).unwrap()
    }

    const INGEST: TaskPolicy = TaskPolicy::new(3, 10, 120, 240);

    struct Noop;

    #[async_trait::async_trait]
    impl TaskBody for Noop {
        async fn run(&self, _ctx: &TaskContext) -> TaskResult {
            Ok(serde_json::Value::Null)
        }
    }

    fn noop() -> Arc<dyn TaskBody> {
        Arc::new(Noop)
    }

    #[test]
    fn cycles_and_unknown_upstreams_are_rejected() {
        let cyclic = Dag::new("x", "", Schedule::Manual, 1)
            .task("a", &["b"], INGEST, noop())
            .task("b", &["a"], INGEST, noop());
        assert!(cyclic.validated().unwrap_err().contains("cycle"));
        let unknown = Dag::new("x", "", Schedule::Manual, 1).task("a", &["zz"], INGEST, noop());
        assert!(
            unknown
                .validated()
                .unwrap_err()
                .contains("unknown upstream zz")
        );
        assert!(Schedule::cron("*/5 * *").is_err());
        let twice = vec![
            Dag::new("x", "", Schedule::Manual, 1),
            Dag::new("x", "", Schedule::Manual, 1),
        ];
        assert!(
            validated_table(twice)
                .unwrap_err()
                .contains("duplicate DAG ID x")
        );
    }

    #[test]
    fn fire_times_and_intervals_cross_day_and_month_boundaries() {
        let five = Schedule::cron("*/5 * * * *").unwrap();
        // The run at midnight of 1 March covers the last five minutes of February.
        assert_eq!(
            five.data_interval(t("2026-03-01T00:00:00Z")),
            (t("2026-02-28T23:55:00Z"), t("2026-03-01T00:00:00Z"))
        );
        assert_eq!(
            five.next_after(t("2026-12-31T23:57:00Z")),
            Some(t("2027-01-01T00:00:00Z"))
        );
        let day: Vec<_> = five
            .fires_between(t("2026-02-01T00:00:00Z"), t("2026-02-02T00:00:00Z"))
            .collect();
        assert_eq!(day.len(), 288);
        assert_eq!(day[0], t("2026-02-01T00:05:00Z"));
        assert_eq!(*day.last().unwrap(), t("2026-02-02T00:00:00Z"));

        let daily = Schedule::cron("0 2 * * *").unwrap();
        assert_eq!(
            daily.data_interval(t("2026-03-01T02:00:00Z")),
            (t("2026-02-28T02:00:00Z"), t("2026-03-01T02:00:00Z"))
        );
        assert_eq!(
            daily.latest_at_or_before(t("2026-03-01T01:59:59Z")),
            Some(t("2026-02-28T02:00:00Z"))
        );
        assert!(daily.fires_at(t("2026-03-01T02:00:00Z")));
        assert!(!daily.fires_at(t("2026-03-01T02:05:00Z")));
        // 2028 is a leap year.
        assert_eq!(
            daily.next_after(t("2028-02-28T02:00:00Z")),
            Some(t("2028-02-29T02:00:00Z"))
        );
        let hourly = Schedule::cron("0 * * * *").unwrap();
        assert_eq!(
            hourly
                .fires_between(t("2026-02-01T00:00:00Z"), t("2026-02-02T00:00:00Z"))
                .count(),
            24
        );
        assert_eq!(Schedule::Manual.next_after(t("2026-02-01T00:00:00Z")), None);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_cap() {
        let p = TaskPolicy::new(5, 10, 60, 100);
        let d1 = p.backoff(1, "k").as_secs_f64();
        let d2 = p.backoff(2, "k").as_secs_f64();
        let d3 = p.backoff(3, "k").as_secs_f64();
        assert!((10.0..=12.5).contains(&d1), "{d1}");
        assert!((20.0..=25.0).contains(&d2), "{d2}");
        assert!((40.0..=50.0).contains(&d3), "{d3}");
        assert_eq!(p.backoff(4, "k").as_secs_f64(), 60.0);
        assert_eq!(p.backoff(2, "k"), p.backoff(2, "k"), "deterministic");
    }
}
