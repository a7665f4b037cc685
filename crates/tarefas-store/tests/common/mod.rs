//! Helpers shared by the store's integration tests: accounts, times, filters from JSON (so
//! they are validated exactly as a task file's), and segments run through Postgres and
//! through the evaluator.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use sqlx::PgPool;
use tarefas_core::eval::{matches, Record};
use tarefas_core::segment::{parse_filter, Filter, Table};
use tarefas_core::Problems;
use tarefas_store::segment::{self, SegmentQuery};

/// São Paulo, the default zone of a task.
pub const SP: Tz = chrono_tz::America::Sao_Paulo;
/// New York, for daylight-saving edges.
pub const NY: Tz = chrono_tz::America::New_York;

/// An RFC 3339 instant.
pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// Creates an account and returns its id.
pub async fn account(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO accounts (name) VALUES ($1) RETURNING id")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("insert account")
}

/// A filter validated as a task file's `filter`; panics with the problems otherwise.
pub fn filter(table: Table, value: &Value, tz: Tz) -> Filter {
    try_filter(table, value, tz).unwrap_or_else(|p| panic!("{value}: {p}"))
}

/// A filter validated as a task file's `filter`, or its problems.
pub fn try_filter(table: Table, value: &Value, tz: Tz) -> Result<Filter, Problems> {
    let mut problems = Problems::default();
    let f = parse_filter(value, table, tz, "filter", &mut problems);
    match f {
        Some(f) if problems.is_empty() => Ok(f),
        _ => Err(problems),
    }
}

/// The ids Postgres selects for `filter` in `account_id` (all of them, by id).
pub async fn sql_ids(
    pool: &PgPool,
    account_id: i64,
    table: Table,
    filter: Option<&Filter>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Vec<i64> {
    let q = SegmentQuery::new(table, filter, tz, now);
    segment::page(pool, account_id, &q, None, i64::MAX)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", q.explain().0))
}

/// The ids of `records` that the evaluator says match, sorted.
pub fn eval_ids(
    records: &[Record],
    filter: Option<&Filter>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Vec<i64> {
    let mut ids: Vec<i64> = records
        .iter()
        .filter(|r| matches(filter, r, now, tz))
        .map(Record::id)
        .collect();
    ids.sort_unstable();
    ids
}
