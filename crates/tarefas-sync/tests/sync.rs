//! Sync against the fake Huggy and a real Postgres (a fresh database per test): full syncs,
//! a second sync after changes, webhooks repeated and out of order, wrong tokens.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset};
use serde_json::{json, Value};
use sqlx::PgPool;
use tarefas_fake_huggy::{FakeConfig, FakeHuggy, Faults};
use tarefas_huggy::model::Contact as HuggyContact;
use tarefas_huggy::{HttpHuggy, HuggyConfig};
use tarefas_store::accounts::{self, NewAccount};
use tarefas_store::mirror;
use tarefas_sync::webhook::{router, WebhookAccount, WebhookState};
use tarefas_sync::{sync_account, SyncError};

async fn account(pool: &PgPool, name: &str) -> i64 {
    accounts::add(
        pool,
        &NewAccount {
            name: name.into(),
            company_id: None,
            token_ref: None,
            webhook_token_ref: None,
            rate_limit_per_s: 10,
        },
    )
    .await
    .unwrap()
    .id
}

async fn fake(contacts: usize, chats: usize) -> (FakeHuggy, HttpHuggy) {
    let fake = FakeHuggy::start(FakeConfig {
        contacts,
        chats,
        seed: 7,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let client =
        HttpHuggy::new(HuggyConfig::new(fake.token().to_string()).with_base_url(fake.base_url()))
            .unwrap();
    (fake, client)
}

fn open_chat_ids(fake: &FakeHuggy) -> BTreeSet<i64> {
    fake.chats()
        .into_iter()
        .map(|c| c.chat)
        .filter(|c| c.is_open())
        .map(|c| c.id)
        .collect()
}

async fn mirror_ids(pool: &PgPool, account_id: i64) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let contacts = mirror::load_contacts(pool, account_id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let chats = mirror::load_chats(pool, account_id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.chat.id)
        .collect();
    (contacts, chats)
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn full_sync_mirrors_every_contact_and_only_open_chats(pool: PgPool) {
    let (fake, huggy) = fake(2_500, 1_800).await;
    let acct = account(&pool, "acme").await;
    let report = sync_account(&huggy, &pool, acct).await.unwrap();
    let want_contacts: BTreeSet<i64> = fake.contacts().iter().map(|c| c.id).collect();
    let want_chats = open_chat_ids(&fake);
    assert!(
        want_chats.len() < 1_800,
        "the data set has closed chats too"
    );
    let (contacts, chats) = mirror_ids(&pool, acct).await;
    assert_eq!(contacts, want_contacts);
    assert_eq!(chats, want_chats);
    assert_eq!(report.contacts, 2_500);
    assert_eq!(report.chats as usize, want_chats.len());
    // Fields arrive normalized: one contact checked field by field.
    let sample = &fake.contacts()[10];
    let stored = mirror::load_contacts_by_id(&pool, acct, &[sample.id])
        .await
        .unwrap();
    assert_eq!(stored[0].name, sample.name);
    assert_eq!(stored[0].mobile, sample.mobile);
    assert_eq!(stored[0].created_at, sample.created_at.map(|t| t.to_utc()));
    assert_eq!(
        stored[0].organization.as_ref().map(|o| o.id),
        sample.organization.as_ref().map(|o| o.id)
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn second_sync_applies_changes_and_removes_what_vanished(pool: PgPool) {
    let (fake, huggy) = fake(300, 200).await;
    let acct = account(&pool, "acme").await;
    sync_account(&huggy, &pool, acct).await.unwrap();

    let mut changed = fake.contacts()[0].clone();
    changed.name = Some("Nome Novo".into());
    changed.updated_at = changed.updated_at.map(|t| t + Duration::days(1));
    fake.upsert_contact(changed.clone());
    let gone = fake.contacts()[1].id;
    assert!(fake.remove_contact(gone));
    let closed = *open_chat_ids(&fake).iter().next().unwrap();
    assert!(fake.remove_chat(closed));

    let report = sync_account(&huggy, &pool, acct).await.unwrap();
    assert_eq!((report.contacts_removed, report.chats_removed), (1, 1));
    let (contacts, chats) = mirror_ids(&pool, acct).await;
    assert!(!contacts.contains(&gone));
    assert!(!chats.contains(&closed));
    let stored = mirror::load_contacts_by_id(&pool, acct, &[changed.id])
        .await
        .unwrap();
    assert_eq!(stored[0].name.as_deref(), Some("Nome Novo"));
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_failed_sync_removes_nothing(pool: PgPool) {
    let (fake, huggy) = fake(100, 50).await;
    let acct = account(&pool, "acme").await;
    sync_account(&huggy, &pool, acct).await.unwrap();
    let before = mirror_ids(&pool, acct).await;
    fake.set_faults(Faults {
        forced_status: Some(401),
        ..Faults::default()
    })
    .unwrap();
    let err = sync_account(&huggy, &pool, acct).await.unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Huggy(tarefas_huggy::HuggyError::BadToken { .. })
        ),
        "{err}"
    );
    assert_eq!(mirror_ids(&pool, acct).await, before);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn sync_rides_out_rate_limits_and_server_errors(pool: PgPool) {
    let (fake, huggy) = fake(200, 100).await;
    fake.set_faults(Faults {
        rate_429: 0.2,
        retry_after_secs: Some(0),
        rate_5xx: 0.1,
        ..Faults::default()
    })
    .unwrap();
    let acct = account(&pool, "acme").await;
    sync_account(&huggy, &pool, acct).await.unwrap();
    fake.set_faults(Faults::default()).unwrap();
    let (contacts, chats) = mirror_ids(&pool, acct).await;
    assert_eq!(contacts.len(), 200);
    assert_eq!(chats, open_chat_ids(&fake));
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn accounts_do_not_see_each_other(pool: PgPool) {
    let (_fake_a, huggy_a) = fake(50, 20).await;
    let fake_b = FakeHuggy::start(FakeConfig {
        contacts: 80,
        chats: 10,
        seed: 99,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let huggy_b = HttpHuggy::new(
        HuggyConfig::new(fake_b.token().to_string()).with_base_url(fake_b.base_url()),
    )
    .unwrap();
    let a = account(&pool, "a").await;
    let b = account(&pool, "b").await;
    sync_account(&huggy_a, &pool, a).await.unwrap();
    sync_account(&huggy_b, &pool, b).await.unwrap();
    assert_eq!(mirror_ids(&pool, a).await.0.len(), 50);
    assert_eq!(mirror_ids(&pool, b).await.0.len(), 80);
    // A resync of b that finds nothing removes only b's records.
    for c in fake_b.contacts() {
        fake_b.remove_contact(c.id);
    }
    sync_account(&huggy_b, &pool, b).await.unwrap();
    assert_eq!(mirror_ids(&pool, a).await.0.len(), 50);
    assert_eq!(mirror_ids(&pool, b).await.0.len(), 0);
}

struct Hook {
    url: String,
    http: reqwest::Client,
}

impl Hook {
    async fn start(pool: &PgPool) -> (Hook, i64, FakeHuggy) {
        let (fake, huggy) = fake(20, 20).await;
        let acct = account(pool, "acme").await;
        let state = Arc::new(WebhookState {
            pool: pool.clone(),
            accounts: HashMap::from([(
                "acme".to_string(),
                WebhookAccount {
                    account_id: acct,
                    token: "s3cr3t".into(),
                    huggy,
                },
            )]),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks/acme", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        (
            Hook {
                url,
                http: reqwest::Client::new(),
            },
            acct,
            fake,
        )
    }

    async fn post(&self, body: Value) -> (u16, Value) {
        let r = self.http.post(&self.url).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn ts(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn contact_json(id: i64, name: &str, updated: &str) -> Value {
    serde_json::to_value(HuggyContact {
        id,
        name: Some(name.into()),
        email: None,
        mobile: Some("5511999990000".into()),
        phone: None,
        created_at: Some(ts("2026-01-01T10:00:00-03:00")),
        updated_at: Some(ts(updated)),
        group: None,
        organization: None,
        custom_fields: Default::default(),
    })
    .unwrap()
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn webhook_tokens_are_checked(pool: PgPool) {
    let (hook, acct, _fake) = Hook::start(&pool).await;
    assert_eq!(
        hook.post(json!({"token": "s3cr3t", "validToken": true}))
            .await
            .0,
        200
    );
    assert_eq!(
        hook.post(json!({"token": "wrong", "validToken": true}))
            .await
            .0,
        401
    );
    assert_eq!(hook.post(json!({"validToken": true})).await.0, 401);
    assert_eq!(
        hook.post(json!({"token": "s3cr3t"})).await.0,
        400,
        "no messages"
    );
    assert_eq!(
        hook.post(json!({"token": "s3cr3t", "messages": []}))
            .await
            .0,
        400
    );
    let other = hook.url.replace("/acme", "/other");
    assert_eq!(
        hook.http
            .post(other)
            .json(&json!({"token": "s3cr3t"}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let not_json = hook
        .http
        .post(&hook.url)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let huge = hook
        .http
        .post(&hook.url)
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    // A wrong token changes nothing.
    let (status, _) = hook
        .post(json!({"token": "nope", "messages": {"createdCustomer": [contact_json(1, "X", "2026-01-01T10:00:00Z")]}}))
        .await;
    assert_eq!(status, 401);
    assert!(mirror::load_contacts(&pool, acct).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn webhook_events_apply_idempotently_and_never_go_back_in_time(pool: PgPool) {
    let (hook, acct, fake) = Hook::start(&pool).await;
    let newer = contact_json(42, "Ana Nova", "2026-06-02T10:00:00Z");
    let older = contact_json(42, "Ana Velha", "2026-06-01T10:00:00Z");
    let (status, body) = hook
        .post(json!({"token": "s3cr3t", "messages": {"updatedCustomer": [newer.clone()]}}))
        .await;
    assert_eq!(status, 200, "{body}");
    // Repeated and out of order: the older update arrives after the newer one.
    hook.post(json!({"token": "s3cr3t", "messages": {"updatedCustomer": [older], "createdCustomer": [newer]}})).await;
    let stored = mirror::load_contacts(&pool, acct).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name.as_deref(), Some("Ana Nova"));

    // A chat event without the chat's state is settled by reading the chat from Huggy.
    let open = *open_chat_ids(&fake).iter().next().unwrap();
    let (status, body) = hook.post(json!({"token": "s3cr3t", "messages": {"receivedAllMessage": [{"chat": {"id": open}}]}})).await;
    assert_eq!(status, 200, "{body}");
    assert!(mirror_ids(&pool, acct).await.1.contains(&open));
    // Closing removes it.
    let mut closed = serde_json::to_value(fake.chat(open).unwrap()).unwrap();
    closed["situation"] = json!("closed");
    closed["updatedAt"] = json!("2030-01-01T00:00:00Z");
    let (status, body) = hook
        .post(json!({"token": "s3cr3t", "messages": {"closedChat": [{"chat": closed}]}}))
        .await;
    assert_eq!((status, body["chats_removed"].clone()), (200, json!(1)));
    assert!(!mirror_ids(&pool, acct).await.1.contains(&open));
    // Unknown events and malformed items are ignored, not fatal.
    let (status, body) = hook.post(json!({"token": "s3cr3t", "messages": {"somethingElse": [1], "createdCustomer": [{"no": "id"}]}})).await;
    assert_eq!(status, 200);
    assert_eq!(body["ignored"], json!(2));
}
