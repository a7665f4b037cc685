//! Planning: an `ExecuteTask` becomes a run (idempotent on its request id), its segment is
//! streamed from Postgres in keyset pages and frozen into run items, and the `ItemBatch`
//! messages for each page are written to the outbox in the same transaction. The planning
//! cursor is checkpointed with each page, so a worker that dies resumes where it stopped.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tarefas_core::run::RunStatus;
use tarefas_proto::v1::{ExecuteTask, ItemBatch, Trigger};
use tarefas_store::runs::{self, NewRun, Run};
use tarefas_store::segment::{SegmentPages, SegmentQuery};
use tarefas_store::{accounts, guards, outbox, StoreError};

use crate::WorkerError;

pub use tarefas_proto::BATCH_ROUTING_KEY;

/// Planning settings.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// Record ids read per page (and per transaction).
    pub page_size: i64,
    /// Items per `ItemBatch` message.
    pub batch_size: usize,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            page_size: 5_000,
            batch_size: 100,
        }
    }
}

/// What planning did with one `ExecuteTask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A run was planned (now or resumed after a crash): its id and item count.
    Run {
        /// The run.
        run_id: i64,
        /// Items in it.
        items: i64,
    },
    /// The same request was already planned: nothing done.
    Duplicate(i64),
}

/// Encodes the `ItemBatch` messages for `item_ids`.
pub fn batches(run: &Run, account: &str, item_ids: &[i64], batch_size: usize) -> Vec<Vec<u8>> {
    item_ids
        .chunks(batch_size.max(1))
        .map(|chunk| {
            tarefas_proto::encode_item_batch(&ItemBatch::new(
                run.id,
                run.task_id,
                account,
                chunk.to_vec(),
            ))
        })
        .collect()
}

/// Plans the run an `ExecuteTask` asks for.
#[tracing::instrument(skip_all, fields(task_id = msg.task_id, request_id = %msg.request_id), err)]
pub async fn plan(
    pool: &PgPool,
    msg: &ExecuteTask,
    config: &PlanConfig,
) -> Result<Planned, WorkerError> {
    let account = accounts::by_name(pool, &msg.account)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(m) => WorkerError::Permanent(m),
            other => other.into(),
        })?;
    let scheduled = (msg.trigger == Trigger::Scheduled as i32)
        .then(|| DateTime::<Utc>::from_timestamp_millis(msg.scheduled_for_unix_ms))
        .flatten();
    let trigger = if scheduled.is_some() {
        "scheduled"
    } else {
        "manual"
    };
    // The run and the snapshot of its task's definition are made in one statement; a
    // delivery that finds the run (a planning resumed after a crash) goes on with the run's
    // snapshot, whatever became of the task since.
    let (run, created) = runs::create_or_get(
        pool,
        &NewRun {
            account_id: account.id,
            task_id: msg.task_id,
            request_id: &msg.request_id,
            trigger,
            scheduled_for: scheduled,
            requested_by: (!msg.requested_by.is_empty()).then_some(msg.requested_by.as_str()),
        },
    )
    .await
    .map_err(|e| match e {
        StoreError::NotFound(_) => WorkerError::Permanent(format!(
            "task {} of account {} not found (deleted?)",
            msg.task_id, msg.account
        )),
        other => other.into(),
    })?;
    if !created && run.status() != RunStatus::Planning {
        return Ok(Planned::Duplicate(run.id));
    }
    if !created {
        tracing::info!(run_id = run.id, cursor = ?run.plan_cursor, "resuming planning");
    }
    let spec = match runs::snapshot(pool, run.id).await?.spec() {
        Ok(spec) => spec,
        Err(e) => {
            // Never planned from anything but its snapshot: a snapshot that no longer
            // validates ends the run, with the reason.
            runs::set_status(pool, run.id, RunStatus::Failed, Some(&e.to_string())).await?;
            return Err(WorkerError::Permanent(e.to_string()));
        }
    };
    // A test run (`--only`) or a retry of failed items: only those records of the segment.
    let only = guards::apply_request(pool, run.id).await?;
    let filter = tarefas_core::guard::narrow_to(&spec, only.as_deref())
        .map_err(|p| WorkerError::Permanent(format!("the run's record list: {p}")))?;
    // Audience guard: with a limit, no batch is published until planning is over and the
    // run is known to be within it (else it waits for approval, before any call).
    let max_records = match spec.max_records {
        Some(m) => Some(m),
        None => guards::get(pool, account.id).await?.max_records,
    };
    let hold = max_records.is_some();
    // Relative dates count from the run's start, the same on every resume.
    let query = SegmentQuery::new(spec.table, filter.as_ref(), spec.time_zone, run.started_at);
    let mut pages = SegmentPages::new(pool.clone(), account.id, query, config.page_size)
        .resume_after(run.plan_cursor);
    while let Some(ids) = pages.next_page().await? {
        let cursor = *ids.last().unwrap_or(&0);
        let mut tx = pool.begin().await?;
        let live = runs::hold_for_page(&mut tx, run.id).await?;
        if live != Some(RunStatus::Planning) {
            tracing::info!(run_id = run.id, status = ?live, "planning stopped: the run is no longer planning");
            return Ok(Planned::Run {
                run_id: run.id,
                items: runs::get(pool, None, run.id).await?.planned,
            });
        }
        let items = runs::plan_page(&mut tx, run.id, &ids, cursor).await?;
        if !hold {
            outbox::enqueue(
                &mut *tx,
                BATCH_ROUTING_KEY,
                &batches(&run, &account.name, &items, config.batch_size),
            )
            .await?;
        }
        tx.commit().await?;
    }
    if let Some(max) = max_records {
        let planned = runs::get(pool, None, run.id).await?.planned;
        if planned > max {
            let reason = format!(
                "plans {planned} records, more than max_records {max}: approve with `tarefas run approve {}` or cancel it",
                run.id
            );
            if guards::hold_for_approval(pool, run.id, &reason).await? {
                tracing::warn!(run_id = run.id, planned, max, "run held for approval");
            }
            return Ok(Planned::Run {
                run_id: run.id,
                items: planned,
            });
        }
        // Within the limit: its batches now, then it runs as any other.
        let mut tx = pool.begin().await?;
        if runs::hold_for_page(&mut tx, run.id).await? == Some(RunStatus::Planning) {
            republish(&mut tx, &run, &account.name, false, config.batch_size).await?;
        }
        tx.commit().await?;
    }
    let run = runs::planned(pool, run.id).await?;
    tracing::info!(run_id = run.id, items = run.planned, status = %run.status, "run planned");
    Ok(Planned::Run {
        run_id: run.id,
        items: run.planned,
    })
}

/// Publishes again the pending items of the runs whose send window has opened (their items
/// were handed back while it was closed). Safe with any number of workers: each run is
/// taken by one. Returns how many runs it woke.
pub async fn wake_waiting(pool: &PgPool, batch_size: usize) -> Result<usize, WorkerError> {
    let mut tx = pool.begin().await?;
    let woken = guards::take_woken(&mut tx, 100).await?;
    for run_id in &woken {
        let run = runs::get(pool, None, *run_id).await?;
        if run.status().is_active() {
            let account = accounts::by_id(pool, run.account_id).await?;
            republish(&mut tx, &run, &account.name, false, batch_size).await?;
        }
    }
    tx.commit().await?;
    Ok(woken.len())
}

/// The `ExecuteTask` message that asks for `run` (again, with the same request id).
pub fn execute_message(run: &Run, account: &str) -> ExecuteTask {
    let by = run.requested_by.clone().unwrap_or_default();
    let now = Utc::now().timestamp_millis();
    match run.scheduled_for.filter(|_| run.trigger == "scheduled") {
        Some(at) => ExecuteTask::scheduled(
            run.task_id,
            account,
            run.request_id.clone(),
            at.timestamp_millis(),
            &by,
            now,
        ),
        None => ExecuteTask::manual(run.task_id, account, run.request_id.clone(), &by, now),
    }
}

/// Resumes a paused run: it goes back to planning (which continues from its checkpoint and
/// finishes it when every item is settled), and its pending items get new batch messages.
/// Both messages go through the outbox in one transaction.
pub async fn resume(pool: &PgPool, run: &Run, config: &PlanConfig) -> Result<(), WorkerError> {
    let account = accounts::by_id(pool, run.account_id).await?;
    let mut tx = pool.begin().await?;
    if !runs::unpause(&mut tx, run.id).await? {
        return Err(WorkerError::Permanent(format!(
            "run {} is not paused",
            run.id
        )));
    }
    republish(&mut tx, run, &account.name, true, config.batch_size).await?;
    tx.commit().await?;
    Ok(())
}

/// Pending item ids read per query by [`republish`].
const REPUBLISH_PAGE: i64 = 10_000;

/// Writes `run`'s messages again into the outbox, in the caller's transaction: its
/// `ExecuteTask` when `with_execute` (planning goes on from its checkpoint, and finishes the
/// run once every item is settled), and a batch message per `batch_size` of its pending
/// items, read in pages. Copies of messages still alive are harmless: claims take only
/// `pending` items and planning is idempotent on the run's request id. Returns how many
/// batch messages it wrote. Used by [`resume`] and by the reconciler.
pub async fn republish(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    run: &Run,
    account: &str,
    with_execute: bool,
    batch_size: usize,
) -> Result<usize, WorkerError> {
    if with_execute {
        let msg = tarefas_proto::encode_execute_task(&execute_message(run, account));
        outbox::enqueue(&mut **tx, tarefas_proto::EXECUTE_ROUTING_KEY, &[msg]).await?;
    }
    let mut written = 0;
    let mut after = 0;
    loop {
        let pending = runs::pending_items(&mut **tx, run.id, after, REPUBLISH_PAGE).await?;
        let Some(last) = pending.last() else { break };
        after = *last;
        let messages = batches(run, account, &pending, batch_size);
        written += messages.len();
        outbox::enqueue(&mut **tx, BATCH_ROUTING_KEY, &messages).await?;
    }
    Ok(written)
}
