//! `remoteRef.property` (gjson paths) on arbitrary JSON and paths: never panics, and an error
//! names the key and the property but never quotes the value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretsync_core::SecretValue;
use secretsync_core::transform::get_property;

fuzz_target!(|data: &[u8]| {
    // The first line is the property, the rest the remote value.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (property, value) = text.split_once('\n').unwrap_or((text, ""));
    let v = SecretValue::from(value);
    match get_property(&v, property, "fuzz-key") {
        Ok(out) => {
            let _ = out.len();
        }
        Err(e) => {
            let msg = format!("{e} {e:?}");
            assert!(msg.contains("fuzz-key"), "the error names the key: {msg}");
            // The value must not appear in the message, unless the property itself (or its
            // Debug-escaped form, which the Debug of the error shows) contains it.
            let quoted_property = format!("{property} {property:?}");
            if value.len() >= 12 && !quoted_property.contains(value) && !"fuzz-key".contains(value) {
                assert!(!msg.contains(value), "the error quotes the value: {msg}");
            }
        }
    }
});
