//! The admin operations shared by the `tarefas` commands and the HTTP API, so that both do
//! exactly the same thing: "Executar Tarefa" (an `ExecuteTask` into the outbox), editing and
//! deleting a task, the segment preview (count and sample), the JSON shape of a run, and the
//! run history with the fires that were not run.

pub mod safety;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use sqlx::PgPool;
use tarefas_core::segment::{parse_filter, Filter, Table};
use tarefas_core::{Problems, TaskSpec};
use tarefas_proto::v1::ExecuteTask;
use tarefas_store::runs::{self, Run};
use tarefas_store::segment::{self, SegmentQuery};
use tarefas_store::tasks::{self, MissedFire, Task, TaskStatus};
use tarefas_store::{mirror, outbox, StoreError};

/// "Executar Tarefa": writes an `ExecuteTask` for `task` (trigger manual, a fresh request id)
/// into the outbox, from which the relay in every worker publishes it. Returns the request
/// id; the run appears once a worker has planned it (`runs::by_request`).
pub async fn execute_task(
    pool: &PgPool,
    task: &Task,
    requested_by: &str,
) -> Result<String, StoreError> {
    let (request_id, msg) = manual_message(task, requested_by);
    outbox::enqueue(
        pool,
        tarefas_proto::EXECUTE_ROUTING_KEY,
        &[tarefas_proto::encode_execute_task(&msg)],
    )
    .await?;
    Ok(request_id)
}

/// The `ExecuteTask` of an "Executar Tarefa" of `task`, with its fresh request id.
pub(crate) fn manual_message(task: &Task, requested_by: &str) -> (String, ExecuteTask) {
    let request_id = format!("manual-{}", uuid::Uuid::new_v4());
    let msg = ExecuteTask::manual(
        task.id,
        &task.account,
        request_id.clone(),
        requested_by,
        Utc::now().timestamp_millis(),
    );
    (request_id, msg)
}

/// Why an edit of a task was refused.
#[derive(Debug)]
pub enum UpdateError {
    /// The new definition does not fit the task, each problem at its path (exit 2, 422).
    Invalid(Problems),
    /// The task was not found, or Postgres failed.
    Store(StoreError),
}

impl From<StoreError> for UpdateError {
    fn from(e: StoreError) -> Self {
        UpdateError::Store(e)
    }
}

/// Edits task `id` (not deleted; within `account_id` when given): its definition becomes
/// `spec` (validated already, by the task file's rules), whose `account`, when it names
/// one, must be the task's; its version goes up by one. Runs already created go on with the
/// snapshot they were planned with; only runs planned afterwards execute the new version.
pub async fn update_task(
    pool: &PgPool,
    account_id: Option<i64>,
    id: i64,
    mut spec: TaskSpec,
    now: DateTime<Utc>,
) -> Result<Task, UpdateError> {
    let task = tasks::get(pool, account_id, id).await?;
    if let Some(a) = spec.account.as_ref().filter(|a| **a != task.account) {
        let mut p = Problems::default();
        p.push(
            "account",
            format!(
                "task {id} belongs to account {:?}; the file says {a:?} (a task cannot move to another account)",
                task.account
            ),
        );
        return Err(UpdateError::Invalid(p));
    }
    spec.account = Some(task.account.clone());
    Ok(tasks::update(pool, Some(task.account_id), id, &spec, now).await?)
}

/// Deletes task `id` (within `account_id` when given): it fires no more, and its runs are
/// kept for their history. Its runs that have not ended go on and finish on their snapshot,
/// unless `cancel_runs`: then each is cancelled as `tarefas run cancel` does (pending items
/// skipped, `reason` recorded). Returns the deleted task and the ids of the runs cancelled.
pub async fn delete_task(
    pool: &PgPool,
    account_id: Option<i64>,
    id: i64,
    cancel_runs: bool,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(Task, Vec<i64>), StoreError> {
    // Deleted first: no run is created for it after this (`runs::create_or_get`), so the
    // list below holds every run it will ever have.
    let task = tasks::set_status(pool, account_id, id, TaskStatus::Deleted, now).await?;
    let mut cancelled = Vec::new();
    if cancel_runs {
        for run_id in runs::unfinished(pool, task.id).await? {
            if runs::cancel(pool, Some(task.account_id), run_id, reason).await? {
                cancelled.push(run_id);
            }
        }
    }
    Ok((task, cancelled))
}

/// What a segment matches now: how many records, and the first few.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Preview {
    /// Matching records.
    pub count: i64,
    /// The first `limit` of them (by id), with the fields an operator recognizes.
    pub sample: Vec<Value>,
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

/// Counts the records of `account_id`'s `table` that `filter` matches at `now`, and loads
/// the first `limit` of them.
pub async fn preview(
    pool: &PgPool,
    account_id: i64,
    table: Table,
    filter: Option<&Filter>,
    time_zone: Tz,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Preview, StoreError> {
    let query = SegmentQuery::new(table, filter, time_zone, now);
    let count = segment::count(pool, account_id, &query).await?;
    let ids = segment::sample(pool, account_id, &query, limit).await?;
    let sample: Vec<Value> = match table {
        Table::Contacts => mirror::load_contacts_by_id(pool, account_id, &ids)
            .await?
            .into_iter()
            .map(|c| {
                json!({
                    "id": c.id, "name": c.name, "mobile": c.mobile, "email": c.email,
                    "organization": c.organization.and_then(|o| o.name),
                    "group": c.group.and_then(|g| g.name),
                    "created_at": time(c.created_at),
                })
            })
            .collect(),
        Table::Chats => mirror::load_chats_by_id(pool, account_id, &ids)
            .await?
            .into_iter()
            .map(|m| {
                json!({
                    "id": m.chat.id, "contact_id": m.contact_id, "situation": m.chat.situation.as_str(),
                    "department": m.chat.department.and_then(|d| d.name),
                    "channel": m.chat.channel.and_then(|c| c.name),
                    "created_at": time(m.chat.created_at),
                    "last_message_at": time(m.chat.last_message_at),
                })
            })
            .collect(),
    };
    Ok(Preview { count, sample })
}

/// The segment of an unsaved draft: its `table`, `time_zone` and `filter`, validated by the
/// task file's own rules, so problems carry the same paths as `tarefas task validate`
/// (`filter.all[1].op`, `table`). The rest of the draft (name, action, …) is not looked at,
/// so the count can follow the filter while the form is still incomplete.
pub fn draft_segment(draft: &Value) -> Result<(Table, Option<Filter>, Tz), Problems> {
    let mut problems = Problems::default();
    let Some(map) = draft.as_object() else {
        problems.push("", "a task definition is an object");
        return Err(problems);
    };
    let tz = match map.get("time_zone") {
        None | Some(Value::Null) => Some(tarefas_core::task::DEFAULT_TIME_ZONE.parse().ok()),
        Some(Value::String(s)) => match s.parse::<Tz>() {
            Ok(tz) => Some(Some(tz)),
            Err(_) => {
                problems.push(
                    "time_zone",
                    format!("{s:?} is not an IANA time zone (e.g. America/Sao_Paulo)"),
                );
                None
            }
        },
        Some(_) => {
            problems.push("time_zone", "expected a string");
            None
        }
    }
    .flatten();
    let table = match map.get("table") {
        Some(Value::String(s)) => {
            let t = Table::parse(s);
            if t.is_none() {
                problems.push(
                    "table",
                    format!("{s:?} is not a table; use contacts or chats"),
                );
            }
            t
        }
        Some(_) => {
            problems.push("table", "expected a string: contacts or chats");
            None
        }
        None => {
            problems.push("table", "required: contacts or chats");
            None
        }
    };
    let (Some(table), Some(tz)) = (table, tz) else {
        return Err(problems);
    };
    let filter = match map.get("filter") {
        None | Some(Value::Null) => None,
        Some(v) => parse_filter(v, table, tz, "filter", &mut problems),
    };
    problems.into_result((table, filter, tz))
}

/// A run as the API and `tarefas run … --json` show it, with its counts by outcome.
pub fn run_json(run: &Run) -> Value {
    json!({
        "id": run.id, "task_id": run.task_id, "task_version": run.task_version, "status": run.status, "status_reason": run.status_reason,
        "trigger": run.trigger, "scheduled_for": run.scheduled_for, "requested_by": run.requested_by,
        "request_id": run.request_id,
        "started_at": run.started_at, "finished_at": run.finished_at,
        "ended": run.status().is_terminal(),
        "counts": {
            "planned": run.planned, "done": run.done, "skipped": run.skipped, "failed": run.failed,
            "unknown": run.unknown, "pending": run.planned - run.settled(),
        }
    })
}

/// A task's history as `run list` shows it: the newest `limit` runs, and the fires that were
/// not run (coalesced, later than the misfire grace, skipped for overlap, dropped by an edit)
/// over the same span of time (at most `limit` of them, newest first).
pub async fn run_history(
    pool: &PgPool,
    account_id: Option<i64>,
    task_id: Option<i64>,
    limit: i64,
) -> Result<(Vec<Run>, Vec<MissedFire>), StoreError> {
    let list = runs::list(pool, account_id, task_id, limit).await?;
    // A full page of runs covers a span of time: the missed fires of that span. A shorter
    // one is the whole history: every missed fire (up to the limit).
    let since = if list.len() as i64 >= limit {
        list.iter().map(run_time).min()
    } else {
        None
    };
    let missed = tasks::missed_fires(pool, account_id, task_id, since, limit).await?;
    Ok((list, missed))
}

/// The time a run sits at in the history: its scheduled fire, or when it was made.
fn run_time(run: &Run) -> DateTime<Utc> {
    run.scheduled_for.unwrap_or(run.started_at)
}

/// A missed fire as JSON: `{"kind": "missed", "task_id", "scheduled_for", "reason",
/// "recorded_at"}`.
pub fn missed_json(m: &MissedFire) -> Value {
    json!({
        "kind": "missed", "task_id": m.task_id, "scheduled_for": m.scheduled_for,
        "reason": m.reason, "recorded_at": m.recorded_at,
    })
}

/// Runs (in their order, newest first, each [`run_json`] with `"kind": "run"`) and missed
/// fires ([`missed_json`]) in one list by time: a missed fire comes before the first run
/// that sits earlier than it.
pub fn history_json(list: &[Run], missed: &[MissedFire]) -> Vec<Value> {
    let mut out = Vec::with_capacity(list.len() + missed.len());
    let mut pending = missed.iter().peekable();
    for run in list {
        while let Some(m) = pending.next_if(|m| m.scheduled_for > run_time(run)) {
            out.push(missed_json(m));
        }
        let mut r = run_json(run);
        r["kind"] = json!("run");
        out.push(r);
    }
    out.extend(pending.map(missed_json));
    out
}

/// The fields of each table, each with the operators that apply to it, in the task file's
/// order: what the console's filter builder offers. Built from `tarefas_core::segment`, so it
/// cannot disagree with validation.
pub fn schema() -> Value {
    use tarefas_core::segment::{Field, CHAT_FIELDS, CONTACT_FIELDS};
    let table = |table: Table, names: &[&str]| -> Vec<Value> {
        names
            .iter()
            .map(|name| {
                let probe = if *name == "custom.<key>" {
                    "custom.x"
                } else {
                    name
                };
                let field = Field::parse(table, probe).expect("listed fields parse");
                let kind = field.kind();
                json!({
                    "field": name,
                    "kind": format!("{kind:?}").to_lowercase(),
                    "operators": kind.operators().iter().map(|o| o.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    json!({
        "tables": {
            "contacts": table(Table::Contacts, CONTACT_FIELDS),
            "chats": table(Table::Chats, CHAT_FIELDS),
        },
        "situations": ["wait_for_chat", "auto", "in_chat"],
    })
}
