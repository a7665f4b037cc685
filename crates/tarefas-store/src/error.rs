//! The store's errors, shaped by what the caller does about them.

use tarefas_core::run::UnknownStatus;

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
    Db(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    /// A row whose status names no state ([`UnknownStatus`]) is invalid stored data, not
    /// a database failure worth retrying.
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { index, source } if source.is::<UnknownStatus>() => {
                StoreError::Invalid(format!("{source} (column {index})"))
            }
            e => StoreError::Db(e),
        }
    }
}

/// A status column read as the core's enum `T` (`RunStatus`, `ItemStatus`, `TaskStatus`):
/// a name the core does not know fails the row's decoding with [`UnknownStatus`], which
/// becomes [`StoreError::Invalid`]. Rows use it as `#[sqlx(try_from = "StoredStatus<T>")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredStatus<T>(pub T);

impl<T> sqlx::Type<sqlx::Postgres> for StoredStatus<T> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r, T> sqlx::Decode<'r, sqlx::Postgres> for StoredStatus<T>
where
    T: TryFrom<String, Error = UnknownStatus>,
{
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let name = <String as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(StoredStatus(T::try_from(name)?))
    }
}

impl From<StoredStatus<tarefas_core::run::RunStatus>> for tarefas_core::run::RunStatus {
    fn from(s: StoredStatus<tarefas_core::run::RunStatus>) -> Self {
        s.0
    }
}

impl From<StoredStatus<tarefas_core::task::TaskStatus>> for tarefas_core::task::TaskStatus {
    fn from(s: StoredStatus<tarefas_core::task::TaskStatus>) -> Self {
        s.0
    }
}
