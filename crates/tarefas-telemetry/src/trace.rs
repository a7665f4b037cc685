//! Logs and traces.

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The W3C trace context header (and outbox column, and AMQP header) name.
pub const TRACEPARENT: &str = "traceparent";

/// How logs are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines when standard error is a terminal, JSON otherwise (a container).
    #[default]
    Auto,
    /// One JSON object per line (for a log collector).
    Json,
    /// Readable lines.
    Pretty,
}

impl LogFormat {
    /// Whether this format writes JSON here.
    pub fn is_json(self) -> bool {
        match self {
            LogFormat::Json => true,
            LogFormat::Pretty => false,
            LogFormat::Auto => !std::io::stderr().is_terminal(),
        }
    }
}

/// Keeps the trace exporter alive; dropping it flushes the spans not yet sent.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether traces are exported (an OTLP endpoint was configured).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: flushing traces failed: {e}");
            }
        }
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
        && std::env::var("OTEL_SDK_DISABLED").as_deref() != Ok("true")
}

fn provider(service: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default name.
    let resource = if std::env::var("OTEL_SERVICE_NAME").is_ok() {
        Resource::builder().build()
    } else {
        Resource::builder()
            .with_service_name(service.to_owned())
            .build()
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the global subscriber: logs to standard error in `format` at the `RUST_LOG`
/// level (default `info`), and spans exported over OTLP when an endpoint is configured.
/// `service` names the process in traces (`tarefas-worker`, ...). Keep the guard until exit.
pub fn init(format: LogFormat, service: &str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
    ]));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if format.is_json() {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    let mut guard = TelemetryGuard::default();
    let mut problem = None;
    let traces = if otlp_configured() {
        match provider(service) {
            Ok(p) => {
                // Spans are exported by their own filter, whatever RUST_LOG says for logs:
                // Tarefas' spans (info and above), other crates' warnings.
                let spans = EnvFilter::try_from_env("TAREFAS_TRACE_FILTER")
                    .unwrap_or_else(|_| EnvFilter::new("warn,tarefas=info"));
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(p.tracer("tarefas"))
                    .with_filter(spans);
                guard.provider = Some(p);
                Some(layer)
            }
            Err(e) => {
                problem = Some(e);
                None
            }
        }
    } else {
        None
    };
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init();
    if let Some(e) = problem {
        tracing::warn!(error.message = %e, "OTLP trace exporter not started; traces are off");
    }
    guard
}

/// The W3C `traceparent` of the current span, when traces are on and it is sampled in.
pub fn traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the remote span `traceparent` names (no-op when `None` or
/// malformed, or when traces are off).
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent.filter(|v| !v.is_empty()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}
