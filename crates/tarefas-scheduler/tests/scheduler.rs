//! The scheduler against a real Postgres: fires emitted once at their time, misfires
//! recorded with one catch-up, and several schedulers racing over the same due tasks.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tarefas_core::task::{parse_task, Format};
use tarefas_proto::v1::Trigger;
use tarefas_scheduler::{tick, SchedulerConfig};
use tarefas_store::accounts::{self, NewAccount};
use tarefas_store::tasks::{self, TaskStatus};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn account(pool: &PgPool) -> i64 {
    accounts::add(
        pool,
        &NewAccount {
            name: "acme".into(),
            company_id: None,
            token_ref: None,
            webhook_token_ref: None,
            rate_limit_per_s: 10,
        },
    )
    .await
    .unwrap()
    .id
}

async fn task(pool: &PgPool, acct: i64, recurrence: &str, created: DateTime<Utc>) -> i64 {
    let yaml = format!("name: T\ntime_zone: UTC\nrecurrence: {recurrence}\ntable: chats\naction: {{chat: reopen}}\n");
    let spec = parse_task(&yaml, Format::Yaml).unwrap();
    tasks::create(pool, acct, &spec, created).await.unwrap().id
}

async fn outbox(pool: &PgPool) -> Vec<tarefas_proto::v1::ExecuteTask> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT payload FROM outbox ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter()
        .map(|(p,)| tarefas_proto::decode_execute_task(p).unwrap())
        .collect()
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_due_fire_is_emitted_once_and_the_task_moves_on(pool: PgPool) {
    let acct = account(&pool).await;
    let id = task(
        &pool,
        acct,
        "{kind: daily, at: '09:00'}",
        utc("2026-12-01T08:00:00Z"),
    )
    .await;
    let cfg = SchedulerConfig::default();
    // Not yet due.
    assert_eq!(
        tick(&pool, utc("2026-12-01T08:59:59Z"), &cfg)
            .await
            .unwrap()
            .emitted,
        0
    );
    let r = tick(&pool, utc("2026-12-01T09:00:30Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.tasks, r.emitted, r.missed), (1, 1, 0));
    assert_eq!(r.lateness, [std::time::Duration::from_secs(30)]);
    let msgs = outbox(&pool).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].task_id, id);
    assert_eq!(msgs[0].account, "acme");
    assert_eq!(msgs[0].trigger, Trigger::Scheduled as i32);
    assert_eq!(
        msgs[0].scheduled_for_unix_ms,
        utc("2026-12-01T09:00:00Z").timestamp_millis()
    );
    assert_eq!(
        msgs[0].request_id,
        tarefas_core::run::scheduled_request_id(id, utc("2026-12-01T09:00:00Z"))
    );
    let t = tasks::get(&pool, None, id).await.unwrap();
    assert_eq!(t.next_fire_at, Some(utc("2026-12-02T09:00:00Z")));
    assert_eq!(t.last_fire_at, Some(utc("2026-12-01T09:00:00Z")));
    // Ticking again at the same time emits nothing more.
    assert_eq!(
        tick(&pool, utc("2026-12-01T09:00:40Z"), &cfg)
            .await
            .unwrap()
            .emitted,
        0
    );
    assert_eq!(outbox(&pool).await.len(), 1);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn misfires_are_recorded_and_replaced_by_one_catch_up(pool: PgPool) {
    let acct = account(&pool).await;
    let id = task(
        &pool,
        acct,
        "{kind: daily, at: '09:00'}",
        utc("2026-12-01T08:00:00Z"),
    )
    .await;
    // The scheduler was down for three days.
    let r = tick(
        &pool,
        utc("2026-12-04T10:00:00Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.emitted, r.missed),
        (1, 4),
        "fires of 1, 2, 3 and 4 Dec were all late"
    );
    let msgs = outbox(&pool).await;
    assert_eq!(
        msgs[0].scheduled_for_unix_ms,
        utc("2026-12-04T09:00:00Z").timestamp_millis()
    );
    assert_eq!(msgs[0].requested_by, "scheduler (catch-up)");
    assert_eq!(tasks::missed(&pool, id).await.unwrap().len(), 4);
    assert_eq!(
        tasks::get(&pool, None, id).await.unwrap().next_fire_at,
        Some(utc("2026-12-05T09:00:00Z"))
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn fires_within_the_grace_are_all_emitted(pool: PgPool) {
    let acct = account(&pool).await;
    task(
        &pool,
        acct,
        "{kind: every_minutes, n: 1, starts_at: '2026-12-01T09:00'}",
        utc("2026-12-01T08:00:00Z"),
    )
    .await;
    let r = tick(
        &pool,
        utc("2026-12-01T09:02:10Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.emitted, r.missed),
        (3, 0),
        "09:00, 09:01 and 09:02, each once"
    );
    let fires: BTreeSet<i64> = outbox(&pool)
        .await
        .iter()
        .map(|m| m.scheduled_for_unix_ms)
        .collect();
    assert_eq!(fires.len(), 3);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn manual_paused_and_deleted_tasks_never_fire(pool: PgPool) {
    let acct = account(&pool).await;
    let created = utc("2026-12-01T08:00:00Z");
    task(&pool, acct, "{kind: manual}", created).await;
    let paused = task(&pool, acct, "{kind: daily, at: '09:00'}", created).await;
    let deleted = task(&pool, acct, "{kind: daily, at: '09:00'}", created).await;
    tasks::set_status(&pool, None, paused, TaskStatus::Paused, created)
        .await
        .unwrap();
    tasks::set_status(&pool, None, deleted, TaskStatus::Deleted, created)
        .await
        .unwrap();
    let r = tick(
        &pool,
        utc("2026-12-01T09:00:01Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.emitted, 0);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn three_schedulers_over_a_thousand_due_tasks_emit_each_fire_once(pool: PgPool) {
    let acct = account(&pool).await;
    sqlx::query(
        "INSERT INTO tasks (account_id, name, definition, table_name, recurrence_kind, time_zone, next_fire_at)
         SELECT $1, 'T' || g, $2, 'chats', 'daily', 'UTC', $3 FROM generate_series(1, 1000) g",
    )
    .bind(acct)
    .bind(serde_json::json!({"name": "T", "time_zone": "UTC", "recurrence": {"kind": "daily", "at": "09:00"},
                             "table": "chats", "action": {"chat": "reopen"}}))
    .bind(utc("2026-12-01T09:00:00Z"))
    .execute(&pool)
    .await
    .unwrap();
    let cfg = SchedulerConfig {
        batch: 50,
        ..SchedulerConfig::default()
    };
    let now = utc("2026-12-01T09:00:05Z");
    let (a, b, c) = tokio::join!(
        tick(&pool, now, &cfg),
        tick(&pool, now, &cfg),
        tick(&pool, now, &cfg)
    );
    let emitted = a.unwrap().emitted + b.unwrap().emitted + c.unwrap().emitted;
    assert_eq!(emitted, 1000);
    let msgs = outbox(&pool).await;
    let distinct: BTreeSet<&str> = msgs.iter().map(|m| m.request_id.as_str()).collect();
    assert_eq!((msgs.len(), distinct.len()), (1000, 1000));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE next_fire_at <= $1")
        .bind(now)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
