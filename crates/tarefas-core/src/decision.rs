//! The executor's decision (design §4–§5): from what one step of an item found — the
//! idempotency key's state, or Huggy's answer — and whether the action is safe to repeat,
//! how the item goes on. Pure: the worker maps Huggy's errors and Redis' answers onto
//! [`Answer`] and [`KeyState`], then carries out the [`Decision`].

use std::time::Duration;

/// How long an account is paused after a 429 that did not say how long.
pub const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(5);

/// The item's idempotency key, as a step found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// No earlier attempt: this one set it `inflight`.
    Fresh,
    /// An earlier attempt set it and never finished: its call may have happened.
    Inflight,
    /// An earlier attempt set it, and that attempt is known never to have called Huggy:
    /// it recorded so in Postgres when it handed the item back (the answer that told it
    /// the key was set never reached it, or its call surely did not happen and the key
    /// could not be cleared). Its key may be taken over.
    Abandoned,
    /// An earlier attempt's call succeeded.
    Done,
    /// The key store (Redis) could not be read.
    Unavailable,
}

/// Huggy's answer to one call, after the client classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: the call happened.
    Ok,
    /// 2xx, but Huggy did not run the Flow (its policy flags); its reason.
    NotRun(String),
    /// 429: the call did not happen; how long Huggy asked to wait, when it said.
    RateLimited(Option<Duration>),
    /// 401/403: the account's token is bad.
    BadToken(u16),
    /// Huggy refused this record for good: the status (0: the request could not be built)
    /// and its reason.
    Permanent(u16, String),
    /// 5xx or a connection that failed before sending: the call did not happen.
    Retryable(String),
    /// The request may have reached Huggy but no answer came back.
    Ambiguous(String),
    /// A 2xx whose body could not be read: the call happened.
    Undecodable(String),
}

/// The step of an item a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// The token and the key were just taken (the run still accepts calls): the key as it
    /// was found. Decides whether to call.
    Begin(KeyState),
    /// Huggy answered the read of the chat that a Flow on Chats makes before its policy.
    /// No key is set yet.
    Read(&'a Answer),
    /// Huggy answered the item's call.
    Call(&'a Answer),
    /// The item's worker stopped mid-item (it stayed `sending`): the key as it was left.
    Stuck(KeyState),
}

/// How the item goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Go on with the next step (make the call; after a read, apply the Flow policy).
    Proceed,
    /// Make the same call again after a backoff (attempts are left).
    Retry,
    /// Settled `done`, with a note when it was not simply accepted.
    Done(Option<String>),
    /// Settled `skipped`: the reason.
    Skipped(String),
    /// Settled `failed`: the reason.
    Failed(String),
    /// Settled `unknown` (never resent): the reason.
    Unknown(String),
    /// Handed back to `pending`: the call surely did not happen, or is safe to repeat.
    Release(String),
    /// Handed back, and the account's rate-limit key paused for every worker for this long.
    PauseAccount(Duration),
    /// Handed back, and the run paused until an operator fixes the account: the reason.
    PauseRun(String),
    /// Left as it is (`sending`): a later sweep settles it.
    Leave,
}

/// What becomes of the idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Left as it is.
    Keep,
    /// Marked `done`: the call happened, never make it again.
    MarkDone,
    /// Removed: the call did not happen, a later attempt may make it.
    Clear,
    /// Taken over from the earlier attempt that holds it (an abandoned key): it becomes
    /// this attempt's `inflight` mark, only if it still is the abandoned one's.
    TakeOver,
}

/// An [`Outcome`] and what to do with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// How the item goes on.
    pub outcome: Outcome,
    /// What becomes of its idempotency key.
    pub key: KeyAction,
}

fn keep(outcome: Outcome) -> Decision {
    Decision {
        outcome,
        key: KeyAction::Keep,
    }
}

fn clear(outcome: Outcome) -> Decision {
    Decision {
        outcome,
        key: KeyAction::Clear,
    }
}

fn mark_done(outcome: Outcome) -> Decision {
    Decision {
        outcome,
        key: KeyAction::MarkDone,
    }
}

/// The executor's decision for one step of an item. `repeatable`: the action is safe to
/// send twice (a chat action that is idempotent; never a Flow). `attempts_left`: how many
/// more times a retryable call may be made before the item is handed back.
///
/// The rules: a call that happened (2xx, even unreadable) is `done` and its key marked; a
/// call that surely did not happen is handed back (or failed, when Huggy refused the record
/// for good) and its key cleared; a call that may have happened is `unknown` and never
/// resent — unless the action is safe to repeat, when it is handed back.
pub fn decide(step: Step<'_>, repeatable: bool, attempts_left: u32) -> Decision {
    match step {
        Step::Begin(KeyState::Fresh) => keep(Outcome::Proceed),
        Step::Begin(KeyState::Done) => {
            keep(Outcome::Done(Some("already sent (idempotency key)".into())))
        }
        Step::Begin(KeyState::Inflight) if repeatable => keep(Outcome::Proceed),
        // The holder never called: the call is this attempt's to make, once the key is.
        Step::Begin(KeyState::Abandoned) => Decision {
            outcome: Outcome::Proceed,
            key: KeyAction::TakeOver,
        },
        Step::Begin(KeyState::Inflight) => keep(Outcome::Unknown(
            "an earlier attempt may have sent it; not resent".into(),
        )),
        Step::Begin(KeyState::Unavailable) => keep(Outcome::Release(
            "the idempotency keys are unavailable".into(),
        )),
        Step::Read(answer) => match answer {
            Answer::Ok | Answer::NotRun(_) => keep(Outcome::Proceed),
            other => not_done(other, attempts_left),
        },
        Step::Call(answer) => match answer {
            Answer::Ok => mark_done(Outcome::Done(None)),
            Answer::NotRun(reason) => mark_done(Outcome::Skipped(reason.clone())),
            Answer::Undecodable(reason) => {
                mark_done(Outcome::Done(Some(format!("answer unreadable: {reason}"))))
            }
            Answer::Ambiguous(reason) if !repeatable => keep(Outcome::Unknown(format!(
                "outcome unknown, not resent: {reason}"
            ))),
            other => not_done(other, attempts_left),
        },
        Step::Stuck(KeyState::Done) => keep(Outcome::Done(Some(
            "settled from the idempotency key".into(),
        ))),
        // No key: the call never began (the worker stopped before it), so sending it now
        // cannot make a duplicate.
        Step::Stuck(KeyState::Fresh) => keep(Outcome::Release(
            "the worker stopped before the call".into(),
        )),
        // Its holder handed the item back uncalled (and then this attempt stopped before
        // taking the key over, or never got it): no call was made under that key.
        Step::Stuck(KeyState::Abandoned) => keep(Outcome::Release(
            "the attempt holding the key never called".into(),
        )),
        Step::Stuck(KeyState::Inflight) if repeatable => keep(Outcome::Release(
            "the worker stopped mid-call; safe to repeat".into(),
        )),
        Step::Stuck(KeyState::Inflight) => keep(Outcome::Unknown(
            "the worker stopped mid-call; outcome unknown, not resent".into(),
        )),
        Step::Stuck(KeyState::Unavailable) => keep(Outcome::Leave),
    }
}

/// Whether Huggy's answer proves that the call did not happen (so the attempt may record
/// that it never called, and a later attempt may take its key over): a refusal before the
/// action (429, 401/403, 4xx) or a 5xx. A 2xx, even unreadable, and an answer that never
/// came (the request may have arrived) do not.
pub fn surely_not_made(answer: &Answer) -> bool {
    match answer {
        Answer::RateLimited(_)
        | Answer::BadToken(_)
        | Answer::Permanent(..)
        | Answer::Retryable(_) => true,
        Answer::Ok | Answer::NotRun(_) | Answer::Ambiguous(_) | Answer::Undecodable(_) => false,
    }
}

/// A read, or a call, that did not happen, or that may be made again.
fn not_done(answer: &Answer, attempts_left: u32) -> Decision {
    match answer {
        Answer::Retryable(_) if attempts_left > 0 => keep(Outcome::Retry),
        Answer::Permanent(status, reason) => clear(Outcome::Failed(format!(
            "Huggy answered {status}: {reason}"
        ))),
        Answer::BadToken(status) => clear(Outcome::PauseRun(format!(
            "Huggy rejected the account's token ({status})"
        ))),
        Answer::RateLimited(after) => clear(Outcome::PauseAccount(
            after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE),
        )),
        Answer::Retryable(reason) => clear(Outcome::Release(format!(
            "Huggy call failed, safe to retry: {reason}"
        ))),
        Answer::Ambiguous(reason) => clear(Outcome::Release(format!(
            "Huggy call outcome unknown: {reason}"
        ))),
        Answer::Undecodable(reason) => clear(Outcome::Release(format!(
            "could not decode Huggy's answer: {reason}"
        ))),
        // Not reached (both are answered above); a 2xx read needs nothing more.
        Answer::Ok | Answer::NotRun(_) => keep(Outcome::Proceed),
    }
}
