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
