//! SQL and DataFusion helpers the layers share: the session every plan runs in, the `date IN`
//! predicate, the first-landed de-duplication as SQL, and row counts per date.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::DeltaTableError;
use deltalake::arrow::array::{Int64Array, StringArray};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::config::ConfigOptions;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::DeltaSessionContext;

use crate::layers::clean::LANDING_ORDER;
use crate::store::{Store, register_delta};

/// Memory DataFusion may use before sorts and aggregates spill to disk.
pub const MEMORY_LIMIT: usize = 512 << 20;

/// Why a count failed: reading the table, or querying it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening the Delta table.
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
    /// Planning or running the query.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Reading its result.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// A DataFusion session with deltalake's planner (for writes from plans) and a memory limit
/// (sorts and aggregates spill to disk beyond it, where they can).
pub fn session() -> Result<SessionContext, DataFusionError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(MEMORY_LIMIT)))
        .build_arc()?;
    Ok(DeltaSessionContext::with_runtime_env(runtime).into_inner())
}

/// Changes the options of the session of `ctx` (for the plans made after).
pub fn set_options(ctx: &SessionContext, change: impl FnOnce(&mut ConfigOptions)) {
    change(ctx.state_ref().write().config_mut().options_mut());
}

/// SQL keeping, of the rows of `input`, the first landed one of each `id` (by ingest run, file,
/// line): silver's de-duplication rule, which the serving layer applies too.
pub fn first_landed(id: &str, input: &str) -> String {
    format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY \"{id}\" ORDER BY {order}) AS _rn FROM ({input})) WHERE _rn = 1",
        order = LANDING_ORDER.join(", ")
    )
}

/// SQL predicate `date IN (…)`.
pub fn in_dates(dates: &[String]) -> String {
    let list: Vec<String> = dates.iter().map(|d| format!("'{d}'")).collect();
    format!("date IN ({})", list.join(", "))
}

/// Count of rows per date of the table at `path` for `dates`.
pub async fn count_by_date(
    store: &Store,
    path: &str,
    dates: &[String],
) -> Result<BTreeMap<String, u64>, Error> {
    let mut out: BTreeMap<String, u64> = dates.iter().map(|d| (d.clone(), 0)).collect();
    let Some(table) = store.delta_table(path).await? else {
        return Ok(out);
    };
    let ctx = SessionContext::new();
    register_delta(&ctx, "t", &table).await?;
    let batches = ctx
        .sql(&format!(
            "SELECT date, count(*) AS n FROM t WHERE {} GROUP BY date",
            in_dates(dates)
        ))
        .await?
        .collect()
        .await?;
    for b in batches {
        let d = deltalake::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let n = deltalake::arrow::compute::cast(b.column(1), &DataType::Int64)?;
        let d = d.as_any().downcast_ref::<StringArray>();
        let n = n.as_any().downcast_ref::<Int64Array>();
        if let (Some(d), Some(n)) = (d, n) {
            for i in 0..b.num_rows() {
                out.insert(d.value(i).to_string(), n.value(i) as u64);
            }
        }
    }
    Ok(out)
}
