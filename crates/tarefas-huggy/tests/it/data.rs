//! The fake's data set over HTTP: determinism, paging, chat lists by situation, auth, the
//! company prefix, and the library `serve` function.

use std::collections::BTreeSet;

use tarefas_fake_huggy as fake;
use tarefas_fake_huggy::{FakeConfig, FakeHuggy};
use tarefas_huggy::model::situation;
use tarefas_huggy::{Chat, Contact, HttpHuggy, HuggyApi, HuggyConfig, HuggyError, PAGE_SIZE};

use crate::support::{client_for, config_for, small, start};

async fn all_contacts(client: &HttpHuggy) -> Vec<Contact> {
    let mut out = Vec::new();
    for page in 0.. {
        let items = client.list_contacts(page).await.unwrap();
        if items.is_empty() {
            return out;
        }
        assert!(items.len() <= PAGE_SIZE);
        out.extend(items);
    }
    unreachable!()
}

async fn all_chats(client: &HttpHuggy, situation: Option<&str>) -> Vec<Chat> {
    let mut out = Vec::new();
    for page in 0.. {
        let items = client.list_chats(page, situation).await.unwrap();
        if items.is_empty() {
            return out;
        }
        out.extend(items);
    }
    unreachable!()
}

#[tokio::test]
async fn same_seed_serves_the_same_data_and_another_seed_does_not() {
    let config = FakeConfig {
        contacts: 70,
        chats: 50,
        seed: 7,
        ..FakeConfig::default()
    };
    let (_a, client_a) = start(config.clone()).await;
    let (_b, client_b) = start(config.clone()).await;
    let (_c, client_c) = start(FakeConfig { seed: 8, ..config }).await;
    let contacts = all_contacts(&client_a).await;
    assert_eq!(contacts.len(), 70);
    assert_eq!(contacts, all_contacts(&client_b).await);
    assert_ne!(contacts, all_contacts(&client_c).await);
    for s in situation::OPEN
        .iter()
        .chain(&[situation::FINISHING, situation::CLOSED])
    {
        assert_eq!(
            all_chats(&client_a, Some(s)).await,
            all_chats(&client_b, Some(s)).await
        );
    }
    // The JSON itself is byte-for-byte identical.
    let raw = |base: String| async move {
        reqwest::Client::new()
            .get(format!("{base}/contacts?page=1"))
            .bearer_auth(fake::DEFAULT_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(raw(_a.base_url()).await, raw(_b.base_url()).await);
}

#[tokio::test]
async fn contacts_come_twenty_a_page_and_an_empty_page_past_the_end() {
    let (_fake, client) = start(small()).await;
    let sizes = [
        client.list_contacts(0).await.unwrap().len(),
        client.list_contacts(1).await.unwrap().len(),
        client.list_contacts(2).await.unwrap().len(),
        client.list_contacts(3).await.unwrap().len(),
        client.list_contacts(1000).await.unwrap().len(),
    ];
    assert_eq!(sizes, [20, 20, 5, 0, 0]);
    let ids: Vec<i64> = all_contacts(&client).await.iter().map(|c| c.id).collect();
    assert_eq!(ids, (1001..1046).collect::<Vec<_>>());
    let one = client.get_contact(1010).await.unwrap();
    assert_eq!(one.id, 1010);
    assert!(client.get_contact(99).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn chat_lists_show_open_chats_unless_asked_for_a_situation() {
    let (fake, client) = start(FakeConfig {
        contacts: 30,
        chats: 120,
        ..FakeConfig::default()
    })
    .await;
    let open = all_chats(&client, None).await;
    assert!(open.len() > PAGE_SIZE, "needs several pages");
    assert!(open.iter().all(Chat::is_open));
    let mut by_situation = 0;
    for s in situation::OPEN {
        let chats = all_chats(&client, Some(s)).await;
        assert!(!chats.is_empty());
        assert!(chats.iter().all(|c| c.situation == s));
        by_situation += chats.len();
    }
    assert_eq!(by_situation, open.len());
    let closed = all_chats(&client, Some(situation::CLOSED)).await;
    let finishing = all_chats(&client, Some(situation::FINISHING)).await;
    assert!(!closed.is_empty() && !finishing.is_empty());
    assert_eq!(open.len() + closed.len() + finishing.len(), 120);
    assert!(all_chats(&client, Some("nonsense")).await.is_empty());
    let ids: BTreeSet<i64> = open.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), open.len(), "no chat twice");
    let chat = client.get_chat(open[0].id).await.unwrap();
    assert_eq!(chat, open[0]);
    assert_eq!(fake.chat(open[0].id), Some(chat));
    assert!(client.get_chat(1).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn a_wrong_or_missing_token_gets_401() {
    let (fake, _client) = start(small()).await;
    let wrong = HttpHuggy::new(HuggyConfig {
        token: "nope".into(),
        ..config_for(&fake)
    })
    .unwrap();
    assert_eq!(
        wrong.list_contacts(0).await.unwrap_err(),
        HuggyError::BadToken { status: 401 }
    );
    assert_eq!(
        wrong.get_chat(500_001).await.unwrap_err(),
        HuggyError::BadToken { status: 401 }
    );
    let answer = reqwest::get(format!("{}/contacts?page=0", fake.base_url()))
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.headers()["content-type"], "application/json");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["message"].is_string());
    assert!(fake
        .calls()
        .iter()
        .all(|c| c.status == 401 && c.fault.as_deref() == Some("auth")));
}

#[tokio::test]
async fn the_company_prefix_serves_the_same_api() {
    let (fake, plain) = start(small()).await;
    let company = HttpHuggy::new(config_for(&fake).with_company_id("77")).unwrap();
    assert_eq!(
        company.list_contacts(0).await.unwrap(),
        plain.list_contacts(0).await.unwrap()
    );
    assert_eq!(company.get_chat(500_001).await.unwrap().id, 500_001);
    let calls = fake.calls();
    assert_eq!(calls[0].path, "/companies/77/contacts");
    assert_eq!(calls[0].company_id.as_deref(), Some("77"));
    assert_eq!(calls[0].route, "GET /contacts");
    assert_eq!(calls[1].company_id, None);
    assert_eq!(calls[2].route, "GET /chats/{id}");
    assert_eq!(calls[2].chat_id, Some(500_001));
    // The same pool serves another account.
    let other = company.with_account(&"nope".into(), Some("78")).unwrap();
    assert_eq!(
        other.list_contacts(0).await.unwrap_err(),
        HuggyError::BadToken { status: 401 }
    );
}

#[tokio::test]
async fn the_client_reuses_its_connections() {
    let (fake, client) = start(small()).await;
    for page in 0..30 {
        client.list_contacts(page % 3).await.unwrap();
    }
    assert_eq!(fake.stats().connections, 1);
}

#[tokio::test]
async fn serve_runs_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = FakeConfig {
        token: "t0k".into(),
        ..small()
    };
    let server = tokio::spawn(fake::serve(listener, config, async {
        let _ = stopped.await;
    }));
    let client = HttpHuggy::new(HuggyConfig::new("t0k").with_base_url(&base_url)).unwrap();
    assert_eq!(client.list_contacts(0).await.unwrap().len(), 20);
    let health = reqwest::get(format!("{base_url}/__fake/healthz"))
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(matches!(
        client.list_contacts(0).await.unwrap_err(),
        HuggyError::Retryable { .. } | HuggyError::Ambiguous { .. }
    ));
}

#[tokio::test]
async fn invalid_configs_do_not_start() {
    let bad = FakeConfig {
        faults: fake::Faults {
            rate_429: 2.0,
            ..Default::default()
        },
        ..small()
    };
    assert!(FakeHuggy::start(bad).await.is_err());
    let (fake, _) = start(small()).await;
    let _ = client_for(&fake);
    fake.shutdown().await.unwrap();
}
