//! `tarefas task preview`: count the records a task's segment matches now, and show a few.

use std::process::ExitCode;

use chrono::Utc;
use serde_json::{json, Value};
use tarefas_core::Table;
use tarefas_store::tasks;

use crate::db::DbArgs;
use crate::output;
use crate::task::AccountScope;

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
    let tarefas_ops::Preview { count, sample } = tarefas_ops::preview(
        &pool,
        task.account_id,
        spec.table,
        spec.filter.as_ref(),
        spec.time_zone,
        Utc::now(),
        limit,
    )
    .await?;
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
