//! The executor's decision (design §4–§5), step by step: every key state, every answer of
//! Huggy, a Flow and a repeatable chat action, with and without attempts left.

use std::time::Duration;

use tarefas_core::decision::{
    decide, surely_not_made, Answer, KeyAction, KeyState, Outcome, Step, DEFAULT_RATE_LIMIT_PAUSE,
};

const KEYS: [KeyState; 5] = [
    KeyState::Fresh,
    KeyState::Inflight,
    KeyState::Abandoned,
    KeyState::Done,
    KeyState::Unavailable,
];

fn answers() -> Vec<Answer> {
    vec![
        Answer::Ok,
        Answer::NotRun("in chat".into()),
        Answer::RateLimited(Some(Duration::from_secs(2))),
        Answer::RateLimited(None),
        Answer::BadToken(401),
        Answer::Permanent(404, "not found".into()),
        Answer::Retryable("503".into()),
        Answer::Ambiguous("timeout".into()),
        Answer::Undecodable("eof".into()),
    ]
}

/// The outcome's kind, for the table (reasons are checked apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Proceed,
    Retry,
    Done,
    Skipped,
    Failed,
    Unknown,
    Release,
    PauseAccount,
    PauseRun,
    Leave,
}

fn kind(o: &Outcome) -> Kind {
    match o {
        Outcome::Proceed => Kind::Proceed,
        Outcome::Retry => Kind::Retry,
        Outcome::Done(_) => Kind::Done,
        Outcome::Skipped(_) => Kind::Skipped,
        Outcome::Failed(_) => Kind::Failed,
        Outcome::Unknown(_) => Kind::Unknown,
        Outcome::Release(_) => Kind::Release,
        Outcome::PauseAccount(_) => Kind::PauseAccount,
        Outcome::PauseRun(_) => Kind::PauseRun,
        Outcome::Leave => Kind::Leave,
    }
}

/// The answer's name in the table.
fn name(a: &Answer) -> &'static str {
    match a {
        Answer::Ok => "ok",
        Answer::NotRun(_) => "not run",
        Answer::RateLimited(_) => "429",
        Answer::BadToken(_) => "bad token",
        Answer::Permanent(..) => "permanent",
        Answer::Retryable(_) => "retryable",
        Answer::Ambiguous(_) => "ambiguous",
        Answer::Undecodable(_) => "undecodable",
    }
}

use KeyAction::{Clear, Keep, MarkDone, TakeOver};
use Kind::*;

/// `(step, answer or key, repeatable (None: either), attempts left (None: any), outcome,
/// key)`: the first matching row is the expected decision.
type Row = (
    &'static str,
    &'static str,
    Option<bool>,
    Option<bool>,
    Kind,
    KeyAction,
);

const TABLE: &[Row] = &[
    // Begin: the key as the token's step found it.
    ("begin", "fresh", None, None, Proceed, Keep),
    ("begin", "done", None, None, Done, Keep),
    ("begin", "inflight", Some(true), None, Proceed, Keep),
    ("begin", "inflight", Some(false), None, Unknown, Keep),
    // Held by an attempt that recorded it never called: taken over, then called.
    ("begin", "abandoned", None, None, Proceed, TakeOver),
    ("begin", "unavailable", None, None, Release, Keep),
    // Read of the chat (no key yet): anything but a 2xx keeps the record untouched.
    ("read", "ok", None, None, Proceed, Keep),
    ("read", "not run", None, None, Proceed, Keep),
    ("read", "retryable", None, Some(true), Retry, Keep),
    ("read", "retryable", None, Some(false), Release, Clear),
    ("read", "429", None, None, PauseAccount, Clear),
    ("read", "bad token", None, None, PauseRun, Clear),
    ("read", "permanent", None, None, Failed, Clear),
    ("read", "ambiguous", None, None, Release, Clear),
    ("read", "undecodable", None, None, Release, Clear),
    // The call.
    ("call", "ok", None, None, Done, MarkDone),
    ("call", "not run", None, None, Skipped, MarkDone),
    ("call", "undecodable", None, None, Done, MarkDone),
    ("call", "ambiguous", Some(false), None, Unknown, Keep),
    ("call", "ambiguous", Some(true), None, Release, Clear),
    ("call", "retryable", None, Some(true), Retry, Keep),
    ("call", "retryable", None, Some(false), Release, Clear),
    ("call", "429", None, None, PauseAccount, Clear),
    ("call", "bad token", None, None, PauseRun, Clear),
    ("call", "permanent", None, None, Failed, Clear),
    // Stuck in `sending`: its worker stopped; only the key is known.
    ("stuck", "done", None, None, Done, Keep),
    ("stuck", "fresh", None, None, Release, Keep),
    ("stuck", "abandoned", None, None, Release, Keep),
    ("stuck", "inflight", Some(true), None, Release, Keep),
    ("stuck", "inflight", Some(false), None, Unknown, Keep),
    ("stuck", "unavailable", None, None, Leave, Keep),
];

fn key_name(k: KeyState) -> &'static str {
    match k {
        KeyState::Fresh => "fresh",
        KeyState::Inflight => "inflight",
        KeyState::Abandoned => "abandoned",
        KeyState::Done => "done",
        KeyState::Unavailable => "unavailable",
    }
}

/// Every step the executor can be at, with its names in the table.
fn steps(answers: &[Answer]) -> Vec<(&'static str, &'static str, Step<'_>)> {
    let mut out = Vec::new();
    for k in KEYS {
        out.push(("begin", key_name(k), Step::Begin(k)));
        out.push(("stuck", key_name(k), Step::Stuck(k)));
    }
    for a in answers {
        out.push(("read", name(a), Step::Read(a)));
        out.push(("call", name(a), Step::Call(a)));
    }
    out
}

#[test]
fn every_combination_follows_the_table() {
    let answers = answers();
    let mut used = vec![false; TABLE.len()];
    let mut checked = 0;
    for (step, what, s) in steps(&answers) {
        for repeatable in [false, true] {
            for attempts_left in [0, 1, 3] {
                let got = decide(s, repeatable, attempts_left);
                let (i, row) = TABLE
                    .iter()
                    .enumerate()
                    .find(|(_, r)| {
                        r.0 == step
                            && r.1 == what
                            && r.2.is_none_or(|x| x == repeatable)
                            && r.3.is_none_or(|x| x == (attempts_left > 0))
                    })
                    .unwrap_or_else(|| panic!("no row for {step} {what}"));
                used[i] = true;
                assert_eq!(
                    (kind(&got.outcome), got.key),
                    (row.4, row.5),
                    "{step} {what}, repeatable {repeatable}, {attempts_left} attempts left: {got:?}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, (2 * KEYS.len() + 2 * answers.len()) * 2 * 3);
    for (row, used) in TABLE.iter().zip(used) {
        assert!(used, "row {row:?} matches nothing");
    }
}

/// A call that happened is never handed back nor made again; a Flow whose call may have
/// happened is never resent; a key is marked done only after a call that happened.
#[test]
fn a_call_is_never_made_twice() {
    let answers = answers();
    for (step, _, s) in steps(&answers) {
        for repeatable in [false, true] {
            for attempts_left in [0, 2] {
                let d = decide(s, repeatable, attempts_left);
                let happened = matches!(
                    s,
                    Step::Call(Answer::Ok | Answer::NotRun(_) | Answer::Undecodable(_))
                );
                if happened {
                    assert_eq!(d.key, KeyAction::MarkDone, "{s:?}");
                    assert!(matches!(d.outcome, Outcome::Done(_) | Outcome::Skipped(_)));
                } else {
                    assert_ne!(d.key, KeyAction::MarkDone, "{s:?}");
                }
                let maybe = matches!(
                    s,
                    Step::Call(Answer::Ambiguous(_))
                        | Step::Begin(KeyState::Inflight)
                        | Step::Stuck(KeyState::Inflight)
                );
                if maybe && !repeatable {
                    assert!(
                        matches!(d.outcome, Outcome::Unknown(_)),
                        "{step}: {s:?} → {d:?}"
                    );
                    assert_eq!(d.key, KeyAction::Keep, "the key stays: never resent");
                }
            }
        }
    }
}

/// A key is taken over only from an attempt known never to have called, and only at the
/// step that is about to call; an attempt records that it never called only after an answer
/// that proves it.
#[test]
fn a_key_is_taken_over_only_from_an_attempt_that_never_called() {
    let answers = answers();
    for (_, _, s) in steps(&answers) {
        for repeatable in [false, true] {
            for attempts_left in [0, 2] {
                let d = decide(s, repeatable, attempts_left);
                if d.key == KeyAction::TakeOver {
                    assert_eq!(s, Step::Begin(KeyState::Abandoned), "{d:?}");
                    assert_eq!(d.outcome, Outcome::Proceed);
                }
            }
        }
    }
    let proven: Vec<&str> = answers
        .iter()
        .filter(|a| surely_not_made(a))
        .map(name)
        .collect();
    assert_eq!(
        proven,
        ["429", "429", "bad token", "permanent", "retryable"]
    );
    // Every answer that proves no call is one whose decision never marks the key done.
    for a in answers.iter().filter(|a| surely_not_made(a)) {
        for repeatable in [false, true] {
            let d = decide(Step::Call(a), repeatable, 0);
            assert_ne!(d.key, KeyAction::MarkDone, "{a:?}");
            assert!(!matches!(d.outcome, Outcome::Unknown(_)), "{a:?}");
        }
    }
}

#[test]
fn reasons_and_pauses() {
    let d = decide(Step::Call(&Answer::RateLimited(None)), false, 0);
    assert_eq!(d.outcome, Outcome::PauseAccount(DEFAULT_RATE_LIMIT_PAUSE));
    let d = decide(
        Step::Read(&Answer::RateLimited(Some(Duration::from_secs(7)))),
        false,
        2,
    );
    assert_eq!(
        d.outcome,
        Outcome::PauseAccount(Duration::from_secs(7)),
        "a 429 is not retried in place: the account waits"
    );
    assert_eq!(
        decide(
            Step::Call(&Answer::Permanent(422, "bad phone".into())),
            false,
            0
        )
        .outcome,
        Outcome::Failed("Huggy answered 422: bad phone".into())
    );
    assert_eq!(
        decide(Step::Call(&Answer::NotRun("in chat".into())), false, 0).outcome,
        Outcome::Skipped("in chat".into())
    );
    assert_eq!(
        decide(Step::Call(&Answer::Ok), false, 0).outcome,
        Outcome::Done(None)
    );
    assert!(matches!(
        decide(Step::Call(&Answer::Undecodable("eof".into())), false, 0).outcome,
        Outcome::Done(Some(r)) if r.contains("eof")
    ));
    assert!(matches!(
        decide(Step::Call(&Answer::BadToken(403)), true, 0).outcome,
        Outcome::PauseRun(r) if r.contains("403")
    ));
    assert!(matches!(
        decide(Step::Call(&Answer::Ambiguous("timeout".into())), false, 0).outcome,
        Outcome::Unknown(r) if r.contains("timeout") && r.contains("not resent")
    ));
}
