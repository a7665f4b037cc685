//! End-to-end tests: the real `tarefas` binary, run as an operator would, against real
//! services where the command needs them.

mod admin;
mod pipeline;
mod support;
mod task_file;
