//! The Huggy API behind a trait ([`HuggyApi`]), and its HTTP implementation ([`HttpHuggy`]).
//!
//! Workers and sync depend on the trait; tests and the demo point [`HttpHuggy`] at the fake
//! Huggy. Every call classifies its outcome into a [`HuggyError`] that says what to do next.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use crate::error::{classify, classify_transport, HuggyError};
use crate::model::Chat;
use crate::model::{
    ChatFlowRequest, CloseRequest, Contact, DepartmentRequest, ExecFlowRequest, ExecFlowResponse,
    QueueRequest, ReopenRequest, TabulationRequest, TransferRequest, WorkflowRequest,
};
use crate::unconfirmed;

/// Huggy's production API root.
pub const DEFAULT_BASE_URL: &str = "https://api.huggy.app/v3";

/// Items per page of Huggy's lists.
pub const PAGE_SIZE: usize = 20;

/// One Huggy endpoint: a name for logs, the method, and the route with `{id}` for the record.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// A name for logs and the fake's call log.
    pub name: &'static str,
    /// The HTTP method.
    pub method: Method,
    /// The route, with `{id}` for the record.
    pub route: &'static str,
}

impl Endpoint {
    /// The route with `{id}` replaced by the record id.
    pub fn path(&self, id: i64) -> String {
        self.route.replace("{id}", &id.to_string())
    }
}

// Confirmed (✔) endpoints. The unconfirmed (~) ones are in `crate::unconfirmed`.
/// The `LIST_CONTACTS` endpoint (the fake Huggy serves the same route).
pub const LIST_CONTACTS: Endpoint = Endpoint {
    name: "list_contacts",
    method: Method::GET,
    route: "/contacts",
};
/// The `GET_CONTACT` endpoint (the fake Huggy serves the same route).
pub const GET_CONTACT: Endpoint = Endpoint {
    name: "get_contact",
    method: Method::GET,
    route: "/contacts/{id}",
};
/// The `EXEC_FLOW` endpoint (the fake Huggy serves the same route).
pub const EXEC_FLOW: Endpoint = Endpoint {
    name: "exec_flow",
    method: Method::PUT,
    route: "/contacts/{id}/execFlow",
};
/// The `LIST_CHATS` endpoint (the fake Huggy serves the same route).
pub const LIST_CHATS: Endpoint = Endpoint {
    name: "list_chats",
    method: Method::GET,
    route: "/chats",
};
/// The `GET_CHAT` endpoint (the fake Huggy serves the same route).
pub const GET_CHAT: Endpoint = Endpoint {
    name: "get_chat",
    method: Method::GET,
    route: "/chats/{id}",
};
/// The `CHAT_FLOW` endpoint (the fake Huggy serves the same route).
pub const CHAT_FLOW: Endpoint = Endpoint {
    name: "run_chat_flow",
    method: Method::POST,
    route: "/chats/{id}/flow",
};
/// The `TRANSFER` endpoint (the fake Huggy serves the same route).
pub const TRANSFER: Endpoint = Endpoint {
    name: "transfer_to_agent",
    method: Method::PUT,
    route: "/chats/{id}/agent",
};
/// The `WORKFLOW` endpoint (the fake Huggy serves the same route).
pub const WORKFLOW: Endpoint = Endpoint {
    name: "update_workflow",
    method: Method::PUT,
    route: "/chats/{id}/workflow",
};
/// The `CLOSE` endpoint (the fake Huggy serves the same route).
pub const CLOSE: Endpoint = Endpoint {
    name: "close_chat",
    method: Method::PUT,
    route: "/chats/{id}/close",
};

/// The Huggy operations Tarefas uses. Each call either succeeds or says, through its
/// [`HuggyError`], whether to retry, wait, give up on the record or stop the run.
///
/// Lists are paged from 0, [`PAGE_SIZE`] items a page; a page past the end is empty.
pub trait HuggyApi: Send + Sync {
    /// `GET /contacts?page=N`.
    fn list_contacts(
        &self,
        page: u32,
    ) -> impl Future<Output = Result<Vec<Contact>, HuggyError>> + Send;

    /// `GET /contacts/{id}`.
    fn get_contact(&self, id: i64) -> impl Future<Output = Result<Contact, HuggyError>> + Send;

    /// `GET /chats?page=N[&situation=S]`. Without a situation Huggy lists the open chats.
    fn list_chats(
        &self,
        page: u32,
        situation: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Chat>, HuggyError>> + Send;

    /// `GET /chats/{id}`.
    fn get_chat(&self, id: i64) -> impl Future<Output = Result<Chat, HuggyError>> + Send;

    /// `PUT /contacts/{id}/execFlow`: run a Flow for a contact, subject to the request's
    /// policy flags. Check [`ExecFlowResponse::not_executed`] for a Flow the flags skipped.
    fn exec_flow(
        &self,
        contact_id: i64,
        request: &ExecFlowRequest,
    ) -> impl Future<Output = Result<ExecFlowResponse, HuggyError>> + Send;

    /// `POST /chats/{id}/flow`: run a Flow in an existing chat.
    fn run_chat_flow(
        &self,
        chat_id: i64,
        request: &ChatFlowRequest,
    ) -> impl Future<Output = Result<(), HuggyError>> + Send;

    /// `PUT /chats/{id}/agent`: transfer the chat to an agent.
    fn transfer_to_agent(
        &self,
        chat_id: i64,
        agent_id: i64,
    ) -> impl Future<Output = Result<(), HuggyError>> + Send;

    /// `PUT /chats/{id}/workflow`: move the chat to a workflow step.
    fn update_workflow(
        &self,
        chat_id: i64,
        step_id: i64,
    ) -> impl Future<Output = Result<(), HuggyError>> + Send;

    /// `PUT /chats/{id}/close`: close the chat, with a tabulation when given.
    fn close_chat(
        &self,
        chat_id: i64,
        tabulation: Option<String>,
    ) -> impl Future<Output = Result<(), HuggyError>> + Send;

    /// Put the chat in the queue (~, see [`crate::unconfirmed`]).
    fn put_in_queue(&self, chat_id: i64) -> impl Future<Output = Result<(), HuggyError>> + Send;

    /// Move the chat to another department (~).
    fn change_department(
        &self,
        chat_id: i64,
        department_id: i64,
    ) -> impl Future<Output = Result<(), HuggyError>> + Send;

    /// Reopen a closed chat (~).
    fn reopen_chat(&self, chat_id: i64) -> impl Future<Output = Result<(), HuggyError>> + Send;

    /// Set the chat's tabulation (~).
    fn update_tabulation(
        &self,
        chat_id: i64,
        tabulation: String,
    ) -> impl Future<Output = Result<(), HuggyError>> + Send;
}

/// A secret string (an API token) that never shows in logs: `Debug` and `Display` print
/// `[redacted]`. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; use only where it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How to reach Huggy for one account.
#[derive(Debug, Clone)]
pub struct HuggyConfig {
    /// API root, without a trailing slash (default [`DEFAULT_BASE_URL`]; the fake's
    /// `base_url()` in tests).
    pub base_url: String,
    /// For accounts that manage several companies: paths get the `/companies/{id}` prefix.
    pub company_id: Option<String>,
    /// The account's API token, sent as `Authorization: Bearer <token>`.
    pub token: Secret,
    /// Longest wait to establish a connection (default 5 s). A connect failure is retryable.
    pub connect_timeout: Duration,
    /// Longest wait for a whole call (default 30 s). A timeout is ambiguous.
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept for reuse (default 90 s).
    pub pool_idle_timeout: Duration,
    /// Most idle connections kept per host (default 64).
    pub pool_max_idle_per_host: usize,
}

impl HuggyConfig {
    /// A configuration for the production API with default timeouts.
    pub fn new(token: impl Into<Secret>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            company_id: None,
            token: token.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
        }
    }

    /// Sets the API root.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Sets the company id prefix.
    pub fn with_company_id(mut self, company_id: impl Into<String>) -> Self {
        self.company_id = Some(company_id.into());
        self
    }

    /// Sets the connect and whole-request timeouts.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }
}

/// A [`HttpHuggy`] could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The base URL is not an absolute `http(s)` URL.
    #[error("invalid Huggy base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as configured.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The company id has characters that cannot go in a URL path segment.
    #[error("invalid Huggy company id {0:?}")]
    InvalidCompanyId(String),
    /// The token has characters that cannot go in an HTTP header.
    #[error("the Huggy token contains characters not allowed in an HTTP header")]
    InvalidToken,
    /// The HTTP client could not start (TLS setup).
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The Huggy API over HTTP (reqwest), for one account.
///
/// Cheap to clone: clones share one connection pool. [`HttpHuggy::with_account`] gives a
/// client for another account over the same pool.
#[derive(Clone)]
pub struct HttpHuggy {
    http: reqwest::Client,
    /// The URL root every path is appended to: base URL plus the company prefix.
    root: Arc<str>,
    /// `root`, parsed once: each call only sets its path.
    root_url: Url,
    base_url: Arc<str>,
    auth: HeaderValue,
    request_timeout: Duration,
}

impl fmt::Debug for HttpHuggy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHuggy")
            .field("root", &self.root)
            .field("token", &"[redacted]")
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl HttpHuggy {
    /// Builds a client with its own connection pool.
    pub fn new(config: HuggyConfig) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tarefas-huggy/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Self::with_client(http, config)
    }

    /// Builds a client over an existing `reqwest::Client` (its pool, connect timeout and
    /// redirect policy apply; `config.request_timeout` is set on every request).
    pub fn with_client(
        http: reqwest::Client,
        config: HuggyConfig,
    ) -> Result<Self, ClientBuildError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parsed = Url::parse(&base_url).map_err(|e| ClientBuildError::InvalidBaseUrl {
            url: config.base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(ClientBuildError::InvalidBaseUrl {
                url: config.base_url.clone(),
                reason: "expected an absolute http(s) URL".into(),
            });
        }
        let mut client = Self {
            http,
            root: Arc::from(base_url.as_str()),
            root_url: parsed.clone(),
            base_url: Arc::from(base_url.as_str()),
            auth: HeaderValue::from_static(""),
            request_timeout: config.request_timeout,
        };
        client.set_account(&config.token, config.company_id.as_deref())?;
        Ok(client)
    }

    /// A client for another account (token and company) over the same pool and base URL.
    pub fn with_account(
        &self,
        token: &Secret,
        company_id: Option<&str>,
    ) -> Result<Self, ClientBuildError> {
        let mut client = self.clone();
        client.set_account(token, company_id)?;
        Ok(client)
    }

    fn set_account(
        &mut self,
        token: &Secret,
        company_id: Option<&str>,
    ) -> Result<(), ClientBuildError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| ClientBuildError::InvalidToken)?;
        auth.set_sensitive(true);
        self.auth = auth;
        self.root = match company_id {
            None => self.base_url.clone(),
            Some(id) => {
                let valid = !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !valid {
                    return Err(ClientBuildError::InvalidCompanyId(id.to_owned()));
                }
                Arc::from(format!("{}/companies/{id}", self.base_url))
            }
        };
        self.root_url = Url::parse(&self.root).map_err(|e| ClientBuildError::InvalidBaseUrl {
            url: self.root.to_string(),
            reason: e.to_string(),
        })?;
        Ok(())
    }

    /// The URL root calls go to (base URL plus company prefix).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Sends one call and classifies the answer; on 2xx returns the body.
    async fn call<B: Serialize + ?Sized>(
        &self,
        endpoint: &Endpoint,
        record_id: Option<i64>,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<Vec<u8>, HuggyError> {
        let path = match record_id {
            Some(id) => endpoint.path(id),
            None => endpoint.route.to_owned(),
        };
        let span = tracing::info_span!(
            "huggy_call",
            endpoint = endpoint.name,
            http.method = %endpoint.method,
            http.path = %path,
            record_id = record_id,
            http.status = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        async move {
            let started = Instant::now();
            let outcome = self.send(endpoint, &path, query, body).await;
            let span = tracing::Span::current();
            let elapsed = started.elapsed();
            span.record("elapsed_ms", elapsed.as_millis() as u64);
            let status = match &outcome {
                Ok((status, _)) | Err((Some(status), _)) => {
                    span.record("http.status", status);
                    status.to_string()
                }
                Err((None, _)) => "error".to_owned(),
            };
            metrics::histogram!(
                "tarefas_huggy_request_duration_seconds",
                "endpoint" => endpoint.name,
                "status" => status
            )
            .record(elapsed.as_secs_f64());
            match outcome {
                Ok((_, body)) => {
                    tracing::debug!("huggy call done");
                    Ok(body)
                }
                Err((_, err)) => {
                    tracing::debug!(error.message = %err, "huggy call failed");
                    Err(err)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The HTTP exchange: the status (when one came back) and the body or the error.
    async fn send<B: Serialize + ?Sized>(
        &self,
        endpoint: &Endpoint,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<(u16, Vec<u8>), (Option<u16>, HuggyError)> {
        let mut url = self.root_url.clone();
        url.set_path(&format!(
            "{}{path}",
            self.root_url.path().trim_end_matches('/')
        ));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .http
            .request(endpoint.method.clone(), url)
            .timeout(self.request_timeout)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).map_err(|e| {
                (
                    None,
                    HuggyError::Permanent {
                        status: 0,
                        reason: format!("could not encode body: {e}"),
                    },
                )
            })?;
            request = request.body(bytes);
        }
        let response = request
            .send()
            .await
            .map_err(|e| (None, classify_transport(&e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes.to_vec(),
            // The status line came back: on 2xx the call happened even if its body got lost.
            Err(e) if (200..300).contains(&status) => {
                return Err((
                    Some(status),
                    HuggyError::Decode {
                        reason: format!("{}: reading the answer: {}", endpoint.name, e),
                    },
                ))
            }
            Err(_) => Vec::new(),
        };
        classify(
            status,
            retry_after.as_deref(),
            &String::from_utf8_lossy(&bytes),
        )
        .map_err(|e| (Some(status), e))?;
        Ok((status, bytes))
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        record_id: Option<i64>,
        query: &[(&str, &str)],
    ) -> Result<T, HuggyError> {
        let body = self.call::<()>(endpoint, record_id, query, None).await?;
        decode(endpoint, &body)
    }

    async fn action<B: Serialize + ?Sized>(
        &self,
        endpoint: &Endpoint,
        chat_id: i64,
        body: &B,
    ) -> Result<(), HuggyError> {
        self.call(endpoint, Some(chat_id), &[], Some(body))
            .await
            .map(drop)
    }
}

fn decode<T: DeserializeOwned>(endpoint: &Endpoint, body: &[u8]) -> Result<T, HuggyError> {
    serde_json::from_slice(body).map_err(|e| HuggyError::Decode {
        reason: format!("{}: {e}", endpoint.name),
    })
}

impl HuggyApi for HttpHuggy {
    async fn list_contacts(&self, page: u32) -> Result<Vec<Contact>, HuggyError> {
        self.get_json(&LIST_CONTACTS, None, &[("page", &page.to_string())])
            .await
    }

    async fn get_contact(&self, id: i64) -> Result<Contact, HuggyError> {
        self.get_json(&GET_CONTACT, Some(id), &[]).await
    }

    async fn list_chats(
        &self,
        page: u32,
        situation: Option<&str>,
    ) -> Result<Vec<Chat>, HuggyError> {
        let page = page.to_string();
        match situation {
            Some(situation) => {
                self.get_json(
                    &LIST_CHATS,
                    None,
                    &[("page", &page), ("situation", situation)],
                )
                .await
            }
            None => self.get_json(&LIST_CHATS, None, &[("page", &page)]).await,
        }
    }

    async fn get_chat(&self, id: i64) -> Result<Chat, HuggyError> {
        self.get_json(&GET_CHAT, Some(id), &[]).await
    }

    async fn exec_flow(
        &self,
        contact_id: i64,
        request: &ExecFlowRequest,
    ) -> Result<ExecFlowResponse, HuggyError> {
        let body = self
            .call(&EXEC_FLOW, Some(contact_id), &[], Some(request))
            .await?;
        decode(&EXEC_FLOW, &body)
    }

    async fn run_chat_flow(
        &self,
        chat_id: i64,
        request: &ChatFlowRequest,
    ) -> Result<(), HuggyError> {
        self.action(&CHAT_FLOW, chat_id, request).await
    }

    async fn transfer_to_agent(&self, chat_id: i64, agent_id: i64) -> Result<(), HuggyError> {
        self.action(&TRANSFER, chat_id, &TransferRequest { agent_id })
            .await
    }

    async fn update_workflow(&self, chat_id: i64, step_id: i64) -> Result<(), HuggyError> {
        self.action(&WORKFLOW, chat_id, &WorkflowRequest { step_id })
            .await
    }

    async fn close_chat(&self, chat_id: i64, tabulation: Option<String>) -> Result<(), HuggyError> {
        self.action(&CLOSE, chat_id, &CloseRequest::new(tabulation))
            .await
    }

    async fn put_in_queue(&self, chat_id: i64) -> Result<(), HuggyError> {
        self.action(&unconfirmed::QUEUE, chat_id, &QueueRequest {})
            .await
    }

    async fn change_department(&self, chat_id: i64, department_id: i64) -> Result<(), HuggyError> {
        self.action(
            &unconfirmed::DEPARTMENT,
            chat_id,
            &DepartmentRequest { department_id },
        )
        .await
    }

    async fn reopen_chat(&self, chat_id: i64) -> Result<(), HuggyError> {
        self.action(&unconfirmed::REOPEN, chat_id, &ReopenRequest {})
            .await
    }

    async fn update_tabulation(&self, chat_id: i64, tabulation: String) -> Result<(), HuggyError> {
        self.action(
            &unconfirmed::TABULATION,
            chat_id,
            &TabulationRequest {
                tabulation_id: tabulation,
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let secret = Secret::new("s3cr3t");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "s3cr3t");
        let config = HuggyConfig::new("s3cr3t");
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let client = HttpHuggy::new(config).unwrap();
        assert!(!format!("{client:?}").contains("s3cr3t"));
    }

    #[test]
    fn roots_and_prefixes() {
        let client = HttpHuggy::new(HuggyConfig::new("t")).unwrap();
        assert_eq!(client.root(), "https://api.huggy.app/v3");
        let client = HttpHuggy::new(
            HuggyConfig::new("t")
                .with_base_url("http://127.0.0.1:9/")
                .with_company_id("77"),
        )
        .unwrap();
        assert_eq!(client.root(), "http://127.0.0.1:9/companies/77");
        let other = client.with_account(&Secret::new("u"), None).unwrap();
        assert_eq!(other.root(), "http://127.0.0.1:9");
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad_url = HttpHuggy::new(HuggyConfig::new("t").with_base_url("api.huggy.app"));
        assert!(matches!(
            bad_url,
            Err(ClientBuildError::InvalidBaseUrl { .. })
        ));
        let bad_scheme = HttpHuggy::new(HuggyConfig::new("t").with_base_url("ftp://x"));
        assert!(matches!(
            bad_scheme,
            Err(ClientBuildError::InvalidBaseUrl { .. })
        ));
        let bad_token = HttpHuggy::new(HuggyConfig::new("line\nbreak"));
        assert!(matches!(bad_token, Err(ClientBuildError::InvalidToken)));
        let bad_company = HttpHuggy::new(HuggyConfig::new("t").with_company_id("a/b"));
        assert!(matches!(
            bad_company,
            Err(ClientBuildError::InvalidCompanyId(_))
        ));
    }

    #[test]
    fn endpoint_paths() {
        assert_eq!(EXEC_FLOW.path(123), "/contacts/123/execFlow");
        assert_eq!(unconfirmed::QUEUE.path(5), "/chats/5/queue");
    }
}
