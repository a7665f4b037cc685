//! The worker: plans runs ([`plan`]) and executes their item batches ([`execute`]) — exactly
//! once per record, within the shared rate limits ([`gate`]), never from a stale mirror when
//! the Flow policy needs the chat's state.

mod cache;
pub mod error;
pub mod execute;
pub mod gate;
pub mod plan;
pub mod reconcile;
pub mod redis_gate;
pub mod service;
mod tokens;

pub use error::WorkerError;
pub use execute::{BatchOutcome, ExecConfig, Executor};
pub use plan::{plan, PlanConfig, Planned};
