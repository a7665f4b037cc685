//! `tarefas sync`: keep the mirror of Huggy's contacts and open chats in step.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tarefas_huggy::{HttpHuggy, HuggyConfig};
use tarefas_store::accounts::{self, Account, SecretRef};
use tarefas_sync::webhook::{router, WebhookAccount, WebhookState};

use crate::db::DbArgs;
use crate::output;

/// Flags of `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only this account (default: every account).
    #[arg(long, env = "TAREFAS_ACCOUNT")]
    account: Option<String>,
    /// Page through everything once, print what changed, and exit.
    #[arg(long)]
    once: bool,
    /// Where the webhook endpoint listens (POST /webhooks/{account}); not with --once.
    #[arg(long, env = "TAREFAS_SYNC_LISTEN", default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    /// How often to resync every account in full (e.g. 30s, 15m, 1h).
    #[arg(long, env = "TAREFAS_SYNC_RESYNC_EVERY", default_value = "15m", value_parser = parse_every)]
    resync_every: Duration,
    /// Huggy's API base URL.
    #[arg(long, env = "TAREFAS_HUGGY_API_URL", default_value = tarefas_huggy::DEFAULT_BASE_URL)]
    huggy_url: String,
    /// Print the reports as JSON (with --once).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    metrics: crate::observe::MetricsArgs,
}

fn parse_every(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 30s, 15m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration such as 30s, 15m or 1h")),
    };
    if secs == 0 {
        return Err("the resync interval must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

/// A Huggy client for `account`, with its token read from where the account says.
fn client(account: &Account, base_url: &str) -> anyhow::Result<HttpHuggy> {
    let token_ref = account
        .token_ref
        .as_deref()
        .and_then(SecretRef::parse)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "account {} has no API token (add it with --token-env or --token-file)",
                account.name
            )
        })?;
    let token = token_ref
        .resolve()
        .map_err(|e| anyhow::anyhow!("account {}: {e}", account.name))?;
    let mut config = HuggyConfig::new(token).with_base_url(base_url);
    if let Some(company) = account.company_id {
        config = config.with_company_id(company.to_string());
    }
    Ok(HttpHuggy::new(config)?)
}

/// Runs `sync`.
pub async fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let deps = crate::observe::Deps::postgres();
    if !args.once {
        crate::observe::start("sync", &args.metrics, &deps).await?;
    }
    let pool = args.db.pool().await?;
    let _ = deps.pool.set(pool.clone());
    let accounts = match &args.account {
        Some(name) => vec![accounts::by_name(&pool, name).await?],
        None => accounts::list(&pool).await?,
    };
    if accounts.is_empty() {
        anyhow::bail!("no accounts to sync; add one with `tarefas account add`");
    }
    let mut clients = Vec::new();
    for a in &accounts {
        clients.push((a.clone(), client(a, &args.huggy_url)?));
    }
    if args.once {
        let mut failed = false;
        for (account, huggy) in &clients {
            match tarefas_sync::sync_account(huggy, &pool, account.id).await {
                Ok(report) if args.json => output::json(&serde_json::json!({"account": account.name, "report": report}))?,
                Ok(r) => println!(
                    "{}: {} contacts, {} open chats; removed {} contacts, {} chats; {} pages in {} ms",
                    account.name, r.contacts, r.chats, r.contacts_removed, r.chats_removed, r.pages, r.elapsed_ms
                ),
                Err(e) => {
                    failed = true;
                    eprintln!("error: {}: sync failed, nothing removed: {e}", account.name);
                }
            }
        }
        return Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }

    let mut webhook_accounts = HashMap::new();
    for (account, huggy) in &clients {
        match account
            .webhook_token_ref
            .as_deref()
            .and_then(SecretRef::parse)
            .map(|r| r.resolve())
        {
            Some(Ok(token)) => {
                webhook_accounts.insert(
                    account.name.clone(),
                    WebhookAccount {
                        account_id: account.id,
                        token,
                        huggy: huggy.clone(),
                    },
                );
            }
            Some(Err(e)) => anyhow::bail!("account {}: webhook token: {e}", account.name),
            None => {
                tracing::warn!(account = %account.name, "no webhook token: webhooks for this account are refused")
            }
        }
    }
    let state = Arc::new(WebhookState {
        pool: pool.clone(),
        accounts: webhook_accounts,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "sync: webhooks on http://{}/webhooks/{{account}}, full resync every {:?}",
        listener.local_addr()?,
        args.resync_every
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(crate::shutdown::token().cancelled_owned())
            .await
    });
    let resync = async {
        let mut tick = tokio::time::interval(args.resync_every);
        loop {
            tick.tick().await;
            for (account, huggy) in &clients {
                if let Err(e) = tarefas_sync::sync_account(huggy, &pool, account.id).await {
                    tracing::error!(account = %account.name, error.message = %e, "resync failed; will retry");
                }
            }
        }
    };
    tokio::select! {
        r = server => { r??; }
        _ = resync => {}
    }
    Ok(ExitCode::SUCCESS)
}
