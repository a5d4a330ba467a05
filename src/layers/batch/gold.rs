//! `gold_<fact>`: the facts of the active pipeline (the seed pipeline's seven of SPEC "Batch
//! layer": [`SEED_FACTS`]), each a SQL aggregate over one silver table, recomputed for the event dates the run touched and written to
//! `batch/gold/<fact>` with replace-where on those dates. Metric names are the original
//! system's first, then ours; rates are percentages; the p95 is exact with linear
//! interpolation (`percentile_cont`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::delta;
use super::lineage::{self, Manifest};
use super::{Error, info, table_path};
use crate::layers::sql::{count_by_date, in_dates, session, set_options};
use crate::layers::write::replace_dates;
use crate::scheduler::task::{TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::store::{Store, register_delta};

/// One gold fact: name, the stream whose silver table it reads, and its query over `silver`
/// (already restricted to the affected dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fact {
    /// Table name under `batch/gold/`.
    pub name: &'static str,
    /// Source stream.
    pub stream: &'static str,
    /// SELECT over the table `silver`; must output a `date` column.
    pub sql: &'static str,
}

/// The seed pipeline's facts, in DAG order (the built-in declaration has them; the layers run
/// the active pipeline's, [`crate::pipeline::active`]).
pub const SEED_FACTS: [Fact; 7] = [
    Fact {
        name: "fact_iot_daily",
        stream: "iot_sensors",
        sql: "SELECT date, building_id, sensor_type,
                count(*) AS total_readings,
                avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value,
                avg(battery_level) AS avg_battery,
                sum(CASE WHEN status = 'warning' THEN 1 ELSE 0 END) AS warning_count,
                count(DISTINCT sensor_id) AS unique_sensors,
                sum(CASE WHEN status = 'critical' THEN 1 ELSE 0 END) AS critical_count,
                sum(CASE WHEN is_anomaly THEN 1 ELSE 0 END) AS anomalies
              FROM silver GROUP BY date, building_id, sensor_type",
    },
    Fact {
        name: "fact_api_hourly",
        stream: "api_logs",
        sql: "SELECT date, CAST(date_part('hour', event_time) AS INT) AS hour, endpoint,
                count(*) AS total_requests,
                avg(response_time_ms) AS avg_response_time,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms) AS p95_response_time,
                sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS error_count,
                100.0 * sum(CASE WHEN is_error THEN 1 ELSE 0 END) / count(*) AS error_rate,
                sum(CASE WHEN is_slow THEN 1 ELSE 0 END) AS slow_requests,
                sum(bytes_sent) AS total_bytes_sent,
                count(DISTINCT api_key_id) AS unique_api_keys,
                sum(CASE WHEN is_server_error THEN 1 ELSE 0 END) AS server_errors,
                sum(bytes_received) AS total_bytes_received
              FROM silver GROUP BY date, CAST(date_part('hour', event_time) AS INT), endpoint",
    },
    Fact {
        name: "fact_social_daily",
        stream: "social_media",
        sql: "SELECT date, platform, event_type,
                count(*) AS total_events,
                sum(engagement_score) AS total_engagement,
                avg(engagement_score) AS avg_engagement,
                count(DISTINCT CASE WHEN engagement_tier = 'high' THEN post_id END) AS viral_posts,
                count(DISTINCT user_id) AS unique_users,
                count(DISTINCT CASE WHEN is_verified THEN user_id END) AS verified_users,
                100.0 * sum(CASE WHEN device_type = 'mobile' THEN 1 ELSE 0 END) / count(*) AS mobile_percentage
              FROM silver GROUP BY date, platform, event_type",
    },
    Fact {
        name: "fact_ecommerce_funnel",
        stream: "ecommerce_clickstream",
        sql: "SELECT date, funnel_stage, total_events, unique_sessions, unique_users,
                avg_session_duration, new_users,
                unique_sessions AS sessions_reaching_stage,
                100.0 * unique_sessions / max(CASE WHEN funnel_stage = 'awareness' THEN unique_sessions END)
                  OVER (PARTITION BY date) AS stage_conversion_rate
              FROM (SELECT date, funnel_stage,
                      count(*) AS total_events,
                      count(DISTINCT session_id) AS unique_sessions,
                      count(DISTINCT user_id) AS unique_users,
                      avg(session_duration_sec) AS avg_session_duration,
                      count(DISTINCT CASE WHEN is_new_user THEN user_id END) AS new_users
                    FROM silver GROUP BY date, funnel_stage)",
    },
    Fact {
        name: "fact_ecommerce_revenue",
        stream: "ecommerce_clickstream",
        sql: "SELECT date, product_category,
                count(*) AS total_orders,
                sum(cart_value) AS total_revenue,
                avg(cart_value) AS avg_order_value,
                count(DISTINCT user_id) AS unique_customers,
                sum(quantity) AS units
              FROM silver WHERE event_type = 'checkout_complete'
              GROUP BY date, product_category",
    },
    Fact {
        name: "fact_financial_daily",
        stream: "financial_transactions",
        sql: "SELECT date, transaction_type, status,
                count(*) AS total_transactions,
                sum(amount) AS total_volume,
                avg(amount) AS avg_amount,
                avg(risk_score) AS avg_risk_score,
                sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) AS fraud_count,
                100.0 * sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) / count(*) AS fraud_rate,
                avg(processing_time_ms) AS avg_processing_time,
                count(DISTINCT customer_id) AS unique_customers,
                sum(amount_usd) AS total_volume_usd
              FROM silver GROUP BY date, transaction_type, status",
    },
    Fact {
        name: "fact_fraud_summary",
        stream: "financial_transactions",
        sql: "SELECT date, risk_level,
                count(*) AS transaction_count,
                sum(CASE WHEN fraud_flag THEN 1 ELSE 0 END) AS flagged_count,
                sum(CASE WHEN status = 'declined' THEN 1 ELSE 0 END) AS declined_count,
                sum(amount) AS total_amount,
                coalesce(sum(CASE WHEN fraud_flag THEN amount_usd END), 0) AS flagged_amount_usd,
                avg(risk_score) AS avg_risk_score
              FROM silver GROUP BY date, risk_level",
    },
];

/// The body of `gold_<fact>`.
pub struct Gold {
    /// The fact.
    pub fact: Fact,
}

#[async_trait::async_trait]
impl TaskBody for Gold {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = GoldBuilder::new(&ctx.store, self.fact, ctx.logical_date)
            .with_log(&ctx.log)
            .await?;
        if let Some(rows) = &metrics.rows_by_date {
            ctx.read_table(&table_path("silver", self.fact.stream), None)
                .await;
            ctx.wrote_table(
                &table_path("gold", self.fact.name),
                Some(rows.values().sum()),
            )
            .await;
        }
        output(&metrics)
    }
}

/// What `gold_<fact>` did: the dates it recomputed and, if there were any, the fact's rows
/// per date after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GoldMetrics {
    /// The fact.
    pub fact: String,
    /// The dates recomputed (none: nothing done).
    pub dates: Vec<String>,
    /// Rows of the fact per recomputed date; absent when there was nothing to recompute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_by_date: Option<BTreeMap<String, u64>>,
}

/// What `gold_<fact>` will do for one run, decided without I/O: the tables, the dates the run
/// touched in the fact's stream, and the SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldPlan {
    /// The fact.
    pub fact: Fact,
    /// `batch/gold/<fact>`.
    pub path: String,
    /// `batch/silver/<stream>`, read.
    pub silver_path: String,
    /// The dates to recompute.
    pub dates: Vec<String>,
    /// The view `silver` over `silver_all`, restricted to the dates.
    pub view_sql: String,
}

impl GoldPlan {
    /// The plan of `fact` in the run at `logical_date`, whose lineage manifest of the fact's
    /// stream is `manifest`.
    pub fn new(fact: Fact, _logical_date: DateTime<Utc>, manifest: &Manifest) -> Self {
        let dates = manifest.dates();
        GoldPlan {
            fact,
            path: super::table_path("gold", fact.name),
            silver_path: super::table_path("silver", fact.stream),
            view_sql: format!(
                "CREATE VIEW silver AS SELECT * FROM silver_all WHERE {}",
                in_dates(&dates)
            ),
            dates,
        }
    }

    /// Recomputes the fact for the dates (replace-where) and counts its rows.
    pub async fn execute(
        &self,
        store: &Store,
        log: Option<&TaskLog>,
    ) -> Result<GoldMetrics, Error> {
        let (f, path, dates) = (self.fact, &self.path, &self.dates);
        if dates.is_empty() {
            info(log, "no dates touched by this run: nothing to recompute");
            return Ok(GoldMetrics {
                fact: f.name.to_string(),
                dates: dates.clone(),
                rows_by_date: None,
            });
        }
        let silver_path = &self.silver_path;
        let silver = store
            .delta_table(silver_path)
            .await
            .map_err(delta(silver_path))?
            .ok_or_else(|| Error::MissingInput {
                path: silver_path.clone(),
                upstream: format!("silver_{}", f.stream),
            })?;
        let df_ctx = session()?;
        // One partition: a distinct count then holds each distinct value once, not once in
        // every partial aggregate and again in the final one (at 10 M events the funnel's
        // session ids took 400 MiB over two partitions). The DAG runs two gold tasks at once,
        // which keeps the cores busy.
        set_options(&df_ctx, |o| o.execution.target_partitions = 1);
        register_delta(&df_ctx, "silver_all", &silver).await?;
        df_ctx.sql(&self.view_sql).await?;
        let plan = df_ctx.sql(f.sql).await?.into_unoptimized_plan();
        let table = replace_dates(store, path, &df_ctx, plan, dates)
            .await
            .map_err(delta(path))?;
        let rows = count_by_date(store, path, dates).await?;
        info(
            log,
            format!(
                "{path}: version {} with {} rows for {dates:?}",
                table.version().unwrap_or_default(),
                rows.values().sum::<u64>()
            ),
        );
        Ok(GoldMetrics {
            fact: f.name.to_string(),
            dates: dates.clone(),
            rows_by_date: Some(rows),
        })
    }
}

/// `gold_<fact>` as an operation: loads the lineage manifest of the fact's stream, plans,
/// recomputes.
pub struct GoldBuilder<'a> {
    store: &'a Store,
    fact: Fact,
    logical_date: DateTime<Utc>,
    log: Option<&'a TaskLog>,
}

impl<'a> GoldBuilder<'a> {
    /// `gold_<fact>` in the run at `logical_date`.
    pub fn new(store: &'a Store, fact: Fact, logical_date: DateTime<Utc>) -> Self {
        GoldBuilder {
            store,
            fact,
            logical_date,
            log: None,
        }
    }

    /// Writes progress lines to `log`.
    pub fn with_log(mut self, log: &'a TaskLog) -> Self {
        self.log = Some(log);
        self
    }

    async fn run(self) -> Result<GoldMetrics, Error> {
        let manifest = lineage::plan(self.store, self.fact.stream, self.logical_date).await?;
        GoldPlan::new(self.fact, self.logical_date, &manifest)
            .execute(self.store, self.log)
            .await
    }
}

impl<'a> std::future::IntoFuture for GoldBuilder<'a> {
    type Output = Result<GoldMetrics, Error>;
    type IntoFuture = futures::future::BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{
        Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::prelude::SessionContext;
    use std::sync::Arc;

    fn fact(name: &str) -> Fact {
        *SEED_FACTS.iter().find(|f| f.name == name).unwrap()
    }

    async fn run(name: &str, batch: RecordBatch) -> Vec<RecordBatch> {
        let ctx = SessionContext::new();
        let t = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("silver", Arc::new(t)).unwrap();
        let mut out = ctx
            .sql(fact(name).sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        out.retain(|b| b.num_rows() > 0);
        out
    }

    fn f64_col(b: &RecordBatch, name: &str) -> Vec<f64> {
        let c = b.column_by_name(name).unwrap();
        let c = deltalake::arrow::compute::cast(c, &DataType::Float64).unwrap();
        let c = c.as_any().downcast_ref::<Float64Array>().unwrap();
        (0..c.len()).map(|i| c.value(i)).collect()
    }

    #[tokio::test]
    async fn api_hourly_p95_interpolates_and_rates_are_percentages() {
        // 20 requests in one hour on one endpoint: response times 1..=20 ms, 3 errors (one 5xx),
        // 2 slow.
        let n = 20;
        let schema = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Utf8, false),
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("endpoint", DataType::Utf8, false),
            Field::new("response_time_ms", DataType::Float64, false),
            Field::new("is_error", DataType::Boolean, false),
            Field::new("is_slow", DataType::Boolean, false),
            Field::new("is_server_error", DataType::Boolean, false),
            Field::new("bytes_sent", DataType::Int64, false),
            Field::new("bytes_received", DataType::Int64, false),
            Field::new("api_key_id", DataType::Utf8, false),
        ]));
        let t0 = crate::clock::parse_utc("2026-02-01T13:00:00Z")
            .unwrap()
            .timestamp_micros();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["2026-02-01"; n])),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        (0..n as i64)
                            .map(|i| t0 + i * 1_000_000)
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec!["/api/v1/users"; n])),
                Arc::new(Float64Array::from(
                    (1..=n).map(|i| i as f64).collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(
                    (0..n).map(|i| i < 3).collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(
                    (0..n).map(|i| i >= 18).collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(
                    (0..n).map(|i| i == 0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(vec![100; n])),
                Arc::new(Int64Array::from(vec![10; n])),
                Arc::new(StringArray::from(
                    (0..n)
                        .map(|i| if i % 2 == 0 { "k1" } else { "k2" })
                        .collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let out = run("fact_api_hourly", batch).await;
        assert_eq!(out.len(), 1);
        let b = &out[0];
        assert_eq!(b.num_rows(), 1);
        // Linear interpolation: rank 0.95 * 19 = 18.05 between 19 and 20.
        assert!((f64_col(b, "p95_response_time")[0] - 19.05).abs() < 1e-9);
        assert_eq!(f64_col(b, "hour"), [13.0]);
        assert_eq!(f64_col(b, "total_requests"), [20.0]);
        assert_eq!(f64_col(b, "error_count"), [3.0]);
        assert!((f64_col(b, "error_rate")[0] - 15.0).abs() < 1e-9);
        assert_eq!(f64_col(b, "slow_requests"), [2.0]);
        assert_eq!(f64_col(b, "server_errors"), [1.0]);
        assert_eq!(f64_col(b, "total_bytes_sent"), [2000.0]);
        assert_eq!(f64_col(b, "unique_api_keys"), [2.0]);
        assert!((f64_col(b, "avg_response_time")[0] - 10.5).abs() < 1e-9);
    }

    #[tokio::test]
    async fn revenue_counts_only_completed_checkouts_and_empty_groups_give_no_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Utf8, false),
            Field::new("event_type", DataType::Utf8, false),
            Field::new("product_category", DataType::Utf8, true),
            Field::new("cart_value", DataType::Float64, true),
            Field::new("quantity", DataType::Int64, true),
            Field::new("user_id", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["2026-02-01"; 3])),
                Arc::new(StringArray::from(vec![
                    "checkout_complete",
                    "checkout_complete",
                    "add_to_cart",
                ])),
                Arc::new(StringArray::from(vec!["books", "books", "books"])),
                Arc::new(Float64Array::from(vec![10.0, 30.0, 999.0])),
                Arc::new(Int64Array::from(vec![1, 3, 5])),
                Arc::new(StringArray::from(vec!["u1", "u1", "u2"])),
            ],
        )
        .unwrap();
        let out = run("fact_ecommerce_revenue", batch).await;
        let b = &out[0];
        assert_eq!(f64_col(b, "total_orders"), [2.0]);
        assert_eq!(f64_col(b, "total_revenue"), [40.0]);
        assert_eq!(f64_col(b, "avg_order_value"), [20.0]);
        assert_eq!(f64_col(b, "unique_customers"), [1.0]);
        assert_eq!(f64_col(b, "units"), [4.0]);

        let none = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["2026-02-01"])),
                Arc::new(StringArray::from(vec!["page_view"])),
                Arc::new(StringArray::from(vec![None::<&str>])),
                Arc::new(Float64Array::from(vec![None])),
                Arc::new(Int64Array::from(vec![None])),
                Arc::new(StringArray::from(vec!["u3"])),
            ],
        )
        .unwrap();
        assert!(run("fact_ecommerce_revenue", none).await.is_empty());
    }

    #[tokio::test]
    async fn funnel_conversion_is_relative_to_sessions_that_saw_a_page() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Utf8, false),
            Field::new("funnel_stage", DataType::Utf8, false),
            Field::new("session_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("session_duration_sec", DataType::Int64, false),
            Field::new("is_new_user", DataType::Boolean, false),
        ]));
        let stages = [
            "awareness",
            "awareness",
            "awareness",
            "awareness",
            "conversion",
        ];
        let sessions = ["s1", "s2", "s3", "s4", "s1"];
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["2026-02-01"; 5])),
                Arc::new(StringArray::from(stages.to_vec())),
                Arc::new(StringArray::from(sessions.to_vec())),
                Arc::new(StringArray::from(vec!["u1", "u2", "u3", "u4", "u1"])),
                Arc::new(Int64Array::from(vec![60; 5])),
                Arc::new(BooleanArray::from(vec![true, false, false, false, true])),
            ],
        )
        .unwrap();
        let out = run("fact_ecommerce_funnel", batch).await;
        let mut rates: Vec<(String, f64)> = Vec::new();
        for b in &out {
            let st = deltalake::arrow::compute::cast(
                b.column_by_name("funnel_stage").unwrap(),
                &DataType::Utf8,
            )
            .unwrap();
            let st = st.as_any().downcast_ref::<StringArray>().unwrap();
            for (i, r) in f64_col(b, "stage_conversion_rate").into_iter().enumerate() {
                rates.push((st.value(i).to_string(), r));
            }
        }
        rates.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            rates,
            [("awareness".into(), 100.0), ("conversion".into(), 25.0)]
        );
    }

    fn manifest(dates: &[&str]) -> Manifest {
        Manifest {
            stream: "api_logs".into(),
            batch_run: "2026-02-02T02:00:00Z".into(),
            files: dates
                .iter()
                .map(|d| lineage::ConsumedFile {
                    key: format!("realtime/api_logs/date={d}/hour=10/f.jsonl"),
                    date: (*d).into(),
                    ingest_run: format!("{d}T10:05:00Z"),
                    bytes: 0,
                })
                .collect(),
            silver_committed: false,
            txn: None,
        }
    }

    #[test]
    fn the_plan_reads_silver_of_the_touched_dates_without_a_store() {
        let run = crate::clock::parse_utc("2026-02-02T02:00:00Z").unwrap();
        let plan = GoldPlan::new(
            fact("fact_api_hourly"),
            run,
            &manifest(&["2026-02-01", "2026-01-31", "2026-02-01"]),
        );
        assert_eq!(plan.path, "batch/gold/fact_api_hourly");
        assert_eq!(plan.silver_path, "batch/silver/api_logs");
        assert_eq!(plan.dates, ["2026-01-31", "2026-02-01"]);
        assert_eq!(
            plan.view_sql,
            "CREATE VIEW silver AS SELECT * FROM silver_all WHERE date IN ('2026-01-31', '2026-02-01')"
        );
        assert!(
            GoldPlan::new(fact("fact_api_hourly"), run, &manifest(&[]))
                .dates
                .is_empty()
        );
    }

    #[test]
    fn metrics_are_the_task_output_with_and_without_dates() {
        let none = GoldMetrics {
            fact: "fact_iot_daily".into(),
            dates: Vec::new(),
            rows_by_date: None,
        };
        assert_eq!(
            serde_json::to_value(&none).unwrap(),
            serde_json::json!({ "fact": "fact_iot_daily", "dates": [] })
        );
        let some = GoldMetrics {
            fact: "fact_iot_daily".into(),
            dates: vec!["2026-02-01".into()],
            rows_by_date: Some(BTreeMap::from([("2026-02-01".to_string(), 7)])),
        };
        let json = serde_json::json!({
            "fact": "fact_iot_daily",
            "dates": ["2026-02-01"],
            "rows_by_date": { "2026-02-01": 7 },
        });
        assert_eq!(serde_json::to_value(&some).unwrap(), json);
        assert_eq!(serde_json::from_value::<GoldMetrics>(json).unwrap(), some);
        assert_eq!(
            serde_json::from_value::<GoldMetrics>(serde_json::to_value(&none).unwrap()).unwrap(),
            none
        );
    }
}
