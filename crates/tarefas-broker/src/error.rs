//! The one error type of this crate, [`BrokerError`].
//!
//! Its variants are the caller's decision: [`BrokerError::is_transient`] says
//! whether trying again later can help (the broker is unreachable, a publish
//! was not confirmed) or whether something must be fixed first (a bad
//! setting, a topology that conflicts with the queues already declared, an
//! invalid message).

use tarefas_proto::DecodeError;

/// What went wrong talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A setting is invalid (names, delays, URL); fix the configuration.
    #[error("invalid broker configuration: {0}")]
    Config(String),

    /// RabbitMQ could not be reached within the allowed time (initial connect,
    /// or a publish that had to wait for a reconnection). Transient.
    #[error("RabbitMQ at {url} is unavailable after {waited_ms} ms: {last_error}")]
    Unavailable {
        /// The broker URL, without its password.
        url: String,
        /// How long we tried, in milliseconds.
        waited_ms: u128,
        /// The last error seen (one line).
        last_error: String,
    },

    /// An AMQP operation failed (connection or channel closed, I/O error).
    /// Usually transient: the connection is re-opened on the next use.
    #[error("AMQP operation {operation} failed: {source}")]
    Amqp {
        /// What we were doing, e.g. `basic.publish`.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },

    /// Declaring the topology failed, typically because a queue or exchange
    /// already exists with other arguments (`PRECONDITION_FAILED`). Not
    /// transient: an operator must delete or migrate the conflicting object.
    #[error("cannot declare {object}: {source}")]
    Topology {
        /// The exchange, queue or binding that failed.
        object: String,
        /// lapin's error, naming the conflicting argument.
        #[source]
        source: lapin::Error,
    },

    /// The broker refused to take responsibility for `count` message(s)
    /// (publisher confirm `basic.nack`). Transient in general (e.g. a queue at
    /// its length limit); publish again later.
    #[error("RabbitMQ refused {count} published message(s) (nack)")]
    Nacked {
        /// How many messages were nacked.
        count: usize,
    },

    /// A published message matched no queue (it was returned as unroutable).
    /// Not transient: the routing key or the topology is wrong.
    #[error("message to exchange {exchange:?} with routing key {routing_key:?} is unroutable")]
    Unroutable {
        /// The exchange it was published to (`""` is the default exchange).
        exchange: String,
        /// Its routing key.
        routing_key: String,
    },

    /// The message does not pass the wire contract's validation and would be
    /// dead-lettered by consumers; it was not published.
    #[error("refusing to publish an invalid message: {0}")]
    InvalidMessage(#[from] DecodeError),
}

impl BrokerError {
    /// Whether the same call may succeed later without any change: the broker
    /// was unreachable, a connection dropped, or a publish was nacked.
    ///
    /// `false` for configuration, topology, routing and validation errors,
    /// which need a fix first.
    pub fn is_transient(&self) -> bool {
        match self {
            BrokerError::Unavailable { .. }
            | BrokerError::Amqp { .. }
            | BrokerError::Nacked { .. } => true,
            BrokerError::Config(_)
            | BrokerError::Topology { .. }
            | BrokerError::Unroutable { .. }
            | BrokerError::InvalidMessage(_) => false,
        }
    }

    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> BrokerError {
        move |source| BrokerError::Amqp { operation, source }
    }
}

/// The URL without its password, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<invalid url>".to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Collapse control characters (line breaks) into spaces and cap the length,
/// so that a reason fits on one line in a header or a log field.
pub(crate) fn one_line(text: &str, max_bytes: usize) -> String {
    let mut line = text
        .split(|c: char| c.is_control())
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.len() > max_bytes {
        let mut cut = max_bytes.saturating_sub(3);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqp://127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("nonsense"), "<invalid url>");
    }

    #[test]
    fn one_line_collapses_and_caps() {
        assert_eq!(one_line("a\nb\r\n\tc", 100), "a b c");
        let long = "é".repeat(100);
        let cut = one_line(&long, 21);
        assert!(cut.len() <= 21, "{cut}");
        assert!(cut.ends_with("..."));
    }
}
