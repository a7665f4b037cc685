//! Message headers and properties that Tarefas sets and reads, and helpers to
//! read AMQP header values of any integer or string type.

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

/// Content type of every message body: protobuf.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// Schema version of the body ([`tarefas_proto::SCHEMA_VERSION`]), an integer.
pub const SCHEMA: &str = "x-tarefas-schema";

/// Delivery attempt of the message, an integer starting at 1 (absent means
/// 1); incremented each time the message goes through a delay queue.
pub const ATTEMPT: &str = "x-tarefas-attempt";

/// On a retried message: why the previous attempt asked for a retry.
pub const RETRY_REASON: &str = "x-tarefas-retry-reason";

/// On a dead letter: why it was dead-lettered (one line).
pub const REASON: &str = "x-tarefas-reason";

/// On a dead letter: a short machine-readable tag for the reason:
/// [`DecodeError::code`](tarefas_proto::DecodeError::code) for a malformed
/// message, [`REASON_CODE_HANDLER`] or [`REASON_CODE_RETRIES_EXHAUSTED`].
pub const REASON_CODE: &str = "x-tarefas-reason-code";

/// On a dead letter: the work queue it was consumed from.
pub const SOURCE_QUEUE: &str = "x-tarefas-source-queue";

/// On a dead letter: when it was dead-lettered (RFC 3339, UTC).
pub const FAILED_AT: &str = "x-tarefas-failed-at";

/// When the message was first published (milliseconds since the Unix epoch, an integer),
/// for the queue-lag metric.
pub const PUBLISHED_MS: &str = "x-tarefas-published-ms";

/// The W3C trace context of the span that produced the message.
pub const TRACEPARENT: &str = "traceparent";

/// How many times an operator replayed the message from the DLQ.
pub const REPLAYS: &str = "x-tarefas-replays";

/// Reason code: the handler asked for the message to be dead-lettered.
pub const REASON_CODE_HANDLER: &str = "handler";

/// Reason code: the handler asked for a retry after the last retry delay.
pub const REASON_CODE_RETRIES_EXHAUSTED: &str = "retries_exhausted";

/// String headers of a message (e.g. trace context), as given to
/// [`Publisher::publish`](crate::Publisher::publish).
pub type Headers = BTreeMap<String, String>;

/// Read an integer header value, whatever integer (or numeric string) type
/// the producer used.
pub(crate) fn as_i64(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            as_string(value).and_then(|s| s.trim().parse().ok())
        }
        _ => None,
    }
}

/// Read a string header value.
pub(crate) fn as_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The headers table of `properties`, if any.
pub(crate) fn table(properties: &BasicProperties) -> Option<&FieldTable> {
    properties.headers().as_ref()
}

/// A header of `properties` as a string.
pub(crate) fn get_string(properties: &BasicProperties, key: &str) -> Option<String> {
    table(properties)?.inner().get(key).and_then(as_string)
}

/// A header of `properties` as an integer.
pub(crate) fn get_i64(properties: &BasicProperties, key: &str) -> Option<i64> {
    table(properties)?.inner().get(key).and_then(as_i64)
}

/// The delivery attempt recorded in `properties` (1 when absent or invalid).
pub(crate) fn attempt(properties: &BasicProperties) -> u32 {
    get_i64(properties, ATTEMPT)
        .and_then(|a| u32::try_from(a).ok())
        .filter(|a| *a >= 1)
        .unwrap_or(1)
}

/// A string header value.
pub(crate) fn string_value(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// An integer header value (`l`, which RabbitMQ understands).
pub(crate) fn int_value(value: i64) -> AMQPValue {
    AMQPValue::LongLongInt(value)
}

/// A copy of `properties` with its headers edited by `edit`.
pub(crate) fn with_headers(
    properties: &BasicProperties,
    edit: impl FnOnce(&mut BTreeMap<ShortString, AMQPValue>),
) -> BasicProperties {
    let mut map = table(properties)
        .map(|t| t.inner().clone())
        .unwrap_or_default();
    edit(&mut map);
    properties.clone().with_headers(FieldTable::from(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_reads_any_integer_type_and_defaults_to_one() {
        let props = |v: AMQPValue| {
            let mut t = FieldTable::default();
            t.insert(ATTEMPT.into(), v);
            BasicProperties::default().with_headers(t)
        };
        assert_eq!(attempt(&BasicProperties::default()), 1);
        assert_eq!(attempt(&props(AMQPValue::LongInt(3))), 3);
        assert_eq!(attempt(&props(AMQPValue::LongLongInt(4))), 4);
        assert_eq!(attempt(&props(AMQPValue::ShortShortUInt(2))), 2);
        assert_eq!(attempt(&props(string_value(" 5 "))), 5);
        assert_eq!(attempt(&props(AMQPValue::LongInt(0))), 1);
        assert_eq!(attempt(&props(AMQPValue::LongInt(-2))), 1);
        assert_eq!(attempt(&props(AMQPValue::Boolean(true))), 1);
    }

    #[test]
    fn with_headers_keeps_other_properties() {
        let props = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_delivery_mode(2);
        let edited = with_headers(&props, |h| {
            h.insert(ATTEMPT.into(), int_value(2));
        });
        assert_eq!(
            edited.message_id().as_ref().map(|s| s.as_str()),
            Some("m-1")
        );
        assert_eq!(*edited.delivery_mode(), Some(2));
        assert_eq!(attempt(&edited), 2);
    }
}
