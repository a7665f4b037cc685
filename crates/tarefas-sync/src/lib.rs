//! Sync: keeps the Postgres mirror of each account's Huggy contacts and open chats in step,
//! by full resyncs ([`full::sync_account`]) and by Huggy's webhooks ([`webhook`]).
//!
//! Only chats in `auto`, `wait_for_chat` or `in_chat` are kept; a chat that leaves them is
//! removed. Events may repeat and arrive out of order: writes never let an older `updatedAt`
//! overwrite a newer one.

pub mod convert;
pub mod full;
pub mod webhook;

pub use full::{sync_account, SyncReport};

/// What stopped a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Huggy refused or kept failing.
    #[error("Huggy: {0}")]
    Huggy(#[from] tarefas_huggy::HuggyError),
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] tarefas_store::StoreError),
}

impl From<sqlx::Error> for SyncError {
    fn from(e: sqlx::Error) -> Self {
        SyncError::Store(e.into())
    }
}
