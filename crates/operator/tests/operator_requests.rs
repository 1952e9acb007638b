//! What the operator asks the API server, counted at the fake's request log: after the
//! first sync, an unchanged refresh round of 200 ExternalSecrets sends nothing but the
//! watches it keeps open (no target read, no write, no status patch); a new ExternalSecret
//! costs one request for its target (the apply), plus its status and its Event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use secretsync_core::manifest::Store;
use secretsync_core::registry::{BuiltStore, CredentialResolver, Registry, SourceFactory};
use secretsync_core::sources::MemorySource;
use secretsync_core::testkit::CountingSource;
use secretsync_fakes::kube::{FakeKube, RequestRecord};
use secretsync_operator::metrics::ResourceLabels;
use secretsync_operator::{Controller, ControllerConfig};
use serde_json::{Value, json};

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

const RESOURCES: usize = 200;
const NAMESPACES: usize = 10;
const KEYS: usize = 20;

fn es_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"),
        "externalsecrets",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn es(ns: &str, name: &str, key: usize) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "refreshInterval": "1s",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": "bulk"},
            "target": {"name": name},
            "data": [{"secretKey": "value", "remoteRef": {"key": format!("key-{key}")}}],
        },
    }))
    .unwrap()
}

/// The requests of the operator's client other than its watches.
fn operator_requests(fake: &FakeKube) -> Vec<RequestRecord> {
    fake.requests()
        .into_iter()
        .filter(|r| r.client.as_deref() == Some("operator") && !r.query.contains("watch=true"))
        .collect()
}

fn describe(log: &[RequestRecord]) -> Vec<String> {
    log.iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect()
}

async fn ready_count(client: &kube::Client) -> usize {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"),
        "externalsecrets",
    );
    let list = Api::<DynamicObject>::all_with(client.clone(), &ar)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .iter()
        .filter(|o| o.data.pointer("/status/conditions/0/status").and_then(Value::as_str) == Some("True"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_round_sends_nothing_and_a_created_target_costs_one_request() {
    let fake = FakeKube::start().await;
    let namespaces: Vec<String> = (0..NAMESPACES).map(|n| format!("ns-{n}")).collect();
    fake.create_namespaces(&namespaces.iter().map(String::as_str).collect::<Vec<_>>());
    let client = fake.client();
    let source = Arc::new(CountingSource::new(MemorySource::new("fake")));
    for k in 0..KEYS {
        source.inner().set(&format!("key-{k}"), format!("value-{k}"));
    }
    let mut registry = Registry::with_builtin();
    registry.register(Arc::new(SharedFake(source.clone())));
    let stores = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", "ClusterSecretStore"),
        "clustersecretstores",
    );
    let store: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
        "metadata": {"name": "bulk"}, "spec": {"provider": {"fake": {"data": []}}},
    }))
    .unwrap();
    Api::<DynamicObject>::all_with(client.clone(), &stores)
        .create(&PostParams::default(), &store)
        .await
        .unwrap();
    futures::stream::iter(0..RESOURCES)
        .map(|i| {
            let client = client.clone();
            async move {
                let ns = format!("ns-{}", i % NAMESPACES);
                es_api(&client, &ns)
                    .create(&PostParams::default(), &es(&ns, &format!("es-{i}"), i % KEYS))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let cfg = ControllerConfig {
        identity: "requests".into(),
        restart_consumers: false,
        ..ControllerConfig::default()
    };
    let controller = Controller::new(fake.named_client("operator"), registry, cfg).unwrap();
    let handle = controller.handle();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async move {
        let _ = stop_rx.await;
    }));

    let t = Instant::now();
    while ready_count(&client).await < RESOURCES {
        assert!(t.elapsed() < Duration::from_secs(60), "first sync did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the watches deliver our own writes.
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Unchanged rounds: every ExternalSecret refreshed (1s interval) at least twice.
    let calls = |i: usize| {
        handle
            .metrics()
            .sync_calls
            .get_or_create(&ResourceLabels {
                namespace: format!("ns-{}", i % NAMESPACES),
                name: format!("es-{i}"),
            })
            .get()
    };
    let before: Vec<u64> = (0..RESOURCES).map(calls).collect();
    fake.clear_requests();
    let t = Instant::now();
    while (0..RESOURCES).any(|i| calls(i) < before[i] + 2) {
        assert!(t.elapsed() < Duration::from_secs(30), "refresh rounds did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = operator_requests(&fake);
    assert!(
        log.is_empty(),
        "unchanged rounds send nothing besides the watches: {:?}",
        describe(&log)
    );

    // A new ExternalSecret: its target costs one request (the apply); its status and its
    // Event follow; nothing is read.
    fake.clear_requests();
    es_api(&client, "ns-4")
        .create(&PostParams::default(), &es("ns-4", "newcomer", 3))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ns-4");
    let t = Instant::now();
    loop {
        let done = operator_requests(&fake)
            .iter()
            .any(|r| r.path.ends_with("/externalsecrets/newcomer/status"));
        if done && secrets.get_opt("newcomer").await.unwrap().is_some() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the newcomer was not synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = operator_requests(&fake);
    let on_target: Vec<_> = log
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/ns-4/secrets/newcomer")
        .collect();
    assert_eq!(
        describe(&on_target.into_iter().cloned().collect::<Vec<_>>()),
        vec!["PATCH /api/v1/namespaces/ns-4/secrets/newcomer 201".to_string()]
    );
    let reads: Vec<_> = log.iter().filter(|r| r.method == "GET").cloned().collect();
    assert!(reads.is_empty(), "no read: {:?}", describe(&reads));
    let others: Vec<String> = describe(&log)
        .into_iter()
        .filter(|l| !l.contains("/secrets/newcomer"))
        .collect();
    assert_eq!(
        others.len(),
        2,
        "besides the apply: the status patch and the Event: {others:?}"
    );
    assert!(
        others.iter().any(
            |l| l.starts_with("PATCH /apis/external-secrets.io/v1/namespaces/ns-4/externalsecrets/newcomer/status")
        )
    );
    assert!(others.iter().any(|l| l.starts_with("POST") && l.contains("/events")));

    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
}
