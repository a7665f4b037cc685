//! Integration tests of `tarefas-limits` against the real Redis at
//! `TAREFAS_REDIS_URL` (default `redis://127.0.0.1:6379`).
//!
//! Other tests share that Redis: every test works under its own key prefix and
//! deletes its keys when it ends (and every key it writes expires anyway).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Commands, ConnectionAddr};
use tarefas_limits::{
    connect, connection_manager_config, redis_url_from_env, Acquire, IdemState, Idempotency, Limit,
    LimitError, Limiter, MarkResult, Take,
};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// A unique key prefix for one test; deletes every key under it when dropped.
struct Scope {
    url: String,
    prefix: String,
}

impl Scope {
    fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Scope {
            url: redis_url_from_env(),
            prefix: format!("tarefas-limits-test:{test}:{}:{nanos}", std::process::id()),
        }
    }

    /// A connection of its own, as another worker would have.
    fn conn(&self) -> ConnectionManager {
        connect(&self.url).expect("TAREFAS_REDIS_URL is a valid URL")
    }

    fn limiter(&self) -> Limiter {
        Limiter::new(self.conn(), &self.prefix)
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::new(self.conn(), &self.prefix)
    }

    /// A plain synchronous connection, to look at the keys directly.
    fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .expect("redis is running (make services)")
    }

    /// Every key under the prefix (SCAN with a large COUNT: the Redis is shared and big).
    fn keys(&self) -> Vec<String> {
        let mut raw = self.raw();
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(10_000)
                .query(&mut raw)
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    fn exists(&self, key: &str) -> bool {
        self.raw().exists(key).unwrap()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let keys = self.keys();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = self.raw().del(keys);
        }
    }
}

fn wait_of(acquire: Acquire) -> Duration {
    match acquire {
        Acquire::Wait(wait) => wait,
        Acquire::Granted => panic!("expected a refusal, got a grant"),
    }
}

/// The largest number of admissions in any half-open window `[t, t + window)`.
fn max_in_window(sorted: &[Duration], window: Duration) -> usize {
    let mut max = 0;
    let mut end = 0;
    for (start, t) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < *t + window {
            end += 1;
        }
        max = max.max(end - start);
    }
    max
}

#[tokio::test]
async fn admits_exactly_burst_calls_at_once_then_spaces_them_at_the_rate() {
    let scope = Scope::new("burst");
    let limiter = scope.limiter();
    let limit = [Limit::new("account:1", 20.0, 5)]; // T = 50 ms
    let interval = limit[0].interval().unwrap();

    let mut times = Vec::new();
    for call in 0..5 {
        let decision = limiter.decide(&limit).await.unwrap();
        assert_eq!(
            decision.acquire,
            Acquire::Granted,
            "call {call} of the burst"
        );
        times.push(decision.server_time);
    }
    let refused = limiter.decide(&limit).await.unwrap();
    let wait = wait_of(refused.acquire);
    // The sixth call may come one interval after the first.
    assert_eq!(wait, times[0] + interval - refused.server_time);
    assert!(wait <= interval, "{wait:?}");

    let deadline = Instant::now() + Duration::from_secs(3);
    for _ in 0..10 {
        times.push(limiter.acquire(&limit, deadline).await.unwrap().server_time);
    }
    // The GCRA law from a full burst: the n-th admission (0-based) is never before
    // t0 + (n - b + 1)·T, and a waiting caller gets it soon after.
    for (n, t) in times.iter().enumerate().skip(5) {
        let earliest = times[0] + interval * (n as u32 - 4);
        assert!(*t >= earliest, "admission {n} at {t:?} before {earliest:?}");
        assert!(
            *t < earliest + 100 * MS,
            "admission {n} late by {:?}",
            *t - earliest
        );
    }
}

#[tokio::test]
async fn take_admits_many_calls_at_once_up_to_the_burst_and_keeps_the_law() {
    let scope = Scope::new("take");
    let limiter = scope.limiter();
    let limit = [Limit::new("account:1", 20.0, 5)]; // T = 50 ms
    let interval = limit[0].interval().unwrap();

    // Asking for 8 from a full burst of 5 gets 5, and the time of the next one.
    let first: Take = limiter.take(&limit, 8).await.unwrap();
    assert_eq!(first.granted, 5);
    assert!(
        first.wait > Duration::ZERO && first.wait <= interval,
        "{first:?}"
    );
    // Nothing is left now: a refusal says how long, and consumes nothing.
    let refused = limiter.take(&limit, 3).await.unwrap();
    assert_eq!(refused.granted, 0);
    assert_eq!(
        refused.wait,
        first.server_time + interval - refused.server_time
    );
    // A small ask within the burst is granted whole.
    tokio::time::sleep(interval * 2 + 5 * MS).await;
    let two = limiter.take(&limit, 2).await.unwrap();
    assert_eq!(two.granted, 2, "{two:?}");
    assert_eq!(
        limiter.take(&limit, 0).await.unwrap_err().to_string(),
        LimitError::Invalid("take: asked for 0 calls".into()).to_string()
    );

    // The law of single calls holds for grants taken in groups: 6 takers asking for 4
    // at a time for 1.5 s at 20/s, burst 5, never see more than 20 + 5 - 1 in a second.
    let mut times = Vec::new();
    let end = Instant::now() + Duration::from_millis(1500);
    let fresh = [Limit::new("account:2", 20.0, 5)];
    while Instant::now() < end {
        let t = limiter.take(&fresh, 4).await.unwrap();
        times.extend(std::iter::repeat_n(t.server_time, t.granted as usize));
        if t.granted < 4 {
            tokio::time::sleep(t.wait.max(MS)).await;
        }
    }
    times.sort();
    let max = max_in_window(&times, Duration::from_secs(1));
    assert!(max <= 24, "{max} in one second");
    assert!(times.len() >= 30, "{} admitted in 1.5 s", times.len());
}

#[tokio::test]
async fn a_take_marks_the_idempotency_keys_of_the_admitted_calls_only() {
    let scope = Scope::new("take-marking");
    let limiter = scope.limiter();
    let idem = scope.idempotency();
    let hour = Duration::from_secs(3600);
    let limit = [Limit::new("account:1", 20.0, 3)]; // T = 50 ms, burst 3
    idem.mark_inflight("run-1", 2, hour).await.unwrap();
    idem.mark_done("run-1", 3, hour).await.unwrap();
    let keys: Vec<String> = (1..=5).map(|r| idem.key("run-1", r)).collect();

    // Five asked, three admitted (the burst): their keys say what they held, in order;
    // the two calls not admitted leave their keys alone.
    let (take, marks) = limiter.take_marking(&limit, &keys, hour).await.unwrap();
    assert_eq!(take.granted, 3);
    assert_eq!(
        marks,
        [
            MarkResult::Marked,
            MarkResult::Held(IdemState::Inflight),
            MarkResult::Held(IdemState::Done)
        ]
    );
    assert_eq!(
        idem.get("run-1", 1).await.unwrap(),
        Some(IdemState::Inflight)
    );
    assert_eq!(idem.get("run-1", 4).await.unwrap(), None);
    assert_eq!(idem.get("run-1", 5).await.unwrap(), None);
    let ttl: i64 = scope.raw().pttl(&keys[0]).unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{ttl}");

    // Refused: nothing is marked, nothing consumed.
    let (refused, marks) = limiter
        .take_marking(&limit, &keys[3..], hour)
        .await
        .unwrap();
    assert_eq!((refused.granted, marks.len()), (0, 0));
    assert_eq!(idem.get("run-1", 4).await.unwrap(), None);

    // Once a token is due, the next key in line is marked.
    tokio::time::sleep(refused.wait + MS).await;
    let (one, marks) = limiter
        .take_marking(&limit, &keys[3..], hour)
        .await
        .unwrap();
    assert_eq!((one.granted, marks), (1, vec![MarkResult::Marked]));
    assert_eq!(
        idem.get("run-1", 4).await.unwrap(),
        Some(IdemState::Inflight)
    );
    assert_eq!(idem.get("run-1", 5).await.unwrap(), None);

    assert!(matches!(
        limiter.take_marking(&limit, &[], hour).await,
        Err(LimitError::Invalid(_))
    ));
    assert!(matches!(
        limiter.take_marking(&limit, &keys, Duration::ZERO).await,
        Err(LimitError::Invalid(_))
    ));
}

#[tokio::test]
async fn many_idempotency_keys_are_marked_and_done_in_one_step() {
    let scope = Scope::new("idem-many");
    let idem = scope.idempotency();
    let hour = Duration::from_secs(3600);
    assert_eq!(
        idem.mark_inflight("run-1", 2, hour).await.unwrap(),
        MarkResult::Marked
    );
    idem.mark_done("run-1", 3, hour).await.unwrap();
    let marked = idem
        .mark_inflight_many(
            &[("run-1", 1), ("run-1", 2), ("run-1", 3), ("run-1", 1)],
            hour,
        )
        .await
        .unwrap();
    assert_eq!(
        marked,
        [
            MarkResult::Marked,
            MarkResult::Held(IdemState::Inflight),
            MarkResult::Held(IdemState::Done),
            MarkResult::Held(IdemState::Inflight),
        ]
    );
    idem.mark_done_many(&[("run-1", 1), ("run-1", 2)], hour)
        .await
        .unwrap();
    assert_eq!(
        idem.get_many("run-1", &[1, 2, 3, 4]).await.unwrap(),
        [
            Some(IdemState::Done),
            Some(IdemState::Done),
            Some(IdemState::Done),
            None
        ]
    );
    assert!(idem
        .mark_inflight_many::<&str, i64>(&[], hour)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        idem.mark_done_many(&[("run-1", 9)], Duration::ZERO).await,
        Err(LimitError::Invalid(_))
    ));
}

#[tokio::test]
async fn the_tighter_key_governs_and_a_refusal_consumes_nothing_elsewhere() {
    let scope = Scope::new("multikey");
    let limiter = scope.limiter();
    let account = Limit::new("account:1", 1.0, 3);
    let channel = Limit::new("channel:1:5511999990000", 1.0, 1);
    let both = [account.clone(), channel.clone()];

    assert_eq!(limiter.try_acquire(&both).await.unwrap(), Acquire::Granted);
    // The channel has no burst left: refused, the wait is the channel's.
    for order in [&both[..], &[channel.clone(), account.clone()][..]] {
        for _ in 0..5 {
            let wait = wait_of(limiter.try_acquire(order).await.unwrap());
            assert!(wait > 500 * MS && wait <= 1000 * MS, "{wait:?}");
        }
    }
    // Ten refusals consumed nothing on the account: two of its burst of three are left.
    assert_eq!(
        limiter
            .try_acquire(std::slice::from_ref(&account))
            .await
            .unwrap(),
        Acquire::Granted
    );
    assert_eq!(
        limiter
            .try_acquire(std::slice::from_ref(&account))
            .await
            .unwrap(),
        Acquire::Granted
    );
    let wait = wait_of(
        limiter
            .try_acquire(std::slice::from_ref(&account))
            .await
            .unwrap(),
    );
    assert!(wait > 500 * MS && wait <= 1000 * MS, "{wait:?}");

    // At a sustained pace the slower key sets it: 100/s with 20/s gives 20/s.
    let fast = Limit::new("account:2", 100.0, 1);
    let slow = Limit::new("channel:2:5511999990001", 20.0, 1);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut times = Vec::new();
    for _ in 0..6 {
        let grant = limiter
            .acquire(&[fast.clone(), slow.clone()], deadline)
            .await
            .unwrap();
        times.push(grant.server_time);
    }
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 50 * MS, "{:?}", pair[1] - pair[0]);
    }
    assert!(times[5] - times[0] < 5 * 50 * MS + 150 * MS);

    // A key given twice, or no key at all, is a mistake.
    assert!(matches!(
        limiter.try_acquire(&[account.clone(), account]).await,
        Err(LimitError::Invalid(_))
    ));
    assert!(matches!(
        limiter.try_acquire(&[]).await,
        Err(LimitError::Invalid(_))
    ));
}

/// 8 tasks (4 on each of two "workers") acquire at `per_second` for `run_for`;
/// returns every admission instant (Redis clock), sorted.
async fn hammer(scope: &Scope, limit: Limit, run_for: Duration) -> Vec<Duration> {
    let workers = [scope.limiter(), scope.limiter()];
    let times = Arc::new(Mutex::new(Vec::new()));
    let end = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let limiter = workers[task % 2].clone();
        let limits = [limit.clone()];
        let times = times.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match limiter.acquire(&limits, end).await {
                    Ok(grant) => times.lock().unwrap().push(grant.server_time),
                    Err(LimitError::Deadline { .. }) => break,
                    Err(e) => panic!("{e:?}"),
                }
                if Instant::now() >= end {
                    break;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut times = Arc::try_unwrap(times).unwrap().into_inner().unwrap();
    times.sort();
    times
}

/// Sustained rate over the run, leaving out the initial burst.
fn achieved_rate(times: &[Duration], burst: u32) -> f64 {
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    (times.len() - burst as usize) as f64 / span
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acquirers_keep_every_second_within_the_limit_and_reach_the_rate() {
    let scope = Scope::new("concurrent");
    let (rate, burst) = (200.0, 10);
    let times = hammer(
        &scope,
        Limit::new("account:1", rate, burst),
        Duration::from_secs(2),
    )
    .await;

    let max = max_in_window(&times, Duration::from_secs(1));
    let achieved = achieved_rate(&times, burst);
    eprintln!(
        "{rate}/s burst {burst}: {} admitted, max {max} in a 1 s window, {achieved:.1}/s",
        times.len()
    );
    // The guarantee: at most ⌈rate × W⌉ + burst − 1 in any window of W.
    let bound = 200 + burst as usize - 1;
    assert!(max <= bound, "{max} in one second, more than {bound}");
    assert!((achieved - rate).abs() / rate <= 0.02, "{achieved:.1}/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_burst_one_no_second_ever_sees_more_than_the_rate() {
    let scope = Scope::new("burst-one");
    let rate = 200.0;
    let times = hammer(
        &scope,
        Limit::new("account:1", rate, 1),
        Duration::from_secs(2),
    )
    .await;

    let max = max_in_window(&times, Duration::from_secs(1));
    let min_gap = times.windows(2).map(|p| p[1] - p[0]).min().unwrap();
    let achieved = achieved_rate(&times, 1);
    eprintln!(
        "200/s burst 1: {} admitted, max {max} in a 1 s window, closest {min_gap:?}, {achieved:.1}/s",
        times.len()
    );
    assert!(max <= 200, "{max} in one second");
    assert!(min_gap >= Duration::from_micros(5000), "{min_gap:?}");
    assert!(achieved <= rate);
    // Lateness of the waking workers is lost capacity with burst 1 (see `Limiter`).
    assert!(achieved >= 0.5 * rate, "{achieved:.1}/s");
}

#[tokio::test]
async fn a_pause_blocks_every_worker_and_is_never_shortened() {
    let scope = Scope::new("pause");
    let (a, b) = (scope.limiter(), scope.limiter());
    let account = Limit::new("account:1", 100.0, 10);
    let channel = Limit::new("channel:1:5511999990000", 100.0, 10);
    let both = [account.clone(), channel.clone()];

    assert_eq!(b.paused_for("account:1").await.unwrap(), None);
    assert_eq!(a.pause("account:1", 5000 * MS).await.unwrap(), 5000 * MS);

    // The other worker is refused with the pause left, and nothing is consumed.
    let wait = wait_of(b.try_acquire(&both).await.unwrap());
    assert!(wait > 4000 * MS && wait <= 5000 * MS, "{wait:?}");
    assert!(!scope.exists(&b.tat_key("account:1")));
    assert!(!scope.exists(&b.tat_key("channel:1:5511999990000")));
    // The channel alone is not paused.
    assert_eq!(
        b.try_acquire(std::slice::from_ref(&channel)).await.unwrap(),
        Acquire::Granted
    );

    // A shorter pause leaves the longer one alone; a longer one extends it.
    let left = b.pause("account:1", 50 * MS).await.unwrap();
    assert!(left > 4000 * MS && left <= 5000 * MS, "{left:?}");
    assert_eq!(b.pause("account:1", 6000 * MS).await.unwrap(), 6000 * MS);
    let wait = wait_of(a.try_acquire(std::slice::from_ref(&account)).await.unwrap());
    assert!(wait > 5000 * MS && wait <= 6000 * MS, "{wait:?}");
    let left = a.paused_for("account:1").await.unwrap().unwrap();
    assert!(left > 5000 * MS && left <= 6000 * MS, "{left:?}");

    // Past its deadline, acquire gives up at once and says when to come back.
    let started = Instant::now();
    let err = a
        .acquire(&both, Instant::now() + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(started.elapsed() < 500 * MS, "{:?}", started.elapsed());
    match err {
        LimitError::Deadline { retry_after } => assert!(retry_after > 4000 * MS),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_worker_waits_out_a_pause_then_goes_on() {
    let scope = Scope::new("pause-expiry");
    let (a, b) = (scope.limiter(), scope.limiter());
    let account = Limit::new("account:1", 100.0, 10);
    let channel = Limit::new("channel:1:5511999990000", 100.0, 10);
    let both = [account.clone(), channel.clone()];

    // A Redis-clock instant before the pause is set: no grant may come before it + 500 ms.
    let before = a.decide(std::slice::from_ref(&channel)).await.unwrap();
    a.pause("account:1", 500 * MS).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(3);
    let (ga, gb) = tokio::join!(a.acquire(&both, deadline), b.acquire(&both, deadline));
    for grant in [ga.unwrap(), gb.unwrap()] {
        let after_pause = grant.server_time - before.server_time;
        assert!(after_pause >= 499 * MS, "granted {after_pause:?} after");
        assert!(
            after_pause < 1500 * MS,
            "granted only {after_pause:?} after"
        );
        assert!(grant.attempts >= 2, "{grant:?}");
    }
    assert_eq!(a.paused_for("account:1").await.unwrap(), None);
}

#[tokio::test]
async fn idempotency_keys_are_set_once_and_expire() {
    let scope = Scope::new("idem");
    let idem = scope.idempotency();
    let other_worker = scope.idempotency();
    let hour = Duration::from_secs(3600);

    assert_eq!(idem.get("run-1", 7).await.unwrap(), None);
    assert_eq!(
        idem.mark_inflight("run-1", 7, hour).await.unwrap(),
        MarkResult::Marked
    );
    assert_eq!(
        other_worker.mark_inflight("run-1", 7, hour).await.unwrap(),
        MarkResult::Held(IdemState::Inflight)
    );
    assert_eq!(
        idem.get("run-1", 7).await.unwrap(),
        Some(IdemState::Inflight)
    );

    idem.mark_done("run-1", 7, hour).await.unwrap();
    assert_eq!(
        other_worker.get("run-1", 7).await.unwrap(),
        Some(IdemState::Done)
    );
    assert_eq!(
        other_worker.mark_inflight("run-1", 7, hour).await.unwrap(),
        MarkResult::Held(IdemState::Done)
    );
    // Done is never released; inflight is.
    assert!(!idem.release("run-1", 7).await.unwrap());
    assert_eq!(idem.get("run-1", 7).await.unwrap(), Some(IdemState::Done));
    assert_eq!(
        idem.mark_inflight("run-1", 8, hour).await.unwrap(),
        MarkResult::Marked
    );
    assert!(idem.release("run-1", 8).await.unwrap());
    assert_eq!(idem.get("run-1", 8).await.unwrap(), None);

    // The key layout and the TTL.
    let key = format!("{}:idem:run-1:7", scope.prefix);
    assert_eq!(idem.key("run-1", 7), key);
    let ttl: i64 = scope.raw().pttl(&key).unwrap();
    assert!(ttl > 3_590_000 && ttl <= 3_600_000, "{ttl}");

    assert_eq!(
        idem.mark_inflight("run-2", 1, 150 * MS).await.unwrap(),
        MarkResult::Marked
    );
    assert_eq!(
        idem.mark_inflight("run-2", 1, hour).await.unwrap(),
        MarkResult::Held(IdemState::Inflight)
    );
    tokio::time::sleep(250 * MS).await;
    assert_eq!(idem.get("run-2", 1).await.unwrap(), None);
    assert_eq!(
        idem.mark_inflight("run-2", 1, hour).await.unwrap(),
        MarkResult::Marked
    );

    assert!(matches!(
        idem.mark_inflight("run-2", 2, Duration::ZERO).await,
        Err(LimitError::Invalid(_))
    ));
    // A foreign value is reported, not guessed at.
    let _: () = scope.raw().set(idem.key("run-2", 3), "sent").unwrap();
    assert!(matches!(
        idem.get("run-2", 3).await,
        Err(LimitError::Protocol(_))
    ));
}

#[tokio::test]
async fn get_many_reads_a_whole_batch_in_order() {
    let scope = Scope::new("idem-many");
    let idem = scope.idempotency();
    let hour = Duration::from_secs(3600);
    let records: Vec<u64> = (0..1203).collect();
    for record in records.iter().filter(|r| *r % 3 == 1) {
        idem.mark_inflight("run-9", record, hour).await.unwrap();
    }
    for record in records.iter().filter(|r| *r % 3 == 2) {
        idem.mark_done("run-9", record, hour).await.unwrap();
    }

    let states = idem.get_many("run-9", &records).await.unwrap();
    assert_eq!(states.len(), records.len());
    for (record, state) in records.iter().zip(&states) {
        let expected = match record % 3 {
            0 => None,
            1 => Some(IdemState::Inflight),
            _ => Some(IdemState::Done),
        };
        assert_eq!(*state, expected, "record {record}");
    }
    assert!(idem.get_many::<u64>("run-9", &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn everything_fails_closed_when_redis_is_unreachable() {
    // Nothing listens on port 1.
    let conn = connect("redis://127.0.0.1:1").unwrap();
    let limiter = Limiter::new(conn.clone(), "tarefas-limits-test:closed");
    let idem = Idempotency::new(conn, "tarefas-limits-test:closed");
    let limits = [Limit::new("account:1", 100.0, 10)];

    let started = Instant::now();
    let err = limiter.try_acquire(&limits).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < 600 * MS, "took {:?}", started.elapsed());
    assert!(limiter
        .pause("account:1", MS)
        .await
        .unwrap_err()
        .is_unavailable());
    assert!(limiter
        .paused_for("account:1")
        .await
        .unwrap_err()
        .is_unavailable());
    let hour = Duration::from_secs(3600);
    assert!(idem
        .mark_inflight(1, 1, hour)
        .await
        .unwrap_err()
        .is_unavailable());
    assert!(idem
        .mark_done(1, 1, hour)
        .await
        .unwrap_err()
        .is_unavailable());
    assert!(idem.get(1, 1).await.unwrap_err().is_unavailable());
    assert!(idem
        .get_many(1, &[1, 2])
        .await
        .unwrap_err()
        .is_unavailable());
    assert!(idem.release(1, 1).await.unwrap_err().is_unavailable());
    assert!(limiter.take(&limits, 5).await.unwrap_err().is_unavailable());
    assert!(idem
        .mark_inflight_many(&[(1, 1), (1, 2)], hour)
        .await
        .unwrap_err()
        .is_unavailable());
    assert!(idem
        .mark_done_many(&[(1, 1)], hour)
        .await
        .unwrap_err()
        .is_unavailable());

    // acquire keeps trying until its deadline, and never grants.
    let started = Instant::now();
    let err = limiter
        .acquire(&limits, Instant::now() + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let took = started.elapsed();
    assert!(took >= 990 * MS && took < 1500 * MS, "took {took:?}");
}

#[tokio::test]
async fn a_redis_that_never_answers_is_unavailable_within_the_time_budget() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let limiter = Limiter::new(connect(&format!("redis://{addr}")).unwrap(), "unused");

    let started = Instant::now();
    let err = limiter
        .try_acquire(&[Limit::new("account:1", 1.0, 1)])
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < 1200 * MS,
        "took {:?}",
        started.elapsed()
    );
    silent.abort();
}

/// A TCP relay to Redis that can be cut and restored on the same port.
struct Relay {
    addr: SocketAddr,
    upstream: SocketAddr,
    acceptor: JoinHandle<()>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(addr: SocketAddr, upstream: SocketAddr) -> Relay {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(Mutex::new(Vec::new()));
        let registry = links.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(link);
            }
        });
        Relay {
            addr,
            upstream,
            acceptor,
            links,
        }
    }

    /// Stops listening and drops every relayed connection.
    fn cut(&self) {
        self.acceptor.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

#[tokio::test]
async fn acquire_waits_out_a_redis_outage_and_resumes_when_it_returns() {
    let scope = Scope::new("outage");
    let client = redis::Client::open(scope.url.as_str()).unwrap();
    let info = client.get_connection_info().clone();
    let upstream = match info.addr() {
        ConnectionAddr::Tcp(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .unwrap()
            .find(SocketAddr::is_ipv4)
            .expect("an IPv4 address for redis"),
        other => panic!("this test relays TCP only, not {other:?}"),
    };
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), upstream).await;
    let relayed = info.set_addr(ConnectionAddr::Tcp(
        relay.addr.ip().to_string(),
        relay.addr.port(),
    ));
    let conn = ConnectionManager::new_lazy_with_config(
        redis::Client::open(relayed).unwrap(),
        connection_manager_config(),
    )
    .unwrap();
    let limiter = Limiter::new(conn, &scope.prefix);
    let limits = [Limit::new("account:1", 100.0, 10)];

    assert_eq!(
        limiter.try_acquire(&limits).await.unwrap(),
        Acquire::Granted
    );

    relay.cut();
    tokio::time::sleep(20 * MS).await;
    let err = limiter.try_acquire(&limits).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    let waiting = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let grant = limiter
                .acquire(&limits, Instant::now() + Duration::from_secs(5))
                .await;
            (grant, started.elapsed())
        })
    };
    tokio::time::sleep(700 * MS).await;
    assert!(
        !waiting.is_finished(),
        "acquire returned while redis was unreachable"
    );

    let restored = Relay::start(relay.addr, relay.upstream).await;
    let (grant, took) = waiting.await.unwrap();
    let grant = grant.expect("granted once redis is back");
    assert!(
        took >= 690 * MS && took < 3 * Duration::from_secs(1),
        "took {took:?}"
    );
    assert!(grant.attempts >= 2, "{grant:?}");
    restored.cut();
}
