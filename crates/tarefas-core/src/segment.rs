//! Segments: which records of a table a task acts on. A filter is a condition
//! `{field, op, value}` or a group, `all` (E+, AND) or `any` (OU+, OR), nested freely.
//!
//! Parsing validates everything the task file contract asks (fields by table, operators by
//! kind of field, values by operator) and turns each condition into a typed [`Test`] whose
//! values are already normalized (text lower-cased, phones reduced to digits), so that the
//! in-memory evaluator ([`crate::eval`]) and the SQL compiler share one meaning.

use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::problem::{index, join, Problems};
use crate::raw::{self, Object};
use crate::time::{parse_date, parse_relative, TimeValue};

/// The deepest nesting of groups a filter may have.
pub const MAX_DEPTH: usize = 12;
/// The most conditions one filter may hold.
pub const MAX_CONDITIONS: usize = 500;
/// The most values an `in` / `not_in` list may hold.
pub const MAX_LIST: usize = 10_000;
/// The longest text value a condition may hold, in characters.
pub const MAX_TEXT: usize = 1_000;

/// The table a task reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Tabela de Contatos.
    Contacts,
    /// Tabela de Atendimentos (open chats only).
    Chats,
}

impl Table {
    /// Parses `contacts` or `chats`.
    pub fn parse(s: &str) -> Option<Table> {
        match s {
            "contacts" => Some(Table::Contacts),
            "chats" => Some(Table::Chats),
            _ => None,
        }
    }

    /// The name the task file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Contacts => "contacts",
            Table::Chats => "chats",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field a condition can test.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// The record's Huggy id (both tables).
    Id,
    /// Contact name.
    Name,
    /// Contact mobile phone (digits).
    Mobile,
    /// Contact phone (digits).
    Phone,
    /// Contact e-mail.
    Email,
    /// Creation time (both tables).
    CreatedAt,
    /// Last update time (both tables).
    UpdatedAt,
    /// Contact group.
    Group,
    /// Contact organization.
    Organization,
    /// A contact custom field, `custom.<key>`.
    Custom(String),
    /// Chat department.
    Department,
    /// Chat channel.
    Channel,
    /// Chat situation.
    Situation,
    /// Chat workflow.
    Workflow,
    /// Chat workflow step.
    WorkflowStep,
    /// Time of the chat's last message.
    LastMessageAt,
}

/// The kind of a field, which decides the operators that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Case-insensitive text.
    Text,
    /// Digits-only phone numbers.
    Phone,
    /// A record id.
    Id,
    /// A reference to another object, by id or name.
    Reference,
    /// The chat situation.
    Enum,
    /// A point in time.
    DateTime,
    /// A custom field: text, or a number or date when its text parses as one.
    Custom,
}

impl FieldKind {
    fn describe(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Phone => "phone",
            FieldKind::Id => "id",
            FieldKind::Reference => "reference",
            FieldKind::Enum => "enum",
            FieldKind::DateTime => "date-time",
            FieldKind::Custom => "custom",
        }
    }

    /// The operators that apply to this kind, in the contract's order.
    pub fn operators(self) -> &'static [Op] {
        use Op::*;
        match self {
            FieldKind::Text | FieldKind::Phone => &[
                Eq,
                Ne,
                Contains,
                NotContains,
                StartsWith,
                In,
                NotIn,
                IsSet,
                IsNotSet,
            ],
            FieldKind::Id => &[Eq, Ne, In, NotIn, Gt, Gte, Lt, Lte],
            FieldKind::Reference => &[Eq, Ne, In, NotIn, IsSet, IsNotSet],
            FieldKind::Enum => &[Eq, Ne, In, NotIn],
            FieldKind::DateTime => &[
                On,
                Before,
                After,
                Between,
                WithinLast,
                MoreThanAgo,
                IsSet,
                IsNotSet,
            ],
            FieldKind::Custom => &[
                Eq,
                Ne,
                Contains,
                NotContains,
                StartsWith,
                In,
                NotIn,
                IsSet,
                IsNotSet,
                Gt,
                Gte,
                Lt,
                Lte,
                Between,
                On,
                Before,
                After,
                WithinLast,
                MoreThanAgo,
            ],
        }
    }
}

/// The fields of the contacts table, as the task file names them.
pub const CONTACT_FIELDS: &[&str] = &[
    "id",
    "name",
    "mobile",
    "phone",
    "email",
    "created_at",
    "updated_at",
    "group",
    "organization",
    "custom.<key>",
];
/// The fields of the chats table, as the task file names them.
pub const CHAT_FIELDS: &[&str] = &[
    "id",
    "department",
    "channel",
    "situation",
    "created_at",
    "updated_at",
    "workflow",
    "workflow_step",
    "last_message_at",
];

impl Field {
    /// Parses a field name for `table`.
    pub fn parse(table: Table, name: &str) -> Result<Field, String> {
        let field = match (table, name) {
            (_, "id") => Field::Id,
            (_, "created_at") => Field::CreatedAt,
            (_, "updated_at") => Field::UpdatedAt,
            (Table::Contacts, "name") => Field::Name,
            (Table::Contacts, "mobile") => Field::Mobile,
            (Table::Contacts, "phone") => Field::Phone,
            (Table::Contacts, "email") => Field::Email,
            (Table::Contacts, "group") => Field::Group,
            (Table::Contacts, "organization") => Field::Organization,
            (Table::Chats, "department") => Field::Department,
            (Table::Chats, "channel") => Field::Channel,
            (Table::Chats, "situation") => Field::Situation,
            (Table::Chats, "workflow") => Field::Workflow,
            (Table::Chats, "workflow_step") => Field::WorkflowStep,
            (Table::Chats, "last_message_at") => Field::LastMessageAt,
            (Table::Contacts, custom) if custom.starts_with("custom.") => {
                let key = &custom["custom.".len()..];
                if key.is_empty() {
                    return Err("a custom field needs a key after \"custom.\"".into());
                }
                if key.chars().count() > 64
                    || !key
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(format!(
                        "custom field key {key:?} may hold only letters, digits, \"_\" and \"-\" (at most 64)"
                    ));
                }
                Field::Custom(key.to_string())
            }
            _ => {
                let fields = match table {
                    Table::Contacts => CONTACT_FIELDS,
                    Table::Chats => CHAT_FIELDS,
                };
                let elsewhere = match table {
                    Table::Contacts if CHAT_FIELDS.contains(&name) => {
                        " (it is a field of the chats table)"
                    }
                    Table::Chats
                        if CONTACT_FIELDS.contains(&name) || name.starts_with("custom.") =>
                    {
                        " (it is a field of the contacts table)"
                    }
                    _ => "",
                };
                return Err(format!(
                    "unknown field {name:?} on the {table} table{elsewhere}; fields: {}",
                    fields.join(", ")
                ));
            }
        };
        Ok(field)
    }

    /// The field's kind.
    pub fn kind(&self) -> FieldKind {
        match self {
            Field::Id => FieldKind::Id,
            Field::Name | Field::Email => FieldKind::Text,
            Field::Mobile | Field::Phone => FieldKind::Phone,
            Field::CreatedAt | Field::UpdatedAt | Field::LastMessageAt => FieldKind::DateTime,
            Field::Group
            | Field::Organization
            | Field::Department
            | Field::Channel
            | Field::Workflow
            | Field::WorkflowStep => FieldKind::Reference,
            Field::Custom(_) => FieldKind::Custom,
            Field::Situation => FieldKind::Enum,
        }
    }

    /// The name the task file uses.
    pub fn name(&self) -> String {
        match self {
            Field::Id => "id".into(),
            Field::Name => "name".into(),
            Field::Mobile => "mobile".into(),
            Field::Phone => "phone".into(),
            Field::Email => "email".into(),
            Field::CreatedAt => "created_at".into(),
            Field::UpdatedAt => "updated_at".into(),
            Field::Group => "group".into(),
            Field::Organization => "organization".into(),
            Field::Custom(k) => format!("custom.{k}"),
            Field::Department => "department".into(),
            Field::Channel => "channel".into(),
            Field::Situation => "situation".into(),
            Field::Workflow => "workflow".into(),
            Field::WorkflowStep => "workflow_step".into(),
            Field::LastMessageAt => "last_message_at".into(),
        }
    }
}

/// A filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Op {
    Eq,
    Ne,
    Contains,
    NotContains,
    StartsWith,
    In,
    NotIn,
    IsSet,
    IsNotSet,
    Gt,
    Gte,
    Lt,
    Lte,
    On,
    Before,
    After,
    Between,
    WithinLast,
    MoreThanAgo,
}

/// Every operator with its name in the task file.
pub const OPERATORS: &[(&str, Op)] = &[
    ("eq", Op::Eq),
    ("ne", Op::Ne),
    ("contains", Op::Contains),
    ("not_contains", Op::NotContains),
    ("starts_with", Op::StartsWith),
    ("in", Op::In),
    ("not_in", Op::NotIn),
    ("is_set", Op::IsSet),
    ("is_not_set", Op::IsNotSet),
    ("gt", Op::Gt),
    ("gte", Op::Gte),
    ("lt", Op::Lt),
    ("lte", Op::Lte),
    ("on", Op::On),
    ("before", Op::Before),
    ("after", Op::After),
    ("between", Op::Between),
    ("within_last", Op::WithinLast),
    ("more_than_ago", Op::MoreThanAgo),
];

impl Op {
    /// Parses an operator name.
    pub fn parse(s: &str) -> Option<Op> {
        OPERATORS.iter().find(|(n, _)| *n == s).map(|(_, op)| *op)
    }

    /// The task file's name for it.
    pub fn as_str(self) -> &'static str {
        OPERATORS
            .iter()
            .find(|(_, op)| *op == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// A chat situation that the Chats table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Situation {
    /// `auto`: with the chatbot (automático).
    Auto,
    /// `wait_for_chat`: waiting in the queue (na fila).
    WaitForChat,
    /// `in_chat`: with an agent (em atendimento).
    InChat,
}

impl Situation {
    /// Parses `auto`, `wait_for_chat` or `in_chat`.
    pub fn parse(s: &str) -> Option<Situation> {
        match s {
            "auto" => Some(Situation::Auto),
            "wait_for_chat" => Some(Situation::WaitForChat),
            "in_chat" => Some(Situation::InChat),
            _ => None,
        }
    }

    /// Huggy's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Situation::Auto => "auto",
            Situation::WaitForChat => "wait_for_chat",
            Situation::InChat => "in_chat",
        }
    }
}

/// A comparison on ids and numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Cmp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    /// Applies the comparison `left <op> right`.
    pub fn holds<T: PartialOrd>(self, left: T, right: T) -> bool {
        match self {
            Cmp::Eq => left == right,
            Cmp::Ne => left != right,
            Cmp::Gt => left > right,
            Cmp::Gte => left >= right,
            Cmp::Lt => left < right,
            Cmp::Lte => left <= right,
        }
    }

    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "<>",
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }
}

/// A test on text. Values are normalized: lower-cased for text, digits only for phones.
/// The negated tests (`Ne`, `NotContains`, `NotIn`) never match an unset field.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum TextTest {
    Eq(String),
    Ne(String),
    Contains(String),
    NotContains(String),
    StartsWith(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

/// A reference value: an integer names the id, a string the name (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefValue {
    /// Matches the referenced object's id.
    Id(i64),
    /// Matches the referenced object's name, case-insensitively (stored lower-cased).
    Name(String),
}

/// A window of time, with each bound inclusive or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Lower bound and whether it is inclusive.
    pub lower: Option<(DateTime<Utc>, bool)>,
    /// Upper bound and whether it is inclusive.
    pub upper: Option<(DateTime<Utc>, bool)>,
}

impl TimeRange {
    /// True when `t` lies in the window.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let above = match self.lower {
            Some((b, true)) => t >= b,
            Some((b, false)) => t > b,
            None => true,
        };
        let below = match self.upper {
            Some((b, true)) => t <= b,
            Some((b, false)) => t < b,
            None => true,
        };
        above && below
    }
}

/// A test on a point in time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeTest {
    /// That whole day in the task's zone.
    On(NaiveDate),
    /// Strictly before the start of a date, or before a date-time.
    Before(TimeValue),
    /// From the day after a date on, or strictly after a date-time.
    After(TimeValue),
    /// From the start of the first to the end of the second (inclusive days).
    Between(TimeValue, TimeValue),
    /// Between `run start − d` and the run start, inclusive.
    WithinLast(Duration),
    /// Strictly before `run start − d`.
    MoreThanAgo(Duration),
}

impl TimeTest {
    /// The window of instants this test accepts, for a run that started at `now`.
    pub fn range(&self, tz: Tz, now: DateTime<Utc>) -> TimeRange {
        let (lower, upper) = match *self {
            TimeTest::On(d) => (
                Some((crate::time::start_of_day(tz, d), true)),
                Some((crate::time::end_of_day(tz, d), false)),
            ),
            TimeTest::Before(v) => (None, Some((v.start(tz), false))),
            TimeTest::After(v) => {
                if v.is_date() {
                    (Some((v.end(tz), true)), None)
                } else {
                    (Some((v.start(tz), false)), None)
                }
            }
            TimeTest::Between(a, b) => (
                Some((a.start(tz), true)),
                Some(if b.is_date() {
                    (b.end(tz), false)
                } else {
                    (b.start(tz), true)
                }),
            ),
            TimeTest::WithinLast(d) => (Some((now - d, true)), Some((now, true))),
            TimeTest::MoreThanAgo(d) => (None, Some((now - d, false))),
        };
        TimeRange { lower, upper }
    }
}

/// A numeric test on a custom field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumTest {
    /// `value <cmp> n`.
    Cmp(Cmp, f64),
    /// `a <= value <= b`.
    Between(f64, f64),
}

/// What a condition checks, with its values validated and normalized.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// The field holds a value (non-empty text, a reference, a time).
    IsSet,
    /// The field holds nothing.
    IsNotSet,
    /// Text (text fields, phones, custom fields read as text).
    Text(TextTest),
    /// Id comparison.
    IdCmp(Cmp, i64),
    /// Id in (or, negated, not in) a list.
    IdIn(Vec<i64>, bool),
    /// Reference equal to one of the values (or, negated, to none of them).
    Ref(Vec<RefValue>, bool),
    /// Situation one of (or, negated, none of).
    Situation(Vec<Situation>, bool),
    /// Time window.
    Time(TimeTest),
    /// Number (custom fields whose text parses as a number).
    Number(NumTest),
}

/// One validated condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The field tested.
    pub field: Field,
    /// The operator as written (for display).
    pub op: Op,
    /// What is tested.
    pub test: Test,
}

/// A validated filter tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// E+: every member matches.
    All(Vec<Filter>),
    /// OU+: at least one member matches.
    Any(Vec<Filter>),
    /// A leaf.
    Condition(Condition),
}

impl Filter {
    /// Every condition in the tree, depth first.
    pub fn conditions(&self) -> Vec<&Condition> {
        let mut out = Vec::new();
        fn walk<'a>(f: &'a Filter, out: &mut Vec<&'a Condition>) {
            match f {
                Filter::All(v) | Filter::Any(v) => v.iter().for_each(|x| walk(x, out)),
                Filter::Condition(c) => out.push(c),
            }
        }
        walk(self, &mut out);
        out
    }
}

/// Parses and validates a filter for `table`; every problem is reported under `path`.
/// `tz` is the task's zone (to check that `between` bounds are in order).
pub fn parse_filter(
    value: &Value,
    table: Table,
    tz: Tz,
    path: &str,
    problems: &mut Problems,
) -> Option<Filter> {
    let mut count = 0;
    parse_node(value, table, tz, path, 0, &mut count, problems)
}

fn parse_node(
    value: &Value,
    table: Table,
    tz: Tz,
    path: &str,
    depth: usize,
    count: &mut usize,
    problems: &mut Problems,
) -> Option<Filter> {
    let map = raw::as_object(value, path, problems)?;
    let group = match (map.get("all"), map.get("any")) {
        (Some(_), Some(_)) => {
            problems.push(
                path,
                "a group has either \"all\" (E+) or \"any\" (OU+), not both; nest one inside the other",
            );
            return None;
        }
        (Some(members), None) => Some(("all", members)),
        (None, Some(members)) => Some(("any", members)),
        (None, None) => None,
    };
    let Some((kind, members)) = group else {
        *count += 1;
        if *count == MAX_CONDITIONS + 1 {
            problems.push(
                path,
                format!("a filter may hold at most {MAX_CONDITIONS} conditions"),
            );
        }
        return parse_condition(map, table, tz, path, problems).map(Filter::Condition);
    };
    let extra: Vec<&String> = map.keys().filter(|k| k.as_str() != kind).collect();
    for k in extra {
        problems.push(
            join(path, k),
            format!("unknown key in a group (a group holds only \"{kind}\")"),
        );
    }
    let group_path = join(path, kind);
    if depth >= MAX_DEPTH {
        problems.push(
            group_path,
            format!("groups nest at most {MAX_DEPTH} levels deep"),
        );
        return None;
    }
    let Value::Array(items) = members else {
        raw::wrong_type(problems, &group_path, "a list of filters", members);
        return None;
    };
    if items.is_empty() {
        problems.push(
            group_path,
            "an empty group matches nothing useful; add a condition or remove the group",
        );
        return None;
    }
    let mut parsed = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match parse_node(
            item,
            table,
            tz,
            &index(&group_path, i),
            depth + 1,
            count,
            problems,
        ) {
            Some(f) => parsed.push(f),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    Some(if kind == "all" {
        Filter::All(parsed)
    } else {
        Filter::Any(parsed)
    })
}

fn parse_condition(
    map: &Object,
    table: Table,
    tz: Tz,
    path: &str,
    problems: &mut Problems,
) -> Option<Condition> {
    if map.is_empty() {
        problems.push(
            path,
            "empty filter: write a condition {field, op, value} or a group {all: [...]} / {any: [...]}",
        );
        return None;
    }
    raw::reject_unknown_keys(map, path, &["field", "op", "value"], problems);
    let field_path = join(path, "field");
    let op_path = join(path, "op");
    let value_path = join(path, "value");

    let field = raw::required(map, path, "field", problems)
        .and_then(|v| raw::as_str(v, &field_path, problems))
        .and_then(|name| match Field::parse(table, name) {
            Ok(f) => Some(f),
            Err(e) => {
                problems.push(&field_path, e);
                None
            }
        });
    let op = raw::required(map, path, "op", problems)
        .and_then(|v| raw::as_str(v, &op_path, problems))
        .and_then(|name| match Op::parse(name) {
            Some(op) => Some(op),
            None => {
                let names: Vec<&str> = OPERATORS.iter().map(|(n, _)| *n).collect();
                problems.push(
                    &op_path,
                    format!("unknown operator {name:?}; operators: {}", names.join(", ")),
                );
                None
            }
        });
    let (field, op) = (field?, op?);
    let kind = field.kind();
    if !kind.operators().contains(&op) {
        let allowed: Vec<&str> = kind.operators().iter().map(|o| o.as_str()).collect();
        problems.push(
            &op_path,
            format!(
                "{:?} does not apply to {} field {:?} (use one of: {})",
                op.as_str(),
                kind.describe(),
                field.name(),
                allowed.join(", ")
            ),
        );
        return None;
    }
    let value = raw::get(map, "value");
    if matches!(op, Op::IsSet | Op::IsNotSet) {
        if value.is_some() {
            problems.push(
                &value_path,
                format!("{:?} takes no value; remove it", op.as_str()),
            );
            return None;
        }
        let test = if op == Op::IsSet {
            Test::IsSet
        } else {
            Test::IsNotSet
        };
        return Some(Condition { field, op, test });
    }
    let Some(value) = value else {
        problems.push(
            &value_path,
            format!("required for operator {:?}", op.as_str()),
        );
        return None;
    };
    let ctx = ValueCtx {
        path: &value_path,
        op,
        tz,
    };
    let test = match kind {
        FieldKind::Text => ctx.text(value, false, problems).map(Test::Text),
        FieldKind::Phone => ctx.text(value, true, problems).map(Test::Text),
        FieldKind::Id => ctx.id(value, problems),
        FieldKind::Reference => ctx.reference(value, problems),
        FieldKind::Enum => ctx.situation(value, problems),
        FieldKind::DateTime => ctx.time(value, problems).map(Test::Time),
        FieldKind::Custom => ctx.custom(value, problems),
    }?;
    Some(Condition { field, op, test })
}

struct ValueCtx<'a> {
    path: &'a str,
    op: Op,
    tz: Tz,
}

impl ValueCtx<'_> {
    /// The value as a list for `in` / `not_in` / `between`, each element checked by `one`.
    fn list<T>(
        &self,
        value: &Value,
        problems: &mut Problems,
        mut one: impl FnMut(&Value, &str, &mut Problems) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Value::Array(items) = value else {
            raw::wrong_type(
                problems,
                self.path,
                &format!("a list of values for {:?}", self.op.as_str()),
                value,
            );
            return None;
        };
        if items.is_empty() {
            problems.push(
                self.path,
                format!("{:?} needs at least one value", self.op.as_str()),
            );
            return None;
        }
        if items.len() > MAX_LIST {
            problems.push(self.path, format!("at most {MAX_LIST} values"));
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match one(item, &index(self.path, i), problems) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn scalar_only(&self, value: &Value, problems: &mut Problems) -> bool {
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            let expected = if self.op == Op::Between {
                "a list of two values [from, to]"
            } else {
                "a single value"
            };
            raw::wrong_type(
                problems,
                self.path,
                &format!("{expected} for {:?}", self.op.as_str()),
                value,
            );
            return false;
        }
        true
    }

    fn text(&self, value: &Value, phone: bool, problems: &mut Problems) -> Option<TextTest> {
        let one = |v: &Value, path: &str, problems: &mut Problems| -> Option<String> {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    raw::wrong_type(problems, path, "a string", other);
                    return None;
                }
            };
            if phone {
                let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
                if digits.is_empty() {
                    problems.push(
                        path,
                        format!("{s:?} has no digits; a phone value needs some"),
                    );
                    return None;
                }
                Some(digits)
            } else {
                if s.is_empty() {
                    problems.push(
                        path,
                        "empty text; to find records without this field use is_not_set",
                    );
                    return None;
                }
                if s.chars().count() > MAX_TEXT {
                    problems.push(path, format!("text longer than {MAX_TEXT} characters"));
                    return None;
                }
                Some(crate::eval::fold(&s))
            }
        };
        match self.op {
            Op::In | Op::NotIn => {
                let values = self.list(value, problems, one)?;
                Some(if self.op == Op::In {
                    TextTest::In(values)
                } else {
                    TextTest::NotIn(values)
                })
            }
            _ => {
                if !self.scalar_only(value, problems) {
                    return None;
                }
                let v = one(value, self.path, problems)?;
                Some(match self.op {
                    Op::Eq => TextTest::Eq(v),
                    Op::Ne => TextTest::Ne(v),
                    Op::Contains => TextTest::Contains(v),
                    Op::NotContains => TextTest::NotContains(v),
                    _ => TextTest::StartsWith(v),
                })
            }
        }
    }

    fn id(&self, value: &Value, problems: &mut Problems) -> Option<Test> {
        let one = |v: &Value, path: &str, problems: &mut Problems| -> Option<i64> {
            match v {
                Value::Number(n) if n.is_i64() => n.as_i64(),
                Value::String(s)
                    if !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    s.parse().ok()
                }
                other => {
                    raw::wrong_type(problems, path, "an integer id", other);
                    None
                }
            }
        };
        match self.op {
            Op::In | Op::NotIn => {
                let ids = self.list(value, problems, one)?;
                Some(Test::IdIn(ids, self.op == Op::NotIn))
            }
            _ => {
                if !self.scalar_only(value, problems) {
                    return None;
                }
                let id = one(value, self.path, problems)?;
                Some(Test::IdCmp(self.cmp(), id))
            }
        }
    }

    fn cmp(&self) -> Cmp {
        match self.op {
            Op::Ne => Cmp::Ne,
            Op::Gt => Cmp::Gt,
            Op::Gte => Cmp::Gte,
            Op::Lt => Cmp::Lt,
            Op::Lte => Cmp::Lte,
            _ => Cmp::Eq,
        }
    }

    fn reference(&self, value: &Value, problems: &mut Problems) -> Option<Test> {
        let one = |v: &Value, path: &str, problems: &mut Problems| -> Option<RefValue> {
            match v {
                Value::Number(n) if n.is_i64() => n.as_i64().map(RefValue::Id),
                Value::String(s) if !s.trim().is_empty() => {
                    if s.chars().count() > MAX_TEXT {
                        problems.push(path, format!("text longer than {MAX_TEXT} characters"));
                        return None;
                    }
                    Some(RefValue::Name(crate::eval::fold(s)))
                }
                Value::String(_) => {
                    problems.push(
                        path,
                        "empty name; to find records without this field use is_not_set",
                    );
                    None
                }
                other => {
                    raw::wrong_type(problems, path, "an integer id or a name", other);
                    None
                }
            }
        };
        let negated = matches!(self.op, Op::Ne | Op::NotIn);
        match self.op {
            Op::In | Op::NotIn => Some(Test::Ref(self.list(value, problems, one)?, negated)),
            _ => {
                if !self.scalar_only(value, problems) {
                    return None;
                }
                Some(Test::Ref(vec![one(value, self.path, problems)?], negated))
            }
        }
    }

    fn situation(&self, value: &Value, problems: &mut Problems) -> Option<Test> {
        let one = |v: &Value, path: &str, problems: &mut Problems| -> Option<Situation> {
            let s = raw::as_str(v, path, problems)?;
            let parsed = Situation::parse(s);
            if parsed.is_none() {
                problems.push(
                    path,
                    format!("{s:?} is not a situation of the chats table (auto, wait_for_chat, in_chat)"),
                );
            }
            parsed
        };
        let negated = matches!(self.op, Op::Ne | Op::NotIn);
        match self.op {
            Op::In | Op::NotIn => Some(Test::Situation(self.list(value, problems, one)?, negated)),
            _ => {
                if !self.scalar_only(value, problems) {
                    return None;
                }
                Some(Test::Situation(
                    vec![one(value, self.path, problems)?],
                    negated,
                ))
            }
        }
    }

    fn time_value(v: &Value, path: &str, problems: &mut Problems) -> Option<TimeValue> {
        let s = raw::as_str(v, path, problems)?;
        let parsed = TimeValue::parse(s);
        if parsed.is_none() {
            problems.push(
                path,
                format!("{s:?} is not a date (YYYY-MM-DD) or a date-time (YYYY-MM-DDTHH:MM[:SS], optionally with Z or an offset)"),
            );
        }
        parsed
    }

    fn time(&self, value: &Value, problems: &mut Problems) -> Option<TimeTest> {
        match self.op {
            Op::Between => {
                let bounds = self.list(value, problems, Self::time_value)?;
                if bounds.len() != 2 {
                    problems.push(
                        self.path,
                        format!(
                            "\"between\" takes exactly two values [from, to], found {}",
                            bounds.len()
                        ),
                    );
                    return None;
                }
                let (a, b) = (bounds[0], bounds[1]);
                if a.start(self.tz) > b.end(self.tz) {
                    problems.push(
                        self.path,
                        "the first bound of \"between\" comes after the second",
                    );
                    return None;
                }
                Some(TimeTest::Between(a, b))
            }
            Op::WithinLast | Op::MoreThanAgo => {
                if !self.scalar_only(value, problems) {
                    return None;
                }
                let s = raw::as_str(value, self.path, problems)?;
                let Some(d) = parse_relative(s) else {
                    problems.push(
                        self.path,
                        format!(
                            "{s:?} is not a duration such as \"30m\", \"6h\", \"7d\" or \"2w\""
                        ),
                    );
                    return None;
                };
                Some(if self.op == Op::WithinLast {
                    TimeTest::WithinLast(d)
                } else {
                    TimeTest::MoreThanAgo(d)
                })
            }
            Op::On => {
                if !self.scalar_only(value, problems) {
                    return None;
                }
                let s = raw::as_str(value, self.path, problems)?;
                match parse_date(s) {
                    Some(d) => Some(TimeTest::On(d)),
                    None => {
                        problems.push(
                            self.path,
                            format!("\"on\" takes a date YYYY-MM-DD, found {s:?}"),
                        );
                        None
                    }
                }
            }
            _ => {
                if !self.scalar_only(value, problems) {
                    return None;
                }
                let v = Self::time_value(value, self.path, problems)?;
                Some(if self.op == Op::Before {
                    TimeTest::Before(v)
                } else {
                    TimeTest::After(v)
                })
            }
        }
    }

    fn number(v: &Value, path: &str, problems: &mut Problems) -> Option<f64> {
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => custom_number(s),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                raw::wrong_type(problems, path, "a number", v);
                None
            }
        }
    }

    fn custom(&self, value: &Value, problems: &mut Problems) -> Option<Test> {
        match self.op {
            Op::Eq | Op::Ne if value.is_number() => {
                let n = Self::number(value, self.path, problems)?;
                Some(Test::Number(NumTest::Cmp(self.cmp(), n)))
            }
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                if !self.scalar_only(value, problems) {
                    return None;
                }
                let n = Self::number(value, self.path, problems)?;
                Some(Test::Number(NumTest::Cmp(self.cmp(), n)))
            }
            Op::Between => {
                let numeric = matches!(value, Value::Array(items) if items.iter().all(|v| {
                    v.is_number() || v.as_str().is_some_and(|s| custom_number(s).is_some())
                }));
                if numeric {
                    let bounds = self.list(value, problems, Self::number)?;
                    if bounds.len() != 2 {
                        problems.push(
                            self.path,
                            format!(
                                "\"between\" takes exactly two values [from, to], found {}",
                                bounds.len()
                            ),
                        );
                        return None;
                    }
                    if bounds[0] > bounds[1] {
                        problems.push(
                            self.path,
                            "the first bound of \"between\" is greater than the second",
                        );
                        return None;
                    }
                    Some(Test::Number(NumTest::Between(bounds[0], bounds[1])))
                } else {
                    self.time(value, problems).map(Test::Time)
                }
            }
            Op::On | Op::Before | Op::After | Op::WithinLast | Op::MoreThanAgo => {
                self.time(value, problems).map(Test::Time)
            }
            _ => self.text(value, false, problems).map(Test::Text),
        }
    }
}

/// The number a custom field's text holds, if it is one: an optional `-`, 1 to 15 digits, and
/// optionally `.` and 1 to 15 digits. Nothing else parses (no exponent, no spaces, no
/// thousands separators), so that Postgres reads exactly the same values.
pub fn custom_number(s: &str) -> Option<f64> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |p: &str| !p.is_empty() && p.len() <= 15 && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return None;
    }
    s.parse().ok()
}

/// The same rule as [`custom_number`], as a POSIX regular expression for Postgres.
pub const CUSTOM_NUMBER_REGEX: &str = r"^-?[0-9]{1,15}(\.[0-9]{1,15})?$";
