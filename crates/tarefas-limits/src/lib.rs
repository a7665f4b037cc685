//! Redis-backed limits shared by every Tarefas worker (design §3 and §4):
//!
//! * [`Limiter`]: a GCRA rate limiter, one atomic Lua script over several keys at
//!   once (e.g. the account's Huggy quota and the WhatsApp channel's throughput),
//!   timed by the Redis server's clock; see [`Limiter`] for its exact guarantee;
//! * shared pauses ([`Limiter::pause`]): a 429's `Retry-After` pauses a key for
//!   every worker at once, never shortening a longer pause;
//! * [`Idempotency`] keys `idem:{run_id}:{record_id}`, marked `inflight` just before
//!   a Huggy call and `done` right after it.
//!
//! Everything fails closed: when Redis cannot be reached every operation returns
//! [`LimitError::Unavailable`], and [`Limiter::acquire`] waits (with backoff, up to
//! its deadline) rather than grant a call without Redis.
//!
//! ```no_run
//! # async fn example() -> Result<(), tarefas_limits::LimitError> {
//! use std::time::Duration;
//! use tarefas_limits::{connect, redis_url_from_env, Idempotency, Limit, Limiter, MarkResult};
//!
//! let conn = connect(&redis_url_from_env())?;
//! let limiter = Limiter::new(conn.clone(), "tarefas");
//! let idem = Idempotency::new(conn, "tarefas");
//!
//! let limits = [
//!     Limit::new("account:42", 10.0, 2),
//!     Limit::new("channel:42:5511999990000", 5.0, 1),
//! ];
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
//! limiter.acquire(&limits, deadline).await?;
//! if idem.mark_inflight("run-7", 1001, Duration::from_secs(3600)).await? == MarkResult::Marked {
//!     // … call Huggy; on a 429: limiter.pause("account:42", retry_after).await?
//!     idem.mark_done("run-7", 1001, Duration::from_secs(86_400)).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod backoff;
mod connection;
mod error;
mod idem;
mod limiter;

pub use backoff::backoff;
pub use connection::{
    connect, connection_manager_config, redis_url_from_env, CONNECTION_TIMEOUT, DEFAULT_OP_TIMEOUT,
    DEFAULT_REDIS_URL, REDIS_URL_ENV, RESPONSE_TIMEOUT,
};
pub use error::LimitError;
pub use idem::{IdemState, Idempotency, MarkResult};
pub use limiter::{acquire_with, Acquire, Decision, Grant, Limit, Limiter, Take, MAX_PER_SECOND};

/// The Redis client crate this one is built on, for building a
/// [`ConnectionManager`](redis::aio::ConnectionManager) by hand.
pub use redis;
