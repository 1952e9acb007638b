//! Clear errors: a wrong token, a missing environment, a missing key, an unknown value —
//! each names org/project/environment (and the key), never the token, and leaves targets
//! untouched.

mod common;

use std::time::Duration;

use common::*;
use secretsync_core::engine::CycleOptions;
use secretsync_core::sink::{TargetKind, TargetRef};
use secretsync_core::source::{RemoteKey, SecretSource};
use secretsync_core::{Error, SecretSourceExt};

const YAML: &str = "values:\n  pulumiConfig:\n    \"postgresql:password\":\n      fn::secret: pw-1\n";

const MANIFESTS: &str = r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: esc}
spec: {provider: {fake: {data: []}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: db, namespace: app}
spec:
  secretStoreRef: {name: esc, kind: ClusterSecretStore}
  target: {name: db}
  data:
    - {secretKey: password, remoteRef: {key: 'pulumiConfig["postgresql:password"]'}}
"#;

fn target() -> TargetRef {
    TargetRef {
        kind: TargetKind::Secret,
        namespace: "app".into(),
        name: "db".into(),
    }
}

#[tokio::test]
async fn wrong_token_names_the_environment_never_the_token_and_keeps_the_target() {
    let (fake, project, token) = fake_env("Preview", YAML).await;
    let fresh = Duration::from_millis(50);
    let source = builder(&fake, &token, &project, "Preview")
        .with_freshness(fresh)
        .build()
        .unwrap();
    let (m, engine, sink) = engine_on(MANIFESTS, "esc", source).await;
    assert!(engine.run(&m, &CycleOptions::default()).await.all_synced());
    let before = sink.get(&target()).unwrap().data;

    fake.revoke_token(&token);
    tokio::time::sleep(fresh * 2).await;
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(!r.all_synced());
    assert_eq!(r.writes, 0);
    let text = r.to_text();
    assert!(text.contains(&format!("{ORG}/{project}/Preview")), "{text}");
    assert!(text.contains("token was rejected"), "{text}");
    assert!(!text.contains(&token), "the token never appears: {text}");
    assert_eq!(sink.get(&target()).unwrap().data, before, "the target keeps its data");

    // A token the service never issued, from the start.
    let bad = "pul-0123456789abcdef0123456789abcdef01234567";
    let s = common::source(&fake, bad, &project, "Preview");
    let e = s.get_value("pulumiConfig.x").await.unwrap_err();
    assert!(matches!(e.root(), Error::Unauthenticated { .. }), "{e}");
    let shown = format!("{e} {e:?} {s:?}");
    assert!(
        !shown.contains(bad) && shown.contains(&format!("{ORG}/{project}/Preview")),
        "{shown}"
    );
}

#[tokio::test]
async fn missing_environment_and_missing_key() {
    let (fake, project, token) = fake_env("Preview", YAML).await;
    let s = source(&fake, &token, &project, "Previe");
    let e = s.get_value(r#"pulumiConfig["postgresql:password"]"#).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains(&format!("`{ORG}/{project}/Previe`")), "{e}");

    let s = source(&fake, &token, &project, "Preview");
    let out = s
        .get_many(&[
            RemoteKey::new(r#"pulumiConfig["postgresql:pasword"]"#),
            RemoteKey::new("pulumiConfg.x"),
            RemoteKey::new(r#"pulumiConfig["postgresql:password"]"#),
        ])
        .await;
    let e = out[0].as_ref().unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let t = e.to_string();
    assert!(
        t.contains(r#"pulumiConfig["postgresql:pasword"]"#) && t.contains(&format!("{ORG}/{project}/Preview")),
        "{t}"
    );
    let t = out[1].as_ref().unwrap_err().to_string();
    assert!(t.contains("(no `pulumiConfg`)"), "{t}");
    assert_eq!(out[2].as_ref().unwrap().value.expose_str(), Some("pw-1"));
    let e = s.get_value("pulumiConfig[").await.unwrap_err();
    assert!(matches!(e.root(), Error::InvalidInput { .. }), "{e}");
}

#[tokio::test]
async fn unknown_and_failed_values_are_errors_not_empty() {
    let yaml = "values:\n  ok: fine\n  later:\n    fn::open::aws-secrets:\n      unknown: true\n";
    let (fake, project, token) = fake_env("dyn", yaml).await;
    let s = source(&fake, &token, &project, "dyn");
    assert_eq!(s.get_value("ok").await.unwrap().expose_str(), Some("fine"));
    let e = s.get_value("later").await.unwrap_err();
    assert!(
        e.to_string().contains("unknown") && e.to_string().contains("`later`"),
        "{e}"
    );

    let yaml = "values:\n  ok: fine\n  broken:\n    fn::open::aws-secrets:\n      fail: AccessDenied for role arn:aws:iam::1:role/esc\n";
    let (fake, project, token) = fake_env("failing", yaml).await;
    let s = source(&fake, &token, &project, "failing");
    let e = s.get_value("ok").await.unwrap_err();
    let t = e.to_string();
    assert!(
        t.contains("broken") && t.contains("AccessDenied") && t.contains(&project),
        "{t}"
    );
}

#[tokio::test]
async fn throttling_is_retried_then_reported() {
    let (fake, project, token) = fake_env("Preview", YAML).await;
    let s = builder(&fake, &token, &project, "Preview").build().unwrap();
    fake.fail_next(2, 429, Some(0));
    assert_eq!(
        s.get_value(r#"pulumiConfig["postgresql:password"]"#)
            .await
            .unwrap()
            .expose_str(),
        Some("pw-1")
    );
    let s = builder(&fake, &token, &project, "Preview")
        .with_max_retry_after(Duration::from_secs(1))
        .build()
        .unwrap();
    fake.fail_next(1, 429, Some(60));
    let e = s.get_value("x").await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(60)), "{e}");
}
