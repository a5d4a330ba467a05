//! Inboxes: prefixes where other producers (Firehose, Vector, Fluent Bit) deliver NDJSON
//! objects of one stream. Each object version (key, ETag) is taken exactly once: its records
//! land in `realtime/<stream>/` by event time, named after the pickup time and the writer
//! `inbox-<digest>`, and the lake's ledger remembers it, so a restart, a re-listing or a re-run
//! never takes it twice, while an object rewritten with new content is taken again.
//!
//! `pickup` is the operation (one pass over one inbox), `ledger` what was taken and where the
//! next listing starts, `decode` gzip and record splitting, `error` the errors and the reasons
//! for quarantine. Reads the inboxes and writes the lake only through [`Store`].

mod decode;
mod error;
mod ledger;
mod pickup;

use serde::Serialize;
use tokio::sync::watch;

pub use error::{BadObject, Error, Result};
pub use ledger::{
    Intent, LEDGER_PREFIX, LedgerKeys, Outcome, QUARANTINE_PREFIX, Quarantined, RELIST_WINDOW,
    State, Taken,
};
pub use pickup::{InboxMetrics, InboxPickup, MAX_OBJECT_BYTES};

use crate::config::{InboxConfig, ValidatedConfig};
use crate::store::Store;

/// What one pass over the inboxes did: totals, and each inbox's metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PickupMetrics {
    /// Object versions taken (landed or quarantined).
    pub taken: u64,
    /// Records landed.
    pub records: u64,
    /// Object versions quarantined.
    pub quarantined: u64,
    /// Objects that could not be read (retried on the next pass).
    pub failed: u64,
    /// Per inbox, in configuration order.
    pub inboxes: Vec<InboxMetrics>,
}

impl PickupMetrics {
    fn add(&mut self, m: InboxMetrics) {
        self.taken += m.taken;
        self.records += m.records;
        self.quarantined += m.quarantined;
        self.failed += m.failed;
        self.inboxes.push(m);
    }
}

/// Opens a store over an inbox's location, with the lake's S3 and store settings.
pub async fn open_inbox(config: &ValidatedConfig, inbox: &InboxConfig) -> Result<Store> {
    let location = inbox.location().map_err(|reason| Error::Location {
        inbox: inbox.id(),
        url: inbox.url.clone(),
        reason,
    })?;
    let mut c = config.clone();
    c.config.lake = inbox.url.clone();
    c.lake = location;
    Store::open(&c).await.map_err(|source| Error::Source {
        inbox: inbox.id(),
        url: inbox.url.clone(),
        source,
    })
}

/// One pass over every configured inbox, in order; stops at the first inbox that cannot be
/// listed or whose takes cannot be written to the lake.
pub async fn pickup_once(config: &ValidatedConfig, lake: &Store) -> Result<PickupMetrics> {
    pickup_all(config, lake, false).await
}

/// [`pickup_once`], or with `dry_run` only what it would take (nothing is read or written).
pub async fn pickup_all(
    config: &ValidatedConfig,
    lake: &Store,
    dry_run: bool,
) -> Result<PickupMetrics> {
    let mut out = PickupMetrics::default();
    for inbox in &config.config.inboxes {
        let source = open_inbox(config, inbox).await?;
        let pass = InboxPickup::new(inbox.clone(), source, lake.clone()).with_dry_run(dry_run);
        out.add(pass.await?);
    }
    Ok(out)
}

/// Polls every configured inbox, each every `poll_s`, until `shutdown` turns true. A pass that
/// fails is logged and retried on the next; this never fails.
pub async fn run_live(
    config: &ValidatedConfig,
    lake: &Store,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let polls = config
        .config
        .inboxes
        .iter()
        .map(|inbox| poll(config, inbox, lake, shutdown.clone()));
    futures::future::join_all(polls).await;
    Ok(())
}

async fn poll(
    config: &ValidatedConfig,
    inbox: &InboxConfig,
    lake: &Store,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = inbox.id();
    let mut source = None;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if source.is_none() {
            match open_inbox(config, inbox).await {
                Ok(s) => source = Some(s),
                Err(e) => tracing::warn!("{}", crate::error_chain::error_chain(&e)),
            }
        }
        if let Some(s) = &source {
            let pass = InboxPickup::new(inbox.clone(), s.clone(), lake.clone())
                .with_shutdown(shutdown.clone());
            match pass.await {
                Ok(m) if m.taken > 0 || m.failed > 0 => tracing::info!(
                    inbox = %id,
                    taken = m.taken,
                    records = m.records,
                    objects = m.objects,
                    quarantined = m.quarantined,
                    failed = m.failed,
                    "inbox pass"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("{}", crate::error_chain::error_chain(&e)),
            }
        }
        let wait = std::time::Duration::from_secs(inbox.poll_s);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}
