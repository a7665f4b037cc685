//! The segment compiler against real Postgres: the seed article's segments, values that look
//! like SQL or `LIKE` patterns, account isolation, keyset paging, and that the SQL text never
//! holds a value. The differential test against the evaluator is in `segment_diff.rs`.

mod common;

use std::collections::BTreeMap;

use chrono::Utc;
use common::{account, eval_ids, filter, sql_ids, utc, SP};
use serde_json::json;
use sqlx::PgPool;
use tarefas_core::eval::{Chat, Contact, Record, Reference};
use tarefas_core::segment::{Situation, Table};
use tarefas_store::mirror::{self, MirrorChat};
use tarefas_store::segment::{self, SegmentPages, SegmentQuery};

fn reference(id: i64, name: &str) -> Option<Reference> {
    Some(Reference {
        id,
        name: Some(name.to_string()),
    })
}

fn contact(id: i64) -> Contact {
    Contact {
        id,
        ..Contact::default()
    }
}

fn chat(id: i64) -> Chat {
    Chat {
        id,
        situation: Situation::InChat,
        department: None,
        channel: None,
        created_at: None,
        updated_at: None,
        workflow: None,
        workflow_step: None,
        last_message_at: None,
    }
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn the_seed_article_segments(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let now = utc("2027-01-02T12:00:00Z");
    let rotik = || reference(9, "Rotik");
    let contacts = vec![
        // 30/12 23:30 in São Paulo.
        Contact {
            created_at: Some(utc("2026-12-31T02:30:00Z")),
            organization: rotik(),
            ..contact(1)
        },
        // 30/12 00:00 (the day's first instant); the name matches case-insensitively.
        Contact {
            created_at: Some(utc("2026-12-30T03:00:00Z")),
            organization: reference(10, "ROTIK"),
            ..contact(2)
        },
        // 31/12 00:00: the next day.
        Contact {
            created_at: Some(utc("2026-12-31T03:00:00Z")),
            organization: rotik(),
            ..contact(3)
        },
        Contact {
            created_at: Some(utc("2026-12-30T12:00:00Z")),
            organization: reference(11, "Acme"),
            ..contact(4)
        },
        Contact {
            organization: rotik(),
            ..contact(5)
        },
        // 29/12 23:59:59.999999.
        Contact {
            created_at: Some(utc("2026-12-30T02:59:59.999999Z")),
            organization: rotik(),
            ..contact(6)
        },
        Contact {
            created_at: Some(utc("2026-12-30T15:00:00Z")),
            ..contact(7)
        },
    ];
    mirror::upsert_contacts(&pool, acme, &contacts, Utc::now())
        .await
        .unwrap();
    let created_on_and_rotik = filter(
        Table::Contacts,
        &json!({"all": [
            {"field": "created_at", "op": "on", "value": "2026-12-30"},
            {"field": "organization", "op": "eq", "value": "Rotik"},
        ]}),
        SP,
    );
    let got = sql_ids(
        &pool,
        acme,
        Table::Contacts,
        Some(&created_on_and_rotik),
        SP,
        now,
    )
    .await;
    assert_eq!(got, vec![1, 2]);

    let suporte = || reference(3, "Suporte");
    let vendas = || reference(4, "Vendas");
    let chats = vec![
        Chat {
            created_at: Some(utc("2026-12-31T12:00:00Z")),
            department: vendas(),
            ..chat(100)
        },
        Chat {
            created_at: Some(utc("2026-12-30T12:00:00Z")),
            department: suporte(),
            ..chat(101)
        },
        Chat {
            created_at: Some(utc("2026-12-30T12:00:00Z")),
            department: reference(5, "suporte"),
            ..chat(102)
        },
        // 31/12 23:59:59 in São Paulo, no department.
        Chat {
            created_at: Some(utc("2027-01-01T02:59:59Z")),
            ..chat(103)
        },
        // 01/01 00:00.
        Chat {
            created_at: Some(utc("2027-01-01T03:00:00Z")),
            department: vendas(),
            ..chat(104)
        },
        chat(105),
        // 30/12 23:59:59.
        Chat {
            created_at: Some(utc("2026-12-31T02:59:59Z")),
            department: vendas(),
            ..chat(106)
        },
        Chat {
            department: suporte(),
            situation: Situation::Auto,
            ..chat(107)
        },
    ];
    let mirrored: Vec<MirrorChat> = chats.iter().cloned().map(MirrorChat::from).collect();
    mirror::upsert_chats(&pool, acme, &mirrored, Utc::now())
        .await
        .unwrap();
    let on_31_or_suporte = filter(
        Table::Chats,
        &json!({"any": [
            {"field": "created_at", "op": "on", "value": "2026-12-31"},
            {"field": "department", "op": "eq", "value": "Suporte"},
        ]}),
        SP,
    );
    let got = sql_ids(&pool, acme, Table::Chats, Some(&on_31_or_suporte), SP, now).await;
    assert_eq!(got, vec![100, 101, 102, 103, 107]);

    // The evaluator agrees, and the count and a sample say the same.
    let records: Vec<Record> = chats.into_iter().map(Record::Chat).collect();
    assert_eq!(eval_ids(&records, Some(&on_31_or_suporte), SP, now), got);
    let q = SegmentQuery::new(Table::Chats, Some(&on_31_or_suporte), SP, now);
    assert_eq!(segment::count(&pool, acme, &q).await.unwrap(), 5);
    assert_eq!(
        segment::sample(&pool, acme, &q, 2).await.unwrap(),
        vec![100, 101]
    );
}

/// Values that look like SQL, `LIKE` patterns or escapes are only ever values.
const NASTY: &[&str] = &[
    "'; DROP TABLE contacts; --",
    "' OR '1'='1",
    "%",
    "_",
    "\\",
    "\\%",
    "a%b",
    "a_b",
    "$1",
    "\"quoted\"",
    "); DELETE FROM contacts WHERE (1=1",
    "ção ✓ 😀",
];

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn values_that_look_like_sql_are_only_values(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let now = utc("2027-01-02T12:00:00Z");
    let mut contacts: Vec<Contact> = NASTY
        .iter()
        .enumerate()
        .map(|(i, s)| Contact {
            name: Some(s.to_string()),
            email: Some(format!("{s}@x.com")),
            group: reference(i as i64, s),
            custom: BTreeMap::from([
                ("a--b".to_string(), s.to_string()),
                ("ção".to_string(), s.to_string()),
                (s.to_string(), "key".to_string()),
            ]),
            ..contact(i as i64 + 1)
        })
        .collect();
    contacts.push(Contact {
        name: Some("plain".into()),
        email: Some("plain@x.com".into()),
        ..contact(100)
    });
    contacts.push(Contact {
        name: Some("ab".into()),
        ..contact(101)
    });
    contacts.push(contact(102));
    mirror::upsert_contacts(&pool, acme, &contacts, Utc::now())
        .await
        .unwrap();
    let records: Vec<Record> = contacts.iter().cloned().map(Record::Contact).collect();

    let mut checked = 0;
    for s in NASTY {
        let lc = s.to_lowercase();
        for (field, op) in [
            ("name", "eq"),
            ("name", "ne"),
            ("name", "contains"),
            ("name", "not_contains"),
            ("name", "starts_with"),
            ("email", "contains"),
            ("email", "starts_with"),
            ("group", "eq"),
            ("group", "ne"),
            ("custom.a--b", "eq"),
            ("custom.a--b", "contains"),
            ("custom.a--b", "starts_with"),
            ("custom.ção", "not_contains"),
        ] {
            let f = filter(
                Table::Contacts,
                &json!({"field": field, "op": op, "value": s}),
                SP,
            );
            let got = sql_ids(&pool, acme, Table::Contacts, Some(&f), SP, now).await;
            assert_eq!(
                got,
                eval_ids(&records, Some(&f), SP, now),
                "{field} {op} {s:?}"
            );
            checked += 1;
        }
        for (field, op) in [
            ("name", "in"),
            ("name", "not_in"),
            ("group", "in"),
            ("custom.a--b", "in"),
        ] {
            let f = filter(
                Table::Contacts,
                &json!({"field": field, "op": op, "value": [s, "plain"]}),
                SP,
            );
            let got = sql_ids(&pool, acme, Table::Contacts, Some(&f), SP, now).await;
            assert_eq!(
                got,
                eval_ids(&records, Some(&f), SP, now),
                "{field} {op} {s:?}"
            );
        }
        // Exactly the one record whose name is this string, whatever it holds.
        let f = filter(
            Table::Contacts,
            &json!({"field": "name", "op": "eq", "value": s}),
            SP,
        );
        let exact = sql_ids(&pool, acme, Table::Contacts, Some(&f), SP, now).await;
        let expected: Vec<i64> = contacts
            .iter()
            .filter(|c| c.name.as_deref().map(str::to_lowercase) == Some(lc.clone()))
            .map(|c| c.id)
            .collect();
        assert_eq!(exact, expected, "name eq {s:?}");
        assert_eq!(exact.len(), 1);
    }
    assert!(checked > 100);
    // LIKE metacharacters are literal: "%" is contained only where a "%" is.
    let f = filter(
        Table::Contacts,
        &json!({"field": "name", "op": "contains", "value": "%"}),
        SP,
    );
    assert_eq!(
        sql_ids(&pool, acme, Table::Contacts, Some(&f), SP, now).await,
        vec![3, 6, 7]
    );
    let f = filter(
        Table::Contacts,
        &json!({"field": "name", "op": "starts_with", "value": "a_"}),
        SP,
    );
    assert_eq!(
        sql_ids(&pool, acme, Table::Contacts, Some(&f), SP, now).await,
        vec![8]
    );

    // Nothing changed.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, contacts.len() as i64);
    assert_eq!(
        mirror::load_contacts(&pool, acme).await.unwrap().len(),
        contacts.len()
    );
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(accounts, 1);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn every_query_sees_only_its_account(pool: PgPool) {
    let a = account(&pool, "a").await;
    let b = account(&pool, "b").await;
    let now = utc("2027-01-02T12:00:00Z");
    for (acc, prefix, n) in [(a, "a", 10), (b, "b", 6)] {
        let cs: Vec<Contact> = (1..=n)
            .map(|i| Contact {
                name: Some(format!("{prefix}-{i}")),
                ..contact(i)
            })
            .collect();
        mirror::upsert_contacts(&pool, acc, &cs, Utc::now())
            .await
            .unwrap();
        let chats: Vec<MirrorChat> = (1..=n).map(|i| MirrorChat::from(chat(i))).collect();
        mirror::upsert_chats(&pool, acc, &chats, Utc::now())
            .await
            .unwrap();
    }
    let everyone = SegmentQuery::new(Table::Contacts, None, SP, now);
    assert_eq!(segment::count(&pool, a, &everyone).await.unwrap(), 10);
    assert_eq!(segment::count(&pool, b, &everyone).await.unwrap(), 6);
    assert_eq!(
        segment::sample(&pool, b, &everyone, 100).await.unwrap(),
        (1..=6).collect::<Vec<_>>()
    );
    let chats = SegmentQuery::new(Table::Chats, None, SP, now);
    assert_eq!(segment::count(&pool, b, &chats).await.unwrap(), 6);

    let a_names = filter(
        Table::Contacts,
        &json!({"field": "name", "op": "starts_with", "value": "a-"}),
        SP,
    );
    assert_eq!(
        sql_ids(&pool, b, Table::Contacts, Some(&a_names), SP, now).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        sql_ids(&pool, a, Table::Contacts, Some(&a_names), SP, now)
            .await
            .len(),
        10
    );
    let by_id = filter(
        Table::Contacts,
        &json!({"field": "id", "op": "in", "value": [1, 7]}),
        SP,
    );
    let q = SegmentQuery::new(Table::Contacts, Some(&by_id), SP, now);
    assert_eq!(
        segment::page(&pool, b, &q, None, 10).await.unwrap(),
        vec![1]
    );
    assert_eq!(
        segment::page(&pool, a, &q, None, 10).await.unwrap(),
        vec![1, 7]
    );
    let unknown = account(&pool, "c").await;
    assert_eq!(segment::count(&pool, unknown, &everyone).await.unwrap(), 0);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn keyset_pages_return_every_id_once_in_order(pool: PgPool) {
    let acme = account(&pool, "acme").await;
    let now = utc("2027-01-02T12:00:00Z");
    // Sparse, unordered ids; every third one is "gold".
    let ids: Vec<i64> = (0..1_000i64).map(|i| (i * 7_919) % 100_003 + 1).collect();
    let cs: Vec<Contact> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| Contact {
            custom: BTreeMap::from([(
                "plano".into(),
                if i % 3 == 0 { "Gold" } else { "silver" }.into(),
            )]),
            ..contact(id)
        })
        .collect();
    mirror::upsert_contacts(&pool, acme, &cs, Utc::now())
        .await
        .unwrap();
    let gold = filter(
        Table::Contacts,
        &json!({"field": "custom.plano", "op": "eq", "value": "gold"}),
        SP,
    );
    let q = SegmentQuery::new(Table::Contacts, Some(&gold), SP, now);
    let mut expected: Vec<i64> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, &id)| id)
        .collect();
    expected.sort_unstable();
    assert_eq!(
        segment::count(&pool, acme, &q).await.unwrap(),
        expected.len() as i64
    );

    for page_size in [1, 37, 334, 1_000] {
        let mut pages = SegmentPages::new(pool.clone(), acme, q.clone(), page_size);
        let mut seen = Vec::new();
        let mut n_pages = 0;
        while let Some(p) = pages.next_page().await.unwrap() {
            assert!(!p.is_empty() && p.len() as i64 <= page_size);
            assert_eq!(pages.cursor(), p.last().copied());
            seen.extend(p);
            n_pages += 1;
        }
        assert_eq!(seen, expected, "page size {page_size}");
        assert_eq!(n_pages, expected.len().div_ceil(page_size as usize));
        assert_eq!(pages.next_page().await.unwrap(), None);
    }

    // Resuming from a checkpoint continues right after it.
    let mut pages = SegmentPages::new(pool.clone(), acme, q.clone(), 50);
    let first = pages.next_page().await.unwrap().unwrap();
    let mut resumed =
        SegmentPages::new(pool.clone(), acme, q.clone(), 50).resume_after(pages.cursor());
    let mut rest = Vec::new();
    while let Some(p) = resumed.next_page().await.unwrap() {
        rest.extend(p);
    }
    assert_eq!([first, rest].concat(), expected);
    // One page by hand, across a boundary between ids.
    let after = expected[9];
    assert_eq!(
        segment::page(&pool, acme, &q, Some(after), 5)
            .await
            .unwrap(),
        expected[10..15]
    );
    assert_eq!(
        segment::page(&pool, acme, &q, Some(*expected.last().unwrap()), 5)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn the_sql_text_holds_no_value(pool: PgPool) {
    let now = utc("2027-01-02T12:00:00.123456789Z");
    let f = filter(
        Table::Contacts,
        &json!({"all": [
            {"field": "name", "op": "contains", "value": "ZZSECRETZZ"},
            {"field": "custom.chave--secreta", "op": "gt", "value": 424242},
            {"field": "custom.outra", "op": "between", "value": ["2026-01-01T10:00", "2026-02-01"]},
            {"any": [
                {"field": "organization", "op": "in", "value": [987654, "Orgsecreta"]},
                {"field": "id", "op": "not_in", "value": [13579]},
                {"field": "created_at", "op": "within_last", "value": "7d"},
            ]},
        ]}),
        SP,
    );
    let q = SegmentQuery::new(Table::Contacts, Some(&f), SP, now);
    let (sql, binds) = q.explain();
    for secret in [
        "ZZSECRETZZ",
        "zzsecretzz",
        "chave",
        "424242",
        "2026",
        "987654",
        "orgsecreta",
        "13579",
    ] {
        assert!(!sql.to_lowercase().contains(secret), "{secret} in {sql}");
    }
    assert!(
        sql.starts_with("SELECT id FROM contacts WHERE account_id = $1 AND ("),
        "{sql}"
    );
    assert!(
        sql.ends_with(&format!(" ORDER BY id LIMIT ${binds}")),
        "{sql}"
    );
    // account, name, key + number, 3 forms × 2 bounds × (key + bound), ids + names, ids,
    // 2 bounds, after, limit.
    assert_eq!(binds, 1 + 1 + 2 + 12 + 2 + 1 + 2 + 2, "{sql}");
    assert_eq!(sql.matches('$').count(), binds, "{sql}");
    // And it runs.
    let acme = account(&pool, "acme").await;
    assert_eq!(segment::count(&pool, acme, &q).await.unwrap(), 0);
}
