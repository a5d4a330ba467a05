//! The capability record (`_lakepipe/capabilities.json`): what the store can do, as probed by
//! `lakepipe bootstrap`, which writes it; the writers read it instead of probing.

use serde::{Deserialize, Serialize};

use super::{CreateMode, Result, Store};

/// Where the capability record lives.
pub const CAPABILITIES_KEY: &str = "_lakepipe/capabilities.json";

/// What the store can do, as probed by bootstrap; read by the writers instead of probing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The lake it was probed on.
    pub lake: String,
    /// The S3 endpoint (None = AWS or a local lake).
    pub endpoint: Option<String>,
    /// Whether `If-None-Match: *` (create-only PUT) is honoured.
    pub conditional_put: bool,
    /// How writers make create-only writes (`conditional` or `check-then-put`).
    pub create_mode: String,
    /// Bucket settings the server does not implement.
    pub unsupported: Vec<String>,
    /// When it was probed (UTC).
    pub probed_at: String,
}

impl Capabilities {
    /// The record of `store` for create mode `mode`, the `unsupported` bucket settings and the
    /// probe time `probed_at` (RFC 3339, UTC).
    pub fn new(
        store: &Store,
        mode: CreateMode,
        unsupported: Vec<String>,
        probed_at: String,
    ) -> Capabilities {
        Capabilities {
            lake: store.url().to_string(),
            endpoint: endpoint_of(store),
            conditional_put: mode == CreateMode::Conditional,
            create_mode: mode.as_str().to_string(),
            unsupported,
            probed_at,
        }
    }

    /// The create mode recorded.
    pub fn create_mode(&self) -> CreateMode {
        if self.conditional_put {
            CreateMode::Conditional
        } else {
            CreateMode::CheckThenPut
        }
    }

    /// The record of this lake, if bootstrap wrote one for the same endpoint (a record made
    /// against another server is ignored; an unreadable one is reported and ignored).
    pub async fn load(store: &Store) -> Result<Option<Capabilities>> {
        let Some(bytes) = store.get_opt(CAPABILITIES_KEY).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Capabilities>(&bytes) {
            Ok(c) if c.endpoint == endpoint_of(store) => Ok(Some(c)),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!("ignoring unreadable {CAPABILITIES_KEY}: {e}");
                Ok(None)
            }
        }
    }

    /// Writes the record to [`CAPABILITIES_KEY`] of `store`.
    pub async fn save(&self, store: &Store) -> Result<()> {
        store.put_json(CAPABILITIES_KEY, self).await
    }
}

fn endpoint_of(store: &Store) -> Option<String> {
    store.s3().and_then(|(_, c)| c.endpoint.clone())
}
