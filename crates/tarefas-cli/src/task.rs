//! `tarefas task …`: the admin commands on task files and tasks.

use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};
use clap::{Args, Subcommand};
use tarefas_core::task::parse_task;
use tarefas_store::accounts;
use tarefas_store::tasks::{self, Task, TaskStatus};

use crate::db::DbArgs;
use crate::input::{print_problems, read_file};
use crate::output;
use crate::EXIT_INVALID;

/// `tarefas task` subcommands.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Check a task file: prints `ok`, or one line per problem (`path: what is wrong`) and
    /// exits with status 2. Every problem is reported, not only the first.
    ///
    /// Example: tarefas task validate -f examples/contacts-flow-month-day.yaml
    Validate(ValidateArgs),
    /// Create a task from a task file and print its id. The account comes from the file's
    /// `account:` or from --account.
    ///
    /// Example: tarefas task create -f examples/06-month-day-contacts-flow.yaml
    Create(CreateArgs),
    /// Edit a task: replace its definition with a task file's and bump its version. Runs
    /// already planned keep the definition they were planned with; the next runs use this
    /// one. Problems are reported as `task create` reports them (exit status 2).
    ///
    /// Example: tarefas task update 7 -f examples/06-month-day-contacts-flow.yaml
    Update(UpdateArgs),
    /// List tasks (not deleted): id, account, name, table, recurrence, status, version, next
    /// fire.
    List(ListArgs),
    /// Show one task: its settings, schedule and definition.
    Show(IdArgs),
    /// Pause a task: it stops firing on schedule ("Executar Tarefa" still works).
    Pause(IdArgs),
    /// Resume a paused task; its next fire is computed from now (fires missed while paused
    /// are not replayed).
    Resume(IdArgs),
    /// Delete a task: it fires no more. Its runs are kept for their history; those still
    /// going finish on the definition they were planned with, unless --cancel-runs.
    Delete(DeleteArgs),
    /// How many records match the task's segment right now, and the first ten.
    Preview(PreviewArgs),
    /// "Executar Tarefa": run the task now. Publishes an ExecuteTask message (through the
    /// outbox, relayed to RabbitMQ by the scheduler and the workers) and prints the request
    /// id; with --wait, follows the run live and exits non-zero unless it ends `done`.
    Run(RunTaskArgs),
}

/// Flags of `task run`.
#[derive(Debug, Args)]
pub struct RunTaskArgs {
    /// Task id.
    id: i64,
    #[command(flatten)]
    scope: AccountScope,
    /// Follow the run until it ends, with a live progress bar.
    #[arg(long)]
    wait: bool,
    /// Who asks (shown in the run).
    #[arg(long, env = "USER", default_value = "operator")]
    requested_by: String,
    /// Print JSON: the request id, and with --wait a line per second of progress.
    #[arg(long)]
    json: bool,
    /// "Simular": plan the run and print what each record would get (`call`, or `skipped:
    /// REASON`), calling Huggy never and creating no run. With --json:
    /// `{"count", "would_call", "skipped": {"REASON": N}, "records": [...]}`.
    #[arg(long, conflicts_with = "wait")]
    dry_run: bool,
    /// A test run: only these records of the segment (comma-separated ids), e.g. the team's
    /// own contacts. Example: tarefas task run 7 --only 1001,1002 --wait
    #[arg(long, value_name = "ID,…", value_parser = crate::safety::parse_only)]
    only: Option<crate::safety::OnlyIds>,
    #[command(flatten)]
    db: DbArgs,
}

/// Narrowing admin commands to one account.
#[derive(Debug, Clone, Args)]
pub struct AccountScope {
    /// Only this account's tasks: another account's task is "not found".
    #[arg(long, env = "TAREFAS_ACCOUNT")]
    pub account: Option<String>,
}

impl AccountScope {
    /// The account's internal id, when one is given.
    pub async fn id(&self, pool: &sqlx::PgPool) -> anyhow::Result<Option<i64>> {
        match &self.account {
            Some(name) => Ok(Some(accounts::by_name(pool, name).await?.id)),
            None => Ok(None),
        }
    }
}

/// Flags of `task create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The task file (YAML, or JSON when it ends in .json); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: String,
    /// The account, when the file has no `account:` (they must agree when both are given).
    #[arg(long, env = "TAREFAS_ACCOUNT")]
    account: Option<String>,
    /// Print the created task as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `task update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Task id (as `task create` printed it).
    id: i64,
    /// The new task file (YAML, or JSON when it ends in .json); `-` reads standard input.
    /// Its `account:`, when given, must be the task's.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: String,
    #[command(flatten)]
    scope: AccountScope,
    /// Print the updated task as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `task delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Task id (as `task create` printed it).
    id: i64,
    /// Also cancel the task's runs that have not ended (as `tarefas run cancel` does: their
    /// pending items are skipped). Without it they finish on their snapshot.
    #[arg(long)]
    cancel_runs: bool,
    #[command(flatten)]
    scope: AccountScope,
    /// Print {"task": …, "cancelled_runs": [ids]}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `task list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    scope: AccountScope,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of the commands that name one task.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Task id (as `task create` printed it).
    id: i64,
    #[command(flatten)]
    scope: AccountScope,
    /// Print the task as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `task preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Task id.
    id: i64,
    #[command(flatten)]
    scope: AccountScope,
    /// How many records to show.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(0..=1000))]
    limit: i64,
    /// Print {"count": N, "sample": [...]}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `task validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The task file (YAML, or JSON when it ends in .json); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: String,
    /// Print the result as JSON: {"ok": true} or {"ok": false, "problems": [{path, message}]}.
    #[arg(long)]
    json: bool,
}

/// Runs a `task` subcommand.
pub async fn run(cmd: TaskCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TaskCommand::Validate(args) => Ok(validate(&args)),
        TaskCommand::Create(args) => create(args).await,
        TaskCommand::Update(args) => update(args).await,
        TaskCommand::List(args) => {
            let pool = args.db.pool().await?;
            let list = tasks::list(&pool, args.scope.id(&pool).await?).await?;
            if args.json {
                output::json(&list)?;
            } else {
                let rows = list.iter().map(row).collect::<Vec<_>>();
                output::table(
                    &[
                        "ID",
                        "ACCOUNT",
                        "NAME",
                        "TABLE",
                        "RECURRENCE",
                        "STATUS",
                        "VERSION",
                        "NEXT FIRE (UTC)",
                    ],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Show(args) => {
            let pool = args.db.pool().await?;
            let task = tasks::get(&pool, args.scope.id(&pool).await?, args.id).await?;
            show(&task, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Pause(args) => set_status(args, TaskStatus::Paused, "paused").await,
        TaskCommand::Resume(args) => set_status(args, TaskStatus::Active, "resumed").await,
        TaskCommand::Delete(args) => delete(args).await,
        TaskCommand::Preview(args) => {
            crate::preview::run(args.id, &args.scope, args.limit, args.json, &args.db).await
        }
        TaskCommand::Run(args) => run_now(args).await,
    }
}

fn time(t: Option<chrono::DateTime<Utc>>) -> String {
    output::opt(t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)))
}

fn row(t: &Task) -> Vec<String> {
    vec![
        t.id.to_string(),
        t.account.clone(),
        t.name.clone(),
        t.table_name.clone(),
        t.recurrence_kind.clone(),
        t.status.to_string(),
        t.version.to_string(),
        time(t.next_fire_at),
    ]
}

fn show(task: &Task, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(task);
    }
    println!("task {}: {}", task.id, task.name);
    println!(
        "  objective:   {}",
        task.objective.as_deref().unwrap_or("-")
    );
    println!("  account:     {}", task.account);
    println!("  table:       {}", task.table_name);
    println!(
        "  recurrence:  {} ({})",
        task.recurrence_kind, task.time_zone
    );
    println!("  status:      {}", task.status);
    println!("  version:     {}", task.version);
    println!("  next fire:   {}", time(task.next_fire_at));
    println!("  last fire:   {}", time(task.last_fire_at));
    println!("  created:     {}", time(Some(task.created_at)));
    println!("  definition:");
    for line in serde_yaml::to_string(&task.definition)?.lines() {
        println!("    {line}");
    }
    Ok(())
}

async fn set_status(args: IdArgs, status: TaskStatus, verb: &str) -> anyhow::Result<ExitCode> {
    let pool = args.db.pool().await?;
    let task = tasks::set_status(
        &pool,
        args.scope.id(&pool).await?,
        args.id,
        status,
        Utc::now(),
    )
    .await?;
    if args.json {
        output::json(&task)?;
    } else {
        println!(
            "task {} {verb}; next fire: {}",
            task.id,
            time(task.next_fire_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let spec = match read_file(&args.file).and_then(|(text, format)| parse_task(&text, format)) {
        Ok(spec) => spec,
        Err(problems) => {
            print_problems(&args.file, &problems, args.json);
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let account = match (&spec.account, &args.account) {
        (Some(a), Some(b)) if a != b => {
            eprintln!("error: the file says account {a:?} but --account says {b:?}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        (Some(a), _) | (None, Some(a)) => a.clone(),
        (None, None) => {
            eprintln!("error: no account: put `account: NAME` in the file or pass --account NAME");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let pool = args.db.pool().await?;
    let account = accounts::by_name(&pool, &account).await?;
    let task = tasks::create(&pool, account.id, &spec, Utc::now()).await?;
    if args.json {
        output::json(&task)?;
    } else {
        println!("{}", task.id);
    }
    Ok(ExitCode::SUCCESS)
}

async fn update(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let spec = match read_file(&args.file).and_then(|(text, format)| parse_task(&text, format)) {
        Ok(spec) => spec,
        Err(problems) => {
            print_problems(&args.file, &problems, args.json);
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let pool = args.db.pool().await?;
    let scope = args.scope.id(&pool).await?;
    let task = match tarefas_ops::update_task(&pool, scope, args.id, spec, Utc::now()).await {
        Ok(task) => task,
        Err(tarefas_ops::UpdateError::Invalid(problems)) => {
            print_problems(&args.file, &problems, args.json);
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        Err(tarefas_ops::UpdateError::Store(e)) => return Err(e.into()),
    };
    if args.json {
        output::json(&task)?;
    } else {
        println!(
            "task {} updated: version {}; next fire: {}",
            task.id,
            task.version,
            time(task.next_fire_at)
        );
        println!("  runs already planned keep the version they were planned with");
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let pool = args.db.pool().await?;
    let (task, cancelled) = tarefas_ops::delete_task(
        &pool,
        args.scope.id(&pool).await?,
        args.id,
        args.cancel_runs,
        "task deleted by an operator (--cancel-runs)",
        Utc::now(),
    )
    .await?;
    if args.json {
        output::json(&serde_json::json!({ "task": task, "cancelled_runs": cancelled }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("task {} deleted", task.id);
    if args.cancel_runs {
        let ids: Vec<String> = cancelled.iter().map(i64::to_string).collect();
        match ids.len() {
            0 => println!("  no run of it was going"),
            n => println!("  {n} run(s) cancelled: {}", ids.join(", ")),
        }
    } else {
        println!("  its runs still going finish on the definition they were planned with");
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(args: &ValidateArgs) -> ExitCode {
    let result = read_file(&args.file).and_then(|(text, format)| parse_task(&text, format));
    match result {
        Ok(_) => {
            if args.json {
                println!("{}", serde_json::json!({ "ok": true }));
            } else {
                println!("ok");
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&args.file, &problems, args.json);
            ExitCode::from(EXIT_INVALID)
        }
    }
}

async fn run_now(args: RunTaskArgs) -> anyhow::Result<ExitCode> {
    let pool = args.db.pool().await?;
    let task = tasks::get(&pool, args.scope.id(&pool).await?, args.id).await?;
    if args.dry_run {
        let d = tarefas_ops::safety::dry_run(
            &pool,
            &task,
            args.only.as_ref().map(|o| &o.0[..]),
            Utc::now(),
        )
        .await?;
        crate::safety::print_dry_run(task.id, &d, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let request_id = match &args.only {
        Some(only) => {
            tarefas_ops::safety::execute_task_with(
                &pool,
                &task,
                &args.requested_by,
                Some(&only.0),
                None,
            )
            .await?
        }
        None => tarefas_ops::execute_task(&pool, &task, &args.requested_by).await?,
    };
    if args.json {
        output::json(&serde_json::json!({ "task_id": task.id, "request_id": request_id }))?;
    } else {
        println!("Executar Tarefa: task {} requested ({request_id})", task.id);
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let run = loop {
        if let Some(run) = tarefas_store::runs::by_request(&pool, &request_id).await? {
            break run;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            eprintln!("error: no worker picked the request up within 60 s; are `tarefas scheduler` and `tarefas worker` running?");
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    if !args.json {
        println!("run {}", run.id);
    }
    crate::run::watch(&pool, None, run.id, args.json).await
}
