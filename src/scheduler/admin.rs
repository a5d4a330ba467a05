//! Task bodies of the administrative DAGs: `1-infra_s3_bootstrap.bootstrap` runs the bucket
//! bootstrap ([`crate::bootstrap`]) and `5-lake_catalog_refresh.catalog_refresh` an
//! incremental catalog refresh ([`crate::catalog`]). Both publish their operation log under
//! `logs/s3_orchestrator/` and copy it into the task log.

use std::sync::Arc;

use chrono::Utc;

use super::{Fatal, Registry, TaskBody, TaskContext, TaskResult};
use crate::bootstrap;
use crate::catalog;
use crate::store::oplog::OpLog;

/// Registers both bodies.
pub fn register(r: &mut Registry) {
    r.register("1-infra_s3_bootstrap", "bootstrap", Arc::new(Bootstrap));
    r.register(
        "5-lake_catalog_refresh",
        "catalog_refresh",
        Arc::new(CatalogRefresh),
    );
}

struct Bootstrap;

#[async_trait::async_trait]
impl TaskBody for Bootstrap {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Bootstrap {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let log = OpLog::new("bootstrap", Utc::now());
        let report = bootstrap::run(&ctx.store, &bootstrap::Options::default(), &log).await;
        let published = log.publish(&ctx.store).await;
        ctx.log.info(log.text().trim_end());
        let report = report?;
        ctx.log.info(format!("\n{}", report.table()));
        published?;
        let failed: Vec<&str> = report
            .errors(false)
            .iter()
            .map(|r| r.setting.as_str())
            .collect();
        if !failed.is_empty() {
            return Err(Fatal(format!("bucket settings failed: {}", failed.join(", "))).into());
        }
        Ok(serde_json::to_value(&report)?)
    }
}

struct CatalogRefresh;

#[async_trait::async_trait]
impl TaskBody for CatalogRefresh {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl CatalogRefresh {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let log = OpLog::new("catalog", Utc::now());
        let summary = catalog::refresh(&ctx.store, &catalog::Options::default(), &log).await;
        let published = log.publish(&ctx.store).await;
        ctx.log.info(log.text().trim_end());
        let summary = summary?;
        published?;
        let mut v = serde_json::json!({
            "mode": summary.mode,
            "anomalies": summary.anomalies,
            "metadata_key": summary.metadata_key,
            "ddl_files": summary.ddl_keys.len(),
        });
        for d in &summary.datasets {
            v["datasets"][&d.dataset] = serde_json::json!({
                "partitions": d.partitions,
                "objects": d.total_objects,
                "bytes": d.total_bytes,
                "listed_partitions": d.listed_partitions.len(),
            });
        }
        Ok(v)
    }
}
