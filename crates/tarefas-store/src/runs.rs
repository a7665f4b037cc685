//! Runs and run items: the truth of what was sent (design §3). A run is unique per request
//! id (and per task and scheduled time); an item per run and record. Items move
//! `pending → sending → done | skipped | failed | unknown` by conditional updates, so that two
//! workers never both claim one.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use tarefas_core::run::{ItemStatus, RunStatus};

use crate::StoreError;

/// A stored run with its counters.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Run {
    /// Run id.
    pub id: i64,
    /// Owning account.
    pub account_id: i64,
    /// The task it executes.
    pub task_id: i64,
    /// Idempotency key of the request that made it.
    pub request_id: String,
    /// `manual` or `scheduled`.
    pub trigger: String,
    /// The scheduled fire, for scheduled runs.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Who asked ("Executar Tarefa" by whom, or `scheduler`).
    pub requested_by: Option<String>,
    /// See [`RunStatus`].
    pub status: String,
    /// Why it is paused, failed or cancelled.
    pub status_reason: Option<String>,
    /// An operator asked to cancel it.
    pub cancel_requested: bool,
    /// When the run was created.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Planning checkpoint: last record id frozen into items.
    pub plan_cursor: Option<i64>,
    /// Items planned so far.
    pub planned: i64,
    /// Items done.
    pub done: i64,
    /// Items skipped (Flow policy, cancel).
    pub skipped: i64,
    /// Items failed for good.
    pub failed: i64,
    /// Items of unknown outcome (not resent).
    pub unknown: i64,
}

impl Run {
    /// The status as the domain type.
    pub fn status(&self) -> RunStatus {
        RunStatus::parse(&self.status).unwrap_or(RunStatus::Failed)
    }

    /// Items that reached a final state.
    pub fn settled(&self) -> i64 {
        self.done + self.skipped + self.failed + self.unknown
    }
}

const COLUMNS: &str = "id, account_id, task_id, request_id, trigger, scheduled_for, requested_by, status,
    status_reason, cancel_requested, started_at, finished_at, plan_cursor, planned, done, skipped, failed, unknown";

/// What an `ExecuteTask` asks for.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// Owning account.
    pub account_id: i64,
    /// The task.
    pub task_id: i64,
    /// Idempotency key.
    pub request_id: &'a str,
    /// `manual` or `scheduled`.
    pub trigger: &'a str,
    /// The fire time of a scheduled run.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Who asked.
    pub requested_by: Option<&'a str>,
}

/// Creates the run, or finds the one an earlier delivery of the same request (or the same
/// scheduled fire) created. The boolean is true when this call created it.
pub async fn create_or_get(pool: &PgPool, new: &NewRun<'_>) -> Result<(Run, bool), StoreError> {
    let created = sqlx::query_as::<_, Run>(&format!(
        "INSERT INTO runs (account_id, task_id, request_id, trigger, scheduled_for, requested_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(new.account_id)
    .bind(new.task_id)
    .bind(new.request_id)
    .bind(new.trigger)
    .bind(new.scheduled_for)
    .bind(new.requested_by)
    .fetch_optional(pool)
    .await?;
    if let Some(run) = created {
        return Ok((run, true));
    }
    let existing = sqlx::query_as::<_, Run>(&format!(
        "SELECT {COLUMNS} FROM runs WHERE request_id = $1
            OR (task_id = $2 AND scheduled_for = $3) ORDER BY id LIMIT 1"
    ))
    .bind(new.request_id)
    .bind(new.task_id)
    .bind(new.scheduled_for)
    .fetch_optional(pool)
    .await?;
    existing
        .map(|r| (r, false))
        .ok_or_else(|| StoreError::Conflict(format!("run for request {} vanished", new.request_id)))
}

/// The run `id`, within `account_id` when given.
pub async fn get(pool: &PgPool, account_id: Option<i64>, id: i64) -> Result<Run, StoreError> {
    sqlx::query_as::<_, Run>(&format!(
        "SELECT {COLUMNS} FROM runs WHERE id = $1 AND ($2::bigint IS NULL OR account_id = $2)"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("run {id} not found")))
}

/// The run made for `request_id`, if any.
pub async fn by_request(pool: &PgPool, request_id: &str) -> Result<Option<Run>, StoreError> {
    Ok(
        sqlx::query_as::<_, Run>(&format!("SELECT {COLUMNS} FROM runs WHERE request_id = $1"))
            .bind(request_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The newest runs first, filtered by account and task when given.
pub async fn list(
    pool: &PgPool,
    account_id: Option<i64>,
    task_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Run>, StoreError> {
    Ok(sqlx::query_as::<_, Run>(&format!(
        "SELECT {COLUMNS} FROM runs WHERE ($1::bigint IS NULL OR account_id = $1)
           AND ($2::bigint IS NULL OR task_id = $2) ORDER BY id DESC LIMIT $3"
    ))
    .bind(account_id)
    .bind(task_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Freezes one page of the segment into pending items and moves the planning checkpoint, in
/// the caller's transaction (which also writes the batch messages to the outbox). Returns
/// the ids of the items created (records already planned are skipped).
pub async fn plan_page(
    tx: &mut Transaction<'_, Postgres>,
    run_id: i64,
    record_ids: &[i64],
    cursor: i64,
) -> Result<Vec<i64>, StoreError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO run_items (run_id, record_id) SELECT $1, r FROM UNNEST($2::bigint[]) AS r
         ON CONFLICT (run_id, record_id) DO NOTHING RETURNING id",
    )
    .bind(run_id)
    .bind(record_ids)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query("UPDATE runs SET plan_cursor = $2, planned = planned + $3 WHERE id = $1")
        .bind(run_id)
        .bind(cursor)
        .bind(ids.len() as i64)
        .execute(&mut **tx)
        .await?;
    Ok(ids)
}

/// Marks planning finished (`planning → running`) and finishes the run at once when nothing
/// is left to send. Returns the run as it now stands.
pub async fn planned(pool: &PgPool, run_id: i64) -> Result<Run, StoreError> {
    sqlx::query("UPDATE runs SET status = 'running' WHERE id = $1 AND status = 'planning'")
        .bind(run_id)
        .execute(pool)
        .await?;
    try_finish(pool, run_id).await?;
    get(pool, None, run_id).await
}

/// Moves a run to `status` with a reason, if the transition is allowed from where it is.
/// Returns whether it moved.
pub async fn set_status(
    pool: &PgPool,
    run_id: i64,
    status: RunStatus,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let from: Vec<&str> = tarefas_core::run::RUN_STATUSES
        .iter()
        .filter(|s| s.can_become(status))
        .map(|s| s.as_str())
        .collect();
    let done = sqlx::query(
        "UPDATE runs SET status = $2, status_reason = COALESCE($3, status_reason),
                finished_at = CASE WHEN $4 THEN now() ELSE finished_at END
         WHERE id = $1 AND status = ANY($5)",
    )
    .bind(run_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(status.is_terminal())
    .bind(&from)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

// The statements on a batch's items find them by primary key only. Their other conditions
// are wrapped in `(…) IS TRUE`, which means the same for these NOT NULL columns but is not
// indexable: otherwise, while a new run's rows are not in the statistics yet (the
// estimate for its `run_id` is a few rows, not 200,000) and the dead versions left by
// `pending → sending → done` are not vacuumed, Postgres bitmap-ANDs the (run_id,
// record_id) index and the `sending` partial index, reading every index entry of the run
// for 100 rows: 20 ms a statement instead of 0.1 ms (see docs/benchmarks.md, fan-out).
// `batch_statements_use_only_the_primary_key` checks the plans.

/// Claims: `$1` run id, `$2` item ids.
pub(crate) const CLAIM_SQL: &str =
    "UPDATE run_items SET status = 'sending', claimed_at = now(), attempts = attempts + 1
     WHERE id = ANY($2) AND (run_id = $1 AND status = 'pending') IS TRUE
       AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND status IN ('planning', 'running'))
     RETURNING id, record_id";

/// Records outcomes: `$1` run id, `$2` item ids, `$3` statuses, `$4` reasons.
pub(crate) const RECORD_SQL: &str =
    "WITH o AS (SELECT * FROM UNNEST($2::bigint[], $3::text[], $4::text[]) AS o(id, status, reason)),
          u AS (UPDATE run_items i SET status = o.status, reason = o.reason, finished_at = now()
                FROM o WHERE i.id = o.id AND (i.run_id = $1 AND i.status = 'sending') IS TRUE
                RETURNING i.status)
     UPDATE runs SET
        done = done + (SELECT count(*) FROM u WHERE status = 'done'),
        skipped = skipped + (SELECT count(*) FROM u WHERE status = 'skipped'),
        failed = failed + (SELECT count(*) FROM u WHERE status = 'failed'),
        unknown = unknown + (SELECT count(*) FROM u WHERE status = 'unknown')
     WHERE id = $1";

/// Heartbeat: `$1` run id, `$2` item ids.
pub(crate) const TOUCH_SQL: &str = "UPDATE run_items SET claimed_at = now()
     WHERE id = ANY($2) AND (run_id = $1 AND status = 'sending') IS TRUE";

/// Hands back: `$1` run id, `$2` item ids.
pub(crate) const RELEASE_SQL: &str = "UPDATE run_items SET status = 'pending', claimed_at = NULL
     WHERE id = ANY($2) AND (run_id = $1 AND status = 'sending') IS TRUE";

/// Claims the `pending` items among `item_ids` of a run that is still going (planning or
/// running): they become `sending`. Returns `(item id, record id)` of each claimed item.
pub async fn claim(
    pool: &PgPool,
    run_id: i64,
    item_ids: &[i64],
) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(sqlx::query_as::<_, (i64, i64)>(CLAIM_SQL)
        .bind(run_id)
        .bind(item_ids)
        .fetch_all(pool)
        .await?)
}

/// One item's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Item id.
    pub item_id: i64,
    /// Final state: done, skipped, failed or unknown.
    pub status: ItemStatus,
    /// Why (skipped, failed, unknown).
    pub reason: Option<String>,
}

/// Records outcomes of `sending` items in one statement, advances the run's counters, and
/// finishes the run when every item is settled. Items no longer `sending` are left alone.
pub async fn record(pool: &PgPool, run_id: i64, outcomes: &[Outcome]) -> Result<(), StoreError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = outcomes.iter().map(|o| o.item_id).collect();
    let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
    let reasons: Vec<Option<String>> = outcomes.iter().map(|o| o.reason.clone()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(RECORD_SQL)
        .bind(run_id)
        .bind(&ids)
        .bind(&statuses)
        .bind(&reasons)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    try_finish(pool, run_id).await?;
    Ok(())
}

/// Marks `sending` items as still being worked on (`claimed_at = now()`): the heartbeat of a
/// live worker, so that slow calls are not mistaken for a dead worker's items. Returns how
/// many rows it touched.
pub async fn touch<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    run_id: i64,
    item_ids: &[i64],
) -> Result<u64, StoreError> {
    let done = sqlx::query(TOUCH_SQL)
        .bind(run_id)
        .bind(item_ids)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Hands `sending` items back to `pending` (the call surely did not happen, or is safe to
/// repeat).
pub async fn release<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    run_id: i64,
    item_ids: &[i64],
) -> Result<u64, StoreError> {
    let done = sqlx::query(RELEASE_SQL)
        .bind(run_id)
        .bind(item_ids)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Finishes a running run whose items are all settled: `done`, or `done_with_errors` when
/// some failed or are unknown. Returns the final status when this call finished it.
pub async fn try_finish(pool: &PgPool, run_id: i64) -> Result<Option<RunStatus>, StoreError> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE runs SET status = CASE WHEN failed + unknown > 0 THEN 'done_with_errors' ELSE 'done' END,
                finished_at = now()
         WHERE id = $1 AND status = 'running' AND planned = done + skipped + failed + unknown
         RETURNING status",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?;
    Ok(status.as_deref().and_then(RunStatus::parse))
}

/// Cancels a run: it stops claiming at once; its pending items are skipped ("cancelled").
/// Items already being sent finish and are recorded. Returns false when the run had already
/// ended.
pub async fn cancel(
    pool: &PgPool,
    account_id: Option<i64>,
    run_id: i64,
    reason: &str,
) -> Result<bool, StoreError> {
    let run = get(pool, account_id, run_id).await?;
    let mut tx = pool.begin().await?;
    let moved = sqlx::query(
        "UPDATE runs SET status = 'cancelled', cancel_requested = true, status_reason = $2, finished_at = now()
         WHERE id = $1 AND status IN ('planning', 'running', 'paused')",
    )
    .bind(run.id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "WITH s AS (UPDATE run_items SET status = 'skipped', reason = 'cancelled', finished_at = now()
                    WHERE run_id = $1 AND status = 'pending' RETURNING 1)
         UPDATE runs SET skipped = skipped + (SELECT count(*) FROM s) WHERE id = $1",
    )
    .bind(run.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Items of `run_id` in each state (for `run show`).
pub async fn item_counts(pool: &PgPool, run_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM run_items WHERE run_id = $1 GROUP BY status ORDER BY status",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?)
}

/// Items stuck in `sending` since before `before` (their worker died): `(run id, item id,
/// record id)`, at most `limit`.
pub async fn stuck(
    pool: &PgPool,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(i64, i64, i64)>, StoreError> {
    Ok(sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT run_id, id, record_id FROM run_items WHERE status = 'sending' AND claimed_at < $1
         ORDER BY claimed_at LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Pending items of a run, by id, after `after` (to re-publish batches after a pause).
pub async fn pending_items<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    run_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM run_items WHERE run_id = $1 AND status = 'pending' AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(run_id)
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await?)
}

/// Moves a paused run back to planning (in the caller's transaction), clearing its reason.
/// Returns false when it was not paused.
pub async fn unpause(tx: &mut Transaction<'_, Postgres>, run_id: i64) -> Result<bool, StoreError> {
    let moved = sqlx::query("UPDATE runs SET status = 'planning', status_reason = NULL WHERE id = $1 AND status = 'paused'")
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    Ok(moved.rows_affected() == 1)
}

#[cfg(test)]
mod plan_tests {
    use sqlx::PgPool;

    use super::{CLAIM_SQL, RECORD_SQL, RELEASE_SQL, TOUCH_SQL};

    /// Every index the plan of `sql` (bound to the run and its first 100 items) reads.
    async fn indexes(pool: &PgPool, sql: &str, run_id: i64, ids: &[i64]) -> Vec<String> {
        let n = ids.len();
        let plan: serde_json::Value = sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {sql}"))
            .bind(run_id)
            .bind(ids)
            .bind(vec!["done"; n])
            .bind(vec![None::<String>; n])
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(name)) = m.get("Index Name") {
                        out.push(name.clone());
                    }
                    m.values().for_each(|v| walk(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&plan, &mut out);
        out
    }

    /// A new run's rows are not in the statistics yet: the planner believes its `run_id`
    /// matches a handful of rows. The batch statements must still read 100 items by
    /// primary key, not every index entry of the run.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn batch_statements_use_only_the_primary_key(pool: PgPool) {
        sqlx::raw_sql(
            "INSERT INTO accounts (id, name) VALUES (1, 'acme');
             INSERT INTO tasks (id, account_id, name, definition, table_name, recurrence_kind, time_zone)
                 VALUES (1, 1, 't', '{}', 'contacts', 'manual', 'UTC');
             INSERT INTO runs (id, account_id, task_id, request_id, trigger, status)
                 VALUES (1, 1, 1, 'a', 'manual', 'done'), (2, 1, 1, 'b', 'manual', 'running');
             INSERT INTO run_items (run_id, record_id, status)
                 SELECT 1, r, 'done' FROM generate_series(1, 30000) r;
             ANALYZE run_items;
             INSERT INTO run_items (run_id, record_id, status)
                 SELECT 2, r, CASE WHEN r % 2 = 0 THEN 'sending' ELSE 'pending' END
                 FROM generate_series(1, 30000) r;",
        )
        .execute(&pool)
        .await
        .unwrap();
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM run_items WHERE run_id = 2 ORDER BY id LIMIT 100")
                .fetch_all(&pool)
                .await
                .unwrap();
        // The trap is real here: the same statement with plain conditions reads the run's
        // index (otherwise this test would prove nothing).
        let plain = TOUCH_SQL.replace(
            "(run_id = $1 AND status = 'sending') IS TRUE",
            "run_id = $1 AND status = 'sending'",
        );
        assert!(
            indexes(&pool, &plain, 2, &ids)
                .await
                .iter()
                .any(|i| i != "run_items_pkey"),
            "the stale-statistics set-up no longer misleads the planner"
        );
        for (name, sql) in [
            ("claim", CLAIM_SQL),
            ("record", RECORD_SQL),
            ("touch", TOUCH_SQL),
            ("release", RELEASE_SQL),
        ] {
            let used = indexes(&pool, sql, 2, &ids).await;
            assert!(
                used.iter()
                    .all(|i| i == "run_items_pkey" || i == "runs_pkey"),
                "{name} reads {used:?}"
            );
            assert!(
                used.iter().any(|i| i == "run_items_pkey"),
                "{name}: {used:?}"
            );
        }
    }
}
