//! Executing an `ItemBatch`: claim the batch's pending items in one statement, then for each
//! item take a rate-limit token, set the idempotency key, call Huggy, and record every
//! outcome in one statement that also advances the run's counters (design §3–§5).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tarefas_core::action::{Action, ChatAction, ChatState, FlowDecision};
use tarefas_core::decision::{
    self, Answer, Decision, KeyAction, KeyState, Outcome as Decided, Step,
};
use tarefas_core::guard::{FrequencyCap, SendWindow, SKIP_FREQUENCY_CAP, SKIP_OPTED_OUT};
use tarefas_core::run::{ItemStatus, RunStatus};
use tarefas_core::{Table, TaskSpec};
use tarefas_huggy::model::{ChatFlowRequest, ExecFlowRequest};
use tarefas_huggy::{HttpHuggy, HuggyApi, HuggyError, Secret};
use tarefas_proto::v1::ItemBatch;
use tarefas_store::accounts::{self, Account, SecretRef};
use tarefas_store::attempts;
use tarefas_store::runs::{self, Outcome};
use tarefas_store::{guards, outbox};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::cache::TtlCache;
use crate::gate::{Gate, GateUnavailable, Idem, LimitKey};
use crate::WorkerError;

/// Executor settings.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Huggy calls in flight at once, across batches.
    pub concurrency: usize,
    /// How long an item waits for a rate-limit token before it is handed back.
    pub acquire_deadline: Duration,
    /// Attempts of a call that failed in a retryable way, before the item is handed back.
    pub call_attempts: u32,
    /// Calls per second per WhatsApp channel.
    pub channel_rate: f64,
    /// How long account settings and runs' snapshots are cached.
    pub cache_ttl: Duration,
    /// How often the claim of a batch still being worked on is marked alive
    /// (`run_claims.claimed_at`), so that the stuck-item sweeper (`settle_stuck`, whose
    /// delay must be well above this) never takes a slow call for a dead worker's.
    pub heartbeat: Duration,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            concurrency: 64,
            acquire_deadline: Duration::from_secs(30),
            call_attempts: 3,
            channel_rate: 80.0,
            cache_ttl: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// What to do with the batch message after it was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every claimed item was settled (or the run needs nothing more): ack.
    Done,
    /// Some items were handed back (rate limits, Redis down, Huggy errors): retry the message
    /// later; only its pending items will be claimed.
    RetryLater(String),
}

enum ItemResult {
    Settled(Outcome),
    /// Outside the send window: back to pending, sent again once the window opens (at).
    Wait(i64, chrono::DateTime<chrono::Utc>),
    /// This attempt never called Huggy for the item (or Huggy's answer proves the call did
    /// not happen): back to pending, recording so (`attempts::release_never_called`).
    Release(i64, String),
    /// The call may have happened, but is safe to repeat: back to pending.
    ReleaseCalled(i64, String),
    /// The account's token is bad: pause the run.
    PauseRun(i64, String),
}

/// Entries each of the executor's caches holds at most (accounts, runs' snapshots, runs'
/// statuses): past it, the oldest are forgotten and read again when needed.
pub const CACHE_CAPACITY: usize = 1_024;

/// How long a run's status read from Postgres may stand while its items go on asking.
const RUN_STATUS_TTL: Duration = Duration::from_secs(10);

/// Executes item batches. Cheap to share (`Arc`).
pub struct Executor<G: Gate> {
    pool: PgPool,
    gate: Arc<G>,
    huggy: HttpHuggy,
    config: ExecConfig,
    permits: Arc<Semaphore>,
    accounts: TtlCache<String, (Account, Result<HttpHuggy, String>)>,
    /// Each run's snapshot of its task, by run id: every batch of a run executes it.
    specs: TtlCache<i64, Arc<TaskSpec>>,
    live: Arc<TtlCache<i64, RunStatus>>,
}

fn settled(item_id: i64, status: ItemStatus, reason: Option<String>) -> ItemResult {
    ItemResult::Settled(Outcome {
        item_id,
        status,
        reason,
    })
}

impl<G: Gate> Executor<G> {
    /// An executor over `huggy` (its base URL and connection pool; each account's token is
    /// applied per call).
    pub fn new(pool: PgPool, gate: Arc<G>, huggy: HttpHuggy, config: ExecConfig) -> Self {
        Executor {
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            pool,
            gate,
            huggy,
            accounts: TtlCache::new(CACHE_CAPACITY, config.cache_ttl),
            specs: TtlCache::new(CACHE_CAPACITY, config.cache_ttl),
            live: Arc::new(TtlCache::new(CACHE_CAPACITY, RUN_STATUS_TTL)),
            config,
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn account(
        &self,
        name: &str,
    ) -> Result<(Account, Result<HttpHuggy, String>), WorkerError> {
        if let Some(hit) = self.accounts.get(&name.to_string()) {
            return Ok(hit);
        }
        let account = accounts::by_name(&self.pool, name).await?;
        let client = account
            .token_ref
            .as_deref()
            .and_then(SecretRef::parse)
            .ok_or_else(|| format!("account {} has no API token", account.name))
            .and_then(|r| r.resolve())
            .and_then(|token| {
                let company = account.company_id.map(|c| c.to_string());
                self.huggy
                    .with_account(&Secret::new(token), company.as_deref())
                    .map_err(|e| e.to_string())
            });
        let value = (account, client);
        self.accounts.insert(name.to_string(), value.clone());
        Ok(value)
    }

    /// What run `run_id` executes: the snapshot of its task taken when it was planned,
    /// never the task's current definition (an edit or a delete since changes nothing).
    async fn spec(&self, run_id: i64) -> Result<Arc<TaskSpec>, WorkerError> {
        if let Some(hit) = self.specs.get(&run_id) {
            return Ok(hit);
        }
        let spec = Arc::new(runs::snapshot(&self.pool, run_id).await?.spec()?);
        self.specs.insert(run_id, spec.clone());
        Ok(spec)
    }

    /// Waits in the worker's line for a rate-limit token (`take`, given how long it may
    /// wait: `None` when no token came within it), if the run still accepts calls. `Err`
    /// says how the item ends instead. The caller looks at the run again once it has its
    /// token ([`Executor::stopped`]), so that a cancel or a pause made while items wait
    /// takes effect before the next call.
    async fn admit<T, F, Fut>(&self, run_id: i64, item_id: i64, take: F) -> Result<T, ItemResult>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, GateUnavailable>>,
    {
        if let Some(stop) = self.stopped(run_id, item_id).await {
            return Err(stop);
        }
        let started = Instant::now();
        match take(self.config.acquire_deadline).await {
            Ok(Some(granted)) => {
                metrics::histogram!("tarefas_rate_limiter_wait_seconds")
                    .record(started.elapsed().as_secs_f64());
                Ok(granted)
            }
            Ok(None) => Err(ItemResult::Release(
                item_id,
                "waited too long for the rate limit".into(),
            )),
            Err(e) => Err(ItemResult::Release(item_id, e.to_string())),
        }
    }

    /// How an item ends if its run no longer accepts calls (`None`: go on).
    async fn stopped(&self, run_id: i64, item_id: i64) -> Option<ItemResult> {
        match self.run_status(run_id).await {
            Ok(RunStatus::Planning | RunStatus::Running) => None,
            Ok(RunStatus::Paused) => Some(ItemResult::Release(item_id, "run paused".into())),
            Ok(RunStatus::AwaitingApproval) => {
                Some(ItemResult::Release(item_id, "run awaiting approval".into()))
            }
            Ok(RunStatus::Cancelled) => Some(settled(
                item_id,
                ItemStatus::Skipped,
                Some(tarefas_core::guard::SKIP_CANCELLED.into()),
            )),
            Ok(other) => Some(settled(
                item_id,
                ItemStatus::Skipped,
                Some(format!("run {other} before the call")),
            )),
            Err(e) => Some(ItemResult::Release(item_id, e.to_string())),
        }
    }

    /// The run's status, read from Postgres at most every 250 ms. Only the first look at a
    /// run waits for Postgres: once it is known, a stale status is refreshed in the
    /// background while the callers go on with the last one read. So no item ever waits for
    /// a query between its token and its call (a wait there would widen the spread of the
    /// calls' arrival times that the limit's precision must absorb), and hundreds of items
    /// asking at the same moment send one query, not hundreds. A cancel or a pause is seen
    /// by the calls that follow it within about 250 ms and one query. A status not
    /// refreshed for [`RUN_STATUS_TTL`] is read again before use, and at most
    /// [`CACHE_CAPACITY`] runs are remembered.
    async fn run_status(&self, run_id: i64) -> Result<RunStatus, WorkerError> {
        if let Some((live, refresh)) = self
            .live
            .get_or_refresh(&run_id, Duration::from_millis(250))
        {
            if refresh {
                let (pool, map) = (self.pool.clone(), self.live.clone());
                tokio::spawn(async move {
                    match runs::get(&pool, None, run_id).await {
                        Ok(run) => map.insert(run_id, run.status()),
                        Err(e) => tracing::debug!(
                            run_id,
                            error.message = %e,
                            "refreshing the run's status failed; the last one read stands"
                        ),
                    }
                });
            }
            return Ok(live);
        }
        let live = runs::get(&self.pool, None, run_id).await?.status();
        self.live.insert(run_id, live);
        Ok(live)
    }

    /// Executes one batch.
    #[tracing::instrument(skip_all, fields(run_id = batch.run_id, items = batch.item_ids.len()), err)]
    pub async fn execute(self: &Arc<Self>, batch: &ItemBatch) -> Result<BatchOutcome, WorkerError> {
        let (account, client) = self.account(&batch.account).await?;
        let run = runs::get(&self.pool, Some(account.id), batch.run_id).await?;
        match run.status() {
            RunStatus::Planning | RunStatus::Running => {}
            // Terminal: nothing to do. Paused: its pending items are re-published on resume.
            _ => return Ok(BatchOutcome::Done),
        }
        let client = match client {
            Ok(c) => c,
            Err(reason) => {
                runs::set_status(&self.pool, run.id, RunStatus::Paused, Some(&reason)).await?;
                return Ok(BatchOutcome::Done);
            }
        };
        let spec = self.spec(run.id).await?;
        let Some(claim) = runs::claim(&self.pool, run.id, &batch.item_ids).await? else {
            return Ok(BatchOutcome::Done);
        };
        // While this batch is worked on, its claim stays marked alive (until this returns).
        let _alive = self.keep_alive(claim.id);
        // What every item of the batch shares: its limits, its client, its task.
        let guard = GuardCtx::load(&self.pool, &account, &spec, run.id, &claim.items).await?;
        let batch = Arc::new(BatchCtx::new(
            client,
            spec,
            &account,
            self.config.channel_rate,
            guard,
        ));
        let mut set = tokio::task::JoinSet::new();
        let attempt = claim.id;
        for (item_id, record_id) in claim.items.iter().copied() {
            let this = self.clone();
            let batch = batch.clone();
            let run_id = run.id;
            set.spawn(
                async move {
                    let _permit = this.permits.clone().acquire_owned().await;
                    this.perform(&batch, run_id, item_id, record_id, attempt)
                        .await
                }
                .in_current_span(),
            );
        }
        let mut outcomes = Vec::new();
        let mut released = Vec::new();
        let mut released_called = Vec::new();
        let mut pause = None;
        let mut why = String::new();
        let mut waiting: Option<chrono::DateTime<chrono::Utc>> = None;
        let mut waiting_items = Vec::new();
        let mut started = Vec::new();
        let (mut confirmed, mut cancelled) = (Vec::new(), Vec::new());
        while let Some(result) = set.join_next().await {
            let result = result.map(|(r, logged, settle)| {
                if let (Some(contact), ItemResult::Settled(o)) = (logged, &r) {
                    started.push((contact, o.item_id));
                }
                match settle {
                    Some((id, true)) => confirmed.push(id),
                    Some((id, false)) => cancelled.push(id),
                    None => {}
                }
                r
            });
            match result {
                Ok(ItemResult::Settled(o)) => outcomes.push(o),
                Ok(ItemResult::Wait(id, at)) => {
                    waiting_items.push(id);
                    waiting = Some(waiting.map_or(at, |w| w.min(at)));
                }
                Ok(ItemResult::Release(id, reason)) => {
                    released.push(id);
                    why = reason;
                }
                Ok(ItemResult::ReleaseCalled(id, reason)) => {
                    released_called.push(id);
                    why = reason;
                }
                Ok(ItemResult::PauseRun(id, reason)) => {
                    released.push(id);
                    pause = Some(reason);
                }
                Err(e) => return Err(WorkerError::Transient(format!("item task failed: {e}"))),
            }
        }
        // Handed back first: recording ends the claim, and until then a dead worker's
        // items stay findable through it. The items this attempt never called say so, so
        // that a key it left set (its answer lost as Redis went away) may be taken over.
        if !released.is_empty() {
            attempts::release_never_called(&self.pool, run.id, claim.id, &released).await?;
        }
        if !released_called.is_empty() {
            runs::release(&self.pool, run.id, &released_called).await?;
        }
        if let Some(at) = waiting {
            // Outside the send window: handed back, and the run's pending items are
            // published again when it opens (`plan::wake_waiting`); this message is done.
            runs::release(&self.pool, run.id, &waiting_items).await?;
            guards::set_waiting(&self.pool, run.id, Some(at)).await?;
        }
        runs::record(&self.pool, run.id, Some(claim.id), &outcomes).await?;
        guards::log_started(&self.pool, account.id, run.id, &started).await?;
        guards::settle_reservations(&self.pool, &confirmed, &cancelled).await?;
        count_outcomes(&outcomes);
        if let Some(reason) = pause {
            tracing::warn!(run_id = run.id, reason, "run paused");
            runs::set_status(&self.pool, run.id, RunStatus::Paused, Some(&reason)).await?;
            return Ok(BatchOutcome::Done);
        }
        let handed_back = released.len() + released_called.len();
        if handed_back == 0 {
            Ok(BatchOutcome::Done)
        } else {
            Ok(BatchOutcome::RetryLater(format!(
                "{handed_back} items handed back: {why}"
            )))
        }
    }

    /// Touches the claim's `claimed_at` every `heartbeat` until the guard is dropped.
    fn keep_alive(&self, claim: i64) -> AbortOnDrop {
        let (pool, every) = (self.pool.clone(), self.config.heartbeat);
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = runs::touch(&pool, claim).await {
                    tracing::debug!(error.message = %e, "marking claimed items alive failed");
                }
            }
        }))
    }

    /// One item, with the campaign guards (`guard`) before its call; also returns the
    /// contact of a Flow started without a reservation under a cap (for the ledger).
    async fn perform(
        &self,
        batch: &BatchCtx,
        run_id: i64,
        item_id: i64,
        record_id: i64,
        attempt: i64,
    ) -> (ItemResult, Option<i64>, Option<(i64, bool)>) {
        let mut reservation = None;
        let mut contact = None;
        let result = self
            .perform_item(
                batch,
                run_id,
                item_id,
                record_id,
                attempt,
                &mut reservation,
                &mut contact,
            )
            .await;
        // A batch reservation the item did not reach (stopped, waited) is taken back too.
        if reservation.is_none() && batch.spec.table == Table::Contacts {
            reservation = batch.guard.reservation_of(record_id);
        }
        let started = matches!(&result, ItemResult::Settled(o)
            if matches!(o.status, ItemStatus::Done | ItemStatus::Unknown));
        // The reservation is confirmed (the Flow started, or may have) or taken back with
        // the batch's outcomes, in one statement each.
        match reservation {
            Some(id) => (result, None, Some((id, started))),
            None => (
                result,
                contact.filter(|_| started && batch.guard.is_flow),
                None,
            ),
        }
    }

    /// The guards every item passes just before its Huggy call, whatever its table: the
    /// send window (outside it the item waits), the opt-out list (`opted out`) and the
    /// frequency cap (`frequency cap`; a reservation is taken, confirmed or taken back by
    /// [`Executor::perform`]). `Ok` carries the reservation, when a cap applies.
    async fn guard(
        &self,
        g: &GuardCtx,
        run_id: i64,
        item_id: i64,
        contact: Option<i64>,
    ) -> Result<Option<i64>, ItemResult> {
        if let Some((window, tz)) = &g.window {
            let now = chrono::Utc::now();
            if !window.is_open(*tz, now) {
                return Err(ItemResult::Wait(item_id, window.next_open(*tz, now)));
            }
        }
        let (true, Some(contact)) = (g.is_flow, contact) else {
            return Ok(None);
        };
        let suppressed = if g.table == Table::Contacts {
            g.suppressed.contains(&contact)
        } else {
            match guards::suppressed_among(&self.pool, g.account_id, &[contact]).await {
                Ok(s) => !s.is_empty(),
                Err(e) => return Err(ItemResult::Release(item_id, e.to_string())),
            }
        };
        if suppressed {
            return Err(settled(
                item_id,
                ItemStatus::Skipped,
                Some(SKIP_OPTED_OUT.into()),
            ));
        }
        if g.caps.is_empty() {
            return Ok(None);
        }
        let found = match (g.table, g.reserved.get(&contact).copied()) {
            // Taken for the batch.
            (Table::Contacts, Some(r)) => Ok(r),
            // A contact the batch did not reserve (the window was closed then): later.
            (Table::Contacts, None) => Ok(guards::Reserve::Busy),
            _ => guards::reserve(&self.pool, g.account_id, contact, &g.caps, run_id, item_id).await,
        };
        match found {
            Ok(guards::Reserve::Reserved(id)) => Ok(Some(id)),
            Ok(guards::Reserve::Capped) => Err(settled(
                item_id,
                ItemStatus::Skipped,
                Some(SKIP_FREQUENCY_CAP.into()),
            )),
            Ok(guards::Reserve::Busy) => Err(ItemResult::Release(
                item_id,
                "frequency cap: an earlier Flow of this contact is still in flight".into(),
            )),
            Err(e) => Err(ItemResult::Release(item_id, e.to_string())),
        }
    }

    #[allow(clippy::too_many_arguments)] // the item, its attempt, and the guards' outputs
    async fn perform_item(
        &self,
        batch: &BatchCtx,
        run_id: i64,
        item_id: i64,
        record_id: i64,
        attempt: i64,
        reservation: &mut Option<i64>,
        contact_out: &mut Option<i64>,
    ) -> ItemResult {
        let BatchCtx {
            client,
            spec,
            keys,
            exec_flow,
            guard,
        } = batch;
        if spec.table == Table::Contacts {
            *contact_out = Some(record_id);
        }
        let (spec, keys, account_key) = (&**spec, &keys[..], &keys[0]);
        let repeatable = matches!(&spec.action, Action::Chat(c) if c.is_idempotent());

        // On the Chats table a Flow first reads the chat, fresh, and applies the policy.
        if let (Table::Chats, Action::RunFlow(f)) = (spec.table, &spec.action) {
            let token = |deadline| async move {
                let granted = self.gate.acquire(keys, deadline).await?;
                Ok(granted.then_some(()))
            };
            if let Err(stop) = self.admit(run_id, item_id, token).await {
                return stop;
            }
            if let Some(stop) = self.stopped(run_id, item_id).await {
                return stop;
            }
            let (read, decision) = self
                .with_retries(
                    || client.get_chat(record_id),
                    |r| answer(r.as_ref().map(|_| Answer::Ok)),
                    |a, left| decision::decide(Step::Read(a), repeatable, left),
                )
                .await;
            let chat = match (read, decision.outcome) {
                (Ok(chat), Decided::Proceed) => chat,
                (_, outcome) => {
                    return self
                        .carry_out(
                            (item_id, run_id, record_id, attempt),
                            account_key,
                            decision.key,
                            outcome,
                            false,
                        )
                        .await
                }
            };
            if let FlowDecision::Skip(reason) =
                f.policy.decide(ChatState::from_situation(&chat.situation))
            {
                return settled(item_id, ItemStatus::Skipped, Some(reason.to_string()));
            }
            *contact_out = chat.customer.as_ref().map(|c| c.id);
        }
        match self.guard(guard, run_id, item_id, *contact_out).await {
            Ok(r) => *reservation = r,
            Err(stop) => return stop,
        }

        // The token and the idempotency key in one step: the call follows at once.
        let token_and_key = |deadline| {
            self.gate
                .acquire_and_begin(keys, run_id, record_id, attempt, deadline)
        };
        let idem = match self.admit(run_id, item_id, token_and_key).await {
            Ok(idem) => idem,
            Err(stop) => return stop,
        };
        if let Some(stop) = self.stopped(run_id, item_id).await {
            // Cancelled or paused while it waited: no call; the key it set is taken back.
            if idem == Idem::Fresh {
                let _ = self.gate.clear(run_id, record_id, attempt).await;
            }
            return stop;
        }
        // A key held by an earlier attempt: abandoned if that attempt recorded that it never
        // called (Postgres says, not Redis), else it may have called.
        let key = match idem {
            Idem::Inflight(Some(holder)) if holder != attempt => {
                match attempts::never_called(&self.pool, item_id, holder).await {
                    Ok(true) => KeyState::Abandoned,
                    Ok(false) => KeyState::Inflight,
                    // Not known yet: nothing was called; ask again later.
                    Err(e) => return ItemResult::Release(item_id, e.to_string()),
                }
            }
            other => key_state(Some(other)),
        };
        let begin = decision::decide(Step::Begin(key), repeatable, 0);
        if begin.key == KeyAction::TakeOver {
            let Idem::Inflight(Some(holder)) = idem else {
                return ItemResult::Release(item_id, "no key to take over".into());
            };
            match self
                .gate
                .take_over(run_id, record_id, holder, attempt)
                .await
            {
                Ok(true) => {}
                // The key changed since it was read, or Redis is away: no call now.
                Ok(false) => {
                    return ItemResult::Release(item_id, "the idempotency key changed".into())
                }
                Err(e) => return ItemResult::Release(item_id, e.to_string()),
            }
        }
        if begin.outcome != Decided::Proceed {
            return self
                .carry_out(
                    (item_id, run_id, record_id, attempt),
                    account_key,
                    begin.key,
                    begin.outcome,
                    false,
                )
                .await;
        }
        let to_answer = |r: &Result<Sent, HuggyError>| {
            answer(r.as_ref().map(|sent| match sent {
                Sent::Done => Answer::Ok,
                Sent::NotRun(reason) => Answer::NotRun(reason.clone()),
            }))
        };
        let (result, decision) = self
            .with_retries(
                || call(client, spec, exec_flow.as_ref(), record_id),
                to_answer,
                |a, left| decision::decide(Step::Call(a), repeatable, left),
            )
            .await;
        let maybe_called = !decision::surely_not_made(&to_answer(&result));
        self.carry_out(
            (item_id, run_id, record_id, attempt),
            account_key,
            decision.key,
            decision.outcome,
            maybe_called,
        )
        .await
    }

    /// Carries out the core's decision for an item (`(item, run, record, attempt)`): its
    /// key, the account's pause, and how the item ends. `maybe_called`: this attempt's call
    /// may have happened (an item handed back then does not record that it never called).
    async fn carry_out(
        &self,
        (item_id, run_id, record_id, attempt): (i64, i64, i64, i64),
        account_key: &LimitKey,
        key: KeyAction,
        outcome: Decided,
        maybe_called: bool,
    ) -> ItemResult {
        if let Decided::PauseAccount(pause) = outcome {
            let _ = self.gate.pause(&account_key.key, pause).await;
        }
        match key {
            KeyAction::Keep => {}
            KeyAction::MarkDone => {
                let _ = self.gate.done(run_id, record_id).await;
            }
            KeyAction::Clear => {
                let _ = self.gate.clear(run_id, record_id, attempt).await;
            }
            // Taken over before the call (`perform`); nothing left to do here.
            KeyAction::TakeOver => {}
        }
        match outcome {
            Decided::Done(reason) => settled(item_id, ItemStatus::Done, reason),
            Decided::Skipped(reason) => settled(item_id, ItemStatus::Skipped, Some(reason)),
            Decided::Failed(reason) => settled(item_id, ItemStatus::Failed, Some(reason)),
            Decided::Unknown(reason) => settled(item_id, ItemStatus::Unknown, Some(reason)),
            Decided::Release(reason) if maybe_called => ItemResult::ReleaseCalled(item_id, reason),
            Decided::Release(reason) => ItemResult::Release(item_id, reason),
            Decided::PauseAccount(_) => {
                ItemResult::Release(item_id, "rate limited by Huggy".into())
            }
            Decided::PauseRun(reason) => ItemResult::PauseRun(
                item_id,
                format!("{reason}; fix it, then `tarefas run resume {run_id}`"),
            ),
            // Not a decision after a call (`with_retries` retries; `Proceed` and `Leave`
            // come from other steps): hand the item back rather than guess.
            Decided::Proceed | Decided::Retry | Decided::Leave if maybe_called => {
                ItemResult::ReleaseCalled(item_id, format!("unexpected decision {outcome:?}"))
            }
            Decided::Proceed | Decided::Retry | Decided::Leave => {
                ItemResult::Release(item_id, format!("unexpected decision {outcome:?}"))
            }
        }
    }

    /// Makes a call, and again with backoff (5xx, refused connections) while the core's
    /// decision says to retry and attempts are left. Returns the last result and its
    /// decision.
    async fn with_retries<T, F, Fut>(
        &self,
        mut f: F,
        answer: impl Fn(&Result<T, HuggyError>) -> Answer,
        decide: impl Fn(&Answer, u32) -> Decision,
    ) -> (Result<T, HuggyError>, Decision)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, HuggyError>>,
    {
        let mut backoff = Duration::from_millis(100);
        let mut left = self.config.call_attempts.saturating_sub(1);
        loop {
            let result = f().await;
            let decision = decide(&answer(&result), left);
            if decision.outcome == Decided::Retry && left > 0 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                left -= 1;
                continue;
            }
            return (result, decision);
        }
    }
}

/// Huggy's answer (a 2xx given as `Ok`), in the core's terms.
fn answer(result: Result<Answer, &HuggyError>) -> Answer {
    match result {
        Ok(a) => a,
        Err(HuggyError::RateLimited { retry_after }) => Answer::RateLimited(*retry_after),
        Err(HuggyError::Retryable { reason }) => Answer::Retryable(reason.clone()),
        Err(HuggyError::Ambiguous { reason }) => Answer::Ambiguous(reason.clone()),
        Err(HuggyError::Permanent { status, reason }) => Answer::Permanent(*status, reason.clone()),
        Err(HuggyError::BadToken { status }) => Answer::BadToken(*status),
        Err(HuggyError::Decode { reason }) => Answer::Undecodable(reason.clone()),
    }
}

/// The idempotency key in the core's terms (`None`: no key).
fn key_state(idem: Option<Idem>) -> KeyState {
    match idem {
        None => KeyState::Fresh,
        // A key set by this very step is fresh; one found set (`state`) is an earlier one's.
        Some(Idem::Fresh) => KeyState::Fresh,
        Some(Idem::Inflight(_)) => KeyState::Inflight,
        Some(Idem::Done) => KeyState::Done,
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Sent {
    Done,
    /// Huggy did not run the Flow (its policy flags); the reason it gave.
    NotRun(String),
}

/// What the items of one batch share, built once per batch.
struct BatchCtx {
    client: HttpHuggy,
    spec: Arc<TaskSpec>,
    /// The rate limits each call takes a token of: the account's first, then the
    /// WhatsApp channel's (a Flow on a channel).
    keys: Vec<LimitKey>,
    /// The body of `execFlow` (a Flow on Contacts): the same for every contact.
    exec_flow: Option<ExecFlowRequest>,
    /// The campaign guards that apply to its items.
    guard: GuardCtx,
}

/// The campaign guards of one batch (docs/admin.md, "Running safely"), read once per batch.
struct GuardCtx {
    account_id: i64,
    table: Table,
    /// The action starts a Flow: the opt-out list and the frequency cap apply.
    is_flow: bool,
    /// The send window (the task's, else the account's) and its zone.
    window: Option<(SendWindow, chrono_tz::Tz)>,
    /// The caps that apply: the account's and the task's (each counted in its own window).
    caps: Vec<FrequencyCap>,
    /// Contacts of the batch on the opt-out list (Contacts table; on Chats each item asks
    /// with its chat's contact).
    suppressed: HashSet<i64>,
    /// The batch's frequency-cap reservations, by contact (Contacts table under a cap:
    /// taken for the whole batch in one transaction; on Chats each item reserves).
    reserved: HashMap<i64, guards::Reserve>,
}

impl GuardCtx {
    /// The batch reservation of `contact`'s Flow, if one was taken.
    fn reservation_of(&self, contact: i64) -> Option<i64> {
        match self.reserved.get(&contact) {
            Some(guards::Reserve::Reserved(id)) => Some(*id),
            _ => None,
        }
    }
}

impl GuardCtx {
    async fn load(
        pool: &PgPool,
        account: &Account,
        spec: &TaskSpec,
        run_id: i64,
        items: &[(i64, i64)],
    ) -> Result<GuardCtx, WorkerError> {
        let g = guards::get(pool, account.id).await?;
        let is_flow = matches!(spec.action, Action::RunFlow(_));
        let window = spec
            .send_window
            .clone()
            .or(g.send_window)
            .map(|w| (w, spec.time_zone));
        let caps: Vec<FrequencyCap> = if is_flow {
            g.cap.into_iter().chain(spec.frequency_cap).collect()
        } else {
            Vec::new()
        };
        let suppressed = if is_flow && spec.table == Table::Contacts {
            let ids: Vec<i64> = items.iter().map(|(_, record)| *record).collect();
            guards::suppressed_among(pool, account.id, &ids).await?
        } else {
            HashSet::new()
        };
        // Under a cap, a batch on Contacts reserves its contacts' Flows in one transaction
        // (none while the send window is closed: its items will wait). A reservation its
        // item does not use is taken back by `Executor::perform`.
        let window_open = window
            .as_ref()
            .is_none_or(|(w, tz)| w.is_open(*tz, chrono::Utc::now()));
        let reserved = if !caps.is_empty() && spec.table == Table::Contacts && window_open {
            let wanted: Vec<(i64, i64)> = items
                .iter()
                .filter(|(_, record)| !suppressed.contains(record))
                .map(|(item, record)| (*record, *item))
                .collect();
            guards::reserve_many(pool, account.id, &wanted, &caps, run_id).await?
        } else {
            HashMap::new()
        };
        Ok(GuardCtx {
            account_id: account.id,
            table: spec.table,
            is_flow,
            window,
            caps,
            suppressed,
            reserved,
        })
    }
}

impl BatchCtx {
    fn new(
        client: HttpHuggy,
        spec: Arc<TaskSpec>,
        account: &Account,
        channel_rate: f64,
        guard: GuardCtx,
    ) -> Self {
        let mut keys = vec![LimitKey {
            key: format!("account:{}", account.name),
            per_second: f64::from(account.rate_limit_per_s),
        }];
        let mut exec_flow = None;
        if let Action::RunFlow(f) = &spec.action {
            if let Some(channel) = &f.channel {
                keys.push(LimitKey {
                    key: format!("channel:{channel}"),
                    per_second: channel_rate,
                });
            }
            if spec.table == Table::Contacts {
                let (when_in_chat, when_wait_for_chat, when_in_auto) = f.policy.exec_flow_flags();
                exec_flow = Some(ExecFlowRequest {
                    uuid: f.channel.clone().unwrap_or_default(),
                    flow_id: f.flow,
                    variables: f.variables.clone().into_iter().collect(),
                    when_in_chat,
                    when_wait_for_chat,
                    when_in_auto,
                });
            }
        }
        BatchCtx {
            client,
            spec,
            keys,
            exec_flow,
            guard,
        }
    }
}

/// The one Huggy call an item makes. `exec_flow` is the batch's `execFlow` body (a Flow on
/// Contacts).
async fn call(
    client: &HttpHuggy,
    spec: &TaskSpec,
    exec_flow: Option<&ExecFlowRequest>,
    record_id: i64,
) -> Result<Sent, HuggyError> {
    match (&spec.action, spec.table) {
        (Action::RunFlow(_), Table::Contacts) => {
            let body = exec_flow.ok_or_else(|| HuggyError::Permanent {
                status: 0,
                reason: "no execFlow body for a Flow on Contacts".into(),
            })?;
            let answer = client.exec_flow(record_id, body).await?;
            Ok(if answer.not_executed() {
                let said = answer
                    .reason
                    .unwrap_or_else(|| "Huggy did not run the Flow".into());
                let policy = match &spec.action {
                    Action::RunFlow(f) => f.policy,
                    Action::Chat(_) => Default::default(),
                };
                Sent::NotRun(tarefas_core::guard::policy_skip_reason(&policy, &said))
            } else {
                Sent::Done
            })
        }
        (Action::RunFlow(f), Table::Chats) => {
            client
                .run_chat_flow(
                    record_id,
                    &ChatFlowRequest {
                        flow_id: f.flow,
                        variables: f.variables.clone().into_iter().collect(),
                    },
                )
                .await?;
            Ok(Sent::Done)
        }
        (Action::Chat(a), _) => {
            match a {
                ChatAction::TransferToAgent { agent } => {
                    client.transfer_to_agent(record_id, *agent).await?
                }
                ChatAction::PutInQueue => client.put_in_queue(record_id).await?,
                ChatAction::ChangeDepartment { department } => {
                    client.change_department(record_id, *department).await?
                }
                ChatAction::Close { tabulation } => {
                    client.close_chat(record_id, tabulation.clone()).await?
                }
                ChatAction::Reopen => client.reopen_chat(record_id).await?,
                ChatAction::UpdateWorkflow { step } => {
                    client.update_workflow(record_id, *step).await?
                }
                ChatAction::UpdateTabulation { tabulation } => {
                    client
                        .update_tabulation(record_id, tabulation.clone())
                        .await?
                }
            }
            Ok(Sent::Done)
        }
    }
}

impl<G: Gate> Executor<G> {
    /// Settles items stuck in `sending` since before `older_than` ago (their worker died
    /// mid-call), from the idempotency key: a recorded success is `done`; no key at all
    /// means the call never began, so the item goes back to `pending` with a new batch
    /// message; a key left `inflight` makes a Flow `unknown`, never resent (a customer must
    /// not get it twice), while a chat action that is safe to repeat goes back to `pending`.
    /// Returns how many items it settled or handed back.
    pub async fn settle_stuck(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<usize, WorkerError> {
        let before =
            chrono::Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let stuck = runs::stuck(&self.pool, before, limit).await?;
        let mut by_run: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for (run_id, item_id, record_id) in &stuck {
            by_run
                .entry(*run_id)
                .or_default()
                .push((*item_id, *record_id));
        }
        for (run_id, items) in by_run {
            let run = runs::get(&self.pool, None, run_id).await?;
            let spec = self.spec(run.id).await?;
            let repeatable = matches!(&spec.action, Action::Chat(c) if c.is_idempotent());
            let mut outcomes = Vec::new();
            let mut again = Vec::new();
            for (item_id, record_id) in items {
                let (key, unavailable) = match self.gate.state(run_id, record_id).await {
                    // A key found set is an earlier attempt's, whatever it says.
                    Ok(Some(Idem::Fresh)) => (KeyState::Inflight, None),
                    // Set by an attempt that recorded it never called: no call under it.
                    Ok(Some(Idem::Inflight(Some(holder)))) => {
                        match attempts::never_called(&self.pool, item_id, holder).await {
                            Ok(true) => (KeyState::Abandoned, None),
                            Ok(false) => (KeyState::Inflight, None),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Ok(state) => (key_state(state), None),
                    Err(e) => (KeyState::Unavailable, Some(e)),
                };
                let settle = |status, reason| Outcome {
                    item_id,
                    status,
                    reason,
                };
                match decision::decide(Step::Stuck(key), repeatable, 0).outcome {
                    Decided::Done(reason) => outcomes.push(settle(ItemStatus::Done, reason)),
                    Decided::Unknown(reason) => {
                        outcomes.push(settle(ItemStatus::Unknown, Some(reason)))
                    }
                    Decided::Failed(reason) => {
                        outcomes.push(settle(ItemStatus::Failed, Some(reason)))
                    }
                    Decided::Skipped(reason) => {
                        outcomes.push(settle(ItemStatus::Skipped, Some(reason)))
                    }
                    Decided::Release(_) => again.push(item_id),
                    // Redis cannot say: the sweep stops here; a later one settles it.
                    _ => {
                        return Err(WorkerError::Transient(
                            unavailable.map_or_else(|| "undecided".into(), |e| e.to_string()),
                        ))
                    }
                }
            }
            runs::record(&self.pool, run_id, None, &outcomes).await?;
            count_outcomes(&outcomes);
            if !again.is_empty() {
                let account = accounts::by_id(&self.pool, run.account_id).await?;
                let mut tx = self.pool.begin().await?;
                runs::release(&mut *tx, run_id, &again).await?;
                outbox::enqueue(
                    &mut *tx,
                    crate::plan::BATCH_ROUTING_KEY,
                    &crate::plan::batches(&run, &account.name, &again, 100),
                )
                .await?;
                tx.commit().await?;
            }
        }
        // Claims whose items are all settled or handed back (by this sweep or an earlier
        // one) are done with; an item claimed again is under a new claim.
        runs::forget_claims(&self.pool, before).await?;
        Ok(stuck.len())
    }
}

/// `tarefas_items_total{outcome}`: items this worker settled.
fn count_outcomes(outcomes: &[Outcome]) {
    for o in outcomes {
        metrics::counter!("tarefas_items_total", "outcome" => o.status.as_str()).increment(1);
    }
}
