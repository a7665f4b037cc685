//! Runs and run items: the truth of what was sent (design §3). A run is unique per request
//! id (and per task and scheduled time); an item per run and record. Items move
//! `pending → sending → done | skipped | failed | unknown` by conditional updates, so that two
//! workers never both claim one.
//!
//! Which status may become which, and how a run ends once every item is settled, are
//! `tarefas_core::run`'s rules: the conditions of the statements here are built from them
//! (`run_may_become`, `may_finish`, `finished`), and `tests/lifecycle.rs` checks the SQL
//! against the core for every pair of statuses.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use tarefas_core::run::{ItemStatus, RunStatus, ITEM_STATUSES, RUN_STATUSES};

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
    /// The version of the task's definition it executes (its snapshot, see [`snapshot`]).
    pub task_version: i64,
    /// Idempotency key of the request that made it.
    pub request_id: String,
    /// `manual` or `scheduled`.
    pub trigger: String,
    /// The scheduled fire, for scheduled runs.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Who asked ("Executar Tarefa" by whom, or `scheduler`).
    pub requested_by: Option<String>,
    /// See [`RunStatus`]; an unknown stored name is an error ([`StoreError::Invalid`]).
    #[sqlx(try_from = "crate::StoredStatus<RunStatus>")]
    pub status: RunStatus,
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
    /// The status (the field; kept for its callers).
    pub fn status(&self) -> RunStatus {
        self.status
    }

    /// Items that reached a final state.
    pub fn settled(&self) -> i64 {
        self.done + self.skipped + self.failed + self.unknown
    }
}

/// The names of the core's terminal run statuses ([`RunStatus::is_terminal`]), in lifecycle
/// order: what the prune may delete and what the scheduler's overlap check counts as ended.
pub(crate) fn terminal_statuses() -> Vec<&'static str> {
    RUN_STATUSES
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(RunStatus::as_str)
        .collect()
}

/// `column = 'a'`, or `column IN ('a', 'b')`: a SQL condition that `column` holds one of
/// `names` (the core's names: constants, never input).
fn one_of(column: &str, names: &[&'static str]) -> String {
    assert!(!names.is_empty(), "{column}: no status may do this");
    match names {
        [one] => format!("{column} = '{one}'"),
        _ => format!("{column} IN ('{}')", names.join("', '")),
    }
}

/// The condition "the run's `column` may become `to`" ([`RunStatus::can_become`]).
fn run_may_become(column: &str, to: RunStatus) -> String {
    let from: Vec<&str> = RUN_STATUSES
        .into_iter()
        .filter(|s| s.can_become(to))
        .map(RunStatus::as_str)
        .collect();
    one_of(column, &from)
}

/// The condition "the run's `column` is `from`", for a move `from → to` the core allows
/// (a move it forbids is a programming error, caught by every test that runs it).
fn run_moves(column: &str, from: RunStatus, to: RunStatus) -> String {
    assert!(from.can_become(to), "{from} may not become {to}");
    one_of(column, &[from.as_str()])
}

/// The condition "the item's `column` may become every one of `to`"
/// ([`ItemStatus::can_become`]).
pub(crate) fn item_may_become(column: &str, to: &[ItemStatus]) -> String {
    let from: Vec<&str> = ITEM_STATUSES
        .into_iter()
        .filter(|s| to.iter().all(|t| s.can_become(*t)))
        .map(ItemStatus::as_str)
        .collect();
    one_of(column, &from)
}

/// What an item may be recorded as: the terminal statuses.
const OUTCOMES: [ItemStatus; 4] = [
    ItemStatus::Done,
    ItemStatus::Skipped,
    ItemStatus::Failed,
    ItemStatus::Unknown,
];

/// The condition "a run in `column` ends once its items are all settled": it may become
/// either of [`RunStatus::finished`]'s statuses.
fn may_finish(column: &str) -> String {
    let (clean, errors) = (RunStatus::finished(0), RunStatus::finished(1));
    let from: Vec<&str> = RUN_STATUSES
        .into_iter()
        .filter(|s| s.can_become(clean) && s.can_become(errors))
        .map(RunStatus::as_str)
        .collect();
    one_of(column, &from)
}

/// [`RunStatus::finished`] over the SQL count `failed_or_unknown`: the final status of a run
/// whose items are all settled.
fn finished(failed_or_unknown: &str) -> String {
    format!(
        "CASE WHEN ({failed_or_unknown}) = 0 THEN '{}' ELSE '{}' END",
        RunStatus::finished(0),
        RunStatus::finished(1)
    )
}

const COLUMNS: &str = "id, account_id, task_id, task_version, request_id, trigger, scheduled_for, requested_by, status,
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
///
/// The run is created in one statement with the snapshot of its task (the definition and
/// its version, see [`snapshot`]), and only while the task is not deleted and belongs to
/// the account: the task's row is share-locked for that statement, so an edit or a delete
/// comes wholly before or wholly after it. A run found again keeps its own snapshot, even
/// when its task was edited or deleted since. `NotFound` when there is no such run and the
/// task is deleted or not the account's.
pub async fn create_or_get(pool: &PgPool, new: &NewRun<'_>) -> Result<(Run, bool), StoreError> {
    let created = sqlx::query_as::<_, Run>(&format!(
        "INSERT INTO runs (account_id, task_id, request_id, trigger, scheduled_for, requested_by,
                           task_version, definition)
         SELECT $1, t.id, $3, $4, $5, $6, t.version, t.definition FROM tasks t
         WHERE t.id = $2 AND t.account_id = $1 AND t.status <> 'deleted'
         FOR SHARE
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
    if let Some(run) = existing {
        return Ok((run, false));
    }
    let task_live: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1 AND account_id = $2 AND status <> 'deleted')",
    )
    .bind(new.task_id)
    .bind(new.account_id)
    .fetch_one(pool)
    .await?;
    Err(if task_live {
        StoreError::Conflict(format!("run for request {} vanished", new.request_id))
    } else {
        StoreError::NotFound(format!("task {} not found", new.task_id))
    })
}

/// What a run executes: the task's definition as it was when the run was created, and its
/// version.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Snapshot {
    /// The run.
    pub run_id: i64,
    /// The task's version then.
    pub task_version: i64,
    /// The task's validated definition then (the task file, as JSON).
    pub definition: serde_json::Value,
}

impl Snapshot {
    /// The definition, validated again (it was valid when the task was stored).
    pub fn spec(&self) -> Result<tarefas_core::TaskSpec, StoreError> {
        tarefas_core::task::validate_task(&self.definition).map_err(|p| {
            StoreError::Invalid(format!(
                "run {}: version {} of its task is no longer valid: {p}",
                self.run_id, self.task_version
            ))
        })
    }
}

/// The snapshot run `run_id` executes, whatever became of its task since.
pub async fn snapshot<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    run_id: i64,
) -> Result<Snapshot, StoreError> {
    sqlx::query_as::<_, Snapshot>(
        "SELECT id AS run_id, task_version, definition FROM runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_optional(executor)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("run {run_id} not found")))
}

/// The runs of task `task_id` that have not ended (planning, held for approval, running or
/// paused), oldest
/// first.
pub async fn unfinished(pool: &PgPool, task_id: i64) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM runs WHERE task_id = $1 AND status IN ('planning', 'awaiting_approval', 'running', 'paused')
         ORDER BY id",
    )
    .bind(task_id)
    .fetch_all(pool)
    .await?)
}

/// The run `id`, within `account_id` when given.
pub async fn get(pool: &PgPool, account_id: Option<i64>, id: i64) -> Result<Run, StoreError> {
    sqlx::query_as::<_, Run>(&format!(
        "SELECT {COLUMNS} FROM runs WHERE id = $1 AND ($2::bigint IS NULL OR account_id = $2)"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(pool)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Invalid(why) => StoreError::Invalid(format!("{why} in run {id}")),
        other => other,
    })?
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
    // One statement per case, each with plain equalities, so that Postgres' generic plan
    // still walks `runs_by_task` (account, task, id DESC) or the primary key backwards: a
    // `($n IS NULL OR col = $n)` filter made a task's newest runs 5.9x slower with 2M items
    // of history (docs/benchmarks.md, "History"). A task's runs are its account's.
    let (filter, ids): (&str, Vec<i64>) = match (account_id, task_id) {
        (Some(account), Some(task)) => (
            "WHERE account_id = $2 AND task_id = $3",
            vec![account, task],
        ),
        (None, Some(task)) => (
            "WHERE account_id = (SELECT account_id FROM tasks WHERE id = $2) AND task_id = $2",
            vec![task],
        ),
        (Some(account), None) => ("WHERE account_id = $2", vec![account]),
        (None, None) => ("", vec![]),
    };
    let sql = format!("SELECT {COLUMNS} FROM runs {filter} ORDER BY id DESC LIMIT $1");
    let mut query = sqlx::query_as::<_, Run>(&sql).bind(limit);
    for id in ids {
        query = query.bind(id);
    }
    Ok(query.fetch_all(pool).await?)
}

/// Holds the run's row until the caller's transaction ends (a page of planning), so that a
/// cancel or a pause waits for the page; its status now. `FOR NO KEY UPDATE`, not `FOR
/// UPDATE`: a worker claiming a batch of this run meanwhile checks its claim's key to the
/// run (`FOR KEY SHARE`), which `FOR UPDATE` would make wait for the whole page (up to
/// 300 ms a claim while planning).
pub async fn hold_for_page(
    tx: &mut Transaction<'_, Postgres>,
    run_id: i64,
) -> Result<Option<RunStatus>, StoreError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM runs WHERE id = $1 FOR NO KEY UPDATE")
            .bind(run_id)
            .fetch_optional(&mut **tx)
            .await?;
    status.map(|s| run_status(s, run_id)).transpose()
}

/// A stored run status, or the error that names it and its run.
fn run_status(name: String, run_id: i64) -> Result<RunStatus, StoreError> {
    RunStatus::try_from(name).map_err(|e| StoreError::Invalid(format!("{e} in run {run_id}")))
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
    sqlx::query(
        "UPDATE runs SET plan_cursor = $2, planned = planned + $3, last_progress_at = now()
         WHERE id = $1",
    )
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
    sqlx::query(&format!(
        "UPDATE runs SET status = '{}' WHERE id = $1 AND {}",
        RunStatus::Running,
        run_moves("status", RunStatus::Planning, RunStatus::Running)
    ))
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
// `pending → sending → done` are not vacuumed, Postgres may bitmap-AND the (run_id,
// record_id) index with the primary key, reading every index entry of the run for 100
// rows: 20 ms a statement instead of 0.1 ms (see docs/benchmarks.md, fan-out).
// `batch_statements_use_only_the_primary_key` checks the plans.
//
// No index covers `status` or `claimed_at`, so these updates are heap-only (HOT): a dead
// worker's items are found through their batch's `run_claims` row instead
// (migrations/0004_run_claims.sql).

/// Claims: `$1` run id, `$2` item ids. Rows: claim id, item id, record id.
pub(crate) static CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    let active: Vec<&str> = RUN_STATUSES
        .into_iter()
        .filter(|s| s.is_active())
        .map(RunStatus::as_str)
        .collect();
    format!(
        "WITH k AS (SELECT nextval('run_claims_id_seq') AS id),
     c AS (
        UPDATE run_items SET status = '{sending}', claimed_at = now(), attempts = attempts + 1,
                             claim_id = (SELECT id FROM k)
        WHERE id = ANY($2) AND (run_id = $1 AND {claimable}) IS TRUE
          AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND {active})
        RETURNING id, record_id, claim_id),
     i AS (INSERT INTO run_claims (id, run_id, item_ids)
           SELECT min(claim_id), $1, array_agg(id) FROM c HAVING count(*) > 0)
     SELECT claim_id, id, record_id FROM c",
        sending = ItemStatus::Sending,
        claimable = item_may_become("status", &[ItemStatus::Sending]),
        active = one_of("status", &active),
    )
});

/// Records outcomes, counts them into the run and finishes it when every item is settled,
/// and drops the batch's claim: `$1` run id, `$2` item ids, `$3` statuses, `$4` reasons,
/// `$5` claim id (or NULL).
pub(crate) static RECORD_SQL: LazyLock<String> = LazyLock::new(|| {
    let settled =
        "r.done + n.done + r.skipped + n.skipped + r.failed + n.failed + r.unknown + n.unknown";
    format!(
        "WITH o AS (SELECT * FROM UNNEST($2::bigint[], $3::text[], $4::text[]) AS o(id, status, reason)),
          u AS (UPDATE run_items i SET status = o.status, reason = o.reason, finished_at = now()
                FROM o WHERE i.id = o.id AND (i.run_id = $1 AND {claimed}) IS TRUE
                RETURNING i.status),
          n AS (SELECT count(*) FILTER (WHERE status = 'done') AS done,
                       count(*) FILTER (WHERE status = 'skipped') AS skipped,
                       count(*) FILTER (WHERE status = 'failed') AS failed,
                       count(*) FILTER (WHERE status = 'unknown') AS unknown
                FROM u),
          k AS (DELETE FROM run_claims WHERE id = $5::bigint)
     UPDATE runs r SET
        done = r.done + n.done,
        skipped = r.skipped + n.skipped,
        failed = r.failed + n.failed,
        unknown = r.unknown + n.unknown,
        last_progress_at = CASE WHEN n.done + n.skipped + n.failed + n.unknown > 0
            THEN now() ELSE r.last_progress_at END,
        status = CASE
            WHEN NOT ({may_finish}) OR r.planned <> {settled} THEN r.status
            ELSE {finished} END,
        finished_at = CASE
            WHEN NOT ({may_finish}) OR r.planned <> {settled} THEN r.finished_at
            ELSE now() END
     FROM n WHERE r.id = $1",
        claimed = item_may_become("i.status", &OUTCOMES),
        may_finish = may_finish("r.status"),
        finished = finished("r.failed + n.failed + r.unknown + n.unknown"),
    )
});

/// Heartbeat of a claim: `$1` claim id.
pub(crate) const TOUCH_SQL: &str = "UPDATE run_claims SET claimed_at = now() WHERE id = $1";

/// Hands back: `$1` run id, `$2` item ids.
pub(crate) static RELEASE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE run_items SET status = '{}', claimed_at = NULL, claim_id = NULL
     WHERE id = ANY($2) AND (run_id = $1 AND {}) IS TRUE",
        ItemStatus::Pending,
        item_may_become("status", &[ItemStatus::Pending])
    )
});

/// The items a worker claimed from one batch message, under one `run_claims` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claim's id: keep it alive with [`touch`], end it with [`record`].
    pub id: i64,
    /// `(item id, record id)` of each claimed item.
    pub items: Vec<(i64, i64)>,
}

/// Claims the `pending` items among `item_ids` of a run that is still going (planning or
/// running): they become `sending` under one new claim. `None` when none was claimable.
pub async fn claim(
    pool: &PgPool,
    run_id: i64,
    item_ids: &[i64],
) -> Result<Option<Claim>, StoreError> {
    let rows = sqlx::query_as::<_, (i64, i64, i64)>(&CLAIM_SQL)
        .bind(run_id)
        .bind(item_ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.first().map(|(id, _, _)| Claim {
        id: *id,
        items: rows
            .iter()
            .map(|(_, item, record)| (*item, *record))
            .collect(),
    }))
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

/// Records outcomes of `sending` items, advances the run's counters, finishes the run when
/// every item is settled, and ends `claim` (when given: call it once every item of the
/// claim is recorded or [released](release)) — all in one statement. Items no longer
/// `sending` are left alone.
pub async fn record(
    pool: &PgPool,
    run_id: i64,
    claim: Option<i64>,
    outcomes: &[Outcome],
) -> Result<(), StoreError> {
    if outcomes.is_empty() && claim.is_none() {
        return Ok(());
    }
    if let Some(o) = outcomes.iter().find(|o| !OUTCOMES.contains(&o.status)) {
        return Err(StoreError::Invalid(format!(
            "item {} cannot be recorded as {}: not a final status",
            o.item_id, o.status
        )));
    }
    let ids: Vec<i64> = outcomes.iter().map(|o| o.item_id).collect();
    let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
    let reasons: Vec<Option<&str>> = outcomes.iter().map(|o| o.reason.as_deref()).collect();
    sqlx::query(&RECORD_SQL)
        .bind(run_id)
        .bind(&ids)
        .bind(&statuses)
        .bind(&reasons)
        .bind(claim)
        .execute(pool)
        .await?;
    Ok(())
}

/// Marks a claim as still being worked on (`claimed_at = now()`): the heartbeat of a live
/// worker, so that slow calls are not mistaken for a dead worker's items. Returns whether
/// the claim still exists.
pub async fn touch<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    claim: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(TOUCH_SQL).bind(claim).execute(executor).await?;
    Ok(done.rows_affected() == 1)
}

/// Hands `sending` items back to `pending` (the call surely did not happen, or is safe to
/// repeat).
pub async fn release<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    run_id: i64,
    item_ids: &[i64],
) -> Result<u64, StoreError> {
    let done = sqlx::query(&RELEASE_SQL)
        .bind(run_id)
        .bind(item_ids)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Finishes a running run whose items are all settled: `done`, or `done_with_errors` when
/// some failed or are unknown. Returns the final status when this call finished it.
pub async fn try_finish(pool: &PgPool, run_id: i64) -> Result<Option<RunStatus>, StoreError> {
    let status: Option<String> = sqlx::query_scalar(&format!(
        "UPDATE runs SET status = {}, finished_at = now()
         WHERE id = $1 AND {} AND planned = done + skipped + failed + unknown
         RETURNING status",
        finished("failed + unknown"),
        may_finish("status")
    ))
    .bind(run_id)
    .fetch_optional(pool)
    .await?;
    status.map(|s| run_status(s, run_id)).transpose()
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
    let moved = sqlx::query(&format!(
        "UPDATE runs SET status = '{}', cancel_requested = true, status_reason = $2, finished_at = now()
         WHERE id = $1 AND {}",
        RunStatus::Cancelled,
        run_may_become("status", RunStatus::Cancelled)
    ))
    .bind(run.id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    // Pending items only: those being sent finish and are recorded.
    assert!(ItemStatus::Pending.can_become(ItemStatus::Skipped));
    sqlx::query(&format!(
        "WITH s AS (UPDATE run_items SET status = '{}', reason = 'cancelled', finished_at = now()
                    WHERE run_id = $1 AND status = '{}' RETURNING 1)
         UPDATE runs SET skipped = skipped + (SELECT count(*) FROM s) WHERE id = $1",
        ItemStatus::Skipped,
        ItemStatus::Pending
    ))
    .bind(run.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Items of `run_id` in each state (for `run show`).
pub async fn item_counts(pool: &PgPool, run_id: i64) -> Result<Vec<(ItemStatus, i64)>, StoreError> {
    let rows = sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM run_items WHERE run_id = $1 GROUP BY status ORDER BY status",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(status, n)| {
            ItemStatus::try_from(status)
                .map(|s| (s, n))
                .map_err(|e| StoreError::Invalid(format!("{e} in an item of run {run_id}")))
        })
        .collect()
}

/// Items stuck in `sending` under a claim not touched since before `before` (their worker
/// died): `(run id, item id, record id)`, at most `limit`, oldest claims first.
pub async fn stuck(
    pool: &PgPool,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(i64, i64, i64)>, StoreError> {
    Ok(sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT i.run_id, i.id, i.record_id
         FROM run_claims c JOIN run_items i ON i.id = ANY(c.item_ids)
         WHERE c.claimed_at < $1 AND (i.claim_id = c.id AND i.status = 'sending') IS TRUE
         ORDER BY c.claimed_at, i.id LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Deletes the claims not touched since before `before` that hold no `sending` item any
/// more (their items were settled or handed back). Returns how many.
pub async fn forget_claims(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM run_claims c WHERE c.claimed_at < $1 AND NOT EXISTS (
             SELECT 1 FROM run_items i
             WHERE i.id = ANY(c.item_ids) AND (i.claim_id = c.id AND i.status = 'sending') IS TRUE)",
    )
    .bind(before)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
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
    let moved = sqlx::query(&format!(
        "UPDATE runs SET status = '{}', status_reason = NULL, last_progress_at = now() WHERE id = $1 AND {}",
        RunStatus::Planning,
        run_moves("status", RunStatus::Paused, RunStatus::Planning)
    ))
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(moved.rows_affected() == 1)
}

#[cfg(test)]
mod plan_tests {
    use sqlx::PgPool;

    use super::{CLAIM_SQL, RECORD_SQL, RELEASE_SQL};

    /// Account 1 (`acme`) and its manual contacts task 1.
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

    /// Every index the plan of `sql` (bound to the run and its first 100 items) reads.
    async fn indexes(pool: &PgPool, sql: &str, run_id: i64, ids: &[i64]) -> Vec<String> {
        let n = ids.len();
        let plan: serde_json::Value = sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {sql}"))
            .bind(run_id)
            .bind(ids)
            .bind(vec!["done"; n])
            .bind(vec![None::<String>; n])
            .bind(Some(1_i64))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(name)) = m.get("Index Name") {
                        out.push(name.clone());
                    }
                    if m.get("Node Type").and_then(|t| t.as_str()) == Some("Seq Scan") {
                        let table = m.get("Relation Name").and_then(|t| t.as_str());
                        out.push(format!("seq scan on {}", table.unwrap_or("?")));
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

    /// Claim, record and release of run `run_id`'s `ids` read only primary keys.
    async fn batch_statements_read_by_primary_key(pool: &PgPool, run_id: i64, ids: &[i64]) {
        for (name, sql) in [
            ("claim", &*CLAIM_SQL),
            ("record", &*RECORD_SQL),
            ("release", &*RELEASE_SQL),
        ] {
            let used = indexes(pool, sql, run_id, ids).await;
            assert!(
                used.iter()
                    .all(|i| i == "run_items_pkey" || i == "runs_pkey" || i == "run_claims_pkey"),
                "{name} reads {used:?}"
            );
            assert!(
                used.iter().any(|i| i == "run_items_pkey"),
                "{name}: {used:?}"
            );
        }
    }

    /// A new run's rows are not in the statistics yet: the planner believes its `run_id`
    /// matches a handful of rows. The batch statements must still read 100 items by
    /// primary key, not every index entry of the run.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn batch_statements_use_only_the_primary_key(pool: PgPool) {
        acme(&pool).await;
        sqlx::raw_sql(
            "INSERT INTO runs (id, account_id, task_id, request_id, trigger, status)
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
        let plain = RELEASE_SQL.replace(
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
        batch_statements_read_by_primary_key(&pool, 2, &ids).await;
    }

    /// A young table: its statistics were taken when it held a few hundred rows, and
    /// Postgres believes a scan of it is cheaper than 500 lookups by primary key. On an
    /// ordinary pool the batch statements then scan the whole table, in a nested loop over
    /// the batch's ids (5 s a statement in a fan-out on a fresh database); on the batch
    /// pool they read by primary key.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn batch_statements_read_a_young_table_by_primary_key(pool: PgPool) {
        acme(&pool).await;
        sqlx::raw_sql(
            "INSERT INTO runs (id, account_id, task_id, request_id, trigger, status)
                 VALUES (2, 1, 1, 'b', 'manual', 'running');
             INSERT INTO run_items (run_id, record_id)
                 SELECT 2, r FROM generate_series(1, 500) r;
             ANALYZE run_items;
             INSERT INTO run_items (run_id, record_id, status)
                 SELECT 2, r, 'sending' FROM generate_series(501, 20000) r;",
        )
        .execute(&pool)
        .await
        .unwrap();
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM run_items WHERE status = 'sending' ORDER BY id LIMIT 500",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let trap = indexes(&pool, &RECORD_SQL, 2, &ids).await;
        assert!(
            trap.iter().any(|i| i == "seq scan on run_items"),
            "the young-table set-up no longer misleads the planner: {trap:?}"
        );
        let batch = crate::batch_pool(&pool, 1);
        batch_statements_read_by_primary_key(&batch, 2, &ids).await;
    }

    /// Every update of an item on its way (claim, record, release) must stay heap-only:
    /// no index of `run_items` may cover a column they change, not even in a predicate.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn no_index_covers_what_the_batch_statements_change(pool: PgPool) {
        let defs: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'run_items'::regclass",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(defs.len() >= 2, "{defs:?}");
        for def in &defs {
            for column in [
                "status",
                "claimed_at",
                "claim_id",
                "attempts",
                "reason",
                "finished_at",
            ] {
                assert!(
                    !def.contains(column),
                    "{def} covers {column}: its updates are not HOT"
                );
            }
        }
    }

    /// Run 1 of the account's task, in `status`, with ten pending items: their ids.
    async fn run_of_ten(pool: &PgPool, status: &str) -> Vec<i64> {
        acme(pool).await;
        sqlx::query(
            "INSERT INTO runs (id, account_id, task_id, request_id, trigger, status, planned)
                 VALUES (1, 1, 1, 'a', 'manual', $1, 10)",
        )
        .bind(status)
        .execute(pool)
        .await
        .unwrap();
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO run_items (run_id, record_id) SELECT 1, r FROM generate_series(1, 10) r
             RETURNING id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        ids.sort_unstable();
        ids
    }

    async fn claim_age(pool: &PgPool, claim: i64, age: &str) {
        sqlx::query(&format!(
            "UPDATE run_claims SET claimed_at = now() - interval '{age}' WHERE id = $1"
        ))
        .bind(claim)
        .execute(pool)
        .await
        .unwrap();
    }

    /// While a page of planning holds the run (its transaction open), workers go on
    /// claiming the run's batches planned before: a claim waits for no page.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_claim_does_not_wait_for_a_planning_page(pool: PgPool) {
        use crate::runs;
        let ids = run_of_ten(&pool, "planning").await;
        let mut page = pool.begin().await.unwrap();
        let held = runs::hold_for_page(&mut page, 1).await.unwrap();
        assert_eq!(held, Some(tarefas_core::run::RunStatus::Planning));
        let claim = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            runs::claim(&pool, 1, &ids),
        )
        .await
        .expect("the claim waited for the planning page")
        .unwrap()
        .expect("claimed");
        assert_eq!(claim.items.len(), 10);
        page.commit().await.unwrap();
    }

    /// A dead worker's claim settles only the items still `sending` under it: an item it
    /// handed back and another worker claimed again belongs to the new claim.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn stale_claims_hold_only_their_own_items(pool: PgPool) {
        use crate::runs::{self, Outcome};
        use tarefas_core::run::ItemStatus;
        let ids = run_of_ten(&pool, "running").await;
        let old = runs::claim(&pool, 1, &ids).await.unwrap().expect("claimed");
        assert_eq!(old.items.len(), 10);
        assert!(
            runs::claim(&pool, 1, &ids).await.unwrap().is_none(),
            "claimed twice"
        );
        // The first worker handed five back; another claimed them; then the first died.
        runs::release(&pool, 1, &ids[..5]).await.unwrap();
        let new = runs::claim(&pool, 1, &ids[..5])
            .await
            .unwrap()
            .expect("claimed again");
        assert_ne!(new.id, old.id);
        claim_age(&pool, old.id, "1 hour").await;
        let before = chrono::Utc::now() - chrono::Duration::minutes(1);
        let stuck = runs::stuck(&pool, before, 100).await.unwrap();
        let stuck_ids: Vec<i64> = stuck.iter().map(|(_, id, _)| *id).collect();
        assert_eq!(
            stuck_ids,
            ids[5..].to_vec(),
            "only the dead claim's own items"
        );
        assert_eq!(
            runs::forget_claims(&pool, before).await.unwrap(),
            0,
            "still holds items"
        );
        let outcome = |item_id| Outcome {
            item_id,
            status: ItemStatus::Done,
            reason: None,
        };
        let swept: Vec<Outcome> = ids[5..].iter().copied().map(outcome).collect();
        runs::record(&pool, 1, None, &swept).await.unwrap();
        assert_eq!(runs::forget_claims(&pool, before).await.unwrap(), 1);
        assert!(
            runs::touch(&pool, new.id).await.unwrap(),
            "the live claim stays"
        );
        assert!(!runs::touch(&pool, old.id).await.unwrap());
        // The live worker records its five: the claim ends and the run is finished.
        let live: Vec<Outcome> = ids[..5].iter().copied().map(outcome).collect();
        runs::record(&pool, 1, Some(new.id), &live).await.unwrap();
        assert!(
            !runs::touch(&pool, new.id).await.unwrap(),
            "recording ends the claim"
        );
        let run = runs::get(&pool, None, 1).await.unwrap();
        assert_eq!((run.status.as_str(), run.done), ("done", 10), "{run:?}");
        assert!(run.finished_at.is_some());
    }

    /// Deleting a run (or its task, or its account) deletes its items and claims.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn deleting_a_run_deletes_its_items(pool: PgPool) {
        acme(&pool).await;
        sqlx::raw_sql(
            "INSERT INTO tasks (id, account_id, name, definition, table_name, recurrence_kind, time_zone)
                 VALUES (2, 1, 'u', '{}', 'contacts', 'manual', 'UTC');
             INSERT INTO runs (id, account_id, task_id, request_id, trigger, status)
                 VALUES (1, 1, 1, 'a', 'manual', 'running'), (2, 1, 1, 'b', 'manual', 'running'),
                        (3, 1, 2, 'c', 'manual', 'running');
             INSERT INTO run_items (run_id, record_id)
                 SELECT run, r FROM generate_series(1, 3) run, generate_series(1, 10) r;",
        )
        .execute(&pool)
        .await
        .unwrap();
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM run_items WHERE run_id = 1")
            .fetch_all(&pool)
            .await
            .unwrap();
        crate::runs::claim(&pool, 1, &ids)
            .await
            .unwrap()
            .expect("claimed");
        let left = |pool: PgPool| async move {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT (SELECT count(*) FROM run_items), (SELECT count(*) FROM run_claims)",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        };
        sqlx::query("DELETE FROM runs WHERE id = 1")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(left(pool.clone()).await, (20, 0));
        sqlx::query("DELETE FROM tasks WHERE id = 2")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(left(pool.clone()).await, (10, 0));
        sqlx::query("DELETE FROM accounts WHERE id = 1")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(left(pool.clone()).await, (0, 0));
    }
}
