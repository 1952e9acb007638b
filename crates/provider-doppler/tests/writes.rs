//! Writes through `POST /v3/configs/config/secrets` with change_requests.

mod common;

use common::*;
use secretsync_core::source::{RemoteKey, SecretSource, SecretWriter, WriteOutcome, WriteRequest};
use secretsync_core::{Error, SecretValue};

#[tokio::test]
async fn put_creates_then_updates_and_reads_back() {
    let (fake, project, config, token) = fake_with(&[("KEEP", "k")]).await;
    let source = source(&fake, &token);
    assert_eq!(source.describe("DB_PASSWORD").await.unwrap(), None);

    let created = source
        .put(&WriteRequest::new("DB_PASSWORD", SecretValue::from("one")))
        .await
        .unwrap();
    let WriteOutcome::Created { version: Some(v1) } = created else {
        panic!("{created:?}")
    };
    assert_eq!(fake.secret(&project, &config, "DB_PASSWORD").as_deref(), Some("one"));
    let got = source.get(&RemoteKey::new("DB_PASSWORD")).await.unwrap();
    assert_eq!(got.value.expose_str(), Some("one"));
    assert_eq!(
        got.version.as_ref(),
        Some(&v1),
        "the outcome's version is the read's change token"
    );

    let desc = source.describe("DB_PASSWORD").await.unwrap().unwrap();
    assert_eq!(desc.current_version.as_ref(), Some(&v1));
    assert!(desc.managed);

    let mut req = WriteRequest::new("DB_PASSWORD", SecretValue::from("two"));
    req.disable_previous = true;
    let updated = source.put(&req).await.unwrap();
    let WriteOutcome::Updated {
        version: Some(v2),
        previous: Some(prev),
        disabled_previous: false,
    } = updated
    else {
        panic!("{updated:?}")
    };
    assert_eq!(prev, v1);
    assert_ne!(v2, v1);
    assert_eq!(
        source
            .get(&RemoteKey::new("DB_PASSWORD"))
            .await
            .unwrap()
            .value
            .expose_str(),
        Some("two")
    );
    assert_eq!(
        fake.secret(&project, &config, "KEEP").as_deref(),
        Some("k"),
        "other secrets untouched"
    );
    assert_eq!(fake.count("POST", "/v3/configs/config/secrets"), 2);
}

#[tokio::test]
async fn put_property_merges_into_json() {
    let (fake, project, config, token) = fake_with(&[("DB", r#"{"user":"app","password":"old"}"#)]).await;
    let source = source(&fake, &token);
    let mut req = WriteRequest::new("DB", SecretValue::from("new"));
    req.property = Some("password".into());
    source.put(&req).await.unwrap();
    let stored: serde_json::Value = serde_json::from_str(&fake.secret(&project, &config, "DB").unwrap()).unwrap();
    assert_eq!(stored, serde_json::json!({"user": "app", "password": "new"}));
}

#[tokio::test]
async fn refused_writes() {
    let (fake, project, config, token) = fake_with(&[("A", "1")]).await;
    let source = source(&fake, &token);
    for bad in ["lower_case", "1STARTS_WITH_DIGIT", "HAS-DASH", "DOPPLER_CONFIG"] {
        let err = source
            .put(&WriteRequest::new(bad, SecretValue::from("v")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{bad}: {err}");
    }
    let err = source.disable_version("A", "x").await.unwrap_err();
    assert!(
        matches!(err, Error::NotSupported { .. }) && err.to_string().contains("no versions"),
        "{err}"
    );

    let read_only = fake.read_only_service_token(&project, &config);
    let ro = builder(&fake, &read_only).build().unwrap();
    let err = ro
        .put(&WriteRequest::new("A", SecretValue::from("secret-canary")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    assert!(!format!("{err:?}").contains("secret-canary") && !format!("{err:?}").contains(&read_only));
    assert_eq!(fake.secret(&project, &config, "A").as_deref(), Some("1"));
}

#[tokio::test]
async fn personal_token_writes_with_project_and_config() {
    let (fake, project, config, _token) = fake_with(&[]).await;
    let personal = fake.personal_token();
    let source = builder(&fake, &personal)
        .with_project(&project)
        .with_config(&config)
        .build()
        .unwrap();
    source
        .put(&WriteRequest::new("NEW_ONE", SecretValue::from("v")))
        .await
        .unwrap();
    assert_eq!(fake.secret(&project, &config, "NEW_ONE").as_deref(), Some("v"));
    let post = fake.requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.status, 200);
}
