//! Writes: rotation through the writer edits one path of the YAML definition, keeps every
//! other byte, and a concurrent edit is a Conflict.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use secretsync_core::manifest::{StoreId, StoreKind};
use secretsync_core::rotation::{self, Action, RotationPlan};
use secretsync_core::source::{SecretWriter, WriteOutcome, WriteRequest};
use secretsync_core::{Error, FingerprintKey, SecretSourceExt, SecretValue};

/// Seed 002's environment, as a maintainer keeps it: comments, an import, `fn::` values.
const PREVIEW: &str = r#"# aphiria.com/Preview: used by preview-base and preview-pr-* stacks
imports:
  - aphiria.com/base # shared by Preview and Production
values:
  pulumiConfig:
    # DigitalOcean
    "digitalocean:token":
      fn::secret: dop_v1_preview
    "gateway:digitaloceanDnsToken":
      fn::secret: dop_v1_dns
    # GHCR pull credentials
    "namespace:imagePullSecret:token":
      fn::secret: ghp_preview
    "namespace:imagePullSecret:username": aphiria-bot
    # PostgreSQL
    "postgresql:user": aphiria
    "postgresql:password":
      fn::secret: initial-password   # rotated quarterly
    "grafana:smtpPort": "587"
  environmentVariables:
    PGUSER: aphiria
"#;

const BASE: &str = "values:\n  pulumiConfig:\n    \"grafana:githubOrg\": aphiria\n";

const PLAN: &str = r#"
store: {name: esc-preview}
secrets:
  - {key: 'pulumiConfig["postgresql:password"]', generate: "base64:24", impact: "PostgreSQL restarts"}
  - {key: 'pulumiConfig["postgresql:user"]', generate: manual}
"#;

#[tokio::test]
async fn rotate_with_a_plan_changes_one_value_and_keeps_every_other_line() {
    let (fake, project, token) = fake_env("Preview", PREVIEW).await;
    fake.set_yaml(ORG, "aphiria.com", "base", BASE);
    let before = fake.yaml(ORG, &project, "Preview").unwrap();
    let rev_before = fake.revision(ORG, &project, "Preview").unwrap();

    let source = Arc::new(
        builder(&fake, &token, &project, "Preview")
            .with_freshness(Duration::ZERO)
            .build()
            .unwrap(),
    );
    let id = StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: "esc-preview".into(),
    };
    let writers: BTreeMap<StoreId, Arc<dyn SecretWriter>> = [(id, source.clone() as Arc<dyn SecretWriter>)].into();
    let plan = RotationPlan::parse(PLAN, std::path::Path::new("plan.yaml")).unwrap();
    let no_env = |_: &str| None;
    let key = FingerprintKey::random();

    // Without --rotate: both have values, nothing to do.
    let plans = rotation::plan(&plan, &writers, false, &no_env, &key).await.unwrap();
    assert!(plans.iter().all(|p| p.action == Action::Keep), "{plans:?}");

    // --rotate: the generated one is regenerated and written back.
    let plans = rotation::plan(&plan, &writers, true, &no_env, &key).await.unwrap();
    let actions: Vec<Action> = plans.iter().map(|p| p.action).collect();
    assert_eq!(actions, [Action::Rotate, Action::Keep]);
    let results = rotation::apply(plans, &writers).await;
    assert!(results.iter().all(|r| r.error.is_none()), "{results:?}");
    assert_eq!(
        results[0].version.as_deref(),
        Some((rev_before + 1).to_string().as_str())
    );
    assert!(!results[0].disabled_previous, "ESC keeps revisions");

    let after = fake.yaml(ORG, &project, "Preview").unwrap();
    let new = source
        .get_value(r#"pulumiConfig["postgresql:password"]"#)
        .await
        .unwrap();
    let new = new.expose_str().unwrap().to_string();
    assert_eq!(new.len(), 32, "base64 of 24 bytes");
    // Byte for byte: the one value line changed (its trailing comment with it), nothing else.
    let old_line = "      fn::secret: initial-password   # rotated quarterly";
    let new_line = format!("      fn::secret: {}", serde_json::to_string(&new).unwrap());
    assert_eq!(after, before.replace(old_line, &new_line));
    assert!(!format!("{results:?}").contains(&new), "results never carry the value");
    // The other values still resolve as before, imports included.
    assert_eq!(
        source
            .get_value(r#"pulumiConfig["digitalocean:token"]"#)
            .await
            .unwrap()
            .expose_str(),
        Some("dop_v1_preview")
    );
    assert_eq!(
        source
            .get_value(r#"pulumiConfig["grafana:githubOrg"]"#)
            .await
            .unwrap()
            .expose_str(),
        Some("aphiria")
    );
}

#[tokio::test]
async fn a_concurrent_edit_is_a_conflict_and_is_not_lost() {
    let (fake, project, token) = fake_env("Preview", PREVIEW).await;
    fake.set_yaml(ORG, "aphiria.com", "base", BASE);
    let source = source(&fake, &token, &project, "Preview");
    let console = PREVIEW.replace("aphiria-bot", "aphiria-deployer");
    fake.edit_before_next_patch(ORG, &project, "Preview", &console);
    let e = source
        .put(&WriteRequest::new(
            r#"pulumiConfig["postgresql:password"]"#,
            SecretValue::from("from-secretsync"),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e.root(), Error::Conflict { .. }), "{e}");
    assert!(e.to_string().contains(&format!("{ORG}/{project}/Preview")), "{e}");
    assert!(!e.to_string().contains("from-secretsync"));
    assert_eq!(
        fake.yaml(ORG, &project, "Preview").unwrap(),
        console,
        "the console's edit stands"
    );
    let req = fake
        .requests()
        .into_iter()
        .find(|r| r.operation() == "UpdateEnvironmentYaml")
        .unwrap();
    assert!(req.precondition.is_some(), "the PATCH carried the ETag it read");

    // Trying again reads the new definition and keeps the console's edit.
    let o = source
        .put(&WriteRequest::new(
            r#"pulumiConfig["postgresql:password"]"#,
            SecretValue::from("from-secretsync"),
        ))
        .await
        .unwrap();
    assert!(matches!(o, WriteOutcome::Updated { .. }), "{o:?}");
    let y = fake.yaml(ORG, &project, "Preview").unwrap();
    assert!(
        y.contains("aphiria-deployer") && y.contains("fn::secret: \"from-secretsync\""),
        "{y}"
    );
}

#[tokio::test]
async fn read_only_token_and_unsupported_operations() {
    let (fake, project, _token) = fake_env("Preview", PREVIEW).await;
    fake.set_yaml(ORG, "aphiria.com", "base", BASE);
    let ro = fake.read_only_token();
    let s = source(&fake, &ro, &project, "Preview");
    let e = s
        .put(&WriteRequest::new("pulumiConfig.x", SecretValue::from("v")))
        .await
        .unwrap_err();
    assert!(matches!(e.root(), Error::PermissionDenied { .. }), "{e}");
    assert!(matches!(
        s.disable_version("pulumiConfig.x", "3").await.unwrap_err(),
        Error::NotSupported { .. }
    ));
    let e = s
        .put(&WriteRequest::new("files[0]", SecretValue::from("v")))
        .await
        .unwrap_err();
    assert!(matches!(e.root(), Error::NotSupported { .. }), "{e}");
}
