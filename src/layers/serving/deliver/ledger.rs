//! The delivery state in the lake, per receiver under `serving/alerts/deliveries/<receiver>/`:
//!
//! - `pending.json`: the pending set — the alerts not yet delivered, with their payloads, attempts
//!   and last error; rewritten by each run, bounded by [`EXPIRE_AFTER`] (older ones expire).
//! - `runs/<date>/<run>.json`: what the run did, one record per alert (`sent`, `failed`,
//!   `expired`); written once per run that attempted anything, never read by lakepipe.
//! - `status.json`: the last state of each alert of the last [`EXPIRE_AFTER`], for the UI.
//!
//! Nothing here holds a header value: they are credentials.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::payload::Alert;
use crate::clock::{compact, parse_utc, rfc3339_secs};

/// Where delivery records live.
pub const DELIVERIES: &str = "serving/alerts/deliveries";
/// A pending alert older than this (by `triggered_at`) is given up: recorded `expired`.
pub const EXPIRE_AFTER: Duration = Duration::hours(24);
/// Most alerts in one POST.
pub const MAX_BATCH: usize = 100;

/// Key of `receiver`'s pending set.
pub fn pending_key(receiver: &str) -> String {
    format!("{DELIVERIES}/{receiver}/pending.json")
}

/// Key of `receiver`'s last-day states.
pub fn status_key(receiver: &str) -> String {
    format!("{DELIVERIES}/{receiver}/status.json")
}

/// Key of the records of `receiver` in the run at `t`.
pub fn run_key(receiver: &str, t: DateTime<Utc>) -> String {
    format!(
        "{DELIVERIES}/{receiver}/runs/{}/{}.json",
        t.date_naive(),
        compact(t)
    )
}

/// An alert not yet delivered to a receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAlert {
    /// What is sent.
    pub alert: Alert,
    /// Tries so far, over all runs.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last try failed.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// A receiver's pending set (`pending.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingSet {
    /// The run that wrote it.
    #[serde(default)]
    pub as_of: Option<String>,
    /// Oldest first.
    #[serde(default)]
    pub alerts: Vec<PendingAlert>,
}

impl PendingSet {
    /// Adds the alerts whose id is not pending yet; returns how many were added.
    pub fn add<'a>(&mut self, alerts: impl IntoIterator<Item = &'a Alert>) -> usize {
        let mut ids: HashSet<String> = self
            .alerts
            .iter()
            .map(|p| p.alert.alert_id.clone())
            .collect();
        let before = self.alerts.len();
        for a in alerts {
            if ids.insert(a.alert_id.clone()) {
                self.alerts.push(PendingAlert {
                    alert: a.clone(),
                    attempts: 0,
                    last_error: None,
                });
            }
        }
        self.alerts.len() - before
    }

    /// Removes and returns the alerts raised before `t` − [`EXPIRE_AFTER`] (or at a time that
    /// does not parse: data read from the lake).
    pub fn expire(&mut self, t: DateTime<Utc>) -> Vec<PendingAlert> {
        let limit = t - EXPIRE_AFTER;
        let (old, keep) = std::mem::take(&mut self.alerts).into_iter().partition(|p| {
            parse_utc(&p.alert.triggered_at)
                .ok()
                .is_none_or(|at| at < limit)
        });
        self.alerts = keep;
        old
    }

    /// The pending alerts in POSTs of at most [`MAX_BATCH`], oldest first.
    pub fn batches(&self) -> Vec<Vec<&PendingAlert>> {
        self.alerts
            .chunks(MAX_BATCH)
            .map(|c| c.iter().collect())
            .collect()
    }

    /// Records a try of the alerts `ids`: removed if `settled`, else kept with `reason`.
    pub fn tried(&mut self, ids: &HashSet<&str>, tries: u32, settled: bool, reason: Option<&str>) {
        self.alerts.retain_mut(|p| {
            if !ids.contains(p.alert.alert_id.as_str()) {
                return true;
            }
            p.attempts += tries;
            p.last_error = reason.map(str::to_string);
            !settled
        });
    }
}

/// The state of an alert at a receiver after a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum State {
    /// Delivered: answered 2xx.
    Sent {
        at: String,
        attempts: u32,
        status: u16,
    },
    /// Not delivered: retried by the next run if `next_attempt` is set, else given up (the
    /// receiver refused it).
    Failed {
        at: String,
        attempts: u32,
        reason: String,
        status: Option<u16>,
        next_attempt: Option<String>,
    },
    /// Pending for longer than [`EXPIRE_AFTER`]: given up.
    Expired {
        at: String,
        attempts: u32,
        reason: String,
    },
}

/// What happened to one alert at one receiver in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub alert_id: String,
    pub triggered_at: String,
    /// The run's logical time.
    pub run: String,
    #[serde(flatten)]
    pub state: State,
}

/// A receiver's last state of each alert of the last day (`status.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub as_of: Option<String>,
    #[serde(default)]
    pub alerts: BTreeMap<String, Record>,
}

impl Status {
    /// Takes the run's records and forgets alerts raised before `t` − [`EXPIRE_AFTER`].
    pub fn update(&mut self, records: &[Record], t: DateTime<Utc>) {
        for r in records {
            self.alerts.insert(r.alert_id.clone(), r.clone());
        }
        let limit = t - EXPIRE_AFTER;
        self.alerts
            .retain(|_, r| parse_utc(&r.triggered_at).is_ok_and(|at| at >= limit));
        self.as_of = Some(rfc3339_secs(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::serving::deliver::payload::tests::alert;

    #[test]
    fn the_pending_set_adds_once_keeps_failures_drops_settled_and_expires_the_old() {
        let t = parse_utc("2026-02-02T12:00:00Z").unwrap();
        let a = alert("r:a", "r", "high", "2026-02-02T11:50:00Z");
        let b = alert("r:b", "r", "high", "2026-02-02T12:00:00Z");
        let old = alert("r:old", "r", "high", "2026-02-01T11:50:00Z");
        let mut set = PendingSet::default();
        assert_eq!(set.add([&a, &b, &old]), 3);
        assert_eq!(set.add([&a, &b]), 0, "an id is pending once");

        let expired = set.expire(t);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].alert.alert_id, "r:old");
        assert_eq!(set.alerts.len(), 2);

        set.tried(&HashSet::from(["r:a", "r:b"]), 3, false, Some("HTTP 503"));
        assert_eq!(set.alerts[0].attempts, 3);
        assert_eq!(set.alerts[0].last_error.as_deref(), Some("HTTP 503"));
        set.tried(&HashSet::from(["r:a"]), 1, true, None);
        let ids: Vec<&str> = set
            .alerts
            .iter()
            .map(|p| p.alert.alert_id.as_str())
            .collect();
        assert_eq!(ids, ["r:b"]);
        assert_eq!(set.alerts[0].attempts, 3);

        // Round trip through the lake's JSON.
        let back: PendingSet = serde_json::from_value(serde_json::to_value(&set).unwrap()).unwrap();
        assert_eq!(back, set);

        let many: Vec<Alert> = (0..(MAX_BATCH + 1))
            .map(|i| alert(&format!("r:{i}"), "r", "high", "2026-02-02T12:00:00Z"))
            .collect();
        let mut big = PendingSet::default();
        big.add(&many);
        let sizes: Vec<usize> = big.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BATCH, 1]);
    }

    #[test]
    fn records_are_tagged_by_state_and_the_status_keeps_the_last_day() {
        let t = parse_utc("2026-02-02T12:00:00Z").unwrap();
        let sent = Record {
            alert_id: "r:a".into(),
            triggered_at: "2026-02-02T11:50:00Z".into(),
            run: "2026-02-02T12:00:00Z".into(),
            state: State::Sent {
                at: "2026-12-04T00:00:00Z".into(),
                attempts: 1,
                status: 200,
            },
        };
        let v = serde_json::to_value(&sent).unwrap();
        assert_eq!(v["state"], "sent");
        assert_eq!(v["status"], 200);
        let old = Record {
            alert_id: "r:old".into(),
            triggered_at: "2026-02-01T11:00:00Z".into(),
            ..sent.clone()
        };
        let mut status = Status::default();
        status.update(&[sent.clone(), old], t);
        assert_eq!(status.alerts.keys().collect::<Vec<_>>(), ["r:a"]);
        assert_eq!(
            run_key("ops", t),
            "serving/alerts/deliveries/ops/runs/2026-02-02/20260202T120000Z.json"
        );
    }
}
