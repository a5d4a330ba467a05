//! Delivery of alerts to the webhook receivers of the config (`[[receiver]]`), within the
//! `alerts` task: docs/alerts-delivery.md.
//!
//! In two steps around the append to `serving/alerts/history`:
//!
//! 1. [`DeliverBuilder::enqueue`], before the append: each new alert a receiver wants is added
//!    to its pending set in the lake ([`ledger`]), so that a kill between the append and the
//!    sends loses nothing (the next attempt of the run, or the next run, finds them pending).
//! 2. [`Outbox::send`], after it: per receiver, expires what is pending for too long, POSTs the
//!    pending alerts ([`payload`], a few tries with back-off: [`http`]), records what happened
//!    and rewrites the pending set without what was settled.
//!
//! At least once per `alert_id`: a kill between a 2xx and the rewrite of the pending set sends
//! those alerts again; receivers de-duplicate by the id. A receiver that fails never fails the
//! task: its alerts stay pending and the failure is logged and recorded.

pub mod http;
pub mod ledger;
pub mod payload;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use self::http::Outcome;
use self::ledger::{PendingSet, Record, State, Status, pending_key, run_key, status_key};
use self::payload::Alert;
use crate::clock::{compact, rfc3339_secs};
use crate::config::ReceiverConfig;
use crate::scheduler::task::{TaskLog, log_info};
use crate::store::Store;

/// Interval of the serving DAG: when a failed alert is tried again.
const NEXT_RUN: Duration = Duration::minutes(10);

/// Why delivery could not go on (never a receiver's failure: those are recorded outcomes).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a delivery record failed.
    #[error("{source}")]
    Store {
        #[from]
        source: crate::store::Error,
    },
    /// A raised alert row is not an alert.
    #[error("an alert row cannot be delivered: {source}")]
    Row { source: serde_json::Error },
    /// A payload could not be encoded.
    #[error("encoding alerts for `{receiver}`: {source}")]
    Encode {
        receiver: String,
        source: serde_json::Error,
    },
    /// The HTTP client could not be built.
    #[error("the HTTP client of alert delivery: {source}")]
    Client { source: reqwest::Error },
}

/// Result with the delivery [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a run did for one receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverMetrics {
    /// Alerts delivered (2xx) in this run.
    pub sent: usize,
    /// Alerts whose POST failed in this run (retried later unless refused).
    pub failed: usize,
    /// Alerts still pending after the run.
    pub pending: usize,
    /// Alerts given up in this run: pending for longer than a day.
    pub expired: usize,
}

/// The alerts of a run on their way: the receivers' pending sets, in the lake already.
pub struct Outbox<'a> {
    store: &'a Store,
    t: DateTime<Utc>,
    log: Option<&'a TaskLog>,
    sets: Vec<(&'a ReceiverConfig, PendingSet)>,
}

/// The delivery of a run's alerts to `receivers`.
pub struct DeliverBuilder<'a> {
    store: &'a Store,
    receivers: &'a [ReceiverConfig],
    t: DateTime<Utc>,
    log: Option<&'a TaskLog>,
}

impl<'a> DeliverBuilder<'a> {
    /// Delivery of the run at `t` to `receivers`.
    pub fn new(store: &'a Store, receivers: &'a [ReceiverConfig], t: DateTime<Utc>) -> Self {
        DeliverBuilder {
            store,
            receivers,
            t,
            log: None,
        }
    }

    /// Writes what delivery does to `log`.
    pub fn with_log(self, log: Option<&'a TaskLog>) -> Self {
        DeliverBuilder { log, ..self }
    }

    /// Adds the wanted alerts of `raised` (history rows as JSON) to each receiver's pending
    /// set in the lake; reads the sets that exist.
    pub async fn enqueue(self, raised: &[serde_json::Value]) -> Result<Outbox<'a>> {
        let raised = if self.receivers.is_empty() {
            &[]
        } else {
            raised
        };
        let alerts: Vec<Alert> = raised
            .iter()
            .map(Alert::from_row)
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Row { source })?;
        let mut sets = Vec::new();
        for r in self.receivers {
            let mut set = load_pending(self.store, r, self.t, self.log).await?;
            let added = set.add(alerts.iter().filter(|a| r.wants(&a.rule, &a.severity)));
            if added > 0 {
                self.store.put_json(&pending_key(&r.name), &set).await?;
            }
            sets.push((r, set));
        }
        Ok(Outbox {
            store: self.store,
            t: self.t,
            log: self.log,
            sets,
        })
    }
}

/// Reads `receiver`'s pending set; an unreadable one is kept aside (`pending.unreadable-<run>.json`)
/// and taken as empty, so that one bad object does not stop delivery for good.
async fn load_pending(
    store: &Store,
    r: &ReceiverConfig,
    t: DateTime<Utc>,
    log: Option<&TaskLog>,
) -> Result<PendingSet> {
    let key = pending_key(&r.name);
    let Some(bytes) = store.get_opt(&key).await? else {
        return Ok(PendingSet::default());
    };
    match serde_json::from_slice(&bytes) {
        Ok(set) => Ok(set),
        Err(e) => {
            let aside = format!(
                "{}/{}/pending.unreadable-{}.json",
                ledger::DELIVERIES,
                r.name,
                compact(t)
            );
            store
                .put(&aside, bytes, &crate::store::ObjectAttrs::default())
                .await?;
            log_info(
                log,
                format!(
                    "receiver {}: {key} is unreadable ({e}); kept as {aside}",
                    r.name
                ),
            );
            Ok(PendingSet::default())
        }
    }
}

/// What [`Outbox::send`] did: metrics and the last-day states, by receiver.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    pub metrics: BTreeMap<String, ReceiverMetrics>,
    pub status: BTreeMap<String, Status>,
}

impl Outbox<'_> {
    /// Sends every pending alert to its receiver and records the outcome (see the module).
    pub async fn send(self) -> Result<Delivered> {
        let mut out = Delivered::default();
        if self.sets.is_empty() {
            return Ok(out);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| Error::Client { source })?;
        let (t, log, store) = (self.t, self.log, self.store);
        let run = rfc3339_secs(t);
        for (r, mut set) in self.sets {
            let before = set.clone();
            let mut metrics = ReceiverMetrics::default();
            let mut records = Vec::new();
            for p in set.expire(t) {
                metrics.expired += 1;
                records.push(Record {
                    alert_id: p.alert.alert_id.clone(),
                    triggered_at: p.alert.triggered_at.clone(),
                    run: run.clone(),
                    state: State::Expired {
                        at: rfc3339_secs(Utc::now()),
                        attempts: p.attempts,
                        reason: format!(
                            "not delivered within {} h (last error: {})",
                            ledger::EXPIRE_AFTER.num_hours(),
                            p.last_error.as_deref().unwrap_or("none")
                        ),
                    },
                });
            }
            let batches: Vec<Vec<Alert>> = set
                .batches()
                .iter()
                .map(|b| b.iter().map(|p| p.alert.clone()).collect())
                .collect();
            for batch in batches {
                let refs: Vec<&Alert> = batch.iter().collect();
                let body = serde_json::to_vec(&payload::body(r.format, &r.name, &refs)).map_err(
                    |source| Error::Encode {
                        receiver: r.name.clone(),
                        source,
                    },
                )?;
                let posted = http::post(&client, r, body).await;
                let ids: HashSet<&str> = batch.iter().map(|a| a.alert_id.as_str()).collect();
                let at = rfc3339_secs(Utc::now());
                let (settled, reason) = match &posted.outcome {
                    Outcome::Delivered { .. } => (true, None),
                    Outcome::Retry { reason, .. } | Outcome::Permanent { reason, .. } => (
                        matches!(posted.outcome, Outcome::Permanent { .. }),
                        Some(reason.as_str()),
                    ),
                };
                for a in &batch {
                    let attempts = set
                        .alerts
                        .iter()
                        .find(|p| p.alert.alert_id == a.alert_id)
                        .map_or(0, |p| p.attempts)
                        + posted.tries;
                    let state = match &posted.outcome {
                        Outcome::Delivered { status } => State::Sent {
                            at: at.clone(),
                            attempts,
                            status: *status,
                        },
                        Outcome::Retry { status, reason } => State::Failed {
                            at: at.clone(),
                            attempts,
                            reason: reason.clone(),
                            status: *status,
                            next_attempt: Some(rfc3339_secs(t + NEXT_RUN)),
                        },
                        Outcome::Permanent { status, reason } => State::Failed {
                            at: at.clone(),
                            attempts,
                            reason: reason.clone(),
                            status: Some(*status),
                            next_attempt: None,
                        },
                    };
                    records.push(Record {
                        alert_id: a.alert_id.clone(),
                        triggered_at: a.triggered_at.clone(),
                        run: run.clone(),
                        state,
                    });
                }
                match &posted.outcome {
                    Outcome::Delivered { .. } => metrics.sent += batch.len(),
                    _ => {
                        metrics.failed += batch.len();
                        log_info(
                            log,
                            format!(
                                "receiver {}: {} alert(s) not delivered after {} tr{}: {}{}",
                                r.name,
                                batch.len(),
                                posted.tries,
                                if posted.tries == 1 { "y" } else { "ies" },
                                reason.unwrap_or(""),
                                if settled {
                                    " (refused: not retried)"
                                } else {
                                    " (pending: retried by the next run)"
                                },
                            ),
                        );
                    }
                }
                set.tried(&ids, posted.tries, settled, reason);
                // The receiver is down: the other batches wait for the next run untried.
                if matches!(posted.outcome, Outcome::Retry { .. }) {
                    break;
                }
            }
            metrics.pending = set.alerts.len();
            if !records.is_empty() {
                let key = run_key(&r.name, t);
                store
                    .put_json(
                        &key,
                        &serde_json::json!({ "receiver": r.name, "run": run, "records": records }),
                    )
                    .await?;
            }
            // The pending set last: a kill before it sends the same alerts again (at least once).
            if set != before {
                set.as_of = Some(run.clone());
                store.put_json(&pending_key(&r.name), &set).await?;
            }
            let mut status = match store.get_opt(&status_key(&r.name)).await? {
                Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
                None => Status::default(),
            };
            if !records.is_empty() {
                status.update(&records, t);
                store.put_json(&status_key(&r.name), &status).await?;
            }
            log_info(
                log,
                format!(
                    "receiver {}: {} sent, {} failed, {} pending, {} expired",
                    r.name, metrics.sent, metrics.failed, metrics.pending, metrics.expired
                ),
            );
            out.metrics.insert(r.name.clone(), metrics);
            out.status.insert(r.name.clone(), status);
        }
        Ok(out)
    }
}

/// The delivery state of the alerts `ids` by receiver, for `latest.json`:
/// `{alert_id: {receiver: record}}`, pending alerts never tried as `{"state": "pending"}`.
pub fn states_of(delivered: &Delivered, ids: &[&str]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for id in ids {
        let mut by_receiver = serde_json::Map::new();
        for (name, status) in &delivered.status {
            if let Some(r) = status.alerts.get(*id) {
                by_receiver.insert(
                    name.clone(),
                    serde_json::to_value(&r.state).unwrap_or_default(),
                );
            }
        }
        if !by_receiver.is_empty() {
            out.insert((*id).to_string(), by_receiver.into());
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;
    use crate::layers::serving::deliver::payload::tests::alert;

    /// A receiver on a port nobody listens on: its alerts stay pending in the lake across
    /// runs (a new `Outbox` reads them back), then expire a day after they were raised.
    #[tokio::test]
    async fn an_unreachable_receivers_alerts_stay_pending_in_the_lake_then_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let receivers: Vec<ReceiverConfig> = vec![
            toml::from_str(&format!(
                "name = \"down\"\nurl = \"http://127.0.0.1:{port}/\"\nmin_severity = \"high\"\n\
                 headers = {{ Authorization = \"Bearer never-stored\" }}\n"
            ))
            .unwrap(),
        ];
        let t = parse_utc("2026-02-02T00:10:00Z").unwrap();
        let rows: Vec<serde_json::Value> = [
            alert("r:a", "r", "critical", "2026-02-02T00:10:00Z"),
            alert("r:low", "r", "medium", "2026-02-02T00:10:00Z"),
        ]
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
        let outbox = DeliverBuilder::new(&store, &receivers, t)
            .enqueue(&rows)
            .await
            .unwrap();
        // Pending in the lake before anything is sent (a kill here loses nothing).
        let set: PendingSet =
            serde_json::from_slice(&store.get_opt(&pending_key("down")).await.unwrap().unwrap())
                .unwrap();
        assert_eq!(set.alerts.len(), 1, "only the wanted alert");
        let done = outbox.send().await.unwrap();
        assert_eq!(
            done.metrics["down"],
            ReceiverMetrics {
                sent: 0,
                failed: 1,
                pending: 1,
                expired: 0
            }
        );
        let run: serde_json::Value =
            serde_json::from_slice(&store.get_opt(&run_key("down", t)).await.unwrap().unwrap())
                .unwrap();
        let r = &run["records"][0];
        assert_eq!(r["state"], "failed");
        assert_eq!(r["reason"], "connection failed");
        assert_eq!(r["attempts"], http::TRIES);
        assert_eq!(r["next_attempt"], "2026-02-02T00:20:00Z");
        assert_eq!(done.status["down"].alerts.len(), 1);

        // A later run (another process) finds it pending, then a day later gives it up.
        let later = t + Duration::hours(25);
        let done = DeliverBuilder::new(&store, &receivers, later)
            .enqueue(&[])
            .await
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(done.metrics["down"].expired, 1);
        assert_eq!(done.metrics["down"].pending, 0);
        let run: serde_json::Value = serde_json::from_slice(
            &store
                .get_opt(&run_key("down", later))
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(run["records"][0]["state"], "expired");
        assert_eq!(run["records"][0]["attempts"], http::TRIES);
        for f in ["pending.json", "status.json"] {
            let key = format!("{}/down/{f}", ledger::DELIVERIES);
            let text =
                String::from_utf8(store.get_opt(&key).await.unwrap().unwrap().to_vec()).unwrap();
            assert!(!text.contains("never-stored"), "{key}: {text}");
        }
    }
}
