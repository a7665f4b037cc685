//! The reconciler's selection (`tarefas_store::reconcile`): which runs it republishes, from
//! the database alone, and that replicas never republish one run twice for one backoff step.

use std::time::Duration;

use sqlx::PgPool;
use tarefas_core::run::{ItemStatus, RunStatus};
use tarefas_store::reconcile::{self, DueRun};
use tarefas_store::runs::{self, Outcome};

const QUIET: Duration = Duration::from_secs(60);
const CAP: Duration = Duration::from_secs(240);

/// Account 1 and its task 1.
async fn acme(pool: &PgPool) {
    sqlx::raw_sql(
        "INSERT INTO accounts (id, name) VALUES (1, 'acme');
         INSERT INTO tasks (id, account_id, name, definition, table_name, recurrence_kind, time_zone)
             VALUES (1, 1, 't', '{}', 'contacts', 'manual', 'UTC');",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Run `id` in `status` with `pending` pending items and `done` done ones, last moved
/// `moved_ago` ago; the ids of its pending items.
async fn run(
    pool: &PgPool,
    id: i64,
    status: &str,
    pending: i64,
    done: i64,
    moved_ago: &str,
) -> Vec<i64> {
    sqlx::query(&format!(
        "INSERT INTO runs (id, account_id, task_id, request_id, trigger, status, planned, done,
                           last_progress_at, started_at)
         VALUES ($1, 1, 1, 'r' || $1, 'manual', $2, $3, $4, now() - interval '{moved_ago}',
                 now() - interval '2 days')"
    ))
    .bind(id)
    .bind(status)
    .bind(pending + done)
    .bind(done)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO run_items (run_id, record_id, status)
         SELECT $1, r, 'done' FROM generate_series(1, $2) r",
    )
    .bind(id)
    .bind(done)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query_scalar(
        "INSERT INTO run_items (run_id, record_id)
         SELECT $1, r FROM generate_series($2 + 1, $2 + $3) r RETURNING id",
    )
    .bind(id)
    .bind(done)
    .bind(pending)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// One reconciler step as the worker does it: the next due run, republished (backoff
/// moved on) and committed. Its id.
async fn step(pool: &PgPool) -> Option<DueRun> {
    let mut tx = pool.begin().await.unwrap();
    let due = reconcile::next_due(&mut tx, QUIET).await.unwrap()?;
    reconcile::republished(&mut tx, &due, QUIET, CAP)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Some(due)
}

/// Every due run, each republished once.
async fn sweep(pool: &PgPool) -> Vec<i64> {
    let mut ids = Vec::new();
    while let Some(due) = step(pool).await {
        ids.push(due.run_id);
    }
    ids.sort_unstable();
    ids
}

async fn next_at_in(pool: &PgPool, id: i64) -> f64 {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM next_reconcile_at - now())::float8 FROM runs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Moves the run's backoff into the past (as if its wait were over).
async fn backoff_over(pool: &PgPool, id: i64) {
    sqlx::query("UPDATE runs SET next_reconcile_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn only_quiet_unfinished_runs_without_a_live_claim_are_due(pool: PgPool) {
    acme(&pool).await;
    // 1: quiet for an hour, nothing claims it: due.
    run(&pool, 1, "running", 10, 5, "1 hour").await;
    // 2: quiet, but a worker holds a live claim of some of its items: not due.
    let two = run(&pool, 2, "running", 10, 0, "1 hour").await;
    runs::claim(&pool, 2, &two[..3])
        .await
        .unwrap()
        .expect("claimed");
    // 3: moved 5 s ago: not due.
    run(&pool, 3, "running", 10, 0, "5 seconds").await;
    // 4, 5, 6, 7: finished or paused runs are never due, however quiet.
    run(&pool, 4, "done", 0, 10, "1 hour").await;
    run(&pool, 5, "cancelled", 3, 0, "1 hour").await;
    run(&pool, 6, "paused", 10, 0, "1 hour").await;
    run(&pool, 7, "done_with_errors", 0, 10, "1 hour").await;
    // 8: planning, quiet: due (its ExecuteTask is gone), even with every planned item done.
    run(&pool, 8, "planning", 0, 10, "1 hour").await;
    // 9: running, quiet, a claim that was not touched for an hour (its worker died; the
    // sweeper settles the claim's items): due for its pending items.
    let nine = run(&pool, 9, "running", 10, 0, "1 hour").await;
    let dead = runs::claim(&pool, 9, &nine[..2]).await.unwrap().unwrap();
    sqlx::query("UPDATE run_claims SET claimed_at = now() - interval '1 hour' WHERE id = $1")
        .bind(dead.id)
        .execute(&pool)
        .await
        .unwrap();
    // 10: from before the migration (no last_progress_at), started two days ago: due.
    run(&pool, 10, "running", 4, 0, "1 hour").await;
    sqlx::query("UPDATE runs SET last_progress_at = NULL WHERE id = 10")
        .execute(&pool)
        .await
        .unwrap();

    assert_eq!(sweep(&pool).await, [1, 8, 9, 10]);
    // Republished: none is due again before its backoff is over.
    assert_eq!(sweep(&pool).await, Vec::<i64>::new());
    let wait = next_at_in(&pool, 1).await;
    assert!((55.0..=60.0).contains(&wait), "{wait}");

    // The live claim ends (the worker handed its items back, settling none): the run did
    // not move, so it is due now.
    runs::release(&pool, 2, &two[..3]).await.unwrap();
    let claim: i64 = sqlx::query_scalar("SELECT id FROM run_claims WHERE run_id = 2")
        .fetch_one(&pool)
        .await
        .unwrap();
    runs::record(&pool, 2, Some(claim), &[]).await.unwrap();
    assert_eq!(sweep(&pool).await, [2]);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn settling_an_item_is_progress_and_resets_the_backoff(pool: PgPool) {
    acme(&pool).await;
    let items = run(&pool, 1, "running", 10, 0, "1 hour").await;
    // Republished with no progress in between: 60 s, 120 s, 240 s, 240 s.
    let mut waits = Vec::new();
    for _ in 0..4 {
        let due = step(&pool).await.expect("due");
        waits.push((due.attempts, next_at_in(&pool, 1).await.round() as i64));
        backoff_over(&pool, 1).await;
    }
    assert_eq!(waits, [(0, 60), (1, 120), (2, 240), (3, 240)]);

    // A worker settles one item: the run moved; it is not due while it is fresh.
    let claim = runs::claim(&pool, 1, &items[..1]).await.unwrap().unwrap();
    let outcome = Outcome {
        item_id: items[0],
        status: ItemStatus::Done,
        reason: None,
    };
    runs::record(&pool, 1, Some(claim.id), &[outcome])
        .await
        .unwrap();
    assert!(step(&pool).await.is_none(), "moved just now");
    let moved: bool = sqlx::query_scalar(
        "SELECT last_progress_at > now() - interval '5 seconds' FROM runs WHERE id = 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(moved, "recording an outcome touches last_progress_at");

    // Quiet again later: the backoff starts over at one quiet period.
    sqlx::query("UPDATE runs SET last_progress_at = now() - interval '1 hour' WHERE id = 1")
        .execute(&pool)
        .await
        .unwrap();
    let due = step(&pool).await.expect("due again");
    assert_eq!(due.attempts, 0, "the run moved since the last republish");
    assert_eq!(next_at_in(&pool, 1).await.round() as i64, 60);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_planning_page_is_progress(pool: PgPool) {
    acme(&pool).await;
    run(&pool, 1, "planning", 0, 0, "1 hour").await;
    let mut tx = pool.begin().await.unwrap();
    runs::plan_page(&mut tx, 1, &[1, 2, 3], 3).await.unwrap();
    tx.commit().await.unwrap();
    assert!(step(&pool).await.is_none(), "a page was just planned");
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn nothing_is_due_while_the_outbox_is_not_being_relayed(pool: PgPool) {
    acme(&pool).await;
    run(&pool, 1, "running", 10, 0, "1 hour").await;
    // A message written two minutes ago and still not published: RabbitMQ is down.
    sqlx::query(
        "INSERT INTO outbox (routing_key, payload, created_at)
         VALUES ('batch', '\\x00', now() - interval '2 minutes')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(step(&pool).await.is_none());
    sqlx::query("DELETE FROM outbox")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        step(&pool).await.map(|d| d.status),
        Some(RunStatus::Running)
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_locked_run_is_skipped_not_waited_for(pool: PgPool) {
    acme(&pool).await;
    run(&pool, 1, "running", 10, 0, "1 hour").await;
    run(&pool, 2, "running", 10, 0, "1 hour").await;
    let mut a = pool.begin().await.unwrap();
    let first = reconcile::next_due(&mut a, QUIET).await.unwrap().unwrap();
    // Another replica, while the first holds its run: it gets the other one at once.
    let mut b = pool.begin().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), reconcile::next_due(&mut b, QUIET))
        .await
        .expect("waited for a locked run")
        .unwrap()
        .unwrap();
    assert_ne!(first.run_id, second.run_id);
    let mut c = pool.begin().await.unwrap();
    assert!(reconcile::next_due(&mut c, QUIET).await.unwrap().is_none());
    drop(c);
    reconcile::republished(&mut a, &first, QUIET, CAP)
        .await
        .unwrap();
    a.commit().await.unwrap();
    // The second replica gives up (rolls back): its run is due again, the first's is not.
    // Rolled back and awaited: a dropped transaction rolls back in the background, and the
    // sweep could still find the run locked.
    b.rollback().await.unwrap();
    assert_eq!(sweep(&pool).await, [second.run_id]);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn concurrent_reconcilers_republish_each_run_once(pool: PgPool) {
    acme(&pool).await;
    for id in 1..=20 {
        run(&pool, id, "running", 5, 0, "1 hour").await;
    }
    // Four replicas sweeping at once, each step also writing to the outbox as the worker
    // does, in the transaction that holds the run.
    let mut replicas = Vec::new();
    for _ in 0..4 {
        let pool = pool.clone();
        replicas.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut tx = pool.begin().await.unwrap();
                let Some(due) = reconcile::next_due(&mut tx, QUIET).await.unwrap() else {
                    break;
                };
                tarefas_store::outbox::enqueue(
                    &mut *tx,
                    "batch",
                    &[due.run_id.to_be_bytes().to_vec()],
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                reconcile::republished(&mut tx, &due, QUIET, CAP)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                mine.push(due.run_id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for r in replicas {
        all.extend(r.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=20).collect::<Vec<i64>>(), "each run exactly once");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 20);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn stalled_counts_unfinished_runs_that_did_not_move(pool: PgPool) {
    acme(&pool).await;
    run(&pool, 1, "running", 10, 0, "20 minutes").await;
    run(&pool, 2, "planning", 0, 0, "20 minutes").await;
    run(&pool, 3, "running", 10, 0, "1 minute").await;
    run(&pool, 4, "done", 0, 10, "20 minutes").await;
    run(&pool, 5, "paused", 10, 0, "20 minutes").await;
    let n = reconcile::stalled(&pool, Duration::from_secs(15 * 60))
        .await
        .unwrap();
    assert_eq!(n, 2);
}
