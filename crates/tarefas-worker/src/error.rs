//! The worker's errors, as the consumer decides on them: retry later, or dead-letter.

/// Why a message was not fully handled.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A dependency is down or failed (retry the message later).
    #[error("{0}")]
    Transient(String),
    /// The message can never be handled (dead-letter it with this reason).
    #[error("{0}")]
    Permanent(String),
}

impl From<tarefas_store::StoreError> for WorkerError {
    fn from(e: tarefas_store::StoreError) -> Self {
        match e {
            tarefas_store::StoreError::Db(_) | tarefas_store::StoreError::Migrate(_) => {
                WorkerError::Transient(e.to_string())
            }
            other => WorkerError::Permanent(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for WorkerError {
    fn from(e: sqlx::Error) -> Self {
        WorkerError::Transient(format!("database error: {e}"))
    }
}
