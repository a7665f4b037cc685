//! Poison messages, tenants and secrets through the real binaries: bad bodies on both queues
//! end in the dead-letter queue with their reason while the worker goes on (`tarefas dlq
//! list` / `replay`), an account's operator never reaches another account's tasks or runs,
//! and API and webhook tokens are never printed, logged (even at `RUST_LOG=trace`) nor stored.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tarefas_proto::v1::{ExecuteTask, ItemBatch, Trigger};
use tarefas_proto::{encode_execute_task, encode_item_batch, MAX_MESSAGE_BYTES, SCHEMA_VERSION};

use crate::support::{repo, runtime, temp_file, FakeProcess, Output, TestDb};

const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";
/// The API token of account `acme`: it must never show up anywhere.
const ACME_TOKEN: &str = "tok-ACME-7f3e9c2a-never-print-me";
/// The API token of account `rival`.
const RIVAL_TOKEN: &str = "tok-RIVAL-51d0b8e4-never-print-me";
/// `acme`'s webhook token.
const ACME_HOOK: &str = "hook-ACME-0c61aa9f-never-print-me";
/// A webhook token that is almost `ACME_HOOK`: refused, and not logged either.
const NEAR_HOOK: &str = "hook-ACME-0c61aa9f-never-print-mf";

/// Two accounts (`acme` with a fake Huggy of its own, `rival`) on a fresh database, a queue
/// prefix of their own, and processes whose whole output is kept for the secret checks.
struct Tenants {
    db: TestDb,
    fake: FakeProcess,
    prefix: String,
    logs: tempfile::TempDir,
    children: Vec<(PathBuf, Child)>,
    /// Everything every command printed (stdout and stderr), for the secret checks.
    printed: String,
}

impl Tenants {
    fn new(contacts: u32) -> Tenants {
        let fake = FakeProcess::start(&[
            "--contacts",
            &contacts.to_string(),
            "--chats",
            "0",
            "--token",
            ACME_TOKEN,
        ]);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let mut t = Tenants {
            db: TestDb::new(),
            fake,
            prefix: format!("e2e-sec-{}-{nanos}", std::process::id()),
            logs: tempfile::tempdir().unwrap(),
            children: Vec::new(),
            printed: String::new(),
        };
        let out = t.tarefas(&[
            "account",
            "add",
            "acme",
            "--token-env",
            "ACME_TOKEN",
            "--webhook-token-env",
            "ACME_HOOK",
            "--rate-limit",
            "500/s",
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let out = t.tarefas(&["account", "add", "rival", "--token-env", "RIVAL_TOKEN"]);
        assert_eq!(out.code, 0, "{out:?}");
        let out = t.tarefas(&["sync", "--once", "--account", "acme"]);
        assert_eq!(out.code, 0, "{out:?}");
        t
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ACME_TOKEN", ACME_TOKEN.into()),
            ("RIVAL_TOKEN", RIVAL_TOKEN.into()),
            ("ACME_HOOK", ACME_HOOK.into()),
            ("TAREFAS_HUGGY_API_URL", self.fake.url.clone()),
            ("TAREFAS_QUEUE_PREFIX", self.prefix.clone()),
            ("RUST_LOG", "trace".into()),
        ]
    }

    /// Runs `tarefas ARGS` at `RUST_LOG=trace`, keeping what it printed.
    fn tarefas(&mut self, args: &[&str]) -> Output {
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = self.db.tarefas_env(args, &pairs);
        self.printed.push_str(&out.stdout);
        self.printed.push_str(&out.stderr);
        out
    }

    /// Starts a long-running `tarefas ARGS` with its output in a log file.
    fn spawn(&mut self, args: &[&str]) {
        let log = self
            .logs
            .path()
            .join(format!("{}-{}.log", args[0], self.children.len()));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tarefas"));
        cmd.args(args)
            .current_dir(repo())
            .env("TAREFAS_DATABASE_URL", self.db.url())
            .env_remove("TAREFAS_ACCOUNT")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        self.children
            .push((log, cmd.spawn().expect("spawn tarefas")));
    }

    /// Stops the spawned processes (SIGTERM, then SIGKILL after 10 s) and returns their logs.
    fn stop_all(&mut self) -> String {
        let mut logs = String::new();
        for (log, child) in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut text = String::new();
            std::fs::File::open(log)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            logs.push_str(&text);
        }
        self.children.clear();
        logs
    }

    /// Creates a Flow task on contacts for `account`; returns its id.
    fn flow_task(&mut self, account: &str, name: &str) -> String {
        let file = temp_file(
            &format!(
                "name: {name}\naccount: {account}\ntable: contacts\n\
                 action:\n  flow: {{project: 1, flow: 42, channel: {CHANNEL}}}\n"
            ),
            ".yaml",
        );
        let out = self.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout.trim().to_string()
    }

    /// Puts raw message bodies in the outbox; the workers' relay publishes them as they are.
    fn enqueue_raw(&self, routing_key: &str, bodies: &[Vec<u8>]) {
        let (url, key, bodies) = (self.db.url(), routing_key.to_string(), bodies.to_vec());
        runtime().block_on(async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            tarefas_store::outbox::enqueue(&pool, &key, &bodies)
                .await
                .unwrap();
            pool.close().await;
        });
    }

    /// `tarefas dlq list --json`.
    fn dead_letters(&mut self) -> Vec<Value> {
        let out = self.tarefas(&["dlq", "list", "--json", "--limit", "1000"]);
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str::<Vec<Value>>(&out.stdout).unwrap()
    }

    /// Waits (at most 60 s) until the DLQ holds `n` messages, replayed `replays` times.
    fn wait_for_dead_letters(&mut self, n: usize, replays: u64) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let letters = self.dead_letters();
            if letters.len() == n
                && letters
                    .iter()
                    .all(|l| l["replays"].as_u64().unwrap_or(0) == replays)
            {
                return letters;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "waiting for {n} dead letters replayed {replays} times; have {letters:#?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Successful execFlow calls by contact id, from the fake's call log.
    fn exec_flows(&self) -> BTreeMap<i64, usize> {
        let url = format!("{}/__fake/calls", self.fake.url);
        let calls: Value = runtime()
            .block_on(async move { reqwest::get(url).await.unwrap().json().await.unwrap() });
        let calls = match calls {
            Value::Array(a) => a,
            other => other["calls"].as_array().cloned().unwrap_or_default(),
        };
        let mut by_contact = BTreeMap::new();
        for c in calls {
            if c["route"].as_str().is_some_and(|r| r.contains("execFlow"))
                && c["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))
            {
                *by_contact
                    .entry(c["contact_id"].as_i64().unwrap())
                    .or_insert(0) += 1;
            }
        }
        by_contact
    }

    /// Deletes this test's queues and exchanges from the shared RabbitMQ (best effort).
    fn delete_broker_objects(&self) {
        for (kind, list) in [
            ("delete_queue", "list_queues"),
            ("delete_exchange", "list_exchanges"),
        ] {
            let Ok(out) = Command::new("rabbitmqctl")
                .args(["-q", list, "name"])
                .output()
            else {
                return;
            };
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                let name = name.trim();
                if name.starts_with(&format!("{}.", self.prefix)) || name == self.prefix {
                    let _ = Command::new("rabbitmqctl")
                        .args(["-q", kind, name])
                        .output();
                }
            }
        }
    }
}

impl Drop for Tenants {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.delete_broker_objects();
    }
}

/// Asserts that none of the secrets appears in `text` (what `what` printed or logged).
#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in [ACME_TOKEN, RIVAL_TOKEN, ACME_HOOK, NEAR_HOOK] {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret:?}:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn execute_task(task_id: i64, account: &str) -> ExecuteTask {
    ExecuteTask {
        schema_version: SCHEMA_VERSION,
        task_id,
        account: account.into(),
        request_id: format!("poison-{task_id}-{account}-{}", uuid::Uuid::new_v4()),
        trigger: Trigger::Manual.into(),
        requested_by: "e2e".into(),
        requested_at_unix_ms: 1,
        ..Default::default()
    }
}

fn item_batch(run_id: i64, task_id: i64, account: &str) -> ItemBatch {
    ItemBatch {
        schema_version: SCHEMA_VERSION,
        run_id,
        task_id,
        account: account.into(),
        item_ids: vec![1, 2, 3],
        attempt: 0,
        ..Default::default()
    }
}

#[test]
fn poison_messages_on_both_queues_go_to_the_dlq_and_the_worker_keeps_going() {
    let mut t = Tenants::new(40);
    let acme_task: i64 = t.flow_task("acme", "Da Acme").parse().unwrap();
    let rival_task: i64 = t.flow_task("rival", "Da Rival").parse().unwrap();

    // Poison for the planner (`executions`): (expected reason code, reason contains, body).
    let good = encode_execute_task(&execute_task(acme_task, "acme"));
    let mut v2 = execute_task(acme_task, "acme");
    v2.schema_version = 2;
    let mut no_task = execute_task(acme_task, "acme");
    no_task.task_id = 0;
    let execute_poison: Vec<(&str, String, Vec<u8>)> = vec![
        ("empty", "empty message body".into(), vec![]),
        ("malformed", "malformed ExecuteTask".into(), vec![0xff; 24]),
        // Cut inside the request id string.
        (
            "malformed",
            "malformed ExecuteTask".into(),
            good[..20].to_vec(),
        ),
        (
            "unknown_schema_version",
            "unsupported ExecuteTask schema_version 2 (supported: 1)".into(),
            encode_execute_task(&v2),
        ),
        (
            "missing_field",
            "missing required field task_id".into(),
            encode_execute_task(&no_task),
        ),
        (
            "too_large",
            "message body too large".into(),
            vec![0x0a; MAX_MESSAGE_BYTES + 1],
        ),
        // Well-formed, but naming what the account does not have: permanent, dead-lettered.
        (
            "handler",
            "ghost".into(),
            encode_execute_task(&execute_task(acme_task, "ghost")),
        ),
        (
            "handler",
            format!("task {rival_task} of account acme not found"),
            encode_execute_task(&execute_task(rival_task, "acme")),
        ),
        (
            "handler",
            format!("task {acme_task} of account rival not found"),
            encode_execute_task(&execute_task(acme_task, "rival")),
        ),
        (
            "handler",
            "task 987654 of account acme not found".into(),
            encode_execute_task(&execute_task(987_654, "acme")),
        ),
    ];
    // Poison for the executor (`batches`).
    let mut b2 = item_batch(1, acme_task, "acme");
    b2.schema_version = 7;
    let mut negative = item_batch(1, acme_task, "acme");
    negative.item_ids = vec![5, -1];
    let batch_poison: Vec<(&str, String, Vec<u8>)> = vec![
        ("empty", "empty message body".into(), vec![]),
        ("malformed", "malformed ItemBatch".into(), vec![0x2a; 9]),
        (
            "unknown_schema_version",
            "unsupported ItemBatch schema_version 7 (supported: 1)".into(),
            encode_item_batch(&b2),
        ),
        (
            "invalid_field",
            "contains an id <= 0 (-1)".into(),
            encode_item_batch(&negative),
        ),
        (
            "too_large",
            "message body too large".into(),
            vec![0x0a; MAX_MESSAGE_BYTES + 1],
        ),
        (
            "handler",
            "ghost".into(),
            encode_item_batch(&item_batch(1, acme_task, "ghost")),
        ),
        (
            "handler",
            "not found".into(),
            encode_item_batch(&item_batch(424_242, acme_task, "acme")),
        ),
    ];
    t.enqueue_raw(
        "execute",
        &execute_poison
            .iter()
            .map(|p| p.2.clone())
            .collect::<Vec<_>>(),
    );
    t.enqueue_raw(
        "batch",
        &batch_poison.iter().map(|p| p.2.clone()).collect::<Vec<_>>(),
    );
    t.spawn(&["worker", "--channel-rate", "500"]);

    // After all that poison, a good run goes through, once per contact.
    let out = t.tarefas(&["task", "run", &acme_task.to_string(), "--wait"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("40 done, 0 skipped, 0 failed, 0 unknown"),
        "{out:?}"
    );
    let calls = t.exec_flows();
    assert_eq!(calls.len(), 40, "{calls:?}");
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");

    // Every poison message is in the DLQ with its reason and where it came from.
    let total = execute_poison.len() + batch_poison.len();
    let letters = t.wait_for_dead_letters(total, 0);
    for (queue, poison) in [("executions", &execute_poison), ("batches", &batch_poison)] {
        let from: Vec<&Value> = letters
            .iter()
            .filter(|l| l["source_queue"] == format!("{}.{queue}", t.prefix))
            .collect();
        assert_eq!(from.len(), poison.len(), "{queue}: {from:#?}");
        for (code, reason, body) in poison.iter() {
            assert!(
                from.iter().any(|l| l["reason_code"] == *code
                    && l["reason"].as_str().unwrap().contains(reason.as_str())
                    && l["size"] == body.len()),
                "{queue}: no dead letter {code} {reason:?} of {} bytes in {from:#?}",
                body.len()
            );
        }
    }
    for l in &letters {
        assert!(!l["reason"].as_str().unwrap().contains('\n'), "{l}");
    }
    // The other account's task never ran, and no run was made for a poison message.
    let runs =
        t.db.query_texts("SELECT task_id::text || ':' || status FROM runs ORDER BY id");
    assert_eq!(runs, [format!("{acme_task}:done")]);

    // Replay puts them back where they came from; still bad, they come back once more.
    let out = t.tarefas(&["dlq", "replay"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("replayed: {total}")),
        "{out:?}"
    );
    t.wait_for_dead_letters(total, 1);
    // And the worker still works.
    let out = t.tarefas(&["task", "run", &acme_task.to_string(), "--wait"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(t.exec_flows().values().sum::<usize>(), 80);

    let logs = t.stop_all();
    assert!(
        logs.contains("dead-lettering") || logs.contains("dead"),
        "worker logs: {}",
        logs.len()
    );
    assert_no_secret("the worker at RUST_LOG=trace", &logs);
    assert_no_secret("the commands at RUST_LOG=trace", &t.printed);
}

#[test]
fn no_command_reaches_another_accounts_tasks_or_runs() {
    let mut t = Tenants::new(5);
    let acme_task = t.flow_task("acme", "Da Acme");
    let rival_task = t.flow_task("rival", "Da Rival");
    t.spawn(&["worker", "--channel-rate", "500"]);
    let out = t.tarefas(&["task", "run", &acme_task, "--wait"]);
    assert_eq!(out.code, 0, "{out:?}");
    let run_id = t.db.query_texts("SELECT id::text FROM runs")[0].clone();
    let before = t.db.query_texts(
        "SELECT string_agg(row_to_json(x)::text, ',' ORDER BY id) FROM \
         (SELECT id, status, status_reason, done, planned FROM runs) x",
    );
    let tasks_before = t.db.query_texts(
        "SELECT string_agg(id::text || status || coalesce(next_fire_at::text, ''), ',' ORDER BY id) FROM tasks",
    );

    // rival's operator names acme's task and run in every command that takes an id.
    let commands: Vec<Vec<&str>> = vec![
        vec!["task", "show", &acme_task],
        vec!["task", "show", &acme_task, "--json"],
        vec!["task", "pause", &acme_task],
        vec!["task", "resume", &acme_task],
        vec!["task", "delete", &acme_task],
        vec!["task", "preview", &acme_task],
        vec!["task", "run", &acme_task],
        vec!["task", "run", &acme_task, "--wait"],
        vec!["run", "show", &run_id],
        vec!["run", "show", &run_id, "--json"],
        vec!["run", "watch", &run_id],
        vec!["run", "cancel", &run_id],
        vec!["run", "resume", &run_id],
    ];
    for cmd in &commands {
        let mut args = cmd.clone();
        args.extend(["--account", "rival"]);
        let out = t.tarefas(&args);
        assert_eq!(out.code, 1, "{cmd:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{cmd:?} printed {out:?}");
        // (Standard error also holds the trace log; the error is its last line.)
        let error = out.stderr.lines().last().unwrap_or_default();
        assert!(
            error.starts_with("error: ") && error.ends_with("not found"),
            "{cmd:?}: {error:?}"
        );
        assert!(
            !error.contains("Da Acme") && !error.contains("done"),
            "{cmd:?} says something about acme's records: {error:?}"
        );
        // TAREFAS_ACCOUNT scopes the same way as --account.
        let out = t.db.tarefas_env(
            cmd,
            &[
                ("TAREFAS_ACCOUNT", "rival"),
                ("TAREFAS_QUEUE_PREFIX", t.prefix.as_str()),
            ],
        );
        assert_eq!(out.code, 1, "{cmd:?} with TAREFAS_ACCOUNT: {out:?}");
    }
    // Lists show rival only its own.
    let list = |t: &mut Tenants, args: &[&str]| -> Value {
        let out = t.tarefas(args);
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    };
    let rival_tasks = list(&mut t, &["task", "list", "--json", "--account", "rival"]);
    assert_eq!(rival_tasks.as_array().unwrap().len(), 1);
    assert_eq!(rival_tasks[0]["id"].to_string(), rival_task);
    assert_eq!(
        list(&mut t, &["run", "list", "--json", "--account", "rival"]),
        json!([])
    );
    assert_eq!(
        list(
            &mut t,
            &[
                "run",
                "list",
                "--json",
                "--account",
                "rival",
                "--task",
                &acme_task
            ]
        ),
        json!([])
    );
    // Nothing of acme's changed, and no request reached the outbox or a worker.
    let after = t.db.query_texts(
        "SELECT string_agg(row_to_json(x)::text, ',' ORDER BY id) FROM \
         (SELECT id, status, status_reason, done, planned FROM runs) x",
    );
    assert_eq!(before, after);
    let tasks_after = t.db.query_texts(
        "SELECT string_agg(id::text || status || coalesce(next_fire_at::text, ''), ',' ORDER BY id) FROM tasks",
    );
    assert_eq!(tasks_before, tasks_after);
    assert_eq!(t.db.query_texts("SELECT count(*)::text FROM outbox"), ["0"]);
    // acme's own operator still sees it all.
    let shown = list(
        &mut t,
        &["run", "show", &run_id, "--json", "--account", "acme"],
    );
    assert_eq!(shown["status"], "done");
    assert_eq!(t.exec_flows().len(), 5);
    let logs = t.stop_all();
    assert_no_secret("the worker", &logs);
}

#[test]
fn tokens_are_never_printed_logged_or_stored() {
    let mut t = Tenants::new(20);
    // What account add / list show: where the token is read from, not the token.
    let out = t.tarefas(&["account", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let accounts: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(accounts[0]["token_ref"], "env:ACME_TOKEN");
    assert_eq!(accounts[0]["webhook_token_ref"], "env:ACME_HOOK");
    let out = t.tarefas(&["account", "list"]);
    assert!(out.stdout.contains("env:ACME_TOKEN"), "{out:?}");
    // A token kept in a file: the file's path is stored, not what it holds.
    let secret_file = temp_file(&format!("  {RIVAL_TOKEN}\n"), ".token");
    let out = t.tarefas(&[
        "account",
        "add",
        "third",
        "--token-file",
        secret_file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    // A missing variable is named; the value of a set one never is.
    let out = t.tarefas(&[
        "account",
        "add",
        "fourth",
        "--token-env",
        "NOT_SET_ANYWHERE",
    ]);
    assert!(
        out.stderr.contains("NOT_SET_ANYWHERE is not set"),
        "{out:?}"
    );

    // A whole run at trace level: sync, worker, Executar Tarefa, run show.
    let out = t.tarefas(&["sync", "--once", "--account", "acme"]);
    assert!(out.stdout.contains("acme: 20 contacts"), "{out:?}");
    let task = t.flow_task("acme", "Com segredo");
    t.spawn(&["worker", "--channel-rate", "500"]);
    let out = t.tarefas(&["task", "run", &task, "--wait", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = t.tarefas(&["run", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    // A wrong token in the account's variable: Huggy says 401, the run pauses, and the
    // reason names the problem, not the token.
    let logs = t.stop_all();
    let wrong = format!("{ACME_TOKEN}-but-wrong");
    let log = t.logs.path().join("worker-wrong.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_tarefas"));
    worker
        .args(["worker", "--channel-rate", "500"])
        .env("TAREFAS_DATABASE_URL", t.db.url())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    for (k, v) in t.env() {
        worker.env(k, v);
    }
    worker.env("ACME_TOKEN", &wrong);
    t.children.push((log, worker.spawn().unwrap()));
    let out = t.tarefas(&["task", "run", &task, "--wait"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("paused"), "{out:?}");
    assert!(out.stdout.contains("token"), "{out:?}");
    assert!(!out.stdout.contains(&wrong), "{out:?}");
    let wrong_logs = t.stop_all();
    assert!(
        !wrong_logs.contains(&wrong),
        "the worker logged the wrong token"
    );
    assert!(!t.printed.contains(&wrong));

    assert_no_secret("the worker at RUST_LOG=trace", &logs);
    assert_no_secret("the worker with a wrong token", &wrong_logs);
    assert_no_secret("the commands at RUST_LOG=trace", &t.printed);
    assert!(
        t.printed.contains("TRACE") || logs.contains("TRACE"),
        "trace logging was on"
    );

    // Nothing in the database holds a token: the whole dump is searched.
    let dump = Command::new("pg_dump")
        .args(["--data-only", "--inserts", &t.db.url()])
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{dump:?}");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("env:ACME_TOKEN"),
        "the dump holds the accounts"
    );
    assert!(dump.contains(secret_file.to_str().unwrap()));
    assert_no_secret("the database", &dump);
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hostile strings every text value of a webhook carries.
const HOSTILE: &[&str] = &[
    "Robert'); DROP TABLE contacts; --",
    "' OR '1'='1",
    "x\"; DELETE FROM accounts WHERE ''='",
    "%_\\' UNION SELECT token_ref FROM accounts --",
    "$1; $$ LANGUAGE sql $$",
    "Ana\u{0}Nul",
];

#[test]
fn webhooks_refuse_bad_tokens_and_shapes_and_store_hostile_text_as_text() {
    let mut t = Tenants::new(10);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    t.spawn(&["sync", "--listen", &listen, "--resync-every", "1h"]);
    let base = format!("http://{listen}");
    let rt = runtime();
    // A fresh connection per request: the server may close one after refusing a body.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let post = |path: &str, body: Vec<u8>| -> (u16, Value) {
        let (url, http, len) = (format!("{base}{path}"), http.clone(), body.len());
        rt.block_on(async move {
            let r = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url} ({len} bytes): {e:?}"));
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        })
    };
    let post_json = |path: &str, body: Value| post(path, serde_json::to_vec(&body).unwrap());
    // Wait until it listens (it syncs first).
    let started = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sync did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let hook = "/webhooks/acme";
    assert_eq!(
        post_json(hook, json!({"token": ACME_HOOK, "validToken": true})).0,
        200
    );
    // Wrong, missing, empty and mistyped tokens; another account's path; unknown account.
    for body in [
        json!({"token": NEAR_HOOK, "validToken": true}),
        json!({"token": format!("{ACME_HOOK} "), "validToken": true}),
        json!({"token": &ACME_HOOK[..ACME_HOOK.len() - 1], "validToken": true}),
        json!({"token": "", "validToken": true}),
        json!({"token": null, "validToken": true}),
        json!({"token": 12345, "validToken": true}),
        json!({"token": [ACME_HOOK], "validToken": true}),
        json!({"validToken": true}),
        json!({"messages": {"createdCustomer": [{"id": 1, "name": "X"}]}}),
    ] {
        assert_eq!(post_json(hook, body.clone()).0, 401, "{body}");
    }
    for path in ["/webhooks/rival", "/webhooks/ghost", "/webhooks/acme%27--"] {
        assert_eq!(
            post_json(path, json!({"token": ACME_HOOK, "validToken": true})).0,
            404,
            "{path}"
        );
    }
    // Wrong shapes.
    assert_eq!(post(hook, b"{oops".to_vec()).0, 400);
    assert_eq!(post(hook, b"".to_vec()).0, 400);
    assert_eq!(post(hook, vec![0xff, 0xfe, 0x00]).0, 400);
    assert_eq!(
        post(
            hook,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()
        )
        .0,
        400
    );
    assert_eq!(post_json(hook, json!([ACME_HOOK])).0, 401);
    assert_eq!(post_json(hook, json!({"token": ACME_HOOK})).0, 400);
    assert_eq!(
        post_json(hook, json!({"token": ACME_HOOK, "messages": []})).0,
        400
    );
    assert_eq!(
        post_json(hook, json!({"token": ACME_HOOK, "messages": "x"})).0,
        400
    );
    let (status, applied) = post_json(
        hook,
        json!({"token": ACME_HOOK, "messages": {
            "createdCustomer": [7, "x", null, {"id": "not a number"}, {"name": "no id"}],
            "startedChat": [{"id": {"deep": true}}],
            "updatedCustomer": "not a list",
            "someNewEvent": [{"id": 1}],
        }}),
    );
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["contacts"], 0, "{applied}");
    // Huge: refused before it is read.
    let huge = format!(
        "{{\"token\": \"{ACME_HOOK}\", \"messages\": {{\"x\": [\"{}\"]}}}}",
        "a".repeat(2 * 1024 * 1024)
    );
    assert_eq!(post(hook, huge.into_bytes()).0, 413);

    // Hostile text in every text value of a contact is stored as text.
    let contacts: Vec<Value> = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "id": 9_000 + i as i64,
                "name": s, "email": format!("{s}@x.com"), "mobile": s, "phone": s,
                "group": {"id": 1, "name": s}, "organization": {"id": 2, "name": s},
                "customFields": {"plano": s, s.to_string(): s, "a--b": s},
                "updatedAt": "2026-06-01T10:00:00Z", "createdAt": "2026-01-01T10:00:00Z",
            })
        })
        .collect();
    let (status, applied) = post_json(
        hook,
        json!({"token": ACME_HOOK, "messages": {"createdCustomer": contacts}}),
    );
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["contacts"], HOSTILE.len(), "{applied}");
    assert_eq!(
        t.db.query_texts("SELECT count(*)::text FROM contacts"),
        [(10 + HOSTILE.len()).to_string()]
    );
    assert_eq!(
        t.db.query_texts("SELECT count(*)::text FROM accounts"),
        ["2"]
    );
    // Each one is found by a segment on its own text, and by nothing else.
    for s in HOSTILE {
        let stored = s.replace('\u{0}', "");
        for (field, op) in [
            ("name", "eq"),
            ("custom.plano", "eq"),
            ("organization", "eq"),
            ("group", "eq"),
            ("email", "starts_with"),
        ] {
            let file = temp_file(
                &serde_json::to_string(&json!({
                    "name": "Hostil", "account": "acme", "table": "contacts",
                    "filter": {"field": field, "op": op, "value": stored},
                    "action": {"flow": {"project": 1, "flow": 2, "channel": CHANNEL}},
                }))
                .unwrap(),
                ".json",
            );
            let out = t.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
            assert_eq!(out.code, 0, "{field} {s:?}: {out:?}");
            let id = out.stdout.trim().to_string();
            let out = t.tarefas(&["task", "preview", &id, "--json"]);
            assert_eq!(out.code, 0, "{out:?}");
            let preview: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(preview["count"], 1, "{field} {op} {s:?}: {preview}");
            // The task's name and definition come back exactly as written.
            let shown: Value =
                serde_json::from_str(&t.tarefas(&["task", "show", &id, "--json"]).stdout).unwrap();
            assert_eq!(shown["definition"]["filter"]["value"], stored.as_str());
        }
    }
    let logs = t.stop_all();
    assert!(logs.contains("wrong token"), "the refusals are logged");
    assert_no_secret("sync at RUST_LOG=trace", &logs);
    assert_no_secret("the commands", &t.printed);
}
