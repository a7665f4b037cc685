//! How many calls a second the fake serves (ignored by default: run with
//! `cargo test -p tarefas-huggy --release --test it -- --ignored throughput --nocapture`).
//! Bounded: a fixed number of calls from a fixed number of tasks, loopback only.

use std::time::Instant;

use tarefas_fake_huggy::FakeConfig;
use tarefas_huggy::{ExecFlowRequest, HuggyApi};

use crate::support::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check; run on demand"]
async fn throughput() {
    const TASKS: usize = 64;
    const CALLS_PER_TASK: usize = 500;
    let (fake, client) = start(FakeConfig {
        contacts: 10_000,
        chats: 6_000,
        ..FakeConfig::default()
    })
    .await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..CALLS_PER_TASK {
                let id = 1001 + ((t * CALLS_PER_TASK + i) % 10_000) as i64;
                if i % 2 == 0 {
                    client.get_contact(id).await.unwrap();
                } else {
                    let request = ExecFlowRequest {
                        uuid: tarefas_fake_huggy::data::CHANNELS[0].1.into(),
                        flow_id: 1,
                        variables: Default::default(),
                        when_in_chat: false,
                        when_wait_for_chat: false,
                        when_in_auto: true,
                    };
                    client.exec_flow(id, &request).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let calls = TASKS * CALLS_PER_TASK;
    println!(
        "{calls} calls in {elapsed:?}: {:.0} calls/s (client and server on the same cores), {} connections",
        calls as f64 / elapsed.as_secs_f64(),
        fake.stats().connections
    );
    assert_eq!(fake.stats().total, calls as u64);
}
