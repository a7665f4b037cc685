//! Campaign safety, shared by the `tarefas` commands and the admin API: a manual run over
//! chosen records (`--only`) or over a run's failed items (retry-failed), the dry run
//! ("Simular"), the per-record report with its CSV, and the guard settings as JSON.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use tarefas_core::action::{Action, ChatState, FlowDecision};
use tarefas_core::guard::{self, SKIP_FREQUENCY_CAP, SKIP_OPTED_OUT};
use tarefas_core::run::ItemStatus;
use tarefas_core::Table;
use tarefas_store::guards::{self, AccountGuards, ItemRow};
use tarefas_store::runs::{self, Run};
use tarefas_store::segment::{SegmentPages, SegmentQuery};
use tarefas_store::tasks::{self, Task};
use tarefas_store::{outbox, StoreError};

/// "Executar Tarefa" over only `only` of the task's segment (a test run), or over the
/// failed records of run `retry_of`: an `ExecuteTask` and the request's options, in one
/// transaction. Returns the request id.
pub async fn execute_task_with(
    pool: &PgPool,
    task: &Task,
    requested_by: &str,
    only: Option<&[i64]>,
    retry_of: Option<i64>,
) -> Result<String, StoreError> {
    let (request_id, msg) = crate::manual_message(task, requested_by);
    let mut tx = pool.begin().await?;
    guards::put_request(&mut tx, &request_id, only, retry_of).await?;
    outbox::enqueue(
        &mut *tx,
        tarefas_proto::EXECUTE_ROUTING_KEY,
        &[tarefas_proto::encode_execute_task(&msg)],
    )
    .await?;
    tx.commit().await?;
    Ok(request_id)
}

/// "Reenviar falhas": a new run of run `run`'s task over its failed items only (never the
/// done, skipped or unknown ones). `Conflict` when it has none, or has not ended.
pub async fn retry_failed(
    pool: &PgPool,
    run: &Run,
    requested_by: &str,
) -> Result<(String, usize), StoreError> {
    if !run.status().is_terminal() {
        return Err(StoreError::Conflict(format!(
            "run {} is {}: retry its failed items once it has ended",
            run.id, run.status
        )));
    }
    let failed = guards::failed_records(pool, run.id).await?;
    if failed.is_empty() {
        return Err(StoreError::Conflict(format!(
            "run {} has no failed items",
            run.id
        )));
    }
    let task = tasks::get(pool, Some(run.account_id), run.task_id).await?;
    let id = execute_task_with(pool, &task, requested_by, Some(&failed), Some(run.id)).await?;
    Ok((id, failed.len()))
}

/// "Aprovar envio": a run held in `awaiting_approval` starts its calls (its pending items
/// are published by the workers within a second). `false` when it was not held.
pub async fn approve(pool: &PgPool, run: &Run, by: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    if !guards::approve(&mut tx, run.id, by).await? {
        return Ok(false);
    }
    tx.commit().await?;
    // Nothing pending (planned none, or all cancelled): it ends now.
    runs::try_finish(pool, run.id).await?;
    Ok(true)
}

/// What a dry run found for one record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DryItem {
    /// The record.
    pub id: i64,
    /// `call` or `skipped`.
    pub outcome: &'static str,
    /// Why it would be skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A dry run: the run as it would be planned now, and what each record would get. Huggy is
/// never called.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DryRun {
    /// Records planned.
    pub count: i64,
    /// Records that would get their call.
    pub would_call: i64,
    /// Records that would be skipped, by reason.
    pub skipped: BTreeMap<String, i64>,
    /// Each record, by id.
    pub records: Vec<DryItem>,
    /// The audience guard that applies, if any: a run of `count` above it waits for approval.
    #[serde(skip)]
    pub max_records: Option<i64>,
    /// When calls could start, if the send window is closed now.
    #[serde(skip)]
    pub window_opens: Option<DateTime<Utc>>,
}

/// Plans `task` as a run would now (its segment, narrowed to `only` when given) and says,
/// per record, what the executor's guards and the Flow policy would do: the opt-out list,
/// the frequency cap (counting the Flows already started, and those this run would start),
/// and the policy, from the mirror's chats. A closed send window is not a skip (the items
/// would wait); it is reported apart.
pub async fn dry_run(
    pool: &PgPool,
    task: &Task,
    only: Option<&[i64]>,
    now: DateTime<Utc>,
) -> Result<DryRun, StoreError> {
    let spec = task.spec()?;
    let g = guards::get(pool, task.account_id).await?;
    let filter =
        guard::narrow_to(&spec, only).map_err(|p| StoreError::Invalid(format!("--only: {p}")))?;
    let query = SegmentQuery::new(spec.table, filter.as_ref(), spec.time_zone, now);
    let mut pages = SegmentPages::new(pool.clone(), task.account_id, query, 5_000);
    let flow = match &spec.action {
        Action::RunFlow(f) => Some(f.policy),
        Action::Chat(_) => None,
    };
    let caps: Vec<_> = if flow.is_some() {
        g.cap.into_iter().chain(spec.frequency_cap).collect()
    } else {
        Vec::new()
    };
    let mut out = DryRun {
        count: 0,
        would_call: 0,
        skipped: BTreeMap::new(),
        records: Vec::new(),
        max_records: spec.max_records.or(g.max_records),
        window_opens: spec
            .send_window
            .clone()
            .or(g.send_window.clone())
            .filter(|w| !w.is_open(spec.time_zone, now))
            .map(|w| w.next_open(spec.time_zone, now)),
    };
    // Flows this run would start per contact (a contact may have several chats).
    let mut this_run: HashMap<i64, i64> = HashMap::new();
    while let Some(ids) = pages.next_page().await? {
        out.count += ids.len() as i64;
        let Some(policy) = flow else {
            for id in ids {
                out.would_call += 1;
                out.records.push(DryItem {
                    id,
                    outcome: "call",
                    reason: None,
                });
            }
            continue;
        };
        // Each record's contact and the situation the policy looks at.
        let (contact_of, situation_of): (HashMap<i64, i64>, HashMap<i64, String>) = match spec.table
        {
            Table::Chats => {
                let chats = guards::chat_situations(pool, task.account_id, &ids).await?;
                (
                    chats
                        .iter()
                        .filter_map(|(id, (_, c))| c.map(|c| (*id, c)))
                        .collect(),
                    chats.into_iter().map(|(id, (s, _))| (id, s)).collect(),
                )
            }
            _ => (
                ids.iter().map(|id| (*id, *id)).collect(),
                guards::open_chat_situations(pool, task.account_id, &ids).await?,
            ),
        };
        let contacts: Vec<i64> = contact_of.values().copied().collect();
        let suppressed = guards::suppressed_among(pool, task.account_id, &contacts).await?;
        let mut counts = Vec::new();
        for cap in &caps {
            counts.push(guards::started_within(pool, task.account_id, &contacts, cap.per).await?);
        }
        for id in ids {
            let contact = contact_of.get(&id).copied();
            let state = situation_of
                .get(&id)
                .map_or(ChatState::NoOpenChat, |s| ChatState::from_situation(s));
            let policy_skip = match policy.decide(state) {
                FlowDecision::Skip(reason) => Some(reason.to_string()),
                FlowDecision::Run(_) => None,
            };
            let guard_skip = contact.and_then(|c| {
                if suppressed.contains(&c) {
                    return Some(SKIP_OPTED_OUT.to_string());
                }
                let mine = this_run.get(&c).copied().unwrap_or(0);
                caps.iter()
                    .zip(&counts)
                    .any(|(cap, n)| n.get(&c).copied().unwrap_or(0) + mine >= i64::from(cap.max))
                    .then(|| SKIP_FREQUENCY_CAP.to_string())
            });
            // The executor's order: on Chats the policy first (its read), then the guards;
            // on Contacts the guards, then Huggy's policy.
            let reason = match spec.table {
                Table::Chats => policy_skip.or(guard_skip),
                _ => guard_skip.or(policy_skip),
            };
            match reason {
                Some(reason) => {
                    *out.skipped.entry(reason.clone()).or_insert(0) += 1;
                    out.records.push(DryItem {
                        id,
                        outcome: "skipped",
                        reason: Some(reason),
                    });
                }
                None => {
                    if let Some(c) = contact {
                        *this_run.entry(c).or_insert(0) += 1;
                    }
                    out.would_call += 1;
                    out.records.push(DryItem {
                        id,
                        outcome: "call",
                        reason: None,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Neutralizes a CSV cell that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`,
/// and tab or carriage return): it is prefixed with `'`. Then quotes it when needed.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The header of the per-record CSV.
pub const ITEMS_CSV_HEADER: &str = "id,outcome,reason,time";

/// One record of the report as a CSV line (no line break).
pub fn item_csv(row: &ItemRow) -> String {
    [
        row.id.to_string(),
        csv_cell(&row.outcome),
        csv_cell(row.reason.as_deref().unwrap_or("")),
        row.time
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default(),
    ]
    .join(",")
}

/// Contact ids of an opt-out CSV: the column named `contact_id` (or `id`, or the first),
/// `,` or `;` separated, a header optional. Every bad line is a problem (`line N: …`).
pub fn parse_csv_ids(text: &str) -> Result<Vec<i64>, Vec<String>> {
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let mut ids = Vec::new();
    let mut problems = Vec::new();
    let mut column = 0;
    let split = |l: &str| -> Vec<String> {
        l.split([',', ';', '\t'])
            .map(|c| c.trim().trim_matches('"').trim().to_string())
            .collect()
    };
    let mut first = true;
    for (n, line) in lines.by_ref() {
        let cells = split(line);
        if first {
            first = false;
            if cells.iter().all(|c| c.parse::<i64>().is_err()) {
                let lower: Vec<String> = cells.iter().map(|c| c.to_lowercase()).collect();
                column = lower
                    .iter()
                    .position(|c| c == "contact_id")
                    .or_else(|| lower.iter().position(|c| c == "id"))
                    .unwrap_or(0);
                continue;
            }
        }
        match cells.get(column).map(|c| c.parse::<i64>()) {
            Some(Ok(id)) if id > 0 => ids.push(id),
            Some(_) => problems.push(format!(
                "line {}: {:?} is not a contact id",
                n + 1,
                cells.get(column).cloned().unwrap_or_default()
            )),
            None => problems.push(format!("line {}: no column {}", n + 1, column + 1)),
        }
    }
    if problems.is_empty() {
        Ok(ids)
    } else {
        Err(problems)
    }
}

/// Parses an outcome filter (`--outcome`, `?outcome=`).
pub fn parse_outcome(s: &str) -> Result<ItemStatus, String> {
    ItemStatus::parse(s).ok_or_else(|| {
        format!("{s:?} is not an outcome (pending, sending, done, skipped, failed, unknown)")
    })
}

/// Every record of run `run_id` (of `outcome` when given), in pages, by record id.
pub async fn all_items(
    pool: &PgPool,
    run_id: i64,
    outcome: Option<ItemStatus>,
) -> Result<Vec<ItemRow>, StoreError> {
    let mut out = Vec::new();
    let mut after = i64::MIN;
    loop {
        let page = guards::items(pool, run_id, outcome, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        out.extend(page);
    }
    Ok(out)
}

/// The account's guard settings as JSON (`account show`, the API).
pub fn guards_json(g: &AccountGuards) -> Value {
    json!({
        "max_records": g.max_records,
        "max_flows_per_contact": g.cap.map(|c| c.as_flag()),
        "send_window": g.send_window.as_ref().map(|w| w.to_json()),
        "opt_out_words": if g.opt_out_words.is_empty() {
            guard::DEFAULT_OPT_OUT_WORDS.iter().map(|w| w.to_string()).collect()
        } else {
            g.opt_out_words.clone()
        },
    })
}

/// What the run page adds to [`crate::run_json`]: who approved it, what it retries, the
/// records it was limited to, and, while its items wait for the send window, when it
/// opens (`"waiting": "aguardando janela de envio"`).
pub async fn run_extras_json(pool: &PgPool, run: &Run) -> Result<Value, StoreError> {
    let x = guards::extras(pool, run.id).await?;
    let waiting = x
        .waiting_until
        .filter(|t| *t > Utc::now() && !run.status().is_terminal() && run.planned > run.settled());
    Ok(json!({
        "approved_by": x.approved_by,
        "retry_of": x.retry_of,
        "only_records": x.only_records,
        "waiting": waiting.map(|_| guard::WAITING_FOR_WINDOW),
        "window_opens_at": waiting,
    }))
}

/// Run `id` of `account_id` (when given), for the commands that act on one.
pub async fn get_run(pool: &PgPool, account_id: Option<i64>, id: i64) -> Result<Run, StoreError> {
    runs::get(pool, account_id, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_neutralized() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+5511"), "'+5511");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("opted out"), "opted out");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }

    #[test]
    fn opt_out_csv_files() {
        assert_eq!(
            parse_csv_ids("contact_id\n1001\n1002\n"),
            Ok(vec![1001, 1002])
        );
        assert_eq!(parse_csv_ids("\u{feff}nome;id\nAna;7\n"), Ok(vec![7]));
        assert_eq!(parse_csv_ids("5\n6\n"), Ok(vec![5, 6]));
        assert_eq!(
            parse_csv_ids("id\n1\nx\n"),
            Err(vec!["line 3: \"x\" is not a contact id".to_string()])
        );
    }
}
