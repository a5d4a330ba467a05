//! The create-only PUT probe: finds out whether the store honours `If-None-Match: *` and
//! writes the capability record ([`crate::store::Capabilities`]) the writers read.

use super::Result;
use super::report::{Outcome, Row, row};
use crate::clock::rfc3339_secs;
use crate::store::{CAPABILITIES_KEY, Capabilities, CreateMode, Store};

/// Probes create-only PUT and writes the capability record.
pub(super) async fn capabilities(
    store: &Store,
    unsupported: Vec<String>,
) -> Result<(Row, Capabilities)> {
    let mode = if store.is_local() {
        CreateMode::Conditional
    } else {
        store.probe_conditional_put().await?
    };
    let caps = Capabilities::new(
        store,
        mode,
        unsupported,
        rfc3339_secs(crate::clock::wall_now()),
    );
    caps.save(store).await?;
    let (result, detail) = match mode {
        CreateMode::Conditional => (Outcome::Unchanged, "honoured: writers use create-only PUT"),
        CreateMode::CheckThenPut => (
            Outcome::Unsupported,
            "ignored by this server: writers check then put; Delta commits take turns under claims, the scheduler lease is read back",
        ),
    };
    Ok((
        row(
            "create-only PUT",
            "If-None-Match: * honoured".into(),
            result,
            &format!("{detail}; recorded in {CAPABILITIES_KEY}"),
        ),
        caps,
    ))
}
