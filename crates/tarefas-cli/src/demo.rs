//! `tarefas demo`: the whole system on this machine, in one command. A fresh database, a
//! fake Huggy with demo data, sync, the example tasks, a scheduler and two workers; one task
//! run by hand ("Executar Tarefa") and one on an every-minute schedule, followed live; then a
//! summary of what reached Huggy and a clean exit.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use clap::Args;
use sqlx::migrate::MigrateDatabase;
use tarefas_core::task::{parse_task, Format};
use tarefas_fake_huggy::{FakeConfig, FakeHuggy};
use tarefas_huggy::{HttpHuggy, HuggyConfig};
use tarefas_store::accounts::{self, NewAccount, SecretRef};
use tarefas_store::{runs, tasks};
use tarefas_worker::service::WorkerConfig;
use tarefas_worker::{ExecConfig, PlanConfig};
use tokio_util::sync::CancellationToken;

use crate::services::BrokerArgs;

/// The example task files, built into the binary so the demo runs from anywhere.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "01-manual-contacts-flow-rotik.yaml",
        include_str!("../../../examples/01-manual-contacts-flow-rotik.yaml"),
    ),
    (
        "02-every-minutes-chats-transfer.yaml",
        include_str!("../../../examples/02-every-minutes-chats-transfer.yaml"),
    ),
    (
        "03-every-hours-chats-queue.yaml",
        include_str!("../../../examples/03-every-hours-chats-queue.yaml"),
    ),
    (
        "04-daily-chats-department.yaml",
        include_str!("../../../examples/04-daily-chats-department.yaml"),
    ),
    (
        "05-weekdays-chats-close.yaml",
        include_str!("../../../examples/05-weekdays-chats-close.yaml"),
    ),
    (
        "06-month-day-contacts-flow.yaml",
        include_str!("../../../examples/06-month-day-contacts-flow.yaml"),
    ),
    (
        "07-cron-chats-reopen.yaml",
        include_str!("../../../examples/07-cron-chats-reopen.yaml"),
    ),
    (
        "08-daily-chats-workflow.yaml",
        include_str!("../../../examples/08-daily-chats-workflow.yaml"),
    ),
    (
        "09-weekdays-chats-tabulation.yaml",
        include_str!("../../../examples/09-weekdays-chats-tabulation.yaml"),
    ),
    (
        "10-manual-chats-flow-seed-or.yaml",
        include_str!("../../../examples/10-manual-chats-flow-seed-or.yaml"),
    ),
    (
        "11-every-minutes-contacts-flow.json",
        include_str!("../../../examples/11-every-minutes-contacts-flow.json"),
    ),
];

/// The task run by hand and the one that fires every minute.
const BY_HAND: &str = "10-manual-chats-flow-seed-or.yaml";
const EVERY_MINUTE: &str = "11-every-minutes-contacts-flow.json";

/// Flags of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo's own database (dropped and created again).
    #[arg(
        long,
        env = "TAREFAS_DEMO_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tarefas_demo"
    )]
    database_url: String,
    /// Redis URL.
    #[arg(
        long,
        env = "TAREFAS_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    redis_url: String,
    /// Contacts in the fake Huggy.
    #[arg(long, default_value_t = 10_000)]
    contacts: usize,
    /// Chats in the fake Huggy.
    #[arg(long, default_value_t = 6_000)]
    chats: usize,
    /// The demo account's Huggy rate limit, calls per second.
    #[arg(long, default_value_t = 300)]
    rate_limit: i32,
    /// Where the web console listens (port 0: any free port). If the default port is
    /// taken, any free port is used; the address is printed either way.
    #[arg(long, env = "TAREFAS_DEMO_CONSOLE", default_value = "127.0.0.1:8080")]
    console_listen: String,
    /// After the summary, keep the console, the scheduler and the workers running until
    /// Ctrl-C, so that the article's steps can be followed in the browser on the demo data
    /// (`make demo` passes it). Without it the demo exits after the summary.
    #[arg(long)]
    keep_running: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

fn step(n: u32, what: &str) {
    println!("\n== {n}. {what}");
}

/// Runs the demo.
pub async fn run(mut args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.broker.queue_prefix == "tarefas" {
        args.broker.queue_prefix = "tarefas-demo".into();
    }
    step(1, "Postgres: a fresh demo database, migrated");
    if sqlx::Postgres::database_exists(&args.database_url).await? {
        sqlx::Postgres::force_drop_database(&args.database_url).await?;
    }
    sqlx::Postgres::create_database(&args.database_url).await?;
    let pool = tarefas_store::connect(&args.database_url, 16).await?;
    tarefas_store::migrate(&pool).await?;
    println!("   {}", crate::db::redact(&args.database_url));

    step(2, "A fake Huggy with demo data");
    let fake = FakeHuggy::start(FakeConfig {
        contacts: args.contacts,
        chats: args.chats,
        seed: 42,
        ..FakeConfig::default()
    })
    .await?;
    println!(
        "   {} ({} contacts, {} chats)",
        fake.base_url(),
        args.contacts,
        args.chats
    );
    let dir = tempfile_dir()?;
    let token_file = dir.join("huggy-token");
    std::fs::write(&token_file, fake.token())?;
    let account = accounts::add(
        &pool,
        &NewAccount {
            name: "demo".into(),
            company_id: None,
            token_ref: Some(SecretRef::File(token_file.display().to_string())),
            webhook_token_ref: None,
            rate_limit_per_s: args.rate_limit,
        },
    )
    .await?;
    println!(
        "   account demo: {} calls/s, token read from a file (never stored)",
        args.rate_limit
    );

    step(3, "Sync: the mirror of Huggy's contacts and open chats");
    let client =
        HttpHuggy::new(HuggyConfig::new(fake.token().to_string()).with_base_url(fake.base_url()))?;
    let report = tarefas_sync::sync_account(&client, &pool, account.id).await?;
    println!(
        "   {} contacts, {} open chats in {} ms",
        report.contacts, report.chats, report.elapsed_ms
    );

    step(4, "The example tasks");
    let mut ids = HashMap::new();
    let now = Utc::now();
    for (file, text) in EXAMPLES {
        let format = Format::from_path(file);
        let spec = parse_task(text, format).map_err(|p| anyhow::anyhow!("{file}: {p}"))?;
        let task = tasks::create(&pool, account.id, &spec, now).await?;
        println!(
            "   task {:>2}  {:<14} {}",
            task.id, task.recurrence_kind, task.name
        );
        ids.insert(*file, task.id);
    }

    step(5, "A scheduler and two workers");
    // The demo's own services stop when it ends (Ctrl-C before then ends the process).
    let stop = CancellationToken::new();
    let mut services = tokio::task::JoinSet::new();
    {
        let (pool, stop) = (pool.clone(), stop.clone());
        services.spawn(async move {
            let config = tarefas_scheduler::SchedulerConfig::default();
            tarefas_scheduler::run(pool, config, Duration::from_secs(1), stop)
                .await
                .map_err(|e| e.to_string())
        });
    }
    for _ in 0..2 {
        let broker = args.broker.connect().await?;
        let config = WorkerConfig {
            huggy_url: fake.base_url(),
            redis_url: args.redis_url.clone(),
            redis_prefix: args.broker.queue_prefix.clone(),
            plan: PlanConfig::default(),
            exec: ExecConfig {
                channel_rate: f64::from(args.rate_limit),
                ..ExecConfig::default()
            },
            ..WorkerConfig::default()
        };
        let (pool, stop) = (pool.clone(), stop.clone());
        services.spawn(async move {
            let r = tarefas_worker::service::run(pool, broker.clone(), config, stop)
                .await
                .map_err(|e| e.to_string());
            broker.close().await;
            r
        });
    }
    println!("   scheduler ticking every second; 2 workers, 64 calls in flight each");
    let console = start_console(&pool, &args.console_listen, account.id, stop.clone()).await?;
    println!("   web console (\"Tarefas\"): {console}");

    step(
        6,
        &format!("\"Executar Tarefa\": task {} by hand", ids[BY_HAND]),
    );
    fake.clear_calls();
    // Exactly what "Executar Tarefa" does in the console and in `tarefas task run`.
    let by_hand = tasks::get(&pool, None, ids[BY_HAND]).await?;
    let request_id = tarefas_ops::execute_task(&pool, &by_hand, "demo").await?;
    let manual = wait_for_run(&pool, || runs::by_request(&pool, &request_id)).await?;
    crate::run::watch(&pool, None, manual, false).await?;

    step(
        7,
        &format!("Task {} on its every-minute schedule", ids[EVERY_MINUTE]),
    );
    let task_id = ids[EVERY_MINUTE];
    let next = tasks::get(&pool, None, task_id).await?.next_fire_at;
    println!(
        "   next fire: {}",
        next.map(|t| t.to_rfc3339()).unwrap_or_default()
    );
    let scheduled = wait_for_run(&pool, || async {
        Ok(runs::list(&pool, None, Some(task_id), 1)
            .await?
            .into_iter()
            .next())
    })
    .await?;
    crate::run::watch(&pool, None, scheduled, false).await?;

    step(8, "Summary");
    let calls = fake.calls();
    let actions: Vec<_> = calls
        .iter()
        .filter(|c| c.method != "GET" && (200..300).contains(&c.status))
        .collect();
    let mut per_record: HashMap<(String, Option<i64>, Option<i64>), u32> = HashMap::new();
    for c in &actions {
        *per_record
            .entry((c.route.clone(), c.contact_id, c.chat_id))
            .or_default() += 1;
    }
    let duplicates = per_record.values().filter(|n| **n > 1).count();
    let mut per_second: HashMap<i64, u32> = HashMap::new();
    for c in calls.iter().filter(|c| !c.route.starts_with("GET")) {
        *per_second.entry(c.at.timestamp()).or_default() += 1;
    }
    let peak = per_second.values().max().copied().unwrap_or(0);
    let (first, last) = (calls.first().map(|c| c.at), calls.last().map(|c| c.at));
    let span = match (first, last) {
        (Some(a), Some(b)) => ((b - a).num_milliseconds() as f64 / 1000.0).max(0.001),
        _ => 1.0,
    };
    println!(
        "   Huggy calls made:      {} ({} actions accepted)",
        calls.len(),
        actions.len()
    );
    println!("   duplicates found:      {duplicates}");
    println!(
        "   achieved rate:         {:.0} calls/s on average, {} in the busiest second; limit {} /s",
        calls.len() as f64 / span,
        peak,
        args.rate_limit
    );
    if args.keep_running {
        println!("\n== The console stays up, with the scheduler and the workers, until Ctrl-C:");
        println!("   {console}");
        println!(
            "   (\"+ Adicionar\" a task, \"Salvar\", then \"Executar Tarefa\" and watch its run)"
        );
        crate::shutdown::token().cancelled().await;
    }
    stop.cancel();
    while let Some(r) = services.join_next().await {
        if let Ok(Err(e)) = r {
            eprintln!("warning: a service stopped with: {e}");
        }
    }
    fake.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nDemo finished. Explore it: TAREFAS_DATABASE_URL={} tarefas task list | tarefas run list",
        crate::db::redact(&args.database_url)
    );
    Ok(if duplicates == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Serves the admin API and the console for the demo account, signed in by a fresh token in
/// the address's fragment (which the browser keeps to itself; the page moves it into the
/// tab's session storage). Returns the address to open.
async fn start_console(
    pool: &sqlx::PgPool,
    listen: &str,
    account_id: i64,
    stop: CancellationToken,
) -> anyhow::Result<String> {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            println!("   {listen} is not free ({e}); the console takes any free port");
            tokio::net::TcpListener::bind("127.0.0.1:0").await?
        }
    };
    let addr = listener.local_addr()?;
    let (_, token) = tarefas_store::tokens::create(pool, account_id, "demo").await?;
    let pool = pool.clone();
    tokio::spawn(async move {
        if let Err(e) = tarefas_admin::serve(listener, pool, stop).await {
            eprintln!("warning: the console stopped: {e}");
        }
    });
    Ok(format!("http://{addr}/#token={token}"))
}

/// Polls until `find` returns a run (at most two minutes).
async fn wait_for_run<F, Fut>(_pool: &sqlx::PgPool, find: F) -> anyhow::Result<i64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<runs::Run>, tarefas_store::StoreError>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(run) = find().await? {
            println!("   run {}", run.id);
            return Ok(run.id);
        }
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("no run appeared within two minutes; are RabbitMQ and Redis up?");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tarefas-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
