//! `tarefas-bench fanout`: the whole pipeline (planner → outbox → RabbitMQ → workers →
//! Redis gate → Huggy → Postgres) run by the real `tarefas` binary against its fake Huggy,
//! as separate processes, measured from the run's own `started_at` → `finished_at`.
//!
//! * **throughput**: a contacts task with a Flow over N contacts (200,000), fake at 0 ms,
//!   two worker processes, a small sweep of concurrency × prefetch; the best against the
//!   *physical limit*: a minimal keep-alive reqwest loop with as many concurrent calls
//!   against the same fake endpoint (`PUT /contacts/{id}/execFlow`), taken in the same run;
//! * **latency-bound**: fake at 20 ms, one worker of concurrency C: items/s against the
//!   ideal C ÷ latency;
//! * **memory**: one large run (1,000,000 items) with each worker's `VmRSS` sampled every
//!   second: peak, final, and the slope of a line fitted over the second half of the run.
//!
//! The contacts are written straight into the mirror (the same ids the fake generates,
//! 1001..1000+N) with the mirror's own batch upsert; one account per data set size, kept
//! between runs in the benchmark's own database. Every process started is killed at the
//! end, on error too (and on SIGTERM/Ctrl-C).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tarefas_store::mirror;
use tokio::task::JoinSet;

use crate::contacts::Generator;
use crate::db;
use crate::peers::{self, PeerTrial, RateResult};
use crate::procfs::{rss_of, CpuSnapshot, CpuUse};

/// The fake's default token.
pub(crate) const TOKEN: &str = "fake-huggy-token";
pub(crate) const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";
pub(crate) const FIRST_ID: i64 = 1001;

/// Options of `tarefas-bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The benchmark's own database (created if missing, kept between runs).
    #[arg(
        long,
        env = "TAREFAS_BENCH_FANOUT_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tarefas_bench_fanout"
    )]
    database_url: String,
    /// RabbitMQ.
    #[arg(
        long,
        env = "TAREFAS_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// Redis.
    #[arg(
        long,
        env = "TAREFAS_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub(crate) redis_url: String,
    /// Queue and Redis key prefix of the benchmark's processes.
    #[arg(long, default_value = "bench-fanout")]
    queue_prefix: String,
    /// The `tarefas` binary.
    #[arg(long, default_value = "target/release/tarefas")]
    tarefas: PathBuf,
    /// First TCP port for the fakes.
    #[arg(long, default_value_t = 18_470)]
    port: u16,
    /// Items of the throughput runs.
    #[arg(long, default_value_t = 200_000)]
    items: u64,
    /// Worker processes of the throughput runs.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Concurrencies tried (per worker), at the first prefetch (e.g. 64,128,256 for a sweep).
    #[arg(long, value_delimiter = ',', default_value = "256")]
    concurrency: Vec<usize>,
    /// Prefetches tried (batches of 100 per worker); the others at the best concurrency.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    prefetch: Vec<u16>,
    /// Seconds of each physical-limit loop.
    #[arg(long, default_value_t = 5.0)]
    physical_secs: f64,
    /// Concurrent keep-alive loops of the physical limit tried (the best counts); 0 means
    /// as many as the best Tarefas setting had calls in flight.
    #[arg(long, value_delimiter = ',', default_value = "0,1024")]
    physical_tasks: Vec<usize>,
    /// Items of the Celery run (0 skips the peers).
    #[arg(long, default_value_t = 200_000)]
    celery_items: u64,
    /// Prefork processes of the Celery worker.
    #[arg(long, default_value_t = 8)]
    celery_processes: usize,
    /// Items of the BullMQ run (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    bullmq_items: u64,
    /// BullMQ worker processes.
    #[arg(long, default_value_t = 2)]
    bullmq_processes: usize,
    /// Concurrency of each BullMQ worker.
    #[arg(long, default_value_t = 64)]
    bullmq_concurrency: usize,
    /// Where the peers' code and installs are.
    #[arg(long, default_value = "scripts/bench/peers")]
    pub(crate) peers_dir: PathBuf,
    /// RabbitMQ URL of the Celery peer (a vhost of its own).
    #[arg(
        long,
        env = "TAREFAS_BENCH_PEERS_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/tarefas-bench-peers"
    )]
    pub(crate) peers_amqp_url: String,
    /// Redis database number of the BullMQ peer.
    #[arg(long, default_value_t = 0)]
    pub(crate) peers_redis_db: u32,
    /// Redis key prefix of the BullMQ peer (its queue is obliterated before and after).
    #[arg(long, default_value = "tarefas-bench-bull")]
    pub(crate) peers_redis_prefix: String,
    /// The rate limit of the precision runs, calls/s (per account).
    #[arg(long, default_value_t = 200)]
    rate_limit: u32,
    /// Seconds of load of each precision run (items = limit × seconds; 0 skips them).
    #[arg(long, default_value_t = 60)]
    rate_secs: u64,
    /// Worker processes of the precision runs (Tarefas and BullMQ alike).
    #[arg(long, default_value_t = 4)]
    rate_workers: usize,
    /// Items of the latency-bound runs.
    #[arg(long, default_value_t = 10_000)]
    latency_items: u64,
    /// The fake's latency of the latency-bound runs, ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Concurrencies of the latency-bound runs (one worker).
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    latency_concurrency: Vec<usize>,
    /// Items of the memory run (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    memory_items: u64,
    /// The throughput target, items/s.
    #[arg(long, default_value_t = 5_000.0)]
    target_items_per_s: f64,
    /// The worker memory target, MiB.
    #[arg(long, default_value_t = 64.0)]
    target_rss_mib: f64,
    /// The most a run may take, seconds.
    #[arg(long, default_value_t = 900)]
    pub(crate) run_timeout_secs: u64,
    /// Skip the sweep: measure only this concurrency and the first prefetch.
    #[arg(long)]
    no_sweep: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/fanout.json")]
    out: PathBuf,
    /// Exit with status 3 when a target is missed.
    #[arg(long)]
    strict: bool,
}

/// The processes this benchmark started; all killed when dropped.
#[derive(Default)]
pub(crate) struct Procs(pub(crate) Vec<(String, Child)>);

impl Procs {
    pub(crate) fn kill_all(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
        }
        for (_, c) in &mut self.0 {
            let _ = c.wait();
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_all();
    }
}

pub(crate) struct Env {
    pub(crate) args: Args,
    pub(crate) pool: PgPool,
    pub(crate) logs: PathBuf,
}

impl Env {
    pub(crate) fn cmd(&self, huggy: Option<&str>) -> Command {
        let mut c = Command::new(&self.args.tarefas);
        c.env("TAREFAS_DATABASE_URL", &self.args.database_url)
            .env("DATABASE_URL", &self.args.database_url)
            .env("TAREFAS_AMQP_URL", &self.args.amqp_url)
            .env("TAREFAS_REDIS_URL", &self.args.redis_url)
            .env("TAREFAS_QUEUE_PREFIX", &self.args.queue_prefix)
            .env("DEMO_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(u) = huggy {
            c.env("TAREFAS_HUGGY_API_URL", u);
        }
        c
    }

    /// Runs a CLI command to completion; its standard output.
    pub(crate) fn output(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(None)
            .args(args)
            .output()
            .with_context(|| format!("running {:?} {args:?}", self.args.tarefas))?;
        ensure!(
            out.status.success(),
            "tarefas {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(crate) fn spawn(
        &self,
        procs: &mut Procs,
        name: &str,
        huggy: Option<&str>,
        args: &[String],
    ) -> Result<u32> {
        let log = File::create(self.logs.join(format!("{name}.log")))?;
        let child = self
            .cmd(huggy)
            .args(args)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        procs.0.push((name.to_string(), child));
        Ok(pid)
    }

    /// Starts a fake Huggy and waits until it answers; its base URL.
    pub(crate) async fn fake(
        &self,
        procs: &mut Procs,
        port: u16,
        contacts: u64,
        latency_ms: u64,
    ) -> Result<String> {
        self.fake_with(procs, port, contacts, latency_ms, false)
            .await
    }

    /// Starts a fake Huggy (keeping its call log when `call_log`) and waits until it answers.
    pub(crate) async fn fake_with(
        &self,
        procs: &mut Procs,
        port: u16,
        contacts: u64,
        latency_ms: u64,
        call_log: bool,
    ) -> Result<String> {
        let args: Vec<String> = [
            "fake-huggy",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--contacts",
            &contacts.to_string(),
            "--chats",
            "0",
            "--latency-ms",
            &latency_ms.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain((!call_log).then(|| "--no-call-log".to_string()))
        .collect();
        self.spawn(procs, &format!("fake-{port}"), None, &args)?;
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(url);
            }
            if let Some((_, c)) = procs.0.last_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!("the fake on port {port} exited: {status} (see its log)");
                }
            }
            ensure!(
                started.elapsed() < Duration::from_secs(120),
                "the fake on port {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A data set: an account with `n` contacts and one task over all of them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DataSet {
    account: String,
    contacts: u64,
    task_id: i64,
}

async fn ensure_data(env: &Env, n: u64) -> Result<DataSet> {
    ensure_account(env, &format!("fanout{n}"), n, 100_000).await
}

/// An account `name` limited to `rate`/s with contacts 1001..1000+n and a task over them.
pub(crate) async fn ensure_account(env: &Env, name: &str, n: u64, rate: u32) -> Result<DataSet> {
    let name = name.to_string();
    let pool = &env.pool;
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
        .bind(&name)
        .fetch_optional(pool)
        .await?;
    if existing.is_none() {
        env.output(&[
            "account",
            "add",
            &name,
            "--token-env",
            "DEMO_TOKEN",
            "--rate-limit",
            &format!("{rate}/s"),
        ])?;
    }
    let account: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
        .bind(&name)
        .fetch_one(pool)
        .await?;
    let (count, max): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), max(id) FROM contacts WHERE account_id = $1")
            .bind(account)
            .fetch_one(pool)
            .await?;
    if count as u64 != n || max != Some(FIRST_ID + n as i64 - 1) {
        eprintln!("fanout: loading {n} contacts for {name} …");
        sqlx::query("DELETE FROM contacts WHERE account_id = $1")
            .bind(account)
            .execute(pool)
            .await?;
        load(pool, account, n).await?;
        sqlx::raw_sql("VACUUM (ANALYZE) contacts")
            .execute(pool)
            .await?;
    }
    let task: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE account_id = $1 AND definition->>'name' = 'fanout' ORDER BY id LIMIT 1",
    )
    .bind(account)
    .fetch_optional(pool)
    .await?;
    let task_id = match task {
        Some(t) => t,
        None => {
            let file = env.logs.join(format!("task-{name}.yaml"));
            std::fs::write(
                &file,
                format!(
                    "name: fanout\nobjective: benchmark\naccount: {name}\nrecurrence: {{kind: manual}}\n\
                     table: contacts\naction:\n  flow: {{project: 1, flow: 42, channel: \"{CHANNEL}\"}}\n  \
                     policy: {{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}}\n"
                ),
            )?;
            let out = env.output(&["task", "create", "-f", &file.to_string_lossy(), "--json"])?;
            let v: serde_json::Value = serde_json::from_str(&out).context("task create --json")?;
            v["id"].as_i64().context("task create --json gave no id")?
        }
    };
    Ok(DataSet {
        account: name,
        contacts: n,
        task_id,
    })
}

/// Writes contacts 1001..1000+n (the fake's ids) with the mirror's batch upsert.
async fn load(pool: &PgPool, account: i64, n: u64) -> Result<()> {
    let g = Generator {
        seed: 7 ^ account as u64,
        first_id: 0,
        base: Utc::now(),
    };
    let synced_at = Utc::now();
    let batch = 10_000;
    let mut in_flight = JoinSet::new();
    let mut start = 0;
    while start < n || !in_flight.is_empty() {
        if start < n && in_flight.len() < 2 {
            let end = (start + batch).min(n);
            let pool = pool.clone();
            in_flight.spawn(async move {
                let contacts: Vec<_> = (start..end)
                    .map(|i| {
                        let mut c = g.contact(i);
                        c.id = FIRST_ID + i as i64;
                        c
                    })
                    .collect();
                mirror::upsert_contacts(&pool, account, &contacts, synced_at).await
            });
            start = end;
            continue;
        }
        if let Some(done) = in_flight.join_next().await {
            done??;
        }
    }
    Ok(())
}

/// VmRSS of a process, bytes (0 when gone).
/// One worker's memory through a run.
#[derive(Debug, Clone, Serialize)]
struct WorkerMemory {
    /// (seconds since the request, items done by the run, RSS bytes), every second.
    samples: Vec<(f64, i64, u64)>,
    peak: u64,
    last: u64,
    /// Least-squares slope of RSS over the second half of the run, bytes per 100,000 items.
    slope_per_100k_items: f64,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Trial {
    name: String,
    items: u64,
    workers: usize,
    concurrency: usize,
    prefetch: u16,
    latency_ms: u64,
    pub(crate) run_id: i64,
    status: String,
    done: i64,
    planned: i64,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    seconds: f64,
    pub(crate) items_per_s: f64,
    memory: Vec<WorkerMemory>,
    /// Where the machine's CPU went from the request until the run was seen finished.
    cpu: CpuUse,
}

fn slope(points: &[(f64, u64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 3 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mx) * (y as f64 - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn trial(
    env: &Env,
    name: &str,
    data: &DataSet,
    huggy: &str,
    workers: usize,
    concurrency: usize,
    prefetch: u16,
    latency_ms: u64,
) -> Result<Trial> {
    let mut procs = Procs::default();
    let mut pids = Vec::new();
    for w in 0..workers {
        let args: Vec<String> = vec![
            "worker".into(),
            "--channel-rate".into(),
            "100000".into(),
            "--concurrency".into(),
            concurrency.to_string(),
            "--prefetch".into(),
            prefetch.to_string(),
        ];
        pids.push(env.spawn(&mut procs, &format!("{name}-worker{w}"), Some(huggy), &args)?);
    }
    // Let the workers connect and declare their queues.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (n, c) in &mut procs.0 {
        if let Some(status) = c.try_wait()? {
            bail!("{n} exited at start: {status} (see its log)");
        }
    }
    let client = reqwest::Client::new();
    client
        .delete(format!("{huggy}/__fake/stats"))
        .send()
        .await?
        .error_for_status()?;
    let out = env.output(&["task", "run", &data.task_id.to_string(), "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("task run --json")?;
    let request = v["request_id"]
        .as_str()
        .context("task run --json gave no request_id")?
        .to_string();
    let asked = Instant::now();
    let cpu_before = CpuSnapshot::take();
    let mut samples: Vec<Vec<(f64, i64, u64)>> = vec![Vec::new(); workers];
    let mut next_sample = Instant::now();
    let run = loop {
        let run = tarefas_store::runs::by_request(&env.pool, &request).await?;
        if let Some(run) = &run {
            if run.finished_at.is_some() {
                break run.clone();
            }
        }
        if Instant::now() >= next_sample {
            let done = run
                .as_ref()
                .map_or(0, |r| r.done + r.skipped + r.failed + r.unknown);
            for (i, &pid) in pids.iter().enumerate() {
                samples[i].push((asked.elapsed().as_secs_f64(), done, rss_of(pid)));
            }
            next_sample += Duration::from_secs(1);
        }
        for (n, c) in &mut procs.0 {
            if let Some(status) = c.try_wait()? {
                bail!("{n} exited during the run: {status} (see its log)");
            }
        }
        ensure!(
            asked.elapsed() < Duration::from_secs(env.args.run_timeout_secs),
            "{name}: run not finished after {} s ({:?})",
            env.args.run_timeout_secs,
            run.map(|r| (r.status, r.done, r.planned))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cpu = CpuSnapshot::take().since(&cpu_before);
    let final_rss: Vec<u64> = pids.iter().map(|&p| rss_of(p)).collect();
    procs.kill_all();
    // The run's counters are Tarefas' word; the fake's count of calls is what happened.
    let called = crate::peers::stats(&client, huggy)
        .await?
        .count(crate::peers::EXEC_FLOW, 200);
    ensure!(
        called == data.contacts,
        "{name}: run {} counted {} items done, but the fake answered {called} execFlow calls          for {} contacts",
        run.id,
        run.done,
        data.contacts
    );
    let finished_at = run.finished_at.context("finished")?;
    let seconds = (finished_at - run.started_at)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e6;
    let memory = samples
        .into_iter()
        .zip(final_rss)
        .map(|(s, last)| {
            let half: Vec<(f64, u64)> = s
                .iter()
                .filter(|p| p.1 as f64 >= run.planned as f64 / 2.0)
                .map(|p| (p.1 as f64, p.2))
                .collect();
            WorkerMemory {
                peak: s.iter().map(|p| p.2).max().unwrap_or(0).max(last),
                last: if last > 0 {
                    last
                } else {
                    s.last().map_or(0, |p| p.2)
                },
                slope_per_100k_items: slope(&half) * 100_000.0,
                samples: s,
            }
        })
        .collect();
    let t = Trial {
        name: name.to_string(),
        items: data.contacts,
        workers,
        concurrency,
        prefetch,
        latency_ms,
        run_id: run.id,
        status: run.status.to_string(),
        done: run.done,
        planned: run.planned,
        started_at: run.started_at,
        finished_at,
        seconds,
        items_per_s: run.done as f64 / seconds,
        memory,
        cpu,
    };
    ensure!(
        t.status == "done" && t.done as u64 == data.contacts,
        "{name}: run {} ended {} with {} of {} items done",
        t.run_id,
        t.status,
        t.done,
        data.contacts
    );
    eprintln!(
        "fanout: {name}: {} items in {:.2} s = {:.0} items/s (workers {workers}, concurrency {concurrency}, prefetch {prefetch})",
        t.done, t.seconds, t.items_per_s
    );
    eprintln!("fanout: {name}: {}", t.cpu.describe(t.items));
    Ok(t)
}

/// Deletes every Redis key under `prefix:` (the benchmark's workers' own).
pub(crate) async fn forget_redis_keys(url: &str, prefix: &str) -> Result<()> {
    let client = redis::Client::open(url).context("Redis URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The physical limit: `tasks` concurrent keep-alive loops calling the fake's execFlow.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Physical {
    tasks: usize,
    seconds: f64,
    calls: u64,
    calls_per_s: f64,
}

async fn physical(url: &str, contacts: u64, tasks: usize, secs: f64) -> Result<Physical> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(tasks)
        .build()?;
    let body = serde_json::to_vec(&tarefas_huggy::model::ExecFlowRequest {
        uuid: CHANNEL.into(),
        flow_id: 42,
        variables: Default::default(),
        when_in_chat: true,
        when_wait_for_chat: true,
        when_in_auto: true,
    })?;
    let body = Arc::new(body);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let (client, body, url) = (client.clone(), body.clone(), url.to_string());
        set.spawn(async move {
            let mut calls = 0u64;
            let mut i = t as u64;
            while Instant::now() < deadline {
                let id = FIRST_ID + (i % contacts) as i64;
                let r = client
                    .put(format!("{url}/contacts/{id}/execFlow"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body((*body).clone())
                    .send()
                    .await?;
                let status = r.status();
                let _ = r.bytes().await?;
                anyhow::ensure!(status.is_success(), "execFlow {id}: {status}");
                calls += 1;
                i += tasks as u64;
            }
            Ok::<u64, anyhow::Error>(calls)
        });
    }
    let mut calls = 0;
    while let Some(r) = set.join_next().await {
        calls += r??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Physical {
        tasks,
        seconds,
        calls,
        calls_per_s: calls as f64 / seconds,
    })
}

#[derive(Debug, Serialize)]
struct Report {
    machine_cpus: usize,
    throughput: Vec<Trial>,
    best: Option<Trial>,
    /// Every physical-limit loop taken; the best is `physical`.
    physical_all: Vec<Physical>,
    physical: Option<Physical>,
    ratio_to_physical: Option<f64>,
    throughput_target_met: Option<bool>,
    celery: Option<PeerTrial>,
    bullmq: Option<PeerTrial>,
    /// Tarefas's best items/s ÷ Celery's.
    ratio_to_celery: Option<f64>,
    /// Tarefas's best items/s ÷ BullMQ's.
    ratio_to_bullmq: Option<f64>,
    rate_tarefas: Option<RateResult>,
    rate_bullmq: Option<RateResult>,
    latency: Vec<LatencyResult>,
    memory: Option<Trial>,
    memory_target_met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
struct LatencyResult {
    trial: Trial,
    ideal_items_per_s: f64,
    ratio: f64,
}

/// Runs the benchmark; kills every process it started on the way out, SIGTERM included.
pub async fn run(args: Args) -> Result<()> {
    let work = run_inner(args);
    tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = sigterm() => bail!("terminated"),
    }
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn run_inner(args: Args) -> Result<()> {
    ensure!(
        args.tarefas.exists(),
        "{} not found: cargo build --release -p tarefas-cli",
        args.tarefas.display()
    );
    let logs = PathBuf::from("target/bench/fanout-logs");
    std::fs::create_dir_all(&logs)?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let pool = db::prepare(&args.database_url, 8).await?;
    // Old runs and messages would only slow the database: start from empty run tables.
    sqlx::raw_sql("TRUNCATE run_claims, run_items, runs, outbox")
        .execute(&pool)
        .await?;
    // Run ids start again with a new database: earlier runs' idempotency keys would make
    // the workers settle items as "already sent" without calling.
    forget_redis_keys(&args.redis_url, &args.queue_prefix).await?;
    let env = Env {
        args: args.clone(),
        pool,
        logs,
    };
    let mut report = Report {
        machine_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        throughput: Vec::new(),
        best: None,
        physical_all: Vec::new(),
        physical: None,
        ratio_to_physical: None,
        throughput_target_met: None,
        celery: None,
        bullmq: None,
        ratio_to_celery: None,
        ratio_to_bullmq: None,
        rate_tarefas: None,
        rate_bullmq: None,
        latency: Vec::new(),
        memory: None,
        memory_target_met: None,
    };
    let mut port = args.port;

    // 1. Throughput: Tarefas, then the peers and the physical limit against fresh fakes.
    if args.items > 0 {
        let data = ensure_data(&env, args.items).await?;
        let mut settings: Vec<(usize, u16)> = Vec::new();
        let p0 = *args.prefetch.first().unwrap_or(&4);
        let cs = if args.no_sweep {
            args.concurrency[..1].to_vec()
        } else {
            args.concurrency.clone()
        };
        for &c in &cs {
            settings.push((c, p0));
        }
        let mut i = 0;
        while i < settings.len() {
            let (c, p) = settings[i];
            let mut procs = Procs::default();
            let url = env.fake(&mut procs, port, args.items, 0).await?;
            port += 1;
            let t = trial(
                &env,
                &format!("throughput-c{c}-p{p}"),
                &data,
                &url,
                args.workers,
                c,
                p,
                0,
            )
            .await?;
            drop(procs);
            report.throughput.push(t);
            i += 1;
            if i == cs.len() && !args.no_sweep {
                let best = best_of(&report.throughput);
                for &p in args.prefetch.iter().skip(1) {
                    settings.push((best.concurrency, p));
                }
            }
        }
        let best = best_of(&report.throughput);
        report.throughput_target_met = Some(best.items_per_s >= args.target_items_per_s);
        report.best = Some(best.clone());
        write(&args, &report)?;

        if args.celery_items > 0 {
            let mut procs = Procs::default();
            let url = env.fake(&mut procs, port, args.celery_items, 0).await?;
            port += 1;
            let t = peers::celery(&env, &url, args.celery_items, args.celery_processes).await?;
            drop(procs);
            report.ratio_to_celery = Some(best.items_per_s / t.items_per_s);
            report.celery = Some(t);
            write(&args, &report)?;
        }
        if args.bullmq_items > 0 {
            let mut procs = Procs::default();
            let url = env.fake(&mut procs, port, args.bullmq_items, 0).await?;
            port += 1;
            let t = peers::bullmq(
                &env,
                &url,
                args.bullmq_items,
                args.bullmq_processes,
                args.bullmq_concurrency,
                None,
                "bullmq",
            )
            .await?;
            drop(procs);
            report.ratio_to_bullmq = Some(best.items_per_s / t.items_per_s);
            report.bullmq = Some(t);
            write(&args, &report)?;
        }

        // The physical limit: the best of the loops tried, each against a fresh fake.
        for &tasks in &args.physical_tasks {
            let tasks = if tasks == 0 {
                best.concurrency * best.workers
            } else {
                tasks
            };
            let mut procs = Procs::default();
            let url = env.fake(&mut procs, port, args.items, 0).await?;
            port += 1;
            let ph = physical(&url, args.items, tasks, args.physical_secs).await?;
            drop(procs);
            eprintln!(
                "fanout: physical limit: {:.0} calls/s with {} tasks",
                ph.calls_per_s, ph.tasks
            );
            report.physical_all.push(ph);
        }
        if let Some(ph) = report
            .physical_all
            .iter()
            .max_by(|a, b| a.calls_per_s.total_cmp(&b.calls_per_s))
            .cloned()
        {
            report.ratio_to_physical = Some(best.items_per_s / ph.calls_per_s);
            report.physical = Some(ph);
        }
        write(&args, &report)?;
    }

    // 2. Rate-limit precision: the same load under the same limit on Tarefas and BullMQ.
    if args.rate_secs > 0 {
        let n = u64::from(args.rate_limit) * args.rate_secs;
        let limit = f64::from(args.rate_limit);
        let data = ensure_account(
            &env,
            &format!("rate{}x{n}", args.rate_limit),
            n,
            args.rate_limit,
        )
        .await?;
        let mut procs = Procs::default();
        let url = env.fake_with(&mut procs, port, n, 0, true).await?;
        port += 1;
        trial(
            &env,
            "rate-tarefas",
            &data,
            &url,
            args.rate_workers,
            64,
            4,
            0,
        )
        .await?;
        let r = peers::rate_of(
            "tarefas",
            args.rate_workers,
            limit,
            &peers::calls(&url).await?,
        )?;
        drop(procs);
        eprintln!(
            "fanout: rate tarefas: {:.2}/s over {:.1} s ({:.3} of {limit}), worst 1-s window {}",
            r.achieved_per_s, r.span_seconds, r.achieved_ratio, r.worst_window
        );
        report.rate_tarefas = Some(r);
        write(&args, &report)?;
        if args.bullmq_items > 0 {
            let mut procs = Procs::default();
            let url = env.fake_with(&mut procs, port, n, 0, true).await?;
            port += 1;
            peers::bullmq(
                &env,
                &url,
                n,
                args.rate_workers,
                args.bullmq_concurrency,
                Some((args.rate_limit, 1000)),
                "bullmq-limiter",
            )
            .await?;
            let r = peers::rate_of(
                "bullmq",
                args.rate_workers,
                limit,
                &peers::calls(&url).await?,
            )?;
            drop(procs);
            eprintln!(
                "fanout: rate bullmq: {:.2}/s over {:.1} s ({:.3} of {limit}), worst 1-s window {}",
                r.achieved_per_s, r.span_seconds, r.achieved_ratio, r.worst_window
            );
            report.rate_bullmq = Some(r);
            write(&args, &report)?;
        }
    }

    // 3. Latency-bound.
    if args.latency_items > 0 {
        let data = ensure_data(&env, args.latency_items).await?;
        for &c in &args.latency_concurrency {
            let mut procs = Procs::default();
            let url = env
                .fake(&mut procs, port, args.latency_items, args.latency_ms)
                .await?;
            port += 1;
            let t = trial(
                &env,
                &format!("latency-c{c}"),
                &data,
                &url,
                1,
                c,
                4,
                args.latency_ms,
            )
            .await?;
            drop(procs);
            let ideal = c as f64 / (args.latency_ms as f64 / 1000.0);
            report.latency.push(LatencyResult {
                ratio: t.items_per_s / ideal,
                ideal_items_per_s: ideal,
                trial: t,
            });
        }
        write(&args, &report)?;
    }

    // 4. Memory through a large run, with the best throughput setting.
    if args.memory_items > 0 {
        let data = ensure_data(&env, args.memory_items).await?;
        let (c, p, w) = report.best.as_ref().map_or((128, 4, args.workers), |b| {
            (b.concurrency, b.prefetch, b.workers)
        });
        let mut procs = Procs::default();
        let url = env.fake(&mut procs, port, args.memory_items, 0).await?;
        let t = trial(&env, "memory", &data, &url, w, c, p, 0).await?;
        drop(procs);
        let limit = (args.target_rss_mib * 1024.0 * 1024.0) as u64;
        report.memory_target_met = Some(t.memory.iter().all(|m| m.peak < limit));
        report.memory = Some(t);
        write(&args, &report)?;
    }

    print_table(&args, &report);
    let missed =
        report.throughput_target_met == Some(false) || report.memory_target_met == Some(false);
    if missed && args.strict {
        std::process::exit(3);
    }
    Ok(())
}

fn best_of(ts: &[Trial]) -> Trial {
    ts.iter()
        .max_by(|a, b| a.items_per_s.total_cmp(&b.items_per_s))
        .cloned()
        .expect("at least one trial")
}

fn write(args: &Args, report: &Report) -> Result<()> {
    std::fs::write(&args.out, serde_json::to_vec_pretty(report)?)?;
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn print_table(args: &Args, r: &Report) {
    let met = |m: Option<bool>| match m {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "–",
    };
    println!();
    println!(
        "| run | items | workers × concurrency | prefetch | fake latency | seconds | items/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for t in r
        .throughput
        .iter()
        .chain(r.latency.iter().map(|l| &l.trial))
        .chain(r.memory.iter())
    {
        println!(
            "| {} | {} | {} × {} | {} | {} ms | {:.2} | {:.0} |",
            t.name,
            t.done,
            t.workers,
            t.concurrency,
            t.prefetch,
            t.latency_ms,
            t.seconds,
            t.items_per_s
        );
    }
    println!();
    if let (Some(b), Some(p)) = (&r.best, &r.physical) {
        println!(
            "throughput: best {:.0} items/s ({} workers × concurrency {}, prefetch {}); physical limit {:.0} calls/s ({} tasks); ratio {:.2}; target ≥ {:.0}/s: {}",
            b.items_per_s,
            b.workers,
            b.concurrency,
            b.prefetch,
            p.calls_per_s,
            p.tasks,
            r.ratio_to_physical.unwrap_or(0.0),
            args.target_items_per_s,
            met(r.throughput_target_met)
        );
    }
    for p in r.celery.iter().chain(r.bullmq.iter()) {
        println!(
            "peer {}: {:.0} items/s ({} items in {:.2} s, {} processes × {}, producer {:.1} s)",
            p.name,
            p.items_per_s,
            p.items,
            p.seconds,
            p.processes,
            p.concurrency,
            p.producer_seconds
        );
    }
    if let Some(x) = r.ratio_to_celery {
        println!("tarefas ÷ celery: {x:.1}× (target ≥ 20×)");
    }
    if let Some(x) = r.ratio_to_bullmq {
        println!("tarefas ÷ bullmq: {x:.1}× (target ≥ 5×)");
    }
    for x in r.rate_tarefas.iter().chain(r.rate_bullmq.iter()) {
        println!(
            "rate {}: {} calls in {:.1} s = {:.2}/s ({:.3} of {}/s), worst one-second window {}",
            x.name,
            x.calls,
            x.span_seconds,
            x.achieved_per_s,
            x.achieved_ratio,
            x.limit_per_s,
            x.worst_window
        );
    }
    for l in &r.latency {
        println!(
            "latency {} ms, concurrency {}: {:.0} items/s vs ideal {:.0}: ratio {:.2}",
            l.trial.latency_ms,
            l.trial.concurrency,
            l.trial.items_per_s,
            l.ideal_items_per_s,
            l.ratio
        );
    }
    if let Some(m) = &r.memory {
        for (i, w) in m.memory.iter().enumerate() {
            println!(
                "memory worker {i} ({} items): peak {:.1} MiB, final {:.1} MiB, slope over the second half {:+.2} MiB per 100k items",
                m.done,
                mib(w.peak),
                mib(w.last),
                w.slope_per_100k_items / (1024.0 * 1024.0)
            );
        }
        println!(
            "memory target < {} MiB: {}",
            args.target_rss_mib,
            met(r.memory_target_met)
        );
    }
}
