//! PushSecret in file mode, through the manifests a user writes: a tfvars file read by an
//! ExternalSecret, pushed to a file store; compare first, IfNotExists, property merges,
//! generators with "only if absent", and the vocabulary's unsupported parts.

use std::path::Path;
use std::sync::Arc;

use secretsync_core::engine::{CycleOptions, Engine};
use secretsync_core::manifest::{Manifests, load_str, validate};
use secretsync_core::push::{PushOutcome, PushReport, push_all};
use secretsync_core::registry::Registry;
use secretsync_core::sinks::MemorySink;
use secretsync_core::sources::{FileFactory, FileFormat, FileSource};
use secretsync_core::{RemoteKey, SecretSource};

const TFVARS: &str = "db_password = \"super_secure_db_password\"\nauth_secret = \"your_jwt_signing_secret_key\"\napi_token   = \"your_static_api_token\"\n";

fn manifests(dir: &Path, extra: &str) -> Manifests {
    let text = format!(
        r#"apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: tf}}
spec: {{provider: {{file: {{path: prod.secrets.tfvars}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: out, labels: {{push: "yes"}}}}
spec: {{provider: {{file: {{path: remote.json}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: flowyml, namespace: prod}}
spec:
  secretStoreRef: {{name: tf, kind: ClusterSecretStore}}
  target: {{name: flowyml-secrets}}
  dataFrom:
    - extract: {{key: ignored}}
      sourceRef: null
  data:
    - {{secretKey: DB_PASSWORD, remoteRef: {{key: db_password}}}}
    - {{secretKey: AUTH_SECRET, remoteRef: {{key: auth_secret}}}}
    - {{secretKey: API_TOKEN, remoteRef: {{key: api_token}}}}
{extra}"#
    )
    .replace(
        "  dataFrom:\n    - extract: {key: ignored}\n      sourceRef: null\n",
        "",
    );
    let loaded = load_str(&text, dir.join("manifests.yaml"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.manifests
}

const PUSH: &str = r#"---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: flowyml-push, namespace: prod}
spec:
  refreshInterval: 1h
  updatePolicy: Replace
  deletionPolicy: None
  secretStoreRefs:
    - {name: out, kind: ClusterSecretStore}
  selector:
    secret: {name: flowyml-secrets}
  data:
    - match: {secretKey: DB_PASSWORD, remoteRef: {remoteKey: flowyml-db-password}}
    - match: {secretKey: API_TOKEN, remoteRef: {remoteKey: flowyml-api-token}}
    - match: {secretKey: AUTH_SECRET, remoteRef: {remoteKey: flowyml-app, property: auth_secret}}
"#;

async fn engine(m: &Manifests) -> Engine {
    let mut registry = Registry::empty();
    registry.register(Arc::new(FileFactory));
    let (stores, errors) = registry.build_all(m).await;
    assert!(errors.is_empty(), "{errors:?}");
    Engine::new(stores, Arc::new(MemorySink::new()))
}

/// One `sync --once`: the ExternalSecret cycle, then the pushes.
async fn run(m: &Manifests) -> PushReport {
    let e = engine(m).await;
    let cycle = e.run(m, &CycleOptions::default()).await;
    assert!(cycle.all_synced(), "{}", cycle.to_text());
    let report = push_all(m, &e).await;
    assert!(report.ok(), "{}", report.to_text());
    report
}

async fn remote(dir: &Path, key: &str) -> Option<String> {
    let f = FileSource::new(dir.join("remote.json"), FileFormat::Json);
    f.get(&RemoteKey::new(key))
        .await
        .ok()
        .map(|v| v.value.expose_str().unwrap().to_string())
}

#[tokio::test]
async fn a_tfvars_edit_is_pushed_once_and_a_rerun_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    std::fs::write(
        dir.path().join("remote.json"),
        r#"{"flowyml-app": "{\"region\":\"eu\"}"}"#,
    )
    .unwrap();
    let m = manifests(dir.path(), PUSH);

    let first = run(&m).await;
    assert_eq!(first.writes, 3, "{}", first.to_text());
    let outcomes: Vec<PushOutcome> = first.entries.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [PushOutcome::Created, PushOutcome::Created, PushOutcome::Updated]
    );
    assert_eq!(
        remote(dir.path(), "flowyml-db-password").await.as_deref(),
        Some("super_secure_db_password")
    );
    let app: serde_json::Value = serde_json::from_str(&remote(dir.path(), "flowyml-app").await.unwrap()).unwrap();
    assert_eq!(
        app,
        serde_json::json!({"region": "eu", "auth_secret": "your_jwt_signing_secret_key"}),
        "property merges into the JSON secret"
    );
    let text = first.to_text();
    assert!(!text.contains("super_secure"), "a report never holds a value: {text}");

    let second = run(&m).await;
    assert_eq!(second.writes, 0, "{}", second.to_text());
    assert!(second.entries.iter().all(|e| e.outcome == PushOutcome::Unchanged));

    std::fs::write(
        dir.path().join("prod.secrets.tfvars"),
        TFVARS.replace("your_static_api_token", "rotated_token"),
    )
    .unwrap();
    let third = run(&m).await;
    assert_eq!(third.writes, 1, "{}", third.to_text());
    assert_eq!(
        remote(dir.path(), "flowyml-api-token").await.as_deref(),
        Some("rotated_token")
    );
}

#[tokio::test]
async fn if_not_exists_leaves_an_existing_remote_value_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    std::fs::write(
        dir.path().join("remote.json"),
        r#"{"flowyml-db-password": "set-by-hand"}"#,
    )
    .unwrap();
    let push = PUSH
        .replace("updatePolicy: Replace", "updatePolicy: IfNotExists")
        // Stores by label: the `out` store carries push: "yes".
        .replace(
            "{name: out, kind: ClusterSecretStore}",
            "{labelSelector: {matchLabels: {push: \"yes\"}}, kind: ClusterSecretStore}",
        );
    let m = manifests(dir.path(), &push);
    let r = run(&m).await;
    assert_eq!(r.entries[0].outcome, PushOutcome::Exists);
    assert_eq!(r.writes, 2);
    assert_eq!(
        remote(dir.path(), "flowyml-db-password").await.as_deref(),
        Some("set-by-hand")
    );
}

#[tokio::test]
async fn a_plain_secret_is_a_source_and_a_missing_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    let extra = r#"---
apiVersion: v1
kind: Secret
metadata: {name: hand-made, namespace: prod}
stringData: {TOKEN: from-a-secret}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: plain, namespace: prod}
spec:
  secretStoreRefs: [{name: out, kind: ClusterSecretStore}]
  selector: {secret: {name: hand-made}}
  data:
    - match: {secretKey: TOKEN, remoteRef: {remoteKey: plain-token}}
    - match: {remoteRef: {remoteKey: plain-all}}
"#;
    let m = manifests(dir.path(), extra);
    let r = run(&m).await;
    assert_eq!(r.writes, 2);
    assert_eq!(
        remote(dir.path(), "plain-token").await.as_deref(),
        Some("from-a-secret")
    );
    assert_eq!(
        remote(dir.path(), "plain-all").await.as_deref(),
        Some(r#"{"TOKEN":"from-a-secret"}"#),
        "no secretKey: the whole Secret as JSON"
    );

    let m = manifests(dir.path(), &extra.replace("secretKey: TOKEN", "secretKey: NOPE"));
    let e = engine(&m).await;
    let r = push_all(&m, &e).await;
    let err = r.entries[0].error.clone().unwrap();
    assert!(
        err.contains("spec.data[0].match.secretKey") && err.contains("`NOPE`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_password_generated_only_if_absent_is_created_once_across_three_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    // Seed 000's JWT secret, bootstrapped.
    let extra = r#"---
apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata:
  name: jwt
  annotations: {secretsync.io/generate: if-absent}
spec: {length: 48, digits: 8, symbols: 0, allowRepeat: true}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: bootstrap, namespace: prod}
spec:
  secretStoreRefs: [{name: out, kind: ClusterSecretStore}]
  selector:
    generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: jwt}
  data:
    - match: {secretKey: password, remoteRef: {remoteKey: JWT_SECRET}}
"#;
    let m = manifests(dir.path(), extra);
    let mut values = vec![];
    let mut writes = vec![];
    for _ in 0..3 {
        let r = run(&m).await;
        writes.push(r.writes);
        values.push(remote(dir.path(), "JWT_SECRET").await.unwrap());
    }
    assert_eq!(writes, [1, 0, 0]);
    assert_eq!(values[0].len(), 48);
    assert_eq!(values[0].chars().filter(char::is_ascii_digit).count(), 8);
    assert!(values.iter().all(|v| v == &values[0]), "never regenerated");

    // Without the annotation a generator regenerates every run, as ESO.
    let m = manifests(
        dir.path(),
        &extra.replace("  annotations: {secretsync.io/generate: if-absent}\n", ""),
    );
    let r = run(&m).await;
    assert_eq!(r.writes, 1);
    assert_ne!(remote(dir.path(), "JWT_SECRET").await.unwrap(), values[0]);
}

#[test]
fn the_vocabulary_parses_and_unsupported_parts_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: everything, namespace: prod}
spec:
  secretStoreRefs: [{name: out, kind: ClusterSecretStore}]
  selector: {secret: {name: flowyml-secrets}}
  dataTo: [{storeRef: {name: out}}]
  template: {type: Opaque}
  data:
    - match: {secretKey: A, remoteRef: {remoteKey: a}}
      metadata: {apiVersion: kubernetes.external-secrets.io/v1alpha1, kind: PushSecretMetadata}
---
apiVersion: external-secrets.io/v1alpha1
kind: ClusterPushSecret
metadata: {name: cps}
spec:
  namespaces: [a, b]
  pushSecretSpec:
    secretStoreRefs: [{name: out, kind: ClusterSecretStore}]
    selector: {secret: {name: s}}
    data:
      - match: {secretKey: A, remoteRef: {remoteKey: a}}
"#;
    let m = manifests(dir.path(), extra);
    assert_eq!(m.push_secrets.len(), 3, "a ClusterPushSecret expands per namespace");
    assert_eq!(m.push_secrets[2].namespace(), "b");
    let (errors, _) = validate(&m, Default::default());
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for path in ["spec.dataTo", "spec.template", "spec.data[0].metadata"] {
        assert!(
            errors.iter().any(|e| e.contains(&format!("not supported yet: {path}"))),
            "{path}: {errors:?}"
        );
    }

    let bad = load_str(
        "apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {name: x}\nspec:\n  secretStoreRefs: [{name: out}]\n  selector: {secret: {name: s}}\n  data: [{match: {secretKey: A, remoteRef: {remoteKey: a, typo: 1}}}]\n",
        "bad.yaml",
    );
    let err = bad.errors[0].to_string();
    assert!(err.contains("spec.data[0].match.remoteRef.typo"), "{err}");
    let bad = load_str(
        "apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {name: x}\nspec:\n  updatePolicy: Sometimes\n",
        "bad.yaml",
    );
    assert!(
        bad.errors[0].to_string().contains("spec.updatePolicy"),
        "{:?}",
        bad.errors
    );
}

/// `deletionPolicy: Delete`: a key no longer pushed is deleted when managed (by secretsync
/// or ESO), an unmanaged one survives, and a store dropped from `secretStoreRefs` is never
/// deleted from.
#[tokio::test]
async fn delete_removes_only_managed_secrets_no_longer_pushed() {
    use secretsync_core::manifest::{StoreId, StoreKind};
    use secretsync_core::push::{PushOptions, push_all_with};
    use secretsync_core::registry::BuiltStore;
    use secretsync_core::sources::MemorySource;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    let push = |data: &str, store: &str| {
        format!(
            "---\napiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {{name: p, namespace: prod}}\nspec:\n  deletionPolicy: Delete\n  secretStoreRefs: [{{name: {store}, kind: ClusterSecretStore}}]\n  selector: {{secret: {{name: flowyml-secrets}}}}\n  data:\n{data}---\napiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: mem}}\nspec: {{provider: {{fake: {{data: []}}}}}}\n"
        )
    };
    let a = "    - match: {secretKey: DB_PASSWORD, remoteRef: {remoteKey: a}}\n";
    let b = "    - match: {secretKey: API_TOKEN, remoteRef: {remoteKey: b}}\n";
    let mem = Arc::new(MemorySource::new("fake"));
    let run = |m: Manifests| {
        let mem = mem.clone();
        let state = state.clone();
        async move {
            let mut registry = Registry::empty();
            registry.register(Arc::new(FileFactory));
            registry.register(Arc::new(secretsync_core::sources::FakeFactory));
            let (mut stores, errors) = registry.build_all(&m).await;
            assert!(errors.is_empty(), "{errors:?}");
            let id = StoreId {
                kind: StoreKind::ClusterSecretStore,
                namespace: None,
                name: "mem".into(),
            };
            stores.insert(
                id,
                BuiltStore {
                    source: mem.clone(),
                    writer: Some(mem.clone()),
                },
            );
            let e = Engine::new(stores, Arc::new(MemorySink::new()));
            assert!(e.run(&m, &CycleOptions::default()).await.all_synced());
            push_all_with(&m, &e, &PushOptions { state_dir: Some(state) }).await
        }
    };
    let r = run(manifests(dir.path(), &push(&format!("{a}{b}"), "mem"))).await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!((r.writes, r.deletes), (2, 0));
    let record = state.join("prod/p.json");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(!text.contains("super_secure"), "the record holds no value: {text}");

    // A team migrating from ESO: its status listed two more keys, one pushed by ESO, one
    // someone made by hand.
    mem.set_unmanaged("eso-pushed", "x");
    mem.set_label("eso-pushed", "managed-by", "external-secrets");
    mem.set_unmanaged("hand-made", "y");
    let mut rec: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    for k in ["eso-pushed", "hand-made"] {
        rec.push(serde_json::json!({"store": "ClusterSecretStore mem", "remoteKey": k}));
    }
    std::fs::write(&record, serde_json::to_string(&rec).unwrap()).unwrap();

    let r = run(manifests(dir.path(), &push(a, "mem"))).await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.deletes, 2, "{}", r.to_text());
    let exists = |k: &str| futures::executor::block_on(mem.get(&RemoteKey::new(k))).is_ok();
    assert!(exists("a"));
    assert!(!exists("b"), "no longer pushed, managed: deleted");
    assert!(!exists("eso-pushed"), "ESO's managed-by counts");
    assert!(exists("hand-made"), "an unmanaged secret survives");
    let left = r.entries.iter().find(|e| e.remote_key == "hand-made").unwrap();
    assert_eq!(left.outcome, PushOutcome::LeftUnmanaged);

    // Moving the PushSecret to another store never deletes from the old one.
    let r = run(manifests(dir.path(), &push(a, "out"))).await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.deletes, 0);
    assert!(exists("a"));

    // Without a state folder, Delete is an error, not a silent no-op.
    let m = manifests(dir.path(), &push(a, "out"));
    let mut registry = Registry::empty();
    registry.register(Arc::new(FileFactory));
    registry.register(Arc::new(secretsync_core::sources::FakeFactory));
    let (stores, _) = registry.build_all(&m).await;
    let e = Engine::new(stores, Arc::new(MemorySink::new()));
    let r = push_all(&m, &e).await;
    assert!(!r.ok());
    assert!(r.errors[0].contains("spec.deletionPolicy"), "{:?}", r.errors);
}

/// The daemon's PushSecrets follow `refreshInterval` (ESO's default 1h): a cycle re-checks
/// a PushSecret only when it is due — never pushed, its source target written in this
/// cycle, its spec changed, its interval passed, or its last push failed — instead of on
/// every cycle.
#[tokio::test]
async fn the_daemon_pushes_only_what_is_due() {
    use secretsync_core::push::{PushOptions, PushSchedule};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    std::fs::write(dir.path().join("remote.json"), "{}").unwrap();
    let m = manifests(dir.path(), PUSH);
    let e = engine(&m).await;
    let mut schedule = PushSchedule::new();
    let opts = PushOptions::default();
    let cycle = async |m: &Manifests, schedule: &mut PushSchedule| {
        let c = e.run(m, &CycleOptions::default()).await;
        assert!(c.all_synced(), "{}", c.to_text());
        let p = schedule.push_due(m, &e, &c, &opts).await;
        assert!(p.ok(), "{}", p.to_text());
        (c, p)
    };

    let (_, first) = cycle(&m, &mut schedule).await;
    assert_eq!(first.writes, 3, "the first cycle pushes: {}", first.to_text());
    let (c, second) = cycle(&m, &mut schedule).await;
    assert!(second.entries.is_empty(), "nothing is due: {}", second.to_text());
    let id = "prod/flowyml-push".to_string();
    // Not due by time within the hour; due after it.
    let now = Instant::now();
    assert!(schedule.due(&m, &e, &c, now + Duration::from_secs(3500)).is_empty());
    assert_eq!(
        schedule.due(&m, &e, &c, now + Duration::from_secs(3601)),
        [id.clone()].into()
    );
    let next = schedule.next_due(&m).expect("due by time");
    assert!(next > now + Duration::from_secs(3500) && next <= now + Duration::from_secs(3601));

    // The source changes: its ExternalSecret writes the target, so the push runs now.
    std::fs::write(
        dir.path().join("prod.secrets.tfvars"),
        TFVARS.replace("your_static_api_token", "rotated_token"),
    )
    .unwrap();
    let (_, third) = cycle(&m, &mut schedule).await;
    assert_eq!(third.writes, 1, "{}", third.to_text());
    assert_eq!(
        remote(dir.path(), "flowyml-api-token").await.as_deref(),
        Some("rotated_token")
    );
    let (_, fourth) = cycle(&m, &mut schedule).await;
    assert!(fourth.entries.is_empty(), "{}", fourth.to_text());

    // A changed spec (a manifest reload) is due; `refreshInterval: 0` is never due by time.
    let changed = manifests(
        dir.path(),
        &PUSH.replace("refreshInterval: 1h", "refreshInterval: \"0\""),
    );
    let (c, fifth) = cycle(&changed, &mut schedule).await;
    assert_eq!(
        fifth.entries.len(),
        3,
        "re-checked after its spec changed: {}",
        fifth.to_text()
    );
    assert_eq!(fifth.writes, 0, "{}", fifth.to_text());
    assert!(
        schedule
            .due(&changed, &e, &c, Instant::now() + Duration::from_secs(86_400 * 365))
            .is_empty()
    );
    assert_eq!(schedule.next_due(&changed), None);

    // A failed push is retried at the next cycle.
    let broken = manifests(
        dir.path(),
        &PUSH.replace("secretKey: API_TOKEN,", "secretKey: NO_SUCH_KEY,"),
    );
    let c = e.run(&broken, &CycleOptions::default()).await;
    let failed = schedule.push_due(&broken, &e, &c, &opts).await;
    assert!(!failed.ok(), "{}", failed.to_text());
    let c = e.run(&broken, &CycleOptions::default()).await;
    assert_eq!(schedule.due(&broken, &e, &c, Instant::now()), [id].into());
}
