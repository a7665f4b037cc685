//! The attempts that handed an item back without having called Huggy
//! (`run_items.never_called_by`, `migrations/0009_attempts_never_called.sql`).
//!
//! An attempt is one claim of the item's batch ([`crate::runs::Claim::id`]); the
//! idempotency key it sets in Redis says which it is. An attempt that hands an item back
//! knowing it never called Huggy for it (no token, or the answer of the step that set the
//! key never came back, or Huggy's answer proves the call did not happen) records its claim
//! id here, in the same statement that hands the item back, so before any later attempt can
//! claim the item. A later attempt that finds the key held by such an attempt knows that no
//! call was made under it and may take the key over; a key held by an attempt not listed
//! here may have been called, and stays `unknown`.

use std::sync::LazyLock;

use sqlx::PgPool;
use tarefas_core::run::ItemStatus;

use crate::runs::item_may_become;
use crate::StoreError;

/// `$1` run id, `$2` item ids, `$3` claim id: [`crate::runs::release`], also recording the
/// claim in `never_called_by`.
static RELEASE_NEVER_CALLED_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE run_items SET status = '{}', claimed_at = NULL, claim_id = NULL,
                              never_called_by = array_append(never_called_by, $3::bigint)
         WHERE id = ANY($2) AND (run_id = $1 AND {}) IS TRUE",
        ItemStatus::Pending,
        item_may_become("status", &[ItemStatus::Pending])
    )
});

/// Hands the items back to `pending`, like [`crate::runs::release`], recording that attempt
/// `claim_id` never called Huggy for any of them. Returns how many were handed back.
pub async fn release_never_called<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    run_id: i64,
    claim_id: i64,
    item_ids: &[i64],
) -> Result<u64, StoreError> {
    let done = sqlx::query(&RELEASE_NEVER_CALLED_SQL)
        .bind(run_id)
        .bind(item_ids)
        .bind(claim_id)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Whether attempt `claim_id` recorded that it never called Huggy for item `item_id`.
pub async fn never_called(pool: &PgPool, item_id: i64, claim_id: i64) -> Result<bool, StoreError> {
    let found: Option<bool> = sqlx::query_scalar(
        "SELECT $2::bigint = ANY(never_called_by) IS TRUE FROM run_items WHERE id = $1",
    )
    .bind(item_id)
    .bind(claim_id)
    .fetch_optional(pool)
    .await?;
    Ok(found.unwrap_or(false))
}
