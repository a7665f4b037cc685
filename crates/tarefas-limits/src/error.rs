//! The one error type of this crate, [`LimitError`]: each variant is a decision for
//! the caller (send nothing and retry later, retry after a delay, fix the configuration).

use std::time::Duration;

/// What went wrong, phrased as what the caller should do about it.
///
/// Every operation of this crate fails closed: when Redis cannot be reached it
/// returns [`LimitError::Unavailable`] and never grants anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Redis could not be reached or did not answer in time (connection refused,
    /// timeout, dropped connection, Redis loading or failing over).
    ///
    /// Send nothing; retry later. [`Limiter::acquire`](crate::Limiter::acquire)
    /// already does so, with backoff, until its deadline.
    #[error("redis is unavailable: send nothing and retry later")]
    Unavailable(#[source] redis::RedisError),

    /// [`Limiter::acquire`](crate::Limiter::acquire) could not be granted before its
    /// deadline (rate limited or paused). Nothing was consumed: put the work back
    /// and retry after `retry_after` at the earliest.
    #[error("rate limited past the deadline: retry after {retry_after:?}")]
    Deadline {
        /// How long the limiter last asked to wait.
        retry_after: Duration,
    },

    /// An argument is invalid (a limit with a non-positive rate, a zero burst, a
    /// duplicated key, a zero TTL, an unparsable Redis URL…): a configuration or
    /// programming error that retrying will not fix.
    #[error("invalid argument: {0}")]
    Invalid(String),

    /// Redis answered with an error that is not about availability (a script
    /// error, a key of the wrong type, an authentication failure): a bug or a
    /// misconfigured Redis. Do not retry blindly.
    #[error("redis error")]
    Redis(#[source] redis::RedisError),

    /// Redis answered something this crate does not understand (e.g. an
    /// idempotency key holding a foreign value).
    #[error("unexpected value in redis: {0}")]
    Protocol(String),
}

impl LimitError {
    /// Whether this error means "Redis is unreachable": the caller must stop
    /// sending and try again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LimitError::Unavailable(_))
    }

    /// Sorts a Redis error: availability problems become [`LimitError::Unavailable`],
    /// anything else [`LimitError::Redis`].
    pub(crate) fn from_redis(e: redis::RedisError) -> Self {
        use redis::{ErrorKind, ServerErrorKind};
        let unavailable = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(
                e.kind(),
                ErrorKind::ClusterConnectionNotFound
                    | ErrorKind::Server(
                        ServerErrorKind::BusyLoading
                            | ServerErrorKind::TryAgain
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::ClusterDown
                            | ServerErrorKind::ReadOnly
                    )
            )
            // BUSY: another script is running too long; Redis answers nothing else meanwhile.
            || e.code() == Some("BUSY");
        if unavailable {
            LimitError::Unavailable(e)
        } else {
            LimitError::Redis(e)
        }
    }

    /// The error for an operation that did not finish within its time budget.
    pub(crate) fn timed_out(budget: Duration) -> Self {
        LimitError::Unavailable(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("redis did not answer within {budget:?}"),
        )))
    }
}
