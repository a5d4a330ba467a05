//! Queries planned once per process: a dashboard's or an alert rule's SQL is the same text at
//! every run, over tables whose rows change (its window `w`, `today`, a rule's `params`).
//! Parsing, optimising and physically planning it again each run was most of a dashboard's
//! cost (its window holds a few thousand rows). A [`Prepared`] query keeps its optimised logical
//! plan and its physical plan over in-memory tables whose rows each run replaces; a run resets
//! the physical plan's state ([`reset_plan_states`], as DataFusion does to run a recursive
//! query's plan again) and executes it.
//!
//! The plans depend on the SQL text and the tables' schemas, nothing else: the tables give the
//! planners no statistics (a plan made from row counts would be wrong for the next run's rows),
//! and dynamic filters, which a plan cannot be run again with, are off. A schema that changes
//! (a column added to the unified table) plans the query again.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::physical_plan::execution_plan::reset_plan_states;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, collect};
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

/// The rows of one table of a prepared query, read when its plan executes (one partition).
#[derive(Debug)]
struct Rows {
    schema: SchemaRef,
    rows: Mutex<Vec<RecordBatch>>,
}

impl Rows {
    fn set(&self, rows: Vec<RecordBatch>) {
        *self.rows.lock().unwrap_or_else(|p| p.into_inner()) = rows;
    }
}

impl PartitionStream for Rows {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(rows.into_iter().map(Ok)),
        ))
    }
}

/// A query planned over tables whose rows are replaced before each run of it.
struct Prepared {
    /// The session the plan was made in (its tables are `tables`).
    ctx: SessionContext,
    /// The tables, in the inputs' order (their names are in the key it is held by).
    tables: Vec<Arc<Rows>>,
    /// The optimised logical plan.
    plan: LogicalPlan,
    /// The physical plan, once made (by the first run).
    physical: Option<Arc<dyn ExecutionPlan>>,
}

impl Prepared {
    /// Plans `sql` over empty tables shaped like `inputs`.
    async fn plan(what: &str, sql_text: &str, inputs: &[Input]) -> Result<Prepared> {
        let ctx = super::session()?;
        sql::set_options(&ctx, |o| {
            o.optimizer.enable_dynamic_filter_pushdown = false;
            o.optimizer.enable_topk_dynamic_filter_pushdown = false;
            o.optimizer.enable_join_dynamic_filter_pushdown = false;
            o.optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        });
        let mut tables = Vec::with_capacity(inputs.len());
        for i in inputs {
            let rows = Arc::new(Rows {
                schema: Arc::clone(&i.schema),
                rows: Mutex::new(Vec::new()),
            });
            let table = StreamingTable::try_new(
                Arc::clone(&i.schema),
                vec![Arc::clone(&rows) as Arc<dyn PartitionStream>],
            )
            .map_err(Error::datafusion(format!("the table {}", i.name)))?;
            ctx.register_table(i.name, Arc::new(table))
                .map_err(Error::datafusion(format!("registering {}", i.name)))?;
            tables.push(rows);
        }
        let plan = ctx
            .sql(sql_text)
            .await
            .and_then(|df| df.into_optimized_plan())
            .map_err(Error::datafusion(what))?;
        Ok(Prepared {
            ctx,
            tables,
            plan,
            physical: None,
        })
    }

    /// Whether the plan was made for tables of `inputs`' schemas (the same names: the key).
    fn fits(&self, inputs: &[Input]) -> bool {
        self.tables
            .iter()
            .zip(inputs)
            .all(|(table, i)| table.schema == i.schema)
    }

    /// Runs the plan over `inputs`' rows.
    async fn run(
        &mut self,
        what: &str,
        inputs: Vec<Input>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        for (table, input) in self.tables.iter().zip(inputs) {
            table.set(input.rows);
        }
        let ran = async {
            let physical = match self.physical.take() {
                Some(p) => reset_plan_states(p)?,
                None => {
                    let state = self.ctx.state();
                    state
                        .query_planner()
                        .create_physical_plan(&self.plan, &state)
                        .await?
                }
            };
            self.physical = Some(Arc::clone(&physical));
            collect(physical, self.ctx.task_ctx()).await
        }
        .await;
        // The rows are not kept past the run, whatever its outcome.
        for table in &self.tables {
            table.set(Vec::new());
        }
        let mut batches = ran.map_err(Error::datafusion(what))?;
        batches.retain(|b| b.num_rows() > 0);
        Ok((Arc::new(self.plan.schema().as_arrow().clone()), batches))
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Prepared>>>;

/// The prepared queries of this process, by SQL text and table names (one run at a time each).
static PREPARED: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Default::default);

/// The slot of the query `sql_text` over tables named as `inputs`.
fn slot(sql_text: &str, inputs: &[Input]) -> Slot {
    let mut key = sql_text.to_string();
    for i in inputs {
        key.push('\u{0}');
        key.push_str(i.name);
    }
    let mut m = PREPARED.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(m.entry(key).or_default())
}

/// The plan in `held`, made (again) unless it fits `inputs`.
async fn planned(
    held: &mut Option<Prepared>,
    what: &str,
    sql_text: &str,
    inputs: &[Input],
) -> Result<Prepared> {
    match held.take() {
        Some(p) if p.fits(inputs) => Ok(p),
        _ => Prepared::plan(what, sql_text, inputs).await,
    }
}

/// Runs `sql_text` (`what`, for errors) over `inputs` (each registered under its name), planned
/// once per process and again only when an input's schema changes. Returns the result's schema
/// and its non-empty batches, as [`super::collect`] does.
pub async fn run(
    what: &str,
    sql_text: &str,
    inputs: Vec<Input>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let slot = slot(sql_text, &inputs);
    let mut held = slot.lock().await;
    let mut prepared = planned(&mut held, what, sql_text, &inputs).await?;
    let ran = prepared.run(what, inputs).await;
    *held = Some(prepared);
    ran
}

/// The schema of the rows `sql_text` gives over tables of `inputs`' schemas (their rows are not
/// read), from the same plan [`run`] keeps.
pub async fn output_schema(what: &str, sql_text: &str, inputs: &[Input]) -> Result<SchemaRef> {
    let slot = slot(sql_text, inputs);
    let mut held = slot.lock().await;
    let prepared = planned(&mut held, what, sql_text, inputs).await?;
    let schema = Arc::new(prepared.plan.schema().as_arrow().clone());
    *held = Some(prepared);
    Ok(schema)
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

    #[tokio::test]
    async fn a_plan_run_again_reads_nothing_of_the_run_before() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        // A count (which a planner may take from row counts), a top-N (whose sort may filter
        // its input by the best rows seen) and a join of the table with itself.
        let count = "SELECT 'n' AS k, count(*) AS v FROM w";
        let top = "SELECT k, v FROM w ORDER BY v DESC, k LIMIT 2";
        let join =
            "SELECT a.k, sum(b.v) AS v FROM w a JOIN w b ON a.k = b.k GROUP BY a.k ORDER BY a.k";
        let runs: [(&[&str], &[i64]); 3] = [
            (&["a", "b", "c"], &[9, 8, 7]),
            (&["d", "e"], &[1, 2]),
            (&["f", "a", "f", "g"], &[3, 30, 4, 5]),
        ];
        for (keys, values) in runs {
            let rows = || vec![batch(&schema, keys, values)];
            let n = keys.len() as i64;
            assert_eq!(rows_of(count, &schema, rows()).await, [format!("n={n}")]);
            let mut by_value: Vec<(i64, &str)> =
                values.iter().copied().zip(keys.iter().copied()).collect();
            by_value.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            let expected: Vec<String> = by_value
                .iter()
                .take(2)
                .map(|(v, k)| format!("{k}={v}"))
                .collect();
            assert_eq!(rows_of(top, &schema, rows()).await, expected);
            let mut sums: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
            for (k, v) in keys.iter().zip(values) {
                let e = sums.entry(k).or_default();
                e.0 += 1;
                e.1 += v;
            }
            let expected: Vec<String> = sums
                .iter()
                .map(|(k, (c, s))| format!("{k}={}", c * s))
                .collect();
            assert_eq!(rows_of(join, &schema, rows()).await, expected);
        }
    }
}
