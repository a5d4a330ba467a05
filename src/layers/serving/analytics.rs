//! `analytics`: `serving/analytics/stream_dates` — per stream and event date: events,
//! from_batch, from_speed, quarantined, last event time — recomputed (replace-where) only for
//! the dates the run's unified tasks changed; and `serving/analytics/master_summary` — per
//! domain: total_records, latest_date, published_at — rebuilt from that small table, also as
//! `serving/analytics/master_summary.json`.

use std::collections::BTreeSet;

use super::{collect, json_rows, overwrite_snapshot, put_json, ts_sql, unified_session};
use crate::clock::rfc3339_secs;
use crate::layers::batch::table_path;
use crate::layers::sql;
use crate::layers::write::{self, Write};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::sources::stream::all_streams;
use crate::store::register_delta;

/// Lake path of the per stream and date figures.
pub const STREAM_DATES_PATH: &str = "serving/analytics/stream_dates";
/// Lake path of the per-domain summary.
pub const MASTER_SUMMARY_PATH: &str = "serving/analytics/master_summary";

/// Display name of each stream's domain, as in the original master summary.
pub const DOMAINS: [(&str, &str); 5] = [
    ("iot_sensors", "IoT Sensors"),
    ("api_logs", "API Logs"),
    ("social_media", "Social Media"),
    ("ecommerce_clickstream", "E-Commerce"),
    ("financial_transactions", "Financial"),
];

/// The body of `analytics`.
pub struct Analytics;

#[async_trait::async_trait]
impl TaskBody for Analytics {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Analytics {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let t = ctx.logical_date;
        let store = &ctx.store;
        let streams: Vec<&'static str> = all_streams().iter().map(|s| s.name).collect();
        let (df_ctx, present) = unified_session(store, &streams).await?;
        let existing = store.delta_table(STREAM_DATES_PATH).await?;
        // Dates the unified tasks changed; every date on the first run.
        let mut dates: BTreeSet<String> = BTreeSet::new();
        for out in ctx.upstream.values() {
            if let Some(ds) = out["dates"].as_array() {
                dates.extend(ds.iter().filter_map(|d| d.as_str().map(str::to_string)));
            }
        }
        if existing.is_none() {
            for s in &present {
                let (_, batches) = collect(
                    df_ctx
                        .sql(&format!(
                            "SELECT DISTINCT CAST(date AS VARCHAR) AS d FROM unified_{s}"
                        ))
                        .await?,
                )
                .await?;
                for r in json_rows(&batches)? {
                    dates.extend(r["d"].as_str().map(str::to_string));
                }
            }
        }
        let dates: Vec<String> = dates.into_iter().collect();
        if !dates.is_empty() && !present.is_empty() {
            let filter = sql::in_dates(&dates);
            let mut parts = Vec::new();
            for s in &present {
                let q = match store.delta_table(&table_path("quarantine", s)).await? {
                    Some(q) => {
                        register_delta(&df_ctx, &format!("quarantine_{s}"), &q).await?;
                        format!(
                            "SELECT date, count(*) AS n FROM quarantine_{s} WHERE {filter} GROUP BY date"
                        )
                    }
                    None => {
                        "SELECT CAST(NULL AS VARCHAR) AS date, CAST(0 AS BIGINT) AS n WHERE false"
                            .to_string()
                    }
                };
                parts.push(format!(
                    "SELECT '{s}' AS stream, u.date, u.events, u.from_batch, u.from_speed,
                       CAST(coalesce(q.n, 0) AS BIGINT) AS quarantined, u.last_event_time
                     FROM (SELECT CAST(date AS VARCHAR) AS date, count(*) AS events,
                             sum(CASE WHEN _source = 'batch' THEN 1 ELSE 0 END) AS from_batch,
                             sum(CASE WHEN _source = 'speed' THEN 1 ELSE 0 END) AS from_speed,
                             max(event_time) AS last_event_time
                           FROM unified_{s} WHERE {filter} GROUP BY date) u
                     LEFT JOIN ({q}) q ON u.date = CAST(q.date AS VARCHAR)"
                ));
            }
            let plan = df_ctx
                .sql(&format!(
                    "SELECT stream, events, from_batch, from_speed, quarantined, last_event_time, {} AS published_at, date FROM ({})",
                    ts_sql(t),
                    parts.join(" UNION ALL ")
                ))
                .await?
                .into_unoptimized_plan();
            write::write_plan(
                store.delta_table_or_new(STREAM_DATES_PATH).await?,
                &df_ctx,
                plan,
                Write::ReplaceDates(&dates),
                super::run_label(t),
            )
            .await?;
        }
        let Some(table) = store.delta_table(STREAM_DATES_PATH).await? else {
            ctx.log.info("no unified table yet: nothing to summarise");
            return Ok(serde_json::json!({ "dates": dates }));
        };
        register_delta(&df_ctx, "stream_dates", &table).await?;
        let domains: Vec<String> = DOMAINS
            .iter()
            .map(|(s, d)| format!("('{s}', '{d}')"))
            .collect();
        let (schema, batches) = collect(
            df_ctx
                .sql(&format!(
                    "SELECT d.column2 AS domain, d.column1 AS stream,
                       CAST(coalesce(sum(s.events), 0) AS BIGINT) AS total_records,
                       max(s.date) AS latest_date,
                       CAST(coalesce(sum(s.from_batch), 0) AS BIGINT) AS from_batch,
                       CAST(coalesce(sum(s.from_speed), 0) AS BIGINT) AS from_speed,
                       CAST(coalesce(sum(s.quarantined), 0) AS BIGINT) AS quarantined,
                       max(s.last_event_time) AS last_event_time,
                       {} AS published_at
                     FROM (VALUES {}) d LEFT JOIN stream_dates s ON s.stream = d.column1
                     GROUP BY d.column1, d.column2 ORDER BY d.column1",
                    ts_sql(t),
                    domains.join(", ")
                ))
                .await?,
        )
        .await?;
        let rows = json_rows(&batches)?;
        let version = overwrite_snapshot(store, MASTER_SUMMARY_PATH, schema, batches, t).await?;
        put_json(
            store,
            &format!("{MASTER_SUMMARY_PATH}.json"),
            &serde_json::json!({ "published_at": rfc3339_secs(t), "delta_version": version, "domains": rows }),
        )
        .await?;
        ctx.log.info(format!(
            "stream_dates recomputed for {dates:?}; master summary version {version}"
        ));
        Ok(serde_json::json!({ "dates": dates, "domains": rows }))
    }
}
