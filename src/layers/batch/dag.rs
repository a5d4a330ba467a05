//! The batch layer's DAG `3-batch_etl_all_streams` (daily at 02:00 UTC): per stream
//! `bronze_<stream>` >> `silver_<stream>`, per gold fact `silver_<its stream>` >>
//! `gold_<fact>`, and `compact` after every gold task.

use std::sync::{Arc, OnceLock};

use super::{DAG_ID, bronze, compact, gold, silver};
use crate::scheduler::{Dag, Schedule, TaskPolicy};
use crate::sources::stream::all_streams;

/// When the batch runs.
const CRON: &str = "0 2 * * *";

const POLICY: TaskPolicy = TaskPolicy::new(2, 300, 1800, 7200);

/// Tasks of one batch run that execute at once: each already runs its plan on every core
/// (DataFusion partitions); more of them at once only adds memory (sort buffers, Parquet
/// writers).
pub const ACTIVE_TASKS: usize = 2;

/// The batch schedule (also what the serving layer asks to know which batch run consumes a
/// speed-layer file).
pub fn schedule() -> &'static Schedule {
    static SCHEDULE: OnceLock<Schedule> = OnceLock::new();
    SCHEDULE.get_or_init(|| Schedule::cron(CRON).expect("the batch cron is valid (unit-tested)"))
}

/// The batch DAG with its bodies.
pub fn dag() -> Result<Dag, String> {
    let mut dag = Dag::new(
        DAG_ID,
        "daily bronze → silver → gold on Delta Lake for the closed event date",
        Schedule::cron(CRON)?,
        1,
    )
    .max_active_tasks(ACTIVE_TASKS);
    for spec in all_streams() {
        let bronze = format!("bronze_{}", spec.name);
        dag = dag
            .task(
                bronze.clone(),
                &[],
                POLICY,
                Arc::new(bronze::Bronze { spec }),
            )
            .task(
                format!("silver_{}", spec.name),
                &[bronze.as_str()],
                POLICY,
                Arc::new(silver::Silver { spec }),
            );
    }
    let mut gold_tasks = Vec::new();
    for fact in crate::pipeline::active().facts.iter().copied() {
        let task = format!("gold_{}", fact.name);
        let silver = format!("silver_{}", fact.stream);
        dag = dag.task(
            task.clone(),
            &[silver.as_str()],
            POLICY,
            Arc::new(gold::Gold { fact }),
        );
        gold_tasks.push(task);
    }
    // Compaction comes after every write of the run: the facts, and the silver tasks of streams
    // no fact reads.
    let facts = crate::pipeline::active().facts;
    let mut last: Vec<String> = gold_tasks;
    last.extend(
        all_streams()
            .iter()
            .filter(|s| !facts.iter().any(|f| f.stream == s.name))
            .map(|s| format!("silver_{}", s.name)),
    );
    let last: Vec<&str> = last.iter().map(String::as_str).collect();
    Ok(dag.task("compact", &last, POLICY, Arc::new(compact::Compact)))
}
