//! `tarefas task validate` and `tarefas schedule preview`: the public contract of
//! docs/task-file.md, as an operator meets it.

use crate::support::{repo, tarefas, tarefas_with_stdin, temp_file};

#[test]
fn every_example_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let out = tarefas(&["task", "validate", "-f", path.to_str().unwrap()]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "ok\n"),
            "{}: {out:?}",
            path.display()
        );
        n += 1;
    }
    assert!(
        n >= 10,
        "examples cover every recurrence kind and chat action"
    );
}

#[test]
fn invalid_file_lists_every_problem_with_its_path_and_exits_2() {
    let file = temp_file(
        r#"
name: Teste
table: chats
recurrence: {kind: month_day, day: 32, at: "09:00"}
filter:
  all:
    - {field: situation, op: eq, value: in_chat}
    - any:
        - {field: department, op: gt, value: 3}
action:
  flow: {project: 3, flow: 42, channel: abc}
"#,
        ".yaml",
    );
    let out = tarefas(&["task", "validate", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines.contains(&"recurrence.day: must be between 1 and 31, found 32"),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.starts_with(
        r#"filter.all[1].any[0].op: "gt" does not apply to reference field "department""#
    )));
    assert!(lines.contains(
        &"action.flow.channel: not allowed on the chats table (the chat's own channel is used)"
    ));
}

#[test]
fn json_output_for_scripts() {
    let ok = tarefas(&[
        "task",
        "validate",
        "-f",
        "examples/11-every-minutes-contacts-flow.json",
        "--json",
    ]);
    assert_eq!(ok.code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ok.stdout).unwrap(),
        serde_json::json!({"ok": true})
    );
    let bad = tarefas_with_stdin(
        &["task", "validate", "-f", "-", "--json"],
        "name: X\ntable: contacts\n",
    );
    assert_eq!(bad.code, 2);
    let v: serde_json::Value = serde_json::from_str(&bad.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["path"], "action");
}

#[test]
fn standard_input_and_unreadable_files() {
    let out = tarefas_with_stdin(
        &["task", "validate", "-f", "-"],
        "name: X\ntable: chats\naction: {chat: reopen}\n",
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, "ok\n"));
    let out = tarefas(&["task", "validate", "-f", "/nonexistent/task.yaml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stdout
            .starts_with("/nonexistent/task.yaml: cannot read the file"),
        "{out:?}"
    );
    let out = tarefas_with_stdin(&["task", "validate", "-f", "-"], "name: [\n");
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("invalid YAML"), "{out:?}");
}

#[test]
fn schedule_preview_prints_utc_fires_one_per_line() {
    let file = temp_file(
        "time_zone: America/Sao_Paulo\nrecurrence: {kind: month_day, day: 31, at: \"09:00\", ends_on: 2027-03-31}\n",
        ".yaml",
    );
    let out = tarefas(&[
        "schedule",
        "preview",
        "-f",
        file.to_str().unwrap(),
        "--from",
        "2026-12-31T12:00:00Z",
        "--count",
        "10",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    // Strictly after --from (the 31/12 fire is exactly at --from), short months clamped,
    // fewer than asked because ends_on comes first.
    assert_eq!(
        out.lines(),
        [
            "2027-01-31T12:00:00Z",
            "2027-02-28T12:00:00Z",
            "2027-03-31T12:00:00Z"
        ]
    );
}

#[test]
fn schedule_preview_reads_whole_task_files() {
    let out = tarefas(&[
        "schedule",
        "preview",
        "-f",
        "examples/06-month-day-contacts-flow.yaml",
        "--from",
        "2026-11-01T00:00:00-03:00",
        "--count",
        "5",
    ]);
    assert_eq!(
        out.lines(),
        ["2026-11-10T12:00:00Z", "2026-12-10T12:00:00Z"],
        "{out:?}"
    );
    let manual = tarefas(&[
        "schedule",
        "preview",
        "-f",
        "examples/01-manual-contacts-flow-rotik.yaml",
        "--from",
        "2026-11-01T00:00:00Z",
        "--count",
        "5",
    ]);
    assert_eq!((manual.code, manual.stdout.as_str()), (0, ""));
    let json = tarefas(&[
        "schedule",
        "preview",
        "-f",
        "examples/07-cron-chats-reopen.yaml",
        "--from",
        "2026-12-04T12:00:00Z",
        "--count",
        "3",
        "--json",
    ]);
    // From Friday 04/12 09:00 local (12:00Z): 12:00, 16:00 and 20:00 local, every 4 hours.
    let v: Vec<String> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v,
        [
            "2026-12-04T15:00:00Z",
            "2026-12-04T19:00:00Z",
            "2026-12-04T23:00:00Z"
        ]
    );
}

#[test]
fn schedule_preview_rejects_bad_input() {
    let out = tarefas(&[
        "schedule",
        "preview",
        "-f",
        "examples/06-month-day-contacts-flow.yaml",
        "--from",
        "amanhã",
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("RFC 3339"), "{out:?}");
    let file = temp_file(
        "recurrence: {kind: daily, at: \"9\"}\ntime_zone: Nowhere\n",
        ".yaml",
    );
    let out = tarefas(&[
        "schedule",
        "preview",
        "-f",
        file.to_str().unwrap(),
        "--count",
        "2",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(out.lines().len(), 2, "{out:?}");
}
