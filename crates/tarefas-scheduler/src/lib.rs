//! The scheduler: claims due tasks with `SELECT … FOR UPDATE SKIP LOCKED`, computes each
//! task's next fire with the core, and writes an `ExecuteTask` message into the outbox in the
//! same transaction. Any number of schedulers may run: a fire is claimed by exactly one.
//!
//! Never a burst: a task gets at most one run per tick. When several of its fires came due
//! since the last one (the scheduler was down, say), only the latest is emitted (with its
//! own scheduled time and request id); the earlier ones are recorded in `missed_fires` with
//! why: `coalesced into <latest>`, or `later than the misfire grace (5m)`. A latest fire
//! later than the grace still runs, once, as a catch-up (`requested_by` says so).
//!
//! Overlap: a fire while the task's previous run has not ended (`planning`, `running` or
//! `paused`, manual runs included, or a fire emitted whose run has not started yet) follows
//! the task's `overlap`: `skip` records it as missed, `queue_one` keeps it as the task's one
//! queued fire (emitted by a later tick once that run has ended; a newer fire replaces it),
//! `allow` emits it. The task row is locked by the claim, so replicas cannot both decide.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tarefas_core::task::Overlap;
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
    /// How long a fire that was emitted and whose run does not exist yet (its message waits
    /// in the outbox or the queue: the workers are down or behind) counts as its task's run
    /// in progress for the overlap policy. Past it, the task fires again (so that a message
    /// lost for good cannot stop a task forever).
    pub pending_start_hold: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            misfire_grace: Duration::from_secs(300),
            batch: 500,
            pending_start_hold: Duration::from_secs(6 * 3600),
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
    /// Fires recorded as missed (coalesced, later than the grace, skipped or replaced under
    /// the task's `overlap`).
    pub missed: usize,
    /// Fires kept as their task's queued fire (`overlap: queue_one`).
    pub queued: usize,
    /// Queued fires emitted because their task's previous run ended (counted in `emitted`).
    pub released: usize,
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
    // Fires queued under `overlap: queue_one` first: a task due again in this tick then
    // sees its released fire as its run in progress.
    release_queued(pool, now, config, &mut report).await?;
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
                report.queued += r.queued;
                report.released += r.released;
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

/// Why a fire that came due before `latest` did not run.
fn earlier_reason(
    fire: DateTime<Utc>,
    latest: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> String {
    if now - fire > grace {
        format!("later than the misfire grace ({})", human(grace))
    } else {
        format!("coalesced into {}", rfc3339(latest))
    }
}

/// `2026-12-03T10:05:00Z`.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A duration as an operator writes it: `5m`, `90s`, `2h`.
fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Why the task is busy for its overlap policy, if it is: its live run, or its last fire
/// that was emitted and has not started.
fn busy(claimed: &tasks::ClaimedTask) -> Option<String> {
    if let Some(run) = claimed.live_run {
        let status = claimed
            .live_status
            .map_or(tarefas_core::run::RunStatus::Running, |s| s.0);
        return Some(format!("run {run} still {status}"));
    }
    if claimed.unstarted {
        let fire = claimed.task.last_fire_at.map(rfc3339).unwrap_or_default();
        return Some(format!("the run of {fire} has not started yet"));
    }
    None
}

/// The fires one batch writes: messages for the outbox, missed fires, task moves.
#[derive(Default)]
struct Batch {
    payloads: Vec<Vec<u8>>,
    traceparents: Vec<Option<String>>,
    missed: Vec<tasks::Missed>,
    moves: Vec<tasks::Advance>,
}

impl Batch {
    /// Writes the `ExecuteTask` of `fire` for `task`.
    fn emit(&mut self, task: &tasks::Task, fire: DateTime<Utc>, by: &str, now: DateTime<Utc>) {
        let msg = ExecuteTask::scheduled(
            task.id,
            &task.account,
            tarefas_core::run::scheduled_request_id(task.id, fire),
            fire.timestamp_millis(),
            by,
            now.timestamp_millis(),
        );
        self.payloads.push(tarefas_proto::encode_execute_task(&msg));
        // One span per fire: the root of the run's trace (the worker continues it).
        let span = tracing::info_span!("fire", task_id = task.id, fire_at = %fire, by = by);
        self.traceparents.push(span.in_scope(outbox::trace_context));
        metrics::counter!("tarefas_scheduler_fires_total", "outcome" => "emitted").increment(1);
    }

    /// Records `fire` of `task` as not run, with `reason`.
    fn miss(&mut self, task: i64, fire: DateTime<Utc>, reason: String) {
        self.missed.push((task, fire, reason));
    }

    /// Writes it all in `tx`: missed fires, task moves, the outbox rows (three statements,
    /// whatever the number of tasks).
    async fn write(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), StoreError> {
        if !self.missed.is_empty() {
            metrics::counter!("tarefas_scheduler_fires_total", "outcome" => "missed")
                .increment(self.missed.len() as u64);
        }
        report.missed += self.missed.len();
        tasks::record_missed(tx, &self.missed).await?;
        // Every claimed task moved in one statement (one round trip per batch, not per task).
        tasks::advance_many(tx, now, &self.moves).await?;
        report.emitted += self.payloads.len();
        outbox::enqueue_traced(
            &mut **tx,
            EXECUTE_ROUTING_KEY,
            &self.payloads,
            &self.traceparents,
        )
        .await?;
        Ok(())
    }
}

/// When an emitted fire that has not started stops counting as the task's run in progress.
fn pending_since(now: DateTime<Utc>, config: &SchedulerConfig) -> DateTime<Utc> {
    now - chrono::Duration::from_std(config.pending_start_hold)
        .unwrap_or(chrono::Duration::hours(6))
}

/// Emits the fires queued under `overlap: queue_one` whose previous run has ended, in
/// transactions of `config.batch` tasks. One query when none waits (a small partial index).
async fn release_queued(
    pool: &PgPool,
    now: DateTime<Utc>,
    config: &SchedulerConfig,
    report: &mut TickReport,
) -> Result<(), StoreError> {
    loop {
        let mut tx = pool.begin().await?;
        let claimed =
            tasks::claim_queued(&mut tx, config.batch, pending_since(now, config)).await?;
        let n = claimed.len();
        let mut batch = Batch::default();
        for c in &claimed {
            let Some(fire) = c.queued_fire_at else {
                continue;
            };
            batch.emit(&c.task, fire, "scheduler (queued)", now);
            batch.moves.push(tasks::released(&c.task, fire));
            tracing::info!(task_id = c.task.id, fire_at = %fire, "queued fire released: the previous run ended");
        }
        report.released += batch.payloads.len();
        batch.write(&mut tx, now, report).await?;
        tx.commit().await?;
        if n < config.batch as usize {
            return Ok(());
        }
    }
}

async fn tick_batch(
    pool: &PgPool,
    now: DateTime<Utc>,
    config: &SchedulerConfig,
    report: &mut TickReport,
) -> Result<(), StoreError> {
    let grace =
        chrono::Duration::from_std(config.misfire_grace).unwrap_or(chrono::Duration::minutes(5));
    let mut tx = pool.begin().await?;
    let due = tasks::claim_due(&mut tx, now, config.batch, pending_since(now, config)).await?;
    report.tasks += due.len();
    let mut batch = Batch::default();
    for claimed in &due {
        let task = &claimed.task;
        let Some(first) = task.next_fire_at else {
            continue;
        };
        let spec = match task.spec() {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!(task_id = task.id, error.message = %e, "stored task no longer valid; it will not fire");
                batch.moves.push(tasks::Advance {
                    id: task.id,
                    emitted: None,
                    next: None,
                    queue: tasks::Queue::Keep,
                });
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
        // At most one run per task and tick: the latest fire; the earlier ones coalesce
        // into it (or were later than the grace) and are recorded with why.
        let latest = *fires.last().unwrap_or(&first);
        for fire in &fires[..fires.len() - 1] {
            batch.miss(task.id, *fire, earlier_reason(*fire, latest, now, grace));
        }
        if fires.len() > 1 {
            tracing::warn!(
                task_id = task.id,
                missed = fires.len() - 1,
                fire_at = %latest,
                "several fires due at once: only the latest runs"
            );
        }
        let mut queue = tasks::Queue::Keep;
        let mut emitted = None;
        match (spec.overlap, busy(claimed)) {
            (Overlap::Allow, _) | (_, None) => {
                let by = if now - latest > grace {
                    "scheduler (catch-up)"
                } else {
                    "scheduler"
                };
                batch.emit(task, latest, by, now);
                let lateness = (now - latest).to_std().unwrap_or_default();
                metrics::histogram!("tarefas_scheduler_lateness_seconds")
                    .record(lateness.as_secs_f64());
                report.lateness.push(lateness);
                emitted = Some(latest);
                // A fire still queued (its release lost the race to this claim, or the
                // task's overlap changed) is older than this one: it coalesces into it.
                if let Some(q) = claimed.queued_fire_at {
                    if q != latest {
                        batch.miss(task.id, q, format!("coalesced into {}", rfc3339(latest)));
                    }
                    queue = tasks::Queue::Clear;
                }
            }
            (Overlap::Skip, Some(why)) => {
                tracing::info!(task_id = task.id, fire_at = %latest, reason = %why, "fire skipped: overlap");
                batch.miss(task.id, latest, format!("overlap: {why}"));
            }
            (Overlap::QueueOne, Some(why)) => {
                tracing::info!(task_id = task.id, fire_at = %latest, reason = %why, "fire queued: overlap");
                if let Some(replaced) = claimed.queued_fire_at.filter(|q| *q != latest) {
                    batch.miss(
                        task.id,
                        replaced,
                        format!(
                            "overlap: replaced by the queued fire of {}",
                            rfc3339(latest)
                        ),
                    );
                }
                queue = tasks::Queue::Set(latest);
                report.queued += 1;
            }
        }
        let next = recurrence.next_after(spec.time_zone, latest.max(now));
        batch.moves.push(tasks::Advance {
            id: task.id,
            emitted,
            next,
            queue,
        });
    }
    batch.write(&mut tx, now, report).await?;
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
