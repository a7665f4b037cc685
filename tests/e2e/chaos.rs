//! Faults end to end (issue 6): the real `tarefas worker`, `tarefas scheduler` and
//! `tarefas fake-huggy` processes while workers are killed, services restarted, Huggy
//! misbehaves and schedulers crash or race. Each scenario asserts on what the fake Huggy
//! received (`/__fake/calls`) and on the run's counts in Postgres: every item terminal,
//! no Flow sent twice, nothing lost.
//!
//! Services that a scenario restarts are private instances (`crate::private`); the shared
//! ones are never touched. Every scenario prints one `CHAOS …` line with its measurements
//! (`make chaos` shows them; docs/reliability.md is filled from them).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::private::{PrivatePostgres, PrivateRabbit, PrivateRedis};
use crate::support::{runtime, temp_file, Stack, TestDb};

const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";

/// Worker flags for these tests: a short stuck-item delay (so a killed worker's items are
/// settled within seconds) and a channel rate that does not get in the way.
const WORKER: &[&str] = &["worker", "--channel-rate", "100000", "--stuck-after", "3s"];

fn flow_task_file(recurrence: &str, flow: u32, filter: &str) -> tempfile::TempPath {
    temp_file(
        &format!(
            "name: Chaos\naccount: demo\ntime_zone: UTC\nrecurrence: {recurrence}\ntable: contacts\n\
             filter: {filter}\n\
             action:\n  flow: {{project: 1, flow: {flow}, channel: {CHANNEL}}}\n  \
             policy: {{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}}\n"
        ),
        ".yaml",
    )
}

/// Creates a task over every contact; returns its id.
fn create_task(stack: &Stack, recurrence: &str, flow: u32, filter: &str) -> String {
    let file = flow_task_file(recurrence, flow, filter);
    let out = stack.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

/// "Executar Tarefa" on `task`, then waits for the worker to create the run; its id.
fn start_run(stack: &Stack, task: &str) -> i64 {
    let out = stack.tarefas(&["task", "run", task]);
    assert_eq!(out.code, 0, "{out:?}");
    let started = Instant::now();
    loop {
        let ids = stack.query(&format!(
            "SELECT id::text FROM runs WHERE task_id = {task} ORDER BY id DESC LIMIT 1"
        ));
        if let Some(id) = ids.first() {
            return id.parse().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no run was created for task {task}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A run's row.
#[derive(Debug, Clone, Default)]
struct RunRow {
    status: String,
    planned: u64,
    done: u64,
    skipped: u64,
    failed: u64,
    unknown: u64,
    reason: String,
}

impl RunRow {
    fn terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "done" | "done_with_errors" | "cancelled" | "failed"
        )
    }
}

fn run_row(stack: &Stack, run: i64) -> RunRow {
    let rows = stack.query(&format!(
        "SELECT concat_ws(',', status, planned, done, skipped, failed, unknown, \
         coalesce(status_reason, '')) FROM runs WHERE id = {run}"
    ));
    let row = rows.first().expect("the run exists");
    let f: Vec<&str> = row.splitn(7, ',').collect();
    RunRow {
        status: f[0].into(),
        planned: f[1].parse().unwrap(),
        done: f[2].parse().unwrap(),
        skipped: f[3].parse().unwrap(),
        failed: f[4].parse().unwrap(),
        unknown: f[5].parse().unwrap(),
        reason: f[6].into(),
    }
}

/// Waits until `done + unknown + skipped + failed` reaches `n` (or the run ends).
fn wait_settled_count(stack: &Stack, run: i64, n: u64, within: Duration) -> RunRow {
    let started = Instant::now();
    loop {
        let r = run_row(stack, run);
        if r.done + r.unknown + r.skipped + r.failed >= n || r.terminal() {
            return r;
        }
        assert!(
            started.elapsed() < within,
            "run {run} stuck after {within:?}: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the run is terminal.
fn wait_terminal(stack: &Stack, run: i64, within: Duration) -> RunRow {
    let started = Instant::now();
    loop {
        let r = run_row(stack, run);
        if r.terminal() {
            return r;
        }
        assert!(
            started.elapsed() < within,
            "run {run} did not finish within {within:?}: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The fake's execFlow calls: contact id, status, when.
fn exec_flow_calls(stack: &Stack) -> Vec<(i64, u16, chrono::DateTime<chrono::Utc>, i64)> {
    stack
        .calls()
        .into_iter()
        .filter(|c| c["route"].as_str().is_some_and(|r| r.contains("execFlow")))
        .map(|c| {
            (
                c["contact_id"].as_i64().unwrap(),
                c["status"].as_u64().unwrap() as u16,
                c["at"].as_str().unwrap().parse().unwrap(),
                c["body"]["flowId"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// What a scenario measured.
#[derive(Debug, Default)]
struct Measure {
    items: usize,
    done: usize,
    unknown: usize,
    /// Successful execFlow calls the fake answered.
    calls: usize,
    /// Every execFlow call the fake saw (including 429, 5xx, 401 answers).
    attempts: usize,
    /// Records called successfully more than once (extra calls).
    duplicates: usize,
    /// Items that are not terminal, done without a call, or records of the segment that
    /// never became items, or calls the run does not account for.
    lost: usize,
    /// Longest gap between two successful calls, in seconds (the stall a fault caused).
    longest_gap_s: f64,
    /// From the first to the last successful call, in seconds.
    span_s: f64,
}

/// Checks the run against the fake's log: every item terminal; each done item called
/// exactly once; an unknown item (its worker died mid-call) called at most once; no call
/// for any other record. Returns the measurements (asserting zero duplicates and zero lost).
fn verify(stack: &Stack, run: i64, segment: usize) -> Measure {
    let items: Vec<(i64, String)> = stack
        .query(&format!(
            "SELECT record_id || ',' || status FROM run_items WHERE run_id = {run}"
        ))
        .iter()
        .map(|s| {
            let (id, status) = s.split_once(',').unwrap();
            (id.parse().unwrap(), status.to_string())
        })
        .collect();
    // Why items are not plainly done (shown when a scenario fails).
    for line in stack.query(&format!(
        "SELECT status || ' x' || count(*) || ': ' || coalesce(reason, '') FROM run_items \
         WHERE run_id = {run} AND status <> 'done' GROUP BY status, reason"
    )) {
        eprintln!("run {run}: {line}");
    }
    let calls = exec_flow_calls(stack);
    let mut ok: BTreeMap<i64, usize> = BTreeMap::new();
    let mut times = Vec::new();
    for (contact, status, at, _) in &calls {
        if (200..300).contains(status) {
            *ok.entry(*contact).or_default() += 1;
            times.push(*at);
        }
    }
    times.sort();
    let mut m = Measure {
        items: items.len(),
        attempts: calls.len(),
        calls: ok.values().sum(),
        duplicates: ok.values().map(|n| n.saturating_sub(1)).sum(),
        ..Measure::default()
    };
    m.lost += segment.saturating_sub(items.len());
    let mut accounted = 0;
    for (record, status) in &items {
        let n = ok.get(record).copied().unwrap_or(0);
        match status.as_str() {
            "done" => {
                m.done += 1;
                accounted += n.min(1);
                if n == 0 {
                    m.lost += 1;
                }
            }
            "unknown" => {
                m.unknown += 1;
                accounted += n.min(1);
            }
            _ => m.lost += 1,
        }
    }
    // Calls for records the run does not count as done or unknown.
    m.lost += ok.len() - accounted;
    m.longest_gap_s = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .max()
        .unwrap_or(0) as f64
        / 1000.0;
    if let (Some(a), Some(b)) = (times.first(), times.last()) {
        m.span_s = (*b - *a).num_milliseconds() as f64 / 1000.0;
    }
    m
}

/// Prints the scenario's measurements (one `CHAOS` line) and appends it to
/// `target/chaos-measurements.txt`, then asserts zero duplicates and zero lost.
fn report(scenario: &str, m: &Measure, extra: &str) {
    let line = format!(
        "CHAOS {scenario}: items={} done={} unknown={} calls_ok={} attempts={} duplicates={} \
         lost={} longest_gap_s={:.1} span_s={:.1} {extra}",
        m.items,
        m.done,
        m.unknown,
        m.calls,
        m.attempts,
        m.duplicates,
        m.lost,
        m.longest_gap_s,
        m.span_s
    );
    println!("{line}");
    eprintln!("{line}");
    let path = crate::support::repo().join("target/chaos-measurements.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{} {line}", chrono::Utc::now().to_rfc3339());
    }
    assert_eq!(m.duplicates, 0, "{scenario}: a record got its Flow twice");
    assert_eq!(m.lost, 0, "{scenario}: items lost");
}

/// `PUT /__fake/faults`.
fn set_faults(stack: &Stack, faults: Value) {
    let url = format!("{}/__fake/faults", stack.fake.url);
    runtime().block_on(async move {
        let r = reqwest::Client::new()
            .put(url)
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    });
}

// ---------------------------------------------------------------------------------------
// 1. Workers killed with SIGKILL during a large run.

/// Items of the kill -9 scenario: 20,000 by default (about 25 s of run on the 2-core CI
/// machine with debug binaries); `TAREFAS_CHAOS_KILL_ITEMS=50000` for the full size
/// (about 60 s). See docs/reliability.md.
fn kill_items() -> usize {
    std::env::var("TAREFAS_CHAOS_KILL_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn chaos_kill_9_workers_during_a_large_run() {
    let kill_items = kill_items();
    let n = kill_items.to_string();
    let started = Instant::now();
    let mut stack = Stack::new(&["--contacts", &n, "--chats", "10"], 100_000);
    let setup = started.elapsed();
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    let mut workers: Vec<usize> = (0..3).map(|_| stack.spawn(WORKER)).collect();
    let run_started = Instant::now();
    let run = start_run(&stack, &task);
    // Kill a worker (SIGKILL, mid-call) at 5 points of the run, the first while planning
    // may still be going on, and start a replacement each time.
    let mut kills = 0;
    for (k, share) in [0.02, 0.2, 0.4, 0.6, 0.8].iter().enumerate() {
        let at = (kill_items as f64 * share) as u64;
        let r = wait_settled_count(&stack, run, at.max(1), Duration::from_secs(120));
        if r.terminal() {
            break;
        }
        let victim = workers.remove(k % workers.len());
        stack.kill(victim);
        kills += 1;
        workers.push(stack.spawn(WORKER));
    }
    let r = wait_terminal(&stack, run, Duration::from_secs(180));
    let elapsed = run_started.elapsed();
    // `unknown` items (a worker killed between the idempotency key's `inflight` and `done`)
    // are terminal and never resent; the run then ends `done_with_errors`.
    let want = if r.unknown > 0 {
        "done_with_errors"
    } else {
        "done"
    };
    assert_eq!(r.status, want, "{r:?}");
    assert_eq!(r.failed + r.skipped, 0, "{r:?}");
    assert_eq!(r.planned as usize, kill_items);
    let m = verify(&stack, run, kill_items);
    assert_eq!(m.items, kill_items);
    assert_eq!(m.done as u64, r.done);
    assert_eq!(m.unknown as u64, r.unknown);
    assert_eq!(r.done + r.unknown, kill_items as u64, "{r:?}");
    // At most the calls in flight at the kills: 5 kills × 64 (a worker's concurrency).
    assert!(
        m.unknown <= kills * 64,
        "{} unknown for {kills} kills",
        m.unknown
    );
    report(
        "kill-9",
        &m,
        &format!(
            "kills={kills} run_s={:.1} setup_s={:.1}",
            elapsed.as_secs_f64(),
            setup.as_secs_f64()
        ),
    );
}

// ---------------------------------------------------------------------------------------
// 2. Services restarted mid-run (private instances).

/// Items and rate of the service scenarios: a run of about 8 s, long enough to stop a
/// service in the middle of it.
const SERVICE_ITEMS: usize = 4_000;
const SERVICE_RATE: u32 = 500;

fn service_stack(db: TestDb, env: Vec<(&'static str, String)>) -> Stack {
    Stack::new_with(
        &["--contacts", &SERVICE_ITEMS.to_string(), "--chats", "10"],
        SERVICE_RATE,
        db,
        env,
    )
}

#[test]
fn chaos_rabbitmq_restarted_mid_run() {
    let mut rabbit = PrivateRabbit::start();
    let mut stack = service_stack(TestDb::new(), vec![("TAREFAS_AMQP_URL", rabbit.url())]);
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    stack.spawn(WORKER);
    stack.spawn(WORKER);
    let run = start_run(&stack, &task);
    wait_settled_count(&stack, run, 1_000, Duration::from_secs(60));
    let down = Instant::now();
    rabbit.stop();
    let stopped_for = down.elapsed();
    rabbit.start_again();
    let outage = down.elapsed();
    let r = wait_terminal(&stack, run, Duration::from_secs(120));
    let back = down.elapsed();
    assert_eq!(r.status, "done", "{r:?}");
    let m = verify(&stack, run, SERVICE_ITEMS);
    assert_eq!(m.done, SERVICE_ITEMS);
    report(
        "rabbitmq-restart",
        &m,
        &format!(
            "stop_s={:.1} outage_s={:.1} fault_to_done_s={:.1}",
            stopped_for.as_secs_f64(),
            outage.as_secs_f64(),
            back.as_secs_f64()
        ),
    );
}

#[test]
fn chaos_redis_stopped_for_ten_seconds() {
    let mut redis = PrivateRedis::start();
    let mut stack = service_stack(TestDb::new(), vec![("TAREFAS_REDIS_URL", redis.url())]);
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    stack.spawn(WORKER);
    stack.spawn(WORKER);
    let run = start_run(&stack, &task);
    wait_settled_count(&stack, run, 1_000, Duration::from_secs(60));
    let stop_at = chrono::Utc::now();
    let down = Instant::now();
    redis.stop();
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    let restart_at = chrono::Utc::now();
    redis.start_again();
    let r = wait_terminal(&stack, run, Duration::from_secs(150));
    let back = down.elapsed();
    // A token step whose answer was lost as Redis went down leaves the key set by an
    // attempt that never called; that attempt says so in Postgres, and the next attempt
    // takes the key over: nothing ends `unknown`.
    let unsent_unknown: usize = stack.query(&format!(
        "SELECT count(*)::text FROM run_items WHERE run_id = {run} AND status = 'unknown'"
    ))[0]
        .parse()
        .unwrap();
    assert_eq!(r.status, "done", "{r:?}");
    assert_eq!(unsent_unknown, 0, "{r:?}");
    // No call went out while Redis was down (a call already past its idempotency key when
    // Redis stopped may land in the first moments).
    let during: Vec<_> = exec_flow_calls(&stack)
        .into_iter()
        .filter(|(_, _, at, _)| {
            *at > stop_at + chrono::Duration::milliseconds(500) && *at < restart_at
        })
        .collect();
    assert!(
        during.is_empty(),
        "{} calls while Redis was down, e.g. {:?}",
        during.len(),
        during.first()
    );
    let first_after = exec_flow_calls(&stack)
        .into_iter()
        .filter(|(_, _, at, _)| *at >= restart_at)
        .map(|(_, _, at, _)| at)
        .min()
        .expect("calls after Redis came back");
    let m = verify(&stack, run, SERVICE_ITEMS);
    assert_eq!(m.done, SERVICE_ITEMS);
    assert_eq!(m.calls, SERVICE_ITEMS, "each record called exactly once");
    report(
        "redis-stopped-10s",
        &m,
        &format!(
            "unknown={unsent_unknown} calls_while_down=0 first_call_after_restart_s={:.1} fault_to_done_s={:.1}",
            (first_after - restart_at).num_milliseconds() as f64 / 1000.0,
            back.as_secs_f64()
        ),
    );
}

#[test]
fn chaos_postgres_restarted_mid_run() {
    let mut pg = PrivatePostgres::start();
    let mut stack = service_stack(TestDb::new_on(&pg.admin_url()), Vec::new());
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    stack.spawn(WORKER);
    stack.spawn(WORKER);
    let run = start_run(&stack, &task);
    wait_settled_count(&stack, run, 1_000, Duration::from_secs(60));
    let down = Instant::now();
    pg.crash();
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again();
    let outage = down.elapsed();
    let r = wait_terminal(&stack, run, Duration::from_secs(120));
    let back = down.elapsed();
    assert_eq!(r.status, "done", "{r:?}");
    let m = verify(&stack, run, SERVICE_ITEMS);
    assert_eq!(m.done, SERVICE_ITEMS);
    report(
        "postgres-crash-restart",
        &m,
        &format!(
            "outage_s={:.1} fault_to_done_s={:.1}",
            outage.as_secs_f64(),
            back.as_secs_f64()
        ),
    );
}

// ---------------------------------------------------------------------------------------
// 3. Huggy misbehaving.

const HUGGY_ITEMS: usize = 1_500;

/// A run of `HUGGY_ITEMS` at `rate`/s with `fault` on from the moment `after` items are
/// settled, for `storm`; returns the run id and the stack (fault already cleared).
fn storm(fault: Value, rate: u32, after: u64, storm: Duration) -> (Stack, i64, Duration) {
    let mut stack = Stack::new(
        &["--contacts", &HUGGY_ITEMS.to_string(), "--chats", "10"],
        rate,
    );
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    stack.spawn(WORKER);
    stack.spawn(WORKER);
    let run = start_run(&stack, &task);
    wait_settled_count(&stack, run, after, Duration::from_secs(60));
    let t = Instant::now();
    set_faults(&stack, fault);
    std::thread::sleep(storm);
    set_faults(&stack, json!({}));
    let r = wait_terminal(&stack, run, Duration::from_secs(120));
    verify(&stack, run, HUGGY_ITEMS);
    assert_eq!(r.status, "done", "{r:?}");
    (stack, run, t.elapsed())
}

fn count_status(stack: &Stack, status: u16) -> usize {
    exec_flow_calls(stack)
        .iter()
        .filter(|c| c.1 == status)
        .count()
}

#[test]
fn chaos_huggy_429_storm() {
    // Every call answered 429 (Retry-After: 1) for 4 s, at an account rate of 1,000/s.
    let (stack, run, recovered) = storm(
        json!({"rate_429": 1.0, "retry_after_secs": 1}),
        1_000,
        300,
        Duration::from_secs(4),
    );
    let m = verify(&stack, run, HUGGY_ITEMS);
    assert_eq!(m.done, HUGGY_ITEMS);
    let n429 = count_status(&stack, 429);
    assert!(n429 > 0, "the storm was seen");
    // Back-off: a 429 pauses the account for every worker for Retry-After, so the storm
    // costs far fewer calls than the 4,000 the rate limit would allow in 4 s.
    assert!(n429 < 1_000, "{n429} calls answered 429 in a 4 s storm");
    report(
        "huggy-429-storm-4s",
        &m,
        &format!(
            "answered_429={n429} fault_to_done_s={:.1}",
            recovered.as_secs_f64()
        ),
    );
}

#[test]
fn chaos_huggy_5xx_storm() {
    let (stack, run, recovered) =
        storm(json!({"rate_5xx": 1.0}), 1_000, 300, Duration::from_secs(4));
    let m = verify(&stack, run, HUGGY_ITEMS);
    assert_eq!(m.done, HUGGY_ITEMS);
    let n503 = count_status(&stack, 503);
    assert!(n503 > 0, "the storm was seen");
    report(
        "huggy-5xx-storm-4s",
        &m,
        &format!(
            "answered_503={n503} fault_to_done_s={:.1}",
            recovered.as_secs_f64()
        ),
    );
}

#[test]
fn chaos_huggy_slowed_to_seconds_per_call() {
    // Every answer takes 3 s for 8 s of the run: calls are slow, not failed; nothing is
    // timed out into `unknown`, nothing repeated.
    let (stack, run, recovered) = storm(
        json!({"latency_ms": 3_000}),
        1_000,
        300,
        Duration::from_secs(8),
    );
    let m = verify(&stack, run, HUGGY_ITEMS);
    assert_eq!(m.done, HUGGY_ITEMS, "no call timed out into unknown");
    report(
        "huggy-slow-3s-per-call",
        &m,
        &format!("fault_to_done_s={:.1}", recovered.as_secs_f64()),
    );
}

#[test]
fn chaos_huggy_answers_401_and_the_run_pauses() {
    let mut stack = Stack::new(
        &["--contacts", &HUGGY_ITEMS.to_string(), "--chats", "10"],
        500,
    );
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    stack.spawn(WORKER);
    stack.spawn(WORKER);
    let run = start_run(&stack, &task);
    wait_settled_count(&stack, run, 300, Duration::from_secs(60));
    set_faults(&stack, json!({"forced_status": 401}));
    let t = Instant::now();
    let paused = loop {
        let r = run_row(&stack, run);
        if r.status == "paused" {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the run did not pause: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let time_to_pause = t.elapsed();
    assert!(
        paused.reason.contains("token") && paused.reason.contains("401"),
        "the reason says why: {paused:?}"
    );
    let shown: Value = serde_json::from_str(
        &stack
            .tarefas(&["run", "show", &run.to_string(), "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(shown["status"], "paused");
    assert!(shown["status_reason"]
        .as_str()
        .is_some_and(|s| s.contains("token")));
    // Paused means no more calls (after those already in flight).
    std::thread::sleep(Duration::from_secs(1));
    let a = exec_flow_calls(&stack).len();
    std::thread::sleep(Duration::from_secs(2));
    let b = exec_flow_calls(&stack).len();
    assert_eq!(a, b, "calls continued on a paused run");
    let n401 = count_status(&stack, 401);
    // The token is fixed: resume; the run completes, nothing repeated.
    set_faults(&stack, json!({}));
    let out = stack.tarefas(&["run", "resume", &run.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    let r = wait_terminal(&stack, run, Duration::from_secs(60));
    assert_eq!(r.status, "done", "{r:?}");
    let m = verify(&stack, run, HUGGY_ITEMS);
    assert_eq!(m.done, HUGGY_ITEMS);
    report(
        "huggy-401-pause-resume",
        &m,
        &format!(
            "answered_401={n401} time_to_pause_s={:.1} paused_reason={:?}",
            time_to_pause.as_secs_f64(),
            paused.reason
        ),
    );
}

// ---------------------------------------------------------------------------------------
// 4. Schedulers: killed between the outbox write and the publish; racing.

/// Makes the tasks due now: their next fire at the start of the current minute. Not a
/// second ago: an hourly task is anchored at the minute it was created, and a fire put
/// before that anchor (created at 11:47:00.2, made due at 11:46:59) is followed by the
/// anchor's own fire, a second run per task (a flake of the racing scenario when it ran in
/// the first second of a minute).
fn make_due(stack: &Stack, ids: &[String]) {
    stack.query(&format!(
        "UPDATE tasks SET next_fire_at = date_trunc('minute', now()) \
         WHERE id IN ({}) RETURNING id::text",
        ids.join(",")
    ));
}

#[test]
fn chaos_scheduler_killed_between_outbox_write_and_publish() {
    let mut stack = Stack::new(&["--contacts", "200", "--chats", "10"], 5_000);
    let task = create_task(
        &stack,
        "{kind: every_hours, n: 1}",
        42,
        "{field: id, op: lte, value: 1050}",
    );
    make_due(&stack, std::slice::from_ref(&task));
    // A scheduler with no worker anywhere: it writes the fire into the outbox (in the
    // transaction that moves the task on) and nothing publishes it. Kill it there.
    let scheduler = stack.spawn(&["scheduler", "--tick", "100ms"]);
    let t = Instant::now();
    while stack.query("SELECT id::text FROM outbox").is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nothing reached the outbox"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stack.kill(scheduler);
    assert_eq!(stack.query("SELECT id::text FROM outbox").len(), 1);
    assert!(stack.query("SELECT id::text FROM runs").is_empty());
    assert!(exec_flow_calls(&stack).is_empty());
    // A relay that dies after the publish but before the delete publishes the row twice:
    // simulate it with a copy of the row. The run is made once.
    stack.query(
        "INSERT INTO outbox (routing_key, payload) SELECT routing_key, payload FROM outbox \
         RETURNING id::text",
    );
    // A worker (the relay runs in it) publishes what the dead scheduler left.
    let recovering = Instant::now();
    stack.spawn(WORKER);
    let run = loop {
        if let Some(id) = stack.query("SELECT id::text FROM runs").first() {
            break id.parse::<i64>().unwrap();
        }
        assert!(recovering.elapsed() < Duration::from_secs(30), "no run");
        std::thread::sleep(Duration::from_millis(50));
    };
    let r = wait_terminal(&stack, run, Duration::from_secs(60));
    let recovered = recovering.elapsed();
    assert_eq!(r.status, "done", "{r:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stack.query("SELECT id::text FROM runs").len(), 1, "one run");
    assert!(stack.query("SELECT id::text FROM outbox").is_empty());
    let m = verify(&stack, run, 50);
    assert_eq!(m.done, 50);
    report(
        "scheduler-killed-before-publish",
        &m,
        &format!(
            "outbox_rows=2 runs=1 worker_start_to_done_s={:.1}",
            recovered.as_secs_f64()
        ),
    );
}

#[test]
fn chaos_two_schedulers_racing() {
    let mut stack = Stack::new(&["--contacts", "200", "--chats", "10"], 5_000);
    // Twenty tasks, each with its own Flow id, all due at once.
    let tasks: Vec<String> = (0..20)
        .map(|i| {
            create_task(
                &stack,
                "{kind: every_hours, n: 1}",
                100 + i,
                "{field: id, op: lte, value: 1010}",
            )
        })
        .collect();
    stack.spawn(WORKER);
    // Two long-running schedulers ticking fast, plus two `--once` in between.
    stack.spawn(&["scheduler", "--tick", "20ms"]);
    stack.spawn(&["scheduler", "--tick", "20ms"]);
    std::thread::sleep(Duration::from_millis(300));
    make_due(&stack, &tasks);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| stack.tarefas(&["scheduler", "--once"]));
        let b = s.spawn(|| stack.tarefas(&["scheduler", "--once"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
    let t = Instant::now();
    loop {
        let finished: usize = stack.query("SELECT count(*)::text FROM runs WHERE status = 'done'")
            [0]
        .parse()
        .unwrap();
        if finished >= 20 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{finished} runs done"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let runs = stack.query("SELECT task_id::text FROM runs ORDER BY task_id");
    assert_eq!(runs.len(), 20, "exactly one run per due fire: {runs:?}");
    // Each (Flow, contact) exactly once: 20 tasks × 10 contacts.
    let mut per: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for (contact, status, _, flow) in exec_flow_calls(&stack) {
        if (200..300).contains(&status) {
            *per.entry((flow, contact)).or_default() += 1;
        }
    }
    let duplicates: usize = per.values().map(|n| n - 1).sum();
    assert_eq!(per.len(), 200);
    let m = Measure {
        items: 200,
        done: 200,
        calls: per.values().sum(),
        attempts: per.values().sum(),
        duplicates,
        ..Measure::default()
    };
    report(
        "two-schedulers-racing",
        &m,
        "schedulers=2+2(--once) due_tasks=20 runs=20",
    );
}

// ---------------------------------------------------------------------------------------
// 5. Outages longer than the retry ladder (issue 16: no run stays running forever).

/// The shortened ladder of the long-outage scenarios, and the worker flags that go with it:
/// every item a worker holds (4 batches of 100) in flight at once and waiting at most 1 s
/// for a token, so that an attempt with Redis down ends in about 1 s rather than the
/// default's 3 minutes (400 items, 64 at a time, 30 s each); and the reconciler looks every
/// 2 s for runs quiet for 20 s. A batch message's whole life is then about 4 attempts × 1 s
/// + 7 s of delays ≈ 11 s, as long as every batch left fits in the workers' prefetch (8).
const SHORT_LADDER: &[&str] = &[
    "--retry-delays",
    "1s,2s,4s",
    "--concurrency",
    "512",
    "--acquire-deadline",
    "1s",
    "--reconcile-every",
    "2s",
    "--reconcile-after",
    "20s",
];

/// An outage clearly longer than a message's whole retry ladder under [`SHORT_LADDER`].
const LONG_OUTAGE: Duration = Duration::from_secs(40);

fn long_outage_worker() -> Vec<&'static str> {
    WORKER.iter().chain(SHORT_LADDER).copied().collect()
}

/// A stack whose workers use [`SHORT_LADDER`]: when dropped, after the stack (its workers
/// stopped, its queues deleted), the delay queues of that ladder are deleted too (the stack
/// knows the default ladder's only).
struct ShortLadderStack(Option<Stack>);

impl std::ops::Deref for ShortLadderStack {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        self.0.as_ref().expect("stack")
    }
}

impl std::ops::DerefMut for ShortLadderStack {
    fn deref_mut(&mut self) -> &mut Stack {
        self.0.as_mut().expect("stack")
    }
}

impl Drop for ShortLadderStack {
    fn drop(&mut self) {
        let Some(stack) = self.0.take() else { return };
        let prefix = stack.prefix().to_string();
        drop(stack);
        let delays = [1, 2, 4].map(Duration::from_secs);
        if let Ok(names) =
            tarefas_broker::Names::new(prefix).and_then(|n| n.with_retry_delays(delays))
        {
            let _ = runtime().block_on(tarefas_broker::delete_topology(
                &tarefas_broker::BrokerConfig::url_from_env(),
                &names,
                Duration::from_secs(10),
            ));
        }
    }
}

/// What the long-outage scenarios check after the run ended: the DLQ is empty (a transient
/// failure past the ladder no longer dead-letters anything), and the reconciler is what
/// brought the run back (it republished the run at least once).
fn after_long_outage(stack: &Stack, run: i64) -> (String, i64) {
    let out = stack.tarefas(&["dlq", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let letters: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(letters, json!([]), "the DLQ keeps poison messages only");
    let attempts: i64 = stack.query(&format!(
        "SELECT reconcile_attempts::text FROM runs WHERE id = {run}"
    ))[0]
        .parse()
        .unwrap();
    assert!(
        attempts >= 1,
        "the run finished without the reconciler: the outage did not outlive the ladder"
    );
    (out.stdout, attempts)
}

/// Redis stopped mid-run for 40 s, longer than every batch message's retry ladder: the
/// messages run out of retries (and are acked, their items `pending` in Postgres), the run
/// goes quiet, and the reconciler republishes its pending items; once Redis is back the run
/// ends `done`, each record called once, the DLQ empty.
///
/// This is the path of any Redis outage that outlives the messages' ladder, shortened so
/// that CI can afford it: a 1 s, 2 s, 4 s ladder with attempts of about 2 s (a life of
/// about 15 s), a 40 s outage and a 20 s `--reconcile-after`. The same code decides at each
/// step (a retry past the last delay acks the batch; the reconciler takes the quiet run
/// with no live claim; a republished batch claims only `pending` items); only the
/// durations differ. With the default settings an attempt with Redis down lasts about
/// 3 minutes (each of the 400 items a worker holds waits 30 s for a token, 64 at a time),
/// so the default ladder (1 s, 5 s, 30 s, 2 min) lasts about 18 minutes: the issue's
/// 6-minute outage is absorbed by the ladder itself (the next attempt after Redis returns
/// succeeds), and an outage longer than about 18 minutes takes the path tested here, the
/// run republished once it has been quiet for `--reconcile-after` (10 min).
#[test]
fn chaos_redis_stopped_longer_than_the_retry_ladder() {
    let mut redis = PrivateRedis::start();
    let mut stack = ShortLadderStack(Some(service_stack(
        TestDb::new(),
        vec![("TAREFAS_REDIS_URL", redis.url())],
    )));
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    let worker = long_outage_worker();
    stack.spawn(&worker);
    stack.spawn(&worker);
    let run = start_run(&stack, &task);
    // Stopped with at most 7 batches left, all held by the two workers: every message is
    // attempted at once and runs out of retries within the outage (with more left, the
    // rest would wait their turn in the queue, alive, and outlast it).
    wait_settled_count(&stack, run, 3_300, Duration::from_secs(60));
    let down = Instant::now();
    redis.stop();
    std::thread::sleep(LONG_OUTAGE.saturating_sub(down.elapsed()));
    let restart_at = chrono::Utc::now();
    let mid = run_row(&stack, run);
    assert!(
        !mid.terminal(),
        "the run ended while Redis was down: {mid:?}"
    );
    redis.start_again();
    let r = wait_terminal(&stack, run, Duration::from_secs(180));
    let back = down.elapsed();
    // A token step whose answer was lost as Redis stopped left its key set by an attempt
    // that never called; that attempt recorded so in Postgres, and the next one took the
    // key over: nothing is `unknown`, every record called exactly once.
    let unknown: usize = stack.query(&format!(
        "SELECT count(*)::text FROM run_items WHERE run_id = {run} AND status = 'unknown'"
    ))[0]
        .parse()
        .unwrap();
    let taken_over: usize = stack.query(&format!(
        "SELECT count(*)::text FROM run_items WHERE run_id = {run} AND never_called_by IS NOT NULL"
    ))[0]
        .parse()
        .unwrap();
    assert_eq!(r.status, "done", "{r:?}");
    assert_eq!(unknown, 0, "{r:?}");
    let m = verify(&stack, run, SERVICE_ITEMS);
    assert_eq!(m.done, SERVICE_ITEMS);
    assert_eq!(m.calls, SERVICE_ITEMS, "each record called exactly once");
    let (_, attempts) = after_long_outage(&stack, run);
    let first_after = exec_flow_calls(&stack)
        .into_iter()
        .filter(|(_, _, at, _)| *at >= restart_at)
        .map(|(_, _, at, _)| at)
        .min()
        .expect("calls after Redis came back");
    report(
        "redis-stopped-40s-past-the-ladder",
        &m,
        &format!(
            "outage_s={:.1} reconciled={attempts} handed_back_uncalled={taken_over} \
             first_call_after_restart_s={:.1} fault_to_done_s={:.1} dlq=0",
            LONG_OUTAGE.as_secs_f64(),
            (first_after - restart_at).num_milliseconds() as f64 / 1000.0,
            back.as_secs_f64()
        ),
    );
}

/// Huggy answering 503 to every call for 40 s, longer than every batch message's retry
/// ladder: each item is tried 3 times per attempt and handed back, the messages run out of
/// retries and are acked, and the reconciler republishes the quiet run's pending items;
/// after the storm the run ends `done`, each record called exactly once (successfully), the
/// DLQ empty. The 6-minute storm with the default settings takes this same path:
/// an attempt fails within a few seconds (3 calls per item, 100 and 200 ms apart), so the
/// default ladder (1 s, 5 s, 30 s, 2 min) is over after about 3 minutes; the batches are
/// acked, and the run, quiet since the storm began, is republished after
/// `--reconcile-after` (10 min), here 20 s after a 1 s, 2 s, 4 s ladder and a 40 s storm.
#[test]
fn chaos_huggy_5xx_longer_than_the_retry_ladder() {
    let mut stack = ShortLadderStack(Some(Stack::new(
        &["--contacts", &HUGGY_ITEMS.to_string(), "--chats", "10"],
        1_000,
    )));
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    let worker = long_outage_worker();
    stack.spawn(&worker);
    stack.spawn(&worker);
    let run = start_run(&stack, &task);
    wait_settled_count(&stack, run, 300, Duration::from_secs(60));
    let t = Instant::now();
    set_faults(&stack, json!({"rate_5xx": 1.0}));
    std::thread::sleep(LONG_OUTAGE);
    let mid = run_row(&stack, run);
    assert!(!mid.terminal(), "the run ended during the storm: {mid:?}");
    set_faults(&stack, json!({}));
    let r = wait_terminal(&stack, run, Duration::from_secs(180));
    let recovered = t.elapsed();
    assert_eq!(r.status, "done", "{r:?}");
    let m = verify(&stack, run, HUGGY_ITEMS);
    assert_eq!(m.done, HUGGY_ITEMS);
    let n503 = count_status(&stack, 503);
    assert!(n503 > 0, "the storm was seen");
    let (_, attempts) = after_long_outage(&stack, run);
    report(
        "huggy-5xx-40s-past-the-ladder",
        &m,
        &format!(
            "answered_503={n503} reconciled={attempts} fault_to_done_s={:.1} dlq=0",
            recovered.as_secs_f64()
        ),
    );
}

// ---------------------------------------------------------------------------------------
// 6. The outages at their size: 6 minutes, the default retry ladder.

/// The outage: 6 minutes.
const SIX_MINUTES: Duration = Duration::from_secs(6 * 60);

/// Redis stopped for 6 minutes mid-run, the workers on their defaults (the retry ladder of
/// 1 s, 5 s, 30 s, 2 min, 30 s token waits, 64 calls in flight): the run ends `done` once
/// Redis is back, every record called exactly once, none `unknown`, no call while Redis
/// was down, the DLQ empty. With these settings an attempt with Redis down lasts minutes
/// (each item waits 30 s for a token, 64 at a time), so the ladder outlives the outage and
/// the batches' own retries finish the run; a lost answer of the token step is taken over
/// (design §3).
#[test]
fn chaos_redis_stopped_for_six_minutes() {
    let mut redis = PrivateRedis::start();
    let mut stack = service_stack(TestDb::new(), vec![("TAREFAS_REDIS_URL", redis.url())]);
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    stack.spawn(WORKER);
    stack.spawn(WORKER);
    let run = start_run(&stack, &task);
    wait_settled_count(&stack, run, 1_000, Duration::from_secs(60));
    let stop_at = chrono::Utc::now();
    let down = Instant::now();
    redis.stop();
    std::thread::sleep(SIX_MINUTES.saturating_sub(down.elapsed()));
    let mid = run_row(&stack, run);
    assert!(
        !mid.terminal(),
        "the run ended while Redis was down: {mid:?}"
    );
    let restart_at = chrono::Utc::now();
    redis.start_again();
    let r = wait_terminal(&stack, run, Duration::from_secs(8 * 60));
    let back = down.elapsed();
    assert_eq!(r.status, "done", "{r:?}");
    let m = verify(&stack, run, SERVICE_ITEMS);
    assert_eq!(m.done, SERVICE_ITEMS);
    assert_eq!(m.calls, SERVICE_ITEMS, "each record called exactly once");
    let during = exec_flow_calls(&stack)
        .into_iter()
        .filter(|(_, _, at, _)| {
            *at > stop_at + chrono::Duration::milliseconds(500) && *at < restart_at
        })
        .count();
    assert_eq!(during, 0, "calls while Redis was down");
    let out = stack.tarefas(&["dlq", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!([])
    );
    let first_after = exec_flow_calls(&stack)
        .into_iter()
        .filter(|(_, _, at, _)| *at >= restart_at)
        .map(|(_, _, at, _)| at)
        .min()
        .expect("calls after Redis came back");
    report(
        "redis-stopped-6min-default-ladder",
        &m,
        &format!(
            "outage_s={:.1} calls_while_down=0 first_call_after_restart_s={:.1} \
             fault_to_done_s={:.1} dlq=0",
            SIX_MINUTES.as_secs_f64(),
            (first_after - restart_at).num_milliseconds() as f64 / 1000.0,
            back.as_secs_f64()
        ),
    );
}

/// Huggy answering 503 to every call for 6 minutes, the workers on the default retry ladder
/// (1 s, 5 s, 30 s, 2 min): an attempt fails within seconds (3 calls per item), so the
/// ladder is over after about 3 minutes and the batches are acked, their items `pending`;
/// the reconciler (here `--reconcile-after 3m`, the least above the ladder's 2 min 36 s
/// the worker accepts in round minutes, instead of the default 10 min) republishes the quiet
/// run, with its backoff, until Huggy answers again. The run ends `done`, every record
/// called successfully exactly once (the fake's call log), the DLQ empty.
#[test]
fn chaos_huggy_5xx_for_six_minutes() {
    let mut stack = Stack::new(
        &["--contacts", &HUGGY_ITEMS.to_string(), "--chats", "10"],
        1_000,
    );
    let task = create_task(
        &stack,
        "{kind: manual}",
        42,
        "{field: id, op: gt, value: 0}",
    );
    let worker: Vec<&str> = WORKER
        .iter()
        .copied()
        .chain(["--reconcile-every", "5s", "--reconcile-after", "3m"])
        .collect();
    stack.spawn(&worker);
    stack.spawn(&worker);
    let run = start_run(&stack, &task);
    wait_settled_count(&stack, run, 300, Duration::from_secs(60));
    let t = Instant::now();
    set_faults(&stack, json!({"rate_5xx": 1.0}));
    std::thread::sleep(SIX_MINUTES);
    let mid = run_row(&stack, run);
    assert!(!mid.terminal(), "the run ended during the storm: {mid:?}");
    set_faults(&stack, json!({}));
    let r = wait_terminal(&stack, run, Duration::from_secs(10 * 60));
    let recovered = t.elapsed();
    assert_eq!(r.status, "done", "{r:?}");
    let m = verify(&stack, run, HUGGY_ITEMS);
    assert_eq!(m.done, HUGGY_ITEMS);
    assert_eq!(
        m.calls, HUGGY_ITEMS,
        "each record called successfully exactly once"
    );
    let n503 = count_status(&stack, 503);
    assert!(n503 > 0, "the storm was seen");
    let out = stack.tarefas(&["dlq", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!([])
    );
    let attempts: i64 = stack.query(&format!(
        "SELECT reconcile_attempts::text FROM runs WHERE id = {run}"
    ))[0]
        .parse()
        .unwrap();
    report(
        "huggy-5xx-6min-default-ladder",
        &m,
        &format!(
            "answered_503={n503} reconciled={attempts} fault_to_done_s={:.1} dlq=0",
            recovered.as_secs_f64()
        ),
    );
}
