//! The task file (`docs/task-file.md`): YAML or JSON, read into a validated
//! [`TaskSpec`], with every problem reported at its path.

use chrono_tz::Tz;
use serde_json::Value;

use crate::action::{parse_action, Action};
use crate::problem::{index, join, Problems};
use crate::raw::{self, Object};
use crate::recurrence::{parse_weekday, CronExpr, Recurrence};
use crate::segment::{parse_filter, Filter, Table};
use crate::time::{parse_date, parse_hh_mm, parse_local_datetime};

/// The zone used when a task file names none.
pub const DEFAULT_TIME_ZONE: &str = "America/Sao_Paulo";
/// The longest task name, in characters.
pub const MAX_NAME: usize = 120;
/// The longest objective, in characters.
pub const MAX_OBJECTIVE: usize = 2_000;
/// The largest task file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// The version of the task file format this code reads.
pub const FORMAT_VERSION: i64 = 1;

const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "name",
    "objective",
    "account",
    "time_zone",
    "recurrence",
    "table",
    "filter",
    "action",
    "overlap",
    "max_records",
    "send_window",
    "frequency_cap",
];

/// The syntax of a task file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (which also reads JSON).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// JSON for a `.json` path, YAML otherwise.
    pub fn from_path(path: &str) -> Format {
        if path.to_ascii_lowercase().ends_with(".json") {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// A validated task definition.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Nome da tarefa.
    pub name: String,
    /// Objetivo.
    pub objective: Option<String>,
    /// The Huggy account (tenant); may be left to the admin command (`--account`).
    pub account: Option<String>,
    /// The zone of wall-clock times and whole days.
    pub time_zone: Tz,
    /// When it fires.
    pub recurrence: Recurrence,
    /// The table it reads.
    pub table: Table,
    /// Which records; `None` is the whole table.
    pub filter: Option<Filter>,
    /// What it does to each.
    pub action: Action,
    /// What a scheduled fire does while the task's previous run has not ended.
    pub overlap: Overlap,
    /// Audience guard: a run that plans more records waits in `awaiting_approval`.
    pub max_records: Option<i64>,
    /// Quiet hours: calls only inside this window, in `time_zone`.
    pub send_window: Option<crate::guard::SendWindow>,
    /// Flows per contact across the account's tasks, for this task (only stricter than the
    /// account's).
    pub frequency_cap: Option<crate::guard::FrequencyCap>,
    /// The file as read, as JSON: what is stored and shown back.
    pub definition: Value,
}

/// What a scheduled fire does while the task's previous run has not ended (it is still
/// `planning`, `running` or `paused`, or its fire was emitted and not yet started).
/// "Executar Tarefa" is never subject to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// The fire is not run; it is recorded as missed (the default).
    #[default]
    Skip,
    /// The fire is kept as the task's one pending fire and runs when the previous run ends;
    /// a later fire replaces it (the replaced one is recorded as missed).
    QueueOne,
    /// The fire runs alongside the previous run.
    Allow,
}

impl Overlap {
    /// The task file's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::QueueOne => "queue_one",
            Overlap::Allow => "allow",
        }
    }

    /// Reads the task file's word.
    pub fn parse(s: &str) -> Option<Overlap> {
        match s {
            "skip" => Some(Overlap::Skip),
            "queue_one" => Some(Overlap::QueueOne),
            "allow" => Some(Overlap::Allow),
            _ => None,
        }
    }
}

/// Only the schedule part of a task file (what `schedule preview` needs).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// The zone of wall-clock times.
    pub time_zone: Tz,
    /// When it fires.
    pub recurrence: Recurrence,
}

/// Reads the file's syntax into a JSON tree; a syntax error is one problem at the root.
pub fn read_tree(text: &str, format: Format) -> Result<Value, Problems> {
    let mut problems = Problems::default();
    if text.len() > MAX_FILE_BYTES {
        problems.push(
            "",
            format!(
                "the file is {} bytes; a task file may be at most {MAX_FILE_BYTES}",
                text.len()
            ),
        );
        return Err(problems);
    }
    if text.trim().is_empty() {
        problems.push("", "the file is empty");
        return Err(problems);
    }
    let tree = match format {
        Format::Json => {
            serde_json::from_str::<Value>(text).map_err(|e| format!("invalid JSON: {e}"))
        }
        Format::Yaml => {
            serde_yaml::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}"))
        }
    };
    match tree {
        Ok(v) => Ok(v),
        Err(e) => {
            problems.push("", e);
            Err(problems)
        }
    }
}

/// Parses and validates a whole task file.
pub fn parse_task(text: &str, format: Format) -> Result<TaskSpec, Problems> {
    let tree = read_tree(text, format)?;
    validate_task(&tree)
}

/// Validates a task definition already read into a tree (e.g. from the database or an API).
pub fn validate_task(tree: &Value) -> Result<TaskSpec, Problems> {
    let mut problems = Problems::default();
    let Some(map) = top_level(tree, &mut problems) else {
        return Err(problems);
    };
    reject_nul(tree, "", &mut problems);

    let name = raw::required(map, "", "name", &mut problems)
        .and_then(|v| raw::as_str(v, "name", &mut problems))
        .and_then(|s| {
            let n = s.chars().count();
            if s.trim().is_empty() {
                problems.push("name", "must not be blank");
                None
            } else if n > MAX_NAME {
                problems.push("name", format!("at most {MAX_NAME} characters, found {n}"));
                None
            } else {
                Some(s.to_string())
            }
        });
    let objective = raw::get(map, "objective").and_then(|v| {
        let s = raw::as_str(v, "objective", &mut problems)?;
        let n = s.chars().count();
        if n > MAX_OBJECTIVE {
            problems.push(
                "objective",
                format!("at most {MAX_OBJECTIVE} characters, found {n}"),
            );
            return None;
        }
        Some(s.to_string())
    });
    let account = raw::get(map, "account").and_then(|v| {
        let s = raw::as_str(v, "account", &mut problems)?;
        match check_account(s) {
            Ok(()) => Some(s.to_string()),
            Err(e) => {
                problems.push("account", e);
                None
            }
        }
    });
    let (time_zone, recurrence) = schedule_parts(map, &mut problems);
    let table = match raw::get(map, "table") {
        None => {
            problems.push("table", "required: contacts or chats");
            None
        }
        Some(v) => raw::as_str(v, "table", &mut problems).and_then(|s| {
            let t = Table::parse(s);
            if t.is_none() {
                problems.push(
                    "table",
                    format!("{s:?} is not a table; use contacts or chats"),
                );
            }
            t
        }),
    };
    let filter = match (raw::get(map, "filter"), table, time_zone) {
        (Some(v), Some(table), Some(tz)) => {
            parse_filter(v, table, tz, "filter", &mut problems).map(Some)
        }
        // Without a valid zone (already reported) the filter is still checked, against UTC,
        // so that its own problems are reported too.
        (Some(v), Some(table), None) => {
            parse_filter(v, table, chrono_tz::UTC, "filter", &mut problems);
            None
        }
        // Without a valid table the fields cannot be checked; that problem is already
        // reported.
        (Some(_), None, _) => None,
        (None, _, _) => Some(None),
    };
    let action = match raw::get(map, "action") {
        None => {
            problems.push("action", "required: flow or chat");
            None
        }
        Some(v) => parse_action(v, table, "action", &mut problems),
    };
    let overlap = match raw::get(map, "overlap") {
        None => Some(Overlap::default()),
        Some(v) => raw::as_str(v, "overlap", &mut problems).and_then(|s| {
            let o = Overlap::parse(s);
            if o.is_none() {
                problems.push(
                    "overlap",
                    format!("{s:?} is not an overlap policy; use skip, queue_one or allow"),
                );
            }
            o
        }),
    };
    let max_records = raw::get(map, "max_records")
        .and_then(|v| crate::guard::parse_max_records(v, "max_records", &mut problems));
    let send_window = raw::get(map, "send_window")
        .and_then(|v| crate::guard::parse_send_window(v, "send_window", &mut problems));
    let frequency_cap = raw::get(map, "frequency_cap")
        .and_then(|v| crate::guard::parse_frequency_cap(v, "frequency_cap", &mut problems));

    if !problems.is_empty() {
        return Err(problems);
    }
    match (name, time_zone, recurrence, table, filter, action, overlap) {
        (
            Some(name),
            Some(time_zone),
            Some(recurrence),
            Some(table),
            Some(filter),
            Some(action),
            Some(overlap),
        ) => Ok(TaskSpec {
            name,
            objective,
            account,
            time_zone,
            recurrence,
            table,
            filter,
            action,
            overlap,
            max_records,
            send_window,
            frequency_cap,
            definition: tree.clone(),
        }),
        _ => {
            problems.push("", "invalid task");
            Err(problems)
        }
    }
}

/// Parses only `time_zone` and `recurrence` (other known keys are not checked).
pub fn parse_schedule(text: &str, format: Format) -> Result<ScheduleSpec, Problems> {
    let tree = read_tree(text, format)?;
    let mut problems = Problems::default();
    let Some(map) = top_level(&tree, &mut problems) else {
        return Err(problems);
    };
    let (tz, recurrence) = schedule_parts(map, &mut problems);
    match (tz, recurrence) {
        (Some(time_zone), Some(recurrence)) if problems.is_empty() => Ok(ScheduleSpec {
            time_zone,
            recurrence,
        }),
        _ => Err(problems),
    }
}

fn default_tz() -> Tz {
    DEFAULT_TIME_ZONE.parse().unwrap_or(Tz::UTC)
}

/// Checks an account name: 1 to 64 of letters, digits, `_`, `-`, `.`.
pub fn check_account(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "{s:?} is not an account name (1 to 64 letters, digits, \"_\", \"-\" or \".\")"
        ));
    }
    Ok(())
}

/// Reports every string (value or key) holding a NUL character: Postgres text and JSONB
/// cannot store one, so such a file would pass validation and then fail to be created.
fn reject_nul(tree: &Value, path: &str, problems: &mut Problems) {
    const WHY: &str = "holds a NUL character (\\u0000), which cannot be stored";
    match tree {
        Value::String(s) if s.contains('\0') => problems.push(path, WHY),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                reject_nul(item, &index(path, i), problems);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                let at = join(path, &key.replace('\0', "\\u0000"));
                if key.contains('\0') {
                    problems.push(at.clone(), WHY);
                }
                reject_nul(value, &at, problems);
            }
        }
        _ => {}
    }
}

fn top_level<'a>(tree: &'a Value, problems: &mut Problems) -> Option<&'a Object> {
    let Value::Object(map) = tree else {
        problems.push(
            "",
            format!(
                "a task file holds a map of settings, found {}",
                raw::type_name(tree)
            ),
        );
        return None;
    };
    raw::reject_unknown_keys(map, "", TOP_LEVEL_KEYS, problems);
    if let Some(v) = raw::get(map, "version") {
        if v.as_i64() != Some(FORMAT_VERSION) {
            problems.push(
                "version",
                format!("this Tarefas reads task file version {FORMAT_VERSION}, found {v}"),
            );
        }
    }
    Some(map)
}

fn schedule_parts(map: &Object, problems: &mut Problems) -> (Option<Tz>, Option<Recurrence>) {
    let tz = match raw::get(map, "time_zone") {
        None => Some(default_tz()),
        Some(v) => raw::as_str(v, "time_zone", problems).and_then(|s| match s.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                problems.push(
                    "time_zone",
                    format!("{s:?} is not an IANA time zone name (e.g. America/Sao_Paulo)"),
                );
                None
            }
        }),
    };
    let recurrence = match raw::get(map, "recurrence") {
        None => Some(Recurrence::Manual),
        Some(v) => parse_recurrence(v, "recurrence", problems),
    };
    (tz, recurrence)
}

const KINDS: &str = "manual, every_minutes, every_hours, daily, weekdays, month_day, cron";

/// Parses and validates a `recurrence` block.
pub fn parse_recurrence(value: &Value, path: &str, problems: &mut Problems) -> Option<Recurrence> {
    let map = raw::as_object(value, path, problems)?;
    let kind_path = join(path, "kind");
    let kind = raw::required(map, path, "kind", problems)
        .and_then(|v| raw::as_str(v, &kind_path, problems))?;
    let allowed: &[&str] = match kind {
        "manual" => &["kind"],
        "every_minutes" | "every_hours" => &["kind", "n", "starts_at", "ends_on"],
        "daily" => &["kind", "at", "ends_on"],
        "weekdays" => &["kind", "days", "at", "ends_on"],
        "month_day" => &["kind", "day", "at", "ends_on"],
        "cron" => &["kind", "expr", "ends_on"],
        other => {
            problems.push(
                kind_path,
                format!("unknown recurrence kind {other:?}; kinds: {KINDS}"),
            );
            return None;
        }
    };
    raw::reject_unknown_keys(map, path, allowed, problems);
    let before = problems.0.len();

    let ends_on = raw::get(map, "ends_on").and_then(|v| {
        let p = join(path, "ends_on");
        let s = raw::as_str(v, &p, problems)?;
        let d = parse_date(s);
        if d.is_none() {
            problems.push(p, format!("{s:?} is not a date YYYY-MM-DD"));
        }
        d
    });
    let take_at = |problems: &mut Problems| parse_at(map, path, problems);

    let rec = match kind {
        "manual" => Some(Recurrence::Manual),
        "every_minutes" | "every_hours" => {
            let max = if kind == "every_minutes" { 1440 } else { 168 };
            let n = raw::required(map, path, "n", problems)
                .and_then(|v| raw::as_int_in(v, &join(path, "n"), 1, max, problems));
            let starts_at = raw::get(map, "starts_at").and_then(|v| {
                let p = join(path, "starts_at");
                let s = raw::as_str(v, &p, problems)?;
                let t = parse_local_datetime(s);
                if t.is_none() {
                    problems.push(
                        p,
                        format!("{s:?} is not a local date-time YYYY-MM-DDTHH:MM[:SS]"),
                    );
                }
                t
            });
            if let (Some(start), Some(end)) = (starts_at, ends_on) {
                if end < start.date() {
                    problems.push(
                        join(path, "ends_on"),
                        format!(
                            "{end} is before starts_at ({}); the task would never fire",
                            start.date()
                        ),
                    );
                }
            }
            let n = n? as u32;
            Some(if kind == "every_minutes" {
                Recurrence::EveryMinutes {
                    n,
                    starts_at,
                    ends_on,
                }
            } else {
                Recurrence::EveryHours {
                    n,
                    starts_at,
                    ends_on,
                }
            })
        }
        "daily" => take_at(problems).map(|at| Recurrence::Daily { at, ends_on }),
        "weekdays" => {
            let days = raw::required(map, path, "days", problems)
                .and_then(|v| parse_days(v, &join(path, "days"), problems));
            let at = take_at(problems);
            Some(Recurrence::Weekdays {
                days: days?,
                at: at?,
                ends_on,
            })
        }
        "month_day" => {
            let day = raw::required(map, path, "day", problems)
                .and_then(|v| raw::as_int_in(v, &join(path, "day"), 1, 31, problems));
            let at = take_at(problems);
            Some(Recurrence::MonthDay {
                day: day? as u32,
                at: at?,
                ends_on,
            })
        }
        _ => {
            let p = join(path, "expr");
            let expr = raw::required(map, path, "expr", problems)
                .and_then(|v| raw::as_str(v, &p, problems))
                .and_then(|s| match CronExpr::parse(s) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        problems.push(&p, e);
                        None
                    }
                });
            expr.map(|expr| Recurrence::Cron { expr, ends_on })
        }
    };
    if problems.0.len() > before {
        return None;
    }
    rec
}

fn parse_days(v: &Value, path: &str, problems: &mut Problems) -> Option<Vec<chrono::Weekday>> {
    let Value::Array(items) = v else {
        raw::wrong_type(
            problems,
            path,
            "a list of days (mon tue wed thu fri sat sun)",
            v,
        );
        return None;
    };
    if items.is_empty() {
        problems.push(path, "needs at least one day (mon tue wed thu fri sat sun)");
        return None;
    }
    let mut days = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        match raw::as_str(item, &p, problems) {
            Some(s) => match parse_weekday(s) {
                Some(d) if !days.contains(&d) => days.push(d),
                Some(_) => {}
                None => {
                    problems.push(
                        p,
                        format!("{s:?} is not a day; use mon tue wed thu fri sat sun"),
                    );
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    days.sort_by_key(|d| d.num_days_from_monday());
    ok.then_some(days)
}

fn parse_at(map: &Object, path: &str, problems: &mut Problems) -> Option<chrono::NaiveTime> {
    let p = join(path, "at");
    match raw::get(map, "at") {
        None => problems.push(p, "required: the time of day, \"HH:MM\""),
        Some(Value::String(s)) => match parse_hh_mm(s) {
            Some(t) => return Some(t),
            None => problems.push(
                p,
                format!("{s:?} is not a time of day \"HH:MM\" (00:00 to 23:59)"),
            ),
        },
        Some(other) => problems.push(
            p,
            format!(
                "expected a time of day \"HH:MM\" (quoted), found {}",
                raw::type_name(other)
            ),
        ),
    }
    None
}

/// A task's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Fires on schedule and may be run by hand.
    Active,
    /// Does not fire on schedule; may still be run by hand.
    Paused,
    /// Gone for operators; kept for the history of its runs.
    Deleted,
}

/// Every task status.
pub const TASK_STATUSES: [TaskStatus; 3] =
    [TaskStatus::Active, TaskStatus::Paused, TaskStatus::Deleted];

impl TaskStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Active => "active",
            TaskStatus::Paused => "paused",
            TaskStatus::Deleted => "deleted",
        }
    }

    /// Parses [`TaskStatus::as_str`]'s names.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TASK_STATUSES.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::run::status_names!(TaskStatus, "task");
