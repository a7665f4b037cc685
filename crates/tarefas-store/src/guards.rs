//! Campaign safety in Postgres (migrations/0012_campaign_safety.sql): the account's guard
//! settings, the opt-out list, the ledger of Flows started per contact that the frequency
//! cap counts (reserved before a call, exact under any number of workers), the options of a
//! manual request (`--only`, retry-failed), runs held for approval, and the per-record
//! report of a run.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use tarefas_core::guard::{FrequencyCap, SendWindow};
use tarefas_core::run::{ItemStatus, RunStatus};

use crate::StoreError;

/// An account's guard settings (defaults for its tasks).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountGuards {
    /// Audience guard for tasks that set no `max_records`.
    pub max_records: Option<i64>,
    /// Flows per contact across every task.
    pub cap: Option<FrequencyCap>,
    /// Quiet hours for tasks that set no `send_window`.
    pub send_window: Option<SendWindow>,
    /// Opt-out words; empty: the defaults.
    pub opt_out_words: Vec<String>,
}

type GuardRow = (
    Option<i64>,
    Option<i32>,
    Option<i64>,
    Option<serde_json::Value>,
    Option<Vec<String>>,
);

/// The account's guards (all unset when it never set any).
pub async fn get(pool: &PgPool, account_id: i64) -> Result<AccountGuards, StoreError> {
    let row: Option<GuardRow> = sqlx::query_as(
        "SELECT max_records, cap_max, cap_period_s, send_window, opt_out_words
         FROM account_guards WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_optional(pool)
    .await?;
    let Some((max_records, cap_max, cap_period_s, window, words)) = row else {
        return Ok(AccountGuards::default());
    };
    let cap = match (cap_max, cap_period_s) {
        (Some(max), Some(secs)) => Some(FrequencyCap {
            max: max as u32,
            per: Duration::seconds(secs),
        }),
        _ => None,
    };
    let send_window = match window {
        Some(v) => {
            let mut p = tarefas_core::Problems::default();
            let w = tarefas_core::guard::parse_send_window(&v, "send_window", &mut p);
            if !p.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "account {account_id}'s send window: {p}"
                )));
            }
            w
        }
        None => None,
    };
    Ok(AccountGuards {
        max_records,
        cap,
        send_window,
        opt_out_words: words.unwrap_or_default(),
    })
}

/// A change to an account's guards: `Some(None)` clears a setting, `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct GuardUpdate {
    /// Audience guard.
    pub max_records: Option<Option<i64>>,
    /// Frequency cap.
    pub cap: Option<Option<FrequencyCap>>,
    /// Quiet hours.
    pub send_window: Option<Option<SendWindow>>,
    /// Opt-out words (`Some(vec![])`: back to the defaults).
    pub opt_out_words: Option<Vec<String>>,
}

/// Applies `update` to the account's guards and returns them.
pub async fn update(
    pool: &PgPool,
    account_id: i64,
    update: &GuardUpdate,
) -> Result<AccountGuards, StoreError> {
    let mut g = get(pool, account_id).await?;
    if let Some(v) = update.max_records {
        g.max_records = v;
    }
    if let Some(v) = update.cap {
        g.cap = v;
    }
    if let Some(v) = &update.send_window {
        g.send_window = v.clone();
    }
    if let Some(v) = &update.opt_out_words {
        g.opt_out_words = v.clone();
    }
    sqlx::query(
        "INSERT INTO account_guards (account_id, max_records, cap_max, cap_period_s, send_window, opt_out_words)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (account_id) DO UPDATE SET max_records = $2, cap_max = $3, cap_period_s = $4,
             send_window = $5, opt_out_words = $6, updated_at = now()",
    )
    .bind(account_id)
    .bind(g.max_records)
    .bind(g.cap.map(|c| c.max as i32))
    .bind(g.cap.map(|c| c.per.num_seconds()))
    .bind(g.send_window.as_ref().map(|w| w.to_json()))
    .bind((!g.opt_out_words.is_empty()).then_some(&g.opt_out_words))
    .execute(pool)
    .await?;
    Ok(g)
}

// ---- the opt-out list ----

/// Adds contacts to the account's opt-out list (`source`: cli, api, csv, webhook). Returns
/// how many were not on it.
pub async fn suppress(
    pool: &PgPool,
    account_id: i64,
    contact_ids: &[i64],
    source: &str,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "INSERT INTO suppressions (account_id, contact_id, source)
         SELECT $1, c, $3 FROM UNNEST($2::bigint[]) AS c ON CONFLICT DO NOTHING",
    )
    .bind(account_id)
    .bind(contact_ids)
    .bind(source)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Removes contacts from the opt-out list. Returns how many were on it.
pub async fn unsuppress(
    pool: &PgPool,
    account_id: i64,
    contact_ids: &[i64],
) -> Result<u64, StoreError> {
    let done =
        sqlx::query("DELETE FROM suppressions WHERE account_id = $1 AND contact_id = ANY($2)")
            .bind(account_id)
            .bind(contact_ids)
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}

/// One entry of the opt-out list.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Suppression {
    /// The Huggy contact.
    pub contact_id: i64,
    /// How it was added: cli, api, csv, webhook.
    pub source: String,
    /// When.
    pub added_at: DateTime<Utc>,
}

/// The account's opt-out list, by contact id, after `after`, at most `limit`.
pub async fn suppressions(
    pool: &PgPool,
    account_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<Suppression>, StoreError> {
    Ok(sqlx::query_as::<_, Suppression>(
        "SELECT contact_id, source, added_at FROM suppressions
         WHERE account_id = $1 AND contact_id > $2 ORDER BY contact_id LIMIT $3",
    )
    .bind(account_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Which of `contact_ids` are on the account's opt-out list.
pub async fn suppressed_among(
    pool: &PgPool,
    account_id: i64,
    contact_ids: &[i64],
) -> Result<HashSet<i64>, StoreError> {
    if contact_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT contact_id FROM suppressions WHERE account_id = $1 AND contact_id = ANY($2)",
    )
    .bind(account_id)
    .bind(contact_ids)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().collect())
}

// ---- the frequency cap's ledger ----

/// What a reservation under the frequency cap found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Under every cap: a Flow start is reserved (its ledger row id); confirm it after the
    /// call ([`confirm`]) or take it back when the call surely did not happen ([`cancel`]).
    Reserved(i64),
    /// The contact reached a cap with Flows that were started: skip ("frequency cap").
    Capped,
    /// The contact would reach a cap only with calls still in flight, whose outcome is not
    /// known yet: wait and ask again (never skip a contact that may end up under it). A
    /// reservation neither confirmed nor taken back within 10 minutes (its worker died
    /// mid-call) counts as a Flow started: it may have been.
    Busy,
}

/// Reserves a Flow start for `contact_id` under every cap of `caps` (the strictest
/// decides), atomically for every worker: the contact's ledger is locked (a transaction
/// advisory lock on the account and contact) while it is counted and the reservation
/// written.
pub async fn reserve(
    pool: &PgPool,
    account_id: i64,
    contact_id: i64,
    caps: &[FrequencyCap],
    run_id: i64,
    item_id: i64,
) -> Result<Reserve, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(lock_key(account_id))
        .bind(contact_key(contact_id))
        .execute(&mut *tx)
        .await?;
    for cap in caps {
        let (started, in_flight): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE confirmed OR started_at < now() - interval '10 minutes'),
                    count(*) FILTER (WHERE NOT confirmed AND started_at >= now() - interval '10 minutes')
             FROM flow_starts
             WHERE account_id = $1 AND contact_id = $2 AND started_at > now() - $3::bigint * interval '1 second'",
        )
        .bind(account_id)
        .bind(contact_id)
        .bind(cap.per.num_seconds())
        .fetch_one(&mut *tx)
        .await?;
        if started >= i64::from(cap.max) {
            tx.commit().await?;
            return Ok(Reserve::Capped);
        }
        if started + in_flight >= i64::from(cap.max) {
            tx.commit().await?;
            return Ok(Reserve::Busy);
        }
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO flow_starts (account_id, contact_id, run_id, item_id, confirmed)
         VALUES ($1, $2, $3, $4, false) RETURNING id",
    )
    .bind(account_id)
    .bind(contact_id)
    .bind(run_id)
    .bind(item_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reserve::Reserved(id))
}

/// [`reserve`] for many contacts at once (one item each, e.g. a batch of a run on
/// Contacts: `(contact, item)` pairs with distinct contacts), in one transaction: the
/// contacts' locks are taken in a fixed order (no deadlock between workers), their counts
/// read with one query per cap, and the reservations written with one insert. The outcome
/// per contact.
pub async fn reserve_many(
    pool: &PgPool,
    account_id: i64,
    wanted: &[(i64, i64)],
    caps: &[FrequencyCap],
    run_id: i64,
) -> Result<HashMap<i64, Reserve>, StoreError> {
    let mut out = HashMap::new();
    if wanted.is_empty() || caps.is_empty() {
        return Ok(out);
    }
    let contacts: Vec<i64> = wanted.iter().map(|w| w.0).collect();
    let mut keys: Vec<i32> = contacts.iter().map(|c| contact_key(*c)).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT count(pg_advisory_xact_lock($1, k)) FROM (SELECT k FROM UNNEST($2::int[]) AS k ORDER BY k) s",
    )
    .bind(lock_key(account_id))
    .bind(&keys)
    .execute(&mut *tx)
    .await?;
    for cap in caps {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT contact_id, count(*) FILTER (WHERE confirmed OR started_at < now() - interval '10 minutes'),
                    count(*) FILTER (WHERE NOT confirmed AND started_at >= now() - interval '10 minutes')
             FROM flow_starts
             WHERE account_id = $1 AND contact_id = ANY($2)
               AND started_at > now() - $3::bigint * interval '1 second'
             GROUP BY contact_id",
        )
        .bind(account_id)
        .bind(&contacts)
        .bind(cap.per.num_seconds())
        .fetch_all(&mut *tx)
        .await?;
        for (contact, started, in_flight) in rows {
            let verdict = if started >= i64::from(cap.max) {
                Reserve::Capped
            } else if started + in_flight >= i64::from(cap.max) {
                Reserve::Busy
            } else {
                continue;
            };
            // Capped wins over Busy across caps.
            let e = out.entry(contact).or_insert(verdict);
            if verdict == Reserve::Capped {
                *e = Reserve::Capped;
            }
        }
    }
    let free: Vec<(i64, i64)> = wanted
        .iter()
        .filter(|(c, _)| !out.contains_key(c))
        .copied()
        .collect();
    let (cs, items): (Vec<i64>, Vec<i64>) = free.iter().copied().unzip();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "INSERT INTO flow_starts (account_id, contact_id, run_id, item_id, confirmed)
         SELECT $1, c, $2, i, false FROM UNNEST($3::bigint[], $4::bigint[]) AS s(c, i)
         RETURNING id, contact_id",
    )
    .bind(account_id)
    .bind(run_id)
    .bind(&cs)
    .bind(&items)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for (id, contact) in rows {
        out.insert(contact, Reserve::Reserved(id));
    }
    Ok(out)
}

fn lock_key(account_id: i64) -> i32 {
    // The advisory lock's first key: this ledger's namespace mixed with the account.
    (0x7A4F_0000_i64 ^ account_id) as i32
}

fn contact_key(contact_id: i64) -> i32 {
    (contact_id ^ (contact_id >> 32)) as i32
}

/// The reserved Flow start happened (or may have: it counts).
pub async fn confirm(pool: &PgPool, reservation: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE flow_starts SET confirmed = true, started_at = now() WHERE id = $1")
        .bind(reservation)
        .execute(pool)
        .await?;
    Ok(())
}

/// The reserved Flow start surely did not happen: it does not count.
pub async fn cancel(pool: &PgPool, reservation: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM flow_starts WHERE id = $1")
        .bind(reservation)
        .execute(pool)
        .await?;
    Ok(())
}

/// Settles many reservations at once: `confirmed` happened (or may have), `cancelled`
/// surely did not.
pub async fn settle_reservations(
    pool: &PgPool,
    confirmed: &[i64],
    cancelled: &[i64],
) -> Result<(), StoreError> {
    if !confirmed.is_empty() {
        sqlx::query(
            "UPDATE flow_starts SET confirmed = true, started_at = now() WHERE id = ANY($1)",
        )
        .bind(confirmed)
        .execute(pool)
        .await?;
    }
    if !cancelled.is_empty() {
        sqlx::query("DELETE FROM flow_starts WHERE id = ANY($1)")
            .bind(cancelled)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Records Flows started without a reservation (no cap applied to them): `(contact, item)`
/// of run `run_id`. A later cap counts them.
pub async fn log_started(
    pool: &PgPool,
    account_id: i64,
    run_id: i64,
    started: &[(i64, i64)],
) -> Result<(), StoreError> {
    if started.is_empty() {
        return Ok(());
    }
    let contacts: Vec<i64> = started.iter().map(|s| s.0).collect();
    let items: Vec<i64> = started.iter().map(|s| s.1).collect();
    sqlx::query(
        "INSERT INTO flow_starts (account_id, contact_id, run_id, item_id)
         SELECT $1, c, $2, i FROM UNNEST($3::bigint[], $4::bigint[]) AS s(c, i)",
    )
    .bind(account_id)
    .bind(run_id)
    .bind(&contacts)
    .bind(&items)
    .execute(pool)
    .await?;
    Ok(())
}

/// How many Flows each of `contact_ids` had started (or in flight) within `per` of now (for
/// the dry run).
pub async fn started_within(
    pool: &PgPool,
    account_id: i64,
    contact_ids: &[i64],
    per: Duration,
) -> Result<HashMap<i64, i64>, StoreError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT contact_id, count(*) FROM flow_starts
         WHERE account_id = $1 AND contact_id = ANY($2)
           AND started_at > now() - $3::bigint * interval '1 second'
         GROUP BY contact_id",
    )
    .bind(account_id)
    .bind(contact_ids)
    .bind(per.num_seconds())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

// ---- manual requests' options ----

/// Records the options of a manual request, in the transaction that writes its
/// `ExecuteTask` to the outbox.
pub async fn put_request(
    tx: &mut Transaction<'_, Postgres>,
    request_id: &str,
    only_records: Option<&[i64]>,
    retry_of: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO run_requests (request_id, only_records, retry_of) VALUES ($1, $2, $3)",
    )
    .bind(request_id)
    .bind(only_records)
    .bind(retry_of)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Copies a request's options onto its run (once; a run planned again keeps them) and
/// returns the run's `only_records`.
pub async fn apply_request(pool: &PgPool, run_id: i64) -> Result<Option<Vec<i64>>, StoreError> {
    let only: Option<Option<Vec<i64>>> = sqlx::query_scalar(
        "UPDATE runs r SET only_records = COALESCE(r.only_records, q.only_records),
                           retry_of = COALESCE(r.retry_of, q.retry_of)
         FROM run_requests q WHERE r.id = $1 AND q.request_id = r.request_id
         RETURNING r.only_records",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?;
    if let Some(only) = only {
        return Ok(only);
    }
    Ok(
        sqlx::query_scalar::<_, Option<Vec<i64>>>("SELECT only_records FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

/// The record ids of run `run_id`'s failed items (never done, skipped or unknown ones).
pub async fn failed_records(pool: &PgPool, run_id: i64) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT record_id FROM run_items WHERE run_id = $1 AND status = '{}' ORDER BY record_id",
        ItemStatus::Failed
    ))
    .bind(run_id)
    .fetch_all(pool)
    .await?)
}

// ---- runs held for approval ----

/// Holds a run that finished planning with more records than its audience guard allows:
/// `planning → awaiting_approval`, with the reason. Returns whether it moved.
pub async fn hold_for_approval(
    pool: &PgPool,
    run_id: i64,
    reason: &str,
) -> Result<bool, StoreError> {
    assert!(RunStatus::Planning.can_become(RunStatus::AwaitingApproval));
    let done = sqlx::query(&format!(
        "UPDATE runs SET status = '{}', status_reason = $2 WHERE id = $1 AND status = '{}'",
        RunStatus::AwaitingApproval,
        RunStatus::Planning
    ))
    .bind(run_id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Approves a held run, in the caller's transaction: `awaiting_approval → running`, and its
/// pending items are due to be published at once (`waiting_until = now()`: the workers'
/// waker publishes them, as for an opened send window). Returns whether it moved.
pub async fn approve(
    tx: &mut Transaction<'_, Postgres>,
    run_id: i64,
    by: &str,
) -> Result<bool, StoreError> {
    assert!(RunStatus::AwaitingApproval.can_become(RunStatus::Running));
    let done = sqlx::query(&format!(
        "UPDATE runs SET status = '{}', status_reason = NULL, approved_by = $2, last_progress_at = now(),
                waiting_until = now()
         WHERE id = $1 AND status = '{}'",
        RunStatus::Running,
        RunStatus::AwaitingApproval
    ))
    .bind(run_id)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets (or clears) when the run's waiting items may next be sent (the send window).
pub async fn set_waiting(
    pool: &PgPool,
    run_id: i64,
    until: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE runs SET waiting_until = $2 WHERE id = $1 AND waiting_until IS DISTINCT FROM $2",
    )
    .bind(run_id)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(())
}

/// Takes the runs whose send window has opened (`waiting_until` passed), at most `limit`,
/// in the caller's transaction: their waiting mark is cleared and each is locked until the
/// transaction ends, so that one worker republishes each. Their ids.
pub async fn take_woken(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE runs SET waiting_until = NULL WHERE id IN (
             SELECT id FROM runs WHERE waiting_until IS NOT NULL AND waiting_until <= now()
             ORDER BY waiting_until LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// What the run page shows beyond the counters: who approved it, what it retries, the
/// records it was limited to, when its waiting items may be sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct RunExtras {
    /// Who approved a held run.
    pub approved_by: Option<String>,
    /// The run whose failed items this one retries.
    pub retry_of: Option<i64>,
    /// The records it was limited to (`--only`, retry-failed).
    pub only_records: Option<Vec<i64>>,
    /// Items wait for the send window until then.
    pub waiting_until: Option<DateTime<Utc>>,
}

/// [`RunExtras`] of run `run_id`.
pub async fn extras(pool: &PgPool, run_id: i64) -> Result<RunExtras, StoreError> {
    Ok(sqlx::query_as::<_, RunExtras>(
        "SELECT approved_by, retry_of, only_records, waiting_until FROM runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?
    .unwrap_or_default())
}

// ---- the per-record report ----

/// One record of a run, as `run items` lists it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ItemRow {
    /// The record (contact or chat id).
    pub id: i64,
    /// Its outcome (the item's status).
    pub outcome: String,
    /// Why it was skipped or failed, or a note.
    pub reason: Option<String>,
    /// When it was settled.
    pub time: Option<DateTime<Utc>>,
}

/// The records of run `run_id` (with outcome `outcome` when given), by record id after
/// `after`, at most `limit`.
pub async fn items(
    pool: &PgPool,
    run_id: i64,
    outcome: Option<ItemStatus>,
    after: i64,
    limit: i64,
) -> Result<Vec<ItemRow>, StoreError> {
    Ok(sqlx::query_as::<_, ItemRow>(
        "SELECT record_id AS id, status AS outcome, reason, finished_at AS time FROM run_items
         WHERE run_id = $1 AND ($2::text IS NULL OR status = $2) AND record_id > $3
         ORDER BY record_id LIMIT $4",
    )
    .bind(run_id)
    .bind(outcome.map(|o| o.as_str()))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

// ---- what the dry run reads from the mirror ----

/// The situation of each contact's open chat in the mirror (the newest, as Huggy's
/// execFlow picks it), for the contacts of `contact_ids` that have one.
pub async fn open_chat_situations(
    pool: &PgPool,
    account_id: i64,
    contact_ids: &[i64],
) -> Result<HashMap<i64, String>, StoreError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (contact_id) contact_id, situation FROM chats
         WHERE account_id = $1 AND contact_id = ANY($2)
         ORDER BY contact_id, created_at DESC NULLS LAST, id DESC",
    )
    .bind(account_id)
    .bind(contact_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The situation and contact of each chat of `chat_ids` in the mirror.
pub async fn chat_situations(
    pool: &PgPool,
    account_id: i64,
    chat_ids: &[i64],
) -> Result<HashMap<i64, (String, Option<i64>)>, StoreError> {
    let rows: Vec<(i64, String, Option<i64>)> = sqlx::query_as(
        "SELECT id, situation, contact_id FROM chats WHERE account_id = $1 AND id = ANY($2)",
    )
    .bind(account_id)
    .bind(chat_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id, s, c)| (id, (s, c))).collect())
}
