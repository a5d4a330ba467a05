//! `analytics`: `serving/analytics/stream_dates` — per stream and event date: events,
//! from_batch, from_speed, quarantined, last event time — recomputed (replace-where) only for
//! the dates the run's unified tasks changed; and `serving/analytics/master_summary` — per
//! domain: total_records, latest_date, published_at — rebuilt from that small table, also as
//! `serving/analytics/master_summary.json`.
//!
//! After the first run (SQL over the tables), the figures come from the windows
//! ([`window::date_figures`]) and the rows of `stream_dates` are held from run to run, so a run
//! plans no query and reads no table; their SQL stays the definition, which
//! `LAKEPIPE_SERVING_VERIFY=1` evaluates over the tables every run and compares.

use std::collections::{BTreeMap, BTreeSet};
use std::future::IntoFuture;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

mod held;
mod rows;

use self::held::{held_rows_replaced, quarantined_by_date, stream_dates_held};
use self::rows::{StreamDate, master_summary_batch, stream_dates_batch};
use super::window::Figures;
use super::{
    Error, Result, collect, json_rows, log_info, overwrite_snapshot, put_json, run_label,
    same_columns, ts_sql, unified_session, verify, window,
};
use crate::clock::rfc3339_secs;
use crate::layers::batch::table_path;
use crate::layers::sql;
use crate::layers::write::{self, Replace, Write};
use crate::scheduler::task::{TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::sources::stream::all_streams;
use crate::store::{Store, register_delta};

/// Lake path of the per stream and date figures.
pub const STREAM_DATES_PATH: &str = "serving/analytics/stream_dates";
/// Lake path of the per-domain summary.
pub const MASTER_SUMMARY_PATH: &str = "serving/analytics/master_summary";

/// Dates the unified tasks changed, from their outputs (`dates` of each, [`UnifiedMetrics`]);
/// outputs without dates (a run with nothing new) add none.
///
/// [`UnifiedMetrics`]: super::UnifiedMetrics
pub fn upstream_dates(upstream: &BTreeMap<String, serde_json::Value>) -> BTreeSet<String> {
    let mut dates = BTreeSet::new();
    for out in upstream.values() {
        if let Some(ds) = out["dates"].as_array() {
            dates.extend(ds.iter().filter_map(|d| d.as_str().map(str::to_string)));
        }
    }
    dates
}

/// SQL of the master summary of the run at `t`, from the table registered as `stream_dates`.
fn master_summary_sql(t: DateTime<Utc>) -> String {
    let quote = |s: &str| s.replace('\'', "''");
    let domains: Vec<String> = all_streams()
        .iter()
        .map(|s| format!("('{}', '{}')", quote(s.name), quote(s.title)))
        .collect();
    format!(
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
    )
}

/// Where a run takes the figures of the dates it recomputes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// The tables themselves, by SQL ([`AnalyticsPlan::stream_dates_sql`]), registered as
    /// `unified_<stream>` (the first run).
    Table,
    /// The windows' figures per stream and date ([`window::date_figures`]).
    Figures(BTreeMap<&'static str, BTreeMap<String, Figures>>),
}

/// A run of `analytics`, decided without I/O from the unified tables that exist and the dates
/// to recompute.
#[derive(Debug, Clone, PartialEq)]
struct AnalyticsPlan {
    /// The run's logical date.
    t: DateTime<Utc>,
    /// The dates whose figures are recomputed (reported even when nothing is).
    dates: Vec<String>,
    /// The streams whose figures are recomputed: those with a unified table, none if there
    /// are no dates.
    streams: Vec<&'static str>,
}

impl AnalyticsPlan {
    /// Plans the run at `t` for `dates`, `present` naming the streams with a unified table.
    fn new(t: DateTime<Utc>, present: &[&'static str], dates: BTreeSet<String>) -> AnalyticsPlan {
        let dates: Vec<String> = dates.into_iter().collect();
        let streams = if dates.is_empty() {
            Vec::new()
        } else {
            present.to_vec()
        };
        AnalyticsPlan { t, dates, streams }
    }

    /// SQL of the recomputed figures of [`Self::streams`] over the unified tables, registered as
    /// `unified_<stream>`, `quarantined[i]` saying whether stream i has a quarantine table
    /// (registered as `quarantine_<stream>`): the definition of the rows
    /// [`Self::stream_dates_rows`] makes from the windows' figures.
    fn stream_dates_sql(&self, quarantined: &[bool]) -> String {
        let filter = sql::in_dates(&self.dates);
        let mut parts = Vec::new();
        for (s, has_quarantine) in self.streams.iter().zip(quarantined) {
            let q = if *has_quarantine {
                format!(
                    "SELECT date, count(*) AS n FROM quarantine_{s} WHERE {filter} GROUP BY date"
                )
            } else {
                "SELECT CAST(NULL AS VARCHAR) AS date, CAST(0 AS BIGINT) AS n WHERE false"
                    .to_string()
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
        format!(
            "SELECT stream, events, from_batch, from_speed, quarantined, last_event_time, {} AS published_at, date FROM ({})",
            ts_sql(self.t),
            parts.join(" UNION ALL ")
        )
    }

    /// The recomputed rows of `stream_dates` from the windows' figures (`figures`, per stream and
    /// date) and the quarantined rows of each stream by date (`quarantined`): what
    /// [`Self::stream_dates_sql`] gives over the tables, without planning a query. Streams by
    /// [`Self::streams`], dates in order; a date without unified rows has no row.
    fn stream_dates_rows(
        &self,
        figures: &BTreeMap<&'static str, BTreeMap<String, Figures>>,
        quarantined: &BTreeMap<&'static str, BTreeMap<String, u64>>,
    ) -> Vec<StreamDate> {
        let mut rows = Vec::new();
        for s in &self.streams {
            let q = quarantined.get(s);
            for (date, f) in figures.get(s).into_iter().flatten() {
                rows.push(StreamDate {
                    stream: s.to_string(),
                    date: Some(date.clone()),
                    events: f.events as i64,
                    from_batch: f.from_batch as i64,
                    from_speed: f.from_speed as i64,
                    quarantined: q.and_then(|q| q.get(date)).copied().unwrap_or(0) as i64,
                    last_event_time: f.last_event_time,
                });
            }
        }
        rows
    }

    /// Recomputes the figures of the dates from `source` (the tables registered in `df_ctx`, or
    /// the windows' figures), then rebuilds and publishes the master summary. With `reference`,
    /// the figures and the summary are also computed by their SQL over the unified tables
    /// registered there and must agree ([`verify`]).
    async fn execute(
        self,
        store: &Store,
        df_ctx: &SessionContext,
        source: Source,
        reference: Option<&SessionContext>,
        log: Option<&TaskLog>,
    ) -> Result<AnalyticsMetrics> {
        let t = self.t;
        // The rows the recomputed dates now hold, when they are known without reading the table.
        let mut recomputed = None;
        if !self.streams.is_empty() {
            let mut quarantined = Vec::with_capacity(self.streams.len());
            let mut counts = BTreeMap::new();
            for s in &self.streams {
                let path = table_path("quarantine", s);
                let q = store
                    .delta_table(&path)
                    .await
                    .map_err(Error::delta(&path))?;
                if let Some(q) = &q {
                    match source {
                        Source::Figures(_) => {
                            counts.insert(
                                *s,
                                quarantined_by_date(store, &path, q, &self.dates).await?,
                            );
                        }
                        Source::Table => {
                            register_delta(df_ctx, &format!("quarantine_{s}"), q)
                                .await
                                .map_err(Error::datafusion(format!("registering {path}")))?;
                        }
                    }
                    if let Some(reference) = reference {
                        register_delta(reference, &format!("quarantine_{s}"), q)
                            .await
                            .map_err(Error::datafusion(format!("registering {path}")))?;
                    }
                }
                quarantined.push(q.is_some());
            }
            let (schema, rows) = match &source {
                Source::Table => {
                    collect(
                        df_ctx
                            .sql(&self.stream_dates_sql(&quarantined))
                            .await
                            .map_err(Error::datafusion(format!("planning {STREAM_DATES_PATH}")))?,
                    )
                    .await?
                }
                Source::Figures(figures) => {
                    let rows = self.stream_dates_rows(figures, &counts);
                    let batch = stream_dates_batch(&rows, t)?;
                    recomputed = Some(rows);
                    (batch.schema(), vec![batch])
                }
            };
            if let Some(reference) = reference {
                let (_, expected) = collect(
                    reference
                        .sql(&self.stream_dates_sql(&quarantined))
                        .await
                        .map_err(Error::datafusion(format!("planning {STREAM_DATES_PATH}")))?,
                )
                .await?;
                verify::same_rows(
                    STREAM_DATES_PATH,
                    &json_rows(&rows)?,
                    &json_rows(&expected)?,
                )?;
                log_info(
                    log,
                    "verified: the figures equal their SQL over the unified tables",
                );
            }
            let table = store
                .delta_table_or_new(STREAM_DATES_PATH)
                .await
                .map_err(Error::delta(STREAM_DATES_PATH))?;
            let before = table.version();
            let written = if same_columns(&table, &schema) {
                write::write_batches(table, rows, Replace::Dates(&self.dates), run_label(t)).await
            } else {
                // The first run (or a table of other columns): planned by deltalake's writer.
                let rows = MemTable::try_new(schema, vec![rows])
                    .map_err(Error::datafusion(STREAM_DATES_PATH))?;
                df_ctx
                    .register_table("stream_dates_rows", Arc::new(rows))
                    .map_err(Error::datafusion(STREAM_DATES_PATH))?;
                let plan = df_ctx
                    .sql("SELECT * FROM stream_dates_rows")
                    .await
                    .map_err(Error::datafusion(format!("planning {STREAM_DATES_PATH}")))?
                    .into_unoptimized_plan();
                write::write_plan(
                    table,
                    df_ctx,
                    plan,
                    Write::ReplaceDates(&self.dates),
                    run_label(t),
                    &[],
                )
                .await
            }
            .map_err(Error::delta(STREAM_DATES_PATH))?;
            store.keep_table(STREAM_DATES_PATH, &written);
            held_rows_replaced(store, &written, before, &self.dates, recomputed);
        }
        let dates = self.dates;
        let Some(table) = store
            .delta_table(STREAM_DATES_PATH)
            .await
            .map_err(Error::delta(STREAM_DATES_PATH))?
        else {
            log_info(log, "no unified table yet: nothing to summarise");
            return Ok(AnalyticsMetrics {
                dates,
                domains: None,
            });
        };
        let all = stream_dates_held(store, &table).await?;
        let batch = master_summary_batch(&all, t)?;
        let rows = json_rows(std::slice::from_ref(&batch))?;
        if let Some(reference) = reference {
            register_delta(reference, "stream_dates", &table)
                .await
                .map_err(Error::datafusion(format!(
                    "registering {STREAM_DATES_PATH}"
                )))?;
            let (_, expected) = collect(
                reference
                    .sql(&master_summary_sql(t))
                    .await
                    .map_err(Error::datafusion("the master summary"))?,
            )
            .await?;
            verify::same_rows(MASTER_SUMMARY_PATH, &rows, &json_rows(&expected)?)?;
        }
        let version =
            overwrite_snapshot(store, MASTER_SUMMARY_PATH, batch.schema(), vec![batch], t).await?;
        put_json(
            store,
            &format!("{MASTER_SUMMARY_PATH}.json"),
            &serde_json::json!({ "published_at": rfc3339_secs(t), "delta_version": version, "domains": rows }),
        )
        .await?;
        log_info(
            log,
            format!("stream_dates recomputed for {dates:?}; master summary version {version}"),
        );
        Ok(AnalyticsMetrics {
            dates,
            domains: Some(rows),
        })
    }
}

/// What a run of `analytics` did, as it reports it (its task output).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AnalyticsMetrics {
    /// The dates whose figures were recomputed.
    pub dates: Vec<String>,
    /// The master summary's rows (as in `master_summary.json`); absent when there is no
    /// unified table yet, so nothing to summarise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<serde_json::Value>>,
}

/// The operation of `analytics`: opens the unified tables, finds the dates to recompute,
/// plans ([`AnalyticsPlan`]), and rewrites the figures and the summary.
pub struct AnalyticsBuilder<'a> {
    store: &'a Store,
    logical_date: DateTime<Utc>,
    changed_dates: BTreeSet<String>,
    log: Option<&'a TaskLog>,
}

impl<'a> AnalyticsBuilder<'a> {
    /// The analytics as of `logical_date`.
    pub fn new(store: &'a Store, logical_date: DateTime<Utc>) -> AnalyticsBuilder<'a> {
        AnalyticsBuilder {
            store,
            logical_date,
            changed_dates: BTreeSet::new(),
            log: None,
        }
    }

    /// The dates the run's unified tasks changed ([`upstream_dates`]): their figures are
    /// recomputed (every date is on the first run).
    pub fn with_changed_dates(
        self,
        dates: impl IntoIterator<Item = String>,
    ) -> AnalyticsBuilder<'a> {
        AnalyticsBuilder {
            changed_dates: dates.into_iter().collect(),
            ..self
        }
    }

    /// Writes what the run does to `log`.
    pub fn with_log(self, log: &'a TaskLog) -> AnalyticsBuilder<'a> {
        AnalyticsBuilder {
            log: Some(log),
            ..self
        }
    }

    async fn run(self) -> Result<AnalyticsMetrics> {
        let store = self.store;
        let _turn = super::exclusive(store, "analytics").await;
        let t = self.logical_date;
        let streams: Vec<&'static str> = all_streams().iter().map(|s| s.name).collect();
        let existing = store
            .delta_table(STREAM_DATES_PATH)
            .await
            .map_err(Error::delta(STREAM_DATES_PATH))?;
        if existing.is_none() {
            // The first run: every date of the tables, from the tables.
            let (df_ctx, present) = unified_session(store, &streams).await?;
            let mut dates = self.changed_dates;
            for s in &present {
                let (_, batches) = collect(
                    df_ctx
                        .sql(&format!(
                            "SELECT DISTINCT CAST(date AS VARCHAR) AS d FROM unified_{s}"
                        ))
                        .await
                        .map_err(Error::datafusion(format!("the dates of unified_{s}")))?,
                )
                .await?;
                for r in json_rows(&batches)? {
                    dates.extend(r["d"].as_str().map(str::to_string));
                }
            }
            return AnalyticsPlan::new(t, &present, dates)
                .execute(store, &df_ctx, Source::Table, None, self.log)
                .await;
        }
        // Later runs: the changed dates' figures, from the windows.
        let dates: Vec<String> = self.changed_dates.iter().cloned().collect();
        let df_ctx = super::session()?;
        let mut present = Vec::new();
        let mut figures = BTreeMap::new();
        if !dates.is_empty() {
            for s in &streams {
                if let Some(f) = window::date_figures(store, s, t, &dates).await? {
                    figures.insert(*s, f);
                    present.push(*s);
                }
            }
        }
        let reference = match verify::enabled() && !present.is_empty() {
            true => Some(verify::reference(store, &present).await?),
            false => None,
        };
        AnalyticsPlan::new(t, &present, self.changed_dates)
            .execute(
                store,
                &df_ctx,
                Source::Figures(figures),
                reference.as_ref(),
                self.log,
            )
            .await
    }
}

impl<'a> IntoFuture for AnalyticsBuilder<'a> {
    type Output = Result<AnalyticsMetrics>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The body of `analytics`.
pub struct Analytics;

#[async_trait::async_trait]
impl TaskBody for Analytics {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = AnalyticsBuilder::new(&ctx.store, ctx.logical_date)
            .with_changed_dates(upstream_dates(&ctx.upstream))
            .with_log(&ctx.log)
            .await?;
        let streams: Vec<&'static str> = crate::sources::stream::all_streams()
            .iter()
            .map(|s| s.name)
            .collect();
        super::read_unified(ctx, streams).await;
        ctx.wrote_table(STREAM_DATES_PATH, None).await;
        ctx.wrote_table(MASTER_SUMMARY_PATH, None).await;
        output(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::rows::{utc, utc_micros};
    use super::*;
    use crate::clock::parse_utc;
    use deltalake::arrow::array::{RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

    #[test]
    fn a_run_is_planned_without_the_lake() {
        let t = parse_utc("2026-02-02T00:10:00Z").unwrap();
        let upstream = BTreeMap::from([
            (
                "unified_api_logs".to_string(),
                serde_json::json!({ "stream": "api_logs", "mode": "append", "dates": ["2026-02-02"] }),
            ),
            (
                "unified_iot_sensors".to_string(),
                serde_json::json!({ "stream": "iot_sensors", "mode": "recompute", "dates": ["2026-02-01", "2026-02-02"] }),
            ),
            (
                "unified_social_media".to_string(),
                serde_json::json!({ "stream": "social_media", "mode": "none" }),
            ),
        ]);
        let dates = upstream_dates(&upstream);
        let plan = AnalyticsPlan::new(t, &["api_logs", "iot_sensors"], dates);
        assert_eq!(plan.dates, ["2026-02-01", "2026-02-02"]);
        assert_eq!(plan.streams, ["api_logs", "iot_sensors"]);
        let sql = plan.stream_dates_sql(&[true, false]);
        assert_eq!(sql.matches(" UNION ALL ").count(), 1);
        assert!(
            sql.contains("FROM quarantine_api_logs WHERE date IN ('2026-02-01', '2026-02-02')")
        );
        assert!(!sql.contains("quarantine_iot_sensors"));
        assert!(
            sql.contains("FROM unified_iot_sensors WHERE date IN ('2026-02-01', '2026-02-02')")
        );
        assert!(sql.contains(&format!("{} AS published_at, date FROM (", ts_sql(t))));
        // Nothing changed: nothing recomputed, the summary is still rebuilt.
        let plan = AnalyticsPlan::new(t, &["api_logs"], BTreeSet::new());
        assert!(plan.dates.is_empty() && plan.streams.is_empty());
        assert!(master_summary_sql(t).contains("('api_logs', 'API Logs')"));
    }

    /// A table of `rows` registered as `name` in `ctx`.
    fn register(ctx: &SessionContext, name: &str, rows: RecordBatch) {
        let table = MemTable::try_new(rows.schema(), vec![vec![rows]]).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    }

    /// `schema` with string views as strings (Delta has one string type; DataFusion plans
    /// views).
    fn plain(schema: SchemaRef) -> Schema {
        Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        )
    }

    /// Unified rows: (date, event time in micros, source).
    fn unified(rows: &[(&str, Option<i64>, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("date", DataType::Utf8, true),
                Field::new("event_time", utc(), true),
                Field::new("_source", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                utc_micros(rows.iter().map(|r| r.1)),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    /// The figures of `rows` (of [`unified`]) by date, as the windows sum them.
    fn figures_of(rows: &[(&str, Option<i64>, &str)]) -> BTreeMap<String, Figures> {
        let mut by_date: BTreeMap<String, Figures> = BTreeMap::new();
        for (date, t, source) in rows {
            by_date
                .entry(date.to_string())
                .or_default()
                .merge(&Figures {
                    events: 1,
                    from_batch: u64::from(*source == "batch"),
                    from_speed: u64::from(*source == "speed"),
                    last_event_time: *t,
                });
        }
        by_date
    }

    #[tokio::test]
    async fn the_rows_made_from_the_figures_are_those_of_the_sql() {
        let t = parse_utc("2026-02-03T00:10:00Z").unwrap();
        let (d1, d2, d3) = ("2026-02-01", "2026-02-02", "2026-02-03");
        let api = [
            (d1, Some(10), "batch"),
            (d1, Some(30), "speed"),
            (d2, Some(20), "batch"),
            (d3, Some(5), "speed"),
        ];
        // A date without an event time, and one outside the run's dates.
        let iot = [
            (d2, None, "speed"),
            (d2, None, "speed"),
            (d3, Some(1), "batch"),
        ];
        let ctx = SessionContext::new();
        register(&ctx, "unified_api_logs", unified(&api));
        register(&ctx, "unified_iot_sensors", unified(&iot));
        register(
            &ctx,
            "quarantine_api_logs",
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("date", DataType::Utf8, true)])),
                vec![Arc::new(StringArray::from(vec![d1, d1, d2, d3]))],
            )
            .unwrap(),
        );
        let plan = AnalyticsPlan::new(
            t,
            &["api_logs", "iot_sensors"],
            BTreeSet::from([d1.to_string(), d2.to_string()]),
        );
        let (schema, expected) = collect(
            ctx.sql(&plan.stream_dates_sql(&[true, false]))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        // The windows hold every date of the tables; the plan takes those it recomputes.
        let dates = |f: BTreeMap<String, Figures>| -> BTreeMap<String, Figures> {
            f.into_iter()
                .filter(|(d, _)| plan.dates.contains(d))
                .collect()
        };
        let figures = BTreeMap::from([
            ("api_logs", dates(figures_of(&api))),
            ("iot_sensors", dates(figures_of(&iot))),
        ]);
        let counts = BTreeMap::from([(
            "api_logs",
            BTreeMap::from([(d1.to_string(), 2), (d2.to_string(), 1)]),
        )]);
        let rows = plan.stream_dates_rows(&figures, &counts);
        assert_eq!(rows.len(), 3, "api_logs on two dates, iot_sensors on one");
        let made = stream_dates_batch(&rows, t).unwrap();
        assert_eq!(
            *made.schema(),
            plain(schema),
            "the columns, types and nullability of the SQL"
        );
        verify::same_rows(
            "stream_dates",
            &json_rows(std::slice::from_ref(&made)).unwrap(),
            &json_rows(&expected).unwrap(),
        )
        .unwrap();

        // The summary, over those rows and an older date's, against its SQL; social_media has no
        // row at all.
        let mut all = rows.clone();
        all.push(StreamDate {
            stream: "api_logs".into(),
            date: Some("2026-01-31".into()),
            events: 7,
            from_batch: 7,
            from_speed: 0,
            quarantined: 3,
            last_event_time: Some(99),
        });
        let ctx = SessionContext::new();
        register(&ctx, "stream_dates", stream_dates_batch(&all, t).unwrap());
        let (schema, expected) = collect(ctx.sql(&master_summary_sql(t)).await.unwrap())
            .await
            .unwrap();
        let made = master_summary_batch(&all, t).unwrap();
        assert_eq!(
            *made.schema(),
            plain(schema),
            "the columns, types and nullability of the SQL"
        );
        let made = json_rows(std::slice::from_ref(&made)).unwrap();
        assert_eq!(
            made,
            json_rows(&expected).unwrap(),
            "the same rows in the same order"
        );
        assert_eq!(made[0]["stream"], "api_logs");
        assert_eq!(made[0]["total_records"], 10);
        assert_eq!(made[0]["latest_date"], d2);
        assert_eq!(made[0]["quarantined"], 6);
    }

    #[test]
    fn metrics_are_the_output_of_every_path() {
        let none = AnalyticsMetrics {
            dates: vec!["2026-02-02".into()],
            domains: None,
        };
        let v = serde_json::to_value(&none).unwrap();
        assert_eq!(v, serde_json::json!({ "dates": ["2026-02-02"] }));
        assert_eq!(serde_json::from_value::<AnalyticsMetrics>(v).unwrap(), none);
        let row = serde_json::json!({
            "domain": "API Logs", "stream": "api_logs", "total_records": 12,
            "latest_date": "2026-02-02", "from_batch": 0, "from_speed": 12, "quarantined": 1,
            "last_event_time": "2026-02-02T00:09:59.500Z", "published_at": "2026-02-02T00:10:00Z",
        });
        let some = AnalyticsMetrics {
            dates: vec![],
            domains: Some(vec![row.clone()]),
        };
        let today = serde_json::json!({ "dates": Vec::<String>::new(), "domains": vec![row] });
        let v = serde_json::to_value(&some).unwrap();
        assert_eq!(v, today);
        assert_eq!(v.to_string(), today.to_string());
        assert_eq!(serde_json::from_value::<AnalyticsMetrics>(v).unwrap(), some);
    }
}
