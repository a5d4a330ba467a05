//! The JSON API under `/api` (and `/metrics`, Prometheus' text): what the pages show, as data,
//! and the actions. Errors are answered as `{"error": …}` ([`ApiError`]).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Error;
use super::actions::{act, set_paused};
use super::error::{ApiError, ApiResult};
use super::metrics;
use super::params::{attempt_of, find_dag, grid_limit, parse_date};
use super::state::AppState;
use crate::clock::now_to_the_second;
use crate::scheduler::control::Request as Action;
use crate::scheduler::state::log_key;

pub(super) async fn api_dags(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(st.view.dags().await?))
}

pub(super) async fn api_dag(
    State(st): State<AppState>,
    Path(dag): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let d = find_dag(&dag)?;
    let summary = st
        .view
        .dags()
        .await?
        .into_iter()
        .find(|s| s.dag_id == d.dag_id);
    let tasks: Vec<_> = d
        .tasks
        .iter()
        .map(|t| {
            json!({
                "task_id": t.task_id,
                "upstream": t.upstream,
                "retries": t.policy.retries,
                "execution_timeout_s": t.policy.execution_timeout.as_secs(),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "dag": summary, "tasks": tasks })))
}

pub(super) async fn api_grid(
    State(st): State<AppState>,
    Path(dag): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<impl IntoResponse> {
    let d = find_dag(&dag)?;
    Ok(axum::Json(st.view.grid(d, grid_limit(&q)).await?))
}

pub(super) async fn api_run(
    State(st): State<AppState>,
    Path((dag, date)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let d = find_dag(&dag)?;
    let t = parse_date(&date)?;
    match st.view.run_detail(d, t).await? {
        Some(detail) => Ok(axum::Json(detail)),
        None => Err(ApiError(Error::NoRun { dag, date })),
    }
}

/// A task log, streamed from the lake as it is read.
pub(super) async fn api_log(
    State(st): State<AppState>,
    Path((dag, date, task)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let d = find_dag(&dag)?;
    let t = parse_date(&date)?;
    let attempt = attempt_of(&st, d, t, &task, &q).await?;
    let key = log_key(&d.dag_id, t, &task, attempt);
    match st
        .view
        .store()
        .get_stream(&key)
        .await
        .map_err(Error::lake)?
    {
        Some(stream) => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            Body::from_stream(stream),
        )
            .into_response()),
        None => Err(ApiError(Error::NoLog { key, attempt })),
    }
}

pub(super) async fn api_trigger(
    State(st): State<AppState>,
    Path(dag): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<impl IntoResponse> {
    let d = find_dag(&dag)?;
    let t = match q.get("logical_date") {
        Some(s) => parse_date(s)?,
        None => now_to_the_second(),
    };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(act(&st, d, Action::Trigger, t).await?),
    ))
}

pub(super) async fn api_clear(
    State(st): State<AppState>,
    Path((dag, date)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let d = find_dag(&dag)?;
    let t = parse_date(&date)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(act(&st, d, Action::Clear, t).await?),
    ))
}

pub(super) async fn api_pause(
    State(st): State<AppState>,
    Path(dag): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(set_paused(&st, &dag, true).await?))
}

pub(super) async fn api_unpause(
    State(st): State<AppState>,
    Path(dag): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(set_paused(&st, &dag, false).await?))
}

pub(super) async fn api_lake(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    let datasets = st.view.partition_metadata().await?;
    let tables = st.view.tables().await?;
    Ok(axum::Json(json!({
        "lake": st.view.store().url().to_string(),
        "catalog": datasets,
        "tables": tables,
    })))
}

pub(super) async fn api_dashboards(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(st.view.dashboards().await?))
}

pub(super) async fn api_dashboard(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    match st.view.dashboards().await?.remove(&name) {
        Some(doc) => Ok(axum::Json(doc)),
        None => Err(ApiError(Error::NoDashboard { name })),
    }
}

pub(super) async fn api_alerts(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(st.view.alerts().await?.unwrap_or_else(
        || json!({ "as_of": null, "raised": [], "last_24h": [] }),
    )))
}

/// `/metrics`, in Prometheus' text format.
pub(super) async fn metrics_text(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&st.view).await?,
    ))
}
