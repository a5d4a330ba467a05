//! Real events through every layer: the generator's events of the last hour (with faults),
//! posted to `lakepipe serve` with curl (api_logs) and with Python `requests`
//! (financial_transactions), give the same serving, bronze, silver, quarantine and gold
//! tables — lineage columns aside — as the same events landed by the generator's ingest runs,
//! and are queryable.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Duration, DurationRound as _, Utc};

use crate::ingest::{NDJSON, post};
use crate::util::{TestCommand, python, query_rows, rfc, run_dag_at, serving};

/// Every line of the speed-layer objects of `stream` in `lake`, by key.
fn landed_lines(lake: &Path, stream: &str) -> Vec<String> {
    let root = lake.join("realtime").join(stream);
    let mut files = crate::util::files_under(&root);
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(root.join(f))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The Delta tables of a lake, by query name (`silver_api_logs`, `serving_unified_api_logs`).
fn delta_tables(lake: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for layer in ["batch", "serving"] {
        let Ok(kinds) = std::fs::read_dir(lake.join(layer)) else {
            continue;
        };
        for kind in kinds.flatten() {
            for table in std::fs::read_dir(kind.path()).unwrap().flatten() {
                if table.path().join("_delta_log").is_dir() {
                    let (k, t) = (
                        kind.file_name().to_string_lossy().into_owned(),
                        table.file_name().to_string_lossy().into_owned(),
                    );
                    out.push(match layer {
                        "batch" => format!("{k}_{t}"),
                        _ => format!("serving_{k}_{t}"),
                    });
                }
            }
        }
    }
    out.sort();
    out
}

/// The rows of `table`, lineage columns (`_…`) dropped, as sorted JSON text.
fn rows(t: &TestCommand, lake: &Path, table: &str) -> Vec<String> {
    let mut rows: Vec<String> =
        query_rows(t, lake.to_str().unwrap(), &format!("SELECT * FROM {table}"))
            .into_iter()
            .map(|mut r| {
                if let Some(o) = r.as_object_mut() {
                    o.retain(|k, _| !k.starts_with('_'));
                }
                r.to_string()
            })
            .collect();
    rows.sort();
    rows
}

#[test]
fn posted_events_flow_through_every_layer_like_generated_ones() {
    let t = TestCommand::new();
    let generated = t.path().join("generated");
    let posted = t.path().join("posted");
    let (g, p) = (generated.to_str().unwrap(), posted.to_str().unwrap());
    // The last full hour of 5-minute intervals before now, so that the posted objects (landed
    // now) and the generated ones (landed at their interval's end, the ingest run's logical
    // date) are both behind the serving run at `serving_at` and the batch run at `batch_at`.
    // A file is cleaned as the batch run that will consume it (the first 02:00 at or after it
    // landed) cleans it, and that run's date decides which events are late or in the future:
    // the intervals end after the last 02:00, or the generated objects landed up to it would be
    // another batch run's than the posted ones (the test failed from 02:05 to 03:05 UTC). In
    // the ten minutes after 02:00 it waits for the first such interval.
    let mut now = Utc::now();
    let last_fire = (now - Duration::hours(2))
        .duration_trunc(Duration::days(1))
        .unwrap()
        + Duration::hours(2);
    let first_possible = last_fire + Duration::minutes(10);
    if now < first_possible {
        std::thread::sleep(
            (first_possible - now + Duration::seconds(1))
                .to_std()
                .unwrap(),
        );
        now = Utc::now();
    }
    let to = now.duration_trunc(Duration::minutes(5)).unwrap() - Duration::minutes(5);
    let from = (to - Duration::minutes(55)).max(last_fire + Duration::minutes(5));
    let serving_at = (now + Duration::minutes(12))
        .duration_trunc(Duration::minutes(10))
        .unwrap();
    let batch_at = (now + Duration::days(1))
        .duration_trunc(Duration::days(1))
        .unwrap()
        + Duration::hours(2);
    for stream in ["api_logs", "financial_transactions"] {
        t.run(&[
            "--lake",
            g,
            "dags",
            "backfill",
            &format!("2-{stream}_realtime_ingest"),
            "--from",
            &rfc(from),
            "--to",
            &rfc(to),
            "--fault-rate",
            "0.05",
        ])
        .assert_exit_code(0);
    }
    let api_lines = landed_lines(&generated, "api_logs");
    let fin_lines = landed_lines(&generated, "financial_transactions");
    // The bound of a full hour (more than 5,000 lines in 12 intervals), for the intervals taken.
    let intervals = ((to - from).num_minutes() / 5 + 1) as usize;
    assert!(
        api_lines.len() > 5_000 * intervals / 12,
        "{} lines in {intervals} intervals",
        api_lines.len()
    );

    // Post them: api_logs with curl in three requests, financial_transactions with requests.
    let (server, base) = serving(
        &t,
        &[
            "--lake",
            p,
            "serve",
            "--no-scheduler",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let mut sent_objects = 0;
    let mut rejected = 0;
    for (i, chunk) in api_lines.chunks(api_lines.len().div_ceil(3)).enumerate() {
        let body = t.path().join(format!("api_{i}.ndjson"));
        std::fs::write(&body, chunk.join("\n") + "\n").unwrap();
        let reply = post(&format!("{base}/ingest/api_logs"), &body, &[NDJSON]);
        assert_eq!(reply.status, 200, "{reply:?}");
        let answer = reply.json();
        let (a, r) = (
            answer["accepted"].as_u64().unwrap(),
            answer["rejected"].as_u64().unwrap(),
        );
        assert_eq!(a + r, chunk.len() as u64, "{answer}");
        rejected += r;
        sent_objects += answer["objects"].as_array().unwrap().len();
    }
    assert!(sent_objects > 0);
    let fin_body = t.path().join("fin.ndjson");
    std::fs::write(&fin_body, fin_lines.join("\n") + "\n").unwrap();
    let answer = python(
        r#"
import json, sys, requests
body = open(sys.argv[2], "rb").read()
r = requests.post(sys.argv[1] + "/ingest/financial_transactions", data=body,
                  headers={"Content-Type": "application/x-ndjson"}, timeout=120)
r.raise_for_status()
print(json.dumps(r.json()))
"#,
        &[&base, fin_body.to_str().unwrap()],
    );
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["accepted"].as_u64().unwrap() + answer["rejected"].as_u64().unwrap(),
        fin_lines.len() as u64
    );
    drop(server);
    // Lines that are not JSON objects were answered as errors and not landed; every other
    // line was landed as sent.
    let mut landed = landed_lines(&posted, "api_logs");
    let mut expected: Vec<String> = api_lines
        .iter()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()))
        .cloned()
        .collect();
    assert_eq!(expected.len() as u64 + rejected, api_lines.len() as u64);
    landed.sort();
    expected.sort();
    assert_eq!(landed, expected, "posted api_logs lines landed as sent");

    // The same serving run, then the same batch run, on both lakes.
    for lake in [g, p] {
        for (dag, at) in [
            ("4-serving_layer_merge", serving_at),
            ("3-batch_etl_all_streams", batch_at),
        ] {
            run_dag_at(&t, lake, dag, at);
        }
    }
    let tables = delta_tables(&generated);
    assert_eq!(tables, delta_tables(&posted));
    let mut compared = BTreeMap::new();
    for table in &tables {
        let (mut a, b) = (rows(&t, &generated, table), rows(&t, &posted, table));
        if table.starts_with("bronze_") || table.starts_with("quarantine_") {
            // The generator lands its malformed lines; the API answered them as errors. The
            // other rows are the same.
            let before = a.len();
            a.retain(|r| b.binary_search(r).is_ok());
            let dropped = (before - a.len()) as u64;
            if table == "bronze_api_logs" || table == "quarantine_api_logs" {
                assert_eq!(dropped, rejected, "{table}");
            }
        }
        assert_eq!(a.len(), b.len(), "{table}: row counts");
        assert!(a == b, "{table}: rows differ");
        compared.insert(table.clone(), a.len());
    }
    for must in [
        "bronze_api_logs",
        "silver_api_logs",
        "quarantine_api_logs",
        "gold_fact_api_hourly",
        "silver_financial_transactions",
        "serving_unified_api_logs",
    ] {
        assert!(
            compared.get(must).is_some_and(|n| *n > 0),
            "{must}: {compared:?}"
        );
    }
    // Queryable: the posted events by endpoint.
    let by_endpoint = query_rows(
        &t,
        p,
        "SELECT endpoint, count(*) AS n FROM silver_api_logs GROUP BY endpoint ORDER BY endpoint",
    );
    assert!(by_endpoint.len() >= 5, "{by_endpoint:?}");
}
