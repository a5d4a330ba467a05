//! The long-running commands: `up` (the main job: streamers, scheduler, web UI, ingest API,
//! inboxes) and `serve` (the same for real events: no streamers, no generator DAGs).

use std::sync::Arc;

use super::{UiArgs, UpArgs, Which, bind_ui, options, report, sched, shutdown_on_signal};
use crate::clock::SystemClock;
use crate::config::ValidatedConfig;
use crate::landing::{self, StreamOptions};

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
    if let (Some(listener), Some(u)) = (listener, ui) {
        let mut stop = rx.clone();
        let web = crate::web::serve(store.clone(), listener, u.access(), async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        tokio::spawn(async move {
            if let Err(e) = web.await {
                tracing::error!("web UI stopped: {e:#}");
            }
        });
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
    let (sched_res, landing_res, inbox_res) = tokio::join!(scheduler, landing, inboxes);
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
    Ok(())
}
