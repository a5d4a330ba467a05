//! `dashboards`: the dashboards of the active pipeline (the seed pipeline's five of SPEC "Serving
//! layer": [`SEED_DASHBOARDS`]):
//! each a SQL query over the view `w` — the unified rows of one stream with event time in
//! [T − window, T) — and, for daily totals, `today` — the rows of T's date before T.
//!
//! Each run replaces `serving/dashboards/<name>` (a Delta snapshot with an `as_of` column) and
//! writes `serving/dashboards/<name>.json`: the rows, the window, and how many of the window's
//! events came from the batch layer and how many from the speed layer (the batch/speed boundary).

use std::collections::BTreeMap;
use std::future::IntoFuture;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use deltalake::arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::prelude::{SessionContext, lit};
use deltalake::datafusion::scalar::ScalarValue;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::window::{self, Reading};
use super::{
    Error, Result, collect, json_rows, log_info, overwrite_snapshot, prepared, put_json, verify,
    window_view_sql,
};
use crate::clock::rfc3339_secs;
use crate::scheduler::task::{TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::store::Store;

/// One dashboard.
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// The seed pipeline's dashboards (the built-in declaration has them).
///
/// Sums and averages of float columns are taken in `DECIMAL(38, 6)` and given back as `DOUBLE`:
/// exact, so a dashboard's numbers do not depend on the order its rows are added in (the window's
/// files, the partitions of a plan). A float sum's last bits do, and a `round(avg, 2)` of it
/// falls either side of a half: a simulated day's `api_health_1h` differed between two runs.
pub const SEED_DASHBOARDS: [Dashboard; 8] = [
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
                      CAST(round(avg(CAST(response_time_ms AS DECIMAL(38, 6))), 2) AS DOUBLE) AS avg_response_ms,
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
                        CAST(sum(CAST(engagement_score AS DECIMAL(38, 6))) AS DOUBLE) AS total_engagement, max(event_time) AS latest_activity
                      FROM w GROUP BY post_id, platform)
                UNION ALL
                SELECT 'hashtag' AS kind,
                  row_number() OVER (ORDER BY event_count DESC, tag) AS rank,
                  tag AS key, NULL AS platform, event_count, total_engagement, latest_activity
                FROM (SELECT tag, count(*) AS event_count, CAST(sum(CAST(engagement_score AS DECIMAL(38, 6))) AS DOUBLE) AS total_engagement,
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
                      CAST(round(coalesce(sum(CASE WHEN event_type = 'checkout_complete' THEN CAST(cart_value AS DECIMAL(38, 6)) END), 0), 2) AS DOUBLE) AS revenue_1h
                    FROM w)
              CROSS JOIN (SELECT CAST(round(coalesce(sum(CAST(cart_value AS DECIMAL(38, 6))), 0), 2) AS DOUBLE) AS revenue_today
                          FROM today WHERE event_type = 'checkout_complete')",
    },
    Dashboard {
        name: "financial_realtime_monitor",
        stream: "financial_transactions",
        minutes: 15,
        sql: "SELECT count(*) AS transactions_15m,
                CAST(round(coalesce(sum(CAST(amount_usd AS DECIMAL(38, 6))), 0), 2) AS DOUBLE) AS total_volume_15m,
                sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) AS fraud_count_15m,
                round(CASE WHEN count(*) = 0 THEN 0.0
                      ELSE 100.0 * sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) / count(*) END, 3) AS fraud_rate_pct,
                sum(CASE WHEN status = 'declined' THEN 1 ELSE 0 END) AS declined_count_15m,
                CAST(round(avg(CAST(risk_score AS DECIMAL(38, 6))), 4) AS DOUBLE) AS avg_risk_score
              FROM w",
    },
    Dashboard {
        name: "api_per_minute",
        stream: "api_logs",
        minutes: 60,
        sql: "SELECT date_trunc('minute', event_time) AS minute, endpoint,
                count(*) AS requests,
                round(percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms), 2) AS p95_ms,
                sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors,
                sum(CASE WHEN _source = 'batch' THEN 1 ELSE 0 END) AS batch_requests,
                sum(CASE WHEN _source = 'speed' THEN 1 ELSE 0 END) AS speed_requests
              FROM w GROUP BY date_trunc('minute', event_time), endpoint
              ORDER BY minute, endpoint",
    },
    Dashboard {
        name: "ecommerce_revenue_today",
        stream: "ecommerce_clickstream",
        minutes: 60,
        sql: "SELECT bucket, orders, revenue, revenue_batch, revenue_speed,
                round(sum(revenue) OVER (ORDER BY bucket ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), 2)
                  AS cumulative_revenue
              FROM (SELECT arrow_cast(date_bin(INTERVAL '10 minutes', event_time),
                        'Timestamp(Microsecond, Some(\"UTC\"))') AS bucket,
                      count(*) AS orders,
                      CAST(round(coalesce(sum(CAST(cart_value AS DECIMAL(38, 6))), 0), 2) AS DOUBLE) AS revenue,
                      CAST(round(coalesce(sum(CASE WHEN _source = 'batch' THEN CAST(cart_value AS DECIMAL(38, 6)) END), 0), 2) AS DOUBLE) AS revenue_batch,
                      CAST(round(coalesce(sum(CASE WHEN _source = 'speed' THEN CAST(cart_value AS DECIMAL(38, 6)) END), 0), 2) AS DOUBLE) AS revenue_speed
                    FROM today WHERE event_type = 'checkout_complete'
                    GROUP BY date_bin(INTERVAL '10 minutes', event_time))
              ORDER BY bucket",
    },
    Dashboard {
        name: "financial_per_minute",
        stream: "financial_transactions",
        minutes: 60,
        sql: "SELECT date_trunc('minute', event_time) AS minute,
                count(*) AS transactions,
                sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) AS fraud,
                CAST(round(coalesce(sum(CAST(amount_usd AS DECIMAL(38, 6))), 0), 2) AS DOUBLE) AS volume_usd,
                sum(CASE WHEN _source = 'batch' THEN 1 ELSE 0 END) AS batch_transactions,
                sum(CASE WHEN _source = 'speed' THEN 1 ELSE 0 END) AS speed_transactions
              FROM w GROUP BY date_trunc('minute', event_time)
              ORDER BY minute",
    },
];

/// Lake path of a dashboard's Delta table.
pub fn dashboard_path(name: &str) -> String {
    format!("serving/dashboards/{name}")
}

/// One dashboard of a run, planned.
#[derive(Debug, Clone, PartialEq)]
struct DashboardPlan {
    /// The dashboard.
    dashboard: Dashboard,
    /// Start of its window (the window ends at the run's logical date).
    start: DateTime<Utc>,
    /// SQL of the view `w`: the window's rows.
    window_sql: String,
    /// SQL of the view `today`: the rows of the run's date before it, if its query reads it.
    today_sql: Option<String>,
    /// The dashboard's query (its rows, in its order; `as_of` is added to each).
    sql: String,
    /// Lake path of its Delta snapshot.
    path: String,
    /// Key of its JSON document.
    doc_key: String,
}

/// What a run does with one dashboard, in the declaration's order.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Its stream has no unified table yet: skipped.
    Missing(Dashboard),
    /// Computed, snapshotted and published.
    Publish(Box<DashboardPlan>),
}

/// A run of `dashboards`, decided without I/O from the unified tables that exist.
#[derive(Debug, Clone, PartialEq)]
struct DashboardsPlan {
    /// The run's logical date: every window ends there.
    t: DateTime<Utc>,
    /// One step per dashboard.
    steps: Vec<Step>,
}

impl DashboardsPlan {
    /// Plans the run at `t`, `present` naming the streams with a unified table.
    fn new(t: DateTime<Utc>, present: &[&str]) -> DashboardsPlan {
        let midnight = t
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|m| m.and_utc())
            .unwrap_or(t);
        let steps = crate::pipeline::active()
            .dashboards
            .iter()
            .map(|d| {
                if !present.contains(&d.stream) {
                    return Step::Missing(*d);
                }
                let start = t - Duration::minutes(d.minutes);
                Step::Publish(Box::new(DashboardPlan {
                    dashboard: *d,
                    start,
                    window_sql: window_view_sql("w", d.stream, start, t),
                    today_sql: window::reads_today(d.sql)
                        .then(|| window_view_sql("today", d.stream, midnight, t.max(midnight))),
                    sql: d.sql.to_string(),
                    path: dashboard_path(d.name),
                    doc_key: format!("{}.json", dashboard_path(d.name)),
                }))
            })
            .collect();
        DashboardsPlan { t, steps }
    }

    /// Computes, snapshots and publishes each dashboard.
    /// With `reference`, each dashboard is also computed over the Delta tables and must agree
    /// ([`verify`]).
    async fn execute(
        self,
        store: &Store,
        reading: &Reading,
        log: Option<&TaskLog>,
    ) -> Result<DashboardsMetrics> {
        let t = self.t;
        let reference = reading.reference.as_ref();
        let mut out = BTreeMap::new();
        let mut writes = Vec::new();
        // The writes already started are awaited even when a later dashboard fails, so none
        // outlives the run (and its turn, `exclusive`).
        let computed: Result<()> = async {
            for step in self.steps {
                let p = match step {
                    Step::Missing(d) => {
                        log_info(log, format!("{}: no unified_{} yet", d.name, d.stream));
                        continue;
                    }
                    Step::Publish(p) => p,
                };
                let d = p.dashboard;
                let Some((window_schema, window_rows)) = reading.rows.get(d.stream) else {
                    log_info(log, format!("{}: no unified_{} yet", d.name, d.stream));
                    continue;
                };
                let w = window::rows_between(window_rows, p.start, t)?;
                let by_source = window::source_counts(&w)?;
                let (schema, batches) = p.compute_prepared(window_schema, w, window_rows, t).await?;
                let rows = json_rows(&batches)?;
                let n_rows = rows.len();
                if let Some(reference) = reference {
                    let (_, expected) = p.compute(reference, t).await?;
                    verify::same_rows(d.name, &rows, &json_rows(&expected)?)?;
                    verify::same_rows(
                        &format!("{}'s events by source", d.name),
                        &[serde_json::json!(by_source)],
                        &[serde_json::json!(source_counts(reference).await?)],
                    )?;
                }
                let mut doc = serde_json::json!({
                    "name": d.name,
                    "stream": d.stream,
                    "as_of": rfc3339_secs(t),
                    "window": { "start": rfc3339_secs(p.start), "end": rfc3339_secs(t), "minutes": d.minutes },
                    "events_by_source": by_source,
                    "watermark": reading.watermark.json(),
                    "delta_version": null,
                    "rows": rows,
                });
                // The snapshot and then the document are written while the next dashboard is
                // computed (each dashboard's own table and key).
                let store = store.clone();
                writes.push(tokio::spawn(async move {
                    let version = overwrite_snapshot(&store, &p.path, schema, batches, t).await?;
                    doc["delta_version"] = version.into();
                    put_json(&store, &p.doc_key, &doc).await
                }));
                log_info(
                    log,
                    format!(
                        "{}: {n_rows} rows, window events by source {}",
                        d.name,
                        serde_json::json!(by_source)
                    ),
                );
                out.insert(
                    d.name.to_string(),
                    DashboardMetrics {
                        rows: n_rows,
                        events_by_source: by_source,
                    },
                );
            }
            Ok(())
        }
        .await;
        let mut written = Ok(());
        for w in writes {
            let r = w.await.map_err(|e| Error::Batch {
                source: Box::new(e),
            });
            if written.is_ok() {
                written = r.and_then(|r| r);
            }
        }
        computed?;
        written?;
        if reference.is_some() {
            log_info(
                log,
                format!(
                    "verified: {} dashboard(s) equal to their SQL over the unified tables",
                    out.len()
                ),
            );
        }
        Ok(DashboardsMetrics(out))
    }
}

impl DashboardPlan {
    /// The dashboard's rows from its stream's window (`schema`, `rows`), as [`Self::compute`]
    /// gives them over the views: its query, prepared once per process ([`prepared`]), over `w`
    /// (the rows in [start, T), [`window::rows_between`]) and `today` (those of T's date
    /// before T).
    async fn compute_prepared(
        &self,
        schema: &SchemaRef,
        w: Vec<RecordBatch>,
        rows: &[RecordBatch],
        t: DateTime<Utc>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut inputs = vec![prepared::Input {
            name: "w",
            schema: Arc::clone(schema),
            rows: w,
        }];
        if self.today_sql.is_some() {
            inputs.push(prepared::Input {
                name: "today",
                schema: Arc::clone(schema),
                rows: window::rows_between(rows, window::midnight(t), t)?,
            });
        }
        let what = format!("the query of {}", self.dashboard.name);
        let (schema, batches) = prepared::run(&what, &self.sql, inputs).await?;
        with_as_of(schema, batches, t)
    }

    /// The dashboard's rows over the views of `ctx`'s `unified_<stream>`, in the order its
    /// query gives, each with `as_of` (the run's logical date `t`). The column is added to the
    /// query's result rather than by selecting from it as a subquery: DataFusion drops an
    /// `ORDER BY` inside a subquery (SQL promises no order there), and the documents would list
    /// rows in hash order.
    async fn compute(
        &self,
        ctx: &SessionContext,
        t: DateTime<Utc>,
    ) -> Result<(
        deltalake::arrow::datatypes::SchemaRef,
        Vec<deltalake::arrow::array::RecordBatch>,
    )> {
        let name = self.dashboard.name;
        for view in std::iter::once(&self.window_sql).chain(&self.today_sql) {
            ctx.sql(view)
                .await
                .map_err(Error::datafusion(format!("the windows of {name}")))?;
        }
        let as_of = lit(ScalarValue::TimestampMicrosecond(
            Some(t.timestamp_micros()),
            Some("UTC".into()),
        ));
        let df = ctx
            .sql(&self.sql)
            .await
            .and_then(|df| df.with_column("as_of", as_of))
            .map_err(Error::datafusion(format!("the query of {name}")))?;
        collect(df).await
    }
}

/// `batches` with the column `as_of` (the run's logical date `t`, non-null) added last, or in
/// place of a column of that name: what `DataFrame::with_column` gives the views' path.
fn with_as_of(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    t: DateTime<Utc>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let field = Field::new(
        "as_of",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    );
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    let at = fields.iter().position(|f| f.name() == "as_of");
    match at {
        Some(i) => fields[i] = Arc::new(field),
        None => fields.push(Arc::new(field)),
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batches = batches
        .into_iter()
        .map(|b| {
            let as_of: ArrayRef = Arc::new(
                TimestampMicrosecondArray::from_value(t.timestamp_micros(), b.num_rows())
                    .with_timezone("UTC"),
            );
            let mut columns = b.columns().to_vec();
            match at {
                Some(i) => columns[i] = as_of,
                None => columns.push(as_of),
            }
            RecordBatch::try_new(Arc::clone(&schema), columns)
                .map_err(Error::arrow("adding as_of to a dashboard's rows"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((schema, batches))
}

/// What a run of `dashboards` did, as it reports it (its task output): by dashboard name, the
/// dashboards whose stream has a unified table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct DashboardsMetrics(pub BTreeMap<String, DashboardMetrics>);

/// What a run published of one dashboard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DashboardMetrics {
    /// Rows of the dashboard.
    pub rows: usize,
    /// Events of its window by layer (`batch`, `speed`; both always present).
    pub events_by_source: BTreeMap<String, u64>,
}

/// The operation of `dashboards`: opens the unified tables, plans ([`DashboardsPlan`]), and
/// replaces each dashboard's snapshot and document.
pub struct DashboardsBuilder<'a> {
    store: &'a Store,
    logical_date: DateTime<Utc>,
    log: Option<&'a TaskLog>,
}

impl<'a> DashboardsBuilder<'a> {
    /// The dashboards as of `logical_date`.
    pub fn new(store: &'a Store, logical_date: DateTime<Utc>) -> DashboardsBuilder<'a> {
        DashboardsBuilder {
            store,
            logical_date,
            log: None,
        }
    }

    /// Writes what the run does to `log`.
    pub fn with_log(self, log: &'a TaskLog) -> DashboardsBuilder<'a> {
        DashboardsBuilder {
            log: Some(log),
            ..self
        }
    }

    async fn run(self) -> Result<DashboardsMetrics> {
        let _turn = super::exclusive(self.store, "dashboards").await;
        let streams: Vec<&'static str> = crate::pipeline::active()
            .dashboards
            .iter()
            .map(|d| d.stream)
            .collect();
        let reading = window::reading(self.store, &streams, self.logical_date, self.log).await?;
        DashboardsPlan::new(self.logical_date, &reading.present)
            .execute(self.store, &reading, self.log)
            .await
    }
}

impl<'a> IntoFuture for DashboardsBuilder<'a> {
    type Output = Result<DashboardsMetrics>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The body of `dashboards`.
pub struct Dashboards;

#[async_trait::async_trait]
impl TaskBody for Dashboards {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = DashboardsBuilder::new(&ctx.store, ctx.logical_date)
            .with_log(&ctx.log)
            .await?;
        let declared = &crate::pipeline::active().dashboards;
        let streams: std::collections::BTreeSet<&str> = declared
            .iter()
            .filter(|d| metrics.0.contains_key(d.name))
            .map(|d| d.stream)
            .collect();
        super::read_unified(ctx, streams).await;
        for (name, m) in &metrics.0 {
            ctx.wrote_table(&dashboard_path(name), Some(m.rows as u64))
                .await;
        }
        output(&metrics)
    }
}

/// Events of the view `w` by `_source` (batch / speed), by SQL: what
/// [`window::source_counts`] of `w`'s rows must give (checked with `LAKEPIPE_SERVING_VERIFY`).
async fn source_counts(df_ctx: &SessionContext) -> Result<BTreeMap<String, u64>> {
    let (_, batches) = collect(
        df_ctx
            .sql("SELECT _source, count(*) AS n FROM w GROUP BY _source ORDER BY _source")
            .await
            .map_err(Error::datafusion("events of w by source"))?,
    )
    .await?;
    let mut m = BTreeMap::from([("batch".to_string(), 0), ("speed".to_string(), 0)]);
    for r in json_rows(&batches)? {
        if let (Some(s), Some(n)) = (r["_source"].as_str(), r["n"].as_u64()) {
            m.insert(s.to_string(), n);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;
    use crate::layers::serving::ts_sql;

    #[test]
    fn a_run_is_planned_without_the_lake() {
        let t = parse_utc("2026-02-02T00:10:00Z").unwrap();
        let plan = DashboardsPlan::new(t, &["api_logs", "iot_sensors"]);
        assert_eq!(plan.steps.len(), SEED_DASHBOARDS.len());
        let published: Vec<&DashboardPlan> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Publish(p) => Some(p.as_ref()),
                Step::Missing(_) => None,
            })
            .collect();
        let names: Vec<&str> = published.iter().map(|p| p.dashboard.name).collect();
        assert_eq!(
            names,
            ["iot_current_status", "api_health_1h", "api_per_minute"]
        );
        let api = published[1];
        // An hour's window before 00:10 spans two dates; today is the ten minutes since midnight.
        assert_eq!(api.start, parse_utc("2026-02-01T23:10:00Z").unwrap());
        assert_eq!(
            api.window_sql,
            format!(
                "CREATE OR REPLACE VIEW w AS SELECT * FROM unified_api_logs WHERE date IN ('2026-02-01', '2026-02-02') AND event_time >= {} AND event_time < {}",
                ts_sql(api.start),
                ts_sql(t)
            )
        );
        // Its query does not read `today`: no view of it is made. The e-commerce KPIs' does.
        assert_eq!(api.today_sql, None);
        let shop = DashboardsPlan::new(t, &["ecommerce_clickstream"]);
        let kpi = shop
            .steps
            .iter()
            .find_map(|s| match s {
                Step::Publish(p) if p.dashboard.name == "ecommerce_realtime_kpi" => Some(p),
                _ => None,
            })
            .unwrap();
        let today = kpi.today_sql.as_deref().unwrap();
        assert!(
            today.contains(
                "date IN ('2026-02-02') AND event_time >= arrow_cast('2026-02-02T00:00:00Z'"
            ),
            "{today}"
        );
        assert!(api.sql.starts_with("SELECT a.endpoint"), "{}", api.sql);
        assert_eq!(api.path, "serving/dashboards/api_health_1h");
        assert_eq!(api.doc_key, "serving/dashboards/api_health_1h.json");
        assert!(matches!(&plan.steps[2], Step::Missing(d) if d.name == "social_trending_2h"));
    }

    /// `api_health_1h` over the same four requests in two orders. Their mean is 1927.825: as
    /// floats, added in this order the sum rounds to 1927.82, added in the other to 1927.83.
    #[tokio::test]
    async fn averages_do_not_depend_on_the_order_rows_are_added_in() {
        use std::sync::Arc;

        use deltalake::arrow::array::{
            BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
        };
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        use deltalake::datafusion::datasource::MemTable;

        let api = SEED_DASHBOARDS
            .iter()
            .find(|d| d.name == "api_health_1h")
            .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("endpoint", DataType::Utf8, false),
            Field::new("response_time_ms", DataType::Float64, false),
            Field::new("is_error", DataType::Boolean, false),
            Field::new("status_code", DataType::Int64, false),
        ]));
        let mut averages = Vec::new();
        for values in [
            [440.3, 1865.2, 2776.9, 2628.9],
            [2628.9, 2776.9, 1865.2, 440.3],
        ] {
            let w = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(vec!["/api/v1/users"; 4])),
                    Arc::new(Float64Array::from(values.to_vec())),
                    Arc::new(BooleanArray::from(vec![false; 4])),
                    Arc::new(Int64Array::from(vec![200; 4])),
                ],
            )
            .unwrap();
            let ctx = crate::layers::sql::session().unwrap();
            let table = MemTable::try_new(Arc::clone(&schema), vec![vec![w]]).unwrap();
            ctx.register_table("w", Arc::new(table)).unwrap();
            let (_, batches) = collect(ctx.sql(api.sql).await.unwrap()).await.unwrap();
            let rows = json_rows(&batches).unwrap();
            averages.push(rows[0]["avg_response_ms"].clone());
        }
        // The exact mean, rounded half away from zero, whichever order.
        assert_eq!(averages, vec![serde_json::json!(1927.83); 2]);
    }

    #[test]
    fn metrics_are_the_output() {
        let m = DashboardsMetrics(BTreeMap::from([
            (
                "api_health_1h".to_string(),
                DashboardMetrics {
                    rows: 4,
                    events_by_source: BTreeMap::from([
                        ("batch".to_string(), 0),
                        ("speed".to_string(), 310),
                    ]),
                },
            ),
            (
                "iot_current_status".to_string(),
                DashboardMetrics {
                    rows: 0,
                    events_by_source: BTreeMap::from([
                        ("batch".to_string(), 0),
                        ("speed".to_string(), 0),
                    ]),
                },
            ),
        ]));
        let mut today = serde_json::Map::new();
        today.insert(
            "iot_current_status".into(),
            serde_json::json!({ "rows": 0usize, "events_by_source": { "batch": 0, "speed": 0 } }),
        );
        today.insert(
            "api_health_1h".into(),
            serde_json::json!({ "rows": 4usize, "events_by_source": { "batch": 0, "speed": 310 } }),
        );
        let today = serde_json::Value::Object(today);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v, today);
        assert_eq!(v.to_string(), today.to_string());
        assert_eq!(serde_json::from_value::<DashboardsMetrics>(v).unwrap(), m);
        // No unified table yet: an empty object.
        assert_eq!(
            serde_json::to_value(DashboardsMetrics::default()).unwrap(),
            serde_json::json!({})
        );
    }
}
