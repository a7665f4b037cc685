//! `tarefas account …`: the Huggy accounts Tarefas works for.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use tarefas_store::accounts::{self, NewAccount, SecretRef};

use crate::db::DbArgs;
use crate::output;

/// `tarefas account` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Add a Huggy account. Its API token is never stored: Tarefas stores where to read it
    /// (an environment variable or a file, e.g. a mounted Kubernetes Secret) and every
    /// service reads it from there at run time.
    ///
    /// Example: tarefas account add acme --token-env ACME_HUGGY_TOKEN --rate-limit 20/s
    Add(AddArgs),
    /// List the accounts.
    List(ListArgs),
    /// Change an account's guards: the frequency cap per contact, the audience guard, the
    /// quiet hours and the opt-out words. Workers apply them within seconds, without a
    /// restart.
    ///
    /// Example: tarefas account update acme --max-flows-per-contact 3/7d --max-records 5000
    Update(crate::safety::UpdateArgs),
}

/// Flags of `account add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Account name: 1 to 64 letters, digits, "_", "-" or ".".
    account: String,
    /// Huggy company id, for accounts that manage several companies (paths get
    /// /companies/{id}).
    #[arg(long, value_name = "ID")]
    company: Option<i64>,
    /// Environment variable that holds the Huggy API token.
    #[arg(long, value_name = "VAR", conflicts_with = "token_file")]
    token_env: Option<String>,
    /// File that holds the Huggy API token.
    #[arg(long, value_name = "PATH")]
    token_file: Option<String>,
    /// Huggy calls per second for this account, e.g. 20/s.
    #[arg(long, value_name = "N/s", default_value = "10/s", value_parser = parse_rate)]
    rate_limit: i32,
    /// Environment variable that holds the token Huggy sends with each webhook.
    #[arg(long, value_name = "VAR", conflicts_with = "webhook_token_file")]
    webhook_token_env: Option<String>,
    /// File that holds the webhook token.
    #[arg(long, value_name = "PATH")]
    webhook_token_file: Option<String>,
    /// Print the account as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `account list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

fn parse_rate(s: &str) -> Result<i32, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.parse::<i32>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a rate such as 20/s (1 to 100000 calls per second)"
        )),
    }
}

fn secret_ref(env: &Option<String>, file: &Option<String>) -> Option<SecretRef> {
    env.clone()
        .map(SecretRef::Env)
        .or_else(|| file.clone().map(SecretRef::File))
}

/// Runs an `account` subcommand.
pub async fn run(cmd: AccountCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AccountCommand::Update(args) => return crate::safety::update(args).await,
        AccountCommand::Add(args) => {
            if let Err(e) = tarefas_core::task::check_account(&args.account) {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(crate::EXIT_INVALID));
            }
            let new = NewAccount {
                name: args.account.clone(),
                company_id: args.company,
                token_ref: secret_ref(&args.token_env, &args.token_file),
                webhook_token_ref: secret_ref(&args.webhook_token_env, &args.webhook_token_file),
                rate_limit_per_s: args.rate_limit,
            };
            for (what, r) in [
                ("API token", &new.token_ref),
                ("webhook token", &new.webhook_token_ref),
            ] {
                match r {
                    Some(r) => {
                        if let Err(e) = r.resolve() {
                            eprintln!("warning: {what}: {e} (here; the services must have it)");
                        }
                    }
                    None if what == "API token" => {
                        eprintln!("warning: no API token given (--token-env or --token-file); calls to Huggy will fail")
                    }
                    None => {}
                }
            }
            let pool = args.db.pool().await?;
            let account = accounts::add(&pool, &new).await?;
            if args.json {
                output::json(&account)?;
            } else {
                println!("account {} added", account.name);
            }
        }
        AccountCommand::List(args) => {
            let pool = args.db.pool().await?;
            let list = accounts::list(&pool).await?;
            if args.json {
                output::json(&list)?;
            } else {
                let rows = list
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            output::opt(a.company_id),
                            output::opt(a.token_ref.clone()),
                            output::opt(a.webhook_token_ref.clone()),
                            format!("{}/s", a.rate_limit_per_s),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(
                    &[
                        "ACCOUNT",
                        "COMPANY",
                        "TOKEN FROM",
                        "WEBHOOK TOKEN FROM",
                        "RATE LIMIT",
                    ],
                    &rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
