//! The `gcpsm` factory: a store manifest in, a working source out (against the fake), and
//! no credential in Debug output or errors.

use std::sync::Arc;

use secretsync_core::manifest::load_str;
use secretsync_core::registry::{EnvFileCredentials, Registry};
use secretsync_core::testkit::{CANARY, assert_no_canary};
use secretsync_core::{Error, RemoteKey, SecretValue, WriteRequest};
use secretsync_fakes::gcp::FakeSecretManager;
use secretsync_gcp::{GcpCredentials, GcpFactory, GcpSecretManagerBuilder};

fn store_yaml(provider: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata:\n  name: gsm-tomoda\nspec:\n  provider:\n    gcpsm:\n{provider}"
    )
}

fn registry(dir: &std::path::Path) -> Registry {
    let mut r = Registry::with_builtin().with_credentials(Arc::new(EnvFileCredentials::with_dir(dir)));
    r.register(Arc::new(GcpFactory));
    r
}

#[tokio::test]
async fn builds_a_store_that_reads_and_writes() {
    let fake = FakeSecretManager::start().await;
    let yaml = store_yaml(&format!(
        "      projectID: development-485000\n      endpoint: {}\n      secretVersionSelectionPolicy: LatestOrFetch\n      auth:\n        secretRef:\n          secretAccessKeySecretRef:\n            name: gcp-sa\n            key: key.json\n            namespace: external-secrets\n",
        fake.url()
    ));
    let m = load_str(&yaml, "store.yaml").into_result().expect("parses");
    let dir = tempfile::tempdir().unwrap();
    // No key file exists: an http:// endpoint (an emulator) must not need one.
    let built = registry(dir.path()).build(&m.stores[0]).await.expect("build");
    let writer = built.writer.expect("gcpsm accepts writes");
    assert_eq!(built.source.provider(), "gcpsm");
    writer
        .put(&WriteRequest::new("tomoda-jwt-secret", SecretValue::from("j1")))
        .await
        .unwrap();
    assert_eq!(
        built
            .source
            .get(&RemoteKey::new("tomoda-jwt-secret"))
            .await
            .unwrap()
            .value,
        SecretValue::from("j1")
    );
    assert_eq!(
        built.source.api_calls(),
        4,
        "GetSecret, CreateSecret, AddSecretVersion, AccessSecretVersion"
    );
    assert!(fake.requests().iter().all(|r| !r.authorized));
}

#[tokio::test]
async fn bad_policy_and_federation_are_manifest_errors() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = store_yaml("      projectID: p\n      secretVersionSelectionPolicy: Newest\n");
    let m = load_str(&yaml, "store.yaml").into_result().expect("parses");
    let e = registry(dir.path()).build(&m.stores[0]).await.unwrap_err();
    assert!(matches!(e, Error::Manifest { .. }), "{e}");
    assert!(
        e.to_string().contains("secretVersionSelectionPolicy") && e.to_string().contains("Newest"),
        "{e}"
    );

    let yaml = store_yaml("      projectID: p\n      auth:\n        workloadIdentityFederation: {}\n");
    let m = load_str(&yaml, "store.yaml").into_result().expect("parses");
    let e = registry(dir.path()).build(&m.stores[0]).await.unwrap_err();
    assert!(e.to_string().contains("workloadIdentityFederation"), "{e}");
}

#[tokio::test]
async fn a_service_account_key_is_read_through_the_resolver_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let key_dir = dir.path().join("external-secrets/gcp-sa");
    std::fs::create_dir_all(&key_dir).unwrap();
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "from-the-key",
        "private_key_id": "abc",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"),
        "client_email": "eso@from-the-key.iam.gserviceaccount.com",
    });
    std::fs::write(key_dir.join("key.json"), key.to_string()).unwrap();
    // https endpoint: the key is used; no projectID: the key's project_id is.
    let yaml = store_yaml(
        "      endpoint: https://secretmanager.googleapis.com\n      auth:\n        secretRef:\n          secretAccessKeySecretRef:\n            name: gcp-sa\n            key: key.json\n            namespace: external-secrets\n",
    );
    let m = load_str(&yaml, "store.yaml").into_result().expect("parses");
    let built = registry(dir.path())
        .build(&m.stores[0])
        .await
        .expect("build needs no network");
    let dbg = format!("{:?} {:?}", built.source, built.writer);
    assert_no_canary(&dbg, "Debug of the built store");
    assert!(
        dbg.contains("from-the-key") && dbg.contains("ServiceAccountKey"),
        "{dbg}"
    );

    // A key that is not JSON: a clear error that does not quote it.
    std::fs::write(key_dir.join("key.json"), format!("not json {CANARY}")).unwrap();
    let e = registry(dir.path()).build(&m.stores[0]).await.unwrap_err();
    assert_no_canary(&format!("{e} {e:?}"), "the error of a bad key");
    assert!(e.to_string().contains("not valid JSON"), "{e}");

    // A missing key names the secret and where to put it.
    std::fs::remove_file(key_dir.join("key.json")).unwrap();
    let e = registry(dir.path()).build(&m.stores[0]).await.unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("gcp-sa"), "{e}");
}

#[test]
fn builder_debug_has_no_credentials() {
    let b = GcpSecretManagerBuilder::new()
        .with_project_id("p")
        .with_credentials(GcpCredentials::ServiceAccountKey(SecretValue::from(CANARY)));
    assert_no_canary(&format!("{b:?}"), "Debug of the builder");
    assert!(format!("{b:?}").contains("ServiceAccountKey([REDACTED])"));
}

#[test]
fn emulator_host_means_plain_http_and_anonymous() {
    let b = GcpSecretManagerBuilder::new()
        .with_project_id("p")
        .with_emulator_host("127.0.0.1:8085");
    assert_eq!(b.effective_endpoint(), "http://127.0.0.1:8085");
    assert!(format!("{b:?}").contains("Anonymous"));
    let regional = GcpSecretManagerBuilder::new()
        .with_project_id("p")
        .with_location("us-east1");
    assert_eq!(
        regional.effective_endpoint(),
        "https://secretmanager.us-east1.rep.googleapis.com"
    );
    let e = GcpSecretManagerBuilder::new().build().unwrap_err();
    assert!(e.to_string().contains("GOOGLE_CLOUD_PROJECT"), "{e}");
}

/// `from_env` and the factory read `GOOGLE_CLOUD_PROJECT` and `SECRETMANAGER_EMULATOR_HOST`.
/// Environment variables cannot be set safely in a threaded test, so the test runs itself
/// again in a child process with them set.
#[test]
fn from_env_reads_project_and_emulator_host() {
    const CHILD: &str = "SECRETSYNC_GCP_FROM_ENV_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "from_env_reads_project_and_emulator_host",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env(secretsync_gcp::EMULATOR_HOST_ENV, "127.0.0.1:9")
            .env(secretsync_gcp::PROJECT_ENV, "env-project")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "child run failed:\n{text}"
        );
        return;
    }
    let b = GcpSecretManagerBuilder::from_env();
    assert_eq!(b.effective_endpoint(), "http://127.0.0.1:9");
    let src = b.build().unwrap();
    assert_eq!((src.project(), src.endpoint()), ("env-project", "http://127.0.0.1:9"));
    assert!(format!("{src:?}").contains("Anonymous"));
    // The factory: a store without endpoint or projectID takes both from the environment.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = load_str(&store_yaml("      {}\n"), "store.yaml")
            .into_result()
            .expect("parses");
        let dir = tempfile::tempdir().unwrap();
        let built = registry(dir.path()).build(&m.stores[0]).await.expect("build");
        let dbg = format!("{:?}", built.source);
        assert!(
            dbg.contains("http://127.0.0.1:9") && dbg.contains("env-project"),
            "{dbg}"
        );
    });
}
