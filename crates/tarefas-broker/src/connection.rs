//! The [`Broker`] handle: one AMQP connection per process, (re)opened with
//! exponential backoff and jitter, with the topology declared on every new
//! connection.
//!
//! Publishers and consumers never hold the connection themselves: they ask
//! the broker for it each time their channel is gone. The first one to notice
//! a dead connection reconnects (the others wait on the same lock), so after a
//! broker restart or a forced close every publisher and consumer resumes on
//! one new connection.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{one_line, redact_url, BrokerError};
use crate::publish::Publisher;
use crate::topology::{self, Names};

/// Environment variable with the broker URL.
pub const AMQP_URL_ENV: &str = "TAREFAS_AMQP_URL";

/// The URL used when [`AMQP_URL_ENV`] is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Exponential backoff with jitter between connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Largest delay between two attempts.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

/// The growing delays of a [`BackoffConfig`]: attempt `n` waits a random time
/// between half and all of `min(max, initial * 2^n)` ("equal jitter"), so
/// replicas that lost the broker together do not come back in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff (the next delay is about `initial`).
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .config
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt.min(30)))
            .min(self.config.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        let spread = u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random_u64() % spread.max(1))
    }

    /// Start again from `initial` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random number for jitter (no RNG dependency: std's randomly keyed
/// hasher, fed a counter).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Everything [`Broker::connect_with`] needs.
#[derive(Clone)]
pub struct BrokerConfig {
    /// `amqp://user:password@host:port/vhost` (vhost URL-encoded, `%2f` for
    /// `/`). Never printed with its password.
    pub url: String,
    /// Exchange and queue names, retry delays.
    pub names: Names,
    /// Backoff between connection attempts.
    pub backoff: BackoffConfig,
    /// How long [`Broker::connect_with`] keeps trying before it fails
    /// (start-up fails fast with a clear error instead of hanging).
    pub startup_timeout: Duration,
    /// Longest wait for one connection attempt (TCP + AMQP handshake).
    pub attempt_timeout: Duration,
    /// Longest time one publish (or batch) may take, reconnections included,
    /// before it fails with [`BrokerError::Unavailable`].
    pub publish_timeout: Duration,
    /// Connection name shown by RabbitMQ (`rabbitmqctl list_connections`).
    pub connection_name: String,
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &redact_url(&self.url))
            .field("names", &self.names)
            .field("backoff", &self.backoff)
            .field("startup_timeout", &self.startup_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("publish_timeout", &self.publish_timeout)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

impl BrokerConfig {
    /// The defaults for `url` and `names`: backoff 100 ms to 10 s, start-up
    /// timeout 60 s, attempt timeout 10 s, publish timeout 30 s.
    pub fn new(url: impl Into<String>, names: Names) -> Self {
        BrokerConfig {
            url: url.into(),
            names,
            backoff: BackoffConfig::default(),
            startup_timeout: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(30),
            connection_name: "tarefas".to_owned(),
        }
    }

    /// The URL from `TAREFAS_AMQP_URL`, or [`DEFAULT_AMQP_URL`].
    pub fn url_from_env() -> String {
        std::env::var(AMQP_URL_ENV).unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
    }
}

/// State shared by the broker handle, its publishers and consumers.
pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    /// The current connection (read without waiting).
    connection: RwLock<Option<Arc<Connection>>>,
    /// Held by whoever is reconnecting, so that only one does.
    reconnecting: Mutex<()>,
    connects: AtomicU64,
}

impl Shared {
    pub(crate) fn names(&self) -> &Names {
        &self.config.names
    }

    /// A live connection: the current one, or a new one (with topology
    /// declared) after retrying with backoff for as long as it takes.
    ///
    /// Callers bound the wait themselves (a timeout, a shutdown signal);
    /// dropping the future gives up cleanly.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, BrokerError> {
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        let _reconnecting = self.reconnecting.lock().await;
        // Somebody else may have reconnected while we waited.
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        if self.current().is_some() {
            warn!("RabbitMQ connection lost; reconnecting");
        }
        let conn = self.connect_with_backoff(None).await?;
        self.set_current(Some(conn.clone()));
        Ok(conn)
    }

    fn current(&self) -> Option<Arc<Connection>> {
        self.connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_current(&self, conn: Option<Arc<Connection>>) -> Option<Arc<Connection>> {
        let mut current = self
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, conn)
    }

    /// The current connection if it is up.
    fn live(&self) -> Option<Arc<Connection>> {
        self.current().filter(|c| c.status().connected())
    }

    /// Like [`Shared::connection`], failing with [`BrokerError::Unavailable`]
    /// at `deadline`.
    pub(crate) async fn connection_until(
        &self,
        deadline: Instant,
    ) -> Result<Arc<Connection>, BrokerError> {
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, self.connection()).await {
            Ok(result) => result,
            Err(_) => Err(BrokerError::Unavailable {
                url: redact_url(&self.config.url),
                waited_ms: started.elapsed().as_millis(),
                last_error: "timed out waiting for a connection".to_owned(),
            }),
        }
    }

    fn is_connected(&self) -> bool {
        self.live().is_some()
    }

    async fn connect_with_backoff(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Arc<Connection>, BrokerError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(self.config.backoff);
        let mut failures = 0u64;
        loop {
            let error = match self.connect_once().await {
                Ok(conn) => {
                    let n = self.connects.fetch_add(1, Ordering::Relaxed) + 1;
                    info!(
                        url = %redact_url(&self.config.url),
                        connection = n,
                        failed_attempts = failures,
                        "connected to RabbitMQ"
                    );
                    return Ok(conn);
                }
                // Needs an operator: retrying cannot help.
                Err(e @ (BrokerError::Topology { .. } | BrokerError::Config(_))) => return Err(e),
                Err(e) => e,
            };
            failures += 1;
            let delay = backoff.next_delay();
            if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                return Err(BrokerError::Unavailable {
                    url: redact_url(&self.config.url),
                    waited_ms: started.elapsed().as_millis(),
                    last_error: one_line(&error.to_string(), 500),
                });
            }
            warn!(
                url = %redact_url(&self.config.url),
                attempt = failures,
                retry_in_ms = delay.as_millis(),
                error.message = %error,
                error.cause_chain = ?error,
                "cannot connect to RabbitMQ; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn connect_once(&self) -> Result<Arc<Connection>, BrokerError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.config.connection_name.as_str().into());
        let connect = Connection::connect(&self.config.url, properties);
        let conn = match tokio::time::timeout(self.config.attempt_timeout, connect).await {
            Ok(result) => result.map_err(BrokerError::amqp("connection.open"))?,
            Err(_) => {
                return Err(BrokerError::Unavailable {
                    url: redact_url(&self.config.url),
                    waited_ms: self.config.attempt_timeout.as_millis(),
                    last_error: "connection attempt timed out".to_owned(),
                })
            }
        };
        let channel = conn
            .create_channel()
            .await
            .map_err(BrokerError::amqp("channel.open"))?;
        topology::declare(&channel, &self.config.names).await?;
        // Best effort: the channel is closed with the connection anyway.
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(Arc::new(conn))
    }
}

/// A handle on RabbitMQ for one process: cheap to clone, safe to share.
///
/// It hides reconnection: [`Broker::publisher`] and [`Broker::consume`] keep
/// working across connection drops (broker restart, forced close, network
/// blip), re-opening the connection with backoff and re-declaring the
/// topology.
#[derive(Clone)]
pub struct Broker {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.shared.config)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Broker {
    /// Connect to `url` with the default settings, declaring the topology of
    /// `names`. See [`Broker::connect_with`].
    pub async fn connect(url: &str, names: Names) -> Result<Self, BrokerError> {
        Self::connect_with(BrokerConfig::new(url, names)).await
    }

    /// Connect (retrying with backoff up to `config.startup_timeout`) and
    /// declare the topology.
    ///
    /// Fails with [`BrokerError::Unavailable`] if RabbitMQ cannot be reached
    /// in time, and at once with [`BrokerError::Topology`] if the existing
    /// queues conflict with ours.
    pub async fn connect_with(config: BrokerConfig) -> Result<Self, BrokerError> {
        if !(config.url.starts_with("amqp://") || config.url.starts_with("amqps://")) {
            return Err(BrokerError::Config(format!(
                "{AMQP_URL_ENV} must be an amqp:// or amqps:// URL (got {})",
                redact_url(&config.url)
            )));
        }
        let deadline = Instant::now() + config.startup_timeout;
        let shared = Arc::new(Shared {
            config,
            connection: RwLock::new(None),
            reconnecting: Mutex::new(()),
            connects: AtomicU64::new(0),
        });
        let conn = shared.connect_with_backoff(Some(deadline)).await?;
        shared.set_current(Some(conn));
        Ok(Broker { shared })
    }

    /// The names this broker declared.
    pub fn names(&self) -> &Names {
        self.shared.names()
    }

    /// Whether the connection is up right now (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// How many connections were opened so far (1 after
    /// [`Broker::connect`], +1 per reconnection).
    pub fn connection_count(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }

    /// A publisher with its own channel in confirm mode (opened lazily, and
    /// re-opened after a connection drop). Clone it to share the channel.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.shared.clone())
    }

    /// Number of ready messages in `queue` (e.g. for metrics or a scaler).
    pub async fn message_count(&self, queue: &str) -> Result<u32, BrokerError> {
        let conn = self.shared.connection().await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(BrokerError::amqp("channel.open"))?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(BrokerError::amqp("queue.declare"))?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(declared.message_count())
    }

    /// Close the connection (consumers and publishers still alive will
    /// reconnect if used again). Call it at the very end of a graceful
    /// shutdown.
    pub async fn close(&self) {
        if let Some(conn) = self.shared.set_current(None) {
            if let Err(e) = conn.close(200, "closing".into()).await {
                warn!(error.message = %e, "closing the RabbitMQ connection failed");
            }
        }
    }

    /// Close the current connection as if it had dropped, without clearing
    /// it: the next user notices and reconnects. For tests of reconnection.
    #[doc(hidden)]
    pub async fn drop_connection_for_test(&self) {
        if let Some(conn) = self.shared.current() {
            let _ = conn.close(320, "dropped by test".into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let config = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let mut backoff = Backoff::new(config);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        let bases = [100u64, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base / 2 && *delay <= base,
                "{delay:?} vs {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_varies() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            seen.insert(Backoff::new(BackoffConfig::default()).next_delay());
        }
        assert!(seen.len() > 1, "no jitter: {seen:?}");
    }
}
