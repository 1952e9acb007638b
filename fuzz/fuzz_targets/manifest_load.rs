//! The manifest loader on arbitrary text: it never panics, every error names the file, and
//! no error quotes a value held by another document of the same file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretsync_core::manifest::load_str;

/// A value in a well-formed first document; errors about the fuzzed documents must not
/// quote it.
const MARKER: &str = "fuzz-marker-9d41e2";

const STORE: &str = "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: s}\nspec:\n  provider:\n    fake:\n      data:\n        - {key: k, value: fuzz-marker-9d41e2}\n---\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Alone: no panic; every error names the file.
    let loaded = load_str(text, "fuzz.yaml");
    for e in &loaded.errors {
        let msg = e.to_string();
        assert!(msg.starts_with("fuzz.yaml"), "an error does not name its file: {msg}");
    }
    // After a store holding a value: errors never quote that value.
    if !text.contains(MARKER) {
        let joined = format!("{STORE}{text}");
        let loaded = load_str(&joined, "fuzz.yaml");
        for e in &loaded.errors {
            let msg = format!("{e} {e:?}");
            assert!(!msg.contains(MARKER), "an error quotes a value: {msg}");
        }
        let _ = format!("{:?}", loaded.manifests);
        assert!(
            !format!("{:?}", loaded.manifests).contains(MARKER),
            "Debug of manifests shows a value"
        );
    }
});
