//! Fires through the real binaries (issue 16): never a burst after a scheduler outage, each
//! `overlap` policy with a run still going, and an edit made after a due time. The
//! scheduler is the real `tarefas scheduler --once` (what a CronJob runs), a worker plans and
//! executes, and the fake Huggy's call log says what reached Huggy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{runtime, temp_file, Stack};

const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";
const WORKER: &[&str] = &["worker", "--channel-rate", "100000"];

/// Creates a Flow task over the contacts with id up to `last_id`; returns its id.
fn create_task(stack: &Stack, recurrence: &str, overlap: &str, flow: u32, last_id: u32) -> String {
    let file = temp_file(
        &format!(
            "name: Fires\naccount: demo\ntime_zone: UTC\nrecurrence: {recurrence}\noverlap: {overlap}\n\
             table: contacts\nfilter: {{field: id, op: lte, value: {last_id}}}\n\
             action:\n  flow: {{project: 1, flow: {flow}, channel: {CHANNEL}}}\n  \
             policy: {{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}}\n"
        ),
        ".yaml",
    );
    let out = stack.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

/// An every-minute recurrence whose grid began ten minutes ago (so that every earlier
/// minute is one of its fires).
fn every_minute() -> String {
    let start = chrono::Utc::now() - chrono::Duration::minutes(10);
    format!(
        "{{kind: every_minutes, n: 1, starts_at: '{}'}}",
        start.format("%Y-%m-%dT%H:%M")
    )
}

/// `tarefas scheduler --once`; its summary line(s).
fn scheduler_once(stack: &Stack) -> String {
    let out = stack.tarefas(&["scheduler", "--once"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout
}

/// The task's runs, oldest first: `(id, status, scheduled_for, started_at, finished_at)`.
fn runs(stack: &Stack, task: &str) -> Vec<Vec<String>> {
    stack
        .query(&format!(
            "SELECT concat_ws('|', id, status, COALESCE(scheduled_for::text, '-'), \
             (extract(epoch FROM started_at) * 1000)::bigint, \
             COALESCE((extract(epoch FROM finished_at) * 1000)::bigint::text, '-')) \
             FROM runs WHERE task_id = {task} ORDER BY id"
        ))
        .iter()
        .map(|r| r.split('|').map(str::to_string).collect())
        .collect()
}

/// Waits until the task has `n` runs and the last one has status `status` (or any final
/// status when `status` is `"ended"`).
fn wait_run(stack: &Stack, task: &str, n: usize, status: &str, within: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let list = runs(stack, task);
        if let Some(r) = list.get(n - 1) {
            let ended =
                ["done", "done_with_errors", "cancelled", "failed"].contains(&r[1].as_str());
            if r[1] == status || (status == "ended" && ended) {
                return r.clone();
            }
        }
        assert!(
            started.elapsed() < within,
            "task {task}: no run #{n} {status} within {within:?}: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The fake's successful execFlow calls per contact, for `flow`.
fn calls_per_contact(stack: &Stack, flow: i64) -> BTreeMap<i64, usize> {
    let mut per = BTreeMap::new();
    for c in stack.calls() {
        if c["route"].as_str().is_some_and(|r| r.contains("execFlow"))
            && c["body"]["flowId"].as_i64() == Some(flow)
            && (200..300).contains(&c["status"].as_u64().unwrap_or(0))
        {
            *per.entry(c["contact_id"].as_i64().unwrap()).or_default() += 1;
        }
    }
    per
}

/// `run list --task ID --json`, split into runs and missed fires.
fn history(stack: &Stack, task: &str) -> (Vec<Value>, Vec<Value>) {
    let out = stack.tarefas(&["run", "list", "--task", task, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let list: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let (runs, missed): (Vec<Value>, Vec<Value>) =
        list.into_iter().partition(|e| e["kind"] == "run");
    assert!(missed.iter().all(|m| m["kind"] == "missed"), "{missed:?}");
    (runs, missed)
}

/// Makes the task due at the latest 10-second boundary (a cron task with seconds fires on
/// them).
fn due_now_10s(stack: &Stack, task: &str) {
    stack.query(&format!(
        "UPDATE tasks SET next_fire_at = to_timestamp(floor(extract(epoch FROM now()) / 10) * 10) \
         WHERE id = {task} RETURNING id::text"
    ));
}

/// Sleeps until the task's next fire is due (at most 11 s: a 10-second cron).
fn until_due(stack: &Stack, task: &str) {
    let started = Instant::now();
    while stack
        .query(&format!(
            "SELECT id::text FROM tasks WHERE id = {task} AND next_fire_at <= now()"
        ))
        .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(15), "never due");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn fires_a_scheduler_down_four_minutes_makes_one_run_and_lists_the_missed_fires() {
    let mut stack = Stack::new(&["--contacts", "100", "--chats", "10"], 1_000);
    let task = create_task(&stack, &every_minute(), "skip", 61, 1010);
    // The scheduler stopped four minutes ago: the task's next fire is where it left it.
    stack.query(&format!(
        "UPDATE tasks SET next_fire_at = date_trunc('minute', now()) - interval '4 minutes' \
         WHERE id = {task} RETURNING id::text"
    ));
    let summary = scheduler_once(&stack);
    assert!(
        summary.starts_with("1 tasks due, 1 fires emitted,"),
        "{summary}"
    );
    // A scheduler restarted within the same minute has nothing more to do.
    let again = scheduler_once(&stack);
    assert!(again.starts_with("0 tasks due, 0 fires emitted"), "{again}");
    stack.spawn(WORKER);
    let run = wait_run(&stack, &task, 1, "done", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&stack, &task).len(), 1, "exactly one run");
    let per = calls_per_contact(&stack, 61);
    assert_eq!(per.len(), 10, "{per:?}");
    assert!(per.values().all(|n| *n == 1), "each contact once: {per:?}");

    let (listed, missed) = history(&stack, &task);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"].to_string(), run[0]);
    let fire = listed[0]["scheduled_for"].as_str().unwrap().to_string();
    let fire_at: chrono::DateTime<chrono::Utc> = fire.parse().unwrap();
    // The four fires of the outage (five when the minute turned meanwhile), newest first,
    // each coalesced into the one that ran.
    assert!((4..=5).contains(&missed.len()), "{missed:?}");
    let reason = format!(
        "coalesced into {}",
        fire_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    for (i, m) in missed.iter().enumerate() {
        assert_eq!(m["task_id"].to_string(), task);
        assert_eq!(m["reason"], reason.as_str(), "{m}");
        let at: chrono::DateTime<chrono::Utc> =
            m["scheduled_for"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            at,
            fire_at - chrono::Duration::minutes(i as i64 + 1),
            "{missed:?}"
        );
    }
    // The run comes first in the list: it is the newest.
    let out = stack.tarefas(&["run", "list", "--task", &task, "--json"]);
    let all: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(all[0]["kind"], "run");
    // The table for people: the runs as before, then the fires not run with their reason.
    let out = stack.tarefas(&["run", "list", "--task", &task]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("RUN  TASK"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Fires not run (newest first):"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.matches(&reason).count(),
        missed.len(),
        "{}",
        out.stdout
    );
}

/// A task whose run goes on for ~15 s (16 contacts at 1 call/s), with a 10-second cron:
/// its first fire emitted by `scheduler --once` and its run under way. Returns the stack, the
/// task and the first run's id.
fn with_a_run_going(overlap: &str, flow: u32) -> (Stack, String, String) {
    let mut stack = Stack::new(&["--contacts", "100", "--chats", "10"], 1);
    let task = create_task(
        &stack,
        "{kind: cron, expr: '*/10 * * * * *'}",
        overlap,
        flow,
        1016,
    );
    due_now_10s(&stack, &task);
    let summary = scheduler_once(&stack);
    assert!(
        summary.starts_with("1 tasks due, 1 fires emitted"),
        "{summary}"
    );
    stack.spawn(WORKER);
    let first = wait_run(&stack, &task, 1, "running", Duration::from_secs(30));
    (stack, task, first[0].clone())
}

#[test]
fn fires_overlap_skip_records_the_fire_and_makes_no_second_run() {
    let (stack, task, first) = with_a_run_going("skip", 71);
    until_due(&stack, &task);
    let summary = scheduler_once(&stack);
    assert!(summary.contains("0 fires emitted, 1 missed"), "{summary}");
    assert_eq!(
        runs(&stack, &task)[0][1],
        "running",
        "still going: the skip was honest"
    );
    wait_run(&stack, &task, 1, "done", Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&stack, &task).len(), 1, "no second run");
    let per = calls_per_contact(&stack, 71);
    assert_eq!(per.len(), 16);
    assert!(per.values().all(|n| *n == 1), "{per:?}");
    let (_, missed) = history(&stack, &task);
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(
        missed[0]["reason"],
        format!("overlap: run {first} still running").as_str()
    );
}

#[test]
fn fires_overlap_queue_one_makes_exactly_one_more_run_after_the_first_ends() {
    let (stack, task, _first) = with_a_run_going("queue_one", 72);
    until_due(&stack, &task);
    let summary = scheduler_once(&stack);
    assert!(
        summary.contains("0 fires emitted, 0 missed, 1 queued, 0 queued released"),
        "{summary}"
    );
    // Nothing runs while the first run goes on.
    let summary = scheduler_once(&stack);
    assert!(summary.contains(", 0 queued released"), "{summary}");
    let first = wait_run(&stack, &task, 1, "done", Duration::from_secs(90));
    assert_eq!(runs(&stack, &task).len(), 1);
    // The fire queued last (a later one replaces an earlier one).
    let queued = stack.query(&format!(
        "SELECT queued_fire_at::text FROM tasks WHERE id = {task} AND queued_fire_at IS NOT NULL"
    ));
    assert_eq!(queued.len(), 1);
    // The next tick after it ended releases the queued fire: one more run.
    let summary = scheduler_once(&stack);
    assert!(summary.contains(", 1 queued released"), "{summary}");
    let second = wait_run(&stack, &task, 2, "done", Duration::from_secs(90));
    assert_eq!(&second[2], &queued[0], "the run of the queued fire");
    let (first_end, second_start): (i64, i64) =
        (first[4].parse().unwrap(), second[3].parse().unwrap());
    assert!(
        second_start >= first_end,
        "one after the other: {first:?} {second:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&stack, &task).len(), 2, "exactly one more run");
    let per = calls_per_contact(&stack, 72);
    assert_eq!(per.len(), 16);
    assert!(per.values().all(|n| *n == 2), "once per run: {per:?}");
}

#[test]
fn fires_overlap_allow_makes_two_concurrent_runs() {
    let (stack, task, _first) = with_a_run_going("allow", 73);
    until_due(&stack, &task);
    let summary = scheduler_once(&stack);
    assert!(summary.contains("1 fires emitted, 0 missed"), "{summary}");
    // The second run starts while the first is still going.
    wait_run(&stack, &task, 2, "running", Duration::from_secs(30));
    assert_eq!(runs(&stack, &task)[0][1], "running", "alongside");
    let first = wait_run(&stack, &task, 1, "done", Duration::from_secs(120));
    let second = wait_run(&stack, &task, 2, "done", Duration::from_secs(120));
    let (first_end, second_start): (i64, i64) =
        (first[4].parse().unwrap(), second[3].parse().unwrap());
    assert!(second_start < first_end, "concurrent: {first:?} {second:?}");
    let per = calls_per_contact(&stack, 73);
    assert_eq!(per.len(), 16);
    assert!(per.values().all(|n| *n == 2), "once per run: {per:?}");
    let (_, missed) = history(&stack, &task);
    assert!(missed.is_empty(), "{missed:?}");
}

#[test]
fn fires_an_edit_after_the_due_time_keeps_the_fire_with_the_new_definition() {
    let mut stack = Stack::new(&["--contacts", "100", "--chats", "10"], 1_000);
    let task = create_task(&stack, &every_minute(), "skip", 81, 1010);
    // Due two minutes ago; the scheduler is down; the operator edits the task (another
    // Flow) over the admin API.
    stack.query(&format!(
        "UPDATE tasks SET next_fire_at = date_trunc('minute', now()) - interval '2 minutes' \
         WHERE id = {task} RETURNING id::text"
    ));
    let due = stack.query(&format!(
        "SELECT next_fire_at::text FROM tasks WHERE id = {task}"
    ));
    let out = stack.tarefas(&["token", "create", "--account", "demo", "--name", "e2e"]);
    assert_eq!(out.code, 0, "{out:?}");
    let token = out.stdout.trim().to_string();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    stack.spawn(&["admin", "--listen", &addr]);
    let definition = serde_json::json!({
        "name": "Fires edited", "account": "demo", "time_zone": "UTC",
        "recurrence": {"kind": "every_minutes", "n": 1,
                       "starts_at": (chrono::Utc::now() - chrono::Duration::minutes(10)).format("%Y-%m-%dT%H:%M").to_string()},
        "table": "contacts", "filter": {"field": "id", "op": "lte", "value": 1010},
        "action": {"flow": {"project": 1, "flow": 82, "channel": CHANNEL},
                   "policy": {"when_in_chat": "run_remove_agent", "when_in_queue": "abort_and_start", "when_in_auto": "run_keep_auto"}},
    });
    runtime().block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        let started = Instant::now();
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "admin did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let resp = http
            .put(format!("{base}/api/v1/tasks/{task}"))
            .bearer_auth(&token)
            .json(&definition)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    });
    assert_eq!(
        stack.query(&format!(
            "SELECT next_fire_at::text FROM tasks WHERE id = {task}"
        )),
        due,
        "the due fire survived the edit"
    );
    // The scheduler comes back: one run, of the new definition.
    let summary = scheduler_once(&stack);
    assert!(
        summary.starts_with("1 tasks due, 1 fires emitted"),
        "{summary}"
    );
    stack.spawn(WORKER);
    wait_run(&stack, &task, 1, "done", Duration::from_secs(60));
    assert!(calls_per_contact(&stack, 81).is_empty(), "not the old Flow");
    let per = calls_per_contact(&stack, 82);
    assert_eq!(per.len(), 10);
    assert!(per.values().all(|n| *n == 1), "{per:?}");
    // The earlier fires of the outage are listed, none dropped silently.
    let (_, missed) = history(&stack, &task);
    assert!((2..=3).contains(&missed.len()), "{missed:?}");
    assert!(missed
        .iter()
        .all(|m| m["reason"].as_str().unwrap().starts_with("coalesced into ")));
    // The admin API lists the same with `missed=true`, and only runs without it.
    let (with, without) = runtime().block_on(async {
        let http = reqwest::Client::new();
        let get = |q: String| {
            let http = http.clone();
            let token = token.clone();
            async move {
                let resp = http.get(q).bearer_auth(&token).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.json::<Vec<Value>>().await.unwrap()
            }
        };
        (
            get(format!("http://{addr}/api/v1/runs?task={task}&missed=true")).await,
            get(format!("http://{addr}/api/v1/runs?task={task}")).await,
        )
    });
    assert_eq!(without.len(), 1);
    assert_eq!(with.len(), 1 + missed.len());
    assert_eq!(with[0]["kind"], "run");
    assert_eq!(with[1..].to_vec(), missed);
}
