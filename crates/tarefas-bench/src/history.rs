//! `tarefas-bench history`: what months of run history cost (issue 16). Two databases of
//! their own, one **empty** and one holding `--items` run items (20,000,000) of finished
//! runs spread over months, generated with a few `INSERT … SELECT generate_series`
//! statements and kept between invocations:
//!
//! * **run list**: `runs::list` as `tarefas run list` and `GET /api/v1/runs` call it (the
//!   newest 20 of the account; the newest 20 of one task), interleaved between the two
//!   databases (A B, B A, …): median and p99 of each, and their ratio;
//! * **scheduler lateness**: the `scheduler` benchmark (`--sched-tasks` active tasks, its own
//!   measuring code, run as `tarefas-bench scheduler`) against each database: p99 and ratio;
//! * **prune throughput**: `tarefas prune --older-than … --json` (the real binary) deleting
//!   the oldest `--prune-items` items of the history; items/s from its own report. The
//!   history is topped up again on the next invocation.
//!
//! * **fan-out while pruning**: the fan-out benchmark's trial (`--fanout-items` contacts, two
//!   `tarefas worker` processes, the fake at 0 ms) on the history database, alone and then
//!   with a `tarefas prune` of `--prune-during-items` items started just before it: items/s
//!   and the p99 of each item's claim → recorded time (the batch statements included) from
//!   the run's own items.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use sqlx::PgPool;

use crate::db;
use crate::measure::median;

/// Options of `tarefas-bench history`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The database with the history (created if missing, kept between runs).
    #[arg(
        long,
        env = "TAREFAS_BENCH_HISTORY_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tarefas_bench_history"
    )]
    database_url: String,
    /// The empty database it is compared with (same tasks, no history).
    #[arg(
        long,
        env = "TAREFAS_BENCH_HISTORY_EMPTY_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tarefas_bench_history_empty"
    )]
    empty_database_url: String,
    /// Run items of history (finished runs of `--items-per-run` items each).
    #[arg(long, default_value_t = 20_000_000)]
    items: i64,
    /// Items per history run.
    #[arg(long, default_value_t = 10_000)]
    items_per_run: i64,
    /// Days the history's runs are spread over (the newest ended 1 day ago).
    #[arg(long, default_value_t = 180)]
    days: i64,
    /// Tasks of the history account (its runs go round-robin over them).
    #[arg(long, default_value_t = 50)]
    tasks: i64,
    /// Items the prune measurement deletes (the oldest runs; 0 skips it).
    #[arg(long, default_value_t = 2_000_000)]
    prune_items: i64,
    /// Contacts of the fan-out-while-pruning measurement (0 skips it).
    #[arg(long, default_value_t = 50_000)]
    fanout_items: u64,
    /// Items the prune running beside the fan-out deletes.
    #[arg(long, default_value_t = 4_000_000)]
    prune_during_items: i64,
    /// Concurrency of each of the two fan-out workers.
    #[arg(long, default_value_t = 256)]
    fanout_concurrency: usize,
    /// `run list` calls per database.
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Active tasks of the scheduler measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    sched_tasks: u64,
    /// The `tarefas` binary.
    #[arg(long, default_value = "target/release/tarefas")]
    tarefas: PathBuf,
    /// The prune throughput target, items/s.
    #[arg(long, default_value_t = 200_000.0)]
    target_prune_items_per_s: f64,
    /// The most the history may slow `run list` and the scheduler's p99 (ratio).
    #[arg(long, default_value_t = 1.10)]
    target_ratio: f64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/history.json")]
    out: PathBuf,
    /// Exit with status 3 when a target is missed.
    #[arg(long)]
    strict: bool,
}

const ACCOUNT: &str = "history";

#[derive(Debug, Serialize)]
struct Latency {
    median_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    items: i64,
    runs: i64,
    run_list_account: [Latency; 2],
    run_list_task: [Latency; 2],
    run_list_ratio: f64,
    sched_p99: Option<[f64; 2]>,
    sched_ratio: Option<f64>,
    prune: Option<serde_json::Value>,
    prune_items_per_s: Option<f64>,
    /// Fan-out alone, then beside a prune: (items/s, p99 claim → recorded ms).
    fanout: Option<[(f64, f64); 2]>,
    fanout_p99_ratio: Option<f64>,
    prune_during: Option<serde_json::Value>,
    generate_seconds: f64,
    targets_met: bool,
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[(((v.len() - 1) as f64) * q).round() as usize]
}

/// The history account and its tasks in `pool`: (account id, task ids).
async fn ensure_tasks(pool: &PgPool, n: i64) -> Result<(i64, Vec<i64>)> {
    let account: i64 = sqlx::query_scalar(
        "INSERT INTO accounts (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .bind(ACCOUNT)
    .fetch_one(pool)
    .await?;
    sqlx::query(
        "INSERT INTO tasks (account_id, name, definition, table_name, recurrence_kind, time_zone)
         SELECT $1, 'history-' || i, '{}', 'contacts', 'manual', 'UTC'
         FROM generate_series((SELECT count(*) FROM tasks WHERE account_id = $1) + 1, $2) i",
    )
    .bind(account)
    .bind(n)
    .execute(pool)
    .await?;
    let ids = sqlx::query_scalar("SELECT id FROM tasks WHERE account_id = $1 ORDER BY id")
        .bind(account)
        .fetch_all(pool)
        .await?;
    Ok((account, ids))
}

/// Tops the history up to `args.items` items: runs finished over `args.days` days, the
/// oldest first, then their items in statements of about 2,000,000 rows, each run's items
/// together as the planner writes them (pages of thousands).
async fn generate(pool: &PgPool, args: &Args, account: i64, tasks: &[i64]) -> Result<()> {
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE account_id = $1")
        .bind(account)
        .fetch_one(pool)
        .await?;
    let want = args.items / args.items_per_run;
    if have >= want {
        return Ok(());
    }
    eprintln!(
        "history: generating {} runs of {} items …",
        want - have,
        args.items_per_run
    );
    // Run k of `want` ends (want - k) steps before a day ago: the oldest first.
    let step_secs = (args.days - 1).max(1) as f64 * 86_400.0 / want as f64;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO runs (account_id, task_id, request_id, trigger, status, started_at, finished_at, planned, done)
         SELECT $1, ($2::bigint[])[1 + (k % cardinality($2::bigint[]))],
                'history-' || k || '-' || extract(epoch FROM now())::bigint, 'manual', 'done',
                f - interval '10 minutes', f, $5, $5
         FROM generate_series($3::bigint, $4::bigint - 1) k,
              LATERAL (SELECT now() - interval '1 day' - make_interval(secs => ($4 - k) * $6)) t(f)
         ORDER BY k RETURNING id",
    )
    .bind(account)
    .bind(tasks)
    .bind(have)
    .bind(want)
    .bind(args.items_per_run)
    .bind(step_secs)
    .fetch_all(pool)
    .await?;
    let per_statement = (2_000_000 / args.items_per_run).max(1) as usize;
    let started = Instant::now();
    let mut done = 0usize;
    for chunk in ids.chunks(per_statement) {
        sqlx::query(
            "INSERT INTO run_items (run_id, record_id, status, attempts, claimed_at, finished_at)
             SELECT r.id, 1000 + n, 'done', 1, r.finished_at - interval '1 minute', r.finished_at
             FROM runs r CROSS JOIN LATERAL generate_series(1, $2::bigint) n
             WHERE r.id = ANY($1) ORDER BY r.id, n",
        )
        .bind(chunk)
        .bind(args.items_per_run)
        .execute(pool)
        .await?;
        done += chunk.len();
        eprintln!(
            "history: {} of {} runs' items written ({:.0} items/s)",
            done,
            ids.len(),
            (done as i64 * args.items_per_run) as f64 / started.elapsed().as_secs_f64()
        );
    }
    sqlx::raw_sql("VACUUM (ANALYZE) runs, run_items")
        .execute(pool)
        .await?;
    Ok(())
}

/// `runs::list` latency in both databases, interleaved: (empty, full) for the account's
/// newest 20 and one task's newest 20.
async fn run_list(
    pools: [&PgPool; 2],
    accounts: [i64; 2],
    tasks: [i64; 2],
    reps: usize,
) -> Result<[[Latency; 2]; 2]> {
    let mut samples = vec![vec![Vec::new(); 2]; 2]; // [kind][db]
    for rep in 0..reps + 10 {
        let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for db in order {
            for (kind, task) in [(0, None), (1, Some(tasks[db]))] {
                let t = Instant::now();
                let list =
                    tarefas_store::runs::list(pools[db], Some(accounts[db]), task, 20).await?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                ensure!(list.len() == 20, "run list returned {}", list.len());
                if rep >= 10 {
                    samples[kind][db].push(ms);
                }
            }
        }
    }
    let lat = |xs: &[f64]| Latency {
        median_ms: median(xs),
        p99_ms: quantile(xs, 0.99),
    };
    Ok([
        [lat(&samples[0][0]), lat(&samples[0][1])],
        [lat(&samples[1][0]), lat(&samples[1][1])],
    ])
}

/// The scheduler benchmark against `url`: its p99 lateness, seconds.
fn sched_p99(args: &Args, url: &str, name: &str) -> Result<f64> {
    let out = PathBuf::from(format!("target/bench/history-scheduler-{name}.json"));
    let status = Command::new(std::env::current_exe()?)
        .args(["scheduler", "--minutes", "1", "--database-url", url])
        .args(["--tasks", &args.sched_tasks.to_string()])
        .arg("--tarefas")
        .arg(&args.tarefas)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running tarefas-bench scheduler")?;
    ensure!(
        status.success(),
        "tarefas-bench scheduler on {name}: {status}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    report["lateness_p99"]
        .as_f64()
        .context("scheduler report without lateness_p99")
}

/// `tarefas prune --json` of the oldest runs holding about `items` items, started now.
async fn start_prune(
    args: &Args,
    pool: &PgPool,
    account: i64,
    items: i64,
) -> Result<std::process::Child> {
    let n = (items / args.items_per_run).max(1);
    let cutoff: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT finished_at FROM runs WHERE account_id = $1 ORDER BY finished_at OFFSET $2 LIMIT 1",
    )
    .bind(account)
    .bind(n)
    .fetch_optional(pool)
    .await?;
    let cutoff = cutoff.context("not enough history to prune")?;
    let secs = (chrono::Utc::now() - cutoff).num_seconds().max(1);
    Command::new(&args.tarefas)
        .args(["prune", "--older-than", &format!("{secs}s"), "--json"])
        .env("TAREFAS_DATABASE_URL", &args.database_url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running tarefas prune")
}

/// Waits for a prune started by [`start_prune`]; its JSON report.
fn finish_prune(child: std::process::Child) -> Result<serde_json::Value> {
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "tarefas prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The fan-out trial alone, then beside a prune: (items/s, p99 ms) of each, and the prune's
/// report.
async fn fanout_beside_prune(
    args: &Args,
    pool: &PgPool,
    account: i64,
) -> Result<([(f64, f64); 2], serde_json::Value)> {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        fanout: crate::fanout::Args,
    }
    let fanout = Wrap::parse_from([
        "fanout",
        "--database-url",
        &args.database_url,
        "--queue-prefix",
        "bench-history",
        "--port",
        "18490",
        "--tarefas",
        &args.tarefas.to_string_lossy(),
    ])
    .fanout;
    let logs = PathBuf::from("target/bench/history-logs");
    std::fs::create_dir_all(&logs)?;
    let env = crate::fanout::Env {
        args: fanout,
        pool: pool.clone(),
        logs,
    };
    let n = args.fanout_items;
    let data = crate::fanout::ensure_account(&env, "historyfanout", n, 100_000).await?;
    // Run ids restart with a new database: the idempotency keys of an earlier invocation
    // would mark this one's items done.
    crate::fanout::forget_redis_keys(&env.args.redis_url, "bench-history").await?;
    let mut procs = crate::fanout::Procs::default();
    let huggy = env.fake(&mut procs, 18_490, n, 0).await?;
    let p99 = |run: i64| async move {
        let ms: f64 = sqlx::query_scalar(
            "SELECT (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - claimed_at)) * 1000)::float8
             FROM run_items WHERE run_id = $1",
        )
        .bind(run)
        .fetch_one(pool)
        .await?;
        anyhow::Ok(ms)
    };
    let c = args.fanout_concurrency;
    let alone = crate::fanout::trial(&env, "history-alone", &data, &huggy, 2, c, 8, 0).await?;
    let alone = (alone.items_per_s, p99(alone.run_id).await?);
    let prune = start_prune(args, pool, account, args.prune_during_items).await?;
    let beside = crate::fanout::trial(&env, "history-pruning", &data, &huggy, 2, c, 8, 0).await;
    let report = finish_prune(prune)?;
    let beside = beside?;
    let beside = (beside.items_per_s, p99(beside.run_id).await?);
    eprintln!(
        "history: fan-out alone {:.0} items/s, p99 {:.1} ms; beside the prune {:.0} items/s, p99 {:.1} ms; prune {report}",
        alone.0, alone.1, beside.0, beside.1
    );
    Ok(([alone, beside], report))
}

/// Runs the benchmark.
pub async fn run(args: Args) -> Result<()> {
    ensure!(
        args.tarefas.exists(),
        "{} not found: cargo build --release -p tarefas-cli",
        args.tarefas.display()
    );
    ensure!(
        args.items_per_run > 0 && args.items >= args.items_per_run,
        "--items, --items-per-run"
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let full = db::prepare(&args.database_url, 4).await?;
    let empty = db::prepare(&args.empty_database_url, 4).await?;
    let (acct_full, tasks_full) = ensure_tasks(&full, args.tasks).await?;
    let (acct_empty, tasks_empty) = ensure_tasks(&empty, args.tasks).await?;
    // The empty database has the tasks and recent runs, no history: 21 per task, so that
    // both lists (the account's newest 20, one task's newest 20) return as many rows in
    // both databases and the ratio measures the history, not the size of the answer.
    sqlx::raw_sql("TRUNCATE runs, run_items, run_claims, missed_fires")
        .execute(&empty)
        .await?;
    sqlx::query(
        "INSERT INTO runs (account_id, task_id, request_id, trigger, status, finished_at)
         SELECT $1, ($2::bigint[])[1 + (k % cardinality($2::bigint[]))], 'recent-' || k, 'manual', 'done', now()
         FROM generate_series(0, 21 * cardinality($2::bigint[]) - 1) k",
    )
    .bind(acct_empty)
    .bind(&tasks_empty)
    .execute(&empty)
    .await?;
    let generating = Instant::now();
    generate(&full, &args, acct_full, &tasks_full).await?;
    let generate_seconds = generating.elapsed().as_secs_f64();
    let (items, runs): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM run_items), (SELECT count(*) FROM runs)")
            .fetch_one(&full)
            .await?;
    eprintln!("history: {items} items in {runs} runs");

    let [account, task] = run_list(
        [&empty, &full],
        [acct_empty, acct_full],
        [tasks_empty[0], tasks_full[0]],
        args.reps,
    )
    .await?;
    let run_list_ratio =
        (account[1].median_ms / account[0].median_ms).max(task[1].median_ms / task[0].median_ms);

    let sched_p99 = if args.sched_tasks > 0 {
        let e = sched_p99(&args, &args.empty_database_url, "empty")?;
        let f = sched_p99(&args, &args.database_url, "history")?;
        Some([e, f])
    } else {
        None
    };
    let sched_ratio = sched_p99.map(|[e, f]| f / e);

    let prune = if args.prune_items > 0 {
        let child = start_prune(&args, &full, acct_full, args.prune_items).await?;
        Some(finish_prune(child)?)
    } else {
        None
    };
    let prune_items_per_s = prune
        .as_ref()
        .and_then(|p| Some(p["items"].as_f64()? / p["seconds"].as_f64()?.max(1e-9)));

    let (fanout, prune_during) = if args.fanout_items > 0 {
        let (f, p) = fanout_beside_prune(&args, &full, acct_full).await?;
        (Some(f), Some(p))
    } else {
        (None, None)
    };
    let fanout_p99_ratio = fanout.map(|[a, b]| b.1 / a.1);
    let targets_met = fanout_p99_ratio.is_none_or(|r| r <= 1.2)
        && run_list_ratio <= args.target_ratio
        && sched_ratio.is_none_or(|r| r <= args.target_ratio)
        && prune_items_per_s.is_none_or(|r| r >= args.target_prune_items_per_s);
    let report = Report {
        items,
        runs,
        run_list_account: account,
        run_list_task: task,
        run_list_ratio,
        sched_p99,
        sched_ratio,
        prune,
        prune_items_per_s,
        fanout,
        fanout_p99_ratio,
        prune_during,
        generate_seconds,
        targets_met,
    };
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!(
        "| measure ({} items of history) | empty | history | ratio | target | |",
        report.items
    );
    println!("| --- | ---: | ---: | ---: | --- | --- |");
    for (name, l) in [
        ("run list, account's newest 20", &report.run_list_account),
        ("run list, one task's newest 20", &report.run_list_task),
    ] {
        let ratio = l[1].median_ms / l[0].median_ms;
        println!(
            "| {name}: median (p99) | {:.2} ms ({:.2}) | {:.2} ms ({:.2}) | {ratio:.2} | ≤ {:.2} | {} |",
            l[0].median_ms, l[0].p99_ms, l[1].median_ms, l[1].p99_ms, args.target_ratio,
            verdict(ratio <= args.target_ratio)
        );
    }
    if let (Some([e, f]), Some(r)) = (report.sched_p99, report.sched_ratio) {
        println!(
            "| scheduler p99 lateness, {} tasks | {e:.3} s | {f:.3} s | {r:.2} | ≤ {:.2} | {} |",
            args.sched_tasks,
            args.target_ratio,
            verdict(r <= args.target_ratio)
        );
    }
    if let (Some(p), Some(rate)) = (&report.prune, report.prune_items_per_s) {
        println!(
            "| tarefas prune: {} items of {} runs in {:.2} s | – | {rate:.0} items/s | – | ≥ {:.0} items/s | {} |",
            p["items"], p["runs"], p["seconds"].as_f64().unwrap_or(0.0),
            args.target_prune_items_per_s,
            verdict(rate >= args.target_prune_items_per_s)
        );
    }
    if let (Some([a, b]), Some(r)) = (report.fanout, report.fanout_p99_ratio) {
        println!(
            "| fan-out of {} contacts, p99 claim → recorded (items/s): alone vs beside a prune | {:.1} ms ({:.0}/s) | {:.1} ms ({:.0}/s) | {r:.2} | ≤ 1.20 | {} |",
            args.fanout_items, a.1, a.0, b.1, b.0, verdict(r <= 1.2)
        );
    }
    if !report.targets_met && args.strict {
        std::process::exit(3);
    }
    Ok(())
}
