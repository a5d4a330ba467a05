//! The batch layer: the bodies of `3-batch_etl_all_streams`, on Delta Lake tables under
//! `batch/`. A run at D 02:00 UTC consumes the speed-layer files no earlier run consumed
//! (`lineage`) and appends them to `batch/bronze/<stream>` (`bronze`), exactly once per run;
//! `silver` recomputes `batch/silver/<stream>` and `batch/quarantine/<stream>` for the event
//! dates those files touch, de-duplicated by `dedup` and written by [`crate::layers::write`]; `gold`
//! recomputes the seven facts for those dates; `compact` optimizes the partitions the run
//! rewrote.

pub mod bronze;
pub mod compact;
pub mod dedup;
pub mod error;
pub mod gold;
pub mod lineage;
pub mod silver;

use std::sync::Arc;

pub use error::Error;

use crate::scheduler::Registry;
use crate::scheduler::task::TaskLog;
use crate::sources::stream::all_streams;

/// The batch DAG.
pub const DAG_ID: &str = "3-batch_etl_all_streams";

/// Lake path of the `layer` table of `name` (`batch/bronze/api_logs`).
pub fn table_path(layer: &str, name: &str) -> String {
    format!("batch/{layer}/{name}")
}

/// Writes `msg` to `log`, if the operation was given one.
fn info(log: Option<&TaskLog>, msg: impl AsRef<str>) {
    if let Some(log) = log {
        log.info(msg);
    }
}

/// Registers the task bodies this layer provides.
pub fn register(r: &mut Registry) {
    for spec in all_streams() {
        r.register(
            DAG_ID,
            &format!("bronze_{}", spec.name),
            Arc::new(bronze::Bronze { spec }),
        );
        r.register(
            DAG_ID,
            &format!("silver_{}", spec.name),
            Arc::new(silver::Silver { spec }),
        );
    }
    for fact in gold::FACTS {
        r.register(
            DAG_ID,
            &format!("gold_{}", fact.name),
            Arc::new(gold::Gold { fact }),
        );
    }
    r.register(DAG_ID, "compact", Arc::new(compact::Compact));
}
