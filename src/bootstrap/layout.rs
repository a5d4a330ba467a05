//! The lake layout: the top-level prefixes ([`LAYOUT`]), created as folder markers on S3 and
//! directories on a local lake.

use super::report::{Outcome, Row, row};
use crate::store::Store;

/// Top-level prefixes of the lake layout.
pub const LAYOUT: [&str; 15] = [
    "data/text_files",
    "data/csv_files",
    "data/iot_data",
    "realtime",
    "batch/bronze",
    "batch/silver",
    "batch/quarantine",
    "batch/gold",
    "serving/unified",
    "serving/dashboards",
    "serving/analytics",
    "serving/alerts",
    "metadata/athena",
    "logs",
    "_lakepipe",
];

/// Creates the top-level prefixes: folder markers on S3, directories on disk.
pub(super) async fn layout(store: &Store, dry_run: bool) -> Row {
    let desired = format!("{} prefixes", LAYOUT.len());
    let mut missing = Vec::new();
    for p in LAYOUT {
        match store.folder_exists(p).await {
            Ok(true) => {}
            Ok(false) => missing.push(p),
            Err(e) => return row("prefixes", desired, Outcome::Failed, &e.to_string()),
        }
    }
    if missing.is_empty() {
        return row("prefixes", desired, Outcome::Unchanged, "all present");
    }
    let detail = format!("missing: {}", missing.join(", "));
    if dry_run {
        return row("prefixes", desired, Outcome::WouldApply, &detail);
    }
    for p in &missing {
        if let Err(e) = store.create_folder(p).await {
            return row("prefixes", desired, Outcome::Failed, &e.to_string());
        }
    }
    row(
        "prefixes",
        desired,
        Outcome::Applied,
        &format!("created {}", missing.len()),
    )
}
