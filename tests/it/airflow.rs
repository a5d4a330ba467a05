//! The exported DAGs in a real Airflow 3 (installed by `scripts/test` into its own venv):
//! they import without errors, and `airflow dags test` of an ingest DAG runs
//! `lakepipe tasks run` for each task and lands the interval's objects in a temp lake.

use std::process::Command;

use crate::util::{TestCommand, files_under};

fn airflow_bin() -> std::path::PathBuf {
    let dir = std::env::var("LAKEPIPE_TEST_AIRFLOW").unwrap_or_else(|_| {
        panic!("LAKEPIPE_TEST_AIRFLOW is not set: run the tests through `scripts/test`, which installs Airflow")
    });
    std::path::Path::new(&dir).join("airflow")
}

/// The JSON document in Airflow's stdout (its Python warnings are logged there too).
fn json_in(stdout: &str, context: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .find(|l| l.starts_with('[') && !l.starts_with("[warning") || l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in airflow's output: {context}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {context}"))
}

#[test]
fn exported_dags_import_cleanly_and_run_in_real_airflow() {
    let airflow = airflow_bin();
    let t = TestCommand::new();
    let lake = t.lake();
    t.run(&[
        "--lake",
        lake.to_str().unwrap(),
        "airflow",
        "export",
        "--out",
        "dags",
        "--binary",
        env!("CARGO_BIN_EXE_lakepipe"),
    ])
    .assert_exit_code(0);

    let home = t.path().join("airflow-home");
    let af = |args: &[&str]| {
        let out = Command::new(&airflow)
            .args(args)
            .current_dir(t.path())
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", t.path().join("dags"))
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
            .env("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
            .env(
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                "http://127.0.0.1:9/execution/",
            )
            .env("LAKEPIPE_LOG", "warn")
            .env("HOME", t.path().join("home"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run airflow");
        let text = format!(
            "airflow {args:?} exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            text,
        )
    };

    let (ok, _, text) = af(&["db", "migrate"]);
    assert!(ok, "{text}");
    let (ok, stdout, text) = af(&["dags", "list-import-errors", "--local", "-o", "json"]);
    assert!(ok, "{text}");
    let errors: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or(serde_json::json!([]));
    assert!(
        errors.as_array().is_none_or(|a| a.is_empty()),
        "import errors: {text}"
    );
    let (ok, stdout, text) = af(&["dags", "list", "--local", "-o", "json"]);
    assert!(ok, "{text}");
    let listed = json_in(&stdout, &text);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["dag_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 9, "{text}");
    assert!(ids.contains(&"3-batch_etl_all_streams"), "{text}");

    let (ok, _, text) = af(&[
        "dags",
        "test",
        "2-iot_sensors_realtime_ingest",
        "2026-02-01T00:05:00+00:00",
    ]);
    assert!(ok, "{text}");
    let landed: Vec<String> = files_under(&lake)
        .into_iter()
        .filter(|f| f.starts_with("realtime/"))
        .collect();
    assert_eq!(
        landed,
        ["realtime/iot_sensors/date=2026-02-01/hour=00/iot_sensors_20260201T000000Z.jsonl"],
        "{text}"
    );
    let run: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            lake.join("_lakepipe/runs/2-iot_sensors_realtime_ingest/20260201T000500Z/run.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(run["state"], "success", "{text}");
    assert_eq!(run["run_type"], "external");
}
