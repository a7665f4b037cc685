//! The call log, the stats, and the `/__fake/*` state mutators.

use serde_json::json;
use tarefas_fake_huggy::{CallRecord, FakeChat, FakeConfig, FakeStats};
use tarefas_huggy::model::situation;
use tarefas_huggy::{Contact, ExecFlowRequest, HuggyApi};

use crate::support::{chat, contact, empty, seed_chat, small, start};

fn exec_all() -> ExecFlowRequest {
    ExecFlowRequest {
        uuid: tarefas_fake_huggy::data::CHANNELS[0].1.into(),
        flow_id: 42,
        variables: Default::default(),
        when_in_chat: true,
        when_wait_for_chat: true,
        when_in_auto: true,
    }
}

#[tokio::test]
async fn every_call_is_logged_with_its_record_body_and_status() {
    let (fake, client) = start(small()).await;
    client.list_chats(2, Some(situation::AUTO)).await.unwrap();
    client.exec_flow(1003, &exec_all()).await.unwrap();
    client.get_contact(7).await.unwrap_err();
    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls.iter().map(|c| c.seq).collect::<Vec<_>>(), [0, 1, 2]);

    assert_eq!(calls[0].route, "GET /chats");
    assert_eq!(calls[0].query.as_deref(), Some("page=2&situation=auto"));
    assert_eq!(calls[0].status, 200);

    let exec = &calls[1];
    assert_eq!(
        (exec.method.as_str(), exec.path.as_str()),
        ("PUT", "/contacts/1003/execFlow")
    );
    assert_eq!(exec.route, "PUT /contacts/{id}/execFlow");
    assert_eq!((exec.contact_id, exec.chat_id), (Some(1003), None));
    assert_eq!(exec.body, Some(serde_json::to_value(exec_all()).unwrap()));
    assert_eq!(exec.status, 200);
    assert_eq!(exec.fault, None);
    assert!(calls[0].at <= exec.at);

    assert_eq!(
        (calls[2].contact_id, calls[2].status, calls[2].body.clone()),
        (Some(7), 404, None)
    );

    // The same log over HTTP; then cleared over HTTP.
    let http = reqwest::Client::new();
    let url = format!("{}/__fake/calls", fake.base_url());
    let served: Vec<CallRecord> = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(served, calls);
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 204);
    let served: Vec<CallRecord> = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(served.is_empty());
    assert!(fake.calls().is_empty(), "test endpoints are not logged");

    client.list_contacts(0).await.unwrap();
    assert_eq!(fake.calls().len(), 1);
    fake.clear_calls();
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn stats_count_calls_by_route_and_status() {
    let (fake, client) = start(small()).await;
    for page in 0..4 {
        client.list_contacts(page).await.unwrap();
    }
    client.get_chat(1).await.unwrap_err();
    client.get_chat(500_001).await.unwrap();
    let stats = fake.stats();
    assert_eq!(stats.total, 6);
    assert_eq!(stats.count("GET /contacts", 200), 4);
    assert_eq!(stats.count("GET /chats/{id}", 404), 1);
    assert_eq!(stats.count("GET /chats/{id}", 200), 1);
    assert_eq!(stats.by_status[&200], 5);
    assert_eq!(stats.recorded, 6);
    let url = format!("{}/__fake/stats", fake.base_url());
    let served: FakeStats = reqwest::get(&url).await.unwrap().json().await.unwrap();
    // Only the connection count differs: this request came on a new connection.
    assert_eq!(
        FakeStats {
            connections: 0,
            ..served
        },
        FakeStats {
            connections: 0,
            ..stats
        }
    );
    fake.clear_calls();
    assert_eq!(fake.stats().total, 6, "clearing the log keeps the counts");
    reqwest::Client::new().delete(&url).send().await.unwrap();
    assert_eq!(fake.stats().total, 0);
}

#[tokio::test]
async fn the_log_can_be_off_or_capped() {
    let (fake, client) = start(FakeConfig {
        record_calls: false,
        ..small()
    })
    .await;
    client.list_contacts(0).await.unwrap();
    assert!(fake.calls().is_empty());
    assert_eq!(fake.stats().total, 1);

    let (fake, client) = start(FakeConfig {
        call_log_cap: 2,
        ..small()
    })
    .await;
    for _ in 0..5 {
        client.list_contacts(0).await.unwrap();
    }
    assert_eq!(fake.calls().len(), 2);
    let stats = fake.stats();
    assert_eq!((stats.total, stats.recorded, stats.dropped), (5, 2, 3));
}

#[tokio::test]
async fn records_can_be_put_and_removed_over_http() {
    let (fake, client) = start(empty()).await;
    let http = reqwest::Client::new();
    let base = fake.base_url();

    let mut ana = serde_json::to_value(contact(0)).unwrap();
    ana["customFields"] = json!({"plano": "gold"});
    let put = http
        .put(format!("{base}/__fake/contacts/5"))
        .json(&ana)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let read: Contact = client.get_contact(5).await.unwrap();
    assert_eq!(read.id, 5, "the path's id wins");
    assert_eq!(read.custom_fields["plano"], json!("gold"));
    assert_eq!(fake.contact(5), Some(read));
    let got: Contact = http
        .get(format!("{base}/__fake/contacts/5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got.id, 5);

    let bare =
        serde_json::to_value(chat(0, 5, situation::IN_CHAT, "2026-10-01T09:00:00-03:00")).unwrap();
    assert_eq!(
        http.put(format!("{base}/__fake/chats/9"))
            .json(&bare)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client.get_chat(9).await.unwrap().situation,
        situation::IN_CHAT
    );
    let full = json!({"chat": bare, "extras": {"agentId": 4, "flowRuns": 2}});
    assert_eq!(
        http.put(format!("{base}/__fake/chats/10"))
            .json(&full)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let record: FakeChat = http
        .get(format!("{base}/__fake/chats/10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            record.chat.id,
            record.extras.agent_id,
            record.extras.flow_runs
        ),
        (10, Some(4), 2)
    );
    assert_eq!(
        fake.open_chat_of(5),
        Some(10),
        "same creation time: the higher id"
    );
    let bad = http
        .put(format!("{base}/__fake/chats/11"))
        .json(&json!({"situation": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    assert_eq!(
        http.delete(format!("{base}/__fake/chats/9"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(client.get_chat(9).await.unwrap_err().is_not_found());
    assert_eq!(
        http.delete(format!("{base}/__fake/chats/9"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.delete(format!("{base}/__fake/contacts/5"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(client.get_contact(5).await.unwrap_err().is_not_found());
    assert!(fake.calls().iter().all(|c| !c.path.starts_with("/__fake")));
}

#[tokio::test]
async fn handle_mutators_change_what_the_api_serves() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, 1, 2, situation::AUTO);
    assert_eq!(client.list_contacts(0).await.unwrap().len(), 1);
    assert_eq!(client.list_chats(0, None).await.unwrap().len(), 1);
    assert!(fake.remove_chat(2));
    assert!(!fake.remove_chat(2));
    assert!(client.list_chats(0, None).await.unwrap().is_empty());
    assert!(fake.remove_contact(1));
    assert!(client.list_contacts(0).await.unwrap().is_empty());
}
