//! The consumer: manual acks, bounded concurrency, retries through the delay
//! queues, dead-lettering, graceful shutdown.
//!
//! [`Broker::consume`] decodes each delivery with the wire contract's checked
//! decoder and hands it to a [`Handler`], which returns the [`Outcome`]:
//!
//! * [`Outcome::Ack`]: the effects are committed; the message is acked. A
//!   message is acked **only** after its handler returned `Ack`.
//! * [`Outcome::Retry`]: published to the delay queue for its attempt (header
//!   `x-tarefas-attempt` + 1, reason in `x-tarefas-retry-reason`), then acked;
//!   it comes back to the work queue after the delay. What a retry asked on the
//!   last attempt ([`Names::max_attempts`](crate::Names::max_attempts)) does is
//!   the queue's [`WhenExhausted`]: dead-letter it with reason code
//!   `retries_exhausted` (the default), ack it (the truth is elsewhere and
//!   something else republishes it), or keep retrying at the last delay. Each
//!   case is logged and counted in `tarefas_retries_exhausted_total{queue,then}`.
//! * [`Outcome::DeadLetter`]: published to the DLQ with `x-tarefas-reason`,
//!   `x-tarefas-reason-code`, `x-tarefas-source-queue` and
//!   `x-tarefas-failed-at`, then acked.
//! * [`Outcome::Requeue`]: nacked with requeue (e.g. the worker is stopping).
//!
//! A body that does not decode (empty, too large, not protobuf, unknown schema
//! version, invalid fields) goes straight to the DLQ with the decoder's
//! one-line reason and its code; the consumer goes on with the next message.
//! A handler that panics counts as a `Retry`, but once the retries are
//! exhausted it is dead-lettered whatever the queue's [`WhenExhausted`]: a
//! message that crashes its handler is poison.
//!
//! The republish (retry, dead letter) is confirmed before the original is
//! acked, so a crash in between duplicates a message rather than losing it.
//! If the republish fails the original is requeued.
//!
//! **Concurrency.** Up to `prefetch` deliveries are handled at once: the
//! channel's prefetch (`basic.qos`) and a semaphore of the same size.
//!
//! **Shutdown.** When the shutdown future completes the consumer cancels its
//! subscription (`basic.cancel`), lets in-flight handlers finish until the
//! drain timeout, then stops the rest: their messages are nacked with requeue.
//! Deliveries that were prefetched but never handed to a handler go back to
//! the queue when the channel closes. Nothing is lost.
//!
//! **Connection drops.** The consumer re-subscribes on the new connection
//! (with backoff). Handlers already running keep running, but their ack can no
//! longer reach RabbitMQ, which has already requeued their messages: such a
//! message is delivered again (consumers are idempotent, design §3).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use tarefas_proto::v1::{ExecuteTask, ItemBatch};
use tarefas_proto::{decode_execute_task, decode_item_batch, DecodeError};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn, Instrument};

use crate::connection::{Backoff, Broker, Shared};
use crate::error::{one_line, BrokerError};
use crate::headers;
use crate::publish::{Publisher, Raw};
use crate::topology::{self, Source};

/// Longest reason kept in a header.
const MAX_REASON_BYTES: usize = 1000;

/// Counter, labels `queue` and `then` ([`WhenExhausted::label`]): messages whose
/// retries were exhausted on a transient failure.
pub const EXHAUSTED_METRIC: &str = "tarefas_retries_exhausted_total";

/// A message type that travels on a work queue, with its checked decoder.
pub trait WireMessage: Sized + Send + 'static {
    /// The work queue that carries it.
    const SOURCE: Source;

    /// Decode and validate a body (the wire contract's checked decoder).
    fn decode(body: &[u8]) -> Result<Self, DecodeError>;
}

impl WireMessage for ExecuteTask {
    const SOURCE: Source = Source::Executions;

    fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        decode_execute_task(body)
    }
}

impl WireMessage for ItemBatch {
    const SOURCE: Source = Source::Batches;

    fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        decode_item_batch(body)
    }
}

/// A work queue and the type of its messages: [`EXECUTIONS`] or [`BATCHES`].
pub struct Queue<M> {
    _message: PhantomData<fn() -> M>,
}

impl<M> Clone for Queue<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Queue<M> {}

impl<M: WireMessage> std::fmt::Debug for Queue<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Queue").field(&M::SOURCE).finish()
    }
}

impl<M: WireMessage> Queue<M> {
    const fn new() -> Self {
        Queue {
            _message: PhantomData,
        }
    }

    /// The work queue.
    pub fn source(self) -> Source {
        M::SOURCE
    }
}

/// The executions queue ([`ExecuteTask`], for the planner).
pub const EXECUTIONS: Queue<ExecuteTask> = Queue::new();

/// The batches queue ([`ItemBatch`], for the executor).
pub const BATCHES: Queue<ItemBatch> = Queue::new();

/// A decoded message handed to a [`Handler`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Incoming<M> {
    /// The decoded, validated message.
    pub message: M,
    /// Delivery attempt, from 1 (header `x-tarefas-attempt`).
    pub attempt: u32,
    /// The last attempt allowed: a `Retry` now dead-letters the message.
    pub max_attempts: u32,
    /// RabbitMQ delivered it before without an ack (a worker stopped or
    /// crashed while handling it): its effects may be partly done.
    pub redelivered: bool,
    /// The AMQP `message-id`, if any.
    pub message_id: Option<String>,
    /// The W3C trace context of the producer (header `traceparent`), if any.
    pub traceparent: Option<String>,
}

impl<M> Incoming<M> {
    /// A first delivery of `message` (for handler unit tests).
    pub fn new(message: M) -> Self {
        Incoming {
            message,
            attempt: 1,
            max_attempts: 1,
            redelivered: false,
            message_id: None,
            traceparent: None,
        }
    }

    /// Whether a `Retry` would still retry (this is not the last attempt).
    pub fn can_retry(&self) -> bool {
        self.attempt < self.max_attempts
    }
}

/// What to do with a message after handling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The effects are committed: ack.
    Ack,
    /// A transient failure: try again after the next retry delay.
    Retry {
        /// Why (one line; kept in a header).
        reason: String,
    },
    /// A permanent failure: move the message to the DLQ.
    DeadLetter {
        /// Why (one line; kept in the `x-tarefas-reason` header).
        reason: String,
    },
    /// Not handled (e.g. shutting down): give it back to the queue now.
    Requeue,
}

impl Outcome {
    /// [`Outcome::Retry`] with `reason`.
    pub fn retry(reason: impl std::fmt::Display) -> Self {
        Outcome::Retry {
            reason: reason.to_string(),
        }
    }

    /// [`Outcome::DeadLetter`] with `reason`.
    pub fn dead_letter(reason: impl std::fmt::Display) -> Self {
        Outcome::DeadLetter {
            reason: reason.to_string(),
        }
    }
}

/// Handles one message and decides its [`Outcome`].
///
/// Implemented for async closures `Fn(Incoming<M>) -> impl Future<Output =
/// Outcome>`. Called concurrently (up to the prefetch); a handler that does
/// not finish by the end of the drain timeout is dropped at an `.await`, so
/// commit its effects atomically (one transaction) before returning `Ack`.
pub trait Handler<M>: Send + Sync + 'static {
    /// Handle `incoming`.
    fn handle(&self, incoming: Incoming<M>) -> impl Future<Output = Outcome> + Send;
}

impl<M, F, Fut> Handler<M> for F
where
    F: Fn(Incoming<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    fn handle(&self, incoming: Incoming<M>) -> impl Future<Output = Outcome> + Send {
        self(incoming)
    }
}

/// What a [`Outcome::Retry`] asked on the last attempt does: the retry ladder
/// is over and the failure is still transient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenExhausted {
    /// Move it to the DLQ (reason code `retries_exhausted`).
    #[default]
    DeadLetter,
    /// Ack it and log it: its work is recorded elsewhere (e.g. items still
    /// `pending` in Postgres) and something else republishes it.
    Ack,
    /// Keep retrying at the last delay until it succeeds or fails for good:
    /// for messages that nothing else could bring back.
    KeepRetrying,
}

impl WhenExhausted {
    /// The `then` label of `tarefas_retries_exhausted_total`.
    pub fn label(self) -> &'static str {
        match self {
            WhenExhausted::DeadLetter => "dead_lettered",
            WhenExhausted::Ack => "acked",
            WhenExhausted::KeepRetrying => "kept_retrying",
        }
    }
}

/// How to consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// Most unacked deliveries, and most handlers running at once (≥ 1).
    pub prefetch: u16,
    /// How long in-flight handlers may run after shutdown is asked before
    /// their messages are requeued. Keep it below the pod's grace period.
    pub drain_timeout: Duration,
    /// Consumer tag prefix (shown in RabbitMQ); a unique suffix is added.
    pub tag: String,
    /// What a transient failure on the last attempt does.
    pub when_exhausted: WhenExhausted,
}

impl ConsumerOptions {
    /// `prefetch` with a 20 s drain timeout.
    pub fn new(prefetch: u16) -> Self {
        ConsumerOptions {
            prefetch,
            drain_timeout: Duration::from_secs(20),
            tag: "tarefas".to_owned(),
            when_exhausted: WhenExhausted::DeadLetter,
        }
    }

    /// Set what a transient failure on the last attempt does.
    pub fn when_exhausted(mut self, when_exhausted: WhenExhausted) -> Self {
        self.when_exhausted = when_exhausted;
        self
    }

    /// Set the drain timeout.
    pub fn with_drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }
}

/// What a consumer did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumeReport {
    /// Messages acked after `Outcome::Ack`.
    pub acked: u64,
    /// Messages sent to a delay queue.
    pub retried: u64,
    /// Messages dead-lettered by the handler's decision or after the last
    /// retry.
    pub dead_lettered: u64,
    /// Messages dead-lettered because they did not decode.
    pub malformed: u64,
    /// Messages given back to the queue (`Requeue`, shutdown, failed
    /// republish).
    pub requeued: u64,
    /// Messages acked after their last retry failed ([`WhenExhausted::Ack`]).
    pub exhausted_acked: u64,
    /// Times the subscription was re-established after a drop.
    pub resubscribed: u64,
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    malformed: AtomicU64,
    requeued: AtomicU64,
    exhausted_acked: AtomicU64,
}

impl Counters {
    fn report(&self, resubscribed: u64) -> ConsumeReport {
        ConsumeReport {
            acked: self.acked.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            requeued: self.requeued.load(Ordering::Relaxed),
            exhausted_acked: self.exhausted_acked.load(Ordering::Relaxed),
            resubscribed,
        }
    }
}

/// What a delivery task needs.
struct Context<H> {
    shared: Arc<Shared>,
    publisher: Publisher,
    handler: Arc<H>,
    source: Source,
    queue: String,
    when_exhausted: WhenExhausted,
    counters: Counters,
}

impl Broker {
    /// Consume `queue` with `prefetch` until `shutdown` completes, then drain
    /// (20 s). See [`Broker::consume_with`].
    pub async fn consume<M, H>(
        &self,
        queue: Queue<M>,
        prefetch: u16,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<ConsumeReport, BrokerError>
    where
        M: WireMessage,
        H: Handler<M>,
    {
        self.consume_with(queue, ConsumerOptions::new(prefetch), handler, shutdown)
            .await
    }

    /// Consume `queue`: see the [module docs](crate::consume).
    ///
    /// Runs until `shutdown` completes and in-flight messages are settled, and
    /// returns what it did. Connection drops are handled inside (re-subscribe
    /// with backoff); the error cases need an operator: a topology conflict,
    /// a prefetch of 0.
    pub async fn consume_with<M, H>(
        &self,
        queue: Queue<M>,
        options: ConsumerOptions,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<ConsumeReport, BrokerError>
    where
        M: WireMessage,
        H: Handler<M>,
    {
        if options.prefetch == 0 {
            return Err(BrokerError::Config(
                "prefetch must be at least 1".to_owned(),
            ));
        }
        let source = queue.source();
        let ctx = Arc::new(Context {
            shared: self.shared.clone(),
            publisher: self.publisher(),
            handler: Arc::new(handler),
            source,
            queue: self.names().queue(source),
            when_exhausted: options.when_exhausted,
            counters: Counters::default(),
        });
        // Present from the start (at 0), so that an alert on it has a series.
        metrics::counter!(EXHAUSTED_METRIC, "queue" => source.suffix(), "then" => options.when_exhausted.label())
            .increment(0);
        let span = tracing::info_span!("consume", queue = %ctx.queue, prefetch = options.prefetch);
        run::<M, H>(ctx, options, shutdown).instrument(span).await
    }
}

/// The subscription loop: (re)subscribe, dispatch deliveries to tasks, then
/// drain on shutdown.
async fn run<M: WireMessage, H: Handler<M>>(
    ctx: Arc<Context<H>>,
    options: ConsumerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<ConsumeReport, BrokerError> {
    let mut shutdown = pin!(shutdown);
    let permits = Arc::new(Semaphore::new(usize::from(options.prefetch)));
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut backoff = Backoff::new(ctx.shared.config.backoff);
    let mut subscriptions = 0u64;
    // Channels of earlier subscriptions, kept open until their tasks settle.
    let mut channels: Vec<Channel> = Vec::new();

    'subscribe: loop {
        let subscribed = tokio::select! {
            biased;
            () = &mut shutdown => break 'subscribe,
            s = subscribe(&ctx, &options, subscriptions) => s,
        };
        let (channel, mut consumer, tag) = match subscribed {
            Ok(s) => s,
            Err(e @ (BrokerError::Topology { .. } | BrokerError::Config(_))) => {
                error!(error.message = %e, error.cause_chain = ?e, "cannot consume");
                drain(&mut tasks, &cancel_tx, options.drain_timeout).await;
                return Err(e);
            }
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(
                    retry_in_ms = delay.as_millis(),
                    error.message = %e,
                    error.cause_chain = ?e,
                    "cannot subscribe; retrying"
                );
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'subscribe,
                    () = tokio::time::sleep(delay) => continue 'subscribe,
                }
            }
        };
        subscriptions += 1;
        channels.retain(|c| c.status().connected());
        channels.push(channel.clone());
        info!(consumer_tag = %tag, "consuming");

        loop {
            // Reap finished tasks (their panics are bugs in this crate).
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    error!(error.message = %e, "delivery task failed");
                }
            }
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => {
                    cancel_subscription(&channel, &tag).await;
                    break 'subscribe;
                }
                permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            };
            let delivery = tokio::select! {
                biased;
                () = &mut shutdown => {
                    cancel_subscription(&channel, &tag).await;
                    break 'subscribe;
                }
                delivery = consumer.next() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    backoff.reset();
                    let ctx = ctx.clone();
                    let channel = channel.clone();
                    let cancel = cancel_rx.clone();
                    tasks.spawn(async move {
                        process::<M, H>(&ctx, delivery, cancel).await;
                        drop(channel);
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    warn!(error.message = %e, error.cause_chain = ?e, "subscription lost; re-subscribing");
                    break;
                }
                None => {
                    warn!("subscription cancelled by RabbitMQ; re-subscribing");
                    break;
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            biased;
            () = &mut shutdown => break 'subscribe,
            () = tokio::time::sleep(delay) => {}
        }
    }

    info!(
        in_flight = tasks.len(),
        "stopping: draining in-flight messages"
    );
    drain(&mut tasks, &cancel_tx, options.drain_timeout).await;
    // Closing the channels requeues deliveries that were prefetched but never
    // handed to a handler.
    for channel in channels {
        if channel.status().connected() {
            let _ = channel.close(200, "consumer stopped".into()).await;
        }
    }
    let report = ctx.counters.report(subscriptions.saturating_sub(1));
    info!(?report, "consumer stopped");
    Ok(report)
}

/// Open a channel, declare the topology, set the prefetch and subscribe.
async fn subscribe<H>(
    ctx: &Context<H>,
    options: &ConsumerOptions,
    n: u64,
) -> Result<(Channel, lapin::Consumer, String), BrokerError> {
    let conn = ctx.shared.connection().await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(BrokerError::amqp("channel.open"))?;
    topology::declare(&channel, ctx.shared.names()).await?;
    channel
        .basic_qos(options.prefetch, BasicQosOptions::default())
        .await
        .map_err(BrokerError::amqp("basic.qos"))?;
    let tag = format!(
        "{}.{}.{}.{n}",
        options.tag,
        std::process::id(),
        unique_suffix()
    );
    let consumer = channel
        .basic_consume(
            ctx.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(BrokerError::amqp("basic.consume"))?;
    Ok((channel, consumer, tag))
}

fn unique_suffix() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn cancel_subscription(channel: &Channel, tag: &str) {
    if let Err(e) = channel
        .basic_cancel(tag.into(), BasicCancelOptions::default())
        .await
    {
        debug!(error.message = %e, "basic.cancel failed (the channel is gone)");
    }
}

/// Wait for the tasks until `timeout`, then tell the rest to stop (they requeue
/// their messages) and wait for them to settle.
async fn drain(tasks: &mut JoinSet<()>, cancel: &watch::Sender<bool>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if tasks.is_empty() {
        return;
    }
    warn!(
        in_flight = tasks.len(),
        "drain timeout reached: requeueing unfinished messages"
    );
    let _ = cancel.send(true);
    // Settling is an ack/nack or a confirmed publish: bounded, but do not
    // wait forever on a dead broker (RabbitMQ requeues what stays unacked).
    let settle_deadline = Instant::now() + Duration::from_secs(10);
    while !tasks.is_empty() {
        if tokio::time::timeout_at(settle_deadline, tasks.join_next())
            .await
            .is_err()
        {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Records the queue lag (publish to consumption) of a first delivery; retries (which sat
/// in a delay queue on purpose) and replays from the DLQ are left out.
fn record_lag(source: Source, properties: &lapin::BasicProperties, attempt: u32) {
    if attempt > 1 || headers::get_i64(properties, headers::REPLAYS).is_some() {
        return;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let published_ms = headers::get_i64(properties, headers::PUBLISHED_MS)
        .or_else(|| properties.timestamp().map(|s| s as i64 * 1000));
    if let Some(published_ms) = published_ms {
        let lag = (now_ms - published_ms).max(0) as f64 / 1000.0;
        metrics::histogram!("tarefas_queue_lag_seconds", "queue" => source.suffix()).record(lag);
    }
}

/// Decode, handle and settle one delivery.
async fn process<M: WireMessage, H: Handler<M>>(
    ctx: &Arc<Context<H>>,
    delivery: Delivery,
    mut cancel: watch::Receiver<bool>,
) {
    let attempt = headers::attempt(&delivery.properties);
    let max_attempts = ctx.shared.names().max_attempts();
    let message = match M::decode(&delivery.data) {
        Ok(message) => message,
        Err(e) => {
            warn!(
                reason = %e,
                code = e.code(),
                size = delivery.data.len(),
                "malformed message: dead-lettering"
            );
            let reason = e.to_string();
            if dead_letter(ctx, &delivery, &reason, e.code()).await {
                ctx.counters.malformed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    };
    let incoming = Incoming {
        message,
        attempt,
        max_attempts,
        redelivered: delivery.redelivered,
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        traceparent: headers::get_string(&delivery.properties, headers::TRACEPARENT),
    };
    record_lag(ctx.source, &delivery.properties, attempt);
    let handler = ctx.handler.clone();
    let mut handling = tokio::spawn(async move { handler.handle(incoming).await });
    let mut panicked = false;
    let outcome = tokio::select! {
        // A handler that finished wins over a simultaneous stop.
        biased;
        joined = &mut handling => match joined {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => {
                panicked = true;
                Outcome::retry(format!("handler panicked: {}", panic_message(e.into_panic())))
            }
            Err(_) => Outcome::Requeue,
        },
        _ = cancel.wait_for(|stop| *stop) => {
            handling.abort();
            Outcome::Requeue
        }
    };
    settle(ctx, &delivery, attempt, outcome, panicked).await;
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

async fn settle<H>(
    ctx: &Context<H>,
    delivery: &Delivery,
    attempt: u32,
    outcome: Outcome,
    panicked: bool,
) {
    match outcome {
        Outcome::Ack => {
            if ack(delivery).await {
                ctx.counters.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        Outcome::Requeue => requeue(ctx, delivery).await,
        Outcome::DeadLetter { reason } => {
            warn!(attempt, reason = %one_line(&reason, MAX_REASON_BYTES), "dead-lettering");
            if dead_letter(ctx, delivery, &reason, headers::REASON_CODE_HANDLER).await {
                ctx.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
        }
        Outcome::Retry { reason } => {
            let step = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
            match ctx.shared.names().retry_queue(ctx.source, step) {
                Some(delay_queue) => {
                    debug!(attempt, delay_queue, reason = %one_line(&reason, MAX_REASON_BYTES), "retrying later");
                    if retry(ctx, delivery, &delay_queue, attempt, &reason).await {
                        ctx.counters.retried.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    let then = if panicked {
                        WhenExhausted::DeadLetter
                    } else {
                        ctx.when_exhausted
                    };
                    exhausted(ctx, delivery, attempt, &reason, then).await;
                }
            }
        }
    }
}

/// A retry asked on the last attempt: what the queue's [`WhenExhausted`] says.
async fn exhausted<H>(
    ctx: &Context<H>,
    delivery: &Delivery,
    attempt: u32,
    reason: &str,
    then: WhenExhausted,
) {
    metrics::counter!(EXHAUSTED_METRIC, "queue" => ctx.source.suffix(), "then" => then.label())
        .increment(1);
    let short = one_line(reason, MAX_REASON_BYTES);
    match then {
        WhenExhausted::Ack => {
            warn!(
                attempt,
                reason = %short,
                "retries exhausted on a transient failure: acking (its work is kept elsewhere and republished)"
            );
            if ack(delivery).await {
                ctx.counters.exhausted_acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        WhenExhausted::KeepRetrying => {
            let last = ctx.shared.names().retry_delays().len().saturating_sub(1);
            match ctx.shared.names().retry_queue(ctx.source, last) {
                Some(delay_queue) => {
                    warn!(attempt, delay_queue, reason = %short, "retries exhausted on a transient failure: retrying at the last delay");
                    if retry(ctx, delivery, &delay_queue, attempt, reason).await {
                        ctx.counters.retried.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => requeue(ctx, delivery).await,
            }
        }
        WhenExhausted::DeadLetter => {
            let reason = format!("gave up after {attempt} attempts: {reason}");
            warn!(attempt, reason = %one_line(&reason, MAX_REASON_BYTES), "retries exhausted: dead-lettering");
            if dead_letter(
                ctx,
                delivery,
                &reason,
                headers::REASON_CODE_RETRIES_EXHAUSTED,
            )
            .await
            {
                ctx.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn ack(delivery: &Delivery) -> bool {
    match delivery.acker.ack(BasicAckOptions::default()).await {
        Ok(_) => true,
        Err(e) => {
            // The channel is gone: RabbitMQ requeued the message already.
            warn!(error.message = %e, "ack failed; the message will be redelivered");
            false
        }
    }
}

async fn requeue<H>(ctx: &Context<H>, delivery: &Delivery) {
    let nacked = delivery
        .acker
        .nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await;
    match nacked {
        Ok(_) => {
            ctx.counters.requeued.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => warn!(error.message = %e, "nack failed; the message will be redelivered"),
    }
}

/// Publish a copy to the delay queue, then ack. `false` if it was requeued
/// instead.
async fn retry<H>(
    ctx: &Context<H>,
    delivery: &Delivery,
    delay_queue: &str,
    attempt: u32,
    reason: &str,
) -> bool {
    let properties = headers::with_headers(&delivery.properties, |h| {
        h.insert(
            headers::ATTEMPT.into(),
            headers::int_value(i64::from(attempt) + 1),
        );
        h.insert(
            headers::RETRY_REASON.into(),
            headers::string_value(&one_line(reason, MAX_REASON_BYTES)),
        );
    });
    republish_then_ack(ctx, delivery, "", delay_queue, properties).await
}

/// Publish a copy to the DLQ with the reason headers, then ack. `false` if it
/// was requeued instead.
async fn dead_letter<H>(ctx: &Context<H>, delivery: &Delivery, reason: &str, code: &str) -> bool {
    let failed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let properties = headers::with_headers(&delivery.properties, |h| {
        h.insert(
            headers::REASON.into(),
            headers::string_value(&one_line(reason, MAX_REASON_BYTES)),
        );
        h.insert(headers::REASON_CODE.into(), headers::string_value(code));
        h.insert(
            headers::SOURCE_QUEUE.into(),
            headers::string_value(&ctx.queue),
        );
        h.insert(headers::FAILED_AT.into(), headers::string_value(&failed_at));
        if !h.contains_key(headers::ATTEMPT) {
            h.insert(headers::ATTEMPT.into(), headers::int_value(1));
        }
    });
    let dlx = ctx.shared.names().dead_letter_exchange();
    republish_then_ack(
        ctx,
        delivery,
        &dlx,
        delivery.routing_key.as_str(),
        properties,
    )
    .await
}

async fn republish_then_ack<H>(
    ctx: &Context<H>,
    delivery: &Delivery,
    exchange: &str,
    routing_key: &str,
    properties: BasicProperties,
) -> bool {
    let published = ctx
        .publisher
        .send_confirmed(&[Raw {
            exchange,
            routing_key,
            payload: &delivery.data,
            properties,
        }])
        .await;
    match published {
        Ok(()) => ack(delivery).await,
        Err(e) => {
            error!(
                exchange,
                routing_key,
                error.message = %e,
                error.cause_chain = ?e,
                "republish failed: requeueing the message"
            );
            requeue(ctx, delivery).await;
            false
        }
    }
}
