//! `/metrics` in Prometheus' text format: DAG runs by state, task durations, rows by layer
//! and table, quarantined rows, landing objects and bytes (from the catalog), this process's
//! S3 requests, errors and retries, and its ingest API's records, requests and bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::data::{LakeView, runs_by_state};
use crate::store::metrics::s3_counters;

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Renders every metric.
pub async fn render(view: &LakeView) -> Result<String, super::Error> {
    let mut out = String::new();
    let runs = view.all_runs().await?;

    family(
        &mut out,
        "lakepipe_dag_runs",
        "gauge",
        "DAG runs recorded in the lake, by state.",
    );
    for ((dag, state), n) in runs_by_state(&runs) {
        let _ = writeln!(
            out,
            "lakepipe_dag_runs{{dag_id=\"{}\",state=\"{state}\"}} {n}",
            label(&dag)
        );
    }

    // Task durations over the newest run of each DAG (a summary per task).
    family(
        &mut out,
        "lakepipe_task_duration_seconds",
        "summary",
        "Durations of the task attempts of each DAG's newest finished run.",
    );
    let mut newest: BTreeMap<&str, &crate::scheduler::DagRun> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.state.is_finished()) {
        let e = newest.entry(r.dag_id.as_str()).or_insert(r);
        if r.logical_date > e.logical_date {
            *e = r;
        }
    }
    for (dag_id, run) in newest {
        let Some(dag) = super::params::find_dag(dag_id).ok() else {
            continue;
        };
        for ti in view.task_instances(dag, run).await? {
            let sum: f64 = ti.attempts.iter().map(|a| a.duration_s).sum();
            let l = format!(
                "dag_id=\"{}\",task_id=\"{}\"",
                label(dag_id),
                label(&ti.task_id)
            );
            let _ = writeln!(
                out,
                "lakepipe_task_duration_seconds_sum{{{l}}} {sum}\nlakepipe_task_duration_seconds_count{{{l}}} {}",
                ti.attempts.len()
            );
        }
    }

    let tables = view.tables().await?;
    family(
        &mut out,
        "lakepipe_table_rows",
        "gauge",
        "Rows of each Delta table (from the Delta log's statistics), by layer.",
    );
    for t in &tables {
        let _ = writeln!(
            out,
            "lakepipe_table_rows{{layer=\"{}\",table=\"{}\"}} {}",
            label(&t.layer),
            label(&t.name),
            t.rows
        );
    }
    family(
        &mut out,
        "lakepipe_layer_rows",
        "gauge",
        "Rows of all Delta tables of a layer.",
    );
    let mut by_layer: BTreeMap<&str, u64> = BTreeMap::new();
    for t in &tables {
        *by_layer.entry(t.layer.as_str()).or_default() += t.rows;
    }
    for (layer, n) in by_layer {
        let _ = writeln!(out, "lakepipe_layer_rows{{layer=\"{layer}\"}} {n}");
    }
    family(
        &mut out,
        "lakepipe_quarantined_rows",
        "gauge",
        "Rows in the quarantine table of each stream.",
    );
    for t in tables.iter().filter(|t| t.layer == "quarantine") {
        let stream = t.path.rsplit('/').next().unwrap_or_default();
        let _ = writeln!(
            out,
            "lakepipe_quarantined_rows{{stream=\"{}\"}} {}",
            label(stream),
            t.rows
        );
    }

    family(
        &mut out,
        "lakepipe_landing_objects",
        "gauge",
        "Objects of each landing dataset, from the catalog's last refresh.",
    );
    let meta = view.partition_metadata().await?;
    let parts = meta
        .as_ref()
        .and_then(|m| m["partitions"].as_object().cloned())
        .unwrap_or_default();
    for (ds, p) in &parts {
        let _ = writeln!(
            out,
            "lakepipe_landing_objects{{dataset=\"{}\"}} {}",
            label(ds),
            p["total_objects"].as_u64().unwrap_or(0)
        );
    }
    family(
        &mut out,
        "lakepipe_landing_bytes",
        "gauge",
        "Bytes of each landing dataset, from the catalog's last refresh.",
    );
    for (ds, p) in &parts {
        let _ = writeln!(
            out,
            "lakepipe_landing_bytes{{dataset=\"{}\"}} {}",
            label(ds),
            p["total_bytes"].as_u64().unwrap_or(0)
        );
    }

    let s3 = s3_counters();
    family(
        &mut out,
        "lakepipe_s3_requests_total",
        "counter",
        "S3 request attempts made by this process, by method.",
    );
    for (m, n) in &s3.requests {
        let _ = writeln!(out, "lakepipe_s3_requests_total{{method=\"{m}\"}} {n}");
    }
    family(
        &mut out,
        "lakepipe_s3_request_errors_total",
        "counter",
        "Failed S3 request attempts of this process, by kind (server, throttled, client, connection, body: an answer that broke off).",
    );
    for (kind, n) in [
        ("server", s3.server_errors),
        ("throttled", s3.throttled),
        ("client", s3.client_errors),
        ("connection", s3.connection_errors),
        ("body", s3.body_retries),
    ] {
        let _ = writeln!(
            out,
            "lakepipe_s3_request_errors_total{{kind=\"{kind}\"}} {n}"
        );
    }
    family(
        &mut out,
        "lakepipe_s3_retries_total",
        "counter",
        "S3 request attempts that are repeated (server, throttling, connection errors, and answers that broke off).",
    );
    let _ = writeln!(out, "lakepipe_s3_retries_total {}", s3.retried());
    ingest(&mut out);
    Ok(out)
}

/// The ingest API's counters of this process.
fn ingest(out: &mut String) {
    let c = crate::landing::api::ingest_counters();
    family(
        out,
        "lakepipe_ingest_records_total",
        "counter",
        "Records posted to the ingest API by this process, by stream and outcome (accepted: landed; rejected: not a JSON object).",
    );
    for ((stream, outcome), n) in &c.records {
        let _ = writeln!(
            out,
            "lakepipe_ingest_records_total{{stream=\"{}\",outcome=\"{outcome}\"}} {n}",
            label(stream)
        );
    }
    family(
        out,
        "lakepipe_ingest_requests_total",
        "counter",
        "Requests to the ingest API answered by this process, by stream and HTTP status.",
    );
    for ((stream, status), n) in &c.requests {
        let _ = writeln!(
            out,
            "lakepipe_ingest_requests_total{{stream=\"{}\",status=\"{status}\"}} {n}",
            label(stream)
        );
    }
    family(
        out,
        "lakepipe_ingest_bytes_total",
        "counter",
        "Bytes of the records the ingest API of this process accepted, by stream.",
    );
    for (stream, n) in &c.bytes {
        let _ = writeln!(
            out,
            "lakepipe_ingest_bytes_total{{stream=\"{}\"}} {n}",
            label(stream)
        );
    }
    family(
        out,
        "lakepipe_ingest_inflight_bytes",
        "gauge",
        "Bytes of ingest requests held in memory right now (bounded by ingest.max_inflight_bytes).",
    );
    let _ = writeln!(out, "lakepipe_ingest_inflight_bytes {}", c.inflight_bytes);
}
