//! Every metric a Tarefas service exports, by name. `docs/operations.md` lists them, the
//! `PrometheusRule` in `deploy/` alerts on them, and a test scrapes a running worker for them.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Gauge, label `state`: runs in each state (worker; counted in Postgres at scrape time).
pub const RUNS: &str = "tarefas_runs";
/// Gauge: runs planning or running that have not moved (a page planned, an item settled)
/// for 15 minutes, counted in Postgres by each worker's reconciler (worker).
pub const RUNS_STALLED: &str = "tarefas_runs_stalled";
/// Counter, label `state` (`planning`, `running`): runs whose messages the reconciler wrote
/// again because the run had not moved and no worker held it (worker).
pub const RUNS_RECONCILED: &str = "tarefas_runs_reconciled_total";
/// Counter, labels `queue` (`executions`, `batches`) and `then` (`acked`, `kept_retrying`,
/// `dead_lettered`): messages whose retry ladder ran out on a transient failure (worker).
pub const RETRIES_EXHAUSTED: &str = "tarefas_retries_exhausted_total";
/// Counter, label `outcome` (`done`, `skipped`, `failed`, `unknown`): items settled by this
/// worker.
pub const ITEMS: &str = "tarefas_items_total";
/// Histogram, labels `endpoint` and `status` (HTTP status, or `error` when no answer came):
/// seconds per Huggy call.
pub const HUGGY_SECONDS: &str = "tarefas_huggy_request_duration_seconds";
/// Histogram: seconds an item waited for its rate-limit token (account and channel keys).
pub const LIMITER_WAIT_SECONDS: &str = "tarefas_rate_limiter_wait_seconds";
/// Histogram, label `queue` (`executions`, `batches`): seconds from publish to consumption.
pub const QUEUE_LAG_SECONDS: &str = "tarefas_queue_lag_seconds";
/// Gauge, label `queue` (`executions`, `batches`, `dead_letters`): ready messages (worker).
pub const QUEUE_MESSAGES: &str = "tarefas_queue_messages";
/// Gauge: messages in the dead-letter queue (worker).
pub const DLQ_MESSAGES: &str = "tarefas_dlq_messages";
/// Gauge: messages written to the outbox and not yet published (worker).
pub const OUTBOX_PENDING: &str = "tarefas_outbox_pending";
/// Histogram: seconds between a fire's scheduled time and its emission (scheduler).
pub const SCHEDULER_LATENESS_SECONDS: &str = "tarefas_scheduler_lateness_seconds";
/// Counter, label `outcome` (`emitted`, `missed`): fires handled by this scheduler.
pub const SCHEDULER_FIRES: &str = "tarefas_scheduler_fires_total";
/// Gauge, labels `service` and `version`: 1 (which build runs where).
pub const BUILD_INFO: &str = "tarefas_build_info";

/// Every metric name with its kind and help text, in the order the docs list them.
pub const ALL: &[(&str, &str, &str)] = &[
    (
        RUNS,
        "gauge",
        "Runs in each state (label state), counted in Postgres at scrape time.",
    ),
    (
        RUNS_STALLED,
        "gauge",
        "Runs planning or running that have not moved for 15 minutes (counted in Postgres).",
    ),
    (
        RUNS_RECONCILED,
        "counter",
        "Runs whose messages the reconciler wrote again (label state: planning, running).",
    ),
    (
        RETRIES_EXHAUSTED,
        "counter",
        "Messages whose retries ran out on a transient failure, by queue and what was done (then).",
    ),
    (
        ITEMS,
        "counter",
        "Items settled by this worker, by outcome (done, skipped, failed, unknown).",
    ),
    (
        HUGGY_SECONDS,
        "histogram",
        "Seconds per Huggy call, by endpoint and HTTP status (error: no answer).",
    ),
    (
        LIMITER_WAIT_SECONDS,
        "histogram",
        "Seconds an item waited for its rate-limit token.",
    ),
    (
        QUEUE_LAG_SECONDS,
        "histogram",
        "Seconds from publish to consumption, by queue.",
    ),
    (
        QUEUE_MESSAGES,
        "gauge",
        "Ready messages in each queue (executions, batches, dead_letters).",
    ),
    (DLQ_MESSAGES, "gauge", "Messages in the dead-letter queue."),
    (
        OUTBOX_PENDING,
        "gauge",
        "Outbox rows not yet published to RabbitMQ.",
    ),
    (
        SCHEDULER_LATENESS_SECONDS,
        "histogram",
        "Seconds between a fire's scheduled time and its emission.",
    ),
    (
        SCHEDULER_FIRES,
        "counter",
        "Fires handled by this scheduler, by outcome (emitted, missed).",
    ),
    (
        BUILD_INFO,
        "gauge",
        "1, labelled with the service and the version.",
    ),
];

/// Bucket bounds (seconds) of the latency histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bucket bounds (seconds) of the lag and lateness histograms.
const LAG_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often the recorder's histograms are folded into their buckets. The exporter keeps
/// every recorded sample (8 bytes) until then: without this, a worker that nobody scrapes
/// grows by two samples per item, 1.6 MiB per 100,000 items (docs/benchmarks.md, memory).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle)
/// and describes every metric. Before it is installed, recording a metric does nothing.
/// A thread of its own (`metrics-upkeep`) folds the histograms' samples every
/// [`UPKEEP_EVERY`], whether or not `/metrics` is scraped.
pub fn install(service: &str) -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HUGGY_SECONDS.into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(LIMITER_WAIT_SECONDS.into()),
                        LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(QUEUE_LAG_SECONDS.into()), LAG_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(SCHEDULER_LATENESS_SECONDS.into()),
                        LAG_BUCKETS,
                    )
                })
                .expect("bucket bounds are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            let upkeep = handle.clone();
            if let Err(e) = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
            {
                tracing::warn!(error.message = %e, "metrics upkeep thread not started; histograms are folded only when scraped");
            }
            for (name, kind, help) in ALL {
                match *kind {
                    "counter" => metrics::describe_counter!(*name, *help),
                    "histogram" => metrics::describe_histogram!(*name, *help),
                    _ => metrics::describe_gauge!(*name, *help),
                }
            }
            handle
        })
        .clone()
        .tap_build_info(service)
}

trait TapBuildInfo {
    fn tap_build_info(self, service: &str) -> Self;
}

impl TapBuildInfo for PrometheusHandle {
    fn tap_build_info(self, service: &str) -> Self {
        metrics::gauge!(BUILD_INFO, "service" => service.to_owned(), "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);
        self
    }
}
