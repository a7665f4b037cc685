//! The reconciler's queries: which runs have work left and no live message for it, decided
//! from the database alone, and the backoff per run (`migrations/0007_reconcile.sql`).
//!
//! A run is **due** when it is `planning` or `running` and all of these hold:
//!
//! * it has not moved for `quiet`: `runs.last_progress_at` (written by the statements that
//!   already update the run row: a planning page, and the batch outcome statement when an
//!   item settled) is older than `quiet`;
//! * no worker holds a claim of it touched within `quiet` (a live worker touches its claim
//!   every second while it works on a batch);
//! * it still has unsettled items (`planned` above the settled counters), or it is
//!   `planning` (its `ExecuteTask` is what is missing);
//! * the outbox holds nothing older than `quiet`: while the relay cannot publish (RabbitMQ
//!   down), messages written earlier are still alive there, and more would only queue up
//!   behind them;
//! * its backoff has expired (`next_reconcile_at`).
//!
//! With `quiet` longer than a message's whole retry ladder (the delays plus the time each
//! attempt may take), every message of a run that stopped moving has either been consumed
//! or given up on by then. One that is still waiting in a long queue behind other runs'
//! messages is republished needlessly: the copy is harmless (a claim takes only `pending`
//! items, planning is idempotent on the run's request id).
//!
//! [`next_due`] locks the run's row (`FOR NO KEY UPDATE SKIP LOCKED`) in the caller's
//! transaction, so replicas never republish one run at once, and [`republished`] moves its
//! backoff on in the same transaction as the messages written to the outbox.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use tarefas_core::run::RunStatus;

use crate::StoreError;

/// A run the reconciler may republish, locked by the caller's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRun {
    /// The run.
    pub run_id: i64,
    /// `planning` (its `ExecuteTask` is missing) or `running` (batch messages are).
    pub status: RunStatus,
    /// Times it was republished in a row without moving since (0 when it moved since the
    /// last republish, or was never republished).
    pub attempts: i32,
}

/// The backoff of [`republished`]: `quiet × 2^(attempt−1)`, at most `cap`.
pub fn backoff(
    quiet: std::time::Duration,
    cap: std::time::Duration,
    attempt: i32,
) -> std::time::Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(0);
    quiet.saturating_mul(1u32 << doublings).min(cap.max(quiet))
}

fn seconds(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// The next due run (see the [module docs](self)), its row locked until the caller's
/// transaction ends; `None` when no run is due (or every due one is locked by another
/// replica).
pub async fn next_due(
    tx: &mut Transaction<'_, Postgres>,
    quiet: std::time::Duration,
) -> Result<Option<DueRun>, StoreError> {
    let row: Option<(i64, String, i32, bool)> = sqlx::query_as(
        "SELECT r.id, r.status, r.reconcile_attempts,
                r.planned + r.done + r.skipped + r.failed + r.unknown > r.reconciled_progress
         FROM runs r
         WHERE r.status IN ('planning', 'running')
           -- Items waiting for their send window are not stalled: the waker publishes them.
           AND (r.waiting_until IS NULL OR r.waiting_until <= now())
           AND (r.next_reconcile_at IS NULL OR r.next_reconcile_at <= now())
           AND COALESCE(r.last_progress_at, r.started_at) < now() - make_interval(secs => $1)
           AND (r.status = 'planning' OR r.planned > r.done + r.skipped + r.failed + r.unknown)
           AND NOT EXISTS (SELECT 1 FROM run_claims c
                           WHERE c.run_id = r.id AND c.claimed_at >= now() - make_interval(secs => $1))
           AND NOT EXISTS (SELECT 1 FROM (SELECT created_at FROM outbox ORDER BY id LIMIT 1) o
                           WHERE o.created_at < now() - make_interval(secs => $1))
         ORDER BY COALESCE(r.next_reconcile_at, r.last_progress_at, r.started_at), r.id
         LIMIT 1
         FOR NO KEY UPDATE OF r SKIP LOCKED",
    )
    .bind(seconds(quiet))
    .fetch_optional(&mut **tx)
    .await?;
    let Some((run_id, status, attempts, moved)) = row else {
        return Ok(None);
    };
    let status = RunStatus::parse(&status).ok_or_else(|| {
        StoreError::Conflict(format!("run {run_id} has unknown status {status:?}"))
    })?;
    Ok(Some(DueRun {
        run_id,
        status,
        attempts: if moved { 0 } else { attempts },
    }))
}

/// Records that `run` was republished (in the transaction that wrote its messages): one
/// more attempt, the next one not before `backoff(quiet, cap, attempt)` from now, and the
/// progress it had. Returns when it may be republished next.
pub async fn republished(
    tx: &mut Transaction<'_, Postgres>,
    run: &DueRun,
    quiet: std::time::Duration,
    cap: std::time::Duration,
) -> Result<DateTime<Utc>, StoreError> {
    let attempt = run.attempts.saturating_add(1);
    let wait = backoff(quiet, cap, attempt);
    Ok(sqlx::query_scalar(
        "UPDATE runs SET reconcile_attempts = $2,
                next_reconcile_at = now() + make_interval(secs => $3),
                reconciled_progress = planned + done + skipped + failed + unknown
         WHERE id = $1 RETURNING next_reconcile_at",
    )
    .bind(run.run_id)
    .bind(attempt)
    .bind(seconds(wait))
    .fetch_one(&mut **tx)
    .await?)
}

/// Runs `planning` or `running` that have not moved (a page planned, an item settled) for
/// `stalled_for`: the `tarefas_runs_stalled` gauge, the same from every replica.
pub async fn stalled<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    stalled_for: std::time::Duration,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM runs
         WHERE status IN ('planning', 'running')
           AND (waiting_until IS NULL OR waiting_until <= now())
           AND COALESCE(last_progress_at, started_at) < now() - make_interval(secs => $1)",
    )
    .bind(seconds(stalled_for))
    .fetch_one(executor)
    .await?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::backoff;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let q = Duration::from_secs(300);
        let cap = Duration::from_secs(1200);
        let waits: Vec<u64> = (1..=6).map(|a| backoff(q, cap, a).as_secs()).collect();
        assert_eq!(waits, [300, 600, 1200, 1200, 1200, 1200]);
        assert_eq!(backoff(q, cap, 0), q);
        assert_eq!(backoff(q, cap, i32::MAX), cap);
        // A cap below the quiet time never makes a wait shorter than it.
        assert_eq!(backoff(q, Duration::from_secs(1), 3), q);
    }
}
