//! The serving layer on a local lake (and on moto): after every serving run, per stream and event
//! date, the unified table holds each valid landed event exactly once — before the batch run,
//! right after it, and when a late file arrives for a date the batch already closed — checked
//! on every Delta version by an independent reader (the `deltalake` Python package); and the
//! dashboards, alerts and master summary describe the unified data of their windows.

use std::collections::{BTreeMap, BTreeSet};

use crate::util::{TestCommand, python, query_rows, s3_server};

const STREAMS: [(&str, &str); 5] = [
    ("iot_sensors", "reading_id"),
    ("api_logs", "log_id"),
    ("social_media", "event_id"),
    ("ecommerce_clickstream", "event_id"),
    ("financial_transactions", "transaction_id"),
];

/// Every version of every unified table (its serving run and its rows per date and source),
/// and the final silver rows (date, the ingest run that first landed them), read by the
/// deltalake Python package. Future-dated events that a batch run rejected as "in the future"
/// and a later recompute of their date accepted (their validity changes with time) are
/// counted apart (`later`): they may appear only once a batch run has accepted them.
const VERSIONS: &str = r#"
import json, os, sys
from datetime import datetime, timedelta
import pyarrow as pa, pyarrow.compute as pc
from deltalake import DeltaTable
lake, streams = sys.argv[1], json.loads(sys.argv[2])

def consuming_batch(ingest):  # the first 02:00 at or after the ingest run
    t = datetime.strptime(ingest, "%Y-%m-%dT%H:%M:%SZ")
    c = t.replace(hour=2, minute=0, second=0)
    return c if t <= c else c + timedelta(days=1)

out = {}
for s, idc in streams:
    silver = DeltaTable(f"{lake}/batch/silver/{s}").to_pyarrow_table(columns=["date", idc, "event_time", "_ingest_run"])
    later = set()
    rows = []
    for d, i, e, r in zip(silver["date"].to_pylist(), silver[idc].to_pylist(), silver["event_time"].to_pylist(), silver["_ingest_run"].to_pylist()):
        if e.replace(tzinfo=None) > consuming_batch(r):
            later.add(i)
        rows.append([d, r, i in later])
    later_ids = pa.array(sorted(later), type=pa.string())
    dt = DeltaTable(f"{lake}/serving/unified/{s}")
    versions = []
    for h in sorted(dt.history(), key=lambda h: h["version"]):
        dt.load_as_version(h["version"])
        t = dt.to_pyarrow_table(columns=["date", idc, "_source"])
        t = t.append_column("later", pc.is_in(t[idc].cast(pa.string()), value_set=later_ids))
        g = t.group_by(["date", "_source", "later"]).aggregate([(idc, "count"), (idc, "count_distinct")])
        versions.append({
            "version": h["version"],
            "run": h.get("lakepipe.serving_run"),
            "groups": [[r["date"], r["_source"], r["later"], r[idc + "_count"], r[idc + "_count_distinct"]]
                       for r in g.to_pylist()],
        })
    out[s] = {"versions": versions, "silver": rows}
print(json.dumps(out), flush=True)
os._exit(0)
"#;

fn query(t: &TestCommand, sql: &str) -> Vec<serde_json::Value> {
    query_rows(t, t.lake().to_str().unwrap(), sql)
}

fn count(t: &TestCommand, sql: &str) -> u64 {
    let rows = query(t, sql);
    rows[0]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_u64()
        .unwrap()
}

fn read_json(t: &TestCommand, key: &str) -> serde_json::Value {
    let p = t.lake().join(key);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))).unwrap()
}

/// `late-0..3` plus copies of two lines of an already consumed file of the same date.
fn plant_late_file(t: &TestCommand) {
    let lake = t.lake();
    let day = lake.join("realtime/api_logs/date=2026-02-01");
    let consumed = day.join("hour=22");
    let first = std::fs::read_dir(&consumed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let copies: Vec<String> = std::fs::read_to_string(first)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"log_id\""))
        .take(2)
        .map(str::to_string)
        .collect();
    let mut body = String::new();
    for i in 0..3 {
        body.push_str(&format!(
            "{{\"log_id\":\"late-{i}\",\"event_time\":\"2026-02-01T12:00:0{i}Z\",\"request_id\":\"r\",\"method\":\"GET\",\"endpoint\":\"/api/v1/users\",\"status_code\":200,\"response_time_ms\":10.0,\"client_ip\":\"10.0.0.1\",\"user_agent\":\"ua\",\"region\":\"us-east-1\",\"api_key_id\":\"k\",\"bytes_sent\":1,\"bytes_received\":1}}\n"
        ));
    }
    for c in copies {
        body.push_str(&c);
        body.push('\n');
    }
    let late = day.join("hour=12/api_logs_20260202T022000Z_late.jsonl");
    std::fs::create_dir_all(late.parent().unwrap()).unwrap();
    std::fs::write(&late, body).unwrap();
}

#[test]
fn every_serving_run_counts_each_event_once_and_dashboards_alerts_describe_their_windows() {
    // Every serving run also evaluates the declared SQL over the Delta tables and fails if the
    // incremental windows gave any other row (the differential check).
    let t = TestCommand::new().env("LAKEPIPE_SERVING_VERIFY", "1");
    // The check of every Delta version below reads versions a day older than the last run:
    // their files must not be vacuumed yet (the default keeps removed files 24 h).
    std::fs::write(
        t.path().join("lakepipe.toml"),
        "[upkeep]\nretention_hours = 168\nlog_retention_hours = 720\n",
    )
    .unwrap();
    let lake = t.lake();
    let l = lake.to_str().unwrap();
    let sim = |from: &str, to: &str| {
        t.run(&[
            "--lake",
            l,
            "simulate",
            "--from",
            from,
            "--to",
            to,
            "--scale",
            "0.05",
            "--fault-rate",
            "0.03",
        ])
        .assert_exit_code(0);
    };
    let run_dag = |dag: &str, at: &str| {
        t.run(&[
            "--lake", l, "dags", "backfill", dag, "--from", at, "--to", at,
        ])
        .assert_exit_code(0);
    };
    let late_rows = |t: &TestCommand| -> BTreeMap<String, u64> {
        query(
            t,
            "SELECT _source, count(*) AS n FROM serving_unified_api_logs WHERE log_id LIKE 'late-%' GROUP BY _source",
        )
        .iter()
        .map(|r| (r["_source"].as_str().unwrap().to_string(), r["n"].as_u64().unwrap()))
        .collect()
    };

    // Speed layer, then the batch run at 02:00 closes 2026-02-01, then two serving runs.
    sim("2026-02-01T21:00:00Z", "2026-02-02T02:20:00Z");
    // A late file for the closed date, with two copies of events the batch already holds.
    plant_late_file(&t);
    sim("2026-02-02T02:20:00Z", "2026-02-02T02:40:00Z");
    assert_eq!(late_rows(&t), BTreeMap::from([("speed".into(), 3)]));
    // The two copies were dropped by the append that read the late file: their ids were in
    // the date's id filter and then found in the table.
    let ti = read_json(
        &t,
        "_lakepipe/runs/4-serving_layer_merge/20260202T023000Z/tasks/unified_api_logs.json",
    );
    assert_eq!(ti["output"]["mode"], "append", "{ti}");
    assert!(
        ti["output"]["ids_already_held"].as_u64().unwrap() >= 2,
        "{ti}"
    );

    // Appends leave their small files to `upkeep`: a unified run makes one commit and never
    // compacts; each run's id filter looked up only the ids it may hold.
    let ti = read_json(
        &t,
        "_lakepipe/runs/4-serving_layer_merge/20260201T230000Z/tasks/unified_api_logs.json",
    );
    assert_eq!(ti["output"]["mode"], "append", "{ti}");
    assert!(ti["output"].get("compacted").is_none(), "{ti}");
    let read = ti["output"]["speed_rows_read"].as_u64().unwrap() as usize;
    let looked_up = ti["output"]["ids_looked_up"].as_u64().unwrap() as usize;
    assert!(looked_up < read, "{ti}");
    // The alerts table: each run appends a file to its date's partition, merged on the hour.
    // The alerts table too: each run appends a file to its date's partition, merged on the hour.
    let ti = read_json(
        &t,
        "_lakepipe/runs/4-serving_layer_merge/20260201T230000Z/tasks/alerts.json",
    );
    let c = &ti["output"]["compacted"];
    assert!(
        c["files_removed"].as_u64().unwrap() >= 2 && c["files_added"].as_u64().unwrap() == 1,
        "{ti}"
    );
    let ti = read_json(
        &t,
        "_lakepipe/runs/4-serving_layer_merge/20260201T231000Z/tasks/alerts.json",
    );
    assert!(
        ti["output"]["compacted"].is_null(),
        "only on the hour: {ti}"
    );

    // Dashboards at 02:40 describe their windows of the unified tables.
    let in_window = |stream: &str, from: &str| {
        count(
            &t,
            &format!(
                "SELECT count(*) FROM serving_unified_{stream} WHERE event_time >= '{from}' AND event_time < '2026-02-02T02:40:00Z'"
            ),
        )
    };
    let api = read_json(&t, "serving/dashboards/api_health_1h.json");
    assert_eq!(api["as_of"], "2026-02-02T02:40:00Z");
    assert_eq!(api["window"]["start"], "2026-02-02T01:40:00Z");
    let requests: u64 = api["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_count"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, in_window("api_logs", "2026-02-02T01:40:00Z"));
    let sources = &api["events_by_source"];
    assert_eq!(
        sources["batch"].as_u64().unwrap() + sources["speed"].as_u64().unwrap(),
        requests
    );
    assert!(
        sources["batch"].as_u64().unwrap() > 0 && sources["speed"].as_u64().unwrap() > 0,
        "the window spans the batch/speed boundary: {sources}"
    );
    for r in api["rows"].as_array().unwrap() {
        assert!(r["p95_ms"].as_f64().unwrap() >= r["avg_response_ms"].as_f64().unwrap() * 0.5);
    }
    // Rows in the order the dashboard's query gives (`ORDER BY a.endpoint`), not hash order.
    let endpoints: Vec<&str> = api["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["endpoint"].as_str().unwrap())
        .collect();
    assert!(endpoints.is_sorted(), "{endpoints:?}");
    let fin = read_json(&t, "serving/dashboards/financial_realtime_monitor.json");
    assert_eq!(
        fin["rows"][0]["transactions_15m"].as_u64().unwrap(),
        in_window("financial_transactions", "2026-02-02T02:25:00Z")
    );
    let iot = read_json(&t, "serving/dashboards/iot_current_status.json");
    let iot_rows = iot["rows"].as_array().unwrap();
    assert!(!iot_rows.is_empty());
    let pairs: BTreeSet<(String, String)> = iot_rows
        .iter()
        .map(|r| {
            let ts = r["timestamp"].as_str().unwrap();
            assert!(
                ("2026-02-02T02:25:00".."2026-02-02T02:40:00").contains(&ts),
                "{ts}"
            );
            (
                r["building_id"].as_str().unwrap().to_string(),
                r["sensor_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), iot_rows.len(), "one row per building and type");
    let listed: Vec<(String, String)> = iot_rows
        .iter()
        .map(|r| {
            (
                r["building_id"].as_str().unwrap().to_string(),
                r["sensor_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        listed.is_sorted(),
        "ORDER BY building_id, sensor_type: {listed:?}"
    );
    let social = read_json(&t, "serving/dashboards/social_trending_2h.json");
    let kinds: Vec<&str> = social["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.iter().filter(|k| **k == "post").count() <= 50);
    let order: Vec<(std::cmp::Reverse<&str>, u64)> = social["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                std::cmp::Reverse(r["kind"].as_str().unwrap()),
                r["rank"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(order.is_sorted(), "ORDER BY kind DESC, rank: {order:?}");
    assert!(
        kinds.contains(&"post") && kinds.contains(&"hashtag"),
        "{kinds:?}"
    );
    let kpi = read_json(&t, "serving/dashboards/ecommerce_realtime_kpi.json");
    assert_eq!(
        kpi["rows"][0]["total_events_1h"].as_u64().unwrap(),
        in_window("ecommerce_clickstream", "2026-02-02T01:40:00Z")
    );

    // Alerts: every transaction that meets the fraud rule in the windows of the serving runs
    // alerted exactly once, and fewer than 1 % of transactions alert.
    let alertable = query(
        &t,
        "SELECT transaction_id FROM serving_unified_financial_transactions
         WHERE (fraud_flag OR risk_score >= 0.9)
           AND event_time >= '2026-02-01T21:00:00Z' AND event_time < '2026-02-02T02:40:00Z'",
    );
    let alerted = query(
        &t,
        "SELECT subject, count(*) AS n FROM serving_alerts_history WHERE rule = 'fraud_transaction' GROUP BY subject",
    );
    let alertable: BTreeSet<&str> = alertable
        .iter()
        .map(|r| r["transaction_id"].as_str().unwrap())
        .collect();
    let alerted: BTreeMap<&str, u64> = alerted
        .iter()
        .map(|r| (r["subject"].as_str().unwrap(), r["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        alerted.keys().copied().collect::<BTreeSet<_>>(),
        alertable,
        "fraud alerts"
    );
    assert!(alerted.values().all(|n| *n == 1), "{alerted:?}");
    let transactions = count(
        &t,
        "SELECT count(*) FROM serving_unified_financial_transactions WHERE event_time >= '2026-02-01T21:00:00Z'",
    );
    // The rule's rate on a full day of default data (< 1 %) is checked by the generator's
    // unit test; on these ~1000 transactions allow for sampling noise.
    assert!(
        (alerted.len() as f64) < 0.02 * transactions as f64,
        "{} alerts for {transactions} transactions",
        alerted.len()
    );
    let latest = read_json(&t, "serving/alerts/latest.json");
    assert_eq!(latest["as_of"], "2026-02-02T02:40:00Z");
    // The document's last day is the table's newest 200 alerts of (T − 24 h, T], in order.
    let newest: Vec<serde_json::Value> = query(
        &t,
        "SELECT alert_id FROM serving_alerts_history
         WHERE triggered_at > '2026-02-01T02:40:00Z' AND triggered_at <= '2026-02-02T02:40:00Z'
         ORDER BY triggered_at DESC, alert_id LIMIT 200",
    )
    .iter()
    .map(|r| r["alert_id"].clone())
    .collect();
    assert!(!newest.is_empty());
    assert_eq!(
        latest["last_24h"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["alert_id"].clone())
            .collect::<Vec<_>>(),
        newest
    );
    for a in latest["last_24h"].as_array().unwrap() {
        assert!(a["rule"].is_string() && a["severity"].is_string());
        assert!(a["window_start"].as_str().unwrap() < a["window_end"].as_str().unwrap());
        assert_eq!(
            a["triggering_ids"].as_array().unwrap().len() as u64,
            a["triggering_count"].as_u64().unwrap()
        );
    }

    // The master summary counts the unified tables.
    let summary = read_json(&t, "serving/analytics/master_summary.json");
    let domains = summary["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 5);
    for d in domains {
        let stream = d["stream"].as_str().unwrap();
        assert_eq!(
            d["total_records"].as_u64().unwrap(),
            count(
                &t,
                &format!("SELECT count(*) FROM serving_unified_{stream}")
            ),
            "{stream}"
        );
    }

    // The next batch run takes the late file; the serving run after it serves it from batch.
    run_dag("3-batch_etl_all_streams", "2026-02-03T02:00:00Z");
    run_dag("4-serving_layer_merge", "2026-02-03T02:00:00Z");
    assert_eq!(late_rows(&t), BTreeMap::from([("batch".into(), 3)]));

    // Every Delta version of every unified table: each valid event landed by that run's time
    // is there exactly once. Valid events are silver's rows, now that the batch layer has
    // consumed every landed file, each with the ingest run that first landed it.
    let streams = serde_json::to_string(&STREAMS).unwrap();
    let out: serde_json::Value = serde_json::from_str(&python(VERSIONS, &[l, &streams])).unwrap();
    let mut serving_runs: BTreeSet<String> = BTreeSet::new();
    let mut at = chrono::DateTime::parse_from_rfc3339("2026-02-01T21:10:00Z").unwrap();
    while at <= chrono::DateTime::parse_from_rfc3339("2026-02-02T02:40:00Z").unwrap() {
        serving_runs.insert(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        at += chrono::Duration::minutes(10);
    }
    serving_runs.insert("2026-02-03T02:00:00Z".into());
    for (stream, _) in STREAMS {
        let o = &out[stream];
        let silver: Vec<(String, String, bool)> =
            serde_json::from_value(o["silver"].clone()).unwrap();
        let versions = o["versions"].as_array().unwrap();
        let runs: BTreeSet<String> = versions
            .iter()
            .map(|v| {
                v["run"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{stream}: unlabelled version {v}"))
                    .to_string()
            })
            .collect();
        assert_eq!(runs, serving_runs, "{stream}: one commit per serving run");
        let last_run = runs.last().unwrap().clone();
        for v in versions {
            let run = v["run"].as_str().unwrap();
            // (date, later) → count
            let mut expected: BTreeMap<(String, bool), u64> = BTreeMap::new();
            for (date, ingest, later) in &silver {
                if ingest.as_str() <= run {
                    *expected.entry((date.clone(), *later)).or_default() += 1;
                }
            }
            let mut got: BTreeMap<(String, bool), u64> = BTreeMap::new();
            for g in v["groups"].as_array().unwrap() {
                let (date, source, later, n, distinct) = (
                    g[0].as_str().unwrap(),
                    g[1].as_str().unwrap(),
                    g[2].as_bool().unwrap(),
                    g[3].as_u64().unwrap(),
                    g[4].as_u64().unwrap(),
                );
                assert_eq!(n, distinct, "{stream} at {run}: an id twice on {date}");
                *got.entry((date.to_string(), later)).or_default() += n;
                // Right after a batch run, which consumed every file landed so far, all rows
                // come from batch; before the first one, all from speed.
                if run.ends_with("T02:00:00Z") {
                    assert_eq!(source, "batch", "{stream} at {run}: {g}");
                } else if run < "2026-02-02T02:00:00Z" {
                    assert_eq!(source, "speed", "{stream} at {run}: {g}");
                }
            }
            let settled = |m: &BTreeMap<(String, bool), u64>| -> BTreeMap<String, u64> {
                m.iter()
                    .filter(|((_, later), _)| !later)
                    .map(|((d, _), n)| (d.clone(), *n))
                    .collect()
            };
            assert_eq!(
                settled(&got),
                settled(&expected),
                "{stream} after the serving run at {run}"
            );
            if run == last_run {
                assert_eq!(got, expected, "{stream} after the last serving run");
            }
        }
    }

    // The differential check ran in every serving run — in a process's first run (windows
    // rebuilt from the tables), in later ones (windows advanced by the new commits only), right
    // after the batch run, and after the late file — and every run succeeded, so the
    // incremental path gave the rows of the declared SQL at each of those logical times.
    let runs_dir = lake.join("logs/4-serving_layer_merge");
    let mut how: BTreeMap<String, String> = BTreeMap::new();
    let mut checked = 0;
    for run in std::fs::read_dir(&runs_dir).unwrap() {
        let run = run.unwrap().file_name().into_string().unwrap();
        for task in ["dashboards", "alerts"] {
            let log = std::fs::read_to_string(runs_dir.join(&run).join(task).join("attempt=1.log"))
                .unwrap();
            assert!(log.contains("verified: "), "{run} {task}: {log}");
            checked += 1;
            // Dashboards and alerts run side by side: whichever comes first advances the
            // window, the other finds it current.
            let line = log
                .lines()
                .find(|l| l.contains("window of api_logs: "))
                .unwrap_or_else(|| panic!("{run}: {log}"));
            how.entry(run.clone()).or_default().push_str(line);
        }
    }
    assert!(checked >= 2 * 32, "{checked}");
    let runs_with = |what: &str| how.iter().filter(|(_, l)| l.contains(what)).count();
    // Each simulate or backfill is a new process: its first run rebuilds, the others advance.
    assert!(runs_with("rebuilt from the table") <= 4, "{how:#?}");
    assert!(runs_with("advanced by the new commits") >= 25, "{how:#?}");
    assert!(
        how["20260202T021000Z"].contains("advanced by the new commits"),
        "after the batch run: {how:#?}"
    );
}

#[tokio::test]
async fn unified_tables_on_moto_hold_each_event_once_across_a_batch_run() {
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = server.new_bucket("serving").await;
    // The windows read from S3 too, checked against the Delta tables in every run.
    let t = server.apply(TestCommand::new().env("LAKEPIPE_SERVING_VERIFY", "1"));
    let lake = format!("s3://{bucket}/lake");
    t.run(&[
        "--lake",
        &lake,
        "simulate",
        "--from",
        "2026-02-01T23:30:00Z",
        "--to",
        "2026-02-02T02:10:00Z",
        "--scale",
        "0.05",
    ])
    .assert_exit_code(0);
    let rows = |sql: &str| query_rows(&t, &lake, sql);
    for (stream, id) in STREAMS {
        let unified = rows(&format!(
            "SELECT date, _source, count(*) AS n, count(DISTINCT {id}) AS ids FROM serving_unified_{stream} GROUP BY date, _source ORDER BY date, _source"
        ));
        let silver = rows(&format!(
            "SELECT count(*) AS n FROM silver_{stream} WHERE date = '2026-02-01'"
        ));
        let by: BTreeMap<(String, String), u64> = unified
            .iter()
            .map(|r| {
                assert_eq!(r["n"], r["ids"], "{stream}: {r}");
                (
                    (
                        r["date"].as_str().unwrap().to_string(),
                        r["_source"].as_str().unwrap().to_string(),
                    ),
                    r["n"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by.get(&("2026-02-01".into(), "batch".into())).copied(),
            silver[0]["n"].as_u64(),
            "{stream}: {by:?}"
        );
        assert!(
            !by.contains_key(&("2026-02-01".into(), "speed".into())),
            "{stream}: {by:?}"
        );
        assert!(
            by.contains_key(&("2026-02-02".into(), "speed".into())),
            "{stream}: {by:?}"
        );
    }
    let keys = server.keys(&bucket, "lake/serving/").await;
    for doc in [
        "lake/serving/dashboards/api_health_1h.json",
        "lake/serving/alerts/latest.json",
        "lake/serving/analytics/master_summary.json",
    ] {
        assert!(keys.iter().any(|k| k == doc), "{doc} in {keys:?}");
    }

    // The web UI over the S3 lake: runs, tables, dashboards, alerts and S3 request counters.
    let ui = crate::web::Ui::start(&t, &lake);
    let out = python(
        r#"
import json, re, sys, urllib.request
base = sys.argv[1]
get = lambda p: urllib.request.urlopen(base + p, timeout=60).read().decode()
dags = {d["dag_id"]: d for d in json.loads(get("/api/dags"))}
lake = json.loads(get("/api/lake"))
metrics = get("/metrics")
# The exposition as Prometheus's own client parses it, and its naming conventions: lakepipe_
# prefix, snake_case names and labels, counters exposed as <name>_total, no unit-less sizes
# or durations.
from prometheus_client.parser import text_string_to_metric_families
families, problems = [], []
snake = re.compile(r"^[a-z][a-z0-9_]*$")
for fam in text_string_to_metric_families(metrics):
    families.append((fam.name, fam.type))
    if not fam.name.startswith("lakepipe_") or not snake.match(fam.name):
        problems.append(f"name {fam.name}")
    for smp in fam.samples:
        for label in smp.labels:
            if not snake.match(label):
                problems.append(f"label {label} of {fam.name}")
    for unit_word in ("duration", "size", "latency"):
        if unit_word in fam.name and not fam.name.endswith(("_seconds", "_bytes")):
            problems.append(f"no unit in {fam.name}")
# The parser names counter samples <name>_total whatever the text says: the text is checked.
for line in metrics.splitlines():
    parts = line.split()
    if line.startswith('# TYPE ') and parts[3] == 'counter':
        stem = parts[2].removesuffix("_total")
        if not parts[2].endswith("_total"):
            problems.append(f"counter {parts[2]}")
        for sample in metrics.splitlines():
            if re.match(re.escape(stem) + r"[{ ]", sample):
                problems.append(f"counter sample {sample}")
print(json.dumps({
    "metric_families": sorted(families),
    "metric_problems": problems,
    "serving_runs": dags["4-serving_layer_merge"]["runs_by_state"],
    "batch_last": dags["3-batch_etl_all_streams"]["last_run"]["state"],
    "lake": lake["lake"],
    "silver_rows": sum(t["rows"] for t in lake["tables"] if t["layer"] == "silver"),
    "tables": len(lake["tables"]),
    "dashboards": sorted(json.loads(get("/api/dashboards"))),
    "alerts_as_of": json.loads(get("/api/alerts"))["as_of"],
    "s3_gets": [float(l.split()[-1]) for l in metrics.splitlines() if l.startswith('lakepipe_s3_requests_total{method="GET"}')],
    "grid_page": "data-state=\"success\"" in get("/dags/4-serving_layer_merge"),
}))
"#,
        &[&ui.base],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["serving_runs"], serde_json::json!({"success": 16}), "{v}");
    assert_eq!(v["batch_last"], "success");
    assert_eq!(v["lake"], lake.as_str());
    let silver: u64 = STREAMS
        .iter()
        .map(|(s, _)| {
            rows(&format!("SELECT count(*) AS n FROM silver_{s}"))[0]["n"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(v["silver_rows"], silver, "{v}");
    assert_eq!(v["dashboards"].as_array().unwrap().len(), 8, "{v}");
    assert_eq!(v["alerts_as_of"], "2026-02-02T02:10:00Z");
    assert!(v["s3_gets"][0].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["grid_page"], true);
    assert_eq!(v["metric_problems"], serde_json::json!([]), "{v}");
    for family in [
        ["lakepipe_dag_runs", "gauge"],
        ["lakepipe_task_duration_seconds", "summary"],
        ["lakepipe_s3_requests", "counter"],
        ["lakepipe_s3_retries", "counter"],
        ["lakepipe_landing_bytes", "gauge"],
    ] {
        assert!(
            v["metric_families"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(family)),
            "{family:?}: {v}"
        );
    }
    drop(ui);
}

/// `n` api_logs events of `endpoint` with event time `t`, ids `<tag>-<i>`, as NDJSON.
fn api_events(tag: &str, endpoint: &str, t: chrono::DateTime<chrono::Utc>, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"log_id\":\"{tag}-{i}\",\"event_time\":\"{}\",\"request_id\":\"r\",\"method\":\"GET\",\"endpoint\":\"{endpoint}\",\"status_code\":200,\"response_time_ms\":10.0,\"client_ip\":\"10.0.0.1\",\"user_agent\":\"ua\",\"region\":\"us-east-1\",\"api_key_id\":\"k\",\"bytes_sent\":1,\"bytes_received\":1}}\n",
                crate::util::rfc(t)
            )
        })
        .collect()
}

/// GETs `url` with curl; its JSON body.
fn get_json(url: &str) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f", url])
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn serve_runs_serving_on_each_landing_and_every_answer_carries_its_watermark() {
    use crate::ingest::{NDJSON, post};
    let t = TestCommand::new();
    let lake = t.lake();
    // No scheduled serving run (New Year only): whatever serves the posts is a live run.
    std::fs::write(
        t.path().join("lakepipe.toml"),
        "[serving]\nschedule = \"0 0 1 1 *\"\n",
    )
    .unwrap();
    let (_server, base) = crate::util::serving(
        &t,
        &[
            "--lake",
            lake.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    // One of the declared endpoints (the others are quarantined); no generator runs under serve.
    let endpoint = "/api/v1/cart";
    let dashboard = format!("{base}/api/dashboards/api_health_1h");
    // Waits (up to two minutes, so that a broken build fails instead of hanging) for the
    // dashboard to count `n` requests of the endpoint; returns the document.
    let wait_for = |n: u64| -> serde_json::Value {
        let mut doc = serde_json::Value::Null;
        for _ in 0..1200 {
            doc = get_json(&dashboard);
            let count = doc["rows"].as_array().and_then(|rows| {
                rows.iter()
                    .find(|r| r["endpoint"] == endpoint)
                    .and_then(|r| r["request_count"].as_u64())
            });
            if count == Some(n) {
                return doc;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the dashboard never counted {n} requests of {endpoint}: {doc}");
    };
    let mut objects = Vec::new();
    for (round, n) in [(0, 40u64), (1, 80)] {
        let body = t.path().join(format!("live-{round}.ndjson"));
        std::fs::write(
            &body,
            api_events(&format!("live{round}"), endpoint, chrono::Utc::now(), 40),
        )
        .unwrap();
        let reply = post(&format!("{base}/ingest/api_logs"), &body, &[NDJSON]);
        assert_eq!(reply.status, 200, "{reply:?}");
        let acked: Vec<String> = reply.json()["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_string())
            .collect();
        objects.extend(acked.clone());
        let doc = wait_for(n);
        // A live run served them: the scheduler has no run at that logical time.
        let as_of = doc["as_of"].as_str().unwrap().replace(['-', ':'], "");
        assert!(
            !lake
                .join("_lakepipe/runs/4-serving_layer_merge")
                .join(&as_of)
                .exists(),
            "{as_of} is a scheduled run"
        );
        let mark = &doc["watermark"];
        assert_eq!(mark["logical_time"], doc["as_of"], "{doc}");
        let newest = mark["streams"]["api_logs"]["newest_object"]
            .as_str()
            .unwrap();
        assert!(acked.iter().any(|o| o == newest), "{newest} of {acked:?}");
        assert!(
            mark["streams"]["api_logs"]["unified_version"]
                .as_u64()
                .is_some()
        );
        assert!(mark["newest_landed"].as_str().is_some(), "{doc}");
    }
    // The alerts document carries a watermark too.
    let alerts = get_json(&format!("{base}/api/alerts"));
    assert!(alerts.to_string().contains("\"watermark\""), "{alerts}");
    // Live runs leave no run records of their own: the scheduler's are at its 10-minute slots.
    let runs = lake.join("_lakepipe/runs/4-serving_layer_merge");
    for r in std::fs::read_dir(&runs).into_iter().flatten() {
        let name = r.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with("000Z"), "{name}");
    }
}
