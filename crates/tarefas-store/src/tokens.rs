//! Operator API tokens (the admin API and the web console). A token is 32 random bytes shown
//! once as `tarefas_<64 hex digits>`; only its SHA-256 is stored. Each token belongs to one
//! account, and every request made with it is scoped to that account.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::StoreError;

/// The prefix of every token, so that a leaked one is easy to recognize (and to search for).
pub const PREFIX: &str = "tarefas_";

/// A stored token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ApiToken {
    /// Token id (for `token revoke`).
    pub id: i64,
    /// The account it acts for.
    pub account_id: i64,
    /// That account's name.
    pub account: String,
    /// A label.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| StoreError::Config(format!("no randomness for a token: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{PREFIX}{hex}"))
}

const SELECT: &str = "SELECT t.id, t.account_id, a.name AS account, t.name, t.created_at,
        t.last_used_at, t.revoked_at
    FROM api_tokens t JOIN accounts a ON a.id = t.account_id";

/// Creates a token for `account_id` and returns it with the token text, which is not kept
/// anywhere: the caller shows it once.
pub async fn create(
    pool: &PgPool,
    account_id: i64,
    name: &str,
) -> Result<(ApiToken, String), StoreError> {
    let token = random_token()?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (account_id, name, token_sha256) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(account_id)
    .bind(name)
    .bind(digest(&token))
    .fetch_one(pool)
    .await?;
    let stored = sqlx::query_as::<_, ApiToken>(&format!("{SELECT} WHERE t.id = $1"))
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok((stored, token))
}

/// The live (not revoked) token whose text is `token`, if any. The lookup is by the token's
/// digest, so the comparison never touches the token's own bytes.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Option<ApiToken>, StoreError> {
    if !token.starts_with(PREFIX) || token.len() > 200 {
        return Ok(None);
    }
    let found = sqlx::query_as::<_, ApiToken>(&format!(
        "{SELECT} WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL"
    ))
    .bind(digest(token))
    .fetch_optional(pool)
    .await?;
    if let Some(t) = &found {
        if t.last_used_at
            .is_none_or(|at| Utc::now() - at > chrono::Duration::minutes(1))
        {
            sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
                .bind(t.id)
                .execute(pool)
                .await?;
        }
    }
    Ok(found)
}

/// Tokens, newest first; only `account_id`'s when given.
pub async fn list(pool: &PgPool, account_id: Option<i64>) -> Result<Vec<ApiToken>, StoreError> {
    Ok(sqlx::query_as::<_, ApiToken>(&format!(
        "{SELECT} WHERE ($1::bigint IS NULL OR t.account_id = $1) ORDER BY t.id DESC"
    ))
    .bind(account_id)
    .fetch_all(pool)
    .await?)
}

/// Revokes token `id`; false when there is no such live token.
pub async fn revoke(pool: &PgPool, id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
