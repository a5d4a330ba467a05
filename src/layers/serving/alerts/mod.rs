//! `alerts`: the alert rules of the active pipeline (the seed pipeline's of SPEC "Serving layer":
//! [`SEED_RULES`]), each a SQL
//! query over the view `w` — the unified rows of one stream with event time in
//! [T − window, T) — returning one row per alert: subject, severity, the measured value, the ids
//! of the rows that triggered it, and a detail line.
//!
//! Alerts are appended to the Delta table `serving/alerts/history` (partitioned by the date they were
//! raised) with a deterministic `alert_id` from the rule's id template: `rule:subject` for event
//! rules (a fraudulent transaction alerts once, never again in a later overlapping window or on
//! a re-run) and `rule:subject:T` for condition rules (an endpoint over its error budget alerts
//! once per run while the condition holds). Ids already in the table are never appended again.
//! `serving/alerts/latest.json` lists the alerts of the run and those of the last 24 hours.

use std::collections::{BTreeMap, HashSet};
use std::future::IntoFuture;
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike as _, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

mod recent;

pub use self::recent::LAST_DAY_MAX;
use self::recent::Recent;
use super::deliver::{DeliverBuilder, ReceiverMetrics, states_of};
use super::window::{self, Reading};
use super::{
    Compacted, Error, Result, collect, dates_between, json_rows, log_info, prepared, put_json,
    run_label, verify, window_view_sql,
};
use crate::clock::{compact, rfc3339_secs};
use crate::config::ReceiverConfig;
use crate::layers::batch::compact::compact_table;
use crate::layers::write;
use crate::scheduler::task::{TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::store::Store;

/// Lake path of the alerts table (`serving_alerts_history`): beside `latest.json`, not around it,
/// so that a vacuum of the table never deletes the document.
pub const ALERTS_PATH: &str = "serving/alerts/history";
/// Key of the latest-alerts document.
pub const LATEST_KEY: &str = "serving/alerts/latest.json";

/// One alert rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Rule name.
    pub name: &'static str,
    /// Stream it reads.
    pub stream: &'static str,
    /// Window length in minutes.
    pub minutes: i64,
    /// The threshold, as reported with each alert.
    pub threshold: f64,
    /// Severity of its alerts unless the SQL outputs a `severity` column.
    pub severity: &'static str,
    /// Alert id template over `{rule}`, `{subject}`, `{stream}` and `{run}`: `{rule}:{subject}`
    /// alerts once per subject (an event rule), `{rule}:{subject}:{run}` once per subject and
    /// run (a condition rule).
    pub id: &'static str,
    /// SELECT over `w` giving `subject`, `value`, `triggering_ids` (a list of event ids),
    /// `detail` and optionally `severity`, one row per alert.
    pub sql: &'static str,
}

/// Id template of a rule that alerts once per subject.
pub const ONCE_PER_SUBJECT: &str = "{rule}:{subject}";
/// Id template of a rule that alerts once per subject and run.
pub const ONCE_PER_RUN: &str = "{rule}:{subject}:{run}";

/// The seed pipeline's rules (the built-in declaration has them). Thresholds are SPEC's; on
/// default data fewer than 1 % of transactions alert, and only the flaky API endpoint crosses
/// its error and latency budgets.
pub const SEED_RULES: [Rule; 5] = [
    Rule {
        name: "fraud_transaction",
        stream: "financial_transactions",
        minutes: 10,
        id: ONCE_PER_SUBJECT,
        threshold: 0.9,
        severity: "high",
        sql: "SELECT transaction_id AS subject,
                CASE WHEN fraud_flag THEN 'critical' ELSE 'high' END AS severity,
                risk_score AS value,
                make_array(transaction_id) AS triggering_ids,
                concat('fraud_flag=', CAST(fraud_flag AS VARCHAR), ', risk_score=', CAST(risk_score AS VARCHAR),
                       ', amount_usd=', CAST(round(amount_usd, 2) AS VARCHAR), ', account ', account_id) AS detail
              FROM w WHERE fraud_flag OR risk_score >= 0.9",
    },
    Rule {
        name: "api_error_rate",
        stream: "api_logs",
        minutes: 15,
        id: ONCE_PER_RUN,
        threshold: 5.0,
        severity: "high",
        sql: "SELECT endpoint AS subject, 'high' AS severity,
                100.0 * sum(CASE WHEN is_error THEN 1 ELSE 0 END) / count(*) AS value,
                array_agg(log_id ORDER BY event_time, log_id) FILTER (WHERE is_error) AS triggering_ids,
                concat(CAST(sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS VARCHAR), ' errors in ',
                       CAST(count(*) AS VARCHAR), ' requests (error rate > 5 % with >= 50 requests)') AS detail
              FROM w GROUP BY endpoint
              HAVING count(*) >= 50 AND 100.0 * sum(CASE WHEN is_error THEN 1 ELSE 0 END) / count(*) > 5",
    },
    Rule {
        name: "api_p95_latency",
        stream: "api_logs",
        minutes: 15,
        id: ONCE_PER_RUN,
        threshold: 2000.0,
        severity: "medium",
        sql: "SELECT endpoint AS subject, 'medium' AS severity,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms) AS value,
                array_agg(log_id ORDER BY event_time, log_id) FILTER (WHERE response_time_ms > 2000) AS triggering_ids,
                concat('p95 ', CAST(round(percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms), 1) AS VARCHAR),
                       ' ms over ', CAST(count(*) AS VARCHAR), ' requests (> 2000 ms)') AS detail
              FROM w GROUP BY endpoint
              HAVING count(*) >= 50 AND percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms) > 2000",
    },
    Rule {
        name: "iot_critical_status",
        stream: "iot_sensors",
        minutes: 10,
        id: ONCE_PER_RUN,
        threshold: 1.0,
        severity: "high",
        sql: "SELECT sensor_id AS subject, 'high' AS severity, CAST(count(*) AS DOUBLE) AS value,
                array_agg(reading_id ORDER BY event_time, reading_id) AS triggering_ids,
                concat(CAST(count(*) AS VARCHAR), ' critical reading(s), ', max(sensor_type), ' in ',
                       max(building_id), ' floor ', CAST(max(floor) AS VARCHAR)) AS detail
              FROM w WHERE status = 'critical' GROUP BY sensor_id",
    },
    Rule {
        name: "iot_battery_low",
        stream: "iot_sensors",
        minutes: 10,
        id: ONCE_PER_RUN,
        threshold: 10.0,
        severity: "medium",
        sql: "SELECT sensor_id AS subject, 'medium' AS severity, min(battery_level) AS value,
                array_agg(reading_id ORDER BY event_time, reading_id) AS triggering_ids,
                concat('battery ', CAST(min(battery_level) AS VARCHAR), ' % (< 10 %) in ',
                       max(building_id), ' floor ', CAST(max(floor) AS VARCHAR)) AS detail
              FROM w WHERE battery_level < 10 GROUP BY sensor_id",
    },
];

/// Schema of `serving/alerts/history`.
pub fn alerts_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("window_start", ts(), false),
        Field::new("window_end", ts(), false),
        Field::new("triggered_at", ts(), false),
        Field::new("value", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, false),
        Field::new(
            "triggering_ids",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("triggering_count", DataType::Int64, false),
        Field::new("detail", DataType::Utf8, true),
        Field::new("date", DataType::Utf8, false),
    ]))
}

/// A SQL string literal of `s`.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// SQL of a rule's alert id: its template with `{rule}` and `{stream}` filled in, `{subject}`
/// the row's subject and `{run}` the run label of [`params`] (a template with no placeholder is
/// taken literally).
fn id_sql(rule: &Rule) -> String {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = rule.id;
    let column = |parts: &mut Vec<String>, text: &mut String, c: &str| {
        if !text.is_empty() {
            parts.push(literal(text));
            text.clear();
        }
        parts.push(c.to_string());
    };
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        text.push_str(&rest[..open]);
        match &rest[open + 1..close] {
            "rule" => text.push_str(rule.name),
            "stream" => text.push_str(rule.stream),
            "run" => column(&mut parts, &mut text, "p.run"),
            "subject" => column(&mut parts, &mut text, "r.subject"),
            other => {
                text.push('{');
                text.push_str(other);
                text.push('}');
            }
        }
        rest = &rest[close + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(literal(&text));
    }
    format!("concat({})", parts.join(", "))
}

/// Schema of the one-row table `params` a rule's alerts read the run from ([`params`]).
fn params_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("window_start", ts.clone(), false),
        Field::new("window_end", ts, false),
        Field::new("run", DataType::Utf8, false),
        Field::new("date", DataType::Utf8, false),
    ]))
}

/// The row of `params` for `rule`'s alerts of the run at `t` labelled `run`: its window
/// [T − minutes, T), the run label of condition rules' ids and the date the alerts are raised on.
fn params(rule: &Rule, t: DateTime<Utc>, run: DateTime<Utc>) -> Result<RecordBatch> {
    let ts = |at: DateTime<Utc>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(vec![at.timestamp_micros()]).with_timezone("UTC"))
    };
    RecordBatch::try_new(
        params_schema(),
        vec![
            ts(t - Duration::minutes(rule.minutes)),
            ts(t),
            Arc::new(StringArray::from(vec![compact(run)])),
            Arc::new(StringArray::from(vec![t.date_naive().to_string()])),
        ],
    )
    .map_err(Error::arrow("the parameters of a rule"))
}

/// The alerts of `rule`, in [`alerts_schema`]'s columns, from its rows in `w` and the run in
/// `params` (so that the text is the same at every run and is planned once: [`prepared`]); the
/// severity is the SQL's `severity` column if `severity_column`, else the rule's.
fn rule_sql(rule: &Rule, severity_column: bool) -> String {
    let severity = match severity_column {
        true => "r.severity".to_string(),
        false => literal(rule.severity),
    };
    format!(
        "SELECT {id} AS alert_id, {name} AS rule, {severity} AS severity, {stream} AS stream, r.subject,
           p.window_start, p.window_end, p.window_end AS triggered_at,
           CAST(r.value AS DOUBLE) AS value, CAST({threshold} AS DOUBLE) AS threshold,
           r.triggering_ids, CAST(coalesce(cardinality(r.triggering_ids), 0) AS BIGINT) AS triggering_count,
           r.detail, p.date
         FROM ({sql}) r CROSS JOIN params p ORDER BY r.subject",
        id = id_sql(rule),
        name = literal(rule.name),
        stream = literal(rule.stream),
        threshold = rule.threshold,
        sql = rule.sql,
    )
}

/// `b` with the columns of [`alerts_schema`], cast to its types.
fn conform(b: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    super::conform_columns(b, schema, "alert rows", |f, n| {
        new_null_array(f.data_type(), n)
    })
}

/// One rule of a run, planned.
#[derive(Debug, Clone, PartialEq)]
struct RulePlan {
    /// The rule.
    rule: Rule,
    /// Start of its window: [start, T).
    start: DateTime<Utc>,
    /// SQL of the view `w` over the unified table, for the check against it.
    window_sql: String,
    /// The run label of its ids.
    run: DateTime<Utc>,
}

impl RulePlan {
    /// The rule's alerts over its window of `rows` (the rows of its stream's window, of
    /// `schema`), in the alerts' schema.
    async fn alerts(
        &self,
        schema: &SchemaRef,
        rows: &[RecordBatch],
        t: DateTime<Utc>,
    ) -> Result<Vec<RecordBatch>> {
        let rule = &self.rule;
        let what = format!("the alerts of {}", rule.name);
        let w = |rows| prepared::Input {
            name: "w",
            schema: Arc::clone(schema),
            rows,
        };
        // A rule whose SQL gives no `severity` column raises alerts of its declared one.
        let severity_column = prepared::output_schema(&what, rule.sql, &[w(Vec::new())])
            .await?
            .field_with_name("severity")
            .is_ok();
        let inputs = vec![
            w(window::rows_between(rows, self.start, t)?),
            prepared::Input {
                name: "params",
                schema: params_schema(),
                rows: vec![params(rule, t, self.run)?],
            },
        ];
        let (_, batches) = prepared::run(&what, &rule_sql(rule, severity_column), inputs).await?;
        let schema = alerts_schema();
        batches.iter().map(|b| conform(b, &schema)).collect()
    }

    /// The same alerts from the same SQL over the view `w` of `ctx`'s `unified_<stream>` (the
    /// Delta table, when runs check themselves).
    async fn alerts_over(
        &self,
        ctx: &SessionContext,
        t: DateTime<Utc>,
    ) -> Result<Vec<RecordBatch>> {
        let rule = &self.rule;
        let what = || format!("the alerts of {}", rule.name);
        ctx.sql(&self.window_sql)
            .await
            .map_err(Error::datafusion(format!("the window of {}", rule.name)))?;
        let p = MemTable::try_new(params_schema(), vec![vec![params(rule, t, self.run)?]])
            .map_err(Error::datafusion(what()))?;
        // This rule's parameters in place of the previous rule's.
        ctx.deregister_table("params")
            .and_then(|_| ctx.register_table("params", Arc::new(p)))
            .map_err(Error::datafusion(what()))?;
        let severity_column = ctx
            .sql(&format!("SELECT * FROM ({}) LIMIT 0", rule.sql))
            .await
            .map_err(Error::datafusion(what()))?
            .schema()
            .has_column_with_unqualified_name("severity");
        let (_, batches) = collect(
            ctx.sql(&rule_sql(rule, severity_column))
                .await
                .map_err(Error::datafusion(what()))?,
        )
        .await?;
        let schema = alerts_schema();
        batches.iter().map(|b| conform(b, &schema)).collect()
    }
}

/// A run of `alerts`, decided without I/O from the unified tables that exist.
#[derive(Debug, Clone, PartialEq)]
struct AlertsPlan {
    /// The run's logical date.
    t: DateTime<Utc>,
    /// Dates of the last day (the hourly compaction).
    recent_dates: Vec<String>,
    /// The rules whose stream has a unified table, in the declaration's order.
    rules: Vec<RulePlan>,
    /// Compact the last day's partitions after the append (on the hour).
    compact: bool,
}

impl AlertsPlan {
    /// Plans the run at `t`, labelled `run` in the ids, `present` naming the streams with a
    /// unified table.
    fn new(t: DateTime<Utc>, run: DateTime<Utc>, present: &[&str]) -> AlertsPlan {
        let recent_dates = dates_between(t - Duration::days(1), t + Duration::seconds(1));
        AlertsPlan {
            t,
            recent_dates,
            rules: crate::pipeline::active()
                .rules
                .iter()
                .filter(|r| present.contains(&r.stream))
                .map(|r| {
                    let start = t - Duration::minutes(r.minutes);
                    RulePlan {
                        rule: *r,
                        start,
                        window_sql: window_view_sql("w", r.stream, start, t),
                        run,
                    }
                })
                .collect(),
            // On the hour (a live run between scheduled ones leaves it to them).
            compact: t.minute() == 0 && t.second() == 0,
        }
    }

    /// Raises the rules' new alerts, appends them, compacts on the hour, and publishes
    /// `latest.json`.
    async fn execute(
        self,
        store: &Store,
        reading: &Reading,
        existing: Option<deltalake::DeltaTable>,
        receivers: &[ReceiverConfig],
        log: Option<&TaskLog>,
    ) -> Result<AlertsMetrics> {
        let t = self.t;
        let df_ctx = &reading.ctx;
        let reference = reading.reference.as_ref();
        // The alert ids of the last day (and its newest rows), held from the run before.
        let mut recent = Recent::of(store, df_ctx, existing.as_ref(), t).await?;
        if recent.read_from_table {
            log_info(log, "the last day of alerts read from the table");
        }
        let mut known: HashSet<String> = HashSet::new();
        let mut new_batches = Vec::new();
        let mut by_rule = BTreeMap::new();
        for rp in &self.rules {
            let rule = &rp.rule;
            let Some((schema, rows)) = reading.rows.get(rule.stream) else {
                continue; // planned for the streams with a unified table, whose rows are read
            };
            let batches = rp.alerts(schema, rows, t).await?;
            if let Some(reference) = reference {
                let expected = rp.alerts_over(reference, t).await?;
                verify::same_rows(rule.name, &json_rows(&batches)?, &json_rows(&expected)?)?;
            }
            let mut raised = 0usize;
            for b in batches {
                let ids = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or(Error::AlertIdNotText)?;
                let fresh: BooleanArray = ids
                    .iter()
                    .map(|id| {
                        Some(id.is_some_and(|id| !recent.knows(id) && known.insert(id.to_string())))
                    })
                    .collect();
                let b = filter_record_batch(&b, &fresh).map_err(Error::arrow("new alerts"))?;
                raised += b.num_rows();
                if b.num_rows() > 0 {
                    new_batches.push(b);
                }
            }
            by_rule.insert(rule.name.to_string(), raised);
        }
        if reference.is_some() {
            log_info(
                log,
                format!(
                    "verified: {} rule(s) equal to their SQL over the unified tables",
                    self.rules.len()
                ),
            );
        }
        let raised_rows = json_rows(&new_batches)?;
        // Into the receivers' pending sets before the append: a kill after it loses none.
        let outbox = DeliverBuilder::new(store, receivers, t)
            .with_log(log)
            .enqueue(&raised_rows)
            .await?;
        let table = if new_batches.is_empty() {
            existing
        } else {
            let table = match existing {
                Some(table) => table,
                None => store
                    .delta_table_or_new(ALERTS_PATH)
                    .await
                    .map_err(Error::delta(ALERTS_PATH))?,
            };
            let written = if super::same_columns(&table, &alerts_schema()) {
                write::write_batches(
                    table,
                    new_batches.clone(),
                    write::Replace::Nothing,
                    run_label(t),
                )
                .await
            } else {
                table
                    .write(new_batches.clone())
                    .with_save_mode(SaveMode::Append)
                    .with_partition_columns(["date"])
                    .with_commit_properties(run_label(t))
                    .await
            }
            .map_err(Error::delta(ALERTS_PATH))?;
            store.keep_table(ALERTS_PATH, &written);
            recent.appended(&new_batches, written.version())?;
            Some(written)
        };
        // Each run appends one small file to the partition of its date. Once an hour they are
        // merged (Delta optimize of the last day's dates, labelled with this run), so the last
        // day is a handful of files instead of up to 144.
        let compacted = match &table {
            Some(_) if self.compact => compact_table(
                store,
                ALERTS_PATH,
                Some(&self.recent_dates),
                Some(run_label(t)),
            )
            .await
            .map_err(Error::batch)?,
            _ => None,
        };
        let table = match &compacted {
            Some(c) if c.files_removed > 0 => store
                .delta_table(ALERTS_PATH)
                .await
                .map_err(Error::delta(ALERTS_PATH))?,
            _ => table,
        };
        let version = table.as_ref().and_then(|t| t.version());
        // The last day's alerts, newest first, for the document.
        if let (Some(_), Some(table)) = (reference, &table) {
            recent.verify(df_ctx, table).await?;
        }
        let recent_rows = json_rows(&recent.last_day()?)?;
        recent.keep(store);
        // The alerts are in the table: deliver them (a failing receiver is recorded, not raised).
        let delivered = outbox.send().await?;
        let by_rule_json: serde_json::Map<String, serde_json::Value> = by_rule
            .iter()
            .map(|(rule, n)| (rule.clone(), (*n).into()))
            .collect();
        log_info(
            log,
            format!(
                "raised {} alert(s) at {}: {by_rule_json:?}",
                raised_rows.len(),
                rfc3339_secs(t)
            ),
        );
        let mut doc = serde_json::json!({
            "as_of": rfc3339_secs(t),
            "raised_by_rule": by_rule_json,
            "raised": raised_rows,
            "last_24h": recent_rows,
            "watermark": reading.watermark.json(),
            "delta_version": version,
        });
        if !receivers.is_empty() {
            let ids: Vec<&str> = recent_rows
                .iter()
                .filter_map(|a| a["alert_id"].as_str())
                .collect();
            doc["receivers"] = receivers.iter().map(|r| r.name.clone()).collect();
            doc["deliveries"] = states_of(&delivered, &ids);
        }
        put_json(store, LATEST_KEY, &doc).await?;
        Ok(AlertsMetrics {
            raised_by_rule: by_rule,
            raised: raised_rows.len(),
            compacted,
            deliveries: delivered.metrics,
        })
    }
}

/// What a run of `alerts` did, as it reports it (its task output).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AlertsMetrics {
    /// New alerts by rule, for each rule whose stream has a unified table.
    pub raised_by_rule: BTreeMap<String, usize>,
    /// New alerts in all.
    pub raised: usize,
    /// The hourly compaction of the last day, if one ran (`null` otherwise).
    pub compacted: Option<Compacted>,
    /// Delivery by receiver: sent, failed, pending, expired (absent without receivers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deliveries: BTreeMap<String, ReceiverMetrics>,
}

/// The operation of `alerts`: opens the unified tables and the alerts table, plans
/// ([`AlertsPlan`]), appends the new alerts and publishes `latest.json`.
pub struct AlertsBuilder<'a> {
    store: &'a Store,
    logical_date: DateTime<Utc>,
    log: Option<&'a TaskLog>,
    receivers: &'a [ReceiverConfig],
    run: Option<DateTime<Utc>>,
}

impl<'a> AlertsBuilder<'a> {
    /// The alerts of the run at `logical_date`.
    pub fn new(store: &'a Store, logical_date: DateTime<Utc>) -> AlertsBuilder<'a> {
        AlertsBuilder {
            store,
            logical_date,
            log: None,
            receivers: &[],
            run: None,
        }
    }

    /// Labels the ids' `{run}` with `run` rather than the logical date: a live run labels its
    /// alerts with the slot of the serving schedule it falls in, so that a condition rule alerts
    /// once per slot, as the scheduled runs do, not once per live tick.
    pub fn with_run_label(self, run: DateTime<Utc>) -> AlertsBuilder<'a> {
        AlertsBuilder {
            run: Some(run),
            ..self
        }
    }

    /// Delivers the new alerts to `receivers` ([`super::deliver`]).
    pub fn with_receivers(self, receivers: &'a [ReceiverConfig]) -> AlertsBuilder<'a> {
        AlertsBuilder { receivers, ..self }
    }

    /// Writes what the run does to `log`.
    pub fn with_log(self, log: &'a TaskLog) -> AlertsBuilder<'a> {
        AlertsBuilder {
            log: Some(log),
            ..self
        }
    }

    async fn run(self) -> Result<AlertsMetrics> {
        let _turn = super::exclusive(self.store, "alerts").await;
        let streams: Vec<&'static str> = crate::pipeline::active()
            .rules
            .iter()
            .map(|r| r.stream)
            .collect();
        let reading = window::reading(self.store, &streams, self.logical_date, self.log).await?;
        let existing = self
            .store
            .delta_table(ALERTS_PATH)
            .await
            .map_err(Error::delta(ALERTS_PATH))?;
        AlertsPlan::new(
            self.logical_date,
            self.run.unwrap_or(self.logical_date),
            &reading.present,
        )
        .execute(self.store, &reading, existing, self.receivers, self.log)
        .await
    }
}

impl<'a> IntoFuture for AlertsBuilder<'a> {
    type Output = Result<AlertsMetrics>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The body of `alerts`.
pub struct Alerts;

#[async_trait::async_trait]
impl TaskBody for Alerts {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = AlertsBuilder::new(&ctx.store, ctx.logical_date)
            .with_log(&ctx.log)
            .with_receivers(&ctx.params.receivers)
            .await?;
        let streams: std::collections::BTreeSet<&str> = crate::pipeline::active()
            .rules
            .iter()
            .map(|r| r.stream)
            .collect();
        super::read_unified(ctx, streams).await;
        ctx.wrote_table(ALERTS_PATH, Some(metrics.raised as u64))
            .await;
        output(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;
    use crate::layers::serving::ts_sql;
    use deltalake::arrow::array::{
        ArrayRef, Float64Array, Int64Array, ListBuilder, StringBuilder, TimestampMicrosecondArray,
    };
    use deltalake::datafusion::datasource::MemTable;

    /// Runs `rule` at `t` over hand-made rows as its window `w`.
    async fn fire(rule: &str, w: RecordBatch, t: &str) -> Vec<serde_json::Value> {
        let rule = SEED_RULES.iter().find(|r| r.name == rule).unwrap();
        let t = parse_utc(t).unwrap();
        // The rows' date, which the window of a table reads.
        let mut columns = w.columns().to_vec();
        columns.push(Arc::new(StringArray::from(vec![
            "2026-02-02";
            w.num_rows()
        ])));
        let mut fields: Vec<Field> = w
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("date", DataType::Utf8, false));
        let w = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let plan = AlertsPlan::new(t, t, &[rule.stream]);
        let rp = plan
            .rules
            .iter()
            .find(|r| r.rule.name == rule.name)
            .unwrap();
        let batches = rp
            .alerts(&w.schema(), std::slice::from_ref(&w), t)
            .await
            .unwrap();
        // The same SQL over the view `w` of a table gives the same alerts.
        let ctx = SessionContext::new();
        let table = MemTable::try_new(w.schema(), vec![vec![w.clone()]]).unwrap();
        ctx.register_table(format!("unified_{}", rule.stream), Arc::new(table))
            .unwrap();
        let over = rp.alerts_over(&ctx, t).await.unwrap();
        let rows = json_rows(&batches).unwrap();
        assert_eq!(rows, json_rows(&over).unwrap());
        // Again in the same session, as the next rule of a run is.
        let again = rp.alerts_over(&ctx, t).await.unwrap();
        assert_eq!(rows, json_rows(&again).unwrap());
        rows
    }

    fn ts(n: usize) -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(vec![1_769_990_400_000_000i64; n]).with_timezone("UTC"),
        )
    }

    fn api(rows: &[(&str, bool, f64)]) -> RecordBatch {
        let n = rows.len();
        RecordBatch::try_from_iter(vec![
            (
                "log_id",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("l{i:03}")),
                )) as ArrayRef,
            ),
            ("event_time", ts(n)),
            (
                "endpoint",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            ),
            (
                "is_error",
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.1)))),
            ),
            (
                "response_time_ms",
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ),
        ])
        .unwrap()
    }

    /// `n` alerts raised at `t`, each with `ids` triggering ids, in [`alerts_schema`].
    pub(super) fn raised(t: DateTime<Utc>, n: usize, ids: usize) -> RecordBatch {
        let at = || -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from(vec![t.timestamp_micros(); n]).with_timezone("UTC"),
            )
        };
        let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values((0..n).map(f)))
        };
        let mut triggering = ListBuilder::new(StringBuilder::new());
        for r in 0..n {
            for i in 0..ids {
                triggering
                    .values()
                    .append_value(format!("{}-{r:04}-{i:04}", compact(t)));
            }
            triggering.append(true);
        }
        RecordBatch::try_new(
            alerts_schema(),
            vec![
                // Subjects in descending order, so that a file's order is not the answer's.
                text(&|r| format!("iot_battery_low:SENS-{:04}:{}", n - r, compact(t))),
                text(&|_| "iot_battery_low".into()),
                text(&|_| "medium".into()),
                text(&|_| "iot_sensors".into()),
                text(&|r| format!("SENS-{:04}", n - r)),
                at(),
                at(),
                at(),
                Arc::new(Float64Array::from(vec![5.0; n])),
                Arc::new(Float64Array::from(vec![10.0; n])),
                Arc::new(triggering.finish()),
                Arc::new(Int64Array::from(vec![ids as i64; n])),
                text(&|_| "battery 5 % (< 10 %) in BLD-01 floor 3".into()),
                text(&|_| t.date_naive().to_string()),
            ],
        )
        .unwrap()
    }

    pub(super) fn keys(batches: &[RecordBatch]) -> Vec<(String, String)> {
        json_rows(batches)
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["triggered_at"].as_str().unwrap().to_string(),
                    r["alert_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn api_error_rate_needs_fifty_requests_and_more_than_five_percent() {
        // /a: 60 requests, 4 errors (6.7 %); /b: 60 requests, 3 errors (5 %, not above);
        // /c: 40 requests, all errors (too few requests).
        let mut rows = Vec::new();
        for i in 0..60 {
            rows.push(("/a", i < 4, 10.0));
            rows.push(("/b", i < 3, 10.0));
        }
        for _ in 0..40 {
            rows.push(("/c", true, 10.0));
        }
        let out = fire("api_error_rate", api(&rows), "2026-02-02T00:15:00Z").await;
        assert_eq!(out.len(), 1, "{out:?}");
        let a = &out[0];
        assert_eq!(a["subject"], "/a");
        assert_eq!(a["alert_id"], "api_error_rate:/a:20260202T001500Z");
        assert_eq!(a["triggering_count"], 4);
        assert_eq!(a["triggering_ids"].as_array().unwrap().len(), 4);
        assert_eq!(a["window_start"], "2026-02-02T00:00:00Z");
        assert_eq!(a["window_end"], "2026-02-02T00:15:00Z");
        assert!((a["value"].as_f64().unwrap() - 400.0 / 60.0).abs() < 1e-9);
        assert_eq!(a["threshold"], 5.0);
    }

    #[tokio::test]
    async fn api_p95_latency_fires_above_two_seconds_only() {
        // 100 requests: 90 fast, 10 slow. p95 interpolates between the 95th and 96th values.
        let mut slow = Vec::new();
        let mut fast = Vec::new();
        for i in 0..100 {
            slow.push(("/slow", false, if i < 90 { 100.0 } else { 3000.0 }));
            fast.push(("/fast", false, if i < 96 { 100.0 } else { 3000.0 }));
        }
        slow.extend(fast);
        let out = fire("api_p95_latency", api(&slow), "2026-02-02T00:15:00Z").await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["subject"], "/slow");
        assert_eq!(out[0]["value"], 3000.0);
        assert_eq!(out[0]["triggering_count"], 10);
    }

    #[tokio::test]
    async fn fraud_alerts_name_each_transaction_once_by_id() {
        let n = 4;
        let w = RecordBatch::try_from_iter(vec![
            (
                "transaction_id",
                Arc::new(StringArray::from(vec!["t0", "t1", "t2", "t3"])) as ArrayRef,
            ),
            ("event_time", ts(n)),
            (
                "fraud_flag",
                Arc::new(BooleanArray::from(vec![true, false, false, false])),
            ),
            (
                "risk_score",
                Arc::new(Float64Array::from(vec![0.2, 0.95, 0.9, 0.89])),
            ),
            (
                "amount_usd",
                Arc::new(Float64Array::from(vec![10.0, 20.0, 30.0, 40.0])),
            ),
            (
                "account_id",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
            ),
        ])
        .unwrap();
        let out = fire("fraud_transaction", w, "2026-02-02T00:10:00Z").await;
        let ids: Vec<&str> = out
            .iter()
            .map(|a| a["alert_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "fraud_transaction:t0",
                "fraud_transaction:t1",
                "fraud_transaction:t2"
            ]
        );
        assert_eq!(out[0]["severity"], "critical");
        assert_eq!(out[1]["severity"], "high");
        assert_eq!(out[1]["triggering_ids"], serde_json::json!(["t1"]));
    }

    #[test]
    fn a_run_is_planned_without_the_lake() {
        let t = parse_utc("2026-02-02T01:00:00Z").unwrap();
        let plan = AlertsPlan::new(t, t, &["api_logs"]);
        assert_eq!(plan.recent_dates, ["2026-02-01", "2026-02-02"]);
        let names: Vec<&str> = plan.rules.iter().map(|r| r.rule.name).collect();
        assert_eq!(names, ["api_error_rate", "api_p95_latency"]);
        assert_eq!(
            plan.rules[0].window_sql,
            format!(
                "CREATE OR REPLACE VIEW w AS SELECT * FROM unified_api_logs WHERE date IN ('2026-02-02') AND event_time >= {} AND event_time < {}",
                ts_sql(parse_utc("2026-02-02T00:45:00Z").unwrap()),
                ts_sql(t)
            )
        );
        let sql = rule_sql(&plan.rules[0].rule, true);
        assert!(
            sql.contains("concat('api_error_rate:', r.subject, ':', p.run) AS alert_id"),
            "{sql}"
        );
        let p = params(&plan.rules[0].rule, t, t).unwrap();
        assert_eq!(
            json_rows(&[p]).unwrap(),
            [serde_json::json!({
                "window_start": "2026-02-02T00:45:00Z",
                "window_end": "2026-02-02T01:00:00Z",
                "run": "20260202T010000Z",
                "date": "2026-02-02",
            })]
        );
        assert!(plan.compact);
        assert!(!AlertsPlan::new(t + Duration::minutes(10), t, &[]).compact);
        assert!(AlertsPlan::new(t, t, &[]).rules.is_empty());
    }

    #[test]
    fn metrics_are_the_output() {
        let m = AlertsMetrics {
            raised_by_rule: BTreeMap::from([
                ("fraud_transaction".to_string(), 2),
                ("api_error_rate".to_string(), 0),
            ]),
            raised: 2,
            compacted: None,
            deliveries: BTreeMap::new(),
        };
        let mut by_rule = serde_json::Map::new();
        by_rule.insert("fraud_transaction".into(), 2usize.into());
        by_rule.insert("api_error_rate".into(), 0usize.into());
        let today = serde_json::json!({
            "raised_by_rule": by_rule,
            "raised": 2usize,
            "compacted": Option::<crate::layers::batch::compact::Compacted>::None,
        });
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v, today);
        assert_eq!(v.to_string(), today.to_string());
        assert_eq!(serde_json::from_value::<AlertsMetrics>(v).unwrap(), m);
        let compacted = crate::layers::batch::compact::Compacted {
            files_added: 2,
            files_removed: 12,
            partitions: 2,
        };
        let m = AlertsMetrics {
            compacted: Some(compacted.clone()),
            ..m
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["compacted"], serde_json::json!(compacted));
        assert_eq!(serde_json::from_value::<AlertsMetrics>(v).unwrap(), m);
    }
}
