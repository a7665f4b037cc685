//! The checked message decoders (`decode_execute_task`, `decode_item_batch`) on arbitrary
//! bytes: they must never panic, and a message they accept must survive a round trip
//! (encode, decode) unchanged, so a replayed or relayed message means the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tarefas_proto::{
    decode_execute_task, decode_item_batch, encode_execute_task, encode_item_batch,
};

fuzz_target!(|data: &[u8]| {
    match decode_execute_task(data) {
        Ok(msg) => {
            let again = decode_execute_task(&encode_execute_task(&msg)).expect("round trip");
            assert_eq!(again, msg);
        }
        Err(e) => {
            let reason = e.to_string();
            assert!(!reason.contains('\n'), "multi-line reason {reason:?}");
            assert!(!e.code().is_empty());
        }
    }
    match decode_item_batch(data) {
        Ok(msg) => {
            let again = decode_item_batch(&encode_item_batch(&msg)).expect("round trip");
            assert_eq!(again, msg);
        }
        Err(e) => {
            let reason = e.to_string();
            assert!(!reason.contains('\n'), "multi-line reason {reason:?}");
        }
    }
});
