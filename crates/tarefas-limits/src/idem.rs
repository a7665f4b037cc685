//! Idempotency keys `idem:{run_id}:{record_id}`: the second layer of design §3
//! ("exactly once, in practice").
//!
//! A worker marks a record `inflight` (only if unmarked: `SET NX PX`) just before
//! calling Huggy, and `done` right after Huggy answered, before writing the outcome
//! to Postgres. Recovery settles items stuck in `sending` from the key: `done` →
//! done; otherwise `unknown`, and a Flow is never sent again. Postgres stays the
//! truth; the key closes the window between Huggy's answer and the commit.
//!
//! A key set by an attempt that knows its id (the executor's claim of the batch) holds
//! `inflight:<attempt>` ([`IdemState::InflightBy`]): a mark whose reply was lost can then be
//! recognized as that attempt's, and taken over ([`Idempotency::take_over`]) by a later
//! attempt once Postgres proves the holder never called Huggy.
//!
//! TTLs: the `inflight` TTL must outlive the recovery timeout of stuck items (so
//! recovery still sees it), and the `done` TTL must outlive any redelivery of the
//! batch that could still find the item in `sending` (hours to days are cheap).

use std::fmt::Display;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::connection::{join_key, run, DEFAULT_OP_TIMEOUT};
use crate::limiter::duration_to_ms_ceil;
use crate::LimitError;

/// How many keys one `MGET` of [`Idempotency::get_many`] reads; the batches are pipelined.
const MGET_CHUNK: usize = 500;

/// The value `inflight` as stored in Redis.
const INFLIGHT: &str = "inflight";
/// The value `done` as stored in Redis.
const DONE: &str = "done";

fn mark_inflight_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/mark_inflight.lua")))
}

fn mark_inflight_many_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/mark_inflight_many.lua")))
}

fn take_over_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/take_over.lua")))
}

fn release_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/release.lua")))
}

/// What an idempotency key says about one record of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdemState {
    /// A worker was about to call (or is calling) Huggy for this record; the
    /// outcome is not known. Who set it is not known either (the value `inflight`).
    Inflight,
    /// Like [`IdemState::Inflight`], set by the attempt with this id (the value
    /// `inflight:<id>`).
    InflightBy(i64),
    /// Huggy answered the call for this record.
    Done,
}

impl IdemState {
    /// The state's name: `inflight` (whoever set it) or `done`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdemState::Inflight | IdemState::InflightBy(_) => INFLIGHT,
            IdemState::Done => DONE,
        }
    }

    /// The value stored in Redis: `inflight`, `inflight:<attempt>` or `done`.
    pub fn value(self) -> String {
        match self {
            IdemState::InflightBy(attempt) => inflight_by(attempt),
            other => other.as_str().to_owned(),
        }
    }

    pub(crate) fn parse(value: &str) -> Result<Self, LimitError> {
        match value {
            INFLIGHT => Ok(IdemState::Inflight),
            DONE => Ok(IdemState::Done),
            other => other
                .strip_prefix("inflight:")
                .and_then(|id| id.parse().ok())
                .map(IdemState::InflightBy)
                .ok_or_else(|| {
                    LimitError::Protocol(format!(
                        "an idempotency key holds {other:?}, expected \"inflight\", \
                         \"inflight:<attempt>\" or \"done\""
                    ))
                }),
        }
    }
}

/// The value of a key set `inflight` by `attempt`.
pub(crate) fn inflight_by(attempt: i64) -> String {
    format!("{INFLIGHT}:{attempt}")
}

/// The answer of [`Idempotency::mark_inflight`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkResult {
    /// The key was absent and is now `inflight`: this worker may call Huggy.
    Marked,
    /// The key already existed and was left alone; it holds this state. Do not
    /// call Huggy: another attempt is in flight, or the call was already made.
    Held(IdemState),
}

/// The idempotency keys of design §3, under a prefix. Cheap to clone.
///
/// Every operation fails with [`LimitError::Unavailable`] when Redis cannot be
/// reached: a worker must then not call Huggy.
#[derive(Clone)]
pub struct Idempotency {
    conn: ConnectionManager,
    prefix: String,
    op_timeout: Duration,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

pub(crate) fn check_ttl(ttl: Duration) -> Result<u64, LimitError> {
    match duration_to_ms_ceil(ttl) {
        0 => Err(LimitError::Invalid(
            "an idempotency key needs a TTL of at least 1 ms".to_owned(),
        )),
        ms => Ok(ms),
    }
}

impl Idempotency {
    /// Idempotency keys over `conn`, under `prefix` (e.g. `tarefas`), each
    /// operation within [`DEFAULT_OP_TIMEOUT`].
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Idempotency {
            conn,
            prefix: prefix.to_owned(),
            op_timeout: DEFAULT_OP_TIMEOUT,
        }
    }

    /// The same keys with another time budget per Redis operation.
    pub fn with_op_timeout(mut self, op_timeout: Duration) -> Self {
        self.op_timeout = op_timeout;
        self
    }

    /// The Redis key `{prefix}:idem:{run_id}:{record_id}`.
    pub fn key(&self, run_id: impl Display, record_id: impl Display) -> String {
        join_key(&self.prefix, &format!("idem:{run_id}:{record_id}"))
    }

    /// Marks the record `inflight` for `ttl` if it is not marked yet (atomically,
    /// like `SET NX PX`); otherwise leaves the key alone and says what it holds.
    pub async fn mark_inflight(
        &self,
        run_id: impl Display,
        record_id: impl Display,
        ttl: Duration,
    ) -> Result<MarkResult, LimitError> {
        let ttl_ms = check_ttl(ttl)?;
        let mut conn = self.conn.clone();
        let mut invocation = mark_inflight_script().prepare_invoke();
        invocation.key(self.key(run_id, record_id)).arg(ttl_ms);
        let held: Option<String> = run(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
        match held {
            None => Ok(MarkResult::Marked),
            Some(value) => Ok(MarkResult::Held(IdemState::parse(&value)?)),
        }
    }

    /// Marks the record `done` for `ttl`, whatever the key held (`SET PX`).
    pub async fn mark_done(
        &self,
        run_id: impl Display,
        record_id: impl Display,
        ttl: Duration,
    ) -> Result<(), LimitError> {
        let ttl_ms = check_ttl(ttl)?;
        let mut conn = self.conn.clone();
        run(
            self.op_timeout,
            redis::cmd("SET")
                .arg(self.key(run_id, record_id))
                .arg(DONE)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// [`Idempotency::mark_inflight`] for many records at once (of one run or several), in
    /// one atomic script: one round trip for the calls a worker is about to make. The
    /// answers are in the order of `records`; a record given twice is marked by its first
    /// occurrence and found `Held(Inflight)` by the second.
    pub async fn mark_inflight_many<R: Display, I: Display>(
        &self,
        records: &[(R, I)],
        ttl: Duration,
    ) -> Result<Vec<MarkResult>, LimitError> {
        let ttl_ms = check_ttl(ttl)?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut invocation = mark_inflight_many_script().prepare_invoke();
        for (run_id, record_id) in records {
            invocation.key(self.key(run_id, record_id));
        }
        invocation.arg(ttl_ms);
        let held: Vec<String> = run(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
        if held.len() != records.len() {
            return Err(LimitError::Protocol(format!(
                "marked {} idempotency keys, got {} answers",
                records.len(),
                held.len()
            )));
        }
        held.iter()
            .map(|value| match value.as_str() {
                "" => Ok(MarkResult::Marked),
                other => IdemState::parse(other).map(MarkResult::Held),
            })
            .collect()
    }

    /// [`Idempotency::mark_done`] for many records at once, pipelined in one round trip.
    pub async fn mark_done_many<R: Display, I: Display>(
        &self,
        records: &[(R, I)],
        ttl: Duration,
    ) -> Result<(), LimitError> {
        let ttl_ms = check_ttl(ttl)?;
        if records.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (run_id, record_id) in records {
            pipe.cmd("SET")
                .arg(self.key(run_id, record_id))
                .arg(DONE)
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
        }
        let mut conn = self.conn.clone();
        run(self.op_timeout, pipe.query_async::<()>(&mut conn)).await
    }

    /// Removes an `inflight` mark (never a `done` one), for a call known not to
    /// have been executed (e.g. Huggy answered 429) that will be tried again.
    /// Returns whether a mark was removed.
    pub async fn release(
        &self,
        run_id: impl Display,
        record_id: impl Display,
    ) -> Result<bool, LimitError> {
        let mut conn = self.conn.clone();
        let mut invocation = release_script().prepare_invoke();
        invocation.key(self.key(run_id, record_id)).arg(INFLIGHT);
        let removed: i64 = run(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
        Ok(removed > 0)
    }

    /// Removes the `inflight` mark of `attempt` ([`IdemState::InflightBy`]), and nothing
    /// else: never a `done` mark, never another attempt's (a late release of an earlier
    /// attempt cannot take away the mark of the one calling now). Returns whether it was
    /// removed.
    pub async fn release_by(
        &self,
        run_id: impl Display,
        record_id: impl Display,
        attempt: i64,
    ) -> Result<bool, LimitError> {
        let mut conn = self.conn.clone();
        let mut invocation = release_script().prepare_invoke();
        invocation
            .key(self.key(run_id, record_id))
            .arg(inflight_by(attempt));
        let removed: i64 = run(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
        Ok(removed > 0)
    }

    /// Hands the `inflight` mark of attempt `from` over to attempt `to` (for `ttl`), only
    /// if the key still holds `from`'s mark (compare and set). For a mark whose holder is
    /// known never to have called Huggy (its reply was lost on the way back). Returns
    /// whether the key is now `to`'s.
    pub async fn take_over(
        &self,
        run_id: impl Display,
        record_id: impl Display,
        from: i64,
        to: i64,
        ttl: Duration,
    ) -> Result<bool, LimitError> {
        let ttl_ms = check_ttl(ttl)?;
        let mut conn = self.conn.clone();
        let mut invocation = take_over_script().prepare_invoke();
        invocation
            .key(self.key(run_id, record_id))
            .arg(inflight_by(from))
            .arg(inflight_by(to))
            .arg(ttl_ms);
        let taken: i64 = run(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
        Ok(taken > 0)
    }

    /// What the key of one record holds, if anything.
    pub async fn get(
        &self,
        run_id: impl Display,
        record_id: impl Display,
    ) -> Result<Option<IdemState>, LimitError> {
        let mut conn = self.conn.clone();
        let value: Option<String> = run(
            self.op_timeout,
            redis::cmd("GET")
                .arg(self.key(run_id, record_id))
                .query_async(&mut conn),
        )
        .await?;
        value.as_deref().map(IdemState::parse).transpose()
    }

    /// What the keys of many records of one run hold, in the order of
    /// `record_ids`: `MGET`s of up to 500 keys, pipelined in one round trip, within
    /// one operation's time budget (recovery settles whole batches this way).
    pub async fn get_many<R: Display>(
        &self,
        run_id: impl Display,
        record_ids: &[R],
    ) -> Result<Vec<Option<IdemState>>, LimitError> {
        if record_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for chunk in record_ids.chunks(MGET_CHUNK) {
            let cmd = pipe.cmd("MGET");
            for record_id in chunk {
                cmd.arg(self.key(&run_id, record_id));
            }
        }
        let mut conn = self.conn.clone();
        let chunks: Vec<Vec<Option<String>>> =
            run(self.op_timeout, pipe.query_async(&mut conn)).await?;
        let values: Vec<Option<String>> = chunks.into_iter().flatten().collect();
        if values.len() != record_ids.len() {
            return Err(LimitError::Protocol(format!(
                "asked for {} idempotency keys, got {} values",
                record_ids.len(),
                values.len()
            )));
        }
        values
            .iter()
            .map(|value| value.as_deref().map(IdemState::parse).transpose())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_values() {
        for state in [
            IdemState::Inflight,
            IdemState::InflightBy(42),
            IdemState::Done,
        ] {
            assert_eq!(IdemState::parse(&state.value()).unwrap(), state);
        }
        assert_eq!(IdemState::InflightBy(7).value(), "inflight:7");
        assert_eq!(IdemState::InflightBy(7).as_str(), "inflight");
        for bad in ["inflight:", "inflight:x", "inflight7"] {
            assert!(matches!(
                IdemState::parse(bad),
                Err(LimitError::Protocol(_))
            ));
        }
        assert!(matches!(
            IdemState::parse("sent"),
            Err(LimitError::Protocol(_))
        ));
    }

    #[test]
    fn a_zero_ttl_is_invalid() {
        assert!(matches!(
            check_ttl(Duration::ZERO),
            Err(LimitError::Invalid(_))
        ));
        assert_eq!(check_ttl(Duration::from_micros(10)).unwrap(), 1);
    }
}
