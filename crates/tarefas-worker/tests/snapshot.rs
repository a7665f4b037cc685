//! Planning follows the run's snapshot of its task: a planning resumed after a crash, or
//! one whose task was edited or deleted after the run was created, plans the segment the
//! run was created with, never the task's current one.

use chrono::Utc;
use sqlx::PgPool;
use tarefas_core::task::{parse_task, Format};
use tarefas_proto::v1::ExecuteTask;
use tarefas_store::accounts::{self, NewAccount};
use tarefas_store::runs::{self, NewRun};
use tarefas_store::tasks::{self, TaskStatus};
use tarefas_worker::{plan, PlanConfig, Planned, WorkerError};

/// Account `acme` with contacts 1..=100 in its mirror: its id.
async fn acme(pool: &PgPool) -> i64 {
    let id = accounts::add(
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
    .id;
    sqlx::query(
        "INSERT INTO contacts (account_id, id) SELECT $1, g FROM generate_series(1, 100) g",
    )
    .bind(id)
    .execute(pool)
    .await
    .unwrap();
    id
}

fn flow_up_to(last_id: i64, flow: i64) -> tarefas_core::TaskSpec {
    parse_task(
        &format!(
            "name: F\ntable: contacts\ntime_zone: UTC\nfilter: {{field: id, op: lte, value: {last_id}}}\n\
             action:\n  flow: {{project: 1, flow: {flow}, channel: 5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11}}\n"
        ),
        Format::Yaml,
    )
    .unwrap()
}

fn request(task_id: i64, request_id: &str) -> ExecuteTask {
    ExecuteTask::manual(task_id, "acme", request_id.to_string(), "test", 0)
}

/// The run as a worker that crashed right after creating it left it (and, with `page`,
/// after freezing that first page of records).
async fn crashed_run(pool: &PgPool, account_id: i64, task_id: i64, page: &[i64]) -> i64 {
    let (run, created) = runs::create_or_get(
        pool,
        &NewRun {
            account_id,
            task_id,
            request_id: "req",
            trigger: "manual",
            scheduled_for: None,
            requested_by: Some("test"),
        },
    )
    .await
    .unwrap();
    assert!(created);
    if let Some(last) = page.last() {
        let mut tx = pool.begin().await.unwrap();
        runs::plan_page(&mut tx, run.id, page, *last).await.unwrap();
        tx.commit().await.unwrap();
    }
    run.id
}

async fn planned_records(pool: &PgPool, run_id: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT record_id FROM run_items WHERE run_id = $1 ORDER BY record_id")
        .bind(run_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_resumed_planning_plans_the_runs_snapshot_not_the_edited_task(pool: PgPool) {
    let account = acme(&pool).await;
    let task = tasks::create(&pool, account, &flow_up_to(50, 42), Utc::now())
        .await
        .unwrap();
    let first_page: Vec<i64> = (1..=10).collect();
    let run_id = crashed_run(&pool, account, task.id, &first_page).await;
    // Edited while no worker planned it: a narrower segment, another Flow.
    let edited = tasks::update(
        &pool,
        Some(account),
        task.id,
        &flow_up_to(20, 77),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(edited.version, 2);
    let config = PlanConfig {
        page_size: 7,
        batch_size: 5,
    };
    let planned = plan(&pool, &request(task.id, "req"), &config)
        .await
        .unwrap();
    assert_eq!(planned, Planned::Run { run_id, items: 50 });
    assert_eq!(
        planned_records(&pool, run_id).await,
        (1..=50).collect::<Vec<_>>()
    );
    let run = runs::get(&pool, None, run_id).await.unwrap();
    assert_eq!((run.task_version, run.status.as_str()), (1, "running"));

    // The next request plans the edited task.
    let Planned::Run {
        run_id: next,
        items,
    } = plan(&pool, &request(task.id, "next"), &config)
        .await
        .unwrap()
    else {
        panic!("not planned")
    };
    assert_eq!(items, 20);
    assert_eq!(runs::get(&pool, None, next).await.unwrap().task_version, 2);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_run_whose_task_was_deleted_is_still_planned_from_its_snapshot(pool: PgPool) {
    let account = acme(&pool).await;
    let task = tasks::create(&pool, account, &flow_up_to(30, 42), Utc::now())
        .await
        .unwrap();
    let run_id = crashed_run(&pool, account, task.id, &[]).await;
    tasks::set_status(
        &pool,
        Some(account),
        task.id,
        TaskStatus::Deleted,
        Utc::now(),
    )
    .await
    .unwrap();
    let planned = plan(&pool, &request(task.id, "req"), &PlanConfig::default())
        .await
        .unwrap();
    assert_eq!(planned, Planned::Run { run_id, items: 30 });
    assert_eq!(
        planned_records(&pool, run_id).await,
        (1..=30).collect::<Vec<_>>()
    );
    // A new request for the deleted task makes no run.
    let late = plan(&pool, &request(task.id, "late"), &PlanConfig::default()).await;
    assert!(
        matches!(&late, Err(WorkerError::Permanent(m)) if m.contains("not found")),
        "{late:?}"
    );
}
