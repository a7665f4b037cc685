//! `/metrics`, `/healthz` and `/readyz` on a small axum server.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How long one readiness probe or one collector may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A readiness probe: one dependency that must answer (`Err` says why it did not).
pub struct Check {
    name: &'static str,
    probe: Box<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>,
}

impl Check {
    /// A probe named `name` (e.g. `postgres`).
    pub fn new<F, Fut>(name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Check {
            name,
            probe: Box::new(move || Box::pin(probe())),
        }
    }
}

/// Work done before each scrape (e.g. gauges counted in Postgres or RabbitMQ).
pub struct Collector(Box<dyn Fn() -> BoxFuture<()> + Send + Sync>);

impl Collector {
    /// A collector running `collect` (bounded by [`PROBE_TIMEOUT`]).
    pub fn new<F, Fut>(collect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Collector(Box::new(move || Box::pin(collect())))
    }
}

/// What the server answers with.
pub struct Endpoints {
    /// The recorder's handle (from [`crate::metric::install`]).
    pub metrics: PrometheusHandle,
    /// Readiness probes: `/readyz` is 200 only when every one answers.
    pub checks: Vec<Check>,
    /// Run before each `/metrics` render.
    pub collectors: Vec<Collector>,
}

async fn metrics(State(e): State<Arc<Endpoints>>) -> impl IntoResponse {
    let collect = e
        .collectors
        .iter()
        .map(|c| tokio::time::timeout(PROBE_TIMEOUT, (c.0)()));
    for done in futures_join(collect).await {
        if done.is_err() {
            tracing::warn!("a metrics collector timed out");
        }
    }
    e.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        e.metrics.render(),
    )
}

async fn readyz(State(e): State<Arc<Endpoints>>) -> impl IntoResponse {
    let probes = e.checks.iter().map(|c| async move {
        let result = match tokio::time::timeout(PROBE_TIMEOUT, (c.probe)()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        (c.name, result)
    });
    let results = futures_join(probes).await;
    let mut body = String::new();
    let mut ready = true;
    for (name, result) in results {
        match result {
            Ok(()) => body.push_str(&format!("{name}: ok\n")),
            Err(why) => {
                ready = false;
                body.push_str(&format!("{name}: FAIL {why}\n"));
            }
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// Runs futures concurrently on the current task and returns their outputs in order.
async fn futures_join<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The router: `/metrics`, `/healthz` (the process answers) and `/readyz` (every
/// dependency answers).
pub fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(endpoints))
}

/// Binds `addr` and serves the endpoints in the background until the process ends.
/// Returns the bound address (useful with port 0).
pub async fn serve(addr: SocketAddr, endpoints: Endpoints) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(endpoints);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error.message = %e, "metrics server stopped");
        }
    });
    tracing::info!(addr = %local, "serving /metrics, /healthz and /readyz");
    Ok(local)
}
