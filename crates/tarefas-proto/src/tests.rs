//! Unit tests of the checked decoders and encoders.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn trace() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ),
        ("tracestate".to_owned(), "rojo=00f067aa0ba902b7".to_owned()),
    ])
}

fn manual() -> v1::ExecuteTask {
    v1::ExecuteTask {
        schema_version: SCHEMA_VERSION,
        task_id: 42,
        account: "acme".to_owned(),
        request_id: "0b6f2a4e-8f1c-4d7e-9a51-3c2d1e0f9b8a".to_owned(),
        trigger: v1::Trigger::Manual.into(),
        scheduled_for_unix_ms: 0,
        requested_by: "ana@acme.example".to_owned(),
        requested_at_unix_ms: 1_764_000_000_000,
        trace_context: trace(),
    }
}

fn scheduled() -> v1::ExecuteTask {
    v1::ExecuteTask {
        trigger: v1::Trigger::Scheduled.into(),
        scheduled_for_unix_ms: 1_764_003_600_000,
        requested_by: "scheduler".to_owned(),
        ..manual()
    }
}

fn batch() -> v1::ItemBatch {
    v1::ItemBatch {
        schema_version: SCHEMA_VERSION,
        run_id: 7,
        task_id: 42,
        account: "acme".to_owned(),
        item_ids: vec![1, 2, 3, 1_000_000_000_000],
        attempt: 1,
        trace_context: trace(),
    }
}

/// Every error must render as one non-empty line without control characters
/// (it goes into a dead-letter header).
fn assert_one_line(err: &DecodeError) {
    let text = err.to_string();
    assert!(!text.is_empty(), "{err:?} has an empty Display");
    assert!(
        !text.chars().any(char::is_control),
        "{err:?} Display is not one line: {text:?}"
    );
}

fn exec_err(msg: &v1::ExecuteTask) -> DecodeError {
    let err = decode_execute_task(&encode_execute_task(msg)).expect_err("should be rejected");
    assert_eq!(
        msg.validate(),
        Err(err.clone()),
        "validate() and decode disagree"
    );
    assert_one_line(&err);
    err
}

fn batch_err(msg: &v1::ItemBatch) -> DecodeError {
    let err = decode_item_batch(&encode_item_batch(msg)).expect_err("should be rejected");
    assert_eq!(
        msg.validate(),
        Err(err.clone()),
        "validate() and decode disagree"
    );
    assert_one_line(&err);
    err
}

// ---------------------------------------------------------------- round trips

#[test]
fn execute_task_manual_round_trips() {
    let msg = manual();
    assert_eq!(msg.validate(), Ok(()));
    let decoded = decode_execute_task(&encode_execute_task(&msg)).unwrap();
    assert_eq!(decoded, msg);
    assert_eq!(decoded.trigger(), v1::Trigger::Manual);
}

#[test]
fn execute_task_scheduled_round_trips() {
    let msg = scheduled();
    let decoded = decode_execute_task(&encode_execute_task(&msg)).unwrap();
    assert_eq!(decoded, msg);
    assert_eq!(decoded.trigger(), v1::Trigger::Scheduled);
    assert_eq!(decoded.scheduled_for_unix_ms, 1_764_003_600_000);
}

#[test]
fn execute_task_minimal_round_trips() {
    let msg = v1::ExecuteTask {
        schema_version: SCHEMA_VERSION,
        task_id: 1,
        account: "a".to_owned(),
        request_id: "r".to_owned(),
        trigger: v1::Trigger::Manual.into(),
        ..Default::default()
    };
    assert_eq!(
        decode_execute_task(&encode_execute_task(&msg)).unwrap(),
        msg
    );
}

#[test]
fn item_batch_round_trips() {
    let msg = batch();
    assert_eq!(msg.validate(), Ok(()));
    assert_eq!(decode_item_batch(&encode_item_batch(&msg)).unwrap(), msg);
}

#[test]
fn item_batch_with_max_ids_round_trips() {
    let msg = v1::ItemBatch {
        item_ids: (1..=MAX_ITEM_IDS as i64).collect(),
        ..batch()
    };
    assert_eq!(decode_item_batch(&encode_item_batch(&msg)).unwrap(), msg);
}

#[test]
fn encoding_is_deterministic() {
    // Maps are BTreeMaps, so the same message always gives the same bytes.
    assert_eq!(
        encode_execute_task(&manual()),
        encode_execute_task(&manual())
    );
    assert_eq!(encode_item_batch(&batch()), encode_item_batch(&batch()));
}

#[test]
fn trigger_names_match_the_proto() {
    assert_eq!(
        v1::Trigger::Unspecified.as_str_name(),
        "TRIGGER_UNSPECIFIED"
    );
    assert_eq!(v1::Trigger::Manual.as_str_name(), "TRIGGER_MANUAL");
    assert_eq!(v1::Trigger::Scheduled.as_str_name(), "TRIGGER_SCHEDULED");
    assert_eq!(i32::from(v1::Trigger::Scheduled), 2);
}

// ------------------------------------------------------------- size limits

#[test]
fn empty_body_is_rejected() {
    for err in [
        decode_execute_task(&[]).unwrap_err(),
        decode_item_batch(&[]).unwrap_err(),
    ] {
        assert_eq!(err, DecodeError::Empty);
        assert_eq!(err.code(), "empty");
        assert_eq!(err.to_string(), "empty message body");
    }
}

#[test]
fn oversized_body_is_rejected_before_parsing() {
    // Not even valid protobuf: the size check comes first.
    let body = vec![0xff_u8; MAX_MESSAGE_BYTES + 1];
    for err in [
        decode_execute_task(&body).unwrap_err(),
        decode_item_batch(&body).unwrap_err(),
    ] {
        assert_eq!(
            err,
            DecodeError::TooLarge {
                len: MAX_MESSAGE_BYTES + 1,
                limit: MAX_MESSAGE_BYTES
            }
        );
        assert_eq!(err.code(), "too_large");
        assert_eq!(
            err.to_string(),
            "message body too large: 1048577 bytes (limit 1048576)"
        );
    }
}

#[test]
fn body_of_exactly_the_limit_is_accepted() {
    // Grow a trace_context value until the encoding is exactly 1 MiB.
    // Start a little short: the length prefixes grow by a few bytes as the
    // value grows, then stay the same size near 1 MiB.
    let mut msg = manual();
    let mut filler = MAX_MESSAGE_BYTES - msg.encoded_len() - 64;
    loop {
        msg.trace_context
            .insert("filler".to_owned(), "x".repeat(filler));
        let len = msg.encoded_len();
        if len == MAX_MESSAGE_BYTES {
            break;
        }
        assert!(len < MAX_MESSAGE_BYTES, "overshot: {len}");
        filler += MAX_MESSAGE_BYTES - len;
    }
    let bytes = encode_execute_task(&msg);
    assert_eq!(bytes.len(), MAX_MESSAGE_BYTES);
    assert_eq!(decode_execute_task(&bytes).unwrap(), msg);

    msg.trace_context
        .insert("filler".to_owned(), "x".repeat(filler + 1));
    let err = decode_execute_task(&encode_execute_task(&msg)).unwrap_err();
    assert_eq!(err.code(), "too_large");
}

// --------------------------------------------------------------- malformed

#[test]
fn truncated_body_is_malformed() {
    // The last field is the trace_context map: dropping the last byte cuts a
    // length-delimited field short.
    let bytes = encode_execute_task(&manual());
    let err = decode_execute_task(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                message: "ExecuteTask",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "malformed");
    assert!(
        err.to_string().starts_with("malformed ExecuteTask: "),
        "{err}"
    );
    assert_one_line(&err);

    let bytes = encode_item_batch(&batch());
    let err = decode_item_batch(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                message: "ItemBatch",
                ..
            }
        ),
        "{err:?}"
    );
    assert_one_line(&err);
}

#[test]
fn every_prefix_is_rejected_or_still_valid() {
    // A prefix that ends on a field boundary is a valid shorter message; any
    // other prefix must be rejected, and nothing may panic.
    let bytes = encode_execute_task(&scheduled());
    for cut in 1..bytes.len() {
        if let Ok(msg) = decode_execute_task(&bytes[..cut]) {
            assert_eq!(msg.validate(), Ok(()));
        }
    }
    let bytes = encode_item_batch(&batch());
    for cut in 1..bytes.len() {
        if let Ok(msg) = decode_item_batch(&bytes[..cut]) {
            assert_eq!(msg.validate(), Ok(()));
        }
    }
}

#[test]
fn invalid_wire_type_is_malformed() {
    // Field 1 with wire type 7, which does not exist.
    let err = decode_execute_task(&[0x0f, 0x01]).unwrap_err();
    assert_eq!(err.code(), "malformed", "{err:?}");
    assert_one_line(&err);
    let err = decode_item_batch(&[0x0f, 0x01]).unwrap_err();
    assert_eq!(err.code(), "malformed", "{err:?}");
}

#[test]
fn non_utf8_string_is_malformed() {
    // schema_version = 1, then account (field 3, length-delimited) = 0xff 0xfe.
    let err = decode_execute_task(&[0x08, 0x01, 0x1a, 0x02, 0xff, 0xfe]).unwrap_err();
    let DecodeError::Malformed { message, reason } = &err else {
        panic!("expected Malformed, got {err:?}");
    };
    assert_eq!(*message, "ExecuteTask");
    assert!(reason.contains("UTF-8"), "prost's reason is kept: {reason}");
    assert_one_line(&err);
}

#[test]
fn json_body_is_rejected() {
    let body = br#"{"task_id": 42, "account": "acme"}"#;
    assert!(decode_execute_task(body).is_err());
    assert!(decode_item_batch(body).is_err());
}

#[test]
fn multi_line_reasons_become_one_line() {
    assert_eq!(one_line("a\nb\r\n\tc  "), "a b c");
    assert_eq!(one_line("plain"), "plain");
}

// ---------------------------------------------------------- schema version

#[test]
fn unknown_schema_version_is_rejected() {
    let err = exec_err(&v1::ExecuteTask {
        schema_version: 2,
        ..manual()
    });
    assert_eq!(
        err,
        DecodeError::UnknownSchemaVersion {
            message: "ExecuteTask",
            version: 2,
            supported: SCHEMA_VERSION
        }
    );
    assert_eq!(err.code(), "unknown_schema_version");
    assert_eq!(
        err.to_string(),
        "unsupported ExecuteTask schema_version 2 (supported: 1)"
    );

    let err = batch_err(&v1::ItemBatch {
        schema_version: 99,
        ..batch()
    });
    assert_eq!(
        err.to_string(),
        "unsupported ItemBatch schema_version 99 (supported: 1)"
    );
}

#[test]
fn missing_schema_version_is_version_zero() {
    let err = exec_err(&v1::ExecuteTask {
        schema_version: 0,
        ..manual()
    });
    assert!(
        matches!(err, DecodeError::UnknownSchemaVersion { version: 0, .. }),
        "{err:?}"
    );
}

// ------------------------------------------------------ ExecuteTask fields

#[test]
fn execute_task_requires_task_id() {
    let err = exec_err(&v1::ExecuteTask {
        task_id: 0,
        ..manual()
    });
    assert_eq!(
        err,
        DecodeError::MissingField {
            message: "ExecuteTask",
            field: "task_id"
        }
    );
    assert_eq!(err.code(), "missing_field");
    assert_eq!(
        err.to_string(),
        "invalid ExecuteTask: missing required field task_id"
    );

    let err = exec_err(&v1::ExecuteTask {
        task_id: -3,
        ..manual()
    });
    assert_eq!(err.code(), "invalid_field");
    assert_eq!(
        err.to_string(),
        "invalid ExecuteTask: field task_id must be > 0 (got -3)"
    );
}

#[test]
fn execute_task_requires_account_and_request_id() {
    for account in ["", "   "] {
        let err = exec_err(&v1::ExecuteTask {
            account: account.to_owned(),
            ..manual()
        });
        assert!(
            matches!(
                err,
                DecodeError::MissingField {
                    field: "account",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let err = exec_err(&v1::ExecuteTask {
        request_id: String::new(),
        ..manual()
    });
    assert!(
        matches!(
            err,
            DecodeError::MissingField {
                field: "request_id",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn execute_task_requires_a_known_trigger() {
    let err = exec_err(&v1::ExecuteTask {
        trigger: v1::Trigger::Unspecified.into(),
        ..manual()
    });
    assert!(
        matches!(
            err,
            DecodeError::MissingField {
                field: "trigger",
                ..
            }
        ),
        "{err:?}"
    );

    let err = exec_err(&v1::ExecuteTask {
        trigger: 7,
        ..manual()
    });
    assert_eq!(
        err.to_string(),
        "invalid ExecuteTask: field trigger has unknown value 7"
    );
}

#[test]
fn scheduled_trigger_requires_fire_time() {
    let err = exec_err(&v1::ExecuteTask {
        scheduled_for_unix_ms: 0,
        ..scheduled()
    });
    assert_eq!(err.code(), "invalid_field");
    assert_eq!(
        err.to_string(),
        "invalid ExecuteTask: field scheduled_for_unix_ms is required for trigger TRIGGER_SCHEDULED"
    );

    let err = exec_err(&v1::ExecuteTask {
        scheduled_for_unix_ms: -1,
        ..scheduled()
    });
    assert_eq!(
        err.to_string(),
        "invalid ExecuteTask: field scheduled_for_unix_ms must be > 0 (got -1)"
    );
}

#[test]
fn manual_trigger_needs_no_fire_time() {
    let msg = v1::ExecuteTask {
        scheduled_for_unix_ms: 0,
        ..manual()
    };
    assert_eq!(
        decode_execute_task(&encode_execute_task(&msg)).unwrap(),
        msg
    );
}

// -------------------------------------------------------- ItemBatch fields

#[test]
fn item_batch_requires_run_id() {
    let err = batch_err(&v1::ItemBatch {
        run_id: 0,
        ..batch()
    });
    assert_eq!(
        err.to_string(),
        "invalid ItemBatch: missing required field run_id"
    );
    let err = batch_err(&v1::ItemBatch {
        run_id: -9,
        ..batch()
    });
    assert_eq!(
        err.to_string(),
        "invalid ItemBatch: field run_id must be > 0 (got -9)"
    );
}

#[test]
fn item_batch_requires_item_ids() {
    let err = batch_err(&v1::ItemBatch {
        item_ids: vec![],
        ..batch()
    });
    assert_eq!(
        err,
        DecodeError::MissingField {
            message: "ItemBatch",
            field: "item_ids"
        }
    );
}

#[test]
fn item_batch_limits_item_ids() {
    let err = batch_err(&v1::ItemBatch {
        item_ids: (1..=MAX_ITEM_IDS as i64 + 1).collect(),
        ..batch()
    });
    assert_eq!(err.code(), "invalid_field");
    assert_eq!(
        err.to_string(),
        "invalid ItemBatch: field item_ids has 10001 ids (limit 10000)"
    );
}

#[test]
fn item_batch_rejects_non_positive_ids() {
    let err = batch_err(&v1::ItemBatch {
        item_ids: vec![5, 0, 6],
        ..batch()
    });
    assert_eq!(
        err.to_string(),
        "invalid ItemBatch: field item_ids contains an id <= 0 (0)"
    );
}

#[test]
fn messages_are_not_interchangeable() {
    // An ItemBatch body is not a valid ExecuteTask, and the other way round.
    assert!(decode_execute_task(&encode_item_batch(&batch())).is_err());
    assert!(decode_item_batch(&encode_execute_task(&manual())).is_err());
}

// ------------------------------------------------------------ properties

fn arb_trace() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map("[a-z]{1,12}", "\\PC{0,40}", 0..4)
}

fn arb_execute_task() -> impl Strategy<Value = v1::ExecuteTask> {
    (
        1..i64::MAX,
        "\\PC*[a-z]\\PC*",
        "[0-9a-f-]{1,36}",
        prop_oneof![Just(0_i64), 1..i64::MAX],
        any::<bool>(),
        "\\PC{0,30}",
        any::<i64>(),
        arb_trace(),
    )
        .prop_map(
            |(task_id, account, request_id, at, is_scheduled, by, requested_at, trace)| {
                let (trigger, scheduled_for) = if is_scheduled {
                    (v1::Trigger::Scheduled, at.max(1))
                } else {
                    (v1::Trigger::Manual, at)
                };
                v1::ExecuteTask {
                    schema_version: SCHEMA_VERSION,
                    task_id,
                    account,
                    request_id,
                    trigger: trigger.into(),
                    scheduled_for_unix_ms: scheduled_for,
                    requested_by: by,
                    requested_at_unix_ms: requested_at,
                    trace_context: trace,
                }
            },
        )
}

fn arb_item_batch() -> impl Strategy<Value = v1::ItemBatch> {
    (
        1..i64::MAX,
        any::<i64>(),
        "\\PC{0,20}",
        proptest::collection::vec(1..i64::MAX, 1..200),
        any::<u32>(),
        arb_trace(),
    )
        .prop_map(
            |(run_id, task_id, account, item_ids, attempt, trace)| v1::ItemBatch {
                schema_version: SCHEMA_VERSION,
                run_id,
                task_id,
                account,
                item_ids,
                attempt,
                trace_context: trace,
            },
        )
}

proptest! {
    #[test]
    fn valid_execute_tasks_round_trip(msg in arb_execute_task()) {
        prop_assert_eq!(decode_execute_task(&encode_execute_task(&msg)), Ok(msg));
    }

    #[test]
    fn valid_item_batches_round_trip(msg in arb_item_batch()) {
        prop_assert_eq!(decode_item_batch(&encode_item_batch(&msg)), Ok(msg));
    }

    #[test]
    fn random_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Whatever the bytes, the decoders answer; anything accepted is valid,
        // and every rejection has a one-line reason.
        match decode_execute_task(&bytes) {
            Ok(msg) => prop_assert_eq!(msg.validate(), Ok(())),
            Err(err) => assert_one_line(&err),
        }
        match decode_item_batch(&bytes) {
            Ok(msg) => prop_assert_eq!(msg.validate(), Ok(())),
            Err(err) => assert_one_line(&err),
        }
    }

    #[test]
    fn corrupted_messages_never_panic(
        msg in arb_execute_task(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode_execute_task(&msg);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value;
        }
        match decode_execute_task(&bytes) {
            Ok(decoded) => prop_assert_eq!(decoded.validate(), Ok(())),
            Err(err) => assert_one_line(&err),
        }
    }
}
