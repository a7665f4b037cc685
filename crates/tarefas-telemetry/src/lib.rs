//! Observability shared by every Tarefas service:
//!
//! * logs through `tracing`: readable lines in a terminal, one JSON object per line otherwise
//!   ([`LogFormat`]), the level from `RUST_LOG`;
//! * OpenTelemetry traces exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with the W3C trace context carried from
//!   one service to the next ([`traceparent`], [`set_parent`]): the scheduler's fire, the
//!   planning worker and each Huggy call of a run share one trace;
//! * Prometheus metrics recorded through the `metrics` facade ([`metric`] names every one)
//!   and served with `/healthz` and `/readyz` by [`serve`].

mod server;
mod trace;

pub mod metric;

pub use server::{serve, Check, Collector, Endpoints};
pub use trace::{init, set_parent, traceparent, LogFormat, TelemetryGuard, TRACEPARENT};
