//! Operator tools for the dead-letter queue: list what is there and why, and
//! replay messages to the queue they failed in (`tarefas dlq list`,
//! `tarefas dlq replay`).
//!
//! **Listing peeks without losing anything.** RabbitMQ has no "peek" in AMQP
//! 0-9-1, so [`Broker::dlq_list`] takes up to `limit` messages with
//! `basic.get` *without* acking them (each stays unacked on the listing's
//! channel, so the next `basic.get` returns the next message), then gives them
//! all back with one `basic.nack(multiple, requeue)`. If the tool dies midway,
//! closing the channel requeues them too. It uses `nack`, not `reject`, which
//! RabbitMQ 4.3+ does not count as a failed delivery, and the DLQ's delivery
//! limit is out of reach (see [`topology`](crate::topology)), so peeking never
//! drops a dead letter. Messages being listed are invisible to a concurrent
//! replay for that moment.
//!
//! **Replay** takes messages with `basic.get` (in chunks of 100), publishes
//! each (with confirms)
//! straight to its source queue (header `x-tarefas-source-queue`, or the
//! queue of the latest `x-death` entry for messages the broker dead-lettered
//! itself, e.g. after the work queue's delivery limit) with its attempt
//! counter reset to 1 and the dead-letter headers removed, and only then acks
//! it in the DLQ. Messages whose source is not one
//! of our work queues are left in the DLQ (counted as skipped).

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};
use tracing::{info, instrument, warn};

use crate::connection::Broker;
use crate::error::BrokerError;
use crate::headers;
use crate::publish::Raw;

/// One message in the DLQ, as listed by [`Broker::dlq_list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Why it was dead-lettered: `x-tarefas-reason`; for a message RabbitMQ
    /// dead-lettered itself, `broker: {reason} in {queue}` from its latest
    /// `x-death` entry (e.g. `broker: delivery_limit in tarefas.batches`);
    /// else `"unknown"`.
    pub reason: String,
    /// `x-tarefas-reason-code` (`malformed`, `handler`, `retries_exhausted`,
    /// ...), if set.
    pub reason_code: Option<String>,
    /// The work queue it failed in, if known.
    pub source_queue: Option<String>,
    /// When it was dead-lettered (RFC 3339), if known.
    pub failed_at: Option<String>,
    /// Its routing key (`execute`, `batch`, ...).
    pub routing_key: String,
    /// Body size in bytes.
    pub size: usize,
    /// The attempt it had reached (`x-tarefas-attempt`, 1 if absent).
    pub attempt: u32,
    /// AMQP `type`, e.g. `tarefas.v1.ItemBatch`.
    pub message_type: Option<String>,
    /// AMQP `message-id`.
    pub message_id: Option<String>,
    /// How many times it was replayed before (`x-tarefas-replays`).
    pub replays: u32,
}

impl DeadLetter {
    fn from_message(message: &BasicGetMessage) -> Self {
        let delivery = &message.delivery;
        let props = &delivery.properties;
        let reason = headers::get_string(props, headers::REASON)
            .or_else(|| {
                latest_death(props).map(|(queue, reason)| format!("broker: {reason} in {queue}"))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        DeadLetter {
            reason,
            reason_code: headers::get_string(props, headers::REASON_CODE),
            source_queue: source_queue(message),
            failed_at: headers::get_string(props, headers::FAILED_AT),
            routing_key: delivery.routing_key.as_str().to_owned(),
            size: delivery.data.len(),
            attempt: headers::attempt(props),
            message_type: props.kind().as_ref().map(|s| s.as_str().to_owned()),
            message_id: props.message_id().as_ref().map(|s| s.as_str().to_owned()),
            replays: headers::get_i64(props, headers::REPLAYS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        }
    }
}

/// The queue the message failed in: ours (`x-tarefas-source-queue`), or for
/// a message RabbitMQ dead-lettered itself, the queue of its latest death.
fn source_queue(message: &BasicGetMessage) -> Option<String> {
    let props = &message.delivery.properties;
    headers::get_string(props, headers::SOURCE_QUEUE)
        .or_else(|| latest_death(props).map(|(queue, _)| queue))
}

/// `(queue, reason)` of the most recent entry of RabbitMQ's `x-death` header
/// (most recent first), or of `x-first-death-*` when `x-death` is absent.
///
/// A message that went through the delay queues has `expired` entries for
/// them too; the latest entry is where it finally failed.
fn latest_death(props: &BasicProperties) -> Option<(String, String)> {
    let from_x_death = headers::table(props)
        .and_then(|t| t.inner().get("x-death"))
        .and_then(|deaths| match deaths {
            AMQPValue::FieldArray(entries) => entries.as_slice().first().cloned(),
            _ => None,
        })
        .and_then(|entry| match entry {
            AMQPValue::FieldTable(fields) => {
                let get = |key: &str| fields.inner().get(key).and_then(headers::as_string);
                Some((get("queue")?, get("reason")?))
            }
            _ => None,
        });
    from_x_death.or_else(|| {
        Some((
            headers::get_string(props, "x-first-death-queue")?,
            headers::get_string(props, "x-first-death-reason")?,
        ))
    })
}

/// What [`Broker::dlq_replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Messages moved back to their source queue.
    pub replayed: usize,
    /// Messages left in the DLQ because their source queue is unknown.
    pub skipped: usize,
}

/// Headers removed when a message is replayed.
const DEAD_LETTER_HEADERS: [&str; 10] = [
    headers::REASON,
    headers::REASON_CODE,
    headers::SOURCE_QUEUE,
    headers::FAILED_AT,
    headers::RETRY_REASON,
    "x-death",
    "x-first-death-reason",
    "x-first-death-queue",
    "x-first-death-exchange",
    "x-delivery-count",
];

/// Other RabbitMQ dead-letter headers (3.13+), removed too.
const BROKER_DEATH_PREFIXES: [&str; 2] = ["x-last-death-", "x-first-death-"];

/// Messages replayed per wait for confirms.
const REPLAY_CHUNK: usize = 100;

/// The properties of a replayed message: dead-letter headers removed, attempt
/// reset to 1, replay count incremented.
fn replay_properties(props: &BasicProperties) -> BasicProperties {
    let replays = headers::get_i64(props, headers::REPLAYS).unwrap_or(0);
    headers::with_headers(props, |h| {
        h.retain(|key, _| {
            let key = key.as_str();
            !DEAD_LETTER_HEADERS.contains(&key)
                && !BROKER_DEATH_PREFIXES.iter().any(|p| key.starts_with(p))
        });
        h.insert(headers::ATTEMPT.into(), headers::int_value(1));
        h.insert(headers::REPLAYS.into(), headers::int_value(replays + 1));
    })
}

impl Broker {
    /// List up to `limit` dead letters, oldest first, leaving them all in the
    /// DLQ (see the [module docs](crate::dlq) for how).
    #[instrument(skip(self), err)]
    pub async fn dlq_list(&self, limit: usize) -> Result<Vec<DeadLetter>, BrokerError> {
        let channel = self.tool_channel().await?;
        let queue = self.names().dead_letter_queue();
        let mut listed = Vec::new();
        let mut last_tag = None;
        let result = async {
            while listed.len() < limit {
                match get(&channel, &queue).await? {
                    Some(message) => {
                        last_tag = Some(message.delivery.delivery_tag);
                        listed.push(DeadLetter::from_message(&message));
                    }
                    None => break,
                }
            }
            Ok::<(), BrokerError>(())
        }
        .await;
        give_back(&channel, last_tag).await;
        let _ = channel.close(200, "dlq list done".into()).await;
        result?;
        Ok(listed)
    }

    /// Move up to `max` dead letters back to their source queues; returns how
    /// many were replayed and skipped (see the [module docs](crate::dlq)).
    #[instrument(skip(self), err)]
    pub async fn dlq_replay(&self, max: usize) -> Result<ReplayReport, BrokerError> {
        let channel = self.tool_channel().await?;
        let publisher = self.publisher();
        let queue = self.names().dead_letter_queue();
        let mut report = ReplayReport::default();
        // Delivery tags taken and not acked (given back at the end).
        let mut outstanding: Vec<u64> = Vec::new();
        let result = async {
            let mut exhausted = false;
            while !exhausted && report.replayed + report.skipped < max {
                // Take a chunk, publish it with one wait for the confirms, ack it.
                let mut chunk: Vec<(BasicGetMessage, String, BasicProperties)> = Vec::new();
                while chunk.len() < REPLAY_CHUNK
                    && report.replayed + report.skipped + chunk.len() < max
                {
                    let Some(message) = get(&channel, &queue).await? else {
                        exhausted = true;
                        break;
                    };
                    outstanding.push(message.delivery.delivery_tag);
                    let source = source_queue(&message);
                    match source.filter(|q| self.names().source_of(q).is_some()) {
                        Some(target) => {
                            let properties = replay_properties(&message.delivery.properties);
                            chunk.push((message, target, properties));
                        }
                        None => {
                            warn!(
                                source_queue = ?source_queue(&message),
                                "dead letter has no known source queue; leaving it in the DLQ"
                            );
                            report.skipped += 1;
                        }
                    }
                }
                if chunk.is_empty() {
                    continue;
                }
                let raw: Vec<Raw<'_>> = chunk
                    .iter()
                    .map(|(message, target, properties)| Raw {
                        exchange: "",
                        routing_key: target,
                        payload: &message.delivery.data,
                        properties: properties.clone(),
                    })
                    .collect();
                publisher.send_confirmed(&raw).await?;
                for (message, ..) in &chunk {
                    message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(BrokerError::amqp("basic.ack"))?;
                    outstanding.retain(|tag| *tag != message.delivery.delivery_tag);
                    report.replayed += 1;
                }
            }
            Ok::<(), BrokerError>(())
        }
        .await;
        give_back(&channel, outstanding.iter().max().copied()).await;
        let _ = channel.close(200, "dlq replay done".into()).await;
        result?;
        info!(
            replayed = report.replayed,
            skipped = report.skipped,
            "DLQ replay done"
        );
        Ok(report)
    }

    async fn tool_channel(&self) -> Result<Channel, BrokerError> {
        let conn = self.shared.connection().await?;
        conn.create_channel()
            .await
            .map_err(BrokerError::amqp("channel.open"))
    }
}

async fn get(channel: &Channel, queue: &str) -> Result<Option<BasicGetMessage>, BrokerError> {
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(BrokerError::amqp("basic.get"))
}

/// Requeue every message still unacked on `channel`, up to `last_tag` (which
/// must be unacked itself).
async fn give_back(channel: &Channel, last_tag: Option<u64>) {
    let Some(tag) = last_tag else { return };
    if let Err(e) = channel
        .basic_nack(
            tag,
            BasicNackOptions {
                multiple: true,
                requeue: true,
            },
        )
        .await
    {
        // Closing the channel requeues them anyway.
        warn!(error.message = %e, "basic.nack failed; messages return when the channel closes");
    }
}
