//! Lake administration commands: `bootstrap`, `catalog refresh`, `query`, `compact` and
//! `vacuum`. Each prints a
//! human summary (or JSON with `--json`) and fails with one clear line.

use anyhow::Context as _;
use std::io::Write as _;

use super::{open_existing_store, open_store};
use crate::bootstrap;
use crate::catalog::{self, query::OutputFormat};
use crate::config::ValidatedConfig;
use crate::store::oplog::OpLog;

/// `lakepipe bootstrap`.
#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// Print the plan (read-only requests) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Settings the server does not support are errors (exit 1)
    #[arg(long)]
    pub strict: bool,
    /// Default encryption SSE-KMS with this key (ARN, ID or alias) instead of SSE-S3
    #[arg(long, value_name = "ARN")]
    pub kms_key: Option<String>,
}

/// `lakepipe catalog …`.
#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// Verify partitions, write partition metadata, Athena DDL and the operation log
    Refresh(RefreshArgs),
}

/// `lakepipe catalog refresh`.
#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// List every partition again instead of continuing from the last refresh
    #[arg(long)]
    pub full: bool,
    /// S3 location the Athena DDL points at [default: the lake, if on S3]
    #[arg(long, value_name = "S3_URL", value_parser = parse_s3_url)]
    pub athena_location: Option<String>,
    /// Also register the tables in the Glue Data Catalog (`[glue] database`, created if
    /// missing), as `[glue] enabled = true` does on every refresh
    #[arg(long)]
    pub glue: bool,
}

/// `lakepipe query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The SQL statement
    pub sql: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the result to this file (created or replaced once the query has finished)
    /// instead of standard output. SQL itself can never write: COPY, INSERT and DDL are refused
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

/// `lakepipe compact`.
#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// Only this table (query name, e.g. silver_api_logs) [default: every Delta table]
    #[arg(long)]
    pub table: Option<String>,
}

/// `lakepipe vacuum`.
#[derive(Debug, clap::Args)]
pub struct VacuumArgs {
    /// Keep unreferenced files younger than this many hours (Delta's default is 168; less
    /// breaks time travel and readers of older versions)
    #[arg(long, default_value_t = 168)]
    pub retain: u64,
    /// Only this table (query name) [default: every Delta table]
    #[arg(long)]
    pub table: Option<String>,
}

/// The Delta tables named by `only` (all if `None`); an unknown name is an error.
async fn tables(
    store: &crate::store::Store,
    only: Option<&str>,
) -> anyhow::Result<Vec<catalog::tables::DeltaTable>> {
    let all = catalog::tables::delta_tables(store).await?;
    match only {
        None => Ok(all),
        Some(name) => {
            let found: Vec<_> = all.iter().filter(|t| t.name == name).cloned().collect();
            if found.is_empty() {
                let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
                anyhow::bail!(
                    "no Delta table `{name}` in the lake (tables: {})",
                    names.join(", ")
                );
            }
            Ok(found)
        }
    }
}

pub(super) async fn compact(
    config: &ValidatedConfig,
    a: &CompactArgs,
    json: bool,
) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let mut out = serde_json::Map::new();
    for t in tables(&store, a.table.as_deref()).await? {
        if let Some(c) =
            crate::layers::batch::compact::compact_table(&store, &t.path, None, None).await?
        {
            if !json {
                println!(
                    "{:<40} {:>5} files merged into {:>3} ({} partitions)",
                    t.name, c.files_removed, c.files_added, c.partitions
                );
            }
            out.insert(t.name, serde_json::to_value(c)?);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

pub(super) async fn vacuum(
    config: &ValidatedConfig,
    a: &VacuumArgs,
    json: bool,
) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    if a.retain < 168 {
        tracing::warn!(
            "retaining only {} h: readers of versions older than that will fail",
            a.retain
        );
    }
    let retain = std::time::Duration::from_secs(a.retain * 3600);
    let mut out = serde_json::Map::new();
    for t in tables(&store, a.table.as_deref()).await? {
        let n = crate::layers::batch::compact::vacuum_table(&store, &t.path, retain).await?;
        if !json {
            println!("{:<40} {n:>5} files deleted", t.name);
        }
        out.insert(t.name, n.into());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

fn parse_s3_url(s: &str) -> Result<String, String> {
    match crate::store::LakeUrl::parse(s)? {
        crate::store::LakeUrl::S3 { .. } => Ok(s.trim_end_matches('/').to_string()),
        _ => Err(format!("`{s}` is not an s3://bucket[/prefix] URL")),
    }
}

pub(super) async fn bootstrap(
    config: &ValidatedConfig,
    a: &BootstrapArgs,
    json: bool,
) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let log = OpLog::new("bootstrap", crate::clock::wall_now());
    let opts = bootstrap::Options {
        dry_run: a.dry_run,
        strict: a.strict,
        kms_key: a.kms_key.clone(),
    };
    let report = bootstrap::run(&store, &opts, &log).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if !a.dry_run {
        log.publish(&store).await?;
    }
    let errors = report.errors(a.strict);
    if !errors.is_empty() {
        let names: Vec<&str> = errors.iter().map(|r| r.setting.as_str()).collect();
        anyhow::bail!(
            "bootstrap of {} incomplete: {} {}",
            store.url(),
            names.join(", "),
            if a.strict {
                "failed or unsupported (--strict)"
            } else {
                "failed"
            }
        );
    }
    let unsupported = report
        .rows
        .iter()
        .filter(|r| r.result == bootstrap::Outcome::Unsupported)
        .count();
    if unsupported > 0 {
        tracing::warn!(
            "{unsupported} settings are not supported by this server (see the table; --strict makes this an error)"
        );
    }
    eprintln!(
        "{}",
        match (a.dry_run, report.converged()) {
            (true, true) => "dry run: nothing to change",
            (true, false) => "dry run: nothing was changed; run without --dry-run to apply",
            (false, true) => "bucket already bootstrapped: nothing changed",
            (false, false) => "bootstrap complete",
        }
    );
    Ok(())
}

pub(super) async fn catalog(
    config: &ValidatedConfig,
    c: &CatalogCommand,
    json: bool,
) -> anyhow::Result<()> {
    let CatalogCommand::Refresh(a) = c;
    let store = open_store(config).await?;
    store.preflight().await?;
    let log = OpLog::new("catalog", crate::clock::wall_now());
    let glue = if a.glue {
        Some(crate::config::GlueTarget::of(&config.config))
    } else {
        crate::config::GlueTarget::from_config(&config.config)
    };
    let opts = catalog::Options {
        full: a.full,
        athena_location: a.athena_location.clone(),
        glue,
    };
    let summary = match catalog::refresh(&store, &opts, &log).await {
        Ok(s) => s,
        Err(e) => {
            log.event(
                crate::store::oplog::Level::Error,
                "refresh.failed",
                &[("error", e.to_string())],
            );
            let _ = log.publish(&store).await;
            return Err(e.into());
        }
    };
    let log_key = log.publish(&store).await?;
    if json {
        let mut v = serde_json::to_value(&summary)?;
        v["log_key"] = log_key.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<32} {:>10} {:>12} {:>14} {:>10} {:>10}",
        "dataset", "partitions", "objects", "bytes", "listed", "anomalies"
    );
    for d in &summary.datasets {
        println!(
            "{:<32} {:>10} {:>12} {:>14} {:>10} {:>10}",
            d.dataset,
            d.partitions,
            d.total_objects,
            d.total_bytes,
            d.listed_partitions.len(),
            d.anomalies
        );
    }
    println!(
        "{} refresh: wrote {}, {} DDL files under {}/, log {log_key}",
        summary.mode,
        summary.metadata_key,
        summary.ddl_keys.len(),
        catalog::athena::PREFIX
    );
    if let Some(g) = &summary.glue {
        println!(
            "glue database {}{}: {} tables created, {} updated, {} unchanged",
            g.database,
            if g.database_created { " (created)" } else { "" },
            g.created.len(),
            g.updated.len(),
            g.unchanged
        );
        for (table, fields) in &g.updated {
            println!("  updated {table}: {}", fields.join(", "));
        }
    }
    if summary.anomalies > 0 {
        tracing::warn!(
            "{} anomalies (keys that do not match their dataset's layout): see `anomalies` in {}",
            summary.anomalies,
            summary.metadata_key
        );
    }
    Ok(())
}

pub(super) async fn query(config: &ValidatedConfig, q: &QueryArgs) -> anyhow::Result<()> {
    let store = open_existing_store(config).await?;
    let Some(path) = &q.out else {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        catalog::query::run(&store, &q.sql, q.format, &mut out).await?;
        out.flush()?;
        return Ok(());
    };
    // Written beside the target and renamed over it: a failed query leaves no half file.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {} (--out)", dir.display()))?;
    let mut out = std::io::BufWriter::new(tmp);
    let rows = catalog::query::run(&store, &q.sql, q.format, &mut out).await?;
    let tmp = out.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {} (--out)", path.display()))?;
    eprintln!("{rows} row(s) written to {}", path.display());
    Ok(())
}
