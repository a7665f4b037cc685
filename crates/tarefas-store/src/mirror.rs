//! The mirror of Huggy's contacts and chats: the rows that segments are evaluated on.
//!
//! Records arrive from `tarefas-core` ([`Contact`], [`Chat`]) and are written in batches, one
//! multi-row statement per batch (`INSERT … SELECT … FROM UNNEST(…)`). Every column that a
//! filter reads is computed here, in Rust, with the core's own functions, so that the SQL
//! compiler in [`crate::segment`] compares exactly what the in-memory evaluator compares:
//!
//! * `*_lc` columns hold [`normalize_text`] (Unicode lower case; NULL when empty);
//! * `mobile` / `phone` hold the digits only (NULL when there are none);
//! * `*_name_lc` columns hold the reference's name lower-cased;
//! * `custom_lc` holds the non-empty custom values lower-cased; `custom_num` the ones that
//!   [`custom_number`] reads; `custom_date` the ones that [`TimeValue::parse`] reads, as
//!   `{"d": date}`, `{"l": local date-time}` or `{"t": instant in UTC}`, each written as a
//!   *sort key*: fixed-width text whose byte order is the chronological order (see
//!   [`date_key`], [`local_key`], [`instant_key`]). The compiler compares these as text
//!   (`COLLATE "C"`), which is exact to the nanosecond and can never fail on an odd year.
//!
//! Two representation rules a reader should know:
//! * Postgres text cannot hold NUL, so NUL characters are removed from every text (and
//!   custom key) before it is stored;
//! * `timestamptz` holds microseconds, so times are stored floored to the microsecond.
//!
//! **Freshness rule.** A batch never makes a row older: an incoming record replaces the
//! stored one only when the stored `updated_at` is NULL, or the incoming `updated_at` is
//! set and not older than the stored one (equal replaces, so a re-sync refreshes). An
//! incoming NULL `updated_at` never replaces a row that has one. Whatever the outcome,
//! `synced_at` moves forward (to the later of the stored and the incoming value), so
//! [`prune_unseen`] can tell which rows a full sync no longer saw.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};
use tarefas_core::eval::{normalize_text, Chat, Contact, Reference};
use tarefas_core::segment::{custom_number, Situation, Table};
use tarefas_core::time::TimeValue;

use crate::StoreError;

/// A chat as the mirror keeps it: the core's [`Chat`] plus what only the store needs.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorChat {
    /// The chat itself (what filters read).
    pub chat: Chat,
    /// The Huggy contact the chat is with, when known.
    pub contact_id: Option<i64>,
    /// The uuid of the chat's channel (the WhatsApp number a Flow runs on).
    pub channel_uuid: Option<String>,
}

impl From<Chat> for MirrorChat {
    fn from(chat: Chat) -> Self {
        MirrorChat {
            chat,
            contact_id: None,
            channel_uuid: None,
        }
    }
}

/// Writes `contacts` into the mirror of `account_id`, as seen by a sync that started at (or
/// is running at) `synced_at`. One statement for the whole batch; within the batch a
/// repeated id keeps its freshest version (by the freshness rule, later wins a tie).
///
/// Returns the number of rows inserted or touched (a row kept because it is fresher than
/// the incoming record still counts: its `synced_at` moved).
pub async fn upsert_contacts<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    contacts: &[Contact],
    synced_at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let batch = freshest(contacts, |c| c.id, |c| c.updated_at);
    if batch.is_empty() {
        return Ok(0);
    }
    let n = batch.len();
    let mut ids = Vec::with_capacity(n);
    let mut name = Vec::with_capacity(n);
    let mut name_lc = Vec::with_capacity(n);
    let mut email = Vec::with_capacity(n);
    let mut email_lc = Vec::with_capacity(n);
    let mut mobile = Vec::with_capacity(n);
    let mut phone = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    let (mut group_id, mut group_name, mut group_name_lc) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut org_id, mut org_name, mut org_name_lc) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut custom = Vec::with_capacity(n);
    let mut custom_lc = Vec::with_capacity(n);
    let mut custom_num = Vec::with_capacity(n);
    let mut custom_date = Vec::with_capacity(n);

    for c in batch {
        ids.push(c.id);
        let (raw, lc) = text_columns(c.name.as_deref());
        name.push(raw);
        name_lc.push(lc);
        let (raw, lc) = text_columns(c.email.as_deref());
        email.push(raw);
        email_lc.push(lc);
        mobile.push(c.mobile.as_deref().and_then(|s| normalize_text(s, true)));
        phone.push(c.phone.as_deref().and_then(|s| normalize_text(s, true)));
        created_at.push(c.created_at.map(floor_micros));
        updated_at.push(c.updated_at.map(floor_micros));
        let (id, raw, lc) = reference_columns(c.group.as_ref());
        group_id.push(id);
        group_name.push(raw);
        group_name_lc.push(lc);
        let (id, raw, lc) = reference_columns(c.organization.as_ref());
        org_id.push(id);
        org_name.push(raw);
        org_name_lc.push(lc);
        let cols = custom_columns(&c.custom);
        custom.push(cols.raw);
        custom_lc.push(cols.lc);
        custom_num.push(cols.num);
        custom_date.push(cols.date);
    }

    let done = sqlx::query(CONTACTS_UPSERT.as_str())
        .bind(account_id)
        .bind(ids)
        .bind(name)
        .bind(name_lc)
        .bind(email)
        .bind(email_lc)
        .bind(mobile)
        .bind(phone)
        .bind(created_at)
        .bind(updated_at)
        .bind(group_id)
        .bind(group_name)
        .bind(group_name_lc)
        .bind(org_id)
        .bind(org_name)
        .bind(org_name_lc)
        .bind(custom)
        .bind(custom_lc)
        .bind(custom_num)
        .bind(custom_date)
        .bind(synced_at)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Writes `chats` into the mirror of `account_id`; the same batch, freshness and
/// `synced_at` rules as [`upsert_contacts`].
pub async fn upsert_chats<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    chats: &[MirrorChat],
    synced_at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let batch = freshest(chats, |c| c.chat.id, |c| c.chat.updated_at);
    if batch.is_empty() {
        return Ok(0);
    }
    let n = batch.len();
    let mut ids = Vec::with_capacity(n);
    let mut contact_id = Vec::with_capacity(n);
    let mut situation = Vec::with_capacity(n);
    let (mut dep_id, mut dep_name, mut dep_name_lc) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut chan_id, mut chan_uuid, mut chan_name, mut chan_name_lc) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut wf_id, mut wf_name, mut wf_name_lc) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut step_id, mut step_name, mut step_name_lc) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut created_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    let mut last_message_at = Vec::with_capacity(n);

    for m in batch {
        let c = &m.chat;
        ids.push(c.id);
        contact_id.push(m.contact_id);
        situation.push(c.situation.as_str().to_string());
        let (id, raw, lc) = reference_columns(c.department.as_ref());
        dep_id.push(id);
        dep_name.push(raw);
        dep_name_lc.push(lc);
        let (id, raw, lc) = reference_columns(c.channel.as_ref());
        chan_id.push(id);
        chan_uuid.push(m.channel_uuid.as_deref().map(strip_nul));
        chan_name.push(raw);
        chan_name_lc.push(lc);
        let (id, raw, lc) = reference_columns(c.workflow.as_ref());
        wf_id.push(id);
        wf_name.push(raw);
        wf_name_lc.push(lc);
        let (id, raw, lc) = reference_columns(c.workflow_step.as_ref());
        step_id.push(id);
        step_name.push(raw);
        step_name_lc.push(lc);
        created_at.push(c.created_at.map(floor_micros));
        updated_at.push(c.updated_at.map(floor_micros));
        last_message_at.push(c.last_message_at.map(floor_micros));
    }

    let done = sqlx::query(CHATS_UPSERT.as_str())
        .bind(account_id)
        .bind(ids)
        .bind(contact_id)
        .bind(situation)
        .bind(dep_id)
        .bind(dep_name)
        .bind(dep_name_lc)
        .bind(chan_id)
        .bind(chan_uuid)
        .bind(chan_name)
        .bind(chan_name_lc)
        .bind(wf_id)
        .bind(wf_name)
        .bind(wf_name_lc)
        .bind(step_id)
        .bind(step_name)
        .bind(step_name_lc)
        .bind(created_at)
        .bind(updated_at)
        .bind(last_message_at)
        .bind(synced_at)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Removes the contacts `ids` of `account_id` (e.g. deleted in Huggy); returns how many were
/// there.
pub async fn delete_contacts<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    ids: &[i64],
) -> Result<u64, StoreError> {
    delete(executor, Table::Contacts, account_id, ids).await
}

/// Removes the chats `ids` of `account_id` (e.g. closed: they left the synced situations);
/// returns how many were there.
pub async fn delete_chats<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    ids: &[i64],
) -> Result<u64, StoreError> {
    delete(executor, Table::Chats, account_id, ids).await
}

async fn delete<'e>(
    executor: impl PgExecutor<'e>,
    table: Table,
    account_id: i64,
    ids: &[i64],
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let sql = match table {
        Table::Contacts => "DELETE FROM contacts WHERE account_id = $1 AND id = ANY($2)",
        Table::Chats => "DELETE FROM chats WHERE account_id = $1 AND id = ANY($2)",
    };
    let done = sqlx::query(sql)
        .bind(account_id)
        .bind(ids)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// After a full sync that started at `before`: deletes the rows of `account_id` in `table`
/// that the sync did not see (their `synced_at` is older than `before`). Returns how many.
pub async fn prune_unseen<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    table: Table,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let sql = match table {
        Table::Contacts => "DELETE FROM contacts WHERE account_id = $1 AND synced_at < $2",
        Table::Chats => "DELETE FROM chats WHERE account_id = $1 AND synced_at < $2",
    };
    let done = sqlx::query(sql)
        .bind(account_id)
        .bind(before)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

const CONTACT_SELECT: &str = "SELECT id, name, email, mobile, phone, created_at, updated_at, \
     group_id, group_name, organization_id, organization_name, custom FROM contacts";
const CHAT_SELECT: &str = "SELECT id, contact_id, situation, department_id, department_name, \
     channel_id, channel_uuid, channel_name, workflow_id, workflow_name, workflow_step_id, \
     workflow_step_name, created_at, updated_at, last_message_at FROM chats";

/// Every contact of `account_id`, by id, as the mirror holds it (phones as digits). Meant
/// for tests and small accounts; use [`load_contacts_by_id`] for a sample of a segment.
pub async fn load_contacts<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
) -> Result<Vec<Contact>, StoreError> {
    let sql = format!("{CONTACT_SELECT} WHERE account_id = $1 ORDER BY id");
    let rows = sqlx::query(&sql)
        .bind(account_id)
        .fetch_all(executor)
        .await?;
    rows.iter().map(contact_from_row).collect()
}

/// The contacts `ids` of `account_id` that the mirror holds, by id (e.g. a preview sample).
pub async fn load_contacts_by_id<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    ids: &[i64],
) -> Result<Vec<Contact>, StoreError> {
    let sql = format!("{CONTACT_SELECT} WHERE account_id = $1 AND id = ANY($2) ORDER BY id");
    let rows = sqlx::query(&sql)
        .bind(account_id)
        .bind(ids)
        .fetch_all(executor)
        .await?;
    rows.iter().map(contact_from_row).collect()
}

/// Every chat of `account_id`, by id, as the mirror holds it.
pub async fn load_chats<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
) -> Result<Vec<MirrorChat>, StoreError> {
    let sql = format!("{CHAT_SELECT} WHERE account_id = $1 ORDER BY id");
    let rows = sqlx::query(&sql)
        .bind(account_id)
        .fetch_all(executor)
        .await?;
    rows.iter().map(chat_from_row).collect()
}

/// The chats `ids` of `account_id` that the mirror holds, by id.
pub async fn load_chats_by_id<'e>(
    executor: impl PgExecutor<'e>,
    account_id: i64,
    ids: &[i64],
) -> Result<Vec<MirrorChat>, StoreError> {
    let sql = format!("{CHAT_SELECT} WHERE account_id = $1 AND id = ANY($2) ORDER BY id");
    let rows = sqlx::query(&sql)
        .bind(account_id)
        .bind(ids)
        .fetch_all(executor)
        .await?;
    rows.iter().map(chat_from_row).collect()
}

fn contact_from_row(row: &PgRow) -> Result<Contact, StoreError> {
    let custom: Value = row.try_get("custom")?;
    let custom = match custom {
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok(Contact {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        mobile: row.try_get("mobile")?,
        phone: row.try_get("phone")?,
        email: row.try_get("email")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        group: reference_from_row(row, "group_id", "group_name")?,
        organization: reference_from_row(row, "organization_id", "organization_name")?,
        custom,
    })
}

fn chat_from_row(row: &PgRow) -> Result<MirrorChat, StoreError> {
    let situation: String = row.try_get("situation")?;
    let situation = Situation::parse(&situation)
        .ok_or_else(|| StoreError::Invalid(format!("chat situation {situation:?}")))?;
    Ok(MirrorChat {
        chat: Chat {
            id: row.try_get("id")?,
            situation,
            department: reference_from_row(row, "department_id", "department_name")?,
            channel: reference_from_row(row, "channel_id", "channel_name")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            workflow: reference_from_row(row, "workflow_id", "workflow_name")?,
            workflow_step: reference_from_row(row, "workflow_step_id", "workflow_step_name")?,
            last_message_at: row.try_get("last_message_at")?,
        },
        contact_id: row.try_get("contact_id")?,
        channel_uuid: row.try_get("channel_uuid")?,
    })
}

fn reference_from_row(row: &PgRow, id: &str, name: &str) -> Result<Option<Reference>, StoreError> {
    let id: Option<i64> = row.try_get(id)?;
    let name: Option<String> = row.try_get(name)?;
    Ok(id.map(|id| Reference { id, name }))
}

/// The columns of each table that a batch writes, with their Postgres array types, in the
/// order of the `UNNEST` arguments (`$2`, `$3`, …; `$1` is the account, the last one
/// `synced_at`).
const CONTACT_COLUMNS: &[(&str, &str)] = &[
    ("id", "bigint"),
    ("name", "text"),
    ("name_lc", "text"),
    ("email", "text"),
    ("email_lc", "text"),
    ("mobile", "text"),
    ("phone", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("group_id", "bigint"),
    ("group_name", "text"),
    ("group_name_lc", "text"),
    ("organization_id", "bigint"),
    ("organization_name", "text"),
    ("organization_name_lc", "text"),
    ("custom", "jsonb"),
    ("custom_lc", "jsonb"),
    ("custom_num", "jsonb"),
    ("custom_date", "jsonb"),
];

const CHAT_COLUMNS: &[(&str, &str)] = &[
    ("id", "bigint"),
    ("contact_id", "bigint"),
    ("situation", "text"),
    ("department_id", "bigint"),
    ("department_name", "text"),
    ("department_name_lc", "text"),
    ("channel_id", "bigint"),
    ("channel_uuid", "text"),
    ("channel_name", "text"),
    ("channel_name_lc", "text"),
    ("workflow_id", "bigint"),
    ("workflow_name", "text"),
    ("workflow_name_lc", "text"),
    ("workflow_step_id", "bigint"),
    ("workflow_step_name", "text"),
    ("workflow_step_name_lc", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("last_message_at", "timestamptz"),
];

static CONTACTS_UPSERT: LazyLock<String> =
    LazyLock::new(|| upsert_sql("contacts", CONTACT_COLUMNS));
static CHATS_UPSERT: LazyLock<String> = LazyLock::new(|| upsert_sql("chats", CHAT_COLUMNS));

/// The batch upsert of `table`, built from its column list (names only; every value is a
/// bound array).
fn upsert_sql(table: &str, columns: &[(&str, &str)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 2))
        .collect();
    let synced = columns.len() + 2;
    // The freshness rule (see the module documentation).
    let fresh = format!(
        "({table}.updated_at IS NULL OR (EXCLUDED.updated_at IS NOT NULL \
         AND EXCLUDED.updated_at >= {table}.updated_at))"
    );
    let sets: Vec<String> = names
        .iter()
        .filter(|c| **c != "id")
        .map(|c| format!("{c} = CASE WHEN {fresh} THEN EXCLUDED.{c} ELSE {table}.{c} END"))
        .collect();
    format!(
        "INSERT INTO {table} (account_id, {cols}, synced_at) \
         SELECT $1, {u_cols}, ${synced} FROM UNNEST({arrays}) AS u({cols}) \
         ON CONFLICT (account_id, id) DO UPDATE SET {sets}, \
         synced_at = GREATEST({table}.synced_at, EXCLUDED.synced_at)",
        cols = names.join(", "),
        u_cols = names
            .iter()
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        arrays = arrays.join(", "),
        sets = sets.join(", "),
    )
}

/// The records of a batch with one version per id: a later record replaces an earlier one
/// with the same id when the freshness rule lets it. Keeps the order of first appearance.
fn freshest<T>(
    records: &[T],
    id: impl Fn(&T) -> i64,
    updated_at: impl Fn(&T) -> Option<DateTime<Utc>>,
) -> Vec<&T> {
    let mut position: HashMap<i64, usize> = HashMap::with_capacity(records.len());
    let mut out: Vec<&T> = Vec::with_capacity(records.len());
    for r in records {
        match position.get(&id(r)) {
            Some(&i) => {
                if replaces(updated_at(out[i]), updated_at(r)) {
                    out[i] = r;
                }
            }
            None => {
                position.insert(id(r), out.len());
                out.push(r);
            }
        }
    }
    out
}

/// The freshness rule: does a record updated at `incoming` replace one updated at `stored`?
fn replaces(stored: Option<DateTime<Utc>>, incoming: Option<DateTime<Utc>>) -> bool {
    match (stored, incoming) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(s), Some(i)) => floor_micros(i) >= floor_micros(s),
    }
}

fn strip_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_string()
    }
}

/// A text field as stored (NUL removed) and its normalized form (NULL when empty).
fn text_columns(s: Option<&str>) -> (Option<String>, Option<String>) {
    match s.map(strip_nul) {
        Some(raw) => {
            let lc = normalize_text(&raw, false);
            (Some(raw), lc)
        }
        None => (None, None),
    }
}

/// A reference's id, name and lower-cased name.
fn reference_columns(r: Option<&Reference>) -> (Option<i64>, Option<String>, Option<String>) {
    match r {
        Some(r) => {
            let name = r.name.as_deref().map(strip_nul);
            let lc = name.as_deref().map(tarefas_core::eval::fold);
            (Some(r.id), name, lc)
        }
        None => (None, None, None),
    }
}

/// The four JSON columns of a contact's custom fields.
struct CustomColumns {
    raw: Value,
    lc: Value,
    num: Value,
    date: Value,
}

fn custom_columns(custom: &BTreeMap<String, String>) -> CustomColumns {
    let (mut raw, mut lc, mut num, mut date) = (Map::new(), Map::new(), Map::new(), Map::new());
    for (k, v) in custom {
        let (k, v) = (strip_nul(k), strip_nul(v));
        if let Some(l) = normalize_text(&v, false) {
            lc.insert(k.clone(), Value::String(l));
        }
        if let Some(n) = custom_number(&v).and_then(serde_json::Number::from_f64) {
            num.insert(k.clone(), Value::Number(n));
        }
        if let Some(t) = TimeValue::parse(&v) {
            let (form, key) = match t {
                TimeValue::Date(d) => ("d", date_key(d)),
                TimeValue::Local(l) => ("l", local_key(l)),
                TimeValue::Instant(i) => ("t", instant_key(i)),
            };
            let mut o = Map::new();
            o.insert(form.to_string(), Value::String(key));
            date.insert(k.clone(), Value::Object(o));
        }
        raw.insert(k, Value::String(v));
    }
    CustomColumns {
        raw: Value::Object(raw),
        lc: Value::Object(lc),
        num: Value::Object(num),
        date: Value::Object(date),
    }
}

/// `t` floored to the microsecond (what a `timestamptz` can hold).
pub(crate) fn floor_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let sub = i64::from(t.timestamp_subsec_nanos() % 1_000);
    t - Duration::nanoseconds(sub)
}

/// A year as a sort key: `YYYY` for years 0 to 9999 (what dates are written with); earlier
/// years as `-` and six digits counting up to year −1 (`-999999`), later ones as `~` and six
/// digits, so that byte order stays chronological across every year chrono can hold.
fn year_key(y: i32) -> String {
    if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else if y < 0 {
        format!("-{:06}", 1_000_000 + y)
    } else {
        format!("~{y:06}")
    }
}

/// The sort key of a date: `YYYY-MM-DD` (see [`year_key`] for years outside 0..=9999).
pub fn date_key(d: NaiveDate) -> String {
    format!("{}-{:02}-{:02}", year_key(d.year()), d.month(), d.day())
}

/// The sort key of a local date-time, to the second: `YYYY-MM-DDTHH:MM:SS`.
pub fn local_key(l: NaiveDateTime) -> String {
    format!(
        "{}T{:02}:{:02}:{:02}",
        date_key(l.date()),
        l.hour(),
        l.minute(),
        l.second()
    )
}

/// The sort key of an instant: RFC 3339 in UTC with nine fraction digits,
/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (a leap second reads `:60`).
pub fn instant_key(t: DateTime<Utc>) -> String {
    let n = t.nanosecond();
    format!(
        "{}T{:02}:{:02}:{:02}.{:09}Z",
        date_key(t.date_naive()),
        t.hour(),
        t.minute(),
        t.second() + n / 1_000_000_000,
        n % 1_000_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_like_time() {
        let dates = [
            NaiveDate::from_ymd_opt(-2, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(-1, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(-1, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(0, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(999, 5, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(10000, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(10001, 1, 1).unwrap(),
        ];
        for w in dates.windows(2) {
            assert!(date_key(w[0]) < date_key(w[1]), "{} < {}", w[0], w[1]);
        }
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let instants = [
            t("2026-12-31T23:59:59.999999999Z"),
            t("2026-12-31T23:59:60Z"),
            t("2026-12-31T23:59:60.5Z"),
            t("2027-01-01T00:00:00Z"),
            t("2027-01-01T00:00:00.000000001Z"),
        ];
        for w in instants.windows(2) {
            assert!(w[0] < w[1]);
            assert!(instant_key(w[0]) < instant_key(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(
            instant_key(t("2026-03-08T02:30:00-05:00")),
            "2026-03-08T07:30:00.000000000Z"
        );
    }

    #[test]
    fn a_later_batch_member_replaces_by_the_freshness_rule() {
        let t = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        assert!(replaces(None, None));
        assert!(replaces(None, t("2026-01-01T00:00:00Z")));
        assert!(!replaces(t("2026-01-01T00:00:00Z"), None));
        assert!(replaces(
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T00:00:00Z")
        ));
        assert!(!replaces(
            t("2026-01-02T00:00:00Z"),
            t("2026-01-01T00:00:00Z")
        ));
    }

    #[test]
    fn custom_columns_parse_numbers_and_dates() {
        let c = custom_columns(&BTreeMap::from([
            ("n".to_string(), "-3.50".to_string()),
            ("d".to_string(), "2026-12-10".to_string()),
            ("l".to_string(), "2026-12-10 09:30".to_string()),
            ("t".to_string(), "2026-12-10T09:30:00-03:00".to_string()),
            ("e".to_string(), String::new()),
            ("x".to_string(), "A\0b".to_string()),
        ]));
        assert_eq!(c.num, serde_json::json!({"n": -3.5}));
        assert_eq!(
            c.date,
            serde_json::json!({
                "d": {"d": "2026-12-10"},
                "l": {"l": "2026-12-10T09:30:00"},
                "t": {"t": "2026-12-10T12:30:00.000000000Z"},
            })
        );
        assert_eq!(c.lc["x"], "ab");
        assert!(c.lc.get("e").is_none());
        assert_eq!(c.raw["e"], "");
    }
}
