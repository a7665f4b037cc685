//! The store's errors, shaped by what the caller does about them.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A setting is wrong (fix the configuration).
    #[error("{0}")]
    Config(String),
    /// The thing asked for does not exist in this account.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored (e.g. a duplicate name).
    #[error("{0}")]
    Conflict(String),
    /// A stored definition no longer validates (should not happen; reported, not hidden).
    #[error("stored data is invalid: {0}")]
    Invalid(String),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// Postgres failed or is unreachable (usually worth retrying).
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}
