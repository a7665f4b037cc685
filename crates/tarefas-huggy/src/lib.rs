//! Tarefas' side of Huggy: a client for the Huggy API behind the [`HuggyApi`] trait, the
//! classification of every answer into a [`HuggyError`] that says what to do next. The fake
//! Huggy server of the tests, the demo and the benchmarks is a crate of its own,
//! `tarefas-fake-huggy`, built on this one's routes and models.
//!
//! The contract followed is `docs/huggy-api.md`; what it marks as unconfirmed (`~`) is kept in
//! [`unconfirmed`].
//!
//! ```no_run
//! use tarefas_fake_huggy::{FakeConfig, FakeHuggy};
//! use tarefas_huggy::{HttpHuggy, HuggyApi, HuggyConfig, HuggyError};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // A fake Huggy on 127.0.0.1:<free port> with a deterministic data set.
//! let fake = FakeHuggy::start(FakeConfig { contacts: 100, chats: 50, ..FakeConfig::default() }).await?;
//! let huggy = HttpHuggy::new(HuggyConfig::new(fake.token()).with_base_url(fake.base_url()))?;
//! let first_page = huggy.list_contacts(0).await?;
//! match huggy.transfer_to_agent(500_001, 17).await {
//!     Ok(()) => {}
//!     Err(HuggyError::RateLimited { retry_after: _ }) => { /* pause the account */ }
//!     Err(HuggyError::BadToken { .. }) => { /* pause the run */ }
//!     Err(_other) => { /* retry, fail the item or mark it unknown: see HuggyError */ }
//! }
//! assert_eq!(fake.calls().len(), 2);
//! # drop(first_page);
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod error;

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
