//! `tarefas scheduler`, `tarefas worker` and `tarefas dlq`: the long-running services and the
//! dead-letter tools, configured from flags and `TAREFAS_*` variables.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use tarefas_broker::{Broker, BrokerConfig, Names};
use tarefas_scheduler::SchedulerConfig;
use tarefas_worker::service::WorkerConfig;
use tarefas_worker::{ExecConfig, PlanConfig};

use crate::db::DbArgs;
use crate::output;

/// Parses `500ms`, `30s`, `5m`, `1h`, `30d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 500ms, 30s, 5m, 1h or 30d");
    let (n, unit) = match s.strip_suffix("ms") {
        Some(n) => (n, "ms"),
        None => s.split_at(s.len().saturating_sub(1)),
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
        _ => return Err(bad()),
    })
}

/// Where RabbitMQ is and which names to use.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// RabbitMQ URL (vhost URL-encoded: %2f for "/").
    #[arg(
        long,
        env = "TAREFAS_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (and of Redis keys).
    #[arg(long, env = "TAREFAS_QUEUE_PREFIX", default_value = "tarefas")]
    pub queue_prefix: String,
}

impl BrokerArgs {
    /// Connects (with backoff, failing after a minute with a clear error).
    pub async fn connect(&self) -> anyhow::Result<Broker> {
        self.connect_with_delays(None).await
    }

    /// [`BrokerArgs::connect`] with the given retry delays (else the default ladder).
    pub async fn connect_with_delays(
        &self,
        retry_delays: Option<&[Duration]>,
    ) -> anyhow::Result<Broker> {
        let mut names = Names::new(self.queue_prefix.clone())
            .map_err(|e| anyhow::anyhow!("TAREFAS_QUEUE_PREFIX: {e}"))?;
        if let Some(delays) = retry_delays {
            names = names
                .with_retry_delays(delays.iter().copied())
                .map_err(|e| anyhow::anyhow!("TAREFAS_RETRY_DELAYS: {e}"))?;
        }
        Broker::connect_with(BrokerConfig::new(self.amqp_url.clone(), names))
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to RabbitMQ: {e}"))
    }
}

/// Flags of `scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Emit what is due once and exit (for a Kubernetes CronJob).
    #[arg(long)]
    once: bool,
    /// How often to look for due tasks.
    #[arg(long, env = "TAREFAS_SCHEDULER_TICK", default_value = "1s", value_parser = parse_duration)]
    tick: Duration,
    /// A fire later than this is recorded as missed (one catch-up run replaces them).
    #[arg(long, env = "TAREFAS_MISFIRE_GRACE", default_value = "5m", value_parser = parse_duration)]
    misfire_grace: Duration,
    /// Tasks claimed per transaction.
    #[arg(long, env = "TAREFAS_SCHEDULER_BATCH", default_value_t = 500)]
    batch: i64,
    /// How long a fire that was emitted but whose run has not started yet (its message waits
    /// in the outbox or the queue: workers down or behind) counts as the task's run in
    /// progress for its `overlap` policy. Past it the task fires again, so that a message
    /// lost for good cannot stop a task forever.
    #[arg(long, env = "TAREFAS_PENDING_START_HOLD", default_value = "6h", value_parser = parse_duration)]
    pending_start_hold: Duration,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    metrics: crate::observe::MetricsArgs,
}

/// Runs the scheduler. Its fires go to the outbox; the workers relay them to RabbitMQ.
pub async fn scheduler(args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let deps = crate::observe::Deps::postgres();
    if !args.once {
        crate::observe::start("scheduler", &args.metrics, &deps).await?;
    }
    let pool = args.db.pool().await?;
    let _ = deps.pool.set(pool.clone());
    let config = SchedulerConfig {
        misfire_grace: args.misfire_grace,
        batch: args.batch,
        pending_start_hold: args.pending_start_hold,
    };
    if args.once {
        let r = tarefas_scheduler::tick(&pool, chrono::Utc::now(), &config).await?;
        println!(
            "{} tasks due, {} fires emitted, {} missed, {} queued, {} queued released",
            r.tasks, r.emitted, r.missed, r.queued, r.released
        );
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!(tick = ?args.tick, grace = ?args.misfire_grace, "scheduler started");
    tarefas_scheduler::run(pool, config, args.tick, crate::shutdown::token()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Flags of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Huggy's API base URL.
    #[arg(long, env = "TAREFAS_HUGGY_API_URL", default_value = tarefas_huggy::DEFAULT_BASE_URL)]
    huggy_url: String,
    /// Redis URL of the shared rate limiter and idempotency keys.
    #[arg(
        long,
        env = "TAREFAS_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    redis_url: String,
    /// Huggy calls in flight at once in this worker.
    #[arg(long, env = "TAREFAS_WORKER_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Item batches handled at once.
    #[arg(long, env = "TAREFAS_WORKER_PREFETCH", default_value_t = 4)]
    prefetch: u16,
    /// Calls per second per WhatsApp channel.
    #[arg(long, env = "TAREFAS_CHANNEL_RATE", default_value_t = 80.0)]
    channel_rate: f64,
    /// How long in-flight work may take after SIGTERM (keep it below the pod's grace period).
    #[arg(long, env = "TAREFAS_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Items whose batch's claim was not touched for this long (a live worker touches it
    /// every second; its worker died) are settled from their idempotency key.
    #[arg(long, env = "TAREFAS_STUCK_AFTER", default_value = "2m", value_parser = parse_duration)]
    stuck_after: Duration,
    /// Run history is kept this long: the periodic prune deletes finished runs (with their
    /// items and claims), missed fires, API tokens revoked and tasks deleted longer ago
    /// than this (e.g. 30d, 12h). Live runs are never touched. `tarefas prune` reads the
    /// same setting.
    #[arg(long, env = "TAREFAS_RETENTION", default_value = "30d", value_parser = crate::prune::parse_age)]
    retention: Duration,
    /// How often to prune the history older than --retention (0 or off: never; then run
    /// `tarefas prune` yourself). One worker at a time prunes, whatever the replicas.
    #[arg(long, env = "TAREFAS_PRUNE_EVERY", default_value = "1h", value_parser = crate::prune::parse_period)]
    prune_every: crate::prune::Period,
    /// Pause between two statements of the periodic prune (room for the live work).
    #[arg(long, env = "TAREFAS_PRUNE_PAUSE", default_value = "10ms", value_parser = parse_duration)]
    prune_pause: Duration,
    /// How long an item waits for its rate-limit token (or for an unreachable Redis to come
    /// back) before it is handed back to pending and its batch retried later.
    #[arg(long, env = "TAREFAS_ACQUIRE_DEADLINE", default_value = "30s", value_parser = parse_duration)]
    acquire_deadline: Duration,
    /// The retry ladder: how long a message that failed for a transient reason (Redis,
    /// Huggy or Postgres unreachable) waits before each new attempt, comma-separated. Past
    /// the last one an ItemBatch is acked (its items stay pending in Postgres and the
    /// reconciler republishes them) and an ExecuteTask keeps retrying at the last delay; only
    /// poison messages go to the dead-letter queue. Use the same on every worker.
    #[arg(long, env = "TAREFAS_RETRY_DELAYS", default_value = "1s,5s,30s,2m", value_parser = parse_delays)]
    retry_delays: Delays,
    /// How often this worker's reconciler looks for runs that stopped moving (every worker
    /// runs one; replicas never republish the same run at once).
    #[arg(long, env = "TAREFAS_RECONCILE_EVERY", default_value = "30s", value_parser = parse_duration)]
    reconcile_every: Duration,
    /// A run planning or running that has not moved (no page planned, no item settled) for
    /// this long, with no worker holding any of its items, gets its messages written again:
    /// its pending items' batches (and its ExecuteTask while planning), then waits at least
    /// as long again, doubling up to 4 times this. Must be longer than the retry ladder
    /// plus the time its attempts take (the default 10m: the default ladder is 2m36s, and an
    /// attempt failing on Huggy lasts seconds), so that a run is only republished once its
    /// last message can no longer be alive; while a worker holds a batch of the run (a live
    /// claim) the run is never taken, and a copy of a message still waiting is harmless.
    #[arg(long, env = "TAREFAS_RECONCILE_AFTER", default_value = "10m", value_parser = parse_duration)]
    reconcile_after: Duration,
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    metrics: crate::observe::MetricsArgs,
}

/// A comma-separated list of durations (`1s,5s,30s,2m`).
#[derive(Debug, Clone)]
pub struct Delays(pub Vec<Duration>);

fn parse_delays(s: &str) -> Result<Delays, String> {
    let delays = s
        .split(',')
        .map(|d| parse_duration(d.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    Names::default()
        .with_retry_delays(delays.iter().copied())
        .map_err(|e| e.to_string())?;
    Ok(Delays(delays))
}

/// Runs a worker until SIGTERM, then drains.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let exec = ExecConfig {
        concurrency: args.concurrency,
        channel_rate: args.channel_rate,
        acquire_deadline: args.acquire_deadline,
        ..ExecConfig::default()
    };
    let reconcile = tarefas_worker::reconcile::ReconcileConfig {
        every: args.reconcile_every,
        after: args.reconcile_after,
        ..Default::default()
    };
    if let Err(e) = reconcile.check(&args.retry_delays.0) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    // Up before the connections, so /healthz answers and /readyz says what is missing.
    let deps = crate::observe::Deps::all(args.redis_url.clone());
    crate::observe::start("worker", &args.metrics, &deps).await?;
    let pool = args.db.pool().await?;
    let _ = deps.pool.set(pool.clone());
    let broker = args
        .broker
        .connect_with_delays(Some(&args.retry_delays.0))
        .await?;
    if let Some(slot) = &deps.broker {
        let _ = slot.set(broker.clone());
    }
    let config = WorkerConfig {
        huggy_url: args.huggy_url,
        redis_url: args.redis_url,
        redis_prefix: args.broker.queue_prefix.clone(),
        plan: PlanConfig::default(),
        exec,
        batch_prefetch: args.prefetch,
        drain_timeout: args.drain_timeout,
        stuck_after: args.stuck_after,
        prune: match args.prune_every.0 {
            Some(every) => Some(tarefas_store::prune::Periodic {
                retention: crate::prune::chrono_age(args.retention)?,
                every,
                batch: tarefas_store::prune::DEFAULT_BATCH,
                pause: args.prune_pause,
            }),
            None => None,
        },
        reconcile,
    };
    tracing::info!(concurrency = config.exec.concurrency, "worker started");
    tarefas_worker::service::run(pool, broker.clone(), config, crate::shutdown::token())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    broker.close().await;
    tracing::info!("worker stopped");
    Ok(ExitCode::SUCCESS)
}

/// `tarefas dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered messages (they stay in the queue) with their reasons.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Move dead-lettered messages back to the queue they came from (fix the cause first).
    Replay {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        max: usize,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

/// Runs a `dlq` subcommand.
pub async fn dlq(cmd: DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List {
            limit,
            json,
            broker,
        } => {
            let broker = broker.connect().await?;
            let list = broker.dlq_list(limit).await?;
            if json {
                let items: Vec<serde_json::Value> = list
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "reason": d.reason, "reason_code": d.reason_code, "source_queue": d.source_queue,
                            "failed_at": d.failed_at, "routing_key": d.routing_key, "size": d.size,
                            "attempt": d.attempt, "message_type": d.message_type, "replays": d.replays,
                        })
                    })
                    .collect();
                output::json(&items)?;
            } else {
                let rows = list
                    .iter()
                    .map(|d| {
                        vec![
                            output::opt(d.source_queue.clone()),
                            output::opt(d.failed_at.clone()),
                            d.reason.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["FROM", "FAILED AT", "REASON"], &rows);
            }
            broker.close().await;
        }
        DlqCommand::Replay { max, broker } => {
            let broker = broker.connect().await?;
            let report = broker.dlq_replay(max).await?;
            println!("{report:?}");
            broker.close().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
