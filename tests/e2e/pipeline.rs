//! The pipeline through the real binaries: `tarefas worker` and `tarefas scheduler`
//! processes, RabbitMQ, Redis, Postgres and a `tarefas fake-huggy` process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{temp_file, Stack};

const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";

fn flow_task(filter: &str, recurrence: &str) -> tempfile::TempPath {
    temp_file(
        &format!(
            "name: E2E\naccount: demo\ntime_zone: UTC\nrecurrence: {recurrence}\ntable: contacts\nfilter: {filter}\n\
             action:\n  flow: {{project: 1, flow: 42, channel: {CHANNEL}}}\n  \
             policy: {{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}}\n"
        ),
        ".yaml",
    )
}

fn ids(stack: &Stack, sql: &str) -> Vec<i64> {
    stack
        .query(sql)
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn executar_tarefa_calls_huggy_once_per_record_of_the_segment() {
    let mut stack = Stack::new(&["--contacts", "1500", "--chats", "300"], 2_000);
    let file = flow_task(
        "{field: organization, op: in, value: [Rotik, Acme]}",
        "{kind: manual}",
    );
    let id = stack
        .tarefas(&["task", "create", "-f", file.to_str().unwrap()])
        .stdout
        .trim()
        .to_string();
    let want = ids(
        &stack,
        "SELECT id::text FROM contacts WHERE organization_name_lc IN ('rotik', 'acme') ORDER BY id",
    );
    assert!(want.len() > 50, "{}", want.len());
    stack.spawn(&["worker", "--channel-rate", "2000"]);
    stack.spawn(&["worker", "--channel-rate", "2000"]);
    let out = stack.tarefas(&["task", "run", &id, "--wait"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "{} done, 0 skipped, 0 failed, 0 unknown",
            want.len()
        )),
        "{out:?}"
    );
    let calls = stack.exec_flows();
    assert_eq!(
        calls.keys().copied().collect::<Vec<_>>(),
        want,
        "exactly the segment"
    );
    assert!(calls.values().all(|n| *n == 1), "exactly once each");
    let shown: Value =
        serde_json::from_str(&stack.tarefas(&["run", "list", "--json"]).stdout).unwrap();
    assert_eq!(shown[0]["counts"]["done"].as_u64(), Some(want.len() as u64));
    assert_eq!(shown[0]["status"], "done");
}

#[test]
fn a_scheduled_task_fires_at_its_minute() {
    let mut stack = Stack::new(&["--contacts", "100", "--chats", "10"], 1_000);
    let file = flow_task(
        "{field: id, op: lte, value: 1010}",
        "{kind: every_minutes, n: 1}",
    );
    let id = stack
        .tarefas(&["task", "create", "-f", file.to_str().unwrap()])
        .stdout
        .trim()
        .to_string();
    let next: Value =
        serde_json::from_str(&stack.tarefas(&["task", "show", &id, "--json"]).stdout).unwrap();
    let next_fire =
        chrono::DateTime::parse_from_rfc3339(next["next_fire_at"].as_str().unwrap()).unwrap();
    stack.spawn(&["scheduler", "--tick", "200ms"]);
    stack.spawn(&["worker"]);
    let started = Instant::now();
    let run = loop {
        let runs: Value = serde_json::from_str(
            &stack
                .tarefas(&["run", "list", "--json", "--task", &id])
                .stdout,
        )
        .unwrap();
        if let Some(r) = runs
            .as_array()
            .and_then(|a| a.last())
            .filter(|r| r["status"] == "done")
        {
            break r.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(100),
            "no scheduled run finished: {runs}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(run["trigger"], "scheduled");
    let scheduled =
        chrono::DateTime::parse_from_rfc3339(run["scheduled_for"].as_str().unwrap()).unwrap();
    assert_eq!(
        scheduled, next_fire,
        "the first fire is the task's next minute"
    );
    let started_at =
        chrono::DateTime::parse_from_rfc3339(run["started_at"].as_str().unwrap()).unwrap();
    assert!(
        (started_at - scheduled).num_milliseconds() < 5_000,
        "fired on time: {run}"
    );
    assert_eq!(run["counts"]["done"], 10);
}

#[test]
fn several_workers_stay_within_the_rate_limit() {
    let mut stack = Stack::new(&["--contacts", "400", "--chats", "10"], 40);
    let file = flow_task("{field: id, op: gt, value: 0}", "{kind: manual}");
    let id = stack
        .tarefas(&["task", "create", "-f", file.to_str().unwrap()])
        .stdout
        .trim()
        .to_string();
    for _ in 0..3 {
        stack.spawn(&["worker", "--channel-rate", "1000"]);
    }
    let out = stack.tarefas(&["task", "run", &id, "--wait"]);
    assert_eq!(out.code, 0, "{out:?}");
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    let mut times = Vec::new();
    for c in stack.calls() {
        if c["route"].as_str().is_some_and(|r| r.contains("execFlow")) {
            let at = chrono::DateTime::parse_from_rfc3339(c["at"].as_str().unwrap()).unwrap();
            times.push(at);
            *per_second.entry(at.timestamp()).or_insert(0) += 1;
        }
    }
    assert_eq!(times.len(), 400);
    // No window of one second (sliding, to the millisecond) holds more than the limit.
    times.sort();
    let worst = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| (**t - times[i]).num_milliseconds() < 1000)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        worst <= 40 + 1,
        "worst one-second window: {worst} calls for a limit of 40/s"
    );
    let span = (*times.last().unwrap() - times[0]).num_milliseconds() as f64 / 1000.0;
    let rate = (times.len() - 1) as f64 / span;
    assert!(rate > 40.0 * 0.9, "achieved {rate:.1}/s, limit 40/s");
}

#[test]
fn cancel_stops_the_calls() {
    let mut stack = Stack::new(
        &["--contacts", "3000", "--chats", "10", "--latency-ms", "20"],
        100,
    );
    let file = flow_task("{field: id, op: gt, value: 0}", "{kind: manual}");
    let id = stack
        .tarefas(&["task", "create", "-f", file.to_str().unwrap()])
        .stdout
        .trim()
        .to_string();
    stack.spawn(&["worker"]);
    let out = stack.tarefas(&["task", "run", &id, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let run_id = loop {
        let runs: Value =
            serde_json::from_str(&stack.tarefas(&["run", "list", "--json"]).stdout).unwrap();
        if let Some(r) = runs
            .as_array()
            .and_then(|a| a.first())
            .filter(|r| r["counts"]["done"].as_i64() > Some(100))
        {
            break r["id"].to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let cancelled = stack.tarefas(&["run", "cancel", &run_id]);
    assert_eq!(cancelled.code, 0, "{cancelled:?}");
    // Calls stop within a second: what is in flight finishes, nothing new starts.
    std::thread::sleep(Duration::from_millis(1_000));
    let after_a_second = stack.exec_flows().values().sum::<usize>();
    std::thread::sleep(Duration::from_millis(2_000));
    let later = stack.exec_flows().values().sum::<usize>();
    assert_eq!(
        after_a_second, later,
        "no calls more than a second after the cancel"
    );
    assert!(later < 3_000);
    // Every item settles: the calls made are counted done, the rest skipped.
    let started = Instant::now();
    let run = loop {
        let out = stack.tarefas(&["run", "show", &run_id, "--json"]);
        let run: Value = serde_json::from_str(&out.stdout).unwrap();
        if run["counts"]["pending"] == 0 || started.elapsed() > Duration::from_secs(20) {
            break run;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["status"], "cancelled");
    let c = &run["counts"];
    assert_eq!(
        c["done"].as_u64().unwrap() as usize,
        later,
        "every call made is counted: {run}"
    );
    assert_eq!(
        c["done"].as_u64().unwrap()
            + c["skipped"].as_u64().unwrap()
            + c["failed"].as_u64().unwrap()
            + c["unknown"].as_u64().unwrap(),
        3000
    );
}

#[test]
fn sigterm_mid_run_loses_and_repeats_nothing() {
    let mut stack = Stack::new(
        &["--contacts", "2000", "--chats", "10", "--latency-ms", "15"],
        400,
    );
    let file = flow_task("{field: id, op: gt, value: 0}", "{kind: manual}");
    let id = stack
        .tarefas(&["task", "create", "-f", file.to_str().unwrap()])
        .stdout
        .trim()
        .to_string();
    let first = stack.spawn(&["worker", "--channel-rate", "1000", "--drain-timeout", "10s"]);
    stack.spawn(&["worker", "--channel-rate", "1000"]);
    let out = stack.tarefas(&["task", "run", &id, "--json"]);
    assert_eq!(out.code, 0);
    // Mid-run: stop the first worker gracefully.
    loop {
        let done: usize = stack.exec_flows().values().sum();
        if done > 300 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stack.terminate(first, Duration::from_secs(15)),
        "the worker drained and exited cleanly"
    );
    let run_id = serde_json::from_str::<Value>(&stack.tarefas(&["run", "list", "--json"]).stdout)
        .unwrap()[0]["id"]
        .to_string();
    let out = stack.tarefas(&["run", "watch", &run_id]);
    assert_eq!(out.code, 0, "{out:?}");
    let calls = stack.exec_flows();
    assert_eq!(calls.len(), 2000, "nothing lost");
    assert!(calls.values().all(|n| *n == 1), "nothing repeated");
}
