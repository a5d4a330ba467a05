//! The batch layer: the bodies of `3-batch_etl_all_streams`, on Delta Lake tables under
//! `batch/`. A run at D 02:00 UTC consumes the speed-layer files no earlier run consumed
//! (`lineage`) and appends them to `batch/bronze/<stream>` (`bronze`), exactly once per run;
//! `silver` recomputes `batch/silver/<stream>` and `batch/quarantine/<stream>` for the event
//! dates those files touch, de-duplicated by `dedup` and written by [`crate::layers::write`]; `gold`
//! recomputes the seven facts for those dates; `compact` optimizes the partitions the run
//! rewrote.

pub mod bronze;
pub mod compact;
pub mod dag;
pub(crate) mod dedup;
pub mod error;
pub mod gold;
pub(crate) mod lineage;
pub mod silver;

pub use error::Error;

pub(crate) use crate::scheduler::task::log_info as info;

/// The batch DAG.
pub const DAG_ID: &str = "3-batch_etl_all_streams";

/// Lake path of the `layer` table of `name` (`batch/bronze/api_logs`).
pub fn table_path(layer: &str, name: &str) -> String {
    format!("batch/{layer}/{name}")
}
