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
        t.created_at, t.updated_at
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
/// `spec`, keeping its status. An active task's next fire is computed again from `now`; an
/// interval recurrence without `starts_at` is anchored at `now`.
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
    let updated = sqlx::query(
        "UPDATE tasks SET name = $1, objective = $2, definition = $3, table_name = $4,
                recurrence_kind = $5, time_zone = $6, next_fire_at = $7, updated_at = $8
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
/// that fell in the pause are not replayed); pausing and deleting clear it.
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
        "UPDATE tasks SET status = $1, next_fire_at = $2, updated_at = $3
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

/// Locks up to `limit` active tasks due at `now` (oldest first); other schedulers skip them.
pub async fn claim_due(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Task>, StoreError> {
    Ok(sqlx::query_as::<_, Task>(&format!(
        "{SELECT} WHERE t.status = 'active' AND t.next_fire_at <= $1
         ORDER BY t.next_fire_at LIMIT $2 FOR UPDATE OF t SKIP LOCKED"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// One claimed task's move in [`advance_many`]: `(id, last fire emitted, next fire)`.
pub type Advance = (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Moves claimed tasks to their next fire, remembering the last fire emitted (kept when
/// `None`), in one statement: one round trip per scheduler batch, not one per task.
pub async fn advance_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    moves: &[Advance],
) -> Result<(), StoreError> {
    if moves.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = moves.iter().map(|m| m.0).collect();
    let lasts: Vec<Option<DateTime<Utc>>> = moves.iter().map(|m| m.1).collect();
    let nexts: Vec<Option<DateTime<Utc>>> = moves.iter().map(|m| m.2).collect();
    sqlx::query(
        "UPDATE tasks t SET next_fire_at = u.next_fire, last_fire_at = COALESCE(u.last_fire, t.last_fire_at)
         FROM UNNEST($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS u(id, last_fire, next_fire)
         WHERE t.id = u.id",
    )
    .bind(&ids)
    .bind(&lasts)
    .bind(&nexts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records fires that were not emitted because they were later than the misfire grace.
pub async fn record_missed(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
    fires: &[DateTime<Utc>],
) -> Result<(), StoreError> {
    if fires.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO missed_fires (task_id, scheduled_for) SELECT $1, f FROM UNNEST($2::timestamptz[]) AS f
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(fires)
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

/// The recurrence a stored task fires by (anchored at creation when it is an interval).
pub fn recurrence(task: &Task, spec: &TaskSpec) -> Recurrence {
    spec_recurrence(task, spec)
}
