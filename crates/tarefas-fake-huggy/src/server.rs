//! The fake Huggy's HTTP side: the axum router, the middleware that authenticates, injects
//! faults and records every API call, the API handlers, and the `/__fake/*` test endpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{MatchedPath, Query, RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, MethodFilter};
use axum::{Extension, Json, Router};
use chrono::{DateTime, FixedOffset, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::{self, Dataset};
use crate::state::{now, ApiError, FakeChat, Store};
use crate::{CallRecord, FakeConfig, FakeStats, Faults};
use tarefas_huggy::client::{self, Endpoint};
use tarefas_huggy::model::{
    Chat, ChatFlowRequest, CloseRequest, Contact, DepartmentRequest, ExecFlowRequest,
    TabulationRequest, TransferRequest, WorkflowRequest,
};
use tarefas_huggy::unconfirmed;

/// Where multi-company accounts' paths start.
const COMPANY_PREFIX: &str = "/companies/{companyId}";
/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// State shared by every request and by the [`crate::FakeHuggy`] handle.
pub(crate) struct Shared {
    expected_auth: String,
    seed: u64,
    record_calls: bool,
    call_log_cap: usize,
    store: Mutex<Store>,
    faults: Mutex<FaultState>,
    counter: AtomicU64,
    connections: AtomicU64,
    log: Mutex<CallLog>,
}

struct FaultState {
    faults: Faults,
    /// Token bucket for `capacity_rps`: tokens left and when they were counted.
    tokens: f64,
    counted_at: Instant,
}

#[derive(Default)]
struct CallLog {
    records: Vec<CallRecord>,
    next_seq: u64,
    dropped: u64,
    total: u64,
    by_status: BTreeMap<u16, u64>,
    by_route: HashMap<String, BTreeMap<u16, u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(config: &FakeConfig) -> Result<Self, String> {
        config.faults.validate()?;
        Ok(Self {
            expected_auth: format!("Bearer {}", config.token),
            seed: config.seed,
            record_calls: config.record_calls,
            call_log_cap: config.call_log_cap,
            store: Mutex::new(Store::new(Dataset::generate(
                config.contacts,
                config.chats,
                config.seed,
            ))),
            faults: Mutex::new(FaultState::new(config.faults.clone())),
            counter: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            log: Mutex::new(CallLog::default()),
        })
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn calls(&self) -> Vec<CallRecord> {
        lock(&self.log).records.clone()
    }

    pub(crate) fn clear_calls(&self) {
        lock(&self.log).records.clear();
    }

    pub(crate) fn stats(&self) -> FakeStats {
        let log = lock(&self.log);
        FakeStats {
            total: log.total,
            by_status: log.by_status.clone(),
            by_route: log
                .by_route
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            recorded: log.records.len(),
            dropped: log.dropped,
            connections: self.connections.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn reset_stats(&self) {
        let mut log = lock(&self.log);
        log.total = 0;
        log.dropped = 0;
        log.by_status.clear();
        log.by_route.clear();
        self.connections.store(0, Ordering::Relaxed);
    }

    /// Counts an accepted TCP connection.
    pub(crate) fn connection_accepted(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).faults.clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        *lock(&self.faults) = FaultState::new(faults);
        Ok(())
    }

    /// Decides, before the handler runs, whether this API call fails and how.
    fn decide(&self, headers: &HeaderMap, method: &Method) -> Decision {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut state = lock(&self.faults);
        let faults = &state.faults;
        let latency = Duration::from_millis(faults.latency_ms);
        let retry_after = faults.retry_after_secs;
        let mut decision = Decision {
            reject: None,
            malformed: false,
            latency,
        };
        if let Some(status) = faults.forced_status {
            let retry = if status == 429 { retry_after } else { None };
            decision.reject = Some((error_response(status, "Forced fault", retry), "forced"));
            return decision;
        }
        let authorized = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
            == Some(self.expected_auth.as_str());
        if !authorized {
            decision.reject = Some((error_response(401, "Unauthenticated.", None), "auth"));
            return decision;
        }
        if (method == Method::PUT || method == Method::POST) && !is_json(headers) {
            decision.reject = Some((
                error_response(415, "Content-Type must be application/json", None),
                "content_type",
            ));
            return decision;
        }
        if !state.take_token() {
            decision.reject = Some((
                error_response(429, "Too Many Requests (capacity)", Some(1)),
                "capacity",
            ));
            return decision;
        }
        let faults = &state.faults;
        let roll = data::unit(data::mix(self.seed ^ data::mix(n)));
        if roll < faults.rate_429 {
            decision.reject = Some((
                error_response(429, "Too Many Requests", retry_after),
                "rate_429",
            ));
        } else if roll < faults.rate_429 + faults.rate_5xx {
            decision.reject = Some((error_response(503, "Service Unavailable", None), "rate_5xx"));
        } else if faults.rate_malformed > 0.0 {
            let roll = data::unit(data::mix(!self.seed ^ data::mix(n.wrapping_add(0x5151))));
            decision.malformed = roll < faults.rate_malformed;
        }
        decision
    }

    fn record(&self, mut call: CallRecord) {
        let mut log = lock(&self.log);
        log.total += 1;
        *log.by_status.entry(call.status).or_default() += 1;
        match log.by_route.get_mut(&call.route) {
            Some(counts) => *counts.entry(call.status).or_default() += 1,
            None => {
                log.by_route
                    .insert(call.route.clone(), BTreeMap::from([(call.status, 1)]));
            }
        }
        if !self.record_calls {
            return;
        }
        if log.records.len() >= self.call_log_cap {
            log.dropped += 1;
            return;
        }
        call.seq = log.next_seq;
        log.next_seq += 1;
        log.records.push(call);
    }
}

impl FaultState {
    fn new(faults: Faults) -> Self {
        let tokens = faults.capacity_rps.unwrap_or(0.0).max(1.0);
        Self {
            faults,
            tokens,
            counted_at: Instant::now(),
        }
    }

    /// Takes one token from the capacity bucket (a second's worth of requests, refilled
    /// continuously); always true without a capacity.
    fn take_token(&mut self) -> bool {
        let Some(rate) = self.faults.capacity_rps.filter(|r| *r > 0.0) else {
            return true;
        };
        let now = Instant::now();
        let refill = now.duration_since(self.counted_at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate.max(1.0));
        self.counted_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Decision {
    reject: Option<(Response, &'static str)>,
    malformed: bool,
    latency: Duration,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// The record an API call is about, found by the middleware from the path.
#[derive(Debug, Clone, Copy)]
struct Target {
    id: Option<i64>,
}

/// `{"message": …}` with the status, and `Retry-After` when given.
fn error_response(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(json!({ "message": message }))).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl From<ApiError> for Response {
    fn from(err: ApiError) -> Self {
        error_response(err.status, &err.message, None)
    }
}

/// Authenticates, injects faults, hands the call to its handler, records it, then waits
/// the configured latency (after the effect, so a client timeout leaves a call that did
/// happen: the ambiguous case).
async fn api_layer(
    State(shared): State<Arc<Shared>>,
    matched: MatchedPath,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let pattern = matched.as_str();
    let pattern = pattern.strip_prefix(COMPANY_PREFIX).unwrap_or(pattern);
    let mut company_id = None;
    let mut raw_id = None;
    for (key, value) in &params {
        match key {
            "companyId" => company_id = Some(value.to_owned()),
            "id" => raw_id = Some(value.to_owned()),
            _ => {}
        }
    }
    let id = raw_id.as_deref().and_then(|v| v.parse::<i64>().ok());
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let route = format!("{method} {pattern}");

    let (response, fault, bytes, latency) = match to_bytes(body, MAX_BODY).await {
        Err(_) => (
            error_response(413, "Body too large or unreadable", None),
            Some("body"),
            Bytes::new(),
            Duration::ZERO,
        ),
        Ok(bytes) => {
            let decision = shared.decide(&parts.headers, &method);
            match decision.reject {
                Some((response, fault)) => (response, Some(fault), bytes, decision.latency),
                None => {
                    let mut request = Request::from_parts(parts, Body::from(bytes.clone()));
                    request.extensions_mut().insert(Target { id });
                    let mut response = next.run(request).await;
                    let mut fault = None;
                    if decision.malformed && response.status().is_success() {
                        *response.body_mut() = Body::from(r#"{"reason": "trunc"#);
                        response
                            .headers_mut()
                            .remove(axum::http::header::CONTENT_LENGTH);
                        fault = Some("malformed");
                    }
                    (response, fault, bytes, decision.latency)
                }
            }
        }
    };
    let status = response.status().as_u16();
    let (contact_id, chat_id) = if pattern.starts_with("/contacts") {
        (id, None)
    } else if pattern.starts_with("/chats") {
        (None, id)
    } else {
        (None, None)
    };
    let body = if shared.record_calls && !bytes.is_empty() {
        Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    } else {
        None
    };
    shared.record(CallRecord {
        seq: 0,
        at: Utc::now(),
        method: method.to_string(),
        // Inside the company nest axum strips the prefix from the URI: put it back.
        path: match &company_id {
            Some(company) => format!("/companies/{company}{}", uri.path()),
            None => uri.path().to_owned(),
        },
        query: uri.query().map(str::to_owned),
        route,
        company_id,
        contact_id,
        chat_id,
        body,
        status,
        fault: fault.map(str::to_owned),
    });
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    response
}

/// The router: the Huggy API at the root and under `/companies/{companyId}`, plus
/// `/__fake/*`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = api_routes().route_layer(middleware::from_fn_with_state(shared.clone(), api_layer));
    Router::new()
        .merge(api.clone())
        .nest(COMPANY_PREFIX, api)
        .merge(fake_routes())
        .fallback(|| async { error_response(404, "Not found", None) })
        .with_state(shared)
}

/// Adds an endpoint's route with its method.
fn add<H, T>(router: Router<Arc<Shared>>, endpoint: &Endpoint, handler: H) -> Router<Arc<Shared>>
where
    H: Handler<T, Arc<Shared>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(endpoint.method.clone())
        .expect("endpoint methods are standard methods");
    router.route(endpoint.route, on(filter, handler))
}

fn api_routes() -> Router<Arc<Shared>> {
    let mut router = Router::new();
    router = add(router, &client::LIST_CONTACTS, list_contacts);
    router = add(router, &client::GET_CONTACT, get_contact);
    router = add(router, &client::EXEC_FLOW, exec_flow);
    router = add(router, &client::LIST_CHATS, list_chats);
    router = add(router, &client::GET_CHAT, get_chat);
    router = add(router, &client::CHAT_FLOW, chat_flow);
    router = add(router, &client::TRANSFER, transfer);
    router = add(router, &client::WORKFLOW, workflow);
    router = add(router, &client::CLOSE, close);
    router = add(router, &unconfirmed::QUEUE, queue);
    router = add(router, &unconfirmed::DEPARTMENT, department);
    router = add(router, &unconfirmed::REOPEN, reopen);
    router = add(router, &unconfirmed::TABULATION, tabulation);
    router
}

// ---- API handlers ----

#[derive(Debug, Deserialize)]
struct ListParams {
    page: Option<String>,
    situation: Option<String>,
}

fn page_of(params: &ListParams) -> Result<usize, ApiError> {
    match params.page.as_deref() {
        None | Some("") => Ok(0),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .map_err(|_| ApiError::new(400, "Invalid page")),
    }
}

async fn list_contacts(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<ListParams>,
) -> Response {
    match page_of(&params) {
        Ok(page) => {
            let contacts = shared.store().contacts_page(page);
            Json(contacts).into_response()
        }
        Err(err) => err.into(),
    }
}

async fn list_chats(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<ListParams>,
) -> Response {
    match page_of(&params) {
        Ok(page) => {
            let situation = params.situation.as_deref().filter(|s| !s.is_empty());
            let chats = shared.store().chats_page(page, situation);
            Json(chats).into_response()
        }
        Err(err) => err.into(),
    }
}

async fn get_contact(
    State(shared): State<Arc<Shared>>,
    Extension(target): Extension<Target>,
) -> Response {
    let contact = target.id.and_then(|id| shared.store().contact(id).cloned());
    match contact {
        Some(contact) => Json(contact).into_response(),
        None => error_response(404, "Contact not found", None),
    }
}

async fn get_chat(
    State(shared): State<Arc<Shared>>,
    Extension(target): Extension<Target>,
) -> Response {
    let chat = target
        .id
        .and_then(|id| shared.store().chat(id).map(|c| c.chat.clone()));
    match chat {
        Some(chat) => Json(chat).into_response(),
        None => error_response(404, "Chat not found", None),
    }
}

/// Parses a JSON body; an empty body reads as `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::new(400, format!("Invalid body: {e}")))
}

async fn exec_flow(
    State(shared): State<Arc<Shared>>,
    Extension(target): Extension<Target>,
    body: Bytes,
) -> Response {
    let request: ExecFlowRequest = match parse(&body) {
        Ok(request) => request,
        Err(err) => return err.into(),
    };
    let Some(id) = target.id else {
        return error_response(404, "Contact not found", None);
    };
    let answer = shared.store().exec_flow(id, &request, now());
    match answer {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => err.into(),
    }
}

/// Runs a chat action: parse the body, find the chat, apply, answer `{"success": true}`.
fn chat_action<T: DeserializeOwned>(
    shared: &Shared,
    target: Target,
    body: &Bytes,
    action: impl FnOnce(&mut Store, i64, &T, DateTime<FixedOffset>) -> Result<(), ApiError>,
) -> Response {
    let request: T = match parse(body) {
        Ok(request) => request,
        Err(err) => return err.into(),
    };
    let Some(id) = target.id else {
        return error_response(404, "Chat not found", None);
    };
    let outcome = action(&mut shared.store(), id, &request, now());
    match outcome {
        Ok(()) => Json(json!({ "success": true })).into_response(),
        Err(err) => err.into(),
    }
}

async fn chat_flow(
    State(s): State<Arc<Shared>>,
    Extension(t): Extension<Target>,
    body: Bytes,
) -> Response {
    chat_action(&s, t, &body, |store, id, r: &ChatFlowRequest, now| {
        store.chat_flow(id, r, now)
    })
}

async fn transfer(
    State(s): State<Arc<Shared>>,
    Extension(t): Extension<Target>,
    body: Bytes,
) -> Response {
    chat_action(&s, t, &body, |store, id, r: &TransferRequest, now| {
        store.transfer(id, r, now)
    })
}

async fn workflow(
    State(s): State<Arc<Shared>>,
    Extension(t): Extension<Target>,
    body: Bytes,
) -> Response {
    chat_action(&s, t, &body, |store, id, r: &WorkflowRequest, now| {
        store.workflow(id, r, now)
    })
}

async fn close(
    State(s): State<Arc<Shared>>,
    Extension(t): Extension<Target>,
    body: Bytes,
) -> Response {
    chat_action(&s, t, &body, |store, id, r: &CloseRequest, now| {
        store.close(id, r, now)
    })
}

async fn queue(
    State(s): State<Arc<Shared>>,
    Extension(t): Extension<Target>,
    body: Bytes,
) -> Response {
    chat_action(
        &s,
        t,
        &body,
        |store, id, _: &unconfirmed::QueueRequest, now| store.queue(id, now),
    )
}

async fn department(
    State(s): State<Arc<Shared>>,
    Extension(t): Extension<Target>,
    body: Bytes,
) -> Response {
    chat_action(&s, t, &body, |store, id, r: &DepartmentRequest, now| {
        store.department(id, r, now)
    })
}

async fn reopen(
    State(s): State<Arc<Shared>>,
    Extension(t): Extension<Target>,
    body: Bytes,
) -> Response {
    chat_action(
        &s,
        t,
        &body,
        |store, id, _: &unconfirmed::ReopenRequest, now| store.reopen(id, now),
    )
}

async fn tabulation(
    State(s): State<Arc<Shared>>,
    Extension(t): Extension<Target>,
    body: Bytes,
) -> Response {
    chat_action(&s, t, &body, |store, id, r: &TabulationRequest, now| {
        store.tabulation(id, r, now)
    })
}

// ---- /__fake/* ----

fn fake_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__fake/healthz", get(|| async { "ok" }))
        .route("/__fake/calls", get(calls).delete(clear_calls))
        .route("/__fake/stats", get(stats).delete(reset_stats))
        .route("/__fake/faults", get(get_faults).put(put_faults))
        .route(
            "/__fake/contacts/{id}",
            get(fake_get_contact)
                .put(fake_put_contact)
                .delete(fake_delete_contact),
        )
        .route(
            "/__fake/chats/{id}",
            get(fake_get_chat)
                .put(fake_put_chat)
                .delete(fake_delete_chat),
        )
}

async fn calls(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.calls()).into_response()
}

async fn clear_calls(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_calls();
    StatusCode::NO_CONTENT
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.stats()).into_response()
}

async fn reset_stats(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset_stats();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.faults()).into_response()
}

async fn put_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults: Faults = match parse(&body) {
        Ok(faults) => faults,
        Err(err) => return err.into(),
    };
    match shared.set_faults(faults) {
        Ok(()) => Json(shared.faults()).into_response(),
        Err(reason) => error_response(400, &reason, None),
    }
}

fn path_id(params: &RawPathParams) -> Option<i64> {
    params
        .iter()
        .find(|(k, _)| *k == "id")
        .and_then(|(_, v)| v.parse().ok())
}

async fn fake_get_contact(State(shared): State<Arc<Shared>>, params: RawPathParams) -> Response {
    let contact = path_id(&params).and_then(|id| shared.store().contact(id).cloned());
    match contact {
        Some(contact) => Json(contact).into_response(),
        None => error_response(404, "Contact not found", None),
    }
}

async fn fake_put_contact(
    State(shared): State<Arc<Shared>>,
    params: RawPathParams,
    body: Bytes,
) -> Response {
    let Some(id) = path_id(&params) else {
        return error_response(400, "Invalid id", None);
    };
    let mut value: Value = match parse(&body) {
        Ok(value) => value,
        Err(err) => return err.into(),
    };
    if let Some(obj) = value.as_object_mut() {
        obj.insert("id".into(), Value::from(id));
    }
    match serde_json::from_value::<Contact>(value) {
        Ok(contact) => {
            shared.store().upsert_contact(contact.clone());
            Json(contact).into_response()
        }
        Err(e) => error_response(400, &format!("Invalid contact: {e}"), None),
    }
}

async fn fake_delete_contact(State(shared): State<Arc<Shared>>, params: RawPathParams) -> Response {
    match path_id(&params).is_some_and(|id| shared.store().remove_contact(id)) {
        true => StatusCode::NO_CONTENT.into_response(),
        false => error_response(404, "Contact not found", None),
    }
}

async fn fake_get_chat(State(shared): State<Arc<Shared>>, params: RawPathParams) -> Response {
    let chat = path_id(&params).and_then(|id| shared.store().chat(id).cloned());
    match chat {
        Some(chat) => Json(chat).into_response(),
        None => error_response(404, "Chat not found", None),
    }
}

/// Body of `PUT /__fake/chats/{id}`: a full record or just the chat (extras reset).
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum ChatUpsert {
    Full(FakeChat),
    Bare(Chat),
}

async fn fake_put_chat(
    State(shared): State<Arc<Shared>>,
    params: RawPathParams,
    body: Bytes,
) -> Response {
    let Some(id) = path_id(&params) else {
        return error_response(400, "Invalid id", None);
    };
    let mut value: Value = match parse(&body) {
        Ok(value) => value,
        Err(err) => return err.into(),
    };
    if let Some(obj) = value.as_object_mut() {
        match obj.get_mut("chat").and_then(Value::as_object_mut) {
            Some(chat) => {
                chat.insert("id".into(), Value::from(id));
            }
            None => {
                obj.insert("id".into(), Value::from(id));
            }
        }
    }
    let record = match serde_json::from_value::<ChatUpsert>(value) {
        Ok(ChatUpsert::Full(record)) => record,
        Ok(ChatUpsert::Bare(chat)) => FakeChat {
            chat,
            extras: Default::default(),
        },
        Err(e) => return error_response(400, &format!("Invalid chat: {e}"), None),
    };
    shared.store().upsert_chat(record.clone());
    Json(record).into_response()
}

async fn fake_delete_chat(State(shared): State<Arc<Shared>>, params: RawPathParams) -> Response {
    match path_id(&params).is_some_and(|id| shared.store().remove_chat(id)) {
        true => StatusCode::NO_CONTENT.into_response(),
        false => error_response(404, "Chat not found", None),
    }
}
