//! The HTML pages, rendered on the server from what [`super::data`] reads: DAGs, a DAG's grid,
//! a run with its task attempts, a task log, the lake, the dashboards and the alerts. No
//! script is needed to see anything; the dashboards page swaps in fresh cards
//! ([`dashboards_fragment`]) when `/api/events` says a serving run landed.
//!
//! Everything read from the lake is data: text and attribute values go through [`esc`], path
//! segments of links through [`seg`], and what the one script ([`SCRIPT`]) needs through
//! [`json_data`]. No page has an inline script or style (the Content-Security-Policy of
//! [`super::guard`] forbids them); the stylesheet and the script are static routes.

use std::collections::BTreeMap;

use serde_json::Value;

use super::charts::{bars, funnel, num, source_split, tiles};
use super::data::{DagSummary, Grid, RunDetail, TableInfo};
use super::events::Landed;
use crate::clock::rfc3339_secs;
use crate::scheduler::Dag;

/// The stylesheet, served as `/static/style.css`.
pub const STYLE: &str = include_str!("style.css");
/// The script, served as `/static/ui.js`.
pub const SCRIPT: &str = include_str!("ui.js");

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Percent-encodes one path segment of a link: everything but unreserved characters and `:`
/// (RFC 3339 dates stay readable). The result is safe in an attribute as it is.
pub fn seg(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            o.push(char::from(b));
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// `v` as a `<script type="application/json" id="lakepipe-data">` block for [`SCRIPT`]:
/// `<`, `>` and `&` are written as `\u003c` etc., so no value can close the element.
pub fn json_data(v: &Value) -> String {
    let text = serde_json::to_string(v)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!("<script type=\"application/json\" id=\"lakepipe-data\">{text}</script>")
}

/// A whole page around `body`.
pub fn layout(title: &str, active: &str, body: &str) -> String {
    let nav: String = [
        ("/", "DAGs"),
        ("/lake", "Lake"),
        ("/dashboards", "Dashboards"),
        ("/alerts", "Alerts"),
    ]
    .iter()
    .map(|(href, name)| {
        let class = if *name == active {
            " class=\"active\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{class}>{name}</a>")
    })
    .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · lakepipe</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body><header><span class=\"brand\">lakepipe</span><nav>{nav}</nav></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    )
}

fn state_badge(state: &str) -> String {
    format!(
        "<span class=\"badge state-{s}\" data-state=\"{s}\">{s}</span>",
        s = esc(state)
    )
}

/// Link path of a run (`/dags/<id>/runs/<RFC 3339>`), its segments percent-encoded.
pub fn run_href(dag_id: &str, logical_date: &str) -> String {
    format!("/dags/{}/runs/{}", seg(dag_id), seg(logical_date))
}

/// Link path of a DAG's grid.
fn dag_href(dag_id: &str) -> String {
    format!("/dags/{}", seg(dag_id))
}

/// A button posting to `href` with the process's CSRF token.
fn action(href: &str, label: &str, class: &str, csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button class=\"{}\">{}</button></form>",
        esc(href),
        esc(csrf),
        esc(class),
        esc(label)
    )
}

/// An optional message shown above a page's content (the outcome of an action).
pub fn flash(msg: Option<&str>) -> String {
    msg.map(|m| format!("<p class=\"flash\">{}</p>", esc(m)))
        .unwrap_or_default()
}

/// `/`: every DAG.
pub fn dags_page(dags: &[DagSummary], msg: Option<&str>, csrf: &str) -> String {
    let mut rows = String::new();
    for d in dags {
        let last = d
            .last_run
            .as_ref()
            .map_or("<td>–</td><td></td>".into(), |r| {
                format!(
                    "<td><a href=\"{}\">{}</a></td><td>{}</td>",
                    esc(&run_href(&d.dag_id, &r.logical_date)),
                    esc(&r.logical_date),
                    state_badge(&r.state)
                )
            });
        let counts: String = d
            .runs_by_state
            .iter()
            .map(|(s, n)| {
                format!(
                    "<span class=\"count state-{s}\">{n} {s}</span> ",
                    s = esc(s)
                )
            })
            .collect();
        let href = dag_href(&d.dag_id);
        let pause = if d.is_paused {
            action(&format!("{href}/unpause"), "unpause", "", csrf)
        } else {
            action(&format!("{href}/pause"), "pause", "", csrf)
        };
        rows.push_str(&format!(
            "<tr class=\"dag{paused}\" data-dag-id=\"{id}\"><td><a href=\"{href}\">{id}</a><div class=\"muted\">{desc}</div></td>\
             <td><code>{sched}</code>{pl}</td>{last}<td>{next}</td><td>{counts}</td><td>{trigger} {pause}</td></tr>",
            paused = if d.is_paused { " paused" } else { "" },
            id = esc(&d.dag_id),
            desc = esc(&d.description),
            sched = esc(d.schedule.as_deref().unwrap_or("manual")),
            pl = if d.is_paused { " <span class=\"badge paused\">paused</span>" } else { "" },
            next = esc(d.next_fire_time.as_deref().unwrap_or("–")),
            trigger = action(&format!("{href}/trigger"), "trigger", "primary", csrf),
            href = esc(&href),
        ));
    }
    layout(
        "DAGs",
        "DAGs",
        &format!(
            "{}<table class=\"list\"><thead><tr><th>DAG</th><th>schedule</th><th>last run</th><th>state</th>\
             <th>next run</th><th>runs</th><th>actions</th></tr></thead><tbody>{rows}</tbody></table>",
            flash(msg)
        ),
    )
}

/// `/dags/<id>`: Airflow's grid — tasks down, runs across, newest run on the right.
pub fn grid_page(dag: &Dag, grid: &Grid, paused: bool, msg: Option<&str>, csrf: &str) -> String {
    let runs: Vec<_> = grid.runs.iter().rev().collect();
    let mut head = String::from("<th>task \\ run</th>");
    for r in &runs {
        head.push_str(&format!(
            "<th class=\"run\" title=\"{rid}: data interval {s} – {e}\"><span class=\"runstate state-{st}\" data-run-state=\"{st}\"></span><a href=\"{href}\">{d}</a><div class=\"muted\">{s}<br>– {e}</div></th>",
            rid = esc(&r.run.run_id),
            href = esc(&run_href(&grid.dag_id, &r.run.logical_date)),
            d = esc(&r.run.logical_date),
            st = esc(&r.run.state),
            s = esc(&r.run.data_interval_start),
            e = esc(&r.run.data_interval_end),
        ));
    }
    let mut body = String::new();
    for task in &grid.task_ids {
        body.push_str(&format!("<tr><th class=\"task\">{}</th>", esc(task)));
        for r in &runs {
            let state = r.tasks.get(task).map_or("none", String::as_str);
            body.push_str(&format!(
                "<td class=\"cell state-{s}\" data-task=\"{t}\" data-run=\"{d}\" data-state=\"{s}\" title=\"{t} {d}: {s}\"><a href=\"{href}\"></a></td>",
                s = esc(state),
                t = esc(task),
                d = esc(&r.run.logical_date),
                href = esc(&run_href(&grid.dag_id, &r.run.logical_date)),
            ));
        }
        body.push_str("</tr>");
    }
    let edges: String = dag
        .tasks
        .iter()
        .filter(|t| !t.upstream.is_empty())
        .map(|t| {
            format!(
                "<li>{} ← {}</li>",
                esc(&t.task_id),
                esc(&t.upstream.join(", "))
            )
        })
        .collect();
    let href = dag_href(&dag.dag_id);
    let controls = format!(
        "{} {}",
        action(&format!("{href}/trigger"), "trigger now", "primary", csrf),
        if paused {
            action(&format!("{href}/unpause"), "unpause", "", csrf)
        } else {
            action(&format!("{href}/pause"), "pause", "", csrf)
        }
    );
    layout(
        &dag.dag_id,
        "DAGs",
        &format!(
            "{}<p>{} · schedule <code>{}</code>{} · {}</p>\
             <div class=\"scroll\"><table class=\"grid\" data-dag-id=\"{id}\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>\
             <details><summary>dependencies</summary><ul>{edges}</ul></details>",
            flash(msg),
            esc(&dag.description),
            esc(dag.schedule.expr().unwrap_or("manual")),
            if paused {
                " · <span class=\"badge paused\">paused</span>"
            } else {
                ""
            },
            controls,
            id = esc(&dag.dag_id),
        ),
    )
}

/// `/dags/<id>/runs/<date>`: the run and every task's attempts.
pub fn run_page(detail: &RunDetail, msg: Option<&str>, csrf: &str) -> String {
    let run = &detail.run;
    let date = rfc3339_secs(run.logical_date);
    let opt = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("–".into(), rfc3339_secs);
    let mut rows = String::new();
    for ti in &detail.task_instances {
        let mut attempts = String::new();
        for a in &ti.attempts {
            attempts.push_str(&format!(
                "<div class=\"attempt\">try {n}: {b} {start} · {dur:.2} s{err} · <a href=\"{href}/tasks/{task}/log?attempt={n}\">log</a></div>",
                n = a.try_number,
                b = state_badge(a.state.as_str()),
                start = rfc3339_secs(a.start_date),
                dur = a.duration_s,
                err = a
                    .error
                    .as_ref()
                    .map(|e| format!(" · <span class=\"error\">{}</span>", esc(e)))
                    .unwrap_or_default(),
                href = esc(&run_href(&run.dag_id, &date)),
                task = seg(&ti.task_id),
            ));
        }
        rows.push_str(&format!(
            "<tr data-task=\"{t}\" data-state=\"{s}\"><td>{t}</td><td>{b}</td><td>{n}/{max}</td><td>{attempts}</td></tr>",
            t = esc(&ti.task_id),
            s = esc(ti.state.as_str()),
            b = state_badge(ti.state.as_str()),
            n = ti.attempts.len(),
            max = ti.max_tries,
        ));
    }
    let clear = if run.state == crate::scheduler::RunState::Failed {
        action(
            &format!("{}/clear", run_href(&run.dag_id, &date)),
            "clear failed tasks",
            "primary",
            csrf,
        )
    } else {
        String::new()
    };
    layout(
        &format!("{} · {}", run.dag_id, date),
        "DAGs",
        &format!(
            "{}<p><a href=\"{href}\">← grid</a></p><dl class=\"facts\"><dt>run id</dt><dd>{rid}</dd><dt>state</dt><dd>{b}</dd>\
             <dt>type</dt><dd>{rt}</dd><dt>data interval</dt><dd>{s} – {e}</dd><dt>started</dt><dd>{st}</dd><dt>ended</dt><dd>{en}</dd>{note}</dl>{clear}\
             <table class=\"list\"><thead><tr><th>task</th><th>state</th><th>tries</th><th>attempts</th></tr></thead><tbody>{rows}</tbody></table>",
            flash(msg),
            href = esc(&dag_href(&run.dag_id)),
            rid = esc(&run.run_id),
            b = state_badge(run.state.as_str()),
            rt = esc(run.run_type.as_str()),
            s = rfc3339_secs(run.data_interval_start),
            e = rfc3339_secs(run.data_interval_end),
            st = opt(run.start_date),
            en = opt(run.end_date),
            note = run
                .note
                .as_deref()
                .map(|n| format!("<dt>note</dt><dd>{}</dd>", esc(n)))
                .unwrap_or_default(),
        ),
    )
}

/// A task log.
pub fn log_page(dag_id: &str, date: &str, task: &str, attempt: u32, text: &str) -> String {
    layout(
        &format!("{task} · try {attempt}"),
        "DAGs",
        &format!(
            "<p><a href=\"{href}\">← {d} {date}</a> · <a href=\"/api{href}/tasks/{t}/log?attempt={attempt}\">raw</a></p><pre class=\"log\">{}</pre>",
            esc(text),
            href = esc(&run_href(dag_id, date)),
            d = esc(dag_id),
            date = esc(date),
            t = seg(task),
        ),
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1_048_576.0)
}

/// `/lake`: the landing datasets (from the catalog) and the Delta tables.
pub fn lake_page(metadata: Option<&Value>, tables: &[TableInfo]) -> String {
    let mut ds = String::new();
    match metadata.and_then(|m| m["partitions"].as_object()) {
        None => ds.push_str(
            "<p class=\"muted\">No catalog yet: <code>lakepipe catalog refresh</code> (or DAG 5-lake_catalog_refresh) writes it.</p>",
        ),
        Some(parts) => {
            ds.push_str(&format!(
                "<p class=\"muted\">catalog of {}</p><table class=\"list\"><thead><tr><th>dataset</th><th>partitions</th><th>objects</th><th>size</th><th>partitions (newest 24)</th></tr></thead><tbody>",
                esc(metadata.and_then(|m| m["generated_at"].as_str()).unwrap_or("?"))
            ));
            for (name, p) in parts {
                let mut by: Vec<&Value> = p["by_partition"]
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                by.reverse();
                let inner: String = by
                    .iter()
                    .take(24)
                    .map(|bp| {
                        format!(
                            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                            esc(&s(&bp["partition"])),
                            esc(&s(&bp["objects"])),
                            mib(bp["bytes"].as_u64().unwrap_or(0))
                        )
                    })
                    .collect();
                ds.push_str(&format!(
                    "<tr data-dataset=\"{n}\"><td>{n}</td><td>{pc}</td><td>{o}</td><td>{b}</td><td><details><summary>show</summary><table>{inner}</table></details></td></tr>",
                    n = esc(name),
                    pc = esc(&s(&p["partition_count"])),
                    o = esc(&s(&p["total_objects"])),
                    b = mib(p["total_bytes"].as_u64().unwrap_or(0)),
                ));
            }
            ds.push_str("</tbody></table>");
        }
    }
    let mut ts = String::new();
    for t in tables {
        let schema: String = t
            .schema
            .iter()
            .map(|(n, ty)| format!("<li><code>{}</code> {}</li>", esc(n), esc(ty)))
            .collect();
        ts.push_str(&format!(
            "<tr data-table=\"{n}\"><td>{n}<div class=\"muted\">{p}</div></td><td>{l}</td><td>{v}</td><td>{r}</td><td>{f}</td><td>{b}</td><td>{pc}</td><td><details><summary>{k} columns</summary><ul>{schema}</ul></details></td></tr>",
            n = esc(&t.name),
            p = esc(&t.path),
            l = esc(&t.layer),
            v = t.version.map_or("–".into(), |v| v.to_string()),
            r = t.rows,
            f = t.files,
            b = mib(t.bytes),
            pc = esc(&t.partition_columns.join(", ")),
            k = t.schema.len(),
        ));
    }
    layout(
        "Lake",
        "Lake",
        &format!(
            "<h2>Landing datasets</h2>{ds}<h2>Delta tables</h2><table class=\"list\"><thead><tr><th>table</th><th>layer</th><th>version</th><th>rows</th><th>files</th><th>size</th><th>partitioned by</th><th>schema</th></tr></thead><tbody>{ts}</tbody></table>"
        ),
    )
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

/// The charts of one dashboard document.
fn dashboard_charts(name: &str, rows: &[Value]) -> String {
    let pick = |label: &dyn Fn(&Value) -> String, value: &str| -> Vec<(String, f64)> {
        rows.iter().map(|r| (label(r), f(&r[value]))).collect()
    };
    match name {
        "iot_current_status" => {
            let mut by_status: BTreeMap<String, f64> = BTreeMap::new();
            for r in rows {
                *by_status.entry(s(&r["status"])).or_default() += 1.0;
            }
            let label = |r: &Value| format!("{} {}", s(&r["building_id"]), s(&r["sensor_type"]));
            format!(
                "{}{}",
                bars(
                    "latest status (sensor groups)",
                    "groups",
                    &by_status.into_iter().collect::<Vec<_>>()
                ),
                bars("battery level", "%", &pick(&label, "battery_level"))
            )
        }
        "api_health_1h" => {
            let label = |r: &Value| s(&r["endpoint"]);
            format!(
                "{}{}{}",
                bars("p95 latency", "ms", &pick(&label, "p95_ms")),
                bars("error rate", "%", &pick(&label, "error_rate_pct")),
                bars("requests", "requests", &pick(&label, "request_count"))
            )
        }
        "social_trending_2h" => {
            let of_kind = |kind: &str, n: usize| -> Vec<(String, f64)> {
                rows.iter()
                    .filter(|r| r["kind"] == kind)
                    .take(n)
                    .map(|r| (s(&r["key"]), f(&r["total_engagement"])))
                    .collect()
            };
            format!(
                "{}{}",
                bars(
                    "top hashtags by engagement",
                    "engagement",
                    &of_kind("hashtag", 20)
                ),
                bars(
                    "top posts by engagement",
                    "engagement",
                    &of_kind("post", 10)
                )
            )
        }
        "ecommerce_realtime_kpi" => {
            let Some(r) = rows.first() else {
                return String::new();
            };
            format!(
                "{}{}",
                tiles(&[
                    ("active sessions 1h", s(&r["active_sessions_1h"])),
                    ("conversions 1h", s(&r["conversions_1h"])),
                    ("conversion rate %", s(&r["conversion_rate_pct"])),
                    ("revenue 1h", s(&r["revenue_1h"])),
                    ("revenue today", s(&r["revenue_today"])),
                    ("events 1h", s(&r["total_events_1h"])),
                ]),
                funnel(
                    "funnel (last hour)",
                    &[
                        ("sessions", f(&r["active_sessions_1h"])),
                        ("cart adds", f(&r["cart_adds_1h"])),
                        ("conversions", f(&r["conversions_1h"])),
                    ]
                )
            )
        }
        "financial_realtime_monitor" => {
            let Some(r) = rows.first() else {
                return String::new();
            };
            format!(
                "{}{}",
                tiles(&[
                    ("transactions 15m", s(&r["transactions_15m"])),
                    ("volume 15m (USD)", s(&r["total_volume_15m"])),
                    ("fraud rate %", s(&r["fraud_rate_pct"])),
                    ("avg risk score", s(&r["avg_risk_score"])),
                ]),
                bars(
                    "transactions (15 min)",
                    "transactions",
                    &[
                        ("all".into(), f(&r["transactions_15m"])),
                        ("declined".into(), f(&r["declined_count_15m"])),
                        ("fraud flagged".into(), f(&r["fraud_count_15m"])),
                    ]
                )
            )
        }
        _ => super::timeseries::charts(name, rows).unwrap_or_else(|| declared_charts(rows)),
    }
}

/// The charts of a dashboard declared by the user: one row gives a tile per column; more rows
/// are labelled by their non-numeric values (not the run's `as_of`), with a bar chart per numeric column (the first
/// four columns, the first 50 rows).
fn declared_charts(rows: &[Value]) -> String {
    let Some(first) = rows.first().and_then(Value::as_object) else {
        return String::new();
    };
    if rows.len() == 1 {
        let items: Vec<(&str, String)> = first
            .iter()
            .filter(|(k, _)| k.as_str() != "as_of")
            .map(|(k, v)| (k.as_str(), s(v)))
            .collect();
        return tiles(&items);
    }
    let numeric: Vec<&str> = first
        .keys()
        .map(String::as_str)
        .filter(|k| rows.iter().all(|r| r[*k].is_number() || r[*k].is_null()))
        .filter(|k| rows.iter().any(|r| r[*k].is_number()))
        .collect();
    let label = |r: &Value| -> String {
        r.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !numeric.contains(&k.as_str()) && k.as_str() != "as_of")
                    .map(|(_, v)| s(v))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    numeric
        .iter()
        .take(4)
        .map(|k| {
            let items: Vec<(String, f64)> = rows
                .iter()
                .take(50)
                .map(|r| (label(r), f(&r[*k])))
                .collect();
            bars(k, "", &items)
        })
        .collect()
}

/// The dashboards' cards, in `<div id="dashboards" data-as-of="…">`: what `/dashboards` shows
/// and `/dashboards/fragment` answers, so the page's script can swap it in after a serving run.
pub fn dashboards_fragment(docs: &BTreeMap<String, Value>) -> String {
    let mut body = String::new();
    if docs.is_empty() {
        body.push_str("<p class=\"muted\">No dashboards yet: the serving DAG (4-serving_layer_merge) writes them every 10 minutes.</p>");
    }
    for (name, doc) in docs {
        let rows = doc["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let w = &doc["window"];
        body.push_str(&format!(
            "<section class=\"dashboard\" data-dashboard=\"{n}\" data-rows=\"{nr}\" data-as-of=\"{a}\"><h2>{n}</h2>\
             <p class=\"muted\">as of {a} · window {ws} – {we} ({m} min) · {nr} rows · stream {st}</p>{split}{charts}</section>",
            n = esc(name),
            nr = rows.len(),
            a = esc(&s(&doc["as_of"])),
            ws = esc(&s(&w["start"])),
            we = esc(&s(&w["end"])),
            m = esc(&s(&w["minutes"])),
            st = esc(&s(&doc["stream"])),
            split = source_split(
                doc["events_by_source"]["batch"].as_u64().unwrap_or(0),
                doc["events_by_source"]["speed"].as_u64().unwrap_or(0)
            ),
            charts = dashboard_charts(name, rows),
        ));
    }
    let landed = Landed::of(docs);
    format!(
        "<div id=\"dashboards\" data-as-of=\"{}\">{body}</div>",
        esc(landed.as_of.as_deref().unwrap_or_default())
    )
}

/// `/dashboards`: one card per dashboard document, updated in place by the script when a
/// serving run lands (`/api/events`).
pub fn dashboards_page(docs: &BTreeMap<String, Value>) -> String {
    let landed = Landed::of(docs);
    let mut body = String::from(
        "<p id=\"live\" class=\"muted\" hidden data-live-updates=\"0\">Live: the charts update when a serving run lands.</p>",
    );
    body.push_str(&dashboards_fragment(docs));
    body.push_str(&json_data(&serde_json::json!({
        "page": "dashboards",
        "as_of": landed.as_of.clone().unwrap_or_default(),
        "landed": landed,
    })));
    body.push_str("<script src=\"/static/ui.js\"></script>");
    layout("Dashboards", "Dashboards", &body)
}

/// `/alerts`: the alerts of the last 24 hours, newest first.
pub fn alerts_page(doc: Option<&Value>) -> String {
    let Some(doc) = doc else {
        return layout(
            "Alerts",
            "Alerts",
            "<p class=\"muted\">No alerts document yet: the serving DAG writes serving/alerts/latest.json.</p>",
        );
    };
    let by_rule: Vec<(String, f64)> = doc["last_24h"]
        .as_array()
        .map(|a| {
            let mut m: BTreeMap<String, f64> = BTreeMap::new();
            for r in a {
                *m.entry(s(&r["rule"])).or_default() += 1.0;
            }
            m.into_iter().collect()
        })
        .unwrap_or_default();
    let receivers: Vec<String> = doc["receivers"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    let mut rows = String::new();
    for a in doc["last_24h"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let delivery = match receivers.is_empty() {
            true => String::new(),
            false => format!(
                "<td>{}</td>",
                delivery_cell(&receivers, &doc["deliveries"][s(&a["alert_id"])])
            ),
        };
        let ids: Vec<String> = a["triggering_ids"]
            .as_array()
            .map(|v| v.iter().take(5).map(s).collect())
            .unwrap_or_default();
        let more = a["triggering_count"].as_u64().unwrap_or(0) as usize;
        rows.push_str(&format!(
            "<tr class=\"alert sev-{sev}\" data-rule=\"{rule}\"><td>{at}</td><td>{rule}</td><td><span class=\"badge sev-{sev}\">{sev}</span></td>\
             <td>{subj}</td><td>{ws} – {we}</td><td>{v} (threshold {th})</td><td><code>{ids}</code>{more}</td><td>{d}</td>{delivery}</tr>",
            at = esc(&s(&a["triggered_at"])),
            rule = esc(&s(&a["rule"])),
            sev = esc(&s(&a["severity"])),
            subj = esc(&s(&a["subject"])),
            ws = esc(&s(&a["window_start"])),
            we = esc(&s(&a["window_end"])),
            v = num(f(&a["value"])),
            th = num(f(&a["threshold"])),
            ids = esc(&ids.join(", ")),
            more = if more > ids.len() {
                format!(" <span class=\"muted\">and {} more</span>", more - ids.len())
            } else {
                String::new()
            },
            d = esc(&s(&a["detail"])),
        ));
    }
    layout(
        "Alerts",
        "Alerts",
        &format!(
            "<p class=\"muted\">as of {} · the last 24 hours</p>{}<table class=\"list\"><thead><tr><th>triggered</th><th>rule</th><th>severity</th><th>subject</th><th>window</th><th>value</th><th>triggering rows</th><th>detail</th>{delivery_th}</tr></thead><tbody>{rows}</tbody></table>",
            esc(&s(&doc["as_of"])),
            bars("alerts by rule (24 h)", "alerts", &by_rule),
            delivery_th = if receivers.is_empty() {
                ""
            } else {
                "<th>delivery</th>"
            },
        ),
    )
}

/// An alert's delivery state at each receiver (`states`: receiver → record of latest.json):
/// sent, pending (a failure retried by the next run), failed (refused) or expired.
fn delivery_cell(receivers: &[String], states: &Value) -> String {
    let mut out = Vec::new();
    for r in receivers {
        let st = &states[r.as_str()];
        let (class, text) = match st["state"].as_str() {
            None => continue,
            Some("sent") => ("sent", "sent".to_string()),
            Some("failed") if !st["next_attempt"].is_null() => {
                ("pending", format!("pending ({})", s(&st["reason"])))
            }
            Some("failed") => ("failed", format!("failed ({})", s(&st["reason"]))),
            Some("expired") => ("expired", "expired".to_string()),
            Some(other) => ("unknown", other.to_string()),
        };
        out.push(format!(
            "<span class=\"delivery {class}\" data-receiver=\"{rn}\">{rn}: {t}</span>",
            rn = esc(r),
            t = esc(&text)
        ));
    }
    if out.is_empty() {
        return "<span class=\"muted\">—</span>".into();
    }
    out.join("<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alerts_page_shows_each_receivers_delivery_state_escaped() {
        let doc = serde_json::json!({
            "as_of": "2026-02-02T00:10:00Z",
            "receivers": ["ops", "<pager>"],
            "last_24h": [
                {"alert_id": "a1", "rule": "r", "severity": "high", "triggered_at": "t"},
                {"alert_id": "a2", "rule": "r", "severity": "high", "triggered_at": "t"},
            ],
            "deliveries": {
                "a1": {"ops": {"state": "sent"}, "<pager>": {"state": "failed", "reason": "HTTP 503", "next_attempt": "x"}},
                "a2": {"ops": {"state": "failed", "reason": "<HTTP 400>", "next_attempt": null}, "<pager>": {"state": "expired"}},
            },
        });
        let page = alerts_page(Some(&doc));
        assert!(page.contains("<th>delivery</th>"), "{page}");
        assert!(page.contains("ops: sent"), "{page}");
        assert!(page.contains("&lt;pager&gt;: pending (HTTP 503)"), "{page}");
        assert!(page.contains("ops: failed (&lt;HTTP 400&gt;)"), "{page}");
        assert!(page.contains("&lt;pager&gt;: expired"), "{page}");
        assert!(
            !page.contains("<pager>") && !page.contains("<HTTP"),
            "{page}"
        );
        let plain = alerts_page(Some(&serde_json::json!({"last_24h": []})));
        assert!(!plain.contains("<th>delivery</th>"));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn dashboard_cards_show_the_boundary_and_charts() {
        let doc = serde_json::json!({
            "as_of": "2026-02-01T10:00:00Z", "stream": "api_logs",
            "window": {"start": "2026-02-01T09:00:00Z", "end": "2026-02-01T10:00:00Z", "minutes": 60},
            "events_by_source": {"batch": 7, "speed": 3},
            "rows": [{"endpoint": "/a", "p95_ms": 120.5, "error_rate_pct": 2.0, "request_count": 10}]
        });
        let page = dashboards_page(&BTreeMap::from([("api_health_1h".to_string(), doc)]));
        assert!(page.contains("data-dashboard=\"api_health_1h\" data-rows=\"1\""));
        assert!(page.contains("data-label=\"batch\" data-value=\"7\""));
        assert!(page.contains("data-label=\"/a\" data-value=\"120.5\""));
        let data = &page[page.find("id=\"lakepipe-data\">").unwrap()..];
        let data = &data[..data.find("</script>").unwrap()];
        assert!(
            data.contains("\"as_of\":\"2026-02-01T10:00:00Z\""),
            "{data}"
        );
        assert!(!page.contains("<script>"), "no inline script");
    }

    #[test]
    fn a_declared_dashboard_gets_tiles_or_bars_from_its_rows() {
        let doc = |rows: Value| serde_json::json!({"as_of": "2026-02-01T10:00:00Z", "rows": rows});
        let many = doc(serde_json::json!([
            {"currency": "EUR", "orders": 3, "revenue": 10.5, "note": null, "as_of": "2026-02-01T10:00:00Z"},
            {"currency": "<USD>", "orders": 1, "revenue": null, "note": "x"}
        ]));
        let page = dashboards_page(&BTreeMap::from([("orders_last_hour".to_string(), many)]));
        assert!(
            page.contains("data-label=\"EUR \u{2013}\" data-value=\"3\""),
            "{page}"
        );
        assert!(
            page.contains("data-label=\"&lt;USD&gt; x\" data-value=\"1\""),
            "{page}"
        );
        assert!(page.contains("<figcaption>revenue "), "{page}");
        let one = doc(serde_json::json!([{"orders": 4, "top": "EUR", "as_of": "2026"}]));
        let page = dashboards_page(&BTreeMap::from([("orders_now".to_string(), one)]));
        assert!(
            page.contains("data-label=\"orders\" data-value=\"4\""),
            "{page}"
        );
        assert!(
            page.contains("data-label=\"top\" data-value=\"EUR\""),
            "{page}"
        );
    }

    #[test]
    fn lake_strings_cannot_leave_their_context() {
        let evil = "</script><script>alert(1)</script>\"><img src=x onerror=alert(2)>";
        let doc = serde_json::json!({
            "as_of": evil, "stream": evil,
            "window": {"start": evil, "end": evil, "minutes": evil},
            "events_by_source": {"batch": 1, "speed": 1},
            "rows": [{"endpoint": evil, "p95_ms": 1.0}]
        });
        let page = dashboards_page(&BTreeMap::from([("api_health_1h".to_string(), doc)]));
        assert!(
            !page.contains("<script>alert") && !page.contains("<img"),
            "{page}"
        );
        assert!(page.contains("\\u003c/script\\u003e\\u003cscript\\u003ealert(1)"));
        assert!(page.contains("&lt;img src=x onerror=alert(2)&gt;"));
        assert_eq!(
            run_href("d", "a/b?c#\"<"),
            "/dags/d/runs/a%2Fb%3Fc%23%22%3C",
            "a link's path segment is percent-encoded"
        );
        assert_eq!(seg("2026-02-01T10:00:00Z"), "2026-02-01T10:00:00Z");
        let form = action("/x\"y", "go<", "c", "t\"k");
        assert!(form.contains("action=\"/x&quot;y\"") && form.contains("value=\"t&quot;k\""));
        assert!(form.contains("name=\"csrf\"") && form.contains(">go&lt;</button>"));
    }
}
