//! `--metrics-addr`: the `/metrics`, `/healthz` and `/readyz` server of `worker`, `scheduler`
//! and `sync`, with readiness probes that ask each dependency for an answer and the gauges
//! counted at scrape time (runs by state, queue depths, outbox). `tarefas_runs_stalled` is
//! set by the worker's reconciler from a query (`tarefas_worker::reconcile`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use clap::Args;
use sqlx::PgPool;
use tarefas_broker::{Broker, Source};
use tarefas_telemetry::{Check, Collector, Endpoints};

/// Flags of the metrics server.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 0.0.0.0:9090); off when
    /// empty.
    #[arg(long, env = "TAREFAS_METRICS_ADDR", value_parser = parse_addr)]
    pub metrics_addr: Option<MetricsAddr>,
}

/// A listen address, or none (an empty value turns the server off).
#[derive(Debug, Clone, Copy)]
pub struct MetricsAddr(pub Option<SocketAddr>);

fn parse_addr(s: &str) -> Result<MetricsAddr, String> {
    if s.trim().is_empty() {
        return Ok(MetricsAddr(None));
    }
    s.parse()
        .map(|a| MetricsAddr(Some(a)))
        .map_err(|_| format!("{s:?} is not an address such as 0.0.0.0:9090"))
}

impl MetricsArgs {
    fn addr(&self) -> Option<SocketAddr> {
        self.metrics_addr.and_then(|a| a.0)
    }
}

/// What a service depends on; filled in as the service connects (until then `/readyz`
/// says so).
#[derive(Clone, Default)]
pub struct Deps {
    /// Postgres.
    pub pool: Arc<OnceLock<PgPool>>,
    /// RabbitMQ (worker only).
    pub broker: Option<Arc<OnceLock<Broker>>>,
    /// Redis (worker only).
    pub redis_url: Option<String>,
}

impl Deps {
    /// Postgres only.
    pub fn postgres() -> Self {
        Deps::default()
    }

    /// Postgres, RabbitMQ and Redis (the worker).
    pub fn all(redis_url: String) -> Self {
        Deps {
            pool: Default::default(),
            broker: Some(Default::default()),
            redis_url: Some(redis_url),
        }
    }
}

fn checks(deps: &Deps) -> Vec<Check> {
    let mut checks = Vec::new();
    let pool = deps.pool.clone();
    checks.push(Check::new("postgres", move || {
        let pool = pool.get().cloned();
        async move {
            let pool = pool.ok_or("not connected yet")?;
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }));
    if let Some(broker) = &deps.broker {
        let broker = broker.clone();
        checks.push(Check::new("rabbitmq", move || {
            let broker = broker.get().cloned();
            async move {
                let broker = broker.ok_or("not connected yet")?;
                if !broker.is_connected() {
                    return Err("connection down (reconnecting)".into());
                }
                // A passive declare: the broker must answer, and the topology exist.
                let dlq = broker.names().dead_letter_queue();
                broker
                    .message_count(&dlq)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }));
    }
    if let Some(url) = &deps.redis_url {
        let client = redis::Client::open(url.as_str());
        checks.push(Check::new("redis", move || {
            let client = client.clone();
            async move {
                let client = client.map_err(|e| e.to_string())?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                let pong: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if pong == "PONG" {
                    Ok(())
                } else {
                    Err(format!("PING answered {pong:?}"))
                }
            }
        }));
    }
    checks
}

/// The worker's gauges, counted at each scrape.
fn worker_collectors(deps: &Deps) -> Vec<Collector> {
    let mut collectors = Vec::new();
    let pool = deps.pool.clone();
    collectors.push(Collector::new(move || {
        let pool = pool.get().cloned();
        async move {
            let Some(pool) = pool else { return };
            match sqlx::query_as::<_, (String, i64)>(
                "SELECT status, count(*) FROM runs GROUP BY status",
            )
            .fetch_all(&pool)
            .await
            {
                Ok(rows) => {
                    let counts: HashMap<String, i64> = rows.into_iter().collect();
                    for state in tarefas_core::run::RUN_STATUSES {
                        let n = counts.get(state.as_str()).copied().unwrap_or(0);
                        metrics::gauge!("tarefas_runs", "state" => state.as_str()).set(n as f64);
                    }
                }
                Err(e) => tracing::warn!(error.message = %e, "counting runs failed"),
            }
            match tarefas_store::outbox::pending(&pool).await {
                Ok(n) => metrics::gauge!("tarefas_outbox_pending").set(n as f64),
                Err(e) => tracing::warn!(error.message = %e, "counting the outbox failed"),
            }
        }
    }));
    if let Some(broker) = &deps.broker {
        let broker = broker.clone();
        collectors.push(Collector::new(move || {
            let broker = broker.get().cloned();
            async move {
                let Some(broker) = broker else { return };
                let names = broker.names().clone();
                let queues = [
                    (Source::Executions.suffix(), names.queue(Source::Executions)),
                    (Source::Batches.suffix(), names.queue(Source::Batches)),
                    ("dead_letters", names.dead_letter_queue()),
                ];
                for (label, queue) in queues {
                    match broker.message_count(&queue).await {
                        Ok(n) => {
                            metrics::gauge!("tarefas_queue_messages", "queue" => label)
                                .set(f64::from(n));
                            if label == "dead_letters" {
                                metrics::gauge!("tarefas_dlq_messages").set(f64::from(n));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(queue, error.message = %e, "counting a queue failed")
                        }
                    }
                }
            }
        }));
    }
    collectors
}

/// Installs the metrics recorder and, when `--metrics-addr` is set, serves the endpoints
/// for `service` (`worker` adds its gauges). Returns the bound address.
pub async fn start(
    service: &str,
    args: &MetricsArgs,
    deps: &Deps,
) -> anyhow::Result<Option<SocketAddr>> {
    let handle = tarefas_telemetry::metric::install(service);
    let Some(addr) = args.addr() else {
        return Ok(None);
    };
    let collectors = if service == "worker" {
        worker_collectors(deps)
    } else {
        Vec::new()
    };
    let endpoints = Endpoints {
        metrics: handle,
        checks: checks(deps),
        collectors,
    };
    let bound = tarefas_telemetry::serve(addr, endpoints)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    Ok(Some(bound))
}
