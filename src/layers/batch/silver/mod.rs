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
//! lineage) or `fail` (the task fails with the row).
//! One pass over bronze feeds both tables: cleaning runs in every partition of the bronze scan,
//! typed rows flow on to silver and quarantine rows go through a channel to the quarantine
//! write, which runs at the same time. Valid rows get the derived columns of [`derived`] and
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

use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::physical_plan::ExecutionPlanProperties as _;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::kernel::transaction::CommitProperties;
use futures::TryStreamExt as _;

use self::pass::{CleanedBronze, QuarantineChannel, QuarantineRows};
use super::lineage;
use crate::layers::clean::{Cleaner, Counts, LANDING_ORDER, derived, expectations};
use crate::layers::sql::{count_by_date, in_dates, session};
use crate::layers::write::{self, RowKeys, Writes};
use crate::scheduler::{Fatal, TaskBody, TaskContext, TaskResult};
use crate::sources::stream::StreamSpec;
use crate::store::register_delta;

/// The body of `silver_<stream>`.
pub struct Silver {
    /// The stream.
    pub spec: &'static StreamSpec,
}

#[async_trait::async_trait]
impl TaskBody for Silver {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Silver {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let spec = self.spec;
        let stream = spec.name;
        let store = &ctx.store;
        let manifest = lineage::plan(store, stream, ctx.logical_date).await?;
        let dates = manifest.dates();
        let bronze_path = super::table_path("bronze", stream);
        let silver_path = super::table_path("silver", stream);
        let quarantine_path = super::table_path("quarantine", stream);
        if dates.is_empty() {
            ctx.log
                .info("no files consumed by this run: nothing to recompute");
            return Ok(serde_json::json!({ "stream": stream, "dates": dates }));
        }
        let bronze = store.delta_table(&bronze_path).await?.ok_or_else(|| {
            Fatal(format!(
                "{bronze_path} does not exist: run bronze_{stream} first"
            ))
        })?;
        ctx.log.info(format!(
            "recomputing {silver_path} and {quarantine_path} for {dates:?}"
        ));
        let cleaner = Arc::new(Cleaner::new(spec, ctx.logical_date, expectations(spec)));
        let df_ctx = session()?;
        register_delta(&df_ctx, "bronze", &bronze).await?;
        // A table made before bronze kept the bytes of lines that are not UTF-8 has no such
        // column: read without it, every line as valid.
        let raw_bytes = match bronze.snapshot()?.schema().field(super::bronze::RAW_BYTES) {
            Some(_) => format!(", {}", super::bronze::RAW_BYTES),
            None => String::new(),
        };
        let scan = df_ctx
            .sql(&format!(
                "SELECT raw{raw_bytes}, _source_key, _line, _ingest_run, _batch_run, date FROM bronze WHERE {}",
                in_dates(&dates)
            ))
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
            Arc::new(StreamingTable::try_new(clean_schema.clone(), cleaning)?),
        )?;

        // Silver: the typed rows with their derived columns, written as they are cleaned (one
        // writer for the table, no row held back); the keys of the rows alone are
        // de-duplicated (first landed of each id wins: a grace hash spilled to disk, `dedup`),
        // and the later copies it finds are dropped from the files written, before the commit.
        let base: Vec<String> = clean_schema
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect();
        let derived: Vec<String> = derived(spec)
            .into_iter()
            .map(|(n, sql)| format!("{sql} AS \"{n}\""))
            .collect();
        let silver_sql = format!(
            "SELECT {cols}{sep}{derived} FROM clean",
            cols = base.join(", "),
            sep = if derived.is_empty() { "" } else { ", " },
            derived = derived.join(", "),
        );
        let silver_rows = df_ctx
            .sql(&silver_sql)
            .await?
            .create_physical_plan()
            .await?;
        let silver_schema = silver_rows.schema();
        let writes = Arc::new(Writes::open(store, &silver_path, silver_schema.clone()).await?);
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
        let bronze_rows = count_by_date(store, &bronze_path, &dates).await?;
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
            anyhow::Ok(dropped)
        };

        // Quarantine: the rows that broke a drop rule, with rule, value and lineage.
        df_ctx.register_table(
            "quarantined",
            Arc::new(StreamingTable::try_new(
                cleaner.quarantine_schema().clone(),
                vec![Arc::new(QuarantineRows {
                    channel,
                    schema: cleaner.quarantine_schema().clone(),
                })],
            )?),
        )?;
        let q_plan = df_ctx
            .sql("SELECT * FROM quarantined")
            .await?
            .into_unoptimized_plan();
        let (dropped, _) = tokio::try_join!(silver, async {
            write::replace_dates(store, &quarantine_path, &df_ctx, q_plan, &dates)
                .await
                .map_err(anyhow::Error::from)
        })
        .map_err(unwrap_fatal)?;
        let duplicates = first_landed.duplicates();
        if dropped != duplicates {
            return Err(anyhow::anyhow!(
                "{silver_path}: the de-duplication found {duplicates} later copies, but {dropped} rows were dropped from the files written; nothing committed"
            ));
        }
        writes
            .commit_replacing(&dates, CommitProperties::default())
            .await?;
        let counts = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let read_twice = first_landed.buckets_read_twice();

        // The identity, on the committed tables.
        let b = bronze_rows;
        let s = count_by_date(store, &silver_path, &dates).await?;
        let q = count_by_date(store, &quarantine_path, &dates).await?;
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let quarantined: u64 = counts.quarantined.values().sum();
        if total(&b) != total(&s) + total(&q) + duplicates
            || total(&q) != quarantined
            || counts.rows_in != total(&b)
            || counts.clean != total(&s) + duplicates
        {
            return Err(anyhow::anyhow!(
                "row accounting broken for {stream} on {dates:?}: bronze {} != silver {} + quarantine {} + duplicates {duplicates} (read {}, quarantined by the cleaner {quarantined})",
                total(&b),
                total(&s),
                total(&q),
                counts.rows_in
            ));
        }
        // The serving layer reads these files from silver from now on.
        let mut manifest = manifest;
        manifest.silver_committed = true;
        lineage::record(store, ctx.logical_date, &manifest).await?;
        let late = counts
            .warnings
            .get("event_time_on_time")
            .copied()
            .unwrap_or(0);
        ctx.log.info(format!(
            "{stream}: bronze {} = silver {} + quarantine {} + duplicates {duplicates}; late {late}; de-duplication buckets read twice {read_twice}",
            total(&b),
            total(&s),
            total(&q)
        ));
        Ok(serde_json::json!({
            "stream": stream,
            "dates": dates,
            "rows_in": total(&b),
            "silver": total(&s),
            "quarantined": total(&q),
            "duplicates": duplicates,
            "dedup_buckets_read_twice": read_twice,
            "late": late,
            "quarantined_by_rule": counts.quarantined,
            "warnings": counts.warnings,
            "by_date": dates.iter().map(|d| (d.clone(), serde_json::json!({
                "bronze": b[d], "silver": s[d], "quarantine": q[d],
            }))).collect::<serde_json::Map<_, _>>(),
        }))
    }
}

/// A `fail` expectation surfaces through DataFusion and deltalake as an external error: give
/// it back its [`Fatal`] kind so the task is not retried.
fn unwrap_fatal(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("(action fail)") {
        let msg = text
            .split("expectation `")
            .nth(1)
            .map(|rest| format!("expectation `{rest}"))
            .unwrap_or(text);
        return Fatal(msg).into();
    }
    e
}
