//! OpenLineage events (`[lineage]`): a simulated half hour with a failing task, every event
//! validated by the openlineage-python models, every recorded attempt with its START and its
//! COMPLETE or FAIL, and one event id followed from its landed object to a dashboard.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::util::{TestCommand, python, query_rows};

const VALIDATE: &str = include_str!("openlineage.py");

fn names(datasets: &Value) -> BTreeSet<String> {
    datasets
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_attempt_emits_valid_openlineage_events_that_follow_an_event_from_landing_to_a_dashboard() {
    let events_file = tempfile::NamedTempFile::new().unwrap();
    let base = TestCommand::new();
    let config = base.path().join("lakepipe.toml");
    std::fs::write(
        &config,
        format!(
            "[lineage]\nfile = {:?}\n",
            events_file.path().display().to_string()
        ),
    )
    .unwrap();
    let t = base.env("LAKEPIPE_CONFIG", config.to_str().unwrap());
    let lake = t.lake();
    // Relative, as a user types it: datasets are still named by absolute path.
    let lake_s = "lake";
    t.run(&[
        "--lake",
        lake_s,
        "simulate",
        "--from",
        "2026-02-01T00:00:00Z",
        "--to",
        "2026-02-01T00:30:00Z",
        "--scale",
        "0.05",
    ])
    .assert_exit_code(0);
    // A task whose every attempt fails: FAIL events with the error.
    let failing = "2-api_logs_realtime_ingest";
    t.run(&[
        "--lake",
        lake_s,
        "simulate",
        "--from",
        "2026-02-01T00:30:00Z",
        "--to",
        "2026-02-01T00:35:00Z",
        "--dag",
        failing,
        "--fail-task",
        &format!("{failing}:ingest"),
    ])
    .assert_exit_code(1);
    // The hourly catalog refresh, at 01:00.
    crate::util::run_dag_at(
        &t,
        lake_s,
        "5-lake_catalog_refresh",
        "2026-02-01T01:00:00Z".parse().unwrap(),
    );

    let text = std::fs::read_to_string(events_file.path()).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let validated: Value =
        serde_json::from_str(&python(VALIDATE, &[events_file.path().to_str().unwrap()])).unwrap();
    assert_eq!(validated["validated"], events.len());

    // Each attempt: one START, then one COMPLETE or FAIL, under one run id.
    let mut by_run: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in &events {
        by_run
            .entry(e["run"]["runId"].as_str().unwrap())
            .or_default()
            .push(e["eventType"].as_str().unwrap());
    }
    for (run, kinds) in &by_run {
        assert!(
            kinds == &["START", "COMPLETE"] || kinds == &["START", "FAIL"],
            "{run}: {kinds:?}"
        );
    }
    // As many attempts as the run records hold.
    let recorded: usize = crate::util::files_under(&lake.join("_lakepipe/runs"))
        .iter()
        .filter(|f| f.contains("/tasks/") && f.ends_with(".json"))
        .map(|f| {
            let ti: Value = serde_json::from_slice(
                &std::fs::read(lake.join("_lakepipe/runs").join(f)).unwrap(),
            )
            .unwrap();
            ti["attempts"].as_array().map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(by_run.len(), recorded);
    let failed: Vec<&Value> = events.iter().filter(|e| e["eventType"] == "FAIL").collect();
    assert_eq!(failed.len(), 4, "1 try + 3 retries");
    for e in &failed {
        assert_eq!(e["job"]["name"], format!("{failing}.ingest"));
        let message = e["run"]["facets"]["errorMessage"]["message"]
            .as_str()
            .unwrap();
        assert!(message.contains("injected failure"), "{message}");
    }

    // One event id, from the object it landed in to a dashboard.
    let root = std::fs::canonicalize(&lake).unwrap().display().to_string();
    let completed = |job: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["eventType"] == "COMPLETE" && e["job"]["name"] == job)
            .collect()
    };
    let landed = completed("2-api_logs_realtime_ingest.ingest");
    let object = landed[0]["outputs"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        object.starts_with(&format!("{root}/realtime/api_logs/")),
        "{object}"
    );
    assert_eq!(landed[0]["outputs"][0]["namespace"], "file");
    let body = std::fs::read_to_string(&object).unwrap();
    let id = body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["log_id"].as_str().map(str::to_string))
        .expect("an event with an id");
    let found = query_rows(
        &t,
        lake_s,
        &format!("SELECT count(*) AS n FROM serving_unified_api_logs WHERE log_id = '{id}'"),
    );
    assert_eq!(found[0]["n"], 1, "{id}");
    let unified_table = format!("{root}/serving/unified/api_logs");
    let merged = completed("4-serving_layer_merge.unified_api_logs")
        .into_iter()
        .find(|e| names(&e["inputs"]).contains(&object))
        .unwrap_or_else(|| panic!("no unified run read {object}"));
    assert!(
        names(&merged["outputs"]).contains(&unified_table),
        "{merged}"
    );
    let unified_out = &merged["outputs"][0];
    assert!(
        unified_out["facets"]["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "log_id"),
        "{unified_out}"
    );
    // The dashboards task of the same serving run read that table and wrote the dashboards.
    let parent = &merged["run"]["facets"]["parent"]["run"]["runId"];
    let dashboards = completed("4-serving_layer_merge.dashboards")
        .into_iter()
        .find(|e| &e["run"]["facets"]["parent"]["run"]["runId"] == parent)
        .expect("the dashboards task of that serving run");
    assert!(
        names(&dashboards["inputs"]).contains(&unified_table),
        "{dashboards}"
    );
    let api_health = format!("{root}/serving/dashboards/api_health_1h");
    assert!(
        names(&dashboards["outputs"]).contains(&api_health),
        "{dashboards}"
    );
    let out = dashboards["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == api_health.as_str())
        .unwrap();
    assert!(
        out["outputFacets"]["outputStatistics"]["rowCount"]
            .as_u64()
            .unwrap()
            > 0
    );

    // The catalog refresh read the landing prefixes and wrote the metadata and DDL.
    let catalog = completed("5-lake_catalog_refresh.catalog_refresh");
    assert_eq!(catalog.len(), 1);
    assert!(
        names(&catalog[0]["inputs"]).contains(&format!("{root}/realtime/api_logs/")),
        "{}",
        catalog[0]
    );
    let outputs = names(&catalog[0]["outputs"]);
    assert!(
        outputs.contains(&format!("{root}/metadata/partition_metadata.json"))
            && outputs.iter().any(|o| o.ends_with(".sql")),
        "{outputs:?}"
    );
}
