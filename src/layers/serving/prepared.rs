//! Queries planned once per process: a dashboard's SQL is the same text at every run, over
//! tables whose rows change (its window `w`, and `today`). Parsing and optimising it again each
//! run was most of a dashboard's cost (its window holds a few thousand rows). A [`Prepared`]
//! query keeps its optimised logical plan over in-memory tables whose rows each run replaces, so
//! a run only makes the physical plan (which reads the rows it is given) and executes it.
//!
//! The plan depends on the SQL text and the tables' schemas, nothing else: the logical
//! optimiser does not look at rows. A schema that changes (a column added to the unified table)
//! plans the query again.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::physical_plan::collect;
use deltalake::datafusion::prelude::SessionContext;

use super::{Error, Result};
use crate::layers::sql;

/// One table a prepared query reads: its name in the SQL, its schema and this run's rows.
pub struct Input {
    /// Name in the SQL.
    pub name: &'static str,
    /// Schema of its rows.
    pub schema: SchemaRef,
    /// This run's rows.
    pub rows: Vec<RecordBatch>,
}

/// A query planned over tables whose rows are replaced before each run of it.
struct Prepared {
    /// The session the plan was made in (its tables are `tables`).
    ctx: SessionContext,
    /// The tables, in the inputs' order (their names are in the key it is held by), with the
    /// schema each was planned for.
    tables: Vec<(SchemaRef, Arc<MemTable>)>,
    /// The optimised logical plan.
    plan: LogicalPlan,
}

impl Prepared {
    /// Plans `sql` over empty tables shaped like `inputs`.
    async fn plan(what: &str, sql_text: &str, inputs: &[Input]) -> Result<Prepared> {
        let ctx = sql::session().map_err(Error::batch)?;
        let mut tables = Vec::with_capacity(inputs.len());
        for i in inputs {
            let table = Arc::new(
                MemTable::try_new(Arc::clone(&i.schema), vec![Vec::new()])
                    .map_err(Error::datafusion(format!("the table {}", i.name)))?,
            );
            ctx.register_table(i.name, Arc::clone(&table) as _)
                .map_err(Error::datafusion(format!("registering {}", i.name)))?;
            tables.push((Arc::clone(&i.schema), table));
        }
        let plan = ctx
            .sql(sql_text)
            .await
            .and_then(|df| df.into_optimized_plan())
            .map_err(Error::datafusion(what))?;
        Ok(Prepared { ctx, tables, plan })
    }

    /// Whether the plan was made for tables of `inputs`' schemas (the same names: the key).
    fn fits(&self, inputs: &[Input]) -> bool {
        self.tables
            .iter()
            .zip(inputs)
            .all(|((schema, _), i)| *schema == i.schema)
    }

    /// Runs the plan over `inputs`' rows.
    async fn run(&self, what: &str, inputs: Vec<Input>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        for ((_, table), input) in self.tables.iter().zip(inputs) {
            *table.batches[0].write().await = input.rows;
        }
        let state = self.ctx.state();
        let ran = async {
            let physical = state
                .query_planner()
                .create_physical_plan(&self.plan, &state)
                .await?;
            collect(physical, self.ctx.task_ctx()).await
        }
        .await;
        // The rows are not kept past the run, whatever its outcome.
        for (_, table) in &self.tables {
            table.batches[0].write().await.clear();
        }
        let mut batches = ran.map_err(Error::datafusion(what))?;
        batches.retain(|b| b.num_rows() > 0);
        Ok((Arc::new(self.plan.schema().as_arrow().clone()), batches))
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Prepared>>>;

/// The prepared queries of this process, by SQL text and table names (one run at a time each).
static PREPARED: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Default::default);

/// Runs `sql_text` (`what`, for errors) over `inputs` (each registered under its name), planned
/// once per process and again only when an input's schema changes. Returns the result's schema
/// and its non-empty batches, as [`super::collect`] does.
pub async fn run(
    what: &str,
    sql_text: &str,
    inputs: Vec<Input>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut key = sql_text.to_string();
    for i in &inputs {
        key.push('\u{0}');
        key.push_str(i.name);
    }
    let slot = {
        let mut m = PREPARED.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry(key).or_default())
    };
    let mut held = slot.lock().await;
    let prepared = match held.take() {
        Some(p) if p.fits(&inputs) => p,
        _ => Prepared::plan(what, sql_text, &inputs).await?,
    };
    let ran = prepared.run(what, inputs).await;
    *held = Some(prepared);
    ran
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    fn batch(schema: &SchemaRef, keys: &[&str], values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    async fn rows_of(sql: &str, schema: &SchemaRef, rows: Vec<RecordBatch>) -> Vec<String> {
        let (_, out) = run(
            "a test query",
            sql,
            vec![Input {
                name: "w",
                schema: Arc::clone(schema),
                rows,
            }],
        )
        .await
        .unwrap();
        let mut lines = Vec::new();
        for b in &out {
            let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let v = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                lines.push(format!("{}={}", k.value(i), v.value(i)));
            }
        }
        lines
    }

    #[tokio::test]
    async fn each_run_reads_its_own_rows_and_a_new_schema_plans_again() {
        let sql = "SELECT k, sum(v) AS v FROM w GROUP BY k ORDER BY k";
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let first = rows_of(
            sql,
            &schema,
            vec![batch(&schema, &["a", "b", "a"], &[1, 2, 3])],
        )
        .await;
        assert_eq!(first, ["a=4", "b=2"]);
        // The same plan, other rows: nothing of the first run's is left.
        let second = rows_of(sql, &schema, vec![batch(&schema, &["c"], &[5])]).await;
        assert_eq!(second, ["c=5"]);
        assert!(rows_of(sql, &schema, Vec::new()).await.is_empty());
        // A column added: planned again, the result is the same query's.
        let wider = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
            Field::new("x", DataType::Int64, true),
        ]));
        let b = RecordBatch::try_new(
            Arc::clone(&wider),
            vec![
                Arc::new(StringArray::from(vec!["d", "d"])),
                Arc::new(Int64Array::from(vec![1, 1])),
                Arc::new(Int64Array::from(vec![None, Some(7)])),
            ],
        )
        .unwrap();
        assert_eq!(rows_of(sql, &wider, vec![b]).await, ["d=2"]);
    }
}
