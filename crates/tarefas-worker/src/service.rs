//! `tarefas worker` as a library function: consume both queues (planning and execution),
//! relay the outbox to RabbitMQ, settle stuck items, republish the messages of runs that
//! stopped moving (the reconciler), and drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tarefas_broker::{
    Broker, ConsumerOptions, Incoming, Outcome, Outgoing, WhenExhausted, BATCHES, EXECUTIONS,
};
use tarefas_huggy::{HttpHuggy, HuggyConfig};
use tarefas_proto::v1::{ExecuteTask, ItemBatch};
use tarefas_store::outbox;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::execute::{BatchOutcome, ExecConfig, Executor};
use crate::gate::Gate;
use crate::plan::{plan, PlanConfig};
use crate::reconcile::ReconcileConfig;
use crate::redis_gate::RedisGate;
use crate::WorkerError;

/// Everything a worker process needs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Huggy's API base URL.
    pub huggy_url: String,
    /// Redis URL of the shared limiter.
    pub redis_url: String,
    /// Key prefix in Redis.
    pub redis_prefix: String,
    /// Planning settings.
    pub plan: PlanConfig,
    /// Execution settings.
    pub exec: ExecConfig,
    /// Batches handled at once (each holds up to `plan.batch_size` items).
    pub batch_prefetch: u16,
    /// How long in-flight work may take after shutdown is asked.
    pub drain_timeout: Duration,
    /// Items `sending` for longer than this are settled from their idempotency key.
    pub stuck_after: Duration,
    /// The periodic prune of the history older than the retention (`None`: off). One
    /// worker at a time prunes, under a Postgres advisory lock.
    pub prune: Option<tarefas_store::prune::Periodic>,
    /// The reconciler's settings.
    pub reconcile: ReconcileConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            huggy_url: tarefas_huggy::DEFAULT_BASE_URL.into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "tarefas".into(),
            plan: PlanConfig::default(),
            exec: ExecConfig::default(),
            batch_prefetch: 4,
            drain_timeout: Duration::from_secs(20),
            stuck_after: Duration::from_secs(120),
            prune: None,
            reconcile: ReconcileConfig::default(),
        }
    }
}

fn outcome(result: Result<(), WorkerError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ack,
        Err(WorkerError::Transient(reason)) => Outcome::retry(reason),
        Err(WorkerError::Permanent(reason)) => Outcome::dead_letter(reason),
    }
}

/// Publishes the outbox until `stop` is cancelled; idles briefly when it is empty.
pub async fn relay(pool: PgPool, broker: Broker, stop: CancellationToken) {
    let publisher = broker.publisher();
    loop {
        let step = outbox::relay_step(&pool, 500, |messages| {
            let outgoing: Vec<Outgoing> = messages
                .into_iter()
                .map(|m| {
                    let out = Outgoing::new(m.routing_key, m.payload);
                    match m.traceparent {
                        Some(tp) => out.with_header(tarefas_telemetry::TRACEPARENT, tp),
                        None => out,
                    }
                })
                .collect();
            let publisher = publisher.clone();
            async move { publisher.publish_many(&outgoing).await }
        })
        .await;
        let idle = match step {
            Ok(0) => Duration::from_millis(100),
            Ok(_) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error.message = %e, "outbox relay step failed; retrying");
                Duration::from_secs(1)
            }
        };
        if stop.is_cancelled() {
            return;
        }
        if !idle.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// Runs a worker until `shutdown` is cancelled, then drains: consumers stop taking messages,
/// in-flight batches finish (or are handed back to the queue at the drain deadline).
pub async fn run(
    pool: PgPool,
    broker: Broker,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let gate = Arc::new(
        RedisGate::connect(&config.redis_url, &config.redis_prefix)
            .map_err(|e| WorkerError::Transient(e.to_string()))?,
    );
    run_with_gate(pool, broker, gate, config, shutdown).await
}

/// [`run`] with a given [`Gate`].
pub async fn run_with_gate<G: Gate>(
    pool: PgPool,
    broker: Broker,
    gate: Arc<G>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    // Keep as many idle connections as calls can be in flight: with fewer, every wave of
    // calls that ends together closes the extra connections and the next wave opens them
    // again (with the default of 64 at concurrency 128, one call in five opened a TCP
    // connection).
    let mut huggy_config = HuggyConfig::new("unset").with_base_url(config.huggy_url.clone());
    huggy_config.pool_max_idle_per_host = huggy_config
        .pool_max_idle_per_host
        .max(config.exec.concurrency);
    let huggy = HttpHuggy::new(huggy_config)
        .map_err(|e| WorkerError::Permanent(format!("TAREFAS_HUGGY_API_URL: {e}")))?;
    // Batches get a pool of their own, as large as the one given, whose planner reads
    // their rows by primary key even while the tables are young.
    let batch_pool = tarefas_store::batch_pool(&pool, pool.options().get_max_connections());
    let executor = Arc::new(Executor::new(batch_pool, gate, huggy, config.exec.clone()));
    let stop_rx = shutdown.clone();

    let relay_task = tokio::spawn(relay(pool.clone(), broker.clone(), stop_rx.clone()));
    let sweeper = {
        let (executor, stop) = (executor.clone(), stop_rx.clone());
        let every = config.stuck_after / 2;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                match executor.settle_stuck(config.stuck_after, 10_000).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(items = n, "settled items stuck in sending"),
                    Err(e) => tracing::warn!(error.message = %e, "settling stuck items failed"),
                }
            }
        })
    };

    // Runs whose items waited for their send window: published again once it opens.
    let waker = {
        let (pool, stop) = (pool.clone(), stop_rx.clone());
        let batch_size = config.plan.batch_size;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
                match crate::plan::wake_waiting(&pool, batch_size).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(runs = n, "send window opened: items published again"),
                    Err(e) => {
                        tracing::warn!(error.message = %e, "waking runs waiting for their send window failed")
                    }
                }
            }
        })
    };

    let pruner = config.prune.clone().map(|settings| {
        tokio::spawn(tarefas_store::prune::prune_every(
            pool.clone(),
            settings,
            stop_rx.clone().cancelled_owned(),
        ))
    });
    // Leader-free: every worker runs it; runs are taken with SKIP LOCKED.
    let reconciler = tokio::spawn(crate::reconcile::run(
        pool.clone(),
        config.reconcile.clone(),
        config.plan.batch_size,
        stop_rx.clone(),
    ));

    let planner = {
        let pool = pool.clone();
        let plan_config = config.plan.clone();
        move |incoming: Incoming<ExecuteTask>| {
            let (pool, plan_config) = (pool.clone(), plan_config.clone());
            // A child of the scheduler's (or requester's) span: the run's trace.
            let span = tracing::info_span!("plan_run", task_id = incoming.message.task_id);
            tarefas_telemetry::set_parent(&span, incoming.traceparent.as_deref());
            async move {
                outcome(
                    plan(&pool, &incoming.message, &plan_config)
                        .await
                        .map(|_| ()),
                )
            }
            .instrument(span)
        }
    };
    let exec_handler = {
        let executor = executor.clone();
        move |incoming: Incoming<ItemBatch>| {
            let executor = executor.clone();
            // A child of the planner's span that published the batch.
            let span = tracing::info_span!("execute_batch", run_id = incoming.message.run_id);
            tarefas_telemetry::set_parent(&span, incoming.traceparent.as_deref());
            async move {
                match executor.execute(&incoming.message).await {
                    Ok(BatchOutcome::Done) => Outcome::Ack,
                    Ok(BatchOutcome::RetryLater(reason)) => Outcome::retry(reason),
                    Err(e) => outcome(Err(e)),
                }
            }
            .instrument(span)
        }
    };
    let options =
        |prefetch: u16| ConsumerOptions::new(prefetch).with_drain_timeout(config.drain_timeout);
    // Past the retry ladder, a transient failure never sends a message to the DLQ (it keeps
    // poison messages only). An `ExecuteTask` keeps coming back at the last delay: its run
    // may not exist yet (Postgres was down), so nothing else could bring it back. A batch
    // is acked: its items are `pending` in Postgres, and the reconciler republishes them.
    let plans = broker.consume_with(
        EXECUTIONS,
        options(2).when_exhausted(WhenExhausted::KeepRetrying),
        planner,
        stop_rx.cancelled(),
    );
    let batches = broker.consume_with(
        BATCHES,
        options(config.batch_prefetch.max(1)).when_exhausted(WhenExhausted::Ack),
        exec_handler,
        stop_rx.cancelled(),
    );
    let signal = async {
        shutdown.cancelled().await;
        tracing::info!("shutdown asked: draining");
    };
    let ((), plans, batches) = tokio::join!(signal, plans, batches);
    let _ = relay_task.await;
    sweeper.abort();
    waker.abort();
    if let Some(pruner) = pruner {
        let _ = pruner.await;
    }
    reconciler.abort();
    plans.map_err(|e| WorkerError::Transient(e.to_string()))?;
    batches.map_err(|e| WorkerError::Transient(e.to_string()))?;
    Ok(())
}
