//! RabbitMQ for Tarefas: the topology, a confirmed publisher, a consumer with
//! manual acks, retries through delay queues and a dead-letter queue, and the
//! operator tools for that queue (design §2, §3, §8).
//!
//! * [`topology`]: every exchange and queue, named from one prefix
//!   ([`Names`]), declared idempotently ([`topology::declare`]).
//! * [`Broker`] ([`connection`]): one connection per process, re-opened with
//!   backoff and jitter after a drop, the topology re-declared each time.
//! * [`Publisher`] ([`publish`]): returns only after RabbitMQ confirmed the
//!   message; [`Publisher::publish_many`] for throughput.
//! * [`Broker::consume`] ([`consume`]): a [`Handler`] decides the
//!   [`Outcome`] of each message (ack, retry later, dead-letter, requeue);
//!   bounded concurrency; graceful shutdown.
//! * [`Broker::dlq_list`], [`Broker::dlq_replay`] ([`dlq`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use tarefas_broker::{Broker, Incoming, Names, Outcome, BATCHES};
//! use tarefas_proto::v1::ItemBatch;
//!
//! # async fn example() -> Result<(), tarefas_broker::BrokerError> {
//! let broker = Broker::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Names::default()).await?;
//! let shutdown = async { tokio::time::sleep(Duration::from_secs(60)).await };
//! let report = broker
//!     .consume(BATCHES, 32, |batch: Incoming<ItemBatch>| async move {
//!         // ... execute the items, commit ...
//!         let _ = batch.message.item_ids;
//!         Outcome::Ack
//!     }, shutdown)
//!     .await?;
//! println!("{report:?}");
//! # Ok(()) }
//! ```

pub mod connection;
pub mod consume;
pub mod dlq;
pub mod error;
pub mod headers;
pub mod publish;
pub mod topology;

pub use connection::{
    Backoff, BackoffConfig, Broker, BrokerConfig, AMQP_URL_ENV, DEFAULT_AMQP_URL,
};
pub use consume::{
    ConsumeReport, ConsumerOptions, Handler, Incoming, Outcome, Queue, WhenExhausted, WireMessage,
    BATCHES, EXECUTIONS,
};
pub use dlq::{DeadLetter, ReplayReport};
pub use error::BrokerError;
pub use headers::Headers;
pub use publish::{Outgoing, Publisher};
pub use topology::{delete_topology, Names, Source};
