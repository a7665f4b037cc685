//! The filter (segment) validator and compiler on arbitrary filter trees. The first byte picks
//! the table and the zone, the rest is read as YAML (JSON is YAML too) and put under `filter:`
//! of an otherwise valid task. Validation must never panic; an accepted filter must compile to
//! one statement, scoped by account, whose every value is a bind parameter.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tarefas_core::task::{read_tree, validate_task, Format};
use tarefas_store::segment::SegmentQuery;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Some(filter) = parse_filter(text) else {
        return;
    };
    let (table, action) = if first & 1 == 0 {
        (
            "contacts",
            json!({"flow": {"project": 1, "flow": 2, "channel": "c2a7e0f4"}}),
        )
    } else {
        ("chats", json!({"chat": "close"}))
    };
    let zones = [
        "America/Sao_Paulo",
        "UTC",
        "Pacific/Kiritimati",
        "America/St_Johns",
    ];
    let tree = json!({
        "name": "fuzz",
        "table": table,
        "time_zone": zones[usize::from(first >> 1) % zones.len()],
        "filter": filter,
        "action": action,
    });
    let Ok(spec) = validate_task(&tree) else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2026, 10, 31, 23, 30, 0).unwrap()
        + chrono::Duration::seconds(i64::from(first) * 7919);
    let query = SegmentQuery::new(spec.table, spec.filter.as_ref(), spec.time_zone, now);
    let (sql, binds) = query.explain();
    let from = match spec.table {
        tarefas_core::Table::Contacts => "SELECT id FROM contacts WHERE account_id = $1 AND (",
        tarefas_core::Table::Chats => "SELECT id FROM chats WHERE account_id = $1 AND (",
    };
    assert!(sql.starts_with(from), "{sql}");
    assert_eq!(sql.matches('$').count(), binds, "{sql}");
    // No value reaches the SQL text: it is built from static pieces and bind markers only.
    // The only literals are the compiler's own keys of stored custom dates ('t', 'l', 'd');
    // past them, no quote (a literal), statement separator, comment or backslash is left.
    let rest = sql
        .replace("->>'t')", "")
        .replace("->>'l')", "")
        .replace("->>'d')", "");
    for bad in ["'", ";", "--", "/*", "\\"] {
        assert!(!rest.contains(bad), "{bad:?} in {sql}");
    }
});

/// YAML text into a JSON tree, the way the task-file reader reads it, as `filter:`'s value.
fn parse_filter(text: &str) -> Option<Value> {
    if text.len() > 64 * 1024 {
        return None;
    }
    let wrapped = if text.contains('\n') {
        let mut out = String::from("filter:\n");
        for line in text.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out
    } else {
        format!("filter: {text}")
    };
    let mut tree = read_tree(&wrapped, Format::Yaml).ok()?;
    Some(tree.get_mut("filter")?.take())
}
