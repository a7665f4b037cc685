//! Retention: `prune` deletes old finished runs with their items and claims, old missed
//! fires, long-revoked tokens and deleted tasks left without runs — in statements of at
//! most `batch` items — and never a live run, even one that changes status while the
//! prune is under way.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tarefas_store::prune::{prune, PruneOptions, PruneReport};

/// Account 1 with tasks 1 (active) and 2 (deleted 40 days ago, no runs), 3 (deleted 40
/// days ago, one live run); runs 1.. as `(id, status, finished days ago, items)`.
async fn history(pool: &PgPool, runs: &[(i64, &str, Option<i64>, i64)]) {
    sqlx::raw_sql(
        "INSERT INTO accounts (id, name) VALUES (1, 'acme');
         INSERT INTO tasks (id, account_id, name, definition, table_name, recurrence_kind, time_zone, status, updated_at)
             VALUES (1, 1, 't', '{}', 'contacts', 'manual', 'UTC', 'active', now() - interval '40 days'),
                    (2, 1, 'gone', '{}', 'contacts', 'manual', 'UTC', 'deleted', now() - interval '40 days'),
                    (3, 1, 'gone but running', '{}', 'contacts', 'manual', 'UTC', 'deleted', now() - interval '40 days');",
    )
    .execute(pool)
    .await
    .unwrap();
    for &(id, status, days, items) in runs {
        let task = if id == 99 { 3 } else { 1 };
        sqlx::query(
            "INSERT INTO runs (id, account_id, task_id, request_id, trigger, status, started_at, finished_at, planned)
             VALUES ($1, 1, $5, 'r' || $1, 'manual', $2, now() - interval '60 days',
                     now() - make_interval(days => $3::int), $4)",
        )
        .bind(id)
        .bind(status)
        .bind(days.map(|d| d as i32))
        .bind(items)
        .bind(task)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO run_items (run_id, record_id, status)
             SELECT $1, r, CASE WHEN $2 IN ('running', 'paused', 'planning') THEN 'pending' ELSE 'done' END
             FROM generate_series(1, $3::bigint) r",
        )
        .bind(id)
        .bind(status)
        .bind(items)
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn items_of(pool: &PgPool, run: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM run_items WHERE run_id = $1")
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn run_ids(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM runs ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn prune_with(pool: &PgPool, days: i64, batch: i64) -> (PruneReport, Vec<PruneReport>) {
    let mut conn = pool.acquire().await.unwrap();
    let mut steps = Vec::new();
    let options = PruneOptions {
        cutoff: Utc::now() - chrono::Duration::days(days),
        batch,
        pause: Duration::ZERO,
    };
    let report = prune(&mut conn, &options, |r| steps.push(r.clone()))
        .await
        .unwrap();
    (report, steps)
}

/// Old finished runs of every terminal status go with their items and claims; recent ones,
/// and live ones whatever their age (running, paused, planning — even with a stray
/// `finished_at`), stay whole. Old missed fires, long-revoked tokens and the deleted task
/// with no run go; the rest stays.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn prune_deletes_only_old_finished_history(pool: PgPool) {
    history(
        &pool,
        &[
            (1, "done", Some(40), 25_000),
            (2, "done_with_errors", Some(31), 10),
            (3, "cancelled", Some(90), 7),
            (4, "failed", Some(35), 0),
            (5, "done", Some(29), 50),
            (6, "running", None, 30),
            (7, "paused", None, 20),
            (8, "planning", None, 5),
            (9, "running", Some(45), 12),
            (99, "running", None, 3),
        ],
    )
    .await;
    // A claim of an old cancelled run (its worker died), one of the live run.
    sqlx::raw_sql(
        "INSERT INTO run_claims (run_id, item_ids, claimed_at) VALUES
             (3, ARRAY[1]::bigint[], now() - interval '90 days'),
             (6, ARRAY[1]::bigint[], now());
         INSERT INTO missed_fires (task_id, scheduled_for, recorded_at) VALUES
             (1, now() - interval '40 days', now() - interval '40 days'),
             (1, now() - interval '2 days', now() - interval '2 days');
         INSERT INTO api_tokens (account_id, name, token_sha256, revoked_at) VALUES
             (1, 'old', sha256('a'), now() - interval '31 days'),
             (1, 'recent', sha256('b'), now() - interval '1 day'),
             (1, 'live', sha256('c'), NULL);",
    )
    .execute(&pool)
    .await
    .unwrap();

    let (report, _) = prune_with(&pool, 30, 10_000).await;
    assert_eq!(
        (
            report.runs,
            report.items,
            report.claims,
            report.missed_fires,
            report.api_tokens,
            report.tasks
        ),
        (4, 25_017, 1, 1, 1, 1),
        "{report:?}"
    );
    assert_eq!(run_ids(&pool).await, vec![5, 6, 7, 8, 9, 99]);
    for (run, items) in [(5, 50), (6, 30), (7, 20), (8, 5), (9, 12), (99, 3)] {
        assert_eq!(items_of(&pool, run).await, items, "run {run}");
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM run_items")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total, 120, "no orphan items left");
    let claims: Vec<i64> = sqlx::query_scalar("SELECT run_id FROM run_claims")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(claims, vec![6]);
    let tokens: Vec<String> = sqlx::query_scalar("SELECT name FROM api_tokens ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(tokens, vec!["live", "recent"]);
    let tasks: Vec<i64> = sqlx::query_scalar("SELECT id FROM tasks ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(tasks, vec![1, 3], "the deleted task with a live run stays");
    let missed: i64 = sqlx::query_scalar("SELECT count(*) FROM missed_fires")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(missed, 1);

    // A second prune finds nothing.
    let (again, _) = prune_with(&pool, 30, 10_000).await;
    assert_eq!((again.runs, again.items), (0, 0), "{again:?}");
}

/// No statement deletes more than `batch` items: a large run takes several, small runs
/// share one; the totals add up.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn prune_deletes_in_bounded_batches(pool: PgPool) {
    let mut runs = vec![(1, "done", Some(40), 2_500)];
    runs.extend((2..=31).map(|id| (id, "done", Some(40), 30)));
    history(&pool, &runs).await;
    sqlx::raw_sql(
        "INSERT INTO missed_fires (task_id, scheduled_for, recorded_at)
         SELECT 1, now() - make_interval(days => 40, mins => m), now() - interval '40 days'
         FROM generate_series(1, 2500) m",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (report, steps) = prune_with(&pool, 30, 1_000).await;
    assert_eq!(
        (report.runs, report.items, report.missed_fires),
        (31, 3_400, 2_500)
    );
    let mut before = PruneReport::default();
    let mut item_statements = 0;
    for step in &steps {
        let items = step.items - before.items;
        let missed = step.missed_fires - before.missed_fires;
        assert!(
            items <= 1_000 && missed <= 1_000,
            "a statement deleted {items} items, {missed} missed fires"
        );
        if items > 0 {
            item_statements += 1;
        }
        before = step.clone();
    }
    // 2,500 items in three statements; 30 × 30 items in groups of at most 1,000: one
    // statement per 33 runs, so one.
    assert_eq!(item_statements, 4, "{steps:?}");
    assert_eq!(steps.last().map(|s| s.statements), Some(report.statements));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM run_items")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// A finished run that is moved back to a live status while the prune waits for its row
/// (a resume, a status fix by hand: any transition is an UPDATE of the row) is left whole:
/// the statement that deletes items re-checks the run under `FOR SHARE` after the other
/// transaction commits.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_run_made_live_while_the_prune_waits_is_left_whole(pool: PgPool) {
    history(
        &pool,
        &[(1, "done", Some(40), 300), (2, "failed", Some(40), 200)],
    )
    .await;
    // Run 2 is being moved back to running by a transaction not yet committed.
    let mut resume = pool.begin().await.unwrap();
    sqlx::query("UPDATE runs SET status = 'running', finished_at = NULL WHERE id = 2")
        .execute(&mut *resume)
        .await
        .unwrap();
    let pruning = {
        let pool = pool.clone();
        tokio::spawn(async move { prune_with(&pool, 30, 10_000).await })
    };
    // The prune reaches run 2's row and waits for it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pruning.is_finished(),
        "the prune did not wait for the run's row"
    );
    resume.commit().await.unwrap();
    let (report, _) = tokio::time::timeout(Duration::from_secs(10), pruning)
        .await
        .expect("the prune went on once the run's row was free")
        .unwrap();
    assert_eq!((report.runs, report.items), (1, 300), "{report:?}");
    assert_eq!(run_ids(&pool).await, vec![2]);
    assert_eq!(items_of(&pool, 2).await, 200);
}

/// The periodic prune runs on one process at a time: while another session holds the
/// advisory lock, a pass does nothing; once it is released, the pass prunes.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn one_periodic_prune_at_a_time(pool: PgPool) {
    use tarefas_store::prune::{prune_once_locked, Periodic, ADVISORY_LOCK};
    history(&pool, &[(1, "done", Some(40), 30)]).await;
    let settings = Periodic {
        retention: chrono::Duration::days(30),
        every: Duration::from_secs(3600),
        batch: 10_000,
        pause: Duration::ZERO,
    };
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(ADVISORY_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(prune_once_locked(&pool, &settings).await.unwrap(), None);
    assert_eq!(items_of(&pool, 1).await, 30);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(ADVISORY_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    let report = prune_once_locked(&pool, &settings)
        .await
        .unwrap()
        .expect("pruned");
    assert_eq!((report.runs, report.items), (1, 30));
    // The pass released the lock.
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(ADVISORY_LOCK)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert!(free);
}

/// A pruned run is never made again: a late copy of its `ExecuteTask` (replayed from the
/// dead-letter queue after the retention) finds its request id kept, and no run is
/// created — the planner gets an error it dead-letters, not a second run.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_pruned_run_is_not_made_again(pool: PgPool) {
    use tarefas_store::runs::{create_or_get, NewRun};
    history(&pool, &[(1, "done", Some(40), 3)]).await;
    let (report, _) = prune_with(&pool, 30, 10_000).await;
    assert_eq!(report.runs, 1);
    let again = create_or_get(
        &pool,
        &NewRun {
            account_id: 1,
            task_id: 1,
            request_id: "r1",
            trigger: "manual",
            scheduled_for: None,
            requested_by: None,
        },
    )
    .await;
    assert!(again.is_err(), "{again:?}");
    assert!(run_ids(&pool).await.is_empty());
    // Any other request still makes its run.
    let (run, created) = create_or_get(
        &pool,
        &NewRun {
            account_id: 1,
            task_id: 1,
            request_id: "r2",
            trigger: "manual",
            scheduled_for: None,
            requested_by: None,
        },
    )
    .await
    .unwrap();
    assert!(created && run.id > 0);
}
