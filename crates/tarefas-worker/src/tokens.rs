//! A worker's waiting room for rate-limit tokens.
//!
//! Every call of a worker that waits for a token waits here, in line behind the calls
//! that asked before it for the same limits. One task hands the tokens out: it asks the
//! shared limiter ([`Limiter::take_marking`]) for as many tokens as there are calls in
//! line, gives the grants to the first ones in order, and when the limiter says "not
//! yet", sleeps until the next token is due and asks again, once for the whole line.
//!
//! Without it, each waiting call asked the limiter by itself and slept for the wait it
//! was told: at a limit of 200/s, hundreds of calls woke every few milliseconds to be
//! refused again (about 3 s of machine CPU per 1,000 calls made, two thirds of it the
//! workers', the rest Redis'), and the CPU they burned widened the spread between a
//! token and its call's arrival at Huggy, which the limit's precision must absorb.
//!
//! Under load (a high limit, hundreds of calls in flight) the line works like the
//! coalescer it replaces: the calls that arrive while one script run is on its way are
//! asked for together in the next.

use std::collections::VecDeque;
use std::time::Duration;

use tarefas_limits::{Idempotency, Limit, Limiter, MarkResult};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::gate::GateUnavailable;
use crate::redis_gate::{unavailable, IDEM_TTL};

/// The most calls one script run is asked for.
const MAX_TAKE: usize = 512;

/// What a call in line is told: `Some` once it has its token (with its idempotency key's
/// mark when it asked for one), `None` when no token came before its deadline (nothing
/// consumed), or the limiter is unavailable (fail closed).
pub(crate) type TokenAnswer = Result<Option<Option<MarkResult>>, GateUnavailable>;

/// One call waiting for a token.
struct Waiting {
    limits: Vec<Limit>,
    /// The record (run, record id) whose idempotency key the token marks, if any, and the
    /// attempt (claim) the mark names.
    record: Option<(i64, i64, i64)>,
    deadline: Instant,
    reply: oneshot::Sender<TokenAnswer>,
}

/// The calls in line for the same limits (and alike in marking a key or not).
struct Line {
    limits: Vec<Limit>,
    marking: bool,
    /// When to ask the limiter next: the next token's time after a refusal, a backoff
    /// after a failure.
    due: Instant,
    failures: u32,
    last_error: Option<GateUnavailable>,
    waiting: VecDeque<Waiting>,
}

impl Line {
    fn holds(&self, w: &Waiting) -> bool {
        self.marking == w.record.is_some() && self.limits == w.limits
    }

    /// When the line needs the task next: its next ask, or its first deadline.
    fn next_wake(&self) -> Option<Instant> {
        let first_deadline = self.waiting.iter().map(|w| w.deadline).min()?;
        Some(self.due.min(first_deadline))
    }

    /// Answers the calls whose deadline has passed (no token: `None`, or the limiter's
    /// error if its last ask failed) and forgets those whose caller stopped waiting.
    fn expire(&mut self, now: Instant) {
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for w in self.waiting.drain(..) {
            if w.reply.is_closed() {
                continue;
            }
            if w.deadline > now {
                kept.push_back(w);
                continue;
            }
            let answer = match &self.last_error {
                Some(e) => Err(e.clone()),
                None => Ok(None),
            };
            let _ = w.reply.send(answer);
        }
        self.waiting = kept;
    }

    /// Asks the limiter once for the calls at the head of the line and answers those
    /// granted.
    async fn ask(&mut self, limiter: &Limiter, idem: &Idempotency) {
        // No key admits more than its burst at once: asking for more only sends keys.
        let burst = self
            .limits
            .iter()
            .map(|l| l.burst as usize)
            .min()
            .unwrap_or(1);
        let n = self.waiting.len().min(MAX_TAKE).min(burst.max(1));
        let taken = if self.marking {
            let keys: Vec<(String, i64)> = self
                .waiting
                .iter()
                .take(n)
                .filter_map(|w| {
                    w.record
                        .map(|(run, rec, attempt)| (idem.key(run, rec), attempt))
                })
                .collect();
            limiter
                .take_marking_by(&self.limits, &keys, IDEM_TTL)
                .await
                .map(|(take, marks)| (take, marks.into_iter().map(Some).collect()))
        } else {
            limiter
                .take(&self.limits, n as u32)
                .await
                .map(|take| (take, vec![None; take.granted as usize]))
        };
        match taken {
            Ok((take, marks)) => {
                self.failures = 0;
                self.last_error = None;
                for mark in marks {
                    if let Some(w) = self.waiting.pop_front() {
                        let _ = w.reply.send(Ok(Some(mark)));
                    }
                }
                // Refused or not all granted: the next token's time; all granted and more
                // in line: at once.
                let wait = if (take.granted as usize) < n {
                    take.wait.max(Duration::from_micros(100))
                } else {
                    Duration::ZERO
                };
                self.due = Instant::now() + wait;
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let pause = tarefas_limits::backoff(self.failures);
                if self.failures == 1 {
                    tracing::warn!(
                        error.message = %e,
                        "the rate limiter is unavailable; calls wait until it returns"
                    );
                }
                self.last_error = Some(unavailable(e));
                self.due = Instant::now() + pause;
            }
        }
    }
}

/// The handle to a worker's waiting room. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Tokens {
    tx: mpsc::UnboundedSender<Waiting>,
}

impl Tokens {
    /// Starts the task that hands the tokens out (it ends when every handle is dropped).
    /// Must be called within a Tokio runtime.
    pub(crate) fn spawn(limiter: Limiter, idem: Idempotency) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiting>();
        tokio::spawn(async move {
            let mut lines: Vec<Line> = Vec::new();
            let mut arrived = Vec::with_capacity(MAX_TAKE);
            loop {
                let wake = lines.iter().filter_map(Line::next_wake).min();
                let open = match wake {
                    None => rx.recv_many(&mut arrived, MAX_TAKE).await > 0,
                    Some(at) => tokio::select! {
                        n = rx.recv_many(&mut arrived, MAX_TAKE) => n > 0,
                        () = tokio::time::sleep_until(at) => true,
                    },
                };
                if !open {
                    break;
                }
                for w in arrived.drain(..) {
                    match lines.iter_mut().find(|l| l.holds(&w)) {
                        Some(line) => line.waiting.push_back(w),
                        None => lines.push(Line {
                            limits: w.limits.clone(),
                            marking: w.record.is_some(),
                            due: Instant::now(),
                            failures: 0,
                            last_error: None,
                            waiting: VecDeque::from([w]),
                        }),
                    }
                }
                let now = Instant::now();
                for line in &mut lines {
                    line.expire(now);
                    if !line.waiting.is_empty() && line.due <= now {
                        line.ask(&limiter, &idem).await;
                    }
                }
                lines.retain(|l| !l.waiting.is_empty());
            }
        });
        Tokens { tx }
    }

    /// Waits in line for a token on `limits` until `deadline`, marking the idempotency
    /// key of `record` with it.
    pub(crate) async fn wait(
        &self,
        limits: Vec<Limit>,
        record: Option<(i64, i64, i64)>,
        deadline: Instant,
    ) -> TokenAnswer {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Waiting {
                limits,
                record,
                deadline,
                reply,
            })
            .map_err(|_| GateUnavailable("the gate has stopped".into()))?;
        answer
            .await
            .map_err(|_| GateUnavailable("the gate dropped a request".into()))?
    }
}
