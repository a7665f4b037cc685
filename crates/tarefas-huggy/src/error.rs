//! What went wrong on a Huggy call, classified by what the caller must do next.
//!
//! Every answer and every transport failure maps to exactly one [`HuggyError`] variant, and
//! each variant is a decision: retry after a pause, retry with backoff, settle the item as
//! `unknown` (the call may have happened), fail the record with a reason, pause the whole run,
//! or accept that the call happened although its answer could not be read.
//!
//! [`classify`] is the pure mapping from an HTTP answer; [`classify_transport`] maps a
//! `reqwest` error that produced no answer.

use std::time::Duration;

/// Longest reason kept from an answer body, in characters.
const MAX_REASON_CHARS: usize = 300;

/// A failed Huggy call, named by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HuggyError {
    /// 429: the account is over Huggy's rate limit. Pause every sender of this account for
    /// `retry_after` when Huggy said how long (its `Retry-After` header, in seconds), else
    /// back off (see [`crate::unconfirmed::DEFAULT_RATE_LIMIT_BACKOFF`]). The call did not happen.
    #[error("rate limited by Huggy (retry after {retry_after:?})")]
    RateLimited {
        /// How long Huggy asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer, or a connection that failed before the request was sent (refused,
    /// connect timeout). The call did not happen: retry with backoff.
    #[error("Huggy call failed, safe to retry: {reason}")]
    Retryable {
        /// What failed.
        reason: String,
    },
    /// The request may have reached Huggy but no answer came back (a timeout or a broken
    /// connection after sending). The call may have happened: never resend a Flow blindly.
    #[error("Huggy call outcome unknown: {reason}")]
    Ambiguous {
        /// What failed.
        reason: String,
    },
    /// Huggy refused this record for good (404 gone, 400/422 rejected, any other 4xx, or an
    /// unexpected 1xx/3xx): fail this item with `reason` and go on with the run.
    /// `status` is 0 when the request could not even be built.
    #[error("Huggy rejected the call ({status}): {reason}")]
    Permanent {
        /// The HTTP status Huggy answered (0: no answer, the request could not be built).
        status: u16,
        /// Huggy's message from the answer body, else the status text.
        reason: String,
    },
    /// 401/403: the account's token is bad. Pause the run; every other record would fail too.
    #[error("Huggy refused the account's token ({status})")]
    BadToken {
        /// 401 or 403.
        status: u16,
    },
    /// A 2xx answer whose body could not be read or parsed. The call happened.
    #[error("could not decode Huggy's answer: {reason}")]
    Decode {
        /// What could not be decoded, and where.
        reason: String,
    },
}

impl HuggyError {
    /// True when the same call may simply be sent again later (rate limited or retryable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Retryable { .. })
    }

    /// True for a 404: the record is gone from Huggy.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Permanent { status: 404, .. })
    }

    /// The pause Huggy asked for, when this is a 429 that said one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Classifies one HTTP answer from Huggy: `Ok(())` for 2xx, else the error that says what to do.
///
/// `retry_after_header` is the raw `Retry-After` value, used only for 429 (delta-seconds,
/// integer or decimal; an HTTP-date or garbage yields `None`). `body` is the answer body, from
/// which a `message` (or `error`, `reason`) string is taken as the reason of a permanent error.
pub fn classify(
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> Result<(), HuggyError> {
    match status {
        200..=299 => Ok(()),
        429 => Err(HuggyError::RateLimited {
            retry_after: retry_after_header.and_then(parse_retry_after),
        }),
        401 | 403 => Err(HuggyError::BadToken { status }),
        500..=599 => Err(HuggyError::Retryable {
            reason: format!(
                "HTTP {status} {}",
                reason_from_body(body).unwrap_or_else(|| status_text(status).to_owned())
            ),
        }),
        _ => Err(HuggyError::Permanent {
            status,
            reason: reason_from_body(body).unwrap_or_else(|| status_text(status).to_owned()),
        }),
    }
}

/// Parses a `Retry-After` value in seconds (`"7"`, `" 2.5 "`). Negative, non-finite or
/// non-numeric values (including HTTP-dates) give `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let secs = value.parse::<f64>().ok()?;
    if (0.0..1.0e9).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        None
    }
}

/// Classifies a `reqwest` error that left us without an HTTP answer.
///
/// A connect failure (refused, connect timeout, DNS) means nothing was sent: retryable.
/// A request that could not be built is permanent. Anything else (a timeout or a broken
/// connection after the request was written) is ambiguous: the call may have happened.
pub fn classify_transport(err: &reqwest::Error) -> HuggyError {
    let reason = error_chain(err);
    if err.is_connect() {
        HuggyError::Retryable { reason }
    } else if err.is_builder() {
        HuggyError::Permanent { status: 0, reason }
    } else {
        HuggyError::Ambiguous { reason }
    }
}

/// The error and its sources, joined with `: `.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Huggy's message from a JSON error body: the first non-empty string among `message`,
/// `error`, `reason` (also `error.message`), cut to a sane length.
fn reason_from_body(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let obj = value.as_object()?;
    let text = ["message", "error", "reason"]
        .iter()
        .find_map(|key| match obj.get(*key)? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            serde_json::Value::Object(inner) => inner
                .get("message")
                .and_then(|m| m.as_str())
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_owned()),
            _ => None,
        })?;
    Some(truncate(text))
}

fn truncate(mut text: String) -> String {
    if let Some((idx, _)) = text.char_indices().nth(MAX_REASON_CHARS) {
        text.truncate(idx);
        text.push('…');
    }
    text
}

/// The canonical reason phrase of a status code, or `"unknown status"`.
fn status_text(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unknown status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_2xx_is_done() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(classify(status, None, "not json"), Ok(()));
        }
    }

    #[test]
    fn rate_limited_with_and_without_retry_after() {
        assert_eq!(
            classify(429, Some("7"), ""),
            Err(HuggyError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            })
        );
        assert_eq!(
            classify(429, Some(" 1.5 "), "{}"),
            Err(HuggyError::RateLimited {
                retry_after: Some(Duration::from_millis(1500))
            })
        );
        assert_eq!(
            classify(429, None, ""),
            Err(HuggyError::RateLimited { retry_after: None })
        );
        assert_eq!(
            classify(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), ""),
            Err(HuggyError::RateLimited { retry_after: None })
        );
        assert_eq!(
            classify(429, Some("-3"), "").unwrap_err().retry_after(),
            None
        );
        assert_eq!(
            classify(429, Some("inf"), "").unwrap_err().retry_after(),
            None
        );
    }

    #[test]
    fn bad_token() {
        assert_eq!(
            classify(401, None, r#"{"message":"Unauthenticated."}"#),
            Err(HuggyError::BadToken { status: 401 })
        );
        assert_eq!(
            classify(403, None, ""),
            Err(HuggyError::BadToken { status: 403 })
        );
    }

    #[test]
    fn server_errors_are_retryable() {
        for status in [500, 502, 503, 504, 599] {
            let err = classify(status, None, "").unwrap_err();
            assert!(
                matches!(err, HuggyError::Retryable { .. }),
                "{status}: {err:?}"
            );
            assert!(err.is_retryable());
        }
        let err = classify(503, Some("5"), r#"{"message":"maintenance"}"#).unwrap_err();
        assert_eq!(
            err,
            HuggyError::Retryable {
                reason: "HTTP 503 maintenance".into()
            }
        );
        let err = classify(502, None, "<html>bad gateway</html>").unwrap_err();
        assert_eq!(
            err,
            HuggyError::Retryable {
                reason: "HTTP 502 Bad Gateway".into()
            }
        );
    }

    #[test]
    fn client_errors_are_permanent_with_reason() {
        assert_eq!(
            classify(404, None, r#"{"message":"Contact not found"}"#),
            Err(HuggyError::Permanent {
                status: 404,
                reason: "Contact not found".into()
            })
        );
        assert!(classify(404, None, "").unwrap_err().is_not_found());
        assert_eq!(
            classify(422, None, r#"{"error":"chat already closed"}"#),
            Err(HuggyError::Permanent {
                status: 422,
                reason: "chat already closed".into()
            })
        );
        assert_eq!(
            classify(400, None, r#"{"error":{"message":"flowId required"}}"#),
            Err(HuggyError::Permanent {
                status: 400,
                reason: "flowId required".into()
            })
        );
        assert_eq!(
            classify(400, None, "plain text"),
            Err(HuggyError::Permanent {
                status: 400,
                reason: "Bad Request".into()
            })
        );
        assert_eq!(
            classify(422, None, r#"{"message":"  "}"#),
            Err(HuggyError::Permanent {
                status: 422,
                reason: "Unprocessable Entity".into()
            })
        );
        for status in [402, 405, 408, 409, 410, 415, 499] {
            let err = classify(status, None, "[]").unwrap_err();
            assert!(
                matches!(err, HuggyError::Permanent { status: s, .. } if s == status),
                "{err:?}"
            );
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn unexpected_informational_and_redirects_are_permanent() {
        for status in [100, 301, 302, 304, 307] {
            let err = classify(status, None, "").unwrap_err();
            assert!(
                matches!(err, HuggyError::Permanent { .. }),
                "{status}: {err:?}"
            );
        }
        assert_eq!(
            classify(799, None, ""),
            Err(HuggyError::Permanent {
                status: 799,
                reason: "unknown status".into()
            })
        );
    }

    #[test]
    fn long_reasons_are_cut() {
        let body = serde_json::json!({ "message": "é".repeat(1000) }).to_string();
        let HuggyError::Permanent { reason, .. } = classify(400, None, &body).unwrap_err() else {
            panic!("expected permanent");
        };
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn helpers() {
        let limited = HuggyError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        assert!(limited.is_retryable());
        assert!(!HuggyError::Ambiguous { reason: "x".into() }.is_retryable());
        assert!(!HuggyError::Decode { reason: "x".into() }.is_retryable());
        assert!(!HuggyError::BadToken { status: 401 }.is_retryable());
        assert_eq!(
            HuggyError::Retryable { reason: "x".into() }.retry_after(),
            None
        );
    }
}
