//! `tarefas`: the one binary. It parses flags, then hands over to the library code of each
//! command; see `tarefas --help`.

mod input;
mod schedule;
mod task;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tarefas: scheduled bulk actions on Huggy.
///
/// An operator describes a tarefa (task) in a YAML or JSON file: a name and an objective, a
/// recurrence, a table (contacts or chats) filtered with E+ (all) and OU+ (any), and an
/// action (start a Flow, or a chat action). Tarefas calls Huggy once per matching record.
#[derive(Debug, Parser)]
#[command(name = "tarefas", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with task files and tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Look at when a recurrence fires.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
}

/// Exit status for input an operator must fix (an invalid file, a bad flag).
pub const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Task(cmd) => task::run(cmd),
        Command::Schedule(cmd) => schedule::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
