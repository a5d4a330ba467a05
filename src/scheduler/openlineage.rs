//! OpenLineage run events of task attempts, sent where `[lineage]` says (docs/lineage.md).
//!
//! As Airflow's OpenLineage provider does: a START event when an attempt begins and a COMPLETE
//! or FAIL event when it ends, for the job `<dag_id>.<task_id>` in the configured namespace,
//! with a parent facet naming the DAG run (job `<dag_id>`), the nominal time (the data
//! interval), the job type, an error message facet on FAIL, and the datasets the attempt read
//! and wrote ([`Datasets`]) with their row counts, sizes and schemas. Run ids are UUIDv7 built
//! from the logical date and a hash of (DAG, task, logical date, try), so the scheduler, a
//! `tasks run` under Airflow and a rerun name an attempt alike. Datasets follow OpenLineage's
//! naming: namespace `s3://<bucket>` and name `<prefix>/<key>` on S3, `file` and the absolute
//! path on a local lake.
//!
//! Delivering an event never fails a task: one that cannot be sent is logged and dropped.

use std::io::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::task::{Dataset, Datasets};
use crate::clock::rfc3339_millis;
use crate::config::LineageConfig;
use crate::store::{LakeUrl, Store};

/// Who made the events (a URI, as the spec asks).
const PRODUCER: &str = concat!(
    "https://github.com/lakepipe/lakepipe/tree/v",
    env!("CARGO_PKG_VERSION")
);
const RUN_EVENT: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const NOMINAL_TIME: &str =
    "https://openlineage.io/spec/facets/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet";
const PARENT: &str =
    "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
const JOB_TYPE: &str =
    "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";
const ERROR_MESSAGE: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const SCHEMA: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const INPUT_STATISTICS: &str = "https://openlineage.io/spec/facets/1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet";
const OUTPUT_STATISTICS: &str = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";

/// How long one HTTP delivery may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries of one event over HTTP before it is dropped.
const HTTP_ATTEMPTS: u32 = 3;

/// A run event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The attempt began.
    Start,
    /// The attempt succeeded.
    Complete,
    /// The attempt failed.
    Fail,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
        }
    }
}

/// The attempt an event is about.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// The DAG.
    pub dag_id: &'a str,
    /// The task.
    pub task_id: &'a str,
    /// The run's logical date.
    pub logical_date: DateTime<Utc>,
    /// The run's data interval.
    pub data_interval: (DateTime<Utc>, DateTime<Utc>),
    /// 1-based try number.
    pub try_number: u32,
}

/// A UUIDv7 whose time is `at` and whose other bits are a hash of `parts`: the same parts name
/// the same run in every process.
fn static_uuid(at: DateTime<Utc>, parts: &[&str]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(parts.join("\u{1f}").as_bytes());
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &tail)
        .into_uuid()
        .to_string()
}

/// The run id of a task attempt.
pub fn task_run_id(a: &Attempt<'_>) -> String {
    let logical = rfc3339_millis(a.logical_date);
    let try_number = a.try_number.to_string();
    static_uuid(
        a.logical_date,
        &[a.dag_id, a.task_id, &logical, &try_number],
    )
}

/// The run id of a DAG run (the parent of its task attempts).
pub fn dag_run_id(dag_id: &str, logical_date: DateTime<Utc>) -> String {
    static_uuid(logical_date, &[dag_id, &rfc3339_millis(logical_date)])
}

/// OpenLineage's namespace and name of the lake's `name` (a key or a table path).
fn dataset_naming(lake: &Store, name: &str) -> (String, String) {
    match lake.url() {
        LakeUrl::S3 { bucket, prefix } if prefix.is_empty() => {
            (format!("s3://{bucket}"), name.to_string())
        }
        LakeUrl::S3 { bucket, prefix } => (format!("s3://{bucket}"), format!("{prefix}/{name}")),
        LakeUrl::Local(dir) => {
            // The spec names local files by absolute path; the lake may be given relatively.
            let root = lake.local_root().unwrap_or(dir.as_path());
            let root = std::fs::canonicalize(root)
                .or_else(|_| std::path::absolute(root))
                .unwrap_or_else(|_| root.to_path_buf());
            ("file".to_string(), root.join(name).display().to_string())
        }
    }
}

fn facet(schema_url: &str, fields: Value) -> Value {
    let mut f = json!({ "_producer": PRODUCER, "_schemaURL": schema_url });
    if let (Some(f), Value::Object(fields)) = (f.as_object_mut(), fields) {
        f.extend(fields);
    }
    f
}

/// A dataset of an event: its naming, its schema facet, and its statistics under
/// `inputFacets` / `outputFacets`.
fn dataset(lake: &Store, d: &Dataset, output: bool) -> Value {
    let (namespace, name) = dataset_naming(lake, &d.name);
    let mut facets = serde_json::Map::new();
    if !d.fields.is_empty() {
        let fields: Vec<Value> = d
            .fields
            .iter()
            .map(|(n, t)| json!({ "name": n, "type": t }))
            .collect();
        facets.insert("schema".into(), facet(SCHEMA, json!({ "fields": fields })));
    }
    let mut out = json!({ "namespace": namespace, "name": name, "facets": facets });
    if d.rows.is_some() || d.bytes.is_some() {
        let mut stats = serde_json::Map::new();
        if let Some(r) = d.rows {
            stats.insert("rowCount".into(), r.into());
        }
        if let Some(b) = d.bytes {
            stats.insert("size".into(), b.into());
        }
        let (key, facet_name, url) = if output {
            ("outputFacets", "outputStatistics", OUTPUT_STATISTICS)
        } else {
            ("inputFacets", "inputStatistics", INPUT_STATISTICS)
        };
        let mut facets = serde_json::Map::new();
        facets.insert(facet_name.into(), facet(url, Value::Object(stats)));
        out[key] = Value::Object(facets);
    }
    out
}

/// The run event of `kind` for `attempt` at `at`, with what it read and wrote so far and, on
/// FAIL, `error`.
pub fn run_event(
    lake: &Store,
    namespace: &str,
    attempt: &Attempt<'_>,
    kind: EventType,
    at: DateTime<Utc>,
    datasets: &Datasets,
    error: Option<&str>,
) -> Value {
    let (read, written) = datasets.snapshot();
    let mut run_facets = json!({
        "nominalTime": facet(NOMINAL_TIME, json!({
            "nominalStartTime": rfc3339_millis(attempt.data_interval.0),
            "nominalEndTime": rfc3339_millis(attempt.data_interval.1),
        })),
        "parent": facet(PARENT, json!({
            "run": { "runId": dag_run_id(attempt.dag_id, attempt.logical_date) },
            "job": { "namespace": namespace, "name": attempt.dag_id },
        })),
    });
    if let Some(message) = error {
        run_facets["errorMessage"] = facet(
            ERROR_MESSAGE,
            json!({ "message": message, "programmingLanguage": "Rust" }),
        );
    }
    json!({
        "eventType": kind.as_str(),
        "eventTime": rfc3339_millis(at),
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT,
        "run": { "runId": task_run_id(attempt), "facets": run_facets },
        "job": {
            "namespace": namespace,
            "name": format!("{}.{}", attempt.dag_id, attempt.task_id),
            "facets": {
                "jobType": facet(JOB_TYPE, json!({
                    "processingType": "BATCH",
                    "integration": "LAKEPIPE",
                    "jobType": "TASK",
                })),
            },
        },
        "inputs": read.iter().map(|d| dataset(lake, d, false)).collect::<Vec<_>>(),
        "outputs": written.iter().map(|d| dataset(lake, d, true)).collect::<Vec<_>>(),
    })
}

/// Appends to the file are made one whole line at a time within this process.
static FILE_TURN: Mutex<()> = Mutex::new(());

static CLIENT: LazyLock<Option<reqwest::Client>> = LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| tracing::warn!("OpenLineage: no HTTP client: {e}"))
        .ok()
});

/// Sends `event` where `config` says; failures are logged, never returned.
pub async fn emit(config: &LineageConfig, event: &Value) {
    if let Some(path) = &config.file {
        let mut line = event.to_string();
        line.push('\n');
        let written = {
            let _turn = FILE_TURN.lock().unwrap_or_else(|p| p.into_inner());
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
        };
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), "OpenLineage: cannot append an event: {e}");
        }
    }
    if let (Some(url), Some(client)) = (&config.url, CLIENT.as_ref()) {
        let target = format!(
            "{}/{}",
            url.trim_end_matches('/'),
            config.endpoint.trim_start_matches('/')
        );
        let body = event.to_string();
        for attempt in 1..=HTTP_ATTEMPTS {
            let mut request = client
                .post(&target)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(key) = &config.api_key {
                request = request.bearer_auth(key);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(url = %target, status = %r.status(), "OpenLineage: event refused; dropped");
                    return;
                }
                Ok(r) => {
                    tracing::warn!(url = %target, status = %r.status(), attempt, "OpenLineage: event not taken")
                }
                Err(e) => {
                    tracing::warn!(url = %target, attempt, "OpenLineage: cannot send an event: {e}")
                }
            }
            if attempt < HTTP_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
        tracing::warn!(url = %target, "OpenLineage: event dropped after {HTTP_ATTEMPTS} attempts");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    fn attempt(try_number: u32) -> Attempt<'static> {
        Attempt {
            dag_id: "4-serving_layer_merge",
            task_id: "dashboards",
            logical_date: parse_utc("2026-02-01T00:10:00Z").unwrap(),
            data_interval: (
                parse_utc("2026-02-01T00:00:00Z").unwrap(),
                parse_utc("2026-02-01T00:10:00Z").unwrap(),
            ),
            try_number,
        }
    }

    #[test]
    fn run_ids_are_uuid7_of_the_logical_date_and_name_one_attempt_alike() {
        let a = task_run_id(&attempt(1));
        assert_eq!(a, task_run_id(&attempt(1)));
        assert_ne!(a, task_run_id(&attempt(2)));
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
        let (secs, _) = u.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64, attempt(1).logical_date.timestamp());
        assert_ne!(
            a,
            dag_run_id("4-serving_layer_merge", attempt(1).logical_date)
        );
    }

    #[tokio::test]
    async fn an_event_names_its_job_parent_and_datasets_as_openlineage_does() {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::store::local_store(dir.path()).await;
        let datasets = Datasets::new(true);
        datasets.read(Dataset::at("serving/unified/api_logs").rows(7));
        datasets.wrote(Dataset {
            name: "serving/dashboards/api_health_1h".into(),
            rows: Some(3),
            bytes: None,
            fields: vec![("endpoint".into(), "string".into())],
        });
        let at = parse_utc("2026-02-01T00:10:03Z").unwrap();
        let e = run_event(
            &lake,
            "lakepipe",
            &attempt(1),
            EventType::Fail,
            at,
            &datasets,
            Some("boom"),
        );
        assert_eq!(e["eventType"], "FAIL");
        assert_eq!(e["eventTime"], "2026-02-01T00:10:03.000Z");
        assert_eq!(e["job"]["name"], "4-serving_layer_merge.dashboards");
        assert_eq!(
            e["run"]["facets"]["parent"]["job"]["name"],
            "4-serving_layer_merge"
        );
        assert_eq!(e["run"]["facets"]["errorMessage"]["message"], "boom");
        let input = &e["inputs"][0];
        assert_eq!(input["namespace"], "file");
        let root = std::fs::canonicalize(lake.local_root().unwrap())
            .unwrap()
            .display()
            .to_string();
        assert_eq!(input["name"], format!("{root}/serving/unified/api_logs"));
        assert_eq!(
            input["inputFacets"]["inputStatistics"]["rowCount"], 7,
            "{e}"
        );
        let output = &e["outputs"][0];
        assert_eq!(output["outputFacets"]["outputStatistics"]["rowCount"], 3);
        assert_eq!(output["facets"]["schema"]["fields"][0]["type"], "string");
    }

    #[tokio::test]
    async fn events_are_posted_to_the_endpoint_with_the_api_key_and_retried_after_a_5xx() {
        use axum::http::{HeaderMap, StatusCode};
        use std::sync::Arc;
        /// Content type, authorization and body of each POST received.
        type Received = Vec<(String, Option<String>, String)>;
        let got: Arc<Mutex<Received>> = Arc::default();
        let seen = Arc::clone(&got);
        let app = axum::Router::new().route(
            "/api/v1/lineage",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = Arc::clone(&seen);
                async move {
                    let mut seen = seen.lock().unwrap();
                    let header = |h: &str| {
                        headers
                            .get(h)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    seen.push((
                        header("content-type").unwrap_or_default(),
                        header("authorization"),
                        body,
                    ));
                    // The first delivery fails: the event is sent again.
                    if seen.len() == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = LineageConfig {
            url: Some(format!("http://{addr}/")),
            api_key: Some("s3cret".into()),
            ..LineageConfig::default()
        };
        emit(&config, &json!({"eventType": "START"})).await;
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "{got:?}");
        for (content_type, auth, body) in &got {
            assert_eq!(content_type, "application/json");
            assert_eq!(auth.as_deref(), Some("Bearer s3cret"));
            assert_eq!(body, r#"{"eventType":"START"}"#);
        }
    }

    #[tokio::test]
    async fn events_are_appended_to_the_file_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        let config = LineageConfig {
            file: Some(file.clone()),
            ..LineageConfig::default()
        };
        emit(&config, &json!({"a": 1})).await;
        emit(&config, &json!({"b": "two\nlines"})).await;
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, [r#"{"a":1}"#, r#"{"b":"two\nlines"}"#]);
    }
}
