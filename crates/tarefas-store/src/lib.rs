//! Postgres for Tarefas: the schema (embedded migrations), the repositories of accounts and
//! tasks, the mirror of Huggy's contacts and chats, and the compiler that turns a validated
//! segment into one parameterized query.
//!
//! Every query is scoped by account; every value is bound, never spliced into SQL text.

pub mod accounts;
pub mod error;
pub mod mirror;
pub mod outbox;
pub mod runs;
pub mod segment;
pub mod tasks;
pub mod tokens;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use error::StoreError;

/// The migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool on `url` (e.g. `postgres://postgres@127.0.0.1:5432/tarefas`).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(|e| {
        StoreError::Config(format!("TAREFAS_DATABASE_URL is not a Postgres URL: {e}"))
    })?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(StoreError::from)
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StoreError::Migrate(e.to_string()))
}
