//! Fault injection: 429s with and without Retry-After, 5xx, latency, capacity, forced
//! statuses and malformed answers; set at start or at run time, chosen deterministically,
//! and never applied to `/__fake/*`.

use std::time::{Duration, Instant};

use tarefas_fake_huggy::{FakeConfig, Faults};
use tarefas_huggy::model::situation;
use tarefas_huggy::{HttpHuggy, HuggyApi, HuggyError};

use crate::support::{config_for, empty, seed_chat, small, start};

#[tokio::test]
async fn rate_limited_calls_carry_retry_after_and_take_no_effect() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, 1, 2, situation::WAIT_FOR_CHAT);
    fake.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: Some(7),
        ..Faults::default()
    })
    .unwrap();
    let err = client.transfer_to_agent(2, 5).await.unwrap_err();
    assert_eq!(
        err,
        HuggyError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(fake.chat(2).unwrap().situation, situation::WAIT_FOR_CHAT);
    let call = &fake.calls()[0];
    assert_eq!(
        (call.status, call.fault.as_deref()),
        (429, Some("rate_429"))
    );

    fake.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: None,
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(
        client.list_contacts(0).await.unwrap_err(),
        HuggyError::RateLimited { retry_after: None }
    );
}

#[tokio::test]
async fn server_errors_are_retryable_and_take_no_effect() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, 1, 2, situation::AUTO);
    fake.set_faults(Faults {
        rate_5xx: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let err = client.close_chat(2, None).await.unwrap_err();
    assert!(
        matches!(&err, HuggyError::Retryable { reason } if reason.contains("503")),
        "{err:?}"
    );
    assert_eq!(fake.chat(2).unwrap().situation, situation::AUTO);
    fake.set_faults(Faults::default()).unwrap();
    client.close_chat(2, None).await.unwrap();
}

#[tokio::test]
async fn latency_delays_answers_and_a_short_timeout_makes_the_call_ambiguous() {
    let (fake, client) = start(FakeConfig {
        faults: Faults {
            latency_ms: 150,
            ..Faults::default()
        },
        ..empty()
    })
    .await;
    seed_chat(&fake, 1, 2, situation::WAIT_FOR_CHAT);
    let started = Instant::now();
    client.list_contacts(0).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));

    fake.set_faults(Faults {
        latency_ms: 600,
        ..Faults::default()
    })
    .unwrap();
    let impatient = HttpHuggy::new(
        config_for(&fake).with_timeouts(Duration::from_secs(1), Duration::from_millis(100)),
    )
    .unwrap();
    let err = impatient.transfer_to_agent(2, 8).await.unwrap_err();
    assert!(matches!(err, HuggyError::Ambiguous { .. }), "{err:?}");
    // The call did happen: exactly the case a worker must not resend blindly.
    assert_eq!(fake.chat_record(2).unwrap().extras.agent_id, Some(8));
    assert_eq!(fake.chat(2).unwrap().situation, situation::IN_CHAT);
}

#[tokio::test]
async fn calls_beyond_the_capacity_are_rate_limited() {
    let (fake, client) = start(FakeConfig {
        faults: Faults {
            capacity_rps: Some(5.0),
            ..Faults::default()
        },
        ..small()
    })
    .await;
    let started = Instant::now();
    let mut served = 0;
    let mut limited = 0;
    for _ in 0..20 {
        match client.list_contacts(0).await {
            Ok(_) => served += 1,
            Err(HuggyError::RateLimited { retry_after }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(1)));
                limited += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    let refill = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        served >= 5 && served <= 5 + refill,
        "served {served}, refill {refill}"
    );
    assert_eq!(served + limited, 20);
    assert_eq!(fake.stats().count("GET /contacts", 429), limited as u64);
    assert!(fake
        .calls()
        .iter()
        .filter(|c| c.status == 429)
        .all(|c| c.fault.as_deref() == Some("capacity")));
}

#[tokio::test]
async fn a_forced_status_answers_every_call() {
    let (fake, client) = start(FakeConfig {
        faults: Faults {
            forced_status: Some(401),
            ..Faults::default()
        },
        ..small()
    })
    .await;
    assert_eq!(
        client.list_contacts(0).await.unwrap_err(),
        HuggyError::BadToken { status: 401 }
    );
    fake.set_faults(Faults {
        forced_status: Some(403),
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(
        client.get_contact(1001).await.unwrap_err(),
        HuggyError::BadToken { status: 403 }
    );
    fake.set_faults(Faults {
        forced_status: Some(429),
        retry_after_secs: Some(3),
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(
        client.get_contact(1001).await.unwrap_err().retry_after(),
        Some(Duration::from_secs(3))
    );
    fake.set_faults(Faults {
        forced_status: Some(502),
        ..Faults::default()
    })
    .unwrap();
    assert!(matches!(
        client.get_contact(1001).await.unwrap_err(),
        HuggyError::Retryable { .. }
    ));
}

#[tokio::test]
async fn a_malformed_answer_is_a_decode_error_for_a_call_that_happened() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, 1, 2, situation::AUTO);
    fake.set_faults(Faults {
        rate_malformed: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let request = tarefas_huggy::ExecFlowRequest {
        uuid: tarefas_fake_huggy::data::CHANNELS[0].1.into(),
        flow_id: 3,
        variables: Default::default(),
        when_in_chat: true,
        when_wait_for_chat: true,
        when_in_auto: true,
    };
    let err = client.exec_flow(1, &request).await.unwrap_err();
    assert!(matches!(err, HuggyError::Decode { .. }), "{err:?}");
    assert_eq!(
        fake.chat_record(2).unwrap().extras.flow_runs,
        1,
        "the Flow ran"
    );
    assert!(matches!(
        client.list_contacts(0).await.unwrap_err(),
        HuggyError::Decode { .. }
    ));
    assert!(matches!(
        client.get_chat(404).await.unwrap_err(),
        HuggyError::Permanent { status: 404, .. }
    ));
}

#[tokio::test]
async fn the_same_seed_fails_the_same_calls() {
    let faults = Faults {
        rate_429: 0.3,
        rate_5xx: 0.2,
        ..Faults::default()
    };
    let mut patterns = Vec::new();
    for seed in [1, 1, 2] {
        let (_fake, client) = start(FakeConfig {
            seed,
            faults: faults.clone(),
            ..small()
        })
        .await;
        let mut pattern = String::new();
        for _ in 0..40 {
            pattern.push(match client.list_contacts(0).await {
                Ok(_) => '.',
                Err(HuggyError::RateLimited { .. }) => 'L',
                Err(HuggyError::Retryable { .. }) => 'R',
                Err(other) => panic!("{other:?}"),
            });
        }
        patterns.push(pattern);
    }
    assert_eq!(patterns[0], patterns[1]);
    assert_ne!(patterns[0], patterns[2]);
    for kind in ['.', 'L', 'R'] {
        assert!(patterns[0].contains(kind), "{}", patterns[0]);
    }
}

#[tokio::test]
async fn faults_are_set_over_http_and_spare_the_test_endpoints() {
    let (fake, client) = start(small()).await;
    let http = reqwest::Client::new();
    let url = format!("{}/__fake/faults", fake.base_url());
    let answer = http
        .put(&url)
        .json(&serde_json::json!({"rate_5xx": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(fake.faults().rate_5xx, 1.0);
    assert!(matches!(
        client.list_contacts(0).await.unwrap_err(),
        HuggyError::Retryable { .. }
    ));
    for path in [
        "/__fake/calls",
        "/__fake/stats",
        "/__fake/faults",
        "/__fake/healthz",
        "/__fake/contacts/1001",
    ] {
        let answer = http
            .get(format!("{}{path}", fake.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    let read: Faults = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(read, fake.faults());
    let bad = http
        .put(&url)
        .json(&serde_json::json!({"rate_429": 0.8, "rate_5xx": 0.8}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        fake.faults().rate_5xx,
        1.0,
        "a refused change changes nothing"
    );
    assert!(fake
        .set_faults(Faults {
            capacity_rps: Some(0.0),
            ..Faults::default()
        })
        .is_err());
    assert!(fake
        .set_faults(Faults {
            forced_status: Some(42),
            ..Faults::default()
        })
        .is_err());
    http.put(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    client.list_contacts(0).await.unwrap();
}
