//! What the executor asks of the shared limiter before each call: a rate-limit token for the
//! account and channel, a shared pause after a 429, and the idempotency key of design §3.
//! The Redis implementation lives in `tarefas-limits`; the trait keeps the executor's
//! decisions independent of it.

use std::future::Future;
use std::time::Duration;

/// A rate-limited key and its rate.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitKey {
    /// E.g. `account:acme` or `channel:<uuid>`.
    pub key: String,
    /// Calls per second.
    pub per_second: f64,
}

/// What an idempotency key says about a record of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idem {
    /// This call just set it: go ahead.
    Fresh,
    /// A call was started before and its end was not recorded; by the attempt with this id
    /// (its claim), when the key says.
    Inflight(Option<i64>),
    /// A call already succeeded.
    Done,
}

/// The shared limiter is unreachable: fail closed (send nothing).
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct GateUnavailable(pub String);

/// Rate limits, pauses and idempotency keys shared by every worker.
pub trait Gate: Send + Sync + 'static {
    /// Waits until every key grants a call: `Ok(true)`; `Ok(false)` when no grant came
    /// within `deadline` (nothing consumed); unavailable when the limiter is (fail closed).
    fn acquire(
        &self,
        keys: &[LimitKey],
        deadline: Duration,
    ) -> impl Future<Output = Result<bool, GateUnavailable>> + Send;
    /// [`Gate::acquire`] and then [`Gate::begin`] as one step: once every key grants the
    /// call, the record's key is set `inflight` by `attempt` unless it exists, atomically
    /// with the token. `Some` says what the key held ([`Idem::Fresh`] also when it held
    /// this same attempt's mark, set by an earlier ask whose answer was lost); `None` when
    /// no grant came within `deadline` (nothing consumed, the key untouched).
    fn acquire_and_begin(
        &self,
        keys: &[LimitKey],
        run_id: i64,
        record_id: i64,
        attempt: i64,
        deadline: Duration,
    ) -> impl Future<Output = Result<Option<Idem>, GateUnavailable>> + Send;
    /// Hands the key's `inflight` mark from attempt `from` over to attempt `to`, only if it
    /// still is `from`'s: `true` when it is now `to`'s.
    fn take_over(
        &self,
        run_id: i64,
        record_id: i64,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<bool, GateUnavailable>> + Send;
    /// Makes every worker wait `pause` before the next call on `key` (a 429's Retry-After).
    fn pause(
        &self,
        key: &str,
        pause: Duration,
    ) -> impl Future<Output = Result<(), GateUnavailable>> + Send;
    /// Sets the key `inflight` unless it exists; says what it held.
    fn begin(
        &self,
        run_id: i64,
        record_id: i64,
    ) -> impl Future<Output = Result<Idem, GateUnavailable>> + Send;
    /// Records that the call succeeded (before the database write).
    fn done(
        &self,
        run_id: i64,
        record_id: i64,
    ) -> impl Future<Output = Result<(), GateUnavailable>> + Send;
    /// Forgets the `inflight` mark of `attempt` (only its own) whose call surely did not
    /// happen (so it may be retried).
    fn clear(
        &self,
        run_id: i64,
        record_id: i64,
        attempt: i64,
    ) -> impl Future<Output = Result<(), GateUnavailable>> + Send;
    /// What the key holds (for settling stuck items).
    fn state(
        &self,
        run_id: i64,
        record_id: i64,
    ) -> impl Future<Output = Result<Option<Idem>, GateUnavailable>> + Send;
}
