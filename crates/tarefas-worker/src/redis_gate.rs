//! The [`Gate`] on Redis: `tarefas-limits`' GCRA limiter, shared pauses and idempotency keys.

use std::time::Duration;

use tarefas_limits::{IdemState, Idempotency, Limit, LimitError, Limiter, MarkResult};

use crate::gate::{Gate, GateUnavailable, Idem, LimitKey};

/// How long idempotency keys live: longer than any run and its retries.
pub const IDEM_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Limits and idempotency keys on one Redis, under one key prefix.
#[derive(Clone, Debug)]
pub struct RedisGate {
    limiter: Limiter,
    idem: Idempotency,
}

impl RedisGate {
    /// Connects (lazily; the connection manager reconnects by itself) to `url`.
    pub fn connect(url: &str, prefix: &str) -> Result<RedisGate, GateUnavailable> {
        let conn = tarefas_limits::connect(url).map_err(unavailable)?;
        Ok(RedisGate {
            limiter: Limiter::new(conn.clone(), prefix),
            idem: Idempotency::new(conn, prefix),
        })
    }
}

fn unavailable(e: LimitError) -> GateUnavailable {
    GateUnavailable(e.to_string())
}

impl Gate for RedisGate {
    async fn acquire(
        &self,
        keys: &[LimitKey],
        deadline: Duration,
    ) -> Result<bool, GateUnavailable> {
        // A rate of Q−1 with a burst of 2 keeps every one-second window at or under Q (the
        // limiter's bound is ⌈rate·W⌉ + burst − 1) while absorbing timer lateness, which a
        // burst of 1 would lose for good.
        let limits: Vec<Limit> = keys
            .iter()
            .map(|k| {
                if k.per_second >= 2.0 {
                    Limit::new(k.key.clone(), k.per_second - 1.0, 2)
                } else {
                    Limit::new(k.key.clone(), k.per_second, 1)
                }
            })
            .collect();
        match self
            .limiter
            .acquire(&limits, tokio::time::Instant::now() + deadline)
            .await
        {
            Ok(_) => Ok(true),
            Err(LimitError::Deadline { retry_after }) => {
                // Nothing was consumed; wait out the deadline so the caller can look around
                // (e.g. for a cancel) before it asks again.
                tokio::time::sleep(retry_after.min(deadline)).await;
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn pause(&self, key: &str, pause: Duration) -> Result<(), GateUnavailable> {
        self.limiter
            .pause(key, pause)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn begin(&self, run_id: i64, record_id: i64) -> Result<Idem, GateUnavailable> {
        match self
            .idem
            .mark_inflight(run_id, record_id, IDEM_TTL)
            .await
            .map_err(unavailable)?
        {
            MarkResult::Marked => Ok(Idem::Fresh),
            MarkResult::Held(IdemState::Inflight) => Ok(Idem::Inflight),
            MarkResult::Held(IdemState::Done) => Ok(Idem::Done),
        }
    }

    async fn done(&self, run_id: i64, record_id: i64) -> Result<(), GateUnavailable> {
        self.idem
            .mark_done(run_id, record_id, IDEM_TTL)
            .await
            .map_err(unavailable)
    }

    async fn clear(&self, run_id: i64, record_id: i64) -> Result<(), GateUnavailable> {
        self.idem
            .release(run_id, record_id)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn state(&self, run_id: i64, record_id: i64) -> Result<Option<Idem>, GateUnavailable> {
        Ok(self
            .idem
            .get(run_id, record_id)
            .await
            .map_err(unavailable)?
            .map(|s| match s {
                IdemState::Inflight => Idem::Inflight,
                IdemState::Done => Idem::Done,
            }))
    }
}
