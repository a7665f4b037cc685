//! The [`Gate`] on Redis: `tarefas-limits`' GCRA limiter, shared pauses and idempotency keys.
//!
//! Every item asks the gate three things: a rate-limit token, its idempotency key set
//! `inflight` before the call, and the key set `done` after it. The first two are one step:
//! the limiter's script marks the key of every call it admits, atomically with the token
//! ([`Limiter::take_marking`]), so a call goes from its token to Huggy without another
//! Redis round trip (which also keeps the time between the token and the call's arrival,
//! the jitter the limit's precision must absorb, as short as it can be).
//!
//! With a few hundred calls in flight, one request each would still be two Redis round
//! trips per item, which is where a worker and Redis spent most of their CPU. So the calls
//! waiting for a token wait in the worker's line ([`Tokens`]), which asks the limiter once
//! for all of them, and the `done` marks go through a [`Coalescer`], a task that takes every
//! request waiting at that moment and answers them with one pipeline of `SET`s, like a
//! group commit. Each caller still gets its own answer before it goes on, so the order of
//! design §3 (token, key set before the call, `done` before the database write) is what it
//! was.

use std::future::Future;
use std::time::Duration;

use tarefas_limits::{IdemState, Idempotency, Limit, LimitError, Limiter, MarkResult};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::gate::{Gate, GateUnavailable, Idem, LimitKey};
use crate::tokens::Tokens;

/// How long idempotency keys live: longer than any run and its retries.
pub const IDEM_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most requests one coalesced Redis operation answers.
const MAX_BATCH: usize = 512;

type Reply<A> = oneshot::Sender<Result<A, GateUnavailable>>;

/// Gathers concurrent requests and answers each batch with one call of `f`.
struct Coalescer<Q, A> {
    tx: mpsc::UnboundedSender<(Q, Reply<A>)>,
}

impl<Q, A> Clone for Coalescer<Q, A> {
    fn clone(&self) -> Self {
        Coalescer {
            tx: self.tx.clone(),
        }
    }
}

impl<Q: Send + 'static, A: Send + 'static> Coalescer<Q, A> {
    /// Starts the batching task (it ends when every handle is dropped). `f` answers a
    /// batch with one answer per request, in order.
    fn spawn<F, Fut>(f: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<A>, GateUnavailable>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Q, Reply<A>)>();
        tokio::spawn(async move {
            let mut waiting = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
                let (asks, replies): (Vec<Q>, Vec<Reply<A>>) = waiting.drain(..).unzip();
                let n = asks.len();
                match f(asks).await {
                    Ok(answers) if answers.len() == n => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(Ok(answer));
                        }
                    }
                    Ok(answers) => {
                        let e = GateUnavailable(format!(
                            "redis answered {} of {n} requests",
                            answers.len()
                        ));
                        replies
                            .into_iter()
                            .for_each(|r| drop(r.send(Err(e.clone()))));
                    }
                    Err(e) => replies
                        .into_iter()
                        .for_each(|r| drop(r.send(Err(e.clone())))),
                }
            }
        });
        Coalescer { tx }
    }

    async fn call(&self, ask: Q) -> Result<A, GateUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((ask, reply))
            .map_err(|_| GateUnavailable("the gate has stopped".into()))?;
        answer
            .await
            .map_err(|_| GateUnavailable("the gate dropped a request".into()))?
    }
}

/// Limits and idempotency keys on one Redis, under one key prefix.
#[derive(Clone)]
pub struct RedisGate {
    limiter: Limiter,
    idem: Idempotency,
    tokens: Tokens,
    dones: Coalescer<(i64, i64), ()>,
}

impl std::fmt::Debug for RedisGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGate")
            .field("limiter", &self.limiter)
            .field("idem", &self.idem)
            .finish_non_exhaustive()
    }
}

impl RedisGate {
    /// Connects (lazily; the connection manager reconnects by itself) to `url`. Must be
    /// called within a Tokio runtime (it starts the coalescing tasks).
    pub fn connect(url: &str, prefix: &str) -> Result<RedisGate, GateUnavailable> {
        let conn = tarefas_limits::connect(url).map_err(unavailable)?;
        let limiter = Limiter::new(conn.clone(), prefix);
        let idem = Idempotency::new(conn, prefix);
        let tokens = Tokens::spawn(limiter.clone(), idem.clone());
        let dones = {
            let idem = idem.clone();
            Coalescer::spawn(move |records: Vec<(i64, i64)>| {
                let idem = idem.clone();
                async move {
                    idem.mark_done_many(&records, IDEM_TTL)
                        .await
                        .map(|()| vec![(); records.len()])
                        .map_err(unavailable)
                }
            })
        };
        Ok(RedisGate {
            limiter,
            idem,
            tokens,
            dones,
        })
    }
}

pub(crate) fn unavailable(e: LimitError) -> GateUnavailable {
    GateUnavailable(e.to_string())
}

/// How a quota of `q` calls per second is configured in the limiter: a burst `b` and a
/// rate of `q − b`, so that no one-second window of admissions ever holds more than `q − 1`
/// calls (the limiter's bound is ⌈rate·W⌉ + b − 1): the one call to spare absorbs the
/// jitter between admission and arrival at Huggy (at `q − b + 1` the fake Huggy saw 201 in
/// a second at 200/s). The burst absorbs the lateness of waking waiters (a burst of 1
/// loses every late slot for good) and lets a worker take many tokens in one round trip
/// at high rates: b = 3 up to 300/s (197/s sustained for 200/s, 0.985 of the quota), then
/// 1 % of the quota.
pub fn limit_for(key: &str, q: f64) -> Limit {
    if q >= 10.0 {
        let b = (q / 100.0).ceil().max(3.0);
        Limit::new(key, q - b, b as u32)
    } else if q >= 2.0 {
        Limit::new(key, q - 1.0, 2)
    } else {
        Limit::new(key, q, 1)
    }
}

impl RedisGate {
    /// Waits in the worker's line ([`Tokens`]) until every key grants a call (marking the
    /// key of `record` in the same step): `Some` with the mark, `None` when no token came
    /// within `deadline` (nothing consumed). Redis being away is retried with backoff until
    /// the deadline, then unavailable (fail closed).
    async fn wait_for_token(
        &self,
        keys: &[LimitKey],
        record: Option<(i64, i64, i64)>,
        deadline: Duration,
    ) -> Result<Option<Option<MarkResult>>, GateUnavailable> {
        let limits: Vec<Limit> = keys
            .iter()
            .map(|k| limit_for(&k.key, k.per_second))
            .collect();
        self.tokens
            .wait(limits, record, Instant::now() + deadline)
            .await
    }
}

fn idem_of(mark: MarkResult) -> Idem {
    match mark {
        MarkResult::Marked => Idem::Fresh,
        MarkResult::Held(state) => idem_state(state),
    }
}

fn idem_state(state: IdemState) -> Idem {
    match state {
        IdemState::Inflight => Idem::Inflight(None),
        IdemState::InflightBy(attempt) => Idem::Inflight(Some(attempt)),
        IdemState::Done => Idem::Done,
    }
}

impl Gate for RedisGate {
    async fn acquire(
        &self,
        keys: &[LimitKey],
        deadline: Duration,
    ) -> Result<bool, GateUnavailable> {
        Ok(self.wait_for_token(keys, None, deadline).await?.is_some())
    }

    async fn acquire_and_begin(
        &self,
        keys: &[LimitKey],
        run_id: i64,
        record_id: i64,
        attempt: i64,
        deadline: Duration,
    ) -> Result<Option<Idem>, GateUnavailable> {
        let mark = self
            .wait_for_token(keys, Some((run_id, record_id, attempt)), deadline)
            .await?;
        match mark {
            None => Ok(None),
            Some(Some(mark)) => Ok(Some(idem_of(mark))),
            Some(None) => Err(GateUnavailable(
                "the limiter granted a token without marking its key".into(),
            )),
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
        self.idem
            .mark_inflight(run_id, record_id, IDEM_TTL)
            .await
            .map(idem_of)
            .map_err(unavailable)
    }

    async fn done(&self, run_id: i64, record_id: i64) -> Result<(), GateUnavailable> {
        self.dones.call((run_id, record_id)).await
    }

    async fn take_over(
        &self,
        run_id: i64,
        record_id: i64,
        from: i64,
        to: i64,
    ) -> Result<bool, GateUnavailable> {
        self.idem
            .take_over(run_id, record_id, from, to, IDEM_TTL)
            .await
            .map_err(unavailable)
    }

    async fn clear(
        &self,
        run_id: i64,
        record_id: i64,
        attempt: i64,
    ) -> Result<(), GateUnavailable> {
        self.idem
            .release_by(run_id, record_id, attempt)
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
            .map(idem_state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_second_holds_more_than_the_quota() {
        for q in [2.0, 5.0, 10.0, 80.0, 200.0, 1000.0, 100_000.0] {
            let l = limit_for("k", q);
            // The limiter's bound for a one-second window: ⌈rate⌉ + b − 1, one to spare
            // from 10/s on.
            let bound = l.per_second.ceil() + f64::from(l.burst) - 1.0;
            assert!(bound <= q - 1.0 || (q < 10.0 && bound <= q), "{q}: {l:?}");
            assert!(l.per_second >= 0.98 * q || q < 100.0, "{q}: {l:?}");
        }
        assert_eq!(limit_for("k", 200.0), Limit::new("k", 197.0, 3));
        assert_eq!(limit_for("k", 100_000.0), Limit::new("k", 99_000.0, 1000));
        assert_eq!(limit_for("k", 1.0), Limit::new("k", 1.0, 1));
    }

    #[tokio::test]
    async fn a_coalescer_answers_each_request_of_a_batch_in_order() {
        let c = Coalescer::spawn(|xs: Vec<u32>| async move {
            Ok::<_, GateUnavailable>(xs.iter().map(|x| x * 10).collect())
        });
        let answers = futures_join_all((0..300u32).map(|i| {
            let c = c.clone();
            async move { c.call(i).await.unwrap() }
        }))
        .await;
        assert_eq!(answers, (0..300u32).map(|i| i * 10).collect::<Vec<_>>());
        let failing = Coalescer::spawn(|_: Vec<u32>| async move {
            Err::<Vec<u32>, _>(GateUnavailable("down".into()))
        });
        assert_eq!(failing.call(1).await.unwrap_err().0, "down");
    }

    async fn futures_join_all<F: Future + Send + 'static>(
        fs: impl Iterator<Item = F>,
    ) -> Vec<F::Output>
    where
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = fs.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
