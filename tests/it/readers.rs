//! Three Delta readers nobody here wrote — the `deltalake` package, Polars and DuckDB with its
//! Delta extension (from the `duckdb-extension-delta` wheel, offline) — read every table of a
//! lake, and each agrees with `lakepipe query` on rows, schema and a checksum over the rows.

use std::path::Path;

use crate::util::{TestCommand, python};

/// The query name of the Delta table at `rel` (relative to the lake): `batch/silver/x` is
/// `silver_x`, `serving/unified/x` is `serving_unified_x`.
fn table_name(rel: &str) -> String {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts[0] == "batch" {
        parts[1..].join("_")
    } else {
        parts.join("_")
    }
}

/// Delta tables under `batch/*/*` and `serving/*/*` of the local lake at `lake`, as
/// (query name, directory).
pub(crate) fn tables(lake: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for layer in ["batch", "serving"] {
        let Ok(kinds) = std::fs::read_dir(lake.join(layer)) else {
            continue;
        };
        for kind in kinds.flatten() {
            for table in std::fs::read_dir(kind.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if table.path().join("_delta_log").is_dir() {
                    let rel = table.path().strip_prefix(lake).unwrap().to_owned();
                    out.push((table_name(rel.to_str().unwrap()), table.path()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Reads every Delta table of the local lake `lake` with the three readers and `lakepipe
/// query`, asserts they agree on each, and returns the report (per table: `protocol`, and per
/// reader `rows`, `sha256`, `schema`, and `partitions` from `deltalake`).
pub fn three_readers_agree(t: &TestCommand, lake: &Path) -> serde_json::Value {
    let l = lake.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tables = tables(lake);
    assert!(!tables.is_empty(), "no Delta tables under {l}");
    for (name, path) in &tables {
        let r = t.run(&[
            "--lake",
            l,
            "query",
            &format!("SELECT * FROM {name}"),
            "--format",
            "json",
        ]);
        r.assert_exit_code(0);
        std::fs::write(dir.path().join(format!("{name}.jsonl")), r.stdout()).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.path")),
            path.to_str().unwrap(),
        )
        .unwrap();
    }
    let out = python(
        include_str!("readers.py"),
        &[l, dir.path().to_str().unwrap()],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let by_table = report["tables"].as_object().unwrap();
    assert_eq!(by_table.len(), tables.len(), "{report}");
    for (name, entry) in by_table {
        let readers = &entry["readers"];
        let ours = &readers["lakepipe"];
        for engine in ["deltalake", "polars", "duckdb"] {
            let theirs = &readers[engine];
            assert_eq!(
                (&theirs["rows"], &theirs["sha256"]),
                (&ours["rows"], &ours["sha256"]),
                "{name}: {engine} reads other rows than `lakepipe query`: {entry}"
            );
            assert_eq!(
                sorted(&theirs["schema"]),
                sorted(&readers["deltalake"]["schema"]),
                "{name}: {engine} sees another schema: {entry}"
            );
        }
        // Readers that lag behind can read it: no table features, the oldest protocol
        // that still has what lakepipe writes.
        let p = &entry["protocol"];
        assert_eq!(
            (&p["min_reader_version"], &p["min_writer_version"]),
            (&serde_json::json!(1), &serde_json::json!(2)),
            "{name}: {p}"
        );
        assert!(
            p["reader_features"].is_null() && p["writer_features"].is_null(),
            "{name}: {p}"
        );
    }
    report
}

/// A schema (`[[name, type], …]`) as a sorted list: readers may put partition columns last.
fn sorted(schema: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = schema
        .as_array()
        .unwrap_or_else(|| panic!("not a schema: {schema}"))
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_string(),
                c[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn table_names_follow_the_query_catalog() {
    assert_eq!(table_name("batch/silver/api_logs"), "silver_api_logs");
    assert_eq!(
        table_name("serving/unified/api_logs"),
        "serving_unified_api_logs"
    );
}
