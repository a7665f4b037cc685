//! The GCRA rate limiter shared by all workers, and the shared pause a 429 sets.
//!
//! One Lua script (`src/lua/acquire.lua`, run with `EVALSHA` and loaded again
//! when Redis answers `NOSCRIPT`) decides atomically for several keys at
//! once: either every key admits the call and each key's TAT advances, or none
//! does, nothing is written, and the caller learns how long to wait. Time is the
//! Redis server's (`TIME`), so the workers' clocks do not matter.
//!
//! # Keys in Redis
//!
//! For a [`Limit`] whose key is `account:42`, under the prefix `tarefas`:
//! * `tarefas:gcra:account:42`: the key's TAT (theoretical arrival time, µs of
//!   the Redis clock), expiring as soon as it lies in the past (an absent key
//!   means a full burst is available);
//! * `tarefas:pause:account:42`: present while the key is paused. A pause key
//!   without expiry (set by hand) pauses the key until it is deleted.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::time::Instant;

use crate::backoff::{backoff, jitter};
use crate::connection::{join_key, run, DEFAULT_OP_TIMEOUT};
use crate::idem::{IdemState, MarkResult};
use crate::LimitError;

/// The largest rate a [`Limit`] accepts: one call per microsecond.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;

/// The longest burst tolerance (`burst` × interval) a [`Limit`] accepts: about 35 years.
const MAX_TOLERANCE_US: u64 = 1 << 50;

/// The script that admits a call on all keys or on none. See `lua/acquire.lua`.
fn acquire_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/acquire.lua")))
}

/// The script that sets a pause without ever shortening one. See `lua/pause.lua`.
fn pause_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/pause.lua")))
}

/// One rate limit: a key (e.g. `account:42` or `channel:42:5511999990000`), its
/// sustained rate and its burst.
///
/// The limiter turns the rate into an emission interval `T` of whole microseconds,
/// `T = ⌈10⁶ / per_second⌉` ([`Limit::interval`]); rounding up means the effective
/// rate is never above `per_second`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// The name of the limited resource. The same key shares one budget across
    /// every worker that uses the same Redis and prefix.
    pub key: String,
    /// Sustained calls per second (`0 < per_second ≤ 1 000 000`, fractions allowed).
    pub per_second: f64,
    /// How many calls may be admitted back to back after an idle period (≥ 1).
    /// With `burst = 1` admissions are always at least `T` apart.
    pub burst: u32,
}

impl Limit {
    /// A limit on `key` of `per_second` calls per second with the given `burst`.
    pub fn new(key: impl Into<String>, per_second: f64, burst: u32) -> Self {
        Limit {
            key: key.into(),
            per_second,
            burst,
        }
    }

    /// The emission interval `T = ⌈10⁶ / per_second⌉ µs`, or why the limit is invalid.
    pub fn interval(&self) -> Result<Duration, LimitError> {
        self.interval_micros().map(Duration::from_micros)
    }

    fn interval_micros(&self) -> Result<u64, LimitError> {
        let invalid = |why: &str| Err(LimitError::Invalid(format!("limit {:?}: {why}", self.key)));
        if self.key.is_empty() {
            return invalid("the key is empty");
        }
        if !(self.per_second.is_finite()
            && self.per_second > 0.0
            && self.per_second <= MAX_PER_SECOND)
        {
            return invalid("per_second must be a number in (0, 1000000]");
        }
        if self.burst == 0 {
            return invalid("burst must be at least 1");
        }
        // In range: 1e6 / per_second is in [1, 1e6 / f64::MIN_POSITIVE) and checked below.
        let interval = (1e6 / self.per_second).ceil();
        if !(interval >= 1.0 && interval * f64::from(self.burst) <= MAX_TOLERANCE_US as f64) {
            return invalid("burst / per_second is too long (more than about 35 years)");
        }
        Ok(interval as u64)
    }
}

/// The answer of [`Limiter::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The call is admitted on every key: make it now.
    Granted,
    /// Nothing was admitted or consumed: ask again after this long (the time until
    /// every key would admit, assuming nobody else takes the slot first, or the
    /// longest pause left on the keys).
    Wait(Duration),
}

/// A decision of the limiter together with the Redis server time at which it was
/// made ([`Limiter::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Granted, or how long to wait.
    pub acquire: Acquire,
    /// When the script ran, by the Redis server's clock, since the Unix epoch. For
    /// a grant this is the admission instant the guarantee of [`Limiter`] is about.
    pub server_time: Duration,
}

/// The answer of [`Limiter::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// How many of the calls asked for were admitted on every key (0 when none was;
    /// nothing was consumed then).
    pub granted: u32,
    /// How long until the next call would be admitted (zero: at once); after a refusal,
    /// the wait, or the longest pause left.
    pub wait: Duration,
    /// When the script ran, by the Redis server's clock, since the Unix epoch.
    pub server_time: Duration,
}

/// A call admitted by [`Limiter::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The admission instant by the Redis server's clock, since the Unix epoch.
    pub server_time: Duration,
    /// How long `acquire` waited (rate limit, pauses and Redis outages).
    pub waited: Duration,
    /// How many times the script was run (or tried) for this grant.
    pub attempts: u32,
}

/// The limits of one call, checked and encoded for the script.
struct Prepared {
    keys: Vec<String>,
    args: Vec<u64>,
}

/// A GCRA rate limiter over Redis, shared by every worker that uses the same Redis
/// and prefix. Cheap to clone.
///
/// # Guarantee
///
/// For one key with emission interval `T` ([`Limit::interval`], at least
/// `1 / per_second`) and burst `b`, the admissions (the instants, by the Redis
/// server's clock, at which the script granted a call including that key) satisfy:
///
/// > every half-open window `[t, t + W)` contains at most `⌈W / T⌉ + b − 1`
/// > admissions, hence at most `⌈per_second × W⌉ + b − 1`.
///
/// So with `burst = 1` no window of one second ever sees more than
/// `⌈per_second⌉` admissions (exactly `per_second` for a whole rate), and two
/// admissions are never closer than `T`. With `burst = b`, at most `b` calls are
/// admitted at once, and a one-second window sees at most `per_second + b − 1`.
///
/// # Throughput, and choosing the burst
///
/// With `burst = 1` every moment a waiting worker wakes late (Tokio's timers
/// have a 1 ms granularity, plus the round trip to Redis) is capacity lost for
/// good: 8 tasks at 200/s (5 ms apart) reach about 80% of the rate on an idle
/// development machine, 60% on a busy one. A burst of `b ≥ 2` absorbs up to
/// `(b − 1)·T` of lateness: the same test reaches the full rate (199.9/s) with
/// `b = 2` on an idle machine, at most 201 admissions in any second; with
/// `b = 10` it stays within 2% even with both cores saturated. To keep a quota of `Q` calls in every
/// one-second window strictly *and* use it fully, configure
/// `per_second = Q − b + 1` with a small `b ≥ 2` (e.g. `Q − 1` with `b = 2`).
///
/// "Callers respect it" means every call is made only after a grant. The
/// guarantee is about admission instants at Redis: the calls reach Huggy after
/// varying network and scheduling delays, so Huggy may observe slightly bunched
/// calls, which is another reason to keep a margin below the real quota. It
/// assumes one Redis primary whose clock does not step backwards (a failover to a
/// replica, or a clock step, can break it briefly), and keys that are all on that
/// one server (not Redis Cluster).
///
/// While a pause exists on any key of a call ([`Limiter::pause`]), the call is
/// refused with the longest pause left, and nothing is consumed on any key.
#[derive(Clone)]
pub struct Limiter {
    conn: ConnectionManager,
    prefix: String,
    op_timeout: Duration,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter over `conn` whose keys live under `prefix` (e.g. `tarefas`).
    ///
    /// Every operation runs within [`DEFAULT_OP_TIMEOUT`]; see
    /// [`connect`](crate::connect) for a connection with suitable timeouts.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Limiter {
            conn,
            prefix: prefix.to_owned(),
            op_timeout: DEFAULT_OP_TIMEOUT,
        }
    }

    /// The same limiter with another time budget per Redis operation.
    pub fn with_op_timeout(mut self, op_timeout: Duration) -> Self {
        self.op_timeout = op_timeout;
        self
    }

    /// The Redis key holding the TAT of `key`.
    pub fn tat_key(&self, key: &str) -> String {
        join_key(&self.prefix, &format!("gcra:{key}"))
    }

    /// The Redis key that pauses `key` while it exists.
    pub fn pause_key(&self, key: &str) -> String {
        join_key(&self.prefix, &format!("pause:{key}"))
    }

    fn prepare(&self, limits: &[Limit]) -> Result<Prepared, LimitError> {
        if limits.is_empty() {
            return Err(LimitError::Invalid("no limits to acquire".to_owned()));
        }
        let mut keys = Vec::with_capacity(limits.len() * 2);
        let mut args = Vec::with_capacity(limits.len() * 2);
        for (i, limit) in limits.iter().enumerate() {
            if limits[..i].iter().any(|earlier| earlier.key == limit.key) {
                return Err(LimitError::Invalid(format!(
                    "limit {:?} appears twice in one call",
                    limit.key
                )));
            }
            args.push(limit.interval_micros()?);
            args.push(u64::from(limit.burst));
            keys.push(self.tat_key(&limit.key));
            keys.push(self.pause_key(&limit.key));
        }
        Ok(Prepared { keys, args })
    }

    /// Runs the script asking for `asked` calls; with `marking` (the idempotency keys of
    /// the calls, one per call asked for, and their TTL) it also marks the keys of the
    /// admitted ones and says what each held.
    async fn run_script(
        &self,
        prepared: &Prepared,
        asked: u32,
        marking: Option<(&[(String, String)], u64)>,
    ) -> Result<(Take, Vec<MarkResult>), LimitError> {
        let mut invocation = acquire_script().prepare_invoke();
        for key in &prepared.keys {
            invocation.key(key);
        }
        invocation
            .arg(prepared.args.len() / 2)
            .arg(asked)
            .arg(marking.map_or(0, |(_, ttl_ms)| ttl_ms));
        for arg in &prepared.args {
            invocation.arg(*arg);
        }
        if let Some((idem_keys, _)) = marking {
            for (key, value) in idem_keys {
                invocation.key(key).arg(value);
            }
        }
        let mut conn = self.conn.clone();
        let answer: Vec<redis::Value> =
            run(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
        let int = |i: usize| -> Result<i64, LimitError> {
            match answer.get(i) {
                Some(redis::Value::Int(v)) => Ok(*v),
                other => Err(LimitError::Protocol(format!(
                    "the limiter answered {other:?} at position {i}, expected an integer"
                ))),
            }
        };
        let (granted, wait_us, now_us) = (int(0)?, int(1)?, int(2)?);
        if !(0..=i64::from(asked)).contains(&granted) {
            return Err(LimitError::Protocol(format!(
                "the limiter granted {granted} calls of {asked} asked for"
            )));
        }
        let marks = answer[3..]
            .iter()
            .map(|held| match held {
                redis::Value::BulkString(b) if b.is_empty() => Ok(MarkResult::Marked),
                redis::Value::BulkString(b) => {
                    IdemState::parse(&String::from_utf8_lossy(b)).map(MarkResult::Held)
                }
                other => Err(LimitError::Protocol(format!(
                    "the limiter answered {other:?} for an idempotency key"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expected = if marking.is_some() {
            granted as usize
        } else {
            0
        };
        if marks.len() != expected {
            return Err(LimitError::Protocol(format!(
                "the limiter granted {granted} calls and marked {} keys",
                marks.len()
            )));
        }
        let take = Take {
            granted: granted as u32,
            wait: Duration::from_micros(wait_us.max(0) as u64),
            server_time: Duration::from_micros(now_us.max(0) as u64),
        };
        Ok((take, marks))
    }

    async fn run_once(&self, prepared: &Prepared) -> Result<Decision, LimitError> {
        let (take, _) = self.run_script(prepared, 1, None).await?;
        let acquire = if take.granted == 1 {
            Acquire::Granted
        } else {
            Acquire::Wait(take.wait.max(Duration::from_micros(1)))
        };
        Ok(Decision {
            acquire,
            server_time: take.server_time,
        })
    }

    /// Asks once to admit up to `asked` calls at once on all of `limits`: admits as many
    /// as every key allows now (at most each key's burst, at most `asked`), which is the
    /// same, for the guarantee of [`Limiter`], as admitting them one by one at the same
    /// instant. One round trip for many callers: a worker gathers the calls waiting for
    /// the same keys and hands the grants out.
    ///
    /// Fails with [`LimitError::Invalid`] for `asked == 0` and as [`Limiter::try_acquire`].
    pub async fn take(&self, limits: &[Limit], asked: u32) -> Result<Take, LimitError> {
        if asked == 0 {
            return Err(LimitError::Invalid("take: asked for 0 calls".to_owned()));
        }
        let prepared = self.prepare(limits)?;
        Ok(self.run_script(&prepared, asked, None).await?.0)
    }

    /// [`Limiter::take`] for calls that each mark their idempotency key ([`Idempotency`](crate::Idempotency))
    /// `inflight` once admitted, in the same atomic step: asks for `idem_keys.len()` calls
    /// and marks the keys of the first [`Take::granted`] of them (`SET NX PX`, like
    /// [`Idempotency::mark_inflight_many`](crate::Idempotency::mark_inflight_many)), answering what each held. So a call goes from
    /// its token to Huggy without another round trip, and a token is never taken without
    /// its key being marked. The keys are [`Idempotency::key`](crate::Idempotency::key)s of the same prefix.
    ///
    /// Fails as [`Limiter::take`], and with [`LimitError::Invalid`] for a zero TTL.
    pub async fn take_marking(
        &self,
        limits: &[Limit],
        idem_keys: &[String],
        ttl: Duration,
    ) -> Result<(Take, Vec<MarkResult>), LimitError> {
        if idem_keys.is_empty() {
            return Err(LimitError::Invalid("take: asked for 0 calls".to_owned()));
        }
        let marks: Vec<(String, String)> = idem_keys
            .iter()
            .map(|k| (k.clone(), IdemState::Inflight.value()))
            .collect();
        self.take_marking_with(limits, &marks, ttl).await
    }

    /// [`Limiter::take_marking`] for calls that say which attempt they are: each key is
    /// marked `inflight:<attempt>` ([`IdemState::InflightBy`]), and a key that already
    /// holds the same attempt's mark (an earlier ask of that attempt ran, but its answer
    /// was lost) counts as marked now, [`MarkResult::Marked`]. `marks` holds each call's
    /// key and attempt.
    ///
    /// Fails as [`Limiter::take_marking`].
    pub async fn take_marking_by(
        &self,
        limits: &[Limit],
        marks: &[(String, i64)],
        ttl: Duration,
    ) -> Result<(Take, Vec<MarkResult>), LimitError> {
        let marks: Vec<(String, String)> = marks
            .iter()
            .map(|(k, attempt)| (k.clone(), IdemState::InflightBy(*attempt).value()))
            .collect();
        self.take_marking_with(limits, &marks, ttl).await
    }

    async fn take_marking_with(
        &self,
        limits: &[Limit],
        marks: &[(String, String)],
        ttl: Duration,
    ) -> Result<(Take, Vec<MarkResult>), LimitError> {
        if marks.is_empty() {
            return Err(LimitError::Invalid("take: asked for 0 calls".to_owned()));
        }
        let ttl_ms = crate::idem::check_ttl(ttl)?;
        let prepared = self.prepare(limits)?;
        let asked = u32::try_from(marks.len())
            .map_err(|_| LimitError::Invalid("take: too many calls at once".to_owned()))?;
        self.run_script(&prepared, asked, Some((marks, ttl_ms)))
            .await
    }

    /// Asks once to admit one call on all of `limits` (e.g. the account's and the
    /// channel's). Admits on all or on none; a refusal consumes nothing.
    ///
    /// Fails with [`LimitError::Unavailable`] if Redis cannot be reached, and with
    /// [`LimitError::Invalid`] for an empty list, an invalid limit or a key given twice.
    pub async fn try_acquire(&self, limits: &[Limit]) -> Result<Acquire, LimitError> {
        Ok(self.decide(limits).await?.acquire)
    }

    /// [`Limiter::try_acquire`], also returning the Redis server time of the decision.
    pub async fn decide(&self, limits: &[Limit]) -> Result<Decision, LimitError> {
        let prepared = self.prepare(limits)?;
        self.run_once(&prepared).await
    }

    /// Waits until one call is admitted on all of `limits`, or `deadline` passes.
    ///
    /// Between refusals it sleeps for the wait the limiter asked for (counted from
    /// when it asked) plus a small jitter (at most a tenth of the wait, 25 ms). While Redis is unreachable it keeps trying with exponential backoff
    /// (50 ms doubling to 2 s, jittered) and never grants anything; it resumes when
    /// Redis returns. It tries at least once, even past the deadline.
    ///
    /// Fails with
    /// * [`LimitError::Deadline`] as soon as the wait asked for ends after
    ///   `deadline` (without sleeping in vain): nothing was consumed, retry after
    ///   `retry_after`;
    /// * [`LimitError::Unavailable`] if Redis is still unreachable at `deadline`;
    /// * [`LimitError::Invalid`] or [`LimitError::Redis`] at once.
    ///
    /// To cancel (e.g. on shutdown), drop the future, e.g. in a `tokio::select!`.
    /// A grant whose answer was on its way is then lost, which only ever means one
    /// call fewer than the limit allowed.
    pub async fn acquire(&self, limits: &[Limit], deadline: Instant) -> Result<Grant, LimitError> {
        let prepared = self.prepare(limits)?;
        acquire_with(deadline, || self.run_once(&prepared)).await
    }

    /// Pauses `key` for every worker for `duration` (e.g. a 429's `Retry-After`),
    /// unless a longer pause already holds: a pause is never shortened. While the
    /// pause holds, every call that includes `key` is refused.
    ///
    /// Returns the pause left afterwards (rounded up to whole milliseconds);
    /// `Duration::MAX` for an indefinite pause set by hand (a pause key without
    /// expiry). A zero `duration` changes nothing and reports the pause left.
    pub async fn pause(&self, key: &str, duration: Duration) -> Result<Duration, LimitError> {
        if key.is_empty() {
            return Err(LimitError::Invalid("pause: the key is empty".to_owned()));
        }
        let want_ms = duration_to_ms_ceil(duration);
        let mut conn = self.conn.clone();
        let mut invocation = pause_script().prepare_invoke();
        invocation.key(self.pause_key(key)).arg(want_ms);
        let left_ms: i64 = run(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
        let left = ms_to_duration(left_ms);
        tracing::info!(
            limit.key = key,
            requested_ms = want_ms,
            left_ms,
            "rate-limit key paused for every worker"
        );
        Ok(left)
    }

    /// How long `key` stays paused: `None` if it is not paused, `Duration::MAX`
    /// for an indefinite pause set by hand.
    pub async fn paused_for(&self, key: &str) -> Result<Option<Duration>, LimitError> {
        let mut conn = self.conn.clone();
        let left_ms: i64 = run(
            self.op_timeout,
            redis::cmd("PTTL")
                .arg(self.pause_key(key))
                .query_async(&mut conn),
        )
        .await?;
        Ok(match left_ms {
            -2 => None,
            ms => Some(ms_to_duration(ms)),
        })
    }
}

/// The waiting loop of [`Limiter::acquire`] over any way of asking the limiter once
/// (`ask`: one script run, or a share of a run made for several callers, as a worker's
/// coalesced gate does), with the same behaviour: it sleeps for the wait asked for plus a
/// jitter, keeps trying with backoff while Redis is unavailable, and fails with
/// [`LimitError::Deadline`] when the wait ends after `deadline`, with
/// [`LimitError::Unavailable`] if Redis is still away at `deadline`, and at once with any
/// other error. It asks at least once, even past the deadline.
pub async fn acquire_with<F, Fut>(deadline: Instant, mut ask: F) -> Result<Grant, LimitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Decision, LimitError>>,
{
    let started = Instant::now();
    let mut attempts = 0u32;
    let mut failures = 0u32;
    loop {
        attempts = attempts.saturating_add(1);
        let asked_at = Instant::now();
        match ask().await {
            Ok(Decision {
                acquire: Acquire::Granted,
                server_time,
            }) => {
                if failures > 0 {
                    tracing::info!(
                        attempts,
                        "redis is reachable again; rate-limited sending resumes"
                    );
                }
                return Ok(Grant {
                    server_time,
                    waited: started.elapsed(),
                    attempts,
                });
            }
            Ok(Decision {
                acquire: Acquire::Wait(wait),
                ..
            }) => {
                failures = 0;
                if asked_at
                    .checked_add(wait)
                    .is_none_or(|ready| ready > deadline)
                {
                    return Err(LimitError::Deadline { retry_after: wait });
                }
                tokio::time::sleep_until((asked_at + wait + jitter(wait)).min(deadline)).await;
            }
            Err(e) if e.is_unavailable() => {
                failures = failures.saturating_add(1);
                let now = Instant::now();
                if now >= deadline {
                    return Err(e);
                }
                let pause = backoff(failures);
                if failures == 1 {
                    tracing::warn!(
                        error.message = %e,
                        error.cause_chain = ?e,
                        "redis is unavailable; sending stops until it returns"
                    );
                } else {
                    tracing::debug!(
                        error.message = %e,
                        failures,
                        backoff_ms = pause.as_millis() as u64,
                        "redis still unavailable"
                    );
                }
                tokio::time::sleep_until((now + pause).min(deadline)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Milliseconds, rounded up, saturating; Redis expiries take whole milliseconds.
pub(crate) fn duration_to_ms_ceil(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    // Redis rejects expiries that overflow its clock; ~292 years is plenty.
    ms.min(i64::MAX as u128 / 1000) as u64
}

/// A PTTL-like answer as a duration: -1 (no expiry) is `Duration::MAX`, other
/// negative values are zero.
fn ms_to_duration(ms: i64) -> Duration {
    match ms {
        -1 => Duration::MAX,
        ms if ms < 0 => Duration::ZERO,
        ms => Duration::from_millis(ms as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_rounds_up_to_whole_microseconds() {
        assert_eq!(
            Limit::new("a", 200.0, 1).interval().unwrap(),
            Duration::from_micros(5000)
        );
        assert_eq!(
            Limit::new("a", 3.0, 1).interval().unwrap(),
            Duration::from_micros(333_334)
        );
        assert_eq!(
            Limit::new("a", 0.5, 1).interval().unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            Limit::new("a", 1e6, 1).interval().unwrap(),
            Duration::from_micros(1)
        );
    }

    #[test]
    fn nonsensical_limits_are_invalid() {
        for limit in [
            Limit::new("", 1.0, 1),
            Limit::new("a", 0.0, 1),
            Limit::new("a", -1.0, 1),
            Limit::new("a", f64::NAN, 1),
            Limit::new("a", f64::INFINITY, 1),
            Limit::new("a", 2e6, 1),
            Limit::new("a", 1.0, 0),
            Limit::new("a", 1e-9, u32::MAX),
        ] {
            assert!(
                matches!(limit.interval(), Err(LimitError::Invalid(_))),
                "{limit:?}"
            );
        }
    }

    #[test]
    fn durations_round_up_to_milliseconds() {
        assert_eq!(duration_to_ms_ceil(Duration::ZERO), 0);
        assert_eq!(duration_to_ms_ceil(Duration::from_micros(1)), 1);
        assert_eq!(duration_to_ms_ceil(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_to_ms_ceil(Duration::from_micros(1_500_001)), 1501);
        assert!(duration_to_ms_ceil(Duration::MAX) < i64::MAX as u64);
    }
}
