//! The reconciler: no run stays `planning` or `running` forever because its messages are
//! gone. Every worker runs it (there is no leader): every `--reconcile-every` it asks
//! Postgres for the runs that have work left and no live message for it
//! ([`tarefas_store::reconcile::next_due`], decided from the database alone) and, one run
//! per transaction holding that run's row (`FOR NO KEY UPDATE SKIP LOCKED`: two replicas
//! never take the same run), writes into the outbox what the run needs again — the
//! `ItemBatch` messages of its pending items, and for a run still `planning` its
//! `ExecuteTask` — then moves the run's backoff on (`--reconcile-after`, doubling up to
//! [`BACKOFF_CAP_FACTOR`] times it, starting over once the run moves again).
//!
//! A copy of a message that was in fact still alive (waiting in a long queue) is harmless:
//! a claim takes only `pending` items of a run still going, and planning is idempotent on
//! the run's request id, so each record is still sent at most once.
//!
//! Each pass also sets `tarefas_runs_stalled`: runs planning or running that did not move
//! for [`STALLED_AFTER`], counted in Postgres (the same value from every worker).

use std::time::Duration;

use sqlx::PgPool;
use tarefas_core::run::RunStatus;
use tarefas_store::reconcile::{self, DueRun};
use tarefas_store::{accounts, runs};
use tokio_util::sync::CancellationToken;

use crate::WorkerError;

/// A run is republished at most every `--reconcile-after × 2^(n−1)`, and never less often
/// than every `BACKOFF_CAP_FACTOR × --reconcile-after` while it stays stuck.
pub const BACKOFF_CAP_FACTOR: u32 = 4;

/// Runs that have not moved for this long count in `tarefas_runs_stalled`.
pub const STALLED_AFTER: Duration = Duration::from_secs(15 * 60);

/// Most runs republished by one pass (the rest wait for the next one).
const RUNS_PER_PASS: usize = 100;

/// Reconciler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// How often each worker looks for runs to republish.
    pub every: Duration,
    /// A run that has not moved for this long, with no live claim, gets its messages again
    /// (and waits at least this long between two republishes).
    pub after: Duration,
    /// Runs not moved for this long count as stalled.
    pub stalled_after: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            every: Duration::from_secs(30),
            after: Duration::from_secs(10 * 60),
            stalled_after: STALLED_AFTER,
        }
    }
}

impl ReconcileConfig {
    /// The longest wait between two republishes of a run that stays stuck.
    pub fn cap(&self) -> Duration {
        self.after.saturating_mul(BACKOFF_CAP_FACTOR)
    }

    /// Refuses a `--reconcile-after` not longer than the retry ladder's delays
    /// (`retry_delays`): a batch message waiting in a delay queue would be republished at
    /// every outage. (A message in the middle of an attempt is never taken for lost: its
    /// claim is live. A copy of one still waiting is harmless, only wasted work.)
    pub fn check(&self, retry_delays: &[Duration]) -> Result<(), String> {
        let ladder: Duration = retry_delays.iter().sum();
        if self.every.is_zero() {
            return Err("--reconcile-every must be above zero".into());
        }
        if self.after <= ladder {
            return Err(format!(
                "--reconcile-after {:?} is not longer than the retry ladder ({:?} in all): a batch \
                 message still waiting in a delay queue would be republished; give more than \
                 the ladder, plus the time its attempts take (the default 10m for the default \
                 ladder)",
                self.after, ladder
            ));
        }
        Ok(())
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Runs still `planning` whose `ExecuteTask` was written again.
    pub planning: usize,
    /// Runs `running` whose pending items got batch messages again.
    pub running: usize,
    /// Batch messages written.
    pub batches: usize,
    /// Runs counted in `tarefas_runs_stalled`.
    pub stalled: i64,
}

/// One pass: republishes every due run (at most [`RUNS_PER_PASS`]), then counts the
/// stalled runs and sets the gauge.
#[tracing::instrument(skip_all, err)]
pub async fn reconcile_once(
    pool: &PgPool,
    config: &ReconcileConfig,
    batch_size: usize,
) -> Result<Pass, WorkerError> {
    let mut pass = Pass::default();
    for _ in 0..RUNS_PER_PASS {
        let mut tx = pool.begin().await?;
        let Some(due) = reconcile::next_due(&mut tx, config.after).await? else {
            break;
        };
        let written = republish(pool, &mut tx, &due, batch_size).await?;
        let next = reconcile::republished(&mut tx, &due, config.after, config.cap()).await?;
        tx.commit().await?;
        let state = match due.status {
            RunStatus::Planning => {
                pass.planning += 1;
                "planning"
            }
            _ => {
                pass.running += 1;
                "running"
            }
        };
        pass.batches += written;
        metrics::counter!(tarefas_telemetry::metric::RUNS_RECONCILED, "state" => state)
            .increment(1);
        tracing::warn!(
            run_id = due.run_id,
            status = state,
            batches = written,
            attempt = due.attempts + 1,
            next_at = %next,
            "run had not moved for {:?} and no worker held it: its messages were written again",
            config.after
        );
    }
    pass.stalled = reconcile::stalled(pool, config.stalled_after).await?;
    metrics::gauge!(tarefas_telemetry::metric::RUNS_STALLED).set(pass.stalled as f64);
    Ok(pass)
}

/// Writes the due run's messages into the outbox (in `tx`, which holds the run): its
/// `ExecuteTask` when it is still planning, and a batch message per `batch_size` of its
/// pending items. Returns how many batch messages.
async fn republish(
    pool: &PgPool,
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    due: &DueRun,
    batch_size: usize,
) -> Result<usize, WorkerError> {
    let run = runs::get(pool, None, due.run_id).await?;
    let account = accounts::by_id(pool, run.account_id).await?;
    crate::plan::republish(
        tx,
        &run,
        &account.name,
        due.status == RunStatus::Planning,
        batch_size,
    )
    .await
}

/// Runs [`reconcile_once`] at start and then every `config.every` until `stop` is cancelled.
pub async fn run(
    pool: PgPool,
    config: ReconcileConfig,
    batch_size: usize,
    stop: CancellationToken,
) {
    for state in ["planning", "running"] {
        metrics::counter!(tarefas_telemetry::metric::RUNS_RECONCILED, "state" => state)
            .increment(0);
    }
    loop {
        match reconcile_once(&pool, &config, batch_size).await {
            Ok(pass) => tracing::debug!(?pass, "reconciled"),
            Err(e) => {
                tracing::warn!(error.message = %e, error.cause_chain = ?e, "reconciling runs failed; trying again later")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_counts_exhausted_retries_under_the_documented_name() {
        assert_eq!(
            tarefas_broker::consume::EXHAUSTED_METRIC,
            tarefas_telemetry::metric::RETRIES_EXHAUSTED
        );
    }

    #[test]
    fn the_quiet_time_must_outlast_the_ladder() {
        let ladder = tarefas_broker::topology::DEFAULT_RETRY_DELAYS;
        let config = ReconcileConfig::default();
        assert_eq!(config.check(&ladder), Ok(()));
        assert_eq!(config.cap(), Duration::from_secs(40 * 60));
        let short = ReconcileConfig {
            after: Duration::from_secs(156),
            ..ReconcileConfig::default()
        };
        let e = short.check(&ladder).unwrap_err();
        assert!(
            e.contains("--reconcile-after 156s") && e.contains("(156s in all)"),
            "{e}"
        );
    }
}
