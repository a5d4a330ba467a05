//! The scheduler on temp local lakes: simulate over a day (and the web UI over that day, in a
//! browser: `web`), idempotent re-runs, retries and upstream_failed, kill -9 and resume, the
//! lease, backfill, dags test, tasks run and clear, pause, logs and the Airflow export.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::util::{STREAMS, TestCommand, files_under, query_rows};

const DAY_FROM: &str = "2026-02-01T00:00:00Z";
const DAY_TO: &str = "2026-02-02T00:00:00Z";

/// [`lake_fingerprint`] of the simulated day (`--scale 0.05`, seed 42).
const SIMULATED_DAY: &[(&str, &str)] = &[
    ("bronze_api_logs", "1200 16d8aca228cca3b8"),
    ("bronze_ecommerce_clickstream", "1001 366a965552bbd74d"),
    ("bronze_financial_transactions", "360 4c9c736d24a9eeaa"),
    ("bronze_iot_sensors", "600 841f8bdcaa527ced"),
    ("bronze_social_media", "600 7fa471dc975cf080"),
    ("gold_fact_api_hourly", "24 82ebdd564f2c6818"),
    ("gold_fact_ecommerce_funnel", "5 be0c2321b36d39de"),
    ("gold_fact_ecommerce_revenue", "7 1377e43293f681ed"),
    ("gold_fact_financial_daily", "17 f9efb77ff6c0302e"),
    ("gold_fact_fraud_summary", "2 90ebdce3c88b085e"),
    ("gold_fact_iot_daily", "59 de1973965e657d96"),
    ("gold_fact_social_daily", "30 f2b3ee298188bf5d"),
    ("quarantine_api_logs", "0 e3b0c44298fc1c14"),
    ("quarantine_ecommerce_clickstream", "0 e3b0c44298fc1c14"),
    ("quarantine_financial_transactions", "0 e3b0c44298fc1c14"),
    ("quarantine_iot_sensors", "0 e3b0c44298fc1c14"),
    ("quarantine_social_media", "0 e3b0c44298fc1c14"),
    ("realtime", "c22078c3c5ede2a9"),
    ("serving_alerts_history", "217 74f2d02df21f3c48"),
    ("serving_analytics_master_summary", "5 c9b6142c6e3a436f"),
    ("serving_analytics_stream_dates", "5 3b592c3de2aa9f65"),
    ("serving_dashboards_api_health_1h", "12 07a6d1a1fcfbcd21"),
    // The time series (issue 26): the last run's hour per minute; today is empty at midnight.
    ("serving_dashboards_api_per_minute", "411 bfc4b874ffbda055"),
    (
        "serving_dashboards_ecommerce_realtime_kpi",
        "1 72ca6f9ac94b22a5",
    ),
    (
        "serving_dashboards_ecommerce_revenue_today",
        "0 e3b0c44298fc1c14",
    ),
    (
        "serving_dashboards_financial_per_minute",
        "56 72d6dd655f107fc8",
    ),
    (
        "serving_dashboards_financial_realtime_monitor",
        "1 e3dd96578cd419c9",
    ),
    (
        "serving_dashboards_iot_current_status",
        "37 c8ee023c3a9d768e",
    ),
    (
        "serving_dashboards_social_trending_2h",
        "62 6e8afc18f513b774",
    ),
    ("serving_unified_api_logs", "14400 04e23dc99533e638"),
    (
        "serving_unified_ecommerce_clickstream",
        "11989 b7bd19e36cec04b2",
    ),
    (
        "serving_unified_financial_transactions",
        "4320 482462e98f3fc4e9",
    ),
    ("serving_unified_iot_sensors", "7200 e9d658576886e153"),
    ("serving_unified_social_media", "7200 b8827b2bbfe89b32"),
    ("silver_api_logs", "1200 5e8e0659bf090d28"),
    ("silver_ecommerce_clickstream", "1001 20d04d93235365ba"),
    ("silver_financial_transactions", "360 8e350f33446c8c23"),
    ("silver_iot_sensors", "600 c4184cbbc4706ae5"),
    ("silver_social_media", "600 29c871885f63c0ca"),
];

/// Runs by DAG and state, from `runs list --json`.
fn run_counts(t: &TestCommand) -> BTreeMap<String, BTreeMap<String, u64>> {
    let r = t.run(&["--lake", "lake", "--json", "runs", "list"]);
    r.assert_exit_code(0);
    let mut m: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for run in r.json().as_array().unwrap() {
        *m.entry(run["dag_id"].as_str().unwrap().into())
            .or_default()
            .entry(run["state"].as_str().unwrap().into())
            .or_default() += 1;
    }
    m
}

/// Every object under `realtime/` with its bytes.
/// The speed layer's objects as the lake's store lists them. object_store's local store writes
/// `key#N` and renames it to `key`; a kill -9 between the two leaves the staging file, which no
/// listing or read of the store ever returns (it skips names ending in `#` and digits), so it is
/// not an object.
fn realtime_objects(t: &TestCommand) -> BTreeMap<String, Vec<u8>> {
    let staging = |f: &str| {
        f.rsplit_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    files_under(&t.lake())
        .into_iter()
        .filter(|f| f.starts_with("realtime/") && !staging(f))
        .map(|f| {
            let b = std::fs::read(t.lake().join(&f)).unwrap();
            (f, b)
        })
        .collect()
}

/// A fingerprint of what a simulated day put into the lake: a digest of every speed-layer
/// object (key and bytes), and of every Delta table's rows (sorted; floats to 6 decimals, as
/// DataFusion's parallel sums may add in another order). Run records (with timings) are not
/// part of it.
pub(crate) fn lake_fingerprint(t: &TestCommand) -> BTreeMap<String, String> {
    use sha2::Digest as _;
    fn rounded(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                *v = serde_json::Value::String(format!("{:.6}", n.as_f64().unwrap_or(0.0)));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(rounded),
            serde_json::Value::Object(o) => o.values_mut().for_each(rounded),
            _ => {}
        }
    }
    let hex = |d: &[u8]| {
        d[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut out = BTreeMap::new();
    let mut h = sha2::Sha256::new();
    for (k, b) in realtime_objects(t) {
        h.update(k.as_bytes());
        h.update(&b);
    }
    out.insert("realtime".to_string(), hex(&h.finalize()));
    for (name, _) in crate::readers::tables(&t.lake()) {
        let mut rows: Vec<String> = query_rows(t, "lake", &format!("SELECT * FROM {name}"))
            .into_iter()
            .map(|mut r| {
                rounded(&mut r);
                r.to_string()
            })
            .collect();
        rows.sort();
        let mut h = sha2::Sha256::new();
        for r in &rows {
            h.update(r.as_bytes());
            h.update(b"\n");
        }
        out.insert(name, format!("{} {}", rows.len(), hex(&h.finalize())));
    }
    out
}

fn read_json(t: &TestCommand, key: &str) -> serde_json::Value {
    let p = t.lake().join(key);
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&b).unwrap()
}

#[test]
fn simulate_one_day_records_every_run_and_a_rerun_adds_nothing() {
    // The built-in pipeline declaration as `pipeline show` prints it, read back from a file:
    // the lake must be the one made before pipelines were declared as data (issue 25).
    let t = TestCommand::new();
    let show = t.run(&["pipeline", "show"]);
    show.assert_exit_code(0);
    let file = t.path().join("pipeline.toml");
    std::fs::write(&file, show.stdout()).unwrap();
    let t = t.env("LAKEPIPE_PIPELINE", file.to_str().unwrap());
    let r = t.run(&[
        "--lake", "lake", "--json", "simulate", "--from", DAY_FROM, "--to", DAY_TO, "--scale",
        "0.05",
    ]);
    r.assert_exit_code(0);
    let summary = r.json();
    assert_eq!(summary["executed"], 288 * 5 + 144 + 24 + 1);

    let counts = run_counts(&t);
    for s in STREAMS {
        let dag = format!("2-{s}_realtime_ingest");
        assert_eq!(
            counts[&dag],
            BTreeMap::from([("success".into(), 288)]),
            "{dag}"
        );
    }
    assert_eq!(
        counts["4-serving_layer_merge"],
        BTreeMap::from([("success".into(), 144)])
    );
    assert_eq!(
        counts["5-lake_catalog_refresh"],
        BTreeMap::from([("success".into(), 24)])
    );
    assert_eq!(
        counts["3-batch_etl_all_streams"],
        BTreeMap::from([("success".into(), 1)])
    );
    assert!(
        !counts.contains_key("1-infra_s3_bootstrap"),
        "manual DAGs never fire"
    );

    // The serving run's task log says what it did.
    let log = t.run(&[
        "--lake",
        "lake",
        "logs",
        "4-serving_layer_merge",
        "2026-02-01T01:00:00Z",
        "unified_api_logs",
    ]);
    log.assert_exit_code(0);
    assert!(
        log.stdout()
            .contains("serving/unified/api_logs: appending to"),
        "{}",
        log.stdout()
    );
    for task in [
        "bronze_api_logs",
        "silver_api_logs",
        "gold_fact_api_hourly",
        "compact",
    ] {
        let ti = read_json(
            &t,
            &format!("_lakepipe/runs/3-batch_etl_all_streams/20260201T020000Z/tasks/{task}.json"),
        );
        assert_eq!(ti["state"], "success", "{task}: {ti}");
    }

    // One object per stream and 5-minute interval, named after the interval start, holding
    // only events of that interval.
    let objects = realtime_objects(&t);
    for s in STREAMS {
        let mine: Vec<_> = objects
            .keys()
            .filter(|k| k.starts_with(&format!("realtime/{s}/")))
            .collect();
        assert_eq!(mine.len(), 288, "{s}");
    }
    let key = "realtime/api_logs/date=2026-02-01/hour=13/api_logs_20260201T135500Z.jsonl";
    let body = String::from_utf8(objects[key].clone()).unwrap();
    assert_eq!(
        body.lines().count(),
        50,
        "api_logs 1000 per run at scale 0.05"
    );
    for line in body.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = v["event_time"].as_str().unwrap();
        assert!(
            ("2026-02-01T13:55:00".."2026-02-01T14:00:00").contains(&ts),
            "{ts}"
        );
    }
    let ti = read_json(
        &t,
        "_lakepipe/runs/2-api_logs_realtime_ingest/20260201T140000Z/tasks/ingest.json",
    );
    assert_eq!(ti["state"], "success");
    assert_eq!(ti["output"]["objects"][0]["key"], key);
    assert_eq!(ti["output"]["objects"][0]["outcome"], "created");

    // The same lake as before real events came in (issue 24) and before the pipeline was
    // declared as data (issue 25): the speed-layer objects and every table's rows, as a
    // simulated day of main at 36bc89a made them.
    let fingerprint = lake_fingerprint(&t);
    let expected: BTreeMap<String, String> = SIMULATED_DAY
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(fingerprint, expected);

    // The same simulation again: nothing runs, nothing is written.
    let lake_before = files_under(&t.lake());
    let again = t.run(&[
        "--lake", "lake", "--json", "simulate", "--from", DAY_FROM, "--to", DAY_TO, "--scale",
        "0.05",
    ]);
    again.assert_exit_code(0);
    assert_eq!(again.json()["executed"], 0);
    assert_eq!(again.json()["already_done"], 288 * 5 + 144 + 24 + 1);
    assert_eq!(files_under(&t.lake()), lake_before);
    assert_eq!(realtime_objects(&t), objects);
    assert_eq!(run_counts(&t), counts);

    // The same lake in the web UI, in a real browser (one simulated day is the expensive part).
    crate::web::browse_the_one_day_lake(&t);
}

#[test]
fn a_failing_task_is_retried_with_backoff_then_fails_and_downstream_is_upstream_failed() {
    let t = TestCommand::new();
    let dag = "2-api_logs_realtime_ingest";
    let r = t.run(&[
        "--lake",
        "lake",
        "simulate",
        "--from",
        DAY_FROM,
        "--to",
        "2026-02-01T00:05:00Z",
        "--dag",
        dag,
        "--fail-task",
        &format!("{dag}:ingest"),
    ]);
    r.assert_exit_code(1);
    let ti = read_json(
        &t,
        &format!("_lakepipe/runs/{dag}/20260201T000500Z/tasks/ingest.json"),
    );
    assert_eq!(ti["state"], "failed");
    let attempts = ti["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "1 try + 3 retries");
    // Exponential back-off (10 s, 20 s, 40 s, +≤25 % jitter) on the simulated clock.
    let starts: Vec<chrono::DateTime<chrono::Utc>> = attempts
        .iter()
        .map(|a| a["start_date"].as_str().unwrap().parse().unwrap())
        .collect();
    for (i, base) in [10, 20, 40].into_iter().enumerate() {
        let gap = (starts[i + 1] - starts[i]).num_milliseconds() as f64 / 1000.0;
        assert!(
            gap >= base as f64 && gap <= base as f64 * 1.25 + 0.01,
            "retry {} after {gap} s",
            i + 1
        );
    }
    assert!(attempts.iter().all(|a| a["state"] == "failed"));
    let verify = read_json(
        &t,
        &format!("_lakepipe/runs/{dag}/20260201T000500Z/tasks/verify.json"),
    );
    assert_eq!(verify["state"], "upstream_failed");
    assert_eq!(verify["attempts"].as_array().unwrap().len(), 0);

    let runs = t.run(&[
        "--lake", "lake", "--json", "runs", "list", "--state", "failed",
    ]);
    runs.assert_exit_code(0);
    let runs = runs.json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(
        runs[0]["failed_tasks"],
        serde_json::json!(["ingest", "verify"])
    );

    for attempt in ["1", "4"] {
        let log = t.run(&[
            "--lake",
            "lake",
            "logs",
            dag,
            "2026-02-01T00:05:00Z",
            "ingest",
            "--attempt",
            attempt,
        ]);
        log.assert_exit_code(0);
        assert!(
            log.stdout().contains(&format!("try {attempt}/4")),
            "{}",
            log.stdout()
        );
        assert!(
            log.stdout().contains("injected failure"),
            "{}",
            log.stdout()
        );
    }
    // Nothing was landed by the failing task.
    assert!(realtime_objects(&t).is_empty());

    // Re-running the failed run (backfill --reprocess failed) without the fault succeeds.
    let b = t.run(&[
        "--lake",
        "lake",
        "dags",
        "backfill",
        dag,
        "--from",
        "2026-02-01T00:05:00Z",
        "--to",
        "2026-02-01T00:05:00Z",
        "--reprocess",
        "failed",
    ]);
    b.assert_exit_code(0);
    let ti = read_json(
        &t,
        &format!("_lakepipe/runs/{dag}/20260201T000500Z/tasks/ingest.json"),
    );
    assert_eq!(ti["state"], "success");
    assert_eq!(
        ti["attempts"].as_array().unwrap().len(),
        5,
        "history kept, try numbers continue"
    );
    assert_eq!(realtime_objects(&t).len(), 1);
}

fn count_run_records(t: &TestCommand) -> usize {
    files_under(&t.lake())
        .iter()
        .filter(|f| f.starts_with("_lakepipe/runs/") && f.ends_with("/run.json"))
        .count()
}

#[test]
fn kill_9_four_times_then_rerun_gives_the_same_objects_as_an_uninterrupted_run() {
    let args = [
        "--lake",
        "lake",
        "simulate",
        "--from",
        DAY_FROM,
        "--to",
        "2026-02-01T06:00:00Z",
        "--scale",
        "0.2",
        "--fault-rate",
        "0.02",
    ];
    let reference = TestCommand::new();
    reference.run(&args).assert_exit_code(0);

    // Four kills (the short variant of `bench/chaos.sh`): each restart resumes, and is killed
    // again a little further on, at a seeded moment after its threshold of run records.
    let t = TestCommand::new();
    let mut seeded = <rand_pcg::Pcg32 as rand::SeedableRng>::seed_from_u64(26_12_05);
    for threshold in [80, 160, 240, 320] {
        let mut child = t.command(&args).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while count_run_records(&t) < threshold {
            assert!(Instant::now() < deadline, "simulate made no progress");
            assert!(
                child.try_wait().unwrap().is_none(),
                "simulate ended before it was killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pause = rand::Rng::random_range(&mut seeded, 0..300);
        std::thread::sleep(Duration::from_millis(pause));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            t.lake().join("_lakepipe/scheduler.lease").exists(),
            "the killed process left its lease"
        );
    }

    let resumed = t.run(&args);
    assert!(
        resumed.stderr().contains("is gone; taking over"),
        "{}",
        resumed.stderr()
    );
    resumed.assert_exit_code(0);
    assert_eq!(
        realtime_objects(&t),
        realtime_objects(&reference),
        "same keys, same bytes"
    );
    assert_eq!(run_counts(&t), run_counts(&reference));
    // Every table — bronze to gold, unified, dashboards, alerts — as in the uninterrupted run.
    assert_eq!(lake_fingerprint(&t), lake_fingerprint(&reference));
    // The serving tables, wherever the kill hit them, hold what the uninterrupted run holds.
    for (stream, id) in [
        ("api_logs", "log_id"),
        ("financial_transactions", "transaction_id"),
    ] {
        let sql = format!(
            "SELECT date, count(*) AS n, count(DISTINCT {id}) AS ids FROM serving_unified_{stream} GROUP BY date ORDER BY date"
        );
        let ours = query_rows(&t, "lake", &sql);
        assert!(
            ours.iter().all(|r| r["n"] == r["ids"]),
            "{stream}: {ours:?}"
        );
        assert_eq!(ours, query_rows(&reference, "lake", &sql), "{stream}");
    }
    assert!(
        !t.lake().join("_lakepipe/scheduler.lease").exists(),
        "released at exit"
    );
}

/// Waits until the queued manual api_logs run at `compact_date` has been run by `up` and has
/// left the queue. The queue entry goes after the run is recorded (a kill between the two runs
/// it again, as the run's own idempotence allows), so a check right after `success` may still
/// see it.
fn wait_for_manual_success(t: &TestCommand, compact_date: &str) {
    let run_json = t.lake().join(format!(
        "_lakepipe/runs/2-api_logs_realtime_ingest/{compact_date}/run.json"
    ));
    let queue = t.lake().join("_lakepipe/queue");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&run_json).unwrap()).unwrap();
        let queued = files_under(&queue);
        if run["state"] == "success" && queued.is_empty() {
            assert_eq!(run["run_type"], "manual");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queued run never ran or never left the queue: {run}; queue {queued:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_scheduler_is_refused_and_a_trigger_is_queued_for_the_running_one() {
    let t = TestCommand::new();
    let mut up = t
        .command(&["--lake", "lake", "up", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ui = crate::web::ui_address(&mut up);
    let lease = t.lake().join("_lakepipe/scheduler.lease");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lease.exists() {
        assert!(Instant::now() < deadline, "up never took the lease");
        assert!(up.try_wait().unwrap().is_none(), "up exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = t.run(&[
        "--lake",
        "lake",
        "simulate",
        "--from",
        DAY_FROM,
        "--to",
        "2026-02-01T00:10:00Z",
    ]);
    second.assert_exit_code(1);
    let err = second.stderr();
    assert!(
        err.contains("another scheduler is running on this lake"),
        "{err}"
    );
    assert!(err.contains("lakepipe up"), "{err}");
    let trigger = t.run(&[
        "--lake",
        "lake",
        "dags",
        "trigger",
        "2-api_logs_realtime_ingest",
        "--logical-date",
        "2026-02-01T00:05:00Z",
    ]);
    // A trigger is not refused: it is queued for the running scheduler, which runs it.
    trigger.assert_exit_code(0);
    assert!(
        trigger
            .stdout()
            .contains("queued for the running scheduler (`lakepipe up`"),
        "{}",
        trigger.stdout()
    );
    wait_for_manual_success(&t, "20260201T000500Z");
    assert!(
        t.lake()
            .join("realtime/api_logs/date=2026-02-01/hour=00/api_logs_20260201T000000Z.jsonl")
            .exists()
    );

    // The UI that `up` serves: a trigger there is recorded the same way and run by `up`.
    let (status, body) = crate::web::post(
        &ui,
        "/api/dags/2-api_logs_realtime_ingest/trigger?logical_date=2026-02-01T00:10:00Z",
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["run"]["state"], "queued");
    assert_eq!(body["scheduler"]["command"], "up", "{body}");
    wait_for_manual_success(&t, "20260201T001000Z");
    let (status, body) = crate::web::post(
        &ui,
        "/api/dags/2-api_logs_realtime_ingest/trigger?logical_date=2026-02-01T00:10:00Z",
    );
    assert_eq!(status, 409, "a finished run is not triggered again: {body}");

    // Real events beside the generator DAGs: `up` answers the ingest API on the same address,
    // and the triggered generator run above succeeded next to it.
    let line = r#"{"log_id":"00000000-0000-4000-8000-000000000001","event_time":"2026-02-01T00:07:00Z","endpoint":"/api/v1/users"}"#;
    let body = t.path().join("one.ndjson");
    std::fs::write(&body, format!("{line}\n")).unwrap();
    let reply = crate::ingest::post(
        &format!("{ui}/ingest/api_logs"),
        &body,
        &[crate::ingest::NDJSON],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let answer = reply.json();
    assert_eq!(answer["accepted"], 1, "{answer}");
    let key = answer["objects"][0].as_str().unwrap();
    assert!(key.contains("/api_logs_") && key.contains("_api-"), "{key}");
    assert_eq!(
        std::fs::read_to_string(t.lake().join(key)).unwrap(),
        format!("{line}\n")
    );

    // SIGTERM: up finishes in-flight work, releases the lease and exits 0.
    std::process::Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap();
    let status = up.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!lease.exists());
    // The live scheduler ran the latest fire time of each ingest DAG (catchup off).
    let counts = run_counts(&t);
    assert!(
        counts.contains_key("2-api_logs_realtime_ingest"),
        "{counts:?}"
    );
    // With the lease released, another scheduler may start; the triggered run is not repeated.
    let after = t.run(&[
        "--lake",
        "lake",
        "--json",
        "simulate",
        "--from",
        DAY_FROM,
        "--to",
        "2026-02-01T00:10:00Z",
        "--dag",
        "2-api_logs_realtime_ingest",
    ]);
    after.assert_exit_code(0);
    assert_eq!(after.json()["executed"], 0);
    assert_eq!(after.json()["already_done"], 2);
}

#[test]
fn backfill_dags_test_and_tasks_run_behave_like_airflow() {
    let t = TestCommand::new();
    let dag = "2-iot_sensors_realtime_ingest";
    // dags test: runs in-process, prints the task logs, records nothing.
    let test = t.run(&[
        "--lake",
        "lake",
        "dags",
        "test",
        dag,
        "--logical-date",
        "2026-02-01T00:05:00Z",
    ]);
    test.assert_exit_code(0);
    assert!(
        test.stderr().contains("generated 500 iot_sensors events"),
        "{}",
        test.stderr()
    );
    assert!(!t.lake().join("_lakepipe/runs").exists());
    assert!(!t.lake().join("logs").exists());
    assert_eq!(realtime_objects(&t).len(), 1);

    // backfill is inclusive of both ends; a second pass with --reprocess none does nothing,
    // --reprocess all runs everything again and lands nothing new.
    let args = |re: &str| {
        t.run(&[
            "--lake",
            "lake",
            "--json",
            "dags",
            "backfill",
            dag,
            "--from",
            "2026-02-01T00:05:00Z",
            "--to",
            "2026-02-01T01:00:00Z",
            "--reprocess",
            re,
        ])
    };
    let first = args("none");
    first.assert_exit_code(0);
    assert_eq!(first.json()["executed"], 12);
    let objects = realtime_objects(&t);
    assert_eq!(objects.len(), 12);
    assert_eq!(args("none").json()["executed"], 0);
    let all = args("all");
    all.assert_exit_code(0);
    assert_eq!(all.json()["executed"], 12);
    assert_eq!(realtime_objects(&t), objects);
    let ti = read_json(
        &t,
        &format!("_lakepipe/runs/{dag}/20260201T010000Z/tasks/ingest.json"),
    );
    assert_eq!(ti["output"]["objects"][0]["outcome"], "already_present");

    // tasks run: one attempt, recorded; Airflow's rendering of the logical date is accepted.
    let other = "2-financial_transactions_realtime_ingest";
    let early = t.run(&[
        "--lake",
        "lake",
        "tasks",
        "run",
        other,
        "verify",
        "--logical-date",
        "2026-02-01 00:05:00+00:00",
    ]);
    early.assert_exit_code(1);
    assert!(
        early.stderr().contains("upstream task ingest"),
        "{}",
        early.stderr()
    );
    for task in ["ingest", "verify"] {
        t.run(&[
            "--lake",
            "lake",
            "tasks",
            "run",
            other,
            task,
            "--logical-date",
            "2026-02-01 00:05:00+00:00",
        ])
        .assert_exit_code(0);
    }
    let run = read_json(
        &t,
        &format!("_lakepipe/runs/{other}/20260201T000500Z/run.json"),
    );
    assert_eq!(run["state"], "success");
    assert_eq!(run["run_type"], "external");
    let log = t.run(&[
        "--lake",
        "lake",
        "logs",
        other,
        "2026-02-01T00:05:00Z",
        "verify",
    ]);
    assert!(
        log.stdout().contains("verified 1 objects, 300 lines"),
        "{}",
        log.stdout()
    );

    // Unknown names get one clear line and exit 1; bad flags exit 2.
    let bad = t.run(&["--lake", "lake", "dags", "show", "nope"]);
    bad.assert_exit_code(1);
    assert!(bad.stderr().contains("no DAG `nope`"), "{}", bad.stderr());
    t.run(&["--lake", "lake", "runs", "list", "--state", "exploded"])
        .assert_exit_code(2);
}

#[test]
fn dags_list_show_and_airflow_export() {
    let t = TestCommand::new();
    let list = t.run(&["--json", "dags", "list"]);
    list.assert_exit_code(0);
    let dags = list.json();
    let ids: Vec<&str> = dags
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 9);
    assert!(ids.contains(&"2-ecommerce_clickstream_realtime_ingest"));
    let serving = dags
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dag_id"] == "4-serving_layer_merge")
        .unwrap();
    assert_eq!(serving["schedule"], "*/10 * * * *");
    // Every DAG has a body for every task now.
    assert_eq!(serving["available"], true);
    assert!(
        dags.as_array()
            .unwrap()
            .iter()
            .all(|d| d["available"] == true),
        "{dags}"
    );

    let show = t.run(&["--json", "dags", "show", "3-batch_etl_all_streams"]);
    show.assert_exit_code(0);
    let edges = show.json()["edges"].clone();
    assert!(edges.as_array().unwrap().contains(&serde_json::json!([
        "silver_iot_sensors",
        "gold_fact_iot_daily"
    ])));

    let ex = t.run(&[
        "--lake",
        "lake",
        "airflow",
        "export",
        "--out",
        "dags",
        "--binary",
        "/usr/local/bin/lakepipe",
    ]);
    ex.assert_exit_code(0);
    let files = files_under(&t.path().join("dags"));
    assert_eq!(files.len(), 9, "{files:?}");
    let py = std::fs::read_to_string(t.path().join("dags/lakepipe_2_api_logs_realtime_ingest.py"))
        .unwrap();
    assert!(py.contains(r#"DAG_ID = "2-api_logs_realtime_ingest""#));
    assert!(py.contains(r#"CronTriggerTimetable("*/5 * * * *", timezone="UTC")"#));
    assert!(py.contains(r#"tasks["ingest"] >> tasks["verify"]"#));
    assert!(py.contains("/usr/local/bin/lakepipe"));
    assert!(
        py.contains(&t.lake().display().to_string()),
        "absolute lake path"
    );
}
