//! `tarefas schedule preview`: the next fire times of a task file's recurrence.

use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use tarefas_core::task::parse_schedule;

use crate::input::{print_problems, read_file};
use crate::EXIT_INVALID;

/// `tarefas schedule` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Print the next N fire times strictly after --from, one per line, in UTC (RFC 3339 with
    /// a Z); fewer when ends_on comes first, none for a manual task.
    ///
    /// The file may be a whole task file or hold only time_zone and recurrence. An interval
    /// recurrence (every_minutes, every_hours) without starts_at is anchored at --from, as if
    /// the task were created then.
    ///
    /// Example: tarefas schedule preview -f task.yaml --from 2026-12-01T00:00:00Z --count 5
    Preview(PreviewArgs),
}

/// Flags of `schedule preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The task file (YAML, or JSON when it ends in .json); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: String,
    /// Start after this instant (RFC 3339, e.g. 2026-12-01T00:00:00Z or 2026-12-01T09:00:00-03:00); default: now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    from: Option<DateTime<Utc>>,
    /// How many fire times to print (at most 10000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    count: u32,
    /// Print a JSON array of the times instead of lines.
    #[arg(long)]
    json: bool,
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{s:?} is not an RFC 3339 date-time such as 2026-12-01T00:00:00Z ({e})")
        })
}

/// Runs a `schedule` subcommand.
pub fn run(cmd: ScheduleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ScheduleCommand::Preview(args) => Ok(preview(&args)),
    }
}

fn preview(args: &PreviewArgs) -> ExitCode {
    let spec = match read_file(&args.file).and_then(|(text, format)| parse_schedule(&text, format))
    {
        Ok(spec) => spec,
        Err(problems) => {
            print_problems(&args.file, &problems, args.json);
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let from = args.from.unwrap_or_else(Utc::now);
    let fires = spec
        .recurrence
        .preview(spec.time_zone, from, args.count as usize);
    let lines: Vec<String> = fires
        .iter()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .collect();
    if args.json {
        println!("{}", serde_json::json!(lines));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    ExitCode::SUCCESS
}
