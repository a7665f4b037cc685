//! Connecting to Redis: a reconnecting [`ConnectionManager`] with short timeouts,
//! the key layout under a prefix, and the time budget every operation runs under.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::LimitError;

/// The Redis URL used when `TAREFAS_REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The environment variable that names the Redis URL.
pub const REDIS_URL_ENV: &str = "TAREFAS_REDIS_URL";

/// How long one connection attempt may take before it counts as a failure.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// How long Redis may take to answer one command before it counts as a failure.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The default time budget of one operation of a [`Limiter`](crate::Limiter) or
/// [`Idempotency`](crate::Idempotency), connecting included. Past it the
/// operation fails with [`LimitError::Unavailable`].
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(1);

/// The Redis URL from `TAREFAS_REDIS_URL`, or [`DEFAULT_REDIS_URL`].
pub fn redis_url_from_env() -> String {
    std::env::var(REDIS_URL_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// The connection settings this crate recommends: short connection and response
/// timeouts ([`CONNECTION_TIMEOUT`], [`RESPONSE_TIMEOUT`]) and a single quick
/// reconnection retry per attempt, so that an unreachable Redis is reported within
/// about a second and the caller's own backoff (e.g. in
/// [`Limiter::acquire`](crate::Limiter::acquire)) takes over.
pub fn connection_manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(25))
        .set_max_delay(Duration::from_millis(100))
}

/// A reconnecting connection to the Redis at `url`, with [`connection_manager_config`].
///
/// It connects lazily, on first use, so it succeeds while Redis is down: the
/// operations then fail with [`LimitError::Unavailable`] until Redis returns, and
/// the manager reconnects by itself. Fails only for a URL that cannot be parsed
/// ([`LimitError::Invalid`]). Must be called within a Tokio runtime.
pub fn connect(url: &str) -> Result<ConnectionManager, LimitError> {
    let client = redis::Client::open(url)
        .map_err(|e| LimitError::Invalid(format!("redis URL {url:?}: {e}")))?;
    ConnectionManager::new_lazy_with_config(client, connection_manager_config())
        .map_err(LimitError::from_redis)
}

/// `prefix` and `rest` joined by a `:` (no separator for an empty prefix, none
/// added when the prefix already ends with one).
pub(crate) fn join_key(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_owned()
    } else if prefix.ends_with(':') {
        format!("{prefix}{rest}")
    } else {
        format!("{prefix}:{rest}")
    }
}

/// Runs one Redis operation within `budget`, sorting its errors (see
/// [`LimitError::from_redis`]); running out of time is [`LimitError::Unavailable`].
pub(crate) async fn run<T>(
    budget: Duration,
    op: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, LimitError> {
    match tokio::time::timeout(budget, op).await {
        Ok(result) => result.map_err(LimitError::from_redis),
        Err(_elapsed) => Err(LimitError::timed_out(budget)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_joined_with_one_colon() {
        assert_eq!(join_key("", "idem:1:2"), "idem:1:2");
        assert_eq!(join_key("tarefas", "idem:1:2"), "tarefas:idem:1:2");
        assert_eq!(join_key("tarefas:", "idem:1:2"), "tarefas:idem:1:2");
    }

    #[test]
    fn an_unparsable_url_is_invalid() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(async { connect("not a url").unwrap_err() });
        assert!(matches!(err, LimitError::Invalid(_)), "{err:?}");
    }
}
