//! The operator (controller mode) against the fake API server, through real kube clients:
//! status and Events as ESO writes them, refresh, force-sync, spec changes, repair of
//! edited and deleted targets, metrics that match the request log, and leader election
//! with takeover and no duplicated writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use secretsync_core::manifest::Store;
use secretsync_core::registry::{BuiltStore, CredentialResolver, Registry, SourceFactory};
use secretsync_core::sink::MANAGED_BY_LABEL;
use secretsync_core::sources::MemorySource;
use secretsync_core::testkit::CountingSource;
use secretsync_fakes::kube::{FakeKube, RequestRecord};
use secretsync_operator::{Controller, ControllerConfig, ControllerHandle, LeaseConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The `fake` provider, backed by one memory store the test holds: changing it changes
/// the "remote" value without touching the store's spec.
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

fn remote() -> (Arc<CountingSource<MemorySource>>, Registry) {
    let source = Arc::new(CountingSource::new(MemorySource::new("fake")));
    let mut registry = Registry::with_builtin();
    registry.register(Arc::new(SharedFake(source.clone())));
    (source, registry)
}

fn eso(client: &kube::Client, kind: &str, plural: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("external-secrets.io", "v1", kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

async fn create(api: &Api<DynamicObject>, obj: Value) {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

async fn create_store(client: &kube::Client, name: &str) {
    create(
        &eso(client, "ClusterSecretStore", "clustersecretstores", None),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": name},
            "spec": {"provider": {"fake": {"data": []}}},
        }),
    )
    .await;
}

fn external_secret(ns: &str, name: &str, store: &str, interval: &str, pairs: &[(&str, &str)]) -> Value {
    let data: Vec<Value> = pairs
        .iter()
        .map(|(k, r)| json!({"secretKey": k, "remoteRef": {"key": r}}))
        .collect();
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "refreshInterval": interval,
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
            "target": {"name": name},
            "data": data,
        },
    })
}

fn config(identity: &str) -> ControllerConfig {
    ControllerConfig {
        identity: identity.to_string(),
        restart_consumers: false,
        ..ControllerConfig::default()
    }
}

/// A running controller and the switch that stops it gracefully.
struct Running {
    handle: ControllerHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(client: kube::Client, registry: Registry, cfg: ControllerConfig) -> Self {
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

    /// Graceful stop: the Lease is released.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }

    /// A crash: every task ends, nothing is released.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
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

async fn secret_value(client: &kube::Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()?;
    let v = s.data?.get(key)?.0.clone();
    Some(String::from_utf8(v).unwrap())
}

fn secret_writes(log: &[RequestRecord], ns: &str, name: &str) -> usize {
    let path = format!("/api/v1/namespaces/{ns}/secrets/{name}");
    log.iter().filter(|r| r.is_write() && r.path == path).count()
}

/// Reads `/metrics` over plain HTTP/1.0.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    body
}

/// The value of one sample whose name and labels contain every `parts`.
fn sample(text: &str, parts: &[&str]) -> f64 {
    let mut total = 0.0;
    let mut found = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if parts.iter().all(|p| line.contains(p)) {
            found = true;
            total += line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
        }
    }
    assert!(found, "no sample with {parts:?} in:\n{text}");
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_refreshes_forces_repairs_and_reports() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["app", "foreign"]);
    let client = fake.client();
    let (source, registry) = remote();
    source.inner().set("db-password", "v1");
    create_store(&client, "store").await;
    let es_api = eso(&client, "ExternalSecret", "externalsecrets", Some("app"));
    // `fast` refreshes every 2 s; `slow` only on change or force-sync.
    create(
        &es_api,
        external_secret("app", "fast", "store", "2s", &[("PASSWORD", "db-password")]),
    )
    .await;
    create(
        &es_api,
        external_secret("app", "slow", "store", "1h", &[("PASSWORD", "db-password")]),
    )
    .await;

    let ctl = Running::start(client.clone(), registry, config("solo"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    tokio::spawn(secretsync_operator::serve(listener, ctl.handle.clone()));

    // Created, with ESO's status.
    for name in ["fast", "slow"] {
        let v = eventually(Duration::from_secs(10), "the Secret", async || {
            secret_value(&client, "app", name, "PASSWORD").await
        })
        .await;
        assert_eq!(v, "v1");
    }
    let es = eventually(Duration::from_secs(5), "Ready=True", async || {
        let es = es_api.get("slow").await.unwrap();
        let ready = es.data["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (ready["status"] == "True").then_some(es)
    })
    .await;
    let status = &es.data["status"];
    let ready = &status["conditions"][0];
    assert_eq!(ready["reason"], "SecretSynced");
    assert!(ready["lastTransitionTime"].is_string());
    assert!(status["refreshTime"].is_string(), "{status}");
    let synced_rv = status["syncedResourceVersion"].as_str().unwrap();
    assert!(
        synced_rv.starts_with(&format!("{}-", es.metadata.generation.unwrap())),
        "{synced_rv}"
    );
    assert_eq!(status["binding"]["name"], "slow");
    // The target is owned by its ExternalSecret.
    let secret = Api::<Secret>::namespaced(client.clone(), "app")
        .get("slow")
        .await
        .unwrap();
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!(owner.kind, "ExternalSecret");
    assert_eq!(owner.api_version, "external-secrets.io/v1");
    assert_eq!(Some(owner.uid.clone()), es.metadata.uid);
    // An Event says it was created.
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "app",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"), "events"),
    );
    let created = eventually(Duration::from_secs(5), "a Created event", async || {
        let list = events.list(&Default::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.data["reason"] == "Created" && e.data["regarding"]["name"] == "slow")
    })
    .await;
    assert_eq!(created.data["type"], "Normal");

    // A new remote value reaches `fast` within one refresh interval (2 s + 10 % jitter),
    // and not `slow`, which waits for a change or force-sync.
    source.inner().set("db-password", "v2");
    let t = Instant::now();
    eventually(Duration::from_secs(4), "the refreshed value", async || {
        (secret_value(&client, "app", "fast", "PASSWORD").await? == "v2").then_some(())
    })
    .await;
    let refresh = t.elapsed();
    assert!(refresh <= Duration::from_millis(2200 + 800), "refresh took {refresh:?}");
    assert_eq!(secret_value(&client, "app", "slow", "PASSWORD").await.unwrap(), "v1");

    // force-sync reaches `slow` at once.
    let t = Instant::now();
    es_api
        .patch(
            "slow",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"force-sync": "1"}}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(2), "the force-synced value", async || {
        (secret_value(&client, "app", "slow", "PASSWORD").await? == "v2").then_some(())
    })
    .await;
    let forced = t.elapsed();

    // A spec change reconciles at once.
    let t = Instant::now();
    es_api
        .patch(
            "slow",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"data": [{"secretKey": "DB_PASSWORD", "remoteRef": {"key": "db-password"}}]}}),
            ),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(2), "the renamed key", async || {
        secret_value(&client, "app", "slow", "DB_PASSWORD").await
    })
    .await;
    let spec_change = t.elapsed();
    assert_eq!(
        secret_value(&client, "app", "slow", "PASSWORD").await,
        None,
        "old key removed"
    );

    // A target deleted by someone is recreated; one edited by someone is restored.
    let secrets = Api::<Secret>::namespaced(client.clone(), "app");
    secrets.delete("slow", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(10), "the recreated Secret", async || {
        secret_value(&client, "app", "slow", "DB_PASSWORD").await
    })
    .await;
    secrets
        .patch(
            "slow",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"DB_PASSWORD": "aGFja2Vk"}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the restored value", async || {
        (secret_value(&client, "app", "slow", "DB_PASSWORD").await? == "v2").then_some(())
    })
    .await;
    // Someone removes our managed-by label: the label-selector watch sees the target leave
    // (DELETED, as a real API server sends it) and the operator puts the label back.
    secrets
        .patch(
            "slow",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {MANAGED_BY_LABEL: null}}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the managed-by label back", async || {
        let s = secrets.get("slow").await.ok()?;
        (s.metadata.labels?.get(MANAGED_BY_LABEL)? == "secretsync").then_some(())
    })
    .await;
    eprintln!("refresh {refresh:?}, force-sync {forced:?}, spec change {spec_change:?}");

    // Metrics match what the fake and the source counted. Wait for a quiet moment: no
    // batch running.
    let text = eventually(Duration::from_secs(5), "a quiet scrape", async || {
        let before = scrape(metrics_addr).await;
        let in_flight = sample(&before, &["secretsync_reconcile_in_flight{"]);
        (in_flight == 0.0).then_some(before)
    })
    .await;
    let log = fake.requests();
    let applies = log
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.starts_with("/api/v1/namespaces/app/secrets/"))
        .count() as f64;
    let deletes_by_us = 0.0;
    assert_eq!(
        sample(
            &text,
            &[
                "secretsync_sink_writes_total{",
                "kind=\"Secret\"",
                "operation=\"apply\"",
                "status=\"ok\""
            ]
        ),
        applies - 2.0 - deletes_by_us,
        "sink writes = the fake's PATCHes to Secrets, less the test's own two edits"
    );
    let status_patches = log
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/status") && r.path.contains("/externalsecrets/"))
        .count() as f64;
    assert_eq!(
        sample(
            &text,
            &["secretsync_api_writes_total{", "what=\"status\"", "status=\"ok\""]
        ),
        status_patches
    );
    let event_writes = log
        .iter()
        .filter(|r| r.is_write() && r.path.starts_with("/apis/events.k8s.io/"))
        .count() as f64;
    assert_eq!(
        sample(&text, &["secretsync_api_writes_total{", "what=\"event\""]),
        event_writes
    );
    assert_eq!(
        sample(&text, &["secretsync_source_calls_total{", "call=\"get_many\""]),
        source.get_manys() as f64
    );
    assert_eq!(
        sample(&text, &["secretsync_source_calls_total{", "call=\"change_tokens\""]),
        source.token_calls() as f64
    );
    let syncs = sample(&text, &["secretsync_externalsecret_sync_calls_total{", "name=\"fast\""]);
    assert!(syncs >= 2.0, "fast synced at least twice: {syncs}");
    assert!(
        sample(
            &text,
            &[
                "secretsync_externalsecret_last_success_timestamp_seconds{",
                "name=\"slow\""
            ]
        ) > 0.0
    );
    assert_eq!(sample(&text, &["secretsync_leader "]), 1.0);
    assert!(
        sample(
            &text,
            &["secretsync_reconcile_duration_seconds_count{", "lane=\"fast\""]
        ) >= 1.0
    );
    assert!(!text.contains("v1\"") && !text.contains("v2\""), "no values in metrics");
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_spec_reports_secret_synced_error_without_values() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["app", "foreign"]);
    let client = fake.client();
    let (source, registry) = remote();
    source.inner().set("present", "canary-value-1234");
    create_store(&client, "store").await;
    let es_api = eso(&client, "ExternalSecret", "externalsecrets", Some("app"));
    create(
        &es_api,
        external_secret("app", "broken", "store", "1h", &[("K", "missing-key")]),
    )
    .await;
    create(
        &es_api,
        external_secret("app", "ok", "store", "1h", &[("K", "present")]),
    )
    .await;
    let ctl = Running::start(client.clone(), registry, config("solo"));
    let cond = eventually(Duration::from_secs(10), "Ready=False", async || {
        let es = es_api.get("broken").await.unwrap();
        let c = es.data["status"]["conditions"].as_array()?.first()?.clone();
        (c["status"] == "False").then_some(c)
    })
    .await;
    assert_eq!(cond["reason"], "SecretSyncedError");
    assert!(cond["message"].as_str().unwrap().contains("missing-key"), "{cond}");
    assert!(es_api.get("broken").await.unwrap().data["status"]["refreshTime"].is_null());
    // The other spec is unaffected.
    eventually(Duration::from_secs(5), "the healthy Secret", async || {
        secret_value(&client, "app", "ok", "K").await
    })
    .await;
    // A Warning event, and no value anywhere in status or events.
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "app",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"), "events"),
    );
    eventually(Duration::from_secs(5), "an UpdateFailed event", async || {
        let list = events.list(&Default::default()).await.unwrap();
        list.items.into_iter().find(|e| e.data["reason"] == "UpdateFailed")
    })
    .await;
    let all = serde_json::to_string(&events.list(&Default::default()).await.unwrap().items).unwrap()
        + &serde_json::to_string(&es_api.list(&Default::default()).await.unwrap().items).unwrap()
        + &ctl.handle.render_metrics();
    assert!(!all.contains("canary-value-1234"));
    ctl.stop().await;
}

/// Creates a namespace with these labels, or gives an existing one (the fake's setup
/// may have made it) these labels.
async fn create_namespace(client: &kube::Client, name: &str, labels: Value) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    let api = Api::<Namespace>::all(client.clone());
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => relabel_namespace(client, name, labels).await,
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

async fn relabel_namespace(client: &kube::Client, name: &str, labels: Value) {
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .unwrap();
}

/// Namespaces that hold an ExternalSecret `name`, sorted.
async fn namespaces_with_es(client: &kube::Client, name: &str) -> Vec<String> {
    let all = eso(client, "ExternalSecret", "externalsecrets", None)
        .list(&Default::default())
        .await
        .unwrap();
    let mut out: Vec<String> = all
        .items
        .into_iter()
        .filter(|e| e.metadata.name.as_deref() == Some(name))
        .filter_map(|e| e.metadata.namespace)
        .collect();
    out.sort();
    out
}

fn ready_of(status: &Value) -> Option<Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_external_secrets_provision_selected_namespaces_and_follow_their_labels() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["app", "foreign"]);
    let client = fake.client();
    let (source, registry) = remote();
    source.inner().set("db-password", "pw1");
    create_store(&client, "store").await;
    create_namespace(&client, "team-a", json!({"team": "payments"})).await;
    create_namespace(&client, "team-b", json!({"team": "payments", "env": "prod"})).await;
    create_namespace(&client, "team-dev", json!({"team": "payments", "env": "dev"})).await;
    create_namespace(&client, "other", json!({"team": "search"})).await;
    create_namespace(&client, "listed", json!({})).await;
    let ces_api = eso(&client, "ClusterExternalSecret", "clusterexternalsecrets", None);
    let ces_spec = json!({
        "externalSecretName": "db",
        "externalSecretMetadata": {"labels": {"app": "billing"}, "annotations": {"note": "from-ces"}},
        "namespaceSelectors": [{
            "matchLabels": {"team": "payments"},
            "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}],
        }],
        "namespaces": ["listed"],
        "refreshTime": "1s",
        "externalSecretSpec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": "store"},
            "target": {"name": "db-credentials"},
            "data": [{"secretKey": "PASSWORD", "remoteRef": {"key": "db-password"}}],
        },
    });
    create(
        &ces_api,
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
            "metadata": {"name": "db-everywhere"},
            "spec": ces_spec,
        }),
    )
    .await;
    // An invalid one (a field we do not support) creates nothing and says why.
    create(
        &ces_api,
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
            "metadata": {"name": "broken"},
            "spec": {
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["listed"]}]},
                "externalSecretSpec": {
                    "secretStoreRef": {"kind": "ClusterSecretStore", "name": "store"},
                    "data": [{"secretKey": "K", "remoteRef": {"key": "db-password"}, "sourceRef": {"storeRef": {"name": "store"}}}],
                },
            },
        }),
    )
    .await;
    let ctl = Running::start(client.clone(), registry, config("solo"));

    // ExternalSecrets in exactly the listed and the selected namespaces, owned by the
    // ClusterExternalSecret, with its metadata and spec; then their Secrets.
    let want = ["listed", "team-a", "team-b"];
    eventually(Duration::from_secs(10), "the ExternalSecrets", async || {
        (namespaces_with_es(&client, "db").await == want).then_some(())
    })
    .await;
    let ces = ces_api.get("db-everywhere").await.unwrap();
    for ns in want {
        let es = eso(&client, "ExternalSecret", "externalsecrets", Some(ns))
            .get("db")
            .await
            .unwrap();
        let owner = &es.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ClusterExternalSecret", "db-everywhere", Some(true))
        );
        assert_eq!(Some(owner.uid.clone()), ces.metadata.uid);
        assert_eq!(es.metadata.labels.as_ref().unwrap()["app"], "billing");
        assert_eq!(es.metadata.annotations.as_ref().unwrap()["note"], "from-ces");
        assert_eq!(es.data["spec"], ces_spec["externalSecretSpec"]);
        let v = eventually(Duration::from_secs(10), "the Secret", async || {
            secret_value(&client, ns, "db-credentials", "PASSWORD").await
        })
        .await;
        assert_eq!(v, "pw1");
    }
    for ns in ["team-dev", "other"] {
        assert_eq!(secret_value(&client, ns, "db-credentials", "PASSWORD").await, None);
    }
    let status = eventually(Duration::from_secs(5), "Ready=True", async || {
        let status = ces_api.get("db-everywhere").await.unwrap().data["status"].clone();
        (ready_of(&status)?["status"] == "True").then_some(status)
    })
    .await;
    assert_eq!(status["externalSecretName"], "db");
    assert_eq!(status["provisionedNamespaces"], json!(want));
    assert!(status["failedNamespaces"].is_null(), "{status}");

    let broken = eventually(Duration::from_secs(5), "the invalid one's status", async || {
        let status = ces_api.get("broken").await.unwrap().data["status"].clone();
        ready_of(&status)
    })
    .await;
    assert_eq!(broken["status"], "False");
    let message = broken["message"].as_str().unwrap();
    assert!(
        message.contains("spec.externalSecretSpec.data[0].sourceRef.storeRef: not supported yet"),
        "{message}"
    );
    assert!(namespaces_with_es(&client, "broken").await.is_empty());

    // Settled: re-evaluations every second write nothing.
    fake.clear_requests();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let es_writes: Vec<RequestRecord> = fake
        .writes()
        .into_iter()
        .filter(|r| r.path.contains("/externalsecrets/") && !r.path.ends_with("/status"))
        .collect();
    assert!(
        es_writes.is_empty(),
        "no re-apply of unchanged ExternalSecrets: {es_writes:?}"
    );
    assert!(
        !fake
            .writes()
            .iter()
            .any(|r| r.path.contains("/clusterexternalsecrets/")),
        "no rewrite of an unchanged status"
    );

    // A namespace that stops matching loses its ExternalSecret; the status follows.
    relabel_namespace(&client, "team-b", json!({"team": "search"})).await;
    eventually(Duration::from_secs(5), "team-b's ExternalSecret deleted", async || {
        (namespaces_with_es(&client, "db").await == ["listed", "team-a"]).then_some(())
    })
    .await;
    eventually(Duration::from_secs(5), "the status without team-b", async || {
        let status = ces_api.get("db-everywhere").await.unwrap().data["status"].clone();
        (status["provisionedNamespaces"] == json!(["listed", "team-a"])).then_some(())
    })
    .await;

    // An ExternalSecret of that name that someone else made is left alone, and its
    // namespace is reported failed.
    create_namespace(&client, "foreign", json!({})).await;
    let foreign_api = eso(&client, "ExternalSecret", "externalsecrets", Some("foreign"));
    create(
        &foreign_api,
        external_secret("foreign", "db", "store", "1h", &[("MINE", "db-password")]),
    )
    .await;
    let before = foreign_api.get("db").await.unwrap();
    relabel_namespace(&client, "foreign", json!({"team": "payments"})).await;
    let status = eventually(Duration::from_secs(5), "foreign in failedNamespaces", async || {
        let status = ces_api.get("db-everywhere").await.unwrap().data["status"].clone();
        status["failedNamespaces"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(status)
    })
    .await;
    assert_eq!(
        status["failedNamespaces"],
        json!([{"namespace": "foreign", "reason": "external secret already exists in namespace"}])
    );
    assert_eq!(
        ready_of(&status).unwrap(),
        json!({"type": "Ready", "status": "False", "message": "one or more namespaces failed"})
    );
    assert_eq!(status["provisionedNamespaces"], json!(["listed", "team-a"]));
    let after = foreign_api.get("db").await.unwrap();
    assert_eq!(after.data["spec"], before.data["spec"]);
    assert_eq!(after.metadata.labels, before.metadata.labels);
    assert!(after.metadata.owner_references.is_none(), "not adopted");
    assert!(
        !fake
            .writes()
            .iter()
            .any(|r| r.path == "/apis/external-secrets.io/v1/namespaces/foreign/externalsecrets/db"),
        "the foreign ExternalSecret is never written"
    );

    // Deleting the ClusterExternalSecret deletes its ExternalSecrets, not the foreign one.
    ces_api.delete("db-everywhere", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(5), "its ExternalSecrets deleted", async || {
        (namespaces_with_es(&client, "db").await == ["foreign"]).then_some(())
    })
    .await;
    ctl.stop().await;
}

fn ha_config(identity: &str, lease: Duration) -> ControllerConfig {
    ControllerConfig {
        lease: Some(LeaseConfig::new("secretsync-test", "kube-system", lease)),
        ..config(identity)
    }
}

/// Writes other than the Lease's, by client.
fn non_lease_writes(log: &[RequestRecord], client: &str) -> usize {
    log.iter()
        .filter(|r| r.is_write() && r.client.as_deref() == Some(client) && !r.path.contains("/leases"))
        .count()
}

async fn holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt("secretsync-test")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_the_other_takes_over_when_it_stops() {
    // Long enough that a CPU-starved test machine does not let the Lease expire by accident.
    let lease = Duration::from_secs(5);
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["app", "foreign"]);
    let admin = fake.client();
    let (source, registry) = remote();
    source.inner().set("k", "one");
    create_store(&admin, "store").await;
    let es_api = eso(&admin, "ExternalSecret", "externalsecrets", Some("app"));
    create(&es_api, external_secret("app", "es", "store", "1h", &[("K", "k")])).await;
    // A ClusterExternalSecret too: its ExternalSecret and status are the leader's writes.
    create_namespace(&admin, "app", json!({})).await;
    create(
        &eso(&admin, "ClusterExternalSecret", "clusterexternalsecrets", None),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
            "metadata": {"name": "from-ces"},
            "spec": {"namespaces": ["app"], "externalSecretSpec": {
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": "store"},
                "data": [{"secretKey": "K", "remoteRef": {"key": "k"}}],
            }},
        }),
    )
    .await;

    let a = Running::start(fake.named_client("a"), registry.clone(), ha_config("a", lease));
    let b = Running::start(fake.named_client("b"), registry.clone(), ha_config("b", lease));
    eventually(Duration::from_secs(10), "the Secret", async || {
        secret_value(&admin, "app", "es", "K").await
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the ClusterExternalSecret's Secret",
        async || secret_value(&admin, "app", "from-ces", "K").await,
    )
    .await;
    // Let both run a few lease periods side by side.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = holder(&admin).await.unwrap();
    let (leading, following, follower_name) = if leader == "a" { (a, b, "b") } else { (b, a, "a") };
    assert!(
        leading.handle.is_leader() && !following.handle.is_leader(),
        "exactly one leader, the Lease's holder {leader}"
    );
    let log = fake.requests();
    assert_eq!(non_lease_writes(&log, follower_name), 0, "the follower wrote nothing");
    assert!(
        non_lease_writes(&log, &leader) >= 2,
        "the leader wrote the Secret and the status"
    );
    assert_eq!(secret_writes(&log, "app", "es"), 1);

    // Graceful stop: the Lease is released and the other takes over at once.
    let t = Instant::now();
    leading.stop().await;
    eventually(lease, "the takeover", async || {
        following.handle.is_leader().then_some(())
    })
    .await;
    let takeover = t.elapsed();
    assert_eq!(holder(&admin).await.as_deref(), Some(follower_name));

    // The new leader reconciles everything once: the Secret is already right, so no
    // second write of it; a new remote value is then written by the new leader only.
    eventually(Duration::from_secs(5), "the new leader's status write", async || {
        (non_lease_writes(&fake.requests(), follower_name) > 0).then_some(())
    })
    .await;
    assert_eq!(secret_writes(&fake.requests(), "app", "es"), 1, "no duplicated write");
    source.inner().set("k", "two");
    es_api
        .patch(
            "es",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"force-sync": "now"}}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(3), "the new value", async || {
        (secret_value(&admin, "app", "es", "K").await? == "two").then_some(())
    })
    .await;
    let log = fake.requests();
    let secret_path = "/api/v1/namespaces/app/secrets/es";
    let by_old_leader_after = log
        .iter()
        .filter(|r| r.is_write() && r.path == secret_path && r.client.as_deref() == Some(leader.as_str()))
        .count();
    assert_eq!(by_old_leader_after, 1, "the old leader wrote once, before it stopped");
    assert_eq!(secret_writes(&log, "app", "es"), 2);
    eprintln!("graceful takeover {takeover:?}");
    following.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_when_its_lease_expires() {
    let lease = Duration::from_secs(4);
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["app", "foreign"]);
    let admin = fake.client();
    let (source, registry) = remote();
    source.inner().set("k", "one");
    create_store(&admin, "store").await;
    let es_api = eso(&admin, "ExternalSecret", "externalsecrets", Some("app"));
    create(&es_api, external_secret("app", "es", "store", "1h", &[("K", "k")])).await;
    let a = Running::start(fake.named_client("a"), registry.clone(), ha_config("a", lease));
    eventually(Duration::from_secs(10), "a leads", async || {
        a.handle.is_leader().then_some(())
    })
    .await;
    let b = Running::start(fake.named_client("b"), registry.clone(), ha_config("b", lease));
    eventually(Duration::from_secs(10), "the Secret", async || {
        secret_value(&admin, "app", "es", "K").await
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!b.handle.is_leader());

    let t = Instant::now();
    a.crash().await;
    let retry = LeaseConfig::new("x", "y", lease).retry_every;
    eventually(lease + retry + Duration::from_millis(500), "the takeover", async || {
        b.handle.is_leader().then_some(())
    })
    .await;
    let takeover = t.elapsed();
    let spec = Api::<Lease>::namespaced(admin.clone(), "kube-system")
        .get("secretsync-test")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    // b now writes: a new ExternalSecret gets its target and status from b. (The old one's
    // status is unchanged, so b writes none for it: an unchanged round writes nothing.)
    create(&es_api, external_secret("app", "es2", "store", "1h", &[("K", "k")])).await;
    eventually(Duration::from_secs(5), "b's status write", async || {
        (non_lease_writes(&fake.requests(), "b") > 0 && secret_writes(&fake.requests(), "app", "es2") == 1)
            .then_some(())
    })
    .await;
    assert_eq!(secret_writes(&fake.requests(), "app", "es"), 1, "no duplicated write");
    eprintln!("crash takeover {takeover:?} (lease {lease:?})");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_resources_between_replicas_each_with_its_own_lease() {
    let fake = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    fake.create_namespaces(&["app", "foreign"]);
    let admin = fake.client();
    let (source, registry) = remote();
    source.inner().set("k", "v");
    create_store(&admin, "store").await;
    let es_api = eso(&admin, "ExternalSecret", "externalsecrets", Some("app"));
    let names: Vec<String> = (0..20).map(|i| format!("es-{i}")).collect();
    for n in &names {
        create(&es_api, external_secret("app", n, "store", "1h", &[("K", "k")])).await;
    }
    let shard = |i: u32| ControllerConfig {
        shards: 2,
        shard_index: i,
        ..ha_config(&format!("shard{i}"), Duration::from_secs(3))
    };
    let s0 = Running::start(fake.named_client("shard0"), registry.clone(), shard(0));
    let s1 = Running::start(fake.named_client("shard1"), registry.clone(), shard(1));
    for n in &names {
        eventually(Duration::from_secs(10), "every Secret", async || {
            secret_value(&admin, "app", n, "K").await
        })
        .await;
    }
    let log = fake.requests();
    let mut per_shard = [0, 0];
    for n in &names {
        let owner = secretsync_operator::shard_of("app", n, 2);
        per_shard[owner as usize] += 1;
        let path = format!("/api/v1/namespaces/app/secrets/{n}");
        let writers: Vec<_> = log
            .iter()
            .filter(|r| r.is_write() && r.path == path)
            .map(|r| r.client.clone().unwrap())
            .collect();
        assert_eq!(writers, vec![format!("shard{owner}")], "{n} written once, by its shard");
    }
    assert!(
        per_shard[0] > 0 && per_shard[1] > 0,
        "both shards have work: {per_shard:?}"
    );
    let leases = Api::<Lease>::namespaced(admin.clone(), "kube-system");
    for i in 0..2 {
        let l = leases.get(&format!("secretsync-test-shard-{i}")).await.unwrap();
        assert_eq!(l.spec.unwrap().holder_identity, Some(format!("shard{i}")));
    }
    s0.stop().await;
    s1.stop().await;
}

fn fingerprint_of(secret: &Secret) -> String {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(secretsync_core::sink::FINGERPRINT_ANNOTATION))
        .cloned()
        .expect("the target carries a fingerprint annotation")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operator_instances_share_one_fingerprint_key_secret() {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["app"]);
    let client = fake.client();
    let (source, registry) = remote();
    source.inner().set("db-password", "v1");
    create_store(&client, "store").await;
    let es_api = eso(&client, "ExternalSecret", "externalsecrets", Some("app"));
    create(
        &es_api,
        external_secret("app", "db", "store", "1h", &[("PASSWORD", "db-password")]),
    )
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "app");

    // The first instance creates the key Secret (in the client's namespace) and the target.
    let first = Running::start(client.clone(), registry.clone(), config("first"));
    let written = eventually(Duration::from_secs(10), "the target", async || {
        secrets.get_opt("db").await.unwrap()
    })
    .await;
    let fp_first = fingerprint_of(&written);
    first.stop().await;
    let key_secret = Api::<Secret>::namespaced(client.clone(), "default")
        .get(secretsync_operator::DEFAULT_KEY_SECRET)
        .await
        .expect("the key Secret exists");
    assert!(key_secret.data.unwrap().contains_key("key"));

    // A second instance (another process, another identity) finds the target up to date:
    // the same key gives the same fingerprint, so it rewrites nothing.
    fake.clear_requests();
    let reads = || source.gets() + source.get_manys() + source.token_calls();
    let before = reads();
    let second = Running::start(client.clone(), registry.clone(), config("second"));
    eventually(
        Duration::from_secs(10),
        "the second instance's first round",
        async || (reads() > before).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        secret_writes(&fake.requests(), "app", "db"),
        0,
        "an unchanged target is not rewritten by another instance"
    );
    // Deleted, it is recreated with the very same annotation.
    secrets.delete("db", &DeleteParams::default()).await.unwrap();
    let rewritten = eventually(Duration::from_secs(10), "the recreated target", async || {
        secrets.get_opt("db").await.unwrap()
    })
    .await;
    assert_eq!(fingerprint_of(&rewritten), fp_first);
    second.stop().await;
}

fn status_patches(log: &[RequestRecord], ns: &str, name: &str) -> usize {
    let path = format!("/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets/{name}/status");
    log.iter().filter(|r| r.is_write() && r.path == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_refresh_round_writes_no_status() {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["app"]);
    let client = fake.client();
    let (source, registry) = remote();
    source.inner().set("db-password", "v1");
    create_store(&client, "store").await;
    let es_api = eso(&client, "ExternalSecret", "externalsecrets", Some("app"));
    create(
        &es_api,
        external_secret("app", "calm", "store", "1s", &[("PASSWORD", "db-password")]),
    )
    .await;
    let ctl = Running::start(client.clone(), registry.clone(), config("calm"));
    eventually(Duration::from_secs(10), "Ready=True", async || {
        let es = es_api.get("calm").await.unwrap();
        (ready_of(&es.data["status"])?["status"] == "True").then_some(())
    })
    .await;
    // Let the watch deliver our own status write, then count a few 1s rounds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.clear_requests();
    let reads = || source.gets() + source.get_manys() + source.token_calls();
    let before = reads();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(reads() >= before + 2, "refresh rounds ran");
    let log = fake.requests();
    assert_eq!(
        status_patches(&log, "app", "calm"),
        0,
        "an unchanged round writes no status"
    );
    assert_eq!(fake.write_count(), 0, "nor anything else: {:?}", fake.writes());
    // A failure changes the condition: written at once.
    source.inner().remove("db-password");
    eventually(Duration::from_secs(10), "Ready=False", async || {
        let es = es_api.get("calm").await.unwrap();
        (ready_of(&es.data["status"])?["status"] == "False").then_some(())
    })
    .await;
    ctl.stop().await;

    // With refreshTime due every second, the same unchanged rounds refresh it.
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["app"]);
    let client = fake.client();
    source.inner().set("db-password", "v1");
    create_store(&client, "store").await;
    let es_api = eso(&client, "ExternalSecret", "externalsecrets", Some("app"));
    create(
        &es_api,
        external_secret("app", "calm", "store", "1s", &[("PASSWORD", "db-password")]),
    )
    .await;
    let cfg = ControllerConfig {
        refresh_time_every: Duration::from_secs(1),
        ..config("eager")
    };
    let ctl = Running::start(client.clone(), registry, cfg);
    eventually(Duration::from_secs(10), "Ready=True", async || {
        let es = es_api.get("calm").await.unwrap();
        (ready_of(&es.data["status"])?["status"] == "True").then_some(())
    })
    .await;
    fake.clear_requests();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        status_patches(&fake.requests(), "app", "calm") >= 1,
        "refreshTime is refreshed when due"
    );
    ctl.stop().await;
}
