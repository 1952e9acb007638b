//! The operator's other direction and references, against the fake API server through real
//! kube clients: PushSecrets pushed to AWS Secrets Manager (moto's real server, calls counted
//! at moto's recorder), ESO's PushSecret status, `deletionPolicy: Delete`, generators with
//! `secretsync.io/generate: if-absent`, and `templateFrom` ConfigMaps read from the cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use secretsync_aws::{AwsFactory, AwsSecretsManager, AwsSecretsManagerBuilder};
use secretsync_core::manifest::Store;
use secretsync_core::registry::{BuiltStore, CredentialResolver, Registry, SourceFactory};
use secretsync_core::sources::MemorySource;
use secretsync_core::testkit::CountingSource;
use secretsync_core::{RemoteKey, SecretSource};
use secretsync_fakes::kube::{FakeKube, RequestRecord};
use secretsync_fakes::moto::{Moto, recording};
use secretsync_k8s::KubeCredentials;
use secretsync_operator::{Controller, ControllerConfig, ControllerHandle, LeaseConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------------
// Harness

/// The `fake` provider, backed by one memory store the test holds.
#[derive(Debug, Clone)]
struct SharedFake(Arc<CountingSource<MemorySource>>);

#[async_trait]
impl SourceFactory for SharedFake {
    fn provider(&self) -> &'static str {
        "fake"
    }
    fn validate(&self, _store: &Store) -> Vec<secretsync_core::Error> {
        vec![]
    }
    async fn build(&self, _store: &Store, _c: Arc<dyn CredentialResolver>) -> secretsync_core::Result<BuiltStore> {
        Ok(BuiltStore {
            source: self.0.clone(),
            writer: None,
        })
    }
}

struct Running {
    handle: ControllerHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(client: kube::Client, registry: Registry) -> Self {
        Self::start_with(client, registry, config("push-test"))
    }

    fn start_with(client: kube::Client, registry: Registry, cfg: ControllerConfig) -> Self {
        let c = Controller::new(client, registry, cfg).unwrap();
        let handle = c.handle();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            c.run(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            handle,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

fn config(identity: &str) -> ControllerConfig {
    ControllerConfig {
        identity: identity.to_string(),
        restart_consumers: false,
        // The tests refresh every second: a window below that (the default 2s takes every
        // spec due within it, so a 1s interval would run back to back).
        periodic_window: Duration::from_millis(200),
        ..ControllerConfig::default()
    }
}

/// Polls `f` every 20 ms until it is `Some`, failing after `limit`.
async fn eventually<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn api(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn push_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    api(
        client,
        "external-secrets.io",
        "v1alpha1",
        "PushSecret",
        "pushsecrets",
        Some(ns),
    )
}

fn es_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    api(
        client,
        "external-secrets.io",
        "v1",
        "ExternalSecret",
        "externalsecrets",
        Some(ns),
    )
}

async fn create(api: &Api<DynamicObject>, obj: Value) {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

async fn create_secret(client: &kube::Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let string_data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": string_data,
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

async fn secret_value(client: &kube::Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()?;
    let v = s.data?.get(key)?.0.clone();
    Some(String::from_utf8(v).unwrap())
}

/// The Ready condition of an object: (status, reason, message).
async fn ready(api: &Api<DynamicObject>, name: &str) -> Option<(String, String, String)> {
    let obj = api.get_opt(name).await.unwrap()?;
    let c = obj
        .data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

fn status_patches(log: &[RequestRecord], plural: &str, ns: &str, name: &str) -> usize {
    let group = if plural == "pushsecrets" { "v1alpha1" } else { "v1" };
    let path = format!("/apis/external-secrets.io/{group}/namespaces/{ns}/{plural}/{name}/status");
    log.iter().filter(|r| r.is_write() && r.path == path).count()
}

fn prefix() -> String {
    format!("op-push-{:08x}-", rand::random::<u32>())
}

/// Writes of our keys that moto recorded so far.
fn moto_writes(prefix: &str) -> usize {
    recording()
        .iter()
        .filter(|r| matches!(r.op.as_str(), "CreateSecret" | "PutSecretValue" | "UpdateSecret"))
        .filter(|r| r.body.contains(prefix))
        .count()
}

/// Reads (compare first) of our keys that moto recorded so far.
fn moto_reads(prefix: &str) -> usize {
    recording()
        .iter()
        .filter(|r| {
            matches!(
                r.op.as_str(),
                "DescribeSecret" | "GetSecretValue" | "BatchGetSecretValue"
            )
        })
        .filter(|r| r.body.contains(prefix))
        .count()
}

async fn moto_admin() -> AwsSecretsManager {
    AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(Moto::shared().url())
        .with_credentials("testing", "testing".into())
        .build()
        .await
        .expect("an AWS client on moto")
}

async fn moto_value(admin: &AwsSecretsManager, key: &str) -> Option<String> {
    admin
        .get(&RemoteKey::new(key))
        .await
        .ok()
        .map(|f| f.value.expose_str().unwrap_or_default().to_string())
}

/// The fake kube with namespace `app`, the AWS credentials Secret, a ClusterSecretStore
/// `aws` on moto, and a registry that reads credentials from the cluster.
async fn aws_world() -> (FakeKube, Registry) {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["app"]);
    let client = fake.client();
    create_secret(
        &client,
        "app",
        "aws-creds",
        &[("access-key", "testing"), ("secret-access-key", "testing")],
    )
    .await;
    create(
        &api(
            &client,
            "external-secrets.io",
            "v1",
            "ClusterSecretStore",
            "clustersecretstores",
            None,
        ),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": "aws"},
            "spec": {"provider": {"aws": {
                "service": "SecretsManager", "region": "us-east-1", "endpoint": Moto::shared().url(),
                "auth": {"secretRef": {
                    "accessKeyIDSecretRef": {"name": "aws-creds", "key": "access-key", "namespace": "app"},
                    "secretAccessKeySecretRef": {"name": "aws-creds", "key": "secret-access-key", "namespace": "app"},
                }},
            }}},
        }),
    )
    .await;
    let mut registry = Registry::with_builtin();
    registry.register(Arc::new(AwsFactory));
    let registry = registry.with_credentials(Arc::new(KubeCredentials::new(client)));
    (fake, registry)
}

fn push_secret(name: &str, source: &str, interval: &str, extra: Value, data: &[(&str, &str)]) -> Value {
    let data: Vec<Value> = data
        .iter()
        .map(|(k, remote)| json!({"match": {"secretKey": k, "remoteRef": {"remoteKey": remote}}}))
        .collect();
    let mut spec = json!({
        "refreshInterval": interval,
        "secretStoreRefs": [{"name": "aws", "kind": "ClusterSecretStore"}],
        "selector": {"secret": {"name": source}},
        "data": data,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    json!({
        "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
        "metadata": {"name": name, "namespace": "app"},
        "spec": spec,
    })
}

// ---------------------------------------------------------------------------------------
// PushSecret

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_secret_pushes_once_then_only_what_changed_with_eso_status() {
    let (fake, registry) = aws_world().await;
    let client = fake.client();
    let p = prefix();
    let (k_user, k_pass) = (format!("{p}db-user"), format!("{p}db-password"));
    create_secret(&client, "app", "db", &[("user", "alice"), ("password", "first-pass")]).await;
    create(
        &push_api(&client, "app"),
        push_secret("db", "db", "2s", json!({}), &[("user", &k_user), ("password", &k_pass)]),
    )
    .await;
    let run = Running::start(client.clone(), registry);
    let admin = moto_admin().await;

    // 1. Pushed once: two secrets created at moto, Ready as ESO writes it.
    let pushes = push_api(&client, "app");
    eventually(Duration::from_secs(30), "PushSecret Ready", async || {
        ready(&pushes, "db").await.filter(|r| r.0 == "True")
    })
    .await;
    assert_eq!(moto_writes(&p), 2, "one CreateSecret per remote key");
    assert_eq!(
        status_patches(&fake.requests(), "pushsecrets", "app", "db"),
        1,
        "one status write for the first push (no Ready=False while the source's watch lists)"
    );
    assert_eq!(moto_value(&admin, &k_pass).await.as_deref(), Some("first-pass"));
    assert_eq!(moto_value(&admin, &k_user).await.as_deref(), Some("alice"));
    let obj = pushes.get("db").await.unwrap();
    let st = &obj.data["status"];
    let cond = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["reason"], "Synced");
    assert_eq!(cond["message"], "PushSecret synced successfully");
    assert!(cond["lastTransitionTime"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(st["refreshTime"].as_str().is_some(), "{st}");
    assert!(st["syncedResourceVersion"].as_str().is_some(), "{st}");
    assert_eq!(
        st["syncedPushSecrets"]["ClusterSecretStore/aws"][&k_pass],
        json!({"match": {"secretKey": "password", "remoteRef": {"remoteKey": k_pass}}}),
        "{st}"
    );
    assert_eq!(
        st["syncedPushSecrets"]["ClusterSecretStore/aws"]
            .as_object()
            .unwrap()
            .len(),
        2,
        "{st}"
    );

    // 2. Refresh rounds (every 2s): the remote is compared (read), nothing is written at
    // moto and no status is patched.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (writes, reads) = (moto_writes(&p), moto_reads(&p));
    fake.clear_requests();
    let log_before = fake.requests();
    assert!(log_before.is_empty());
    eventually(
        Duration::from_secs(20),
        "two refresh rounds (reads at moto)",
        async || (moto_reads(&p) >= reads + 4).then_some(()),
    )
    .await;
    assert_eq!(moto_writes(&p), writes, "an unchanged round writes nothing at moto");
    let log = fake.requests();
    assert_eq!(
        status_patches(&log, "pushsecrets", "app", "db"),
        0,
        "an unchanged round patches no status: {:?}",
        log.iter().filter(|r| r.is_write()).collect::<Vec<_>>()
    );
    assert!(
        !log.iter()
            .any(|r| r.path.ends_with("/secrets/db") && r.query.is_empty()),
        "the source Secret comes from the watch, never a GET: {log:?}"
    );

    // 3. Editing the source Secret pushes again within seconds: exactly one write.
    let t0 = Instant::now();
    Api::<Secret>::namespaced(client.clone(), "app")
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "second-pass"}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the new value at moto", async || {
        (moto_value(&admin, &k_pass).await.as_deref() == Some("second-pass")).then_some(())
    })
    .await;
    eprintln!("source Secret edit → new value at moto: {:?}", t0.elapsed());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "pushed within seconds: {:?}",
        t0.elapsed()
    );
    // A refresh round later, still exactly one write.
    let reads = moto_reads(&p);
    eventually(Duration::from_secs(20), "another refresh round", async || {
        (moto_reads(&p) >= reads + 2).then_some(())
    })
    .await;
    assert_eq!(
        moto_writes(&p) - writes,
        1,
        "exactly one PutSecretValue for one edited key"
    );
    assert_eq!(moto_value(&admin, &k_user).await.as_deref(), Some("alice"));

    // A spec change (a third key, under a property of a JSON secret) pushes at once.
    let k_json = format!("{p}db-json");
    let mut obj = pushes.get("db").await.unwrap();
    let mut data = obj.data["spec"]["data"].as_array().unwrap().clone();
    data.push(json!({"match": {"secretKey": "user", "remoteRef": {"remoteKey": k_json, "property": "username"}}}));
    obj.data["spec"]["data"] = json!(data);
    obj.data.as_object_mut().unwrap().remove("status");
    pushes.replace("db", &PostParams::default(), &obj).await.unwrap();
    eventually(Duration::from_secs(10), "the JSON secret at moto", async || {
        (moto_value(&admin, &k_json).await.as_deref() == Some(r#"{"username":"alice"}"#)).then_some(())
    })
    .await;
    let st = eventually(
        Duration::from_secs(10),
        "syncedPushSecrets with the new key",
        async || {
            let o = pushes.get("db").await.unwrap();
            let n = o.data["status"]["syncedPushSecrets"]["ClusterSecretStore/aws"]
                .as_object()
                .map(|m| m.len());
            (n == Some(3)).then_some(o.data["status"].clone())
        },
    )
    .await;
    assert!(
        st["syncedPushSecrets"]["ClusterSecretStore/aws"][format!("{k_json}/username")].is_object(),
        "{st}"
    );

    // 4. A missing source: Ready=False, Errored, ESO's message naming the Secret.
    create(
        &pushes,
        push_secret("orphan", "nope", "1h", json!({}), &[("x", &format!("{p}x"))]),
    )
    .await;
    let r = eventually(Duration::from_secs(20), "Ready=False", async || {
        ready(&pushes, "orphan").await.filter(|r| r.0 == "False")
    })
    .await;
    assert_eq!(r.1, "Errored");
    assert!(
        r.2.contains("could not get source secret") && r.2.contains("Secret app/nope"),
        "{}",
        r.2
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_delete_deletes_only_managed_remote_secrets() {
    let (fake, registry) = aws_world().await;
    let client = fake.client();
    let p = prefix();
    let admin = moto_admin().await;
    let (managed, unmanaged) = (format!("{p}managed"), format!("{p}hand-made"));
    // A secret someone made by hand, without our tag.
    admin
        .sdk_client()
        .create_secret()
        .name(&unmanaged)
        .secret_string("hand-made-value")
        .send()
        .await
        .expect("create_secret");
    create_secret(&client, "app", "src", &[("a", "pushed-value"), ("b", "other")]).await;
    create(
        &push_api(&client, "app"),
        push_secret(
            "gone",
            "src",
            "1h",
            json!({"deletionPolicy": "Delete", "updatePolicy": "IfNotExists"}),
            &[("a", &managed), ("b", &unmanaged)],
        ),
    )
    .await;
    let run = Running::start(client.clone(), registry);
    let pushes = push_api(&client, "app");
    eventually(Duration::from_secs(30), "PushSecret Ready", async || {
        ready(&pushes, "gone").await.filter(|r| r.0 == "True")
    })
    .await;
    assert_eq!(moto_value(&admin, &managed).await.as_deref(), Some("pushed-value"));
    assert_eq!(
        moto_value(&admin, &unmanaged).await.as_deref(),
        Some("hand-made-value"),
        "IfNotExists leaves an existing remote value alone"
    );
    // ESO's finalizer, and both keys in syncedPushSecrets.
    let obj = eventually(Duration::from_secs(10), "the finalizer", async || {
        let o = pushes.get("gone").await.unwrap();
        o.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == "pushsecret.externalsecrets.io/finalizer"))
            .then_some(o)
    })
    .await;
    assert_eq!(
        obj.data["status"]["syncedPushSecrets"]["ClusterSecretStore/aws"]
            .as_object()
            .map(|m| m.len()),
        Some(2)
    );

    // Deleted (the fake does not hold objects for finalizers: the delete event cleans up).
    pushes.delete("gone", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(20), "the managed secret deleted", async || {
        moto_value(&admin, &managed).await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        moto_value(&admin, &unmanaged).await.as_deref(),
        Some("hand-made-value"),
        "an unmanaged remote secret survives"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_pushes_and_writes_push_status() {
    let (fake, registry) = aws_world().await;
    let client = fake.client();
    let p = prefix();
    let key = format!("{p}token");
    create_secret(&client, "app", "tok", &[("token", "t-1")]).await;
    create(
        &push_api(&client, "app"),
        push_secret("tok", "tok", "1h", json!({}), &[("token", &key)]),
    )
    .await;
    let ha = |id: &str| ControllerConfig {
        lease: Some(LeaseConfig::new("push-lease", "kube-system", Duration::from_secs(3))),
        ..config(id)
    };
    let a = Running::start_with(fake.named_client("a"), registry.clone(), ha("a"));
    let b = Running::start_with(fake.named_client("b"), registry, ha("b"));
    let pushes = push_api(&client, "app");
    eventually(Duration::from_secs(30), "PushSecret Ready", async || {
        ready(&pushes, "tok").await.filter(|r| r.0 == "True")
    })
    .await;
    let admin = moto_admin().await;
    // An edit while both replicas watch: still one write per change.
    Api::<Secret>::namespaced(client.clone(), "app")
        .patch(
            "tok",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "t-2"}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the edit at moto", async || {
        (moto_value(&admin, &key).await.as_deref() == Some("t-2")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(moto_writes(&p), 2, "one create and one update, whatever the replicas");
    let leader = if a.handle.is_leader() { "a" } else { "b" };
    assert!(a.handle.is_leader() != b.handle.is_leader(), "one leader");
    let writers: std::collections::BTreeSet<String> = fake
        .requests()
        .iter()
        .filter(|r| r.is_write() && r.path.contains("/pushsecrets/"))
        .filter_map(|r| r.client.clone())
        .collect();
    assert_eq!(
        writers,
        std::collections::BTreeSet::from([leader.to_string()]),
        "only the leader writes PushSecret status"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_push_secret_makes_push_secrets_in_selected_namespaces() {
    use k8s_openapi::api::core::v1::Namespace;
    let (fake, registry) = aws_world().await;
    let client = fake.client();
    let p = prefix();
    let nss = Api::<Namespace>::all(client.clone());
    for (name, team) in [("t1", "a"), ("t2", "b")] {
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"team": team}},
        }))
        .unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
    }
    create_secret(&client, "t1", "src", &[("k", "from-t1")]).await;
    create_secret(&client, "t2", "src", &[("k", "from-t2")]).await;
    let k1 = format!("{p}team");
    let cpss = api(
        &client,
        "external-secrets.io",
        "v1alpha1",
        "ClusterPushSecret",
        "clusterpushsecrets",
        None,
    );
    create(
        &cpss,
        json!({
            "apiVersion": "external-secrets.io/v1alpha1", "kind": "ClusterPushSecret",
            "metadata": {"name": "to-k1"},
            "spec": {
                "refreshTime": "1s",
                "pushSecretName": "team-push",
                "namespaceSelectors": [{"matchLabels": {"team": "a"}}],
                "pushSecretMetadata": {"labels": {"made-by": "to-k1"}},
                "pushSecretSpec": {
                    "refreshInterval": "1h",
                    "secretStoreRefs": [{"name": "aws", "kind": "ClusterSecretStore"}],
                    "selector": {"secret": {"name": "src"}},
                    "data": [{"match": {"secretKey": "k", "remoteRef": {"remoteKey": k1}}}],
                },
            },
        }),
    )
    .await;
    let run = Running::start(client.clone(), registry);
    let admin = moto_admin().await;
    // Selected: t1 (team a). Its PushSecret is made, owned, and pushes.
    let ps_t1 = push_api(&client, "t1");
    eventually(Duration::from_secs(30), "the PushSecret in t1 Ready", async || {
        ready(&ps_t1, "team-push").await.filter(|r| r.0 == "True")
    })
    .await;
    let obj = ps_t1.get("team-push").await.unwrap();
    let owner = &obj.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ClusterPushSecret", "to-k1")
    );
    assert_eq!(obj.metadata.labels.as_ref().unwrap()["made-by"], "to-k1");
    assert_eq!(moto_value(&admin, &k1).await.as_deref(), Some("from-t1"));
    assert!(push_api(&client, "t2").get_opt("team-push").await.unwrap().is_none());
    let st = eventually(Duration::from_secs(10), "ClusterPushSecret status", async || {
        let o = cpss.get("to-k1").await.unwrap();
        (o.data["status"]["provisionedNamespaces"] == json!(["t1"])).then_some(o.data["status"].clone())
    })
    .await;
    assert_eq!(st["pushSecretName"], "team-push");
    assert_eq!(st["conditions"][0]["type"], "Ready");
    assert_eq!(st["conditions"][0]["status"], "True");

    // An unchanged round: no request for PushSecrets or the ClusterPushSecret.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.clear_requests();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let touched: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("pushsecrets") && !r.query.contains("watch"))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");

    // t2 is relabelled team a, t1 team c: the PushSecret moves.
    nss.patch(
        "t2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await
    .unwrap();
    nss.patch(
        "t1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "c"}}})),
    )
    .await
    .unwrap();
    let ps_t2 = push_api(&client, "t2");
    eventually(Duration::from_secs(15), "the PushSecret in t2 Ready", async || {
        ready(&ps_t2, "team-push").await.filter(|r| r.0 == "True")
    })
    .await;
    eventually(Duration::from_secs(15), "the PushSecret in t1 gone", async || {
        ps_t1.get_opt("team-push").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(moto_value(&admin, &k1).await.as_deref(), Some("from-t2"));

    // Someone deletes it: it comes back.
    ps_t2.delete("team-push", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(15), "the PushSecret in t2 back", async || {
        ps_t2.get_opt("team-push").await.unwrap().map(|_| ())
    })
    .await;

    // A PushSecret of that name not owned by it: left alone, the namespace failed.
    let t3: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "t3", "labels": {"team": "x"}},
    }))
    .unwrap();
    nss.create(&PostParams::default(), &t3).await.unwrap();
    let mut foreign = push_secret("team-push", "nope", "1h", json!({}), &[("x", &format!("{p}x"))]);
    foreign["metadata"]["namespace"] = json!("t3");
    create(&push_api(&client, "t3"), foreign).await;
    nss.patch(
        "t3",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await
    .unwrap();
    let st = eventually(Duration::from_secs(15), "t3 failed", async || {
        let o = cpss.get("to-k1").await.unwrap();
        (o.data["status"]["failedNamespaces"][0]["namespace"] == "t3").then_some(o.data["status"].clone())
    })
    .await;
    assert_eq!(st["conditions"][0]["status"], "False");
    assert!(
        push_api(&client, "t3")
            .get("team-push")
            .await
            .unwrap()
            .metadata
            .owner_references
            .is_none(),
        "someone else's PushSecret is untouched"
    );

    // The ClusterPushSecret is deleted: its PushSecrets go, the other one stays.
    cpss.delete("to-k1", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(15), "the PushSecret in t2 deleted", async || {
        ps_t2.get_opt("team-push").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(push_api(&client, "t3").get_opt("team-push").await.unwrap().is_some());
    run.stop().await;
}

// ---------------------------------------------------------------------------------------
// Generators and templateFrom

fn fake_world() -> (Arc<CountingSource<MemorySource>>, Registry) {
    let source = Arc::new(CountingSource::new(MemorySource::new("fake")));
    let mut registry = Registry::with_builtin();
    registry.register(Arc::new(SharedFake(source.clone())));
    (source, registry)
}

async fn fake_store(client: &kube::Client) {
    create(
        &api(
            client,
            "external-secrets.io",
            "v1",
            "ClusterSecretStore",
            "clustersecretstores",
            None,
        ),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": "fake"},
            "spec": {"provider": {"fake": {"data": []}}},
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_if_absent_generates_once_and_waits_for_a_missing_generator() {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["app"]);
    let client = fake.client();
    let (_source, registry) = fake_world();
    fake_store(&client).await;
    // The ExternalSecret first: its generator does not exist yet.
    create(
        &es_api(&client, "app"),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "jwt", "namespace": "app",
                         "annotations": {"secretsync.io/generate": "if-absent"}},
            "spec": {
                "refreshInterval": "1s",
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": "fake"},
                "target": {"name": "jwt"},
                "data": [{"secretKey": "JWT_SECRET", "remoteRef": {"key": "password"},
                          "sourceRef": {"generatorRef": {
                              "apiVersion": "generators.external-secrets.io/v1alpha1",
                              "kind": "Password", "name": "jwt-gen"}}}],
            },
        }),
    )
    .await;
    let run = Running::start(client.clone(), registry);
    let ess = es_api(&client, "app");
    let r = eventually(
        Duration::from_secs(30),
        "Ready=False naming the generator",
        async || ready(&ess, "jwt").await.filter(|r| r.0 == "False"),
    )
    .await;
    assert!(
        r.2.contains("Password app/jwt-gen") && r.2.contains("not found") && r.2.contains("generatorRef"),
        "{}",
        r.2
    );
    // The generator appears: the ExternalSecret resolves at once.
    create(
        &api(
            &client,
            "generators.external-secrets.io",
            "v1alpha1",
            "Password",
            "passwords",
            Some("app"),
        ),
        json!({
            "apiVersion": "generators.external-secrets.io/v1alpha1", "kind": "Password",
            "metadata": {"name": "jwt-gen", "namespace": "app"},
            "spec": {"length": 40, "digits": 5, "symbols": 0, "noUpper": false, "allowRepeat": true},
        }),
    )
    .await;
    let first = eventually(Duration::from_secs(10), "the generated value", async || {
        secret_value(&client, "app", "jwt", "JWT_SECRET").await
    })
    .await;
    assert_eq!(first.len(), 40);
    eventually(Duration::from_secs(10), "Ready=True", async || {
        ready(&ess, "jwt").await.filter(|r| r.0 == "True")
    })
    .await;
    // Three refresh rounds later: the same value, no write or read of the target.
    fake.clear_requests();
    let batches = run.handle.periodic_batches() + run.handle.fast_batches();
    eventually(Duration::from_secs(20), "three rounds", async || {
        (run.handle.periodic_batches() + run.handle.fast_batches() >= batches + 3).then_some(())
    })
    .await;
    let log = fake.requests();
    assert_eq!(secret_value(&client, "app", "jwt", "JWT_SECRET").await.unwrap(), first);
    let writes: Vec<_> = log
        .iter()
        .filter(|r| r.is_write() && r.path.contains("/secrets/jwt"))
        .collect();
    assert!(writes.is_empty(), "if-absent keeps the value: no write: {writes:?}");
    let reads: Vec<_> = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/secrets/jwt") && !r.query.contains("watch"))
        .collect();
    assert!(reads.is_empty(), "the target is read from the watch cache: {reads:?}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_from_config_map_rerenders_on_change_and_reads_nothing_when_unchanged() {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["app"]);
    let client = fake.client();
    let (source, registry) = fake_world();
    source.inner().set("db-user", "alice");
    fake_store(&client).await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "tpl", "namespace": "app"},
        "data": {"config.yaml": "user: {{ .user }}"},
    }))
    .unwrap();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "app");
    cms.create(&PostParams::default(), &cm).await.unwrap();
    create(
        &es_api(&client, "app"),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "cfg", "namespace": "app"},
            "spec": {
                "refreshInterval": "1s",
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": "fake"},
                "target": {"name": "cfg", "template": {
                    "engineVersion": "v2",
                    "templateFrom": [{"configMap": {"name": "tpl", "items": [{"key": "config.yaml"}]}}],
                }},
                "data": [{"secretKey": "user", "remoteRef": {"key": "db-user"}}],
            },
        }),
    )
    .await;
    let run = Running::start(client.clone(), registry);
    eventually(Duration::from_secs(30), "the rendered template", async || {
        (secret_value(&client, "app", "cfg", "config.yaml").await.as_deref() == Some("user: alice")).then_some(())
    })
    .await;
    // Unchanged rounds: nothing read or written for the ConfigMap or the target.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.clear_requests();
    let batches = run.handle.periodic_batches();
    eventually(Duration::from_secs(20), "two periodic rounds", async || {
        (run.handle.periodic_batches() >= batches + 2).then_some(())
    })
    .await;
    let log = fake.requests();
    let touched: Vec<_> = log
        .iter()
        .filter(|r| (r.path.contains("/configmaps/") || r.path.contains("/secrets/cfg")) && !r.query.contains("watch"))
        .collect();
    assert!(
        touched.is_empty(),
        "an unchanged round sends no request for them: {touched:?}"
    );
    assert_eq!(status_patches(&log, "externalsecrets", "app", "cfg"), 0);

    // The ConfigMap changes: the target is rendered again within seconds.
    let t0 = Instant::now();
    cms.patch(
        "tpl",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"config.yaml": "user={{ .user | upper }}"}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "the re-rendered template", async || {
        (secret_value(&client, "app", "cfg", "config.yaml").await.as_deref() == Some("user=ALICE")).then_some(())
    })
    .await;
    eprintln!("ConfigMap edit → re-rendered target: {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    // The key goes from the ConfigMap: Ready=False naming the item; the target keeps its data.
    cms.patch(
        "tpl",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"config.yaml": null, "other": "x"}})),
    )
    .await
    .unwrap();
    let r = eventually(Duration::from_secs(10), "Ready=False for a missing key", async || {
        ready(&es_api(&client, "app"), "cfg").await.filter(|r| r.0 == "False")
    })
    .await;
    assert!(
        r.2.contains("templateFrom[0].configMap.items[0].key") && r.2.contains("config.yaml"),
        "{}",
        r.2
    );
    assert_eq!(
        secret_value(&client, "app", "cfg", "config.yaml").await.as_deref(),
        Some("user=ALICE")
    );

    // The ConfigMap is deleted: Ready=False naming it; the target keeps its last data.
    cms.delete("tpl", &DeleteParams::default()).await.unwrap();
    let r = eventually(
        Duration::from_secs(10),
        "Ready=False naming the ConfigMap",
        async || {
            ready(&es_api(&client, "app"), "cfg")
                .await
                .filter(|r| r.0 == "False" && r.2.contains("not found"))
        },
    )
    .await;
    assert!(
        r.2.contains("ConfigMap app/tpl not found") && r.2.contains("templateFrom[0].configMap.name"),
        "{}",
        r.2
    );
    assert_eq!(
        secret_value(&client, "app", "cfg", "config.yaml").await.as_deref(),
        Some("user=ALICE")
    );
    run.stop().await;
}
