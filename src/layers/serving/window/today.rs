//! What a window keeps of `today` beyond its other windows.
//!
//! A dashboard that reads `today` makes its stream's window start at midnight, so by the end of
//! a day the window would hold every row of the day and each run would scan them all — a cost
//! and a memory that grow with the day. But such a query rarely reads every row of `today`: the
//! seed's revenue dashboards read its `checkout_complete` rows, about 1 % of the clickstream.
//!
//! DataFusion says which rows a query reads: planned over a table that accepts every filter as
//! *inexact*, the optimiser pushes into each scan of `today` the predicates that the query's
//! result does not change by (a scan may return rows that fail them, never drop rows that pass
//! them). The rows older than every other window of the stream (`w` of each dashboard and alert
//! rule) are seen only through `today`, so of those a window keeps only the rows that pass the
//! disjunction of those predicates; every query gives what it gave over all the rows. There is
//! no such predicate, and everything is kept, when a scan of `today` has no filter or a query
//! calls a function whose value is not fixed by its arguments (`now()`, `random()`).

use std::sync::Arc;

use deltalake::arrow::array::{Array as _, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::{Column, DFSchema};
use deltalake::datafusion::error::Result as DfResult;
use deltalake::datafusion::logical_expr::utils::{conjunction, disjunction};
use deltalake::datafusion::logical_expr::{
    Expr, LogicalPlan, TableProviderFilterPushDown, TableType, Volatility,
};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::empty::EmptyExec;
use deltalake::datafusion::prelude::SessionContext;

/// The rows of `today` that the queries reading it can read (see the module).
#[derive(Debug, Clone)]
pub(super) struct TodayFilter {
    /// The disjunction of the predicates pushed into the queries' scans of `today`.
    predicate: Arc<dyn PhysicalExpr>,
}

impl TodayFilter {
    /// The filter of the queries `sqls` reading `today` (schema `schema`), or `None` if one of
    /// them may read every row of it (or does not plan).
    pub(super) async fn of(sqls: &[&str], schema: &SchemaRef) -> Option<TodayFilter> {
        let ctx = crate::layers::serving::session().ok()?;
        for name in ["w", "today"] {
            let probe = Arc::new(Probe(Arc::clone(schema)));
            ctx.register_table(name, probe).ok()?;
        }
        let mut each = Vec::with_capacity(sqls.len());
        for sql in sqls {
            each.push(pushed_into_today(&ctx, sql).await?);
        }
        let predicate = unqualified(disjunction(each)?)?;
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).ok()?;
        let predicate = ctx.create_physical_expr(predicate, &df_schema).ok()?;
        Some(TodayFilter { predicate })
    }

    /// The rows of `b` that a window at a time whose other windows start at `full_from`
    /// (micros) keeps: those with event time at or after it, and the older ones that pass the
    /// predicate. Pruning only saves work: a batch it cannot judge (no microsecond event time,
    /// a predicate that fails on its rows) is kept whole, as the queries would read it.
    pub(super) fn keep(&self, b: &RecordBatch, full_from: i64) -> RecordBatch {
        let Some(recent) = b
            .column_by_name("event_time")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        else {
            return b.clone();
        };
        let passed = match self
            .predicate
            .evaluate(b)
            .and_then(|v| v.into_array(b.num_rows()))
        {
            Ok(passed) => passed,
            Err(e) => {
                tracing::debug!(error = %e, "today's predicate failed on window rows: kept whole");
                return b.clone();
            }
        };
        let Some(passed) = passed.as_any().downcast_ref::<BooleanArray>() else {
            return b.clone();
        };
        let mask: BooleanArray = (0..b.num_rows())
            .map(|i| {
                let is_recent = recent.is_valid(i) && recent.value(i) >= full_from;
                Some(is_recent || (passed.is_valid(i) && passed.value(i)))
            })
            .collect();
        filter_record_batch(b, &mask).unwrap_or_else(|_| b.clone())
    }
}

/// The conjunction of the predicates the optimiser pushes into `sql`'s scans of `today`, or
/// `None` if a scan takes none or the query's value may change from call to call.
async fn pushed_into_today(ctx: &SessionContext, sql: &str) -> Option<Expr> {
    let df = ctx.sql(sql).await.ok()?;
    if !fixed_by_arguments(df.logical_plan()) {
        return None;
    }
    let plan = df.into_optimized_plan().ok()?;
    let mut scans: Vec<Option<Expr>> = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == "today"
        {
            scans.push(conjunction(scan.filters.iter().cloned()));
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .ok()?;
    // A query that names `today` and has no scan of it (a plan this does not understand) keeps
    // everything, as does a scan without a filter.
    let each: Option<Vec<Expr>> = scans.into_iter().collect();
    disjunction(each?)
}

/// Whether every function `plan` calls is immutable (its value fixed by its arguments), and it
/// has no placeholder: a pushed predicate with `now()` folded in would hold only at planning.
fn fixed_by_arguments(plan: &LogicalPlan) -> bool {
    let mut fixed = true;
    let walked = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let changing = match e {
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility != Volatility::Immutable
                    }
                    Expr::Placeholder(_) => true,
                    _ => false,
                };
                if changing {
                    fixed = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    walked.is_ok() && fixed
}

/// `e` with its columns unqualified (`today.x` → `x`): it is evaluated over the window's rows.
fn unqualified(e: Expr) -> Option<Expr> {
    e.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
            c.name,
        )))),
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
    .ok()
}

/// A table that is only planned over, never scanned: it takes every filter as inexact, so the
/// optimiser pushes into its scans every predicate it may.
#[derive(Debug)]
struct Probe(SchemaRef);

#[async_trait::async_trait]
impl TableProvider for Probe {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(EmptyExec::new(Arc::clone(&self.0))))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::serving::dashboards::SEED_DASHBOARDS;
    use deltalake::arrow::array::{Float64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("session_id", DataType::Utf8, true),
            Field::new("event_type", DataType::Utf8, true),
            Field::new("cart_value", DataType::Float64, true),
            Field::new("_source", DataType::Utf8, true),
        ]))
    }

    /// Rows at times 1..=4 (micros): a page view, a checkout, a cart add, a checkout.
    fn rows() -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![1, 2, 3, 4]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["s1", "s2", "s3", "s4"])),
                Arc::new(StringArray::from(vec![
                    "page_view",
                    "checkout_complete",
                    "add_to_cart",
                    "checkout_complete",
                ])),
                Arc::new(Float64Array::from(vec![None, Some(10.0), None, Some(5.0)])),
                Arc::new(StringArray::from(vec!["speed"; 4])),
            ],
        )
        .unwrap()
    }

    fn times(b: &RecordBatch) -> Vec<i64> {
        b.column_by_name("event_time")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[tokio::test]
    async fn the_seed_revenue_dashboards_read_only_checkouts_of_today() {
        let sqls: Vec<&str> = SEED_DASHBOARDS
            .iter()
            .filter(|d| d.stream == "ecommerce_clickstream" && super::super::reads_today(d.sql))
            .map(|d| d.sql)
            .collect();
        assert_eq!(sqls.len(), 2, "the KPIs and the revenue through the day");
        let f = TodayFilter::of(&sqls, &schema())
            .await
            .expect("a predicate");
        // Before 4 only the checkout is kept; from 4 on every row.
        assert_eq!(times(&f.keep(&rows(), 4)), vec![2, 4]);
        assert_eq!(times(&f.keep(&rows(), 3)), vec![2, 3, 4]);
        assert_eq!(times(&f.keep(&rows(), 0)), vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_query_that_may_read_every_row_of_today_keeps_everything() {
        let s = schema();
        let unfiltered = "SELECT count(*) AS n FROM today";
        assert!(TodayFilter::of(&[unfiltered], &s).await.is_none());
        // One query reading all of it is enough, whatever the others filter.
        let checkouts = "SELECT count(*) AS n FROM today WHERE event_type = 'checkout_complete'";
        assert!(TodayFilter::of(&[checkouts], &s).await.is_some());
        assert!(
            TodayFilter::of(&[checkouts, unfiltered], &s)
                .await
                .is_none()
        );
        // A filter on an aggregate is no filter on the rows.
        let having = "SELECT event_type FROM today GROUP BY event_type HAVING count(*) > 1";
        assert!(TodayFilter::of(&[having], &s).await.is_none());
        // A predicate with the clock in it holds only when planned.
        let clock = "SELECT count(*) AS n FROM today WHERE event_time > now() - INTERVAL '1 hour'";
        assert!(TodayFilter::of(&[clock], &s).await.is_none());
        // A query that does not plan keeps everything (it fails on its own).
        assert!(
            TodayFilter::of(&["SELECT nope FROM today"], &s)
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn scans_of_today_in_one_query_are_kept_together() {
        let sql = "SELECT session_id FROM today WHERE event_type = 'page_view'
                   UNION ALL SELECT session_id FROM today WHERE cart_value > 6";
        let f = TodayFilter::of(&[sql], &schema())
            .await
            .expect("a predicate");
        assert_eq!(times(&f.keep(&rows(), 100)), vec![1, 2]);
    }

    #[tokio::test]
    async fn rows_the_predicate_cannot_judge_are_kept() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("n", DataType::Int64, true),
        ]));
        let sql = "SELECT count(*) AS c FROM today WHERE 10 / n > 1";
        let f = TodayFilter::of(&[sql], &schema).await.expect("a predicate");
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![1, 2, 3]).with_timezone("UTC")),
                Arc::new(deltalake::arrow::array::Int64Array::from(vec![1, 20, 5])),
            ],
        )
        .unwrap();
        // 10 / 20 = 0 fails the predicate: dropped.
        assert_eq!(times(&f.keep(&b, 100)), vec![1, 3]);
        // A division by zero fails the predicate's evaluation: the batch is kept whole.
        let zero = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![1, 2]).with_timezone("UTC")),
                Arc::new(deltalake::arrow::array::Int64Array::from(vec![0, 20])),
            ],
        )
        .unwrap();
        assert_eq!(times(&f.keep(&zero, 100)), vec![1, 2]);
    }
}
