//! The campaign-safety handlers of the admin API: the per-record report (JSON or CSV),
//! approving a held run ("Aprovar envio"), retrying failed items ("Reenviar falhas"), the
//! dry run ("Simular"), and the account's opt-out list. Each is the same [`tarefas_ops`]
//! operation the `tarefas` commands use.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use tarefas_ops::safety;
use tarefas_store::{guards, runs, tasks};

use crate::api::Caller;
use crate::error::ApiError;
use crate::AppState;

fn parse_id(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::NotFound(format!("{what} {raw} not found")))
}

/// `GET /api/v1/runs/{id}/items?outcome=O&format=csv`: one entry per record.
pub async fn run_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let run = runs::get(&state.pool, Some(caller.account_id), parse_id("run", &id)?).await?;
    let outcome = q
        .get("outcome")
        .filter(|o| !o.is_empty())
        .map(|o| safety::parse_outcome(o))
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let rows = safety::all_items(&state.pool, run.id, outcome).await?;
    match q.get("format").map(String::as_str) {
        None | Some("json") => Ok(Json(rows).into_response()),
        Some("csv") => {
            let mut text = String::from(safety::ITEMS_CSV_HEADER);
            text.push('\n');
            for r in &rows {
                text.push_str(&safety::item_csv(r));
                text.push('\n');
            }
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"run-{}-items.csv\"", run.id),
                    ),
                ],
                text,
            )
                .into_response())
        }
        Some(other) => Err(ApiError::BadRequest(format!(
            "format: {other:?} is not json or csv"
        ))),
    }
}

/// `POST /api/v1/runs/{id}/approve`: "Aprovar envio".
pub async fn approve_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = runs::get(&state.pool, Some(caller.account_id), parse_id("run", &id)?).await?;
    if !safety::approve(&state.pool, &run, &caller.token_name).await? {
        return Err(ApiError::Conflict(format!(
            "run {} is {}, not awaiting_approval",
            run.id, run.status
        )));
    }
    let run = runs::get(&state.pool, Some(caller.account_id), run.id).await?;
    Ok(Json(tarefas_ops::run_json(&run)))
}

/// `POST /api/v1/runs/{id}/retry-failed`: "Reenviar falhas".
pub async fn retry_failed(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let run = runs::get(&state.pool, Some(caller.account_id), parse_id("run", &id)?).await?;
    let (request_id, n) = safety::retry_failed(&state.pool, &run, &caller.token_name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({"task_id": run.task_id, "request_id": request_id, "retry_of": run.id, "records": n}),
        ),
    ))
}

fn only_of(body: &Bytes) -> Result<Option<Vec<i64>>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    match v.get("only") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|i| {
                i.as_i64()
                    .ok_or_else(|| ApiError::BadRequest(format!("only: {i} is not a record id")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(ApiError::BadRequest(format!(
            "only: expected a list of record ids, found {other}"
        ))),
    }
}

/// `POST /api/v1/tasks/{id}/dry-run` (body optional: `{"only": [ids]}`): "Simular".
pub async fn dry_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let task = tasks::get(&state.pool, Some(caller.account_id), parse_id("task", &id)?).await?;
    let only = only_of(&body)?;
    let d = safety::dry_run(&state.pool, &task, only.as_deref(), Utc::now()).await?;
    let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
    v["max_records"] = json!(d.max_records);
    v["window_opens_at"] = json!(d.window_opens);
    Ok(Json(v))
}

/// `GET /api/v1/suppressions`: the account's opt-out list.
pub async fn list_suppressions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let mut all = Vec::new();
    let mut after = i64::MIN;
    loop {
        let page = guards::suppressions(&state.pool, caller.account_id, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.contact_id;
        all.extend(page);
    }
    Ok(Json(serde_json::to_value(all).unwrap_or(Value::Null)))
}

fn contact_ids(body: &Bytes) -> Result<Vec<i64>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    let ids = v
        .get("contact_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadRequest("expected {\"contact_ids\": [ids]}".into()))?;
    ids.iter()
        .map(|i| {
            i.as_i64().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::BadRequest(format!("contact_ids: {i} is not a contact id"))
            })
        })
        .collect()
}

/// `POST /api/v1/suppressions` `{"contact_ids": [...]}`: add to the opt-out list.
pub async fn add_suppressions(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ids = contact_ids(&body)?;
    let n = guards::suppress(&state.pool, caller.account_id, &ids, "api").await?;
    Ok(Json(json!({"changed": n, "read": ids.len()})))
}

/// `POST /api/v1/suppressions/remove` `{"contact_ids": [...]}`: remove from the list.
pub async fn remove_suppressions(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ids = contact_ids(&body)?;
    let n = guards::unsuppress(&state.pool, caller.account_id, &ids).await?;
    Ok(Json(json!({"changed": n, "read": ids.len()})))
}

/// `POST /api/v1/suppressions/import` (a CSV body): add every contact id of the file, all
/// or nothing (422 with one problem per bad line).
pub async fn import_suppressions(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let text = String::from_utf8_lossy(&body);
    let ids = safety::parse_csv_ids(&text).map_err(|problems| {
        let mut p = tarefas_core::Problems::default();
        for line in problems.into_iter().take(100) {
            p.push("csv", line);
        }
        ApiError::Invalid(p)
    })?;
    let n = guards::suppress(&state.pool, caller.account_id, &ids, "csv").await?;
    Ok(Json(json!({"changed": n, "read": ids.len()})))
}
