//! Bucket bootstrap (`lakepipe bootstrap`, DAG `1-infra_s3_bootstrap`): creates the bucket if
//! missing and converges its settings to SPEC "Bucket" — encryption, versioning, lifecycle,
//! Block Public Access, a TLS-only policy and tags — then creates the top-level prefixes and
//! records what the store can do in `_lakepipe/capabilities.json`, which the writers read.
//!
//! This file is the run and its report over the settings. Each setting is one type behind
//! `settings::BucketSetting` in its own file under `settings/`, listed once in
//! `settings::S3_SETTINGS`: each reads the current state back, compares a canonical form with the
//! desired one and applies only what differs, so a second run changes nothing. Settings of the
//! user that are not ours (other lifecycle rules, policy statements, tags) are kept. A server
//! without an API gets an "unsupported" row (an error with `--strict`); `--dry-run` only reads.
//! On a local lake, only the layout and capabilities apply.
//!
//! The rest: `bucket` (HEAD or create the bucket), `target` (how to address it), `fault` (how a
//! request failed), `layout` (the top-level prefixes), `probe` (the create-only PUT probe and
//! the capability record, whose type and reading belong to [`crate::store`]) and `report`.

mod bucket;
pub mod dag;
mod fault;
mod layout;
mod probe;
mod report;
mod settings;
mod target;

use crate::store::Store;
use crate::store::oplog::{Level, OpLog};

pub use layout::LAYOUT;
pub use report::{Outcome, Report, Row};

use settings::S3_SETTINGS;
use target::Target;

/// Default bucket of SPEC "Bucket" (used in examples and DDL for local lakes).
pub const DEFAULT_BUCKET: &str = "modern-lakehouse-data";

/// Why a bootstrap run could not be made at all (per-setting problems are rows of the
/// [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket cannot be used: in another region, its name taken, or it cannot be created.
    #[error("{reason}")]
    Bucket { bucket: String, reason: String },
    /// The lake could not be reached, read or written (HEAD bucket, the create-only probe, the
    /// capability record).
    #[error(transparent)]
    Store {
        #[from]
        source: crate::store::Error,
    },
    /// Settings the store refused or could not apply (the bootstrap DAG fails on them).
    #[error("bucket settings failed: {}", settings.join(", "))]
    SettingsFailed { settings: Vec<String> },
}

/// Result with the bootstrap [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Read and compare only; write nothing.
    pub dry_run: bool,
    /// Settings the server does not support are errors.
    pub strict: bool,
    /// SSE-KMS with this key instead of SSE-S3.
    pub kms_key: Option<String>,
}

/// Runs bootstrap on `store`. Returns an error (one clear line) when the bucket cannot be used
/// at all: access denied, wrong region, name taken; per-setting problems are rows.
pub async fn run(store: &Store, opts: &Options, log: &OpLog) -> Result<Report> {
    let mut rows = Vec::new();
    let mut unsupported = Vec::new();
    log.info(
        "start",
        &[
            ("lake", store.url().to_string()),
            ("dry_run", opts.dry_run.to_string()),
        ],
    );
    match Target::of(store, opts) {
        None => {
            for s in S3_SETTINGS {
                rows.push(Row {
                    setting: s.name().into(),
                    desired: "-".into(),
                    result: Outcome::NotApplicable,
                    detail: "local lake".into(),
                });
            }
        }
        Some(target) => {
            let exists = bucket::ensure_bucket(&target, opts.dry_run, &mut rows).await?;
            for &s in S3_SETTINGS {
                let row = settings::converge(s, &target, opts.dry_run, exists).await;
                if row.result == Outcome::Unsupported {
                    unsupported.push(s.name().to_string());
                }
                rows.push(row);
            }
        }
    }
    rows.push(layout::layout(store, opts.dry_run).await);
    let capabilities = if opts.dry_run {
        rows.push(Row {
            setting: "create-only PUT".into(),
            desired: "probe and record".into(),
            result: Outcome::Skipped,
            detail: "dry run: the probe writes an object".into(),
        });
        None
    } else {
        let (row, caps) = probe::capabilities(store, unsupported).await?;
        rows.push(row);
        Some(caps)
    };
    for r in &rows {
        let level = match r.result {
            Outcome::Failed => Level::Error,
            Outcome::Unsupported | Outcome::Skipped => Level::Warn,
            _ => Level::Info,
        };
        log.event(
            level,
            "setting",
            &[
                ("setting", r.setting.clone()),
                ("result", r.result.label().to_string()),
                ("detail", r.detail.clone()),
            ],
        );
    }
    Ok(Report {
        lake: store.url().to_string(),
        dry_run: opts.dry_run,
        rows,
        capabilities,
    })
}
