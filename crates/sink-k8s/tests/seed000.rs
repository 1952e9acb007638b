//! Seed 000's Postgres credential coupling, end to end through the real engine, KubeSink
//! and KubeRestarter against the fake API server: one DB password feeds
//! `prod/backend-secrets-prod` (DB_PASSWORD) and `data/postgres-prod-credentials-eso`
//! (password). Changing it updates both Secrets and restarts exactly the workloads that
//! read them, once each; a cycle with nothing changed sends no write at all.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use secretsync_core::engine::{CycleOptions, Engine};
use secretsync_core::manifest::load_str;
use secretsync_core::registry::Registry;
use secretsync_core::{ConsumerRef, RestartRequest, Restarter, SecretValue, TargetKind, TargetRef, WriteRequest};
use secretsync_fakes::kube::{FakeKube, RequestRecord};
use secretsync_k8s::{KubeRestarter, KubeSink, RESTARTED_AT_ANNOTATION};
use serde_json::{Value, json};

const MANIFESTS: &str = r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: gsm-tomoda
spec:
  provider:
    fake:
      data:
        - key: tomoda-db-password
          value: first-password
        - key: tomoda-jwt-secret
          value: jwt-value
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: backend-secrets-prod
  namespace: prod
spec:
  refreshInterval: 1h
  secretStoreRef:
    kind: ClusterSecretStore
    name: gsm-tomoda
  target:
    name: backend-secrets-prod
    creationPolicy: Owner
  data:
    - secretKey: DB_PASSWORD
      remoteRef:
        key: tomoda-db-password
    - secretKey: JWT_SECRET
      remoteRef:
        key: tomoda-jwt-secret
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: postgres-prod-credentials-eso
  namespace: data
spec:
  refreshInterval: 1h
  secretStoreRef:
    kind: ClusterSecretStore
    name: gsm-tomoda
  target:
    name: postgres-prod-credentials-eso
  data:
    - secretKey: password
      remoteRef:
        key: tomoda-db-password
"#;

fn pod_template(app: &str, spec: Value) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": spec})
}

fn workload(name: &str, spec: Value) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "serviceName": name, "template": pod_template(name, spec)},
    })
}

async fn create_workloads(fake: &FakeKube) {
    let c = fake.client();
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "prod");
    let pp = PostParams::default();
    // envFrom secretRef.
    let api = workload(
        "tomoda-api",
        json!({"containers": [{"name": "api", "image": "tomoda/api", "envFrom": [{"secretRef": {"name": "backend-secrets-prod"}}, {"configMapRef": {"name": "backend-config-prod"}}]}]}),
    );
    deploys
        .create(&pp, &serde_json::from_value(api).unwrap())
        .await
        .unwrap();
    // env valueFrom secretKeyRef, in an init container.
    let worker = workload(
        "tomoda-async",
        json!({
            "initContainers": [{"name": "migrate", "image": "tomoda/api", "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "backend-secrets-prod", "key": "DB_PASSWORD"}}}]}],
            "containers": [{"name": "worker", "image": "tomoda/api"}],
        }),
    );
    deploys
        .create(&pp, &serde_json::from_value(worker).unwrap())
        .await
        .unwrap();
    // Reads other things only: a Secret of another name and a ConfigMap named like our Secret.
    let unrelated = workload(
        "tomoda-web",
        json!({
            "containers": [{"name": "web", "image": "tomoda/web", "envFrom": [{"configMapRef": {"name": "backend-secrets-prod"}}]}],
            "volumes": [{"name": "p", "projected": {"sources": [{"secret": {"name": "s3-uploader-secret"}}]}}],
        }),
    );
    deploys
        .create(&pp, &serde_json::from_value(unrelated).unwrap())
        .await
        .unwrap();
    let daemons: Api<DaemonSet> = Api::namespaced(c.clone(), "prod");
    let agent = workload(
        "log-agent",
        json!({"containers": [{"name": "agent", "image": "fluent-bit"}]}),
    );
    daemons
        .create(&pp, &serde_json::from_value(agent).unwrap())
        .await
        .unwrap();
    // CNPG-style Postgres mounting its credentials.
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), "data");
    let pg = workload(
        "postgres-prod",
        json!({
            "containers": [{"name": "postgres", "image": "postgres:16", "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds"}]}],
            "volumes": [{"name": "creds", "secret": {"secretName": "postgres-prod-credentials-eso"}}],
        }),
    );
    sts.create(&pp, &serde_json::from_value(pg).unwrap()).await.unwrap();
}

fn restarted_at(fake: &FakeKube, api_version: &str, plural: &str, ns: &str, name: &str) -> Option<String> {
    let obj = fake
        .object(api_version, plural, Some(ns), name)
        .expect("workload exists");
    obj.pointer(&format!(
        "/spec/template/metadata/annotations/{}",
        RESTARTED_AT_ANNOTATION.replace('/', "~1")
    ))
    .and_then(Value::as_str)
    .map(str::to_string)
}

fn secret_value(fake: &FakeKube, ns: &str, name: &str, key: &str) -> String {
    let obj = fake.object("v1", "secrets", Some(ns), name).expect("secret exists");
    let b64 = obj["data"][key].as_str().expect("key present");
    use base64::Engine as _;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

fn consumer(kind: &str, ns: &str, name: &str) -> ConsumerRef {
    ConsumerRef {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

fn workload_patches(writes: &[RequestRecord]) -> Vec<String> {
    writes
        .iter()
        .filter(|r| r.path.starts_with("/apis/apps/"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn db_password_change_updates_both_secrets_and_restarts_exactly_its_readers() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data"]);
    create_workloads(&fake).await;

    let manifests = load_str(MANIFESTS, "seed000.yaml")
        .into_result()
        .expect("manifests load");
    let (stores, errors) = Registry::with_builtin().build_all(&manifests).await;
    assert!(errors.is_empty(), "{errors:?}");
    let store = stores.values().next().unwrap().clone();
    let writer = store.writer.clone().expect("the fake store is writable");
    let client = fake.client();
    let engine = Engine::new(stores, Arc::new(KubeSink::new(client.clone())))
        .with_restarter(Arc::new(KubeRestarter::new(client.clone())));

    // Cycle 1: both Secrets are created; creation restarts nothing.
    fake.clear_requests();
    let r1 = engine.run(&manifests, &CycleOptions::default()).await;
    assert!(r1.all_synced(), "{:?}", r1.specs);
    assert_eq!(
        secret_value(&fake, "prod", "backend-secrets-prod", "DB_PASSWORD"),
        "first-password"
    );
    assert_eq!(
        secret_value(&fake, "data", "postgres-prod-credentials-eso", "password"),
        "first-password"
    );
    assert!(r1.restarts.is_empty(), "{:?}", r1.restarts);
    let cycle1_writes = fake.write_count();
    assert_eq!(
        cycle1_writes,
        2,
        "one server-side apply per Secret: {:?}",
        fake.writes()
    );

    // Cycle 2: nothing changed: zero write requests at the API server.
    fake.clear_requests();
    let r2 = engine.run(&manifests, &CycleOptions::default()).await;
    assert!(r2.all_synced());
    assert_eq!(fake.write_count(), 0, "{:?}", fake.writes());
    assert!(r2.restarts.is_empty());

    // Rotate the DB password at the store.
    writer
        .put(&WriteRequest::new(
            "tomoda-db-password",
            SecretValue::from("second-password"),
        ))
        .await
        .expect("rotate");
    fake.clear_requests();
    let r3 = engine.run(&manifests, &CycleOptions::default()).await;
    assert!(r3.all_synced(), "{:?}", r3.specs);
    assert!(r3.restart_errors.is_empty(), "{:?}", r3.restart_errors);
    assert_eq!(
        secret_value(&fake, "prod", "backend-secrets-prod", "DB_PASSWORD"),
        "second-password"
    );
    assert_eq!(
        secret_value(&fake, "prod", "backend-secrets-prod", "JWT_SECRET"),
        "jwt-value"
    );
    assert_eq!(
        secret_value(&fake, "data", "postgres-prod-credentials-eso", "password"),
        "second-password"
    );
    let mut restarts = r3.restarts.clone();
    restarts.sort();
    assert_eq!(
        restarts,
        [
            consumer("Deployment", "prod", "tomoda-api"),
            consumer("Deployment", "prod", "tomoda-async"),
            consumer("StatefulSet", "data", "postgres-prod")
        ]
    );
    let writes = fake.writes();
    let mut patches = workload_patches(&writes);
    patches.sort();
    assert_eq!(
        patches,
        [
            "PATCH /apis/apps/v1/namespaces/data/statefulsets/postgres-prod",
            "PATCH /apis/apps/v1/namespaces/prod/deployments/tomoda-api",
            "PATCH /apis/apps/v1/namespaces/prod/deployments/tomoda-async",
        ],
        "each reader restarted once"
    );
    assert_eq!(writes.len(), 2 + 3, "two Secret applies and three restarts: {writes:?}");
    assert!(
        writes
            .iter()
            .filter(|r| r.path.starts_with("/apis/apps/"))
            .all(|r| r.content_type.as_deref() == Some("application/strategic-merge-patch+json"))
    );
    for (plural, ns, name) in [
        ("deployments", "prod", "tomoda-api"),
        ("deployments", "prod", "tomoda-async"),
        ("statefulsets", "data", "postgres-prod"),
    ] {
        let at = restarted_at(&fake, "apps/v1", plural, ns, name).unwrap_or_else(|| panic!("{name} restarted"));
        assert!(
            at.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && at.ends_with('Z'),
            "RFC 3339: {at}"
        );
    }
    assert_eq!(
        restarted_at(&fake, "apps/v1", "deployments", "prod", "tomoda-web"),
        None,
        "reads a ConfigMap of that name, not the Secret"
    );
    assert_eq!(restarted_at(&fake, "apps/v1", "daemonsets", "prod", "log-agent"), None);

    // Cycle 4: settled again.
    fake.clear_requests();
    let r4 = engine.run(&manifests, &CycleOptions::default()).await;
    assert_eq!(fake.write_count(), 0, "{:?}", fake.writes());
    assert!(r4.restarts.is_empty());

    // Drift: someone edits the Secret by hand; the next cycle repairs it with one write.
    let api: Api<Secret> = Api::namespaced(client.clone(), "prod");
    api.patch(
        "backend-secrets-prod",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"data": {"DB_PASSWORD": "aGFuZC1lZGl0ZWQ="}})),
    )
    .await
    .unwrap();
    fake.clear_requests();
    let r5 = engine.run(&manifests, &CycleOptions::default()).await;
    assert!(r5.all_synced());
    assert_eq!(
        secret_value(&fake, "prod", "backend-secrets-prod", "DB_PASSWORD"),
        "second-password"
    );
    let secret_writes: Vec<_> = fake
        .writes()
        .into_iter()
        .filter(|r| r.path.contains("/secrets/"))
        .collect();
    assert_eq!(secret_writes.len(), 1, "{secret_writes:?}");
}

#[tokio::test]
async fn restarter_contract() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["prod", "data"]);
    create_workloads(&fake).await;
    let restarter = KubeRestarter::new(fake.client());

    // Nothing changed: nothing restarted, no request.
    fake.clear_requests();
    assert!(restarter.restart(&[]).await.unwrap().is_empty());
    assert_eq!(fake.request_count(), 0);

    // A workload reading two changed targets, and also declared, restarts once.
    let prod = TargetRef::secret("prod", "backend-secrets-prod");
    let config = TargetRef {
        kind: TargetKind::ConfigMap,
        namespace: "prod".into(),
        name: "backend-config-prod".into(),
    };
    let declared = vec![
        consumer("Deployment", "prod", "tomoda-api"),
        consumer("DaemonSet", "prod", "log-agent"),
        consumer("Deployment", "prod", "gone"),
    ];
    let got = restarter
        .restart(&[
            RestartRequest {
                target: prod.clone(),
                declared: declared.clone(),
            },
            RestartRequest {
                target: config.clone(),
                declared: vec![],
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        got,
        [
            consumer("DaemonSet", "prod", "log-agent"),
            consumer("Deployment", "prod", "tomoda-api"),
            consumer("Deployment", "prod", "tomoda-async")
        ],
        "declared + discovered, each once; a declared consumer that does not exist is skipped"
    );
    let patches = workload_patches(&fake.writes());
    assert_eq!(
        patches.iter().filter(|p| p.ends_with("/tomoda-api")).count(),
        1,
        "{patches:?}"
    );
    assert_eq!(
        patches.len(),
        4,
        "three restarts and one 404 for the missing one: {patches:?}"
    );

    // A ConfigMap target restarts its configMap readers only.
    fake.clear_requests();
    let cm_named_like_secret = TargetRef {
        kind: TargetKind::ConfigMap,
        namespace: "prod".into(),
        name: "backend-secrets-prod".into(),
    };
    let got = restarter
        .restart(&[RestartRequest {
            target: cm_named_like_secret,
            declared: vec![],
        }])
        .await
        .unwrap();
    assert_eq!(got, [consumer("Deployment", "prod", "tomoda-web")]);

    // Projected volume sources count.
    let got = restarter
        .restart(&[RestartRequest {
            target: TargetRef::secret("prod", "s3-uploader-secret"),
            declared: vec![],
        }])
        .await
        .unwrap();
    assert_eq!(got, [consumer("Deployment", "prod", "tomoda-web")]);

    // Discovery off: declared only.
    let got = KubeRestarter::new(fake.client())
        .with_discovery(false)
        .restart(&[RestartRequest {
            target: prod,
            declared: vec![],
        }])
        .await
        .unwrap();
    assert!(got.is_empty());
}
