//! The confirmed publisher.
//!
//! A [`Publisher`] owns one channel in confirm mode. Every publish returns
//! only once RabbitMQ has acked the message, i.e. taken responsibility for it
//! (written to the quorum queues it routes to): an outbox relay may delete its
//! row, a consumer may ack the message it republished. Messages are
//! persistent, `mandatory` (a message no queue takes is an error, not a silent
//! drop), typed `application/x-protobuf` and carry the `x-tarefas-schema`
//! header.
//!
//! [`Publisher::publish_many`] sends a whole batch before waiting for the
//! confirms, which RabbitMQ streams back, so throughput is bounded by the
//! broker rather than by round trips.
//!
//! If the connection drops, the publisher re-opens it (see
//! [`Broker`](crate::Broker)) and publishes again the messages that were not
//! confirmed, until [`BrokerConfig::publish_timeout`](crate::BrokerConfig)
//! runs out. A message whose confirm was lost with the connection may thus be
//! delivered twice: consumers are idempotent (design §3).

use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use tarefas_proto::v1::{ExecuteTask, ItemBatch};
use tarefas_proto::{encode_execute_task, encode_item_batch, SCHEMA_VERSION};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::connection::{Backoff, Shared};
use crate::error::{one_line, redact_url, BrokerError};
use crate::headers::{self, Headers};
use crate::topology::Source;

/// One message to publish to the main exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Routing key: `execute` or `batch` ([`Source::routing_key`]).
    pub routing_key: String,
    /// The protobuf body.
    pub payload: Vec<u8>,
    /// Extra string headers (e.g. trace context).
    pub headers: Headers,
    /// AMQP `message-id` (e.g. the request id), if any.
    pub message_id: Option<String>,
    /// AMQP `type`, e.g. `tarefas.v1.ItemBatch`, if known.
    pub message_type: Option<String>,
}

impl Outgoing {
    /// A raw message: `payload` to `routing_key`, no headers.
    pub fn new(routing_key: impl Into<String>, payload: Vec<u8>) -> Self {
        Outgoing {
            routing_key: routing_key.into(),
            payload,
            headers: Headers::new(),
            message_id: None,
            message_type: None,
        }
    }

    /// An [`ExecuteTask`] for the executions queue, after checking it as a
    /// consumer would. Its `request_id` becomes the `message-id`.
    pub fn execute(message: &ExecuteTask) -> Result<Self, BrokerError> {
        message.validate()?;
        Ok(Outgoing {
            message_id: Some(message.request_id.clone()),
            message_type: Some(Source::Executions.message_type().to_owned()),
            ..Outgoing::new(
                Source::Executions.routing_key(),
                encode_execute_task(message),
            )
        })
    }

    /// An [`ItemBatch`] for the batches queue, after checking it as a
    /// consumer would. Its `message-id` is `{run_id}:{first item id}`.
    pub fn batch(message: &ItemBatch) -> Result<Self, BrokerError> {
        message.validate()?;
        let first = message.item_ids.first().copied().unwrap_or_default();
        Ok(Outgoing {
            message_id: Some(format!("{}:{first}", message.run_id)),
            message_type: Some(Source::Batches.message_type().to_owned()),
            ..Outgoing::new(Source::Batches.routing_key(), encode_item_batch(message))
        })
    }

    /// Add a string header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    fn properties(&self) -> BasicProperties {
        let mut table = FieldTable::default();
        for (key, value) in &self.headers {
            table.insert(key.as_str().into(), headers::string_value(value));
        }
        table.insert(
            headers::SCHEMA.into(),
            headers::int_value(i64::from(SCHEMA_VERSION)),
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        table.insert(headers::PUBLISHED_MS.into(), headers::int_value(now_ms));
        let mut properties = base_properties().with_headers(table);
        if let Some(id) = &self.message_id {
            properties = properties.with_message_id(id.as_str().into());
        }
        if let Some(kind) = &self.message_type {
            properties = properties.with_type(kind.as_str().into());
        }
        properties
    }
}

/// Persistent protobuf message, stamped now.
pub(crate) fn base_properties() -> BasicProperties {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(headers::CONTENT_TYPE.into())
        .with_timestamp(now)
        .with_app_id("tarefas".into())
}

/// A message with its destination, ready for `basic.publish`.
pub(crate) struct Raw<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) routing_key: &'a str,
    pub(crate) payload: &'a [u8],
    pub(crate) properties: BasicProperties,
}

/// Publishes with publisher confirms; see the [module docs](self).
///
/// Cloning shares the channel; concurrent publishes on one publisher are fine.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    channel: Mutex<Option<Channel>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("exchange", &self.inner.shared.names().exchange())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Publisher {
            inner: Arc::new(Inner {
                shared,
                channel: Mutex::new(None),
            }),
        }
    }

    /// Publish `payload` to the main exchange with `routing_key`, and wait for
    /// RabbitMQ's confirm.
    ///
    /// The payload is not checked: prefer [`Publisher::publish_execute`] and
    /// [`Publisher::publish_batch`].
    pub async fn publish(
        &self,
        routing_key: &str,
        payload: &[u8],
        headers: &Headers,
    ) -> Result<(), BrokerError> {
        let message = Outgoing {
            headers: headers.clone(),
            ..Outgoing::new(routing_key, Vec::new())
        };
        let exchange = self.inner.shared.names().exchange();
        self.send_confirmed(&[Raw {
            exchange: &exchange,
            routing_key,
            payload,
            properties: message.properties(),
        }])
        .await
    }

    /// Validate, encode and publish an [`ExecuteTask`]; returns once it is
    /// confirmed.
    pub async fn publish_execute(&self, message: &ExecuteTask) -> Result<(), BrokerError> {
        self.publish_many(&[Outgoing::execute(message)?]).await
    }

    /// Validate, encode and publish an [`ItemBatch`]; returns once it is
    /// confirmed.
    pub async fn publish_batch(&self, message: &ItemBatch) -> Result<(), BrokerError> {
        self.publish_many(&[Outgoing::batch(message)?]).await
    }

    /// Publish every message, then wait for all the confirms.
    ///
    /// `Ok` means every message was confirmed. On error, some may have been
    /// published: publish the batch again (consumers are idempotent).
    pub async fn publish_many(&self, messages: &[Outgoing]) -> Result<(), BrokerError> {
        let exchange = self.inner.shared.names().exchange();
        let raw: Vec<Raw<'_>> = messages
            .iter()
            .map(|m| Raw {
                exchange: &exchange,
                routing_key: &m.routing_key,
                payload: &m.payload,
                properties: m.properties(),
            })
            .collect();
        self.send_confirmed(&raw).await
    }

    /// The confirm channel, opened (and the connection re-opened) if needed.
    async fn channel(&self, deadline: Instant) -> Result<Channel, BrokerError> {
        let mut current = self.inner.channel.lock().await;
        if let Some(channel) = current.as_ref() {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *current = None;
        let conn = self.inner.shared.connection_until(deadline).await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(BrokerError::amqp("channel.open"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(BrokerError::amqp("confirm.select"))?;
        *current = Some(channel.clone());
        Ok(channel)
    }

    /// Publish `messages` (any exchange) and wait for their confirms,
    /// republishing those lost to a connection drop until the publish timeout.
    pub(crate) async fn send_confirmed(&self, messages: &[Raw<'_>]) -> Result<(), BrokerError> {
        let started = Instant::now();
        let deadline = started + self.inner.shared.config.publish_timeout;
        let mut backoff = Backoff::new(self.inner.shared.config.backoff);
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        loop {
            let (failed, error) = match self.channel(deadline).await {
                Ok(channel) => {
                    let sent = tokio::time::timeout_at(
                        deadline,
                        self.send_once(&channel, messages, &pending),
                    );
                    match sent.await {
                        Ok(result) => match result? {
                            None => return Ok(()),
                            Some(unconfirmed) => unconfirmed,
                        },
                        // E.g. RabbitMQ blocks publishers (memory or disk alarm).
                        Err(_) => {
                            return Err(BrokerError::Unavailable {
                                url: redact_url(&self.inner.shared.config.url),
                                waited_ms: started.elapsed().as_millis(),
                                last_error: "no publisher confirm before the publish timeout"
                                    .to_owned(),
                            })
                        }
                    }
                }
                Err(e @ BrokerError::Unavailable { .. }) => return Err(e),
                Err(e) => (pending.clone(), e),
            };
            let delay = backoff.next_delay();
            if Instant::now() + delay >= deadline {
                return Err(BrokerError::Unavailable {
                    url: redact_url(&self.inner.shared.config.url),
                    waited_ms: started.elapsed().as_millis(),
                    last_error: one_line(&error.to_string(), 500),
                });
            }
            warn!(
                unconfirmed = failed.len(),
                retry_in_ms = delay.as_millis(),
                error.message = %error,
                error.cause_chain = ?error,
                "publish not confirmed; publishing again"
            );
            tokio::time::sleep(delay).await;
            pending = failed;
        }
    }

    /// One pass: publish `pending`, await their confirms. Returns `None` when
    /// all were confirmed, else the indexes to publish again (lost to a
    /// transport failure) with the last error; or a final error (nack,
    /// unroutable).
    async fn send_once(
        &self,
        channel: &Channel,
        messages: &[Raw<'_>],
        pending: &[usize],
    ) -> Result<Option<(Vec<usize>, BrokerError)>, BrokerError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut confirms: Vec<(usize, PublisherConfirm)> = Vec::with_capacity(pending.len());
        let mut failed: Vec<usize> = Vec::new();
        let mut last_error = None;
        for (n, &i) in pending.iter().enumerate() {
            let m = &messages[i];
            match channel
                .basic_publish(
                    m.exchange.into(),
                    short(m.routing_key)?,
                    options,
                    m.payload,
                    m.properties.clone(),
                )
                .await
            {
                Ok(confirm) => confirms.push((i, confirm)),
                Err(e) => {
                    failed.extend_from_slice(&pending[n..]);
                    last_error = Some(BrokerError::amqp("basic.publish")(e));
                    break;
                }
            }
        }
        let mut nacked = 0usize;
        let mut unroutable = None;
        for (i, confirm) in confirms {
            match confirm.await {
                Ok(Confirmation::Ack(None)) => {}
                Ok(Confirmation::Ack(Some(_returned))) => {
                    let m = &messages[i];
                    unroutable.get_or_insert(BrokerError::Unroutable {
                        exchange: m.exchange.to_owned(),
                        routing_key: m.routing_key.to_owned(),
                    });
                }
                Ok(Confirmation::Nack(_)) => nacked += 1,
                Ok(Confirmation::NotRequested) => {
                    // The channel lost its confirm mode: use a new one.
                    failed.push(i);
                    *self.inner.channel.lock().await = None;
                    last_error = Some(BrokerError::Config(
                        "publisher channel is not in confirm mode".to_owned(),
                    ));
                }
                Err(e) => {
                    failed.push(i);
                    last_error = Some(BrokerError::amqp("publisher confirm")(e));
                }
            }
        }
        if let Some(e) = unroutable {
            return Err(e);
        }
        if nacked > 0 {
            return Err(BrokerError::Nacked { count: nacked });
        }
        debug!(
            confirmed = pending.len() - failed.len(),
            "published with confirms"
        );
        match last_error {
            None if failed.is_empty() => Ok(None),
            error => {
                failed.sort_unstable();
                let error = error.unwrap_or(BrokerError::Nacked { count: 0 });
                Ok(Some((failed, error)))
            }
        }
    }
}

/// A routing key as an AMQP short string (at most 255 bytes).
fn short(value: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(value).map_err(|e| BrokerError::Config(format!("routing key: {e}")))
}
