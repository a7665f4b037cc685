//! Accounts (tenants): one per Huggy account, with where its secrets are read from and its
//! rate limit. Secrets themselves are never stored: only a reference (`env:VAR` or
//! `file:/path`) that services resolve at run time.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the service's process.
    Env(String),
    /// A file (e.g. a mounted Kubernetes Secret); surrounding whitespace is trimmed.
    File(String),
}

impl SecretRef {
    /// Parses the stored form, `env:VAR` or `file:/path`.
    pub fn parse(s: &str) -> Option<SecretRef> {
        if let Some(v) = s.strip_prefix("env:") {
            return (!v.is_empty()).then(|| SecretRef::Env(v.to_string()));
        }
        s.strip_prefix("file:")
            .filter(|p| !p.is_empty())
            .map(|p| SecretRef::File(p.to_string()))
    }

    /// The stored form.
    pub fn to_stored(&self) -> String {
        match self {
            SecretRef::Env(v) => format!("env:{v}"),
            SecretRef::File(p) => format!("file:{p}"),
        }
    }

    /// Reads the secret now. The error names where it looked, never the value.
    pub fn resolve(&self) -> Result<String, String> {
        let value = match self {
            SecretRef::Env(v) => {
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))?
            }
            SecretRef::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read secret file {p}: {e}"))?
                .trim()
                .to_string(),
        };
        if value.is_empty() {
            return Err(format!("the secret in {} is empty", self.to_stored()));
        }
        Ok(value)
    }
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Account {
    /// Internal id.
    pub id: i64,
    /// The name operators use (`acme`).
    pub name: String,
    /// Huggy company id, for accounts that manage several companies.
    pub company_id: Option<i64>,
    /// Where the Huggy API token is read from (`env:VAR` / `file:/path`).
    pub token_ref: Option<String>,
    /// Where the webhook token is read from.
    pub webhook_token_ref: Option<String>,
    /// Huggy calls per second allowed for this account.
    pub rate_limit_per_s: i32,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// What `account add` stores.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The name (validated by `tarefas_core::task::check_account`).
    pub name: String,
    /// Huggy company id.
    pub company_id: Option<i64>,
    /// API token reference.
    pub token_ref: Option<SecretRef>,
    /// Webhook token reference.
    pub webhook_token_ref: Option<SecretRef>,
    /// Calls per second.
    pub rate_limit_per_s: i32,
}

const COLUMNS: &str =
    "id, name, company_id, token_ref, webhook_token_ref, rate_limit_per_s, created_at";

/// Adds an account; a name already taken is a [`StoreError::Conflict`].
pub async fn add(pool: &PgPool, new: &NewAccount) -> Result<Account, StoreError> {
    tarefas_core::task::check_account(&new.name).map_err(StoreError::Conflict)?;
    let row = sqlx::query_as::<_, Account>(&format!(
        "INSERT INTO accounts (name, company_id, token_ref, webhook_token_ref, rate_limit_per_s)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(&new.name)
    .bind(new.company_id)
    .bind(new.token_ref.as_ref().map(SecretRef::to_stored))
    .bind(new.webhook_token_ref.as_ref().map(SecretRef::to_stored))
    .bind(new.rate_limit_per_s)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::Conflict(format!("account {:?} already exists", new.name)))
}

/// Every account, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<Account>, StoreError> {
    Ok(
        sqlx::query_as::<_, Account>(&format!("SELECT {COLUMNS} FROM accounts ORDER BY name"))
            .fetch_all(pool)
            .await?,
    )
}

/// The account called `name`.
pub async fn by_name(pool: &PgPool, name: &str) -> Result<Account, StoreError> {
    sqlx::query_as::<_, Account>(&format!("SELECT {COLUMNS} FROM accounts WHERE name = $1"))
        .bind(name)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "account {name:?} not found; add it with `tarefas account add {name}`"
            ))
        })
}

/// The account with internal id `id`.
pub async fn by_id(pool: &PgPool, id: i64) -> Result<Account, StoreError> {
    sqlx::query_as::<_, Account>(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("account #{id} not found")))
}
