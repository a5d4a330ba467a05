//! Writes from DataFusion plans through deltalake's writer ([`write_plan`], [`replace_dates`])
//! and commits of prepared actions ([`commit`]).

use std::sync::Arc;

use delta_kernel::expressions::Scalar;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, FinalizedCommit};
use deltalake::kernel::{Action, Add};
use deltalake::protocol::DeltaOperation;
use deltalake::protocol::SaveMode;
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use deltalake::{DeltaResult, DeltaTable};
use futures::TryStreamExt as _;
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
        &[],
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
    Ok(commit_finalized(table, actions, operation, props)
        .await?
        .version())
}

/// [`commit`], returning the finalized commit (its snapshot brings the table up to date).
async fn commit_finalized(
    table: &DeltaTable,
    actions: Vec<Action>,
    operation: DeltaOperation,
    props: CommitProperties,
) -> DeltaResult<FinalizedCommit> {
    CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await
}

/// What [`write_batches`] replaces.
#[derive(Debug, Clone, Copy)]
pub enum Replace<'a> {
    /// Nothing: the rows are appended (partitioned by `date`).
    Nothing,
    /// These `date` partitions (replace-where).
    Dates(&'a [String]),
    /// Every file: the rows are the table's new content (a snapshot), of the table's schema.
    All,
}

/// Writes `batches` (of the table's columns, in any Arrow types that cast to its own) to
/// `table` in one Delta commit carrying `props`, replacing what `replace` says: written by
/// deltalake's record-batch writer with [`parquet_properties_for`] the table's schema, files
/// rolled at the target size, without planning them as a query (which cost more than writing
/// the few rows of a serving run). The commit is made even without rows, so that its `props`
/// are recorded. Returns the table at the new version.
pub async fn write_batches(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    replace: Replace<'_>,
    props: CommitProperties,
) -> DeltaResult<DeltaTable> {
    let mut writer = RecordBatchWriter::for_table(&table)?;
    let schema = writer.arrow_schema();
    writer = writer
        .with_writer_properties(parquet_properties_for(&schema).build())
        .with_target_file_size(TARGET_FILE_BYTES);
    for b in batches {
        if b.num_rows() > 0 {
            writer.write(conform(&b, &schema)?).await?;
        }
    }
    let adds = writer.flush().await?;
    let finalized = commit_adds(&table, adds, replace, props).await?;
    let mut table = table;
    table.state = Some(finalized.snapshot());
    Ok(table)
}

/// Commits the files `adds` to `table` with `props`, removing the files `replace` says (those
/// of its dates, or all), as a Delta write (append, replace-where or overwrite), against the
/// snapshot `table` was read at.
pub async fn commit_adds(
    table: &DeltaTable,
    adds: Vec<Add>,
    replace: Replace<'_>,
    props: CommitProperties,
) -> DeltaResult<FinalizedCommit> {
    let snapshot = table.snapshot()?;
    let partition_by = snapshot.metadata().partition_columns().to_vec();
    let mut actions: Vec<Action> = match replace {
        Replace::Nothing => Vec::new(),
        Replace::Dates(_) | Replace::All => {
            let log_store = table.log_store();
            snapshot
                .snapshot()
                .file_views(log_store.as_ref(), None)
                .try_filter_map(|f| async move {
                    let replaced = match replace {
                        Replace::Dates(dates) => f
                            .partition_values_map()
                            .get("date")
                            .cloned()
                            .flatten()
                            .is_some_and(|d| dates.contains(&d)),
                        _ => true,
                    };
                    Ok(replaced.then(|| Action::Remove(f.remove_action(true))))
                })
                .try_collect()
                .await?
        }
    };
    actions.extend(adds.into_iter().map(Action::Add));
    let operation = DeltaOperation::Write {
        mode: match replace {
            Replace::Nothing => SaveMode::Append,
            _ => SaveMode::Overwrite,
        },
        partition_by: (!partition_by.is_empty()).then_some(partition_by),
        predicate: match replace {
            Replace::Dates(dates) => Some(in_dates(dates)),
            _ => None,
        },
    };
    commit_finalized(table, actions, operation, props).await
}

/// `b`'s columns in `schema`'s order and types: taken by name (the table's order may differ
/// after columns were added), cast where the Arrow type differs (a string view for a string,
/// say); a column `b` lacks is an error.
pub fn conform(b: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if b.schema().fields() == schema.fields() {
        return Ok(b.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = b.column_by_name(f.name()).ok_or_else(|| {
                ArrowError::SchemaError(format!("the rows have no column {}", f.name()))
            })?;
            match c.data_type() == f.data_type() {
                true => Ok(Arc::clone(c)),
                false => cast(c, f.data_type()),
            }
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
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
/// [`parquet_properties_for`] its schema, files rolled at the optimizer's target size. A
/// write that creates the table gives it the table properties `created` (`delta.*` keys).
pub async fn write_plan(
    table: DeltaTable,
    df_ctx: &SessionContext,
    plan: LogicalPlan,
    mode: Write<'_>,
    props: CommitProperties,
    created: &[(&str, String)],
) -> DeltaResult<DeltaTable> {
    let writer_properties = parquet_properties_for(plan.schema().as_arrow()).build();
    let write = table
        .write(Vec::new())
        .with_configuration(created.iter().map(|(k, v)| (*k, Some(v.as_str()))))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::sql::count_by_date;
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::kernel::{DataType as DeltaType, StructField};

    /// Rows `(id, date)` with the columns in the opposite order of the table's and the id as a
    /// 32-bit integer (cast to the table's `long`).
    fn rows(rows: &[(i32, &str)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Utf8, false),
            Field::new("id", DataType::Int32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(deltalake::arrow::array::Int32Array::from_iter_values(
                    rows.iter().map(|r| r.0),
                )),
            ],
        )
        .unwrap()
    }

    async fn counts(store: &Store, path: &str, dates: &[String]) -> Vec<u64> {
        count_by_date(store, path, dates)
            .await
            .unwrap()
            .into_values()
            .collect()
    }

    #[tokio::test]
    async fn batches_append_replace_dates_or_everything_in_one_commit_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let path = "serving/t";
        let table = store.delta_table_or_new(path).await.unwrap();
        let fields = vec![
            StructField::new("id", DeltaType::LONG, true),
            StructField::new("date", DeltaType::STRING, true),
        ];
        let table = store.create_dated_table(table, path, fields).await.unwrap();
        let v0 = table.version().unwrap();
        let dates = ["2026-02-01".to_string(), "2026-02-02".to_string()];

        let table = write_batches(
            table,
            vec![rows(&[
                (1, "2026-02-01"),
                (2, "2026-02-02"),
                (3, "2026-02-02"),
            ])],
            Replace::Nothing,
            CommitProperties::default(),
        )
        .await
        .unwrap();
        assert_eq!(table.version(), Some(v0 + 1));
        assert_eq!(counts(&store, path, &dates).await, [1, 2]);

        // Replace one date: the other keeps its rows.
        let table = write_batches(
            table,
            vec![rows(&[(4, "2026-02-02")])],
            Replace::Dates(&dates[1..]),
            CommitProperties::default(),
        )
        .await
        .unwrap();
        assert_eq!(counts(&store, path, &dates).await, [1, 1]);

        // Nothing to append: still a commit.
        let table = write_batches(
            table,
            Vec::new(),
            Replace::Nothing,
            CommitProperties::default(),
        )
        .await
        .unwrap();
        assert_eq!(table.version(), Some(v0 + 3));
        assert_eq!(counts(&store, path, &dates).await, [1, 1]);

        // Replace everything.
        let table = write_batches(
            table,
            vec![rows(&[(5, "2026-02-01"), (6, "2026-02-01")])],
            Replace::All,
            CommitProperties::default(),
        )
        .await
        .unwrap();
        assert_eq!(table.version(), Some(v0 + 4));
        assert_eq!(counts(&store, path, &dates).await, [2, 0]);

        // Rows without a column of the table are refused, nothing is committed.
        let no_date = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![7]))],
        )
        .unwrap();
        let refused = write_batches(
            table,
            vec![no_date],
            Replace::Nothing,
            CommitProperties::default(),
        )
        .await
        .unwrap_err();
        assert!(refused.to_string().contains("no column date"), "{refused}");
        let table = store.delta_table(path).await.unwrap().unwrap();
        assert_eq!(table.version(), Some(v0 + 4));
    }
}
