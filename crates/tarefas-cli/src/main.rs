//! `tarefas`: the one binary. It parses flags, then hands over to the library code of each
//! command; see `tarefas --help`.

mod account;
mod admin;
mod db;
mod demo;
mod fake;
mod input;
mod observe;
mod output;
mod preview;
mod prune;
#[cfg(test)]
mod reference;
mod run;
mod safety;
mod schedule;
mod services;
mod shutdown;
mod sync;
mod task;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tarefas: scheduled bulk actions on Huggy.
///
/// An operator describes a tarefa (task) in a YAML or JSON file: a name and an objective, a
/// recurrence, a table (contacts or chats) filtered with E+ (all) and OU+ (any), and an
/// action (start a Flow, or a chat action). Tarefas calls Huggy once per matching record.
#[derive(Debug, Parser)]
#[command(name = "tarefas", version, propagate_version = true)]
struct Cli {
    /// Log format on standard error: auto (pretty on a terminal, JSON otherwise), json or
    /// pretty. The level comes from RUST_LOG (default info).
    #[arg(
        long,
        global = true,
        env = "TAREFAS_LOG_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    log_format: tarefas_telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database if it is missing and apply every pending migration.
    Migrate(db::DbArgs),
    /// Manage the Huggy accounts Tarefas works for.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Work with task files and tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Emit due task fires (claims with SKIP LOCKED; any number of replicas; `--once` for a
    /// CronJob).
    Scheduler(services::SchedulerArgs),
    /// Plan runs and execute their items against Huggy; also relays the outbox to RabbitMQ.
    /// Stateless: run as many as you need. SIGTERM drains.
    Worker(services::WorkerArgs),
    /// The whole system on this machine in one command: fresh database, fake Huggy with
    /// demo data, sync, the example tasks, a scheduler and two workers, one task run by hand
    /// and one on schedule, then a summary (calls, duplicates, achieved rate).
    Demo(demo::DemoArgs),
    /// Inspect and replay the dead-letter queue.
    #[command(subcommand)]
    Dlq(services::DlqCommand),
    /// Follow, cancel and resume runs (executions of tasks).
    #[command(subcommand)]
    Run(run::RunCommand),
    /// Serve a fake Huggy API (deterministic data, call log, fault injection) for tests and
    /// the demo.
    FakeHuggy(fake::FakeArgs),
    /// Keep the mirror of each account's Huggy contacts and open chats in step: a full
    /// resync (`--once`), or a service that also receives Huggy's webhooks and resyncs
    /// periodically.
    Sync(sync::SyncArgs),
    /// Look at when a recurrence fires.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Serve the admin HTTP API (/api/v1, /openapi.json) and the Tarefas web console (/).
    /// Requests authenticate with tokens from `tarefas token create`.
    Admin(admin::AdminArgs),
    /// Operator API tokens for the admin API and the console (create, list, revoke).
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Delete the history older than the retention (finished runs with their items and
    /// claims, missed fires, ...) in small batches; live runs are never touched. Workers
    /// also prune periodically (`worker --prune-every`).
    Prune(prune::PruneArgs),
    /// The account's opt-out list: no Flow is ever started for these contacts, in any task
    /// (add, remove, list, import a CSV).
    #[command(subcommand)]
    Suppress(safety::SuppressCommand),
}

/// Exit status for input an operator must fix (an invalid file, a bad flag).
pub const EXIT_INVALID: u8 = 2;

/// The name of this process in traces.
fn service_name(command: &Command) -> &'static str {
    match command {
        Command::Worker(_) => "tarefas-worker",
        Command::Scheduler(_) => "tarefas-scheduler",
        Command::Sync(_) => "tarefas-sync",
        _ => "tarefas-cli",
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs, and traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; kept until exit
    // so the last spans are flushed. Outbox rows carry the writer's trace context.
    let _telemetry = tarefas_telemetry::init(cli.log_format, service_name(&cli.command));
    tarefas_store::outbox::set_trace_context_source(tarefas_telemetry::traceparent);
    let result = match cli.command {
        Command::Migrate(db) => migrate(&db).await,
        Command::Account(cmd) => account::run(cmd).await,
        Command::Task(cmd) => task::run(cmd).await,
        Command::Schedule(cmd) => schedule::run(cmd),
        Command::FakeHuggy(args) => fake::run(args).await,
        Command::Sync(args) => sync::run(args).await,
        Command::Run(cmd) => run::run(cmd).await,
        Command::Scheduler(args) => services::scheduler(args).await,
        Command::Worker(args) => services::worker(args).await,
        Command::Dlq(cmd) => services::dlq(cmd).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Admin(args) => admin::serve(args).await,
        Command::Token(cmd) => admin::token(cmd).await,
        Command::Prune(args) => prune::run(args).await,
        Command::Suppress(cmd) => safety::suppress(cmd).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(db: &db::DbArgs) -> anyhow::Result<ExitCode> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(&db.database_url)
        .await
        .unwrap_or(false)
    {
        sqlx::Postgres::create_database(&db.database_url)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the database {}: {e}",
                    db::redact(&db.database_url)
                )
            })?;
        println!("created database {}", db::redact(&db.database_url));
    }
    let pool = db.pool().await?;
    tarefas_store::migrate(&pool).await?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}
