//! SQL over the lake (`lakepipe query`): a DataFusion session reading through the lake's own
//! object store, with the landing datasets registered as partitioned external tables
//! (`text_files`, `csv_files`, `iot_data`; partition columns as strings, so
//! `WHERE day = '01'` prunes folders), and every Delta table of the Lambda layers under its
//! layer name (`bronze_api_logs`, `silver_iot_sensors`, …). Results stream out as CSV or JSON lines; the table
//! format collects them to size its columns.

use std::io::Write;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::datasource::file_format::FileFormat;
use deltalake::datafusion::datasource::file_format::csv::CsvFormat;
use deltalake::datafusion::datasource::file_format::json::JsonFormat;
use deltalake::datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use deltalake::datafusion::error::DataFusionError;
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
    let tables = super::athena::delta_tables(store)
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

/// Runs `sql` and writes the result to `out`; returns the number of rows.
pub async fn run(
    store: &Store,
    sql: &str,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let (ctx, names) = context(store).await?;
    let df = ctx
        .sql(sql)
        .await
        .with_context(|| format!("query failed (tables: {})", names.join(", ")))?;
    let mut stream = df.execute_stream().await.context("query failed")?;
    let mut rows = 0u64;
    match format {
        OutputFormat::Table => {
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                let b = b.context("query failed")?;
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
                let b = b.context("query failed")?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = deltalake::arrow::json::LineDelimitedWriter::new(&mut *out);
            while let Some(b) = stream.next().await {
                let b = b.context("query failed")?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
            w.finish()?;
        }
    }
    Ok(rows)
}
