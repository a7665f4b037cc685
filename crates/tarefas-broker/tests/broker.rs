//! Integration tests against the real RabbitMQ (`TAREFAS_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), each in a vhost of its own.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use tarefas_broker::topology::{self, Source};
use tarefas_broker::{
    headers, Broker, BrokerError, ConsumerOptions, Headers, Incoming, Outcome, Outgoing, BATCHES,
    EXECUTIONS,
};
use tarefas_proto::v1::{ExecuteTask, ItemBatch};
use tarefas_proto::{encode_execute_task, encode_item_batch, MAX_MESSAGE_BYTES};
use tokio::sync::mpsc;

use support::{eventually, execute_task, item_batch, shutdown_signal, TestEnv};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_declares_twice_and_reports_conflicts() {
    let env = TestEnv::new("topology");
    let broker = env.broker().await;
    // A second broker declares the same topology again, and so does a plain
    // channel, twice.
    let second = env.broker().await;
    let conn = env.raw_connection().await;
    let channel = conn.create_channel().await.unwrap();
    topology::declare(&channel, &env.names).await.unwrap();
    topology::declare(&channel, &env.names).await.unwrap();
    for queue in env.names.all_queues() {
        assert_eq!(broker.message_count(&queue).await.unwrap(), 0, "{queue}");
    }
    let p = env.names.prefix();
    assert_eq!(
        env.names.all_queues(),
        [
            format!("{p}.executions"),
            format!("{p}.batches"),
            format!("{p}.executions.retry.200ms"),
            format!("{p}.executions.retry.400ms"),
            format!("{p}.batches.retry.200ms"),
            format!("{p}.batches.retry.400ms"),
            format!("{p}.dlq"),
        ]
    );
    second.close().await;

    // Other delays for the same queues are fine (new delay queues), but a
    // work queue declared with other arguments is a topology conflict that
    // needs an operator: connecting fails at once, not after the timeout.
    let other_prefix =
        tarefas_broker::Names::new(format!("{}-conflict", env.names.prefix())).unwrap();
    let conflicting = other_prefix.queue(Source::Batches);
    let classic = FieldTable::default();
    channel
        .queue_declare(
            other_prefix.queue(Source::Batches).as_str().into(),
            QueueDeclareOptions::durable(),
            classic,
        )
        .await
        .unwrap();
    let mut config = env.config();
    config.names = other_prefix.clone();
    let started = Instant::now();
    let err = Broker::connect_with(config).await.unwrap_err();
    assert!(
        matches!(&err, BrokerError::Topology { object, .. } if *object == format!("queue {conflicting}")),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(5));
    // (The broker closed that channel; clean up on a new one.)
    let channel = conn.create_channel().await.unwrap();
    for exchange in other_prefix.all_exchanges() {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), Default::default())
            .await;
    }
    for queue in other_prefix.all_queues() {
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_ack_round_trip() {
    let env = TestEnv::new("roundtrip");
    let broker = env.broker().await;
    let publisher = broker.publisher();
    let sent = execute_task(7);
    publisher.publish_execute(&sent).await.unwrap();

    // What is on the wire: persistent protobuf with the schema header.
    let conn = env.raw_connection().await;
    let channel = conn.create_channel().await.unwrap();
    let got = channel
        .basic_get(
            env.names.queue(Source::Executions).as_str().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .unwrap()
        .expect("a message");
    let props = &got.delivery.properties;
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some(headers::CONTENT_TYPE)
    );
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str()),
        Some("req-7")
    );
    assert_eq!(
        props.kind().as_ref().map(|s| s.as_str()),
        Some("tarefas.v1.ExecuteTask")
    );
    let schema = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(headers::SCHEMA).cloned());
    assert_eq!(schema, Some(AMQPValue::LongLongInt(1)));
    assert_eq!(got.delivery.routing_key.as_str(), "execute");
    // Give it back for the consumer.
    got.delivery
        .acker
        .nack(lapin::options::BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, shutdown) = shutdown_signal();
    let consumer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            broker
                .consume(
                    EXECUTIONS,
                    8,
                    move |incoming: Incoming<ExecuteTask>| {
                        let tx = tx.clone();
                        async move {
                            tx.send(incoming).unwrap();
                            Outcome::Ack
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    let incoming = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incoming.message, sent);
    assert_eq!(incoming.attempt, 1);
    assert_eq!(incoming.max_attempts, 3);
    assert_eq!(incoming.message_id.as_deref(), Some("req-7"));

    // A plain publish with headers, to the batches queue, is not consumed by
    // the executions consumer.
    let mut extra = Headers::new();
    extra.insert("traceparent".to_owned(), "00-abc-def-01".to_owned());
    publisher
        .publish(
            Source::Batches.routing_key(),
            &encode_item_batch(&item_batch(1, [1])),
            &extra,
        )
        .await
        .unwrap();

    stop.send(()).unwrap();
    let report = consumer.await.unwrap().unwrap();
    assert_eq!(report.acked, 1);
    assert_eq!(report.requeued + report.retried + report.dead_lettered, 0);
    let executions = env.names.queue(Source::Executions);
    assert_eq!(broker.message_count(&executions).await.unwrap(), 0);
    let batches = env.names.queue(Source::Batches);
    eventually(WAIT, "the batch left alone", || async {
        broker.message_count(&batches).await.unwrap() == 1
    })
    .await;
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_goes_through_delays_then_dead_letters() {
    let env = TestEnv::new("retry");
    let broker = env.broker().await;
    broker
        .publisher()
        .publish_batch(&item_batch(3, [10, 11]))
        .await
        .unwrap();

    let seen: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let (stop, shutdown) = shutdown_signal();
    let consumer = {
        let broker = broker.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            broker
                .consume(
                    BATCHES,
                    4,
                    move |incoming: Incoming<ItemBatch>| {
                        let seen = seen.clone();
                        async move {
                            seen.lock()
                                .unwrap()
                                .push((incoming.attempt, Instant::now()));
                            Outcome::retry("huggy answered 503\nService Unavailable")
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    let dlq = env.names.dead_letter_queue();
    eventually(WAIT, "the message in the DLQ", || async {
        broker.message_count(&dlq).await.unwrap() == 1
    })
    .await;
    stop.send(()).unwrap();
    let report = consumer.await.unwrap().unwrap();
    assert_eq!(report.retried, 2);
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.acked, 0);

    let seen = seen.lock().unwrap().clone();
    let attempts: Vec<u32> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, [1, 2, 3]);
    // Each retry waited at least its delay (200 ms, then 400 ms).
    let gap1 = seen[1].1 - seen[0].1;
    let gap2 = seen[2].1 - seen[1].1;
    assert!(gap1 >= Duration::from_millis(190), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(390), "{gap2:?}");
    assert!(gap2 < Duration::from_secs(5), "{gap2:?}");

    let letters = broker.dlq_list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        letter.reason,
        "gave up after 3 attempts: huggy answered 503 Service Unavailable"
    );
    assert_eq!(
        letter.reason_code.as_deref(),
        Some(headers::REASON_CODE_RETRIES_EXHAUSTED)
    );
    assert_eq!(
        letter.source_queue.as_deref(),
        Some(env.names.queue(Source::Batches).as_str())
    );
    assert_eq!(letter.routing_key, "batch");
    assert_eq!(letter.attempt, 3);
    assert!(letter
        .failed_at
        .as_deref()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(letter.message_id.as_deref(), Some("3:10"));
    for step in 0..2 {
        let delay_queue = env.names.retry_queue(Source::Batches, step).unwrap();
        assert_eq!(broker.message_count(&delay_queue).await.unwrap(), 0);
    }
    broker.close().await;
    env.finish().await;
}

/// `WhenExhausted::Ack`: a batch whose last retry fails for a transient reason is acked
/// (its items are pending in Postgres, the reconciler republishes them), not dead-lettered;
/// `WhenExhausted::KeepRetrying`: an `ExecuteTask` keeps coming back at the last delay
/// until it succeeds; a handler that panics on every attempt is poison and dead-lettered
/// whatever the queue's setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_are_acked_or_kept_retrying_as_the_queue_says() {
    use tarefas_broker::WhenExhausted;
    let env = TestEnv::new("exhausted");
    let broker = env.broker().await;
    let publisher = broker.publisher();
    publisher.publish_batch(&item_batch(3, [10])).await.unwrap();
    publisher.publish_execute(&execute_task(7)).await.unwrap();
    publisher.publish_execute(&execute_task(8)).await.unwrap();
    let seen: Arc<Mutex<Vec<(i64, u32, Instant)>>> = Arc::default();
    let (stop_b, shutdown_b) = shutdown_signal();
    let (stop_e, shutdown_e) = shutdown_signal();
    let batches = {
        let (broker, seen) = (broker.clone(), seen.clone());
        tokio::spawn(async move {
            broker
                .consume_with(
                    BATCHES,
                    ConsumerOptions::new(2).when_exhausted(WhenExhausted::Ack),
                    move |incoming: Incoming<ItemBatch>| {
                        let seen = seen.clone();
                        async move {
                            seen.lock()
                                .unwrap()
                                .push((-1, incoming.attempt, Instant::now()));
                            Outcome::retry("redis unreachable")
                        }
                    },
                    shutdown_b,
                )
                .await
        })
    };
    let executions = {
        let (broker, seen) = (broker.clone(), seen.clone());
        tokio::spawn(async move {
            broker
                .consume_with(
                    EXECUTIONS,
                    ConsumerOptions::new(2).when_exhausted(WhenExhausted::KeepRetrying),
                    move |incoming: Incoming<ExecuteTask>| {
                        let seen = seen.clone();
                        async move {
                            let task = incoming.message.task_id;
                            seen.lock()
                                .unwrap()
                                .push((task, incoming.attempt, Instant::now()));
                            if task == 8 {
                                panic!("a bug");
                            }
                            // Postgres is back at the sixth attempt (three past the ladder).
                            if incoming.attempt < 6 {
                                Outcome::retry("postgres unreachable")
                            } else {
                                Outcome::Ack
                            }
                        }
                    },
                    shutdown_e,
                )
                .await
        })
    };
    let dlq = env.names.dead_letter_queue();
    eventually(WAIT, "the ExecuteTask of task 7 acked", || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(t, a, _)| *t == 7 && *a == 6)
    })
    .await;
    eventually(WAIT, "the panicking one in the DLQ", || async {
        broker.message_count(&dlq).await.unwrap() == 1
    })
    .await;
    stop_b.send(()).unwrap();
    stop_e.send(()).unwrap();
    let b = batches.await.unwrap().unwrap();
    let e = executions.await.unwrap().unwrap();
    assert_eq!((b.retried, b.exhausted_acked, b.dead_lettered), (2, 1, 0));
    // Task 7: 5 retries (2 in the ladder, 3 at the last delay), then acked; task 8: 2
    // retries, then dead-lettered.
    assert_eq!((e.retried, e.acked, e.dead_lettered), (7, 1, 1));
    let seen = seen.lock().unwrap().clone();
    let of = |task: i64| -> Vec<(u32, Instant)> {
        seen.iter()
            .filter(|(t, _, _)| *t == task)
            .map(|(_, a, at)| (*a, *at))
            .collect()
    };
    assert_eq!(
        of(-1).iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let seven = of(7);
    assert_eq!(
        seven.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    // Past the ladder, each retry waits the last delay (400 ms).
    for w in seven[2..].windows(2) {
        let gap = w[1].1 - w[0].1;
        assert!(gap >= Duration::from_millis(390), "{gap:?}");
    }
    let letters = broker.dlq_list(10).await.unwrap();
    assert_eq!(letters.len(), 1, "only the poison message: {letters:?}");
    assert!(
        letters[0].reason.contains("handler panicked: a bug"),
        "{:?}",
        letters[0]
    );
    assert_eq!(
        letters[0].reason_code.as_deref(),
        Some(headers::REASON_CODE_RETRIES_EXHAUSTED)
    );
    for source in [Source::Batches, Source::Executions] {
        assert_eq!(
            broker
                .message_count(&env.names.queue(source))
                .await
                .unwrap(),
            0
        );
    }
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried() {
    let env = TestEnv::new("panic");
    let broker = env.broker().await;
    broker
        .publisher()
        .publish_execute(&execute_task(4))
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, shutdown) = shutdown_signal();
    let consumer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            broker
                .consume(
                    EXECUTIONS,
                    1,
                    move |incoming: Incoming<ExecuteTask>| {
                        let tx = tx.clone();
                        async move {
                            assert!(incoming.attempt > 1, "a bug on the first attempt");
                            tx.send(incoming.attempt).unwrap();
                            Outcome::Ack
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    assert_eq!(
        tokio::time::timeout(WAIT, rx.recv()).await.unwrap(),
        Some(2)
    );
    stop.send(()).unwrap();
    let report = consumer.await.unwrap().unwrap();
    assert_eq!((report.retried, report.acked), (1, 1));
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_good_ones_still_processed() {
    let env = TestEnv::new("malformed");
    let broker = env.broker().await;
    let publisher = broker.publisher();
    let good = encode_item_batch(&item_batch(5, [1, 2, 3]));
    let mut unknown_version = item_batch(5, [4]);
    unknown_version.schema_version = 2;
    let mut invalid = item_batch(5, [5]);
    invalid.run_id = 0;
    // Cut inside the packed item_ids (cutting only the last field would still
    // decode).
    let truncated = good[..good.len() - 4].to_vec();
    assert!(tarefas_proto::decode_item_batch(&truncated).is_err());
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("malformed", truncated),
        ("malformed", vec![0xff; 16]),
        (
            "unknown_schema_version",
            encode_item_batch(&unknown_version),
        ),
        ("missing_field", encode_item_batch(&invalid)),
        ("too_large", vec![0u8; MAX_MESSAGE_BYTES + 1]),
    ];
    let mut batch = Vec::new();
    for (_, body) in &bad {
        batch.push(Outgoing::new("batch", good.clone()));
        batch.push(Outgoing::new("batch", body.clone()));
    }
    batch.push(Outgoing::new("batch", good.clone()));
    publisher.publish_many(&batch).await.unwrap();

    let handled = Arc::new(AtomicUsize::new(0));
    let (stop, shutdown) = shutdown_signal();
    let consumer = {
        let broker = broker.clone();
        let handled = handled.clone();
        tokio::spawn(async move {
            broker
                .consume(
                    BATCHES,
                    2,
                    move |incoming: Incoming<ItemBatch>| {
                        let handled = handled.clone();
                        async move {
                            assert_eq!(incoming.message.item_ids, [1, 2, 3]);
                            handled.fetch_add(1, Ordering::SeqCst);
                            Outcome::Ack
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    eventually(WAIT, "all good messages", || async {
        handled.load(Ordering::SeqCst) == bad.len() + 1
    })
    .await;
    let dlq = env.names.dead_letter_queue();
    eventually(WAIT, "all bad messages in the DLQ", || async {
        broker.message_count(&dlq).await.unwrap() == 6
    })
    .await;
    stop.send(()).unwrap();
    let report = consumer.await.unwrap().unwrap();
    assert_eq!(report.acked, 7);
    assert_eq!(report.malformed, 6);

    let letters = broker.dlq_list(100).await.unwrap();
    let mut codes: Vec<&str> = letters
        .iter()
        .map(|l| l.reason_code.as_deref().unwrap())
        .collect();
    codes.sort_unstable();
    let mut expected: Vec<&str> = bad.iter().map(|(code, _)| *code).collect();
    expected.sort_unstable();
    assert_eq!(codes, expected);
    for letter in &letters {
        assert_eq!(
            letter.source_queue.as_deref(),
            Some(env.names.queue(Source::Batches).as_str())
        );
        assert!(!letter.reason.contains('\n'));
        match letter.reason_code.as_deref() {
            Some("empty") => assert_eq!(letter.reason, "empty message body"),
            Some("too_large") => {
                assert_eq!(letter.size, MAX_MESSAGE_BYTES + 1);
                assert!(
                    letter.reason.starts_with("message body too large"),
                    "{}",
                    letter.reason
                );
            }
            Some("unknown_schema_version") => assert_eq!(
                letter.reason,
                "unsupported ItemBatch schema_version 2 (supported: 1)"
            ),
            Some("missing_field") => assert_eq!(
                letter.reason,
                "invalid ItemBatch: missing required field run_id"
            ),
            _ => assert!(
                letter.reason.starts_with("malformed ItemBatch"),
                "{}",
                letter.reason
            ),
        }
    }
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_work_and_requeues_the_rest() {
    let env = TestEnv::new("shutdown");
    let broker = env.broker().await;
    let publisher = broker.publisher();
    // Task 1 finishes within the drain timeout; task 2 never finishes.
    publisher.publish_execute(&execute_task(1)).await.unwrap();
    publisher.publish_execute(&execute_task(2)).await.unwrap();

    let started = Arc::new(AtomicUsize::new(0));
    let (stop, shutdown) = shutdown_signal();
    let consumer = {
        let broker = broker.clone();
        let started = started.clone();
        tokio::spawn(async move {
            broker
                .consume_with(
                    EXECUTIONS,
                    ConsumerOptions::new(4).with_drain_timeout(Duration::from_millis(800)),
                    move |incoming: Incoming<ExecuteTask>| {
                        let started = started.clone();
                        async move {
                            started.fetch_add(1, Ordering::SeqCst);
                            if incoming.message.task_id == 1 {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            } else {
                                std::future::pending::<()>().await;
                            }
                            Outcome::Ack
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    eventually(WAIT, "both handlers running", || async {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    let report = consumer.await.unwrap().unwrap();
    let took = asked.elapsed();
    assert_eq!(report.acked, 1, "{report:?}");
    assert_eq!(report.requeued, 1, "{report:?}");
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // The unfinished message is back, marked redelivered, and a new consumer
    // gets it.
    let executions = env.names.queue(Source::Executions);
    eventually(WAIT, "the message back in its queue", || async {
        broker.message_count(&executions).await.unwrap() == 1
    })
    .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, shutdown) = shutdown_signal();
    let consumer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            broker
                .consume(
                    EXECUTIONS,
                    1,
                    move |incoming: Incoming<ExecuteTask>| {
                        let tx = tx.clone();
                        async move {
                            tx.send(incoming).unwrap();
                            Outcome::Ack
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    let again = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.message.task_id, 2);
    assert!(again.redelivered);
    assert_eq!(again.attempt, 1);
    stop.send(()).unwrap();
    assert_eq!(consumer.await.unwrap().unwrap().acked, 1);
    assert_eq!(broker.message_count(&executions).await.unwrap(), 0);
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded_by_prefetch() {
    let env = TestEnv::new("prefetch");
    let broker = env.broker().await;
    let batch: Vec<Outgoing> = (1..=12)
        .map(|run| Outgoing::batch(&item_batch(run, [1])).unwrap())
        .collect();
    broker.publisher().publish_many(&batch).await.unwrap();

    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (stop, shutdown) = shutdown_signal();
    let consumer = {
        let broker = broker.clone();
        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
        tokio::spawn(async move {
            broker
                .consume(
                    BATCHES,
                    4,
                    move |_incoming: Incoming<ItemBatch>| {
                        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
                        async move {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(150)).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            done.fetch_add(1, Ordering::SeqCst);
                            Outcome::Ack
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    eventually(WAIT, "all handled", || async {
        done.load(Ordering::SeqCst) == 12
    })
    .await;
    stop.send(()).unwrap();
    let report = consumer.await.unwrap().unwrap();
    assert_eq!(report.acked, 12);
    assert_eq!(peak.load(Ordering::SeqCst), 4);
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_publish_confirms_thousands_of_messages() {
    let env = TestEnv::new("batchpub");
    let broker = env.broker().await;
    let publisher = broker.publisher();
    const N: i64 = 5_000;
    let batch: Vec<Outgoing> = (1..=N)
        .map(|run| Outgoing::batch(&item_batch(run, 1..=20)).unwrap())
        .collect();
    let started = Instant::now();
    publisher.publish_many(&batch).await.unwrap();
    let took = started.elapsed();
    let rate = N as f64 / took.as_secs_f64();
    eprintln!("publish_many: {N} confirmed messages in {took:?} ({rate:.0} msg/s)");
    assert!(rate > 1_000.0, "only {rate:.0} msg/s");
    let batches = env.names.queue(Source::Batches);
    eventually(WAIT, "all messages counted", || async {
        broker.message_count(&batches).await.unwrap() == N as u32
    })
    .await;

    // One at a time, for comparison.
    let started = Instant::now();
    for run in 1..=100 {
        publisher
            .publish_batch(&item_batch(run, [1]))
            .await
            .unwrap();
    }
    eprintln!(
        "publish_batch: 100 sequential confirmed messages in {:?}",
        started.elapsed()
    );

    // Nothing is published unchecked or unroutable.
    let err = publisher
        .publish_batch(&item_batch(0, [1]))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::InvalidMessage(_)), "{err}");
    let err = publisher
        .publish("nowhere", b"x", &Headers::new())
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Unroutable { .. }), "{err}");
    assert!(!err.is_transient());
    // The publisher is still usable after those errors.
    publisher.publish_execute(&execute_task(9)).await.unwrap();
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_peeks_and_replay_moves_messages_back() {
    let env = TestEnv::new("dlq");
    let broker = env.broker().await;
    let publisher = broker.publisher();
    for task in 1..=3 {
        publisher
            .publish_execute(&execute_task(task))
            .await
            .unwrap();
    }
    // A dead letter we cannot replay: no known source queue.
    let conn = env.raw_connection().await;
    let channel = conn.create_channel().await.unwrap();
    channel
        .basic_publish(
            env.names.dead_letter_exchange().as_str().into(),
            "whatever".into(),
            Default::default(),
            b"orphan",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let (stop, shutdown) = shutdown_signal();
    let dead = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let broker = broker.clone();
        let dead = dead.clone();
        tokio::spawn(async move {
            broker
                .consume(
                    EXECUTIONS,
                    4,
                    move |incoming: Incoming<ExecuteTask>| {
                        let dead = dead.clone();
                        async move {
                            dead.fetch_add(1, Ordering::SeqCst);
                            Outcome::dead_letter(format!(
                                "task {} does not exist",
                                incoming.message.task_id
                            ))
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    let dlq = env.names.dead_letter_queue();
    eventually(WAIT, "three dead letters", || async {
        broker.message_count(&dlq).await.unwrap() == 4
    })
    .await;
    stop.send(()).unwrap();
    assert_eq!(consumer.await.unwrap().unwrap().dead_lettered, 3);

    // Listing does not consume: twice the same, and a limit.
    let first = broker.dlq_list(10).await.unwrap();
    let second = broker.dlq_list(10).await.unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(first, second);
    assert_eq!(broker.dlq_list(2).await.unwrap().len(), 2);
    eventually(WAIT, "all four still in the DLQ", || async {
        broker.message_count(&dlq).await.unwrap() == 4
    })
    .await;
    let mut reasons: Vec<&str> = first.iter().map(|l| l.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "task 1 does not exist",
            "task 2 does not exist",
            "task 3 does not exist",
            "unknown"
        ]
    );
    let handled: Vec<_> = first.iter().filter(|l| l.reason != "unknown").collect();
    for letter in &handled {
        assert_eq!(
            letter.reason_code.as_deref(),
            Some(headers::REASON_CODE_HANDLER)
        );
        assert_eq!(
            letter.source_queue.as_deref(),
            Some(env.names.queue(Source::Executions).as_str())
        );
        assert_eq!(letter.routing_key, "execute");
        assert_eq!(
            letter.message_type.as_deref(),
            Some("tarefas.v1.ExecuteTask")
        );
    }

    // Replay: the three go back to their queue, the orphan stays.
    let report = broker.dlq_replay(100).await.unwrap();
    assert_eq!((report.replayed, report.skipped), (3, 1));
    // (Requeued messages of a quorum queue are counted again a moment later.)
    eventually(WAIT, "the orphan back in the DLQ", || async {
        broker.message_count(&dlq).await.unwrap() == 1
    })
    .await;
    let executions = env.names.queue(Source::Executions);
    eventually(WAIT, "the replayed messages in their queue", || async {
        broker.message_count(&executions).await.unwrap() == 3
    })
    .await;
    let got = channel
        .basic_get(
            executions.as_str().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .unwrap()
        .unwrap();
    let props = &got.delivery.properties;
    let header = |key: &str| {
        props
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(key).cloned())
    };
    assert_eq!(header(headers::ATTEMPT), Some(AMQPValue::LongLongInt(1)));
    assert_eq!(header(headers::REPLAYS), Some(AMQPValue::LongLongInt(1)));
    assert_eq!(header(headers::REASON), None);
    assert_eq!(header(headers::SOURCE_QUEUE), None);
    assert_eq!(header(headers::SCHEMA), Some(AMQPValue::LongLongInt(1)));
    assert!(tarefas_proto::decode_execute_task(&got.delivery.data).is_ok());
    got.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let _ = encode_execute_task(&execute_task(1));
    let _ = conn.close(200, "done".into()).await;
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_and_publisher_recover_after_the_connection_drops() {
    let env = TestEnv::new("reconnect");
    let broker = env.broker().await;
    let publisher = broker.publisher();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, shutdown) = shutdown_signal();
    let consumer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            broker
                .consume(
                    EXECUTIONS,
                    4,
                    move |incoming: Incoming<ExecuteTask>| {
                        let tx = tx.clone();
                        async move {
                            tx.send(incoming.message.task_id).unwrap();
                            Outcome::Ack
                        }
                    },
                    shutdown,
                )
                .await
        })
    };
    publisher.publish_execute(&execute_task(1)).await.unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, rx.recv()).await.unwrap(),
        Some(1)
    );
    assert_eq!(broker.connection_count(), 1);

    // Drop the connection: from the server side when the test has a vhost of
    // its own (as a broker restart would), else from the client side.
    if !env.close_server_side_connections() {
        broker.drop_connection_for_test().await;
    }
    eventually(WAIT, "the drop to be noticed", || async {
        !broker.is_connected()
    })
    .await;

    // The publisher reconnects by itself; the consumer re-subscribes. (If the
    // drop came before RabbitMQ saw the ack of message 1, it is delivered
    // again: at least once.)
    publisher.publish_execute(&execute_task(2)).await.unwrap();
    let mut redelivered = 0;
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await.unwrap() {
            Some(2) => break,
            Some(1) => redelivered += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(redelivered <= 1);
    assert!(broker.is_connected());
    assert_eq!(broker.connection_count(), 2);

    stop.send(()).unwrap();
    let report = consumer.await.unwrap().unwrap();
    assert!(report.acked >= 2, "{report:?}");
    assert_eq!(report.resubscribed, 1);
    broker.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_fails_fast_when_the_broker_is_unreachable() {
    let mut config = tarefas_broker::BrokerConfig::new(
        "amqp://guest:secret@127.0.0.1:1/%2f",
        tarefas_broker::Names::default(),
    );
    config.startup_timeout = Duration::from_millis(600);
    config.backoff.initial = Duration::from_millis(50);
    let started = Instant::now();
    let err = Broker::connect_with(config).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, BrokerError::Unavailable { .. }), "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("amqp://guest:***@127.0.0.1:1/%2f"), "{text}");

    let err = Broker::connect("http://nope", tarefas_broker::Names::default())
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Config(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_dead_letters_after_the_delivery_limit_and_replay_handles_it() {
    let env = TestEnv::new("limit");
    let broker = env.broker().await;
    broker
        .publisher()
        .publish_batch(&item_batch(8, [1]))
        .await
        .unwrap();
    // A message that keeps failing without being settled (as when it crashes
    // the worker): rejected with requeue, which every RabbitMQ version counts
    // as a failed delivery.
    let conn = env.raw_connection().await;
    let channel = conn.create_channel().await.unwrap();
    let batches = env.names.queue(Source::Batches);
    let dlq = env.names.dead_letter_queue();
    let mut deliveries = 0;
    while deliveries <= topology::WORK_QUEUE_DELIVERY_LIMIT + 2 {
        let got = channel
            .basic_get(batches.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap();
        let Some(got) = got else {
            if broker.message_count(&dlq).await.unwrap() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        deliveries += 1;
        got.delivery
            .acker
            .reject(lapin::options::BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }
    eventually(WAIT, "RabbitMQ to dead-letter it", || async {
        broker.message_count(&dlq).await.unwrap() == 1
    })
    .await;
    assert!(
        deliveries >= topology::WORK_QUEUE_DELIVERY_LIMIT,
        "{deliveries}"
    );

    let letters = broker.dlq_list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].reason,
        format!("broker: delivery_limit in {batches}")
    );
    assert_eq!(
        letters[0].source_queue.as_deref(),
        Some(env.names.queue(Source::Batches).as_str())
    );
    assert_eq!(letters[0].reason_code, None);

    let report = broker.dlq_replay(10).await.unwrap();
    assert_eq!((report.replayed, report.skipped), (1, 0));
    eventually(WAIT, "the message back in its queue", || async {
        broker.message_count(&batches).await.unwrap() == 1
    })
    .await;
    let got = channel
        .basic_get(batches.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    let table = got
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    assert!(!table.contains_key("x-death"));
    // RabbitMQ counts deliveries afresh (it adds the header itself, from 0).
    let count = table.inner().get("x-delivery-count").cloned();
    assert!(
        matches!(count, None | Some(AMQPValue::LongLongInt(0))),
        "{table:?}"
    );
    got.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;
    broker.close().await;
    env.finish().await;
}
