//! Live serving (`up`, `serve`): the serving layer runs whenever speed-layer objects have landed
//! in this process ([`crate::layers::speed::signal`]), at most every `min_interval`, with the
//! wall clock's next whole second as its logical time — unified tables first, then dashboards, alerts and
//! analytics, as a run of `4-serving_layer_merge` does. The scheduled DAG keeps its schedule
//! (and its run records); the live runs between its runs keep no records of their own, and take
//! turns with it ([`super::exclusive`]). A condition alert's `{run}` is the slot of the schedule
//! a live run falls in, so it alerts once per slot as the scheduled runs do.

use std::future::IntoFuture;
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};
use futures::future::join_all;
use serde::Serialize;
use tokio::sync::watch;

use super::{AlertsBuilder, AnalyticsBuilder, DashboardsBuilder, Result, UnifiedBuilder};
use crate::clock::{rfc3339_secs, wall_now};
use crate::config::ReceiverConfig;
use crate::layers::speed::signal;
use crate::scheduler::Schedule;
use crate::sources::stream::all_streams;
use crate::store::Store;

/// The default least time between two live runs.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What one live run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TickMetrics {
    /// Its logical time.
    pub at: String,
    /// Streams whose unified table it changed.
    pub changed: Vec<String>,
    /// New alerts.
    pub alerts: usize,
}

/// What the live runs did until the stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveMetrics {
    /// Runs that changed a unified table.
    pub runs: u64,
    /// Runs that found nothing new.
    pub idle: u64,
    /// Runs that failed (each logged; the next landing tries again).
    pub failed: u64,
}

/// Live serving over the lake at `store`.
pub struct LiveServing {
    store: Store,
    min_interval: Duration,
    receivers: Vec<ReceiverConfig>,
    schedule: Option<Schedule>,
}

impl LiveServing {
    /// Live serving with the default interval, no receivers, ids labelled by logical time.
    pub fn new(store: Store) -> LiveServing {
        LiveServing {
            store,
            min_interval: DEFAULT_MIN_INTERVAL,
            receivers: Vec::new(),
            schedule: None,
        }
    }

    /// At most one run every `d`.
    pub fn with_min_interval(self, d: Duration) -> LiveServing {
        LiveServing {
            min_interval: d,
            ..self
        }
    }

    /// Delivers new alerts to `receivers`.
    pub fn with_receivers(self, receivers: Vec<ReceiverConfig>) -> LiveServing {
        LiveServing { receivers, ..self }
    }

    /// Labels condition alerts by the slot of `schedule` (the serving DAG's) a run falls in.
    pub fn with_schedule(self, schedule: Schedule) -> LiveServing {
        LiveServing {
            schedule: Some(schedule),
            ..self
        }
    }

    /// One live run at `t`: nothing after the unified tables if none changed.
    pub async fn tick(&self, t: DateTime<Utc>) -> Result<TickMetrics> {
        let store = &self.store;
        let unified = join_all(
            all_streams()
                .iter()
                .map(|spec| UnifiedBuilder::new(store, spec, t).into_future()),
        )
        .await;
        let mut changed = Vec::new();
        let mut dates = std::collections::BTreeSet::new();
        for (spec, m) in all_streams().iter().zip(unified) {
            let m = m?;
            if !m.dates().is_empty() {
                changed.push(spec.name.to_string());
                dates.extend(m.dates().iter().cloned());
            }
        }
        let mut out = TickMetrics {
            at: rfc3339_secs(t),
            changed,
            alerts: 0,
        };
        if out.changed.is_empty() {
            return Ok(out);
        }
        let (d, a, n) = tokio::join!(
            DashboardsBuilder::new(store, t).into_future(),
            AlertsBuilder::new(store, t)
                .with_receivers(&self.receivers)
                .with_run_label(slot(self.schedule.as_ref(), t))
                .into_future(),
            AnalyticsBuilder::new(store, t)
                .with_changed_dates(dates)
                .into_future(),
        );
        d?;
        out.alerts = a?.raised;
        n?;
        Ok(out)
    }

    /// Runs on every landing, at most every `min_interval`, until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> LiveMetrics {
        let mut landed = signal::subscribe();
        let mut m = LiveMetrics::default();
        let mut last: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                r = landed.changed() => if r.is_err() { break },
                _ = stop.wait_for(|s| *s) => break,
            }
            if let Some(last) = last {
                let next = last + self.min_interval;
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {},
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            // Landings until now are in this run.
            landed.borrow_and_update();
            last = Some(tokio::time::Instant::now());
            // The next whole second: windows end at T (exclusive), and events of this second
            // are in the objects that woke this run.
            let t = wall_now().trunc_subsecs(0) + chrono::Duration::seconds(1);
            match self.tick(t).await {
                Ok(tick) if tick.changed.is_empty() => m.idle += 1,
                Ok(tick) => {
                    m.runs += 1;
                    tracing::info!(
                        at = %tick.at,
                        changed = ?tick.changed,
                        alerts = tick.alerts,
                        "live serving run"
                    );
                }
                Err(e) => {
                    m.failed += 1;
                    tracing::warn!(
                        "live serving run at {} failed: {}",
                        rfc3339_secs(t),
                        crate::error_chain::error_chain(&e)
                    );
                }
            }
        }
        m
    }
}

/// The slot of `schedule` that `t` falls in (`t` itself without a schedule).
fn slot(schedule: Option<&Schedule>, t: DateTime<Utc>) -> DateTime<Utc> {
    match schedule {
        Some(s) if !s.fires_at(t) => s.prev_before(t).unwrap_or(t),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    #[test]
    fn a_live_run_is_labelled_by_the_slot_of_the_schedule_it_falls_in() {
        let s = Schedule::cron("*/10 * * * *").unwrap();
        let at = |s: &str| parse_utc(s).unwrap();
        assert_eq!(
            slot(Some(&s), at("2026-02-01T10:07:31Z")),
            at("2026-02-01T10:00:00Z")
        );
        assert_eq!(
            slot(Some(&s), at("2026-02-01T10:10:00Z")),
            at("2026-02-01T10:10:00Z")
        );
        assert_eq!(
            slot(Some(&s), at("2026-02-01T00:00:01Z")),
            at("2026-02-01T00:00:00Z")
        );
        assert_eq!(
            slot(None, at("2026-02-01T00:00:01Z")),
            at("2026-02-01T00:00:01Z")
        );
    }
}
