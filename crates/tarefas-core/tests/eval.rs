//! The in-memory evaluator: every operator on every kind of field, unset fields under the
//! negated operators, phones with punctuation, custom fields that don't parse, relative
//! dates, and E+ / OU+ groups.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tarefas_core::eval::{matches, Chat, Contact, Record, Reference};
use tarefas_core::segment::{parse_filter, Filter, Situation, Table};
use tarefas_core::Problems;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const SP: Tz = chrono_tz::America::Sao_Paulo;
/// The run's start, for relative dates.
fn now() -> DateTime<Utc> {
    utc("2026-12-31T15:00:00Z")
}

fn filter(table: Table, yaml: &str) -> Filter {
    let v: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
    let mut p = Problems::default();
    let f = parse_filter(&v, table, SP, "filter", &mut p);
    assert!(p.is_empty(), "{yaml}: {p}");
    f.unwrap()
}

fn ana() -> Record {
    Record::Contact(Contact {
        id: 10,
        name: Some("Ana Luíza Souza".into()),
        mobile: Some("5511999990000".into()),
        phone: None,
        email: Some("Ana@Exemplo.com.br".into()),
        created_at: Some(utc("2026-12-31T02:30:00Z")), // 30/12 23:30 in São Paulo
        updated_at: Some(utc("2026-12-30T15:00:00Z")),
        group: Some(Reference {
            id: 7,
            name: Some("VIP".into()),
        }),
        organization: Some(Reference {
            id: 9,
            name: Some("Rotik".into()),
        }),
        custom: BTreeMap::from([
            ("plano".into(), "Gold".into()),
            ("pontos".into(), "120".into()),
            ("saldo".into(), "-3.5".into()),
            ("vencimento".into(), "2026-12-10".into()),
            ("visita".into(), "2026-12-31T10:00:00-03:00".into()),
            ("lixo".into(), "12 pontos".into()),
            ("vazio".into(), "".into()),
        ]),
    })
}

fn bare() -> Record {
    Record::Contact(Contact {
        id: 11,
        ..Contact::default()
    })
}

fn chat(situation: Situation) -> Record {
    Record::Chat(Chat {
        id: 555,
        situation,
        department: Some(Reference {
            id: 3,
            name: Some("Suporte".into()),
        }),
        channel: Some(Reference {
            id: 4,
            name: Some("WhatsApp Vendas".into()),
        }),
        created_at: Some(utc("2026-12-31T12:00:00Z")),
        updated_at: None,
        workflow: Some(Reference { id: 2, name: None }),
        workflow_step: Some(Reference { id: 8, name: None }),
        last_message_at: Some(utc("2026-12-31T14:40:00Z")),
    })
}

#[track_caller]
fn check(table: Table, yaml: &str, record: &Record, expected: bool) {
    let f = filter(table, yaml);
    assert_eq!(
        matches(Some(&f), record, now(), SP),
        expected,
        "{yaml} on record {}",
        record.id()
    );
}

fn yes(yaml: &str) {
    check(Table::Contacts, yaml, &ana(), true)
}
fn no(yaml: &str) {
    check(Table::Contacts, yaml, &ana(), false)
}
/// Every operator of the list must not match a record where the field is unset.
fn never_on_bare(yaml: &str) {
    check(Table::Contacts, yaml, &bare(), false)
}

#[test]
fn no_filter_matches_everything() {
    assert!(matches(None, &ana(), now(), SP));
    assert!(matches(None, &bare(), now(), SP));
}

#[test]
fn text_operators_are_case_insensitive() {
    yes("{field: name, op: eq, value: ana luíza souza}");
    yes("{field: name, op: eq, value: ANA LUÍZA SOUZA}");
    no("{field: name, op: eq, value: ana}");
    yes("{field: name, op: ne, value: ana}");
    no("{field: name, op: ne, value: Ana Luíza Souza}");
    yes("{field: name, op: contains, value: LUÍZA}");
    no("{field: name, op: contains, value: luiza}");
    yes("{field: name, op: not_contains, value: pedro}");
    no("{field: name, op: not_contains, value: souza}");
    yes("{field: email, op: starts_with, value: ana@}");
    no("{field: email, op: starts_with, value: exemplo}");
    yes("{field: email, op: in, value: [x@y.z, ana@exemplo.com.br]}");
    no("{field: email, op: not_in, value: [x@y.z, ana@exemplo.com.br]}");
    yes("{field: email, op: not_in, value: [x@y.z]}");
    yes("{field: email, op: is_set}");
    no("{field: email, op: is_not_set}");
}

#[test]
fn negated_operators_never_match_an_unset_field() {
    for op in [
        "{field: name, op: ne, value: x}",
        "{field: name, op: not_contains, value: x}",
        "{field: name, op: not_in, value: [x]}",
        "{field: phone, op: ne, value: '1'}",
        "{field: group, op: ne, value: 7}",
        "{field: organization, op: not_in, value: [Rotik]}",
        "{field: custom.plano, op: ne, value: gold}",
        "{field: custom.plano, op: not_contains, value: x}",
        "{field: custom.pontos, op: ne, value: 5}",
        "{field: name, op: eq, value: x}",
        "{field: name, op: is_set}",
        "{field: created_at, op: is_set}",
        "{field: created_at, op: before, value: 2100-01-01}",
    ] {
        never_on_bare(op);
    }
    check(
        Table::Contacts,
        "{field: name, op: is_not_set}",
        &bare(),
        true,
    );
    check(
        Table::Contacts,
        "{field: group, op: is_not_set}",
        &bare(),
        true,
    );
    check(
        Table::Contacts,
        "{field: custom.plano, op: is_not_set}",
        &bare(),
        true,
    );
    check(
        Table::Contacts,
        "{field: updated_at, op: is_not_set}",
        &bare(),
        true,
    );
    // An empty custom value counts as unset.
    yes("{field: custom.vazio, op: is_not_set}");
    no("{field: custom.vazio, op: ne, value: x}");
}

#[test]
fn phones_ignore_punctuation() {
    yes("{field: mobile, op: eq, value: '+55 (11) 99999-0000'}");
    yes("{field: mobile, op: starts_with, value: '+55 11'}");
    yes("{field: mobile, op: contains, value: '9999-0000'}");
    no("{field: mobile, op: contains, value: '8888'}");
    yes("{field: mobile, op: in, value: ['11 1111-1111', '55 11 99999 0000']}");
    yes("{field: mobile, op: not_contains, value: 8888}");
    no("{field: phone, op: is_set}");
    yes("{field: phone, op: is_not_set}");
}

#[test]
fn id_operators() {
    yes("{field: id, op: eq, value: 10}");
    yes("{field: id, op: eq, value: '10'}");
    no("{field: id, op: ne, value: 10}");
    yes("{field: id, op: gt, value: 9}");
    no("{field: id, op: gt, value: 10}");
    yes("{field: id, op: gte, value: 10}");
    yes("{field: id, op: lt, value: 11}");
    no("{field: id, op: lt, value: 10}");
    yes("{field: id, op: lte, value: 10}");
    yes("{field: id, op: in, value: [1, 10]}");
    no("{field: id, op: not_in, value: [1, 10]}");
}

#[test]
fn reference_operators_match_id_or_name() {
    yes("{field: organization, op: eq, value: Rotik}");
    yes("{field: organization, op: eq, value: rOtIk}");
    yes("{field: organization, op: eq, value: 9}");
    no("{field: organization, op: eq, value: 7}");
    no("{field: organization, op: eq, value: '9'}"); // a string names, it does not number
    yes("{field: group, op: ne, value: Varejo}");
    no("{field: group, op: ne, value: vip}");
    yes("{field: group, op: in, value: [1, 7]}");
    yes("{field: group, op: in, value: [Atacado, vip]}");
    no("{field: group, op: not_in, value: [7]}");
    yes("{field: group, op: is_set}");
    let c = chat(Situation::InChat);
    check(
        Table::Chats,
        "{field: department, op: eq, value: suporte}",
        &c,
        true,
    );
    check(Table::Chats, "{field: channel, op: eq, value: 4}", &c, true);
    check(
        Table::Chats,
        "{field: workflow, op: eq, value: 2}",
        &c,
        true,
    );
    check(
        Table::Chats,
        "{field: workflow_step, op: eq, value: 8}",
        &c,
        true,
    );
    check(
        Table::Chats,
        "{field: workflow_step, op: eq, value: oito}",
        &c,
        false,
    );
    check(
        Table::Chats,
        "{field: workflow_step, op: ne, value: 9}",
        &c,
        true,
    );
}

#[test]
fn situation_operators() {
    let c = chat(Situation::WaitForChat);
    check(
        Table::Chats,
        "{field: situation, op: eq, value: wait_for_chat}",
        &c,
        true,
    );
    check(
        Table::Chats,
        "{field: situation, op: eq, value: in_chat}",
        &c,
        false,
    );
    check(
        Table::Chats,
        "{field: situation, op: ne, value: in_chat}",
        &c,
        true,
    );
    check(
        Table::Chats,
        "{field: situation, op: in, value: [auto, wait_for_chat]}",
        &c,
        true,
    );
    check(
        Table::Chats,
        "{field: situation, op: not_in, value: [auto, wait_for_chat]}",
        &c,
        false,
    );
}

#[test]
fn dates_are_whole_days_in_the_task_zone() {
    // created_at is 2026-12-31T02:30Z, i.e. 30/12 23:30 in São Paulo.
    yes("{field: created_at, op: on, value: 2026-12-30}");
    no("{field: created_at, op: on, value: 2026-12-31}");
    yes("{field: created_at, op: before, value: 2026-12-31}");
    no("{field: created_at, op: before, value: 2026-12-30}");
    yes("{field: created_at, op: after, value: 2026-12-29}");
    no("{field: created_at, op: after, value: 2026-12-30}"); // after a date = from the next day on
    yes("{field: created_at, op: after, value: '2026-12-30T23:00'}"); // local date-time
    no("{field: created_at, op: after, value: '2026-12-30T23:30'}"); // strictly after
    yes("{field: created_at, op: before, value: '2026-12-31T02:31:00Z'}");
    yes("{field: created_at, op: between, value: [2026-12-30, 2026-12-30]}");
    yes("{field: created_at, op: between, value: [2026-12-01, '2026-12-30T23:30']}"); // inclusive
    no("{field: created_at, op: between, value: [2026-12-31, 2027-01-31]}");
}

#[test]
fn relative_dates_count_back_from_the_run_start() {
    // now = 2026-12-31T15:00Z; updated_at = 2026-12-30T15:00Z (exactly 24h before).
    yes("{field: updated_at, op: within_last, value: 1d}");
    yes("{field: updated_at, op: within_last, value: 24h}");
    no("{field: updated_at, op: within_last, value: 23h}");
    yes("{field: updated_at, op: more_than_ago, value: 23h}");
    no("{field: updated_at, op: more_than_ago, value: 1d}"); // exactly 1d ago is within it
    no("{field: updated_at, op: more_than_ago, value: 2w}");
    let c = chat(Situation::Auto);
    check(
        Table::Chats,
        "{field: last_message_at, op: within_last, value: 30m}",
        &c,
        true,
    );
    check(
        Table::Chats,
        "{field: last_message_at, op: within_last, value: 10m}",
        &c,
        false,
    );
    // A time in the future is not "within the last" anything.
    check(
        Table::Chats,
        "{field: last_message_at, op: within_last, value: 1d}",
        &Record::Chat(Chat {
            last_message_at: Some(utc("2027-01-01T00:00:00Z")),
            ..match chat(Situation::Auto) {
                Record::Chat(c) => c,
                _ => unreachable!(),
            }
        }),
        false,
    );
}

#[test]
fn custom_fields_as_text_number_and_date() {
    yes("{field: custom.plano, op: eq, value: gold}");
    yes("{field: custom.plano, op: in, value: [silver, GOLD]}");
    yes("{field: custom.plano, op: starts_with, value: go}");
    yes("{field: custom.plano, op: is_set}");
    no("{field: custom.outro, op: is_set}");
    yes("{field: custom.pontos, op: gt, value: 100}");
    yes("{field: custom.pontos, op: eq, value: 120}");
    yes("{field: custom.pontos, op: eq, value: 120.0}");
    yes("{field: custom.pontos, op: eq, value: '120'}"); // a string value compares as text
    no("{field: custom.pontos, op: eq, value: '120.0'}");
    yes("{field: custom.pontos, op: between, value: [120, 121]}");
    no("{field: custom.pontos, op: lt, value: 120}");
    yes("{field: custom.saldo, op: lt, value: -3}");
    yes("{field: custom.vencimento, op: on, value: 2026-12-10}");
    yes("{field: custom.vencimento, op: before, value: 2026-12-11}");
    yes("{field: custom.vencimento, op: between, value: [2026-12-01, 2026-12-10]}");
    yes("{field: custom.vencimento, op: more_than_ago, value: 20d}");
    yes("{field: custom.visita, op: on, value: 2026-12-31}");
    yes("{field: custom.visita, op: within_last, value: 6h}");
}

#[test]
fn custom_values_that_do_not_parse_never_match_numeric_or_date_operators() {
    for op in ["gt", "gte", "lt", "lte", "eq", "ne"] {
        no(&format!("{{field: custom.lixo, op: {op}, value: 12}}"));
        no(&format!("{{field: custom.plano, op: {op}, value: 0}}"));
    }
    no("{field: custom.lixo, op: between, value: [0, 1000]}");
    for op in ["on", "before", "after"] {
        no(&format!(
            "{{field: custom.plano, op: {op}, value: 2026-12-10}}"
        ));
        no(&format!(
            "{{field: custom.pontos, op: {op}, value: 2026-12-10}}"
        ));
    }
    no("{field: custom.lixo, op: within_last, value: 100w}");
    no("{field: custom.lixo, op: more_than_ago, value: 1m}");
    // As text they still compare.
    yes("{field: custom.lixo, op: contains, value: pontos}");
}

#[test]
fn groups_combine_with_e_plus_and_ou_plus() {
    // The seed article: "created on a date AND organization Rotik".
    yes("{all: [{field: created_at, op: on, value: 2026-12-30}, {field: organization, op: eq, value: Rotik}]}");
    no("{all: [{field: created_at, op: on, value: 2026-12-31}, {field: organization, op: eq, value: Rotik}]}");
    // "created on 31/12 OR ..." with nesting.
    yes("{any: [{field: created_at, op: on, value: 2026-12-31}, {field: organization, op: eq, value: Rotik}]}");
    no("{any: [{field: created_at, op: on, value: 2026-12-31}, {field: organization, op: eq, value: Outra}]}");
    yes("{all: [{any: [{field: id, op: eq, value: 1}, {all: [{field: id, op: eq, value: 10}, {field: name, op: contains, value: ana}]}]}]}");
    let c = chat(Situation::InChat);
    check(Table::Chats, "{any: [{field: created_at, op: on, value: 2026-12-30}, {field: department, op: eq, value: Suporte}]}", &c, true);
}

#[test]
fn case_folding_is_per_character() {
    // A final Greek sigma lower-cases like any other sigma, so prefixes and parts match.
    let c = Record::Contact(Contact {
        id: 1,
        name: Some("ΟΔΥΣΣΕΥΣ".into()),
        ..Contact::default()
    });
    check(
        Table::Contacts,
        "{field: name, op: starts_with, value: ΟΔΥΣ}",
        &c,
        true,
    );
    check(
        Table::Contacts,
        "{field: name, op: contains, value: ΕΥΣ}",
        &c,
        true,
    );
    check(
        Table::Contacts,
        "{field: name, op: not_contains, value: ΣΕΥ}",
        &c,
        false,
    );
}

#[test]
fn numeric_strings_between_compare_as_numbers() {
    yes("{field: custom.pontos, op: between, value: ['100', '200']}");
    no("{field: custom.pontos, op: between, value: ['1', '5']}");
}
