//! End-to-end tests: the real `tarefas` binary, run as an operator would, against real
//! services where the command needs them.

mod admin;
mod bad_input;
mod chaos;
mod console_api;
mod fires;
mod lifecycle;
mod observability;
mod pipeline;
mod private;
mod retention;
mod safety;
mod security;
mod support;
mod task_file;
