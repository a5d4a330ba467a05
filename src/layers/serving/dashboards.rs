//! `dashboards`: the five dashboards of SPEC "Serving layer", declared as data ([`DASHBOARDS`]):
//! each a SQL query over the view `w` — the unified rows of one stream with event time in
//! [T − window, T) — and, for daily totals, `today` — the rows of T's date before T.
//!
//! Each run replaces `serving/dashboards/<name>` (a Delta snapshot with an `as_of` column) and
//! writes `serving/dashboards/<name>.json`: the rows, the window, and how many of the window's
//! events came from the batch layer and how many from the speed layer (the batch/speed boundary).

use chrono::Duration;

use super::{collect, json_rows, overwrite_snapshot, ts_sql, unified_session, window_view};
use crate::clock::rfc3339_secs;
use crate::scheduler::{TaskBody, TaskContext, TaskResult};

/// One dashboard.
#[derive(Debug, Clone, Copy)]
pub struct Dashboard {
    /// Table and document name.
    pub name: &'static str,
    /// Stream it reads.
    pub stream: &'static str,
    /// Window length in minutes.
    pub minutes: i64,
    /// SELECT over `w` (and `today`).
    pub sql: &'static str,
}

/// The dashboards.
pub const DASHBOARDS: [Dashboard; 5] = [
    Dashboard {
        name: "iot_current_status",
        stream: "iot_sensors",
        minutes: 15,
        sql: "SELECT building_id, sensor_type, value AS latest_value, status, battery_level,
                event_time AS \"timestamp\", sensor_id, readings
              FROM (SELECT *,
                      row_number() OVER (PARTITION BY building_id, sensor_type ORDER BY event_time DESC, reading_id) AS rn,
                      count(*) OVER (PARTITION BY building_id, sensor_type) AS readings
                    FROM w)
              WHERE rn = 1 ORDER BY building_id, sensor_type",
    },
    Dashboard {
        name: "api_health_1h",
        stream: "api_logs",
        minutes: 60,
        sql: "SELECT a.endpoint, a.request_count, a.avg_response_ms, a.error_rate_pct,
                s.status_code AS common_status, a.p95_ms
              FROM (SELECT endpoint, count(*) AS request_count,
                      round(avg(response_time_ms), 2) AS avg_response_ms,
                      round(100.0 * sum(CASE WHEN is_error THEN 1 ELSE 0 END) / count(*), 2) AS error_rate_pct,
                      round(percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms), 2) AS p95_ms
                    FROM w GROUP BY endpoint) a
              JOIN (SELECT endpoint, status_code,
                      row_number() OVER (PARTITION BY endpoint ORDER BY n DESC, status_code) AS rn
                    FROM (SELECT endpoint, status_code, count(*) AS n FROM w GROUP BY endpoint, status_code)) s
                ON a.endpoint = s.endpoint AND s.rn = 1
              ORDER BY a.endpoint",
    },
    Dashboard {
        name: "social_trending_2h",
        stream: "social_media",
        minutes: 120,
        sql: "SELECT kind, rank, key, platform, event_count, total_engagement, latest_activity FROM (
                SELECT 'post' AS kind,
                  row_number() OVER (ORDER BY total_engagement DESC, post_id) AS rank,
                  post_id AS key, platform, event_count, total_engagement, latest_activity
                FROM (SELECT post_id, platform, count(*) AS event_count,
                        sum(engagement_score) AS total_engagement, max(event_time) AS latest_activity
                      FROM w GROUP BY post_id, platform)
                UNION ALL
                SELECT 'hashtag' AS kind,
                  row_number() OVER (ORDER BY event_count DESC, tag) AS rank,
                  tag AS key, NULL AS platform, event_count, total_engagement, latest_activity
                FROM (SELECT tag, count(*) AS event_count, sum(engagement_score) AS total_engagement,
                        max(event_time) AS latest_activity
                      FROM (SELECT unnest(hashtags) AS tag, engagement_score, event_time FROM w)
                      GROUP BY tag))
              WHERE (kind = 'post' AND rank <= 50) OR (kind = 'hashtag' AND rank <= 20)
              ORDER BY kind DESC, rank",
    },
    Dashboard {
        name: "ecommerce_realtime_kpi",
        stream: "ecommerce_clickstream",
        minutes: 60,
        sql: "SELECT active_sessions_1h, conversions_1h, cart_adds_1h,
                round(CASE WHEN active_sessions_1h = 0 THEN 0.0
                      ELSE 100.0 * conversions_1h / active_sessions_1h END, 2) AS conversion_rate_pct,
                total_events_1h, revenue_1h, revenue_today
              FROM (SELECT count(DISTINCT session_id) AS active_sessions_1h,
                      count(DISTINCT CASE WHEN event_type = 'checkout_complete' THEN session_id END) AS conversions_1h,
                      sum(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS cart_adds_1h,
                      count(*) AS total_events_1h,
                      round(coalesce(sum(CASE WHEN event_type = 'checkout_complete' THEN cart_value END), 0), 2) AS revenue_1h
                    FROM w)
              CROSS JOIN (SELECT round(coalesce(sum(cart_value), 0), 2) AS revenue_today
                          FROM today WHERE event_type = 'checkout_complete')",
    },
    Dashboard {
        name: "financial_realtime_monitor",
        stream: "financial_transactions",
        minutes: 15,
        sql: "SELECT count(*) AS transactions_15m,
                round(coalesce(sum(amount_usd), 0), 2) AS total_volume_15m,
                sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) AS fraud_count_15m,
                round(CASE WHEN count(*) = 0 THEN 0.0
                      ELSE 100.0 * sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) / count(*) END, 3) AS fraud_rate_pct,
                sum(CASE WHEN status = 'declined' THEN 1 ELSE 0 END) AS declined_count_15m,
                round(avg(risk_score), 4) AS avg_risk_score
              FROM w",
    },
];

/// Lake path of a dashboard's Delta table.
pub fn dashboard_path(name: &str) -> String {
    format!("serving/dashboards/{name}")
}

/// The body of `dashboards`.
pub struct Dashboards;

#[async_trait::async_trait]
impl TaskBody for Dashboards {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Dashboards {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let t = ctx.logical_date;
        let store = &ctx.store;
        let streams: Vec<&'static str> = DASHBOARDS.iter().map(|d| d.stream).collect();
        let (df_ctx, present) = unified_session(store, &streams).await?;
        let mut out = serde_json::Map::new();
        for d in DASHBOARDS {
            if !present.contains(&d.stream) {
                ctx.log
                    .info(format!("{}: no unified_{} yet", d.name, d.stream));
                continue;
            }
            let start = t - Duration::minutes(d.minutes);
            window_view(&df_ctx, "w", d.stream, start, t).await?;
            let midnight = t
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .map(|m| m.and_utc())
                .unwrap_or(t);
            window_view(&df_ctx, "today", d.stream, midnight, t.max(midnight)).await?;
            let df = df_ctx
                .sql(&format!(
                    "SELECT *, {} AS as_of FROM ({})",
                    ts_sql(t),
                    d.sql
                ))
                .await?;
            let (schema, batches) = collect(df).await?;
            let rows = json_rows(&batches)?;
            let n_rows = rows.len();
            let by_source = source_counts(&df_ctx).await?;
            let version =
                overwrite_snapshot(store, &dashboard_path(d.name), schema, batches, t).await?;
            let doc = serde_json::json!({
                "name": d.name,
                "stream": d.stream,
                "as_of": rfc3339_secs(t),
                "window": { "start": rfc3339_secs(start), "end": rfc3339_secs(t), "minutes": d.minutes },
                "events_by_source": by_source,
                "delta_version": version,
                "rows": rows,
            });
            super::put_json(store, &format!("{}.json", dashboard_path(d.name)), &doc).await?;
            ctx.log.info(format!(
                "{}: {n_rows} rows, window events by source {by_source}",
                d.name
            ));
            out.insert(
                d.name.to_string(),
                serde_json::json!({ "rows": n_rows, "events_by_source": by_source }),
            );
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// Events of the view `w` by `_source` (batch / speed).
async fn source_counts(
    df_ctx: &deltalake::datafusion::prelude::SessionContext,
) -> anyhow::Result<serde_json::Value> {
    let (_, batches) = collect(
        df_ctx
            .sql("SELECT _source, count(*) AS n FROM w GROUP BY _source ORDER BY _source")
            .await?,
    )
    .await?;
    let mut m = serde_json::Map::new();
    m.insert("batch".into(), 0.into());
    m.insert("speed".into(), 0.into());
    for r in json_rows(&batches)? {
        if let (Some(s), Some(n)) = (r["_source"].as_str(), r["n"].as_u64()) {
            m.insert(s.to_string(), n.into());
        }
    }
    Ok(serde_json::Value::Object(m))
}
