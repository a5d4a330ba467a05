//! `lakepipe produce`: send the seed streams' generated events to an ingest API (to be built).

use crate::config::ValidatedConfig;

/// `lakepipe produce`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// The stream whose events to send
    pub stream: String,
}

/// Runs `produce`.
pub(super) async fn produce(
    _config: &ValidatedConfig,
    _p: &ProduceArgs,
    _json: bool,
) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
