//! The Tarefas wire contract.
//!
//! The messages that travel through RabbitMQ between the scheduler, the admin
//! commands and the workers are defined in `proto/tarefas/v1/messages.proto`
//! (package `tarefas.v1`) and compiled with prost at build time (the `.proto`
//! is parsed by protox, so no `protoc` binary is needed). The generated types
//! live in [`v1`]:
//!
//! * [`v1::ExecuteTask`]: execute one task now (manual) or for a fire time
//!   (scheduled); consumed by the planner.
//! * [`v1::ItemBatch`]: a batch of run items to execute against Huggy;
//!   consumed by the executor.
//!
//! Consumers must decode with the checked decoders [`decode_execute_task`] and
//! [`decode_item_batch`]: besides parsing the protobuf they bound the body size
//! ([`MAX_MESSAGE_BYTES`]), reject unknown schema versions ([`SCHEMA_VERSION`])
//! and validate the required fields. A message that fails is a poison message:
//! it should be dead-lettered, with [`DecodeError`]'s `Display` (one line) as
//! the reason and [`DecodeError::code`] as a machine-readable tag.
//!
//! Producers build the messages with [`SCHEMA_VERSION`], may check them with
//! `validate()` ([`v1::ExecuteTask::validate`], [`v1::ItemBatch::validate`]),
//! and encode them with [`encode_execute_task`] / [`encode_item_batch`].
//!
//! ```
//! use tarefas_proto::{decode_execute_task, encode_execute_task, v1, SCHEMA_VERSION};
//!
//! let msg = v1::ExecuteTask {
//!     schema_version: SCHEMA_VERSION,
//!     task_id: 42,
//!     account: "acme".into(),
//!     request_id: "0b6f2a4e-8f1c-4d7e-9a51-3c2d1e0f9b8a".into(),
//!     trigger: v1::Trigger::Manual.into(),
//!     requested_by: "ana@acme.example".into(),
//!     ..Default::default()
//! };
//! let bytes = encode_execute_task(&msg);
//! assert_eq!(decode_execute_task(&bytes).unwrap(), msg);
//!
//! let err = decode_execute_task(&[]).unwrap_err();
//! assert_eq!(err.to_string(), "empty message body");
//! ```

/// Types generated from `proto/tarefas/v1/messages.proto` (package `tarefas.v1`).
///
/// Enum fields are stored as `i32` by prost; use the generated accessors
/// (e.g. [`v1::ExecuteTask::trigger`]) or `.into()` to convert.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/tarefas.v1.rs"));
}

pub use prost;
use prost::Message;

/// The schema version this build produces and understands
/// (the `schema_version` field of every message).
pub const SCHEMA_VERSION: u32 = 1;

/// The routing key of [`v1::ExecuteTask`] messages (the `executions` queue).
pub const EXECUTE_ROUTING_KEY: &str = "execute";
/// The routing key of [`v1::ItemBatch`] messages (the `batches` queue).
pub const BATCH_ROUTING_KEY: &str = "batch";

impl v1::ExecuteTask {
    /// "Executar Tarefa": run `task_id` now, asked by `requested_by` at
    /// `requested_at_unix_ms`, under a request id the caller made fresh.
    pub fn manual(
        task_id: i64,
        account: &str,
        request_id: String,
        requested_by: &str,
        requested_at_unix_ms: i64,
    ) -> Self {
        v1::ExecuteTask {
            schema_version: SCHEMA_VERSION,
            task_id,
            account: account.to_string(),
            request_id,
            trigger: v1::Trigger::Manual as i32,
            scheduled_for_unix_ms: 0,
            requested_by: requested_by.to_string(),
            requested_at_unix_ms,
            trace_context: Default::default(),
        }
    }

    /// The scheduler's fire of `task_id` for `scheduled_for_unix_ms`, under the request id
    /// derived from the task and the fire time.
    pub fn scheduled(
        task_id: i64,
        account: &str,
        request_id: String,
        scheduled_for_unix_ms: i64,
        requested_by: &str,
        requested_at_unix_ms: i64,
    ) -> Self {
        v1::ExecuteTask {
            schema_version: SCHEMA_VERSION,
            task_id,
            account: account.to_string(),
            request_id,
            trigger: v1::Trigger::Scheduled as i32,
            scheduled_for_unix_ms,
            requested_by: requested_by.to_string(),
            requested_at_unix_ms,
            trace_context: Default::default(),
        }
    }
}

impl v1::ItemBatch {
    /// A first attempt at `item_ids` of run `run_id`.
    pub fn new(run_id: i64, task_id: i64, account: &str, item_ids: Vec<i64>) -> Self {
        v1::ItemBatch {
            schema_version: SCHEMA_VERSION,
            run_id,
            task_id,
            account: account.to_string(),
            item_ids,
            attempt: 0,
            trace_context: Default::default(),
        }
    }
}

/// Largest message body accepted by the decoders: 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Largest number of `item_ids` in one [`v1::ItemBatch`].
pub const MAX_ITEM_IDS: usize = 10_000;

/// Why a message body was rejected by a checked decoder.
///
/// `Display` is a single line (no control characters) meant for logs and for
/// a dead-letter header; [`DecodeError::code`] is a short stable tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body has no bytes at all.
    #[error("empty message body")]
    Empty,

    /// The body is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message body too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// Size of the rejected body, in bytes.
        len: usize,
        /// The limit, [`MAX_MESSAGE_BYTES`].
        limit: usize,
    },

    /// The body is not a valid protobuf encoding of the expected message.
    #[error("malformed {message}: {reason}")]
    Malformed {
        /// The message type that was expected, e.g. `"ExecuteTask"`.
        message: &'static str,
        /// prost's description of the problem (made single-line).
        reason: String,
    },

    /// The message carries a `schema_version` this build does not understand.
    #[error("unsupported {message} schema_version {version} (supported: {supported})")]
    UnknownSchemaVersion {
        /// The message type, e.g. `"ItemBatch"`.
        message: &'static str,
        /// The version found in the message (0 when the field was not set).
        version: u32,
        /// The version this build understands, [`SCHEMA_VERSION`].
        supported: u32,
    },

    /// A required field is absent (zero, empty or unspecified).
    #[error("invalid {message}: missing required field {field}")]
    MissingField {
        /// The message type, e.g. `"ExecuteTask"`.
        message: &'static str,
        /// The field's name in the `.proto`, e.g. `"account"`.
        field: &'static str,
    },

    /// A field is present but its value is not allowed.
    #[error("invalid {message}: field {field} {problem}")]
    InvalidField {
        /// The message type, e.g. `"ItemBatch"`.
        message: &'static str,
        /// The field's name in the `.proto`, e.g. `"item_ids"`.
        field: &'static str,
        /// What is wrong with the value, e.g. `"must be > 0 (got -3)"`.
        problem: String,
    },
}

impl DecodeError {
    /// A short, stable, machine-readable tag for the error kind:
    /// `empty`, `too_large`, `malformed`, `unknown_schema_version`,
    /// `missing_field` or `invalid_field`.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::UnknownSchemaVersion { .. } => "unknown_schema_version",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::InvalidField { .. } => "invalid_field",
        }
    }
}

const EXECUTE_TASK: &str = "ExecuteTask";
const ITEM_BATCH: &str = "ItemBatch";

/// Collapse any line breaks or other control characters into single spaces so
/// the text fits on one line (a header value, a log field).
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Size checks and protobuf parsing shared by the decoders.
fn decode_body<M: Message + Default>(
    message: &'static str,
    bytes: &[u8],
) -> Result<M, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    M::decode(bytes).map_err(|e| DecodeError::Malformed {
        message,
        reason: one_line(&e.to_string()),
    })
}

fn check_schema_version(message: &'static str, version: u32) -> Result<(), DecodeError> {
    if version == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnknownSchemaVersion {
            message,
            version,
            supported: SCHEMA_VERSION,
        })
    }
}

/// A required positive id: 0 is "missing", negative is "invalid".
fn check_id(message: &'static str, field: &'static str, value: i64) -> Result<(), DecodeError> {
    match value {
        0 => Err(DecodeError::MissingField { message, field }),
        v if v < 0 => Err(DecodeError::InvalidField {
            message,
            field,
            problem: format!("must be > 0 (got {v})"),
        }),
        _ => Ok(()),
    }
}

fn check_not_empty(
    message: &'static str,
    field: &'static str,
    value: &str,
) -> Result<(), DecodeError> {
    if value.trim().is_empty() {
        Err(DecodeError::MissingField { message, field })
    } else {
        Ok(())
    }
}

impl v1::ExecuteTask {
    /// Check the rules a consumer enforces: `schema_version` is
    /// [`SCHEMA_VERSION`], `task_id > 0`, `account` and `request_id` are not
    /// empty, `trigger` is a known value other than unspecified, and a
    /// scheduled trigger has `scheduled_for_unix_ms > 0`.
    ///
    /// Producers may call it before publishing; [`decode_execute_task`] calls it
    /// after parsing.
    pub fn validate(&self) -> Result<(), DecodeError> {
        const M: &str = EXECUTE_TASK;
        check_schema_version(M, self.schema_version)?;
        check_id(M, "task_id", self.task_id)?;
        check_not_empty(M, "account", &self.account)?;
        check_not_empty(M, "request_id", &self.request_id)?;
        match v1::Trigger::try_from(self.trigger) {
            Ok(v1::Trigger::Unspecified) => Err(DecodeError::MissingField {
                message: M,
                field: "trigger",
            }),
            Err(_) => Err(DecodeError::InvalidField {
                message: M,
                field: "trigger",
                problem: format!("has unknown value {}", self.trigger),
            }),
            Ok(v1::Trigger::Manual) => Ok(()),
            Ok(v1::Trigger::Scheduled) => match self.scheduled_for_unix_ms {
                0 => Err(DecodeError::InvalidField {
                    message: M,
                    field: "scheduled_for_unix_ms",
                    problem: "is required for trigger TRIGGER_SCHEDULED".to_owned(),
                }),
                v if v < 0 => Err(DecodeError::InvalidField {
                    message: M,
                    field: "scheduled_for_unix_ms",
                    problem: format!("must be > 0 (got {v})"),
                }),
                _ => Ok(()),
            },
        }
    }
}

impl v1::ItemBatch {
    /// Check the rules a consumer enforces: `schema_version` is
    /// [`SCHEMA_VERSION`], `run_id > 0`, and `item_ids` holds between 1 and
    /// [`MAX_ITEM_IDS`] ids, each > 0.
    ///
    /// Producers may call it before publishing; [`decode_item_batch`] calls it
    /// after parsing.
    pub fn validate(&self) -> Result<(), DecodeError> {
        const M: &str = ITEM_BATCH;
        check_schema_version(M, self.schema_version)?;
        check_id(M, "run_id", self.run_id)?;
        if self.item_ids.is_empty() {
            return Err(DecodeError::MissingField {
                message: M,
                field: "item_ids",
            });
        }
        if self.item_ids.len() > MAX_ITEM_IDS {
            return Err(DecodeError::InvalidField {
                message: M,
                field: "item_ids",
                problem: format!("has {} ids (limit {MAX_ITEM_IDS})", self.item_ids.len()),
            });
        }
        if let Some(bad) = self.item_ids.iter().find(|&&id| id <= 0) {
            return Err(DecodeError::InvalidField {
                message: M,
                field: "item_ids",
                problem: format!("contains an id <= 0 ({bad})"),
            });
        }
        Ok(())
    }
}

/// Decode and validate an [`v1::ExecuteTask`] message body.
///
/// Rejects an empty body or one over [`MAX_MESSAGE_BYTES`], bytes that are not
/// a valid protobuf encoding, a `schema_version` other than [`SCHEMA_VERSION`],
/// and messages that break the rules of [`v1::ExecuteTask::validate`].
pub fn decode_execute_task(bytes: &[u8]) -> Result<v1::ExecuteTask, DecodeError> {
    let msg: v1::ExecuteTask = decode_body(EXECUTE_TASK, bytes)?;
    msg.validate()?;
    Ok(msg)
}

/// Decode and validate an [`v1::ItemBatch`] message body.
///
/// Rejects an empty body or one over [`MAX_MESSAGE_BYTES`], bytes that are not
/// a valid protobuf encoding, a `schema_version` other than [`SCHEMA_VERSION`],
/// and messages that break the rules of [`v1::ItemBatch::validate`].
pub fn decode_item_batch(bytes: &[u8]) -> Result<v1::ItemBatch, DecodeError> {
    let msg: v1::ItemBatch = decode_body(ITEM_BATCH, bytes)?;
    msg.validate()?;
    Ok(msg)
}

/// Encode an [`v1::ExecuteTask`] as a protobuf message body.
///
/// It does not validate: call [`v1::ExecuteTask::validate`] first if the
/// message is not known to be valid, since consumers reject invalid ones.
pub fn encode_execute_task(msg: &v1::ExecuteTask) -> Vec<u8> {
    msg.encode_to_vec()
}

/// Encode an [`v1::ItemBatch`] as a protobuf message body.
///
/// It does not validate: call [`v1::ItemBatch::validate`] first if the
/// message is not known to be valid, since consumers reject invalid ones.
pub fn encode_item_batch(msg: &v1::ItemBatch) -> Vec<u8> {
    msg.encode_to_vec()
}

#[cfg(test)]
mod tests;
