//! `tarefas task …`: the admin commands on task files and tasks.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use tarefas_core::task::parse_task;

use crate::input::{print_problems, read_file};
use crate::EXIT_INVALID;

/// `tarefas task` subcommands.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Check a task file: prints `ok`, or one line per problem (`path: what is wrong`) and
    /// exits with status 2. Every problem is reported, not only the first.
    ///
    /// Example: tarefas task validate -f examples/contacts-flow-month-day.yaml
    Validate(ValidateArgs),
}

/// Flags of `task validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The task file (YAML, or JSON when it ends in .json); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: String,
    /// Print the result as JSON: {"ok": true} or {"ok": false, "problems": [{path, message}]}.
    #[arg(long)]
    json: bool,
}

/// Runs a `task` subcommand.
pub fn run(cmd: TaskCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TaskCommand::Validate(args) => Ok(validate(&args)),
    }
}

fn validate(args: &ValidateArgs) -> ExitCode {
    let result = read_file(&args.file).and_then(|(text, format)| parse_task(&text, format));
    match result {
        Ok(_) => {
            if args.json {
                println!("{}", serde_json::json!({ "ok": true }));
            } else {
                println!("ok");
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&args.file, &problems, args.json);
            ExitCode::from(EXIT_INVALID)
        }
    }
}
