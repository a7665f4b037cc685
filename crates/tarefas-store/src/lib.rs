//! Postgres for Tarefas: the schema (embedded migrations), the repositories of accounts and
//! tasks, the mirror of Huggy's contacts and chats, and the compiler that turns a validated
//! segment into one parameterized query.
//!
//! Every query is scoped by account; every value is bound, never spliced into SQL text.

pub mod accounts;
pub mod attempts;
pub mod error;
pub mod guards;
pub mod mirror;
pub mod outbox;
pub mod prune;
pub mod reconcile;
pub mod runs;
pub mod segment;
pub mod tasks;
pub mod tokens;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use error::{StoreError, StoredStatus};

/// The migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Pooled connections idle for this long are checked before they are handed out.
pub const PING_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens a pool on `url` (e.g. `postgres://postgres@127.0.0.1:5432/tarefas`).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(|e| {
        StoreError::Config(format!("TAREFAS_DATABASE_URL is not a Postgres URL: {e}"))
    })?;
    pool_options(max_connections)
        .connect_with(options)
        .await
        .map_err(StoreError::from)
}

/// A second pool on `pool`'s database for a worker's executor: the statements on a batch's
/// items (claim, record, release, heartbeat) and the lookups by key around them (run,
/// account, task, stale claims). Its planner never scans a table sequentially
/// (`enable_seqscan = off`). Those statements read a batch's rows by primary key; but
/// while a table is young (a new database, a truncated one) its statistics say it holds a
/// few rows, and Postgres scans it whole for each statement instead: with 500 items per
/// batch, a nested loop over the scan and the batch, 4 million comparisons and 5 s a
/// statement (docs/benchmarks.md). Connects on first use.
pub fn batch_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .options([("enable_seqscan", "off")]);
    pool_options(max_connections).connect_lazy_with(options)
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        // A connection that sat idle may have been closed under us (a Postgres restart):
        // check it with a round trip before use. Checking every one, as sqlx does by
        // default, costs a round trip per statement under load (5 % of a worker's CPU and
        // as many empty queries for Postgres during a fan-out); one in use a moment ago
        // fails its statement at worst, which every caller treats as transient.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StoreError::Migrate(e.to_string()))
}
