//! `catalog refresh` and `query` on a local lake: counts against the test's own listing,
//! planted anomalies, incremental listing, Athena DDL parsed by sqlglot, the hourly DAG.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::{TestCommand, files_under, python};

/// Objects and bytes per partition of `dataset_dir`, from a directory walk made by the test.
/// `depth` is the number of partition segments (IoT: 4 with the device folder).
fn walk_partitions(dataset_dir: &Path, depth: usize) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for rel in files_under(dataset_dir) {
        let segs: Vec<&str> = rel.split('/').collect();
        if segs.len() != depth + 1 {
            continue;
        }
        let size = std::fs::metadata(dataset_dir.join(&rel)).unwrap().len();
        let e = out.entry(segs[..depth].join("/")).or_default();
        e.0 += 1;
        e.1 += size;
    }
    out
}

fn by_partition(meta: &serde_json::Value, dataset: &str) -> BTreeMap<String, (u64, u64)> {
    meta["partitions"][dataset]["by_partition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_str().unwrap().to_string(),
                (p["objects"].as_u64().unwrap(), p["bytes"].as_u64().unwrap()),
            )
        })
        .collect()
}

/// Lands `which` for the event-time range [from, to) into the test's lake.
fn land(t: &TestCommand, which: &str, from: &str, to: &str) {
    let lake = t.lake();
    t.run(&[
        "--lake",
        lake.to_str().unwrap(),
        "stream",
        which,
        "--from",
        from,
        "--to",
        to,
    ])
    .assert_exit_code(0);
}

fn read_json(lake: &Path, key: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(lake.join(key)).unwrap()).unwrap()
}

fn plant(lake: &Path, rel: &str, body: &[u8]) {
    let p = lake.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn listed(summary: &serde_json::Value, dataset: &str) -> Vec<String> {
    summary["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == dataset)
        .unwrap()["listed_partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn refresh_counts_partitions_reports_anomalies_and_lists_incrementally() {
    let t = TestCommand::new();
    let lake = t.lake();
    let lake_s = lake.to_str().unwrap();
    // One hour across midnight: two day partitions per dataset.
    land(&t, "all", "2026-02-01T23:30:00Z", "2026-02-02T00:30:00Z");
    let planted = [
        ("data/text_files/stray.txt", "outside the partition layout"),
        (
            "data/text_files/year=2026/month=2/day=01/document_0_000000.txt",
            "does not match",
        ),
        (
            "data/csv_files/year=2026/month=02/day=01/notes.txt",
            "file name does not match",
        ),
        (
            "data/csv_files/year=2026/month=02/day=02/data_9999_000000.csv",
            "zero-byte object",
        ),
        (
            "data/iot_data/year=2026/month=02/day=01/readings_000000_00000000.jsonl",
            "is not device_id",
        ),
        (
            "data/iot_data/device_id=sensor_000/year=2026/month=02/day=01/deep/x.jsonl",
            "nested below",
        ),
        (
            "realtime/api_logs/date=2026-02-01/hour=7/api_logs_20260201T070000Z.jsonl",
            "does not match",
        ),
    ];
    for (key, reason) in planted {
        let body: &[u8] = if reason == "zero-byte object" {
            b""
        } else {
            b"x\n"
        };
        plant(&lake, key, body);
    }

    let r = t.run(&["--lake", lake_s, "--json", "catalog", "refresh"]);
    r.assert_exit_code(0);
    let first = r.json();
    let meta: serde_json::Value = read_json(&lake, "metadata/partition_metadata.json");
    for (dataset, dir, depth) in [
        ("text_files", "data/text_files", 3),
        ("csv_files", "data/csv_files", 3),
        ("iot_data", "data/iot_data", 4),
    ] {
        let mut expected = walk_partitions(&lake.join(dir), depth);
        // Keys outside a valid partition are anomalies, not partition figures.
        expected.retain(|p, _| match dataset {
            "iot_data" => p.starts_with("device_id="),
            _ => !p.contains("month=2/"),
        });
        let got = by_partition(&meta, dataset);
        // The nested file counts in its (valid) partition: add it to the test's figures.
        let mut expected_with_nested = expected.clone();
        if dataset == "iot_data" {
            let e = expected_with_nested
                .get_mut("device_id=sensor_000/year=2026/month=02/day=01")
                .unwrap();
            e.0 += 1;
            e.1 += 2;
        }
        assert_eq!(got, expected_with_nested, "{dataset}");
        let total: u64 = got.values().map(|v| v.0).sum();
        assert_eq!(meta["partitions"][dataset]["total_objects"], total);
        assert_eq!(
            meta["small_objects"][dataset], total,
            "every landing file is < 128 KB"
        );
    }
    assert_eq!(
        by_partition(&meta, "text_files").keys().collect::<Vec<_>>(),
        ["year=2026/month=02/day=01", "year=2026/month=02/day=02"]
    );
    let anomalies = meta["anomalies"].as_array().unwrap();
    for (key, reason) in planted {
        assert!(
            anomalies
                .iter()
                .any(|a| a["key"] == key && a["reason"].as_str().unwrap().contains(reason)),
            "anomaly {key} ({reason}) missing in {anomalies:#?}"
        );
    }
    assert_eq!(anomalies.len(), planted.len(), "{anomalies:#?}");
    assert!(meta["generated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        meta["config"]["iot_data"]["partition_keys"],
        serde_json::json!(["device_id", "year", "month", "day"])
    );
    let size = std::fs::metadata(lake.join("metadata/partition_metadata.json"))
        .unwrap()
        .len();
    assert!(
        size < 64 * 1024,
        "metadata must not list keys ({size} bytes)"
    );
    assert_eq!(first["mode"], "incremental");

    // The hour's CSV rows, through the query engine (the zero-byte file has none).
    let q = t.run(&[
        "--lake",
        lake_s,
        "query",
        "SELECT count(*) AS n FROM csv_files",
        "--format",
        "csv",
    ]);
    q.assert_exit_code(0);
    assert_eq!(q.stdout().trim(), "n\n36000");
    let q = t.run(&[
        "--lake",
        lake_s,
        "query",
        "SELECT day, count(*) AS n FROM text_files WHERE month = '02' GROUP BY day ORDER BY day",
        "--format",
        "json",
    ]);
    q.assert_exit_code(0);
    assert_eq!(
        q.stdout().trim(),
        "{\"day\":\"01\",\"n\":36000}\n{\"day\":\"02\",\"n\":36000}"
    );

    // New files in a later day: only the newest known partition (it may still have been
    // growing) and the new one are listed; the older partition keeps its figures.
    land(&t, "csv", "2026-02-03T00:00:00Z", "2026-02-03T00:10:00Z");
    let second = t.run(&["--lake", lake_s, "--json", "catalog", "refresh"]);
    second.assert_exit_code(0);
    let second = second.json();
    assert_eq!(
        listed(&second, "csv_files"),
        ["year=2026/month=02/day=02", "year=2026/month=02/day=03"]
    );
    assert_eq!(listed(&second, "text_files"), ["year=2026/month=02/day=02"]);
    let meta2: serde_json::Value = read_json(&lake, "metadata/partition_metadata.json");
    let mut expected = walk_partitions(&lake.join("data/csv_files"), 3);
    expected.retain(|p, _| !p.contains("month=2/"));
    assert_eq!(by_partition(&meta2, "csv_files"), expected);
    assert_eq!(meta2["anomalies"].as_array().unwrap().len(), planted.len());

    // --full agrees with the incremental result.
    let full = t.run(&["--lake", lake_s, "--json", "catalog", "refresh", "--full"]);
    full.assert_exit_code(0);
    assert_eq!(full.json()["mode"], "full");
    let meta3: serde_json::Value = read_json(&lake, "metadata/partition_metadata.json");
    assert_eq!(meta3["partitions"], meta2["partitions"]);
    assert_eq!(meta3["anomalies"], meta2["anomalies"]);

    // One operation log per run, the latest copied.
    let logs: Vec<String> = files_under(&lake.join("logs/s3_orchestrator"));
    assert_eq!(logs.len(), 3, "{logs:?}");
    let latest = std::fs::read_to_string(lake.join("logs/s3_orchestrator.log")).unwrap();
    assert!(latest.contains("event=refresh.start mode=full"), "{latest}");
    let line = latest.lines().next().unwrap();
    assert!(line.split(' ').next().unwrap().ends_with('Z'), "{line}");
}

#[test]
fn athena_ddl_parses_with_an_independent_parser() {
    let t = TestCommand::new();
    let lake = t.lake();
    let lake_s = lake.to_str().unwrap();
    // A Delta table for the DDL to describe: any folder with a _delta_log.
    plant(
        &lake,
        "batch/silver/iot_sensors/_delta_log/00000000000000000000.json",
        b"{}\n",
    );
    t.run(&[
        "--lake",
        lake_s,
        "catalog",
        "refresh",
        "--athena-location",
        "s3://my-bucket/lake",
    ])
    .assert_exit_code(0);
    let script = r#"
import glob, json, sys
import sqlglot
from sqlglot import exp
out = {}
for path in sorted(glob.glob(sys.argv[1] + "/*.sql")):
    sql = open(path).read()
    stmts = [s for s in sqlglot.parse(sql, read="athena") if s is not None]
    assert len(stmts) == 1, (path, stmts)
    e = stmts[0]
    assert isinstance(e, exp.Create), (path, type(e))
    props = [type(p).__name__ for p in (e.args["properties"].expressions if e.args.get("properties") else [])]
    tbl = e.this
    cols = [c.name for c in tbl.expressions] if isinstance(tbl, exp.Schema) else []
    loc = [p.this.name for p in e.find_all(exp.LocationProperty)]
    out[path.rsplit("/", 1)[1]] = {"kind": e.args["kind"], "props": props, "columns": cols, "location": loc}
print(json.dumps(out))
"#;
    // A failure prints sqlglot's rejection of the DDL.
    let parsed: serde_json::Value = serde_json::from_str(&python(
        script,
        &[lake.join("metadata/athena").to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(parsed["00_database.sql"]["kind"], "DATABASE");
    for table in [
        "text_files",
        "csv_files",
        "iot_data",
        "realtime_iot_sensors",
        "realtime_api_logs",
        "realtime_social_media",
        "realtime_ecommerce_clickstream",
        "realtime_financial_transactions",
    ] {
        let t = &parsed[format!("{table}.sql")];
        assert_eq!(t["kind"], "TABLE", "{table}");
        let props = t["props"].as_array().unwrap();
        for p in [
            "ExternalProperty",
            "PartitionedByProperty",
            "LocationProperty",
        ] {
            assert!(
                props.iter().any(|x| x == p),
                "{table}: {p} missing in {props:?}"
            );
        }
        assert!(
            t["location"][0]
                .as_str()
                .unwrap()
                .starts_with("s3://my-bucket/lake/"),
            "{table}: {t}"
        );
    }
    assert_eq!(
        parsed["text_files.sql"]["columns"],
        serde_json::json!(["line"])
    );
    assert_eq!(
        parsed["csv_files.sql"]["columns"],
        serde_json::json!(["id", "timestamp", "value", "category", "status"])
    );
    assert_eq!(
        parsed["delta_silver_iot_sensors.sql"]["location"][0],
        "s3://my-bucket/lake/batch/silver/iot_sensors/"
    );
}

#[test]
fn catalog_dag_runs_the_refresh_and_bootstrap_dag_lays_out_the_lake() {
    let t = TestCommand::new();
    let lake = t.lake();
    let lake_s = lake.to_str().unwrap();
    t.run(&[
        "--lake",
        lake_s,
        "dags",
        "test",
        "1-infra_s3_bootstrap",
        "--logical-date",
        "2026-02-01T00:00:00Z",
    ])
    .assert_exit_code(0);
    assert!(lake.join("serving/dashboards").is_dir());
    let caps: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.join("_lakepipe/capabilities.json")).unwrap())
            .unwrap();
    assert_eq!(caps["conditional_put"], true);
    land(&t, "csv", "2026-02-01T00:00:00Z", "2026-02-01T00:10:00Z");
    let r = t.run(&[
        "--lake",
        lake_s,
        "tasks",
        "run",
        "5-lake_catalog_refresh",
        "catalog_refresh",
        "--logical-date",
        "2026-02-01T01:00:00Z",
    ]);
    r.assert_exit_code(0);
    let meta: serde_json::Value = read_json(&lake, "metadata/partition_metadata.json");
    assert_eq!(meta["partitions"]["csv_files"]["total_objects"], 60);
    let log = t.run(&[
        "--lake",
        lake_s,
        "logs",
        "5-lake_catalog_refresh",
        "2026-02-01T01:00:00Z",
        "catalog_refresh",
    ]);
    log.assert_exit_code(0);
    assert!(
        log.stdout().contains("event=dataset dataset=csv_files"),
        "{}",
        log.stdout()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_on_s3_skips_folder_markers_and_reports_empty_partitions() {
    let server = crate::util::s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = server.new_bucket("cat").await;
    let lake = format!("s3://{bucket}/lp");
    let s = server.clone();
    let l = lake.clone();
    let t = tokio::task::spawn_blocking(move || {
        let t = s.apply(TestCommand::new());
        t.run(&["--lake", &l, "bootstrap"]).assert_exit_code(0);
        t.run(&[
            "--lake",
            &l,
            "stream",
            "csv",
            "--from",
            "2026-02-01T00:00:00Z",
            "--to",
            "2026-02-01T00:10:00Z",
        ])
        .assert_exit_code(0);
        t
    })
    .await
    .unwrap();
    // An empty partition, as S3 consoles create folders.
    server
        .client()
        .put_object()
        .bucket(&bucket)
        .key("lp/data/csv_files/year=2026/month=02/day=05/")
        .body(Vec::new().into())
        .send()
        .await
        .unwrap();
    let l = lake.clone();
    let r =
        tokio::task::spawn_blocking(move || t.run(&["--lake", &l, "--json", "catalog", "refresh"]))
            .await
            .unwrap();
    r.assert_exit_code(0);
    let keys = server.keys(&bucket, "lp/data/csv_files/year=").await;
    let meta: serde_json::Value = serde_json::from_slice(
        &server
            .object(&bucket, "lp/metadata/partition_metadata.json")
            .await,
    )
    .unwrap();
    assert_eq!(meta["bucket_name"], bucket.as_str());
    assert_eq!(meta["prefix"], "lp");
    // The marker is not an object of the partition figures.
    assert_eq!(
        meta["partitions"]["csv_files"]["total_objects"],
        (keys.len() - 1) as u64
    );
    assert_eq!(
        meta["anomalies"],
        serde_json::json!([{
            "dataset": "csv_files",
            "key": "data/csv_files/year=2026/month=02/day=05/",
            "reason": "empty partition (folder marker without objects)"
        }]),
        "bootstrap's folder markers are not anomalies"
    );
    let ddl = String::from_utf8(
        server
            .object(&bucket, "lp/metadata/athena/csv_files.sql")
            .await,
    )
    .unwrap();
    assert!(
        ddl.contains(&format!("LOCATION 's3://{bucket}/lp/data/csv_files/'")),
        "{ddl}"
    );
    let latest = server.keys(&bucket, "lp/logs/s3_orchestrator").await;
    assert!(
        latest.iter().any(|k| k == "lp/logs/s3_orchestrator.log"),
        "{latest:?}"
    );
}
