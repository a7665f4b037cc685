//! The database settings every command that touches Postgres shares.

use clap::Args;
use sqlx::PgPool;

/// Where Postgres is.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Postgres URL of the Tarefas database.
    #[arg(
        long,
        env = "TAREFAS_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tarefas",
        hide_env_values = true
    )]
    pub database_url: String,
}

impl DbArgs {
    /// Opens a small pool (admin commands make a handful of queries).
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        tarefas_store::connect(&self.database_url, 4)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to Postgres ({}): {e}",
                    redact(&self.database_url)
                )
            })
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
