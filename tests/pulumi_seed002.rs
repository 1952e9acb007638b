//! Seed 002 (aphiria.com) end to end: its Pulumi ESC environment `aphiria.com/Preview` (the
//! fake ESC API, through the provider) synced into a `preview-pr-*` namespace of Kubernetes
//! (the fake API server, through kube): the database credentials and the GHCR pull secret,
//! from the manifests in examples/manifests/seed002/. A second cycle writes nothing and asks
//! ESC one HEAD; the quarterly rotation edits one line of the environment's YAML and the
//! Secret follows.
//!
//! Until secretsync-core parses `spec.provider.pulumi` (the plug-in API), the store document
//! is read with the provider's own schema ([`EscStoreConfig`]) and the engine gets the ESC
//! source under the store's id, while the ExternalSecrets come from the example file as is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use secretsync::engine::{CycleOptions, Engine};
use secretsync::manifest::{StoreId, StoreKind, load_str};
use secretsync::pulumi::{EscStoreConfig, PulumiBuilder};
use secretsync::registry::BuiltStore;
use secretsync::rotation::{self, Action, RotationPlan};
use secretsync::{FingerprintKey, SecretSourceExt, SecretWriter};
use secretsync_fakes::kube::FakeKube;
use secretsync_fakes::pulumi::FakeEsc;
use secretsync_k8s::KubeSink;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/manifests/seed002");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn secret_data(kube: &FakeKube, ns: &str, name: &str) -> BTreeMap<String, String> {
    let s = kube
        .object("v1", "secrets", Some(ns), name)
        .unwrap_or_else(|| panic!("Secret {ns}/{name}"));
    s["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            (k.clone(), String::from_utf8(bytes).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn seed_002_preview_environment_into_a_preview_pr_namespace() {
    secretsync_k8s::install_crypto_provider();
    let esc = FakeEsc::start().await;
    let kube = FakeKube::start().await;
    let environment = read("environment.yaml");
    esc.set_yaml("aphiria", "aphiria.com", "base", "values:\n  region: nyc3\n");
    esc.set_yaml("aphiria", "aphiria.com", "Preview", &environment);
    let token = esc.org_token("aphiria");

    // The store, with the provider's schema.
    let store_doc: serde_yaml::Value = serde_yaml::from_str(&read("store.yaml")).unwrap();
    let config: EscStoreConfig =
        serde_yaml::from_value(store_doc["spec"]["provider"]["pulumi"].clone()).expect("ESO's schema");
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    assert_eq!(config.token_ref().unwrap().1.name, "pulumi-access-token");
    let fresh = Duration::from_millis(100);
    let source = Arc::new(
        PulumiBuilder::new()
            .with_token(token.as_str())
            .with_organization(&config.organization)
            .with_project(&config.project)
            .with_environment(&config.environment)
            .with_api_url(esc.api_url())
            .with_freshness(fresh)
            .build()
            .unwrap(),
    );

    let stand_in = "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: esc-aphiria-preview}\nspec: {provider: {fake: {data: []}}}\n---\n";
    let m = load_str(&format!("{stand_in}{}", read("secrets.yaml")), "seed002.yaml")
        .into_result()
        .unwrap();
    let id = StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: "esc-aphiria-preview".into(),
    };
    let stores: BTreeMap<StoreId, BuiltStore> = [(
        id.clone(),
        BuiltStore {
            source: source.clone(),
            writer: Some(source.clone()),
        },
    )]
    .into();
    let engine = Engine::new(stores, Arc::new(KubeSink::new(kube.client())));

    // 1. First sync: both Secrets in preview-pr-123, from one open and one read.
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(r.writes, 2);
    let ops: Vec<&str> = esc.requests().iter().map(|r| r.operation()).collect();
    assert_eq!(ops, ["OpenEnvironment", "ReadOpenEnvironment"]);
    let db = secret_data(&kube, "preview-pr-123", "db-env-var-secrets");
    assert_eq!(db["POSTGRES_USER"], "aphiria");
    assert_eq!(db["POSTGRES_PASSWORD"], "placeholder-password");
    let pull = kube
        .object("v1", "secrets", Some("preview-pr-123"), "ghcr-pull-secret")
        .unwrap();
    assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
    let docker: serde_json::Value =
        serde_json::from_str(&secret_data(&kube, "preview-pr-123", "ghcr-pull-secret")[".dockerconfigjson"]).unwrap();
    assert_eq!(docker["auths"]["ghcr.io"]["password"], "ghp_placeholder");
    assert_eq!(
        docker["auths"]["ghcr.io"]["auth"],
        base64::engine::general_purpose::STANDARD.encode("aphiria-bot:ghp_placeholder")
    );

    // 2. A second cycle: no write, one ETag check for the one environment.
    esc.clear_log();
    kube.clear_requests();
    tokio::time::sleep(fresh * 2).await;
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!((r.writes, kube.write_count()), (0, 0));
    let ops: Vec<&str> = esc.requests().iter().map(|r| r.operation()).collect();
    assert_eq!(ops, ["GetEnvironmentETag"]);

    // 3. The quarterly rotation of the PostgreSQL password, through the writer.
    let writers: BTreeMap<StoreId, Arc<dyn SecretWriter>> = [(id, source.clone() as Arc<dyn SecretWriter>)].into();
    let plan = RotationPlan::load(std::path::Path::new(&format!("{DIR}/rotation.yaml"))).unwrap();
    let plans = rotation::plan(&plan, &writers, true, &|_: &str| None, &FingerprintKey::random())
        .await
        .unwrap();
    assert!(plans.iter().all(|p| p.action == Action::Rotate), "{plans:?}");
    let results = rotation::apply(plans, &writers).await;
    assert!(results.iter().all(|r| r.error.is_none()), "{results:?}");
    let after = esc.yaml("aphiria", "aphiria.com", "Preview").unwrap();
    let changed: Vec<(&str, &str)> = environment.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(environment.lines().count(), after.lines().count());
    assert_eq!(changed.len(), 2, "exactly the two rotated lines: {changed:?}");
    assert!(
        changed
            .iter()
            .all(|(a, _)| a.contains("placeholder-password") || a.contains("placeholder-prometheus"))
    );
    let new_pw = source
        .get_value(r#"pulumiConfig["postgresql:password"]"#)
        .await
        .unwrap();
    tokio::time::sleep(fresh * 2).await;
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert!(r.all_synced(), "{}", r.to_text());
    assert_eq!(r.writes, 1, "only the database Secret reads the rotated password");
    assert_eq!(
        secret_data(&kube, "preview-pr-123", "db-env-var-secrets")["POSTGRES_PASSWORD"].as_bytes(),
        new_pw.expose()
    );
}
