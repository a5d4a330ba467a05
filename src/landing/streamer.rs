//! Runs landing datasets: live on a clock (each slot written when it closes, no drift) or over
//! an event-time range as fast as the store allows, with bounded concurrency and metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::naming::{Dataset, LandingObject, RenderArgs, slots};
use super::{Error, Result};
use crate::clock::{Clock, rfc3339_secs};
use crate::progress::Progress;
use crate::sources::LineFaults;
use crate::store::{KeyIndex, Store, WriteOutcome};

/// A run stops after this many failed uploads (the store is likely gone).
const MAX_FAILURES: u64 = 10;

/// What to land.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Datasets to run.
    pub datasets: Vec<&'static Dataset>,
    /// Generator seed.
    pub seed: u64,
    /// Records-per-file multiplier.
    pub scale: f64,
    /// Probability of a line fault.
    pub fault_rate: f64,
    /// Stop after this many objects per dataset.
    pub count: Option<u64>,
    /// Uploads in flight at once.
    pub concurrency: usize,
}

impl StreamOptions {
    fn render_args(&self) -> RenderArgs {
        RenderArgs {
            seed: self.seed,
            scale: self.scale,
            fault_rate: self.fault_rate,
        }
    }
}

/// Counters of one dataset.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DatasetMetrics {
    /// Objects newly written.
    pub written: u64,
    /// Objects whose key already held the same bytes.
    pub already_present: u64,
    /// Objects that could not be written.
    pub failed: u64,
    /// Bytes newly written.
    pub bytes: u64,
    /// Data lines or rows newly written.
    pub lines: u64,
    /// Faults in the newly written lines.
    pub faults: LineFaults,
}

/// Outcome of a landing run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LandingMetrics {
    /// Lake location.
    pub lake: String,
    /// How create-only writes were made (`conditional` or `check-then-put`).
    pub create_mode: String,
    /// Per dataset.
    pub datasets: BTreeMap<String, DatasetMetrics>,
    /// Wall time in seconds.
    pub elapsed_s: f64,
    /// First errors, one line each.
    pub errors: Vec<String>,
}

impl LandingMetrics {
    fn new(store: &Store, opts: &StreamOptions) -> LandingMetrics {
        LandingMetrics {
            lake: store.url().to_string(),
            datasets: opts
                .datasets
                .iter()
                .map(|d| (d.name.to_string(), DatasetMetrics::default()))
                .collect(),
            ..LandingMetrics::default()
        }
    }

    /// Objects written, already present and failed, over all datasets.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        self.datasets
            .values()
            .fold((0, 0, 0, 0), |(w, p, f, b), d| {
                (
                    w + d.written,
                    p + d.already_present,
                    f + d.failed,
                    b + d.bytes,
                )
            })
    }

    fn record(
        &mut self,
        dataset: &str,
        obj: &LandingObject,
        res: &crate::store::Result<WriteOutcome>,
    ) {
        let m = self.datasets.entry(dataset.to_string()).or_default();
        match res {
            Ok(WriteOutcome::Created) => {
                m.written += 1;
                m.bytes += obj.body.len() as u64;
                m.lines += obj.lines as u64;
                m.faults.add(&obj.faults);
            }
            Ok(WriteOutcome::AlreadyPresent) => m.already_present += 1,
            Err(e) => {
                m.failed += 1;
                if self.errors.len() < 5 {
                    self.errors.push(e.to_string());
                }
            }
        }
    }

    /// A one-paragraph human summary.
    pub fn summary(&self) -> String {
        let (w, p, f, b) = self.totals();
        let mut s = format!(
            "landed {w} new objects ({:.1} MB) into {} in {:.1}s; {p} already present; {f} failed",
            b as f64 / 1e6,
            self.lake,
            self.elapsed_s
        );
        for (name, d) in &self.datasets {
            s.push_str(&format!(
                "\n  {name:<5} {:>7} new {:>7} present {:>4} failed {:>9} bytes",
                d.written, d.already_present, d.failed, d.bytes
            ));
        }
        if !self.create_mode.is_empty() {
            s.push_str(&format!("\n  writes: {}", self.create_mode));
        }
        s
    }

    fn into_result(self) -> Result<LandingMetrics> {
        let (_, _, failed, _) = self.totals();
        if failed > 0 {
            return Err(Error::Failed {
                failed,
                first: self.errors.first().cloned().unwrap_or_default(),
            });
        }
        Ok(self)
    }
}

/// Lands every object the live streamers would have written for event times in
/// `[from, to)`. Already-landed objects are recognised and not written again.
///
/// On failure the metrics so far are returned inside the error's context by the caller via
/// `on_done`, which always runs.
pub async fn run_range(
    store: &Store,
    opts: &StreamOptions,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    on_done: &mut dyn FnMut(&LandingMetrics),
) -> Result<LandingMetrics> {
    if from >= to {
        return Err(Error::EmptyRange {
            from: rfc3339_secs(from),
            to: rfc3339_secs(to),
        });
    }
    let started = Instant::now();
    let mut metrics = LandingMetrics::new(store, opts);
    store.preflight().await?;
    metrics.create_mode = store.create_mode().await?.as_str().to_string();

    // Work goes in time order, so a few partitions per dataset (IoT: one per device) suffice.
    let index = &KeyIndex::new(8 * opts.datasets.len().max(1));
    let limit = opts.count.unwrap_or(u64::MAX);
    let per_dataset = |d: &'static Dataset| {
        slots(d, from, to)
            .flat_map(move |s| (0..d.objects_per_slot).map(move |i| (d, s, i)))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
    };
    let total: u64 = opts
        .datasets
        .iter()
        .map(|d| per_dataset(d).count() as u64)
        .sum();
    let work = merge_by_time(opts.datasets.iter().map(|d| per_dataset(d)).collect());
    let args = opts.render_args();
    let progress = Progress::new(total, "landing", "objects");

    let mut results = futures::stream::iter(work)
        .map(|(d, slot, i)| {
            let store = store.clone();
            async move {
                let obj = d.render(&args, slot, i);
                let res = store
                    .put_new_indexed(&obj.key, obj.body.clone(), &obj.attrs, index)
                    .await;
                (d, obj, res)
            }
        })
        .buffer_unordered(opts.concurrency.max(1));
    let mut failed = 0;
    while let Some((d, obj, res)) = results.next().await {
        if let Err(e) = &res {
            failed += 1;
            tracing::error!(key = %obj.key, "upload failed: {e}");
        }
        metrics.record(d.name, &obj, &res);
        progress.inc();
        if failed >= MAX_FAILURES {
            progress.finish();
            metrics.elapsed_s = started.elapsed().as_secs_f64();
            on_done(&metrics);
            return Err(Error::Aborted {
                failed,
                last: metrics.errors.last().cloned().unwrap_or_default(),
            });
        }
    }
    progress.finish();
    metrics.elapsed_s = started.elapsed().as_secs_f64();
    on_done(&metrics);
    metrics.into_result()
}

/// Merges per-dataset work lists into one list ordered by slot time (as live mode writes).
fn merge_by_time<I>(lists: Vec<I>) -> impl Iterator<Item = (&'static Dataset, DateTime<Utc>, usize)>
where
    I: Iterator<Item = (&'static Dataset, DateTime<Utc>, usize)>,
{
    let mut lists: Vec<std::iter::Peekable<I>> =
        lists.into_iter().map(Iterator::peekable).collect();
    std::iter::from_fn(move || {
        let next = lists
            .iter_mut()
            .enumerate()
            .filter_map(|(i, l)| l.peek().map(|(_, t, _)| (*t, i)))
            .min()?;
        lists[next.1].next()
    })
}

/// Runs the datasets live: each slot `[t, t + cadence)` is rendered and written when it closes
/// on `clock`, until `shutdown` turns true or every dataset reached `count`. In-flight uploads
/// always finish before this returns.
pub async fn run_live(
    store: &Store,
    opts: &StreamOptions,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Result<LandingMetrics> {
    let started = Instant::now();
    store.preflight().await?;
    let mut metrics = LandingMetrics::new(store, opts);
    metrics.create_mode = store.create_mode().await?.as_str().to_string();
    let metrics = Arc::new(Mutex::new(metrics));
    let mut streamers = JoinSet::new();
    for d in &opts.datasets {
        let (d, store, clock, metrics, mut shutdown) = (
            *d,
            store.clone(),
            Arc::clone(&clock),
            Arc::clone(&metrics),
            shutdown.clone(),
        );
        let args = opts.render_args();
        let limit = opts.count.unwrap_or(u64::MAX);
        streamers.spawn(async move {
            let mut uploads = JoinSet::new();
            let mut started = 0u64;
            let mut slot = d.slot_floor(clock.now());
            'slots: while started < limit {
                let closes = slot + Duration::seconds(d.cadence_s);
                tokio::select! {
                    _ = clock.sleep_until(closes) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break 'slots,
                }
                for i in 0..d.objects_per_slot {
                    if started >= limit {
                        break;
                    }
                    started += 1;
                    let obj = d.render(&args, slot, i);
                    let (store, metrics) = (store.clone(), Arc::clone(&metrics));
                    uploads.spawn(async move {
                        let res = store.put_new(&obj.key, obj.body.clone(), &obj.attrs).await;
                        match &res {
                            Ok(o) => tracing::debug!(key = %obj.key, outcome = ?o, "landed"),
                            Err(e) => tracing::error!(key = %obj.key, "upload failed: {e}"),
                        }
                        if let Ok(mut m) = metrics.lock() {
                            m.record(d.name, &obj, &res);
                        }
                    });
                }
                slot = closes;
            }
            while uploads.join_next().await.is_some() {}
        });
    }
    while let Some(r) = streamers.join_next().await {
        if let Err(e) = r {
            tracing::error!("a streamer task failed: {e}");
        }
    }
    let mut m = metrics.lock().map(|m| m.clone()).unwrap_or_default();
    m.elapsed_s = started.elapsed().as_secs_f64();
    Ok(m)
}
