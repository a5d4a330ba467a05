//! `lakepipe inbox`: take the configured inboxes' new objects once.

use crate::config::ValidatedConfig;

/// `lakepipe inbox …`.
#[derive(Debug, clap::Subcommand)]
pub enum InboxCommand {
    /// One pass over every `[[inbox]]`: take each new or changed object exactly once
    Pickup,
}

/// Runs an inbox command.
pub(super) async fn inbox(
    config: &ValidatedConfig,
    c: &InboxCommand,
    json: bool,
) -> anyhow::Result<()> {
    match c {
        InboxCommand::Pickup => {
            let store = super::open_store(config).await?;
            let m = crate::landing::inbox::pickup_once(config, &store).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                println!("inbox: {} objects taken", m.taken);
            }
            Ok(())
        }
    }
}
