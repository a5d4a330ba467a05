//! Inboxes: prefixes where other producers (Firehose, Vector, Fluent Bit) deliver objects of
//! one stream; each object is taken exactly once into the speed layer (to be built).

use tokio::sync::watch;

use crate::config::ValidatedConfig;
use crate::store::Store;

/// Errors of the inboxes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Lake I/O failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

/// What one pass over the inboxes did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PickupMetrics {
    /// Objects taken.
    pub taken: u64,
}

/// One pass over every configured inbox.
pub async fn pickup_once(_config: &ValidatedConfig, _lake: &Store) -> Result<PickupMetrics, Error> {
    Ok(PickupMetrics::default())
}

/// Polls every configured inbox until `shutdown` turns true.
pub async fn run_live(
    _config: &ValidatedConfig,
    _lake: &Store,
    _shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    Ok(())
}
