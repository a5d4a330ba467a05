//! Schema evolution of the per-stream tables under a user's pipeline declaration: a field added
//! to the declaration becomes a column of silver and unified (older rows null); a type change
//! or a removal is refused before anything is written, with the column and the table named;
//! `lakepipe pipeline migrate` lists the changes and `--rewrite` rewrites the tables, after
//! which the batch runs again.

use crate::util::{Run, TestCommand, query_rows};

const BATCH: &str = "3-batch_etl_all_streams";

const FIELDS_V1: &str = r#"
[[stream.field]]
name = "amount"
type = "float"

[[stream.field]]
name = "status"
type = "string"
values = ["new", "paid"]

[[stream.field]]
name = "qty"
type = "int"
"#;

const COUPON: &str = r#"
[[stream.field]]
name = "coupon"
type = "string"
nullable = true
"#;

/// Version 3: amount becomes a string, qty is gone.
const FIELDS_V3: &str = r#"
[[stream.field]]
name = "amount"
type = "string"

[[stream.field]]
name = "status"
type = "string"
values = ["new", "paid"]
"#;

fn declaration(fields: &str) -> String {
    format!(
        r#"[[stream]]
name = "orders"
id_field = "order_id"
{fields}
[[fact]]
name = "fact_orders_daily"
stream = "orders"
sql = "SELECT date, count(*) AS orders FROM silver GROUP BY date"
"#
    )
}

/// Lands `lines` as the speed layer would have at 10:00 of `date` (`YYYY-MM-DD`).
fn land(t: &TestCommand, date: &str, lines: &[serde_json::Value]) {
    let dir = t
        .lake()
        .join(format!("realtime/orders/date={date}/hour=10"));
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let stamp = date.replace('-', "");
    std::fs::write(dir.join(format!("orders_{stamp}T100000Z.jsonl")), body).unwrap();
}

fn order(
    id: &str,
    date: &str,
    amount: f64,
    extra: &[(&str, serde_json::Value)],
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "order_id": id,
        "event_time": format!("{date}T10:00:00Z"),
        "amount": amount,
        "status": "paid",
        "qty": 2,
    });
    for (k, x) in extra {
        v[*k] = x.clone();
    }
    v
}

/// A test command whose pipeline is declared in `pipeline.toml` (returned) of its folder, and
/// its lake, made.
fn declared_lake() -> (TestCommand, std::path::PathBuf) {
    let t = TestCommand::new();
    let file = t.path().join("pipeline.toml");
    let t = t.env("LAKEPIPE_PIPELINE", file.to_str().unwrap());
    std::fs::create_dir_all(t.lake()).unwrap();
    (t, file)
}

/// Runs `unified_orders` of the serving DAG at `run` on the lake `l`.
fn unified_run(t: &TestCommand, l: &str, run: &str) -> Run {
    t.run(&[
        "--lake",
        l,
        "tasks",
        "run",
        "4-serving_layer_merge",
        "unified_orders",
        "--logical-date",
        run,
    ])
}

#[test]
fn added_fields_evolve_the_tables_and_type_changes_are_refused_until_rewritten() {
    let (t, file) = declared_lake();
    let lake = t.lake();
    let l = lake.to_str().unwrap();
    let batch = |run: &str| {
        t.run(&[
            "--lake",
            l,
            "dags",
            "backfill",
            BATCH,
            "--from",
            run,
            "--to",
            run,
            "--reprocess",
            "failed",
        ])
    };
    let unified = |run: &str| unified_run(&t, l, run);
    // Rows as arrays of the columns named (the JSON output leaves out nulls).
    let rows = |sql: &str, cols: &[&str]| -> Vec<serde_json::Value> {
        query_rows(&t, l, sql)
            .into_iter()
            .map(|r| {
                cols.iter()
                    .map(|c| r.get(*c).cloned().unwrap_or_default())
                    .collect()
            })
            .collect()
    };

    // Day 1, three fields.
    std::fs::write(&file, declaration(FIELDS_V1)).unwrap();
    land(
        &t,
        "2026-02-01",
        &[
            order("o1", "2026-02-01", 10.5, &[]),
            order("o2", "2026-02-01", 20.0, &[]),
        ],
    );
    batch("2026-02-02T02:00:00Z").assert_exit_code(0);
    unified("2026-02-02T02:10:00Z").assert_exit_code(0);

    // A nullable field added: the next run adds the column; older rows read as null.
    std::fs::write(&file, declaration(&format!("{FIELDS_V1}{COUPON}"))).unwrap();
    let m = t.run(&["--lake", l, "pipeline", "migrate"]);
    m.assert_exit_code(0);
    assert!(
        m.stdout()
            .contains("batch/silver/orders: add coupon string (done by the next run)"),
        "{}",
        m.stdout()
    );
    land(
        &t,
        "2026-02-02",
        &[order(
            "o3",
            "2026-02-02",
            30.0,
            &[("coupon", "WINTER".into())],
        )],
    );
    batch("2026-02-03T02:00:00Z").assert_exit_code(0);
    unified("2026-02-03T02:10:00Z").assert_exit_code(0);
    for table in ["silver_orders", "serving_unified_orders"] {
        let got = rows(
            &format!("SELECT order_id, coupon FROM {table} ORDER BY order_id"),
            &["order_id", "coupon"],
        );
        assert_eq!(
            got,
            [
                serde_json::json!(["o1", null]),
                serde_json::json!(["o2", null]),
                serde_json::json!(["o3", "WINTER"]),
            ],
            "{table}"
        );
    }
    let m = t.run(&["--lake", l, "pipeline", "migrate"]);
    m.assert_exit_code(0);
    assert!(
        m.stdout().contains("batch/silver/orders: up to date")
            && m.stdout().contains("serving/unified/orders: up to date"),
        "{}",
        m.stdout()
    );

    // amount becomes a string, qty is removed: refused before anything is written.
    std::fs::write(&file, declaration(&format!("{FIELDS_V3}{COUPON}"))).unwrap();
    land(
        &t,
        "2026-02-03",
        &[serde_json::json!({
            "order_id": "o4", "event_time": "2026-02-03T10:00:00Z",
            "amount": "40.25", "status": "new", "coupon": "SPRING",
        })],
    );
    let silver_version = |table: &str| {
        let log = lake.join(table).join("_delta_log");
        std::fs::read_dir(log)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".json")
            })
            .count()
    };
    let before = silver_version("batch/silver/orders");
    let r = batch("2026-02-04T02:00:00Z");
    assert_ne!(r.code(), 0, "{}", r.stdout());
    let log = t.run(&[
        "--lake",
        l,
        "logs",
        BATCH,
        "2026-02-04T02:00:00Z",
        "silver_orders",
    ]);
    let said = format!(
        "{}{}{}{}",
        r.stdout(),
        r.stderr(),
        log.stdout(),
        log.stderr()
    );
    assert!(
        said.contains("batch/silver/orders: column amount changes type from float to string"),
        "{said}"
    );
    assert_eq!(
        silver_version("batch/silver/orders"),
        before,
        "nothing written to silver"
    );
    let u = unified("2026-02-04T02:10:00Z");
    assert_ne!(u.code(), 0);
    let said = format!("{}{}", u.stdout(), u.stderr());
    assert!(
        said.contains("serving/unified/orders: column amount changes type from float to string"),
        "{said}"
    );

    let m = t.run(&["--lake", l, "pipeline", "migrate"]);
    m.assert_exit_code(1);
    let out = m.stdout();
    for want in [
        "batch/silver/orders: refused: column amount changes type from float to string",
        "batch/silver/orders: refused: column qty (int) is removed",
        "serving/unified/orders: refused: column amount changes type from float to string",
        "serving/unified/orders: refused: column qty (int) is removed",
    ] {
        assert!(out.contains(want), "{want} in\n{out}");
    }
    let m = t.run(&["--lake", l, "pipeline", "migrate", "--rewrite"]);
    m.assert_exit_code(0);
    let out = m.stdout();
    assert!(
        out.contains("batch/silver/orders: rewritten with the declared columns: 3 row(s)")
            && out
                .contains("serving/unified/orders: rewritten with the declared columns: 3 row(s)"),
        "{out}"
    );
    t.run(&["--lake", l, "pipeline", "migrate"])
        .assert_exit_code(0);

    // The runs proceed: the failed batch run again, then the serving layer.
    batch("2026-02-04T02:00:00Z").assert_exit_code(0);
    unified("2026-02-04T02:20:00Z").assert_exit_code(0);
    for table in ["silver_orders", "serving_unified_orders"] {
        let got = rows(
            &format!("SELECT order_id, amount, coupon FROM {table} ORDER BY order_id"),
            &["order_id", "amount", "coupon"],
        );
        assert_eq!(
            got,
            [
                serde_json::json!(["o1", "10.5", null]),
                serde_json::json!(["o2", "20.0", null]),
                serde_json::json!(["o3", "30.0", "WINTER"]),
                serde_json::json!(["o4", "40.25", "SPRING"]),
            ],
            "{table}"
        );
    }
}

/// The actions of the commits in `log` (a `_delta_log` folder) after version `after`, in
/// version order.
fn actions(log: &std::path::Path, after: Option<u64>) -> Vec<serde_json::Value> {
    let mut commits: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().parse().unwrap(), p))
        .filter(|(v, _)| after.is_none_or(|a| *v > a))
        .collect();
    commits.sort();
    commits
        .iter()
        .flat_map(|(_, p)| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The Delta statistics (`add.stats`) of the files added by the commits in `log`.
fn file_stats(log: &std::path::Path) -> Vec<serde_json::Value> {
    actions(log, None)
        .iter()
        .filter_map(|a| a["add"]["stats"].as_str())
        .map(|s| serde_json::from_str(s).unwrap())
        .collect()
}

#[test]
fn unified_tables_keep_file_statistics_of_the_event_time_only() {
    let (t, file) = declared_lake();
    let lake = t.lake();
    let l = lake.to_str().unwrap();
    std::fs::write(&file, declaration(FIELDS_V1)).unwrap();
    let unified = |run: &str| unified_run(&t, l, run);
    let log = lake.join("serving/unified/orders/_delta_log");
    let first_commit = log.join("00000000000000000000.json");
    const MADE: &str = r#""configuration":{"delta.dataSkippingStatsColumns":"event_time"}"#;

    // The run that makes the table gives it the property; its files' statistics are of the
    // event time alone.
    land(
        &t,
        "2026-02-01",
        &[
            order("o1", "2026-02-01", 10.5, &[]),
            order("o2", "2026-02-01", 20.0, &[]),
        ],
    );
    unified("2026-02-01T10:10:00Z").assert_exit_code(0);
    let made = std::fs::read_to_string(&first_commit).unwrap();
    assert!(made.contains(MADE), "{made}");
    let stats = file_stats(&log);
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0]["numRecords"], 2);
    assert_eq!(
        stats[0]["minValues"],
        serde_json::json!({ "event_time": "2026-02-01T10:00:00Z" })
    );

    // A table made without the property (by an older lakepipe) is given it by its next run,
    // which appends rows with statistics of the event time alone.
    std::fs::write(&first_commit, made.replace(MADE, r#""configuration":{}"#)).unwrap();
    land(&t, "2026-02-02", &[order("o3", "2026-02-02", 30.0, &[])]);
    unified("2026-02-02T10:10:00Z").assert_exit_code(0);
    let set: Vec<serde_json::Value> = actions(&log, Some(0))
        .into_iter()
        .filter(|a| a.get("metaData").is_some())
        .collect();
    assert_eq!(set.len(), 1, "one metadata commit: {set:?}");
    assert_eq!(
        set[0]["metaData"]["configuration"],
        serde_json::json!({ "delta.dataSkippingStatsColumns": "event_time" })
    );
    let said = t.run(&[
        "--lake",
        l,
        "logs",
        "4-serving_layer_merge",
        "2026-02-02T10:10:00Z",
        "unified_orders",
    ]);
    assert!(
        said.stdout()
            .contains("serving/unified/orders: file statistics limited to event_time"),
        "{}",
        said.stdout()
    );
    let stats = file_stats(&log);
    assert_eq!(stats.len(), 2);
    assert_eq!(
        stats[1]["maxValues"],
        serde_json::json!({ "event_time": "2026-02-02T10:00:00Z" })
    );
    let ids: Vec<serde_json::Value> = query_rows(
        &t,
        l,
        "SELECT order_id FROM serving_unified_orders ORDER BY order_id",
    )
    .into_iter()
    .map(|r| r["order_id"].clone())
    .collect();
    assert_eq!(ids, ["o1", "o2", "o3"]);
}
