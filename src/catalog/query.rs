//! SQL over the lake (`lakepipe query`): a DataFusion session reading through the lake's own
//! object store, with the landing datasets registered as partitioned external tables
//! (`text_files`, `csv_files`, `iot_data`; partition columns as strings, so
//! `WHERE day = '01'` prunes folders), and every Delta table of the Lambda layers under its
//! layer name (`bronze_api_logs`, `silver_iot_sensors`, …). Results stream out as CSV or JSON lines; the table
//! format collects them to size its columns.
//!
//! Queries are read-only ([`read_only`]): DDL (`CREATE EXTERNAL TABLE`, `DROP`), DML (`INSERT`,
//! `COPY … TO`) and statements (`SET`, transactions) are refused before anything runs, and the
//! session has no URL tables, so nothing a user types can read or write a file outside the
//! lake's registered tables. Writing a result to a file is the CLI's `--out`, not SQL.

use std::io::Write;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::datasource::file_format::FileFormat;
use deltalake::datafusion::datasource::file_format::csv::CsvFormat;
use deltalake::datafusion::datasource::file_format::json::JsonFormat;
use deltalake::datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::prelude::SessionContext;
use futures::StreamExt as _;

use super::datasets::{Layout, datasets};
use crate::store::Store;

/// The URL under which the lake's object store is registered in the session.
const LAKE_URL: &str = "lakepipe://lake/";

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

/// A session with every table of the lake registered; the names it knows.
pub async fn context(store: &Store) -> Result<(SessionContext, Vec<String>), DataFusionError> {
    let ctx = SessionContext::new();
    let url = url::Url::parse(LAKE_URL).expect("static URL");
    ctx.register_object_store(&url, store.object_store());
    let mut names = Vec::new();
    // The landing datasets. The speed layer's raw files are read through the batch layer's
    // tables instead: they contain deliberately malformed lines.
    for ds in datasets()
        .iter()
        .filter(|d| d.layout == Layout::YearMonthDay)
    {
        let format: Arc<dyn FileFormat> = match ds.format {
            "csv" => Arc::new(CsvFormat::default().with_has_header(true)),
            // One column per line: delimiter and quote that never occur in the text.
            "txt" => Arc::new(
                CsvFormat::default()
                    .with_has_header(false)
                    .with_delimiter(0x01)
                    .with_quote(0x02),
            ),
            _ => Arc::new(JsonFormat::default()),
        };
        let partition_cols = ds
            .partition_keys()
            .iter()
            .map(|k| (k.to_string(), DataType::Utf8))
            .collect();
        let opts = ListingOptions::new(format)
            .with_file_extension(ds.extension)
            .with_table_partition_cols(partition_cols);
        let table_url = ListingTableUrl::parse(format!("{LAKE_URL}{}/", ds.prefix))?;
        let cfg = ListingTableConfig::new(table_url)
            .with_listing_options(opts)
            .with_schema(Arc::new(Schema::new(ds.columns.clone())));
        ctx.register_table(ds.name.as_str(), Arc::new(ListingTable::try_new(cfg)?))?;
        names.push(ds.name.clone());
    }
    // Every Delta table of the Lambda layers, under its layer name (`bronze_api_logs`).
    let tables = super::tables::delta_tables(store)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    for t in tables {
        let Some(table) = store.delta_table(&t.path).await? else {
            continue;
        };
        crate::store::register_delta(&ctx, &t.name, &table).await?;
        names.push(t.name);
    }
    Ok((ctx, names))
}

/// What `lakepipe query` may run: queries only. DataFusion checks the logical plan (including
/// the plan under `EXPLAIN`) against these options before executing it.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Why a statement did not become a query to run.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The SQL does not parse or names what the session does not have (a path is not a
    /// table).
    #[error("{0}")]
    Invalid(DataFusionError),
    /// A statement `query` never runs (see [`read_only`]).
    #[error("{0}")]
    ReadOnly(DataFusionError),
}

/// Plans `sql` and checks the plan against [`read_only`] before it becomes a DataFrame — what
/// `SessionContext::sql_with_options` does, with its two failures kept apart.
pub async fn read_only_query(ctx: &SessionContext, sql: &str) -> Result<DataFrame, Refusal> {
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(Refusal::Invalid)?;
    read_only().verify_plan(&plan).map_err(Refusal::ReadOnly)?;
    ctx.execute_logical_plan(plan)
        .await
        .map_err(Refusal::Invalid)
}

/// Why `lakepipe query` failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The tables could not be registered.
    #[error(transparent)]
    Tables(DataFusionError),
    /// A statement that would write, create, or read outside the registered tables.
    #[error(
        "refused: `lakepipe query` is read-only over the lake's tables ({reason}); to save a result, use --out FILE"
    )]
    ReadOnly {
        /// DataFusion's reason.
        reason: String,
    },
    /// The SQL does not plan against the registered tables.
    #[error("query failed (tables: {tables})")]
    Invalid {
        /// The tables there are.
        tables: String,
        /// DataFusion's error.
        source: DataFusionError,
    },
    /// The query failed while it ran.
    #[error("query failed")]
    Execute(#[source] DataFusionError),
    /// The rows could not be formatted.
    #[error(transparent)]
    Format(#[from] deltalake::arrow::error::ArrowError),
    /// The rows could not be written out.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs `sql` (read-only, see [`read_only`]) and writes the result to `out`; returns the
/// number of rows.
pub async fn run(
    store: &Store,
    sql: &str,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<u64, QueryError> {
    let (ctx, names) = context(store).await.map_err(QueryError::Tables)?;
    let df = match read_only_query(&ctx, sql).await {
        Ok(df) => df,
        Err(Refusal::ReadOnly(e)) => {
            return Err(QueryError::ReadOnly {
                reason: e.message().to_string(),
            });
        }
        Err(Refusal::Invalid(source)) => {
            return Err(QueryError::Invalid {
                tables: names.join(", "),
                source,
            });
        }
    };
    let mut stream = df.execute_stream().await.map_err(QueryError::Execute)?;
    let mut rows = 0u64;
    match format {
        OutputFormat::Table => {
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                let b = b.map_err(QueryError::Execute)?;
                rows += b.num_rows() as u64;
                batches.push(b);
            }
            writeln!(out, "{}", pretty_format_batches(&batches)?)?;
        }
        OutputFormat::Csv => {
            let mut w = deltalake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            while let Some(b) = stream.next().await {
                let b = b.map_err(QueryError::Execute)?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = deltalake::arrow::json::LineDelimitedWriter::new(&mut *out);
            while let Some(b) = stream.next().await {
                let b = b.map_err(QueryError::Execute)?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
            w.finish()?;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement that writes, creates or reads outside the registered tables is refused
    /// before it runs; a plain query still runs.
    #[tokio::test]
    async fn only_queries_run() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "keep me").unwrap();
        let v = victim.display();
        let ctx = SessionContext::new();
        for sql in [
            format!("COPY (SELECT 'x' AS a) TO '{v}' STORED AS CSV"),
            format!("CREATE EXTERNAL TABLE x (a VARCHAR) STORED AS CSV LOCATION '{v}'"),
            "CREATE TABLE t AS SELECT 1 AS a".to_string(),
            "CREATE VIEW v AS SELECT 1 AS a".to_string(),
            "DROP TABLE IF EXISTS silver_api_logs".to_string(),
            "SET datafusion.execution.batch_size = 1".to_string(),
            format!("EXPLAIN COPY (SELECT 1 AS a) TO '{v}' STORED AS CSV"),
        ] {
            let e = read_only_query(&ctx, &sql).await.err();
            let e = e.unwrap_or_else(|| panic!("not refused: {sql}"));
            assert!(matches!(e, Refusal::ReadOnly(_)), "{sql}: {e}");
        }
        ctx.sql("CREATE TABLE t (a INT)").await.unwrap();
        let e = read_only_query(&ctx, "INSERT INTO t VALUES (1)")
            .await
            .unwrap_err();
        assert!(matches!(e, Refusal::ReadOnly(_)), "{e}");
        // A path as a table name is not a table: no URL tables in the session.
        let e = read_only_query(&ctx, &format!("SELECT * FROM '{v}'"))
            .await
            .unwrap_err();
        assert!(matches!(e, Refusal::Invalid(_)), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let df = read_only_query(&ctx, "SELECT 1 + 1 AS two").await.unwrap();
        assert_eq!(df.collect().await.unwrap()[0].num_rows(), 1);
    }
}
