//! `GET /api/events`: server-sent events for the live dashboards. Each time a serving run
//! lands new dashboard documents (`serving/dashboards/<name>.json`), every connected client
//! gets one `serving` event: `{"as_of", "watermark", "versions"}`.
//!
//! One poller per server ([`Events`]) watches the documents — a `HEAD` of each every
//! [`POLL`], a `GET` only of those whose tag changed — and publishes what it saw on a
//! [`watch`] channel, which holds one value whatever the number of clients. It runs while at
//! least one client is connected and stops after the last one leaves. A client gets the state
//! first (so a run that landed between its page load and its connection is not missed), then
//! each change; keep-alive comments every [`KEEP_ALIVE`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use tokio::sync::watch;

use super::Error;
use super::data::{LakeView, tag_of};
use super::state::AppState;
use crate::layers::serving::dashboards::dashboard_path;

/// How often the poller looks at the documents.
pub const POLL: Duration = Duration::from_millis(500);
/// How often a connected client gets a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the dashboards' documents say, as of the poller's last look: the event's data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Landed {
    /// The newest `as_of` of the documents (the logical date of the last serving run).
    pub as_of: Option<String>,
    /// The newest landing time the documents' watermarks include (`watermark.newest_landed`).
    pub watermark: Option<String>,
    /// Each document's `delta_version` (its snapshot's version), by dashboard name.
    pub versions: BTreeMap<String, Option<u64>>,
}

impl Landed {
    /// What `docs` (dashboard name → document) say.
    pub fn of(docs: &BTreeMap<String, serde_json::Value>) -> Landed {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        Landed {
            as_of: docs.values().filter_map(|d| text(&d["as_of"])).max(),
            watermark: docs
                .values()
                .filter_map(|d| text(&d["watermark"]["newest_landed"]))
                .max(),
            versions: docs
                .iter()
                .map(|(n, d)| (n.clone(), d["delta_version"].as_u64()))
                .collect(),
        }
    }
}

/// The server's one poller and its channel.
pub(super) struct Events {
    tx: watch::Sender<Option<Landed>>,
    /// Set when the server shuts down: every stream ends, so a graceful shutdown does not
    /// wait for clients that never hang up.
    closed: watch::Sender<bool>,
    /// Whether the poller runs; taken by a subscriber starting it and by the poller stopping.
    running: Mutex<bool>,
}

impl Events {
    pub(super) fn new() -> Events {
        Events {
            tx: watch::Sender::new(None),
            closed: watch::Sender::new(false),
            running: Mutex::new(false),
        }
    }

    /// Ends every stream, now and for clients that connect later.
    pub(super) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Whether the poller runs.
    #[cfg(test)]
    pub(super) fn running(&self) -> bool {
        *self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of what the poller sees; starts the poller if it is not running.
    pub(super) fn subscribe(
        self: &Arc<Self>,
        view: &Arc<LakeView>,
    ) -> watch::Receiver<Option<Landed>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        if !*running {
            *running = true;
            tokio::spawn(poll(self.clone(), view.clone()));
        }
        rx
    }
}

/// One document as last seen: its tag, and of what it says only what [`Landed`] needs (a
/// document holds every row of its dashboard).
struct Seen {
    tag: String,
    brief: serde_json::Value,
}

/// Polls the documents until no client is left.
async fn poll(events: Arc<Events>, view: Arc<LakeView>) {
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        {
            let mut running = events.running.lock().unwrap_or_else(|e| e.into_inner());
            if events.tx.receiver_count() == 0 {
                *running = false;
                return;
            }
        }
        match look(&view, &mut seen).await {
            Ok(false) => {}
            Ok(true) => {
                let docs = seen
                    .iter()
                    .map(|(n, s)| (n.clone(), s.brief.clone()))
                    .collect();
                let now = Landed::of(&docs);
                events.tx.send_if_modified(|cur| {
                    let changed = cur.as_ref() != Some(&now);
                    if changed {
                        *cur = Some(now);
                    }
                    changed
                });
            }
            Err(e) => tracing::warn!("live dashboards: {}", e.message()),
        }
    }
}

/// Updates `seen` from the lake: a `HEAD` of each dashboard's document, a `GET` of those
/// whose tag changed; absent documents are forgotten. Whether anything changed.
async fn look(view: &LakeView, seen: &mut BTreeMap<String, Seen>) -> Result<bool, Error> {
    let mut changed = false;
    for d in crate::pipeline::active().dashboards {
        let key = format!("{}.json", dashboard_path(d.name));
        let Some(meta) = view.store().head(&key).await.map_err(Error::lake)? else {
            changed |= seen.remove(d.name).is_some();
            continue;
        };
        let tag = tag_of(&meta);
        if seen.get(d.name).is_some_and(|s| s.tag == tag) {
            continue;
        }
        // Gone between the HEAD and the GET: looked at again next time.
        if let Some(doc) = view.json_doc(&key).await? {
            let brief = serde_json::json!({
                "as_of": doc["as_of"],
                "watermark": doc["watermark"],
                "delta_version": doc["delta_version"],
            });
            seen.insert(d.name.to_string(), Seen { tag, brief });
            changed = true;
        }
    }
    Ok(changed)
}

/// The events of one client: the state as soon as the poller has one, then each change,
/// until the server closes (`closed` turns true).
fn stream_of(
    rx: watch::Receiver<Option<Landed>>,
    closed: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (rx, closed, true),
        |(mut rx, mut closed, mut first)| async move {
            loop {
                if *closed.borrow_and_update() {
                    return None;
                }
                if !std::mem::take(&mut first) {
                    tokio::select! {
                        // The poller never drops its sender while a receiver lives; if it did, end.
                        changed = rx.changed() => changed.ok()?,
                        _ = closed.changed() => continue,
                    }
                }
                let landed = rx.borrow_and_update().clone();
                if let Some(landed) = landed {
                    let event = Event::default()
                        .event("serving")
                        .json_data(&landed)
                        .unwrap_or_else(|_| Event::default().comment("unserialisable state"));
                    return Some((Ok(event), (rx, closed, false)));
                }
            }
        },
    )
}

/// `GET /api/events`.
pub(super) async fn api_events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.events.subscribe(&st.view);
    Sse::new(stream_of(rx, st.events.closed.subscribe()))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_as_of_and_each_version() {
        let docs = BTreeMap::from([
            (
                "a".to_string(),
                serde_json::json!({"as_of": "2026-02-01T10:00:00Z", "delta_version": 3}),
            ),
            (
                "b".to_string(),
                serde_json::json!({"as_of": "2026-02-01T10:10:00Z", "watermark": {"newest_landed": "2026-02-01T10:05:00Z"}}),
            ),
        ]);
        let l = Landed::of(&docs);
        assert_eq!(l.as_of.as_deref(), Some("2026-02-01T10:10:00Z"));
        assert_eq!(l.watermark.as_deref(), Some("2026-02-01T10:05:00Z"));
        assert_eq!(
            l.versions,
            BTreeMap::from([("a".to_string(), Some(3)), ("b".to_string(), None)])
        );
        assert_eq!(Landed::of(&BTreeMap::new()), Landed::default());
    }

    #[tokio::test]
    async fn a_stream_sends_the_state_then_changes_and_ends_when_the_server_closes() {
        use futures::StreamExt as _;
        let events = Events::new();
        let landed = |as_of: &str| Landed {
            as_of: Some(as_of.to_string()),
            ..Landed::default()
        };
        events.tx.send_replace(Some(landed("a")));
        let mut s = Box::pin(stream_of(events.tx.subscribe(), events.closed.subscribe()));
        // The state on connecting, then a change.
        assert!(s.next().await.is_some());
        events.tx.send_replace(Some(landed("b")));
        assert!(s.next().await.is_some());
        // The server closes: the stream ends, and a later one ends at once.
        events.close();
        assert!(s.next().await.is_none());
        let mut late = Box::pin(stream_of(events.tx.subscribe(), events.closed.subscribe()));
        assert!(late.next().await.is_none());
    }
}
