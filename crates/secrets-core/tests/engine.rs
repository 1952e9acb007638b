//! The engine's promises, end to end with built-in sources and sinks.

use std::collections::BTreeMap;
use std::sync::Arc;

use secretsync_core::engine::{CycleOptions, Engine, Outcome, SyncStatus};
use secretsync_core::manifest::{Manifests, StoreId, load_str};
use secretsync_core::registry::BuiltStore;
use secretsync_core::sinks::FolderSink;
use secretsync_core::sources::MemorySource;
use secretsync_core::testkit::{
    CANARY, CountingSource, Fault, FaultySource, MemorySink, assert_no_canary, capture_logs,
};
use secretsync_core::{RemoteKey, SecretSink, TargetRef};

const STORE: &str = r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: mem}
spec: {provider: {fake: {data: []}}}
"#;

fn es(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let entries: String = data
        .iter()
        .map(|(k, r)| format!("    - secretKey: {k}\n      remoteRef: {{key: {r}}}\n"))
        .collect();
    format!(
        "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  secretStoreRef: {{name: mem, kind: ClusterSecretStore}}\n  data:\n{entries}"
    )
}

fn load(docs: &[String]) -> Manifests {
    let text = format!("{STORE}{}", docs.join(""));
    load_str(&text, "test.yaml").into_result().expect("manifests load")
}

fn store_id() -> StoreId {
    StoreId {
        kind: secretsync_core::manifest::StoreKind::ClusterSecretStore,
        namespace: None,
        name: "mem".into(),
    }
}

fn engine_with<S: secretsync_core::SecretWriter + 'static>(source: Arc<S>, sink: Arc<dyn SecretSink>) -> Engine {
    let built = BuiltStore {
        source: source.clone(),
        writer: Some(source),
    };
    Engine::new(BTreeMap::from([(store_id(), built)]), sink)
}

#[tokio::test]
async fn two_targets_reading_one_key_fetch_it_once() {
    let mem = MemorySource::new("fake");
    mem.set("db-password", "pw1");
    mem.set("jwt", "j");
    let source = Arc::new(CountingSource::new(mem));
    let sink = Arc::new(MemorySink::new());
    let engine = engine_with(source.clone(), sink.clone());
    // seed 000: backend-secrets-prod (prod) and postgres-prod-credentials-eso (data)
    let m = load(&[
        es(
            "prod",
            "backend-secrets-prod",
            &[("DB_PASSWORD", "db-password"), ("JWT_SECRET", "jwt")],
        ),
        es("data", "postgres-prod-credentials-eso", &[("password", "db-password")]),
    ]);
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(
        source.reads_of(&RemoteKey::new("db-password")),
        1,
        "one fetch for two targets"
    );
    assert_eq!(source.values_read(), 2, "db-password and jwt, once each");
    assert_eq!(r.writes, 2);
    let pw = |ns: &str, name: &str, key: &str| {
        sink.get(&TargetRef::secret(ns, name))
            .unwrap()
            .data
            .get(key)
            .unwrap()
            .expose()
            .to_vec()
    };
    assert_eq!(pw("prod", "backend-secrets-prod", "DB_PASSWORD"), b"pw1");
    assert_eq!(pw("data", "postgres-prod-credentials-eso", "password"), b"pw1");

    // Nothing changed: change tokens say so, nothing is read, nothing is written.
    source.reset();
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!((r.writes, source.values_read()), (0, 0), "{}", r.to_text());
    assert!(r.specs.iter().all(|s| !s.changed && s.outcome == Outcome::Unchanged));

    // One remote change: exactly that value is read, both targets are updated.
    source.inner().set("db-password", "pw2");
    source.reset();
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(source.values_read(), 1);
    assert_eq!(r.writes, 2);
    assert_eq!(pw("data", "postgres-prod-credentials-eso", "password"), b"pw2");
}

#[tokio::test]
async fn a_source_failing_mid_cycle_leaves_its_targets_byte_for_byte_and_others_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemorySource::new("fake");
    mem.set("a", "A1");
    mem.set("b", "B1");
    let source = Arc::new(FaultySource::new(mem));
    let sink = Arc::new(FolderSink::new(dir.path()));
    let engine = engine_with(source.clone(), sink.clone());
    let m = load(&[es("ns", "spec-a", &[("K", "a")]), es("ns", "spec-b", &[("K", "b")])]);
    assert!(engine.run(&m, &CycleOptions::default()).await.all_synced());
    let file_a = sink.path_of(&TargetRef::secret("ns", "spec-a"));
    let before = std::fs::read(&file_a).unwrap();

    // `a` changes upstream, then its read fails during the cycle; `b` changes and reads fine.
    source.inner().set("a", "A2");
    source.inner().set("b", "B2");
    source.set(|f| {
        f.keys.insert("a".into(), Fault::Down);
    });
    let r = engine.run(&m, &CycleOptions::default()).await;
    let a = r.spec("ns", "spec-a").unwrap();
    assert_eq!(a.status, SyncStatus::SecretSyncedError);
    assert!(
        a.message.contains("`a`") && a.message.contains("spec.data[0].remoteRef.key"),
        "{}",
        a.message
    );
    assert!(a.retryable);
    assert_eq!(
        std::fs::read(&file_a).unwrap(),
        before,
        "the failed spec's target is byte-for-byte unchanged"
    );
    let b = r.spec("ns", "spec-b").unwrap();
    assert_eq!((b.status, b.outcome), (SyncStatus::SecretSynced, Outcome::Updated));
    assert_eq!(r.writes, 1);

    // The provider down for the whole cycle: nothing written, both fail.
    source.set(|f| f.all = Some(Fault::Down));
    source.inner().set("b", "B3");
    let snapshot: Vec<Vec<u8>> = ["spec-a", "spec-b"]
        .iter()
        .map(|n| std::fs::read(sink.path_of(&TargetRef::secret("ns", *n))).unwrap())
        .collect();
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(r.failed().count(), 2);
    assert_eq!(r.writes, 0);
    let after: Vec<Vec<u8>> = ["spec-a", "spec-b"]
        .iter()
        .map(|n| std::fs::read(sink.path_of(&TargetRef::secret("ns", *n))).unwrap())
        .collect();
    assert_eq!(snapshot, after);

    // Healthy again: converges with one write per changed target.
    source.heal();
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced());
    assert_eq!(r.writes, 2);
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(r.writes, 0, "no duplicated write");
}

#[tokio::test]
async fn throttling_is_reported_with_retry_after() {
    let mem = MemorySource::new("fake");
    mem.set("a", "A");
    let source = Arc::new(FaultySource::new(mem));
    source.set(|f| f.all = Some(Fault::Throttled(Some(std::time::Duration::from_secs(7)))));
    let engine = engine_with(source, Arc::new(MemorySink::new()));
    let m = load(&[es("ns", "x", &[("K", "a")])]);
    let r = engine.run(&m, &CycleOptions::default()).await;
    let s = r.spec("ns", "x").unwrap();
    assert!(s.retryable, "{}", s.message);
    assert!(s.message.contains("throttled"), "{}", s.message);
    assert_eq!(s.retry_after, Some(std::time::Duration::from_secs(7)));
}

#[tokio::test]
async fn a_canary_never_reaches_logs_errors_debug_or_the_plan() {
    let mem = MemorySource::new("fake");
    mem.set("token", CANARY);
    mem.set("json", format!(r#"{{"user":"u","password":"{CANARY}"}}"#));
    mem.set("plain", CANARY);
    let source = Arc::new(mem);
    let sink = Arc::new(MemorySink::new());
    let engine = engine_with(source.clone(), sink.clone());
    let yaml = format!(
        "{}{}{}",
        es("ns", "ok", &[("TOKEN", "token")]),
        // property on a non-JSON value, property missing, bad base64: three error paths
        "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: bad, namespace: ns}\nspec:\n  secretStoreRef: {name: mem, kind: ClusterSecretStore}\n  data:\n    - secretKey: P\n      remoteRef: {key: plain, property: password}\n",
        "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: bad2, namespace: ns}\nspec:\n  secretStoreRef: {name: mem, kind: ClusterSecretStore}\n  data:\n    - secretKey: P\n      remoteRef: {key: json, property: nope}\n    - secretKey: Q\n      remoteRef: {key: token, decodingStrategy: Base64}\n  target:\n    template:\n      data:\n        X: '{{ .P | b64dec }}'\n"
    );
    let m = load(&[yaml]);
    let ((plan, report), logs) = capture_logs(async {
        let plan = engine
            .run(
                &m,
                &CycleOptions {
                    dry_run: true,
                    only: None,
                    ..Default::default()
                },
            )
            .await;
        let report = engine.run(&m, &CycleOptions::default()).await;
        (plan, report)
    })
    .await;
    assert!(logs.contains("sync failed"), "trace-level logs were captured: {logs}");
    assert_no_canary(&logs, "logs at trace level");
    assert_no_canary(&plan.to_text(), "the text plan");
    assert_no_canary(&serde_json::to_string(&plan).unwrap(), "the JSON plan");
    assert_no_canary(&serde_json::to_string(&report).unwrap(), "the JSON report");
    assert_no_canary(&format!("{report:?} {engine:?} {m:?} {source:?}"), "Debug output");
    assert_eq!(report.failed().count(), 2, "{}", report.to_text());
    for s in report.failed() {
        assert!(!s.message.is_empty());
        assert_no_canary(&s.message, "error messages");
    }
    assert!(
        plan.spec("ns", "ok").unwrap().keys == vec!["TOKEN".to_string()],
        "the plan names keys"
    );
    // The value did reach its target.
    assert_eq!(
        sink.get(&TargetRef::secret("ns", "ok"))
            .unwrap()
            .data
            .get("TOKEN")
            .unwrap()
            .expose(),
        CANARY.as_bytes()
    );
}

#[tokio::test]
async fn drift_is_repaired_and_dry_run_writes_nothing() {
    let mem = MemorySource::new("fake");
    mem.set("a", "A");
    let sink = Arc::new(MemorySink::new());
    let engine = engine_with(Arc::new(mem), sink.clone());
    let m = load(&[es("ns", "x", &[("K", "a")])]);
    let plan = engine
        .run(
            &m,
            &CycleOptions {
                dry_run: true,
                only: None,
                ..Default::default()
            },
        )
        .await;
    assert_eq!((plan.writes, sink.writes()), (0, 0));
    assert_eq!(plan.spec("ns", "x").unwrap().outcome, Outcome::Created);
    engine.run(&m, &CycleOptions::default()).await;
    // Someone edits the Secret.
    let t = TargetRef::secret("ns", "x");
    let mut state = sink.get(&t).unwrap();
    state.data.insert("K", "tampered".into());
    state.data.insert("EXTRA", "x".into());
    sink.put(t.clone(), state);
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(r.spec("ns", "x").unwrap().outcome, Outcome::Updated);
    let state = sink.get(&t).unwrap();
    assert_eq!(state.data.keys().cloned().collect::<Vec<_>>(), vec!["K"]);
    assert_eq!(state.data.get("K").unwrap().expose(), b"A");
}

#[tokio::test]
async fn deletion_policy_delete_removes_the_target_when_the_remote_is_gone() {
    let mem = Arc::new(MemorySource::new("fake"));
    mem.set("a", "A");
    let sink = Arc::new(MemorySink::new());
    let engine = engine_with(mem.clone(), sink.clone());
    let yaml = es("ns", "x", &[("K", "a")]).replace("  data:\n", "  target: {deletionPolicy: Delete}\n  data:\n");
    let m = load(&[yaml]);
    engine.run(&m, &CycleOptions::default()).await;
    assert!(sink.get(&TargetRef::secret("ns", "x")).is_some());
    mem.remove("a");
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(r.spec("ns", "x").unwrap().outcome, Outcome::Deleted, "{}", r.to_text());
    assert!(sink.get(&TargetRef::secret("ns", "x")).is_none());
}

#[tokio::test]
async fn deletion_policy_merge_removes_only_our_keys_when_the_remote_is_gone() {
    let mem = Arc::new(MemorySource::new("fake"));
    mem.set("a", "A");
    let sink = Arc::new(MemorySink::new());
    let t = TargetRef::secret("ns", "shared");
    // Someone else's Secret, with a key of theirs.
    sink.put(
        t.clone(),
        secretsync_core::TargetState {
            data: secretsync_core::testkit::map(&[("THEIRS", "t")]),
            ..Default::default()
        },
    );
    let engine = engine_with(mem.clone(), sink.clone());
    let yaml = es("ns", "x", &[("OURS", "a")]).replace(
        "  data:\n",
        "  target: {name: shared, creationPolicy: Merge, deletionPolicy: Merge}\n  data:\n",
    );
    let m = load(&[yaml]);
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(
        sink.get(&t).unwrap().data.keys().cloned().collect::<Vec<_>>(),
        vec!["OURS", "THEIRS"]
    );
    mem.remove("a");
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(r.writes, 1, "{}", r.to_text());
    assert_eq!(
        sink.get(&t).unwrap().data.keys().cloned().collect::<Vec<_>>(),
        vec!["THEIRS"]
    );
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(r.writes, 0, "already removed: nothing more to write");
}

#[tokio::test]
async fn a_cluster_external_secret_syncs_one_target_per_listed_namespace() {
    let mem = MemorySource::new("fake");
    mem.set("db-password", "pw1");
    let source = Arc::new(CountingSource::new(mem));
    let sink = Arc::new(MemorySink::new());
    let engine = engine_with(source.clone(), sink.clone());
    let ces = "---\napiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: db-everywhere, annotations: {force-sync: '7'}}\nspec:\n  externalSecretName: db\n  externalSecretMetadata:\n    labels: {team: payments}\n    annotations: {note: shared}\n  namespaces: [a, b]\n  externalSecretSpec:\n    secretStoreRef: {name: mem, kind: ClusterSecretStore}\n    target: {name: db-credentials}\n    data:\n      - {secretKey: PASSWORD, remoteRef: {key: db-password}}\n";
    let m = load(&[ces.to_string()]);
    let (errors, _) = secretsync_core::manifest::validate(&m, Default::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(m.cluster_external_secrets.len(), 1);
    let ids: Vec<String> = m.external_secrets.iter().map(|e| e.id().to_string()).collect();
    assert_eq!(
        ids,
        ["a/db", "b/db"],
        "one ExternalSecret per namespace, named externalSecretName"
    );
    for es in &m.external_secrets {
        assert_eq!(es.metadata.labels.get("team").map(String::as_str), Some("payments"));
        assert_eq!(es.metadata.annotations.get("note").map(String::as_str), Some("shared"));
        assert_eq!(es.force_sync_token(), Some("7"), "force-sync is passed on, as ESO does");
    }

    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(r.writes, 2);
    assert_eq!(source.reads_of(&RemoteKey::new("db-password")), 1, "one fetch for both");
    for ns in ["a", "b"] {
        let t = sink
            .get(&TargetRef::secret(ns, "db-credentials"))
            .expect("a target per namespace");
        assert_eq!(t.data.get("PASSWORD").unwrap().expose(), b"pw1");
    }
    assert_eq!(sink.targets().len(), 2, "exactly the two listed namespaces");
}

/// A cycle's error about an ExternalSecret expanded from a ClusterExternalSecret names the
/// ClusterExternalSecret's field (`spec.externalSecretSpec.…`), not a field it lacks.
#[tokio::test]
async fn errors_of_an_expanded_external_secret_name_the_cluster_external_secret_field() {
    let mem = MemorySource::new("fake");
    mem.set("db", "not json");
    let sink = Arc::new(MemorySink::new());
    let engine = engine_with(Arc::new(mem), sink.clone());
    let ces = "---\napiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: db-everywhere}\nspec:\n  namespaces: [a]\n  externalSecretSpec:\n    secretStoreRef: {name: mem, kind: ClusterSecretStore}\n    target: {name: db-credentials}\n    data:\n      - {secretKey: PASSWORD, remoteRef: {key: db, property: password}}\n";
    let m = load(&[ces.to_string()]);
    let r = engine.run(&m, &CycleOptions::default()).await;
    let failed: Vec<_> = r.failed().collect();
    assert_eq!(failed.len(), 1, "{}", r.to_text());
    let msg = &failed[0].message;
    assert!(
        msg.contains("spec.externalSecretSpec.data[0].remoteRef.property")
            && msg.contains("document 2 (ClusterExternalSecret db-everywhere)"),
        "{msg}"
    );
    assert!(sink.targets().is_empty(), "nothing written");
}

/// A change event names one key: the sync it triggers reads that key alone and serves the
/// spec's other keys from the cache, yet the target gets the new value.
#[tokio::test]
async fn an_event_for_one_key_reads_only_that_key() {
    let mem = MemorySource::new("fake");
    mem.set("db-password", "pw1");
    mem.set("jwt", "j");
    mem.set("api", "a");
    let source = Arc::new(CountingSource::new(mem));
    let sink = Arc::new(MemorySink::new());
    let engine = engine_with(source.clone(), sink.clone());
    let m = load(&[es(
        "prod",
        "backend",
        &[("DB_PASSWORD", "db-password"), ("JWT_SECRET", "jwt"), ("API", "api")],
    )]);
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(r.values_read, 3);
    source.inner().set("db-password", "pw2");
    let changed = BTreeMap::from([(
        store_id(),
        Some(std::collections::BTreeSet::from(["db-password".to_string()])),
    )]);
    let opts = CycleOptions {
        changed: Some(changed),
        ..Default::default()
    };
    let before = source.values_read();
    let r = engine.run(&m, &opts).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(r.values_read, 1, "only the key the event named");
    assert_eq!(
        r.provider_calls, 1,
        "no change-token calls for the keys the event did not name"
    );
    assert_eq!(source.values_read() - before, 1);
    assert_eq!(r.writes, 1);
    let target = TargetRef::secret("prod", "backend");
    let data = sink.get(&target).expect("written");
    assert_eq!(data.data.get("DB_PASSWORD").unwrap().expose(), b"pw2");
    assert_eq!(data.data.get("JWT_SECRET").unwrap().expose(), b"j");
}

/// A rendered template is remembered between cycles only while its inputs stay the same:
/// a changed value renders anew, in the same cycle the value changes; a template that reads
/// randomness renders every cycle.
#[tokio::test]
async fn templates_render_anew_when_their_data_changes() {
    let mem = MemorySource::new("fake");
    mem.set("db-password", "pw1");
    let source = Arc::new(CountingSource::new(mem));
    let sink = Arc::new(MemorySink::new());
    let engine = engine_with(source.clone(), sink.clone());
    let templated = |name: &str, tpl: &str| {
        es("ns", name, &[("P", "db-password")])
            + &format!("  target:\n    template:\n      data:\n        dsn: '{tpl}'\n")
    };
    let m = load(&[
        templated("stable", "postgres://app:{{ .P | upper }}@db"),
        templated("random", "{{ .P }}-{{ randAlphaNum 8 }}"),
    ]);
    let dsn = |name: &str| {
        let v = sink
            .get(&TargetRef::secret("ns", name))
            .unwrap()
            .data
            .get("dsn")
            .unwrap()
            .clone();
        String::from_utf8(v.expose().to_vec()).unwrap()
    };
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(dsn("stable"), "postgres://app:PW1@db");
    let first_random = dsn("random");

    let r = engine.run(&m, &CycleOptions::default()).await;
    let writes: Vec<&str> = r.specs.iter().filter(|s| s.changed).map(|s| s.name.as_str()).collect();
    assert_eq!(writes, ["random"], "only the random template changes: {}", r.to_text());
    assert_ne!(dsn("random"), first_random);

    source.inner().set("db-password", "pw2");
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(dsn("stable"), "postgres://app:PW2@db", "the new value is rendered");
    assert!(dsn("random").starts_with("pw2-"));
}
