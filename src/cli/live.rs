//! The long-running commands: `up` (the main job: streamers, scheduler, web UI, ingest API,
//! inboxes) and `serve` (the same for real events: no streamers, no generator DAGs).

use std::sync::Arc;

use super::{UiArgs, UpArgs, Which, bind_ui, options, report, sched, shutdown_on_signal};
use crate::clock::SystemClock;
use crate::config::ValidatedConfig;
use crate::landing::{self, StreamOptions};
use crate::layers::serving::live::LiveServing;

/// Longest wait at shutdown for the web server's requests in flight (an ingest request is
/// answered once its batch, flushed at once when stopping, is landed).
const WEB_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// `lakepipe up`.
pub(super) async fn up(config: &ValidatedConfig, u: &UpArgs, json: bool) -> anyhow::Result<()> {
    let opts = options(config, Which::All, &u.gen_args, None);
    let ui = (!u.no_ui).then_some(&u.ui);
    services(
        config,
        ui,
        Some(opts),
        Some(sched::params(config, &u.gen_args, &[])),
        json,
    )
    .await
}

/// `lakepipe serve`.
pub(super) async fn serve(config: &ValidatedConfig, s: &super::ServeArgs) -> anyhow::Result<()> {
    let params = (!s.no_scheduler).then(|| sched::params(config, &super::GenArgs::default(), &[]));
    services(config, Some(&s.ui), None, params, false).await
}

/// Runs the scheduler (with `params`; none without), the web server (UI and ingest API)
/// unless `ui` is `None`, the inboxes, and the landing streamers when `streamers` is given,
/// until Ctrl-C, SIGTERM or a lost lease.
async fn services(
    config: &ValidatedConfig,
    ui: Option<&UiArgs>,
    streamers: Option<StreamOptions>,
    params: Option<crate::scheduler::RunParams>,
    json: bool,
) -> anyhow::Result<()> {
    let store = super::open_store(config).await?;
    store.preflight().await?;
    let listener = match ui {
        Some(u) => Some(bind_ui(u, &store).await?),
        None => None,
    };
    let command = if streamers.is_some() { "up" } else { "serve" };
    let scheduler = params.map(|p| sched::scheduler(config, store.clone(), p));
    let lease = match &scheduler {
        Some(s) => Some(s.lease(command).await?),
        None => None,
    };
    let (tx, rx) = shutdown_on_signal();
    let mut web_task = None;
    if let (Some(listener), Some(u)) = (listener, ui) {
        let mut stop = rx.clone();
        let ingest =
            landing::api::Ingest::new(store.clone(), config.config.ingest.clone(), rx.clone())?;
        eprintln!(
            "lakepipe ingest: POST http://{}/ingest/<stream> (newline-delimited JSON)",
            listener.local_addr()?
        );
        let web = crate::web::serve_with(
            store.clone(),
            listener,
            u.access(),
            Some(ingest),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        );
        web_task = Some(tokio::spawn(async move {
            if let Err(e) = web.await {
                tracing::error!("web UI stopped: {e:#}");
            }
        }));
    }
    if let Some(lease) = &lease {
        let mut lost = lease.lost();
        let lost_tx = tx.clone();
        tokio::spawn(async move {
            if lost.wait_for(|l| *l).await.is_ok() {
                let _ = lost_tx.send(true);
            }
        });
    }
    eprintln!(
        "lakepipe {command}: {} on {} (catchup {}); Ctrl-C to stop",
        match (&streamers, &scheduler) {
            (Some(_), _) => "landing streamers and the scheduler",
            (None, Some(_)) => "the scheduler (no generators)",
            (None, None) => "no scheduler",
        },
        store.url(),
        if config.config.scheduler.catchup {
            "on"
        } else {
            "off"
        }
    );
    let live = crate::scheduler::LiveOptions {
        catchup: config.config.scheduler.catchup,
        generators: streamers.is_some(),
    };
    let inboxes = landing::inbox::run_live(config, &store, rx.clone());
    // Serving runs on every landing too (at most every second), in the process that holds the
    // scheduler's lease: the one writer of the serving layer.
    let live_serving = async {
        match (&scheduler, &lease) {
            (Some(_), Some(_)) if config.config.serving.live => {
                let mut live = LiveServing::new(store.clone())
                    .with_min_interval(config.config.serving.min_interval())
                    .with_receivers(config.config.receivers.clone());
                if let Some(d) = crate::pipeline::dag(crate::layers::serving::DAG_ID) {
                    live = live.with_schedule(d.schedule.clone());
                }
                Some(live.run(rx.clone()).await)
            }
            _ => None,
        }
    };
    let scheduler = async {
        match (&scheduler, &lease) {
            (Some(s), Some(lease)) => s.live(lease, live, rx.clone()).await.map(Some),
            _ => Ok(None),
        }
    };
    let landing = async {
        match &streamers {
            Some(opts) => landing::run_live(&store, opts, Arc::new(SystemClock), rx.clone())
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    // Until Ctrl-C, SIGTERM or a lost lease, also when nothing else runs (`serve
    // --no-scheduler` without inboxes).
    let mut stopped = rx.clone();
    let stopped = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let (sched_res, landing_res, inbox_res, live_res, ()) =
        tokio::join!(scheduler, landing, inboxes, live_serving, stopped);
    // Ingest requests in flight are answered (their batches flushed at once) before exit.
    if let Some(web) = web_task {
        let _ = tx.send(true);
        if tokio::time::timeout(WEB_DRAIN, web).await.is_err() {
            tracing::warn!(
                "web server: requests still open after {} s; stopping anyway",
                WEB_DRAIN.as_secs()
            );
        }
    }
    if let Some(lease) = lease {
        lease.release().await;
    }
    if let Some(m) = landing_res? {
        report(&m, json);
    }
    if let Err(e) = inbox_res {
        tracing::error!("inboxes stopped: {e}");
    }
    if let Some(summary) = sched_res? {
        eprintln!("scheduler: {}", summary.line());
    }
    if let Some(m) = live_res {
        eprintln!(
            "live serving: {} run(s), {} with nothing new, {} failed",
            m.runs, m.idle, m.failed
        );
    }
    Ok(())
}
