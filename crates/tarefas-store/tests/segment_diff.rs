//! The differential test: for random data sets written through the mirror and random filters
//! (validated as a task file's), Postgres selects exactly the records the in-memory evaluator
//! says match — for the same zone and run start.
//!
//! Values come from pools that overlap the data on purpose: accented and mixed-case names,
//! `LIKE` metacharacters and SQL, phones with punctuation, custom fields holding numbers,
//! dates, local date-times (in gaps and overlaps), instants with offsets or sub-microsecond
//! digits, odd years, garbage and empty text, references by id and by name, and times on
//! both sides of the daylight-saving transitions of New York and São Paulo.
//!
//! `PROPTEST_CASES` overrides the number of cases (default 256).

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use common::{account, eval_ids, try_filter, utc, NY, SP};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{json, Value};
use sqlx::PgPool;
use tarefas_core::eval::{Chat, Contact, Record, Reference};
use tarefas_core::segment::{Filter, Situation, Table};
use tarefas_core::time::TimeValue;
use tarefas_store::mirror::{self, MirrorChat};
use tarefas_store::segment::{self, SegmentQuery};

// ---- pools -------------------------------------------------------------------------------

const NAMES: &[&str] = &[
    "Ana Luíza Souza",
    "ANA LUÍZA SOUZA",
    "ana",
    "José da Silva",
    "JOSÉ",
    "Straße",
    "STRASSE",
    "İstanbul",
    "ΟΔΥΣΣΕΥΣ",
    "100% real",
    "a_b",
    "aXb",
    "back\\slash",
    "O'Brien",
    "'; DROP TABLE contacts; --",
    "' OR '1'='1",
    "😀 emoji",
    " ",
    "",
];
const TEXT_VALUES: &[&str] = &[
    "ana",
    "ANA LUÍZA SOUZA",
    "luíza",
    "LUIZA",
    "souza",
    "josé",
    "JOSÉ DA SILVA",
    "straße",
    "ss",
    "i̇",
    "İSTANBUL",
    "σς",
    "ΟΔΥΣ",
    "%",
    "_",
    "\\",
    "100%",
    "a_b",
    "o'b",
    "'; drop table contacts; --",
    "' OR '1'='1",
    "😀",
    " ",
    "@exemplo",
    "ana@exemplo.com.br",
    ".com",
    "x_y@",
];
const EMAILS: &[&str] = &[
    "Ana@Exemplo.com.br",
    "ana@exemplo.com.br",
    "x_y@z.com",
    "xay@z.com",
    "100%@x.com",
    "",
];
const PHONES: &[&str] = &[
    "+55 (11) 99999-0000",
    "5511999990000",
    "(11) 3333-4444",
    "11 3333-4444 ramal 2",
    "+1 (212) 555-0100",
    "sem número",
    "0",
    "",
];
const PHONE_VALUES: &[&str] = &[
    "+55 (11) 99999-0000",
    "5511",
    "(11)",
    "0000",
    "99999-0000",
    "3333-4444",
    "11 3333",
    "9",
    "0",
    "+1 212",
    "555-0100",
];
const KEYS: &[&str] = &[
    "plano",
    "pontos",
    "saldo",
    "vencimento",
    "visita",
    "hora",
    "lixo",
    "vazio",
    "Plano",
    "a--b",
    "ção",
];
/// The fields of [`KEYS`] (plus one that no record has).
const CUSTOM_FIELDS: &[&str] = &[
    "custom.plano",
    "custom.pontos",
    "custom.saldo",
    "custom.vencimento",
    "custom.visita",
    "custom.hora",
    "custom.lixo",
    "custom.vazio",
    "custom.Plano",
    "custom.a--b",
    "custom.ção",
    "custom.ausente",
];
const CUSTOM_VALUES: &[&str] = &[
    "Gold",
    "gold",
    "GOLD ",
    "120",
    "120.0",
    "007",
    "-3.5",
    "-0",
    "0.000000000000001",
    "999999999999999",
    "1e3",
    " 12",
    "1,5",
    "12 pontos",
    "2026-03-08",
    "2026-11-01",
    "2018-11-04",
    "2019-02-16",
    "2026-12-31",
    "0000-01-01",
    "9999-12-31",
    "2026-03-08T02:30",
    "2026-11-01T01:30:00",
    "2026-11-01 01:30",
    "2018-11-04T00:30",
    "2019-02-16T23:30",
    "2026-03-08T07:00:00Z",
    "2026-11-01T01:30:00-04:00",
    "2026-11-01T01:30:00-05:00",
    "2026-12-31T13:00:00.0000005Z",
    "2026-12-31T13:00:00.000001Z",
    "0000-01-01T00:00:00+01:00",
    "9999-12-31T23:00:00-05:00",
    "2026-12-31T10:00:00-03:00",
    "ontem",
    "",
    "%",
    "_",
    "\\",
    "'; DROP TABLE contacts; --",
    "Ação",
];
const CUSTOM_TEXT_VALUES: &[&str] = &[
    "gold",
    "GOLD",
    "go",
    "old",
    "gold ",
    "120",
    "12",
    "-3.5",
    "2026-03-08",
    "2026-11-01t01:30",
    "pontos",
    "%",
    "_",
    "\\",
    "'; drop table contacts; --",
    "ação",
    "e3",
];
const NUMBERS: &[f64] = &[
    120.0,
    -3.5,
    0.0,
    7.0,
    12.0,
    1.5,
    0.000000000000001,
    999999999999999.0,
    1000.0,
];
const DATES: &[&str] = &[
    "2026-03-07",
    "2026-03-08",
    "2026-03-09",
    "2026-10-31",
    "2026-11-01",
    "2026-11-02",
    "2026-12-30",
    "2026-12-31",
    "2027-01-01",
    "2018-11-03",
    "2018-11-04",
    "2018-11-05",
    "2019-02-16",
    "2019-02-17",
    "0000-01-01",
    "9999-12-31",
];
const LOCALS: &[&str] = &[
    "2026-03-08T02:30",
    "2026-03-08T02:00:00",
    "2026-03-08T03:00",
    "2026-11-01T01:30",
    "2026-11-01T01:00:00",
    "2026-11-01T02:00",
    "2018-11-04T00:30",
    "2018-11-04T00:00",
    "2019-02-16T23:30",
    "2026-12-31T10:00",
    "2026-12-30 23:30",
];
const INSTANTS: &[&str] = &[
    "2026-03-08T07:00:00Z",
    "2026-03-08T06:59:59Z",
    "2026-11-01T01:30:00-04:00",
    "2026-11-01T01:30:00-05:00",
    "2026-12-31T13:00:00.000000500Z",
    "2026-12-31T10:00:00-03:00",
    "2018-11-04T03:00:00Z",
    "2019-02-17T01:59:59.999999Z",
    "0000-01-01T00:00:00+01:00",
    "9999-12-31T23:00:00-05:00",
];
const RELATIVE: &[&str] = &["1m", "30m", "6h", "24h", "1d", "7d", "2w"];
/// Run starts; one with nanoseconds, so that relative bounds fall between microseconds.
const NOWS: &[&str] = &[
    "2026-03-08T12:00:00.123456Z",
    "2026-11-01T06:30:00Z",
    "2026-11-08T05:00:00.000000500Z",
    "2027-01-01T02:59:59Z",
    "2018-11-05T03:00:00Z",
    "2019-02-17T02:59:59.999999Z",
];
/// Instants the data sits around: midnights and transitions in both zones.
const BASES: &[&str] = &[
    "2026-03-08T05:00:00Z", // NY midnight, the day of the spring gap
    "2026-03-08T07:00:00Z", // NY 03:00 EDT, just after the gap
    "2026-03-09T04:00:00Z",
    "2026-11-01T04:00:00Z",
    "2026-11-01T05:30:00Z", // NY 01:30, first pass
    "2026-11-01T06:30:00Z", // NY 01:30, second pass
    "2026-11-02T05:00:00Z",
    "2026-12-30T03:00:00Z", // SP midnights
    "2026-12-31T03:00:00Z",
    "2027-01-01T03:00:00Z",
    "2026-12-31T05:00:00Z", // NY midnight
    "2026-12-31T13:00:00Z",
    "2018-11-04T03:00:00Z", // SP: the day that started at 01:00
    "2018-11-05T02:00:00Z",
    "2019-02-16T02:00:00Z",
    "2019-02-17T02:00:00Z", // SP: midnight happened twice
    "2019-02-17T03:00:00Z",
];
/// Offsets from a base, in microseconds.
const DELTAS_US: &[i64] = &[
    0,
    1,
    -1,
    1_000_000,
    -1_000_000,
    1_800_000_000,
    -1_800_000_000,
    3_600_000_000,
    -3_600_000_000,
    43_200_000_000,
    86_400_000_000,
    -86_400_000_000,
];

const GROUPS: &[(i64, Option<&str>)] = &[
    (1, Some("VIP")),
    (2, Some("vip")),
    (3, Some("Clientes Ouro")),
    (4, Some("100%")),
    (5, Some("a_b")),
    (6, Some("'; DROP TABLE contacts; --")),
    (7, Some("Ação")),
    (8, None),
];
const ORGS: &[(i64, Option<&str>)] = &[
    (9, Some("Rotik")),
    (10, Some("ROTIK")),
    (11, Some("Acme")),
    (12, Some("aXb")),
    (1, Some("Um")),
];
const DEPARTMENTS: &[(i64, Option<&str>)] = &[
    (3, Some("Suporte")),
    (4, Some("Vendas")),
    (5, Some("suporte ")),
    (6, None),
];
const CHANNELS: &[(i64, Option<&str>)] = &[
    (4, Some("WhatsApp Vendas")),
    (5, Some("whatsapp vendas")),
    (6, Some("Telegram_1")),
];
const WORKFLOWS: &[(i64, Option<&str>)] = &[(2, None), (3, Some("Funil")), (4, Some("funil %"))];
const STEPS: &[(i64, Option<&str>)] = &[(8, None), (9, Some("Etapa 1")), (10, Some("ETAPA 1"))];
const REF_NAMES: &[&str] = &[
    "VIP",
    "vip",
    "clientes ouro",
    "100%",
    "%",
    "a_b",
    "_",
    "'; DROP TABLE contacts; --",
    "' OR '1'='1",
    "ação",
    "AÇÃO",
    "rotik",
    "ROTIK",
    "Acme",
    "axb",
    "suporte",
    "SUPORTE ",
    "whatsapp vendas",
    "telegram_1",
    "funil",
    "funil %",
    "etapa 1",
    "oito",
];
const REF_IDS: &[i64] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

// ---- data --------------------------------------------------------------------------------

fn s(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(pool).prop_map(str::to_string)
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let now_based = NOWS.iter().flat_map(|n| {
        RELATIVE.iter().map(move |r| {
            let d = tarefas_core::time::parse_relative(r).unwrap();
            let now = utc(n);
            // Whole microseconds, as a timestamptz holds them.
            let now = now - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos() % 1000));
            now - d
        })
    });
    let bases: Vec<DateTime<Utc>> = BASES.iter().map(|b| utc(b)).chain(now_based).collect();
    (select(bases), select(DELTAS_US)).prop_map(|(b, d)| b + Duration::microseconds(d))
}

fn reference(
    pool: &'static [(i64, Option<&'static str>)],
) -> impl Strategy<Value = Option<Reference>> {
    proptest::option::of(select(pool).prop_map(|(id, name)| Reference {
        id,
        name: name.map(str::to_string),
    }))
}

fn contact() -> impl Strategy<Value = Contact> {
    use proptest::option::of;
    (
        (
            1i64..600,
            of(s(NAMES)),
            of(s(PHONES)),
            of(s(PHONES)),
            of(s(EMAILS)),
        ),
        (
            of(instant()),
            of(instant()),
            reference(GROUPS),
            reference(ORGS),
        ),
        proptest::collection::btree_map(s(KEYS), s(CUSTOM_VALUES), 0..5),
    )
        .prop_map(
            |(
                (id, name, mobile, phone, email),
                (created_at, updated_at, group, organization),
                custom,
            )| Contact {
                id,
                name,
                mobile,
                phone,
                email,
                created_at,
                updated_at,
                group,
                organization,
                custom,
            },
        )
}

fn chat() -> impl Strategy<Value = Chat> {
    use proptest::option::of;
    let situation = select(&[Situation::Auto, Situation::WaitForChat, Situation::InChat][..]);
    (
        (
            1i64..600,
            situation,
            reference(DEPARTMENTS),
            reference(CHANNELS),
        ),
        (reference(WORKFLOWS), reference(STEPS)),
        (of(instant()), of(instant()), of(instant())),
    )
        .prop_map(
            |(
                (id, situation, department, channel),
                (workflow, workflow_step),
                (created_at, updated_at, last),
            )| Chat {
                id,
                situation,
                department,
                channel,
                created_at,
                updated_at,
                workflow,
                workflow_step,
                last_message_at: last,
            },
        )
}

// ---- filters -----------------------------------------------------------------------------

fn cond(field: &str, op: &str, value: Option<Value>) -> Value {
    match value {
        Some(v) => json!({"field": field, "op": op, "value": v}),
        None => json!({"field": field, "op": op}),
    }
}

fn set_ops(field: &'static str) -> BoxedStrategy<Value> {
    select(&["is_set", "is_not_set"][..])
        .prop_map(move |op| cond(field, op, None))
        .boxed()
}

fn text_cond(field: &'static str, pool: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (select(&["eq", "ne", "contains", "not_contains", "starts_with"][..]), select(pool))
            .prop_map(move |(op, v)| cond(field, op, Some(json!(v)))),
        2 => (select(&["in", "not_in"][..]), proptest::collection::vec(select(pool), 1..4))
            .prop_map(move |(op, v)| cond(field, op, Some(json!(v)))),
        1 => set_ops(field),
    ]
    .boxed()
}

fn id_cond() -> BoxedStrategy<Value> {
    let value = prop_oneof![
        3 => (0i64..650).prop_map(|n| json!(n)),
        1 => (0i64..650).prop_map(|n| json!(n.to_string())),
    ];
    prop_oneof![
        3 => (select(&["eq", "ne", "gt", "gte", "lt", "lte"][..]), value)
            .prop_map(|(op, v)| cond("id", op, Some(v))),
        1 => (select(&["in", "not_in"][..]), proptest::collection::vec(0i64..650, 1..8))
            .prop_map(|(op, v)| cond("id", op, Some(json!(v)))),
    ]
    .boxed()
}

fn ref_value() -> BoxedStrategy<Value> {
    prop_oneof![
        select(REF_IDS).prop_map(|n| json!(n)),
        select(REF_NAMES).prop_map(|n| json!(n)),
    ]
    .boxed()
}

fn ref_cond(field: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (select(&["eq", "ne"][..]), ref_value()).prop_map(move |(op, v)| cond(field, op, Some(v))),
        2 => (select(&["in", "not_in"][..]), proptest::collection::vec(ref_value(), 1..4))
            .prop_map(move |(op, v)| cond(field, op, Some(json!(v)))),
        1 => set_ops(field),
    ]
    .boxed()
}

fn time_value() -> BoxedStrategy<String> {
    prop_oneof![s(DATES), s(LOCALS), s(INSTANTS)].boxed()
}

fn time_ops(field: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![
        s(DATES).prop_map(move |d| cond(field, "on", Some(json!(d)))),
        (select(&["before", "after"][..]), time_value()).prop_map(move |(op, v)| cond(
            field,
            op,
            Some(json!(v))
        )),
        (time_value(), time_value()).prop_map(move |(a, b)| cond(
            field,
            "between",
            Some(json!([a, b]))
        )),
        (
            select(&["within_last", "more_than_ago"][..]),
            select(RELATIVE)
        )
            .prop_map(move |(op, v)| cond(field, op, Some(json!(v)))),
    ]
    .boxed()
}

fn time_cond(field: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![4 => time_ops(field), 1 => set_ops(field)].boxed()
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => select(NUMBERS).prop_map(|n| json!(n)),
        1 => select(&[120i64, 0, 7, -3][..]).prop_map(|n| json!(n)),
        1 => select(&["12.5", "-3.5", "120"][..]).prop_map(|n| json!(n)),
    ]
    .boxed()
}

fn custom_cond() -> BoxedStrategy<Value> {
    select(CUSTOM_FIELDS)
        .prop_flat_map(|field| {
            let numeric_eq = select(&["eq", "ne"][..]).prop_flat_map(move |op| {
                prop_oneof![
                    select(NUMBERS).prop_map(|n| json!(n)),
                    select(&[120i64, 0, 7][..]).prop_map(|n| json!(n)),
                ]
                .prop_map(move |v| cond(field, op, Some(v)))
            });
            prop_oneof![
                3 => text_cond(field, CUSTOM_TEXT_VALUES),
                1 => numeric_eq,
                2 => (select(&["gt", "gte", "lt", "lte"][..]), number())
                    .prop_map(move |(op, v)| cond(field, op, Some(v))),
                1 => (select(NUMBERS), select(NUMBERS))
                    .prop_map(move |(a, b)| cond(field, "between", Some(json!([a, b])))),
                3 => time_ops(field),
                1 => (select(&["in", "not_in"][..]), proptest::collection::vec(select(&[120i64, 7][..]), 1..3))
                    .prop_map(move |(op, v)| cond(field, op, Some(json!(v)))),
            ]
        })
        .boxed()
}

fn contact_condition() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => id_cond(),
        1 => text_cond("name", TEXT_VALUES),
        1 => text_cond("email", TEXT_VALUES),
        1 => text_cond("mobile", PHONE_VALUES),
        1 => text_cond("phone", PHONE_VALUES),
        1 => time_cond("created_at"),
        1 => time_cond("updated_at"),
        1 => ref_cond("group"),
        1 => ref_cond("organization"),
        3 => custom_cond(),
    ]
    .boxed()
}

fn chat_condition() -> BoxedStrategy<Value> {
    let situation = select(&["auto", "wait_for_chat", "in_chat"][..]);
    prop_oneof![
        1 => id_cond(),
        1 => ref_cond("department"),
        1 => ref_cond("channel"),
        1 => ref_cond("workflow"),
        1 => ref_cond("workflow_step"),
        1 => (select(&["eq", "ne"][..]), situation.clone()).prop_map(|(op, v)| cond("situation", op, Some(json!(v)))),
        1 => (select(&["in", "not_in"][..]), proptest::collection::vec(situation, 1..3))
            .prop_map(|(op, v)| cond("situation", op, Some(json!(v)))),
        1 => time_cond("created_at"),
        1 => time_cond("updated_at"),
        2 => time_cond("last_message_at"),
    ]
    .boxed()
}

/// Random groups of conditions, nested up to three levels.
fn tree(leaf: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"all": v})),
            proptest::collection::vec(inner, 1..4).prop_map(|v| json!({"any": v})),
        ]
    })
    .boxed()
}

/// Puts the bounds of every `between` in order (validation rejects reversed bounds).
fn order_betweens(v: &mut Value, tz: Tz) {
    match v {
        Value::Object(map) => {
            if map.get("op") == Some(&json!("between")) {
                if let Some(Value::Array(b)) = map.get_mut("value") {
                    let reversed = match (&b[0], &b[1]) {
                        (Value::Number(x), Value::Number(y)) => x.as_f64() > y.as_f64(),
                        (Value::String(x), Value::String(y)) => {
                            let (x, y) =
                                (TimeValue::parse(x).unwrap(), TimeValue::parse(y).unwrap());
                            x.start(tz) > y.end(tz)
                        }
                        _ => false,
                    };
                    if reversed {
                        b.swap(0, 1);
                    }
                }
            }
            map.values_mut().for_each(|x| order_betweens(x, tz));
        }
        Value::Array(items) => items.iter_mut().for_each(|x| order_betweens(x, tz)),
        _ => {}
    }
}

// ---- the test ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Case {
    tz: Tz,
    now: DateTime<Utc>,
    contacts: Vec<Contact>,
    chats: Vec<Chat>,
    contact_filters: Vec<Value>,
    chat_filters: Vec<Value>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        select(&[NY, SP][..]),
        select(NOWS).prop_map(utc),
        proptest::collection::vec(contact(), 100..300),
        proptest::collection::vec(chat(), 60..200),
        proptest::collection::vec(tree(contact_condition()), 8),
        proptest::collection::vec(tree(chat_condition()), 8),
    )
        .prop_map(
            |(tz, now, contacts, chats, mut contact_filters, mut chat_filters)| {
                for f in contact_filters.iter_mut().chain(chat_filters.iter_mut()) {
                    order_betweens(f, tz);
                }
                Case {
                    tz,
                    now,
                    contacts: dedup(contacts, |c| c.id),
                    chats: dedup(chats, |c| c.id),
                    contact_filters,
                    chat_filters,
                }
            },
        )
}

fn dedup<T>(records: Vec<T>, id: impl Fn(&T) -> i64) -> Vec<T> {
    let mut by_id = BTreeMap::new();
    for r in records {
        by_id.entry(id(&r)).or_insert(r);
    }
    by_id.into_values().collect()
}

/// What one case compared: record evaluations, and filters that selected some but not all.
#[derive(Default)]
struct Compared {
    evaluations: usize,
    proper: usize,
}

async fn check_case(pool: &PgPool, n: usize, case: &Case) -> Result<Compared, TestCaseError> {
    let acc = account(pool, &format!("diff-{n}")).await;
    mirror::upsert_contacts(pool, acc, &case.contacts, Utc::now())
        .await
        .map_err(|e| TestCaseError::fail(format!("upsert contacts: {e}")))?;
    let mirrored: Vec<MirrorChat> = case.chats.iter().cloned().map(MirrorChat::from).collect();
    mirror::upsert_chats(pool, acc, &mirrored, Utc::now())
        .await
        .map_err(|e| TestCaseError::fail(format!("upsert chats: {e}")))?;
    let contacts: Vec<Record> = case.contacts.iter().cloned().map(Record::Contact).collect();
    let chats: Vec<Record> = case.chats.iter().cloned().map(Record::Chat).collect();

    let mut compared = Compared::default();
    for (table, filters, records) in [
        (Table::Contacts, &case.contact_filters, &contacts),
        (Table::Chats, &case.chat_filters, &chats),
    ] {
        for json in filters {
            let filter: Filter = try_filter(table, json, case.tz).map_err(|p| {
                TestCaseError::fail(format!("generated an invalid filter {json}: {p}"))
            })?;
            let q = SegmentQuery::new(table, Some(&filter), case.tz, case.now);
            let got = segment::page(pool, acc, &q, None, i64::MAX)
                .await
                .map_err(|e| TestCaseError::fail(format!("{e}\n{}", q.explain().0)))?;
            let expected = eval_ids(records, Some(&filter), case.tz, case.now);
            if got != expected {
                let differ: Vec<&Record> = records
                    .iter()
                    .filter(|r| got.contains(&r.id()) != expected.contains(&r.id()))
                    .collect();
                return Err(TestCaseError::fail(format!(
                    "{table} filter {json}\n tz {} now {}\n sql:  {got:?}\n eval: {expected:?}\n \
                     records that differ: {differ:#?}\n{}",
                    case.tz,
                    case.now,
                    q.explain().0
                )));
            }
            compared.evaluations += records.len();
            if !expected.is_empty() && expected.len() < records.len() {
                compared.proper += 1;
            }
        }
    }
    // The account's own rows only, and the count agrees with the pages.
    let all = SegmentQuery::new(Table::Contacts, None, case.tz, case.now);
    let n_rows = segment::count(pool, acc, &all)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(n_rows, case.contacts.len() as i64);
    Ok(compared)
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn postgres_agrees_with_the_evaluator(pool: PgPool) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let handle = tokio::runtime::Handle::current();
    let started = Instant::now();
    // proptest is synchronous: run it on a blocking thread that drives the queries on this
    // test's runtime (which keeps running while this task awaits the thread).
    let outcome = tokio::task::spawn_blocking(move || {
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let (n, filters, evaluations, proper) =
            (Cell::new(0), Cell::new(0), Cell::new(0), Cell::new(0));
        let result = runner.run(&case(), |case| {
            n.set(n.get() + 1);
            filters.set(filters.get() + case.contact_filters.len() + case.chat_filters.len());
            let compared = handle.block_on(check_case(&pool, n.get(), &case))?;
            evaluations.set(evaluations.get() + compared.evaluations);
            proper.set(proper.get() + compared.proper);
            Ok(())
        });
        (
            result,
            n.get(),
            filters.get(),
            evaluations.get(),
            proper.get(),
        )
    })
    .await
    .expect("the proptest thread panicked");
    let (result, n, filters, evaluations, proper) = outcome;
    eprintln!(
        "differential: {n} runs, {filters} filters ({proper} selecting some but not all), \
         {evaluations} record evaluations in {:.1?}",
        started.elapsed()
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!(
            "Postgres and the evaluator disagree: {reason}\nminimal case: tz {} now {}, {} contacts, {} chats",
            case.tz,
            case.now,
            case.contacts.len(),
            case.chats.len()
        ),
        Err(e) => panic!("{e}"),
    }
}

// ---- the sweep ---------------------------------------------------------------------------

/// Every instant the data sits at, in order.
fn all_instants() -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut bases: Vec<DateTime<Utc>> = BASES.iter().map(|b| utc(b)).collect();
    for n in NOWS {
        let now = utc(n);
        let floor = now - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos() % 1000));
        for r in RELATIVE {
            bases.push(floor - tarefas_core::time::parse_relative(r).unwrap());
        }
    }
    for b in bases {
        for d in DELTAS_US {
            out.push(b + Duration::microseconds(*d));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn sweep_data() -> (Vec<Contact>, Vec<Chat>) {
    let instants = all_instants();
    let n = instants.len().max(CUSTOM_VALUES.len());
    let pick = |pool: &[(i64, Option<&str>)], i: usize| {
        let (id, name) = pool[i % (pool.len() + 1)..].first().copied()?;
        Some(Reference {
            id,
            name: name.map(str::to_string),
        })
    };
    let contacts = (0..n)
        .map(|i| Contact {
            id: i as i64 + 1,
            name: Some(NAMES[i % NAMES.len()].to_string()),
            mobile: Some(PHONES[i % PHONES.len()].to_string()),
            email: None,
            phone: None,
            created_at: (i % 13 != 12).then(|| instants[i % instants.len()]),
            updated_at: None,
            group: pick(GROUPS, i),
            organization: None,
            custom: BTreeMap::from([(
                "v".to_string(),
                CUSTOM_VALUES[i % CUSTOM_VALUES.len()].to_string(),
            )]),
        })
        .collect();
    let chats = (0..n)
        .map(|i| Chat {
            id: i as i64 + 1,
            situation: [Situation::Auto, Situation::WaitForChat, Situation::InChat][i % 3],
            department: pick(DEPARTMENTS, i),
            channel: pick(CHANNELS, i),
            created_at: None,
            updated_at: None,
            workflow: pick(WORKFLOWS, i),
            workflow_step: pick(STEPS, i),
            last_message_at: (i % 11 != 10).then(|| instants[(i * 7) % instants.len()]),
        })
        .collect();
    (contacts, chats)
}

/// Every condition on the time fields that does not depend on the run start.
fn absolute_time_conditions(field: &str, tz: Tz) -> Vec<Value> {
    let values: Vec<&str> = DATES
        .iter()
        .chain(LOCALS)
        .chain(INSTANTS)
        .copied()
        .collect();
    let mut out: Vec<Value> = DATES
        .iter()
        .map(|d| cond(field, "on", Some(json!(d))))
        .collect();
    for v in &values {
        out.push(cond(field, "before", Some(json!(v))));
        out.push(cond(field, "after", Some(json!(v))));
    }
    for (i, a) in values.iter().enumerate() {
        for b in values.iter().skip(i).step_by(3) {
            let mut c = cond(field, "between", Some(json!([a, b])));
            order_betweens(&mut c, tz);
            out.push(c);
        }
    }
    out.push(cond(field, "is_set", None));
    out.push(cond(field, "is_not_set", None));
    out
}

fn relative_conditions(field: &str) -> Vec<Value> {
    RELATIVE
        .iter()
        .flat_map(|r| {
            [
                cond(field, "within_last", Some(json!(r))),
                cond(field, "more_than_ago", Some(json!(r))),
            ]
        })
        .collect()
}

fn absolute_contact_conditions(tz: Tz) -> Vec<Value> {
    let mut out = absolute_time_conditions("created_at", tz);
    out.extend(absolute_time_conditions("custom.v", tz));
    for op in ["eq", "ne", "contains", "not_contains", "starts_with"] {
        out.extend(TEXT_VALUES.iter().map(|v| cond("name", op, Some(json!(v)))));
        out.extend(
            PHONE_VALUES
                .iter()
                .map(|v| cond("mobile", op, Some(json!(v)))),
        );
        out.extend(
            CUSTOM_TEXT_VALUES
                .iter()
                .map(|v| cond("custom.v", op, Some(json!(v)))),
        );
    }
    for op in ["in", "not_in"] {
        out.push(cond("name", op, Some(json!(TEXT_VALUES))));
        out.push(cond("custom.v", op, Some(json!(["gold", "120", "%"]))));
        out.push(cond("group", op, Some(json!(REF_NAMES))));
        out.push(cond("group", op, Some(json!([1, 8, "vip"]))));
    }
    for op in ["eq", "ne", "gt", "gte", "lt", "lte"] {
        out.extend(NUMBERS.iter().map(|n| cond("custom.v", op, Some(json!(n)))));
    }
    for a in NUMBERS {
        for b in NUMBERS.iter().filter(|b| *b >= a) {
            out.push(cond("custom.v", "between", Some(json!([a, b]))));
        }
    }
    for op in ["eq", "ne"] {
        out.extend(REF_IDS.iter().map(|v| cond("group", op, Some(json!(v)))));
        out.extend(REF_NAMES.iter().map(|v| cond("group", op, Some(json!(v)))));
    }
    for field in ["name", "mobile", "group", "custom.v"] {
        out.push(cond(field, "is_set", None));
        out.push(cond(field, "is_not_set", None));
    }
    out
}

fn absolute_chat_conditions(tz: Tz) -> Vec<Value> {
    let mut out = absolute_time_conditions("last_message_at", tz);
    for field in ["department", "channel", "workflow", "workflow_step"] {
        for op in ["eq", "ne"] {
            out.extend(REF_IDS.iter().map(|v| cond(field, op, Some(json!(v)))));
            out.extend(REF_NAMES.iter().map(|v| cond(field, op, Some(json!(v)))));
        }
        out.push(cond(
            field,
            "not_in",
            Some(json!([3, "funil", "whatsapp vendas"])),
        ));
        out.push(cond(field, "is_set", None));
        out.push(cond(field, "is_not_set", None));
    }
    for op in ["eq", "ne"] {
        for s in ["auto", "wait_for_chat", "in_chat"] {
            out.push(cond("situation", op, Some(json!(s))));
        }
    }
    out
}

/// Every single condition over a data set that holds every value of the pools, at every
/// zone and run start: the edges the random test may take long to hit, hit each run.
#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn every_condition_on_every_edge(pool: PgPool) {
    let started = Instant::now();
    let acc = account(&pool, "sweep").await;
    let (contacts, chats) = sweep_data();
    mirror::upsert_contacts(&pool, acc, &contacts, Utc::now())
        .await
        .unwrap();
    let mirrored: Vec<MirrorChat> = chats.iter().cloned().map(MirrorChat::from).collect();
    mirror::upsert_chats(&pool, acc, &mirrored, Utc::now())
        .await
        .unwrap();
    let contacts: Vec<Record> = contacts.into_iter().map(Record::Contact).collect();
    let chats: Vec<Record> = chats.into_iter().map(Record::Chat).collect();

    let mut failures = Vec::new();
    let mut queries = 0;
    for tz in [NY, SP] {
        for (i, now) in NOWS.iter().map(|n| utc(n)).enumerate() {
            let mut contact_conds = relative_conditions("created_at");
            contact_conds.extend(relative_conditions("custom.v"));
            let mut chat_conds = relative_conditions("last_message_at");
            if i == 0 {
                contact_conds.extend(absolute_contact_conditions(tz));
                chat_conds.extend(absolute_chat_conditions(tz));
            }
            for (table, conds, records) in [
                (Table::Contacts, &contact_conds, &contacts),
                (Table::Chats, &chat_conds, &chats),
            ] {
                for c in conds {
                    let f = try_filter(table, c, tz).unwrap_or_else(|p| panic!("{c}: {p}"));
                    let q = SegmentQuery::new(table, Some(&f), tz, now);
                    let got = segment::page(&pool, acc, &q, None, i64::MAX).await.unwrap();
                    queries += 1;
                    let expected = eval_ids(records, Some(&f), tz, now);
                    if got != expected {
                        let only_sql: Vec<i64> = got
                            .iter()
                            .filter(|x| !expected.contains(x))
                            .copied()
                            .collect();
                        let only_eval: Vec<i64> = expected
                            .iter()
                            .filter(|x| !got.contains(x))
                            .copied()
                            .collect();
                        failures.push(format!("{tz} {now} {table} {c}: only sql {only_sql:?}, only eval {only_eval:?}"));
                    }
                }
            }
        }
    }
    eprintln!(
        "sweep: {queries} conditions over {} records in {:.1?}",
        contacts.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
