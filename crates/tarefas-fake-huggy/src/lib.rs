//! A fake Huggy: an axum server that speaks the contract of `docs/huggy-api.md` over a
//! deterministic data set, applies each action's effect to its state, records every call,
//! and injects latency, 429s, 5xx and malformed answers on demand. Tests, the demo
//! (`tarefas fake-huggy`) and the benchmarks run it.
//!
//! Start it as a library service with [`serve`], or in a test with [`FakeHuggy::start`]
//! (binds `127.0.0.1:0`; point [`tarefas_huggy::HuggyConfig::base_url`] at [`FakeHuggy::base_url`]).
//!
//! # Endpoints
//! The Huggy API, at the root and under `/companies/{companyId}`, all requiring
//! `Authorization: Bearer <token>` (else 401 `{"message": …}`):
//!
//! | endpoint | effect |
//! |---|---|
//! | `GET /contacts?page=N` | 20 contacts a page from page 0, `[]` past the end |
//! | `GET /contacts/{id}` | the contact, or 404 |
//! | `PUT /contacts/{id}/execFlow` | Flow policy against the contact's open chat; new `auto` chat if none |
//! | `GET /chats?page=N[&situation=S]` | open chats (auto, wait_for_chat, in_chat), or those in `S` |
//! | `GET /chats/{id}` | the chat, or 404 |
//! | `POST /chats/{id}/flow` | → `auto`, agent removed |
//! | `PUT /chats/{id}/agent` | → `in_chat` with that agent |
//! | `PUT /chats/{id}/workflow` | sets `workflow.stepId` |
//! | `PUT /chats/{id}/close` | → `closed` (leaves the open list), tabulation kept |
//! | `PUT /chats/{id}/queue` ~ | → `wait_for_chat`, agent removed |
//! | `PUT /chats/{id}/department` ~ | sets the department (422 if unknown) |
//! | `PUT /chats/{id}/reopen` ~ | closed/finishing → `auto` (422 if open) |
//! | `PUT /chats/{id}/tabulation` ~ | sets the tabulation |
//!
//! Chat actions other than reopen and tabulation answer 422 on a closed or finishing chat;
//! closing a closed chat is 422. Every change bumps the chat's `updatedAt`.
//!
//! Test endpoints (never authenticated, never faulted, never recorded):
//! `GET /__fake/healthz`; `GET|DELETE /__fake/calls` (the [`CallRecord`] log);
//! `GET|DELETE /__fake/stats` ([`FakeStats`]); `GET|PUT /__fake/faults` ([`Faults`]);
//! `GET|PUT|DELETE /__fake/contacts/{id}` (a [`Contact`] JSON); `GET|PUT|DELETE
//! /__fake/chats/{id}` (PUT takes a [`Chat`] JSON or a [`FakeChat`] `{"chat", "extras"}`).

pub mod data;
mod server;
mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use data::Dataset;
pub use state::{ChatExtras, FakeChat};

use server::Shared;
use tarefas_huggy::model::{Chat, Contact};

/// The token the fake accepts unless told otherwise.
pub const DEFAULT_TOKEN: &str = "fake-huggy-token";

/// How to build and run a fake Huggy. The CLI's `tarefas fake-huggy` fills it from
/// `--contacts N --chats M --seed S --token T --latency-ms --rate-429 --rate-5xx
/// --capacity-rps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FakeConfig {
    /// How many contacts to generate (`--contacts`, default 200).
    pub contacts: usize,
    /// How many chats to generate (`--chats`, default 150).
    pub chats: usize,
    /// Seed of the data set and of which calls fail (`--seed`, default 42).
    pub seed: u64,
    /// The API token clients must send as `Bearer` (`--token`, default [`DEFAULT_TOKEN`]).
    pub token: String,
    /// Faults injected from the start (changeable at run time).
    pub faults: Faults,
    /// Keep a log of every API call (stats are counted either way; default true).
    pub record_calls: bool,
    /// Most calls kept in the log; later calls are only counted, as dropped (default 100,000).
    /// Turn `record_calls` off for long benchmarks.
    pub call_log_cap: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            contacts: 200,
            chats: 150,
            seed: 42,
            token: DEFAULT_TOKEN.to_owned(),
            faults: Faults::default(),
            record_calls: true,
            call_log_cap: 100_000,
        }
    }
}

/// Faults injected into the Huggy API endpoints (never into `/__fake/*`). Which calls fail
/// is chosen from the seed and a request counter, so a sequential run fails the same calls
/// every time. JSON: the field names below, all optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every API answer, in milliseconds, after the call took effect
    /// (`--latency-ms`).
    pub latency_ms: u64,
    /// Share (0.0..=1.0) of calls answered 429 (`--rate-429`).
    pub rate_429: f64,
    /// `Retry-After` seconds sent with those 429s (none when `None`).
    pub retry_after_secs: Option<u64>,
    /// Share (0.0..=1.0) of calls answered 503 (`--rate-5xx`).
    pub rate_5xx: f64,
    /// Requests per second served before answering 429 with `Retry-After: 1` (a token
    /// bucket holding one second's worth; `--capacity-rps`). `None`: unlimited.
    pub capacity_rps: Option<f64>,
    /// Answer every API call with this status (e.g. 401 to revoke the token).
    pub forced_status: Option<u16>,
    /// Share (0.0..=1.0) of successful calls whose answer body is cut short (the call took
    /// effect; the client sees a decode error).
    pub rate_malformed: f64,
}

impl Faults {
    /// Checks shares are within 0..=1 (429 and 5xx together too), capacity positive and
    /// the forced status a valid HTTP status.
    pub fn validate(&self) -> Result<(), String> {
        for (name, share) in [
            ("rate_429", self.rate_429),
            ("rate_5xx", self.rate_5xx),
            ("rate_malformed", self.rate_malformed),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be between 0 and 1, got {share}"));
            }
        }
        if self.rate_429 + self.rate_5xx > 1.0 {
            return Err("rate_429 + rate_5xx must not exceed 1".into());
        }
        if let Some(capacity) = self.capacity_rps {
            if !(capacity.is_finite() && capacity > 0.0) {
                return Err(format!("capacity_rps must be positive, got {capacity}"));
            }
        }
        if let Some(status) = self.forced_status {
            if !(100..=599).contains(&status) {
                return Err(format!(
                    "forced_status must be an HTTP status, got {status}"
                ));
            }
        }
        Ok(())
    }
}

/// One API call as the fake saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Request path as sent (with any company prefix).
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Method and route pattern without the company prefix, e.g. `PUT /contacts/{id}/execFlow`.
    pub route: String,
    /// The `{companyId}` of a prefixed path.
    pub company_id: Option<String>,
    /// The contact the call was about.
    pub contact_id: Option<i64>,
    /// The chat the call was about.
    pub chat_id: Option<i64>,
    /// The request body (JSON; a string when it was not JSON).
    pub body: Option<serde_json::Value>,
    /// The status answered.
    pub status: u16,
    /// The fault injected, if any: `forced`, `auth`, `content_type`, `capacity`,
    /// `rate_429`, `rate_5xx`, `malformed`, `body`.
    pub fault: Option<String>,
}

/// Counts of API calls since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeStats {
    /// All API calls.
    pub total: u64,
    /// Calls by status answered.
    pub by_status: BTreeMap<u16, u64>,
    /// Calls by route (`PUT /contacts/{id}/execFlow`) and status.
    pub by_route: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Calls now in the log.
    pub recorded: usize,
    /// Calls not logged because the log was full.
    pub dropped: u64,
    /// TCP connections accepted (clients that reuse connections keep this low).
    pub connections: u64,
}

impl FakeStats {
    /// Calls to `route` answered `status`.
    pub fn count(&self, route: &str, status: u16) -> u64 {
        self.by_route
            .get(route)
            .and_then(|s| s.get(&status))
            .copied()
            .unwrap_or(0)
    }
}

/// Serves a fake Huggy on `listener` until `shutdown` completes (then drains in-flight
/// calls). The library form of `tarefas fake-huggy`.
pub async fn serve(
    listener: TcpListener,
    config: FakeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let shared =
        Arc::new(Shared::new(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?);
    serve_shared(listener, shared, shutdown).await
}

async fn serve_shared(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let counter = shared.clone();
    let listener = listener.tap_io(move |tcp| {
        counter.connection_accepted();
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error.message = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, server::router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A fake Huggy running in this process, for tests: its address, its call log, and direct
/// access to its state and faults. Dropping it stops the server.
pub struct FakeHuggy {
    addr: SocketAddr,
    token: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for FakeHuggy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHuggy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeHuggy {
    /// Generates the data set and serves it on `127.0.0.1:<free port>`.
    pub async fn start(config: FakeConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(
            Shared::new(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_shared(listener, shared.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            token: config.token,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the base URL for clients.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The API calls logged so far, in arrival order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.calls()
    }

    /// Empties the call log (stats are kept; see [`FakeHuggy::reset_stats`]).
    pub fn clear_calls(&self) {
        self.shared.clear_calls();
    }

    /// Call counts by route and status.
    pub fn stats(&self) -> FakeStats {
        self.shared.stats()
    }

    /// Zeroes the call counts.
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults in force (refused if [`Faults::validate`] fails).
    pub fn set_faults(&self, faults: Faults) -> Result<(), String> {
        self.shared.set_faults(faults)
    }

    /// A contact, as `GET /contacts/{id}` would answer.
    pub fn contact(&self, id: i64) -> Option<Contact> {
        self.shared.store().contact(id).cloned()
    }

    /// Every contact, by id.
    pub fn contacts(&self) -> Vec<Contact> {
        self.shared.store().all_contacts()
    }

    /// A chat, as `GET /chats/{id}` would answer.
    pub fn chat(&self, id: i64) -> Option<Chat> {
        self.shared.store().chat(id).map(|c| c.chat.clone())
    }

    /// A chat with what only the fake knows (agent, tabulation, Flows run).
    pub fn chat_record(&self, id: i64) -> Option<FakeChat> {
        self.shared.store().chat(id).cloned()
    }

    /// Every chat in any situation, by id.
    pub fn chats(&self) -> Vec<FakeChat> {
        self.shared.store().all_chats()
    }

    /// The contact's current open chat, as execFlow picks it.
    pub fn open_chat_of(&self, contact_id: i64) -> Option<i64> {
        self.shared.store().open_chat_of(contact_id)
    }

    /// Adds or replaces a contact.
    pub fn upsert_contact(&self, contact: Contact) {
        self.shared.store().upsert_contact(contact);
    }

    /// Removes a contact; false if it did not exist.
    pub fn remove_contact(&self, id: i64) -> bool {
        self.shared.store().remove_contact(id)
    }

    /// Adds or replaces a chat, with no agent, tabulation or Flow runs.
    pub fn upsert_chat(&self, chat: Chat) {
        self.upsert_chat_record(FakeChat {
            chat,
            extras: ChatExtras::default(),
        });
    }

    /// Adds or replaces a chat with its extras.
    pub fn upsert_chat_record(&self, record: FakeChat) {
        self.shared.store().upsert_chat(record);
    }

    /// Removes a chat; false if it did not exist.
    pub fn remove_chat(&self, id: i64) -> bool {
        self.shared.store().remove_chat(id)
    }

    /// Stops accepting calls, lets in-flight ones finish, and waits for the server to end.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for FakeHuggy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
