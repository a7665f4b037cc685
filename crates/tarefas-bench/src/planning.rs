//! `tarefas-bench planning`: the compound segment over the 1,000,000 contacts of the
//! segment benchmark (run `segment` first: it loads them) planned into run items by the
//! worker's own planner ([`tarefas_worker::plan`]: the run, keyset pages of 5,000 ids, one
//! transaction per page inserting the items and their `ItemBatch` messages into the outbox,
//! the cursor checkpointed), against the same thing written by hand: the run row, then one
//! `INSERT INTO run_items … SELECT id FROM contacts WHERE <the hand-written condition>`.
//!
//! Pairs are interleaved (A B, B A, …) after a warm-up of each; the medians and their ratio
//! are reported. Every planned run is checked against a count of the hand-written condition
//! at the run's start; runs and outbox rows are deleted after each measurement (not timed).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tarefas_core::task::{parse_task, Format};
use tarefas_proto::v1::{ExecuteTask, Trigger};
use tarefas_store::runs::{self, NewRun};
use tarefas_store::{accounts, tasks};
use tarefas_worker::{plan, PlanConfig, Planned};

use crate::db;
use crate::measure::{secs, Comparison, Samples};
use crate::segment::COMPOUND;

/// Options of `tarefas-bench planning`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The segment benchmark's database (its data must be loaded: run `segment` first).
    #[arg(
        long,
        env = "TAREFAS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tarefas_bench"
    )]
    database_url: String,
    /// Interleaved pairs.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// The most Tarefas may take, as a multiple of the hand-written SQL.
    #[arg(long, default_value_t = 1.5)]
    target_ratio: f64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/planning.json")]
    out: PathBuf,
    /// Exit with status 3 when the target is missed.
    #[arg(long)]
    strict: bool,
}

const ACCOUNT: &str = "bench-a";

#[derive(Debug, Serialize)]
struct Report {
    items: i64,
    comparison: Comparison,
    target_met: bool,
}

fn hand_insert_sql() -> String {
    // The hand-written condition, with now() bound to the run's start ($3) so that both
    // sides select the same rows.
    let cond = COMPOUND.hand_where.replace("now()", "$3::timestamptz");
    format!("INSERT INTO run_items (run_id, record_id) SELECT $2, id FROM contacts WHERE {cond}")
}

fn hand_count_sql() -> String {
    let cond = COMPOUND.hand_where.replace("now()", "$2::timestamptz");
    format!("SELECT count(*) FROM contacts WHERE {cond}")
}

async fn expected(pool: &PgPool, account: i64, at: DateTime<Utc>) -> Result<i64> {
    Ok(sqlx::query_scalar(&hand_count_sql())
        .bind(account)
        .bind(at)
        .fetch_one(pool)
        .await?)
}

async fn cleanup(pool: &PgPool, run_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM runs WHERE id = $1")
        .bind(run_id)
        .execute(pool)
        .await?;
    sqlx::raw_sql("TRUNCATE outbox").execute(pool).await?;
    Ok(())
}

/// Tarefas: the worker's planner. Its time and the run's item count.
async fn tarefas(pool: &PgPool, account: i64, task_id: i64, n: usize) -> Result<(Duration, i64)> {
    let msg = ExecuteTask {
        schema_version: tarefas_proto::SCHEMA_VERSION,
        task_id,
        account: ACCOUNT.to_string(),
        request_id: format!("bench-planning-{}-{n}", Utc::now().timestamp_micros()),
        trigger: Trigger::Manual as i32,
        scheduled_for_unix_ms: 0,
        requested_by: "tarefas-bench".into(),
        requested_at_unix_ms: Utc::now().timestamp_millis(),
        trace_context: Default::default(),
    };
    let started = Instant::now();
    let planned = plan(pool, &msg, &PlanConfig::default()).await?;
    let took = started.elapsed();
    let Planned::Run { run_id, items } = planned else {
        bail!("planning gave {planned:?}");
    };
    let run = runs::get(pool, None, run_id).await?;
    let want = expected(pool, account, run.started_at).await?;
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await?;
    cleanup(pool, run_id).await?;
    ensure!(
        items == want,
        "the planner froze {items} items, the hand-written condition counts {want}"
    );
    ensure!(
        outbox == (items + 99) / 100,
        "{outbox} batch messages for {items} items"
    );
    Ok((took, items))
}

/// By hand: the run row, then one INSERT … SELECT.
async fn hand(pool: &PgPool, account: i64, task_id: i64, n: usize) -> Result<(Duration, i64)> {
    let request = format!("bench-planning-hand-{}-{n}", Utc::now().timestamp_micros());
    let started = Instant::now();
    let (run, _) = runs::create_or_get(
        pool,
        &NewRun {
            account_id: account,
            task_id,
            request_id: &request,
            trigger: "manual",
            scheduled_for: None,
            requested_by: Some("tarefas-bench"),
        },
    )
    .await?;
    let inserted = sqlx::query(&hand_insert_sql())
        .bind(account)
        .bind(run.id)
        .bind(run.started_at)
        .execute(pool)
        .await?
        .rows_affected() as i64;
    let took = started.elapsed();
    let want = expected(pool, account, run.started_at).await?;
    cleanup(pool, run.id).await?;
    ensure!(
        inserted == want,
        "the hand INSERT wrote {inserted} items, the count is {want}"
    );
    Ok((took, inserted))
}

/// Runs the benchmark.
pub async fn run(args: Args) -> Result<()> {
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let pool = db::prepare(&args.database_url, 4).await?;
    let account = accounts::by_name(&pool, ACCOUNT)
        .await
        .context("the segment data is not loaded: run `tarefas-bench segment` first")?
        .id;
    let contacts: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE account_id = $1")
        .bind(account)
        .fetch_one(&pool)
        .await?;
    ensure!(
        contacts > 0,
        "account {ACCOUNT} has no contacts: run `tarefas-bench segment` first"
    );
    let task_id: i64 = match sqlx::query_scalar(
        "SELECT id FROM tasks WHERE account_id = $1 AND name = 'planning' ORDER BY id LIMIT 1",
    )
    .bind(account)
    .fetch_optional(&pool)
    .await?
    {
        Some(id) => id,
        None => {
            let filter: String = COMPOUND
                .filter_yaml
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect();
            let yaml = format!(
                "name: planning\naccount: {ACCOUNT}\ntime_zone: UTC\ntable: contacts\nfilter:\n{filter}\
                 action:\n  flow: {{project: 1, flow: 42, channel: \"5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11\"}}\n"
            );
            let spec = parse_task(&yaml, Format::Yaml)
                .map_err(|p| anyhow::anyhow!("planning task: {p}"))?;
            tasks::create(&pool, account, &spec, Utc::now()).await?.id
        }
    };
    // Leftovers of an interrupted run.
    sqlx::query("DELETE FROM runs WHERE task_id = $1")
        .bind(task_id)
        .execute(&pool)
        .await?;
    sqlx::raw_sql("TRUNCATE outbox").execute(&pool).await?;

    eprintln!("planning: {contacts} contacts, warm-up …");
    tarefas(&pool, account, task_id, 0).await?;
    hand(&pool, account, task_id, 0).await?;
    let (mut a, mut b) = (Samples::default(), Samples::default());
    let mut items = 0;
    for i in 0..args.reps {
        let (ta, tb) = if i % 2 == 0 {
            let x = tarefas(&pool, account, task_id, i + 1).await?;
            let y = hand(&pool, account, task_id, i + 1).await?;
            (x, y)
        } else {
            let y = hand(&pool, account, task_id, i + 1).await?;
            let x = tarefas(&pool, account, task_id, i + 1).await?;
            (x, y)
        };
        items = ta.1;
        a.push(ta.0);
        b.push(tb.0);
        eprintln!(
            "planning: pair {}: tarefas {}, hand {}",
            i + 1,
            secs(ta.0.as_secs_f64()),
            secs(tb.0.as_secs_f64())
        );
    }
    let comparison = Comparison::new(
        &format!("plan the compound segment ({items} of {contacts} contacts) into run items"),
        a,
        b,
        Some(args.target_ratio),
    );
    let report = Report {
        items,
        target_met: comparison.met(),
        comparison,
    };
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    let c = &report.comparison;
    println!();
    println!("| measure | pairs | Tarefas | hand SQL | ratio | pair ratios | target |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    println!(
        "| {} | {} | {} | {} | {:.2} | {:.2}–{:.2} | ≤ {}: {} |",
        c.name,
        c.tarefas.0.len(),
        secs(c.tarefas.median()),
        secs(c.hand.median()),
        c.ratio,
        c.pair_ratio_min,
        c.pair_ratio_max,
        args.target_ratio,
        if report.target_met { "met" } else { "MISSED" }
    );
    if !report.target_met && args.strict {
        std::process::exit(3);
    }
    Ok(())
}
