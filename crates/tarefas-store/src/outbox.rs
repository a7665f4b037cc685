//! The transactional outbox: messages written in the same transaction as the state change
//! that calls for them, published by a relay with publisher confirms, and deleted only after
//! the broker confirmed them. A crash between the two loses nothing; it may publish twice,
//! which the consumers absorb (runs are unique per request id, items per run and record).

use std::sync::OnceLock;

use sqlx::{PgExecutor, Postgres, Transaction};

use crate::StoreError;

/// Where [`enqueue`] finds the trace context of the current span (set once per process by
/// the binary; without it rows carry none).
static TRACE_CONTEXT: OnceLock<fn() -> Option<String>> = OnceLock::new();

/// Makes [`enqueue`] record `source()` (a W3C `traceparent`) on every row it writes. The
/// first call wins.
pub fn set_trace_context_source(source: fn() -> Option<String>) {
    let _ = TRACE_CONTEXT.set(source);
}

/// The trace context [`enqueue`] would record now (`None` when traces are off).
pub fn trace_context() -> Option<String> {
    TRACE_CONTEXT.get().and_then(|source| source())
}

/// One message waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxMessage {
    /// Row id (delete it after the confirm).
    pub id: i64,
    /// Routing key on the Tarefas exchange.
    pub routing_key: String,
    /// The encoded message.
    pub payload: Vec<u8>,
    /// The W3C trace context of the writer, for the message's `traceparent` header.
    pub traceparent: Option<String>,
}

/// Writes messages to the outbox (inside the caller's transaction), each with the trace
/// context of the current span (see [`set_trace_context_source`]).
pub async fn enqueue<'e>(
    executor: impl PgExecutor<'e>,
    routing_key: &str,
    payloads: &[Vec<u8>],
) -> Result<(), StoreError> {
    let context = trace_context();
    enqueue_traced(
        executor,
        routing_key,
        payloads,
        &vec![context; payloads.len()],
    )
    .await
}

/// [`enqueue`] with a trace context per message (`traceparents[i]` for `payloads[i]`).
pub async fn enqueue_traced<'e>(
    executor: impl PgExecutor<'e>,
    routing_key: &str,
    payloads: &[Vec<u8>],
    traceparents: &[Option<String>],
) -> Result<(), StoreError> {
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (routing_key, payload, traceparent)
         SELECT $1, p, t FROM UNNEST($2::bytea[], $3::text[]) AS m(p, t)",
    )
    .bind(routing_key)
    .bind(payloads)
    .bind(traceparents)
    .execute(executor)
    .await?;
    Ok(())
}

/// Locks up to `limit` of the oldest messages for this relay (others skip them).
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    Ok(sqlx::query_as::<_, OutboxMessage>(
        "SELECT id, routing_key, payload, traceparent FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Deletes messages the broker confirmed.
pub async fn delete(tx: &mut Transaction<'_, Postgres>, ids: &[i64]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How many messages wait (a metric, and for tests).
pub async fn pending<'e>(executor: impl PgExecutor<'e>) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(executor)
        .await?)
}

/// One relay step: locks up to `limit` of the oldest messages, hands them to `publish`
/// (which returns once the broker confirmed every one), then deletes them and commits.
/// When `publish` fails, nothing is deleted and the messages are retried by the next step.
/// Returns how many messages were relayed (0: the outbox is empty).
pub async fn relay_step<F, Fut, E>(
    pool: &sqlx::PgPool,
    limit: i64,
    publish: F,
) -> Result<usize, RelayError<E>>
where
    F: FnOnce(Vec<OutboxMessage>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| RelayError::Store(e.into()))?;
    let messages = claim(&mut tx, limit).await.map_err(RelayError::Store)?;
    if messages.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
    publish(messages).await.map_err(RelayError::Publish)?;
    delete(&mut tx, &ids).await.map_err(RelayError::Store)?;
    tx.commit().await.map_err(|e| RelayError::Store(e.into()))?;
    Ok(ids.len())
}

/// Why a relay step did not complete (its messages stay in the outbox).
#[derive(Debug, thiserror::Error)]
pub enum RelayError<E> {
    /// Postgres failed.
    #[error(transparent)]
    Store(StoreError),
    /// The broker did not confirm.
    #[error("publish failed: {0}")]
    Publish(E),
}
