//! The RabbitMQ topology of Tarefas: exchanges, queues, bindings and their
//! arguments, all named from one prefix ([`Names`]) and declared idempotently
//! by [`declare`].
//!
//! With the default prefix `tarefas` and the default retry delays:
//!
//! | object | kind | arguments | bound to |
//! |---|---|---|---|
//! | `tarefas` | direct exchange, durable | | |
//! | `tarefas.executions` | quorum queue ([`ExecuteTask`](tarefas_proto::v1::ExecuteTask)) | `x-dead-letter-exchange=tarefas.dlx`, `x-dead-letter-strategy=at-least-once`, `x-overflow=reject-publish`, `x-delivery-limit=20` | `tarefas` by `execute` |
//! | `tarefas.batches` | quorum queue ([`ItemBatch`](tarefas_proto::v1::ItemBatch)) | same as above | `tarefas` by `batch` |
//! | `tarefas.executions.retry.1s`, `.5s`, `.30s`, `.2m` | quorum queues, no consumers | `x-message-ttl` (the delay), `x-dead-letter-exchange=tarefas`, `x-dead-letter-routing-key=execute`, `x-dead-letter-strategy=at-least-once`, `x-overflow=reject-publish` | (default exchange only) |
//! | `tarefas.batches.retry.1s`, ... | same, routing back with `batch` | | |
//! | `tarefas.dlx` | fanout exchange, durable | | |
//! | `tarefas.dlq` | quorum queue | `x-delivery-limit=1000000` | `tarefas.dlx` |
//!
//! **Retries.** There is one set of delay queues *per source queue*, so a
//! delay queue knows where its messages go back to (its
//! `x-dead-letter-routing-key`) and a retried message needs no routing
//! information of its own. The consumer publishes a message to be retried
//! straight into the delay queue for its attempt (through the default
//! exchange); when its TTL expires RabbitMQ dead-letters it to the main
//! exchange with the source queue's routing key. All messages of a delay queue
//! have the same TTL, so expiry at the head of the queue (how RabbitMQ expires
//! messages) never waits behind a longer one.
//!
//! **No silent loss.** Quorum queues with the `at-least-once` dead-letter
//! strategy (which requires `x-overflow=reject-publish`) hand an expired or
//! dead-lettered message over with publisher confirms inside the broker. The
//! work queues dead-letter to `{p}.dlx` too, so a message that RabbitMQ gives
//! up on itself (delivered `x-delivery-limit` times without being settled,
//! e.g. because it crashes the worker) lands in the DLQ with RabbitMQ's
//! `x-death` headers instead of being dropped. The DLQ's own delivery limit is
//! set out of reach (RabbitMQ 4.0–4.2 count every requeue as a delivery and
//! default to 20, which would make [`dlq_list`](crate::Broker::dlq_list)
//! peeks eventually drop dead letters).
//!
//! Quorum-queue message TTL needs RabbitMQ 3.10 or later.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use tracing::debug;

use crate::error::BrokerError;

/// The default prefix of every name.
pub const DEFAULT_PREFIX: &str = "tarefas";

/// The default retry delays: 1 s, 5 s, 30 s, 2 min (so a message is tried at
/// most five times before it is dead-lettered).
pub const DEFAULT_RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
];

/// Delivery limit of the work queues: a message delivered this many times
/// without being acked (worker crashes, requeues) is dead-lettered by RabbitMQ.
pub const WORK_QUEUE_DELIVERY_LIMIT: i32 = 20;

/// Delivery limit of the dead-letter queue: out of reach, so that peeking
/// (which requeues) never drops a dead letter.
pub const DLQ_DELIVERY_LIMIT: i32 = 1_000_000;

/// Longest prefix accepted by [`Names::new`] (queue names must stay under
/// AMQP's 255-byte limit).
pub const MAX_PREFIX_LEN: usize = 200;

/// Most retry delays accepted by [`Names::with_retry_delays`].
pub const MAX_RETRY_DELAYS: usize = 16;

/// The queues that carry work, each with its message type and routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `{p}.executions`: [`ExecuteTask`](tarefas_proto::v1::ExecuteTask)
    /// messages, routing key `execute`; consumed by the planner.
    Executions,
    /// `{p}.batches`: [`ItemBatch`](tarefas_proto::v1::ItemBatch) messages,
    /// routing key `batch`; consumed by the executor.
    Batches,
}

impl Source {
    /// Both work queues.
    pub const ALL: [Source; 2] = [Source::Executions, Source::Batches];

    /// The routing key that leads from the main exchange to this queue.
    pub fn routing_key(self) -> &'static str {
        match self {
            Source::Executions => "execute",
            Source::Batches => "batch",
        }
    }

    /// The protobuf message type this queue carries (the AMQP `type`
    /// property of its messages).
    pub fn message_type(self) -> &'static str {
        match self {
            Source::Executions => "tarefas.v1.ExecuteTask",
            Source::Batches => "tarefas.v1.ItemBatch",
        }
    }

    /// The queue's name without the prefix: `executions` or `batches`.
    pub fn suffix(self) -> &'static str {
        match self {
            Source::Executions => "executions",
            Source::Batches => "batches",
        }
    }
}

/// Every exchange and queue name, derived from one prefix, and the retry
/// delays.
///
/// Tests give each run its own prefix (or vhost) and short delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
    retry_delays: Vec<Duration>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            prefix: DEFAULT_PREFIX.to_owned(),
            retry_delays: DEFAULT_RETRY_DELAYS.to_vec(),
        }
    }
}

impl Names {
    /// Names under `prefix`, with the default retry delays.
    ///
    /// The prefix must be 1 to [`MAX_PREFIX_LEN`] ASCII letters, digits, `.`,
    /// `-` or `_`.
    pub fn new(prefix: impl Into<String>) -> Result<Self, BrokerError> {
        let prefix = prefix.into();
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
            return Err(BrokerError::Config(format!(
                "queue name prefix must have 1 to {MAX_PREFIX_LEN} characters (got {})",
                prefix.len()
            )));
        }
        if let Some(bad) = prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(BrokerError::Config(format!(
                "queue name prefix {prefix:?} contains {bad:?}; use ASCII letters, digits, '.', '-' or '_'"
            )));
        }
        Ok(Names {
            prefix,
            retry_delays: DEFAULT_RETRY_DELAYS.to_vec(),
        })
    }

    /// Replace the retry delays (one delay queue per delay and source queue;
    /// a message is tried `delays.len() + 1` times).
    ///
    /// Between 1 and [`MAX_RETRY_DELAYS`] delays, each from 1 ms to 7 days,
    /// with distinct names (e.g. not both 1000 ms and 1 s). Changing the delays
    /// of a running system declares new delay queues; the old ones keep their
    /// messages until they expire.
    pub fn with_retry_delays(
        mut self,
        delays: impl IntoIterator<Item = Duration>,
    ) -> Result<Self, BrokerError> {
        let delays: Vec<Duration> = delays.into_iter().collect();
        if delays.is_empty() || delays.len() > MAX_RETRY_DELAYS {
            return Err(BrokerError::Config(format!(
                "between 1 and {MAX_RETRY_DELAYS} retry delays are needed (got {})",
                delays.len()
            )));
        }
        let max = Duration::from_secs(7 * 24 * 3600);
        if let Some(bad) = delays
            .iter()
            .find(|d| d.as_millis() == 0 || **d > max || d.subsec_nanos() % 1_000_000 != 0)
        {
            return Err(BrokerError::Config(format!(
                "retry delay {bad:?} must be whole milliseconds between 1 ms and 7 days"
            )));
        }
        let mut labels: Vec<String> = delays.iter().map(|d| delay_label(*d)).collect();
        labels.sort();
        labels.dedup();
        if labels.len() != delays.len() {
            return Err(BrokerError::Config(
                "retry delays must be distinct".to_owned(),
            ));
        }
        self.retry_delays = delays;
        Ok(self)
    }

    /// The prefix, e.g. `tarefas`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The retry delays, in attempt order.
    pub fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }

    /// How many times a message is delivered before a `Retry` dead-letters
    /// it: one first attempt plus one per retry delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.retry_delays.len()).unwrap_or(u32::MAX) + 1
    }

    /// The main (direct) exchange, `{p}`.
    pub fn exchange(&self) -> String {
        self.prefix.clone()
    }

    /// A work queue, `{p}.executions` or `{p}.batches`.
    pub fn queue(&self, source: Source) -> String {
        format!("{}.{}", self.prefix, source.suffix())
    }

    /// The delay queue for retry number `step` (0-based) of `source`, e.g.
    /// `{p}.batches.retry.5s`; `None` past the last delay.
    pub fn retry_queue(&self, source: Source, step: usize) -> Option<String> {
        self.retry_delays.get(step).map(|d| {
            format!(
                "{}.{}.retry.{}",
                self.prefix,
                source.suffix(),
                delay_label(*d)
            )
        })
    }

    /// The dead-letter (fanout) exchange, `{p}.dlx`.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// The dead-letter queue, `{p}.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.prefix)
    }

    /// The work queue named `queue`, if it is one of ours.
    pub fn source_of(&self, queue: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| self.queue(*s) == queue)
    }

    /// Every queue name, work queues first (for tests and tooling).
    pub fn all_queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = Source::ALL.iter().map(|s| self.queue(*s)).collect();
        for source in Source::ALL {
            queues.extend((0..self.retry_delays.len()).filter_map(|i| self.retry_queue(source, i)));
        }
        queues.push(self.dead_letter_queue());
        queues
    }

    /// Every exchange name.
    pub fn all_exchanges(&self) -> Vec<String> {
        vec![self.exchange(), self.dead_letter_exchange()]
    }
}

/// A short label for a delay, used in queue names: `200ms`, `1s`, `30s`,
/// `2m`, `1h`.
pub fn delay_label(delay: Duration) -> String {
    let ms = delay.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(key.into(), value);
    }
    table
}

/// Arguments of a work queue.
fn work_queue_args(names: &Names) -> FieldTable {
    table(vec![
        ("x-queue-type", long_string("quorum")),
        (
            "x-dead-letter-exchange",
            long_string(&names.dead_letter_exchange()),
        ),
        ("x-dead-letter-strategy", long_string("at-least-once")),
        ("x-overflow", long_string("reject-publish")),
        (
            "x-delivery-limit",
            AMQPValue::LongInt(WORK_QUEUE_DELIVERY_LIMIT),
        ),
    ])
}

/// Arguments of a delay queue that returns its messages to `source`.
fn retry_queue_args(names: &Names, source: Source, delay: Duration) -> FieldTable {
    let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    table(vec![
        ("x-queue-type", long_string("quorum")),
        ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
        ("x-dead-letter-exchange", long_string(&names.exchange())),
        (
            "x-dead-letter-routing-key",
            long_string(source.routing_key()),
        ),
        ("x-dead-letter-strategy", long_string("at-least-once")),
        ("x-overflow", long_string("reject-publish")),
    ])
}

/// Arguments of the dead-letter queue.
fn dead_letter_queue_args() -> FieldTable {
    table(vec![
        ("x-queue-type", long_string("quorum")),
        ("x-delivery-limit", AMQPValue::LongInt(DLQ_DELIVERY_LIMIT)),
    ])
}

/// Declare every exchange, queue and binding of `names` on `channel`.
///
/// Idempotent: declaring what exists with the same arguments is a no-op. If an
/// object exists with other arguments RabbitMQ refuses (`PRECONDITION_FAILED`)
/// and closes the channel; the error is [`BrokerError::Topology`] and names the
/// object. Use a channel of its own (it is unusable after such an error).
pub async fn declare(channel: &Channel, names: &Names) -> Result<(), BrokerError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let exchanges = [
        (names.exchange(), ExchangeKind::Direct),
        (names.dead_letter_exchange(), ExchangeKind::Fanout),
    ];
    for (exchange, kind) in exchanges {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                kind,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|source| BrokerError::Topology {
                object: format!("exchange {exchange}"),
                source,
            })?;
    }

    let mut queues: Vec<(String, FieldTable)> = Vec::new();
    for source in Source::ALL {
        queues.push((names.queue(source), work_queue_args(names)));
        for (step, delay) in names.retry_delays().iter().enumerate() {
            if let Some(queue) = names.retry_queue(source, step) {
                queues.push((queue, retry_queue_args(names, source, *delay)));
            }
        }
    }
    queues.push((names.dead_letter_queue(), dead_letter_queue_args()));
    for (queue, args) in queues {
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await
            .map_err(|source| BrokerError::Topology {
                object: format!("queue {queue}"),
                source,
            })?;
    }

    let mut bindings: Vec<(String, String, &str)> = Source::ALL
        .iter()
        .map(|s| (names.queue(*s), names.exchange(), s.routing_key()))
        .collect();
    bindings.push((names.dead_letter_queue(), names.dead_letter_exchange(), ""));
    for (queue, exchange, routing_key) in bindings {
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| BrokerError::Topology {
                object: format!("binding {exchange} -> {queue} ({routing_key:?})"),
                source,
            })?;
    }
    debug!(prefix = names.prefix(), "topology declared");
    Ok(())
}

/// Deletes every queue and exchange of `names` from the broker at `url` (tests and
/// tooling: a quorum queue costs the broker memory and a Raft log until deleted). What
/// does not exist is skipped; each step is bounded by `timeout`. Messages in the deleted
/// queues are lost: never point it at a live deployment's prefix.
pub async fn delete_topology(
    url: &str,
    names: &Names,
    timeout: std::time::Duration,
) -> Result<(), BrokerError> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    use lapin::{Connection, ConnectionProperties};

    let conn = tokio::time::timeout(
        timeout,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| BrokerError::Unavailable {
        url: crate::error::redact_url(url),
        waited_ms: timeout.as_millis(),
        last_error: "connect timed out".into(),
    })?
    .map_err(|source| BrokerError::Amqp {
        operation: "connection.open",
        source,
    })?;
    for queue in names.all_queues() {
        // A channel per step: deleting what is not there closes the channel (404).
        let Ok(channel) = conn.create_channel().await else {
            continue;
        };
        let _ = tokio::time::timeout(
            timeout,
            channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()),
        )
        .await;
    }
    for exchange in names.all_exchanges() {
        let Ok(channel) = conn.create_channel().await else {
            continue;
        };
        let _ = tokio::time::timeout(
            timeout,
            channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()),
        )
        .await;
    }
    let _ = conn.close(0, "".into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names() {
        let n = Names::default();
        assert_eq!(n.exchange(), "tarefas");
        assert_eq!(n.queue(Source::Executions), "tarefas.executions");
        assert_eq!(n.queue(Source::Batches), "tarefas.batches");
        assert_eq!(n.dead_letter_exchange(), "tarefas.dlx");
        assert_eq!(n.dead_letter_queue(), "tarefas.dlq");
        let retries: Vec<_> = (0..5).map(|i| n.retry_queue(Source::Batches, i)).collect();
        assert_eq!(
            retries,
            [
                Some("tarefas.batches.retry.1s".to_owned()),
                Some("tarefas.batches.retry.5s".to_owned()),
                Some("tarefas.batches.retry.30s".to_owned()),
                Some("tarefas.batches.retry.2m".to_owned()),
                None,
            ]
        );
        assert_eq!(n.max_attempts(), 5);
        assert_eq!(n.all_queues().len(), 2 + 8 + 1);
        assert_eq!(n.source_of("tarefas.batches"), Some(Source::Batches));
        assert_eq!(n.source_of("tarefas.dlq"), None);
    }

    #[test]
    fn labels() {
        assert_eq!(delay_label(Duration::from_millis(200)), "200ms");
        assert_eq!(delay_label(Duration::from_millis(1500)), "1500ms");
        assert_eq!(delay_label(Duration::from_secs(90)), "90s");
        assert_eq!(delay_label(Duration::from_secs(120)), "2m");
        assert_eq!(delay_label(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn validation() {
        assert!(Names::new("").is_err());
        assert!(Names::new("a b").is_err());
        assert!(Names::new("x".repeat(MAX_PREFIX_LEN + 1)).is_err());
        assert!(Names::new("t-1.x_y").is_ok());
        let n = Names::new("t").unwrap();
        assert!(n.clone().with_retry_delays([]).is_err());
        assert!(n.clone().with_retry_delays([Duration::ZERO]).is_err());
        assert!(n
            .clone()
            .with_retry_delays([Duration::from_micros(1500)])
            .is_err());
        assert!(n
            .clone()
            .with_retry_delays([Duration::from_millis(1000), Duration::from_secs(1)])
            .is_err());
        let short = n
            .with_retry_delays([Duration::from_millis(200), Duration::from_millis(400)])
            .unwrap();
        assert_eq!(
            short.retry_queue(Source::Executions, 1).as_deref(),
            Some("t.executions.retry.400ms")
        );
        assert_eq!(short.max_attempts(), 3);
    }
}
