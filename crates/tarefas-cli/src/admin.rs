//! `tarefas admin` (the admin API and the web console) and `tarefas token …` (the operator
//! API tokens they accept).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use tarefas_store::{accounts, tokens};

use crate::db::DbArgs;
use crate::output;

/// Flags of `admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, env = "TAREFAS_ADMIN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    db: DbArgs,
}

/// Serves the admin API and the console until Ctrl-C or SIGTERM.
pub async fn serve(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let pool = args.db.pool().await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--listen): {e}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("Tarefas console: http://{addr}/  (API: http://{addr}/api/v1, OpenAPI: http://{addr}/openapi.json)");
    println!("Sign in with a token from `tarefas token create --account ACCOUNT`.");
    tarefas_admin::serve(listener, pool, crate::shutdown::token()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `tarefas token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an operator API token for one account and print it (once: only its SHA-256 is
    /// kept). Requests made with it see only that account.
    ///
    /// Example: tarefas token create --account acme --name "console da Maria"
    Create(CreateArgs),
    /// List tokens (never the tokens themselves).
    List(ListArgs),
    /// Revoke a token: it stops working at once.
    Revoke(RevokeArgs),
}

/// Flags of `token create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The account the token acts for.
    #[arg(long, env = "TAREFAS_ACCOUNT")]
    account: String,
    /// A label (shown in `token list` and as who requested a run).
    #[arg(long, env = "USER", default_value = "operator")]
    name: String,
    /// Print {"id", "account", "token"} as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `token list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this account's tokens.
    #[arg(long, env = "TAREFAS_ACCOUNT")]
    account: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Flags of `token revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Token id (from `token list`).
    id: i64,
    #[command(flatten)]
    db: DbArgs,
}

/// Runs a `token` subcommand.
pub async fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create(a) => {
            let pool = a.db.pool().await?;
            let account = accounts::by_name(&pool, &a.account).await?;
            let (stored, token) = tokens::create(&pool, account.id, &a.name).await?;
            if a.json {
                output::json(&serde_json::json!({
                    "id": stored.id, "account": stored.account, "name": stored.name, "token": token,
                }))?;
            } else {
                println!("{token}");
                eprintln!(
                    "token {} for account {} created; it is shown only now — keep it safe",
                    stored.id, stored.account
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List(a) => {
            let pool = a.db.pool().await?;
            let account = match &a.account {
                Some(name) => Some(accounts::by_name(&pool, name).await?.id),
                None => None,
            };
            let list = tokens::list(&pool, account).await?;
            if a.json {
                output::json(&list)?;
            } else {
                let t = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    output::opt(t.map(|t| t.format("%Y-%m-%d %H:%M").to_string()))
                };
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.to_string(),
                            k.account.clone(),
                            k.name.clone(),
                            t(Some(k.created_at)),
                            t(k.last_used_at),
                            t(k.revoked_at),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "ACCOUNT", "NAME", "CREATED", "LAST USED", "REVOKED"],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke(a) => {
            let pool = a.db.pool().await?;
            if tokens::revoke(&pool, a.id).await? {
                println!("token {} revoked", a.id);
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: no live token {}", a.id);
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
