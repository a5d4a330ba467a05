//! The UI end to end: requests through the whole router (its layers, handlers and errors)
//! over a lake with runs, logs, a Delta table and the serving and catalog documents.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request as HttpRequest, StatusCode, header};
use bytes::Bytes;
use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use tower::ServiceExt as _;

use serde_json::json;

use super::{Access, check_listen, router};
use crate::clock::parse_utc;
use crate::pipeline::{dag as dag_by_id, dags as all_dags};
use crate::scheduler::control;
use crate::scheduler::state::{Attempt, RunStore};
use crate::scheduler::{DagRun, RunState, RunType, TaskInstance, TaskState};
use crate::store::{ObjectAttrs, Store};

const DAG: &str = "4-serving_layer_merge";
const T: &str = "2026-02-01T10:00:00Z";

/// A lake with one failed serving run (one task failed, its downstream upstream_failed),
/// one successful one, a log, a Delta table, the dashboards, alerts and catalog documents.
async fn lake() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::local_store(dir.path()).await;
    let runs = RunStore::new(store.clone(), true);
    let dag = dag_by_id(DAG).unwrap();
    let t = parse_utc(T).unwrap();
    for (at, state) in [
        (t, RunState::Failed),
        (t - chrono::Duration::minutes(10), RunState::Success),
    ] {
        let mut run = DagRun::new(dag, at, RunType::Scheduled, state, at);
        run.start_date = Some(at);
        run.end_date = Some(at + chrono::Duration::seconds(3));
        runs.put_run(&run).await.unwrap();
        for (i, spec) in dag.tasks.iter().enumerate() {
            let mut ti = TaskInstance::new(DAG, &spec.task_id, at, 2);
            ti.state = match (state, i) {
                (RunState::Failed, 0) => TaskState::Failed,
                (RunState::Failed, _) if !spec.upstream.is_empty() => TaskState::UpstreamFailed,
                _ => TaskState::Success,
            };
            if ti.state != TaskState::UpstreamFailed {
                ti.attempts.push(Attempt {
                    try_number: 1,
                    state: ti.state,
                    start_date: at,
                    end_date: Some(at + chrono::Duration::seconds(1)),
                    duration_s: 1.0,
                    error: (ti.state == TaskState::Failed).then(|| "boom".to_string()),
                });
                runs.put_log(
                    DAG,
                    at,
                    &spec.task_id,
                    1,
                    format!("log of {}\n", spec.task_id),
                )
                .await
                .unwrap();
            }
            runs.put_ti(&ti).await.unwrap();
        }
    }
    let json_attrs = ObjectAttrs::default();
    let put = |key: &'static str, v: serde_json::Value| {
        let store = store.clone();
        let attrs = json_attrs.clone();
        async move {
            store
                .put(key, Bytes::from(serde_json::to_vec(&v).unwrap()), &attrs)
                .await
                .unwrap()
        }
    };
    put(
        "serving/dashboards/api_health_1h.json",
        json!({"name": "api_health_1h", "stream": "api_logs", "as_of": T,
               "window": {"start": "2026-02-01T09:00:00Z", "end": T, "minutes": 60},
               "events_by_source": {"batch": 5, "speed": 2},
               "rows": [{"endpoint": "/api/v1/payments", "request_count": 7, "p95_ms": 2300.0, "error_rate_pct": 14.29}]}),
    )
    .await;
    put(
        "serving/alerts/latest.json",
        json!({"as_of": T, "raised": [], "last_24h": [{"alert_id": "api_error_rate:/x:1", "rule": "api_error_rate",
               "severity": "high", "subject": "/x", "window_start": "2026-02-01T09:45:00Z", "window_end": T,
               "triggered_at": T, "value": 12.0, "threshold": 5.0, "triggering_ids": ["l1", "l2"],
               "triggering_count": 2, "detail": "2 errors"}]}),
    )
    .await;
    put(
        "metadata/partition_metadata.json",
        json!({"generated_at": T, "partitions": {"realtime_api_logs": {"total_objects": 3, "total_bytes": 300,
               "partition_count": 1, "by_partition": [{"partition": "date=2026-02-01/hour=09", "objects": 3, "bytes": 300}]}}}),
    )
    .await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("log_id", DataType::Utf8, false),
        Field::new("status_code", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Int64Array::from(vec![200, 500])),
        ],
    )
    .unwrap();
    store
        .delta_table_or_new("batch/silver/api_logs")
        .await
        .unwrap()
        .write(vec![batch])
        .await
        .unwrap();
    (dir, store)
}

/// The address the test routers listen on (the `Host` of every request unless given).
const LISTEN: &str = "127.0.0.1:8080";

fn app(store: Store, token: Option<&str>) -> Router {
    let access = Access {
        token: token.map(str::to_string),
        allowed_hosts: vec![],
    };
    router(store, LISTEN.parse().unwrap(), access).unwrap()
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    send(app, method, uri, headers, "").await
}

/// A request with `body`; `Host: 127.0.0.1:8080` unless `headers` name one.
async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = HttpRequest::builder().method(method).uri(uri);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", LISTEN);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = to_bytes(res.into_body(), 1 << 24).await.unwrap();
    (status, headers, body)
}

async fn get_json(app: &Router, uri: &str) -> serde_json::Value {
    let (status, headers, body) = call(app, "GET", uri, &[]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
    serde_json::from_slice(&body).unwrap()
}

/// Headers of an API write as a script of the UI (or a CLI client) sends it.
const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// Headers of a form action as a browser posts it from one of the UI's pages.
fn browser_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", "http://127.0.0.1:8080"),
        ("sec-fetch-site", "same-origin"),
    ]
}

/// The CSRF token in the forms of the DAGs page.
async fn csrf_of(app: &Router) -> String {
    let (status, _, body) = call(app, "GET", "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(body.to_vec()).unwrap();
    let m = "name=\"csrf\" value=\"";
    let at = page.find(m).expect("a form with the CSRF token") + m.len();
    let token = &page[at..at + page[at..].find('"').unwrap()];
    assert_eq!(token.len(), 32, "{token}");
    assert_eq!(
        page.matches(&format!("value=\"{token}\"")).count(),
        page.matches("<form ").count(),
        "every form carries it"
    );
    token.to_string()
}

#[tokio::test]
async fn every_read_route_answers_with_its_shape() {
    let (_d, store) = lake().await;
    let app = app(store, None);

    let dags = get_json(&app, "/api/dags").await;
    assert_eq!(dags.as_array().unwrap().len(), all_dags().len());
    let serving = dags
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dag_id"] == DAG)
        .unwrap();
    assert_eq!(serving["last_run"]["state"], "failed");
    assert_eq!(serving["last_run"]["logical_date"], T);
    assert_eq!(serving["runs_by_state"], json!({"failed": 1, "success": 1}));
    assert_eq!(serving["next_fire_time"], "2026-02-01T10:10:00Z");
    assert_eq!(serving["is_paused"], false);

    let dag = get_json(&app, &format!("/api/dags/{DAG}")).await;
    assert_eq!(
        dag["tasks"].as_array().unwrap().len(),
        dag_by_id(DAG).unwrap().tasks.len()
    );
    assert!(dag["tasks"][0]["task_id"].is_string());

    let grid = get_json(&app, &format!("/api/dags/{DAG}/grid")).await;
    let first_task = grid["task_ids"][0].as_str().unwrap().to_string();
    assert_eq!(grid["runs"].as_array().unwrap().len(), 2);
    assert_eq!(grid["runs"][0]["logical_date"], T, "newest first");
    assert_eq!(
        grid["runs"][0]["data_interval_start"],
        "2026-02-01T09:50:00Z"
    );
    assert_eq!(grid["runs"][0]["data_interval_end"], T);
    assert_eq!(grid["runs"][0]["tasks"][&first_task], "failed");
    assert_eq!(grid["runs"][1]["tasks"][&first_task], "success");
    let limited = get_json(&app, &format!("/api/dags/{DAG}/grid?limit=1")).await;
    assert_eq!(limited["runs"].as_array().unwrap().len(), 1);

    let run = get_json(&app, &format!("/api/dags/{DAG}/runs/{T}")).await;
    assert_eq!(run["run"]["state"], "failed");
    assert_eq!(run["task_instances"][0]["attempts"][0]["error"], "boom");

    let (status, headers, body) = call(
        &app,
        "GET",
        &format!("/api/dags/{DAG}/runs/{T}/tasks/{first_task}/log"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(body, format!("log of {first_task}\n"));

    let lake = get_json(&app, "/api/lake").await;
    assert_eq!(
        lake["catalog"]["partitions"]["realtime_api_logs"]["total_objects"],
        3
    );
    let t = &lake["tables"][0];
    assert_eq!(
        (t["name"].as_str(), t["layer"].as_str()),
        (Some("silver_api_logs"), Some("silver"))
    );
    assert_eq!(
        (
            t["rows"].as_u64(),
            t["files"].as_u64(),
            t["version"].as_u64()
        ),
        (Some(2), Some(1), Some(0))
    );
    assert_eq!(t["schema"][1], json!(["status_code", "long"]));

    let dashboards = get_json(&app, "/api/dashboards").await;
    assert_eq!(dashboards.as_object().unwrap().len(), 1);
    let one = get_json(&app, "/api/dashboards/api_health_1h").await;
    assert_eq!(one["events_by_source"]["batch"], 5);
    let alerts = get_json(&app, "/api/alerts").await;
    assert_eq!(alerts["last_24h"][0]["rule"], "api_error_rate");

    let (status, headers, body) = call(&app, "GET", "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        format!("lakepipe_dag_runs{{dag_id=\"{DAG}\",state=\"failed\"}} 1"),
        format!("lakepipe_dag_runs{{dag_id=\"{DAG}\",state=\"success\"}} 1"),
        format!(
            "lakepipe_task_duration_seconds_count{{dag_id=\"{DAG}\",task_id=\"{first_task}\"}} 1"
        ),
        "lakepipe_table_rows{layer=\"silver\",table=\"silver_api_logs\"} 2".to_string(),
        "lakepipe_layer_rows{layer=\"silver\"} 2".to_string(),
        "lakepipe_landing_objects{dataset=\"realtime_api_logs\"} 3".to_string(),
        "lakepipe_landing_bytes{dataset=\"realtime_api_logs\"} 300".to_string(),
        "lakepipe_s3_retries_total ".to_string(),
        "lakepipe_s3_requests_total{method=\"GET\"} ".to_string(),
    ] {
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn unknown_things_are_404_and_bad_dates_400() {
    let (_d, store) = lake().await;
    let app = app(store, None);
    for uri in [
        "/api/dags/nope".to_string(),
        "/api/dags/nope/grid".to_string(),
        format!("/api/dags/{DAG}/runs/2026-01-01T00:00:00Z"),
        format!("/api/dags/{DAG}/runs/{T}/tasks/nope/log"),
        format!("/api/dags/{DAG}/runs/{T}/tasks/unified_api_logs/log?attempt=7"),
        "/api/dashboards/nope".to_string(),
        "/dags/nope".to_string(),
    ] {
        let (status, _, body) = call(&app, "GET", &uri, &[]).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _, body) =
        call(&app, "GET", &format!("/api/dags/{DAG}/runs/yesterday"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"].is_string());
}

/// A logical date outside the supported range is a 400 on every route that takes one, and
/// nothing is queued or recorded: the scheduler never sees it.
#[tokio::test]
async fn extreme_dates_are_400_and_queue_nothing() {
    let (_d, store) = lake().await;
    let app = app(store.clone(), None);
    let runs = RunStore::new(store.clone(), true);
    let recorded = || async {
        futures::TryStreamExt::try_collect::<Vec<_>>(runs.runs(None))
            .await
            .unwrap()
            .len()
    };
    let before = recorded().await;
    for date in [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "2200-01-01T00:00:00Z",
        "+275760-09-13T00:00:00Z",
    ] {
        for (method, uri, headers) in [
            (
                "POST",
                format!("/api/dags/{DAG}/trigger?logical_date={date}"),
                JSON,
            ),
            ("POST", format!("/api/dags/{DAG}/runs/{date}/clear"), JSON),
            ("GET", format!("/api/dags/{DAG}/runs/{date}"), &[][..]),
            ("GET", format!("/dags/{DAG}/runs/{date}"), &[][..]),
        ] {
            let (status, _, body) = call(&app, method, &uri, headers).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {uri}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    assert!(runs.queued().await.unwrap().is_empty());
    assert_eq!(recorded().await, before, "no run was recorded");
}

#[tokio::test]
async fn actions_are_recorded_like_the_cli_does() {
    let (_d, store) = lake().await;
    let app = app(store.clone(), None);
    let runs = RunStore::new(store.clone(), true);

    // Trigger: a queued manual run and a queue entry for the scheduler.
    let at = "2026-02-01T10:05:00Z";
    let (status, _, body) = call(
        &app,
        "POST",
        &format!("/api/dags/{DAG}/trigger?logical_date={at}"),
        JSON,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["run"]["state"].as_str(), v["run"]["run_type"].as_str()),
        (Some("queued"), Some("manual"))
    );
    assert!(v["scheduler"].is_null());
    let q = runs.queued().await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].1.logical_date, q[0].1.clear),
        (parse_utc(at).unwrap(), false)
    );

    // Clear: only a failed run; recorded as a clear request.
    let (status, _, _) = call(
        &app,
        "POST",
        &format!("/api/dags/{DAG}/runs/2026-02-01T09:50:00Z/clear"),
        JSON,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a successful run has nothing to clear"
    );
    let (status, _, _) = call(
        &app,
        "POST",
        &format!("/api/dags/{DAG}/runs/{T}/clear"),
        JSON,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let q = runs.queued().await.unwrap();
    assert!(
        q.iter()
            .any(|(_, q)| q.clear && q.logical_date == parse_utc(T).unwrap())
    );

    // Pause / unpause, seen by the DAG list.
    let (status, _, body) = call(&app, "POST", &format!("/api/dags/{DAG}/pause"), JSON).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["changed_by"],
        "ui"
    );
    let dags = get_json(&app, "/api/dags").await;
    let d = dags
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dag_id"] == DAG)
        .unwrap()
        .clone();
    assert_eq!(d["is_paused"], true);
    assert_eq!(
        crate::scheduler::control::paused(&store).await.unwrap(),
        vec![DAG.to_string()]
    );
    let (status, _, _) = call(&app, "POST", &format!("/api/dags/{DAG}/unpause"), JSON).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        crate::scheduler::control::paused(&store)
            .await
            .unwrap()
            .is_empty()
    );

    // The form counterpart, as a browser posts it, redirects back with the outcome.
    let form = format!("csrf={}", csrf_of(&app).await);
    let (status, headers, _) = send(
        &app,
        "POST",
        &format!("/dags/{DAG}/pause"),
        &browser_form(),
        &form,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("paused")
    );
    let (status, _, _) = call(&app, "POST", "/api/dags/nope/trigger", JSON).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_token_guards_every_route() {
    let (_d, store) = lake().await;
    let app = app(store, Some("s3cret"));
    for uri in ["/", "/api/dags", "/metrics", "/api/alerts"] {
        let (status, _, _) = call(&app, "GET", uri, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (status, _, _) = call(&app, "POST", &format!("/api/dags/{DAG}/pause"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &app,
        "GET",
        "/api/dags",
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &app,
        "GET",
        "/api/dags",
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // `?token=` sets the cookie and redirects to the same URL without the token.
    let (status, headers, _) = call(&app, "GET", "/?token=s3cret", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/");
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("lakepipe_token=s3cret;")
    );
    let (status, headers, _) = call(
        &app,
        "GET",
        &format!("/dags/{DAG}?limit=3&token=s3cret&msg=a%20b"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        format!("/dags/{DAG}?limit=3&msg=a+b").as_str()
    );
    let (status, _, _) = call(&app, "GET", "/?token=wrong", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The bearer token also stands for a JSON content type on API writes.
    let (status, _, _) = call(
        &app,
        "POST",
        &format!("/api/dags/{DAG}/pause"),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(
        &app,
        "GET",
        "/lake",
        &[("cookie", "a=b; lakepipe_token=s3cret")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert!(check_listen(&any, None).is_err());
    assert!(check_listen(&any, Some("")).is_err());
    assert!(check_listen(&any, Some("t")).is_ok());
    assert!(check_listen(&local, None).is_ok());
}

#[tokio::test]
async fn pages_render_the_lake() {
    let (_d, store) = lake().await;
    let app = app(store, None);
    let page = |uri: String| {
        let app = app.clone();
        async move {
            let (status, headers, body) = call(&app, "GET", &uri, &[]).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            String::from_utf8(body.to_vec()).unwrap()
        }
    };
    let home = page("/".into()).await;
    for d in all_dags() {
        assert!(
            home.contains(&format!("data-dag-id=\"{}\"", d.dag_id)),
            "{}",
            d.dag_id
        );
    }
    let grid = page(format!("/dags/{DAG}")).await;
    assert_eq!(grid.matches("class=\"cell state-failed\"").count(), 1);
    assert!(grid.matches("data-state=\"upstream_failed\"").count() >= 1);
    let run = page(format!("/dags/{DAG}/runs/{T}")).await;
    assert!(run.contains("clear failed tasks") && run.contains("boom"));
    let log = page(format!(
        "/dags/{DAG}/runs/{T}/tasks/unified_api_logs/log?attempt=1"
    ))
    .await;
    assert!(log.contains("log of unified_api_logs"));
    let lake = page("/lake".into()).await;
    assert!(
        lake.contains("data-table=\"silver_api_logs\"")
            && lake.contains("data-dataset=\"realtime_api_logs\"")
    );
    let dash = page("/dashboards".into()).await;
    assert!(dash.contains("data-label=\"/api/v1/payments\" data-value=\"2300\""));
    let alerts = page("/alerts".into()).await;
    assert!(alerts.contains("data-rule=\"api_error_rate\"") && alerts.contains("l1, l2"));
}

/// Every state-changing route, with the content type its caller sends.
fn writes() -> Vec<(String, &'static str)> {
    let form = "application/x-www-form-urlencoded";
    let json = "application/json";
    let mut w = Vec::new();
    for (prefix, ct) in [("", form), ("/api", json)] {
        for path in [
            format!("/dags/{DAG}/trigger"),
            format!("/dags/{DAG}/pause"),
            format!("/dags/{DAG}/unpause"),
            format!("/dags/{DAG}/runs/{T}/clear"),
        ] {
            w.push((format!("{prefix}{path}"), ct));
        }
    }
    w
}

#[tokio::test]
async fn cross_site_and_foreign_host_requests_are_refused() {
    let (_d, store) = lake().await;
    let app = app(store.clone(), None);
    let runs = RunStore::new(store.clone(), true);
    let form = format!("csrf={}", csrf_of(&app).await);

    // Each of these is refused on every state-changing route, all else being right.
    for (uri, ct) in writes() {
        for (why, bad) in [
            ("cross-site", ("sec-fetch-site", "cross-site")),
            ("same-site", ("sec-fetch-site", "same-site")),
            ("foreign Origin", ("origin", "http://evil.example")),
            (
                "Origin on another port",
                ("origin", "http://127.0.0.1:9999"),
            ),
            ("opaque Origin", ("origin", "null")),
            ("foreign Host", ("host", "evil.example")),
            ("rebinding Host", ("host", "evil.example:8080")),
            ("empty Host", ("host", "")),
        ] {
            let (status, headers, body) =
                send(&app, "POST", &uri, &[("content-type", ct), bad], &form).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {why}");
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"].is_string()
            );
            assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        }
        if uri.starts_with("/api/") {
            // A content type a cross-site form or fetch can send without a preflight.
            for simple in [
                None,
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                Some("multipart/form-data; boundary=x"),
            ] {
                let h: Vec<_> = simple.map(|c| ("content-type", c)).into_iter().collect();
                let (status, _, _) = send(&app, "POST", &uri, &h, "").await;
                assert_eq!(
                    status,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{uri} {simple:?}"
                );
            }
        } else {
            for body in ["", "csrf=", "csrf=0123456789abcdef0123456789abcdef"] {
                let (status, _, _) = send(&app, "POST", &uri, &browser_form(), body).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{uri} {body:?}");
            }
        }
    }
    // Nothing was recorded.
    assert!(control::paused(&store).await.unwrap().is_empty());
    assert!(runs.queued().await.unwrap().is_empty());

    // Every route refuses a foreign Host, so a DNS-rebinding page reads nothing.
    for uri in [
        "/".to_string(),
        format!("/dags/{DAG}"),
        format!("/dags/{DAG}/runs/{T}"),
        "/lake".into(),
        "/dashboards".into(),
        "/alerts".into(),
        "/api/dags".into(),
        format!("/api/dags/{DAG}/runs/{T}"),
        "/api/dashboards".into(),
        "/metrics".into(),
        "/static/ui.js".into(),
    ] {
        for host in ["evil.example:8080", "127.0.0.1:8081", "10.0.0.1:8080"] {
            let (status, headers, _) = call(&app, "GET", &uri, &[("host", host)]).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri} {host}");
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        }
        let (status, _, _) = call(&app, "GET", &uri, &[("host", "localhost:8080")]).await;
        assert_eq!(status, StatusCode::OK, "{uri} as localhost");
    }

    // The UI's own pages and API clients still act.
    let (status, _, _) = send(
        &app,
        "POST",
        &format!("/dags/{DAG}/pause"),
        &browser_form(),
        &form,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        control::paused(&store).await.unwrap(),
        vec![DAG.to_string()]
    );
    let (status, _, _) = send(
        &app,
        "POST",
        &format!("/api/dags/{DAG}/unpause"),
        &[
            ("host", "localhost:8080"),
            ("origin", "http://localhost:8080"),
            ("content-type", "application/json; charset=utf-8"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(control::paused(&store).await.unwrap().is_empty());

    // A name given with --allowed-host (a reverse proxy's), on any port or on its own.
    let named = router(
        store.clone(),
        LISTEN.parse().unwrap(),
        Access {
            token: None,
            allowed_hosts: vec!["lake.example".into()],
        },
    )
    .unwrap();
    let (status, _, _) = call(&named, "GET", "/api/dags", &[("host", "lake.example")]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(
        &named,
        "POST",
        &format!("/api/dags/{DAG}/pause"),
        &[
            ("host", "lake.example"),
            ("origin", "https://lake.example"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&named, "GET", "/api/dags", &[("host", "evil.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn planted_markup_in_the_lake_comes_back_escaped() {
    const EVIL: &str = "</script><script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
    const SHOWN: &str = "&lt;img src=x onerror=alert(2)&gt;";
    let (_d, store) = lake().await;
    let runs = RunStore::new(store.clone(), true);
    let dag = dag_by_id(DAG).unwrap();
    let t = parse_utc(T).unwrap();
    // A run record, an attempt's error and a log.
    let mut run = runs.get_run(DAG, t).await.unwrap().unwrap();
    run.run_id = EVIL.to_string();
    run.note = Some(EVIL.to_string());
    runs.put_run(&run).await.unwrap();
    let first = &dag.tasks[0].task_id;
    let mut ti = runs.get_ti(DAG, t, first).await.unwrap().unwrap();
    ti.attempts[0].error = Some(EVIL.to_string());
    runs.put_ti(&ti).await.unwrap();
    runs.put_log(DAG, t, first, 1, EVIL.to_string())
        .await
        .unwrap();
    // The serving documents and the catalog.
    let put = |key: &'static str, v: serde_json::Value| {
        let store = store.clone();
        async move {
            store
                .put(
                    key,
                    Bytes::from(serde_json::to_vec(&v).unwrap()),
                    &ObjectAttrs::default(),
                )
                .await
                .unwrap()
        }
    };
    put(
        "serving/dashboards/api_health_1h.json",
        json!({"as_of": EVIL, "stream": EVIL,
               "window": {"start": EVIL, "end": EVIL, "minutes": EVIL},
               "events_by_source": {"batch": 1, "speed": 1},
               "rows": [{"endpoint": EVIL, "request_count": 1, "p95_ms": 1.0, "error_rate_pct": 1.0}]}),
    )
    .await;
    put(
        "serving/alerts/latest.json",
        json!({"as_of": EVIL, "raised": [], "last_24h": [{"rule": EVIL, "severity": EVIL,
               "subject": EVIL, "window_start": EVIL, "window_end": EVIL, "triggered_at": EVIL,
               "value": 1.0, "threshold": 1.0, "triggering_ids": [EVIL], "triggering_count": 1,
               "detail": EVIL}]}),
    )
    .await;
    put(
        "metadata/partition_metadata.json",
        json!({"generated_at": EVIL, "partitions": {EVIL: {"total_objects": EVIL, "total_bytes": 1,
               "partition_count": EVIL, "by_partition": [{"partition": EVIL, "objects": EVIL, "bytes": 1}]}}}),
    )
    .await;
    // A Delta table with a column named with markup (Delta refuses spaces and `=`).
    let schema = Arc::new(Schema::new(vec![Field::new(
        "</script><b>x</b>",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a"]))]).unwrap();
    store
        .delta_table_or_new("batch/gold/planted")
        .await
        .unwrap()
        .write(vec![batch])
        .await
        .unwrap();

    let app = app(store, None);
    for (uri, shown) in [
        ("/".to_string(), None),
        (format!("/dags/{DAG}"), Some(SHOWN)),
        (format!("/dags/{DAG}/runs/{T}"), Some(SHOWN)),
        (
            format!("/dags/{DAG}/runs/{T}/tasks/{first}/log?attempt=1"),
            Some(SHOWN),
        ),
        ("/lake".to_string(), Some(SHOWN)),
        (
            "/lake".to_string(),
            Some("&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;"),
        ),
        ("/dashboards".to_string(), Some(SHOWN)),
        ("/dashboards/fragment".to_string(), Some(SHOWN)),
        ("/alerts".to_string(), Some(SHOWN)),
    ] {
        let (status, headers, body) = call(&app, "GET", &uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let page = String::from_utf8(body.to_vec()).unwrap();
        for raw in ["<script>alert", "<img", "<b>x", "\"'>"] {
            assert!(!page.contains(raw), "{uri}: {raw} unescaped in\n{page}");
        }
        assert!(!page.contains("<script>"), "{uri}: an inline script");
        if let Some(shown) = shown {
            assert!(page.contains(shown), "{uri}: {shown} not shown in\n{page}");
        }
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        let script_src = csp.split(';').find(|d| d.trim().starts_with("script-src"));
        assert_eq!(
            script_src.map(str::trim),
            Some("script-src 'self'"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    // The dashboards' script gets its data as JSON that cannot close its element.
    let (_, _, body) = call(&app, "GET", "/dashboards", &[]).await;
    let page = String::from_utf8(body.to_vec()).unwrap();
    assert!(page.contains(r#"\u003c/script\u003e\u003cscript\u003ealert(1)"#));
    assert!(page.contains("<script src=\"/static/ui.js\"></script>"));
    // The API answers JSON and the log text/plain, never something a browser sniffs as HTML.
    let (_, headers, body) = call(
        &app,
        "GET",
        &format!("/api/dags/{DAG}/runs/{T}/tasks/{first}/log?attempt=1"),
        &[],
    )
    .await;
    assert_eq!(body, EVIL);
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let (status, headers, body) = call(&app, "GET", "/static/ui.js", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        String::from_utf8(body.to_vec())
            .unwrap()
            .contains("lakepipe-data")
    );
}

/// Each error keeps its status and message: as JSON on the API, as a page on the HTML routes,
/// as JSON from the security layers whatever the route.
#[tokio::test]
async fn errors_answer_with_their_status_and_message() {
    let (_d, store) = lake().await;
    let app = app(store.clone(), None);
    let error_of = |body: &Bytes| {
        serde_json::from_slice::<serde_json::Value>(body).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (uri, status, message) in [
        ("/api/dags/nope".to_string(), 404, "no DAG nope".to_string()),
        (
            format!("/api/dags/{DAG}/runs/2026-01-01T00:00:00Z"),
            404,
            format!("no run of {DAG} at 2026-01-01T00:00:00Z"),
        ),
        (
            format!("/api/dags/{DAG}/runs/{T}/tasks/nope/log"),
            404,
            format!("no task nope in {DAG} at {T}"),
        ),
        (
            format!("/api/dags/{DAG}/runs/{T}/tasks/unified_api_logs/log?attempt=x"),
            400,
            "attempt x: not a number".to_string(),
        ),
        (
            "/api/dashboards/nope".to_string(),
            404,
            "no dashboard nope".to_string(),
        ),
    ] {
        let (got, headers, body) = call(&app, "GET", &uri, &[]).await;
        assert_eq!(got.as_u16(), status, "{uri}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        assert_eq!(error_of(&body), message, "{uri}");
    }
    let (status, _, body) =
        call(&app, "GET", &format!("/api/dags/{DAG}/runs/yesterday"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).starts_with("logical date yesterday: "));

    // A page shows the status's reason as its title and the message in the body.
    let (status, headers, body) = call(&app, "GET", "/dags/nope", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8(body.to_vec()).unwrap();
    assert!(page.contains("Not Found"), "{page}");
    assert!(
        page.contains("<p class=\"error\">no DAG nope</p>"),
        "{page}"
    );

    // A refused action (409) carries the control's message; as a form, it comes back as `msg`.
    let (status, _, body) = call(
        &app,
        "POST",
        &format!("/api/dags/{DAG}/runs/2026-02-01T09:50:00Z/clear"),
        JSON,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let refused = error_of(&body);
    assert!(!refused.is_empty());
    let form = format!("csrf={}", csrf_of(&app).await);
    let (status, headers, _) = send(
        &app,
        "POST",
        &format!("/dags/{DAG}/runs/2026-02-01T09:50:00Z/clear"),
        &browser_form(),
        &form,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap();
    let shown: String = url::form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "msg")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(shown, refused);

    // The security layers answer JSON on every route; the token check names its scheme.
    let (status, _, body) = call(&app, "GET", "/", &[("host", "evil.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(&body),
        "this UI does not answer to that Host (its listen address, or --allowed-host NAME)"
    );
    let (status, _, body) = send(&app, "POST", &format!("/api/dags/{DAG}/pause"), &[], "").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        error_of(&body),
        "API actions need Content-Type: application/json (or Authorization: Bearer <token>)"
    );
    let (status, _, body) = send(
        &app,
        "POST",
        &format!("/dags/{DAG}/pause"),
        &browser_form(),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(&body),
        "form without this UI's CSRF token: reload the page and try again"
    );
    let guarded = self::app(store, Some("s3cret"));
    let (status, headers, body) = call(&guarded, "GET", "/lake", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(
        error_of(&body),
        "this UI needs its token (Authorization: Bearer <token>, or ?token=<token>)"
    );
}

/// A request to the ingest API from `peer`, `Host: 10.0.0.1:8080` (the router listens on
/// every interface).
async fn ingest_call(
    app: &Router,
    stream: &str,
    peer: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let mut req = HttpRequest::builder()
        .method("POST")
        .uri(format!("/ingest/{stream}"))
        .header("host", "10.0.0.1:8080")
        .header("content-type", "application/x-ndjson");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        peer.parse::<SocketAddr>().unwrap(),
    ));
    let res = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = to_bytes(res.into_body(), 1 << 24).await.unwrap();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn the_ingest_api_checks_its_own_callers_and_not_the_ui_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::local_store(dir.path()).await;
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let config = crate::config::IngestConfig {
        flush_ms: 10,
        tokens: vec![crate::config::IngestToken {
            token: "producer-token-1".into(),
            streams: vec!["api_logs".into()],
        }],
        ..crate::config::IngestConfig::default()
    };
    let ingest = crate::landing::api::Ingest::new(store.clone(), config, rx).unwrap();
    let access = Access {
        token: Some("ui-token-123456".into()),
        allowed_hosts: vec![],
    };
    let app =
        super::router_with(store, "0.0.0.0:8080".parse().unwrap(), access, Some(ingest)).unwrap();
    let line = "{\"a\":1}\n";
    let outside = "10.0.0.9:5000";
    // Loopback: no token, although the UI has one.
    let (status, headers, answer) =
        ingest_call(&app, "api_logs", "127.0.0.1:5000", &[], line).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert!(
        headers.contains_key(header::CONTENT_SECURITY_POLICY),
        "guard wraps it"
    );
    // Off loopback: no token or an unknown one → 401; a token for another stream → 403.
    let (status, headers, answer) = ingest_call(&app, "api_logs", outside, &[], line).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(answer["error"].as_str().unwrap().contains("needs a token"));
    let wrong = [("authorization", "Bearer producer-token-2")];
    let (status, _, _) = ingest_call(&app, "api_logs", outside, &wrong, line).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let producer = [("authorization", "Bearer producer-token-1")];
    let (status, _, _) = ingest_call(&app, "api_logs", outside, &producer, line).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, answer) = ingest_call(&app, "iot_sensors", outside, &producer, line).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!answer.to_string().contains("producer-token-1"));
    let ui = [("authorization", "Bearer ui-token-123456")];
    let (status, _, _) = ingest_call(&app, "iot_sensors", outside, &ui, line).await;
    assert_eq!(status, StatusCode::OK);
    // The UI's own routes still need the UI token.
    let (status, _, _) = call(&app, "GET", "/api/dags", &[("host", "10.0.0.1:8080")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Refusals: cross-site, content type, unknown stream.
    let cross = [("sec-fetch-site", "cross-site")];
    let (status, _, _) = ingest_call(&app, "api_logs", "127.0.0.1:5000", &cross, line).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let text = [("content-type", "text/plain")];
    let mut req = HttpRequest::builder()
        .method("POST")
        .uri("/ingest/api_logs")
        .header("host", "10.0.0.1:8080");
    for (k, v) in text {
        req = req.header(k, v);
    }
    let mut req = req.body(Body::from(line)).unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        "127.0.0.1:5000".parse::<SocketAddr>().unwrap(),
    ));
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, _) = ingest_call(&app, "nope", "127.0.0.1:5000", &[], line).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A UI without the ingest API (`lakepipe ui`) has no such route.
    let plain = self::app(crate::store::local_store(dir.path()).await, None);
    let (status, _, _) = call(&plain, "GET", "/ingest/api_logs", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &app,
        "GET",
        "/ingest/api_logs",
        &[("host", "10.0.0.1:8080")],
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// The next event of a server-sent event stream: its `event:` name and its `data:` as JSON.
/// Keep-alive comments are skipped. Gives up (fails) after a minute without an event, so a
/// broken stream fails the test instead of hanging it.
async fn next_event(
    body: &mut (impl futures::Stream<Item = Result<Bytes, axum::Error>> + Unpin),
    buf: &mut String,
) -> (String, serde_json::Value) {
    use futures::StreamExt as _;
    let read = async {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if !name.is_empty() {
                    return (name, serde_json::from_str(&data).unwrap());
                }
                continue;
            }
            let chunk = body.next().await.expect("the event stream ended").unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("no event within a minute")
}

#[tokio::test]
async fn the_event_stream_says_when_a_serving_run_lands() {
    let (_dir, store) = lake().await;
    let app = app(store.clone(), None);
    let res = app
        .clone()
        .oneshot(
            HttpRequest::builder()
                .uri("/api/events")
                .header("host", LISTEN)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    let mut body = res.into_body().into_data_stream();
    let mut buf = String::new();

    // First what the documents say now.
    let (name, data) = next_event(&mut body, &mut buf).await;
    assert_eq!(name, "serving");
    assert_eq!(data["as_of"], T);
    assert_eq!(data["versions"], json!({"api_health_1h": null}));

    // A serving run lands: its documents are replaced.
    let later = "2026-02-01T10:10:00Z";
    for (name, version) in [("api_health_1h", 7), ("api_per_minute", 2)] {
        store
            .put(
                &format!("serving/dashboards/{name}.json"),
                Bytes::from(
                    serde_json::to_vec(
                        &json!({"name": name, "as_of": later, "delta_version": version,
                        "watermark": {"newest_landed": "2026-02-01T10:05:00Z"}, "rows": []}),
                    )
                    .unwrap(),
                ),
                &ObjectAttrs::default(),
            )
            .await
            .unwrap();
    }
    // The poller may see one document before the other: read until both are there.
    let mut data = json!(null);
    while data["versions"] != json!({"api_health_1h": 7, "api_per_minute": 2}) {
        let (name, d) = next_event(&mut body, &mut buf).await;
        assert_eq!(name, "serving");
        data = d;
    }
    assert_eq!(data["as_of"], later);
    assert_eq!(data["watermark"], "2026-02-01T10:05:00Z");

    // The fragment the page swaps in shows the new run.
    let (status, _, body) = call(&app, "GET", "/dashboards/fragment", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let fragment = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        fragment.starts_with(&format!("<div id=\"dashboards\" data-as-of=\"{later}\">")),
        "{fragment}"
    );
    assert!(fragment.contains("data-dashboard=\"api_per_minute\""));
}

#[tokio::test]
async fn the_event_stream_is_guarded_like_every_route() {
    let (_dir, store) = lake().await;
    let (status, _, _) = call(
        &app(store.clone(), None),
        "GET",
        "/api/events",
        &[("Host", "evil.example")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(&app(store, Some("s3cret")), "GET", "/api/events", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn one_poller_serves_every_client_and_stops_after_the_last() {
    let (_dir, store) = lake().await;
    let view = Arc::new(super::data::LakeView::new(store));
    let events = Arc::new(super::events::Events::new());
    let mut a = events.subscribe(&view);
    let b = events.subscribe(&view);
    assert!(events.running(), "started by the first client");
    a.changed().await.unwrap();
    assert_eq!(
        a.borrow().as_ref().and_then(|l| l.as_of.clone()).as_deref(),
        Some(T)
    );
    assert_eq!(b.borrow().as_ref().map(|l| l.versions.len()), Some(1));
    drop((a, b));
    // The poller notices at its next look; wait for it without asserting on how long.
    while events.running() {
        tokio::time::sleep(super::events::POLL).await;
    }
    // A new client starts it again.
    let _c = events.subscribe(&view);
    assert!(events.running());
}
