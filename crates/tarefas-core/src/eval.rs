//! The in-memory evaluator: the reference meaning of a filter over one record. The Postgres
//! compiler in `tarefas-store` is tested against it and must never disagree.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::segment::{custom_number, Field, Filter, NumTest, RefValue, Situation, Test, TextTest};
use crate::time::TimeValue;

/// A reference to another Huggy object (group, organization, department, channel, workflow
/// or workflow step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Huggy id.
    pub id: i64,
    /// Name, when Huggy gives one.
    pub name: Option<String>,
}

/// A contact, as mirrored from Huggy.
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(missing_docs)]
pub struct Contact {
    pub id: i64,
    pub name: Option<String>,
    pub mobile: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub group: Option<Reference>,
    pub organization: Option<Reference>,
    /// Custom fields, as text.
    pub custom: BTreeMap<String, String>,
}

/// An open chat, as mirrored from Huggy.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct Chat {
    pub id: i64,
    pub situation: Situation,
    pub department: Option<Reference>,
    pub channel: Option<Reference>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub workflow: Option<Reference>,
    pub workflow_step: Option<Reference>,
    pub last_message_at: Option<DateTime<Utc>>,
}

/// A record of either table.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A row of the contacts table.
    Contact(Contact),
    /// A row of the chats table.
    Chat(Chat),
}

/// What one field of a record holds.
enum Val<'a> {
    Text(Option<&'a str>),
    Id(i64),
    Ref(Option<&'a Reference>),
    Situation(Situation),
    Time(Option<DateTime<Utc>>),
    Custom(Option<&'a str>),
    /// The field does not exist on this record's table (never matches).
    Absent,
}

impl Record {
    /// The record's Huggy id.
    pub fn id(&self) -> i64 {
        match self {
            Record::Contact(c) => c.id,
            Record::Chat(c) => c.id,
        }
    }

    fn value(&self, field: &Field) -> Val<'_> {
        match (self, field) {
            (_, Field::Id) => Val::Id(self.id()),
            (Record::Contact(c), f) => match f {
                Field::Name => Val::Text(c.name.as_deref()),
                Field::Mobile => Val::Text(c.mobile.as_deref()),
                Field::Phone => Val::Text(c.phone.as_deref()),
                Field::Email => Val::Text(c.email.as_deref()),
                Field::CreatedAt => Val::Time(c.created_at),
                Field::UpdatedAt => Val::Time(c.updated_at),
                Field::Group => Val::Ref(c.group.as_ref()),
                Field::Organization => Val::Ref(c.organization.as_ref()),
                Field::Custom(k) => Val::Custom(c.custom.get(k).map(String::as_str)),
                _ => Val::Absent,
            },
            (Record::Chat(c), f) => match f {
                Field::Department => Val::Ref(c.department.as_ref()),
                Field::Channel => Val::Ref(c.channel.as_ref()),
                Field::Situation => Val::Situation(c.situation),
                Field::CreatedAt => Val::Time(c.created_at),
                Field::UpdatedAt => Val::Time(c.updated_at),
                Field::Workflow => Val::Ref(c.workflow.as_ref()),
                Field::WorkflowStep => Val::Ref(c.workflow_step.as_ref()),
                Field::LastMessageAt => Val::Time(c.last_message_at),
                _ => Val::Absent,
            },
        }
    }
}

/// True when `record` belongs to the segment `filter` describes, for a run that started at
/// `run_started_at` (relative dates) in the task's zone `tz` (whole days). No filter matches
/// every record.
pub fn matches(
    filter: Option<&Filter>,
    record: &Record,
    run_started_at: DateTime<Utc>,
    tz: Tz,
) -> bool {
    filter.is_none_or(|f| eval(f, record, run_started_at, tz))
}

fn eval(filter: &Filter, record: &Record, now: DateTime<Utc>, tz: Tz) -> bool {
    match filter {
        Filter::All(members) => members.iter().all(|f| eval(f, record, now, tz)),
        Filter::Any(members) => members.iter().any(|f| eval(f, record, now, tz)),
        Filter::Condition(c) => {
            let phone = matches!(c.field, Field::Mobile | Field::Phone);
            test(&c.test, record.value(&c.field), phone, now, tz)
        }
    }
}

/// Text as the evaluator compares it: lower-cased, or digits only for phones; empty is unset.
pub fn normalize_text(s: &str, phone: bool) -> Option<String> {
    let n: String = if phone {
        s.chars().filter(|c| c.is_ascii_digit()).collect()
    } else {
        fold(s)
    };
    (!n.is_empty()).then_some(n)
}

fn test(t: &Test, v: Val<'_>, phone: bool, now: DateTime<Utc>, tz: Tz) -> bool {
    match (t, v) {
        (_, Val::Absent) => false,
        (Test::IsSet, v) => is_set(&v, phone),
        (Test::IsNotSet, v) => !is_set(&v, phone),
        (Test::Text(tt), Val::Text(s) | Val::Custom(s)) => {
            text_test(tt, s.and_then(|s| normalize_text(s, phone)))
        }
        (Test::IdCmp(cmp, n), Val::Id(id)) => cmp.holds(id, *n),
        (Test::IdIn(ids, negated), Val::Id(id)) => ids.contains(&id) != *negated,
        (Test::Ref(values, negated), Val::Ref(Some(r))) => {
            values.iter().any(|v| ref_eq(v, r)) != *negated
        }
        (Test::Situation(values, negated), Val::Situation(s)) => values.contains(&s) != *negated,
        (Test::Time(tt), Val::Time(t)) => t.is_some_and(|t| tt.range(tz, now).contains(t)),
        (Test::Time(tt), Val::Custom(s)) => s
            .and_then(TimeValue::parse)
            .is_some_and(|v| tt.range(tz, now).contains(v.start(tz))),
        (Test::Number(nt), Val::Custom(s)) => s.and_then(custom_number).is_some_and(|x| match nt {
            NumTest::Cmp(cmp, n) => cmp.holds(x, *n),
            NumTest::Between(a, b) => *a <= x && x <= *b,
        }),
        _ => false,
    }
}

/// Text as case-insensitive comparisons see it: lower-cased character by character, so that
/// a prefix or part of a word lower-cases the same as in the whole word (`str::to_lowercase`
/// treats a final Greek sigma differently at the end of a word).
pub fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn is_set(v: &Val<'_>, phone: bool) -> bool {
    match v {
        Val::Text(s) | Val::Custom(s) => s.and_then(|s| normalize_text(s, phone)).is_some(),
        Val::Ref(r) => r.is_some(),
        Val::Time(t) => t.is_some(),
        Val::Id(_) | Val::Situation(_) => true,
        Val::Absent => false,
    }
}

fn ref_eq(v: &RefValue, r: &Reference) -> bool {
    match v {
        RefValue::Id(id) => r.id == *id,
        RefValue::Name(name) => r.name.as_deref().is_some_and(|n| fold(n) == *name),
    }
}

fn text_test(t: &TextTest, s: Option<String>) -> bool {
    let Some(s) = s else { return false };
    match t {
        TextTest::Eq(v) => s == *v,
        TextTest::Ne(v) => s != *v,
        TextTest::Contains(v) => s.contains(v.as_str()),
        TextTest::NotContains(v) => !s.contains(v.as_str()),
        TextTest::StartsWith(v) => s.starts_with(v.as_str()),
        TextTest::In(vs) => vs.contains(&s),
        TextTest::NotIn(vs) => !vs.contains(&s),
    }
}
