//! The exported DAGs in a real Airflow 3 (installed by `scripts/test` into its own venv): every
//! DAG of the pipeline — ingest, catalog, the batch run, serving runs — on a moto lake, run by
//! Airflow's scheduler and LocalExecutor with tasks in parallel, each task a `lakepipe tasks
//! run`; the result equals what lakepipe's own scheduler makes of the same range in another
//! lake: the same objects, the same rows in every Delta table, every run and task instance in
//! the same state as Airflow recorded it and as lakepipe recorded it.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::{INGEST_DAGS, TestCommand, s3_server};

fn airflow_dir() -> PathBuf {
    let dir = std::env::var("LAKEPIPE_TEST_AIRFLOW").unwrap_or_else(|_| {
        panic!("LAKEPIPE_TEST_AIRFLOW is not set: run the tests through `scripts/test`, which installs Airflow")
    });
    PathBuf::from(dir)
}

/// Both lakes get the late evening before the range from the ingest DAGs of lakepipe's own
/// scheduler (so the 02:00 batch run has a day to process); the range itself, 01:50 to 02:10,
/// holds ingest, catalog, batch and serving runs. `bench/airflow_day.sh` runs a whole day
/// (`LAKEPIPE_AIRFLOW_SEEDED_FROM`, `…_FROM`, `…_TO`, `…_SCALE` override these).
const SEEDED_FROM: &str = "2026-02-01T23:45:00Z";
const FROM: &str = "2026-02-02T01:50:00Z";
const TO: &str = "2026-02-02T02:10:00Z";
const SCALE: &str = "0.05";

fn setting(name: &str, default: &str) -> String {
    std::env::var(format!("LAKEPIPE_AIRFLOW_{name}")).unwrap_or_else(|_| default.to_string())
}

/// Airflow's scheduler, DAG processor and API server, each in its own process group, killed
/// with every worker they started when dropped.
struct Airflow {
    children: Vec<Child>,
    api: String,
    env: Vec<(String, String)>,
    home: PathBuf,
}

impl Drop for Airflow {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Airflow {
    /// Migrates a new metadata database under `t` and starts the components: LocalExecutor
    /// with 4 task slots, SQLite, no auth, no runs from the schedules (the test triggers each
    /// run with its logical date) and the lake's environment for the tasks.
    fn start(t: &TestCommand) -> Airflow {
        let home = t.path().join("airflow-home");
        let port = free_port();
        let api = format!("http://127.0.0.1:{port}");
        let mut env: Vec<(String, String)> = t
            .envs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in [
            ("AIRFLOW_HOME", home.to_str().unwrap()),
            (
                "AIRFLOW__CORE__DAGS_FOLDER",
                t.path().join("dags").to_str().unwrap(),
            ),
            ("AIRFLOW__CORE__LOAD_EXAMPLES", "False"),
            ("AIRFLOW__CORE__UNIT_TEST_MODE", "False"),
            ("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
            ("AIRFLOW__CORE__PARALLELISM", "4"),
            ("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False"),
            ("AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE", "False"),
            ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True"),
            ("AIRFLOW__API__HOST", "127.0.0.1"),
            ("AIRFLOW__API__PORT", &port.to_string()),
            (
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                &format!("{api}/execution/"),
            ),
            (
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
                &free_port().to_string(),
            ),
            ("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        ] {
            env.push((k.to_string(), v.to_string()));
        }
        let mut airflow = Airflow {
            children: Vec::new(),
            api,
            env,
            home,
        };
        let out = airflow.command(&["db", "migrate"]).output().unwrap();
        assert!(
            out.status.success(),
            "airflow db migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for component in ["scheduler", "dag-processor", "api-server"] {
            let log = std::fs::File::create(airflow.log(component)).unwrap();
            let child = airflow
                .command(&[component])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap();
            airflow.children.push(child);
        }
        airflow
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(airflow_dir().join("airflow"));
        c.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.home.parent().unwrap())
            .stdin(Stdio::null());
        c
    }

    fn log(&self, component: &str) -> PathBuf {
        self.home.with_file_name(format!("airflow-{component}.log"))
    }

    /// The components' logs, for a failure message.
    fn logs(&self) -> String {
        ["scheduler", "dag-processor", "api-server"]
            .iter()
            .map(|c| {
                let text = std::fs::read_to_string(self.log(c)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                format!(
                    "--- {c}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `airflow_day.py`: every fire time of (`from`, `to`], DAG-ID groups in order, each run
    /// triggered with its logical date and awaited; the runs as Airflow recorded them.
    fn drive(&self, from: &str, to: &str, dags: usize) -> serde_json::Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/airflow_day.py");
        let out = Command::new(airflow_dir().join("python"))
            .arg(script)
            .args([
                &format!("{}/api/v2", self.api),
                from,
                to,
                &dags.to_string(),
                "600",
            ])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "airflow_day.py failed\n--- stdout\n{stdout}\n--- stderr\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

/// `lakes_equal.py` over two lakes of the S3 server `t` is set up for: its report of every
/// difference.
fn lakes_equal(t: &TestCommand, a: &str, b: &str) -> serde_json::Value {
    let python = std::env::var("LAKEPIPE_TEST_PYTHON").expect("LAKEPIPE_TEST_PYTHON");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/lakes_equal.py");
    let out = Command::new(python)
        .arg(script)
        .args([a, b])
        .env_clear()
        .envs(t.envs())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lakes_equal.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The key of a run (`run.json`) or task record under `_lakepipe/runs/`.
fn record(dag: &str, logical_date: &str, task: Option<&str>) -> String {
    let at = logical_date.replace(['-', ':'], "");
    match task {
        None => format!("{dag}/{at}/run.json"),
        Some(task) => format!("{dag}/{at}/tasks/{task}.json"),
    }
}

#[tokio::test]
async fn a_range_of_every_dag_under_airflow_with_parallel_tasks_equals_lakepipes_own_run() {
    let (seeded_from, from, to) = (
        setting("SEEDED_FROM", SEEDED_FROM),
        setting("FROM", FROM),
        setting("TO", TO),
    );
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = server.new_bucket("airflow").await;
    let under_airflow = format!("s3://{bucket}/airflow");
    let own = format!("s3://{bucket}/lakepipe");
    // Small files with faults in the data (malformed, duplicate, late records), for both
    // schedulers: `tasks run` reads them from the environment as `simulate` does.
    let t = server
        .apply(TestCommand::new())
        .env("LAKEPIPE_SCALE", &setting("SCALE", SCALE))
        .env("LAKEPIPE_FAULT_RATE", "0.05");

    for lake in [&under_airflow, &own]
        .into_iter()
        .filter(|_| seeded_from < from)
    {
        let mut args = vec![
            "--lake",
            lake.as_str(),
            "simulate",
            "--from",
            &seeded_from,
            "--to",
            &from,
        ];
        for d in INGEST_DAGS {
            args.extend(["--dag", d]);
        }
        t.run(&args).assert_exit_code(0);
    }

    t.run(&[
        "--lake",
        &under_airflow,
        "airflow",
        "export",
        "--out",
        "dags",
        "--binary",
        env!("CARGO_BIN_EXE_lakepipe"),
    ])
    .assert_exit_code(0);
    // The tasks see the test's environment: moto's endpoint and keys, scale and fault rate.
    let airflow = Airflow::start(&t);
    let day = airflow.drive(&from, &to, 9);
    drop(airflow);

    // The exported files import cleanly and are the pipeline's nine DAGs.
    assert_eq!(day["import_errors"], serde_json::json!([]), "{day}");
    let ids: Vec<&str> = day["dag_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert!(ids.contains(&"3-batch_etl_all_streams"), "{ids:?}");

    // lakepipe's own scheduler over the same range.
    let own_run = t
        .run(&[
            "--lake", &own, "--json", "simulate", "--from", &from, "--to", &to,
        ])
        .assert_exit_code(0)
        .json();

    // Every run of the range, every task succeeded, tasks of one run in parallel.
    let runs = day["runs"].as_array().unwrap();
    let mut by_dag = serde_json::Map::new();
    for r in runs {
        let n = by_dag
            .entry(r["dag_id"].as_str().unwrap())
            .or_insert(serde_json::json!({"success": 0}));
        n["success"] = (n["success"].as_u64().unwrap() + 1).into();
    }
    assert_eq!(
        serde_json::Value::Object(by_dag),
        own_run["by_dag"],
        "the same runs as lakepipe's scheduler, every one a success"
    );
    for r in runs {
        assert_eq!(r["state"], "success", "{r}");
        for (task, state) in r["tasks"].as_object().unwrap() {
            assert_eq!(state, "success", "{task}: {r}");
        }
    }
    let batch = runs
        .iter()
        .find(|r| r["dag_id"] == "3-batch_etl_all_streams")
        .unwrap();
    assert!(
        batch["max_parallel"].as_u64().unwrap() >= 2,
        "the batch run's streams ran in parallel (max_active_tasks 2): {batch}"
    );

    let report = lakes_equal(&t, &under_airflow, &own);
    let tables = report["tables"].as_array().unwrap();
    assert!(tables.len() >= 30, "{report}");
    for key in [
        "only_in_a",
        "only_in_b",
        "different_objects",
        "different_tables",
        "different_runs",
    ] {
        assert!(
            report[key].as_array().is_some_and(|a| a.is_empty())
                || report[key].as_object().is_some_and(|o| o.is_empty()),
            "{key} (a: under Airflow, b: lakepipe's scheduler): {}",
            report[key]
        );
    }

    eprintln!(
        "airflow day {from} .. {to}: {} runs under Airflow in {} s (slowest fire time {} s), \
         lakepipe simulate {:.1} s; equal: {} objects, {} tables, {} run records",
        runs.len(),
        day["seconds"],
        day["slowest_tick_s"],
        own_run["elapsed_s"].as_f64().unwrap(),
        report["objects"],
        tables.len(),
        report["runs"]
    );

    // What Airflow recorded is what lakepipe recorded in the lake, run by run and task by
    // task, with the run records settled although tasks of a run ended together.
    let states = &report["states_a"];
    for r in runs {
        let (dag, at) = (
            r["dag_id"].as_str().unwrap(),
            r["logical_date"].as_str().unwrap(),
        );
        assert_eq!(states[record(dag, at, None)], r["state"], "{dag} at {at}");
        for (task, state) in r["tasks"].as_object().unwrap() {
            assert_eq!(
                &states[record(dag, at, Some(task))],
                state,
                "{dag} at {at}: {task}"
            );
        }
    }
}
