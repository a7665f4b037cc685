//! Tarefas' side of Huggy: a client for the Huggy API behind the [`HuggyApi`] trait, the
//! classification of every answer into a [`HuggyError`] that says what to do next, and a
//! [`fake`] Huggy server for tests, the demo and the benchmarks.
//!
//! The contract followed is `huggy-api.md`; what it marks as unconfirmed (`~`) is kept in
//! [`unconfirmed`].
//!
//! ```no_run
//! use tarefas_huggy::{HttpHuggy, HuggyApi, HuggyConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let huggy = HttpHuggy::new(HuggyConfig::new("token").with_base_url("http://127.0.0.1:8080"))?;
//! let first_page = huggy.list_contacts(0).await?;
//! # drop(first_page);
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod error;
pub mod fake;
pub mod model;
pub mod unconfirmed;

pub use client::{
    ClientBuildError, HttpHuggy, HuggyApi, HuggyConfig, Secret, DEFAULT_BASE_URL, PAGE_SIZE,
};
pub use error::{classify, classify_transport, parse_retry_after, HuggyError};
pub use model::{
    Channel, Chat, ChatFlowRequest, CloseRequest, Contact, CustomerRef, ExecFlowRequest,
    ExecFlowResponse, LastMessage, NamedRef, TransferRequest, WorkflowRef, WorkflowRequest,
};
