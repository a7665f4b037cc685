//! `tarefas task preview`: count the records a task's segment matches now, and show a few.

use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use tarefas_core::Table;
use tarefas_store::segment::{self, SegmentQuery};
use tarefas_store::{mirror, tasks};

use crate::db::DbArgs;
use crate::output;
use crate::task::AccountScope;

fn time(t: Option<chrono::DateTime<Utc>>) -> Value {
    t.map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

/// Prints the count and a sample of the task's segment: `{"count": N, "sample": [...]}` with
/// `--json`, where each sample record carries its `id` and the fields an operator recognizes.
pub async fn run(
    id: i64,
    scope: &AccountScope,
    limit: i64,
    json_out: bool,
    db: &DbArgs,
) -> anyhow::Result<ExitCode> {
    let pool = db.pool().await?;
    let task = tasks::get(&pool, scope.id(&pool).await?, id).await?;
    let spec = task.spec()?;
    let query = SegmentQuery::new(spec.table, spec.filter.as_ref(), spec.time_zone, Utc::now());
    let count = segment::count(&pool, task.account_id, &query).await?;
    let ids = segment::sample(&pool, task.account_id, &query, limit).await?;
    let sample: Vec<Value> = match spec.table {
        Table::Contacts => mirror::load_contacts_by_id(&pool, task.account_id, &ids)
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
        Table::Chats => mirror::load_chats_by_id(&pool, task.account_id, &ids)
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
    if json_out {
        output::json(&json!({ "count": count, "sample": sample }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "task {} ({}): {count} {} match now",
        task.id, task.name, spec.table
    );
    if sample.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let keys: Vec<&str> = match spec.table {
        Table::Contacts => vec![
            "id",
            "name",
            "mobile",
            "email",
            "organization",
            "created_at",
        ],
        Table::Chats => vec![
            "id",
            "contact_id",
            "situation",
            "department",
            "channel",
            "last_message_at",
        ],
    };
    let rows: Vec<Vec<String>> = sample
        .iter()
        .map(|r| {
            keys.iter()
                .map(|k| match &r[*k] {
                    Value::Null => "-".to_string(),
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect();
    let headers: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
    output::table(
        &headers.iter().map(String::as_str).collect::<Vec<_>>(),
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}
