//! The mirror: what a batch writes (normalized columns included), the freshness rule on
//! re-upserts, pruning after a full sync, deletes, and account scoping.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use common::{account, utc};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};
use tarefas_core::eval::{Chat, Contact, Reference};
use tarefas_core::segment::{Situation, Table};
use tarefas_store::mirror::{self, MirrorChat};

fn contact(id: i64, name: &str, updated_at: Option<&str>) -> Contact {
    Contact {
        id,
        name: Some(name.to_string()),
        updated_at: updated_at.map(utc),
        ..Contact::default()
    }
}

fn chat(id: i64, situation: Situation, updated_at: Option<&str>) -> MirrorChat {
    MirrorChat {
        chat: Chat {
            id,
            situation,
            department: None,
            channel: None,
            created_at: None,
            updated_at: updated_at.map(utc),
            workflow: None,
            workflow_step: None,
            last_message_at: None,
        },
        contact_id: None,
        channel_uuid: None,
    }
}

async fn names(pool: &PgPool, account_id: i64) -> Vec<(i64, Option<String>)> {
    mirror::load_contacts(pool, account_id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect()
}

async fn synced_at(pool: &PgPool, table: &str, account_id: i64, id: i64) -> DateTime<Utc> {
    let sql = format!("SELECT synced_at FROM {table} WHERE account_id = $1 AND id = $2");
    sqlx::query_scalar(&sql)
        .bind(account_id)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn contacts_round_trip_with_normalized_columns(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let ana = Contact {
        id: 10,
        name: Some("Ana Luíza SOUZA".into()),
        mobile: Some("+55 (11) 99999-0000".into()),
        phone: Some("sem número".into()),
        email: Some("Ana@Exemplo.com.br".into()),
        // Sub-microsecond digits are dropped: timestamptz holds microseconds.
        created_at: Some(utc("2026-12-31T02:30:00.123456789Z")),
        updated_at: Some(utc("2026-12-30T15:00:00Z")),
        group: Some(Reference {
            id: 7,
            name: Some("VIP".into()),
        }),
        organization: Some(Reference { id: 9, name: None }),
        custom: BTreeMap::from([
            ("plano".into(), "Gold".into()),
            ("pontos".into(), "120".into()),
            ("saldo".into(), "-3.50".into()),
            ("vencimento".into(), "2026-12-10".into()),
            ("visita".into(), "2026-12-31T10:00:00-03:00".into()),
            ("hora".into(), "2026-12-31 10:00".into()),
            ("lixo".into(), "12 pontos".into()),
            ("vazio".into(), "".into()),
            ("nul\0key".into(), "a\0b".into()),
        ]),
    };
    let bare = Contact {
        id: 11,
        ..Contact::default()
    };
    let written = mirror::upsert_contacts(
        &pool,
        acme,
        &[ana.clone(), bare.clone()],
        utc("2027-01-01T00:00:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(written, 2);

    let loaded = mirror::load_contacts(&pool, acme).await.unwrap();
    let mut expected = ana.clone();
    expected.mobile = Some("5511999990000".into());
    expected.phone = None; // no digits: unset
    expected.created_at = Some(utc("2026-12-31T02:30:00.123456Z"));
    expected.custom.remove("nul\0key");
    expected.custom.insert("nulkey".into(), "ab".into());
    assert_eq!(loaded, vec![expected, bare]);
    assert_eq!(
        mirror::load_contacts_by_id(&pool, acme, &[11, 99])
            .await
            .unwrap()
            .len(),
        1
    );

    let row = sqlx::query(
        "SELECT name_lc, email_lc, group_name_lc, organization_name_lc, custom_lc, custom_num, custom_date \
         FROM contacts WHERE account_id = $1 AND id = 10",
    )
    .bind(acme)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("name_lc"), "ana luíza souza");
    assert_eq!(row.get::<String, _>("email_lc"), "ana@exemplo.com.br");
    assert_eq!(row.get::<String, _>("group_name_lc"), "vip");
    assert_eq!(row.get::<Option<String>, _>("organization_name_lc"), None);
    assert_eq!(
        row.get::<Value, _>("custom_lc"),
        json!({"plano": "gold", "pontos": "120", "saldo": "-3.50", "vencimento": "2026-12-10",
               "visita": "2026-12-31t10:00:00-03:00", "hora": "2026-12-31 10:00",
               "lixo": "12 pontos", "nulkey": "ab"})
    );
    assert_eq!(
        row.get::<Value, _>("custom_num"),
        json!({"pontos": 120.0, "saldo": -3.5})
    );
    assert_eq!(
        row.get::<Value, _>("custom_date"),
        json!({"vencimento": {"d": "2026-12-10"},
               "visita": {"t": "2026-12-31T13:00:00.000000000Z"},
               "hora": {"l": "2026-12-31T10:00:00"}})
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn chats_round_trip(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let full = MirrorChat {
        chat: Chat {
            id: 555,
            situation: Situation::InChat,
            department: Some(Reference {
                id: 3,
                name: Some("Suporte".into()),
            }),
            channel: Some(Reference {
                id: 4,
                name: Some("WhatsApp Vendas".into()),
            }),
            created_at: Some(utc("2026-12-31T12:00:00Z")),
            updated_at: Some(utc("2026-12-31T12:05:00Z")),
            workflow: Some(Reference {
                id: 2,
                name: Some("Funil".into()),
            }),
            workflow_step: Some(Reference { id: 8, name: None }),
            last_message_at: Some(utc("2026-12-31T14:40:00Z")),
        },
        contact_id: Some(10),
        channel_uuid: Some("c2a7-uuid".into()),
    };
    let bare = chat(556, Situation::Auto, None);
    let written = mirror::upsert_chats(&pool, acme, &[full.clone(), bare.clone()], Utc::now())
        .await
        .unwrap();
    assert_eq!(written, 2);
    assert_eq!(
        mirror::load_chats(&pool, acme).await.unwrap(),
        vec![full.clone(), bare]
    );
    assert_eq!(
        mirror::load_chats_by_id(&pool, acme, &[555]).await.unwrap(),
        vec![full]
    );
    let lc: (String, String, String) = sqlx::query_as(
        "SELECT department_name_lc, channel_name_lc, workflow_name_lc FROM chats WHERE id = 555",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        lc,
        ("suporte".into(), "whatsapp vendas".into(), "funil".into())
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn an_older_version_never_overwrites_a_newer_one(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let t0 = utc("2027-01-01T00:00:00Z");
    let t1 = utc("2027-01-01T01:00:00Z");
    let t2 = utc("2027-01-01T02:00:00Z");
    let upsert = |cs: Vec<Contact>, at| {
        let pool = pool.clone();
        async move { mirror::upsert_contacts(&pool, acme, &cs, at).await.unwrap() }
    };

    upsert(
        vec![
            contact(1, "v2", Some("2026-06-02T00:00:00Z")),
            contact(2, "no date", None),
        ],
        t0,
    )
    .await;

    // Older: kept, but seen (synced_at moves).
    assert_eq!(
        upsert(vec![contact(1, "v1", Some("2026-06-01T00:00:00Z"))], t1).await,
        1
    );
    assert_eq!(names(&pool, acme).await[0], (1, Some("v2".into())));
    assert_eq!(synced_at(&pool, "contacts", acme, 1).await, t1);

    // An incoming NULL updated_at never overwrites a dated row.
    upsert(vec![contact(1, "undated", None)], t1).await;
    assert_eq!(names(&pool, acme).await[0], (1, Some("v2".into())));

    // The same version replaces (a re-sync refreshes); a newer one too.
    upsert(
        vec![contact(1, "v2 again", Some("2026-06-02T00:00:00Z"))],
        t1,
    )
    .await;
    assert_eq!(names(&pool, acme).await[0], (1, Some("v2 again".into())));
    upsert(vec![contact(1, "v3", Some("2026-06-03T00:00:00Z"))], t2).await;
    assert_eq!(names(&pool, acme).await[0], (1, Some("v3".into())));

    // A stored NULL updated_at is replaced by anything.
    upsert(vec![contact(2, "still no date", None)], t1).await;
    assert_eq!(
        names(&pool, acme).await[1],
        (2, Some("still no date".into()))
    );
    upsert(vec![contact(2, "dated", Some("2000-01-01T00:00:00Z"))], t1).await;
    assert_eq!(names(&pool, acme).await[1], (2, Some("dated".into())));

    // synced_at never moves back.
    upsert(vec![contact(1, "v3", Some("2026-06-03T00:00:00Z"))], t0).await;
    assert_eq!(synced_at(&pool, "contacts", acme, 1).await, t2);

    // Chats follow the same rule.
    let chats = |s, at: Option<&str>| vec![chat(7, s, at)];
    mirror::upsert_chats(
        &pool,
        acme,
        &chats(Situation::InChat, Some("2026-06-02T00:00:00Z")),
        t0,
    )
    .await
    .unwrap();
    mirror::upsert_chats(
        &pool,
        acme,
        &chats(Situation::Auto, Some("2026-06-01T00:00:00Z")),
        t1,
    )
    .await
    .unwrap();
    let loaded = mirror::load_chats(&pool, acme).await.unwrap();
    assert_eq!(loaded[0].chat.situation, Situation::InChat);
    assert_eq!(synced_at(&pool, "chats", acme, 7).await, t1);
    mirror::upsert_chats(
        &pool,
        acme,
        &chats(Situation::WaitForChat, Some("2026-06-03T00:00:00Z")),
        t1,
    )
    .await
    .unwrap();
    let loaded = mirror::load_chats(&pool, acme).await.unwrap();
    assert_eq!(loaded[0].chat.situation, Situation::WaitForChat);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_batch_with_a_repeated_id_keeps_the_freshest(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let batch = [
        contact(1, "new", Some("2026-06-02T00:00:00Z")),
        contact(2, "two", None),
        contact(1, "old", Some("2026-06-01T00:00:00Z")),
        contact(1, "undated", None),
        contact(2, "two, later", None),
    ];
    assert_eq!(
        mirror::upsert_contacts(&pool, acme, &batch, Utc::now())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        names(&pool, acme).await,
        vec![(1, Some("new".into())), (2, Some("two, later".into()))]
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn prune_unseen_removes_what_a_full_sync_did_not_see(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let other = account(&pool, "other").await;
    let first = utc("2027-01-01T00:00:00.000001Z");
    let second = utc("2027-01-02T00:00:00.000001Z");
    let all: Vec<Contact> = (1..=5)
        .map(|i| contact(i, "x", Some("2026-06-02T00:00:00Z")))
        .collect();
    mirror::upsert_contacts(&pool, acme, &all, first)
        .await
        .unwrap();
    mirror::upsert_contacts(&pool, other, &all, first)
        .await
        .unwrap();
    let chats: Vec<MirrorChat> = (1..=3).map(|i| chat(i, Situation::Auto, None)).collect();
    mirror::upsert_chats(&pool, acme, &chats, first)
        .await
        .unwrap();

    // The second sync sees 1..=3 (1 with an older version: kept, but seen) and chat 2.
    let seen = [
        contact(1, "older", Some("2026-06-01T00:00:00Z")),
        contact(2, "x", Some("2026-06-02T00:00:00Z")),
        contact(3, "y", Some("2026-06-03T00:00:00Z")),
    ];
    mirror::upsert_contacts(&pool, acme, &seen, second)
        .await
        .unwrap();
    mirror::upsert_chats(&pool, acme, &chats[1..2], second)
        .await
        .unwrap();

    assert_eq!(
        mirror::prune_unseen(&pool, acme, Table::Contacts, second)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        mirror::prune_unseen(&pool, acme, Table::Chats, second)
            .await
            .unwrap(),
        2
    );
    let left: Vec<i64> = names(&pool, acme)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec![1, 2, 3]);
    let chats_left: Vec<i64> = mirror::load_chats(&pool, acme)
        .await
        .unwrap()
        .iter()
        .map(|c| c.chat.id)
        .collect();
    assert_eq!(chats_left, vec![2]);
    // Nothing else is touched: the other account, and a second prune.
    assert_eq!(names(&pool, other).await.len(), 5);
    assert_eq!(
        mirror::prune_unseen(&pool, acme, Table::Contacts, second)
            .await
            .unwrap(),
        0
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn deletes_are_scoped_by_account(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let other = account(&pool, "other").await;
    let cs: Vec<Contact> = (1..=3).map(|i| contact(i, "x", None)).collect();
    let chats: Vec<MirrorChat> = (1..=3).map(|i| chat(i, Situation::InChat, None)).collect();
    for a in [acme, other] {
        mirror::upsert_contacts(&pool, a, &cs, Utc::now())
            .await
            .unwrap();
        mirror::upsert_chats(&pool, a, &chats, Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(
        mirror::delete_contacts(&pool, acme, &[1, 3, 99])
            .await
            .unwrap(),
        2
    );
    assert_eq!(mirror::delete_chats(&pool, acme, &[2]).await.unwrap(), 1);
    assert_eq!(mirror::delete_chats(&pool, acme, &[]).await.unwrap(), 0);
    assert_eq!(names(&pool, acme).await, vec![(2, Some("x".into()))]);
    assert_eq!(mirror::load_chats(&pool, acme).await.unwrap().len(), 2);
    assert_eq!(names(&pool, other).await.len(), 3);
    assert_eq!(mirror::load_chats(&pool, other).await.unwrap().len(), 3);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_batch_of_thousands_is_one_statement(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let cs: Vec<Contact> = (1..=5_000)
        .map(|i| Contact {
            id: i,
            name: Some(format!("Contato {i}")),
            mobile: Some(format!("+55 11 9{i:08}")),
            custom: BTreeMap::from([("pontos".into(), i.to_string())]),
            ..Contact::default()
        })
        .collect();
    let started = std::time::Instant::now();
    assert_eq!(
        mirror::upsert_contacts(&pool, acme, &cs, Utc::now())
            .await
            .unwrap(),
        5_000
    );
    assert_eq!(
        mirror::upsert_contacts(&pool, acme, &cs, Utc::now())
            .await
            .unwrap(),
        5_000
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed.as_secs() < 20,
        "two batches of 5000 took {elapsed:?}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE account_id = $1")
        .bind(acme)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 5_000);
}
