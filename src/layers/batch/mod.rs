//! The batch layer: the bodies of `3-batch_etl_all_streams`, on Delta Lake tables under
//! `batch/`. A run at D 02:00 UTC consumes the speed-layer files no earlier run consumed
//! (`lineage`) and appends them to `batch/bronze/<stream>` (`bronze`), exactly once per run;
//! `silver` recomputes `batch/silver/<stream>` and `batch/quarantine/<stream>` for the event
//! dates those files touch, de-duplicated by `dedup` and written by `replace`; `gold`
//! recomputes the seven facts for those dates; `compact` optimizes the partitions the run
//! rewrote.

pub mod bronze;
pub mod compact;
pub mod dag;
pub mod dedup;
pub mod gold;
pub mod lineage;
pub mod replace;
pub mod silver;

use std::sync::Arc;

use delta_kernel::expressions::Scalar;
use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::DeltaOperation;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaResult, DeltaTable};
use indexmap::IndexMap;

use crate::sources::stream::{Kind, Spread, all_streams};
use crate::store::Store;

/// The batch DAG.
pub const DAG_ID: &str = "3-batch_etl_all_streams";

/// Lake path of the `layer` table of `name` (`batch/bronze/api_logs`).
pub fn table_path(layer: &str, name: &str) -> String {
    format!("batch/{layer}/{name}")
}

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
) -> anyhow::Result<u64> {
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
    /// Replace the whole table (not partitioned): snapshots such as dashboards.
    Overwrite,
}

/// Rows per Parquet row group of the lake's tables: a writer holds one row group in memory
/// before it goes out (Parquet's default, 1 Mi rows, is hundreds of MiB of raw lines).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Parquet settings of every file the layers write: Snappy (deltalake's default) in row groups
/// of [`ROW_GROUP_ROWS`].
pub fn parquet_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
}

/// How a column of this name and type spreads ([`Spread`]): floats, timestamps, line numbers
/// and integers whose declared range is wide are distinct; the streams' ids and the fields
/// they declare random are random, and those they declare distinct are distinct.
fn spread(name: &str, ty: &DataType) -> Spread {
    if matches!(
        ty,
        DataType::Float32 | DataType::Float64 | DataType::Timestamp(..)
    ) || name == "_line"
    {
        return Spread::Distinct;
    }
    let declared = all_streams().into_iter().flat_map(|s| {
        let id = (s.id_field == name).then_some(Spread::Random);
        let fields = s
            .fields
            .iter()
            .filter(|f| f.name == name)
            .map(|f| match f.kind {
                Kind::Int { min, max } if i128::from(max) - i128::from(min) > 1 << 16 => {
                    Spread::Distinct
                }
                _ => f.spread,
            });
        id.into_iter().chain(fields)
    });
    // A name shared by streams is stored for its most distinct use.
    declared.max().unwrap_or(Spread::Repeated)
}

/// [`parquet_properties`] for files of this schema, by each column's [`spread`]: no dictionary
/// for distinct and random columns, and random ones uncompressed.
pub fn parquet_properties_for(schema: &Schema) -> WriterPropertiesBuilder {
    schema.fields().iter().fold(parquet_properties(), |b, f| {
        let column = || ColumnPath::from(f.name().as_str());
        match spread(f.name(), f.data_type()) {
            Spread::Repeated => b,
            Spread::Distinct => b.set_column_dictionary_enabled(column(), false),
            Spread::Random => b
                .set_column_dictionary_enabled(column(), false)
                .set_column_compression(column(), Compression::UNCOMPRESSED),
        }
    })
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
        .with_target_file_size(std::num::NonZeroU64::new(compact::TARGET_FILE_BYTES));
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
                .with_replace_where(silver::in_dates(dates))
                .await
        }
        Write::Overwrite => write.with_save_mode(SaveMode::Overwrite).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_only_for_columns_whose_values_repeat() {
        let spec = &crate::sources::api_logs::SPEC;
        let props = parquet_properties_for(&silver::clean_schema(spec)).build();
        let dictionary = |c: &str| props.dictionary_enabled(&ColumnPath::from(c));
        let compression = |c: &str| props.compression(&ColumnPath::from(c));
        // Ids, times, measurements, addresses and wide integer ranges: every value new.
        for c in [
            "log_id",
            "request_id",
            "event_time",
            "response_time_ms",
            "client_ip",
            "bytes_sent",
            "_line",
        ] {
            assert!(!dictionary(c), "{c} should be written without a dictionary");
        }
        // Random ids (the stream's and the declared ones) alone go uncompressed.
        for c in ["log_id", "request_id"] {
            assert_eq!(compression(c), Compression::UNCOMPRESSED, "{c}");
        }
        for c in ["client_ip", "event_time", "method", "_source_key"] {
            assert_eq!(compression(c), Compression::SNAPPY, "{c}");
        }
        // Enumerations, lineage, and free text the writer may still find repetitive.
        for c in [
            "method",
            "endpoint",
            "status_code",
            "api_key_id",
            "_source_key",
            "date",
        ] {
            assert!(dictionary(c), "{c} should keep its dictionary");
        }
        assert_eq!(props.max_row_group_row_count(), Some(ROW_GROUP_ROWS));
    }
}
