//! A full resync of one account: page through every contact and every open chat, upsert them
//! in batches, then remove what Huggy no longer has. A sync that fails half-way removes
//! nothing.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use tarefas_core::segment::Table;
use tarefas_huggy::model::situation;
use tarefas_huggy::{HuggyApi, HuggyError};
use tarefas_store::mirror;

use crate::convert;
use crate::SyncError;

/// Records written per statement.
const BATCH: usize = 1_000;
/// Attempts per page before the sync gives up.
const ATTEMPTS: u32 = 6;

/// What one full sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Contacts read from Huggy and written.
    pub contacts: u64,
    /// Open chats read from Huggy and written.
    pub chats: u64,
    /// Contacts removed because Huggy no longer lists them.
    pub contacts_removed: u64,
    /// Chats removed because they closed or vanished.
    pub chats_removed: u64,
    /// Pages requested.
    pub pages: u64,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

/// Fetches one page, retrying what is worth retrying (a list is safe to repeat).
async fn page<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, SyncError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, HuggyError>>,
{
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        match fetch().await {
            Ok(items) => return Ok(items),
            Err(HuggyError::RateLimited { retry_after }) if attempt < ATTEMPTS => {
                tokio::time::sleep(retry_after.unwrap_or(backoff)).await;
            }
            Err(
                HuggyError::Retryable { .. }
                | HuggyError::Ambiguous { .. }
                | HuggyError::Decode { .. },
            ) if attempt < ATTEMPTS => {
                tokio::time::sleep(backoff).await;
            }
            Err(e) => return Err(SyncError::Huggy(e)),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    unreachable!("the last attempt returns")
}

/// Pages through everything of `account_id` in Huggy and brings the mirror in step.
#[tracing::instrument(skip_all, fields(account_id), err)]
pub async fn sync_account<H: HuggyApi>(
    huggy: &H,
    pool: &PgPool,
    account_id: i64,
) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let since = Utc::now();
    let mut report = SyncReport::default();

    let mut buffer = Vec::with_capacity(BATCH);
    for n in 0.. {
        let items = page(|| huggy.list_contacts(n)).await?;
        report.pages += 1;
        if items.is_empty() {
            break;
        }
        buffer.extend(items.iter().map(convert::contact));
        if buffer.len() >= BATCH {
            report.contacts += buffer.len() as u64;
            mirror::upsert_contacts(pool, account_id, &buffer, since).await?;
            buffer.clear();
        }
    }
    report.contacts += buffer.len() as u64;
    mirror::upsert_contacts(pool, account_id, &buffer, since).await?;

    let mut chats = Vec::with_capacity(BATCH);
    for s in situation::OPEN {
        for n in 0.. {
            let items = page(|| huggy.list_chats(n, Some(s))).await?;
            report.pages += 1;
            if items.is_empty() {
                break;
            }
            chats.extend(
                items
                    .iter()
                    .filter(|c| c.situation == s)
                    .filter_map(convert::chat),
            );
            if chats.len() >= BATCH {
                report.chats += chats.len() as u64;
                mirror::upsert_chats(pool, account_id, &chats, since).await?;
                chats.clear();
            }
        }
    }
    report.chats += chats.len() as u64;
    mirror::upsert_chats(pool, account_id, &chats, since).await?;

    report.contacts_removed =
        mirror::prune_unseen(pool, account_id, Table::Contacts, since).await?;
    report.chats_removed = mirror::prune_unseen(pool, account_id, Table::Chats, since).await?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        contacts = report.contacts,
        chats = report.chats,
        contacts_removed = report.contacts_removed,
        chats_removed = report.chats_removed,
        "sync done"
    );
    Ok(report)
}
