//! Observability through the real binaries: a worker and a scheduler serving /metrics,
//! /healthz and /readyz, scraped after a small run; every metric docs/operations.md names
//! must be there with values that match the run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::{repo, runtime, temp_file, Stack};

const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// GET `http://{addr}{path}`: status and body, or `None` while nothing answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let url = format!("http://{addr}{path}");
    runtime().block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let r = client.get(url).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    })
}

/// Polls `path` until `done(status, body)` or `within` passes; returns the last answer.
fn poll(
    addr: &str,
    path: &str,
    within: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let started = Instant::now();
    let mut last = (0, String::from("no answer"));
    while started.elapsed() < within {
        if let Some((status, body)) = get(addr, path) {
            if done(status, &body) {
                return (status, body);
            }
            last = (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

/// The metric names of docs/operations.md's metrics table.
fn documented_metrics() -> Vec<String> {
    let doc = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let section = &doc[doc.find("## Metrics").expect("a Metrics section")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let names: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("tarefas_"))
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// `(name, labels, value)` of each sample in a Prometheus text exposition.
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some((name.to_owned(), labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of `name` whose labels contain every one of `labels` (summed over the rest).
fn value(samples: &[(String, String, f64)], name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|want| l.contains(want)))
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn observability_every_documented_metric_is_scraped_with_plausible_values() {
    let mut stack = Stack::new(&["--contacts", "300", "--chats", "30"], 2_000);
    let file = temp_file(
        &format!(
            "name: Observed\naccount: demo\ntime_zone: UTC\nrecurrence: {{kind: daily, at: \"03:00\"}}\n\
             table: contacts\nfilter: {{field: organization, op: in, value: [Rotik, Acme]}}\n\
             action:\n  flow: {{project: 1, flow: 42, channel: {CHANNEL}}}\n"
        ),
        ".yaml",
    );
    let out = stack.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let id = out.stdout.trim().to_string();
    let want: usize = stack.query(
        "SELECT count(*)::text FROM contacts WHERE organization_name_lc IN ('rotik', 'acme')",
    )[0]
    .parse()
    .unwrap();
    assert!(want > 10, "{want}");
    // Due three seconds ago: the scheduler emits it at its first tick, ~3 s late.
    stack.query(&format!(
        "UPDATE tasks SET next_fire_at = now() - interval '3 seconds' WHERE id = {id} RETURNING id::text"
    ));
    let (worker, scheduler) = (free_addr(), free_addr());
    stack.spawn(&[
        "worker",
        "--channel-rate",
        "2000",
        "--metrics-addr",
        &worker,
    ]);
    stack.spawn(&["scheduler", "--metrics-addr", &scheduler]);

    let started = Instant::now();
    let mut status = String::new();
    while started.elapsed() < Duration::from_secs(90) {
        status = stack
            .query("SELECT status FROM runs")
            .first()
            .cloned()
            .unwrap_or_default();
        if status == "done" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status, "done", "the scheduled run did not finish");

    assert_eq!(get(&worker, "/healthz").map(|r| r.0), Some(200));
    let (code, body) = poll(&worker, "/readyz", Duration::from_secs(10), |s, _| s == 200);
    assert_eq!(code, 200, "{body}");
    for dep in ["postgres: ok", "rabbitmq: ok", "redis: ok"] {
        assert!(body.contains(dep), "{body}");
    }
    let (code, body) = poll(&scheduler, "/readyz", Duration::from_secs(10), |s, _| {
        s == 200
    });
    assert_eq!(code, 200, "{body}");

    // The outcome counters are recorded after the commit that finished the run: poll until
    // they are all in.
    let counts: Vec<f64> = stack
        .query("SELECT concat_ws(' ', done, skipped, failed, unknown) FROM runs")[0]
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<f64>(), want as f64, "{counts:?}");
    let (_, text) = poll(&worker, "/metrics", Duration::from_secs(10), |_, body| {
        value(&samples(body), "tarefas_items_total", &[]) >= want as f64
    });
    let (_, sched_text) = get(&scheduler, "/metrics").expect("scheduler /metrics");
    let w = samples(&text);
    let s = samples(&sched_text);
    let exported: BTreeSet<String> = w
        .iter()
        .chain(s.iter())
        .map(|(n, _, _)| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| n.strip_suffix(suffix))
                .unwrap_or(n)
                .to_owned()
        })
        .collect();
    let missing: Vec<_> = documented_metrics()
        .into_iter()
        .filter(|m| !exported.contains(m))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{text}");

    // Values that must match the run: `want` records settled as the run counts them, through
    // one fire.
    for (outcome, n) in ["done", "skipped", "failed", "unknown"].iter().zip(&counts) {
        let label = format!("outcome=\"{outcome}\"");
        assert_eq!(value(&w, "tarefas_items_total", &[&label]), *n, "{outcome}");
    }
    assert_eq!(
        value(&w, "tarefas_runs", &["state=\"done\""]),
        1.0,
        "{text}"
    );
    assert_eq!(value(&w, "tarefas_runs", &["state=\"running\""]), 0.0);
    assert_eq!(value(&w, "tarefas_runs_stalled", &[]), 0.0);
    // One Flow call per record, each timed (Huggy may answer 200 and not start the Flow:
    // the item is then skipped).
    let flows = value(
        &w,
        "tarefas_huggy_request_duration_seconds_count",
        &["endpoint=\"exec_flow\"", "status=\"200\""],
    );
    assert_eq!(flows, want as f64, "one exec_flow call per record\n{text}");
    let seconds = value(
        &w,
        "tarefas_huggy_request_duration_seconds_sum",
        &["endpoint=\"exec_flow\""],
    );
    assert!(seconds > 0.0 && seconds / flows < 5.0, "{seconds}");
    // Every call took a token first.
    assert_eq!(
        value(&w, "tarefas_rate_limiter_wait_seconds_count", &[]),
        want as f64
    );
    assert!(
        value(
            &w,
            "tarefas_queue_lag_seconds_count",
            &["queue=\"executions\""]
        ) >= 1.0
    );
    assert!(
        value(
            &w,
            "tarefas_queue_lag_seconds_count",
            &["queue=\"batches\""]
        ) >= 1.0
    );
    let lag = value(&w, "tarefas_queue_lag_seconds_sum", &[])
        / value(&w, "tarefas_queue_lag_seconds_count", &[]);
    assert!((0.0..30.0).contains(&lag), "mean queue lag {lag}");
    assert_eq!(value(&w, "tarefas_dlq_messages", &[]), 0.0);
    assert_eq!(
        value(&w, "tarefas_queue_messages", &["queue=\"batches\""]),
        0.0
    );
    assert_eq!(value(&w, "tarefas_outbox_pending", &[]), 0.0);
    assert_eq!(
        value(&w, "tarefas_build_info", &["service=\"worker\""]),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "tarefas_scheduler_fires_total",
            &["outcome=\"emitted\""]
        ),
        1.0
    );
    let late_sum = value(&s, "tarefas_scheduler_lateness_seconds_sum", &[]);
    assert_eq!(
        value(&s, "tarefas_scheduler_lateness_seconds_count", &[]),
        1.0
    );
    assert!(
        (2.5..60.0).contains(&late_sum),
        "the fire was due 3 s before the scheduler started: lateness {late_sum}"
    );
}

#[test]
fn observability_readyz_fails_while_a_dependency_is_unreachable() {
    // Redis on a port nothing listens on (the shared Redis is left alone).
    let mut stack = Stack::new_with(
        &["--contacts", "10", "--chats", "0"],
        100,
        crate::support::TestDb::new(),
        vec![("TAREFAS_REDIS_URL", "redis://127.0.0.1:1".into())],
    );
    let addr = free_addr();
    stack.spawn(&["worker", "--metrics-addr", &addr]);
    let (code, _) = poll(&addr, "/healthz", Duration::from_secs(20), |s, _| s == 200);
    assert_eq!(code, 200, "the process is alive");
    // Once Postgres and RabbitMQ are connected, only Redis fails.
    let (code, body) = poll(&addr, "/readyz", Duration::from_secs(75), |_, body| {
        body.contains("postgres: ok") && body.contains("rabbitmq: ok")
    });
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("redis: FAIL"), "{body}");
    assert!(
        body.contains("postgres: ok") && body.contains("rabbitmq: ok"),
        "{body}"
    );
}

/// Spans received: (trace id, span name, service).
type Spans = std::sync::Arc<std::sync::Mutex<Vec<(Vec<u8>, String, String)>>>;

/// A fake OTLP/HTTP collector.
struct Collector {
    url: String,
    spans: Spans,
}

impl Collector {
    fn start() -> Collector {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
        use prost::Message;
        let spans: Spans = Default::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sink = spans.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().route(
                    "/v1/traces",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        let sink = sink.clone();
                        async move {
                            let req = match ExportTraceServiceRequest::decode(body) {
                                Ok(req) => req,
                                Err(e) => {
                                    eprintln!("collector: undecodable export: {e}");
                                    return axum::http::StatusCode::BAD_REQUEST;
                                }
                            };
                            let mut sink = sink.lock().unwrap();
                            for rs in req.resource_spans {
                                let service = rs
                                    .resource
                                    .iter()
                                    .flat_map(|r| r.attributes.iter())
                                    .find(|kv| kv.key == "service.name")
                                    .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                                    .map(|v| match v {
                                        Any::StringValue(s) => s.clone(),
                                        other => format!("{other:?}"),
                                    })
                                    .unwrap_or_default();
                                for ss in rs.scope_spans {
                                    for span in ss.spans {
                                        sink.push((span.trace_id, span.name, service.clone()));
                                    }
                                }
                            }
                            axum::http::StatusCode::OK
                        }
                    }),
                );
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("collector stopped: {e}");
                }
            });
        });
        Collector { url, spans }
    }

    /// Trace ids holding a span named `name` from `service`.
    fn traces_with(&self, name: &str, service: &str) -> BTreeSet<Vec<u8>> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n, s)| n == name && s == service)
            .map(|(t, _, _)| t.clone())
            .collect()
    }
}

#[test]
fn observability_one_trace_spans_scheduler_worker_and_each_huggy_call() {
    let collector = Collector::start();
    let mut stack = Stack::new_with(
        &["--contacts", "100", "--chats", "0"],
        2_000,
        crate::support::TestDb::new(),
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.clone()),
            // Export every 200 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
        ],
    );
    let file = temp_file(
        &format!(
            "name: Traced\naccount: demo\ntime_zone: UTC\nrecurrence: {{kind: daily, at: \"03:00\"}}\n\
             table: contacts\nfilter: {{field: organization, op: in, value: [Rotik, Acme]}}\n\
             action:\n  flow: {{project: 1, flow: 42, channel: {CHANNEL}}}\n"
        ),
        ".yaml",
    );
    let out = stack.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let id = out.stdout.trim().to_string();
    let items: usize = stack.query(
        "SELECT count(*)::text FROM contacts WHERE organization_name_lc IN ('rotik', 'acme')",
    )[0]
    .parse()
    .unwrap();
    assert!(items > 2, "{items}");
    stack.query(&format!(
        "UPDATE tasks SET next_fire_at = now() - interval '1 second' WHERE id = {id} RETURNING id::text"
    ));
    stack.spawn(&["worker", "--channel-rate", "2000"]);
    stack.spawn(&["scheduler"]);

    // One trace holds the scheduler's fire, the planning, the batches and every call.
    let started = Instant::now();
    let mut found = None;
    while started.elapsed() < Duration::from_secs(90) && found.is_none() {
        std::thread::sleep(Duration::from_millis(300));
        let fires = collector.traces_with("fire", "tarefas-scheduler");
        let planned = collector.traces_with("plan_run", "tarefas-worker");
        let executed = collector.traces_with("execute_batch", "tarefas-worker");
        found = fires
            .into_iter()
            .find(|t| planned.contains(t) && executed.contains(t));
        if let Some(trace) = &found {
            let calls = collector
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, n, _)| t == trace && n == "huggy_call")
                .count();
            if calls < items {
                found = None;
            }
        }
    }
    let spans = collector.spans.lock().unwrap().len();
    let trace = found.unwrap_or_else(|| {
        panic!("no trace from fire through plan_run and execute_batch to {items} huggy_call spans ({spans} spans received)")
    });
    let in_trace: Vec<String> = collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| *t == trace)
        .map(|(_, n, _)| n.clone())
        .collect();
    assert_eq!(
        in_trace.iter().filter(|n| *n == "fire").count(),
        1,
        "{in_trace:?}"
    );
}
