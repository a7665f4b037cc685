//! `tarefas-bench scheduler`: 100,000 active tasks, a third of them due each minute
//! (`cron` `0-59/3`, `1-59/3`, `2-59/3`), fired by the real `tarefas scheduler` process.
//!
//! * **lateness** of each emitted fire: when the benchmark saw its `ExecuteTask` in the
//!   outbox (polled every 100 ms, so at most 100 ms late itself: an upper bound, commit
//!   included) minus the minute it was scheduled for; also from the row's `created_at` (the
//!   scheduler transaction's start, a lower bound). p50, p99 and the worst;
//! * **CPU** of the scheduler process (`utime + stime` from `/proc/PID/stat`) over the
//!   measured minutes, as a share of one core and per 1,000 fires.
//!
//! The tasks are kept between runs in the benchmark's own database; each run moves every
//! task's next fire to its next minute and starts from an empty outbox.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Timelike, Utc};
use serde::Serialize;
use tarefas_core::task::{parse_task, Format};
use tarefas_store::accounts::{self, NewAccount};
use tarefas_store::tasks;

use crate::db;
use crate::measure::median;
use crate::procfs::{cpu_of, rss_of};

/// Options of `tarefas-bench scheduler`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The benchmark's own database (created if missing, kept between runs).
    #[arg(
        long,
        env = "TAREFAS_BENCH_SCHED_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tarefas_bench_sched"
    )]
    database_url: String,
    /// Active tasks.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Minutes measured (each fires a third of the tasks).
    #[arg(long, default_value_t = 2)]
    minutes: u32,
    /// The `tarefas` binary.
    #[arg(long, default_value = "target/release/tarefas")]
    tarefas: PathBuf,
    /// Extra arguments for `tarefas scheduler` (e.g. "--batch 1000").
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    scheduler_args: String,
    /// The p99 lateness target, seconds.
    #[arg(long, default_value_t = 1.0)]
    target_p99_secs: f64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/scheduler.json")]
    out: PathBuf,
    /// Exit with status 3 when the target is missed.
    #[arg(long)]
    strict: bool,
}

const ACCOUNT: &str = "sched";
const EXPRS: [&str; 3] = ["0-59/3 * * * *", "1-59/3 * * * *", "2-59/3 * * * *"];

/// The result.
#[derive(Debug, Serialize)]
struct Report {
    tasks: u64,
    minutes: Vec<MinuteResult>,
    fires: usize,
    /// Seen in the outbox − scheduled (upper bound), seconds.
    lateness_p50: f64,
    lateness_p99: f64,
    lateness_max: f64,
    /// Row `created_at` − scheduled (lower bound), seconds.
    created_p50: f64,
    created_p99: f64,
    /// CPU seconds (user + system) of the scheduler over the measured window.
    cpu_seconds: f64,
    /// Wall seconds of the measured window (from the first fire's minute to the last fire seen).
    wall_seconds: f64,
    /// cpu ÷ wall.
    cpu_share: f64,
    cpu_ms_per_1000_fires: f64,
    /// Peak resident memory of the scheduler, bytes.
    peak_rss: u64,
    target_met: bool,
}

#[derive(Debug, Serialize)]
struct MinuteResult {
    minute: DateTime<Utc>,
    fires: usize,
    lateness_p50: f64,
    lateness_p99: f64,
    lateness_max: f64,
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Runs the benchmark.
pub async fn run(args: Args) -> Result<()> {
    ensure!(
        args.tarefas.exists(),
        "{} not found: cargo build --release -p tarefas-cli",
        args.tarefas.display()
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let pool = db::prepare(&args.database_url, 4).await?;
    let account = match accounts::by_name(&pool, ACCOUNT).await {
        Ok(a) => a.id,
        Err(_) => {
            accounts::add(
                &pool,
                &NewAccount {
                    name: ACCOUNT.to_string(),
                    company_id: None,
                    token_ref: None,
                    webhook_token_ref: None,
                    rate_limit_per_s: 10,
                },
            )
            .await?
            .id
        }
    };
    // Three templates, then copies of them up to the number of tasks.
    let mut templates = Vec::new();
    for (g, expr) in EXPRS.iter().enumerate() {
        let name = format!("sched-{g}");
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE account_id = $1 AND name = $2 ORDER BY id LIMIT 1",
        )
        .bind(account)
        .bind(&name)
        .fetch_optional(&pool)
        .await?;
        let id = match existing {
            Some(id) => id,
            None => {
                let yaml = format!(
                    "name: {name}\naccount: {ACCOUNT}\ntime_zone: UTC\nrecurrence: {{kind: cron, expr: \"{expr}\"}}\n\
                     table: contacts\naction:\n  flow: {{project: 1, flow: 42, channel: \"5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11\"}}\n"
                );
                let spec = parse_task(&yaml, Format::Yaml)
                    .map_err(|p| anyhow::anyhow!("template task: {p}"))?;
                tasks::create(&pool, account, &spec, Utc::now()).await?.id
            }
        };
        templates.push((name, id));
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE account_id = $1")
        .bind(account)
        .fetch_one(&pool)
        .await?;
    if count as u64 != args.tasks {
        eprintln!("scheduler: making {} tasks …", args.tasks);
        let ids: Vec<i64> = templates.iter().map(|t| t.1).collect();
        sqlx::query("DELETE FROM tasks WHERE account_id = $1 AND id <> ALL($2)")
            .bind(account)
            .bind(&ids)
            .execute(&pool)
            .await?;
        // Copies round-robin over the three templates: thirds within one task.
        sqlx::query(
            "INSERT INTO tasks (account_id, name, objective, definition, table_name, recurrence_kind,
                                time_zone, next_fire_at, created_at, updated_at)
             SELECT t.account_id, t.name, t.objective, t.definition, t.table_name, t.recurrence_kind,
                    t.time_zone, t.next_fire_at, t.created_at, t.updated_at
             FROM generate_series(3, $2::bigint - 1) AS i
             JOIN tasks t ON t.id = ($3::bigint[])[(i % 3) + 1]",
        )
        .bind(account)
        .bind(args.tasks as i64)
        .bind(&ids)
        .execute(&pool)
        .await?;
        sqlx::raw_sql("VACUUM (ANALYZE) tasks")
            .execute(&pool)
            .await?;
    }
    // Every task to its next fire: the first minute at least 10 s away.
    let now = Utc::now();
    let first_minute = {
        let m = now
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .context("minute")?
            + chrono::Duration::minutes(1);
        if (m - now).num_seconds() < 10 {
            m + chrono::Duration::minutes(1)
        } else {
            m
        }
    };
    sqlx::raw_sql("TRUNCATE outbox, missed_fires")
        .execute(&pool)
        .await?;
    let mut expected: HashMap<DateTime<Utc>, i64> = HashMap::new();
    for g in 0..3 {
        let fire = first_minute + chrono::Duration::minutes(g);
        let n = sqlx::query(
            "UPDATE tasks SET next_fire_at = $3, last_fire_at = NULL, status = 'active'
             WHERE account_id = $1 AND name = $2",
        )
        .bind(account)
        .bind(format!("sched-{}", fire.minute() % 3))
        .bind(fire)
        .execute(&pool)
        .await?
        .rows_affected();
        expected.insert(fire, n as i64);
    }
    let measured: Vec<DateTime<Utc>> = (0..args.minutes)
        .map(|i| first_minute + chrono::Duration::minutes(i64::from(i)))
        .collect();
    ensure!(
        args.minutes <= 3,
        "--minutes: at most 3 (each task fires every third minute)"
    );

    let logs = PathBuf::from("target/bench/scheduler-logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join("scheduler.log"))?;
    let mut cmd = Command::new(&args.tarefas);
    cmd.arg("scheduler")
        .args(args.scheduler_args.split_whitespace())
        .env("TAREFAS_DATABASE_URL", &args.database_url)
        .env("DATABASE_URL", &args.database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = Kill(cmd.spawn().context("starting tarefas scheduler")?);
    let pid = child.0.id();
    eprintln!(
        "scheduler: {} tasks, measuring the fires of {} minute(s) from {first_minute} ({} s from now)",
        args.tasks,
        args.minutes,
        (first_minute - Utc::now()).num_seconds()
    );
    // CPU from the start of the first measured minute (idle ticks before it count too:
    // they are part of what the scheduler costs).
    while Utc::now() < first_minute - chrono::Duration::seconds(1) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(status) = child.0.try_wait()? {
            bail!("the scheduler exited: {status} (see target/bench/scheduler-logs)");
        }
    }
    let cpu0 = cpu_of(pid);
    let wall0 = Instant::now();
    let mut peak_rss = 0;
    // Ids come from a sequence at insert, but concurrent transactions commit out of order:
    // a row may appear after rows with higher ids were read. So each poll reads the rows
    // past the highest id read, and the ids skipped below it (`gaps`: a transaction still
    // in flight, or one rolled back), each run of them as one range scan of the key.
    let mut last_id = 0i64;
    let mut gaps = std::collections::BTreeSet::<i64>::new();
    let mut seen: Vec<(DateTime<Utc>, f64, f64)> = Vec::new(); // (scheduled, seen late, created late)
    let total_expected: i64 = measured
        .iter()
        .map(|m| expected.get(m).copied().unwrap_or(0))
        .sum();
    let deadline = Instant::now() + Duration::from_secs(60 * u64::from(args.minutes) + 120);
    let mut seen_measured = 0i64;
    while seen_measured < total_expected {
        ensure!(
            Instant::now() < deadline,
            "scheduler: only {seen_measured} of {total_expected} fires seen"
        );
        if let Some(status) = child.0.try_wait()? {
            bail!("the scheduler exited: {status} (see target/bench/scheduler-logs)");
        }
        peak_rss = peak_rss.max(rss_of(pid));
        let mut ranges = vec![(last_id + 1, i64::MAX)];
        for &id in &gaps {
            match ranges.last_mut() {
                Some((_, end)) if *end == id - 1 => *end = id,
                _ => ranges.push((id, id)),
            }
        }
        let mut rows: Vec<(i64, Vec<u8>, DateTime<Utc>)> = Vec::new();
        for (from, to) in ranges {
            rows.extend(
                sqlx::query_as::<_, (i64, Vec<u8>, DateTime<Utc>)>(
                    "SELECT id, payload, created_at FROM outbox WHERE id BETWEEN $1 AND $2",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&pool)
                .await?,
            );
        }
        rows.sort_by_key(|(id, _, _)| *id);
        let at = Utc::now();
        for (id, payload, created) in rows {
            if id > last_id {
                gaps.extend(last_id + 1..id);
                last_id = id;
            } else if !gaps.remove(&id) {
                continue;
            }
            let msg = tarefas_proto::decode_execute_task(&payload)?;
            let fire = DateTime::<Utc>::from_timestamp_millis(msg.scheduled_for_unix_ms)
                .context("fire time")?;
            let secs = |d: chrono::Duration| d.num_microseconds().unwrap_or(0) as f64 / 1e6;
            seen.push((fire, secs(at - fire), secs(created - fire)));
            if measured.contains(&fire) {
                seen_measured += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = cpu_of(pid) - cpu0;
    drop(child);
    let missed: i64 = sqlx::query_scalar("SELECT count(*) FROM missed_fires")
        .fetch_one(&pool)
        .await?;
    ensure!(missed == 0, "{missed} fires recorded as missed");

    let in_measured: Vec<&(DateTime<Utc>, f64, f64)> =
        seen.iter().filter(|s| measured.contains(&s.0)).collect();
    let late: Vec<f64> = in_measured.iter().map(|s| s.1).collect();
    let created: Vec<f64> = in_measured.iter().map(|s| s.2).collect();
    let minutes = measured
        .iter()
        .map(|m| {
            let l: Vec<f64> = in_measured
                .iter()
                .filter(|s| s.0 == *m)
                .map(|s| s.1)
                .collect();
            MinuteResult {
                minute: *m,
                fires: l.len(),
                lateness_p50: median(&l),
                lateness_p99: quantile(&l, 0.99),
                lateness_max: quantile(&l, 1.0),
            }
        })
        .collect();
    let report = Report {
        tasks: args.tasks,
        minutes,
        fires: late.len(),
        lateness_p50: median(&late),
        lateness_p99: quantile(&late, 0.99),
        lateness_max: quantile(&late, 1.0),
        created_p50: median(&created),
        created_p99: quantile(&created, 0.99),
        cpu_seconds: cpu,
        wall_seconds: wall,
        cpu_share: cpu / wall,
        cpu_ms_per_1000_fires: cpu * 1e3 / (late.len().max(1) as f64 / 1000.0),
        peak_rss,
        target_met: quantile(&late, 0.99) <= args.target_p99_secs,
    };
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    println!();
    println!("| minute | fires | lateness p50 | p99 | max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for m in &report.minutes {
        println!(
            "| {} | {} | {:.3} s | {:.3} s | {:.3} s |",
            m.minute.format("%H:%M"),
            m.fires,
            m.lateness_p50,
            m.lateness_p99,
            m.lateness_max
        );
    }
    println!(
        "scheduler: {} fires, lateness p50 {:.3} s, p99 {:.3} s (target ≤ {} s: {}); from created_at p50 {:.3} s, p99 {:.3} s; CPU {:.2} s over {:.1} s = {:.1}% of a core, {:.1} ms per 1,000 fires; peak RSS {:.1} MiB",
        report.fires,
        report.lateness_p50,
        report.lateness_p99,
        args.target_p99_secs,
        if report.target_met { "met" } else { "MISSED" },
        report.created_p50,
        report.created_p99,
        report.cpu_seconds,
        report.wall_seconds,
        report.cpu_share * 100.0,
        report.cpu_ms_per_1000_fires,
        report.peak_rss as f64 / 1048576.0
    );
    if !report.target_met && args.strict {
        std::process::exit(3);
    }
    Ok(())
}
