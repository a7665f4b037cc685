//! The scheduler: claims due tasks with `SELECT … FOR UPDATE SKIP LOCKED`, computes each
//! task's next fire with the core, and writes an `ExecuteTask` message into the outbox in the
//! same transaction. Any number of schedulers may run: a fire is claimed by exactly one.
//!
//! Misfire policy: a fire later than the grace (the scheduler was down, say) is recorded as
//! missed instead of emitted; when a task's only pending fires are missed, one catch-up run
//! is emitted for the latest of them, never a burst.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tarefas_proto::v1::ExecuteTask;
use tarefas_store::{outbox, tasks, StoreError};

pub use tarefas_proto::EXECUTE_ROUTING_KEY;
/// The most fires of one task looked at in one tick (bounds the work after a long outage).
const MAX_FIRES_PER_TICK: usize = 10_000;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// A fire later than this is recorded as missed.
    pub misfire_grace: Duration,
    /// Tasks claimed per transaction.
    pub batch: i64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            misfire_grace: Duration::from_secs(300),
            batch: 500,
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Tasks claimed.
    pub tasks: usize,
    /// `ExecuteTask` messages written to the outbox.
    pub emitted: usize,
    /// Fires recorded as missed.
    pub missed: usize,
    /// Lateness of each emitted fire (now − scheduled time), for metrics.
    pub lateness: Vec<Duration>,
}

/// Emits every fire due at `now`, in transactions of `config.batch` tasks, until none is
/// left. Safe to run from several processes at once.
///
/// One batch first; only when it came back full (more is due) do [`LANES`] transactions
/// run at once (each claims its own tasks with `SKIP LOCKED`), so that a minute where tens
/// of thousands of tasks are due keeps Postgres busy on every core, while an idle tick
/// still costs one claim query.
pub async fn tick(
    pool: &PgPool,
    now: DateTime<Utc>,
    config: &SchedulerConfig,
) -> Result<TickReport, StoreError> {
    let mut report = TickReport::default();
    tick_batch(pool, now, config, &mut report).await?;
    if report.tasks < config.batch as usize {
        return Ok(report);
    }
    let lane = |pool: PgPool, config: SchedulerConfig| async move {
        let mut report = TickReport::default();
        loop {
            let before = report.tasks;
            tick_batch(&pool, now, &config, &mut report).await?;
            if report.tasks - before < config.batch as usize {
                return Ok::<_, StoreError>(report);
            }
        }
    };
    let mut lanes = tokio::task::JoinSet::new();
    for _ in 0..LANES {
        lanes.spawn(lane(pool.clone(), config.clone()));
    }
    let mut first_error = None;
    while let Some(joined) = lanes.join_next().await {
        match joined {
            Ok(Ok(r)) => {
                report.tasks += r.tasks;
                report.emitted += r.emitted;
                report.missed += r.missed;
                report.lateness.extend(r.lateness);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error
                    .get_or_insert(StoreError::Invalid(format!("scheduler lane failed: {e}")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Concurrent claiming transactions per tick.
pub const LANES: usize = 4;

async fn tick_batch(
    pool: &PgPool,
    now: DateTime<Utc>,
    config: &SchedulerConfig,
    report: &mut TickReport,
) -> Result<(), StoreError> {
    let grace =
        chrono::Duration::from_std(config.misfire_grace).unwrap_or(chrono::Duration::minutes(5));
    let mut tx = pool.begin().await?;
    let due = tasks::claim_due(&mut tx, now, config.batch).await?;
    report.tasks += due.len();
    let mut payloads = Vec::new();
    let mut traceparents = Vec::new();
    let mut moves: Vec<tasks::Advance> = Vec::with_capacity(due.len());
    for task in &due {
        let Some(first) = task.next_fire_at else {
            continue;
        };
        let spec = match task.spec() {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!(task_id = task.id, error.message = %e, "stored task no longer valid; it will not fire");
                moves.push((task.id, None, None));
                continue;
            }
        };
        let recurrence = tasks::recurrence(task, &spec);
        // Every fire from the due one up to now.
        let mut fires = vec![first];
        while fires.len() < MAX_FIRES_PER_TICK {
            match recurrence.next_after(spec.time_zone, *fires.last().unwrap_or(&first)) {
                Some(f) if f <= now => fires.push(f),
                _ => break,
            }
        }
        let (late, on_time): (Vec<_>, Vec<_>) = fires.iter().partition(|f| now - **f > grace);
        let mut emit: Vec<(DateTime<Utc>, &str)> =
            on_time.iter().map(|f| (*f, "scheduler")).collect();
        if !late.is_empty() {
            tasks::record_missed(&mut tx, task.id, &late).await?;
            report.missed += late.len();
            metrics::counter!("tarefas_scheduler_fires_total", "outcome" => "missed")
                .increment(late.len() as u64);
            tracing::warn!(
                task_id = task.id,
                missed = late.len(),
                "fires later than the misfire grace recorded as missed"
            );
            if emit.is_empty() {
                emit.push((*late.last().unwrap_or(&first), "scheduler (catch-up)"));
            }
        }
        for (fire, by) in &emit {
            let msg = ExecuteTask::scheduled(
                task.id,
                &task.account,
                tarefas_core::run::scheduled_request_id(task.id, *fire),
                fire.timestamp_millis(),
                by,
                now.timestamp_millis(),
            );
            payloads.push(tarefas_proto::encode_execute_task(&msg));
            // One span per fire: the root of the run's trace (the worker continues it).
            let span = tracing::info_span!("fire", task_id = task.id, fire_at = %fire, by = *by);
            traceparents.push(span.in_scope(outbox::trace_context));
            let lateness = (now - *fire).to_std().unwrap_or_default();
            metrics::histogram!("tarefas_scheduler_lateness_seconds")
                .record(lateness.as_secs_f64());
            metrics::counter!("tarefas_scheduler_fires_total", "outcome" => "emitted").increment(1);
            report.lateness.push(lateness);
        }
        let last = fires.last().copied();
        let next = last.and_then(|l| recurrence.next_after(spec.time_zone, l.max(now)));
        moves.push((task.id, emit.last().map(|(f, _)| *f), next));
    }
    // Every claimed task moved in one statement (one round trip per batch, not per task).
    tasks::advance_many(&mut tx, &moves).await?;
    report.emitted += payloads.len();
    outbox::enqueue_traced(&mut *tx, EXECUTE_ROUTING_KEY, &payloads, &traceparents).await?;
    tx.commit().await?;
    Ok(())
}

/// Runs [`tick`] every `every` until `shutdown` completes.
///
/// The ticks are aligned to the wall clock (to whole multiples of `every` since the Unix
/// epoch, a few milliseconds after them): with a tick of one second, the tick that emits
/// a minute's fires runs right after the minute begins, not up to a second later depending
/// on when the process started.
pub async fn run(
    pool: PgPool,
    config: SchedulerConfig,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), StoreError> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(until_next_tick(Utc::now(), every)) => {
                match tick(&pool, Utc::now(), &config).await {
                    Ok(r) if r.emitted > 0 || r.missed > 0 => {
                        tracing::info!(emitted = r.emitted, missed = r.missed, "fires emitted");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error.message = %e, "scheduler tick failed; retrying"),
                }
            }
        }
    }
}

/// How long from `now` until the next tick: the next whole multiple of `every` since the
/// Unix epoch, plus [`TICK_SLACK`] (so that the clock has surely passed it).
pub fn until_next_tick(now: DateTime<Utc>, every: Duration) -> Duration {
    let every_ms = (every.as_millis() as i64).max(1);
    let now_ms = now.timestamp_millis();
    let next_ms = (now_ms.div_euclid(every_ms) + 1) * every_ms;
    Duration::from_millis((next_ms - now_ms) as u64) + TICK_SLACK
}

/// How long after a tick's instant the scheduler wakes.
pub const TICK_SLACK: Duration = Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_whole_multiples_of_the_period() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let ms = Duration::from_millis;
        let second = Duration::from_secs(1);
        assert_eq!(
            until_next_tick(at("2026-11-26T10:00:59.250Z"), second),
            ms(750) + TICK_SLACK
        );
        // Exactly on a tick: the next one.
        assert_eq!(
            until_next_tick(at("2026-11-26T10:01:00Z"), second),
            second + TICK_SLACK
        );
        assert_eq!(
            until_next_tick(at("2026-11-26T10:00:42.100Z"), Duration::from_secs(15)),
            ms(2_900) + TICK_SLACK
        );
        assert_eq!(
            until_next_tick(at("2026-11-26T10:00:00.000Z"), Duration::ZERO),
            ms(1) + TICK_SLACK
        );
    }
}
