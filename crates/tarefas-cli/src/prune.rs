//! `tarefas prune`: deletes the history older than the retention — finished runs with
//! their items and claims, missed fires, long-revoked API tokens, deleted tasks left with
//! no run — in bounded batches, never touching a live run (`tarefas_store::prune`).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use clap::Args;
use tarefas_store::prune::{prune, PruneOptions, PruneReport, DEFAULT_BATCH};

use crate::db::DbArgs;
use crate::output;

/// Parses a retention such as `30d`, `12h`, `90m` (or `500ms`, `30s`) into a positive age.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let age = crate::services::parse_duration(s)?;
    if age.is_zero() {
        return Err(format!("{s:?}: the age must be more than zero"));
    }
    Ok(age)
}

/// A period that may be off (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Option<Duration>);

/// Parses a period such as `1h`; `0` or `off` disable it.
pub fn parse_period(s: &str) -> Result<Period, String> {
    match s.trim() {
        "0" | "off" => Ok(Period(None)),
        other => crate::services::parse_duration(other)
            .map_err(|e| format!("{e}, or 0/off to disable"))
            .map(|d| Period((!d.is_zero()).then_some(d))),
    }
}

/// The retention as a chrono duration (for cutoffs).
pub fn chrono_age(age: Duration) -> anyhow::Result<chrono::Duration> {
    chrono::Duration::from_std(age).map_err(|_| anyhow::anyhow!("retention {age:?} is too long"))
}

/// Flags of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete the history that ended longer ago than this: finished runs (done,
    /// done_with_errors, cancelled, failed) with their items and claims, missed fires, API
    /// tokens revoked that long ago, and deleted tasks with no run left. Runs still
    /// planning, running or paused are never touched, however old. E.g. 30d, 12h, 90m.
    #[arg(
        long,
        env = "TAREFAS_RETENTION",
        default_value = "30d",
        value_parser = parse_age
    )]
    older_than: Duration,
    /// Rows deleted per statement (each statement is its own short transaction).
    #[arg(long, default_value_t = DEFAULT_BATCH, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    batch: i64,
    /// Pause between two statements, to leave Postgres room for live work (e.g. 20ms).
    #[arg(long, default_value = "0ms", value_parser = crate::services::parse_duration)]
    pause: Duration,
    /// Print the summary as one JSON object (counts per kind, seconds).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Runs `prune`: progress on standard error when it is a terminal, then the summary.
pub async fn run(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let cutoff = chrono::Utc::now() - chrono_age(args.older_than)?;
    let pool = args.db.pool().await?;
    let mut conn = pool.acquire().await?;
    let options = PruneOptions {
        cutoff,
        batch: args.batch,
        pause: args.pause,
    };
    let tty = std::io::stderr().is_terminal();
    let mut shown = Instant::now();
    let mut shown_any = false;
    let report = prune(&mut conn, &options, |r: &PruneReport| {
        if tty && shown.elapsed() >= Duration::from_millis(500) {
            shown = Instant::now();
            shown_any = true;
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\rpruning: {} runs, {} items ({:.0} items/s), {:.0} s   ",
                r.runs,
                r.items,
                r.items_per_s(),
                r.seconds
            );
            let _ = err.flush();
        }
    })
    .await?;
    if shown_any {
        eprintln!();
    }
    if args.json {
        output::json(&report)?;
    } else {
        println!(
            "pruned the history that ended before {}: {} runs, {} items, {} claims, {} missed fires, {} revoked API tokens, {} deleted tasks in {:.1} s ({:.0} items/s)",
            cutoff.to_rfc3339_opts(SecondsFormat::Secs, true),
            report.runs,
            report.items,
            report.claims,
            report.missed_fires,
            report.api_tokens,
            report.tasks,
            report.seconds,
            report.items_per_s()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_periods() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(90 * 60)));
        assert!(parse_age("0d").is_err());
        assert!(parse_age("30").unwrap_err().contains("30d"));
        assert!(parse_age("-1d").is_err());
        assert_eq!(parse_period("off"), Ok(Period(None)));
        assert_eq!(parse_period("0"), Ok(Period(None)));
        assert_eq!(parse_period("0s"), Ok(Period(None)));
        assert_eq!(
            parse_period("1h"),
            Ok(Period(Some(Duration::from_secs(3600))))
        );
        assert!(parse_period("hourly").unwrap_err().contains("off"));
    }
}
