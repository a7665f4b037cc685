//! Huggy's webhooks: `POST /webhooks/{account}` with
//! `{"token": "…", "messages": {"<event>": [ {…}, … ]}}`, or the `{"token", "validToken":
//! true}` handshake Huggy sends when the URL is saved.
//!
//! The token is compared in constant time with the account's webhook token. Contact events
//! upsert the contact; chat events upsert an open chat or remove one that left the synced
//! situations. A chat event that does not carry the chat's situation is settled by reading
//! the chat from Huggy. Events repeat and arrive out of order: the mirror never lets an older
//! `updatedAt` overwrite a newer one.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgPool;
use tarefas_huggy::model as huggy;
use tarefas_huggy::{HuggyApi, HuggyError};
use tarefas_store::mirror;

use crate::convert;

/// The largest webhook body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Contact events Tarefas applies.
pub const CONTACT_EVENTS: &[&str] = &["createdCustomer", "updatedCustomer"];
/// Chat events Tarefas applies.
pub const CHAT_EVENTS: &[&str] = &[
    "startedChat",
    "agentEntered",
    "closedChat",
    "updatedWorkflowStep",
    "receivedAllMessage",
];

/// One account the webhook endpoint serves.
pub struct WebhookAccount<H> {
    /// Internal account id.
    pub account_id: i64,
    /// The token Huggy sends with every webhook of this account.
    pub token: String,
    /// A client for the account, to read chats whose events lack their state.
    pub huggy: H,
}

/// What the endpoint needs.
pub struct WebhookState<H> {
    /// The mirror.
    pub pool: PgPool,
    /// Accounts by name.
    pub accounts: HashMap<String, WebhookAccount<H>>,
}

/// The webhook router (plus `/healthz`).
pub fn router<H: HuggyApi + 'static>(state: Arc<WebhookState<H>>) -> Router {
    Router::new()
        .route("/webhooks/{account}", post(receive::<H>))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Compares two secrets in time that depends only on their lengths, never on where they
/// differ: `subtle`'s constant-time equality, which the optimizer cannot turn into an early
/// exit. An empty expected token never matches (an account without a webhook token refuses
/// every webhook).
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && bool::from(given.ct_eq(expected))
}

fn reject(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({ "error": reason }))).into_response()
}

/// What applying one webhook did.
#[derive(Debug, Default, serde::Serialize)]
struct Applied {
    contacts: u64,
    chats_upserted: u64,
    chats_removed: u64,
    ignored: u64,
    /// Contacts added to the opt-out list by a message that was an opt-out word.
    opted_out: u64,
}

/// Message events whose text may be an opt-out word.
pub const MESSAGE_EVENTS: &[&str] = &["receivedMessage", "receivedAllMessage"];

/// Who sent a message, when the item says it was not the customer (an agent, the bot, …).
fn sent_by_company(item: &Value) -> bool {
    item.get("senderType")
        .and_then(Value::as_str)
        .is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            ["agent", "bot", "system", "company", "flow", "automation"]
                .iter()
                .any(|w| t.contains(w))
        })
}

/// The customer's contact id of a message item: its chat's customer, or the item's.
fn message_contact(item: &Value) -> Option<i64> {
    let id = |v: &Value| match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    item.pointer("/chat/customer/id")
        .and_then(id)
        .or_else(|| item.pointer("/customer/id").and_then(id))
        .or_else(|| item.pointer("/contact/id").and_then(id))
}

async fn receive<H: HuggyApi>(
    State(state): State<Arc<WebhookState<H>>>,
    Path(account): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(acct) = state.accounts.get(&account) else {
        return reject(StatusCode::NOT_FOUND, "unknown account");
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return reject(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let Some(token) = body.get("token").and_then(Value::as_str) else {
        return reject(StatusCode::UNAUTHORIZED, "missing token");
    };
    if !constant_time_eq(token.as_bytes(), acct.token.as_bytes()) {
        tracing::warn!(account, "webhook with a wrong token rejected");
        return reject(StatusCode::UNAUTHORIZED, "wrong token");
    }
    if body.get("validToken").and_then(Value::as_bool) == Some(true) {
        return (StatusCode::OK, Json(json!({ "ok": true }))).into_response();
    }
    let Some(messages) = body.get("messages").and_then(Value::as_object) else {
        return reject(
            StatusCode::BAD_REQUEST,
            "expected \"messages\": {event: [...]}",
        );
    };
    match apply(&state.pool, acct, messages).await {
        Ok(applied) => (StatusCode::OK, Json(applied)).into_response(),
        Err(e) => {
            tracing::error!(account, error.message = %e, "webhook not applied");
            // 503 makes Huggy deliver it again later; nothing was lost.
            reject(StatusCode::SERVICE_UNAVAILABLE, "not applied; retry later")
        }
    }
}

/// Finds the record in an event item: the item itself or its `contact`/`customer`/`chat`.
fn record<'a>(item: &'a Value, keys: &[&str]) -> &'a Value {
    keys.iter()
        .find_map(|k| item.get(*k).filter(|v| v.is_object()))
        .unwrap_or(item)
}

async fn apply<H: HuggyApi>(
    pool: &PgPool,
    acct: &WebhookAccount<H>,
    messages: &serde_json::Map<String, Value>,
) -> Result<Applied, crate::SyncError> {
    let now = Utc::now();
    let mut applied = Applied::default();
    let mut words: Option<Vec<String>> = None;
    for (event, items) in messages {
        let Some(items) = items.as_array() else {
            applied.ignored += 1;
            continue;
        };
        // A customer's message whose whole text is an opt-out word (SAIR, PARAR, …) puts
        // its contact on the account's opt-out list, before the message's chat is applied.
        if MESSAGE_EVENTS.contains(&event.as_str()) {
            for item in items {
                let Some(text) = item.get("body").and_then(Value::as_str) else {
                    continue;
                };
                if sent_by_company(item) {
                    continue;
                }
                if words.is_none() {
                    words = Some(
                        tarefas_store::guards::get(pool, acct.account_id)
                            .await?
                            .opt_out_words,
                    );
                }
                let list = words.as_deref().unwrap_or_default();
                if let (true, Some(contact)) = (
                    tarefas_core::guard::is_opt_out(text, list),
                    message_contact(item),
                ) {
                    applied.opted_out += tarefas_store::guards::suppress(
                        pool,
                        acct.account_id,
                        &[contact],
                        "webhook",
                    )
                    .await?;
                    tracing::info!(contact, "contact opted out by message");
                }
            }
        }
        let contact_event = CONTACT_EVENTS.contains(&event.as_str());
        let chat_event = CHAT_EVENTS.contains(&event.as_str());
        for item in items {
            if contact_event {
                match serde_json::from_value::<huggy::Contact>(
                    record(item, &["contact", "customer"]).clone(),
                ) {
                    Ok(c) => {
                        mirror::upsert_contacts(
                            pool,
                            acct.account_id,
                            &[convert::contact(&c)],
                            now,
                        )
                        .await?;
                        applied.contacts += 1;
                    }
                    Err(_) => applied.ignored += 1,
                }
            } else if chat_event {
                let Ok(mut chat) =
                    serde_json::from_value::<huggy::Chat>(record(item, &["chat"]).clone())
                else {
                    applied.ignored += 1;
                    continue;
                };
                if chat.situation.is_empty() {
                    // The event does not say where the chat stands: ask Huggy.
                    match acct.huggy.get_chat(chat.id).await {
                        Ok(fresh) => chat = fresh,
                        Err(HuggyError::Permanent { status: 404, .. }) => {
                            applied.chats_removed +=
                                mirror::delete_chats(pool, acct.account_id, &[chat.id]).await?;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                match convert::chat(&chat) {
                    Some(open) => {
                        mirror::upsert_chats(pool, acct.account_id, &[open], now).await?;
                        applied.chats_upserted += 1;
                    }
                    None => {
                        applied.chats_removed += delete_chat_unless_newer(
                            pool,
                            acct.account_id,
                            chat.id,
                            chat.updated_at.map(|t| t.with_timezone(&Utc)),
                        )
                        .await?;
                    }
                }
            } else {
                applied.ignored += 1;
            }
        }
    }
    Ok(applied)
}

/// Removes a chat that left the synced situations, unless the mirror holds a version newer
/// than the event (an out-of-order close must not remove a chat that reopened since).
async fn delete_chat_unless_newer(
    pool: &PgPool,
    account_id: i64,
    id: i64,
    updated_at: Option<chrono::DateTime<Utc>>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM chats WHERE account_id = $1 AND id = $2
           AND ($3::timestamptz IS NULL OR updated_at IS NULL OR updated_at <= $3)",
    )
    .bind(account_id)
    .bind(id)
    .bind(updated_at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(b"a", b""));
        // No expected token: nothing matches, not even an empty one.
        assert!(!constant_time_eq(b"", b""));
        // A difference anywhere is found: first byte, last byte, every byte in between.
        let token = b"hook-0c61aa9f-7d1e-4c8b-9a2f-0b6e4d3c2a11";
        for i in 0..token.len() {
            let mut other = *token;
            other[i] ^= 0x01;
            assert!(!constant_time_eq(&other, token), "byte {i}");
        }
        assert!(constant_time_eq(token, token));
    }
}
