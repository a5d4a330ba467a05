//! Writes from DataFusion plans through deltalake's writer ([`write_plan`], [`replace_dates`])
//! and commits of prepared actions ([`commit`]).

use std::sync::Arc;

use delta_kernel::expressions::Scalar;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::DeltaOperation;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaResult, DeltaTable};
use indexmap::IndexMap;

use super::parquet::{TARGET_FILE_BYTES, parquet_properties_for};
use crate::layers::sql::in_dates;
use crate::store::Store;

/// Replaces the `dates` partitions of the table at `path` (created, partitioned by `date`, if
/// missing) with the rows of `plan`, planned and run in `df_ctx`, in one Delta commit
/// (replace-where): how silver, quarantine and gold recompute the dates a run touched.
pub async fn replace_dates(
    store: &Store,
    path: &str,
    df_ctx: &SessionContext,
    plan: LogicalPlan,
    dates: &[String],
) -> DeltaResult<DeltaTable> {
    write_plan(
        store.delta_table_or_new(path).await?,
        df_ctx,
        plan,
        Write::ReplaceDates(dates),
        CommitProperties::default(),
    )
    .await
}

/// The partition values of date partition `d`, as deltalake's writers take them.
pub fn date_partition(d: &str) -> IndexMap<String, Scalar> {
    IndexMap::from([("date".to_string(), Scalar::String(d.to_string()))])
}

/// Commits `actions` to `table` as `operation`, with `props`, against the snapshot `table` was
/// read at (deltalake checks the commits made since for conflicts); returns the new version.
pub async fn commit(
    table: &DeltaTable,
    actions: Vec<Action>,
    operation: DeltaOperation,
    props: CommitProperties,
) -> DeltaResult<u64> {
    let finalized = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    Ok(finalized.version())
}

/// How [`write_plan`] writes.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// Add the rows (partitioned by `date`).
    Append,
    /// Replace these `date` partitions (replace-where).
    ReplaceDates(&'a [String]),
}
/// Writes the rows of `plan`, planned and run in `df_ctx`, to `table` (see
/// [`Store::delta_table_or_new`]) in one Delta commit carrying `props`, with
/// [`parquet_properties_for`] its schema, files rolled at the optimizer's target size.
pub async fn write_plan(
    table: DeltaTable,
    df_ctx: &SessionContext,
    plan: LogicalPlan,
    mode: Write<'_>,
    props: CommitProperties,
) -> DeltaResult<DeltaTable> {
    let writer_properties = parquet_properties_for(plan.schema().as_arrow()).build();
    let write = table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(df_ctx.state()))
        .with_commit_properties(props)
        .with_writer_properties(writer_properties)
        .with_target_file_size(std::num::NonZeroU64::new(TARGET_FILE_BYTES));
    match mode {
        Write::Append => {
            write
                .with_partition_columns(["date"])
                .with_save_mode(SaveMode::Append)
                .await
        }
        Write::ReplaceDates(dates) => {
            write
                .with_partition_columns(["date"])
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(in_dates(dates))
                .await
        }
    }
}
