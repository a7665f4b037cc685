//! The Tarefas domain, with no I/O: tasks and the task file, recurrences and their fire
//! times, segments (filters joined with E+ / OU+) and their in-memory evaluator, actions and
//! the Flow policy, and the run and item state machines.
//!
//! Every decision lives here so that it can be tested without services; the store, broker,
//! limiter and Huggy client are adapters around it.

pub mod problem;
pub mod recurrence;
pub mod time;

pub use problem::{Problem, Problems};
pub use recurrence::Recurrence;
pub mod action;
pub mod decision;
pub mod eval;
pub mod guard;
pub mod raw;
pub mod run;
pub mod segment;
pub mod task;

pub use action::{Action, ChatAction, FlowAction, FlowDecision, FlowPolicy};
pub use eval::{matches, Record};
pub use segment::{Field, Filter, Table};
pub use task::{parse_schedule, parse_task, Format, ScheduleSpec, TaskSpec};
