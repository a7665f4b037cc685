//! A run executes what was planned (issue 16): a task edited with `tarefas task update` or
//! deleted with `tarefas task delete` while its run executes changes nothing for that run;
//! the next "Executar Tarefa" uses the new definition; `--cancel-runs` cancels. Real
//! `tarefas worker` processes, RabbitMQ, Redis, Postgres and `tarefas fake-huggy`; the calls
//! are counted in the fake's log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{temp_file, Stack};

const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";
/// The account's rate, calls per second: a run of [`CONTACTS`] lasts about ten seconds,
/// well past the five seconds a worker caches what it reads (so that a worker reading the
/// task's current definition would be caught).
const RATE: u32 = 10;
/// Contacts in the segment (ids 1001..=1100).
const CONTACTS: usize = 100;

fn contacts_flow(flow: u32) -> String {
    format!(
        "name: Ciclo\naccount: demo\ntime_zone: UTC\nrecurrence: {{kind: manual}}\ntable: contacts\n\
         filter: {{field: id, op: lte, value: {}}}\n\
         action:\n  flow: {{project: 1, flow: {flow}, channel: {CHANNEL}}}\n  \
         policy: {{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}}\n",
        1000 + CONTACTS
    )
}

const CHATS_CLOSE: &str =
    "name: Ciclo\naccount: demo\ntime_zone: UTC\nrecurrence: {kind: manual}\n\
    table: chats\naction:\n  chat: close\n";

fn json(out: &crate::support::Output) -> Value {
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn create(stack: &Stack, yaml: &str) -> String {
    let file = temp_file(yaml, ".yaml");
    let out = stack.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

/// `tarefas task update ID -f FILE --json`: the task as it now is.
fn update(stack: &Stack, task: &str, yaml: &str) -> Value {
    let file = temp_file(yaml, ".yaml");
    json(&stack.tarefas(&[
        "task",
        "update",
        task,
        "-f",
        file.to_str().unwrap(),
        "--json",
    ]))
}

/// "Executar Tarefa", then the run's id once a worker created it.
fn start_run(stack: &Stack, task: &str) -> String {
    let request = json(&stack.tarefas(&["task", "run", task, "--json"]))["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    loop {
        let ids = stack.query(&format!(
            "SELECT id::text FROM runs WHERE request_id = '{request}'"
        ));
        if let Some(id) = ids.first() {
            return id.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no run");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_json(stack: &Stack, run: &str) -> Value {
    json(&stack.tarefas(&["run", "show", run, "--json"]))
}

fn wait_ended(stack: &Stack, run: &str) -> Value {
    let started = Instant::now();
    loop {
        let r = run_json(stack, run);
        if r["ended"] == true {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "run {run} did not end: {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The fake's calls that changed something (no GET), from position `from` of its log.
fn actions(stack: &Stack, from: usize) -> Vec<Value> {
    stack
        .calls()
        .into_iter()
        .skip(from)
        .filter(|c| c["method"] != "GET")
        .collect()
}

/// Successful execFlow calls among `calls`: by contact, the Flow ids it got.
fn flows_by_contact(calls: &[Value]) -> BTreeMap<i64, Vec<i64>> {
    let mut by = BTreeMap::<i64, Vec<i64>>::new();
    for c in calls {
        if c["route"].as_str().is_some_and(|r| r.contains("execFlow"))
            && c["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        {
            by.entry(c["contact_id"].as_i64().unwrap())
                .or_default()
                .push(c["body"]["flowId"].as_i64().unwrap());
        }
    }
    by
}

fn chat_actions(calls: &[Value]) -> Vec<&Value> {
    calls.iter().filter(|c| c["chat_id"].is_i64()).collect()
}

/// Waits until the fake saw at least `n` successful Flow calls since position `from` of its
/// log (the run's counters move per batch, its calls one by one), and checks the run is
/// still going. Returns how many it saw.
fn wait_mid_run(stack: &Stack, run: &str, from: usize, n: usize) -> usize {
    let started = Instant::now();
    loop {
        let called: usize = flows_by_contact(&actions(stack, from))
            .values()
            .map(Vec::len)
            .sum();
        let r = run_json(stack, run);
        assert_ne!(r["ended"], true, "the run ended before the edit: {r}");
        if called >= n {
            return called;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that the run's calls went on for more than the workers' cache time after `edit`.
fn assert_calls_long_after(calls: &[Value], edit: chrono::DateTime<chrono::Utc>) {
    let last = calls
        .iter()
        .filter_map(|c| {
            c["at"]
                .as_str()?
                .parse::<chrono::DateTime<chrono::Utc>>()
                .ok()
        })
        .max()
        .unwrap();
    assert!(
        last - edit > chrono::Duration::seconds(6),
        "the run's last call came {} ms after the edit: too soon to prove anything",
        (last - edit).num_milliseconds()
    );
}

/// Every contact of the segment got exactly `flow`, once.
fn assert_each_contact_got(calls: &[Value], flow: i64, what: &str) {
    let by = flows_by_contact(calls);
    let want: Vec<i64> = (1001..=1000 + CONTACTS as i64).collect();
    assert_eq!(
        by.keys().copied().collect::<Vec<_>>(),
        want,
        "{what}: every record"
    );
    for (contact, flows) in &by {
        assert_eq!(flows, &vec![flow], "{what}: contact {contact}");
    }
}

#[test]
fn editing_a_task_mid_run_changes_nothing_for_that_run_and_applies_to_the_next() {
    let mut stack = Stack::new(&["--contacts", "300", "--chats", "20"], RATE);
    let task = create(&stack, &contacts_flow(42));
    stack.spawn(&["worker", "--channel-rate", "100000"]);
    stack.spawn(&["worker", "--channel-rate", "100000"]);

    // Case 1: run 1 (Flow 42) while the task becomes Flow 77.
    let run1 = start_run(&stack, &task);
    wait_mid_run(&stack, &run1, 0, 10);
    let v2 = update(&stack, &task, &contacts_flow(77));
    let edited = chrono::Utc::now();
    assert_eq!(v2["version"], 2, "{v2}");
    let at_edit = flows_by_contact(&actions(&stack, 0)).len() as i64;
    let r1 = wait_ended(&stack, &run1);
    assert_eq!(r1["status"], "done", "{r1}");
    assert!(
        r1["counts"]["done"].as_i64().unwrap() - at_edit >= 50,
        "most of the run came after the edit: {at_edit} before, {r1}"
    );
    let log1 = actions(&stack, 0);
    assert_calls_long_after(&log1, edited);
    assert_each_contact_got(&log1, 42, "run 1");
    assert!(chat_actions(&log1).is_empty());
    let seen = stack.calls().len();

    // Case 2: run 2 executes Flow 77 (the edit), while the task moves to the chats table
    // with a chat action.
    let run2 = start_run(&stack, &task);
    wait_mid_run(&stack, &run2, seen, 10);
    let v3 = update(&stack, &task, CHATS_CLOSE);
    let edited = chrono::Utc::now();
    assert_eq!(
        (v3["version"].clone(), v3["table_name"].clone()),
        (3.into(), "chats".into())
    );
    let r2 = wait_ended(&stack, &run2);
    assert_eq!(r2["status"], "done", "{r2}");
    let log2 = actions(&stack, seen);
    assert_calls_long_after(&log2, edited);
    assert_each_contact_got(&log2, 77, "run 2");
    assert!(
        chat_actions(&log2).is_empty(),
        "no chat action in a run planned as a Flow: {:?}",
        chat_actions(&log2)
    );
    let seen = stack.calls().len();

    // Run 3: the chat action on the chats table, and no Flow.
    let run3 = start_run(&stack, &task);
    let r3 = wait_ended(&stack, &run3);
    let log3 = actions(&stack, seen);
    assert!(flows_by_contact(&log3).is_empty(), "{log3:?}");
    let closed = chat_actions(&log3);
    assert_eq!(
        closed.len() as i64,
        r3["counts"]["planned"].as_i64().unwrap(),
        "{r3}"
    );
    assert!(!closed.is_empty());
    assert!(
        closed
            .iter()
            .all(|c| c["route"].as_str().unwrap().contains("close")),
        "{closed:?}"
    );

    // Each run shows the version it executed, in JSON and in text.
    for (run, version) in [(&run1, 1), (&run2, 2), (&run3, 3)] {
        assert_eq!(run_json(&stack, run)["task_version"], version, "run {run}");
        let text = stack.tarefas(&["run", "show", run]);
        assert!(
            text.stdout.contains(&format!("version:   {version} ")),
            "run {run}: {text:?}"
        );
    }
    let shown = json(&stack.tarefas(&["task", "show", &task, "--json"]));
    assert_eq!(shown["version"], 3);
    let listed = json(&stack.tarefas(&["task", "list", "--json"]));
    assert_eq!(listed[0]["version"], 3);
}

#[test]
fn task_update_rejects_a_bad_file_like_task_create() {
    let stack = Stack::new(&["--contacts", "10", "--chats", "2"], RATE);
    let task = create(&stack, &contacts_flow(42));
    let bad = temp_file(
        "name: Ciclo\naccount: demo\nrecurrence: {kind: daily, at: \"25:00\"}\ntable: chats\n\
         filter: {field: name, op: gt, value: 3}\naction:\n  flow: {project: 1, flow: 9, channel: x}\n",
        ".yaml",
    );
    let out = stack.tarefas(&["task", "update", &task, "-f", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    let created = stack.tarefas(&["task", "create", "-f", bad.to_str().unwrap()]);
    assert_eq!(created.code, 2, "{created:?}");
    assert_eq!(
        out.stdout, created.stdout,
        "the same problems, the same format"
    );
    assert!(out.lines().len() >= 3, "one line per problem: {out:?}");
    let other = temp_file(
        &contacts_flow(42).replace("account: demo", "account: outra"),
        ".yaml",
    );
    let out = stack.tarefas(&["task", "update", &task, "-f", other.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.starts_with("account: "), "{out:?}");
    let missing = stack.tarefas(&["task", "update", "999", "-f", bad.to_str().unwrap()]);
    assert_eq!(missing.code, 2, "the file is looked at first: {missing:?}");
    let good = temp_file(&contacts_flow(43), ".yaml");
    let missing = stack.tarefas(&["task", "update", "999", "-f", good.to_str().unwrap()]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("task 999 not found"), "{missing:?}");
    // Nothing changed; a good file bumps the version and says so.
    assert_eq!(
        json(&stack.tarefas(&["task", "show", &task, "--json"]))["version"],
        1
    );
    let out = stack.tarefas(&["task", "update", &task, "-f", good.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("version 2"), "{out:?}");
}

#[test]
fn a_task_deleted_mid_run_lets_its_run_finish_and_cancel_runs_cancels() {
    let mut stack = Stack::new(&["--contacts", "300", "--chats", "10"], RATE);
    stack.spawn(&["worker", "--channel-rate", "100000"]);

    // Deleted while its run executes: the run finishes on its snapshot.
    let task = create(&stack, &contacts_flow(42));
    let run = start_run(&stack, &task);
    wait_mid_run(&stack, &run, 0, 10);
    let out = stack.tarefas(&["task", "delete", &task]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(stack.tarefas(&["task", "show", &task]).code, 1, "deleted");
    let r = wait_ended(&stack, &run);
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["counts"]["done"], CONTACTS as i64, "{r}");
    assert_each_contact_got(&actions(&stack, 0), 42, "the deleted task's run");
    let seen = stack.calls().len();

    // Deleted with --cancel-runs: its run is cancelled, its pending items skipped.
    let task = create(&stack, &contacts_flow(43));
    let run = start_run(&stack, &task);
    wait_mid_run(&stack, &run, seen, 10);
    let out = json(&stack.tarefas(&["task", "delete", &task, "--cancel-runs", "--json"]));
    assert_eq!(
        out["cancelled_runs"],
        serde_json::json!([run.parse::<i64>().unwrap()]),
        "{out}"
    );
    let r = wait_ended(&stack, &run);
    assert_eq!(r["status"], "cancelled", "{r}");
    // Items that were waiting for a token settle as they get one: skipped, no call.
    let started = Instant::now();
    let r = loop {
        let r = run_json(&stack, &run);
        if r["counts"]["pending"] == 0 {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{r}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let c = &r["counts"];
    assert_eq!(c["pending"], 0, "{r}");
    assert!(c["skipped"].as_i64().unwrap() > 0, "{r}");
    let called = flows_by_contact(&actions(&stack, seen));
    assert_eq!(called.len() as i64, c["done"].as_i64().unwrap(), "{r}");
    assert!(called.values().all(|f| f == &vec![43]));
    assert!(called.len() < CONTACTS, "{r}");
    // Nothing left to cancel: it says so.
    let out = stack.tarefas(&["task", "delete", &task, "--cancel-runs"]);
    assert_eq!(out.code, 1, "already deleted: {out:?}");
}
