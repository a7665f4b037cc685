//! `tarefas task preview`: count the records a task's segment matches now, and show a few.

use std::process::ExitCode;

use crate::db::DbArgs;
use crate::task::AccountScope;

/// Prints the count and a sample of the task's segment.
pub async fn run(
    id: i64,
    scope: &AccountScope,
    limit: i64,
    json: bool,
    db: &DbArgs,
) -> anyhow::Result<ExitCode> {
    let _ = (id, scope, limit, json, db);
    anyhow::bail!("task preview is not available yet")
}
