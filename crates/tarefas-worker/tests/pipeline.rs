//! The worker driven step by step (plan, then each batch from the outbox) against a real
//! Postgres, a real Redis and the fake Huggy: exactly once, Flow policy, chat actions,
//! cancel, bad tokens, rate limits and stuck items.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::PgPool;
use tarefas_core::run::RunStatus;
use tarefas_core::task::{parse_task, Format};
use tarefas_fake_huggy::{CallRecord, FakeConfig, FakeHuggy, Faults};
use tarefas_huggy::{HttpHuggy, HuggyConfig};
use tarefas_proto::v1::{ExecuteTask, Trigger};
use tarefas_store::accounts::{self, NewAccount, SecretRef};
use tarefas_store::{outbox, runs, tasks};
use tarefas_worker::gate::{Gate, Idem, LimitKey};
use tarefas_worker::redis_gate::RedisGate;
use tarefas_worker::{plan, BatchOutcome, ExecConfig, Executor, PlanConfig, Planned};

struct World {
    pool: PgPool,
    fake: FakeHuggy,
    exec: Arc<Executor<RedisGate>>,
    account: String,
    gate: Arc<RedisGate>,
    _token_file: tempfile::NamedTempFile,
}

fn redis_url() -> String {
    std::env::var("TAREFAS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

impl World {
    async fn new(pool: PgPool, contacts: usize, chats: usize) -> World {
        let fake = FakeHuggy::start(FakeConfig {
            contacts,
            chats,
            seed: 11,
            ..FakeConfig::default()
        })
        .await
        .unwrap();
        let mut token_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut token_file, fake.token().as_bytes()).unwrap();
        let account = accounts::add(
            &pool,
            &NewAccount {
                name: "acme".into(),
                company_id: None,
                token_ref: Some(SecretRef::File(token_file.path().to_str().unwrap().into())),
                webhook_token_ref: None,
                rate_limit_per_s: 100_000,
            },
        )
        .await
        .unwrap();
        let huggy =
            HttpHuggy::new(HuggyConfig::new("unused").with_base_url(fake.base_url())).unwrap();
        tarefas_sync::sync_account(
            &huggy
                .with_account(&tarefas_huggy::Secret::new(fake.token()), None)
                .unwrap(),
            &pool,
            account.id,
        )
        .await
        .unwrap();
        let prefix = format!("tarefas-test-{}", uuid_like());
        let gate = Arc::new(RedisGate::connect(&redis_url(), &prefix).unwrap());
        let exec = Arc::new(Executor::new(
            pool.clone(),
            gate.clone(),
            huggy,
            ExecConfig {
                cache_ttl: std::time::Duration::ZERO,
                ..ExecConfig::default()
            },
        ));
        fake.clear_calls();
        World {
            pool,
            fake,
            exec,
            account: account.name,
            gate,
            _token_file: token_file,
        }
    }

    async fn task(&self, yaml: &str) -> i64 {
        let spec = parse_task(yaml, Format::Yaml).unwrap();
        let acct = accounts::by_name(&self.pool, &self.account).await.unwrap();
        tasks::create(&self.pool, acct.id, &spec, chrono::Utc::now())
            .await
            .unwrap()
            .id
    }

    fn request(&self, task_id: i64, request_id: &str) -> ExecuteTask {
        ExecuteTask {
            schema_version: 1,
            task_id,
            account: self.account.clone(),
            request_id: request_id.into(),
            trigger: Trigger::Manual as i32,
            scheduled_for_unix_ms: 0,
            requested_by: "test".into(),
            requested_at_unix_ms: 0,
            trace_context: Default::default(),
        }
    }

    /// Takes every outbox message (as the relay would) and returns the batches.
    async fn drain_batches(&self) -> Vec<tarefas_proto::v1::ItemBatch> {
        let mut tx = self.pool.begin().await.unwrap();
        let msgs = outbox::claim(&mut tx, 100_000).await.unwrap();
        outbox::delete(&mut tx, &msgs.iter().map(|m| m.id).collect::<Vec<_>>())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        msgs.iter()
            .filter(|m| m.routing_key == "batch")
            .map(|m| tarefas_proto::decode_item_batch(&m.payload).unwrap())
            .collect()
    }

    /// Plans `task_id` and executes every batch until none is left.
    /// Plans a run of the task in batches of 50 items: its id and its batch messages.
    async fn plan_in_batches_of_50(
        &self,
        task_id: i64,
        request_id: &str,
    ) -> (i64, Vec<tarefas_proto::v1::ItemBatch>) {
        let config = PlanConfig {
            page_size: 100,
            batch_size: 50,
        };
        let planned = plan(&self.pool, &self.request(task_id, request_id), &config)
            .await
            .unwrap();
        let Planned::Run { run_id, .. } = planned else {
            panic!("not planned: {planned:?}")
        };
        (run_id, self.drain_batches().await)
    }

    async fn run(&self, task_id: i64, request_id: &str) -> runs::Run {
        let planned = plan(
            &self.pool,
            &self.request(task_id, request_id),
            &PlanConfig {
                page_size: 50,
                batch_size: 20,
            },
        )
        .await
        .unwrap();
        let Planned::Run { run_id, .. } = planned else {
            panic!("duplicate")
        };
        self.execute_all(run_id).await
    }

    async fn execute_all(&self, run_id: i64) -> runs::Run {
        for _ in 0..50 {
            let batches = self.drain_batches().await;
            if batches.is_empty() {
                break;
            }
            for b in batches {
                if let BatchOutcome::RetryLater(_) = self.exec.execute(&b).await.unwrap() {
                    // As the delay queue would: the same batch again later.
                    outbox::enqueue(&self.pool, "batch", &[tarefas_proto::encode_item_batch(&b)])
                        .await
                        .unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        runs::get(&self.pool, None, run_id).await.unwrap()
    }

    fn calls(&self, path_contains: &str) -> Vec<CallRecord> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| c.path.contains(path_contains) && c.method != "GET")
            .collect()
    }
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Option A everywhere: the Flow runs whatever the chat's state.
const ALWAYS: &str =
    "{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}";

fn contacts_flow(filter: &str, policy: &str) -> String {
    format!(
        "name: F\ntable: contacts\ntime_zone: UTC\nfilter: {filter}\naction:\n  flow: {{project: 1, flow: 42, channel: 5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11}}\n  policy: {policy}\n"
    )
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_manual_run_calls_huggy_exactly_once_per_record_of_its_segment(pool: PgPool) {
    let w = World::new(pool, 600, 100).await;
    let task = w
        .task(&contacts_flow(
            "{field: organization, op: eq, value: Rotik}",
            "{}",
        ))
        .await;
    let want: Vec<i64> = w
        .fake
        .contacts()
        .into_iter()
        .filter(|c| c.organization.as_ref().and_then(|o| o.name.as_deref()) == Some("Rotik"))
        .map(|c| c.id)
        .collect();
    assert!(want.len() > 20);
    let run = w.run(task, "req-1").await;
    assert_eq!(run.status, RunStatus::Done, "{run:?}");
    assert_eq!(run.planned as usize, want.len());
    let calls = w.calls("/execFlow");
    let mut called: Vec<i64> = calls
        .iter()
        .filter_map(|c| c.contact_id.or(c.chat_id))
        .collect();
    called.sort();
    assert_eq!(
        called, want,
        "each record of the segment once, nothing else"
    );
    // The Flow policy travels as execFlow's flags; defaults are "don't run".
    let body: &Value = calls[0].body.as_ref().unwrap();
    assert_eq!(
        (body["flowId"].clone(), body["uuid"].clone()),
        (
            Value::from(42),
            Value::from("5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11")
        )
    );
    assert_eq!(
        (
            body["whenInChat"].clone(),
            body["whenWaitForChat"].clone(),
            body["whenInAuto"].clone()
        ),
        (Value::Bool(false), Value::Bool(false), Value::Bool(false))
    );
    assert_eq!(run.done + run.skipped, run.planned);

    // The same request again makes nothing; the same batches again call nothing.
    let again = plan(&w.pool, &w.request(task, "req-1"), &PlanConfig::default())
        .await
        .unwrap();
    assert_eq!(again, Planned::Duplicate(run.id));
    assert!(w.drain_batches().await.is_empty());
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_replayed_batch_calls_nothing_twice(pool: PgPool) {
    let w = World::new(pool, 100, 10).await;
    let task = w.task(&contacts_flow("{field: id, op: lte, value: 1030}", "{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}")).await;
    let Planned::Run { run_id, .. } = plan(&w.pool, &w.request(task, "r"), &PlanConfig::default())
        .await
        .unwrap()
    else {
        panic!()
    };
    let batches = w.drain_batches().await;
    for b in batches.iter().chain(batches.iter()) {
        assert_eq!(w.exec.execute(b).await.unwrap(), BatchOutcome::Done);
    }
    let run = runs::get(&w.pool, None, run_id).await.unwrap();
    assert_eq!((run.status.as_str(), run.done), ("done", 30));
    assert_eq!(w.calls("/execFlow").len(), 30);
    let body = w.calls("/execFlow")[0].body.clone().unwrap();
    assert_eq!(body["whenInChat"], true);
    assert_eq!(body["whenWaitForChat"], true);
    assert_eq!(body["whenInAuto"], true);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn flow_policy_on_the_chats_table_reads_the_chat_fresh(pool: PgPool) {
    let w = World::new(pool, 200, 150).await;
    let open: BTreeMap<String, Vec<i64>> = w
        .fake
        .chats()
        .into_iter()
        .map(|c| c.chat)
        .filter(|c| c.is_open())
        .fold(BTreeMap::new(), |mut m, c| {
            m.entry(c.situation.clone()).or_default().push(c.id);
            m
        });
    for (option, expect_run) in [("{}", false), ("{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}", true)] {
        w.fake.clear_calls();
        let task = w.task(&format!("name: P\ntable: chats\naction:\n  flow: {{project: 1, flow: 7}}\n  policy: {option}\n")).await;
        let run = w.run(task, &format!("p-{expect_run}")).await;
        let ran: Vec<i64> = w.calls("/flow").iter().filter_map(|c| c.contact_id.or(c.chat_id)).collect();
        let total: usize = open.values().map(Vec::len).sum();
        assert_eq!(run.planned as usize, total);
        if expect_run {
            assert_eq!((ran.len(), run.done as usize, run.skipped), (total, total, 0));
        } else {
            assert!(ran.is_empty(), "option B never runs the Flow on an open chat");
            assert_eq!(run.skipped as usize, total);
        }
        // Every state was seen.
        assert_eq!(open.len(), 3, "{open:?}");
    }
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn every_chat_action_reaches_its_endpoint(pool: PgPool) {
    let w = World::new(pool, 100, 80).await;
    let cases = [
        (
            "{transfer_to_agent: {agent: 17}}",
            "/agent",
            "agentId",
            Value::from(17),
        ),
        (
            "{update_workflow: {step: 8}}",
            "/workflow",
            "stepId",
            Value::from(8),
        ),
        (
            "{close: {tabulation: '12'}}",
            "/close",
            "tabulation",
            Value::from("12"),
        ),
        (
            "{change_department: {department: 3}}",
            "/department",
            "departmentId",
            Value::from(3),
        ),
        (
            "{update_tabulation: {tabulation: '9'}}",
            "/tabulation",
            "tabulationId",
            Value::from("9"),
        ),
        ("put_in_queue", "/queue", "", Value::Null),
    ];
    for (i, (action, path, key, value)) in cases.into_iter().enumerate() {
        w.fake.clear_calls();
        // One fresh open chat each time (the actions change the chats).
        let chat = w
            .fake
            .chats()
            .into_iter()
            .map(|c| c.chat)
            .filter(|c| c.situation == "auto")
            .nth(i)
            .unwrap()
            .id;
        let task = w.task(&format!("name: A\ntable: chats\nfilter: {{field: id, op: eq, value: {chat}}}\naction: {{chat: {action}}}\n")).await;
        let run = w.run(task, &format!("a-{i}")).await;
        assert_eq!(
            (run.status.as_str(), run.done),
            ("done", 1),
            "{action}: {run:?}"
        );
        let calls = w.calls(path);
        assert_eq!(calls.len(), 1, "{action}");
        assert_eq!(calls[0].chat_id, Some(chat));
        if !key.is_empty() {
            assert_eq!(calls[0].body.as_ref().unwrap()[key], value, "{action}");
        }
    }

    // Reopen, the seventh: the mirror still lists the chat (synced while it was open) and
    // Huggy has closed it since; the call reopens it.
    let mut open: Vec<_> = w
        .fake
        .chats()
        .into_iter()
        .map(|c| c.chat)
        .filter(|c| c.situation == "auto")
        .collect();
    let open_id = open.pop().unwrap().id;
    let mut closed = open.pop().unwrap();
    closed.situation = "closed".into();
    let closed_id = closed.id;
    w.fake.upsert_chat(closed);
    w.fake.clear_calls();
    let reopen = |id: i64| {
        format!("name: R\ntable: chats\nfilter: {{field: id, op: eq, value: {id}}}\naction: {{chat: reopen}}\n")
    };
    let task = w.task(&reopen(closed_id)).await;
    let run = w.run(task, "reopen-closed").await;
    assert_eq!((run.status.as_str(), run.done), ("done", 1), "{run:?}");
    let calls = w.calls("/reopen");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].chat_id, Some(closed_id));
    assert_ne!(w.fake.chat(closed_id).unwrap().situation, "closed");

    // Reopen of a chat that is open: Huggy refuses it (422); the item fails for good with
    // Huggy's reason, once, and is not retried.
    w.fake.clear_calls();
    let task = w.task(&reopen(open_id)).await;
    let run = w.run(task, "reopen-open").await;
    assert_eq!((run.done, run.failed), (0, 1), "{run:?}");
    assert_eq!(w.calls("/reopen").len(), 1);
    let reason: Option<String> =
        sqlx::query_scalar("SELECT reason FROM run_items WHERE run_id = $1")
            .bind(run.id)
            .fetch_one(&w.pool)
            .await
            .unwrap();
    let reason = reason.unwrap_or_default();
    assert!(reason.contains("422"), "{reason}");
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_cancelled_run_calls_nothing_more(pool: PgPool) {
    let w = World::new(pool, 300, 10).await;
    let task = w
        .task(&contacts_flow("{field: id, op: gt, value: 0}", ALWAYS))
        .await;
    let (run_id, batches) = w.plan_in_batches_of_50(task, "c").await;
    w.exec.execute(&batches[0]).await.unwrap();
    assert!(runs::cancel(&w.pool, None, run_id, "test").await.unwrap());
    for b in &batches[1..] {
        w.exec.execute(b).await.unwrap();
    }
    let run = runs::get(&w.pool, None, run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(
        w.calls("/execFlow").len(),
        50,
        "only the first batch was sent"
    );
    assert_eq!((run.done, run.skipped), (50, 250));
}

/// Items waiting in line for tokens look at their run once they get one: a pause made
/// while they wait sends nothing more, leaves their idempotency keys unset, and a later
/// batch sends each of them once.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_pause_while_items_wait_for_tokens_sends_nothing_more(pool: PgPool) {
    let w = World::new(pool, 10, 0).await;
    // 4/s: a burst of 2, then 3 a second: ten items wait in line for about 3 s.
    sqlx::query("UPDATE accounts SET rate_limit_per_s = 4")
        .execute(&w.pool)
        .await
        .unwrap();
    let task = w
        .task(&contacts_flow("{field: id, op: gt, value: 0}", ALWAYS))
        .await;
    let (run_id, batches) = w.plan_in_batches_of_50(task, "p").await;
    let exec = w.exec.clone();
    let batch = batches[0].clone();
    let first = tokio::spawn(async move { exec.execute(&batch).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    runs::set_status(&w.pool, run_id, tarefas_core::run::RunStatus::Paused, None)
        .await
        .unwrap();
    let outcome = first.await.unwrap();
    assert!(
        matches!(outcome, BatchOutcome::RetryLater(_)),
        "{outcome:?}"
    );
    let sent = w.calls("/execFlow").len();
    assert!(
        (2..=4).contains(&sent),
        "{sent} sent before the pause took effect"
    );
    let pending: Vec<i64> = sqlx::query_scalar(
        "SELECT record_id FROM run_items WHERE run_id = $1 AND status = 'pending'",
    )
    .bind(run_id)
    .fetch_all(&w.pool)
    .await
    .unwrap();
    assert_eq!(pending.len(), 10 - sent);
    for record in &pending {
        assert_eq!(w.gate.state(run_id, *record).await.unwrap(), None);
    }
    // Resumed: the same batch sends the rest, each once.
    runs::set_status(&w.pool, run_id, tarefas_core::run::RunStatus::Running, None)
        .await
        .unwrap();
    // (retried as the broker would until the worker's view of the run, refreshed every
    // 250 ms, has seen the resume)
    let mut tries = 0;
    while w.exec.execute(&batches[0]).await.unwrap() != BatchOutcome::Done {
        tries += 1;
        assert!(tries < 5, "the resumed batch never finished");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut contacts: Vec<_> = w
        .calls("/execFlow")
        .iter()
        .map(|c| c.contact_id.unwrap())
        .collect();
    contacts.sort();
    contacts.dedup();
    assert_eq!((w.calls("/execFlow").len(), contacts.len()), (10, 10));
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_bad_token_pauses_the_run_and_resume_finishes_it(pool: PgPool) {
    let w = World::new(pool, 120, 10).await;
    let task = w
        .task(&contacts_flow("{field: id, op: gt, value: 0}", ALWAYS))
        .await;
    w.fake
        .set_faults(Faults {
            forced_status: Some(401),
            ..Faults::default()
        })
        .unwrap();
    let run = w.run(task, "t").await;
    assert_eq!(run.status, RunStatus::Paused);
    assert!(
        run.status_reason.as_deref().unwrap().contains("token"),
        "{run:?}"
    );
    assert_eq!(run.done, 0);
    w.fake.set_faults(Faults::default()).unwrap();
    w.fake.clear_calls();
    tarefas_worker::plan::resume(&w.pool, &run, &PlanConfig::default())
        .await
        .unwrap();
    // The relay would deliver the ExecuteTask again: plan resumes and finishes.
    let mut tx = w.pool.begin().await.unwrap();
    let msgs = outbox::claim(&mut tx, 1000).await.unwrap();
    tx.rollback().await.unwrap();
    let exec = msgs.iter().find(|m| m.routing_key == "execute").unwrap();
    plan(
        &w.pool,
        &tarefas_proto::decode_execute_task(&exec.payload).unwrap(),
        &PlanConfig::default(),
    )
    .await
    .unwrap();
    let run = w.execute_all(run.id).await;
    assert_eq!((run.status.as_str(), run.done), ("done", 120), "{run:?}");
    assert_eq!(w.calls("/execFlow").len(), 120);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn rate_limits_and_server_errors_end_in_each_record_once(pool: PgPool) {
    let w = World::new(pool, 200, 10).await;
    w.fake
        .set_faults(Faults {
            rate_429: 0.2,
            retry_after_secs: Some(0),
            rate_5xx: 0.1,
            ..Faults::default()
        })
        .unwrap();
    let task = w
        .task(&contacts_flow("{field: id, op: gt, value: 0}", ALWAYS))
        .await;
    let run = w.run(task, "rl").await;
    assert_eq!((run.status.as_str(), run.done), ("done", 200), "{run:?}");
    let ok: Vec<i64> = w
        .fake
        .calls()
        .iter()
        .filter(|c| c.path.contains("/execFlow") && c.status == 200)
        .filter_map(|c| c.contact_id.or(c.chat_id))
        .collect();
    let distinct: std::collections::BTreeSet<i64> = ok.iter().copied().collect();
    assert_eq!(
        (ok.len(), distinct.len()),
        (200, 200),
        "every record reached Huggy once"
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn items_stuck_in_sending_are_settled_and_flows_never_resent(pool: PgPool) {
    use tarefas_worker::gate::Gate;
    let w = World::new(pool, 50, 10).await;
    let task = w
        .task(&contacts_flow("{field: id, op: gt, value: 0}", ALWAYS))
        .await;
    let Planned::Run { run_id, .. } = plan(&w.pool, &w.request(task, "s"), &PlanConfig::default())
        .await
        .unwrap()
    else {
        panic!()
    };
    w.drain_batches().await;
    // A worker claimed every item and died: mid-call for the first 20 (their keys say
    // inflight), before calling for the other 30 (no key yet).
    let all: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, record_id FROM run_items WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&w.pool)
            .await
            .unwrap();
    runs::claim(
        &w.pool,
        run_id,
        &all.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    for (_, record) in &all[..20] {
        w.gate.begin(run_id, *record).await.unwrap();
    }
    sqlx::query("UPDATE run_claims SET claimed_at = now() - interval '1 hour' WHERE run_id = $1")
        .bind(run_id)
        .execute(&w.pool)
        .await
        .unwrap();
    let settled = w
        .exec
        .settle_stuck(std::time::Duration::from_secs(60), 1000)
        .await
        .unwrap();
    assert_eq!(settled, 50);
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM run_claims WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(
        claims, 0,
        "the dead worker's claim is gone once its items are settled"
    );
    let run = w.execute_all(run_id).await;
    assert_eq!(
        (run.status.as_str(), run.unknown, run.done),
        ("done_with_errors", 20, 30),
        "{run:?}"
    );
    let sent: Vec<i64> = w
        .calls("/execFlow")
        .iter()
        .filter_map(|c| c.contact_id)
        .collect();
    assert_eq!(
        sent.len(),
        30,
        "only the calls that never began are sent; mid-call Flows are never resent"
    );
    assert!(all[..20].iter().all(|(_, r)| !sent.contains(r)));
}

/// An attempt whose answer was lost as Redis went away (its key set, but it never learned
/// so, and never called) hands its items back recording that it never called; the next
/// attempt takes such a key over and calls, once. A key held by an attempt that did not
/// record so may have been called: that item is `unknown`, never sent. And an item stuck
/// in `sending` whose key is held by an attempt that never called goes back to `pending`.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_key_left_by_an_attempt_that_never_called_is_taken_over(pool: PgPool) {
    use tarefas_store::attempts;
    let w = World::new(pool, 40, 10).await;
    let task = w
        .task(&contacts_flow("{field: id, op: gt, value: 0}", ALWAYS))
        .await;
    let Planned::Run { run_id, .. } =
        plan(&w.pool, &w.request(task, "lost"), &PlanConfig::default())
            .await
            .unwrap()
    else {
        panic!()
    };
    let messages = w.drain_batches().await;
    let all: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, record_id FROM run_items WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&w.pool)
            .await
            .unwrap();
    let ids = |r: std::ops::Range<usize>| all[r].iter().map(|(i, _)| *i).collect::<Vec<_>>();
    let keys = [LimitKey {
        key: "account:lost".into(),
        per_second: 100_000.0,
    }];
    let step = std::time::Duration::from_secs(5);
    // Attempt A (items 0..20): its token step set the keys, the answers were lost; it
    // hands the items back, recording that it never called.
    let a = runs::claim(&w.pool, run_id, &ids(0..20))
        .await
        .unwrap()
        .unwrap();
    for (_, record) in &all[0..20] {
        w.gate
            .acquire_and_begin(&keys, run_id, *record, a.id, step)
            .await
            .unwrap();
    }
    assert_eq!(
        attempts::release_never_called(&w.pool, run_id, a.id, &ids(0..20))
            .await
            .unwrap(),
        20
    );
    // Attempt B (items 20..30): set the keys, then handed back without saying it never
    // called (its call may have happened).
    let b = runs::claim(&w.pool, run_id, &ids(20..30))
        .await
        .unwrap()
        .unwrap();
    for (_, record) in &all[20..30] {
        w.gate
            .acquire_and_begin(&keys, run_id, *record, b.id, step)
            .await
            .unwrap();
    }
    runs::release(&w.pool, run_id, &ids(20..30)).await.unwrap();
    // Attempt C (items 30..40): A's fate, then C itself claimed them again and died before
    // taking the keys over: the sweeper hands them back.
    let c = runs::claim(&w.pool, run_id, &ids(30..40))
        .await
        .unwrap()
        .unwrap();
    for (_, record) in &all[30..40] {
        w.gate
            .acquire_and_begin(&keys, run_id, *record, c.id, step)
            .await
            .unwrap();
    }
    attempts::release_never_called(&w.pool, run_id, c.id, &ids(30..40))
        .await
        .unwrap();
    runs::claim(&w.pool, run_id, &ids(30..40))
        .await
        .unwrap()
        .unwrap();
    sqlx::query("UPDATE run_claims SET claimed_at = now() - interval '1 hour' WHERE run_id = $1")
        .bind(run_id)
        .execute(&w.pool)
        .await
        .unwrap();
    assert_eq!(
        w.exec
            .settle_stuck(std::time::Duration::from_secs(60), 1000)
            .await
            .unwrap(),
        10
    );
    assert!(!attempts::never_called(&w.pool, all[20].0, b.id)
        .await
        .unwrap());
    assert!(attempts::never_called(&w.pool, all[0].0, a.id)
        .await
        .unwrap());
    assert!(!attempts::never_called(&w.pool, all[0].0, b.id)
        .await
        .unwrap());

    // Every batch message of the run, once more (as the reconciler would).
    let payloads: Vec<Vec<u8>> = messages
        .iter()
        .map(tarefas_proto::encode_item_batch)
        .collect();
    outbox::enqueue(&w.pool, "batch", &payloads).await.unwrap();
    let run = w.execute_all(run_id).await;
    assert_eq!(
        (run.status.as_str(), run.done, run.unknown),
        ("done_with_errors", 30, 10),
        "{run:?}"
    );
    let sent: Vec<i64> = w
        .calls("/execFlow")
        .iter()
        .filter_map(|c| c.contact_id)
        .collect();
    let mut expected: Vec<i64> = all[0..20]
        .iter()
        .chain(&all[30..40])
        .map(|(_, r)| *r)
        .collect();
    let mut got = sent.clone();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        got, expected,
        "each taken-over record called once, B's never"
    );
    let unknown: Vec<i64> = sqlx::query_scalar(
        "SELECT record_id FROM run_items WHERE run_id = $1 AND status = 'unknown' ORDER BY id",
    )
    .bind(run_id)
    .fetch_all(&w.pool)
    .await
    .unwrap();
    assert_eq!(
        unknown,
        all[20..30].iter().map(|(_, r)| *r).collect::<Vec<_>>()
    );
}

/// The token and the idempotency key come in one step (design §3's order, without a round
/// trip between them): each granted call has its own key marked, a key already held says
/// so, and a call that gets no token within its deadline leaves its key untouched.
#[tokio::test]
async fn a_token_and_its_idempotency_key_are_taken_in_one_step() {
    let gate = RedisGate::connect(&redis_url(), &format!("tarefas-test-{}", uuid_like())).unwrap();
    // 10/s: a burst of 3 (limit_for), then 7 calls a second.
    let keys = [LimitKey {
        key: "account:one-step".into(),
        per_second: 10.0,
    }];
    let step = std::time::Duration::from_millis(250);
    let (a, b) = tokio::join!(
        gate.acquire_and_begin(&keys, 7, 1, 500, step),
        gate.acquire_and_begin(&keys, 7, 2, 500, step)
    );
    assert_eq!(
        (a.unwrap(), b.unwrap()),
        (Some(Idem::Fresh), Some(Idem::Fresh))
    );
    assert_eq!(
        gate.state(7, 1).await.unwrap(),
        Some(Idem::Inflight(Some(500)))
    );
    // Once a token is due again: the key is already held, by an attempt or a success.
    assert_eq!(
        gate.acquire_and_begin(&keys, 7, 1, 501, step)
            .await
            .unwrap(),
        Some(Idem::Inflight(Some(500)))
    );
    // The same attempt asking again (its first answer lost): the mark is its own.
    assert_eq!(
        gate.acquire_and_begin(&keys, 7, 1, 500, step)
            .await
            .unwrap(),
        Some(Idem::Fresh)
    );
    // Only the holder's mark is handed over, and cleared.
    assert!(!gate.take_over(7, 1, 499, 501).await.unwrap());
    gate.clear(7, 1, 499).await.unwrap();
    assert_eq!(
        gate.state(7, 1).await.unwrap(),
        Some(Idem::Inflight(Some(500)))
    );
    assert!(gate.take_over(7, 1, 500, 501).await.unwrap());
    assert_eq!(
        gate.state(7, 1).await.unwrap(),
        Some(Idem::Inflight(Some(501)))
    );
    gate.clear(7, 1, 500).await.unwrap();
    assert_eq!(
        gate.state(7, 1).await.unwrap(),
        Some(Idem::Inflight(Some(501)))
    );
    gate.clear(7, 1, 501).await.unwrap();
    assert_eq!(gate.state(7, 1).await.unwrap(), None);
    gate.done(7, 2).await.unwrap();
    assert!(
        !gate.take_over(7, 2, 500, 501).await.unwrap(),
        "done is never taken"
    );
    assert_eq!(
        gate.acquire_and_begin(&keys, 7, 2, 502, step)
            .await
            .unwrap(),
        Some(Idem::Done)
    );
    // Paused: no token within the deadline, and the key is left alone.
    gate.pause("account:one-step", std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        gate.acquire_and_begin(&keys, 7, 3, 500, step)
            .await
            .unwrap(),
        None
    );
    assert!(started.elapsed() >= step, "{:?}", started.elapsed());
    assert_eq!(gate.state(7, 3).await.unwrap(), None);
}

/// Calls waiting for tokens wait in the worker's line: served in the order they came, at
/// the limit's pace, each within its deadline or told there was none (nothing consumed);
/// with Redis away, nothing is granted (fail closed).
#[tokio::test]
async fn calls_waiting_for_tokens_are_served_in_line_and_on_time() {
    let gate = Arc::new(
        RedisGate::connect(&redis_url(), &format!("tarefas-test-{}", uuid_like())).unwrap(),
    );
    // 10/s: a burst of 3 (limit_for), then 7 calls a second.
    let keys = vec![LimitKey {
        key: "account:line".into(),
        per_second: 10.0,
    }];
    let started = std::time::Instant::now();
    let mut waiting = Vec::new();
    for record in 1..=6 {
        let (gate, keys) = (gate.clone(), keys.clone());
        waiting.push(tokio::spawn(async move {
            let idem = gate
                .acquire_and_begin(&keys, 9, record, 1, std::time::Duration::from_secs(3))
                .await
                .unwrap();
            (started.elapsed(), record, idem)
        }));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // One more behind them whose deadline comes before its turn.
    let late = gate
        .acquire_and_begin(&keys, 9, 99, 1, std::time::Duration::from_millis(60))
        .await
        .unwrap();
    assert_eq!(late, None);
    assert_eq!(gate.state(9, 99).await.unwrap(), None);
    let mut served = Vec::new();
    for w in waiting {
        served.push(w.await.unwrap());
    }
    served.sort_by_key(|(_, record, _)| *record);
    assert!(served.iter().all(|(_, _, idem)| *idem == Some(Idem::Fresh)));
    let at: Vec<_> = served.iter().map(|(at, _, _)| *at).collect();
    // The burst at once; then, in the order they came, one token every 1/7 s.
    let ms = std::time::Duration::from_millis;
    assert!(at[..3].iter().all(|t| *t < ms(100)), "{served:?}");
    assert!(
        at[2] < at[3] && at[3] < at[4] && at[4] < at[5],
        "{served:?}"
    );
    assert!(at[5] >= ms(380) && at[5] < ms(2000), "{served:?}");

    let away = RedisGate::connect("redis://127.0.0.1:1", "tarefas-test-away").unwrap();
    let refused = away
        .acquire_and_begin(&keys, 9, 1, 1, std::time::Duration::from_millis(300))
        .await;
    assert!(refused.is_err(), "{refused:?}");
}
