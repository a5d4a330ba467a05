//! `silver_<stream>`: recomputes `batch/silver/<stream>` and `batch/quarantine/<stream>` for
//! every event date the run's files touch, from all bronze rows of those dates.
//!
//! A line bronze kept as bytes because it was not landed as valid UTF-8 breaks `valid_utf8`
//! (the value names the offset of the first bad byte). Each raw line is parsed (into the
//! stream's fields only, strings borrowed from the line: [`crate::sources::scalar`]), trimmed,
//! enum values normalised to their canonical spelling (cosmetic noise is fixed, not rejected),
//! typed by the stream's schema (`sources`), and checked against the stream's [`expectations`]
//! — declared as data, each with an action in the style of Delta Live Tables: `warn` (kept,
//! counted), `drop` (to quarantine with the rule, the offending value, the raw line and its
//! lineage) or `fail` (the task fails with the row) — by the [`Cleaner`] of
//! [`crate::layers::clean`].
//! One pass over bronze feeds both tables: cleaning runs in every partition of the bronze scan,
//! typed rows flow on to silver and quarantine rows go through a channel to the quarantine
//! write, which runs at the same time ([`pass`]). Valid rows get the derived columns of [`derived`] and
//! are written at once, the cleaning partitions taking turns at the table's one Parquet writer
//! ([`crate::layers::write::stream`]); their keys alone (id, ingest run, file, line) are de-duplicated by the
//! stream's id, first landed wins, by a grace hash spilled to disk ([`super::dedup`]), and the
//! later copies it finds are dropped from the files written before anything is committed.
//! Both tables are replaced for the affected dates only (Delta replace-where).
//!
//! The task checks `bronze = silver + quarantine + duplicates` on the committed tables for
//! those dates and fails if it does not hold.

mod pass;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::physical_plan::ExecutionPlanProperties as _;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::kernel::transaction::CommitProperties;
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};

use self::pass::{CleanedBronze, QuarantineChannel, QuarantineRows};
use super::error::delta;
use super::lineage::{self, Manifest};
use super::{Error, info, table_path};
use crate::layers::clean::{
    Cleaner, Counts, Expectation, LANDING_ORDER, clean_schema, derived, expectations,
};
use crate::layers::sql::{count_by_date, in_dates, session};
use crate::layers::write::{self, RowKeys, Writes};
use crate::scheduler::task::{TaskLog, output};
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::sources::stream::StreamSpec;
use crate::store::{Store, register_delta};

/// The body of `silver_<stream>`.
pub struct Silver {
    /// The stream.
    pub spec: &'static StreamSpec,
}

#[async_trait::async_trait]
impl TaskBody for Silver {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let metrics = SilverBuilder::new(&ctx.store, self.spec, ctx.logical_date)
            .with_log(&ctx.log)
            .await?;
        if let Some(c) = &metrics.counts {
            let stream = self.spec.name;
            ctx.read_table(&table_path("bronze", stream), Some(c.rows_in))
                .await;
            ctx.wrote_table(&table_path("silver", stream), Some(c.silver))
                .await;
            ctx.wrote_table(&table_path("quarantine", stream), Some(c.quarantined))
                .await;
        }
        output(&metrics)
    }
}

/// What `silver_<stream>` did: the dates it recomputed and, if there were any, the counts of
/// the pass and of the committed tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SilverMetrics {
    /// The stream.
    pub stream: String,
    /// The dates recomputed (none: nothing done).
    pub dates: Vec<String>,
    /// The counts; absent when there was nothing to recompute.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<SilverCounts>,
}

/// The counts of a silver pass that recomputed some dates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SilverCounts {
    /// Bronze rows of the dates.
    pub rows_in: u64,
    /// Silver rows committed.
    pub silver: u64,
    /// Quarantine rows committed.
    pub quarantined: u64,
    /// Later copies of an id dropped by the de-duplication.
    pub duplicates: u64,
    /// De-duplication buckets that did not fit in memory and were read twice.
    pub dedup_buckets_read_twice: u64,
    /// Rows kept with `event_time_on_time` broken.
    pub late: u64,
    /// Rows sent to quarantine, by rule.
    pub quarantined_by_rule: BTreeMap<String, u64>,
    /// Rows kept with a `warn` rule broken, by rule.
    pub warnings: BTreeMap<String, u64>,
    /// Rows of each table per date.
    pub by_date: BTreeMap<String, DateCounts>,
}

/// Rows of bronze, silver and quarantine for one date.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct DateCounts {
    /// Bronze rows.
    pub bronze: u64,
    /// Silver rows.
    pub silver: u64,
    /// Quarantine rows.
    pub quarantine: u64,
}

/// What `silver_<stream>` will do for one run, decided without I/O from the run's lineage
/// manifest: the tables, the dates to recompute, the expectations and the SQL.
#[derive(Debug, Clone)]
pub struct SilverPlan {
    /// The stream.
    pub spec: &'static StreamSpec,
    /// The run's logical date.
    pub run: DateTime<Utc>,
    /// The dates to recompute.
    pub dates: Vec<String>,
    /// `batch/bronze/<stream>`, read.
    pub bronze_path: String,
    /// `batch/silver/<stream>`.
    pub silver_path: String,
    /// `batch/quarantine/<stream>`.
    pub quarantine_path: String,
    /// The stream's expectations, in evaluation order.
    pub expectations: Vec<Expectation>,
    /// The typed rows (`clean`) with the derived columns: what silver holds.
    pub silver_sql: String,
    /// What the run consumed (recorded as in silver once committed).
    pub manifest: Manifest,
}

/// The SQL of silver's rows: the typed rows (`clean`) with the derived columns.
fn silver_sql(spec: &StreamSpec) -> String {
    let base: Vec<String> = clean_schema(spec)
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    let derived: Vec<String> = derived(spec)
        .into_iter()
        .map(|(n, sql)| format!("{sql} AS \"{n}\""))
        .collect();
    format!(
        "SELECT {cols}{sep}{derived} FROM clean",
        cols = base.join(", "),
        sep = if derived.is_empty() { "" } else { ", " },
        derived = derived.join(", "),
    )
}

/// The schema of the rows `spec`'s silver table is written with (planned over no rows).
pub async fn written_schema(
    spec: &StreamSpec,
) -> Result<deltalake::arrow::datatypes::Schema, deltalake::datafusion::error::DataFusionError> {
    let ctx = session()?;
    let clean =
        deltalake::datafusion::datasource::MemTable::try_new(clean_schema(spec), vec![vec![]])?;
    ctx.register_table("clean", Arc::new(clean))?;
    let plan = ctx
        .sql(&silver_sql(spec))
        .await?
        .create_physical_plan()
        .await?;
    Ok(plan.schema().as_ref().clone())
}

impl SilverPlan {
    /// The plan of `spec`'s silver task in the run at `logical_date` that consumed `manifest`.
    pub fn new(
        spec: &'static StreamSpec,
        logical_date: DateTime<Utc>,
        manifest: &Manifest,
    ) -> Self {
        let stream = spec.name;
        let silver_sql = silver_sql(spec);
        SilverPlan {
            spec,
            run: logical_date,
            dates: manifest.dates(),
            bronze_path: super::table_path("bronze", stream),
            silver_path: super::table_path("silver", stream),
            quarantine_path: super::table_path("quarantine", stream),
            expectations: expectations(spec),
            silver_sql,
            manifest: manifest.clone(),
        }
    }

    /// The scan of bronze for the dates, with the bytes of lines that were not UTF-8 if the
    /// table has that column.
    pub fn scan_sql(&self, raw_bytes: bool) -> String {
        let raw_bytes = match raw_bytes {
            true => format!(", {}", super::bronze::RAW_BYTES),
            false => String::new(),
        };
        format!(
            "SELECT raw{raw_bytes}, _source_key, _line, _ingest_run, _batch_run, date FROM bronze WHERE {}",
            in_dates(&self.dates)
        )
    }

    /// Recomputes silver and quarantine for the dates and checks the row accounting.
    pub async fn execute(
        &self,
        store: &Store,
        log: Option<&TaskLog>,
    ) -> Result<SilverMetrics, Error> {
        let spec = self.spec;
        let stream = spec.name;
        let dates = &self.dates;
        let (bronze_path, silver_path, quarantine_path) =
            (&self.bronze_path, &self.silver_path, &self.quarantine_path);
        if dates.is_empty() {
            info(log, "no files consumed by this run: nothing to recompute");
            return Ok(SilverMetrics {
                stream: stream.to_string(),
                dates: dates.clone(),
                counts: None,
            });
        }
        let bronze = store
            .delta_table(bronze_path)
            .await
            .map_err(delta(bronze_path))?
            .ok_or_else(|| Error::MissingInput {
                path: bronze_path.clone(),
                upstream: format!("bronze_{stream}"),
            })?;
        info(
            log,
            format!("recomputing {silver_path} and {quarantine_path} for {dates:?}"),
        );
        let cleaner = Arc::new(Cleaner::new(spec, self.run, self.expectations.clone()));
        let df_ctx = session()?;
        register_delta(&df_ctx, "bronze", &bronze).await?;
        // A table made before bronze kept the bytes of lines that are not UTF-8 has no such
        // column: read without it, every line as valid.
        let raw_bytes = bronze
            .snapshot()
            .map_err(delta(bronze_path))?
            .schema()
            .field(super::bronze::RAW_BYTES)
            .is_some();
        let scan = df_ctx
            .sql(&self.scan_sql(raw_bytes))
            .await?
            .create_physical_plan()
            .await?;

        // One pass over bronze: typed rows to silver, broken ones to quarantine, both written
        // at once (the quarantine rows travel through a channel).
        let partitions = scan.output_partitioning().partition_count();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let channel = QuarantineChannel::new(partitions);
        let cleaning: Vec<Arc<dyn PartitionStream>> = (0..partitions)
            .map(|partition| {
                Arc::new(CleanedBronze {
                    scan: Arc::clone(&scan),
                    partition,
                    cleaner: Arc::clone(&cleaner),
                    counts: Arc::clone(&counts),
                    quarantine: Arc::clone(&channel),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let clean_schema = cleaner.clean_schema().clone();
        df_ctx.register_table(
            "clean",
            Arc::new(StreamingTable::try_new(clean_schema, cleaning)?),
        )?;

        // Silver: the typed rows with their derived columns, written as they are cleaned (one
        // writer for the table, no row held back); the keys of the rows alone are
        // de-duplicated (first landed of each id wins: a grace hash spilled to disk, `dedup`),
        // and the later copies it finds are dropped from the files written, before the commit.
        let silver_rows = df_ctx
            .sql(&self.silver_sql)
            .await?
            .create_physical_plan()
            .await?;
        let silver_schema = silver_rows.schema();
        let writes = Arc::new(
            Writes::open(
                store,
                silver_path,
                silver_schema.clone(),
                &crate::layers::evolve::stream_columns(spec),
            )
            .await?,
        );
        let keys = [
            spec.id_field,
            LANDING_ORDER[0],
            LANDING_ORDER[1],
            LANDING_ORDER[2],
        ]
        .iter()
        .map(|c| silver_schema.index_of(c))
        .collect::<Result<Vec<_>, _>>()?;
        let writing = (0..silver_rows.output_partitioning().partition_count())
            .map(|p| writes.writing(Arc::clone(&silver_rows), p, keys.clone()))
            .collect::<Result<Vec<_>, write::Error>>()?;
        df_ctx.register_table(
            "written",
            Arc::new(StreamingTable::try_new(
                Arc::new(silver_schema.project(&keys)?),
                writing,
            )?),
        )?;
        let written = df_ctx
            .table("written")
            .await?
            .create_physical_plan()
            .await?;
        let bronze_rows = count_by_date(store, bronze_path, dates).await?;
        let key = super::dedup::Columns {
            id: 0,
            ingest_run: 1,
            source_key: 2,
            line: 3,
            repeated: Vec::new(),
        };
        let first_landed = Arc::new(
            super::dedup::FirstLanded::new(
                written,
                key.clone(),
                bronze_rows.values().sum(),
                partitions,
            )
            .yielding_later_copies(),
        );
        let silver = async {
            // The later copies come once every row is written; held a bounded number at once.
            let mut later = first_landed.merged().execute(df_ctx.task_ctx());
            let mut held = RowKeys::default();
            let mut dropped = 0;
            while let Some(b) = later.try_next().await? {
                held.add(&b, key.source_key, key.line)?;
                if held.len() >= write::ROWS_HELD {
                    dropped += writes.drop_rows(&held).await?;
                    held.clear();
                }
            }
            dropped += writes.drop_rows(&held).await?;
            Ok::<u64, Error>(dropped)
        };

        // Quarantine: the rows that broke a drop rule, with rule, value and lineage.
        let quarantine_schema = cleaner.quarantine_schema().clone();
        df_ctx.register_table(
            "quarantined",
            Arc::new(StreamingTable::try_new(
                quarantine_schema.clone(),
                vec![Arc::new(QuarantineRows {
                    channel,
                    schema: quarantine_schema,
                })],
            )?),
        )?;
        let q_plan = df_ctx
            .sql("SELECT * FROM quarantined")
            .await?
            .into_unoptimized_plan();
        // A `fail` expectation stops the cleaning partitions: its error reaches here wrapped by
        // DataFusion, and is given back its own kind so the task is not retried.
        let (dropped, _) = tokio::try_join!(silver, async {
            write::replace_dates(store, quarantine_path, &df_ctx, q_plan, dates)
                .await
                .map_err(delta(quarantine_path))
        })
        .map_err(Error::or_broken_expectation)?;
        let duplicates = first_landed.duplicates();
        if dropped != duplicates {
            return Err(Error::CopiesDropped {
                path: silver_path.clone(),
                found: duplicates,
                dropped,
            });
        }
        writes
            .commit_replacing(dates, CommitProperties::default())
            .await?;
        let counts = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let read_twice = first_landed.buckets_read_twice();

        // The identity, on the committed tables.
        let b = bronze_rows;
        let s = count_by_date(store, silver_path, dates).await?;
        let q = count_by_date(store, quarantine_path, dates).await?;
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let quarantined: u64 = counts.quarantined.values().sum();
        if total(&b) != total(&s) + total(&q) + duplicates
            || total(&q) != quarantined
            || counts.rows_in != total(&b)
            || counts.clean != total(&s) + duplicates
        {
            return Err(Error::Accounting {
                stream: stream.to_string(),
                dates: dates.clone(),
                bronze: total(&b),
                silver: total(&s),
                quarantine: total(&q),
                duplicates,
                read: counts.rows_in,
                quarantined,
            });
        }
        // The serving layer reads these files from silver from now on.
        let mut manifest = self.manifest.clone();
        manifest.silver_committed = true;
        lineage::record(store, self.run, &manifest).await?;
        let late = counts
            .warnings
            .get("event_time_on_time")
            .copied()
            .unwrap_or(0);
        info(
            log,
            format!(
                "{stream}: bronze {} = silver {} + quarantine {} + duplicates {duplicates}; late {late}; de-duplication buckets read twice {read_twice}",
                total(&b),
                total(&s),
                total(&q)
            ),
        );
        let by_date = dates
            .iter()
            .map(|d| {
                let c = DateCounts {
                    bronze: b[d],
                    silver: s[d],
                    quarantine: q[d],
                };
                (d.clone(), c)
            })
            .collect();
        Ok(SilverMetrics {
            stream: stream.to_string(),
            dates: dates.clone(),
            counts: Some(SilverCounts {
                rows_in: total(&b),
                silver: total(&s),
                quarantined: total(&q),
                duplicates,
                dedup_buckets_read_twice: read_twice,
                late,
                quarantined_by_rule: counts.quarantined,
                warnings: counts.warnings,
                by_date,
            }),
        })
    }
}

/// `silver_<stream>` as an operation: loads the run's lineage manifest, plans, recomputes.
pub struct SilverBuilder<'a> {
    store: &'a Store,
    spec: &'static StreamSpec,
    logical_date: DateTime<Utc>,
    log: Option<&'a TaskLog>,
}

impl<'a> SilverBuilder<'a> {
    /// The silver task of `spec` in the run at `logical_date`.
    pub fn new(store: &'a Store, spec: &'static StreamSpec, logical_date: DateTime<Utc>) -> Self {
        SilverBuilder {
            store,
            spec,
            logical_date,
            log: None,
        }
    }

    /// Writes progress lines to `log`.
    pub fn with_log(mut self, log: &'a TaskLog) -> Self {
        self.log = Some(log);
        self
    }

    async fn run(self) -> Result<SilverMetrics, Error> {
        let manifest = lineage::plan(self.store, self.spec.name, self.logical_date).await?;
        SilverPlan::new(self.spec, self.logical_date, &manifest)
            .execute(self.store, self.log)
            .await
    }
}

impl<'a> std::future::IntoFuture for SilverBuilder<'a> {
    type Output = Result<SilverMetrics, Error>;
    type IntoFuture = futures::future::BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::batch::lineage::ConsumedFile;

    fn manifest(dates: &[&str]) -> Manifest {
        Manifest {
            stream: "api_logs".into(),
            batch_run: "2026-02-02T02:00:00Z".into(),
            files: dates
                .iter()
                .map(|d| ConsumedFile {
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
    fn the_plan_names_tables_dates_rules_and_sql_without_a_store() {
        let spec = crate::sources::stream::stream_by_name("api_logs").unwrap();
        let run = crate::clock::parse_utc("2026-02-02T02:00:00Z").unwrap();
        let plan = SilverPlan::new(spec, run, &manifest(&["2026-02-01", "2026-01-31"]));
        assert_eq!(plan.bronze_path, "batch/bronze/api_logs");
        assert_eq!(plan.silver_path, "batch/silver/api_logs");
        assert_eq!(plan.quarantine_path, "batch/quarantine/api_logs");
        assert_eq!(plan.dates, ["2026-01-31", "2026-02-01"]);
        assert_eq!(plan.expectations, expectations(spec));
        assert!(
            plan.silver_sql
                .starts_with("SELECT \"log_id\", \"event_time\", "),
            "{}",
            plan.silver_sql
        );
        assert!(
            plan.silver_sql
                .ends_with("concat(CAST(status_code / 100 AS VARCHAR), 'xx') AS \"response_category\" FROM clean"),
            "{}",
            plan.silver_sql
        );
        assert_eq!(
            plan.scan_sql(true),
            "SELECT raw, raw_bytes, _source_key, _line, _ingest_run, _batch_run, date FROM bronze WHERE date IN ('2026-01-31', '2026-02-01')"
        );
        assert_eq!(
            plan.scan_sql(false),
            "SELECT raw, _source_key, _line, _ingest_run, _batch_run, date FROM bronze WHERE date IN ('2026-01-31', '2026-02-01')"
        );
        assert!(SilverPlan::new(spec, run, &manifest(&[])).dates.is_empty());
    }

    #[test]
    fn metrics_are_the_task_output_with_and_without_dates() {
        let none = SilverMetrics {
            stream: "api_logs".into(),
            dates: Vec::new(),
            counts: None,
        };
        let none_json = serde_json::json!({ "stream": "api_logs", "dates": [] });
        assert_eq!(serde_json::to_value(&none).unwrap(), none_json);
        assert_eq!(
            serde_json::from_value::<SilverMetrics>(none_json).unwrap(),
            none
        );
        let some = SilverMetrics {
            stream: "api_logs".into(),
            dates: vec!["2026-02-01".into()],
            counts: Some(SilverCounts {
                rows_in: 10,
                silver: 7,
                quarantined: 2,
                duplicates: 1,
                dedup_buckets_read_twice: 0,
                late: 3,
                quarantined_by_rule: BTreeMap::from([("valid_json".to_string(), 2)]),
                warnings: BTreeMap::from([("event_time_on_time".to_string(), 3)]),
                by_date: BTreeMap::from([(
                    "2026-02-01".to_string(),
                    DateCounts {
                        bronze: 10,
                        silver: 7,
                        quarantine: 2,
                    },
                )]),
            }),
        };
        let json = serde_json::json!({
            "stream": "api_logs",
            "dates": ["2026-02-01"],
            "rows_in": 10,
            "silver": 7,
            "quarantined": 2,
            "duplicates": 1,
            "dedup_buckets_read_twice": 0,
            "late": 3,
            "quarantined_by_rule": { "valid_json": 2 },
            "warnings": { "event_time_on_time": 3 },
            "by_date": { "2026-02-01": { "bronze": 10, "silver": 7, "quarantine": 2 } },
        });
        assert_eq!(serde_json::to_value(&some).unwrap(), json);
        assert_eq!(serde_json::from_value::<SilverMetrics>(json).unwrap(), some);
    }
}
