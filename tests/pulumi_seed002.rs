//! Seed 002 (aphiria.com) end to end: its Pulumi ESC environment `aphiria.com/Preview` (the
//! fake ESC API, through the provider) synced into a `preview-pr-*` namespace of Kubernetes
//! (the fake API server, through kube): the database credentials and the GHCR pull secret,
//! from the manifests in examples/manifests/seed002/. A second cycle writes nothing and asks
//! ESC one HEAD; the quarterly rotation edits one line of the environment's YAML and the
//! Secret follows.
//!
//! The store and ExternalSecrets are the example files as they are, built through the
//! facade's registry (the `pulumi` plug-in).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use secretsync::engine::{CycleOptions, Engine};
use secretsync::manifest::{StoreId, load_str};
use secretsync::registry::EnvFileCredentials;
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
    kube.create_namespaces(&["preview-pr-123", "external-secrets"]);
    let environment = read("environment.yaml");
    esc.set_yaml("aphiria", "aphiria.com", "base", "values:\n  region: nyc3\n");
    esc.set_yaml("aphiria", "aphiria.com", "Preview", &environment);
    let token = esc.org_token("aphiria");

    // The manifests as the team would write them; only the API URL points at the fake, and
    // the token comes through the credential resolver, as out of a cluster.
    let mut m = load_str(
        &format!("{}\n---\n{}", read("store.yaml"), read("secrets.yaml")),
        "seed002.yaml",
    )
    .into_result()
    .unwrap();
    assert_eq!(m.stores[0].spec.provider.name(), "pulumi");
    m.stores[0].spec.provider.config_mut()["apiUrl"] = serde_json::json!(esc.api_url());
    let creds = tempfile::tempdir().unwrap();
    let token_file = creds.path().join("external-secrets/pulumi-access-token/token");
    std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    std::fs::write(&token_file, token.as_str()).unwrap();
    let registry = secretsync::registry().with_credentials(Arc::new(EnvFileCredentials::with_dir(creds.path())));
    assert!(registry.validate(&m.stores[0]).is_empty());
    let (stores, errors) = registry.build_all(&m).await;
    assert!(errors.is_empty(), "{errors:?}");
    let id = m.stores[0].id.clone();
    let source = stores[&id].source.clone();
    let writer = stores[&id].writer.clone().expect("ESC stores accept writes");
    let fresh = secretsync::pulumi::DEFAULT_FRESHNESS;
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
    let writers: BTreeMap<StoreId, Arc<dyn SecretWriter>> = [(id, writer)].into();
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
