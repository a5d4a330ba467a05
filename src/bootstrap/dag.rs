//! The DAG `1-infra_s3_bootstrap` (manual): one task, `bootstrap`, that runs the bucket
//! bootstrap ([`super::run`]), publishes its operation log under `logs/s3_orchestrator/` and
//! copies it into the task log.

use std::sync::Arc;

use super::{Error, Options};
use crate::scheduler::task::output;
use crate::scheduler::{Dag, Retryable, Schedule, TaskBody, TaskContext, TaskPolicy, TaskResult};
use crate::store::oplog::OpLog;

/// The bootstrap DAG.
pub const DAG_ID: &str = "1-infra_s3_bootstrap";

/// No retries: a setting the store refuses is refused again.
const POLICY: TaskPolicy = TaskPolicy::new(0, 60, 60, 600);

/// The bootstrap DAG with its body.
pub fn dag() -> Dag {
    Dag::new(
        DAG_ID,
        "bucket bootstrap: encryption, versioning, lifecycle, public access, TLS policy",
        Schedule::Manual,
        1,
    )
    .task("bootstrap", &[], POLICY, Arc::new(Bootstrap))
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        !matches!(self, Error::SettingsFailed { .. })
    }
}

struct Bootstrap;

#[async_trait::async_trait]
impl TaskBody for Bootstrap {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        let log = OpLog::new("bootstrap", crate::clock::wall_now());
        let report = super::run(&ctx.store, &Options::default(), &log).await;
        let published = log.publish(&ctx.store).await;
        ctx.log.info(log.text().trim_end());
        let report = report?;
        ctx.log.info(format!("\n{}", report.table()));
        published.map_err(Error::from)?;
        let failed: Vec<String> = report
            .errors(false)
            .iter()
            .map(|r| r.setting.clone())
            .collect();
        if !failed.is_empty() {
            return Err(Error::SettingsFailed { settings: failed }.into());
        }
        output(&report)
    }
}
