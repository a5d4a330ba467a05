//! The scheduler's commands, named as in Airflow's CLI: `simulate`, `dags list|show|trigger|
//! backfill|test|pause|unpause`, `tasks run|clear`, `runs list`, `logs`, `airflow export`.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};

use super::{GenArgs, open_existing_store, open_store, parse_time};
use crate::clock::rfc3339_secs;
use crate::config::ValidatedConfig;
use crate::pipeline::dags as all_dags;
use crate::progress::Progress;
use crate::scheduler::control::Request;
use crate::scheduler::driver::DriveSummary;
use crate::scheduler::handle::{BackfillPlan, RequestOutcome, Scheduler, SimulatePlan};
use crate::scheduler::{Dag, DagRun, Reprocess, RunParams, RunState};
use crate::store::Store;

/// `lakepipe simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Start (exclusive): runs whose fire time is after this instant (RFC 3339)
    #[arg(long, value_parser = parse_time)]
    pub from: DateTime<Utc>,
    /// End (inclusive): runs whose fire time is at or before this instant (RFC 3339)
    #[arg(long, value_parser = parse_time)]
    pub to: DateTime<Utc>,
    /// Only these DAGs (repeatable) [default: every scheduled DAG]
    #[arg(long = "dag", value_name = "DAG_ID")]
    pub dags: Vec<String>,
    #[command(flatten)]
    pub gen_args: GenArgs,
    /// Test hook: every attempt of DAG:TASK fails (repeatable)
    #[arg(long, hide = true, value_name = "DAG:TASK")]
    pub fail_task: Vec<String>,
    /// Run a range longer than 31 days
    #[arg(long)]
    pub yes: bool,
}

/// `lakepipe dags …`.
#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// List every DAG with its schedule and next fire time
    List,
    /// Show a DAG's tasks, edges, retries and timeouts
    Show {
        /// DAG ID
        dag: String,
    },
    /// Create a manual run and execute it now
    Trigger {
        /// DAG ID
        dag: String,
        /// Logical date of the run (RFC 3339) [default: now, to the second]
        #[arg(long, value_parser = parse_time)]
        logical_date: Option<DateTime<Utc>>,
        #[command(flatten)]
        gen_args: GenArgs,
    },
    /// Run a DAG for every fire time in [--from, --to] (inclusive, as in Airflow)
    Backfill {
        /// DAG ID
        dag: String,
        /// First logical date (RFC 3339)
        #[arg(long, value_parser = parse_time)]
        from: DateTime<Utc>,
        /// Last logical date (RFC 3339)
        #[arg(long, value_parser = parse_time)]
        to: DateTime<Utc>,
        /// Which existing runs run again
        #[arg(long, value_enum, default_value_t = ReprocessArg::None)]
        reprocess: ReprocessArg,
        /// Run a range longer than 31 days
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        gen_args: GenArgs,
    },
    /// Stop scheduling a DAG: its fire times pass without runs until it is unpaused
    Pause {
        /// DAG ID
        dag: String,
    },
    /// Resume scheduling a paused DAG
    Unpause {
        /// DAG ID
        dag: String,
    },
    /// Run a DAG in-process for one logical date, print its logs, record nothing
    Test {
        /// DAG ID
        dag: String,
        /// Logical date (RFC 3339)
        #[arg(long, value_parser = parse_time)]
        logical_date: DateTime<Utc>,
        #[command(flatten)]
        gen_args: GenArgs,
    },
}

/// `--reprocess` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReprocessArg {
    /// Keep finished runs; resume unfinished ones
    None,
    /// Re-run the failed tasks of failed runs
    Failed,
    /// Re-run every task
    All,
}

/// `lakepipe tasks …`.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Run one task once for a logical date and record the attempt; exit 1 if it fails
    Run {
        /// DAG ID
        dag: String,
        /// Task ID
        task: String,
        /// Logical date (RFC 3339; `2026-02-01 00:05:00+00:00` as Airflow renders it works too)
        #[arg(long, value_parser = parse_time)]
        logical_date: DateTime<Utc>,
        #[command(flatten)]
        gen_args: GenArgs,
    },
    /// Re-run the failed tasks of a failed run and their downstream (queued for the running
    /// scheduler if there is one)
    Clear {
        /// DAG ID
        dag: String,
        /// Logical date of the run (RFC 3339)
        #[arg(long, value_parser = parse_time)]
        logical_date: DateTime<Utc>,
        #[command(flatten)]
        gen_args: GenArgs,
    },
}

/// `lakepipe runs …`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first
    List {
        /// Only this DAG
        #[arg(long)]
        dag: Option<String>,
        /// Only runs in this state (queued, running, success, failed)
        #[arg(long, value_parser = parse_run_state)]
        state: Option<RunState>,
    },
}

/// `lakepipe logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// DAG ID
    pub dag: String,
    /// Logical date of the run (RFC 3339)
    #[arg(value_parser = parse_time)]
    pub logical_date: DateTime<Utc>,
    /// Task ID
    pub task: String,
    /// Attempt number [default: the latest]
    #[arg(long)]
    pub attempt: Option<u32>,
}

/// `lakepipe airflow …`.
#[derive(Debug, Subcommand)]
pub enum AirflowCommand {
    /// Write one Airflow 3 DAG file per DAG
    Export {
        /// Directory for the DAG files (Airflow's dags folder)
        #[arg(long)]
        out: PathBuf,
        /// lakepipe binary the Airflow workers run [default: this binary]
        #[arg(long)]
        binary: Option<String>,
        /// Airflow start_date of the scheduled DAGs (RFC 3339)
        #[arg(long, value_parser = parse_time, default_value = "2026-01-01T00:00:00Z")]
        start_date: DateTime<Utc>,
    },
}

fn parse_run_state(s: &str) -> Result<RunState, String> {
    RunState::parse(s)
        .ok_or_else(|| format!("`{s}` is not one of queued, running, success, failed"))
}

fn find_dag(id: &str) -> anyhow::Result<&'static Dag> {
    Ok(crate::scheduler::dag::lookup(all_dags(), id)?)
}

pub(super) fn params(config: &ValidatedConfig, g: &GenArgs, fail_tasks: &[String]) -> RunParams {
    RunParams {
        seed: config.config.seed,
        scale: g.scale,
        fault_rate: g.fault_rate,
        fail_tasks: fail_tasks.to_vec(),
        receivers: config.config.receivers.clone(),
        upkeep: config.config.upkeep.clone(),
        lineage: config.config.lineage.clone(),
        glue: crate::config::GlueTarget::from_config(&config.config),
    }
}

/// The scheduler of an open lake, with the run parameters and lease settings of the command.
pub(super) fn scheduler(config: &ValidatedConfig, store: Store, params: RunParams) -> Scheduler {
    Scheduler::new(store, all_dags(), params).lease_ttl(std::time::Duration::from_secs(
        config.config.scheduler.lease_ttl_s,
    ))
}

/// Opens and checks the lake and builds its scheduler.
async fn open_scheduler(config: &ValidatedConfig, params: RunParams) -> anyhow::Result<Scheduler> {
    let store = open_store(config).await?;
    store.preflight().await?;
    Ok(scheduler(config, store, params))
}

fn print_summary(summary: &DriveSummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        println!("{}", summary.line());
        for (dag, states) in &summary.by_dag {
            let s: Vec<String> = states.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!("  {dag:<42} {}", s.join(", "));
        }
    }
    if summary.failed() > 0 {
        for f in &summary.failures {
            eprintln!("failed: {f}");
        }
        anyhow::bail!(
            "{} runs failed; `lakepipe runs list --state failed` lists them and `lakepipe logs` shows why",
            summary.failed()
        );
    }
    Ok(())
}

/// `lakepipe simulate`.
pub(super) async fn simulate(
    config: &ValidatedConfig,
    a: &SimulateArgs,
    json: bool,
) -> anyhow::Result<()> {
    let plan = SimulatePlan::new(all_dags(), &a.dags, a.from, a.to)?;
    let sched = open_scheduler(config, params(config, &a.gen_args, &a.fail_task)).await?;
    let progress = Progress::new(plan.runs(), "simulate", "runs");
    let result = sched
        .simulate(&plan, |s, now| {
            progress.set(s.executed + s.already_done);
            progress.message(rfc3339_secs(now));
        })
        .await;
    progress.finish();
    print_summary(&result?, json)
}

/// `lakepipe dags …`.
pub(super) async fn dags(
    config: &ValidatedConfig,
    c: &DagsCommand,
    json: bool,
) -> anyhow::Result<()> {
    match c {
        DagsCommand::List => {
            dags_list(json);
            Ok(())
        }
        DagsCommand::Show { dag } => dags_show(find_dag(dag)?, json),
        DagsCommand::Trigger {
            dag,
            logical_date,
            gen_args,
        } => {
            let dag = find_dag(dag)?;
            let t = logical_date.unwrap_or_else(crate::clock::now_to_the_second);
            manual_request(config, dag, t, Request::Trigger, gen_args, json).await
        }
        DagsCommand::Pause { dag } | DagsCommand::Unpause { dag } => {
            let dag = find_dag(dag)?;
            let paused = matches!(c, DagsCommand::Pause { .. });
            let sched = open_scheduler(config, RunParams::default()).await?;
            let rec = sched.set_paused(dag, paused, "cli").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rec)?);
            } else {
                println!(
                    "{}: {}",
                    dag.dag_id,
                    if paused { "paused" } else { "unpaused" }
                );
            }
            Ok(())
        }
        DagsCommand::Backfill {
            dag,
            from,
            to,
            reprocess,
            gen_args,
            ..
        } => {
            let reprocess = match reprocess {
                ReprocessArg::None => Reprocess::None,
                ReprocessArg::Failed => Reprocess::Failed,
                ReprocessArg::All => Reprocess::All,
            };
            let plan = BackfillPlan::new(find_dag(dag)?, *from, *to, reprocess)?;
            let sched = open_scheduler(config, params(config, gen_args, &[])).await?;
            let progress = Progress::new(plan.runs(), "backfill", "runs");
            let res = sched
                .backfill(&plan, |s| progress.set(s.executed + s.already_done))
                .await;
            progress.finish();
            print_summary(&res?, json)
        }
        DagsCommand::Test {
            dag,
            logical_date,
            gen_args,
        } => {
            let dag = find_dag(dag)?;
            let sched = open_scheduler(config, params(config, gen_args, &[])).await?;
            report_run(&sched.test(dag, *logical_date).await?, json)
        }
    }
}

/// A manual trigger or clear: executed now under the lease, or — when a scheduler holds the
/// lease — recorded and queued for it, as Airflow's CLI does.
async fn manual_request(
    config: &ValidatedConfig,
    dag: &'static Dag,
    t: DateTime<Utc>,
    request: Request,
    gen_args: &GenArgs,
    json: bool,
) -> anyhow::Result<()> {
    let sched = open_scheduler(config, params(config, gen_args, &[])).await?;
    match sched.request(dag, t, request).await? {
        RequestOutcome::Ran(run) => report_run(&run, json),
        RequestOutcome::Queued { run, holder } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                println!(
                    "{} {}: queued for the running scheduler (`lakepipe {}`, pid {} on {})",
                    dag.dag_id,
                    rfc3339_secs(t),
                    holder.command,
                    holder.pid,
                    holder.host
                );
            }
            Ok(())
        }
    }
}

fn report_run(run: &DagRun, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(run)?);
    } else {
        println!(
            "{} {} ({}): {}",
            run.dag_id,
            rfc3339_secs(run.logical_date),
            run.run_type.as_str(),
            run.state.as_str()
        );
    }
    if run.state == RunState::Failed {
        anyhow::bail!(
            "run failed: {}; `lakepipe logs {} {} <task>` shows why",
            run.failed_tasks.join(", "),
            run.dag_id,
            rfc3339_secs(run.logical_date)
        );
    }
    Ok(())
}

fn dags_list(json: bool) {
    let now = crate::clock::wall_now();
    let rows: Vec<serde_json::Value> = all_dags()
        .iter()
        .map(|d| {
            // Every declared task has its body (the layers declare both at once); the field
            // stays for the scripts that read it.
            let available = true;
            serde_json::json!({
                "dag_id": d.dag_id,
                "description": d.description,
                "schedule": d.schedule.expr(),
                "next_fire_time": d.schedule.next_after(now).map(rfc3339_secs),
                "tasks": d.tasks.len(),
                "max_active_runs": d.max_active_runs,
                "available": available,
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return;
    }
    println!(
        "{:<42} {:<14} {:<22} {:>5}  available",
        "dag_id", "schedule", "next fire (UTC)", "tasks"
    );
    for r in rows {
        println!(
            "{:<42} {:<14} {:<22} {:>5}  {}",
            r["dag_id"].as_str().unwrap_or_default(),
            r["schedule"].as_str().unwrap_or("manual"),
            r["next_fire_time"].as_str().unwrap_or("-"),
            r["tasks"],
            if r["available"].as_bool() == Some(true) {
                "yes"
            } else {
                "not yet"
            }
        );
    }
}

fn dags_show(dag: &Dag, json: bool) -> anyhow::Result<()> {
    if json {
        let tasks: Vec<serde_json::Value> = dag
            .tasks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "task_id": t.task_id,
                    "upstream": t.upstream,
                    "retries": t.policy.retries,
                    "retry_delay_s": t.policy.retry_delay.as_secs(),
                    "max_retry_delay_s": t.policy.max_retry_delay.as_secs(),
                    "execution_timeout_s": t.policy.execution_timeout.as_secs(),
                    "available": true,
                })
            })
            .collect();
        let edges: Vec<[&str; 2]> = dag
            .tasks
            .iter()
            .flat_map(|t| {
                t.upstream
                    .iter()
                    .map(move |u| [u.as_str(), t.task_id.as_str()])
            })
            .collect();
        let v = serde_json::json!({
            "dag_id": dag.dag_id,
            "description": dag.description,
            "schedule": dag.schedule.expr(),
            "max_active_runs": dag.max_active_runs,
            "tasks": tasks,
            "edges": edges,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} — {}", dag.dag_id, dag.description);
    println!(
        "schedule: {}   max_active_runs: {}",
        dag.schedule.expr().unwrap_or("manual"),
        dag.max_active_runs
    );
    println!("\ntasks (upstreams first):");
    for t in &dag.tasks {
        println!(
            "  {:<32} retries {} (back-off {} s .. {} s), timeout {} s",
            t.task_id,
            t.policy.retries,
            t.policy.retry_delay.as_secs(),
            t.policy.max_retry_delay.as_secs(),
            t.policy.execution_timeout.as_secs(),
        );
    }
    println!("\nedges:");
    for t in &dag.tasks {
        for u in &t.upstream {
            println!("  {u} >> {}", t.task_id);
        }
    }
    Ok(())
}

/// `lakepipe tasks run`.
pub(super) async fn tasks(
    config: &ValidatedConfig,
    c: &TasksCommand,
    json: bool,
) -> anyhow::Result<()> {
    let (dag, task, logical_date, gen_args) = match c {
        TasksCommand::Run {
            dag,
            task,
            logical_date,
            gen_args,
        } => (dag, task, logical_date, gen_args),
        TasksCommand::Clear {
            dag,
            logical_date,
            gen_args,
        } => {
            let dag = find_dag(dag)?;
            return manual_request(config, dag, *logical_date, Request::Clear, gen_args, json)
                .await;
        }
    };
    let dag = find_dag(dag)?;
    let t = *logical_date;
    let sched = open_scheduler(config, params(config, gen_args, &[])).await?;
    let ti = sched.run_task(dag, task, t).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ti)?);
    } else {
        println!(
            "{} {} {} try {}: {}",
            dag.dag_id,
            task,
            rfc3339_secs(t),
            ti.try_number(),
            ti.state.as_str()
        );
    }
    if !ti.state.lets_downstream_run() {
        let why = ti
            .attempts
            .last()
            .and_then(|a| a.error.clone())
            .unwrap_or_default();
        anyhow::bail!("task {task} failed: {why}");
    }
    Ok(())
}

/// `lakepipe runs list`.
pub(super) async fn runs(
    config: &ValidatedConfig,
    c: &RunsCommand,
    json: bool,
) -> anyhow::Result<()> {
    let RunsCommand::List { dag, state } = c;
    if let Some(d) = dag {
        find_dag(d)?;
    }
    let store = open_existing_store(config).await?;
    let runs = scheduler(config, store, RunParams::default())
        .list_runs(dag.as_deref(), *state)
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    println!(
        "{:<42} {:<21} {:<10} {:<8} {:<21} {:<21}",
        "dag_id", "logical_date", "run_type", "state", "data interval start", "end_date"
    );
    for run in &runs {
        println!(
            "{:<42} {:<21} {:<10} {:<8} {:<21} {:<21}",
            run.dag_id,
            rfc3339_secs(run.logical_date),
            run.run_type.as_str(),
            run.state.as_str(),
            rfc3339_secs(run.data_interval_start),
            run.end_date.map(rfc3339_secs).unwrap_or_else(|| "-".into())
        );
        if let Some(note) = &run.note {
            println!("  note: {note}");
        }
    }
    eprintln!("{} runs", runs.len());
    Ok(())
}

/// `lakepipe logs`.
pub(super) async fn logs(config: &ValidatedConfig, l: &LogsArgs) -> anyhow::Result<()> {
    let dag = find_dag(&l.dag)?;
    dag.task_by_id(&l.task)
        .ok_or_else(|| anyhow::anyhow!("DAG {} has no task {}", dag.dag_id, l.task))?;
    let store = open_existing_store(config).await?;
    let text = scheduler(config, store, RunParams::default())
        .log(dag, &l.task, l.logical_date, l.attempt)
        .await?;
    use std::io::Write as _;
    std::io::stdout().write_all(&text)?;
    Ok(())
}

/// `lakepipe airflow export`.
pub(super) fn airflow(config: &ValidatedConfig, c: &AirflowCommand) -> anyhow::Result<()> {
    let AirflowCommand::Export {
        out,
        binary,
        start_date,
    } = c;
    let binary = match binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .context("cannot tell where this binary is; pass --binary")?
            .display()
            .to_string(),
    };
    let opts = crate::scheduler::airflow::ExportOptions {
        binary,
        lake: match &config.lake {
            // Airflow workers run elsewhere: give them an absolute path.
            crate::store::LakeUrl::Local(p) => std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string(),
            other => other.to_string(),
        },
        // The workers read the same declaration file: by its absolute path.
        pipeline: config.config.pipeline.as_ref().map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        }),
        catchup: config.config.scheduler.catchup,
        start_date: *start_date,
    };
    let written = crate::scheduler::airflow::export(all_dags(), out, &opts)
        .with_context(|| format!("cannot write DAG files into {}", out.display()))?;
    for p in &written {
        println!("{}", p.display());
    }
    eprintln!("{} DAG files written for lake {}", written.len(), opts.lake);
    Ok(())
}
