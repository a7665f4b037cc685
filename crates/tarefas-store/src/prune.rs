//! Retention (design §9): deletes the history older than a cutoff — finished runs with
//! their items and claims, missed fires, API tokens revoked long ago, deleted tasks left
//! with no run — in bounded batches, each statement its own short transaction, so that a
//! prune of millions of items never holds a lock or a snapshot for long.
//!
//! **A live run is never touched.** Only runs in a terminal status (`done`,
//! `done_with_errors`, `cancelled`, `failed`) that finished before the cutoff are
//! candidates, and every statement that deletes items checks that again for the runs it
//! deletes from, holding those run rows `FOR SHARE` until it commits: a run that changes
//! status meanwhile (any transition is an `UPDATE` of its row) either waits for the
//! statement, or has committed first and is then no longer a candidate. Terminal statuses
//! have no way out (`RunStatus::can_become`; a test here fails if one is added), so a run
//! whose items were partly deleted can never be resumed.
//!
//! A run's items go first, by the `(run_id, record_id)` index in keyset ranges of record
//! ids that hold at most `batch` items (found by an index-only scan), one statement each; then the run rows (their claims with them). `run_items` has no
//! foreign key to `runs` (migrations/0004_run_claims.sql); the statement trigger that
//! deletes a run's items with the run finds none left by then. The request id of each
//! pruned run is kept (`pruned_runs`, one small row per run), so that a message older than
//! the retention never makes that run again.
//!
//! [`prune_every`] is the periodic prune of the workers: one replica at a time, under a
//! Postgres advisory lock.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::StoreError;

/// The advisory lock key of the periodic prune (any number of workers; one prunes).
pub const ADVISORY_LOCK: i64 = 0x7461_7265_6661_7301; // "tarefas" + 1

/// Items deleted per statement by default.
pub const DEFAULT_BATCH: i64 = 10_000;

/// What a prune deleted, and how long it took.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PruneReport {
    /// The cutoff: history older than this was deleted.
    pub cutoff: Option<DateTime<Utc>>,
    /// Finished runs deleted.
    pub runs: u64,
    /// Their items.
    pub items: u64,
    /// Their claims (left by workers that died).
    pub claims: u64,
    /// Missed fires recorded before the cutoff.
    pub missed_fires: u64,
    /// API tokens revoked before the cutoff.
    pub api_tokens: u64,
    /// Deleted tasks (deleted before the cutoff) that had no run left.
    pub tasks: u64,
    /// Statements issued.
    pub statements: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl PruneReport {
    /// Items deleted per second so far.
    pub fn items_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.items as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// How a prune runs.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Delete the history that ended before this instant.
    pub cutoff: DateTime<Utc>,
    /// At most this many rows per statement (items, missed fires).
    pub batch: i64,
    /// A pause between two statements (gives the live work room; zero for none).
    pub pause: Duration,
}

impl PruneOptions {
    /// Prune what ended before `cutoff`, in statements of [`DEFAULT_BATCH`] rows.
    pub fn before(cutoff: DateTime<Utc>) -> Self {
        PruneOptions {
            cutoff,
            batch: DEFAULT_BATCH,
            pause: Duration::ZERO,
        }
    }
}

/// Candidate runs: `$1` terminal statuses, `$2` cutoff, `$3`/`$4` keyset (finished_at, id;
/// NULL to start), `$5` page size. Rows: id, finished_at, items planned.
const CANDIDATES_SQL: &str = "SELECT id, finished_at, planned FROM runs
     WHERE status = ANY($1) AND finished_at < $2
       AND (finished_at, id) > (COALESCE($3::timestamptz, '-infinity'), $4)
     ORDER BY finished_at, id LIMIT $5";

/// How many items the runs `$1` hold, counted up to `$2` (an index-only scan).
const COUNT_ITEMS_SQL: &str = "SELECT count(*) FROM (
     SELECT 1 FROM run_items WHERE run_id = ANY($1) LIMIT $2) s";

/// The record id of run `$1`'s `$3`-th item after record `$2` (an index-only scan): the
/// upper end of the next batch of a large run. None when fewer are left.
const BATCH_END_SQL: &str = "SELECT record_id FROM run_items WHERE run_id = $1 AND record_id > $2
     ORDER BY record_id OFFSET $3 - 1 LIMIT 1";

/// Deletes the items of the runs `$1` that are still terminal (`$2`) and finished before
/// `$3`, with record ids in ($4, $5], by the (run_id, record_id) index; holds those runs
/// `FOR SHARE` until it commits. The caller bounds the range to at most a batch
/// ([`COUNT_ITEMS_SQL`], [`BATCH_END_SQL`]).
const DELETE_ITEMS_SQL: &str = "WITH r AS (
         SELECT id FROM runs WHERE id = ANY($1) AND status = ANY($2) AND finished_at < $3
         ORDER BY id FOR SHARE)
     DELETE FROM run_items
     WHERE run_id = ANY(ARRAY(SELECT id FROM r)) AND record_id > $4 AND record_id <= $5";

/// Deletes the runs `$1` still terminal (`$2`) and finished before `$3`, and their claims;
/// keeps their request ids in `pruned_runs`, so that no run is made again for them
/// (migrations/0008_retention.sql).
const DELETE_RUNS_SQL: &str = "WITH r AS (
         DELETE FROM runs WHERE id = ANY($1) AND status = ANY($2) AND finished_at < $3
         RETURNING id, request_id),
     c AS (DELETE FROM run_claims WHERE run_id IN (SELECT id FROM r) RETURNING 1),
     t AS (INSERT INTO pruned_runs (request_id) SELECT request_id FROM r
           ON CONFLICT DO NOTHING RETURNING 1)
     SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM c), (SELECT count(*) FROM t)";

/// Deletes the history that ended before `options.cutoff`; `progress` is called after
/// every statement with the totals so far. Every statement is its own transaction, on
/// `conn`. Safe to run beside live work and beside another prune.
pub async fn prune(
    conn: &mut PgConnection,
    options: &PruneOptions,
    mut progress: impl FnMut(&PruneReport),
) -> Result<PruneReport, StoreError> {
    let started = Instant::now();
    let batch = options.batch.max(1);
    let terminal = crate::runs::terminal_statuses();
    let cutoff = options.cutoff;
    let mut report = PruneReport {
        cutoff: Some(cutoff),
        ..PruneReport::default()
    };
    let tick = |report: &mut PruneReport, progress: &mut dyn FnMut(&PruneReport)| {
        report.statements += 1;
        report.seconds = started.elapsed().as_secs_f64();
        progress(report);
    };
    let pause = || async {
        if !options.pause.is_zero() {
            tokio::time::sleep(options.pause).await;
        }
    };

    // Runs, a page of candidates at a time, in groups of about `batch` items.
    let mut after: (Option<DateTime<Utc>>, i64) = (None, 0);
    loop {
        let page: Vec<(i64, DateTime<Utc>, i64)> = sqlx::query_as(CANDIDATES_SQL)
            .bind(&terminal)
            .bind(cutoff)
            .bind(after.0)
            .bind(after.1)
            .bind(1000_i64)
            .fetch_all(&mut *conn)
            .await?;
        let Some(last) = page.last() else { break };
        after = (Some(last.1), last.0);
        for group in groups(&page, batch) {
            // A group within one batch goes in one statement; a larger run (or a group
            // whose runs hold more than they planned) one run at a time, in keyset ranges
            // of record ids of one batch each.
            let held: i64 = sqlx::query_scalar(COUNT_ITEMS_SQL)
                .bind(&group)
                .bind(batch + 1)
                .fetch_one(&mut *conn)
                .await?;
            let ranges: Vec<Vec<i64>> = if held <= batch {
                vec![group.clone()]
            } else {
                group.iter().map(|id| vec![*id]).collect()
            };
            for runs in ranges {
                let mut lo = i64::MIN;
                loop {
                    let hi: Option<i64> = if runs.len() == 1 {
                        sqlx::query_scalar(BATCH_END_SQL)
                            .bind(runs[0])
                            .bind(lo)
                            .bind(batch)
                            .fetch_optional(&mut *conn)
                            .await?
                    } else {
                        None
                    };
                    let deleted = sqlx::query(DELETE_ITEMS_SQL)
                        .bind(&runs)
                        .bind(&terminal)
                        .bind(cutoff)
                        .bind(lo)
                        .bind(hi.unwrap_or(i64::MAX))
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    report.items += deleted;
                    tick(&mut report, &mut progress);
                    match hi {
                        Some(hi) => lo = hi,
                        None => break,
                    }
                    pause().await;
                }
            }
            let (runs, claims, _kept): (i64, i64, i64) = sqlx::query_as(DELETE_RUNS_SQL)
                .bind(&group)
                .bind(&terminal)
                .bind(cutoff)
                .fetch_one(&mut *conn)
                .await?;
            report.runs += runs as u64;
            report.claims += claims as u64;
            tick(&mut report, &mut progress);
            pause().await;
        }
    }

    // Missed fires, then the small leftovers.
    loop {
        let n = sqlx::query(
            "DELETE FROM missed_fires WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM missed_fires WHERE recorded_at < $1 LIMIT $2))",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        report.missed_fires += n;
        tick(&mut report, &mut progress);
        if (n as i64) < batch {
            break;
        }
        pause().await;
    }
    report.api_tokens = sqlx::query("DELETE FROM api_tokens WHERE revoked_at < $1")
        .bind(cutoff)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    tick(&mut report, &mut progress);
    // A deleted task is kept while it has runs (they show its name); once its last run is
    // pruned, nothing refers to it. `FOR UPDATE SKIP LOCKED`: a task being changed is left
    // for the next prune.
    report.tasks = sqlx::query(
        "DELETE FROM tasks WHERE id IN (
             SELECT t.id FROM tasks t
             WHERE t.status = 'deleted' AND t.updated_at < $1
               AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.task_id = t.id)
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    tick(&mut report, &mut progress);
    Ok(report)
}

/// Splits a page of candidate runs `(id, finished_at, planned)` into groups whose planned
/// items add up to at most `batch` (a larger run is a group of its own, deleted over
/// several statements).
fn groups(page: &[(i64, DateTime<Utc>, i64)], batch: i64) -> Vec<Vec<i64>> {
    let mut out: Vec<Vec<i64>> = Vec::new();
    let mut sum = 0;
    for &(id, _, planned) in page {
        let planned = planned.max(1);
        match out.last_mut() {
            Some(group) if sum + planned <= batch => {
                group.push(id);
                sum += planned;
            }
            _ => {
                out.push(vec![id]);
                sum = planned;
            }
        }
    }
    out
}

/// The periodic prune's settings.
#[derive(Debug, Clone)]
pub struct Periodic {
    /// History older than this is deleted.
    pub retention: chrono::Duration,
    /// How often to prune.
    pub every: Duration,
    /// Rows per statement.
    pub batch: i64,
    /// Pause between statements.
    pub pause: Duration,
}

/// One periodic pass: prunes under the advisory lock [`ADVISORY_LOCK`] if no other process
/// holds it (`None` then). The lock is a session's: it is released when the pass ends, and
/// by Postgres if the process dies.
pub async fn prune_once_locked(
    pool: &PgPool,
    settings: &Periodic,
) -> Result<Option<PruneReport>, StoreError> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(ADVISORY_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(None);
    }
    let options = PruneOptions {
        cutoff: Utc::now() - settings.retention,
        batch: settings.batch,
        pause: settings.pause,
    };
    let result = prune(&mut conn, &options, |_| {}).await;
    // Unlock on the same session; if that fails, the connection is closed instead, which
    // releases the lock too.
    let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(ADVISORY_LOCK)
        .fetch_one(&mut *conn)
        .await;
    if !matches!(unlocked, Ok(true)) {
        let _ = conn.detach();
    }
    result.map(Some)
}

/// Prunes every `settings.every` until `stop` completes (the first pass after one period,
/// so that a fleet of workers starting together does not prune at start-up). Errors are
/// logged; the next period tries again.
pub async fn prune_every(
    pool: PgPool,
    settings: Periodic,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(settings.every) => {}
            _ = &mut stop => return,
        }
        let pass = prune_once_locked(&pool, &settings);
        tokio::select! {
            result = pass => match result {
                Ok(Some(r)) => tracing::info!(
                    runs = r.runs, items = r.items, claims = r.claims, missed_fires = r.missed_fires,
                    api_tokens = r.api_tokens, tasks = r.tasks, seconds = r.seconds,
                    "pruned the history older than the retention"
                ),
                Ok(None) => tracing::debug!("another process is pruning"),
                Err(e) => tracing::warn!(
                    error.message = %e, error.cause_chain = ?e,
                    "the periodic prune failed; next try in one period"
                ),
            },
            // Each statement is its own transaction: stopping between two loses nothing.
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarefas_core::run::{RunStatus, RUN_STATUSES};

    /// The prune deletes the items of terminal runs over several statements: that is only
    /// safe while no terminal status can become another one.
    #[test]
    fn terminal_statuses_have_no_way_out() {
        for from in RUN_STATUSES.iter().filter(|s| s.is_terminal()) {
            for to in RUN_STATUSES {
                assert!(
                    !from.can_become(to),
                    "{from} can become {to}: the prune may delete the items of a run that comes back"
                );
            }
        }
        assert!(!RunStatus::Paused.is_terminal() && !RunStatus::Running.is_terminal());
    }

    #[test]
    fn groups_add_up_to_the_batch() {
        let t = Utc::now();
        let page = [
            (1, t, 4),
            (2, t, 5),
            (3, t, 2),
            (4, t, 50),
            (5, t, 0),
            (6, t, 9),
        ];
        assert_eq!(
            groups(&page, 10),
            vec![vec![1, 2], vec![3], vec![4], vec![5, 6]]
        );
    }
}
