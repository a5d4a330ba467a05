//! DAGs as data: the pipeline's DAG IDs, cron schedules (parsed by croner), task graphs, and
//! per-task retry, back-off and timeout settings. Task *bodies* are not here: the layer that
//! owns a task registers it in a [`super::Registry`].

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr as _;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

use crate::sources::stream::all_streams;

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

/// One task of a DAG.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Task ID, unique within its DAG.
    pub task_id: String,
    /// Tasks that must succeed first.
    pub upstream: Vec<String>,
    /// Retries, back-off and timeout.
    pub policy: TaskPolicy,
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
            tasks: Vec::new(),
        }
    }

    /// Limits the tasks of one run that execute at once.
    pub fn max_active_tasks(mut self, n: usize) -> Dag {
        self.max_active_tasks = Some(n.max(1));
        self
    }

    /// Adds a task.
    pub fn task(
        mut self,
        task_id: impl Into<String>,
        upstream: &[&str],
        policy: TaskPolicy,
    ) -> Dag {
        self.tasks.push(TaskSpec {
            task_id: task_id.into(),
            upstream: upstream.iter().map(|s| s.to_string()).collect(),
            policy,
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

const fn policy(retries: u32, delay_s: u64, max_delay_s: u64, timeout_s: u64) -> TaskPolicy {
    TaskPolicy {
        retries,
        retry_delay: Duration::from_secs(delay_s),
        max_retry_delay: Duration::from_secs(max_delay_s),
        execution_timeout: Duration::from_secs(timeout_s),
    }
}

/// Ingest tasks must finish well inside their 5-minute interval.
const INGEST: TaskPolicy = policy(3, 10, 120, 240);
const BATCH: TaskPolicy = policy(2, 300, 1800, 7200);
const SERVING: TaskPolicy = policy(1, 30, 60, 480);
/// Tasks of one batch run that execute at once.
pub const BATCH_ACTIVE_TASKS: usize = 2;
const CATALOG: TaskPolicy = policy(2, 60, 600, 1800);
const BOOTSTRAP: TaskPolicy = policy(0, 60, 60, 600);

/// Gold facts and the silver tasks they read (SPEC "Batch layer").
pub const GOLD_FACTS: [(&str, &str); 7] = [
    ("fact_iot_daily", "iot_sensors"),
    ("fact_api_hourly", "api_logs"),
    ("fact_social_daily", "social_media"),
    ("fact_ecommerce_funnel", "ecommerce_clickstream"),
    ("fact_ecommerce_revenue", "ecommerce_clickstream"),
    ("fact_financial_daily", "financial_transactions"),
    ("fact_fraud_summary", "financial_transactions"),
];

/// The ID of the speed-layer ingest DAG of a stream.
pub fn ingest_dag_id(stream: &str) -> String {
    format!("2-{stream}_realtime_ingest")
}

fn build() -> Result<Vec<Dag>, String> {
    let streams: Vec<&str> = all_streams().iter().map(|s| s.name).collect();
    let mut dags = vec![
        Dag::new(
            "1-infra_s3_bootstrap",
            "bucket bootstrap: encryption, versioning, lifecycle, public access, TLS policy",
            Schedule::Manual,
            1,
        )
        .task("bootstrap", &[], BOOTSTRAP),
    ];
    for s in &streams {
        dags.push(
            Dag::new(
                &ingest_dag_id(s),
                &format!("speed layer: land the interval's {s} events under realtime/{s}/"),
                Schedule::cron("*/5 * * * *")?,
                4,
            )
            .task("ingest", &[], INGEST)
            .task("verify", &["ingest"], INGEST),
        );
    }
    let mut batch = Dag::new(
        "3-batch_etl_all_streams",
        "daily bronze → silver → gold on Delta Lake for the closed event date",
        Schedule::cron("0 2 * * *")?,
        1,
    )
    // Each task already runs its plan on every core (DataFusion partitions); more of them at
    // once only adds memory (sort buffers, Parquet writers).
    .max_active_tasks(BATCH_ACTIVE_TASKS);
    for s in &streams {
        let bronze = format!("bronze_{s}");
        batch = batch.task(bronze.clone(), &[], BATCH).task(
            format!("silver_{s}"),
            &[bronze.as_str()],
            BATCH,
        );
    }
    for (fact, stream) in GOLD_FACTS {
        let silver = format!("silver_{stream}");
        batch = batch.task(format!("gold_{fact}"), &[silver.as_str()], BATCH);
    }
    let gold: Vec<String> = GOLD_FACTS
        .iter()
        .map(|(f, _)| format!("gold_{f}"))
        .collect();
    let gold_refs: Vec<&str> = gold.iter().map(String::as_str).collect();
    batch = batch.task("compact", &gold_refs, BATCH);
    dags.push(batch);

    let mut serving = Dag::new(
        "4-serving_layer_merge",
        "serving: unified tables (batch ∪ unconsumed speed), dashboards, analytics, alerts",
        Schedule::cron("*/10 * * * *")?,
        1,
    );
    let unified: Vec<String> = streams.iter().map(|s| format!("unified_{s}")).collect();
    for u in &unified {
        serving = serving.task(u.clone(), &[], SERVING);
    }
    let unified_refs: Vec<&str> = unified.iter().map(String::as_str).collect();
    serving = serving
        .task("dashboards", &unified_refs, SERVING)
        .task("alerts", &unified_refs, SERVING)
        .task("analytics", &unified_refs, SERVING);
    dags.push(serving);

    dags.push(
        Dag::new(
            "5-lake_catalog_refresh",
            "catalog: verify partitions, partition metadata, Athena DDL, operation log",
            Schedule::cron("0 * * * *")?,
            1,
        )
        .task("catalog_refresh", &[], CATALOG),
    );
    let dags: Vec<Dag> = dags
        .into_iter()
        .map(Dag::validated)
        .collect::<Result<_, _>>()?;
    let ids: BTreeMap<&str, ()> = dags.iter().map(|d| (d.dag_id.as_str(), ())).collect();
    if ids.len() != dags.len() {
        return Err("duplicate DAG IDs".into());
    }
    Ok(dags)
}

/// Every DAG of the pipeline, in DAG-ID order.
pub fn all_dags() -> &'static [Dag] {
    static DAGS: OnceLock<Vec<Dag>> = OnceLock::new();
    DAGS.get_or_init(|| {
        let mut d = build().expect("the built-in DAG table is valid (unit-tested)");
        d.sort_by(|a, b| a.dag_id.cmp(&b.dag_id));
        d
    })
}

/// The DAG with this ID.
pub fn dag_by_id(dag_id: &str) -> Option<&'static Dag> {
    all_dags().iter().find(|d| d.dag_id == dag_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    fn t(s: &str) -> DateTime<Utc> {
        parse_utc(s).unwrap()
    }

    #[test]
    fn the_dag_table_has_the_spec_ids_and_graphs() {
        assert!(build().is_ok());
        let ids: Vec<&str> = all_dags().iter().map(|d| d.dag_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "1-infra_s3_bootstrap",
                "2-api_logs_realtime_ingest",
                "2-ecommerce_clickstream_realtime_ingest",
                "2-financial_transactions_realtime_ingest",
                "2-iot_sensors_realtime_ingest",
                "2-social_media_realtime_ingest",
                "3-batch_etl_all_streams",
                "4-serving_layer_merge",
                "5-lake_catalog_refresh",
            ]
        );
        let batch = dag_by_id("3-batch_etl_all_streams").unwrap();
        assert_eq!(batch.schedule.expr(), Some("0 2 * * *"));
        assert_eq!(batch.tasks.len(), 5 + 5 + 7 + 1);
        assert_eq!(
            batch
                .task_by_id("gold_fact_ecommerce_revenue")
                .unwrap()
                .upstream,
            ["silver_ecommerce_clickstream"]
        );
        assert_eq!(batch.tasks.last().unwrap().task_id, "compact");
        // Every task comes after its upstreams.
        for (i, task) in batch.tasks.iter().enumerate() {
            for u in &task.upstream {
                assert!(batch.tasks[..i].iter().any(|p| &p.task_id == u));
            }
        }
        let down = batch.with_downstream("bronze_api_logs");
        assert_eq!(
            down.into_iter().collect::<Vec<_>>(),
            [
                "bronze_api_logs",
                "compact",
                "gold_fact_api_hourly",
                "silver_api_logs"
            ]
        );
        assert!(
            dag_by_id("1-infra_s3_bootstrap")
                .unwrap()
                .schedule
                .expr()
                .is_none()
        );
        assert_eq!(dag_by_id("4-serving_layer_merge").unwrap().order_group(), 4);
    }

    #[test]
    fn cycles_and_unknown_upstreams_are_rejected() {
        let cyclic = Dag::new("x", "", Schedule::Manual, 1)
            .task("a", &["b"], INGEST)
            .task("b", &["a"], INGEST);
        assert!(cyclic.validated().unwrap_err().contains("cycle"));
        let unknown = Dag::new("x", "", Schedule::Manual, 1).task("a", &["zz"], INGEST);
        assert!(
            unknown
                .validated()
                .unwrap_err()
                .contains("unknown upstream zz")
        );
        assert!(Schedule::cron("*/5 * *").is_err());
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
        let p = policy(5, 10, 60, 100);
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
