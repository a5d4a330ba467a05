//! Issue 26, item 3: "File count and log length of every serving table stay bounded over two
//! simulated days at a 1-minute tick." A one-stream pipeline is served every minute
//! (`[serving] schedule = "* * * * *"`) for two simulated days with small `[upkeep]` retentions;
//! at the end of each day every table under `serving/` has at most a bound of data files and
//! `_delta_log/*.json` commits derived from the settings, and day 2 ends no larger than day 1.
//! A forced upkeep that compacts and vacuums leaves the rows of every table unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::{TestCommand, files_under, query_rows};

/// The upkeep settings of the test (and what the bounds are derived from).
const RETENTION_H: u64 = 1;
const LOG_RETENTION_H: u64 = 2;
const CHECKPOINT_EVERY: u64 = 10;
const SMALL_FILES: u64 = 8;

fn config(small_files: u64) -> String {
    format!(
        "[serving]\nschedule = \"* * * * *\"\n\n[upkeep]\nretention_hours = {RETENTION_H}\n\
         log_retention_hours = {LOG_RETENTION_H}\ncheckpoint_every = {CHECKPOINT_EVERY}\n\
         small_file_threshold = {small_files}\n"
    )
}

/// One stream (the seed's `api_logs` generator), one fact, one dashboard and one alert rule
/// that fires on every run with events (so `alerts/history` is appended to all day).
const PIPELINE: &str = r#"
[[stream]]
name = "api_logs"
title = "API Logs"
id_field = "log_id"
generator = "api_logs"
[[stream.field]]
name = "endpoint"
type = "string"
[[stream.field]]
name = "status_code"
type = "int"
[[stream.field]]
name = "response_time_ms"
type = "float"
min = 5.0
max = 5000.0

[[fact]]
name = "fact_api_daily"
stream = "api_logs"
sql = "SELECT date, count(*) AS requests FROM silver GROUP BY date"

[[dashboard]]
name = "api_last_10m"
stream = "api_logs"
window_minutes = 10
sql = "SELECT endpoint, count(*) AS requests FROM w GROUP BY endpoint ORDER BY endpoint"

[[alert]]
name = "api_busy"
stream = "api_logs"
window_minutes = 5
threshold = 1.0
severity = "low"
id = "{rule}:{subject}:{run}"
sql = """
SELECT endpoint AS subject, CAST(count(*) AS DOUBLE) AS value,
    array_agg(log_id ORDER BY log_id) AS triggering_ids,
    concat(CAST(count(*) AS VARCHAR), ' requests') AS detail
  FROM w GROUP BY endpoint"""
"#;

const TABLES: [&str; 5] = [
    "serving/unified/api_logs",
    "serving/dashboards/api_last_10m",
    "serving/alerts/history",
    "serving/analytics/stream_dates",
    "serving/analytics/master_summary",
];

/// (data files, `_delta_log/*.json` files) of the table at `path` in `lake`, as on storage.
fn counts(lake: &Path, path: &str) -> (usize, usize) {
    let files = files_under(&lake.join(path));
    let data = files
        .iter()
        .filter(|f| !f.starts_with("_delta_log/") && f.ends_with(".parquet"))
        .count();
    let log = files
        .iter()
        .filter(|f| f.starts_with("_delta_log/") && f.ends_with(".json"))
        .count();
    (data, log)
}

/// Upper bounds from the settings, for a table that makes at most `commits` commits and adds
/// at most `files` data files per serving run (one run a minute), with the anchor step of
/// these settings (a twelfth of the shorter retention: 5 minutes):
/// - data files: the live ones (at most `SMALL_FILES` small files per partition before they are
///   compacted, in at most 3 partitions: the window's dates and a late one) plus those removed
///   within the retention and one step;
/// - log: the commits within the log retention and one step — the runs' own and two per
///   vacuum (at most one a step) — plus the commits between the checkpoint that bounds the
///   clean-up and its cut.
fn bounds(commits: usize, files: usize) -> (usize, usize) {
    let step_min = 5;
    let files_bound =
        3 * (SMALL_FILES as usize + 1) + files * (RETENTION_H as usize * 60 + step_min + 1);
    let log_window_min = LOG_RETENTION_H as usize * 60 + step_min + 1;
    let vacuums = log_window_min / step_min + 1;
    let log_bound = commits * log_window_min + 2 * vacuums + CHECKPOINT_EVERY as usize;
    (files_bound, log_bound)
}

/// Per table: (commits per run, data files added per run) at most, serving every minute.
fn per_run(path: &str) -> (usize, usize) {
    match path {
        // An append (or a recompute) and, on the hour or beyond the threshold, a compaction.
        "serving/unified/api_logs" => (2, 2),
        // An overwrite every run: one file.
        "serving/dashboards/api_last_10m" | "serving/analytics/master_summary" => (1, 1),
        // An append and a compaction.
        "serving/alerts/history" => (2, 2),
        // A replace of the dates the run changed (today, and a late date).
        "serving/analytics/stream_dates" => (1, 2),
        _ => unreachable!("{path}"),
    }
}

fn simulate(t: &TestCommand, from: &str, to: &str) {
    let r = t.run(&[
        "--pipeline",
        "pipeline.toml",
        "--lake",
        "lake",
        "--log",
        "warn",
        "simulate",
        "--from",
        from,
        "--to",
        to,
        "--scale",
        "0.05",
        "--dag",
        "2-api_logs_realtime_ingest",
        "--dag",
        "3-batch_etl_all_streams",
        "--dag",
        "4-serving_layer_merge",
    ]);
    r.assert_exit_code(0);
}

fn measure(lake: &Path) -> BTreeMap<&'static str, (usize, usize)> {
    TABLES.iter().map(|p| (*p, counts(lake, p))).collect()
}

/// What the tables hold, as the query engine reads them.
fn rows(t: &TestCommand) -> Vec<Vec<serde_json::Value>> {
    [
        "SELECT count(*) AS n, count(DISTINCT log_id) AS ids, round(sum(response_time_ms), 3) AS total, min(event_time) AS first, max(event_time) AS last FROM serving_unified_api_logs",
        "SELECT date, count(*) AS n FROM serving_unified_api_logs GROUP BY date ORDER BY date",
        "SELECT count(*) AS n, count(DISTINCT alert_id) AS ids FROM serving_alerts_history",
        "SELECT * FROM serving_analytics_stream_dates ORDER BY stream, date",
        "SELECT * FROM serving_dashboards_api_last_10m ORDER BY endpoint",
    ]
    .iter()
    .map(|sql| query_rows(t, "lake", sql))
    .collect()
}

#[test]
fn file_count_and_log_length_of_every_serving_table_stay_bounded_over_two_days_at_a_1_minute_tick()
{
    let t = TestCommand::new();
    std::fs::write(t.path().join("pipeline.toml"), PIPELINE).unwrap();
    std::fs::write(t.path().join("lakepipe.toml"), config(SMALL_FILES)).unwrap();
    // The schedule reaches the DAG table.
    let shown = t.run(&[
        "--pipeline",
        "pipeline.toml",
        "dags",
        "show",
        "4-serving_layer_merge",
    ]);
    shown.assert_exit_code(0);
    assert!(shown.stdout().contains("* * * * *"), "{}", shown.stdout());
    assert!(shown.stdout().contains("upkeep"), "{}", shown.stdout());

    let lake = t.lake();
    simulate(&t, "2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z");
    let day1 = measure(&lake);
    simulate(&t, "2026-02-02T00:00:00Z", "2026-02-03T00:00:00Z");
    let day2 = measure(&lake);
    eprintln!("(data files, log json files) by table\n day 1: {day1:?}\n day 2: {day2:?}");

    for table in TABLES {
        let (commits, files) = per_run(table);
        let (max_files, max_log) = bounds(commits, files);
        for (day, m) in [(1, &day1), (2, &day2)] {
            let (data, log) = m[table];
            assert!(data > 0 && log > 0, "{table}: day {day}: no table?");
            assert!(
                data <= max_files,
                "{table}: {data} data files at the end of day {day}, more than {max_files}"
            );
            assert!(
                log <= max_log,
                "{table}: {log} log entries at the end of day {day}, more than {max_log}"
            );
        }
        // Bounded, not growing: day 2 ends no larger than day 1 (the second day is the same
        // cadence over a table twice as old).
        let ((f1, l1), (f2, l2)) = (day1[table], day2[table]);
        assert!(
            f2 <= f1 + SMALL_FILES as usize && l2 <= l1 + CHECKPOINT_EVERY as usize,
            "{table}: day 1 {f1} files {l1} log entries, day 2 {f2} files {l2} log entries"
        );
    }
    // A day of serving every minute is 1440 runs: without upkeep each overwritten table would
    // keep a file and a commit per run.
    let (files, log) = day2["serving/analytics/master_summary"];
    assert!(files < 1440 && log < 1440, "{files} {log}");

    // A forced upkeep (the last run's upkeep again, now compacting every partition with more
    // than 2 small files) changes no row.
    // A few more minutes first, so that partitions hold a few small files again.
    simulate(&t, "2026-02-03T00:00:00Z", "2026-02-03T00:07:00Z");
    let before = rows(&t);
    std::fs::write(t.path().join("lakepipe.toml"), config(2)).unwrap();
    let r = t.run(&[
        "--pipeline",
        "pipeline.toml",
        "--lake",
        "lake",
        "--json",
        "tasks",
        "run",
        "4-serving_layer_merge",
        "upkeep",
        "--logical-date",
        "2026-02-03T00:07:00Z",
    ]);
    r.assert_exit_code(0);
    let after = rows(&t);
    assert_eq!(before, after, "upkeep changed rows");
    assert!(
        !before[0].is_empty() && before[0][0]["n"].as_u64().unwrap_or_default() > 0,
        "{before:?}"
    );
    let state = std::fs::read_to_string(
        lake.join("_lakepipe/runs/4-serving_layer_merge/20260203T000700Z/tasks/upkeep.json"),
    )
    .unwrap();
    let record: serde_json::Value = serde_json::from_str(&state).unwrap();
    let output = &record["output"];
    assert_eq!(output["tables_checked"], 5, "{output}");
    let compacted: u64 = output["tables"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["files_compacted"].as_u64().unwrap())
        .sum();
    assert!(
        compacted > 0,
        "the forced upkeep compacted nothing: {output}"
    );
}
