//! `tarefas run …`: the executions of tasks — list, show, watch live, cancel, resume.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use clap::{Args, Subcommand};
use sqlx::PgPool;
use tarefas_core::run::RunStatus;
use tarefas_store::runs::{self, Run};

use crate::db::DbArgs;
use crate::output;
use crate::task::AccountScope;

/// `tarefas run` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// List runs, newest first, then the fires that were not run, with why (coalesced after
    /// an outage, later than the misfire grace, skipped under the task's `overlap`, dropped
    /// by an edit); `--json` interleaves both by time, each with a `kind` (`run` or `missed`).
    List(ListArgs),
    /// Show one run: status, the version of its task it executes, counts by outcome, timing.
    Show(RunArgs),
    /// Follow a run live until it ends (exit status 0 when done, 1 otherwise).
    Watch(RunArgs),
    /// Cancel a run: calls stop within a second; pending items are skipped.
    Cancel(RunArgs),
    /// Resume a paused run (e.g. after fixing the account's token).
    Resume(RunArgs),
    /// The per-record report: one line per record with its outcome, reason and time.
    ///
    /// Example: tarefas run items 42 --outcome failed --csv > falhas.csv
    Items(crate::safety::ItemsArgs),
    /// "Aprovar envio": let a run held in `awaiting_approval` (it planned more records than
    /// its `max_records`) start its calls. `tarefas run cancel` ends it instead.
    ///
    /// Example: tarefas run approve 42
    Approve(crate::safety::ActArgs),
    /// "Reenviar falhas": a new run of the same task over this run's failed items only
    /// (never those done, skipped or of unknown outcome).
    ///
    /// Example: tarefas run retry-failed 42
    RetryFailed(crate::safety::ActArgs),
}

/// Flags of `run list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this task's runs.
    #[arg(long)]
    task: Option<i64>,
    /// How many runs (and at most as many missed fires, over the time those runs span).
    #[arg(long, default_value_t = 20)]
    limit: i64,
    #[command(flatten)]
    scope: AccountScope,
    /// Print a JSON array: runs (`"kind": "run"`) and missed fires (`{"kind": "missed",
    /// "task_id", "scheduled_for", "reason", "recorded_at"}`), newest first.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of the commands that name one run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run id.
    id: i64,
    #[command(flatten)]
    scope: AccountScope,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    output::opt(t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)))
}

/// The run as JSON, with its counts by outcome (the admin API's shape).
pub fn run_json(run: &Run) -> serde_json::Value {
    tarefas_ops::run_json(run)
}

/// Runs a `run` subcommand.
pub async fn run(cmd: RunCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RunCommand::Items(a) => crate::safety::items(a).await,
        RunCommand::Approve(a) => crate::safety::approve(a).await,
        RunCommand::RetryFailed(a) => crate::safety::retry_failed(a).await,
        RunCommand::List(a) => {
            let pool = a.db.pool().await?;
            let (list, missed) =
                tarefas_ops::run_history(&pool, a.scope.id(&pool).await?, a.task, a.limit).await?;
            if a.json {
                output::json(&tarefas_ops::history_json(&list, &missed))?;
            } else {
                let rows = list
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.task_id.to_string(),
                            r.trigger.clone(),
                            r.status.to_string(),
                            format!("{}/{}", r.settled(), r.planned),
                            r.done.to_string(),
                            r.skipped.to_string(),
                            (r.failed + r.unknown).to_string(),
                            time(Some(r.started_at)),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(
                    &[
                        "RUN",
                        "TASK",
                        "TRIGGER",
                        "STATUS",
                        "PROGRESS",
                        "DONE",
                        "SKIPPED",
                        "FAILED",
                        "STARTED (UTC)",
                    ],
                    &rows,
                );
                if !missed.is_empty() {
                    println!();
                    println!("Fires not run (newest first):");
                    let rows = missed
                        .iter()
                        .map(|m| {
                            vec![
                                m.task_id.to_string(),
                                time(Some(m.scheduled_for)),
                                m.reason.clone(),
                            ]
                        })
                        .collect::<Vec<_>>();
                    output::table(&["TASK", "SCHEDULED FOR (UTC)", "REASON"], &rows);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Show(a) => {
            let pool = a.db.pool().await?;
            let r = runs::get(&pool, a.scope.id(&pool).await?, a.id).await?;
            let extras = tarefas_ops::safety::run_extras_json(&pool, &r).await?;
            if a.json {
                let mut shown = run_json(&r);
                if let (Some(o), Some(x)) = (shown.as_object_mut(), extras.as_object()) {
                    o.extend(x.clone());
                }
                output::json(&shown)?;
            } else {
                println!(
                    "run {} of task {} ({}): {}",
                    r.id, r.task_id, r.trigger, r.status
                );
                if let Some(reason) = &r.status_reason {
                    println!("  reason:    {reason}");
                }
                println!(
                    "  version:   {} (of the task's definition, as planned)",
                    r.task_version
                );
                println!("  planned:   {}", r.planned);
                println!("  done:      {}", r.done);
                println!("  skipped:   {}", r.skipped);
                println!("  failed:    {}", r.failed);
                println!("  unknown:   {}", r.unknown);
                println!("  pending:   {}", r.planned - r.settled());
                println!("  started:   {}", time(Some(r.started_at)));
                println!("  finished:  {}", time(r.finished_at));
                if let Some(at) = extras["window_opens_at"].as_str() {
                    println!(
                        "  {}: opens at {at}",
                        tarefas_core::guard::WAITING_FOR_WINDOW
                    );
                }
                if let Some(by) = extras["approved_by"].as_str() {
                    println!("  approved:  by {by}");
                }
                if let Some(of) = extras["retry_of"].as_i64() {
                    println!("  retries:   the failed items of run {of}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Watch(a) => {
            let pool = a.db.pool().await?;
            let account = a.scope.id(&pool).await?;
            runs::get(&pool, account, a.id).await?;
            watch(&pool, account, a.id, a.json).await
        }
        RunCommand::Cancel(a) => {
            let pool = a.db.pool().await?;
            let cancelled = runs::cancel(
                &pool,
                a.scope.id(&pool).await?,
                a.id,
                "cancelled by an operator",
            )
            .await?;
            if cancelled {
                println!("run {} cancelled", a.id);
                Ok(ExitCode::SUCCESS)
            } else {
                let r = runs::get(&pool, None, a.id).await?;
                eprintln!("error: run {} already ended ({})", a.id, r.status);
                Ok(ExitCode::FAILURE)
            }
        }
        RunCommand::Resume(a) => {
            let pool = a.db.pool().await?;
            let r = runs::get(&pool, a.scope.id(&pool).await?, a.id).await?;
            if r.status() != RunStatus::Paused {
                eprintln!("error: run {} is {}, not paused", r.id, r.status);
                return Ok(ExitCode::FAILURE);
            }
            tarefas_worker::plan::resume(&pool, &r, &tarefas_worker::PlanConfig::default())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("run {} resumed", r.id);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Follows a run until it ends; a progress bar on a terminal, a line every few seconds
/// otherwise (or JSON lines with `json`). Exit status 0 only when the run is `done`.
pub async fn watch(
    pool: &PgPool,
    account: Option<i64>,
    id: i64,
    json_lines: bool,
) -> anyhow::Result<ExitCode> {
    let tty = std::io::stderr().is_terminal() && !json_lines;
    let started = Instant::now();
    let mut last_print = Instant::now() - Duration::from_secs(10);
    let mut rate_window: Option<(Instant, i64)> = None;
    loop {
        let r = runs::get(pool, account, id).await?;
        let settled = r.settled();
        let rate = match rate_window {
            Some((at, n)) if at.elapsed() > Duration::from_millis(100) => {
                (settled - n) as f64 / at.elapsed().as_secs_f64()
            }
            _ => 0.0,
        };
        if rate_window.is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(2)) {
            rate_window = Some((Instant::now(), settled));
        }
        let status = r.status();
        let ended = status.is_terminal()
            || status == RunStatus::Paused
            || status == RunStatus::AwaitingApproval;
        if json_lines {
            if ended || last_print.elapsed() >= Duration::from_secs(1) {
                println!("{}", run_json(&r));
                last_print = Instant::now();
            }
        } else if tty {
            let pct = if r.planned > 0 {
                settled * 100 / r.planned
            } else {
                0
            };
            let filled = (pct / 5) as usize;
            eprint!(
                "\r[{}{}] {:>3}% {} | done {} skipped {} failed {} unknown {} | {:.0}/s   ",
                "#".repeat(filled),
                "-".repeat(20 - filled.min(20)),
                pct,
                r.status,
                r.done,
                r.skipped,
                r.failed,
                r.unknown,
                rate
            );
            let _ = std::io::stderr().flush();
        } else if ended || last_print.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "run {}: {} {}/{} done {} skipped {} failed {} unknown {} ({:.0}/s)",
                r.id, r.status, settled, r.planned, r.done, r.skipped, r.failed, r.unknown, rate
            );
            last_print = Instant::now();
        }
        if ended {
            if tty {
                eprintln!();
            }
            let secs = started.elapsed().as_secs_f64();
            if !json_lines {
                println!(
                    "run {} {} in {:.1}s: {} done, {} skipped, {} failed, {} unknown{}",
                    r.id,
                    r.status,
                    secs,
                    r.done,
                    r.skipped,
                    r.failed,
                    r.unknown,
                    r.status_reason
                        .as_deref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                );
            }
            return Ok(if status == RunStatus::Done {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
