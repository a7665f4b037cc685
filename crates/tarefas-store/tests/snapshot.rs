//! A run executes what was planned: `runs::create_or_get` stores the task's definition and
//! version with the run, an edit bumps the task's version without touching runs made
//! before, a delivery that finds its run again gets the run's snapshot (even after the task
//! was edited or deleted), and no run is made for a deleted task.

mod common;

use chrono::Utc;
use common::account;
use serde_json::{json, Value};
use sqlx::PgPool;
use tarefas_core::task::validate_task;
use tarefas_store::runs::{self, NewRun};
use tarefas_store::tasks::{self, TaskStatus};
use tarefas_store::StoreError;

fn flow(flow: u32) -> Value {
    json!({
        "name": "Lembrete", "account": "acme", "time_zone": "UTC",
        "recurrence": {"kind": "manual"}, "table": "contacts",
        "action": {"flow": {"project": 1, "flow": flow, "channel": "c2a7-uuid"}},
    })
}

fn chats_close() -> Value {
    json!({
        "name": "Fechar", "account": "acme", "time_zone": "UTC",
        "recurrence": {"kind": "manual"}, "table": "chats", "action": {"chat": "close"},
    })
}

fn new_run<'a>(account_id: i64, task_id: i64, request_id: &'a str) -> NewRun<'a> {
    NewRun {
        account_id,
        task_id,
        request_id,
        trigger: "manual",
        scheduled_for: None,
        requested_by: Some("test"),
    }
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_run_keeps_the_definition_and_version_it_was_created_with(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let spec = validate_task(&flow(42)).unwrap();
    let task = tasks::create(&pool, acme, &spec, Utc::now()).await.unwrap();
    assert_eq!(task.version, 1);

    let (first, created) = runs::create_or_get(&pool, &new_run(acme, task.id, "r1"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(first.task_version, 1);
    let snap = runs::snapshot(&pool, first.id).await.unwrap();
    assert_eq!((snap.task_version, &snap.definition), (1, &task.definition));

    // Edited twice: the task's version moves, the run's snapshot does not.
    let edited = tasks::update(
        &pool,
        Some(acme),
        task.id,
        &validate_task(&flow(77)).unwrap(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(edited.version, 2);
    let edited = tasks::update(
        &pool,
        Some(acme),
        task.id,
        &validate_task(&chats_close()).unwrap(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!((edited.version, edited.table_name.as_str()), (3, "chats"));
    let snap = runs::snapshot(&pool, first.id).await.unwrap();
    assert_eq!(snap.task_version, 1);
    let spec = snap.spec().unwrap();
    assert_eq!(spec.table, tarefas_core::Table::Contacts);
    assert!(
        matches!(&spec.action, tarefas_core::Action::RunFlow(f) if f.flow == 42),
        "{:?}",
        spec.action
    );

    // The same request again (a redelivery, a resumed planning): the run and its snapshot.
    let (again, created) = runs::create_or_get(&pool, &new_run(acme, task.id, "r1"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!((again.id, again.task_version), (first.id, 1));

    // A new request: the current version.
    let (next, created) = runs::create_or_get(&pool, &new_run(acme, task.id, "r2"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(next.task_version, 3);
    let snap = runs::snapshot(&pool, next.id).await.unwrap();
    assert_eq!(snap.definition, edited.definition);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_deleted_task_gets_no_new_run_but_its_runs_keep_their_snapshot(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let other = account(&pool, "outra").await;
    let spec = validate_task(&flow(42)).unwrap();
    let task = tasks::create(&pool, acme, &spec, Utc::now()).await.unwrap();
    let (run, _) = runs::create_or_get(&pool, &new_run(acme, task.id, "r1"))
        .await
        .unwrap();
    // Another account's request for this task makes nothing.
    let theirs = runs::create_or_get(&pool, &new_run(other, task.id, "theirs")).await;
    assert!(matches!(theirs, Err(StoreError::NotFound(_))), "{theirs:?}");

    tasks::set_status(&pool, Some(acme), task.id, TaskStatus::Deleted, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        runs::unfinished(&pool, task.id).await.unwrap(),
        vec![run.id]
    );
    let (found, created) = runs::create_or_get(&pool, &new_run(acme, task.id, "r1"))
        .await
        .unwrap();
    assert_eq!((found.id, created), (run.id, false));
    assert_eq!(
        runs::snapshot(&pool, run.id).await.unwrap().definition,
        task.definition
    );
    let late = runs::create_or_get(&pool, &new_run(acme, task.id, "r2")).await;
    assert!(matches!(late, Err(StoreError::NotFound(_))), "{late:?}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);

    runs::cancel(&pool, Some(acme), run.id, "test")
        .await
        .unwrap();
    assert!(runs::unfinished(&pool, task.id).await.unwrap().is_empty());
}

/// Runs inserted without a snapshot (fixtures, tools) take their task's, in the same
/// statement.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_run_inserted_without_a_snapshot_takes_its_tasks(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let spec = validate_task(&flow(42)).unwrap();
    let task = tasks::create(&pool, acme, &spec, Utc::now()).await.unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (account_id, task_id, request_id, trigger) VALUES ($1, $2, 'raw', 'manual')
         RETURNING id",
    )
    .bind(acme)
    .bind(task.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let snap = runs::snapshot(&pool, id).await.unwrap();
    assert_eq!((snap.task_version, snap.definition), (1, task.definition));
}
