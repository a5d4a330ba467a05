//! `lakepipe inbox`: take the configured inboxes' new objects once.

use crate::config::ValidatedConfig;

/// `lakepipe inbox …`.
#[derive(Debug, clap::Subcommand)]
pub enum InboxCommand {
    /// One pass over every `[[inbox]]`: take each new or changed object exactly once
    Pickup {
        /// Only list: count the objects that would be taken; take nothing
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs an inbox command.
pub(super) async fn inbox(
    config: &ValidatedConfig,
    c: &InboxCommand,
    json: bool,
) -> anyhow::Result<()> {
    match c {
        InboxCommand::Pickup { dry_run } => {
            let store = super::open_store(config).await?;
            let m = crate::landing::inbox::pickup_all(config, &store, *dry_run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                for i in &m.inboxes {
                    println!(
                        "inbox {} ({} ← {}): {} listed, {} taken, {} records in {} objects, {} quarantined, {} taken before",
                        i.inbox,
                        i.stream,
                        i.url,
                        i.listed,
                        i.taken,
                        i.records,
                        i.objects,
                        i.quarantined,
                        i.skipped_already_taken
                    );
                }
                let verb = if *dry_run { "to be taken" } else { "taken" };
                println!("inbox: {} objects {verb}", m.taken);
            }
            if m.failed > 0 {
                anyhow::bail!(
                    "{} objects could not be read; they are retried on the next pickup",
                    m.failed
                );
            }
            Ok(())
        }
    }
}
