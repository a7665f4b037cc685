//! `tarefas-bench`: the benchmarks of Tarefas, each a subcommand that measures Tarefas against
//! a hand-written baseline **in the same run** and reports the ratio (the machines are shared
//! and noisy, so absolute times are context only).
//!
//! * `segment`: counting and streaming a compound segment over 1,000,000 mirrored contacts,
//!   against the same query written by hand in SQL; memory while streaming.
//! * `fanout`: the whole pipeline run by the real `tarefas` binary against its fake Huggy:
//!   items/s against a bare HTTP loop, against concurrency ÷ latency, worker memory.
//!
//! Each subcommand prints a table and writes a JSON file under `target/bench/`;
//! `scripts/bench.sh` runs them all (`make bench`) and `docs/benchmarks.md` reports them.

mod contacts;
mod db;
mod fanout;
mod measure;
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
    /// Fan-out end to end (real binary, fake Huggy): throughput, latency-bound, memory.
    Fanout(fanout::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Segment(args) => runtime.block_on(segment::run(args)),
        Command::Fanout(args) => runtime.block_on(fanout::run(args)),
    }
}
