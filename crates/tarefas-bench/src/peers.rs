//! The peers of the fan-out benchmark: the same job written on the job queues a team would
//! otherwise use, run against the same fake Huggy in the same invocation.
//!
//! * **Celery on RabbitMQ** (`scripts/bench/peers/celery_app.py`): a Python task making one
//!   HTTP call with `requests`, one queue message per contact (`exec_flow.delay(id)` in a
//!   loop), a prefork worker of 8 processes, in a RabbitMQ vhost of the benchmark's own;
//! * **BullMQ on Redis** (`scripts/bench/peers/bullmq_*.mjs`): a Node.js processor making
//!   one `fetch` per job, one job per contact (`addBulk` by 1,000), worker processes of
//!   concurrency 64, under a Redis key prefix of the benchmark's own (the queue is
//!   obliterated before and after, nothing else is touched); with or without its limiter.
//!
//! Both are installed by `scripts/bench/peers/install.sh` (PyPI and npm, pinned versions).
//! A peer's time runs from the start of its producer (its workers already up and idle) to the
//! moment the fake has answered the N-th successful execFlow (polled every 50 ms): like
//! Tarefas's run time, it includes enqueueing (Tarefas: planning) and every call.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tarefas_fake_huggy::{CallRecord, FakeStats};

use crate::fanout::{Env, Procs, CHANNEL, FIRST_ID, TOKEN};

/// The route the fan-out calls.
pub const EXEC_FLOW: &str = "PUT /contacts/{id}/execFlow";

/// One peer run.
#[derive(Debug, Clone, Serialize)]
pub struct PeerTrial {
    pub name: String,
    pub items: u64,
    pub processes: usize,
    pub concurrency: usize,
    /// Seconds from the producer's start to the N-th successful call (or to the last one,
    /// when some never came).
    pub seconds: f64,
    /// Seconds the producer took to enqueue everything.
    pub producer_seconds: f64,
    /// Successful calls ÷ seconds.
    pub items_per_s: f64,
    /// Items that never got their successful call: the peer went quiet (its producer done,
    /// no call for [`QUIET`]) before the N-th.
    pub lost: u64,
}

/// How long a peer may make no call, once its producer is done, before the items it has
/// not called are counted lost (Celery drops a task whose call raised, by default).
pub const QUIET: Duration = Duration::from_secs(20);

/// When a peer's calls ended and how many succeeded.
pub struct Calls {
    /// When the last successful call was seen.
    pub at: Instant,
    /// Successful calls.
    pub ok: u64,
}

impl PeerTrial {
    /// The figures of `name`'s trial of `n` items started at `started`, from its calls.
    fn new(
        name: &str,
        n: u64,
        processes: usize,
        concurrency: usize,
        started: Instant,
        end: &Calls,
        producer_seconds: f64,
    ) -> PeerTrial {
        let seconds = end.at.duration_since(started).as_secs_f64();
        PeerTrial {
            name: name.into(),
            items: n,
            processes,
            concurrency,
            seconds,
            producer_seconds,
            items_per_s: end.ok as f64 / seconds,
            lost: n.saturating_sub(end.ok),
        }
    }
}

/// Where the peers live (`scripts/bench/peers`), checked to be installed.
pub fn dir(env: &Env) -> Result<PathBuf> {
    let d = env.args.peers_dir.clone();
    ensure!(
        d.join(".venv/bin/celery").exists() && d.join("node_modules/bullmq").exists(),
        "the peers are not installed in {}: bash scripts/bench/peers/install.sh",
        d.display()
    );
    Ok(d)
}

/// The fake's counters.
pub async fn stats(client: &reqwest::Client, url: &str) -> Result<FakeStats> {
    Ok(client
        .get(format!("{url}/__fake/stats"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The fake's call log (only kept when it was started with it).
pub async fn calls(url: &str) -> Result<Vec<CallRecord>> {
    Ok(reqwest::Client::new()
        .get(format!("{url}/__fake/calls"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until the fake has answered `n` successful execFlows, or until the peer went
/// quiet short of them (its producer exited and no call came for [`QUIET`]). Fails when a
/// process exits or after `timeout`.
pub async fn wait_calls(
    url: &str,
    n: u64,
    timeout: Duration,
    procs: &mut Procs,
    what: &str,
) -> Result<Calls> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut last = Calls {
        at: Instant::now(),
        ok: 0,
    };
    let mut produced = false;
    loop {
        let s = stats(&client, url).await?;
        let ok = s.count(EXEC_FLOW, 200);
        if ok != last.ok {
            last = Calls {
                at: Instant::now(),
                ok,
            };
        }
        if ok >= n || (produced && last.at.elapsed() >= QUIET) {
            if ok < n {
                eprintln!(
                    "fanout: {what}: {ok} of {n} calls, then none for {} s: {} items lost",
                    QUIET.as_secs(),
                    n - ok
                );
            }
            return Ok(last);
        }
        for (name, c) in &mut procs.0 {
            if let Some(status) = c.try_wait()? {
                if !name.contains("produce") {
                    bail!("{what}: {name} exited: {status} (see its log)");
                }
                produced = true;
            }
        }
        ensure!(
            started.elapsed() < timeout,
            "{what}: {} of {n} calls after {} s",
            last.ok,
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn peer_cmd(env: &Env, dir: &Path, program: &str, huggy: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir)
        .env("BENCH_AMQP_URL", &env.args.peers_amqp_url)
        .env("BENCH_HUGGY_URL", huggy)
        .env("BENCH_HUGGY_TOKEN", TOKEN)
        .env("BENCH_CHANNEL", CHANNEL)
        .env("BENCH_QUEUE", "tarefas-bench-fanout")
        .env("BENCH_REDIS_HOST", redis_host(&env.args.redis_url).0)
        .env(
            "BENCH_REDIS_PORT",
            redis_host(&env.args.redis_url).1.to_string(),
        )
        .env("BENCH_REDIS_DB", env.args.peers_redis_db.to_string())
        .env("BENCH_PREFIX", &env.args.peers_redis_prefix)
        .stdin(Stdio::null());
    c
}

/// Host and port of a `redis://host:port[/db]` URL.
fn redis_host(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(6379)),
        None => (hostport.to_string(), 6379),
    }
}

fn spawn_logged(env: &Env, procs: &mut Procs, name: &str, mut cmd: Command) -> Result<u32> {
    let log = std::fs::File::create(env.logs.join(format!("{name}.log")))?;
    let child = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid = child.id();
    procs.0.push((name.to_string(), child));
    Ok(pid)
}

fn run_to_end(env: &Env, name: &str, mut cmd: Command, timeout: Duration) -> Result<f64> {
    let log = std::fs::File::create(env.logs.join(format!("{name}.log")))?;
    let started = Instant::now();
    let mut child = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    loop {
        if let Some(status) = child.try_wait()? {
            ensure!(status.success(), "{name} failed: {status} (see its log)");
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not finish in {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fan-out on Celery: a prefork worker of `processes`, `n` messages.
pub async fn celery(env: &Env, huggy: &str, n: u64, processes: usize) -> Result<PeerTrial> {
    let dir = dir(env)?;
    // Absolute, but not resolved: the venv's python is a symlink to the system one, and
    // only called through the venv's path does it see the venv's packages.
    let celery = std::path::absolute(dir.join(".venv/bin/celery"))?;
    let python = std::path::absolute(dir.join(".venv/bin/python"))?;
    let celery = celery.to_string_lossy().into_owned();
    // Messages a previous, interrupted run may have left.
    let mut purge = peer_cmd(env, &dir, &celery, huggy);
    purge.args(["-A", "celery_app", "purge", "-f"]);
    run_to_end(env, "celery-purge", purge, Duration::from_secs(60))?;

    let mut procs = Procs::default();
    let mut worker = peer_cmd(env, &dir, &celery, huggy);
    worker.args([
        "-A",
        "celery_app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        &processes.to_string(),
        "--loglevel",
        "WARNING",
        "-n",
        "tarefas-bench@%h",
    ]);
    spawn_logged(env, &mut procs, "celery-worker", worker)?;
    // Ready when it answers a ping (its prefork children started).
    let ready = Instant::now();
    loop {
        let mut ping = peer_cmd(env, &dir, &celery, huggy);
        ping.args(["-A", "celery_app", "inspect", "ping", "--timeout", "2"]);
        if run_to_end(env, "celery-ping", ping, Duration::from_secs(30)).is_ok() {
            break;
        }
        for (n, c) in &mut procs.0 {
            if let Some(status) = c.try_wait()? {
                bail!("{n} exited at start: {status} (see its log)");
            }
        }
        ensure!(
            ready.elapsed() < Duration::from_secs(90),
            "the Celery worker did not answer a ping in 90 s"
        );
    }
    let started = Instant::now();
    let mut produce = peer_cmd(env, &dir, &python.to_string_lossy(), huggy);
    produce.args(["celery_produce.py", &n.to_string(), &FIRST_ID.to_string()]);
    spawn_logged(env, &mut procs, "celery-produce", produce)?;
    let end = wait_calls(
        huggy,
        n,
        Duration::from_secs(env.args.run_timeout_secs),
        &mut procs,
        "celery",
    )
    .await?;
    let producer_seconds = producer_time(env, "celery-produce", "messages in ");
    procs.kill_all();
    let t = PeerTrial::new("celery", n, processes, 1, started, &end, producer_seconds);
    eprintln!(
        "fanout: celery (prefork {processes}): {} items in {:.2} s = {:.0} items/s (producer {producer_seconds:.1} s)",
        end.ok, t.seconds, t.items_per_s
    );
    Ok(t)
}

/// The fan-out on BullMQ: `processes` workers of `concurrency`, `n` jobs; with its limiter
/// `max` per `duration_ms` when given.
pub async fn bullmq(
    env: &Env,
    huggy: &str,
    n: u64,
    processes: usize,
    concurrency: usize,
    limiter: Option<(u32, u32)>,
    name: &str,
) -> Result<PeerTrial> {
    let dir = dir(env)?;
    let obliterate = || -> Result<()> {
        let mut c = peer_cmd(env, &dir, "node", huggy);
        c.args(["bullmq_produce.mjs", "--obliterate"]);
        run_to_end(
            env,
            &format!("{name}-obliterate"),
            c,
            Duration::from_secs(60),
        )?;
        Ok(())
    };
    obliterate()?;
    let mut procs = Procs::default();
    for w in 0..processes {
        let mut c = peer_cmd(env, &dir, "node", huggy);
        c.arg("bullmq_worker.mjs")
            .env("BENCH_CONCURRENCY", concurrency.to_string());
        if let Some((max, d)) = limiter {
            c.env("BENCH_LIMIT_MAX", max.to_string())
                .env("BENCH_LIMIT_DURATION_MS", d.to_string());
        }
        let pname = format!("{name}-worker{w}");
        spawn_logged(env, &mut procs, &pname, c)?;
        wait_log(
            env,
            &mut procs,
            &pname,
            "bullmq_worker: ready",
            Duration::from_secs(60),
        )
        .await?;
    }
    let started = Instant::now();
    let mut produce = peer_cmd(env, &dir, "node", huggy);
    produce.args(["bullmq_produce.mjs", &n.to_string(), &FIRST_ID.to_string()]);
    spawn_logged(env, &mut procs, &format!("{name}-produce"), produce)?;
    let end = wait_calls(
        huggy,
        n,
        Duration::from_secs(env.args.run_timeout_secs),
        &mut procs,
        name,
    )
    .await?;
    let producer_seconds = producer_time(env, &format!("{name}-produce"), "jobs in ");
    procs.kill_all();
    obliterate()?;
    let t = PeerTrial::new(
        name,
        n,
        processes,
        concurrency,
        started,
        &end,
        producer_seconds,
    );
    eprintln!(
        "fanout: {name} ({processes} × {concurrency}, limiter {limiter:?}): {} items in {:.2} s = {:.0} items/s (producer {producer_seconds:.1} s)",
        end.ok, t.seconds, t.items_per_s
    );
    Ok(t)
}

/// Waits until `name`'s log holds `needle`.
async fn wait_log(
    env: &Env,
    procs: &mut Procs,
    name: &str,
    needle: &str,
    timeout: Duration,
) -> Result<()> {
    let path = env.logs.join(format!("{name}.log"));
    let started = Instant::now();
    loop {
        if std::fs::read_to_string(&path).is_ok_and(|s| s.contains(needle)) {
            return Ok(());
        }
        for (n, c) in &mut procs.0 {
            if let Some(status) = c.try_wait()? {
                bail!("{n} exited at start: {status} (see {})", path.display());
            }
        }
        ensure!(
            started.elapsed() < timeout,
            "{name} not ready after {} s (see {})",
            timeout.as_secs(),
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seconds a producer reported ("… N jobs in 12.34 s"), 0 when it did not (yet).
fn producer_time(env: &Env, name: &str, marker: &str) -> f64 {
    std::fs::read_to_string(env.logs.join(format!("{name}.log")))
        .ok()
        .and_then(|s| {
            s.split(marker)
                .nth(1)
                .and_then(|r| r.split_whitespace().next().and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0.0)
}

/// What a rate-limited run achieved, from the fake's call log.
#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    pub name: String,
    pub processes: usize,
    pub limit_per_s: f64,
    pub calls: u64,
    /// Seconds from the first call to the last.
    pub span_seconds: f64,
    /// Calls per second over the span: (calls − 1) ÷ span.
    pub achieved_per_s: f64,
    /// achieved ÷ limit.
    pub achieved_ratio: f64,
    /// The most calls that arrived within any one-second window [t, t + 1 s).
    pub worst_window: u64,
    /// Calls per whole second of the run (from the first call), for the chart.
    pub per_second: Vec<u64>,
}

/// Measures the rate of the execFlow calls in the fake's log.
pub fn rate_of(
    name: &str,
    processes: usize,
    limit: f64,
    calls: &[CallRecord],
) -> Result<RateResult> {
    let mut at: Vec<DateTime<Utc>> = calls
        .iter()
        .filter(|c| c.route == EXEC_FLOW && c.status == 200)
        .map(|c| c.at)
        .collect();
    ensure!(at.len() >= 2, "{name}: fewer than two calls in the log");
    at.sort();
    let us = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX);
    let span = us(at[at.len() - 1] - at[0]) as f64 / 1e6;
    let mut worst = 0;
    let mut j = 0;
    for i in 0..at.len() {
        while j < at.len() && us(at[j] - at[i]) < 1_000_000 {
            j += 1;
        }
        worst = worst.max(j - i);
    }
    let mut per_second = vec![0u64; span as usize + 1];
    for t in &at {
        let s = (us(*t - at[0]) / 1_000_000) as usize;
        if s < per_second.len() {
            per_second[s] += 1;
        }
    }
    let achieved = (at.len() - 1) as f64 / span;
    Ok(RateResult {
        name: name.into(),
        processes,
        limit_per_s: limit,
        calls: at.len() as u64,
        span_seconds: span,
        achieved_per_s: achieved,
        achieved_ratio: achieved / limit,
        worst_window: worst as u64,
        per_second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ms: i64) -> CallRecord {
        CallRecord {
            seq: 0,
            at: DateTime::<Utc>::from_timestamp_millis(1_700_000_000_000 + ms).unwrap(),
            method: "PUT".into(),
            path: String::new(),
            query: None,
            route: EXEC_FLOW.into(),
            company_id: None,
            contact_id: None,
            chat_id: None,
            body: None,
            status: 200,
            fault: None,
        }
    }

    #[test]
    fn worst_window_and_rate() {
        // 10 calls per second for 3 s, evenly spaced, plus a burst of 5 at 1.5 s.
        let mut calls: Vec<CallRecord> = (0..30).map(|i| rec(i * 100)).collect();
        calls.extend((0..5).map(|_| rec(1_550)));
        let r = rate_of("t", 1, 10.0, &calls).unwrap();
        assert_eq!(r.calls, 35);
        assert_eq!(r.worst_window, 15);
        assert!((r.span_seconds - 2.9).abs() < 1e-9);
        assert_eq!(r.per_second, vec![10, 15, 10]);
    }

    #[test]
    fn redis_urls() {
        assert_eq!(
            redis_host("redis://127.0.0.1:6379"),
            ("127.0.0.1".into(), 6379)
        );
        assert_eq!(redis_host("redis://:pw@h:7000/3"), ("h".into(), 7000));
        assert_eq!(redis_host("redis://h"), ("h".into(), 6379));
    }
}
