//! Retention through the real binary: `tarefas prune` while a run executes removes the old
//! finished runs with their items and claims and the old missed fires, and nothing else;
//! the live run goes on to `done` with every record called once. The workers' periodic
//! prune does the same on its own.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{temp_file, Stack};

const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";

fn task(stack: &Stack) -> String {
    let file = temp_file(
        &format!(
            "name: Retention\naccount: demo\ntime_zone: UTC\nrecurrence: {{kind: manual}}\ntable: contacts\n\
             action:\n  flow: {{project: 1, flow: 42, channel: {CHANNEL}}}\n  \
             policy: {{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}}\n"
        ),
        ".yaml",
    );
    let out = stack.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

/// Old history of task `task`: a run done 40 days ago with 25,000 items, one cancelled 35
/// days ago with 7 items and the claim of a worker that died, a run done 2 days ago with
/// 50 items; a missed fire 40 days old and one 2 days old. Returns the three run ids.
fn seed_history(stack: &Stack, task: &str) -> [String; 3] {
    let run = |request: &str, status: &str, days: u32, items: u32| -> String {
        let id = stack.query(&format!(
            "WITH r AS (
                 INSERT INTO runs (account_id, task_id, request_id, trigger, status, started_at, finished_at, planned, done, skipped)
                 SELECT account_id, id, '{request}', 'manual', '{status}', now() - interval '{days} days' - interval '1 hour',
                        now() - interval '{days} days', {items},
                        CASE WHEN '{status}' = 'done' THEN {items} ELSE 0 END,
                        CASE WHEN '{status}' = 'done' THEN 0 ELSE {items} END
                 FROM tasks WHERE id = {task} RETURNING id),
             i AS (INSERT INTO run_items (run_id, record_id, status, finished_at)
                   SELECT r.id, n, CASE WHEN '{status}' = 'done' THEN 'done' ELSE 'skipped' END, now() - interval '{days} days'
                   FROM r, generate_series(1, {items}) n RETURNING 1)
             SELECT r.id::text || ':' || (SELECT count(*) FROM i) FROM r"
        ));
        let (id, n) = id[0].split_once(':').unwrap();
        assert_eq!(n, items.to_string());
        id.to_string()
    };
    let old = run("old-done", "done", 40, 25_000);
    let cancelled = run("old-cancelled", "cancelled", 35, 7);
    let recent = run("recent-done", "done", 2, 50);
    stack.query(&format!(
        "WITH c AS (INSERT INTO run_claims (run_id, item_ids, claimed_at)
                    VALUES ({cancelled}, ARRAY[1]::bigint[], now() - interval '35 days') RETURNING 1),
              m AS (INSERT INTO missed_fires (task_id, scheduled_for, recorded_at) VALUES
                        ({task}, now() - interval '40 days', now() - interval '40 days'),
                        ({task}, now() - interval '2 days', now() - interval '2 days') RETURNING 1)
         SELECT ((SELECT count(*) FROM c) + (SELECT count(*) FROM m))::text"
    ));
    [old, cancelled, recent]
}

fn count(stack: &Stack, sql: &str) -> i64 {
    stack.query(&format!("SELECT ({sql})::text"))[0]
        .parse()
        .unwrap()
}

fn run_json(stack: &Stack, id: &str) -> Value {
    let out = stack.tarefas(&["run", "show", id, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn prune_while_a_run_executes_removes_only_old_finished_history() {
    // 400 contacts at 50 ms a call, 4 calls at a time: the run lasts about 5 s.
    let mut stack = Stack::new(
        &["--contacts", "400", "--chats", "0", "--latency-ms", "50"],
        1_000,
    );
    let task = task(&stack);
    let [old, cancelled, recent] = seed_history(&stack, &task);
    stack.spawn(&[
        "worker",
        "--concurrency",
        "4",
        "--prefetch",
        "1",
        "--prune-every",
        "off",
    ]);
    let out = stack.tarefas(&["task", "run", &task, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let request: Value = serde_json::from_str(&out.stdout).unwrap();
    let request = request["request_id"].as_str().unwrap().to_string();
    // Wait until the run is executing, part done.
    let started = Instant::now();
    let live = loop {
        let rows = stack.query(&format!(
            "SELECT id::text || ':' || status || ':' || done FROM runs WHERE request_id = '{request}'"
        ));
        if let Some(row) = rows.first() {
            let parts: Vec<&str> = row.split(':').collect();
            if parts[1] == "running" && parts[2].parse::<i64>().unwrap() >= 20 {
                break parts[0].to_string();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run did not start: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let out = stack.tarefas(&["prune", "--older-than", "30d", "--batch", "1000", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["runs"], 2, "{report}");
    assert_eq!(report["items"], 25_007, "{report}");
    assert_eq!(report["claims"], 1, "{report}");
    assert_eq!(report["missed_fires"], 1, "{report}");
    assert!(report["seconds"].as_f64().is_some(), "{report}");
    // It ran while the run was executing.
    let during = run_json(&stack, &live);
    assert_eq!(
        during["status"], "running",
        "the run ended before the prune did: {during}"
    );

    // The old runs, their items and claims, the old missed fire: gone.
    for id in [&old, &cancelled] {
        assert_eq!(
            count(
                &stack,
                &format!("SELECT count(*) FROM runs WHERE id = {id}")
            ),
            0
        );
        assert_eq!(
            count(
                &stack,
                &format!("SELECT count(*) FROM run_items WHERE run_id = {id}")
            ),
            0
        );
    }
    assert_eq!(
        count(
            &stack,
            &format!("SELECT count(*) FROM run_claims WHERE run_id = {cancelled}")
        ),
        0
    );
    assert_eq!(count(&stack, "SELECT count(*) FROM missed_fires"), 1);
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM missed_fires WHERE recorded_at > now() - interval '3 days'"
        ),
        1
    );
    // The recent run is whole.
    let kept = run_json(&stack, &recent);
    assert_eq!(kept["status"], "done", "{kept}");
    assert_eq!(
        count(
            &stack,
            &format!("SELECT count(*) FROM run_items WHERE run_id = {recent}")
        ),
        50
    );

    // The live run finishes done, every record called once.
    let started = Instant::now();
    let run = loop {
        let run = run_json(&stack, &live);
        if run["status"] != "running" && run["status"] != "planning" {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the run did not finish: {run}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(
        count(
            &stack,
            &format!("SELECT count(*) FROM run_items WHERE run_id = {live}")
        ),
        400
    );
    let calls = stack.exec_flows();
    assert_eq!(calls.len(), 400, "every record called");
    assert!(
        calls.values().all(|&n| n == 1),
        "a record called twice: {calls:?}"
    );

    // Bad input: a clear message, exit 2.
    let bad = stack.tarefas(&["prune", "--older-than", "30"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("30d"), "{bad:?}");
}

#[test]
fn workers_prune_the_history_periodically() {
    let mut stack = Stack::new(&["--contacts", "10", "--chats", "0"], 100);
    let task = task(&stack);
    let [old, cancelled, recent] = seed_history(&stack, &task);
    // Two workers, each pruning every second; one at a time holds the lock.
    for _ in 0..2 {
        stack.spawn(&["worker", "--retention", "30d", "--prune-every", "1s"]);
    }
    let started = Instant::now();
    while count(
        &stack,
        &format!("SELECT count(*) FROM runs WHERE id IN ({old}, {cancelled})"),
    ) > 0
        || count(&stack, "SELECT count(*) FROM missed_fires") > 1
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the workers did not prune"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        count(
            &stack,
            &format!("SELECT count(*) FROM run_items WHERE run_id IN ({old}, {cancelled})")
        ),
        0
    );
    assert_eq!(
        count(
            &stack,
            &format!("SELECT count(*) FROM run_items WHERE run_id = {recent}")
        ),
        50
    );
    assert_eq!(count(&stack, "SELECT count(*) FROM run_items"), 50);
}
