//! Command line: the subcommands, global flags, and the dispatch from a parsed [`Args`] to
//! the library. Errors are turned into messages here (anyhow); exit codes are set in `main`.
//! The scheduler's commands (simulate, dags, tasks, runs, logs, airflow) live in `sched`;
//! lake administration (bootstrap, catalog, query) in `admin`.

mod admin;
mod inbox;
mod live;
mod panics;
mod pipeline;
mod produce;
mod sched;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::clock::{SystemClock, parse_utc};
use crate::config::{Config, Overrides, ValidatedConfig};
use crate::landing::{self, LandingMetrics, StreamOptions};
use crate::store::Store;

/// lakepipe — a lakehouse pipeline: streaming landing into S3 and a Lambda architecture
/// (speed, Delta Lake batch, serving) with an embedded Airflow-style scheduler.
#[derive(Debug, Parser)]
#[command(name = "lakepipe", version, about, long_about = None, after_help = ENV_HELP)]
pub struct Args {
    /// Lake location: a local directory or s3://bucket[/prefix] [default: ./lake]
    #[arg(long, global = true, value_name = "URL")]
    pub lake: Option<String>,
    /// Configuration file [default: $LAKEPIPE_CONFIG, else ./lakepipe.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print results as JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Pipeline declaration: streams, expectations, derived columns, facts, dashboards, alerts
    /// [default: $LAKEPIPE_PIPELINE, else `pipeline =` of the config, else the built-in one]
    #[arg(long, global = true, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Seed of every generator [default: 42]
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// Log filter for stderr: a level for lakepipe (error, warn, info, debug; dependencies stay
    /// at warn) or tracing directives
    #[arg(long, global = true, env = "LAKEPIPE_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

const ENV_HELP: &str = "\
Environment: LAKEPIPE_CONFIG, LAKEPIPE_PIPELINE, LAKEPIPE_LAKE, LAKEPIPE_SEED, LAKEPIPE_CONCURRENCY,
LAKEPIPE_SCALE, LAKEPIPE_FAULT_RATE, LAKEPIPE_S3_REGION, LAKEPIPE_S3_ENDPOINT, LAKEPIPE_S3_PROFILE,
LAKEPIPE_LOG, and the standard AWS variables (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).
Precedence: flags > environment > config file > defaults.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the main job: landing streamers, the scheduler, the web UI and the ingest API,
    /// live until Ctrl-C
    Up(UpArgs),
    /// Take real events: the ingest API, the inboxes, the scheduler and the web UI, without
    /// the synthetic streamers and generator DAGs, live until Ctrl-C
    Serve(ServeArgs),
    /// Send generated events of the streams that have a generator to an ingest API (demos,
    /// benchmarks)
    Produce(produce::ProduceArgs),
    /// Take the new objects of the configured inboxes once (`up` and `serve` poll them)
    #[command(subcommand)]
    Inbox(inbox::InboxCommand),
    /// Land text, CSV and IoT files, live or for an event-time range
    Stream(StreamArgs),
    /// Run every scheduled DAG run with fire time in (--from, --to] on a simulated clock
    Simulate(sched::SimulateArgs),
    /// List, show, trigger, backfill, test, pause or unpause DAGs
    #[command(subcommand)]
    Dags(sched::DagsCommand),
    /// Run one task instance and record the attempt (what an external Airflow calls), or clear
    /// a failed run's failed tasks
    #[command(subcommand)]
    Tasks(sched::TasksCommand),
    /// List DAG runs recorded in the lake
    #[command(subcommand)]
    Runs(sched::RunsCommand),
    /// Print the log of a task attempt
    Logs(sched::LogsArgs),
    /// Export the DAGs as Airflow 3 DAG files
    #[command(subcommand)]
    Airflow(sched::AirflowCommand),
    /// Create the bucket if missing and apply encryption, versioning, lifecycle, public-access
    /// block, TLS-only policy and tags; record the store's capabilities
    Bootstrap(admin::BootstrapArgs),
    /// Catalog of the lake: partition verification, metadata, Athena DDL
    #[command(subcommand)]
    Catalog(admin::CatalogCommand),
    /// Run SQL over the lake's tables
    Query(admin::QueryArgs),
    /// Compact small files of the Delta tables (Delta optimize)
    Compact(admin::CompactArgs),
    /// Delete files the Delta tables no longer reference
    Vacuum(admin::VacuumArgs),
    /// Serve the web UI and JSON API over the lake (no scheduler)
    Ui(UiArgs),
    /// Show the effective configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show the effective pipeline declaration, check a declaration file, or migrate the
    /// lake's per-stream tables to it
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
}

/// Where the web UI listens.
#[derive(Debug, Clone, clap::Args)]
pub struct UiArgs {
    /// Address of the web UI; a non-loopback address needs --token
    #[arg(long, value_name = "ADDR", default_value = crate::web::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// Token every request must carry (Authorization: Bearer, or ?token= once in a browser)
    #[arg(long, env = "LAKEPIPE_UI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Another host name the UI answers to (NAME or NAME:PORT, e.g. behind a reverse proxy);
    /// requests naming any other Host than the listen address are refused. Repeatable
    #[arg(long = "allowed-host", value_name = "NAME", value_parser = crate::web::guard::parse_allowed_host)]
    pub allowed_hosts: Vec<String>,
}

impl UiArgs {
    /// Who may use the UI.
    pub fn access(&self) -> crate::web::Access {
        crate::web::Access {
            token: self.token.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
        }
    }
}

/// `lakepipe up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub gen_args: GenArgs,
    #[command(flatten)]
    pub ui: UiArgs,
    /// Do not serve the web UI
    #[arg(long)]
    pub no_ui: bool,
}

/// `lakepipe serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub ui: UiArgs,
    /// Run no scheduler: only the ingest API, the UI and the inboxes (more ingest processes
    /// beside the one that holds the lake's scheduler lease)
    #[arg(long)]
    pub no_scheduler: bool,
}

/// Generation options shared by the streamers.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Probability (0-1) that a record carries a fault (malformed, duplicate, late, …)
    #[arg(long, env = "LAKEPIPE_FAULT_RATE", default_value_t = 0.0, value_parser = parse_fraction)]
    pub fault_rate: f64,
    /// Multiply the records per file (benchmarks)
    #[arg(long, env = "LAKEPIPE_SCALE", default_value_t = 1.0, value_parser = parse_scale)]
    pub scale: f64,
    /// Uploads in flight at once [default: store.concurrency, 32]
    #[arg(long)]
    pub concurrency: Option<usize>,
}

impl Default for GenArgs {
    fn default() -> Self {
        GenArgs {
            fault_rate: 0.0,
            scale: 1.0,
            concurrency: None,
        }
    }
}

/// `lakepipe stream`.
#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    /// Which streamer to run
    #[arg(value_enum)]
    pub which: Which,
    /// Start of the event-time range (RFC 3339, inclusive); needs --to
    #[arg(long, value_parser = parse_time, requires = "to")]
    pub from: Option<DateTime<Utc>>,
    /// End of the event-time range (RFC 3339, exclusive); needs --from
    #[arg(long, value_parser = parse_time, requires = "from")]
    pub to: Option<DateTime<Utc>>,
    /// Stop after N files per streamer
    #[arg(long)]
    pub count: Option<u64>,
    /// Land a range longer than 31 days
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub gen_args: GenArgs,
}

/// Streamer selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Text documents, every 5 s
    Text,
    /// CSV files, every 10 s
    Csv,
    /// IoT readings of four devices, every 15 s
    Iot,
    /// All three
    All,
}

/// `lakepipe config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (credentials redacted)
    Show,
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    parse_utc(s)
}

pub(crate) fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

fn parse_scale(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v > 0.0 && v <= 10_000.0 {
        Ok(v)
    } else {
        Err(format!("{v} must be > 0 and <= 10000"))
    }
}

/// Runs a parsed command line.
pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logging(&args.log);
    panics::install();
    let flags = Overrides {
        lake: args.lake.clone(),
        seed: args.seed,
        concurrency: match &args.command {
            Command::Up(u) => u.gen_args.concurrency,
            Command::Stream(s) => s.gen_args.concurrency,
            Command::Simulate(s) => s.gen_args.concurrency,
            _ => None,
        },
        pipeline: args.pipeline.clone(),
    };
    usage_check(check_ranges(&args.command).map_err(anyhow::Error::msg));
    let env = |k: &str| std::env::var(k).ok();
    let config = Config::load(args.config.as_deref(), &env, &flags)?;
    if let Command::Pipeline(pipeline::PipelineCommand::Check { .. }) = &args.command {
        // Checks a file; the active pipeline does not matter.
    } else {
        pipeline::install(&config).await?;
    }
    let config = config.validate()?;
    crate::pipeline::configure(crate::pipeline::DagSettings::from_config(&config.config))?;
    match &args.command {
        Command::Pipeline(c) => pipeline::pipeline(c, &config, args.json).await,
        Command::Config(ConfigCommand::Show) => config_show(&config, args.json).await,
        Command::Up(u) => {
            if !u.no_ui {
                usage_check(crate::web::check_listen(
                    &u.ui.listen,
                    u.ui.token.as_deref(),
                ));
            }
            live::up(&config, u, args.json).await
        }
        Command::Serve(s) => {
            usage_check(crate::web::check_listen(
                &s.ui.listen,
                s.ui.token.as_deref(),
            ));
            live::serve(&config, s).await
        }
        Command::Produce(p) => produce::produce(&config, p, args.json).await,
        Command::Inbox(c) => inbox::inbox(&config, c, args.json).await,
        Command::Ui(u) => {
            usage_check(crate::web::check_listen(&u.listen, u.token.as_deref()));
            ui(&config, u).await
        }
        Command::Stream(s) => stream(&config, s, args.json).await,
        Command::Simulate(s) => sched::simulate(&config, s, args.json).await,
        Command::Dags(c) => sched::dags(&config, c, args.json).await,
        Command::Tasks(c) => sched::tasks(&config, c, args.json).await,
        Command::Runs(c) => sched::runs(&config, c, args.json).await,
        Command::Logs(l) => sched::logs(&config, l).await,
        Command::Airflow(c) => sched::airflow(&config, c),
        Command::Bootstrap(b) => admin::bootstrap(&config, b, args.json).await,
        Command::Catalog(c) => admin::catalog(&config, c, args.json).await,
        Command::Query(q) => admin::query(&config, q).await,
        Command::Compact(c) => admin::compact(&config, c, args.json).await,
        Command::Vacuum(v) => admin::vacuum(&config, v, args.json).await,
    }
}

/// The longest `--from`/`--to` range a command runs without `--yes`: a month of `simulate` is
/// about 50 000 DAG runs, of `stream` 1.5 million files.
const LONG_RANGE_DAYS: i64 = 31;

/// Checks the `--from`/`--to` range of `stream`, `simulate` and `dags backfill` before any
/// work: an end before the start (or an empty range where it would do nothing) is a usage
/// error, and so is a range over [`LONG_RANGE_DAYS`] without `--yes`.
fn check_ranges(command: &Command) -> Result<(), String> {
    // (from, to, may the range be a single instant, --yes)
    let (from, to, instant_ok, yes) = match command {
        Command::Stream(StreamArgs {
            from: Some(from),
            to: Some(to),
            yes,
            ..
        }) => (*from, *to, false, *yes),
        Command::Simulate(a) => (a.from, a.to, false, a.yes),
        Command::Dags(sched::DagsCommand::Backfill { from, to, yes, .. }) => {
            (*from, *to, true, *yes)
        }
        _ => return Ok(()),
    };
    if to < from || (to == from && !instant_ok) {
        return Err(format!(
            "--to ({}) must be {} --from ({})",
            crate::clock::rfc3339_secs(to),
            if instant_ok { "at or after" } else { "after" },
            crate::clock::rfc3339_secs(from)
        ));
    }
    let days = (to - from).num_days();
    if days > LONG_RANGE_DAYS && !yes {
        return Err(format!(
            "--from/--to spans {days} days; ranges over {LONG_RANGE_DAYS} days run for a long time: pass --yes to run it"
        ));
    }
    Ok(())
}

/// A usage error found after parsing (flags that only make sense together): clap's message
/// and exit code 2.
fn usage_check<E: std::fmt::Display>(r: Result<(), E>) {
    if let Err(e) = r {
        use clap::CommandFactory as _;
        Args::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, e)
            .exit();
    }
}

fn init_logging(filter: &str) {
    // A bare level is lakepipe's; dependencies (delta-kernel logs every snapshot at info) stay
    // at warn unless directives name them.
    let directives = if filter.contains('=') || filter.contains(',') {
        filter.to_string()
    } else {
        format!("lakepipe={filter},warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("lakepipe=info,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

async fn config_show(config: &ValidatedConfig, json: bool) -> anyhow::Result<()> {
    let mut text = config.config.to_redacted_toml();
    let mut resolved = serde_json::json!({ "lake": config.lake.to_string() });
    if let crate::store::LakeUrl::S3 { .. } = &config.lake {
        let conn = crate::store::S3Connection::load(
            &config.config.s3,
            std::time::Duration::from_secs(config.config.store.connect_timeout_s),
        )
        .await;
        let endpoint = conn
            .endpoint
            .clone()
            .unwrap_or_else(|| "AWS default".into());
        text.push_str(&format!(
            "\n# resolved from the AWS environment\n# region = {:?}\n# endpoint = {:?}\n# credentials = {}\n",
            conn.region,
            endpoint,
            if conn.sdk.credentials_provider().is_some() { "AWS credential chain (not shown)" } else { "none" }
        ));
        resolved["region"] = conn.region.into();
        resolved["endpoint"] = endpoint.into();
    }
    if json {
        let mut v = serde_json::to_value(toml::from_str::<toml::Value>(
            &config.config.to_redacted_toml(),
        )?)?;
        v["resolved"] = resolved;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

pub(crate) fn options(
    config: &ValidatedConfig,
    which: Which,
    g: &GenArgs,
    count: Option<u64>,
) -> StreamOptions {
    let datasets = match which {
        Which::All => landing::DATASETS.iter().collect(),
        Which::Text => vec![&landing::DATASETS[0]],
        Which::Csv => vec![&landing::DATASETS[1]],
        Which::Iot => vec![&landing::DATASETS[2]],
    };
    StreamOptions {
        datasets,
        seed: config.config.seed,
        scale: g.scale,
        fault_rate: g.fault_rate,
        count,
        concurrency: config.config.store.concurrency,
    }
}

pub(crate) fn report(m: &LandingMetrics, json: bool) {
    if json {
        match serde_json::to_string_pretty(m) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot render metrics: {e}"),
        }
    } else {
        println!("{}", m.summary());
    }
}

pub(crate) async fn open_store(config: &ValidatedConfig) -> anyhow::Result<Store> {
    Store::open(config)
        .await
        .with_context(|| format!("cannot open lake {}", config.lake))
}

/// [`Store::open_existing`], for the commands that only read the lake.
pub(crate) async fn open_existing_store(config: &ValidatedConfig) -> anyhow::Result<Store> {
    Ok(Store::open_existing(config).await?)
}

async fn stream(config: &ValidatedConfig, s: &StreamArgs, json: bool) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let opts = options(config, s.which, &s.gen_args, s.count);
    match (s.from, s.to) {
        (Some(from), Some(to)) => {
            landing::run_range(&store, &opts, from, to, &mut |m| report(m, json)).await?;
            Ok(())
        }
        _ => live(&store, &opts, json).await,
    }
}

/// Binds the UI's address and says where it is (the first line a user needs).
pub(crate) async fn bind_ui(u: &UiArgs, store: &Store) -> anyhow::Result<tokio::net::TcpListener> {
    crate::web::check_listen(&u.listen, u.token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(u.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", u.listen))?;
    eprintln!(
        "lakepipe ui: http://{}/ over {}",
        listener.local_addr()?,
        store.url()
    );
    Ok(listener)
}

/// `lakepipe ui`.
async fn ui(config: &ValidatedConfig, u: &UiArgs) -> anyhow::Result<()> {
    let store = open_existing_store(config).await?;
    let listener = bind_ui(u, &store).await?;
    Ok(crate::web::serve(store, listener, u.access(), wait_for_signal()).await?)
}

/// A shutdown flag that turns true on Ctrl-C or SIGTERM.
pub(crate) fn shutdown_on_signal() -> (
    tokio::sync::watch::Sender<bool>,
    tokio::sync::watch::Receiver<bool>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signal_tx = tx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("stopping: finishing in-flight work…");
        let _ = signal_tx.send(true);
    });
    (tx, rx)
}

async fn live(store: &Store, opts: &StreamOptions, json: bool) -> anyhow::Result<()> {
    let (_tx, rx) = shutdown_on_signal();
    let names: Vec<String> = opts
        .datasets
        .iter()
        .map(|d| format!("{} every {} s", d.name, d.cadence_s))
        .collect();
    eprintln!(
        "streaming {} into {} (event-time UTC partitions); Ctrl-C to stop",
        names.join(", "),
        store.url()
    );
    let m = landing::run_live(store, opts, Arc::new(SystemClock), rx).await?;
    report(&m, json);
    let (_, _, failed, _) = m.totals();
    if failed > 0 {
        tracing::warn!("{failed} uploads failed; see the errors above");
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn range_needs_both_ends_and_valid_times() {
        assert!(
            Args::try_parse_from([
                "lakepipe",
                "stream",
                "all",
                "--from",
                "2026-02-01T00:00:00Z"
            ])
            .is_err()
        );
        assert!(
            Args::try_parse_from([
                "lakepipe",
                "stream",
                "all",
                "--from",
                "yesterday",
                "--to",
                "2026-02-01T00:00:00Z"
            ])
            .is_err()
        );
        assert!(Args::try_parse_from(["lakepipe", "stream", "csv", "--fault-rate", "2"]).is_err());
        let a = Args::try_parse_from([
            "lakepipe",
            "--lake",
            "/tmp/x",
            "stream",
            "iot",
            "--from",
            "2026-02-01T00:00:00Z",
            "--to",
            "2026-02-01T01:00:00+01:00",
        ])
        .unwrap();
        let Command::Stream(s) = a.command else {
            panic!()
        };
        assert_eq!(s.which, Which::Iot);
        assert_eq!(s.to, s.from);
    }

    #[test]
    fn ranges_are_checked_before_any_work() {
        let check = |args: &[&str]| {
            let mut all = vec!["lakepipe"];
            all.extend_from_slice(args);
            check_ranges(&Args::try_parse_from(all).unwrap().command)
        };
        let (a, b) = ("2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z");
        let far = "2026-04-01T00:00:00Z";
        // The end before the start: refused by every ranged command.
        assert!(check(&["simulate", "--from", b, "--to", a]).is_err());
        assert!(check(&["stream", "all", "--from", b, "--to", a]).is_err());
        let backfill = ["dags", "backfill", "5-lake_catalog_refresh"];
        let e = check(&[&backfill[..], &["--from", b, "--to", a]].concat()).unwrap_err();
        assert!(e.contains("at or after"), "{e}");
        // One instant is a backfill of one run, but an empty simulate or stream range.
        assert!(check(&[&backfill[..], &["--from", a, "--to", a]].concat()).is_ok());
        assert!(check(&["simulate", "--from", a, "--to", a]).is_err());
        assert!(check(&["simulate", "--from", a, "--to", b]).is_ok());
        // Two months need --yes.
        let e = check(&["simulate", "--from", a, "--to", far]).unwrap_err();
        assert!(e.contains("--yes") && e.contains("59 days"), "{e}");
        assert!(check(&["simulate", "--from", a, "--to", far, "--yes"]).is_ok());
        assert!(check(&["stream", "csv", "--from", a, "--to", far]).is_err());
        assert!(check(&[&backfill[..], &["--from", a, "--to", far, "--yes"]].concat()).is_ok());
        // A date outside the supported range never parses.
        assert!(
            Args::try_parse_from([
                "lakepipe",
                "simulate",
                "--from",
                a,
                "--to",
                "9999-01-01T00:00:00Z"
            ])
            .is_err()
        );
    }
}
