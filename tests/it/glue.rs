//! Issue 28, item 3: `lakepipe catalog refresh --glue` registers the catalog's tables in the
//! Glue Data Catalog (moto's Glue, started by `scripts/test`), idempotently, and what Glue
//! holds, read back with boto3, is what the Athena DDL files say (parsed by sqlglot).

use crate::util::{TestCommand, python, s3_server, unique_suffix};

const CHECK: &str = include_str!("glue.py");

fn refresh(t: &TestCommand, lake: &str) -> serde_json::Value {
    let r = t.run(&["--lake", lake, "--json", "catalog", "refresh", "--glue"]);
    r.assert_exit_code(0);
    r.json()["glue"].clone()
}

#[test]
fn catalog_refresh_registers_every_table_in_glue_as_its_ddl_says_and_again_changes_nothing() {
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(server.new_bucket("glue"));
    let lake = format!("s3://{bucket}/lake");
    // Glue databases are account-wide on the one moto server: one of this test's own.
    let database = format!("lp_{}", unique_suffix());
    let t = server.apply(TestCommand::new());
    std::fs::write(
        t.path().join("lakepipe.toml"),
        format!("[glue]\ndatabase = \"{database}\"\n"),
    )
    .unwrap();
    // Delta tables to register beside the datasets: the speed layer and serving of 10 minutes.
    t.run(&[
        "--lake",
        &lake,
        "simulate",
        "--from",
        "2026-02-01T00:00:00Z",
        "--to",
        "2026-02-01T00:10:00Z",
        "--scale",
        "0.02",
        "--dag",
        "2-api_logs_realtime_ingest",
        "--dag",
        "4-serving_layer_merge",
    ])
    .assert_exit_code(0);

    let first = refresh(&t, &lake);
    assert_eq!(first["database"], database.as_str());
    assert_eq!(first["database_created"], true, "{first}");
    let created: Vec<&str> = first["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for table in [
        "text_files",
        "csv_files",
        "iot_data",
        "realtime_api_logs",
        "serving_unified_api_logs",
    ] {
        assert!(created.contains(&table), "{table} not in {created:?}");
    }
    assert_eq!(first["updated"], serde_json::json!({}));
    assert_eq!(first["unchanged"], 0);

    // What Glue holds is what the DDL says, table by table.
    let check = || -> serde_json::Value {
        serde_json::from_str(&python(
            CHECK,
            &[&server.endpoint, &bucket, "lake", &database],
        ))
        .unwrap()
    };
    let read = check();
    assert_eq!(read["mismatches"], serde_json::json!([]), "{read}");
    assert_eq!(
        read["tables"].as_object().unwrap().len(),
        created.len(),
        "{read}"
    );
    let csv = &read["tables"]["csv_files"];
    assert_eq!(csv["parameters"]["skip.header.line.count"], "1", "{csv}");
    assert_eq!(csv["parameters"]["projection.enabled"], "true", "{csv}");
    let delta = &read["tables"]["serving_unified_api_logs"];
    assert_eq!(delta["parameters"]["table_type"], "DELTA", "{delta}");
    assert_eq!(
        delta["location"],
        format!("{lake}/serving/unified/api_logs/"),
        "{delta}"
    );

    // Again: nothing to do.
    let second = refresh(&t, &lake);
    assert_eq!(second["database_created"], false, "{second}");
    assert_eq!(second["created"], serde_json::json!([]), "{second}");
    assert_eq!(second["updated"], serde_json::json!({}), "{second}");
    assert_eq!(second["unchanged"], created.len(), "{second}");

    // Someone moves a table and adds a parameter of their own: the next refresh puts the
    // location back, updates only that table, and keeps their parameter.
    python(
        r#"
import sys, boto3
endpoint, db = sys.argv[1:3]
glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1",
                    aws_access_key_id="testing", aws_secret_access_key="testing")
t = glue.get_table(DatabaseName=db, Name="realtime_api_logs")["Table"]
keep = ["Name", "TableType", "StorageDescriptor", "PartitionKeys", "Parameters"]
inp = {k: t[k] for k in keep if k in t}
inp["StorageDescriptor"]["Location"] = "s3://elsewhere/api_logs/"
inp["Parameters"]["owner_team"] = "analytics"
glue.update_table(DatabaseName=db, TableInput=inp)
"#,
        &[&server.endpoint, &database],
    );
    let third = refresh(&t, &lake);
    assert_eq!(
        third["updated"],
        serde_json::json!({"realtime_api_logs": ["location"]}),
        "{third}"
    );
    assert_eq!(third["unchanged"], created.len() - 1, "{third}");
    let read = check();
    let api = &read["tables"]["realtime_api_logs"];
    assert_eq!(
        api["location"],
        format!("{lake}/realtime/api_logs/"),
        "{api}"
    );
    assert_eq!(api["parameters"]["owner_team"], "analytics", "{api}");

    // With `[glue] enabled`, the hourly catalog DAG registers them too (here: nothing new).
    std::fs::write(
        t.path().join("lakepipe.toml"),
        format!("[glue]\nenabled = true\ndatabase = \"{database}\"\n"),
    )
    .unwrap();
    let task = t.run(&[
        "--lake",
        &lake,
        "--json",
        "tasks",
        "run",
        "5-lake_catalog_refresh",
        "catalog_refresh",
        "--logical-date",
        "2026-02-01T01:00:00Z",
    ]);
    task.assert_exit_code(0);
    let out = task.json()["output"].clone();
    assert_eq!(out["glue"]["database_created"], false, "{out}");
    assert_eq!(out["glue"]["unchanged"], created.len(), "{out}");

    // A local lake has no S3 location for Glue to point at: refused, with what to do.
    let local = TestCommand::new();
    let r = local.run(&["--lake", "lake", "catalog", "refresh", "--glue"]);
    r.assert_exit_code(1);
    assert!(r.stderr().contains("--athena-location"), "{}", r.stderr());
}
