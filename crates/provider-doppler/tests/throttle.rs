//! Rate limits: 429 with Retry-After is honoured and survived; bounded retries end in
//! `Error::Throttled`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use secretsync_core::Error;
use secretsync_core::source::{RemoteKey, SecretSource};

#[tokio::test]
async fn three_429s_in_a_row_are_survived_and_counted() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1")]).await;
    let source = source(&fake, &token);
    fake.fail_next(3, 429, Some(0));
    let v = source
        .get(&RemoteKey::new("A"))
        .await
        .expect("the read completes after three 429s");
    assert_eq!(v.value.expose_str(), Some("1"));
    assert_eq!(downloads(&fake), vec![429, 429, 429, 200]);
    let stats = source.call_stats().unwrap().snapshot();
    assert_eq!(stats.get(&("secrets/download".into(), "throttled".into())), Some(&3));
    assert_eq!(stats.get(&("secrets/download".into(), "ok".into())), Some(&1));
    assert_eq!(source.api_calls(), 4);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1")]).await;
    // A backoff far shorter than Retry-After: only honouring the header explains the wait.
    let source = builder(&fake, &token)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    fake.fail_next(1, 429, Some(1));
    let started = Instant::now();
    source.get(&RemoteKey::new("A")).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?} after Retry-After: 1"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert_eq!(downloads(&fake), vec![429, 200]);
}

#[tokio::test]
async fn bounded_retries_end_in_throttled() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1")]).await;
    let source = builder(&fake, &token).with_max_retries(2).build().unwrap();
    fake.fail_next(10, 429, Some(0));
    let err = source.get(&RemoteKey::new("A")).await.unwrap_err();
    assert!(
        matches!(err, Error::Throttled { retry_after: Some(d), .. } if d == Duration::ZERO),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(downloads(&fake), vec![429, 429, 429], "1 attempt + 2 retries");
}

#[tokio::test]
async fn a_long_retry_after_is_returned_not_slept() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1")]).await;
    let source = source(&fake, &token);
    fake.fail_next(1, 429, Some(120));
    let started = Instant::now();
    let err = source.get(&RemoteKey::new("A")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(downloads(&fake), vec![429]);
}

#[tokio::test]
async fn server_errors_back_off_and_retry() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1")]).await;
    let source = source(&fake, &token);
    fake.fail_next(2, 503, None);
    source.get(&RemoteKey::new("A")).await.unwrap();
    assert_eq!(downloads(&fake), vec![503, 503, 200]);

    fake.clear_log();
    fake.fail_next(10, 500, None);
    let err = source.refresh().await.expect_err("5 attempts of 500");
    assert!(
        matches!(err, secretsync_core::Error::Provider { retryable: true, .. }),
        "{err:?}"
    );
    assert_eq!(downloads(&fake), vec![500; 5], "1 attempt + 4 retries by default");
}

#[tokio::test]
async fn a_failed_revalidation_fails_every_key_then_recovers() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1")]).await;
    let source = builder(&fake, &token)
        .with_freshness(Duration::ZERO)
        .with_max_retries(0)
        .build()
        .unwrap();
    source.get(&RemoteKey::new("A")).await.unwrap();
    fake.fail_next(1, 429, Some(0));
    let errs = source.get_many(&[RemoteKey::new("A"), RemoteKey::new("B")]).await;
    assert!(
        errs.iter().all(|e| matches!(e, Err(Error::Throttled { .. }))),
        "every key reports the failure"
    );
    assert_eq!(
        source.get(&RemoteKey::new("A")).await.unwrap().value.expose_str(),
        Some("1")
    );
}
