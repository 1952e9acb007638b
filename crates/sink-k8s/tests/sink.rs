//! KubeSink against the fake API server through a real kube::Client: the core conformance
//! suite, then the Kubernetes-specific behaviours, with write requests counted at the fake.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use secretsync_core::sink::{FINGERPRINT_ANNOTATION, MANAGED_BY_LABEL};
use secretsync_core::testkit::conformance::{self, Ran};
use secretsync_core::testkit::{desired, map};
use secretsync_core::{
    ApplyOutcome, Compared, CreationPolicy, OwnerRef, SecretSink, SecretValue, TargetKind, TargetRef,
};
use secretsync_fakes::kube::FakeKube;
use secretsync_k8s::{KubeCredentials, KubeExternalSecrets, KubeSink};
use serde_json::json;

fn prefix() -> String {
    format!("t{:08x}", rand::random::<u32>())
}

async fn setup() -> (FakeKube, KubeSink) {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "external-secrets", "conformance", "conformance-2"]);
    let sink = KubeSink::new(fake.client());
    (fake, sink)
}

fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

#[tokio::test]
async fn conformance_suite() {
    let (_fake, sink) = setup().await;
    let s: &dyn SecretSink = &sink;
    let p = prefix();
    let ns = "conformance";
    // Every function, one by one, so a failure names the behaviour; all apply to KubeSink.
    assert_eq!(conformance::sink_read_missing_is_none(s, ns, &p).await, Ran::Passed);
    assert_eq!(
        conformance::sink_apply_creates_and_reads_back(s, ns, &p).await,
        Ran::Passed
    );
    assert_eq!(
        conformance::sink_apply_replaces_and_drops_keys(s, ns, &p).await,
        Ran::Passed
    );
    assert_eq!(conformance::sink_binary_values(s, ns, &p).await, Ran::Passed);
    assert_eq!(conformance::sink_merge_keeps_foreign_keys(s, ns, &p).await, Ran::Passed);
    assert_eq!(
        conformance::sink_creation_policy_none_writes_nothing(s, ns, &p).await,
        Ran::Passed
    );
    assert_eq!(conformance::sink_delete(s, ns, &p).await, Ran::Passed);
    assert_eq!(
        conformance::sink_values_not_in_debug_or_errors(s, ns, &p).await,
        Ran::Passed
    );
    assert_eq!(conformance::sink_compare_agrees_with_read(s, ns, &p).await, Ran::Passed);
    // And the runner, in another namespace: every behaviour applies.
    assert_eq!(conformance::run_sink_suite(s, "conformance-2", &prefix()).await, 9);
}

/// The engine compares, then applies what differs: the target is read once for both, so a
/// created or updated Orphan target costs one GET and one PATCH, an unchanged one one GET.
#[tokio::test]
async fn a_write_after_compare_reads_the_target_once() {
    let (fake, sink) = setup().await;
    let t = TargetRef::secret("prod", "read-once");
    let path = "/api/v1/namespaces/prod/secrets/read-once";
    let counts = |fake: &FakeKube| {
        let log = fake.requests();
        let n = |m: &str| log.iter().filter(|r| r.method == m && r.path == path).count();
        (n("GET"), n("PATCH"), log.len())
    };
    for (round, data) in [("create", "1"), ("update", "2")] {
        fake.clear_requests();
        let d = desired(t.clone(), map(&[("A", data)]), CreationPolicy::Orphan);
        assert!(!matches!(sink.compare(&d).await.unwrap(), Compared::Matches), "{round}");
        sink.apply(&d).await.unwrap();
        assert_eq!(counts(&fake), (1, 1, 2), "{round}: {:?}", fake.requests());
    }
    fake.clear_requests();
    let d = desired(t.clone(), map(&[("A", "2")]), CreationPolicy::Orphan);
    assert!(matches!(sink.compare(&d).await.unwrap(), Compared::Matches));
    assert_eq!(counts(&fake), (1, 0, 1));
    // Without a compare just before, apply reads for itself.
    fake.clear_requests();
    let d = desired(t.clone(), map(&[("A", "3")]), CreationPolicy::Orphan);
    sink.apply(&d).await.unwrap();
    assert_eq!(counts(&fake), (1, 1, 2));
}

#[tokio::test]
async fn apply_uses_server_side_apply_with_data_not_string_data() {
    let (fake, sink) = setup().await;
    let t = TargetRef::secret("prod", "backend-secrets-prod");
    let d = desired(
        t.clone(),
        map(&[("DB_PASSWORD", "pw-1"), ("JWT_SECRET", "j")]),
        CreationPolicy::Owner,
    );
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Created);
    let writes = fake.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(writes[0].content_type.as_deref(), Some("application/apply-patch+yaml"));
    assert!(
        writes[0].query.contains("fieldManager=secretsync") && writes[0].query.contains("force=true"),
        "{}",
        writes[0].query
    );

    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let s = api.get("backend-secrets-prod").await.unwrap();
    assert_eq!(
        secret_data(&s),
        BTreeMap::from([("DB_PASSWORD".into(), "pw-1".into()), ("JWT_SECRET".into(), "j".into())])
    );
    assert!(s.string_data.is_none());
    let meta = &s.metadata;
    assert_eq!(
        meta.labels.as_ref().unwrap().get(MANAGED_BY_LABEL).map(String::as_str),
        Some("secretsync")
    );
    assert!(meta.annotations.as_ref().unwrap().contains_key(FINGERPRINT_ANNOTATION));
    let mf = meta.managed_fields.as_ref().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("secretsync"), Some("Apply"))
    );

    // The same desired state again: read, and no write.
    fake.clear_requests();
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(fake.write_count(), 0, "{:?}", fake.requests());
}

#[tokio::test]
async fn owner_target_drops_keys_removed_upstream_and_keys_added_by_hand() {
    let (fake, sink) = setup().await;
    let t = TargetRef::secret("prod", "owned");
    sink.apply(&desired(
        t.clone(),
        map(&[("A", "1"), ("B", "2")]),
        CreationPolicy::Owner,
    ))
    .await
    .unwrap();
    // Someone adds a key and edits ours by hand (kubectl edit is an update).
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let patch = json!({"data": {"HAND": "aA==", "A": "ZWRpdGVk"}});
    api.patch(
        "owned",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();

    // Drift is visible to read(): the engine compares actual data.
    let cur = sink.read(&t).await.unwrap().unwrap();
    assert_eq!(cur.data.get("A"), Some(&SecretValue::from("edited")));
    assert!(cur.data.contains_key("HAND"));

    // B dropped upstream: the Secret holds exactly the desired data again.
    fake.clear_requests();
    let d = desired(t.clone(), map(&[("A", "1")]), CreationPolicy::Owner);
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Updated);
    assert_eq!(
        secret_data(&api.get("owned").await.unwrap()),
        BTreeMap::from([("A".into(), "1".into())])
    );
    assert_eq!(
        fake.write_count(),
        2,
        "one apply, one patch removing the key added by hand: {:?}",
        fake.writes()
    );

    // Without foreign keys, a dropped key costs one write.
    sink.apply(&desired(
        t.clone(),
        map(&[("A", "1"), ("C", "3")]),
        CreationPolicy::Owner,
    ))
    .await
    .unwrap();
    fake.clear_requests();
    sink.apply(&desired(t.clone(), map(&[("C", "3")]), CreationPolicy::Owner))
        .await
        .unwrap();
    assert_eq!(fake.write_count(), 1);
    assert_eq!(
        secret_data(&api.get("owned").await.unwrap()),
        BTreeMap::from([("C".into(), "3".into())])
    );
}

#[tokio::test]
async fn merge_target_keeps_keys_owned_by_others_across_updates() {
    let (fake, sink) = setup().await;
    let api: Api<Secret> = Api::namespaced(fake.client(), "data");
    // A Secret made by someone else (a Helm chart, kubectl) with their keys and labels.
    let theirs = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("postgres-app".into()),
            labels: Some(BTreeMap::from([("helm.sh/chart".into(), "postgres".into())])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/basic-auth".into()),
        data: Some(BTreeMap::from([
            ("username".into(), ByteString(b"app".to_vec())),
            ("host".into(), ByteString(b"db".to_vec())),
        ])),
        ..Default::default()
    };
    api.create(
        &PostParams {
            field_manager: Some("helm".into()),
            ..Default::default()
        },
        &theirs,
    )
    .await
    .unwrap();

    let t = TargetRef::secret("data", "postgres-app");
    let owner = |name: &str| {
        Some(OwnerRef {
            api_version: "external-secrets.io/v1".into(),
            kind: "ExternalSecret".into(),
            name: name.into(),
            uid: None,
        })
    };
    let mut d = desired(t.clone(), map(&[("password", "p1")]), CreationPolicy::Merge);
    d.owner = owner("pg-password");
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Updated);
    // A second ExternalSecret merges its own key into the same Secret.
    let mut d2 = desired(t.clone(), map(&[("replication", "r1")]), CreationPolicy::Merge);
    d2.owner = owner("pg-replication");
    sink.apply(&d2).await.unwrap();

    let mut d = desired(
        t.clone(),
        map(&[("password", "p2"), ("password-old", "p1")]),
        CreationPolicy::Merge,
    );
    d.owner = owner("pg-password");
    sink.apply(&d).await.unwrap();
    let mut d = desired(t.clone(), map(&[("password", "p3")]), CreationPolicy::Merge);
    d.owner = owner("pg-password");
    sink.apply(&d).await.unwrap();

    let s = api.get("postgres-app").await.unwrap();
    assert_eq!(
        secret_data(&s),
        BTreeMap::from([
            ("host".into(), "db".into()),
            ("password".into(), "p3".into()),
            ("replication".into(), "r1".into()),
            ("username".into(), "app".into()),
        ]),
        "their keys and the other ExternalSecret's key survive; our dropped key is gone"
    );
    assert_eq!(
        s.type_.as_deref(),
        Some("kubernetes.io/basic-auth"),
        "Merge leaves the type alone"
    );
    assert_eq!(
        s.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("helm.sh/chart")
            .map(String::as_str),
        Some("postgres")
    );
    assert!(
        !s.metadata.labels.as_ref().unwrap().contains_key(MANAGED_BY_LABEL),
        "Merge does not claim the Secret"
    );
    let managers: Vec<String> = s
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"secretsync:pg-password".to_string())
            && managers.contains(&"secretsync:pg-replication".to_string()),
        "{managers:?}"
    );

    // Merge into a missing target: NotFound, and nothing written.
    fake.clear_requests();
    let e = sink
        .apply(&desired(
            TargetRef::secret("data", "missing"),
            map(&[("k", "v")]),
            CreationPolicy::Merge,
        ))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(fake.write_count(), 0);
}

#[tokio::test]
async fn creation_policy_none_sends_nothing() {
    let (fake, sink) = setup().await;
    let d = desired(
        TargetRef::secret("prod", "never"),
        map(&[("k", "v")]),
        CreationPolicy::None,
    );
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn immutable_targets_are_created_immutable_and_refuse_new_data() {
    let (fake, sink) = setup().await;
    let t = TargetRef::secret("prod", "frozen");
    let mut d = desired(t.clone(), map(&[("k", "v1")]), CreationPolicy::Owner);
    d.immutable = true;
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Created);
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    assert_eq!(api.get("frozen").await.unwrap().immutable, Some(true));
    assert!(sink.read(&t).await.unwrap().unwrap().immutable);

    fake.clear_requests();
    let mut d2 = desired(t.clone(), map(&[("k", "v2")]), CreationPolicy::Owner);
    d2.immutable = true;
    let e = sink.apply(&d2).await.unwrap_err();
    assert!(matches!(e.root(), secretsync_core::Error::Conflict { .. }), "{e}");
    assert!(
        e.to_string().contains("immutable") && e.to_string().contains("prod/frozen"),
        "{e}"
    );
    assert!(!e.to_string().contains("v2"));
    assert_eq!(fake.write_count(), 0, "refused before any write");
    assert_eq!(secret_data(&api.get("frozen").await.unwrap())["k"], "v1");
}

#[tokio::test]
async fn oversized_data_and_bad_names_are_refused_before_any_api_call() {
    let (fake, sink) = setup().await;
    let mut big = map(&[]);
    big.insert("blob", SecretValue::new(vec![b'x'; 1024 * 1024]));
    let e = sink
        .apply(&desired(
            TargetRef::secret("prod", "too-big"),
            big,
            CreationPolicy::Owner,
        ))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("Secret prod/too-big") && msg.contains("1 MiB"), "{msg}");

    let e = sink
        .apply(&desired(
            TargetRef::secret("prod", "Bad_Name"),
            map(&[("k", "v")]),
            CreationPolicy::Owner,
        ))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("`Bad_Name`") && e.to_string().contains("RFC 1123"),
        "{e}"
    );

    let e = sink
        .apply(&desired(
            TargetRef::secret("Prod", "ok"),
            map(&[("k", "v")]),
            CreationPolicy::Owner,
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("namespace `Prod`"), "{e}");

    let e = sink
        .apply(&desired(
            TargetRef::secret("prod", "bad-key"),
            map(&[("DB PASSWORD", "hunter2-canary")]),
            CreationPolicy::Owner,
        ))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("Secret prod/bad-key") && msg.contains("`DB PASSWORD`"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2") && !format!("{e:?}").contains("hunter2"));

    assert!(sink.read(&TargetRef::secret("prod", "UPPER")).await.is_err());
    assert!(sink.delete(&TargetRef::secret("prod", "a_b")).await.is_err());
    assert_eq!(fake.request_count(), 0, "no request at all: {:?}", fake.requests());

    // Exactly at the limit is fine.
    let mut ok = map(&[]);
    ok.insert("blob", SecretValue::new(vec![b'x'; 1024 * 1024 - 4]));
    sink.apply(&desired(
        TargetRef::secret("prod", "at-limit"),
        ok,
        CreationPolicy::Owner,
    ))
    .await
    .expect("1 MiB fits");
}

#[tokio::test]
async fn template_type_labels_and_annotations() {
    let (fake, sink) = setup().await;
    let t = TargetRef::secret("prod", "registry");
    let mut d = desired(
        t.clone(),
        map(&[(".dockerconfigjson", r#"{"auths":{}}"#)]),
        CreationPolicy::Orphan,
    );
    d.secret_type = Some("kubernetes.io/dockerconfigjson".into());
    d.labels.insert("team".into(), "platform".into());
    d.annotations.insert("note".into(), "from template".into());
    sink.apply(&d).await.unwrap();
    let cur = sink.read(&t).await.unwrap().unwrap();
    assert_eq!(cur.secret_type.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    assert_eq!(cur.labels.get("team").map(String::as_str), Some("platform"));
    assert_eq!(cur.annotations.get("note").map(String::as_str), Some("from template"));

    // A label someone else set survives; a label we stop setting goes.
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    api.patch(
        "registry",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"theirs": "x"}}})),
    )
    .await
    .unwrap();
    d.labels.remove("team");
    sink.apply(&d).await.unwrap();
    let labels = sink.read(&t).await.unwrap().unwrap().labels;
    assert_eq!(labels.get("theirs").map(String::as_str), Some("x"));
    assert!(!labels.contains_key("team"));

    // A type change is refused with a clear error, not a half write.
    let mut tls = desired(
        t.clone(),
        map(&[("tls.crt", "c"), ("tls.key", "k")]),
        CreationPolicy::Owner,
    );
    tls.secret_type = Some("kubernetes.io/tls".into());
    let e = sink.apply(&tls).await.unwrap_err();
    assert!(e.to_string().contains("kubernetes.io/tls"), "{e}");
}

#[tokio::test]
async fn config_maps_use_the_same_code() {
    let (fake, sink) = setup().await;
    let t = TargetRef {
        kind: TargetKind::ConfigMap,
        namespace: "prod".into(),
        name: "backend-config-prod".into(),
    };
    let mut data = map(&[
        ("DB_HOST", "prod-postgres-postgresql.data.svc.cluster.local"),
        ("DB_PORT", "5432"),
    ]);
    data.insert("bin", SecretValue::new(vec![0, 255]));
    let d = desired(t.clone(), data.clone(), CreationPolicy::Owner);
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Created);
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "prod");
    let cm = api.get("backend-config-prod").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["DB_PORT"], "5432");
    assert_eq!(cm.binary_data.as_ref().unwrap()["bin"].0, vec![0, 255]);
    let cur = sink.read(&t).await.unwrap().unwrap();
    assert_eq!(cur.data, data);
    assert_eq!(cur.secret_type, None);
    fake.clear_requests();
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(fake.write_count(), 0);
    let d = desired(t.clone(), map(&[("DB_PORT", "5433")]), CreationPolicy::Owner);
    assert_eq!(sink.apply(&d).await.unwrap(), ApplyOutcome::Updated);
    assert_eq!(sink.read(&t).await.unwrap().unwrap().data, map(&[("DB_PORT", "5433")]));
    assert!(sink.delete(&t).await.unwrap());
}

#[tokio::test]
async fn owner_reference_points_at_the_external_secret_in_the_cluster() {
    let (fake, sink) = setup().await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"),
        "externalsecrets",
    );
    let es_api: Api<DynamicObject> = Api::namespaced_with(fake.client(), "prod", &ar);
    let es: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "backend-secrets-prod", "annotations": {"force-sync": "1700000000"}},
        "spec": {"target": {"name": "backend-secrets-prod"}},
    }))
    .unwrap();
    let es = es_api.create(&PostParams::default(), &es).await.unwrap();
    let uid = es.metadata.uid.clone().unwrap();

    // Looked up by name when the desired state has no uid.
    let t = TargetRef::secret("prod", "backend-secrets-prod");
    let mut d = desired(t.clone(), map(&[("k", "v")]), CreationPolicy::Owner);
    d.owner = Some(OwnerRef {
        api_version: "external-secrets.io/v1".into(),
        kind: "ExternalSecret".into(),
        name: "backend-secrets-prod".into(),
        uid: None,
    });
    sink.apply(&d).await.unwrap();
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let refs = api
        .get("backend-secrets-prod")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].kind.as_str(), refs[0].name.as_str(), refs[0].uid.as_str()),
        ("ExternalSecret", "backend-secrets-prod", uid.as_str())
    );
    assert_eq!(refs[0].controller, Some(true));

    // Not in the cluster: no owner reference, the managed-by label instead.
    let t2 = TargetRef::secret("prod", "orphaned-owner");
    let mut d2 = desired(t2.clone(), map(&[("k", "v")]), CreationPolicy::Owner);
    d2.owner = Some(OwnerRef {
        api_version: "external-secrets.io/v1".into(),
        kind: "ExternalSecret".into(),
        name: "not-applied".into(),
        uid: None,
    });
    sink.apply(&d2).await.unwrap();
    let s = api.get("orphaned-owner").await.unwrap();
    assert!(s.metadata.owner_references.is_none());
    assert_eq!(
        s.metadata.labels.unwrap().get(MANAGED_BY_LABEL).map(String::as_str),
        Some("secretsync")
    );

    // Orphan never sets an owner reference.
    let mut d3 = desired(
        TargetRef::secret("prod", "orphan"),
        map(&[("k", "v")]),
        CreationPolicy::Orphan,
    );
    d3.owner = Some(OwnerRef {
        api_version: "external-secrets.io/v1".into(),
        kind: "ExternalSecret".into(),
        name: "backend-secrets-prod".into(),
        uid: Some(uid.clone()),
    });
    sink.apply(&d3).await.unwrap();
    assert!(api.get("orphan").await.unwrap().metadata.owner_references.is_none());

    // The helper sees the ExternalSecret, its uid and its force-sync token.
    let ess = KubeExternalSecrets::new(fake.client());
    let listed = ess.list(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].uid.as_deref(), Some(uid.as_str()));
    assert_eq!(listed[0].force_sync(), Some("1700000000"));
    ess.request_force_sync("prod", "backend-secrets-prod", "1700000100")
        .await
        .unwrap();
    let tokens = ess.force_sync_tokens(Some("prod")).await.unwrap();
    assert_eq!(tokens.values().collect::<Vec<_>>(), ["1700000100"]);
    assert_eq!(
        ess.owner_ref("prod", "backend-secrets-prod")
            .await
            .unwrap()
            .unwrap()
            .uid
            .as_deref(),
        Some(uid.as_str())
    );
    assert!(ess.get("prod", "nope").await.unwrap().is_none());
}

#[tokio::test]
async fn manifests_load_from_the_cluster() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "external-secrets"]);
    let client = fake.client();
    let gvk = |k: &str| GroupVersionKind::gvk("external-secrets.io", "v1", k);
    let css: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk("ClusterSecretStore"), "clustersecretstores"),
    );
    let store: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "fake-store"},
        "spec": {"provider": {"fake": {"data": [{"key": "tomoda-db-password", "value": "x"}]}}},
    }))
    .unwrap();
    css.create(&PostParams::default(), &store).await.unwrap();
    let es_api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "prod",
        &ApiResource::from_gvk_with_plural(&gvk("ExternalSecret"), "externalsecrets"),
    );
    let es: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "backend-secrets-prod"},
        "spec": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": "fake-store"}, "target": {"name": "backend-secrets-prod"},
                 "data": [{"secretKey": "DB_PASSWORD", "remoteRef": {"key": "tomoda-db-password"}}]},
    }))
    .unwrap();
    es_api.create(&PostParams::default(), &es).await.unwrap();
    let loaded = KubeExternalSecrets::new(client).load_manifests(None).await.unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.manifests.stores.len(), 1);
    assert_eq!(loaded.manifests.external_secrets.len(), 1);
    assert!(loaded.manifests.external_secrets[0].metadata.uid.is_some());
}

#[tokio::test]
async fn credentials_resolve_secret_keys() {
    use secretsync_core::manifest::SecretKeySelector;
    use secretsync_core::registry::CredentialResolver;
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "external-secrets"]);
    let api: Api<Secret> = Api::namespaced(fake.client(), "external-secrets");
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("aws-eso-credentials".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "access-key".into(),
            ByteString(b"AKIA-canary".to_vec()),
        )])),
        ..Default::default()
    };
    api.create(&PostParams::default(), &s).await.unwrap();
    let creds = KubeCredentials::new(fake.client());
    let sel: SecretKeySelector =
        serde_json::from_value(json!({"name": "aws-eso-credentials", "key": "access-key"})).unwrap();
    let v = creds.resolve(&sel, Some("external-secrets")).await.unwrap();
    assert_eq!(v.expose(), b"AKIA-canary");
    let sel: SecretKeySelector = serde_json::from_value(
        json!({"name": "aws-eso-credentials", "key": "secret-access-key", "namespace": "external-secrets"}),
    )
    .unwrap();
    let e = creds.resolve(&sel, None).await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("`secret-access-key`"), "{e}");
    assert!(!e.to_string().contains("canary"));
    let sel: SecretKeySelector = serde_json::from_value(json!({"name": "nope", "key": "k"})).unwrap();
    assert!(
        creds
            .resolve(&sel, Some("external-secrets"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn values_never_reach_logs_debug_or_errors() {
    use secretsync_core::testkit::{CANARY, assert_no_canary, capture_logs};
    let (fake, sink) = setup().await;
    let t = TargetRef::secret("prod", "canary");
    let ((), logs) = capture_logs(async {
        let d = desired(t.clone(), map(&[("TOKEN", CANARY)]), CreationPolicy::Owner);
        sink.apply(&d).await.unwrap();
        let mut d2 = desired(
            t.clone(),
            map(&[("TOKEN", CANARY), ("MORE", CANARY)]),
            CreationPolicy::Owner,
        );
        d2.immutable = false;
        sink.apply(&d2).await.unwrap();
        let state = sink.read(&t).await.unwrap().unwrap();
        assert_no_canary(&format!("{state:?} {sink:?}"), "Debug of state and sink");
        let mut frozen = desired(
            TargetRef::secret("prod", "canary-frozen"),
            map(&[("TOKEN", CANARY)]),
            CreationPolicy::Owner,
        );
        frozen.immutable = true;
        sink.apply(&frozen).await.unwrap();
        frozen.data = map(&[("TOKEN", "other")]);
        let errors = [
            sink.apply(&frozen).await.unwrap_err(),
            sink.apply(&desired(
                TargetRef::secret("prod", "missing"),
                map(&[("TOKEN", CANARY)]),
                CreationPolicy::Merge,
            ))
            .await
            .unwrap_err(),
            sink.apply(&desired(
                TargetRef::secret("prod", "Bad"),
                map(&[("TOKEN", CANARY)]),
                CreationPolicy::Owner,
            ))
            .await
            .unwrap_err(),
        ];
        for e in errors {
            assert_no_canary(&format!("{e} {e:?}"), "a sink error");
        }
        // A server-side refusal quoting input goes through redaction too.
        let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
        let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": {"k": CANARY}});
        let e = api
            .patch("x", &PatchParams::apply("m"), &Patch::Apply(&bad))
            .await
            .unwrap_err();
        assert_no_canary(&e.to_string(), "the fake's 422 message");
    })
    .await;
    assert!(!logs.is_empty(), "logs were captured");
    assert_no_canary(&logs, "trace logs of the sink, kube and the fake");
}

/// Another controller's owner reference on our target (a backup tool, a GitOps agent)
/// stays when our forced server-side apply sets ours: ownerReferences merge by uid on a
/// real server, and our apply owns only our entry.
#[tokio::test]
async fn a_forced_apply_keeps_a_foreign_owner_reference() {
    let (fake, sink) = setup().await;
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let t = TargetRef::secret("prod", "shared-owner");
    let mut d = desired(t.clone(), map(&[("k", "v1")]), CreationPolicy::Owner);
    d.owner = Some(OwnerRef {
        api_version: "external-secrets.io/v1".into(),
        kind: "ExternalSecret".into(),
        name: "es".into(),
        uid: Some("uid-es".into()),
    });
    sink.apply(&d).await.unwrap();
    // Another controller adds its (non-controller) reference with its own apply.
    api.patch(
        "shared-owner",
        &PatchParams::apply("backup-operator"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shared-owner",
            "ownerReferences": [{"apiVersion": "backup.example/v1", "kind": "Backup", "name": "nightly", "uid": "uid-backup"}]}})),
    )
    .await
    .unwrap();
    // Our next change is a forced apply: the foreign reference survives it.
    let mut d2 = desired(t.clone(), map(&[("k", "v2")]), CreationPolicy::Owner);
    d2.owner = d.owner.clone();
    assert_eq!(sink.apply(&d2).await.unwrap(), ApplyOutcome::Updated);
    let s = api.get("shared-owner").await.unwrap();
    let mut uids: Vec<String> = s
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.clone())
        .collect();
    uids.sort();
    assert_eq!(uids, vec!["uid-backup", "uid-es"]);
    assert_eq!(secret_data(&s).get("k").map(String::as_str), Some("v2"));
}

/// Syncing into a namespace that does not exist fails (as on a real cluster) with an error
/// that names the namespace.
#[tokio::test]
async fn a_target_in_a_missing_namespace_is_a_clear_error() {
    let (_fake, sink) = setup().await;
    let d = desired(
        TargetRef::secret("no-such-ns", "db"),
        map(&[("k", "s3cr3t-value")]),
        CreationPolicy::Owner,
    );
    let e = sink.apply(&d).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("namespace no-such-ns does not exist"), "{text}");
    assert!(!text.contains("s3cr3t-value"));
}
