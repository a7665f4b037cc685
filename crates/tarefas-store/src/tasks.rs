//! Tasks: the validated definition as the operator wrote it, plus what the scheduler needs
//! (status, next fire). Reads and writes are always scoped by account when one is given;
//! another account's task is simply not found.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use sqlx::PgPool;
use tarefas_core::task::{validate_task, TaskSpec};
use tarefas_core::Recurrence;

use crate::StoreError;

pub use tarefas_core::task::TaskStatus;

/// A stored task.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Task {
    /// Task id.
    pub id: i64,
    /// Owning account's internal id.
    pub account_id: i64,
    /// Owning account's name.
    pub account: String,
    /// Nome da tarefa.
    pub name: String,
    /// Objetivo.
    pub objective: Option<String>,
    /// The task file, as JSON.
    pub definition: Value,
    /// `contacts` or `chats`.
    pub table_name: String,
    /// The recurrence kind (`manual`, `daily`, …).
    pub recurrence_kind: String,
    /// IANA zone.
    pub time_zone: String,
    /// `active`, `paused` or `deleted`; an unknown stored name is an error.
    #[sqlx(try_from = "crate::StoredStatus<TaskStatus>")]
    pub status: TaskStatus,
    /// Next scheduled fire.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Last scheduled fire emitted.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The definition's version: 1 at creation, one more on every edit. A run keeps the
    /// version (and the definition) it was planned with.
    pub version: i64,
}

impl Task {
    /// The definition, validated again (it was valid when stored).
    pub fn spec(&self) -> Result<TaskSpec, StoreError> {
        validate_task(&self.definition)
            .map_err(|p| StoreError::Invalid(format!("task {}: {p}", self.id)))
    }
}

const SELECT: &str =
    "SELECT t.id, t.account_id, a.name AS account, t.name, t.objective, t.definition,
        t.table_name, t.recurrence_kind, t.time_zone, t.status, t.next_fire_at, t.last_fire_at,
        t.created_at, t.updated_at, t.version
    FROM tasks t JOIN accounts a ON a.id = t.account_id";

/// Anchors an interval recurrence without `starts_at` at `now` (to the minute, in the task's
/// zone) and writes the anchor into the stored definition, so every later reading of the
/// task computes the same fires.
fn anchor(spec: &TaskSpec, now: DateTime<Utc>) -> (Recurrence, Value) {
    let anchored = spec.recurrence.clone().anchored(spec.time_zone, now);
    let mut definition = spec.definition.clone();
    if let (
        Recurrence::EveryMinutes {
            starts_at: Some(s), ..
        }
        | Recurrence::EveryHours {
            starts_at: Some(s), ..
        },
        Some(rec),
    ) = (
        &anchored,
        definition
            .get_mut("recurrence")
            .and_then(Value::as_object_mut),
    ) {
        rec.entry("starts_at")
            .or_insert_with(|| Value::String(s.format("%Y-%m-%dT%H:%M").to_string()));
    }
    (anchored, definition)
}

/// Stores a new task for `account_id`; its first fire is computed from `now`.
pub async fn create(
    pool: &PgPool,
    account_id: i64,
    spec: &TaskSpec,
    now: DateTime<Utc>,
) -> Result<Task, StoreError> {
    let (recurrence, definition) = anchor(spec, now);
    let next = recurrence.next_after(spec.time_zone, now);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (account_id, name, objective, definition, table_name, recurrence_kind,
                            time_zone, next_fire_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(account_id)
    .bind(&spec.name)
    .bind(&spec.objective)
    .bind(&definition)
    .bind(spec.table.as_str())
    .bind(recurrence.kind())
    .bind(spec.time_zone.name())
    .bind(next)
    .bind(now)
    .fetch_one(pool)
    .await?;
    get(pool, Some(account_id), id).await
}

/// Replaces the definition of task `id` (not deleted, within `account_id` when given) with
/// `spec`, keeping its status, and bumps its version (runs already created keep the
/// definition they were planned with). An active task's next fire is computed again from `now`; an
/// interval recurrence without `starts_at` is anchored at `now`.
///
/// A fire that came due before the edit and was not claimed yet (the scheduler was down or
/// behind) is never dropped silently: when the new definition still fires on schedule, the
/// due fire is kept (the scheduler emits it, with the new definition, coalesced with any
/// later one); when it no longer does (`manual`), the due fire and a queued one are
/// recorded as missed, `task edited`.
pub async fn update(
    pool: &PgPool,
    account_id: Option<i64>,
    id: i64,
    spec: &TaskSpec,
    now: DateTime<Utc>,
) -> Result<Task, StoreError> {
    let task = get(pool, account_id, id).await?;
    let (recurrence, definition) = anchor(spec, now);
    let next = match task.status.as_str() {
        "active" => recurrence.next_after(spec.time_zone, now),
        _ => None,
    };
    // Kept in the statement itself, from the row as it is when the UPDATE locks it: a fire
    // the scheduler claimed meanwhile has already moved `next_fire_at` past `now`.
    let keep_due = recurrence != Recurrence::Manual;
    if !keep_due {
        sqlx::query(
            "INSERT INTO missed_fires (task_id, scheduled_for, reason)
             SELECT id, f, 'task edited' FROM tasks, UNNEST(ARRAY[next_fire_at, queued_fire_at]) AS f
             WHERE id = $1 AND status = 'active' AND f <= $2
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?;
    }
    let updated = sqlx::query(
        "UPDATE tasks SET version = version + 1, name = $1, objective = $2, definition = $3, table_name = $4,
                recurrence_kind = $5, time_zone = $6,
                next_fire_at = CASE WHEN $11 AND next_fire_at <= $8 THEN next_fire_at ELSE $7 END,
                queued_fire_at = CASE WHEN $11 THEN queued_fire_at END, updated_at = $8
         WHERE id = $9 AND status <> 'deleted' AND account_id = $10",
    )
    .bind(&spec.name)
    .bind(&spec.objective)
    .bind(&definition)
    .bind(spec.table.as_str())
    .bind(recurrence.kind())
    .bind(spec.time_zone.name())
    .bind(next)
    .bind(now)
    .bind(id)
    .bind(task.account_id)
    .bind(keep_due)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("task {id} not found")));
    }
    get(pool, account_id, id).await
}

/// Tasks that are not deleted, newest first; only `account_id`'s when given.
pub async fn list(pool: &PgPool, account_id: Option<i64>) -> Result<Vec<Task>, StoreError> {
    Ok(sqlx::query_as::<_, Task>(&format!(
        "{SELECT} WHERE t.status <> 'deleted' AND ($1::bigint IS NULL OR t.account_id = $1) ORDER BY t.id"
    ))
    .bind(account_id)
    .fetch_all(pool)
    .await?)
}

/// The task `id` (not deleted), within `account_id` when given.
pub async fn get(pool: &PgPool, account_id: Option<i64>, id: i64) -> Result<Task, StoreError> {
    sqlx::query_as::<_, Task>(&format!(
        "{SELECT} WHERE t.id = $1 AND t.status <> 'deleted' AND ($2::bigint IS NULL OR t.account_id = $2)"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("task {id} not found")))
}

/// Pauses, resumes or deletes a task. Resuming computes the next fire from `now` (fires
/// that fell in the pause are not replayed); pausing and deleting clear it, and the fire
/// queued under `overlap: queue_one`.
pub async fn set_status(
    pool: &PgPool,
    account_id: Option<i64>,
    id: i64,
    status: TaskStatus,
    now: DateTime<Utc>,
) -> Result<Task, StoreError> {
    let task = get(pool, account_id, id).await?;
    let next = match status {
        TaskStatus::Active => {
            let spec = task.spec()?;
            spec_recurrence(&task, &spec).next_after(spec.time_zone, now)
        }
        TaskStatus::Paused | TaskStatus::Deleted => None,
    };
    let updated = sqlx::query(
        "UPDATE tasks SET status = $1, next_fire_at = $2, queued_fire_at = NULL, updated_at = $3
         WHERE id = $4 AND status <> 'deleted' AND ($5::bigint IS NULL OR account_id = $5)",
    )
    .bind(status.as_str())
    .bind(next)
    .bind(now)
    .bind(id)
    .bind(account_id)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("task {id} not found")));
    }
    match status {
        TaskStatus::Deleted => Ok(Task {
            status: TaskStatus::Deleted,
            next_fire_at: None,
            ..task
        }),
        _ => get(pool, account_id, id).await,
    }
}

/// The stored recurrence (already anchored at creation).
fn spec_recurrence(task: &Task, spec: &TaskSpec) -> Recurrence {
    spec.recurrence
        .clone()
        .anchored(spec.time_zone, task.created_at)
}

/// The task's zone.
pub fn zone(task: &Task) -> Tz {
    task.time_zone.parse().unwrap_or(Tz::UTC)
}

/// "The run `r` has not ended": any status but the core's terminal ones counts as live for
/// the overlap check. The text is the predicate of the partial index `runs_live` (migration
/// 0006), so that Postgres uses it.
fn run_live() -> String {
    format!(
        "r.status NOT IN ('{}')",
        crate::runs::terminal_statuses().join("', '")
    )
}

/// True when the task's last emitted fire (emitted after `$3`) has no run yet: its message
/// still waits in the outbox or the queue. Never NULL (a task emitted before migration 0006
/// has no `last_emitted_at`: not waiting).
const UNSTARTED: &str =
    "COALESCE(t.last_fire_at IS NOT NULL AND t.last_emitted_at > $3 AND NOT EXISTS (
        SELECT 1 FROM runs r WHERE r.task_id = t.id AND r.scheduled_for = t.last_fire_at), false)";

/// A task claimed by the scheduler, with what its overlap policy needs to know.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ClaimedTask {
    /// The task.
    #[sqlx(flatten)]
    pub task: Task,
    /// The fire kept for `overlap: queue_one`, if one waits.
    pub queued_fire_at: Option<DateTime<Utc>>,
    /// The task's oldest run that has not ended (planning, running, paused), if any.
    pub live_run: Option<i64>,
    /// That run's status (typed: a status the core does not know fails the claim with
    /// [`StoreError::Invalid`], never passes as some other one).
    pub live_status: Option<crate::StoredStatus<tarefas_core::run::RunStatus>>,
    /// True when the last fire the scheduler emitted has no run yet (its message still
    /// waits in the outbox or the queue) and was emitted after the `pending_since` given to
    /// the claim.
    pub unstarted: bool,
}

/// The columns of a claim: the task, its queued fire, its oldest live run, and whether its
/// last emitted fire is still waiting to start. `t.*` so that a column added to [`Task`]
/// comes along.
fn claim_select() -> String {
    let run_live = run_live();
    format!(
        "SELECT t.*, a.name AS account, live.id AS live_run, live.status AS live_status,
            {UNSTARTED} AS unstarted
         FROM tasks t JOIN accounts a ON a.id = t.account_id
         LEFT JOIN LATERAL (
             SELECT r.id, r.status FROM runs r WHERE r.task_id = t.id AND {run_live}
             ORDER BY r.id LIMIT 1
         ) live ON true"
    )
}

/// Locks up to `limit` active tasks due at `now` (oldest first); other schedulers skip them.
/// One query: each task comes with its live run (an index probe of `runs_live`) and whether
/// its last fire emitted after `pending_since` has not started yet.
pub async fn claim_due(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    now: DateTime<Utc>,
    limit: i64,
    pending_since: DateTime<Utc>,
) -> Result<Vec<ClaimedTask>, StoreError> {
    Ok(sqlx::query_as::<_, ClaimedTask>(&format!(
        "{} WHERE t.status = 'active' AND t.next_fire_at <= $1
         ORDER BY t.next_fire_at LIMIT $2 FOR UPDATE OF t SKIP LOCKED",
        claim_select()
    ))
    .bind(now)
    .bind(limit)
    .bind(pending_since)
    .fetch_all(&mut **tx)
    .await?)
}

/// Locks up to `limit` active tasks whose queued fire (`overlap: queue_one`) may go now:
/// no run of theirs is live and their last emitted fire (after `pending_since`) has
/// started. Reads the small partial index `tasks_queued`; costs nothing when no fire waits.
pub async fn claim_queued(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    limit: i64,
    pending_since: DateTime<Utc>,
) -> Result<Vec<ClaimedTask>, StoreError> {
    // `$3` is `pending_since`, as in the claim of due tasks; `$2` is not used here (bound,
    // with its type, only to keep the placeholders of the shared columns the same).
    Ok(sqlx::query_as::<_, ClaimedTask>(&format!(
        "{} WHERE t.queued_fire_at IS NOT NULL AND t.status = 'active' AND live.id IS NULL
           AND NOT {UNSTARTED}
         ORDER BY t.queued_fire_at LIMIT $1 FOR UPDATE OF t SKIP LOCKED",
        claim_select()
    ))
    .bind(limit)
    .bind(limit)
    .bind(pending_since)
    .fetch_all(&mut **tx)
    .await?)
}

/// What the queued fire of a claimed task becomes in [`advance_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Queue {
    /// Left as it is.
    #[default]
    Keep,
    /// Set to this fire (a fire kept under `overlap: queue_one`).
    Set(DateTime<Utc>),
    /// Cleared (the queued fire was emitted).
    Clear,
}

/// One claimed task's move in [`advance_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// The task.
    pub id: i64,
    /// The fire emitted for it now, if any (becomes `last_fire_at`).
    pub emitted: Option<DateTime<Utc>>,
    /// Its next fire (`None`: it has no more).
    pub next: Option<DateTime<Utc>>,
    /// Its queued fire.
    pub queue: Queue,
}

/// Moves claimed tasks to their next fire, remembering the last fire emitted (kept when
/// `None`) and when it was emitted (`now`), and setting or clearing their queued fire, in
/// one statement: one round trip per scheduler batch, not one per task.
pub async fn advance_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    now: DateTime<Utc>,
    moves: &[Advance],
) -> Result<(), StoreError> {
    if moves.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = moves.iter().map(|m| m.id).collect();
    let lasts: Vec<Option<DateTime<Utc>>> = moves.iter().map(|m| m.emitted).collect();
    let nexts: Vec<Option<DateTime<Utc>>> = moves.iter().map(|m| m.next).collect();
    let queue_set: Vec<bool> = moves.iter().map(|m| m.queue != Queue::Keep).collect();
    let queued: Vec<Option<DateTime<Utc>>> = moves
        .iter()
        .map(|m| match m.queue {
            Queue::Set(at) => Some(at),
            Queue::Keep | Queue::Clear => None,
        })
        .collect();
    sqlx::query(
        "UPDATE tasks t SET next_fire_at = u.next_fire,
                last_fire_at = COALESCE(u.last_fire, t.last_fire_at),
                last_emitted_at = CASE WHEN u.last_fire IS NULL THEN t.last_emitted_at ELSE $6 END,
                queued_fire_at = CASE WHEN u.queue_set THEN u.queued ELSE t.queued_fire_at END
         FROM UNNEST($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::bool[], $5::timestamptz[])
              AS u(id, last_fire, next_fire, queue_set, queued)
         WHERE t.id = u.id",
    )
    .bind(&ids)
    .bind(&lasts)
    .bind(&nexts)
    .bind(&queue_set)
    .bind(&queued)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Empties a task's queued fire after an emit of it ([`claim_queued`]), in the same shape
/// as [`advance_many`]: the task keeps its next fire.
pub fn released(task: &Task, fire: DateTime<Utc>) -> Advance {
    Advance {
        id: task.id,
        emitted: Some(fire),
        next: task.next_fire_at,
        queue: Queue::Clear,
    }
}

/// A fire that was not run: `(task, scheduled time, reason)`.
pub type Missed = (i64, DateTime<Utc>, String);

/// Records fires that were not run, with why, in one statement (a fire already recorded
/// keeps its first reason).
pub async fn record_missed(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    fires: &[Missed],
) -> Result<(), StoreError> {
    if fires.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = fires.iter().map(|f| f.0).collect();
    let ats: Vec<DateTime<Utc>> = fires.iter().map(|f| f.1).collect();
    let reasons: Vec<&str> = fires.iter().map(|f| f.2.as_str()).collect();
    sqlx::query(
        "INSERT INTO missed_fires (task_id, scheduled_for, reason)
         SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(&ats)
    .bind(&reasons)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The fires of `id` recorded as missed, oldest first.
pub async fn missed(pool: &PgPool, id: i64) -> Result<Vec<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT scheduled_for FROM missed_fires WHERE task_id = $1 ORDER BY scheduled_for",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// A fire the scheduler did not run, as `run list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct MissedFire {
    /// The task.
    pub task_id: i64,
    /// When it was due.
    pub scheduled_for: DateTime<Utc>,
    /// Why it did not run (`coalesced into …`, `later than the misfire grace (5m)`,
    /// `overlap: run 12 still running`, `task edited`, …).
    pub reason: String,
    /// When the scheduler recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// The newest missed fires first (at most `limit`, and only those due at or after `since`
/// when given), filtered by account and task when given.
pub async fn missed_fires(
    pool: &PgPool,
    account_id: Option<i64>,
    task_id: Option<i64>,
    since: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<MissedFire>, StoreError> {
    Ok(sqlx::query_as::<_, MissedFire>(
        "SELECT m.task_id, m.scheduled_for, COALESCE(m.reason, 'not recorded') AS reason, m.recorded_at
         FROM missed_fires m JOIN tasks t ON t.id = m.task_id
         WHERE ($1::bigint IS NULL OR t.account_id = $1) AND ($2::bigint IS NULL OR m.task_id = $2)
           AND ($3::timestamptz IS NULL OR m.scheduled_for >= $3)
         ORDER BY m.scheduled_for DESC, m.task_id DESC LIMIT $4",
    )
    .bind(account_id)
    .bind(task_id)
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The recurrence a stored task fires by (anchored at creation when it is an interval).
pub fn recurrence(task: &Task, spec: &TaskSpec) -> Recurrence {
    spec_recurrence(task, spec)
}
