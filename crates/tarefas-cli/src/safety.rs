//! Campaign safety commands: `account update` (the account's guards), `suppress …` (the
//! opt-out list), `run items`, `run approve`, `run retry-failed`, and the dry run of
//! `task run --dry-run`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use tarefas_core::guard::{FrequencyCap, SendWindow};
use tarefas_ops::safety::{self, DryRun};
use tarefas_store::accounts;
use tarefas_store::guards::{self, GuardUpdate};

use crate::db::DbArgs;
use crate::output;
use crate::task::AccountScope;
use crate::EXIT_INVALID;

// ---- account update ----

/// Flags of `account update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The account.
    account: String,
    /// Frequency cap: at most N Flows per contact in any rolling PERIOD, across every task
    /// of the account (Flows started before the cap was set count too). `off` removes it.
    /// E.g. `3/7d`, `1/24h`.
    #[arg(long, value_name = "N/PERIOD")]
    max_flows_per_contact: Option<String>,
    /// Audience guard for tasks that set no `max_records`: a run that plans more records
    /// waits in `awaiting_approval`. `off` removes it.
    #[arg(long, value_name = "N")]
    max_records: Option<String>,
    /// Quiet hours for tasks that set no `send_window`, as `HH:MM-HH:MM[@mon,tue,…]`
    /// (in each task's time zone). `off` removes them. E.g. `08:00-20:00@mon,tue,wed,thu,fri`.
    #[arg(long, value_name = "WINDOW")]
    send_window: Option<String>,
    /// Opt-out words (comma-separated): a webhook message whose whole text is one of them
    /// adds its contact to the opt-out list. `default` goes back to SAIR,PARAR,STOP,CANCELAR.
    #[arg(long, value_name = "WORDS")]
    opt_out_words: Option<String>,
    /// Print the account's guards as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

fn off(s: &str) -> bool {
    matches!(s.to_ascii_lowercase().as_str(), "off" | "none")
}

fn parse_window(s: &str) -> Result<SendWindow, String> {
    let (hours, days) = s.split_once('@').unwrap_or((s, ""));
    let (from, to) = hours
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a window such as 08:00-20:00@mon,tue"))?;
    let mut v = serde_json::json!({"from": from.trim(), "to": to.trim()});
    if !days.is_empty() {
        v["days"] = days.split(',').map(|d| d.trim()).collect::<Vec<_>>().into();
    }
    let mut p = tarefas_core::Problems::default();
    match tarefas_core::guard::parse_send_window(&v, "--send-window", &mut p) {
        Some(w) if p.is_empty() => Ok(w),
        _ => Err(p.to_string()),
    }
}

/// `account update ACCOUNT …`: the account's guard settings.
pub async fn update(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let mut update = GuardUpdate::default();
    let mut problems = Vec::new();
    if let Some(s) = &args.max_flows_per_contact {
        if off(s) {
            update.cap = Some(None);
        } else {
            match FrequencyCap::parse_flag(s) {
                Ok(c) => update.cap = Some(Some(c)),
                Err(e) => problems.push(format!("--max-flows-per-contact: {e}")),
            }
        }
    }
    if let Some(s) = &args.max_records {
        if off(s) {
            update.max_records = Some(None);
        } else {
            match s.parse::<i64>() {
                Ok(n) if n > 0 => update.max_records = Some(Some(n)),
                _ => problems.push(format!("--max-records: {s:?} is not a positive number")),
            }
        }
    }
    if let Some(s) = &args.send_window {
        if off(s) {
            update.send_window = Some(None);
        } else {
            match parse_window(s) {
                Ok(w) => update.send_window = Some(Some(w)),
                Err(e) => problems.push(e),
            }
        }
    }
    if let Some(s) = &args.opt_out_words {
        update.opt_out_words = Some(if s.eq_ignore_ascii_case("default") {
            Vec::new()
        } else {
            s.split(',')
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
                .collect()
        });
    }
    if !problems.is_empty() {
        for p in problems {
            eprintln!("error: {p}");
        }
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let pool = args.db.pool().await?;
    let account = accounts::by_name(&pool, &args.account).await?;
    let g = guards::update(&pool, account.id, &update).await?;
    let shown = safety::guards_json(&g);
    if args.json {
        output::json(&shown)?;
    } else {
        println!("account {} updated", account.name);
        print_guards(&shown);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_guards(g: &serde_json::Value) {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!(
        "  max flows per contact: {}",
        text(&g["max_flows_per_contact"])
    );
    println!("  max records:           {}", text(&g["max_records"]));
    println!("  send window:           {}", text(&g["send_window"]));
    println!("  opt-out words:         {}", text(&g["opt_out_words"]));
}

// ---- suppress ----

/// `tarefas suppress` subcommands: the account's opt-out list. No Flow is ever started for
/// a contact on it, in any task (the item is skipped, "opted out").
#[derive(Debug, Subcommand)]
pub enum SuppressCommand {
    /// Add contacts (Huggy contact ids) to the opt-out list.
    ///
    /// Example: tarefas suppress add acme 1001 1002
    Add(IdsArgs),
    /// Remove contacts from the opt-out list.
    ///
    /// Example: tarefas suppress remove acme 1001
    Remove(IdsArgs),
    /// List the opt-out list: contact, how it was added (cli, api, csv, webhook), when.
    List(ListArgs),
    /// Add every contact id of a CSV file (the column `contact_id`, `id` or the first one;
    /// a header line is optional). All or nothing: a bad line changes nothing.
    ///
    /// Example: tarefas suppress import acme --csv optouts.csv
    Import(ImportArgs),
}

/// Flags of `suppress add|remove`.
#[derive(Debug, Args)]
pub struct IdsArgs {
    /// The account.
    account: String,
    /// Huggy contact ids.
    #[arg(required = true)]
    contact_ids: Vec<i64>,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `suppress list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The account.
    account: String,
    /// Print a JSON array of `{contact_id, source, added_at}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `suppress import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The account.
    account: String,
    /// The CSV file (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    csv: String,
    #[command(flatten)]
    db: DbArgs,
}

/// Runs a `suppress` subcommand.
pub async fn suppress(cmd: SuppressCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SuppressCommand::Add(a) => {
            let pool = a.db.pool().await?;
            let account = accounts::by_name(&pool, &a.account).await?;
            let n = guards::suppress(&pool, account.id, &a.contact_ids, "cli").await?;
            println!(
                "{n} contacts added to the opt-out list of {} ({} already on it)",
                account.name,
                a.contact_ids.len() as u64 - n.min(a.contact_ids.len() as u64)
            );
        }
        SuppressCommand::Remove(a) => {
            let pool = a.db.pool().await?;
            let account = accounts::by_name(&pool, &a.account).await?;
            let n = guards::unsuppress(&pool, account.id, &a.contact_ids).await?;
            println!(
                "{n} contacts removed from the opt-out list of {}",
                account.name
            );
        }
        SuppressCommand::List(a) => {
            let pool = a.db.pool().await?;
            let account = accounts::by_name(&pool, &a.account).await?;
            let mut all = Vec::new();
            let mut after = i64::MIN;
            loop {
                let page = guards::suppressions(&pool, account.id, after, 10_000).await?;
                let Some(last) = page.last() else { break };
                after = last.contact_id;
                all.extend(page);
            }
            if a.json {
                output::json(&all)?;
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.contact_id.to_string(),
                            s.source.clone(),
                            s.added_at
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        ]
                    })
                    .collect();
                output::table(&["CONTACT", "SOURCE", "ADDED (UTC)"], &rows);
            }
        }
        SuppressCommand::Import(a) => {
            let text = if a.csv == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                match std::fs::read(&a.csv) {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(e) => {
                        eprintln!("{}: {e}", a.csv);
                        return Ok(ExitCode::from(EXIT_INVALID));
                    }
                }
            };
            let ids = match safety::parse_csv_ids(&text) {
                Ok(ids) => ids,
                Err(problems) => {
                    for p in problems.iter().take(100) {
                        println!("{}: {p}", a.csv);
                    }
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            };
            let pool = a.db.pool().await?;
            let account = accounts::by_name(&pool, &a.account).await?;
            let n = guards::suppress(&pool, account.id, &ids, "csv").await?;
            println!(
                "{} contact ids read; {n} added to the opt-out list of {}",
                ids.len(),
                account.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- run items, approve, retry-failed ----

/// Flags of `run items`.
#[derive(Debug, Args)]
pub struct ItemsArgs {
    /// Run id.
    id: i64,
    /// Only the records with this outcome: pending, sending, done, skipped, failed, unknown.
    #[arg(long, value_parser = safety::parse_outcome)]
    outcome: Option<tarefas_core::run::ItemStatus>,
    #[command(flatten)]
    scope: AccountScope,
    /// Print a JSON array of `{id, outcome, reason, time}`.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV (`id,outcome,reason,time`; cells a spreadsheet would run as formulas are
    /// neutralized).
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// `run items RUN`.
pub async fn items(a: ItemsArgs) -> anyhow::Result<ExitCode> {
    let pool = a.db.pool().await?;
    let run = safety::get_run(&pool, a.scope.id(&pool).await?, a.id).await?;
    let rows = safety::all_items(&pool, run.id, a.outcome).await?;
    if a.json {
        output::json(&rows)?;
    } else if a.csv {
        println!("{}", safety::ITEMS_CSV_HEADER);
        for r in &rows {
            println!("{}", safety::item_csv(r));
        }
    } else {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.outcome.clone(),
                    output::opt(r.reason.clone()),
                    output::opt(
                        r.time
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    ),
                ]
            })
            .collect();
        output::table(&["RECORD", "OUTCOME", "REASON", "TIME (UTC)"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags of `run approve` and `run retry-failed`.
#[derive(Debug, Args)]
pub struct ActArgs {
    /// Run id.
    id: i64,
    #[command(flatten)]
    scope: AccountScope,
    /// Who asks (recorded with the run).
    #[arg(long, env = "USER", default_value = "operator")]
    requested_by: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// `run approve RUN`: "Aprovar envio".
pub async fn approve(a: ActArgs) -> anyhow::Result<ExitCode> {
    let pool = a.db.pool().await?;
    let run = safety::get_run(&pool, a.scope.id(&pool).await?, a.id).await?;
    let approved = safety::approve(&pool, &run, &a.requested_by).await?;
    if !approved {
        eprintln!(
            "error: run {} is {}, not awaiting_approval",
            run.id, run.status
        );
        return Ok(ExitCode::FAILURE);
    }
    if a.json {
        output::json(&serde_json::json!({"run_id": run.id, "approved": true}))?;
    } else {
        println!(
            "run {} approved: {} records will be sent",
            run.id, run.planned
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `run retry-failed RUN`: "Reenviar falhas".
pub async fn retry_failed(a: ActArgs) -> anyhow::Result<ExitCode> {
    let pool = a.db.pool().await?;
    let run = safety::get_run(&pool, a.scope.id(&pool).await?, a.id).await?;
    match safety::retry_failed(&pool, &run, &a.requested_by).await {
        Ok((request_id, n)) => {
            if a.json {
                output::json(&serde_json::json!({
                    "retry_of": run.id, "request_id": request_id, "records": n
                }))?;
            } else {
                println!(
                    "Reenviar falhas: a new run of task {} over the {n} failed items of run {} requested ({request_id})",
                    run.task_id, run.id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(tarefas_store::StoreError::Conflict(why)) => {
            eprintln!("error: {why}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

// ---- task run --dry-run ----

/// Prints a dry run: a line per record and a summary, or the contract's JSON.
pub fn print_dry_run(task_id: i64, d: &DryRun, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(d);
    }
    for r in &d.records {
        match &r.reason {
            Some(reason) => println!("{}\tskipped: {reason}", r.id),
            None => println!("{}\tcall", r.id),
        }
    }
    let skipped: i64 = d.skipped.values().sum();
    println!(
        "dry run of task {task_id}: {} records, {} would be called, {skipped} skipped; Huggy was not called",
        d.count, d.would_call
    );
    for (reason, n) in &d.skipped {
        println!("  skipped, {reason}: {n}");
    }
    if let Some(max) = d.max_records.filter(|m| d.count > *m) {
        println!(
            "  audience guard: {} records is more than max_records {max}; a run would wait for approval (`tarefas run approve`)",
            d.count
        );
    }
    if let Some(at) = d.window_opens {
        println!(
            "  send window closed now: calls would wait until {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    Ok(())
}

/// The record ids of `--only`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlyIds(pub Vec<i64>);

/// Reads `--only 1,2,3`.
pub fn parse_only(s: &str) -> Result<OnlyIds, String> {
    let ids: Result<Vec<i64>, _> = s
        .split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<i64>()
                .map_err(|_| format!("{p:?} is not a record id"))
        })
        .collect();
    match ids {
        Ok(ids) if !ids.is_empty() => Ok(OnlyIds(ids)),
        Ok(_) => Err("name at least one record id, e.g. --only 1001,1002".into()),
        Err(e) => Err(e),
    }
}
