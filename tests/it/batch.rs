//! The batch layer's bronze stage on a local lake: every landed line exactly once, lineage
//! across batch runs (late stragglers go to the next run), idempotent re-runs, and an
//! independent Delta reader (the `deltalake` Python package) that agrees with `lakepipe query`.

use std::collections::BTreeMap;

use crate::util::{STREAMS, TestCommand, files_under, python, query_rows};

const BATCH: &str = "3-batch_etl_all_streams";

/// Event date of a speed-layer file, from its path under `realtime/<stream>/`.
fn date_of(file: &str) -> String {
    file.split('/')
        .next()
        .unwrap()
        .trim_start_matches("date=")
        .to_string()
}

fn lines_landed(t: &TestCommand, stream: &str) -> u64 {
    let root = t.lake().join("realtime").join(stream);
    files_under(&root)
        .iter()
        .map(|f| {
            std::fs::read_to_string(root.join(f))
                .unwrap()
                .lines()
                .count() as u64
        })
        .sum()
}

fn query_u64(t: &TestCommand, sql: &str) -> u64 {
    let lake = t.lake();
    let r = t.run(&[
        "--lake",
        lake.to_str().unwrap(),
        "query",
        sql,
        "--format",
        "csv",
    ]);
    r.assert_exit_code(0);
    let out = r.stdout();
    out.lines()
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap()
}

fn bronze(t: &TestCommand, stream: &str, run: &str) -> serde_json::Value {
    let lake = t.lake();
    let r = t.run(&[
        "--lake",
        lake.to_str().unwrap(),
        "--json",
        "tasks",
        "run",
        BATCH,
        &format!("bronze_{stream}"),
        "--logical-date",
        run,
    ]);
    r.assert_exit_code(0);
    r.json()["output"].clone()
}

fn ingest(t: &TestCommand, stream: &str, from: &str, to: &str) {
    let lake = t.lake();
    t.run(&[
        "--lake",
        lake.to_str().unwrap(),
        "dags",
        "backfill",
        &format!("2-{stream}_realtime_ingest"),
        "--from",
        from,
        "--to",
        to,
        "--scale",
        "0.1",
        "--fault-rate",
        "0.05",
    ])
    .assert_exit_code(0);
}

#[test]
fn bronze_takes_every_landed_line_exactly_once_across_batch_runs() {
    let t = TestCommand::new();
    let stream = "api_logs";
    ingest(&t, stream, "2026-02-01T00:05:00Z", "2026-02-02T02:00:00Z");
    let landed_day1 = lines_landed(&t, stream);

    let out = bronze(&t, stream, "2026-02-02T02:00:00Z");
    assert_eq!(out["state"], "committed");
    assert_eq!(out["rows"], landed_day1);
    // Late events re-open earlier dates; the closed day is among the dates touched.
    let dates: Vec<&str> = out["dates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        dates.contains(&"2026-02-01") && dates.len() > 2,
        "{dates:?}"
    );
    let log = t.lake().join("batch/bronze/api_logs/_delta_log");
    let versions = files_under(&log).len();

    // A re-run of the same batch run writes nothing.
    let again = bronze(&t, stream, "2026-02-02T02:00:00Z");
    assert_eq!(again["state"], "already_committed");
    assert_eq!(files_under(&log).len(), versions);
    assert_eq!(
        query_u64(&t, "SELECT count(*) FROM bronze_api_logs"),
        landed_day1
    );

    // The next day's run takes only what no earlier run consumed.
    ingest(&t, stream, "2026-02-02T02:05:00Z", "2026-02-03T02:00:00Z");
    let landed_total = lines_landed(&t, stream);
    let out = bronze(&t, stream, "2026-02-03T02:00:00Z");
    assert_eq!(out["rows"], landed_total - landed_day1);
    assert_eq!(
        query_u64(&t, "SELECT count(*) FROM bronze_api_logs"),
        landed_total
    );
    assert_eq!(
        query_u64(
            &t,
            "SELECT count(*) FROM (SELECT DISTINCT _source_key, _line FROM bronze_api_logs)"
        ),
        landed_total,
        "a landed line appears twice"
    );
    // Lineage: each file belongs to exactly one batch run.
    assert_eq!(
        query_u64(
            &t,
            "SELECT count(*) FROM (SELECT _source_key FROM bronze_api_logs GROUP BY _source_key HAVING count(DISTINCT _batch_run) > 1)"
        ),
        0
    );

    // An independent Delta reader sees the same table.
    let script = r#"
import os, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
print(t.to_pyarrow_table().num_rows, ",".join(t.metadata().partition_columns), flush=True)
os._exit(0)  # pyarrow's threads can abort interpreter teardown
"#;
    let out = python(
        script,
        &[t.lake().join("batch/bronze/api_logs").to_str().unwrap()],
    );
    assert_eq!(out.trim(), format!("{landed_total} date"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bronze_commits_delta_tables_on_moto_and_garage() {
    for var in ["LAKEPIPE_TEST_MOTO", "LAKEPIPE_TEST_GARAGE"] {
        let server = crate::util::s3_server(var);
        let bucket = server.new_bucket("bronze").await;
        let lake = format!("s3://{bucket}/lp");
        let s = server.clone();
        let out = tokio::task::spawn_blocking(move || {
            let t = s.apply(TestCommand::new());
            let run = |args: &[&str]| {
                let mut a = vec!["--lake", lake.as_str()];
                a.extend_from_slice(args);
                t.run(&a)
            };
            run(&[
                "dags",
                "backfill",
                "2-api_logs_realtime_ingest",
                "--from",
                "2026-02-01T00:05:00Z",
                "--to",
                "2026-02-01T02:00:00Z",
                "--scale",
                "0.1",
            ])
            .assert_exit_code(0);
            let task = [
                "--json",
                "tasks",
                "run",
                BATCH,
                "bronze_api_logs",
                "--logical-date",
                "2026-02-01T02:00:00Z",
            ];
            let first = run(&task);
            first.assert_exit_code(0);
            let again = run(&task);
            again.assert_exit_code(0);
            let q = run(&[
                "query",
                "SELECT count(*) AS n FROM bronze_api_logs",
                "--format",
                "csv",
            ]);
            q.assert_exit_code(0);
            (
                first.json()["output"].clone(),
                again.json()["output"].clone(),
                q.stdout(),
            )
        })
        .await
        .unwrap();
        let (first, again, count) = out;
        // 24 runs of 100 events (scale 0.1), no faults.
        assert_eq!(first["rows"], 2400, "{var}: {first}");
        assert_eq!(again["state"], "already_committed", "{var}");
        assert_eq!(count.trim(), "n\n2400", "{var}");
        let log = server
            .keys(&bucket, "lp/batch/bronze/api_logs/_delta_log/")
            .await;
        assert_eq!(log.len(), 2, "{var}: create + one append: {log:?}");
    }
}

/// Bronze runs made out of logical order (a backfill with concurrency, a failed run cleared
/// after later ones succeeded): the run of the last date first, then the others from the
/// newest back. The stream's application transaction once said "committed" for every run
/// older than the newest committed one, so the runs whose files lay before the newest run's
/// look-back wrote nothing and said so: three dates lost. Now each date is in bronze once.
#[test]
fn bronze_runs_made_out_of_order_lose_and_repeat_nothing() {
    let t = TestCommand::new();
    let lake = t.lake();
    let lake = lake.to_str().unwrap();
    land_days(&t, lake);
    for i in (0..DAYS).rev() {
        bronze_of_day(&t, lake, i).assert_exit_code(0);
    }
    let want: BTreeMap<String, u64> = (0..DAYS).map(|i| (day(i), 100)).collect();
    assert_eq!(bronze_by_date(&t, lake), want);
}

/// Days landed by [`land_days`].
const DAYS: usize = 8;

/// `2026-02-<i + 1>`.
fn day(i: usize) -> String {
    format!("2026-02-{:02}", i + 1)
}

/// One ingest run of api_logs (100 events) at 00:05 of each of [`DAYS`] days.
fn land_days(t: &TestCommand, lake: &str) {
    for i in 0..DAYS {
        let at = format!("{}T00:05:00Z", day(i));
        t.run(&[
            "--lake",
            lake,
            "dags",
            "backfill",
            "2-api_logs_realtime_ingest",
            "--from",
            &at,
            "--to",
            &at,
            "--scale",
            "0.1",
        ])
        .assert_exit_code(0);
    }
}

/// `tasks run` of `bronze_api_logs` in the batch run after day `i`.
fn bronze_of_day(t: &TestCommand, lake: &str, i: usize) -> crate::util::Run {
    let logical = format!("{}T02:00:00Z", day(i + 1));
    t.run(&[
        "--lake",
        lake,
        "--json",
        "tasks",
        "run",
        BATCH,
        "bronze_api_logs",
        "--logical-date",
        &logical,
    ])
}

/// Rows of bronze_api_logs by date, each line in it once.
fn bronze_by_date(t: &TestCommand, lake: &str) -> BTreeMap<String, u64> {
    query_rows(
        t,
        lake,
        "SELECT date, count(*) AS n, count(DISTINCT raw) AS ids FROM bronze_api_logs GROUP BY date",
    )
    .into_iter()
    .map(|r| {
        assert_eq!(r["n"], r["ids"], "{r}");
        (
            r["date"].as_str().unwrap().to_string(),
            r["n"].as_u64().unwrap(),
        )
    })
    .collect()
}

/// Eight `tasks run` of the bronze task for eight dates at once, as an Airflow backfill with
/// concurrency runs them, on moto and on Garage. Garage ignores create-only PUT: two processes
/// committing the same Delta version overwrote each other's commit and both reported success
/// (deltalake-py: 8 concurrent appends kept 4 of 9 rows). Now a run either commits its files or
/// fails with a clear message (and its retry commits them); a commit refused by a concurrent
/// one is planned and made again by the run itself; and every date is in bronze once — 0
/// silent losses, 0 rows twice.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_delta_writers_on_moto_and_garage_lose_no_commit() {
    for var in ["LAKEPIPE_TEST_MOTO", "LAKEPIPE_TEST_GARAGE"] {
        concurrent_bronze_runs(var).await;
    }
}

async fn concurrent_bronze_runs(var: &str) {
    let server = crate::util::s3_server(var);
    let bucket = server.new_bucket("writers").await;
    let lake = format!("s3://{bucket}/lp");
    let outcome = tokio::task::spawn_blocking(move || {
        let t = server.apply(TestCommand::new());
        land_days(&t, &lake);
        let runs: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..DAYS)
                .map(|i| {
                    let (t, lake) = (&t, lake.as_str());
                    s.spawn(move || bronze_of_day(t, lake, i))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let after = bronze_by_date(&t, &lake);
        let mut failed = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            if r.code() == 0 {
                // Reported success: its date is in the table, whole.
                assert_eq!(after.get(&day(i)), Some(&100), "{}: {}", day(i), r.stderr());
            } else {
                let err = r.stderr();
                assert!(!err.contains("panicked"), "{err}");
                assert!(
                    err.contains("batch/bronze/api_logs: another writer committed to this table"),
                    "a clear message: {err}"
                );
                failed.push(i);
            }
        }
        for &i in &failed {
            bronze_of_day(&t, &lake, i).assert_exit_code(0);
        }
        (failed.len(), bronze_by_date(&t, &lake))
    })
    .await
    .unwrap();
    let (failed, counts) = outcome;
    eprintln!("{var}: {failed} of {DAYS} concurrent bronze runs failed and were run again");
    let want: BTreeMap<String, u64> = (0..DAYS).map(|i| (day(i), 100)).collect();
    assert_eq!(counts, want);
}

/// Lines per event date (from the partition folder) that repeat an earlier line exactly: the
/// duplicate fault, counted from the raw files without lakepipe.
fn duplicate_lines_by_date(
    t: &TestCommand,
    stream: &str,
) -> std::collections::BTreeMap<String, u64> {
    let root = t.lake().join("realtime").join(stream);
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut out = std::collections::BTreeMap::new();
    for f in files_under(&root) {
        let date = date_of(&f);
        for line in std::fs::read_to_string(root.join(&f)).unwrap().lines() {
            let e = out.entry(date.clone()).or_insert(0u64);
            if !seen.insert(line.to_string()) {
                *e += 1;
            }
        }
    }
    out
}

fn by_date(t: &TestCommand, table: &str) -> std::collections::BTreeMap<String, u64> {
    let lake = t.lake();
    let r = t.run(&[
        "--lake",
        lake.to_str().unwrap(),
        "query",
        &format!("SELECT date, count(*) AS n FROM {table} GROUP BY date ORDER BY date"),
        "--format",
        "csv",
    ]);
    r.assert_exit_code(0);
    r.stdout()
        .lines()
        .skip(1)
        .map(|l| {
            let (d, n) = l.split_once(',').unwrap();
            (d.to_string(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn silver_and_quarantine_account_for_every_bronze_row_per_date() {
    let t = TestCommand::new();
    let stream = "api_logs";
    let run = "2026-02-02T02:00:00Z";
    ingest(&t, stream, "2026-02-01T00:05:00Z", run);
    bronze(&t, stream, run);
    let lake = t.lake();
    let silver = || {
        let r = t.run(&[
            "--lake",
            lake.to_str().unwrap(),
            "--json",
            "tasks",
            "run",
            BATCH,
            "silver_api_logs",
            "--logical-date",
            run,
        ]);
        r.assert_exit_code(0);
        r.json()["output"].clone()
    };
    let out = silver();
    let b = by_date(&t, "bronze_api_logs");
    let s = by_date(&t, "silver_api_logs");
    let q = by_date(&t, "quarantine_api_logs");
    let dups = duplicate_lines_by_date(&t, stream);
    for (date, n) in &b {
        let (s, q, d) = (
            s.get(date).copied().unwrap_or(0),
            q.get(date).copied().unwrap_or(0),
            dups.get(date).copied().unwrap_or(0),
        );
        assert_eq!(
            *n,
            s + q + d,
            "{date}: bronze {n} != silver {s} + quarantine {q} + duplicates {d}"
        );
    }
    assert_eq!(out["duplicates"], dups.values().sum::<u64>());
    assert!(
        out["quarantined"].as_u64().unwrap() > 0 && out["late"].as_u64().unwrap() > 0,
        "{out}"
    );
    for rule in [
        "valid_json",
        "id_present",
        "event_time_not_future",
        "status_code_valid",
    ] {
        assert!(
            out["quarantined_by_rule"][rule].as_u64().unwrap_or(0) > 0,
            "{rule}: {out}"
        );
    }
    // One row per id, typed and derived columns present, noise normalised.
    assert_eq!(
        query_u64(
            &t,
            "SELECT count(*) - count(DISTINCT log_id) FROM silver_api_logs"
        ),
        0
    );
    assert_eq!(
        query_u64(
            &t,
            "SELECT count(*) FROM silver_api_logs WHERE response_category NOT IN ('2xx','3xx','4xx','5xx') OR method <> upper(trim(method))"
        ),
        0
    );
    assert!(
        query_u64(
            &t,
            "SELECT count(*) FROM silver_api_logs WHERE is_slow AND is_error IS NOT NULL"
        ) > 0
    );
    assert_eq!(
        query_u64(
            &t,
            "SELECT count(*) FROM quarantine_api_logs WHERE rule IS NULL OR raw IS NULL OR _source_key IS NULL"
        ),
        0
    );
    // The manifest now tells the serving layer that silver holds these files.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lake.join("_lakepipe/lineage/api_logs/20260202T020000Z.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["silver_committed"], true);
    // Re-running recomputes the same dates to the same rows.
    let again = silver();
    assert_eq!(again["silver"], out["silver"]);
    assert_eq!(by_date(&t, "silver_api_logs"), s);
    assert_eq!(by_date(&t, "quarantine_api_logs"), q);
}

fn json_rows(t: &TestCommand, sql: &str) -> Vec<serde_json::Value> {
    query_rows(t, t.lake().to_str().unwrap(), sql)
}

/// Rows of two engines agree: same keys, numbers within 1e-6 (relative).
fn assert_same_rows(what: &str, ours: &[serde_json::Value], theirs: &[serde_json::Value]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: row counts differ");
    assert!(!ours.is_empty(), "{what}: no rows");
    for (a, b) in ours.iter().zip(theirs) {
        for (k, bv) in b.as_object().unwrap() {
            let av = &a[k];
            match (av.as_f64(), bv.as_f64()) {
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= 1e-6 * y.abs().max(1.0),
                    "{what}: {k} {x} != {y} in\n{a}\n{b}"
                ),
                _ => assert_eq!(av, bv, "{what}: {k} in\n{a}\n{b}"),
            }
        }
    }
}

#[test]
fn gold_facts_equal_duckdb_recomputed_from_the_raw_files() {
    let t = TestCommand::new();
    let lake = t.lake();
    let run = "2026-02-02T02:00:00Z";
    let streams = [
        "api_logs",
        "ecommerce_clickstream",
        "financial_transactions",
    ];
    for s in streams {
        let r = t.run(&[
            "--lake",
            lake.to_str().unwrap(),
            "dags",
            "backfill",
            &format!("2-{s}_realtime_ingest"),
            "--from",
            "2026-02-01T00:05:00Z",
            "--to",
            run,
            "--scale",
            "0.1",
        ]);
        r.assert_exit_code(0);
    }
    let task = |id: &str| {
        t.run(&[
            "--lake",
            lake.to_str().unwrap(),
            "tasks",
            "run",
            BATCH,
            id,
            "--logical-date",
            run,
        ])
        .assert_exit_code(0);
    };
    for s in streams {
        task(&format!("bronze_{s}"));
        task(&format!("silver_{s}"));
    }
    for f in [
        "fact_api_hourly",
        "fact_ecommerce_revenue",
        "fact_fraud_summary",
    ] {
        task(&format!("gold_{f}"));
    }
    // The same formulas, by DuckDB, over the raw JSON lines of the closed day.
    let script = r#"
import json, os, sys
import duckdb
lake = sys.argv[1]
def raw(stream):
    return f"read_json('{lake}/realtime/{stream}/date=2026-02-01/*/*.jsonl', format='newline_delimited')"
queries = {
 "api": f"""SELECT hour(CAST(event_time AS TIMESTAMP)) AS hour, endpoint, count(*) AS total_requests,
            quantile_cont(response_time_ms, 0.95) AS p95_response_time,
            sum(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END) AS error_count,
            100.0 * sum(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END) / count(*) AS error_rate,
            sum(CASE WHEN response_time_ms > 1000 THEN 1 ELSE 0 END) AS slow_requests,
            sum(bytes_sent) AS total_bytes_sent, count(DISTINCT api_key_id) AS unique_api_keys
          FROM {raw('api_logs')} GROUP BY ALL ORDER BY hour, endpoint""",
 "revenue": f"""SELECT product_category, count(*) AS total_orders, sum(price * quantity) AS total_revenue,
            count(DISTINCT user_id) AS unique_customers, sum(quantity) AS units
          FROM {raw('ecommerce_clickstream')} WHERE event_type = 'checkout_complete'
          GROUP BY ALL ORDER BY product_category""",
 "fraud": f"""SELECT CASE WHEN risk_score < 0.3 THEN 'low' WHEN risk_score < 0.7 THEN 'medium' ELSE 'high' END AS risk_level,
            count(*) AS transaction_count, sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) AS flagged_count,
            sum(CASE WHEN status = 'declined' THEN 1 ELSE 0 END) AS declined_count, sum(amount) AS total_amount,
            avg(risk_score) AS avg_risk_score
          FROM {raw('financial_transactions')} GROUP BY ALL ORDER BY risk_level""",
}
out = {}
for name, q in queries.items():
    rel = duckdb.sql(q)
    cols = rel.columns
    out[name] = [dict(zip(cols, [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in row])) for row in rel.fetchall()]
print(json.dumps(out), flush=True)
os._exit(0)
"#;
    let duck: serde_json::Value =
        serde_json::from_str(&python(script, &[lake.to_str().unwrap()])).unwrap();
    let d = "WHERE date = '2026-02-01'";
    let ours = json_rows(
        &t,
        &format!(
            "SELECT CAST(hour AS DOUBLE) AS hour, endpoint, CAST(total_requests AS DOUBLE) AS total_requests, p95_response_time, CAST(error_count AS DOUBLE) AS error_count, error_rate, CAST(slow_requests AS DOUBLE) AS slow_requests, CAST(total_bytes_sent AS DOUBLE) AS total_bytes_sent, CAST(unique_api_keys AS DOUBLE) AS unique_api_keys FROM gold_fact_api_hourly {d} ORDER BY hour, endpoint"
        ),
    );
    assert_same_rows("fact_api_hourly", &ours, duck["api"].as_array().unwrap());
    let ours = json_rows(
        &t,
        &format!(
            "SELECT product_category, CAST(total_orders AS DOUBLE) AS total_orders, total_revenue, CAST(unique_customers AS DOUBLE) AS unique_customers, CAST(units AS DOUBLE) AS units FROM gold_fact_ecommerce_revenue {d} ORDER BY product_category"
        ),
    );
    assert_same_rows(
        "fact_ecommerce_revenue",
        &ours,
        duck["revenue"].as_array().unwrap(),
    );
    let ours = json_rows(
        &t,
        &format!(
            "SELECT risk_level, CAST(transaction_count AS DOUBLE) AS transaction_count, CAST(flagged_count AS DOUBLE) AS flagged_count, CAST(declined_count AS DOUBLE) AS declined_count, total_amount, avg_risk_score FROM gold_fact_fraud_summary {d} ORDER BY risk_level"
        ),
    );
    assert_same_rows(
        "fact_fraud_summary",
        &ours,
        duck["fraud"].as_array().unwrap(),
    );
}

/// Per event date, lines landed by ingest runs up to `until` and, of those, exact repeats of
/// an earlier line (the duplicate fault), from the raw files.
fn raw_counts_by_date(
    t: &TestCommand,
    stream: &str,
    until: &str,
) -> std::collections::BTreeMap<String, (u64, u64)> {
    let root = t.lake().join("realtime").join(stream);
    let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut out = std::collections::BTreeMap::new();
    for f in files_under(&root) {
        let name = f.rsplit('/').next().unwrap();
        let stamp = &name[stream.len() + 1..stream.len() + 17];
        let start = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").unwrap();
        if start.and_utc() + chrono::Duration::minutes(5) > until {
            continue;
        }
        let date = date_of(&f);
        for line in std::fs::read_to_string(root.join(&f)).unwrap().lines() {
            let e: &mut (u64, u64) = out.entry(date.clone()).or_default();
            e.0 += 1;
            if !seen.insert(line.to_string()) {
                e.1 += 1;
            }
        }
    }
    out
}

#[test]
fn simulated_days_with_faults_keep_the_identity_per_stream_and_day_and_rerun_changes_nothing() {
    let t = TestCommand::new();
    let lake = t.lake();
    let l = lake.to_str().unwrap();
    // The serving layer, checked after every run by `tests/it/serving.rs`, runs here once at
    // the end (a first run over two days of history).
    let mut args = vec![
        "--lake",
        l,
        "simulate",
        "--from",
        "2026-02-01T00:00:00Z",
        "--to",
        "2026-02-03T03:00:00Z",
        "--scale",
        "0.05",
        "--fault-rate",
        "0.03",
    ];
    let ingest: Vec<String> = STREAMS
        .iter()
        .map(|s| format!("2-{s}_realtime_ingest"))
        .collect();
    for d in &ingest {
        args.extend(["--dag", d.as_str()]);
    }
    args.extend(["--dag", BATCH]);
    let r = t.run(&args);
    r.assert_exit_code(0);
    let runs = t.run(&["--lake", l, "--json", "runs", "list", "--dag", BATCH]);
    runs.assert_exit_code(0);
    let runs = runs.json();
    let states: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["success"; 3], "{}\n{}", r.stderr(), runs);

    let tables = |stream: &str| {
        (
            by_date(&t, &format!("bronze_{stream}")),
            by_date(&t, &format!("silver_{stream}")),
            by_date(&t, &format!("quarantine_{stream}")),
        )
    };
    let mut before = Vec::new();
    for stream in STREAMS {
        let raw = raw_counts_by_date(&t, stream, "2026-02-03T02:00:00Z");
        let (b, s, q) = tables(stream);
        let raw_lines: std::collections::BTreeMap<String, u64> =
            raw.iter().map(|(d, (n, _))| (d.clone(), *n)).collect();
        assert_eq!(
            b, raw_lines,
            "{stream}: bronze holds exactly the consumed lines"
        );
        for (date, (n, dups)) in &raw {
            let (s, q) = (
                s.get(date).copied().unwrap_or(0),
                q.get(date).copied().unwrap_or(0),
            );
            assert_eq!(
                *n,
                s + q + dups,
                "{stream} {date}: {n} != silver {s} + quarantine {q} + duplicates {dups}"
            );
        }
        before.push((s, q));
    }
    let gold_before = by_date(&t, "gold_fact_api_hourly");

    // A first serving run over this history serves silver's rows from batch, each once.
    t.run(&[
        "--lake",
        l,
        "dags",
        "backfill",
        "4-serving_layer_merge",
        "--from",
        "2026-02-03T03:00:00Z",
        "--to",
        "2026-02-03T03:00:00Z",
    ])
    .assert_exit_code(0);
    for (stream, id) in [
        ("iot_sensors", "reading_id"),
        ("financial_transactions", "transaction_id"),
    ] {
        let silver = by_date(&t, &format!("silver_{stream}"));
        let batch_rows = by_date(
            &t,
            &format!("serving_unified_{stream} WHERE _source = 'batch'"),
        );
        assert_eq!(batch_rows, silver, "{stream}");
        assert_eq!(
            query_u64(
                &t,
                &format!("SELECT count(*) FROM serving_unified_{stream}")
            ),
            query_u64(
                &t,
                &format!("SELECT count(DISTINCT {id}) FROM serving_unified_{stream}")
            ),
            "{stream}: an id twice"
        );
    }

    // Every table, read by three Delta readers nobody here wrote, holds what `lakepipe query`
    // returns: rows, schema and a checksum over them.
    let report = crate::readers::three_readers_agree(&t, &lake);
    let theirs = report["tables"].as_object().unwrap();
    // Batch: 5 × (bronze, silver, quarantine) + 7 gold; serving: 5 unified, 8 dashboards (5 of
    // SPEC, 3 time series), alerts, stream_dates and master_summary.
    assert_eq!(
        theirs.len(),
        5 * 3 + 7 + 5 + 8 + 1 + 2,
        "{:?}",
        theirs.keys()
    );
    // The facts tables are partitioned by date, and every reader sees rows in them.
    for (table, entry) in theirs {
        if table.starts_with("bronze_") || table.starts_with("silver_") {
            assert_eq!(
                entry["readers"]["deltalake"]["partitions"],
                serde_json::json!(["date"]),
                "{table}"
            );
            assert!(
                entry["readers"]["duckdb"]["rows"].as_u64().unwrap() > 0,
                "{table}"
            );
        }
    }

    // Re-running the second batch run changes nothing.
    t.run(&[
        "--lake",
        l,
        "dags",
        "backfill",
        BATCH,
        "--from",
        "2026-02-03T02:00:00Z",
        "--to",
        "2026-02-03T02:00:00Z",
        "--reprocess",
        "all",
    ])
    .assert_exit_code(0);
    for (i, stream) in STREAMS.iter().enumerate() {
        let (_, s, q) = tables(stream);
        assert_eq!((s, q), before[i], "{stream} changed on re-run");
    }
    assert_eq!(by_date(&t, "gold_fact_api_hourly"), gold_before);
}

#[test]
fn a_line_that_is_not_utf8_stays_in_bronze_as_landed_and_is_quarantined_with_its_rule() {
    let t = TestCommand::new();
    let lake = t.lake();
    let l = lake.to_str().unwrap();
    let run = "2026-02-02T02:00:00Z";
    t.run(&[
        "--lake",
        l,
        "dags",
        "backfill",
        "2-api_logs_realtime_ingest",
        "--from",
        "2026-02-01T00:05:00Z",
        "--to",
        "2026-02-01T02:00:00Z",
        "--scale",
        "0.1",
    ])
    .assert_exit_code(0);
    // The third line of a landed file gets the bytes ff fe c3 28 inside its user agent.
    let root = lake.join("realtime/api_logs");
    let rel = files_under(&root)
        .into_iter()
        .find(|f| f.starts_with("date=2026-02-01/hour=01/"))
        .unwrap();
    let key = format!("realtime/api_logs/{rel}");
    let path = root.join(&rel);
    let body = std::fs::read(&path).unwrap();
    let mut lines: Vec<Vec<u8>> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let text = String::from_utf8(lines[2].clone()).unwrap();
    let field = "\"user_agent\":";
    let at = text.find(field).unwrap() + field.len();
    let at = at + text[at..].find('"').unwrap() + 1;
    let bad_id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["log_id"]
        .as_str()
        .unwrap()
        .to_string();
    let first_id = serde_json::from_slice::<serde_json::Value>(&lines[0]).unwrap()["log_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bad_line = lines[2][..at].to_vec();
    bad_line.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    bad_line.extend_from_slice(&lines[2][at..]);
    lines[2] = bad_line.clone();
    let mut planted = lines.join(&b'\n');
    planted.push(b'\n');
    std::fs::write(&path, planted).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();

    // The serving layer, reading the speed layer before any batch run, drops that row alone.
    t.run(&[
        "--lake",
        l,
        "tasks",
        "run",
        "4-serving_layer_merge",
        "unified_api_logs",
        "--logical-date",
        "2026-02-01T02:10:00Z",
    ])
    .assert_exit_code(0);
    let served = |id: &str| {
        query_u64(
            &t,
            &format!("SELECT count(*) FROM serving_unified_api_logs WHERE log_id = '{id}'"),
        )
    };
    assert_eq!((served(&bad_id), served(&first_id)), (0, 1));

    // The batch DAG.
    t.run(&[
        "--lake", l, "dags", "backfill", BATCH, "--from", run, "--to", run,
    ])
    .assert_exit_code(0);
    let runs = t.run(&["--lake", l, "--json", "runs", "list", "--dag", BATCH]);
    runs.assert_exit_code(0);
    let states: Vec<String> = runs
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["success"], "{}", runs.stdout());

    // Bronze holds the line exactly as landed, and its text with U+FFFD for people and SQL.
    let rows = json_rows(
        &t,
        "SELECT _source_key, _line, encode(raw_bytes, 'hex') AS landed, raw FROM bronze_api_logs WHERE raw_bytes IS NOT NULL",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["_source_key"], key.as_str());
    assert_eq!(rows[0]["_line"], 3);
    assert_eq!(rows[0]["landed"], hex(&bad_line).as_str());
    assert_eq!(
        rows[0]["raw"],
        &*String::from_utf8_lossy(&bad_line),
        "raw is the lossy text"
    );
    // Silver does not hold it; quarantine does, with its rule and the offset of the first bad byte.
    assert_eq!(
        query_u64(
            &t,
            &format!("SELECT count(*) FROM silver_api_logs WHERE log_id = '{bad_id}'")
        ),
        0
    );
    let q = json_rows(
        &t,
        "SELECT rule, value, _source_key, _line FROM quarantine_api_logs WHERE rule = 'valid_utf8'",
    );
    assert_eq!(
        q,
        [serde_json::json!({
            "rule": "valid_utf8",
            "value": format!("invalid UTF-8 at byte {at}: ff"),
            "_source_key": key,
            "_line": 3,
        })]
    );
    // bronze = silver + quarantine + duplicates, per date, counted from the raw bytes.
    let (b, s, q) = (
        by_date(&t, "bronze_api_logs"),
        by_date(&t, "silver_api_logs"),
        by_date(&t, "quarantine_api_logs"),
    );
    let mut landed: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for f in files_under(&root) {
        let body = std::fs::read(root.join(&f)).unwrap();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let e = landed.entry(date_of(&f)).or_default();
            e.0 += 1;
            if !seen.insert(line.to_vec()) {
                e.1 += 1;
            }
        }
    }
    let bronze: BTreeMap<String, u64> = landed.iter().map(|(d, (n, _))| (d.clone(), *n)).collect();
    assert_eq!(b, bronze);
    for (date, (n, dups)) in &landed {
        let (s, q) = (
            s.get(date).copied().unwrap_or(0),
            q.get(date).copied().unwrap_or(0),
        );
        assert_eq!(
            *n,
            s + q + dups,
            "{date}: silver {s} + quarantine {q} + duplicates {dups}"
        );
    }

    // An independent Delta reader gets the same bytes.
    let script = r#"
import os, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["raw_bytes"])
print(",".join(v.hex() for v in t.column("raw_bytes").to_pylist() if v is not None), flush=True)
os._exit(0)
"#;
    let out = python(
        script,
        &[lake.join("batch/bronze/api_logs").to_str().unwrap()],
    );
    assert_eq!(out.trim(), hex(&bad_line));
}
