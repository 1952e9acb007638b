//! What the Kubernetes sink asks the API server, counted at the fake's request log:
//! one labelled, paginated list per namespace per `sync` cycle and no read of an unchanged
//! target; a created target costs its apply; a stale cache entry costs one read on 409; a
//! cache that has not listed yet reads rather than claim a target is missing.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use secretsync_core::engine::{CycleOptions, Engine, Outcome};
use secretsync_core::manifest::{Manifests, load_str};
use secretsync_core::registry::Registry;
use secretsync_core::{Compared, DesiredTarget, SecretSink, TargetKind, TargetRef};
use secretsync_fakes::kube::{FakeKube, RequestRecord};
use secretsync_k8s::{KubeSink, TargetCache};
use serde_json::json;

const NAMESPACES: usize = 10;
const TARGETS: usize = 200;
const PAGE: u32 = 7;

fn store() -> String {
    let data: Vec<String> = (0..10)
        .map(|k| format!("        - key: key-{k}\n          value: value-{k}\n"))
        .collect();
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata:\n  name: bulk\nspec:\n  provider:\n    fake:\n      data:\n{}",
        data.concat()
    )
}

fn external_secret(ns: &str, name: &str, key: usize) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  refreshInterval: 1h\n  secretStoreRef:\n    kind: ClusterSecretStore\n    name: bulk\n  target:\n    name: {name}\n  data:\n    - secretKey: value\n      remoteRef:\n        key: key-{key}\n"
    )
}

fn manifests(extra: &[String]) -> Manifests {
    let mut docs = vec![store()];
    for i in 0..TARGETS {
        docs.push(external_secret(
            &format!("ns-{}", i % NAMESPACES),
            &format!("es-{i}"),
            i % 10,
        ));
    }
    docs.extend(extra.iter().cloned());
    load_str(&docs.join("---\n"), "requests.yaml")
        .into_result()
        .expect("manifests load")
}

fn namespaces() -> Vec<String> {
    (0..NAMESPACES).map(|n| format!("ns-{n}")).collect()
}

fn target_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/secrets/{name}")
}

fn is_labelled_list(r: &RequestRecord) -> bool {
    r.method == "GET"
        && r.path.ends_with("/secrets")
        && r.query
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsecretsync")
        && r.query.contains(&format!("limit={PAGE}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_cycle_lists_each_namespace_once_and_reads_no_unchanged_target() {
    let fake = FakeKube::start().await;
    let ns = namespaces();
    fake.create_namespaces(&ns.iter().map(String::as_str).collect::<Vec<_>>());
    let client = fake.client();
    let m = manifests(&[]);
    let (stores, errors) = Registry::with_builtin().build_all(&m).await;
    assert!(errors.is_empty(), "{errors:?}");
    let sink = KubeSink::new(client.clone()).with_list_page(PAGE);
    let engine = Engine::new(stores.clone(), Arc::new(sink.clone()));

    let first = engine.run(&m, &CycleOptions::default()).await;
    assert!(
        first.all_synced(),
        "{:?}",
        first.specs.iter().find(|s| !s.message.is_empty())
    );
    assert_eq!(first.writes, TARGETS as u64);

    // Unchanged: one list per namespace, a page of 7 at a time (20 targets: 3 pages), no
    // other request at all.
    fake.clear_requests();
    let second = engine.run(&m, &CycleOptions::default()).await;
    assert!(second.all_synced());
    assert_eq!(second.writes, 0);
    let log = fake.requests();
    let pages_per_ns = (TARGETS / NAMESPACES).div_ceil(PAGE as usize);
    assert_eq!(
        log.iter().filter(|r| is_labelled_list(r)).count(),
        NAMESPACES * pages_per_ns,
        "one list per namespace, paginated"
    );
    let firsts: Vec<_> = log
        .iter()
        .filter(|r| is_labelled_list(r) && !r.query.contains("continue="))
        .collect();
    assert_eq!(firsts.len(), NAMESPACES, "each namespace listed once");
    assert_eq!(
        log.len(),
        NAMESPACES * pages_per_ns,
        "nothing but the lists: {:?}",
        log.iter()
            .filter(|r| !is_labelled_list(r))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
    assert_eq!(fake.write_count(), 0);

    // A new target costs its apply (plus, for its owner reference, one list of the
    // ExternalSecrets of its namespace); no read of the target.
    let extra = vec![external_secret("ns-3", "newcomer", 4)];
    let m2 = manifests(&extra);
    fake.clear_requests();
    let third = engine.run(&m2, &CycleOptions::default()).await;
    assert!(third.all_synced());
    let created = third.specs.iter().find(|s| s.name == "newcomer").unwrap();
    assert_eq!(created.outcome, Outcome::Created);
    let log = fake.requests();
    let on_target: Vec<_> = log
        .iter()
        .filter(|r| r.path == target_path("ns-3", "newcomer"))
        .map(|r| (r.method.as_str(), r.status))
        .collect();
    assert_eq!(on_target, vec![("PATCH", 201)], "created with one request");
    let others: Vec<_> = log
        .iter()
        .filter(|r| !is_labelled_list(r) && r.path != target_path("ns-3", "newcomer"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        others,
        vec!["GET /apis/external-secrets.io/v1/namespaces/ns-3/externalsecrets".to_string()],
        "the owner lookup is one list of the namespace"
    );
    assert_eq!(fake.write_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_exists_without_our_label_is_adopted_or_refused_as_before() {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["ns-0"]);
    let client = fake.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ns-0");
    // Made by hand before secretsync: no label, other data.
    let legacy: Secret = serde_json::from_value(json!({
        "metadata": {"name": "legacy"}, "stringData": {"value": "old", "extra": "x"},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &legacy).await.unwrap();
    let tls: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "c", "tls.key": "k"},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &tls).await.unwrap();

    let docs = [
        store(),
        external_secret("ns-0", "legacy", 1),
        external_secret("ns-0", "tls", 2),
    ];
    let m = load_str(&docs.join("---\n"), "adopt.yaml").into_result().unwrap();
    let (stores, _) = Registry::with_builtin().build_all(&m).await;
    let engine = Engine::new(stores, Arc::new(KubeSink::new(client.clone()).with_list_page(PAGE)));

    // A plan says what the run below does: take over `legacy`, refuse `tls`; never "would
    // create" a Secret that exists. It writes nothing.
    fake.clear_requests();
    let plan = engine
        .run(
            &m,
            &CycleOptions {
                dry_run: true,
                ..CycleOptions::default()
            },
        )
        .await;
    assert_eq!(fake.write_count(), 0);
    let legacy = plan.specs.iter().find(|s| s.name == "legacy").unwrap();
    assert_eq!(legacy.outcome, Outcome::Updated, "{legacy:?}");
    assert!(
        legacy.message.contains("not managed by secretsync"),
        "{}",
        legacy.message
    );
    let text = plan.to_text();
    assert!(
        text.lines()
            .any(|l| l.contains("ns-0/legacy") && l.contains("would update") && l.contains("takes it over")),
        "{text}"
    );
    assert!(!text.contains("would create"), "{text}");
    let tls = plan.specs.iter().find(|s| s.name == "tls").unwrap();
    assert!(!tls.changed);
    assert!(tls.message.contains("a Secret's type cannot change"), "{}", tls.message);

    let r = engine.run(&m, &CycleOptions::default()).await;

    let legacy = r.specs.iter().find(|s| s.name == "legacy").unwrap();
    assert_eq!(
        legacy.outcome,
        Outcome::Updated,
        "an existing target is updated, not created"
    );
    let s = secrets.get("legacy").await.unwrap();
    let data = s.data.unwrap();
    assert_eq!(data.get("value").unwrap().0, b"value-1");
    assert!(!data.contains_key("extra"), "an Owner target holds our keys only");
    assert_eq!(
        s.metadata
            .labels
            .unwrap()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("secretsync")
    );

    // A type the template cannot have: the same clear error as with a read first.
    let tls = r.specs.iter().find(|s| s.name == "tls").unwrap();
    assert!(tls.message.contains("a Secret's type cannot change"), "{}", tls.message);
    let s = secrets.get("tls").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"), "left as it was");
}

fn desired(ns: &str, name: &str, value: &str) -> DesiredTarget {
    secretsync_core::testkit::desired(
        TargetRef::secret(ns, name),
        secretsync_core::testkit::map(&[("value", value)]),
        secretsync_core::CreationPolicy::Orphan,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_cache_answers_compare_and_a_stale_entry_costs_one_read() {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["app"]);
    let client = fake.client();
    let cache = Arc::new(TargetCache::new());
    let sink = KubeSink::new(client.clone()).with_watched_cache(cache.clone());
    let d = desired("app", "db", "one");
    let path = target_path("app", "db");

    // Not listed yet: a read, never a guess that the target is missing.
    fake.clear_requests();
    assert!(matches!(sink.compare(&d).await.unwrap(), Compared::Missing));
    let log = fake.requests();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].method.as_str(), log[0].path.as_str()), ("GET", path.as_str()));

    // Listed (as the operator's watch does once synced): a missing target costs its apply.
    cache.set_complete(TargetKind::Secret, None);
    fake.clear_requests();
    assert!(matches!(sink.compare(&d).await.unwrap(), Compared::Missing));
    assert_eq!(sink.apply(&d).await.unwrap(), secretsync_core::ApplyOutcome::Created);
    let log = fake.requests();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!((log[0].method.as_str(), log[0].status), ("PATCH", 201));

    // What we wrote is in the cache: comparing again sends nothing.
    fake.clear_requests();
    assert!(matches!(sink.compare(&d).await.unwrap(), Compared::Matches));
    assert_eq!(fake.request_count(), 0);

    // Someone else changes it; the cache (no watch here) does not know. The write made on
    // the stale entry gets 409, reads once, and applies on the fresh version.
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "app");
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    let d2 = desired("app", "db", "two");
    fake.clear_requests();
    assert!(matches!(sink.compare(&d2).await.unwrap(), Compared::Differs(_)));
    assert_eq!(sink.apply(&d2).await.unwrap(), secretsync_core::ApplyOutcome::Updated);
    let calls: Vec<_> = fake
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.status))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("PATCH".to_string(), path.clone(), 409),
            ("GET".to_string(), path.clone(), 200),
            ("PATCH".to_string(), path.clone(), 200),
        ]
    );
    let s = secrets.get("db").await.unwrap();
    assert_eq!(s.data.unwrap().get("value").unwrap().0, b"two");
    assert_eq!(
        s.metadata.annotations.unwrap().get("touched").map(String::as_str),
        Some("yes"),
        "the other writer's annotation is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_one_target_of_the_cycle_is_read_not_listed() {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["solo"]);
    let client = fake.client();
    let docs = [store(), external_secret("solo", "only", 1)];
    let m = load_str(&docs.join("---\n"), "solo.yaml").into_result().unwrap();
    let (stores, _) = Registry::with_builtin().build_all(&m).await;
    let engine = Engine::new(stores, Arc::new(KubeSink::new(client).with_list_page(PAGE)));
    assert!(engine.run(&m, &CycleOptions::default()).await.all_synced());
    fake.clear_requests();
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(r.writes, 0);
    let calls: Vec<_> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(calls, vec![format!("GET {}", target_path("solo", "only"))]);
}

/// An Owner target whose ExternalSecret is of a version the cluster does not serve (as in a
/// cluster without ESO's CRDs): the first create learns it from one list (`404`), and from
/// then on a created target costs its apply alone, with no owner reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_lookups_stop_where_external_secrets_are_not_served() {
    let fake = FakeKube::start().await;
    fake.create_namespaces(&["a", "b"]);
    let sink = KubeSink::new(fake.client());
    let owned = |ns: &str, name: &str| {
        let mut d = secretsync_core::testkit::desired(
            TargetRef::secret(ns, name),
            secretsync_core::testkit::map(&[("value", "v")]),
            secretsync_core::CreationPolicy::Owner,
        );
        d.owner = Some(secretsync_core::OwnerRef {
            api_version: "external-secrets.io/v0unserved".into(),
            kind: "ExternalSecret".into(),
            name: name.into(),
            uid: None,
        });
        d
    };
    let create = |d: DesiredTarget| {
        let sink = sink.clone();
        async move {
            let t = [d.target.clone()];
            sink.begin_cycle(&t).await;
            assert_eq!(sink.apply(&d).await.unwrap(), secretsync_core::ApplyOutcome::Created);
            sink.end_cycle(&t).await;
        }
    };
    // Requests other than the read `apply` makes of a target it has not compared.
    let lookups_and_writes = || -> Vec<String> {
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("externalsecrets") || r.method != "GET")
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect()
    };
    fake.clear_requests();
    create(owned("a", "first")).await;
    assert_eq!(
        lookups_and_writes(),
        vec![
            "GET /apis/external-secrets.io/v0unserved/namespaces/a/externalsecrets 404".to_string(),
            format!("PATCH {} 201", target_path("a", "first")),
        ]
    );
    // In another namespace and cycle: the apply alone.
    fake.clear_requests();
    create(owned("b", "second")).await;
    assert_eq!(
        lookups_and_writes(),
        vec![format!("PATCH {} 201", target_path("b", "second"))]
    );
    let s: Api<Secret> = Api::namespaced(fake.client(), "b");
    assert!(s.get("second").await.unwrap().metadata.owner_references.is_none());
}
