//! The JSON handlers of the admin API. Every handler takes a [`Caller`] (the account of the
//! request's token) and scopes everything by it; the work itself is done by the same store
//! functions and [`tarefas_ops`] the `tarefas` commands use.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use futures_util::stream::Stream;
use serde_json::{json, Value};
use tarefas_core::task::validate_task;
use tarefas_core::{Problems, TaskSpec};
use tarefas_store::tasks::{self, Task, TaskStatus};
use tarefas_store::{runs, tokens};

use crate::error::ApiError;
use crate::AppState;
use tarefas_ops as ops;

/// The account a request acts for, from its `Authorization: Bearer` token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account's internal id.
    pub account_id: i64,
    /// The account's name.
    pub account: String,
    /// The token's label (recorded as who requested a run).
    pub token_name: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let found = tokens::authenticate(&state.pool, token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Caller {
            account_id: found.account_id,
            account: found.account,
            token_name: found.name,
        })
    }
}

fn parse_id(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::NotFound(format!("{what} {raw} not found")))
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body is empty; send the task definition as JSON".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

fn query_i64(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("query parameter {key}={v:?} is not an integer"))
            })
        })
        .transpose()
}

/// Validates a definition with the task file's rules; its `account`, when given, must be the
/// caller's.
fn validate_for(caller: &Caller, definition: &Value) -> Result<TaskSpec, ApiError> {
    let mut spec = validate_task(definition).map_err(ApiError::Invalid)?;
    match &spec.account {
        Some(a) if *a != caller.account => {
            let mut p = Problems::default();
            p.push(
                "account",
                format!(
                    "this token acts for account {:?}; the definition says {a:?}",
                    caller.account
                ),
            );
            Err(ApiError::Invalid(p))
        }
        _ => {
            spec.account = Some(caller.account.clone());
            Ok(spec)
        }
    }
}

/// A task as the API shows it: the stored task plus its latest run.
async fn task_view(state: &AppState, task: &Task) -> Result<Value, ApiError> {
    let last = runs::list(&state.pool, Some(task.account_id), Some(task.id), 1).await?;
    let mut v = serde_json::to_value(task).map_err(|e| {
        ApiError::Internal(tarefas_store::StoreError::Invalid(format!(
            "task {}: {e}",
            task.id
        )))
    })?;
    v["last_run"] = last.first().map(ops::run_json).unwrap_or(Value::Null);
    Ok(v)
}

/// `GET /api/v1/me`: the token's account.
pub async fn me(caller: Caller) -> Json<Value> {
    Json(json!({ "account": caller.account, "token_name": caller.token_name }))
}

/// `GET /api/v1/schema`: the fields and operators of each table.
pub async fn schema(_caller: Caller) -> Json<Value> {
    Json(ops::schema())
}

/// `GET /api/v1/tasks`.
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let list = tasks::list(&state.pool, Some(caller.account_id)).await?;
    let mut out = Vec::with_capacity(list.len());
    for t in &list {
        out.push(task_view(&state, t).await?);
    }
    Ok(Json(Value::Array(out)))
}

/// `POST /api/v1/tasks`.
pub async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let spec = validate_for(&caller, &body_json(&body)?)?;
    let task = tasks::create(&state.pool, caller.account_id, &spec, Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(task_view(&state, &task).await?)))
}

/// `GET /api/v1/tasks/{id}`.
pub async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let task = tasks::get(&state.pool, Some(caller.account_id), parse_id("task", &id)?).await?;
    Ok(Json(task_view(&state, &task).await?))
}

/// `PUT /api/v1/tasks/{id}`: replaces the definition and bumps the task's version; runs
/// already planned keep theirs.
pub async fn update_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("task", &id)?;
    // A task of another account is a 404 before its body is even looked at.
    tasks::get(&state.pool, Some(caller.account_id), id).await?;
    let spec = validate_for(&caller, &body_json(&body)?)?;
    let task = ops::update_task(&state.pool, Some(caller.account_id), id, spec, Utc::now())
        .await
        .map_err(|e| match e {
            ops::UpdateError::Invalid(p) => ApiError::Invalid(p),
            ops::UpdateError::Store(e) => e.into(),
        })?;
    Ok(Json(task_view(&state, &task).await?))
}

async fn set_status(
    state: &AppState,
    caller: &Caller,
    id: &str,
    status: TaskStatus,
) -> Result<Task, ApiError> {
    Ok(tasks::set_status(
        &state.pool,
        Some(caller.account_id),
        parse_id("task", id)?,
        status,
        Utc::now(),
    )
    .await?)
}

/// `POST /api/v1/tasks/{id}/pause`.
pub async fn pause_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let task = set_status(&state, &caller, &id, TaskStatus::Paused).await?;
    Ok(Json(task_view(&state, &task).await?))
}

/// `POST /api/v1/tasks/{id}/resume`.
pub async fn resume_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let task = set_status(&state, &caller, &id, TaskStatus::Active).await?;
    Ok(Json(task_view(&state, &task).await?))
}

/// `DELETE /api/v1/tasks/{id}[?cancel_runs=true]`: its runs are kept; those not ended
/// finish on their snapshot, or are cancelled with `cancel_runs=true`.
pub async fn delete_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let cancel_runs = match q.get("cancel_runs").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "query parameter cancel_runs={v:?} must be true or false"
            )))
        }
    };
    ops::delete_task(
        &state.pool,
        Some(caller.account_id),
        parse_id("task", &id)?,
        cancel_runs,
        &format!("task deleted by {}", caller.token_name),
        Utc::now(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn limit(q: &HashMap<String, String>, default: i64, max: i64) -> Result<i64, ApiError> {
    let l = query_i64(q, "limit")?.unwrap_or(default);
    if !(0..=max).contains(&l) {
        return Err(ApiError::BadRequest(format!("limit must be 0..={max}")));
    }
    Ok(l)
}

/// `GET /api/v1/tasks/{id}/preview?limit=N`: the saved task's segment now.
pub async fn preview_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ops::Preview>, ApiError> {
    let task = tasks::get(&state.pool, Some(caller.account_id), parse_id("task", &id)?).await?;
    let limit = limit(&q, 10, 1000)?;
    let spec = task.spec()?;
    let p = ops::preview(
        &state.pool,
        task.account_id,
        spec.table,
        spec.filter.as_ref(),
        spec.time_zone,
        Utc::now(),
        limit,
    )
    .await?;
    Ok(Json(p))
}

/// `POST /api/v1/preview?limit=N`: an unsaved draft's segment (only `table`, `time_zone`
/// and `filter` are read).
pub async fn preview_draft(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<ops::Preview>, ApiError> {
    let limit = limit(&q, 10, 1000)?;
    let (table, filter, tz) = ops::draft_segment(&body_json(&body)?).map_err(ApiError::Invalid)?;
    let p = ops::preview(
        &state.pool,
        caller.account_id,
        table,
        filter.as_ref(),
        tz,
        Utc::now(),
        limit,
    )
    .await?;
    Ok(Json(p))
}

/// `POST /api/v1/tasks/{id}/run`: "Executar Tarefa".
pub async fn run_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let task = tasks::get(&state.pool, Some(caller.account_id), parse_id("task", &id)?).await?;
    let request_id = ops::execute_task(&state.pool, &task, &caller.token_name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "task_id": task.id, "request_id": request_id })),
    ))
}

/// `GET /api/v1/requests/{request_id}`: the run a request made, once a worker planned it.
pub async fn get_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = runs::by_request(&state.pool, &request_id).await?;
    match run {
        Some(r) if r.account_id != caller.account_id => Err(ApiError::NotFound(format!(
            "request {request_id} not found"
        ))),
        r => Ok(Json(json!({
            "request_id": request_id,
            "run": r.as_ref().map(ops::run_json),
        }))),
    }
}

/// `GET /api/v1/runs?task=ID&limit=N[&missed=true]`: with `missed=true`, the fires that
/// were not run are interleaved by time (`"kind": "run"` / `"kind": "missed"`, as `tarefas
/// run list --json` prints them).
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let task = query_i64(&q, "task")?;
    let limit = limit(&q, 20, 500)?;
    match q.get("missed").map(String::as_str) {
        None | Some("false") => {}
        Some("true") => {
            let (list, missed) =
                ops::run_history(&state.pool, Some(caller.account_id), task, limit).await?;
            return Ok(Json(Value::Array(ops::history_json(&list, &missed))));
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "missed: {other:?} is not true or false"
            )))
        }
    }
    let list = runs::list(&state.pool, Some(caller.account_id), task, limit).await?;
    Ok(Json(Value::Array(list.iter().map(ops::run_json).collect())))
}

/// `GET /api/v1/runs/{id}`: the run with its counts by outcome, and its items by state.
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = runs::get(&state.pool, Some(caller.account_id), parse_id("run", &id)?).await?;
    let mut v = ops::run_json(&run);
    let items: serde_json::Map<String, Value> = runs::item_counts(&state.pool, run.id)
        .await?
        .into_iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    v["items"] = Value::Object(items);
    if let (Some(o), Value::Object(x)) = (
        v.as_object_mut(),
        ops::safety::run_extras_json(&state.pool, &run).await?,
    ) {
        o.extend(x);
    }
    Ok(Json(v))
}

/// `POST /api/v1/runs/{id}/cancel`.
pub async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("run", &id)?;
    let cancelled = runs::cancel(
        &state.pool,
        Some(caller.account_id),
        id,
        &format!("cancelled by {}", caller.token_name),
    )
    .await?;
    let run = runs::get(&state.pool, Some(caller.account_id), id).await?;
    if !cancelled {
        return Err(ApiError::Conflict(format!(
            "run {id} already ended ({})",
            run.status
        )));
    }
    Ok(Json(ops::run_json(&run)))
}

/// `GET /api/v1/runs/{id}/events`: server-sent events — `progress` with the run (as
/// `GET /runs/{id}` shows it) whenever it changes, then one `end` when it reaches a final
/// status, and the stream closes.
pub async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = parse_id("run", &id)?;
    runs::get(&state.pool, Some(caller.account_id), id).await?;
    let interval = state.poll_interval;
    struct Progress {
        state: AppState,
        account_id: i64,
        id: i64,
        last: Option<Value>,
        ended: bool,
    }
    let start = Progress {
        state,
        account_id: caller.account_id,
        id,
        last: None,
        ended: false,
    };
    let stream = futures_util::stream::unfold(start, move |mut p| async move {
        if p.ended {
            return None;
        }
        loop {
            if p.state.shutdown.is_cancelled() {
                return None;
            }
            let run = match runs::get(&p.state.pool, Some(p.account_id), p.id).await {
                Ok(run) => run,
                Err(e) => {
                    tracing::warn!(error.message = %e, run_id = p.id, "run progress stream");
                    tokio::time::sleep(interval).await;
                    continue;
                }
            };
            let v = ops::run_json(&run);
            if run.status().is_terminal() {
                p.ended = true;
                let event = Event::default().event("end").data(v.to_string());
                return Some((Ok(event), p));
            }
            if p.last.as_ref() != Some(&v) {
                p.last = Some(v.clone());
                let event = Event::default().event("progress").data(v.to_string());
                return Some((Ok(event), p));
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = p.state.shutdown.cancelled() => {}
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
