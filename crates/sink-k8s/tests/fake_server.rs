//! The fake API server's behaviours, through a real `kube::Client`: what the sink tests
//! rely on is checked here against the Kubernetes semantics it stands in for.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use secretsync_fakes::kube::FakeKube;
use serde_json::json;

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn status_of(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API status, got {other}"),
    }
}

fn keys(s: &Secret) -> Vec<String> {
    s.data.as_ref().map(|d| d.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test]
async fn not_found_has_reason_not_found_in_status_shape() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let err = api.get("missing").await.expect_err("missing");
    let s = status_of(err);
    assert_eq!(s.code, 404);
    assert_eq!(s.reason, "NotFound");
    assert!(s.is_not_found());
    assert_eq!(s.message, "secrets \"missing\" not found");
    assert!(api.get_opt("missing").await.expect("get_opt").is_none());
    let deploys: Api<Deployment> = Api::namespaced(fake.client(), "prod");
    assert_eq!(
        status_of(deploys.get("nope").await.unwrap_err()).message,
        "deployments.apps \"nope\" not found"
    );
    // The raw body has Kubernetes' Status shape.
    let body = reqwest_like_get(&fake, "/api/v1/namespaces/prod/secrets/missing").await;
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["code"], 404);
}

/// A plain HTTP/1.1 GET over a socket, to see the body exactly as sent.
async fn reqwest_like_get(fake: &FakeKube, path: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = vec![];
    sock.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/json"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn create_conflicts_and_stale_updates() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let created = api
        .create(&PostParams::default(), &secret("db", &[("password", "a")]))
        .await
        .expect("create");
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    assert_eq!(created.type_.as_deref(), Some("Opaque"), "type defaults to Opaque");

    let again = status_of(
        api.create(&PostParams::default(), &secret("db", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let mut update = created.clone();
    update.data = Some(BTreeMap::from([("password".into(), ByteString(b"b".to_vec()))]));
    let updated = api
        .replace("db", &PostParams::default(), &update)
        .await
        .expect("replace with current rv");
    let rv2: u64 = updated.metadata.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(rv2 > rv1, "resourceVersion grows on every write");
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    // `update` still carries rv1: stale.
    let stale = status_of(api.replace("db", &PostParams::default(), &update).await.unwrap_err());
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    // A merge patch with a stale resourceVersion is refused too.
    let patch = json!({"metadata": {"resourceVersion": rv1.to_string()}, "data": {"x": "eA=="}});
    let stale = status_of(
        api.patch("db", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_err(),
    );
    assert_eq!(stale.code, 409);
    // The global counter is shared across kinds and namespaces.
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), "data");
    let cm = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some("c".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(cm.metadata.resource_version.as_deref().unwrap().parse::<u64>().unwrap() > rv2);
}

#[tokio::test]
async fn writes_that_change_nothing_are_no_ops() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let created = api
        .create(&PostParams::default(), &secret("s", &[("k", "v")]))
        .await
        .unwrap();
    let patch = json!({"data": {"k": "dg=="}});
    let after = api
        .patch("s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(after.metadata.resource_version, created.metadata.resource_version);

    // Server-side dry run answers with the result and stores nothing.
    let pp = PatchParams {
        dry_run: true,
        ..PatchParams::apply("m")
    };
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dry"}, "data": {"k": "dg=="}});
    let answered = api
        .patch("dry", &pp, &Patch::Apply(&body))
        .await
        .expect("dry-run apply");
    assert_eq!(answered.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none());
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    api.delete("s", &dp).await.expect("dry-run delete");
    assert!(api.get_opt("s").await.unwrap().is_some());
    assert_eq!(
        fake.resource_version(),
        created.metadata.resource_version.unwrap().parse::<u64>().unwrap()
    );
}

#[tokio::test]
async fn validation_refuses_bad_names_keys_and_immutable_changes() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let bad = status_of(
        api.create(&PostParams::default(), &secret("Bad_Name", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    let bad = status_of(
        api.create(&PostParams::default(), &secret("ok", &[("bad key", "v")]))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 422);
    assert!(bad.message.contains("data[bad key]"), "{}", bad.message);

    let mut s = secret("frozen", &[("k", "v")]);
    s.immutable = Some(true);
    api.create(&PostParams::default(), &s).await.unwrap();
    let patch = json!({"data": {"k": "dzI="}});
    let e = status_of(
        api.patch("frozen", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("immutable"), "{}", e.message);
    // Metadata of an immutable Secret can still change.
    let patch = json!({"metadata": {"labels": {"a": "b"}}});
    api.patch("frozen", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("labels on an immutable secret");

    let big = "x".repeat(1024 * 1024 + 1);
    let e = status_of(
        api.create(&PostParams::default(), &secret("big", &[("k", &big)]))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
}

#[tokio::test]
async fn server_side_apply_tracks_ownership_per_manager() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    // Someone creates the Secret with kubectl-like updates.
    api.create(
        &PostParams {
            field_manager: Some("kubectl-create".into()),
            ..Default::default()
        },
        &secret("shared", &[("THEIRS", "t")]),
    )
    .await
    .unwrap();

    let apply = |data: serde_json::Value, labels: serde_json::Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shared", "labels": labels}, "data": data});
    let pp = PatchParams::apply("secretsync-a");
    let s = api
        .patch(
            "shared",
            &pp,
            &Patch::Apply(apply(json!({"A1": "MQ==", "A2": "Mg=="}), json!({"a": "1"}))),
        )
        .await
        .unwrap();
    assert_eq!(keys(&s), ["A1", "A2", "THEIRS"]);
    let s = api
        .patch(
            "shared",
            &PatchParams::apply("secretsync-b"),
            &Patch::Apply(apply(json!({"B1": "Mw=="}), json!({"b": "1"}))),
        )
        .await
        .unwrap();
    assert_eq!(keys(&s), ["A1", "A2", "B1", "THEIRS"]);

    // Manager a stops applying A2 and its label: they go, everything else stays.
    let s = api
        .patch("shared", &pp, &Patch::Apply(apply(json!({"A1": "MQ=="}), json!({}))))
        .await
        .unwrap();
    assert_eq!(keys(&s), ["A1", "B1", "THEIRS"]);
    let labels = s.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("b").map(String::as_str), Some("1"));
    assert!(!labels.contains_key("a"));

    // managedFields says who owns what.
    let mf = s.metadata.managed_fields.clone().unwrap();
    let a = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("secretsync-a"))
        .unwrap();
    assert_eq!(a.operation.as_deref(), Some("Apply"));
    let f = &a.fields_v1.as_ref().unwrap().0;
    assert!(
        f.pointer("/f:data/f:A1").is_some() && f.pointer("/f:data/f:A2").is_none(),
        "{f}"
    );
    let creator = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("kubectl-create"))
        .unwrap();
    assert_eq!(creator.operation.as_deref(), Some("Update"));

    // Applying a field another manager owns with a different value conflicts without force.
    let e = status_of(
        api.patch(
            "shared",
            &pp,
            &Patch::Apply(apply(json!({"THEIRS": "eA=="}), json!({}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("kubectl-create"), "{}", e.message);
    // With force it takes the field over; the same value shared does not conflict.
    api.patch(
        "shared",
        &pp.clone().force(),
        &Patch::Apply(apply(json!({"THEIRS": "eA=="}), json!({}))),
    )
    .await
    .unwrap();
    api.patch(
        "shared",
        &PatchParams::apply("secretsync-b"),
        &Patch::Apply(apply(json!({"B1": "Mw==", "THEIRS": "eA=="}), json!({"b": "1"}))),
    )
    .await
    .expect("same value, no conflict");

    // A second identical apply is a no-op: no new resourceVersion.
    let before = api.get("shared").await.unwrap().metadata.resource_version;
    let again = api
        .patch(
            "shared",
            &PatchParams::apply("secretsync-b"),
            &Patch::Apply(apply(json!({"B1": "Mw==", "THEIRS": "eA=="}), json!({"b": "1"}))),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, before);

    // Apply creates a missing object.
    let created = api
        .patch(
            "fresh",
            &PatchParams::apply("m"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fresh"}, "stringData": {"k": "v"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(created.data.unwrap()["k"].0, b"v");
}

#[tokio::test]
async fn list_by_label_and_across_namespaces_and_delete() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    for (ns, name, app) in [("prod", "a", "api"), ("prod", "b", "worker"), ("data", "c", "api")] {
        let api: Api<ConfigMap> = Api::namespaced(fake.client(), ns);
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("app".into(), app.into())])),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let prod: Api<ConfigMap> = Api::namespaced(fake.client(), "prod");
    let names = |l: kube::api::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(prod.list(&ListParams::default().labels("app=api")).await.unwrap()),
        ["a"]
    );
    assert_eq!(
        names(prod.list(&ListParams::default().labels("app!=api")).await.unwrap()),
        ["b"]
    );
    let all: Api<ConfigMap> = Api::all(fake.client());
    assert_eq!(
        names(all.list(&ListParams::default().labels("app in (api)")).await.unwrap()),
        ["c", "a"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );

    let writes_before = fake.write_count();
    prod.delete("a", &DeleteParams::default()).await.expect("delete");
    assert_eq!(fake.write_count(), writes_before + 1);
    assert!(prod.get_opt("a").await.unwrap().is_none());
    assert!(status_of(prod.delete("a", &DeleteParams::default()).await.unwrap_err()).is_not_found());
    let log = fake.requests();
    let last = log.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str(), last.status),
        ("DELETE", "/api/v1/namespaces/prod/configmaps/a", 404)
    );
}

#[tokio::test]
async fn external_secrets_are_stored_generically() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let gvk = GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "externalsecrets");
    let api: Api<DynamicObject> = Api::namespaced_with(fake.client(), "prod", &ar);
    let es: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "backend-secrets-prod"},
        "spec": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": "gsm"}, "data": [{"secretKey": "DB_PASSWORD", "remoteRef": {"key": "tomoda-db-password"}}]},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &es).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.data["spec"]["data"][0]["secretKey"], "DB_PASSWORD");
    // Status goes through the status subresource only.
    let st = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}]}});
    api.patch_status("backend-secrets-prod", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    let got = api.get("backend-secrets-prod").await.unwrap();
    assert_eq!(got.data["status"]["conditions"][0]["reason"], "SecretSynced");
    assert_eq!(got.metadata.generation, Some(1), "status writes do not bump generation");
    let stores = Api::<DynamicObject>::all_with(
        fake.client(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("external-secrets.io", "v1", "ClusterSecretStore"),
            "clustersecretstores",
        ),
    );
    assert!(stores.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn watch_streams_events_from_a_resource_version() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let api: Api<Secret> = Api::namespaced(fake.client(), "prod");
    let first = api
        .create(&PostParams::default(), &secret("w1", &[("k", "v")]))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &secret("w2", &[])).await.unwrap();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    api.delete("w2", &DeleteParams::default()).await.unwrap();
    let mut seen = vec![];
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("event in time")
            .unwrap()
            .expect("open");
        seen.push(match ev {
            WatchEvent::Added(s) => format!("ADDED {}", s.metadata.name.unwrap()),
            WatchEvent::Modified(s) => format!("MODIFIED {}", s.metadata.name.unwrap()),
            WatchEvent::Deleted(s) => format!("DELETED {}", s.metadata.name.unwrap()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["ADDED w2", "MODIFIED w1", "DELETED w2"]);
}

#[tokio::test]
async fn runtime_watcher_sees_changes() {
    use kube::runtime::{WatchStreamExt, watcher};
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "prod");
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    api.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("seen".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("in time")
        .unwrap()
        .unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("seen"));
    // Streaming lists (sendInitialEvents) too.
    let mut streaming = watcher(api.clone(), watcher::Config::default().streaming_lists())
        .applied_objects()
        .boxed();
    let got = tokio::time::timeout(Duration::from_secs(10), streaming.try_next())
        .await
        .expect("in time")
        .unwrap()
        .unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("seen"));
}

#[tokio::test]
async fn leases_round_trip() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let api: Api<Lease> = Api::namespaced(fake.client(), "secretsync");
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    api.replace("leader", &PostParams::default(), &next).await.unwrap();
    // A second contender with the old resourceVersion loses.
    let e = status_of(api.replace("leader", &PostParams::default(), &next).await.unwrap_err());
    assert_eq!(e.code, 409);
}

#[tokio::test]
async fn kubeconfig_points_at_the_fake() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data", "secretsync"]);
    let dir = std::env::temp_dir().join(format!("fake-kube-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    std::fs::write(&path, fake.kubeconfig_yaml()).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<Secret> = Api::default_namespaced(client);
    assert!(api.list(&ListParams::default()).await.unwrap().items.is_empty());
    assert_eq!(
        fake.requests().last().unwrap().path,
        "/api/v1/namespaces/default/secrets"
    );
    std::fs::remove_dir_all(dir).ok();
}
