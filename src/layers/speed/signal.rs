//! A process-wide signal that speed-layer objects have landed: every writer of the layer (the
//! generator runs, the ingest API, the inboxes) raises it after an object is durably in the
//! lake, and live serving ([`crate::layers::serving::live`]) wakes on it instead of listing the
//! lake. Writers in other processes are seen by the scheduled serving runs.

use std::sync::LazyLock;

use tokio::sync::watch;

static LANDED: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// Says that speed-layer objects have landed.
pub fn landed() {
    LANDED.send_modify(|n| *n = n.wrapping_add(1));
}

/// A receiver that sees every later [`landed`] (as a changed value).
pub fn subscribe() -> watch::Receiver<u64> {
    LANDED.subscribe()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_landing_wakes_every_subscriber() {
        let mut a = subscribe();
        let mut b = subscribe();
        landed();
        a.changed().await.unwrap();
        b.changed().await.unwrap();
        assert!(!a.has_changed().unwrap());
    }
}
