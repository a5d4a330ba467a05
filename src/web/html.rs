//! The HTML routes: the pages (rendered by [`super::pages`] from what [`super::data`] reads),
//! the form actions (the API's actions, answered with a redirect back that carries the
//! outcome as the page's message), and the static stylesheet and script. Errors are shown as
//! a page ([`PageError`](super::error::PageError)).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect};

use super::Error;
use super::actions::{act, set_paused};
use super::error::PageResult;
use super::pages;
use super::params::{attempt_of, find_dag, grid_limit, parse_date};
use super::state::AppState;
use crate::clock::{now_to_the_second, rfc3339_secs};
use crate::scheduler::control::{self, Request as Action};

/// The message a form action left for the page it redirected to (`?msg=`).
fn msg(q: &HashMap<String, String>) -> Option<&str> {
    q.get("msg").map(String::as_str)
}

pub(super) async fn dags_html(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult<Html<String>> {
    Ok(Html(pages::dags_page(
        &st.view.dags().await?,
        msg(&q),
        &st.csrf,
    )))
}

pub(super) async fn grid_html(
    State(st): State<AppState>,
    Path(dag): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult<Html<String>> {
    let d = find_dag(&dag)?;
    let grid = st.view.grid(d, grid_limit(&q)).await?;
    let paused = control::paused(st.view.store())
        .await
        .map_err(Error::lake)?
        .contains(&d.dag_id);
    Ok(Html(pages::grid_page(d, &grid, paused, msg(&q), &st.csrf)))
}

pub(super) async fn run_html(
    State(st): State<AppState>,
    Path((dag, date)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult<Html<String>> {
    let d = find_dag(&dag)?;
    let t = parse_date(&date)?;
    let detail = st
        .view
        .run_detail(d, t)
        .await?
        .ok_or(Error::NoRun { dag, date })?;
    Ok(Html(pages::run_page(&detail, msg(&q), &st.csrf)))
}

pub(super) async fn log_html(
    State(st): State<AppState>,
    Path((dag, date, task)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult<Html<String>> {
    let d = find_dag(&dag)?;
    let t = parse_date(&date)?;
    let attempt = attempt_of(&st, d, t, &task, &q).await?;
    let Some(text) = st
        .view
        .run_store()
        .get_log(&d.dag_id, t, &task, attempt)
        .await
        .map_err(Error::lake)?
    else {
        return Err(Error::NoTaskLog { task, attempt }.into());
    };
    Ok(Html(pages::log_page(
        &d.dag_id,
        &rfc3339_secs(t),
        &task,
        attempt,
        &String::from_utf8_lossy(&text),
    )))
}

pub(super) async fn lake_html(State(st): State<AppState>) -> PageResult<Html<String>> {
    let meta = st.view.partition_metadata().await?;
    let tables = st.view.tables().await?;
    Ok(Html(pages::lake_page(meta.as_ref(), &tables)))
}

pub(super) async fn dashboards_html(State(st): State<AppState>) -> PageResult<Html<String>> {
    Ok(Html(pages::dashboards_page(&st.view.dashboards().await?)))
}

/// `/dashboards/fragment`: the dashboards' cards alone, for the page's script.
pub(super) async fn dashboards_fragment(State(st): State<AppState>) -> PageResult<Html<String>> {
    Ok(Html(pages::dashboards_fragment(
        &st.view.dashboards().await?,
    )))
}

pub(super) async fn alerts_html(State(st): State<AppState>) -> PageResult<Html<String>> {
    Ok(Html(pages::alerts_page(st.view.alerts().await?.as_ref())))
}

/// Redirects to `to` with the action's outcome as the page's message.
fn back(to: &str, outcome: Result<serde_json::Value, Error>) -> Redirect {
    let text = match outcome {
        Ok(v) => v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "{}: {}",
                    v["dag_id"].as_str().unwrap_or_default(),
                    if v["is_paused"] == true {
                        "paused"
                    } else {
                        "unpaused"
                    }
                )
            }),
        Err(e) => e.message(),
    };
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("msg", &text)
        .finish();
    Redirect::to(&format!("{to}?{q}"))
}

pub(super) async fn trigger_form(
    State(st): State<AppState>,
    Path(dag): Path<String>,
) -> PageResult<Redirect> {
    let d = find_dag(&dag)?;
    Ok(back(
        &format!("/dags/{}", d.dag_id),
        act(&st, d, Action::Trigger, now_to_the_second()).await,
    ))
}

pub(super) async fn clear_form(
    State(st): State<AppState>,
    Path((dag, date)): Path<(String, String)>,
) -> PageResult<Redirect> {
    let d = find_dag(&dag)?;
    let t = parse_date(&date)?;
    Ok(back(
        &pages::run_href(&d.dag_id, &rfc3339_secs(t)),
        act(&st, d, Action::Clear, t).await,
    ))
}

pub(super) async fn pause_form(
    State(st): State<AppState>,
    Path(dag): Path<String>,
) -> PageResult<Redirect> {
    Ok(back("/", set_paused(&st, &dag, true).await))
}

pub(super) async fn unpause_form(
    State(st): State<AppState>,
    Path(dag): Path<String>,
) -> PageResult<Redirect> {
    Ok(back("/", set_paused(&st, &dag, false).await))
}

pub(super) async fn style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLE,
    )
}

pub(super) async fn ui_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        pages::SCRIPT,
    )
}
