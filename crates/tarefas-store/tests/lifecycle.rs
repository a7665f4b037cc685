//! The SQL of runs and items follows `tarefas_core::run`: every (from, to) pair of statuses
//! against a real database, the finish rule for every combination of counters, and a status
//! the core does not know is an error, never a guess.

use sqlx::PgPool;
use tarefas_core::run::{ItemStatus, RunStatus, ITEM_STATUSES, RUN_STATUSES};
use tarefas_core::task::TASK_STATUSES;
use tarefas_store::runs::{self, Outcome};
use tarefas_store::{tasks, StoreError};

const OUTCOMES: [ItemStatus; 4] = [
    ItemStatus::Done,
    ItemStatus::Skipped,
    ItemStatus::Failed,
    ItemStatus::Unknown,
];

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

/// A run of task 1 in `status` with these counters; its id.
async fn run(pool: &PgPool, status: RunStatus, counters: [i64; 5]) -> i64 {
    let [planned, done, skipped, failed, unknown] = counters;
    sqlx::query_scalar(
        "INSERT INTO runs (account_id, task_id, request_id, trigger, status, planned, done,
                           skipped, failed, unknown)
         VALUES (1, 1, gen_random_uuid()::text, 'manual', $1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(status.as_str())
    .bind(planned)
    .bind(done)
    .bind(skipped)
    .bind(failed)
    .bind(unknown)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `n` items of `run_id` in `status`; their ids.
async fn items(pool: &PgPool, run_id: i64, status: ItemStatus, n: i64) -> Vec<i64> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO run_items (run_id, record_id, status)
         SELECT $1, r, $2 FROM generate_series(1, $3) r RETURNING id",
    )
    .bind(run_id)
    .bind(status.as_str())
    .bind(n)
    .fetch_all(pool)
    .await
    .unwrap();
    ids.sort_unstable();
    ids
}

async fn item_status(pool: &PgPool, id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM run_items WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn set_status_moves_exactly_as_the_core_allows(pool: PgPool) {
    acme(&pool).await;
    for from in RUN_STATUSES {
        for to in RUN_STATUSES {
            let id = run(&pool, from, [0; 5]).await;
            let moved = runs::set_status(&pool, id, to, Some("why")).await.unwrap();
            assert_eq!(moved, from.can_become(to), "{from} → {to}");
            let r = runs::get(&pool, None, id).await.unwrap();
            assert_eq!(r.status, if moved { to } else { from }, "{from} → {to}");
            assert_eq!(
                r.finished_at.is_some(),
                moved && to.is_terminal(),
                "{from} → {to}"
            );
        }
    }
}

/// The named moves (planning done, cancel, resume) are among those the core allows, and
/// happen from exactly the statuses they name.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn the_named_moves_follow_the_core(pool: PgPool) {
    acme(&pool).await;
    for from in RUN_STATUSES {
        // Planning finished: planning → running (then done: nothing was planned).
        let id = run(&pool, from, [0; 5]).await;
        let after = runs::planned(&pool, id).await.unwrap().status;
        let moved = match from {
            RunStatus::Planning => RunStatus::Running,
            other => other,
        };
        let want = if moved.can_become(RunStatus::finished(0)) {
            RunStatus::finished(0)
        } else {
            moved
        };
        assert_eq!(after, want, "planned() from {from}");

        // Cancel: from every status that may become cancelled.
        let id = run(&pool, from, [3, 0, 0, 0, 0]).await;
        items(&pool, id, ItemStatus::Pending, 3).await;
        let cancelled = runs::cancel(&pool, None, id, "operator").await.unwrap();
        assert_eq!(cancelled, from.can_become(RunStatus::Cancelled), "{from}");
        let r = runs::get(&pool, None, id).await.unwrap();
        if cancelled {
            assert_eq!((r.status, r.skipped), (RunStatus::Cancelled, 3));
        } else {
            assert_eq!((r.status, r.skipped), (from, 0));
        }

        // Resume: paused → planning only.
        let id = run(&pool, from, [0; 5]).await;
        let mut tx = pool.begin().await.unwrap();
        let unpaused = runs::unpause(&mut tx, id).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(unpaused, from == RunStatus::Paused, "{from}");
        assert!(!unpaused || RunStatus::Paused.can_become(RunStatus::Planning));
    }
}

/// `try_finish` ends a run exactly when the core says, in the status the core says, for
/// every status and every combination of counters.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn try_finish_follows_the_finish_rule(pool: PgPool) {
    acme(&pool).await;
    let may_finish =
        |s: RunStatus| s.can_become(RunStatus::finished(0)) && s.can_become(RunStatus::finished(1));
    let mut finished = 0;
    for status in RUN_STATUSES {
        for done in 0..3 {
            for skipped in 0..2 {
                for failed in 0..3 {
                    for unknown in 0..3 {
                        let settled = done + skipped + failed + unknown;
                        for planned in [settled, settled + 1] {
                            let counters = [planned, done, skipped, failed, unknown];
                            let id = run(&pool, status, counters).await;
                            let got = runs::try_finish(&pool, id).await.unwrap();
                            let want = (may_finish(status) && planned == settled)
                                .then(|| RunStatus::finished((failed + unknown) as u64));
                            assert_eq!(got, want, "{status} {counters:?}");
                            let r = runs::get(&pool, None, id).await.unwrap();
                            assert_eq!(r.status, want.unwrap_or(status), "{status} {counters:?}");
                            finished += usize::from(want.is_some());
                        }
                    }
                }
            }
        }
    }
    assert!(finished > 0, "no combination finished a run");
}

/// Recording outcomes finishes a run like `try_finish`: for every status of the run and
/// every pair of outcomes of its last two items.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn record_follows_the_finish_rule(pool: PgPool) {
    acme(&pool).await;
    for status in RUN_STATUSES {
        for a in OUTCOMES {
            for b in OUTCOMES {
                // One item settled earlier (failed or not), two being sent now.
                for earlier_failed in [0, 1] {
                    let counters = [3, 1 - earlier_failed, 0, earlier_failed, 0];
                    let id = run(&pool, status, counters).await;
                    let ids = items(&pool, id, ItemStatus::Sending, 2).await;
                    let outcomes = [(ids[0], a), (ids[1], b)].map(|(item_id, status)| Outcome {
                        item_id,
                        status,
                        reason: None,
                    });
                    runs::record(&pool, id, None, &outcomes).await.unwrap();
                    let r = runs::get(&pool, None, id).await.unwrap();
                    let bad = |s| u64::from(matches!(s, ItemStatus::Failed | ItemStatus::Unknown));
                    let errors = earlier_failed as u64 + bad(a) + bad(b);
                    let finishes = status.can_become(RunStatus::finished(0))
                        && status.can_become(RunStatus::finished(1));
                    let want = if finishes {
                        RunStatus::finished(errors)
                    } else {
                        status
                    };
                    assert_eq!(r.status, want, "{status}: {a}, {b}, {earlier_failed}");
                    assert_eq!(r.finished_at.is_some(), finishes);
                    assert_eq!(r.settled(), 3, "the counters moved whatever the status");
                }
            }
        }
    }
}

/// Claim, release and record move an item exactly from the statuses the core allows.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn item_moves_follow_the_core(pool: PgPool) {
    acme(&pool).await;
    let id = run(&pool, RunStatus::Running, [1000, 0, 0, 0, 0]).await;
    for from in ITEM_STATUSES {
        let item = items(&pool, id, from, 1).await[0];
        let claimed = runs::claim(&pool, id, &[item]).await.unwrap().is_some();
        assert_eq!(
            claimed,
            from.can_become(ItemStatus::Sending),
            "claim {from}"
        );
        sqlx::query("DELETE FROM run_items WHERE run_id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();

        let item = items(&pool, id, from, 1).await[0];
        let released = runs::release(&pool, id, &[item]).await.unwrap() == 1;
        assert_eq!(
            released,
            from.can_become(ItemStatus::Pending),
            "release {from}"
        );
        sqlx::query("DELETE FROM run_items WHERE run_id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();

        // An outcome is recorded only on an item that may end in any of them: one being
        // sent (a pending item may be skipped, but only by a cancel).
        for to in OUTCOMES {
            let item = items(&pool, id, from, 1).await[0];
            let outcome = Outcome {
                item_id: item,
                status: to,
                reason: None,
            };
            runs::record(&pool, id, None, &[outcome]).await.unwrap();
            let recorded = item_status(&pool, item).await == to.as_str() && from != to;
            let allowed = OUTCOMES.iter().all(|o| from.can_become(*o));
            assert_eq!(recorded, allowed, "record {from} → {to}");
            sqlx::query("DELETE FROM run_items WHERE run_id = $1")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    // Claims only while the run accepts calls.
    for status in RUN_STATUSES {
        let id = run(&pool, status, [1, 0, 0, 0, 0]).await;
        let item = items(&pool, id, ItemStatus::Pending, 1).await[0];
        let claimed = runs::claim(&pool, id, &[item]).await.unwrap().is_some();
        assert_eq!(claimed, status.is_active(), "claim in a {status} run");
    }
    // A status that is not an outcome is refused, not counted.
    let item = items(&pool, id, ItemStatus::Sending, 1).await[0];
    let not_final = Outcome {
        item_id: item,
        status: ItemStatus::Pending,
        reason: None,
    };
    let err = runs::record(&pool, id, None, &[not_final])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

/// The schema's CHECK constraints list exactly the core's statuses.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn the_schema_knows_the_core_statuses(pool: PgPool) {
    for (table, names) in [
        ("runs", RUN_STATUSES.map(|s| s.as_str()).to_vec()),
        ("run_items", ITEM_STATUSES.map(|s| s.as_str()).to_vec()),
        ("tasks", TASK_STATUSES.map(|s| s.as_str()).to_vec()),
    ] {
        let def: String = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = $1::regclass AND conname = $2",
        )
        .bind(table)
        .bind(format!("{table}_status_check"))
        .fetch_one(&pool)
        .await
        .unwrap();
        let listed = def.matches("::text").count();
        assert_eq!(listed, names.len(), "{table}: {def}");
        for name in names {
            assert!(
                def.contains(&format!("'{name}'")),
                "{table}: {def} lacks {name}"
            );
        }
    }
}

/// A status the core does not know (written past the CHECK constraint) is an error that
/// names it and its run, never read as some other status.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn an_unknown_status_is_an_error(pool: PgPool) {
    acme(&pool).await;
    let id = run(&pool, RunStatus::Running, [1, 0, 0, 0, 0]).await;
    let item = items(&pool, id, ItemStatus::Pending, 1).await[0];
    sqlx::raw_sql(&format!(
        "ALTER TABLE runs DROP CONSTRAINT runs_status_check;
         ALTER TABLE run_items DROP CONSTRAINT run_items_status_check;
         ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
         UPDATE runs SET status = 'finished' WHERE id = {id};
         UPDATE run_items SET status = 'lost' WHERE id = {item};
         UPDATE tasks SET status = 'archived' WHERE id = 1;"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let invalid = |e: StoreError| match e {
        StoreError::Invalid(why) => why,
        other => panic!("not an invalid-data error: {other:?}"),
    };
    let why = invalid(runs::get(&pool, None, id).await.unwrap_err());
    assert!(
        why.contains("unknown run status \"finished\"") && why.contains(&format!("in run {id}")),
        "{why}"
    );
    let why = invalid(runs::list(&pool, None, None, 10).await.unwrap_err());
    assert!(why.contains("unknown run status \"finished\""), "{why}");
    let mut tx = pool.begin().await.unwrap();
    let why = invalid(runs::hold_for_page(&mut tx, id).await.unwrap_err());
    assert!(why.contains(&format!("in run {id}")), "{why}");
    drop(tx);
    let why = invalid(runs::item_counts(&pool, id).await.unwrap_err());
    assert!(why.contains("unknown item status \"lost\""), "{why}");
    let why = invalid(tasks::list(&pool, None).await.unwrap_err());
    assert!(why.contains("unknown task status \"archived\""), "{why}");
}
