//! Task file validation: one case per rule of the contract, checking the path and message of
//! each problem, and that every problem is reported, not only the first.

use tarefas_core::action::{ChatAction, WhenInAuto, WhenInChat, WhenInQueue};
use tarefas_core::segment::{Test, TextTest};
use tarefas_core::task::{parse_task, Format};
use tarefas_core::{Action, Filter, Recurrence, Table};

const BASE_CONTACTS: &str = r#"
name: Lembrete
account: acme
table: contacts
action:
  flow: {project: 3, flow: 42, channel: "c2a7e0f4-uuid"}
"#;

/// Parses `yaml` and returns its problems as `path: message` lines (empty when valid).
fn problems(yaml: &str) -> Vec<String> {
    match parse_task(yaml, Format::Yaml) {
        Ok(_) => vec![],
        Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
    }
}

/// The contacts base task with `extra` appended.
fn contacts(extra: &str) -> String {
    format!("{BASE_CONTACTS}{extra}")
}

fn chats(extra: &str) -> String {
    format!("name: X\ntable: chats\naction:\n  chat: close\n{extra}")
}

/// Asserts that exactly one problem is reported, at `path`, containing `needle`.
#[track_caller]
fn one(yaml: &str, path: &str, needle: &str) {
    let got = problems(yaml);
    assert_eq!(got.len(), 1, "expected one problem at {path}, got {got:#?}");
    let line = &got[0];
    assert!(
        line.starts_with(&format!("{path}: ")),
        "{line:?} does not start with {path:?}"
    );
    assert!(
        line.contains(needle),
        "{line:?} does not mention {needle:?}"
    );
}

#[test]
fn the_contract_example_is_valid() {
    let yaml = r#"
name: Lembrete de vencimento
objective: Avisar clientes gold do vencimento
account: acme
time_zone: America/Sao_Paulo
recurrence:
  kind: month_day
  day: 10
  at: "09:00"
  ends_on: 2026-12-31
table: contacts
filter:
  all:
    - {field: organization, op: eq, value: Rotik}
    - any:
        - {field: created_at, op: on, value: 2026-12-31}
        - {field: custom.plano, op: eq, value: gold}
action:
  flow: {project: 3, flow: 42, channel: "c2a7…-uuid", variables: {origem: tarefa}}
  policy: {when_in_chat: skip, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}
"#;
    let task = parse_task(yaml, Format::Yaml).unwrap();
    assert_eq!(task.name, "Lembrete de vencimento");
    assert_eq!(task.account.as_deref(), Some("acme"));
    assert_eq!(task.table, Table::Contacts);
    assert!(matches!(
        task.recurrence,
        Recurrence::MonthDay { day: 10, .. }
    ));
    let Some(Filter::All(members)) = &task.filter else {
        panic!("E+ group expected")
    };
    assert_eq!(members.len(), 2);
    assert!(matches!(&members[1], Filter::Any(v) if v.len() == 2));
    let Action::RunFlow(flow) = &task.action else {
        panic!()
    };
    assert_eq!((flow.project, flow.flow), (3, 42));
    assert_eq!(flow.policy.when_in_chat, WhenInChat::Skip);
    assert_eq!(flow.policy.when_in_queue, WhenInQueue::AbortAndStart);
    assert_eq!(flow.policy.when_in_auto, WhenInAuto::RunKeepAuto);
    assert_eq!(flow.variables["origem"], "tarefa");
}

#[test]
fn json_files_are_read_too() {
    let json = r#"{"name": "J", "table": "chats", "action": {"chat": {"transfer_to_agent": {"agent": 17}}},
                   "filter": {"any": [{"field": "situation", "op": "eq", "value": "in_chat"}]}}"#;
    let task = parse_task(json, Format::Json).unwrap();
    assert_eq!(
        task.action,
        Action::Chat(ChatAction::TransferToAgent { agent: 17 })
    );
    assert_eq!(
        task.recurrence,
        Recurrence::Manual,
        "recurrence defaults to manual"
    );
    assert_eq!(
        task.time_zone.name(),
        "America/Sao_Paulo",
        "zone defaults to São Paulo"
    );
}

#[test]
fn the_contract_error_examples() {
    one(
        &contacts("filter:\n  all:\n    - {field: name, op: eq, value: a}\n    - any:\n        - {field: name, op: gt, value: 3}\n"),
        "filter.all[1].any[0].op",
        r#""gt" does not apply to text field "name""#,
    );
    one(
        "name: X\ntable: chats\naction:\n  flow: {project: 1, flow: 2, channel: abc}\n",
        "action.flow.channel",
        "not allowed on the chats table",
    );
}

#[test]
fn every_problem_is_reported() {
    let yaml = r#"
name: ""
time_zone: Mars/Olympus
recurrence: {kind: daily, at: "25:00"}
table: contacts
filter:
  all:
    - {field: nome, op: eq, value: x}
    - {field: email, op: gt, value: 3}
action:
  flow: {project: 0, flow: 42}
"#;
    let got = problems(yaml);
    let paths: Vec<&str> = got.iter().map(|l| l.split(": ").next().unwrap()).collect();
    for p in [
        "name",
        "time_zone",
        "recurrence.at",
        "action.flow.project",
        "action.flow.channel",
    ] {
        assert!(paths.contains(&p), "no problem at {p}: {got:#?}");
    }
    // The filter is checked against the table even though the zone is wrong? No: fields are
    // only checked when the zone is known, so the count stays honest.
    assert!(got.len() >= 5);
}

#[test]
fn top_level_rules() {
    one(
        "table: contacts\naction: {flow: {project: 1, flow: 2, channel: c}}\n",
        "name",
        "required",
    );
    one(
        &format!("{BASE_CONTACTS}nmae: typo\n"),
        "nmae",
        "unknown key",
    );
    one(
        &contacts("").replace("name: Lembrete", &format!("name: {}", "x".repeat(121))),
        "name",
        "at most 120",
    );
    assert!(problems(
        &contacts("").replace("name: Lembrete", &format!("name: {}", "é".repeat(120)))
    )
    .is_empty());
    one(
        &contacts("").replace("name: Lembrete", "name: '   '"),
        "name",
        "blank",
    );
    one(
        &contacts("").replace("name: Lembrete", "name: 12"),
        "name",
        "expected a string, found an integer",
    );
    one(&contacts("time_zone: Mars/Base\n"), "time_zone", "IANA");
    one(
        &contacts("").replace("table: contacts", "table: orders"),
        "table",
        "contacts or chats",
    );
    one(
        &contacts("").replace("table: contacts\n", ""),
        "table",
        "required",
    );
    one("name: X\ntable: chats\n", "action", "required");
    one(
        &contacts("").replace("account: acme", "account: 'a b'"),
        "account",
        "not an account name",
    );
    one(&contacts("version: 2\n"), "version", "version 1");
    assert!(problems(&contacts("version: 1\n")).is_empty());
    let got = problems("- a\n- b\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("a map"), "{got:?}");
    let got = problems("name: [unclosed\n");
    assert!(got[0].contains("invalid YAML"), "{got:?}");
    assert!(problems("").iter().any(|l| l.contains("empty")));
}

#[test]
fn recurrence_rules() {
    let r = |rec: &str| contacts(&format!("recurrence: {rec}\n"));
    one(
        &r("{kind: hourly}"),
        "recurrence.kind",
        "unknown recurrence kind",
    );
    one(&r("{at: '09:00'}"), "recurrence.kind", "required");
    one(
        &r("{kind: every_minutes, n: 0}"),
        "recurrence.n",
        "between 1 and 1440",
    );
    one(
        &r("{kind: every_minutes, n: 1441}"),
        "recurrence.n",
        "between 1 and 1440",
    );
    one(
        &r("{kind: every_hours, n: 169}"),
        "recurrence.n",
        "between 1 and 168",
    );
    one(
        &r("{kind: every_hours, n: 1.5}"),
        "recurrence.n",
        "expected an integer",
    );
    one(&r("{kind: every_hours}"), "recurrence.n", "required");
    one(
        &r("{kind: every_hours, n: 2, starts_at: tomorrow}"),
        "recurrence.starts_at",
        "local date-time",
    );
    one(
        &r("{kind: every_hours, n: 2, starts_at: '2026-12-10T08:00', ends_on: 2026-12-09}"),
        "recurrence.ends_on",
        "before starts_at",
    );
    one(&r("{kind: daily}"), "recurrence.at", "required");
    one(&r("{kind: daily, at: '9h'}"), "recurrence.at", "HH:MM");
    one(
        &r("{kind: daily, at: 900}"),
        "recurrence.at",
        "expected a time of day",
    );
    one(
        &r("{kind: daily, at: '09:00', day: 3}"),
        "recurrence.day",
        "unknown key",
    );
    one(
        &r("{kind: weekdays, days: [], at: '09:00'}"),
        "recurrence.days",
        "at least one day",
    );
    one(
        &r("{kind: weekdays, days: [mon, funday], at: '09:00'}"),
        "recurrence.days[1]",
        "not a day",
    );
    one(
        &r("{kind: month_day, day: 32, at: '09:00'}"),
        "recurrence.day",
        "between 1 and 31",
    );
    one(
        &r("{kind: month_day, day: 0, at: '09:00'}"),
        "recurrence.day",
        "between 1 and 31",
    );
    one(
        &r("{kind: month_day, day: 10, at: '09:00', ends_on: 2026-02-30}"),
        "recurrence.ends_on",
        "not a date",
    );
    one(
        &r("{kind: cron, expr: '* * *'}"),
        "recurrence.expr",
        "5 or 6 fields",
    );
    one(
        &r("{kind: cron, expr: '61 * * * *'}"),
        "recurrence.expr",
        "not a valid cron",
    );
    one(
        &r("{kind: manual, ends_on: 2026-12-31}"),
        "recurrence.ends_on",
        "unknown key",
    );
    assert!(problems(&r("{kind: weekdays, days: [MON, fri, mon], at: '7:05'}")).is_empty());
    assert!(problems(&r("{kind: cron, expr: '0 9 * * 1-5', ends_on: 2027-01-01}")).is_empty());
}

#[test]
fn filter_structure_rules() {
    let f = |filter: &str| contacts(&format!("filter: {filter}\n"));
    one(&f("{all: []}"), "filter.all", "empty group");
    one(&f("{any: [{all: []}]}"), "filter.any[0].all", "empty group");
    one(
        &f("{all: [{field: name, op: is_set}], any: [{field: name, op: is_set}]}"),
        "filter",
        "not both",
    );
    one(
        &f("{all: {field: name, op: is_set}}"),
        "filter.all",
        "expected a list",
    );
    one(
        &f("{all: [{field: name, op: is_set}], extra: 1}"),
        "filter.extra",
        "unknown key",
    );
    one(&f("[]"), "filter", "expected a map");
    one(&f("{}"), "filter", "empty filter");
    one(
        &f("{field: name, op: is_set, valor: 1}"),
        "filter.valor",
        "unknown key",
    );
    one(&f("{op: is_set}"), "filter.field", "required");
    one(&f("{field: name}"), "filter.op", "required");
    // Absurd nesting is refused at a bounded depth.
    let mut deep = String::from("{field: name, op: is_set}");
    for _ in 0..40 {
        deep = format!("{{all: [{deep}]}}");
    }
    let got = problems(&f(&deep));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("nest at most"), "{got:?}");
    // Too many conditions.
    let many: Vec<String> = (0..501)
        .map(|i| format!("{{field: id, op: eq, value: {i}}}"))
        .collect();
    let got = problems(&f(&format!("{{any: [{}]}}", many.join(", "))));
    assert!(
        got.iter().any(|l| l.contains("at most 500 conditions")),
        "{got:?}"
    );
}

#[test]
fn field_rules() {
    let c = |cond: &str| contacts(&format!("filter: {cond}\n"));
    one(
        &c("{field: nome, op: eq, value: a}"),
        "filter.field",
        "unknown field \"nome\" on the contacts table",
    );
    one(
        &c("{field: department, op: eq, value: 3}"),
        "filter.field",
        "chats table",
    );
    one(
        &c("{field: custom., op: eq, value: a}"),
        "filter.field",
        "needs a key",
    );
    one(
        &c("{field: 'custom.a b', op: eq, value: a}"),
        "filter.field",
        "may hold only",
    );
    let h = |cond: &str| chats(&format!("filter: {cond}\n"));
    one(
        &h("{field: name, op: eq, value: a}"),
        "filter.field",
        "contacts table",
    );
    one(
        &h("{field: custom.plano, op: eq, value: a}"),
        "filter.field",
        "contacts table",
    );
    assert!(problems(&h("{field: workflow_step, op: eq, value: 8}")).is_empty());
}

#[test]
fn operator_rules_by_kind() {
    let c = |cond: &str| contacts(&format!("filter: {cond}\n"));
    let h = |cond: &str| chats(&format!("filter: {cond}\n"));
    one(
        &c("{field: name, op: like, value: a}"),
        "filter.op",
        "unknown operator \"like\"",
    );
    one(
        &c("{field: name, op: before, value: 2026-01-01}"),
        "filter.op",
        "text field \"name\"",
    );
    one(
        &c("{field: mobile, op: gt, value: 5}"),
        "filter.op",
        "phone field \"mobile\"",
    );
    one(
        &c("{field: id, op: contains, value: 5}"),
        "filter.op",
        "id field \"id\"",
    );
    one(&c("{field: id, op: is_set}"), "filter.op", "id field");
    one(
        &c("{field: group, op: gt, value: 5}"),
        "filter.op",
        "reference field \"group\"",
    );
    one(
        &c("{field: organization, op: contains, value: Rot}"),
        "filter.op",
        "reference field",
    );
    one(
        &c("{field: created_at, op: eq, value: 2026-01-01}"),
        "filter.op",
        "date-time field \"created_at\"",
    );
    one(
        &h("{field: situation, op: is_set}"),
        "filter.op",
        "enum field \"situation\"",
    );
    one(
        &h("{field: situation, op: contains, value: auto}"),
        "filter.op",
        "enum field",
    );
    one(
        &h("{field: last_message_at, op: gt, value: 1}"),
        "filter.op",
        "date-time field",
    );
}

#[test]
fn value_rules() {
    let c = |cond: &str| contacts(&format!("filter: {cond}\n"));
    let h = |cond: &str| chats(&format!("filter: {cond}\n"));
    one(&c("{field: name, op: eq}"), "filter.value", "required");
    one(
        &c("{field: name, op: is_set, value: x}"),
        "filter.value",
        "takes no value",
    );
    one(
        &c("{field: name, op: eq, value: ''}"),
        "filter.value",
        "is_not_set",
    );
    one(
        &c("{field: name, op: eq, value: [a]}"),
        "filter.value",
        "a single value",
    );
    one(
        &c("{field: name, op: in, value: a}"),
        "filter.value",
        "a list of values",
    );
    one(
        &c("{field: name, op: in, value: []}"),
        "filter.value",
        "at least one value",
    );
    one(
        &c("{field: name, op: in, value: [a, {x: 1}]}"),
        "filter.value[1]",
        "expected a string",
    );
    one(
        &c("{field: name, op: eq, value: true}"),
        "filter.value",
        "expected a string, found a boolean",
    );
    one(
        &c("{field: mobile, op: eq, value: '(--)'}"),
        "filter.value",
        "no digits",
    );
    one(
        &c("{field: id, op: eq, value: abc}"),
        "filter.value",
        "integer id",
    );
    one(
        &c("{field: id, op: in, value: [1, x]}"),
        "filter.value[1]",
        "integer id",
    );
    one(
        &c("{field: group, op: eq, value: 1.5}"),
        "filter.value",
        "id or a name",
    );
    one(
        &h("{field: situation, op: eq, value: finishing}"),
        "filter.value",
        "not a situation",
    );
    one(
        &h("{field: situation, op: in, value: [auto, closed]}"),
        "filter.value[1]",
        "not a situation",
    );
    one(
        &c("{field: created_at, op: on, value: '2026-12-31T10:00'}"),
        "filter.value",
        "takes a date",
    );
    one(
        &c("{field: created_at, op: on, value: 31/12/2026}"),
        "filter.value",
        "takes a date",
    );
    one(
        &c("{field: created_at, op: before, value: yesterday}"),
        "filter.value",
        "not a date",
    );
    one(
        &c("{field: created_at, op: between, value: [2026-01-01]}"),
        "filter.value",
        "exactly two",
    );
    one(
        &c("{field: created_at, op: between, value: 2026-01-01}"),
        "filter.value",
        "a list",
    );
    one(
        &c("{field: created_at, op: between, value: [2026-02-01, 2026-01-01]}"),
        "filter.value",
        "comes after",
    );
    one(
        &c("{field: created_at, op: within_last, value: 7}"),
        "filter.value",
        "expected a string",
    );
    one(
        &c("{field: created_at, op: within_last, value: 7y}"),
        "filter.value",
        "not a duration",
    );
    one(
        &c("{field: created_at, op: more_than_ago, value: 0d}"),
        "filter.value",
        "not a duration",
    );
    one(
        &c("{field: custom.pontos, op: gt, value: muito}"),
        "filter.value",
        "expected a number",
    );
    one(
        &c("{field: custom.pontos, op: between, value: [10, 5]}"),
        "filter.value",
        "greater than",
    );
    one(
        &c("{field: custom.venc, op: between, value: [2026-01-01, x]}"),
        "filter.value[1]",
        "not a date",
    );
    // Valid values of every kind.
    for ok in [
        "{field: name, op: contains, value: ana}",
        "{field: mobile, op: eq, value: '+55 (11) 99999-0000'}",
        "{field: id, op: in, value: [1, '2', 3]}",
        "{field: group, op: in, value: [7, VIP]}",
        "{field: created_at, op: between, value: [2026-01-01, '2026-01-31T12:00:00-03:00']}",
        "{field: updated_at, op: within_last, value: 30m}",
        "{field: custom.pontos, op: between, value: [1, 2.5]}",
        "{field: custom.pontos, op: eq, value: 10}",
        "{field: custom.venc, op: on, value: 2026-12-10}",
        "{field: custom.plano, op: not_in, value: [gold, 1]}",
        "{field: email, op: is_not_set}",
        "{field: email, op: is_not_set, value: null}",
    ] {
        assert_eq!(problems(&c(ok)), Vec::<String>::new(), "{ok}");
    }
}

#[test]
fn normalized_values() {
    let t = parse_task(
        &contacts("filter: {all: [{field: name, op: eq, value: JOÃO}, {field: mobile, op: starts_with, value: '+55 (11)'}]}\n"),
        Format::Yaml,
    )
    .unwrap();
    let conds = t.filter.as_ref().unwrap().conditions();
    assert_eq!(conds[0].test, Test::Text(TextTest::Eq("joão".into())));
    assert_eq!(
        conds[1].test,
        Test::Text(TextTest::StartsWith("5511".into()))
    );
}

#[test]
fn action_rules() {
    let with_action =
        |table: &str, action: &str| format!("name: X\ntable: {table}\naction: {action}\n");
    one(
        &with_action("contacts", "{flow: {project: 1, flow: 2}}"),
        "action.flow.channel",
        "required on the contacts table",
    );
    one(
        &with_action("contacts", "{chat: close}"),
        "action.chat",
        "only allowed on the chats table",
    );
    one(
        &with_action("contacts", "{chat: {transfer_to_agent: {agent: 17}}}"),
        "action.chat",
        "only allowed on the chats table",
    );
    one(
        &with_action("chats", "{flow: {project: 1, flow: 2}, chat: close}"),
        "action",
        "not both",
    );
    one(&with_action("chats", "{}"), "action", "required");
    one(
        &with_action("chats", "{flow: {project: 1}}"),
        "action.flow.flow",
        "required",
    );
    one(
        &with_action("chats", "{flow: {project: x, flow: 2}}"),
        "action.flow.project",
        "expected an integer",
    );
    one(
        &with_action(
            "chats",
            "{flow: {project: 1, flow: 2, variables: {a: [1]}}}",
        ),
        "action.flow.variables.a",
        "expected a text",
    );
    one(
        &with_action(
            "chats",
            "{flow: {project: 1, flow: 2}, policy: {when_in_chat: maybe}}",
        ),
        "action.policy.when_in_chat",
        "skip, run_remove_agent",
    );
    one(
        &with_action(
            "chats",
            "{flow: {project: 1, flow: 2}, policy: {when_in_lunch: skip}}",
        ),
        "action.policy.when_in_lunch",
        "unknown key",
    );
    one(
        &with_action("chats", "{chat: close, policy: {when_in_chat: skip}}"),
        "action.policy",
        "only to a \"flow\"",
    );
    one(
        &with_action("chats", "{chat: explode}"),
        "action.chat",
        "unknown chat action",
    );
    one(
        &with_action("chats", "{chat: {transfer_to_agent: {}}}"),
        "action.chat.transfer_to_agent.agent",
        "required",
    );
    one(
        &with_action("chats", "{chat: {transfer_to_agent: {agent: 0}}}"),
        "action.chat.transfer_to_agent.agent",
        "between 1",
    );
    assert_eq!(
        problems(&with_action(
            "chats",
            "{chat: {change_department: {dept: 3}}}"
        )),
        [
            "action.chat.change_department.dept: unknown key (expected one of: department)",
            "action.chat.change_department.department: required"
        ]
    );
    one(
        &with_action("chats", "{chat: {close: {tabulation: [1]}}}"),
        "action.chat.close.tabulation",
        "tabulation id",
    );
    one(
        &with_action("chats", "{chat: {close: 1, reopen: 1}}"),
        "action.chat",
        "exactly one",
    );
    one(
        &with_action("chats", "{chat: {update_tabulation: {}}}"),
        "action.chat.update_tabulation.tabulation",
        "required",
    );
    let parsed = |a: &str| {
        parse_task(&with_action("chats", a), Format::Yaml)
            .unwrap()
            .action
    };
    assert_eq!(
        parsed("{chat: put_in_queue}"),
        Action::Chat(ChatAction::PutInQueue)
    );
    assert_eq!(parsed("{chat: reopen}"), Action::Chat(ChatAction::Reopen));
    assert_eq!(
        parsed("{chat: close}"),
        Action::Chat(ChatAction::Close { tabulation: None })
    );
    assert_eq!(
        parsed("{chat: {close: {tabulation: '12'}}}"),
        Action::Chat(ChatAction::Close {
            tabulation: Some("12".into())
        })
    );
    assert_eq!(
        parsed("{chat: {change_department: {department: 3}}}"),
        Action::Chat(ChatAction::ChangeDepartment { department: 3 })
    );
    assert_eq!(
        parsed("{chat: {update_workflow: {step: 8}}}"),
        Action::Chat(ChatAction::UpdateWorkflow { step: 8 })
    );
    assert_eq!(
        parsed("{chat: {update_tabulation: {tabulation: 12}}}"),
        Action::Chat(ChatAction::UpdateTabulation {
            tabulation: "12".into()
        })
    );
    let Action::RunFlow(f) = parsed("{flow: {project: 1, flow: 2}}") else {
        panic!()
    };
    assert_eq!(f.channel, None);
    assert_eq!(
        f.policy,
        Default::default(),
        "policy defaults to skip, skip, skip"
    );
}

#[test]
fn huge_files_are_refused() {
    let big = format!("name: X\nobjective: {}\n", "a".repeat(2 * 1024 * 1024));
    let got = problems(&big);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("at most"), "{got:?}");
}

#[test]
fn nul_characters_are_refused_where_they_are() {
    // Postgres cannot store NUL in text or JSONB: refuse it at validation, not at create.
    let got = problems(&contacts(
        "objective: \"a\\0b\"\nfilter: {all: [{field: name, op: eq, value: \"x\\0\"}, {field: \"custom.k\\0\", op: is_set}]}\n",
    ));
    assert!(
        got.contains(
            &"objective: holds a NUL character (\\u0000), which cannot be stored".to_string()
        ),
        "{got:#?}"
    );
    assert!(
        got.contains(
            &"filter.all[0].value: holds a NUL character (\\u0000), which cannot be stored"
                .to_string()
        ),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("filter.all[1].field: holds a NUL")),
        "{got:#?}"
    );
    assert!(got.iter().all(|l| !l.contains('\0')), "{got:#?}");
}

#[test]
fn a_bad_zone_does_not_hide_the_filters_problems() {
    let got = problems(&contacts(
        "time_zone: Nowhere/Land\nfilter: {any: [{field: nome, op: eq, value: a}, {all: []}]}\n",
    ));
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].starts_with("time_zone: "), "{got:#?}");
    assert!(
        got[1].starts_with("filter.any[0].field: unknown field"),
        "{got:#?}"
    );
    assert!(
        got[2].starts_with("filter.any[1].all: an empty group"),
        "{got:#?}"
    );
}

#[test]
fn overlap_defaults_to_skip_and_reads_each_policy() {
    use tarefas_core::task::Overlap;
    let spec = parse_task(&contacts(""), Format::Yaml).unwrap();
    assert_eq!(spec.overlap, Overlap::Skip);
    for (word, want) in [
        ("skip", Overlap::Skip),
        ("queue_one", Overlap::QueueOne),
        ("allow", Overlap::Allow),
    ] {
        let spec = parse_task(&contacts(&format!("overlap: {word}\n")), Format::Yaml).unwrap();
        assert_eq!(spec.overlap, want, "{word}");
        assert_eq!(want.as_str(), word);
    }
    // JSON reads the same key.
    let json =
        r#"{"name": "X", "table": "chats", "action": {"chat": "close"}, "overlap": "allow"}"#;
    assert_eq!(
        parse_task(json, Format::Json).unwrap().overlap,
        Overlap::Allow
    );
}

#[test]
fn an_unknown_overlap_is_an_error_at_its_path() {
    one(
        &contacts("overlap: queue\n"),
        "overlap",
        r#""queue" is not an overlap policy; use skip, queue_one or allow"#,
    );
    one(
        &chats("overlap: 3\n"),
        "overlap",
        "expected a string, found an integer",
    );
    // Reported together with the file's other problems.
    let got = problems(&chats("overlap: parallel\nrecurrence: {kind: daily}\n"));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got.iter().any(|p| p.starts_with("overlap: ")), "{got:#?}");
    assert!(
        got.iter().any(|p| p.starts_with("recurrence.at: ")),
        "{got:#?}"
    );
}
