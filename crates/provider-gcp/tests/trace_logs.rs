//! Trace logs of the GCP provider never carry a value. Alone in its own test binary:
//! `tracing` caches per-callsite interest process-wide, and a callsite first hit by a
//! parallel test on another thread (with no subscriber there) could stay off for the
//! subscriber this test installs, so the capture would miss the provider's own lines.

mod common;

use std::time::Duration;

use common::builder_for;
use secretsync_core::{RemoteKey, SecretSource, SecretValue, SecretWriter, WriteRequest};
use secretsync_fakes::gcp::{Crc32cMode, FakeSecretManager};

#[tokio::test]
async fn trace_logs_never_carry_a_value() {
    use secretsync_core::testkit::{CANARY, assert_no_canary, capture_logs};
    let fake = FakeSecretManager::start().await;
    let src = builder_for(&fake.host(), "development-485000")
        .with_initial_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let ((), logs) = capture_logs(async {
        src.put(&WriteRequest::new("canary", SecretValue::from(CANARY)))
            .await
            .unwrap();
        fake.fail_next(Some("AccessSecretVersion"), "", 503, 1);
        assert_eq!(
            src.get(&RemoteKey::new("canary")).await.unwrap().value,
            SecretValue::from(CANARY)
        );
        fake.set_crc32c(Crc32cMode::Corrupt);
        let e = src.get(&RemoteKey::new("canary")).await.unwrap_err();
        assert_no_canary(&format!("{e} {e:?}"), "a CRC32C error");
        let mut bad = WriteRequest::new("canary", SecretValue::from("x"));
        bad.property = Some("p".into());
        fake.set_crc32c(Crc32cMode::Correct);
        let e = src.put(&bad).await.unwrap_err();
        assert_no_canary(&format!("{e} {e:?}"), "a property write into a non-JSON value");
    })
    .await;
    assert!(logs.contains("retrying"), "the capture works: {logs}");
    assert_no_canary(&logs, "trace logs");
}
