//! Errors: 401/403 name project and config and never the token; a missing key is NotFound.

mod common;

use common::*;
use secretsync_core::Error;
use secretsync_core::source::{RemoteKey, SecretSource};
use secretsync_doppler::DopplerBuilder;

#[tokio::test]
async fn revoked_token_is_unauthenticated_without_the_token() {
    let (fake, project, config, _token) = fake_with(&[("A", "1")]).await;
    let personal = fake.personal_token();
    let source = builder(&fake, &personal)
        .with_project(&project)
        .with_config(&config)
        .build()
        .unwrap();
    fake.revoke_token(&personal);
    let err = source.get(&RemoteKey::new("A")).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::Unauthenticated { .. }), "{text}");
    assert!(text.contains(&project) && text.contains(&config), "{text}");
    assert!(!text.contains(&personal) && !text.contains(&personal[6..]), "{text}");
    assert!(text.contains("Invalid Auth token"), "Doppler's reason is kept: {text}");
    assert!(!err.is_retryable());
    let stats = source.call_stats().unwrap().snapshot();
    assert_eq!(
        stats.get(&("secrets/download".into(), "401".into())),
        Some(&1),
        "401 is not retried"
    );
}

#[tokio::test]
async fn token_of_another_config_is_permission_denied() {
    let (fake, project, config, _token) = fake_with(&[("A", "1")]).await;
    fake.create_config(&project, "dev");
    let dev_token = fake.service_token(&project, "dev");
    let source = builder(&fake, &dev_token)
        .with_project(&project)
        .with_config(&config)
        .build()
        .unwrap();
    let err = source.get(&RemoteKey::new("A")).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{text}");
    assert!(
        text.contains(&format!("`{project}`")) && text.contains("`prd`"),
        "{text}"
    );
    assert!(!text.contains(&dev_token), "{text}");
}

#[tokio::test]
async fn missing_key_is_not_found_and_missing_config_too() {
    let (fake, project, _config, token) = fake_with(&[("A", "1")]).await;
    let source = source(&fake, &token);
    let err = source.get(&RemoteKey::new("NOPE")).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("NOPE"));
    let tokens = source
        .change_tokens(&[RemoteKey::new("A"), RemoteKey::new("NOPE")])
        .await;
    assert!(tokens[0].as_ref().unwrap().is_some());
    assert!(tokens[1].as_ref().unwrap_err().is_not_found());

    let personal = fake.personal_token();
    let other = builder(&fake, &personal)
        .with_project(&project)
        .with_config("stg")
        .build()
        .unwrap();
    let err = other.get(&RemoteKey::new("A")).await.unwrap_err();
    assert!(err.is_not_found() && err.to_string().contains("`stg`"), "{err}");
}

#[tokio::test]
async fn versions_are_not_supported() {
    let (fake, _p, _c, token) = fake_with(&[("A", "1")]).await;
    let source = source(&fake, &token);
    assert!(source.get(&RemoteKey::with_version("A", "latest")).await.is_ok());
    let err = source.get(&RemoteKey::with_version("A", "3")).await.unwrap_err();
    assert!(matches!(err, Error::NotSupported { .. }), "{err}");
}

#[tokio::test]
async fn nothing_prints_a_value_or_the_token() {
    let (fake, _p, _c, token) = fake_with(&[("A", "value-canary-123")]).await;
    let source = source(&fake, &token);
    let fetched = source.get(&RemoteKey::new("A")).await.unwrap();
    let printed = format!("{source:?} {fetched:?} {:?}", source.call_stats());
    assert!(
        !printed.contains("value-canary") && !printed.contains(&token),
        "{printed}"
    );
    assert!(printed.contains("DopplerSource") && printed.contains(".."), "{printed}");
    let b = DopplerBuilder::new().with_token(token.clone());
    assert!(!format!("{b:?}").contains(&token));
}

#[tokio::test]
async fn network_errors_are_retryable_provider_errors() {
    // A port nobody listens on. Not a freed ephemeral port: a fake started by a parallel
    // test may take it (the test once got that fake's 401).
    let port = 1;
    let source = DopplerBuilder::new()
        .with_token("dp.st.prd.abc")
        .with_api_host(format!("http://127.0.0.1:{port}"))
        .with_max_retries(1)
        .with_backoff(std::time::Duration::from_millis(1), std::time::Duration::from_millis(2))
        .build()
        .unwrap();
    let err = source.get(&RemoteKey::new("A")).await.unwrap_err();
    assert!(matches!(err, Error::Provider { retryable: true, .. }), "{err:?}");
    assert!(!format!("{err:?}").contains("dp.st.prd.abc"));
    assert_eq!(
        source
            .call_stats()
            .unwrap()
            .snapshot()
            .get(&("secrets/download".into(), "error".into())),
        Some(&2)
    );
}
