//! The serving layer's DAG `4-serving_layer_merge` (every 10 minutes unless `[serving]
//! schedule` says otherwise): `unified_<stream>` for each stream, then `dashboards`, `alerts`
//! and `analytics` over the unified tables, then `upkeep` of every serving table.

use std::sync::Arc;

use super::{DAG_ID, alerts, analytics, dashboards, unified, upkeep};
use crate::scheduler::{Dag, Schedule, TaskPolicy};
use crate::sources::stream::all_streams;

const POLICY: TaskPolicy = TaskPolicy::new(1, 30, 60, 480);

/// The serving DAG with its bodies, firing on the cron `schedule`.
pub fn dag(schedule: &str) -> Result<Dag, String> {
    let mut dag = Dag::new(
        DAG_ID,
        "serving: unified tables (batch ∪ unconsumed speed), dashboards, analytics, alerts, upkeep",
        Schedule::cron(schedule)?,
        1,
    )
    // `unified_<stream>` takes the speed files landed up to the run's logical date; the other
    // tasks read the serving and batch tables only.
    .reading_as_of();
    let mut unified_tasks = Vec::new();
    for spec in all_streams() {
        let task = format!("unified_{}", spec.name);
        dag = dag.task(
            task.clone(),
            &[],
            POLICY,
            Arc::new(unified::Unified { spec }),
        );
        unified_tasks.push(task);
    }
    let after: Vec<&str> = unified_tasks.iter().map(String::as_str).collect();
    // Upkeep comes last: it compacts and vacuums the tables the others have just written, and
    // never runs while they write (runs of one DAG do not overlap).
    Ok(dag
        .task(
            "dashboards",
            &after,
            POLICY,
            Arc::new(dashboards::Dashboards),
        )
        .task("alerts", &after, POLICY, Arc::new(alerts::Alerts))
        .task("analytics", &after, POLICY, Arc::new(analytics::Analytics))
        .task(
            "upkeep",
            &["dashboards", "alerts", "analytics"],
            POLICY,
            Arc::new(upkeep::Upkeep),
        ))
}
