//! The pipeline: what it is made of and how it is wired.
//!
//! Its streams, expectations, derived columns, gold facts, dashboards and alert rules are
//! declared as data ([`declaration`], `pipeline.toml`), checked with a line for each mistake
//! ([`check`]), and compiled once per process into the [`active`] pipeline the layers read; the
//! built-in declaration ([`builtin`]) is the seed pipeline.
//!
//! This module is also the one place that wires the layers into the scheduler. Each layer
//! declares its DAGs with their task bodies attached (`layers::speed::dag`, `layers::batch::dag`,
//! `layers::serving::dag`, `bootstrap::dag`, `catalog::dag`); [`dags`] gathers them into the
//! table the scheduler, the CLI and the web UI run and show. A declared task without a body
//! cannot exist.

mod active;
mod builtin;
pub mod check;
pub mod declaration;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use active::{Active, active, install};
pub use builtin::builtin;
pub use check::{Diagnostic, check_text, load};
pub use declaration::Declaration;

/// Errors of loading and installing a pipeline declaration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read the pipeline declaration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The declaration has mistakes, one line each.
    #[error("{} has {} mistake(s):\n{}", path.display(), diagnostics.len(), diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The mistakes.
        diagnostics: Vec<Diagnostic>,
    },
    /// A pipeline was already active in this process.
    #[error("a pipeline declaration is already active in this process")]
    AlreadyActive,
    /// The DAG table was already built with other settings in this process.
    #[error("the DAG table is already built with other settings in this process")]
    AlreadyConfigured,
}

/// What the configuration changes in the DAG table: the serving DAG's schedule
/// (`[serving] schedule`). Set once per process with [`configure`] before the table is read,
/// as the pipeline declaration is with [`install`]; unset, the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagSettings {
    /// Cron schedule of `4-serving_layer_merge`.
    pub serving_schedule: String,
}

impl Default for DagSettings {
    fn default() -> Self {
        DagSettings {
            serving_schedule: crate::config::DEFAULT_SERVING_SCHEDULE.to_string(),
        }
    }
}

impl DagSettings {
    /// The settings a validated configuration gives.
    pub fn from_config(config: &crate::config::Config) -> DagSettings {
        DagSettings {
            serving_schedule: config.serving.schedule.clone(),
        }
    }
}

static SETTINGS: OnceLock<DagSettings> = OnceLock::new();

/// Fixes the DAG table's settings for this process. Fails if the table was already built (or
/// configured) with different ones.
pub fn configure(settings: DagSettings) -> Result<(), Error> {
    let mut fresh = Some(settings);
    let got = SETTINGS.get_or_init(|| fresh.take().unwrap_or_default());
    match fresh {
        Some(wanted) if &wanted != got => Err(Error::AlreadyConfigured),
        _ => Ok(()),
    }
}

use crate::scheduler::Dag;
use crate::scheduler::dag::{find, validated_table};

fn build(settings: &DagSettings) -> Result<Vec<Dag>, String> {
    let mut dags = vec![crate::bootstrap::dag::dag()];
    dags.extend(crate::layers::speed::dag::dags()?);
    dags.push(crate::layers::batch::dag::dag()?);
    dags.push(crate::layers::serving::dag::dag(
        &settings.serving_schedule,
    )?);
    dags.push(crate::catalog::dag::dag()?);
    validated_table(dags)
}

/// Every DAG of the pipeline, in DAG-ID order, with the [`configure`]d settings.
pub fn dags() -> &'static [Dag] {
    static DAGS: OnceLock<Vec<Dag>> = OnceLock::new();
    DAGS.get_or_init(|| {
        let settings = SETTINGS.get_or_init(DagSettings::default);
        build(settings).expect("the DAG table is valid (unit-tested; settings validated)")
    })
}

/// The DAG with this ID.
pub fn dag(dag_id: &str) -> Option<&'static Dag> {
    find(dags(), dag_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dag_table_has_the_spec_ids_and_graphs() {
        assert!(build(&DagSettings::default()).is_ok());
        let ids: Vec<&str> = dags().iter().map(|d| d.dag_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "1-infra_s3_bootstrap",
                "2-api_logs_realtime_ingest",
                "2-ecommerce_clickstream_realtime_ingest",
                "2-financial_transactions_realtime_ingest",
                "2-iot_sensors_realtime_ingest",
                "2-social_media_realtime_ingest",
                "3-batch_etl_all_streams",
                "4-serving_layer_merge",
                "5-lake_catalog_refresh",
            ]
        );
        let batch = dag("3-batch_etl_all_streams").unwrap();
        assert_eq!(batch.schedule.expr(), Some("0 2 * * *"));
        assert_eq!(batch.tasks.len(), 5 + 5 + 7 + 1);
        assert_eq!(
            batch
                .task_by_id("gold_fact_ecommerce_revenue")
                .unwrap()
                .upstream,
            ["silver_ecommerce_clickstream"]
        );
        assert_eq!(batch.tasks.last().unwrap().task_id, "compact");
        // Every task comes after its upstreams.
        for (i, task) in batch.tasks.iter().enumerate() {
            for u in &task.upstream {
                assert!(batch.tasks[..i].iter().any(|p| &p.task_id == u));
            }
        }
        let down = batch.with_downstream("bronze_api_logs");
        assert_eq!(
            down.into_iter().collect::<Vec<_>>(),
            [
                "bronze_api_logs",
                "compact",
                "gold_fact_api_hourly",
                "silver_api_logs"
            ]
        );
        assert!(
            dag("1-infra_s3_bootstrap")
                .unwrap()
                .schedule
                .expr()
                .is_none()
        );
        assert_eq!(dag("4-serving_layer_merge").unwrap().order_group(), 4);
        let serving = dag("4-serving_layer_merge").unwrap();
        assert_eq!(serving.schedule.expr(), Some("*/10 * * * *"));
        assert_eq!(serving.tasks.last().unwrap().task_id, "upkeep");
    }

    #[test]
    fn settings_are_fixed_once_per_process() {
        // The unit tests build the table with the defaults.
        assert!(configure(DagSettings::default()).is_ok());
        let other = DagSettings {
            serving_schedule: "* * * * *".into(),
        };
        assert!(matches!(configure(other), Err(Error::AlreadyConfigured)));
    }

    #[test]
    fn the_serving_schedule_comes_from_the_settings() {
        let every_minute = DagSettings {
            serving_schedule: "* * * * *".into(),
        };
        let table = build(&every_minute).unwrap();
        let serving = find(&table, "4-serving_layer_merge").unwrap();
        assert_eq!(serving.schedule.expr(), Some("* * * * *"));
        assert!(
            build(&DagSettings {
                serving_schedule: "nope".into()
            })
            .is_err()
        );
    }
}
