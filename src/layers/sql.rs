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
/// line; a file and line name one row): silver's de-duplication rule, which the serving layer
/// applies too. The rows' keys alone (id, ingest run, file, line) are sorted by id and landing
/// order; a row is kept when it is the first or its id differs from the row before it (so a
/// null id keeps one row like any other id); then the rows of `input` whose file and line were
/// kept are selected, the kept keys being the join's build side. `input` is read twice, but
/// only four columns are sorted and held. `row_number()` partitioned by id gave the same rows,
/// but DataFusion keeps state per partition, and with ids nearly all distinct it cost about
/// three times the sort; sorting whole rows by one order held a day's rows at once.
pub fn first_landed(id: &str, input: &str) -> String {
    let order = format!("\"{id}\", {}", LANDING_ORDER.join(", "));
    format!(
        "SELECT i.* FROM (\
           SELECT _source_key AS _kept_key, _line AS _kept_line FROM (\
             SELECT \"{id}\", _source_key, _line, lag(\"{id}\") OVER (ORDER BY {order}) AS _prev, \
               row_number() OVER (ORDER BY {order}) AS _rn \
             FROM (SELECT \"{id}\", {landing} FROM ({input}))) \
           WHERE _rn = 1 OR _prev IS DISTINCT FROM \"{id}\") k \
         RIGHT SEMI JOIN ({input}) i ON i._source_key = k._kept_key AND i._line = k._kept_line",
        landing = LANDING_ORDER.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use std::sync::Arc;

    #[tokio::test]
    async fn first_landed_keeps_the_earliest_row_of_each_id_and_one_without_id() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("_ingest_run", DataType::Utf8, false),
            Field::new("_source_key", DataType::Utf8, false),
            Field::new("_line", DataType::Int64, false),
        ]));
        // (id, ingest run, file, line): b lands first in run 1, a in file x before file y of
        // run 2, c once; two rows without an id.
        let rows = [
            (Some("b"), "2", "x", 1),
            (Some("a"), "2", "y", 0),
            (Some("b"), "1", "z", 5),
            (None, "3", "x", 0),
            (Some("a"), "2", "x", 7),
            (None, "1", "x", 9),
            (Some("c"), "3", "w", 1),
        ];
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let sql = format!(
            "SELECT id, _ingest_run, _source_key, _line FROM ({}) ORDER BY id",
            first_landed("id", "SELECT * FROM t")
        );
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let text = deltalake::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let kept: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(
            kept,
            [
                "| id | _ingest_run | _source_key | _line |",
                "| a  | 2           | x           | 7     |",
                "| b  | 1           | z           | 5     |",
                "| c  | 3           | w           | 1     |",
                "|    | 1           | x           | 9     |",
            ],
            "{text}"
        );
    }
}
