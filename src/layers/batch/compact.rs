//! Compaction and retention of the lake's Delta tables: `compact` (the last task of
//! `3-batch_etl_all_streams`) runs Delta optimize on the date partitions the batch run
//! rewrote, in every table it rewrote; `lakepipe compact` and `lakepipe vacuum` do the same
//! for whole tables by hand.

use std::collections::BTreeMap;
use std::time::Duration;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::{FilterOp, FilterValue};

use super::{gold, lineage};
use crate::layers::write::TARGET_FILE_BYTES;
use crate::scheduler::{TaskBody, TaskContext, TaskResult};
use crate::sources::stream::all_streams;
use crate::store::Store;

/// What compaction did to one table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Compacted {
    /// Files written.
    pub files_added: u64,
    /// Small files replaced.
    pub files_removed: u64,
    /// Partitions that had files merged.
    pub partitions: u64,
}

/// Optimizes the table at `path`, only the `dates` partitions if given, with `props` in the
/// commit if given; `None` if there is no table.
pub async fn compact_table(
    store: &Store,
    path: &str,
    dates: Option<&[String]>,
    props: Option<CommitProperties>,
) -> anyhow::Result<Option<Compacted>> {
    let Some(table) = store.delta_table(path).await? else {
        return Ok(None);
    };
    let values: Vec<&str> = dates
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect();
    let filters = [("date", FilterOp::In, FilterValue::Set(values))];
    let mut op = table
        .optimize()
        .with_target_size(std::num::NonZeroU64::new(TARGET_FILE_BYTES).expect("non-zero"));
    if dates.is_some() {
        op = op.with_filters(&filters);
    }
    if let Some(props) = props {
        op = op.with_commit_properties(props);
    }
    let (_, m) = op.await?;
    Ok(Some(Compacted {
        files_added: m.num_files_added,
        files_removed: m.num_files_removed,
        partitions: m.partitions_optimized,
    }))
}

/// Deletes files no longer referenced by the table at `path` and older than `retain`;
/// returns how many were deleted. Below Delta's 7-day default the caller has said so
/// explicitly.
pub async fn vacuum_table(store: &Store, path: &str, retain: Duration) -> anyhow::Result<usize> {
    let Some(table) = store.delta_table(path).await? else {
        return Ok(0);
    };
    let retain = chrono::Duration::from_std(retain)?;
    let (_, m) = table
        .vacuum()
        .with_retention_period(retain)
        .with_enforce_retention_duration(retain >= chrono::Duration::days(7))
        .await?;
    Ok(m.files_deleted.len())
}

/// The body of `compact`.
pub struct Compact;

#[async_trait::async_trait]
impl TaskBody for Compact {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Compact {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let store = &ctx.store;
        let mut dates_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for s in all_streams() {
            dates_of.insert(
                s.name,
                lineage::plan(store, s.name, ctx.logical_date)
                    .await?
                    .dates(),
            );
        }
        let mut tables: Vec<(String, &str)> = Vec::new();
        for s in all_streams() {
            for layer in ["bronze", "silver", "quarantine"] {
                tables.push((super::table_path(layer, s.name), s.name));
            }
        }
        for f in gold::FACTS {
            tables.push((super::table_path("gold", f.name), f.stream));
        }
        let mut out = serde_json::Map::new();
        for (path, stream) in tables {
            let dates = &dates_of[stream];
            if dates.is_empty() {
                continue;
            }
            if let Some(c) = compact_table(store, &path, Some(dates), None).await? {
                ctx.log.info(format!(
                    "{path}: {} files merged into {} over {} partitions",
                    c.files_removed, c.files_added, c.partitions
                ));
                out.insert(path, serde_json::to_value(c)?);
            }
        }
        Ok(serde_json::Value::Object(out))
    }
}
