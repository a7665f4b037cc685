//! The task-file reader (`tarefas_core::task::parse_task`) on arbitrary text, as YAML and as
//! JSON. It must never panic, whatever the bytes. A file it accepts must keep its meaning:
//! its stored definition validates again to the same spec, its schedule can be computed, and
//! its filter compiles to SQL that binds every value.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use tarefas_core::task::{parse_task, validate_task, Format};
use tarefas_store::segment::SegmentQuery;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Yaml, Format::Json] {
        let Ok(spec) = parse_task(text, format) else {
            continue;
        };
        let again = validate_task(&spec.definition).expect("a stored definition re-validates");
        assert_eq!(again, spec, "re-validating the definition changes the task");
        let mut from = Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 30).unwrap();
        for _ in 0..3 {
            match spec.recurrence.next_after(spec.time_zone, from) {
                Some(next) => {
                    assert!(next > from, "next_after went backwards: {from} -> {next}");
                    from = next;
                }
                None => break,
            }
        }
        let query = SegmentQuery::new(spec.table, spec.filter.as_ref(), spec.time_zone, from);
        let (sql, binds) = query.explain();
        assert_eq!(sql.matches('$').count(), binds, "{sql}");
    }
});
