//! The test kit (feature `testkit`): conformance suites every provider and sink runs, an
//! in-memory sink, call-counting and fault-injecting wrappers, and helpers to prove that
//! a canary value never leaks into logs, errors or Debug output.

pub mod conformance;
mod logs;
mod wrappers;

pub use crate::sinks::MemorySink;
pub use logs::{LogCapture, capture_logs};
pub use wrappers::{CountingSink, CountingSource, Fault, FaultySink, FaultySource, SinkFaults, SourceFaults};

use std::collections::BTreeMap;

use crate::fingerprint::FingerprintKey;
use crate::sink::{CreationPolicy, DeletionPolicy, DesiredTarget, FINGERPRINT_ANNOTATION, TargetRef};
use crate::value::{SecretMap, SecretValue};

/// A value that must never appear anywhere but in its target.
pub const CANARY: &str = "canary-7f3a9c-DO-NOT-LEAK";

/// Panics if `text` contains [`CANARY`] (or its base64 forms), naming where.
pub fn assert_no_canary(text: &str, place: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    // Base64 of the canary at any of the three alignments inside longer data.
    let inner = &b64[4..b64.len() - 4];
    for needle in [CANARY, b64.as_str(), inner] {
        assert!(!text.contains(needle), "the canary value leaked into {place}");
    }
}

/// A random prefix for names, so tests run in parallel against one server.
pub fn unique_prefix(tag: &str) -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{tag}-{n:08x}")
}

/// A map from string pairs.
pub fn map(pairs: &[(&str, &str)]) -> SecretMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), SecretValue::from(*v)))
        .collect()
}

/// A desired target with a fingerprint annotation, as the engine builds them.
pub fn desired(target: TargetRef, data: SecretMap, policy: CreationPolicy) -> DesiredTarget {
    let key = FingerprintKey::from_bytes(vec![42; 32]).expect("32 bytes");
    let fingerprint = key.fingerprint(&data, &[]);
    let mut annotations = BTreeMap::new();
    annotations.insert(FINGERPRINT_ANNOTATION.to_string(), fingerprint.to_string());
    if policy == CreationPolicy::Merge {
        annotations.insert(
            crate::sink::MANAGED_KEYS_ANNOTATION.into(),
            data.keys().cloned().collect::<Vec<_>>().join(","),
        );
    }
    DesiredTarget {
        target,
        data,
        secret_type: Some("Opaque".into()),
        labels: BTreeMap::from([("app".to_string(), "conformance".to_string())]),
        annotations,
        creation_policy: policy,
        deletion_policy: DeletionPolicy::Retain,
        immutable: false,
        owner: None,
        fingerprint,
    }
}
