//! Export to a real Airflow 3: one DAG file per DAG with the same dag_id, schedule (as a
//! `CronTriggerTimetable`, whose logical date is the fire time, as here), catchup,
//! max_active_runs, retries, back-off, timeouts and task graph. Every task is a BashOperator
//! that runs `lakepipe tasks run <dag> <task> --logical-date …`, so Airflow's executors
//! distribute the work and lakepipe records each attempt in the lake.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::dag::{Dag, TaskPolicy};

/// Settings baked into the exported files (each can be overridden at run time by the
/// `LAKEPIPE_BIN` / `LAKEPIPE_LAKE` / `LAKEPIPE_PIPELINE` environment of the Airflow workers).
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Path of the lakepipe binary on the workers.
    pub binary: String,
    /// Lake URL the tasks use.
    pub lake: String,
    /// The pipeline declaration the tasks run (`None`: the built-in one).
    pub pipeline: Option<String>,
    /// Airflow's `catchup`.
    pub catchup: bool,
    /// Airflow's `start_date`.
    pub start_date: DateTime<Utc>,
}

fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn secs(d: std::time::Duration) -> String {
    format!("timedelta(seconds={})", d.as_secs())
}

fn policy_args(p: &TaskPolicy) -> String {
    format!(
        "retries={}, retry_delay={}, retry_exponential_backoff=True, max_retry_delay={}, execution_timeout={}",
        p.retries,
        secs(p.retry_delay),
        secs(p.max_retry_delay),
        secs(p.execution_timeout)
    )
}

/// The Python source of one DAG file.
pub fn dag_file(dag: &Dag, opts: &ExportOptions) -> String {
    let schedule = match dag.schedule.expr() {
        Some(e) => format!("CronTriggerTimetable({}, timezone=\"UTC\")", py_str(e)),
        None => "None".into(),
    };
    let sd = opts.start_date;
    let mut tasks = String::new();
    for t in &dag.tasks {
        tasks.push_str(&format!(
            "    tasks[{id}] = lakepipe_task({id}, {policy})\n",
            id = py_str(&t.task_id),
            policy = policy_args(&t.policy)
        ));
    }
    let mut edges = String::new();
    for t in &dag.tasks {
        for u in &t.upstream {
            edges.push_str(&format!(
                "    tasks[{}] >> tasks[{}]\n",
                py_str(u),
                py_str(&t.task_id)
            ));
        }
    }
    format!(
        r#""""{dag_id}: {description}

Exported by `lakepipe airflow export`; regenerate instead of editing. Each task runs
`lakepipe tasks run`, which executes the task for the run's logical date and records the
attempt (state and log) in the lake. Set LAKEPIPE_BIN / LAKEPIPE_LAKE / LAKEPIPE_PIPELINE on
the workers to override the binary, lake and pipeline declaration below.
"""
import os
import shlex
from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from airflow.timetables.trigger import CronTriggerTimetable

DAG_ID = {dag_id_py}
LAKEPIPE = os.environ.get("LAKEPIPE_BIN", {binary})
LAKE = os.environ.get("LAKEPIPE_LAKE", {lake})
# The pipeline declaration (None: lakepipe's built-in one).
PIPELINE = os.environ.get("LAKEPIPE_PIPELINE", {pipeline})


def lakepipe_task(task_id, **policy):
    declared = ["--pipeline", PIPELINE] if PIPELINE else []
    command = " ".join(
        shlex.quote(part)
        for part in [LAKEPIPE, "--lake", LAKE, *declared, "tasks", "run", DAG_ID, task_id, "--logical-date"]
    )
    # Airflow 3 may leave logical_date unset for manual runs: fall back to run_after.
    return BashOperator(
        task_id=task_id,
        bash_command=command + ' "{{{{ logical_date or dag_run.run_after }}}}"',
        **policy,
    )


with DAG(
    dag_id=DAG_ID,
    description={description_py},
    schedule={schedule},
    start_date=datetime({y}, {m}, {d}, {hh}, {mm}, tzinfo=timezone.utc),
    catchup={catchup},
    max_active_runs={max_active_runs},{max_active_tasks}
    tags=["lakepipe"],
) as dag:
    tasks = {{}}
{tasks}{edges}"#,
        dag_id = dag.dag_id,
        description = dag.description,
        dag_id_py = py_str(&dag.dag_id),
        binary = py_str(&opts.binary),
        lake = py_str(&opts.lake),
        pipeline = opts.pipeline.as_deref().map_or("None".to_string(), py_str),
        description_py = py_str(&dag.description),
        schedule = schedule,
        y = sd.format("%Y"),
        m = sd.format("%-m"),
        d = sd.format("%-d"),
        hh = sd.format("%-H"),
        mm = sd.format("%-M"),
        catchup = py_bool(opts.catchup),
        max_active_runs = dag.max_active_runs,
        max_active_tasks = dag
            .max_active_tasks
            .map(|n| format!("\n    max_active_tasks={n},"))
            .unwrap_or_default(),
    )
}

/// File name of a DAG's file (Python module names cannot start with a digit or hold `-`).
pub fn file_name(dag: &Dag) -> String {
    format!("lakepipe_{}.py", dag.dag_id.replace('-', "_"))
}

/// Writes every DAG file into `out`; returns the paths written.
pub fn export(
    dags: &[Dag],
    out: &Path,
    opts: &ExportOptions,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for dag in dags {
        let path = out.join(file_name(dag));
        let tmp = out.join(format!(".{}.tmp", file_name(dag)));
        std::fs::write(&tmp, dag_file(dag, opts))?;
        std::fs::rename(&tmp, &path)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::dag as dag_by_id;

    fn opts() -> ExportOptions {
        ExportOptions {
            binary: "/opt/lakepipe".into(),
            lake: "s3://b/p".into(),
            pipeline: None,
            catchup: false,
            start_date: crate::clock::parse_utc("2026-01-01T00:00:00Z").unwrap(),
        }
    }

    #[test]
    fn dag_file_carries_id_schedule_policy_and_edges() {
        let dag = dag_by_id("3-batch_etl_all_streams").unwrap();
        let py = dag_file(dag, &opts());
        assert!(py.contains(r#"DAG_ID = "3-batch_etl_all_streams""#));
        assert!(py.contains(r#"schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC")"#));
        assert!(py.contains(r#"tasks["bronze_api_logs"] >> tasks["silver_api_logs"]"#));
        assert!(py.contains(r#"tasks["gold_fact_fraud_summary"] >> tasks["compact"]"#));
        assert!(py.contains("retries=2, retry_delay=timedelta(seconds=300)"));
        assert!(py.contains("execution_timeout=timedelta(seconds=7200)"));
        assert!(py.contains(r#"{{ logical_date or dag_run.run_after }}"#));
        assert!(py.contains("catchup=False"));
        assert!(py.contains("max_active_runs=1,\n    max_active_tasks=2,\n"));
        let manual = dag_file(dag_by_id("1-infra_s3_bootstrap").unwrap(), &opts());
        assert!(manual.contains("schedule=None,"));
        assert!(!manual.contains("max_active_tasks"));
        assert_eq!(file_name(dag), "lakepipe_3_batch_etl_all_streams.py");
        assert!(py.contains(r#"PIPELINE = os.environ.get("LAKEPIPE_PIPELINE", None)"#));
        let declared = dag_file(
            dag,
            &ExportOptions {
                pipeline: Some("/etc/lakepipe/pipeline.toml".into()),
                ..opts()
            },
        );
        assert!(declared.contains(
            r#"PIPELINE = os.environ.get("LAKEPIPE_PIPELINE", "/etc/lakepipe/pipeline.toml")"#
        ));
    }
}
