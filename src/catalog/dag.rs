//! The DAG `5-lake_catalog_refresh` (hourly): one task, `catalog_refresh`, that runs an
//! incremental catalog refresh ([`super::refresh`]), publishes its operation log under
//! `logs/s3_orchestrator/` and copies it into the task log.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Error, Options, Summary};
use crate::scheduler::task::output;
use crate::scheduler::{Dag, Retryable, Schedule, TaskBody, TaskContext, TaskPolicy, TaskResult};
use crate::store::oplog::OpLog;

/// The catalog DAG.
pub const DAG_ID: &str = "5-lake_catalog_refresh";

const POLICY: TaskPolicy = TaskPolicy::new(2, 60, 600, 1800);

/// The catalog DAG with its body.
pub fn dag() -> Result<Dag, String> {
    Ok(Dag::new(
        DAG_ID,
        "catalog: verify partitions, partition metadata, Athena DDL, operation log",
        Schedule::cron("0 * * * *")?,
        1,
    )
    .task("catalog_refresh", &[], POLICY, Arc::new(CatalogRefresh)))
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// What `catalog_refresh` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshMetrics {
    /// `incremental` or `full`.
    pub mode: String,
    /// Keys that do not match their dataset's template.
    pub anomalies: usize,
    /// Where the partition metadata went.
    pub metadata_key: String,
    /// Athena DDL files written.
    pub ddl_files: usize,
    /// Figures per dataset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub datasets: BTreeMap<String, DatasetMetrics>,
    /// What registering the tables in Glue did (`[glue] enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glue: Option<super::glue::GlueMetrics>,
}

/// Figures of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMetrics {
    /// Partitions known.
    pub partitions: usize,
    /// Objects in them.
    pub objects: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Partitions listed by this refresh.
    pub listed_partitions: usize,
}

impl From<&Summary> for RefreshMetrics {
    fn from(s: &Summary) -> RefreshMetrics {
        RefreshMetrics {
            mode: s.mode.clone(),
            anomalies: s.anomalies,
            metadata_key: s.metadata_key.clone(),
            ddl_files: s.ddl_keys.len(),
            datasets: s
                .datasets
                .iter()
                .map(|d| {
                    let m = DatasetMetrics {
                        partitions: d.partitions,
                        objects: d.total_objects,
                        bytes: d.total_bytes,
                        listed_partitions: d.listed_partitions.len(),
                    };
                    (d.dataset.clone(), m)
                })
                .collect(),
            glue: s.glue.clone(),
        }
    }
}

struct CatalogRefresh;

/// The refresh's lineage: each dataset's key prefix it catalogs (with the bytes it knows
/// there) in, the partition metadata and the DDL files out.
fn record_datasets(ctx: &TaskContext, summary: &Summary) {
    use crate::scheduler::task::Dataset;
    let prefixes: BTreeMap<String, String> = super::datasets::datasets()
        .into_iter()
        .map(|d| (d.name, d.prefix))
        .collect();
    for d in &summary.datasets {
        let name = prefixes.get(&d.dataset).unwrap_or(&d.dataset);
        ctx.datasets
            .read(Dataset::at(format!("{name}/")).bytes(d.total_bytes));
    }
    ctx.datasets.wrote(Dataset::at(&summary.metadata_key));
    for key in &summary.ddl_keys {
        ctx.datasets.wrote(Dataset::at(key));
    }
}

#[async_trait::async_trait]
impl TaskBody for CatalogRefresh {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let log = OpLog::new("catalog", crate::clock::wall_now());
        let opts = Options {
            glue: ctx.params.glue.clone(),
            ..Options::default()
        };
        let summary = super::refresh(&ctx.store, &opts, &log).await;
        let published = log.publish(&ctx.store).await;
        ctx.log.info(log.text().trim_end());
        let summary = summary?;
        published.map_err(Error::from)?;
        record_datasets(ctx, &summary);
        output(&RefreshMetrics::from(&summary))
    }
}
