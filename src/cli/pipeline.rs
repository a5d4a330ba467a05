//! `lakepipe pipeline show|check|migrate`: the effective pipeline declaration, a file's
//! mistakes, and what the declaration changes in the lake's per-stream tables.

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::{Config, ValidatedConfig};
use crate::layers::evolve::MigrateBuilder;
use crate::pipeline::{self, Declaration};

/// `lakepipe pipeline …`.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Print the effective declaration (the built-in one is a file to start from)
    Show,
    /// Check a declaration: each mistake on one line with file, line and key; exit 1 if any
    Check {
        /// The declaration file
        file: PathBuf,
    },
    /// Compare the declaration with the lake's silver and unified tables: columns the next run
    /// adds, and changes refused (a type changed, a field removed; exit 1 if any); with
    /// --rewrite, rewrite each table with a refused change to the declared columns
    Migrate {
        /// Rewrite the tables with refused changes (removed columns dropped, changed ones cast;
        /// a value that does not cast becomes null), one commit each
        #[arg(long)]
        rewrite: bool,
    },
}

/// Installs the pipeline the configuration names (`--pipeline`, `LAKEPIPE_PIPELINE`,
/// `pipeline =`), before anything reads it; none named leaves the built-in one.
pub(super) async fn install(config: &Config) -> anyhow::Result<()> {
    if let Some(path) = &config.pipeline {
        let declaration = pipeline::load(path).await?;
        pipeline::install(declaration, Some(path.clone()))?;
    }
    Ok(())
}

/// The declaration as a TOML file, with a header saying where it came from.
pub fn render(
    declaration: &Declaration,
    source: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let from = match source {
        Some(p) => format!("# from {}\n", p.display()),
        None => {
            "# the built-in seed pipeline: save it as pipeline.toml and point --pipeline at it\n"
                .to_string()
        }
    };
    Ok(format!(
        "# lakepipe pipeline declaration (lakepipe pipeline show)\n{from}\n{}",
        toml::to_string(declaration)?
    ))
}

/// Runs `lakepipe pipeline …`.
pub(super) async fn pipeline(
    c: &PipelineCommand,
    config: &ValidatedConfig,
    json: bool,
) -> anyhow::Result<()> {
    match c {
        PipelineCommand::Migrate { rewrite } => {
            let store = super::open_existing_store(config).await?;
            let m = MigrateBuilder::new(&store).with_rewrite(*rewrite).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                print!("{}", m.summary());
            }
            match m.refused() {
                0 => Ok(()),
                n => anyhow::bail!("{n} refused change(s)"),
            }
        }
        PipelineCommand::Show => {
            let active = pipeline::active();
            if json {
                println!("{}", serde_json::to_string_pretty(&active.declaration)?);
            } else {
                print!("{}", render(&active.declaration, active.source.as_deref())?);
            }
            Ok(())
        }
        PipelineCommand::Check { file } => match pipeline::load(file).await {
            Ok(d) => {
                let summary = format!(
                    "{}: ok: {} stream(s), {} fact(s), {} dashboard(s), {} alert rule(s)",
                    file.display(),
                    d.streams.len(),
                    d.facts.len(),
                    d.dashboards.len(),
                    d.alerts.len()
                );
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "ok": true, "file": file, "summary": summary })
                    );
                } else {
                    println!("{summary}");
                }
                Ok(())
            }
            Err(pipeline::Error::Invalid { diagnostics, .. }) => {
                if json {
                    let list: Vec<_> = diagnostics
                        .iter()
                        .map(|d| serde_json::json!({ "file": d.file, "line": d.line, "key": d.key, "message": d.message }))
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({ "ok": false, "file": file, "mistakes": list })
                    );
                }
                for d in &diagnostics {
                    eprintln!("{d}");
                }
                anyhow::bail!("{} mistake(s) in {}", diagnostics.len(), file.display())
            }
            Err(e) => Err(e.into()),
        },
    }
}
