//! `tarefas-bench`: the benchmarks of Tarefas, each a subcommand that measures Tarefas against
//! a hand-written baseline **in the same run** and reports the ratio (the machines are shared
//! and noisy, so absolute times are context only).
//!
//! * `segment`: counting and streaming a compound segment over 1,000,000 mirrored contacts,
//!   against the same query written by hand in SQL; memory while streaming.
//! * `fanout`: the whole pipeline run by the real `tarefas` binary against its fake Huggy:
//!   items/s against Celery, BullMQ and a bare HTTP loop, rate-limit precision against
//!   BullMQ's limiter, items/s against concurrency ÷ latency, worker memory;
//! * `planning`: a compound segment over 1M contacts planned into run items vs one
//!   hand-written `INSERT … SELECT`;
//! * `scheduler`: 100,000 active tasks, a third due each minute: lateness, CPU;
//! * `history`: 20,000,000 run items of history against an empty database: `run list`
//!   latency, the scheduler's p99 lateness, `tarefas prune` items/s;
//! * `report`: the one summary table of all of them and a chart (SVG).
//!
//! Each subcommand prints a table and writes a JSON file under `target/bench/`;
//! `scripts/bench.sh` runs them all (`make bench`) and `docs/benchmarks.md` reports them.

mod contacts;
mod db;
mod fanout;
mod history;
mod measure;
mod peers;
mod planning;
mod procfs;
mod report;
mod sched;
mod segment;

use clap::{Parser, Subcommand};

/// Benchmarks of Tarefas, as ratios against hand-written baselines taken in one run.
#[derive(Debug, Parser)]
#[command(name = "tarefas-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Count and stream a compound segment over 1M contacts vs hand-written SQL.
    Segment(segment::Args),
    /// Fan-out end to end (real binary, fake Huggy) beside Celery and BullMQ and the
    /// physical limit; rate-limit precision; latency-bound; worker memory.
    Fanout(Box<fanout::Args>),
    /// Planning the compound segment into run items vs one hand-written INSERT … SELECT.
    Planning(planning::Args),
    /// The scheduler with 100,000 active tasks: lateness of the fires, its CPU.
    Scheduler(sched::Args),
    /// Months of run history (20M items) vs an empty database: run list, scheduler
    /// lateness; prune throughput.
    History(history::Args),
    /// Reads the benchmarks' JSON reports: prints the one summary table, writes the chart.
    Report(report::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Segment(args) => runtime.block_on(segment::run(args)),
        Command::Fanout(args) => runtime.block_on(fanout::run(*args)),
        Command::Planning(args) => runtime.block_on(planning::run(args)),
        Command::Scheduler(args) => runtime.block_on(sched::run(args)),
        Command::History(args) => runtime.block_on(history::run(args)),
        Command::Report(args) => report::run(args),
    }
}
