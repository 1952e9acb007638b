//! Rotation works on every store with a SecretWriter: AWS (moto), GCP (the fake), Doppler
//! (the fake), the local file and ESO's fake provider — through the real clients. Each runs
//! seed 000's ensure rules: bootstrap creates, a re-run keeps, an env value that differs
//! updates, `--rotate` regenerates only generated kinds.

use std::collections::BTreeMap;
use std::sync::Arc;

use secretsync::manifest::{StoreId, StoreKind};
use secretsync::rotation::{self, Action, RotationPlan};
use secretsync::sources::{FileFormat, FileSource, MemorySource};
use secretsync::{FingerprintKey, RemoteKey, SecretWriter};

fn plan(prefix: &str) -> RotationPlan {
    let text = format!(
        "store: {{name: s}}\nsecrets:\n  - {{key: {prefix}JWT_SECRET, generate: \"hex:32\", env: JWT}}\n  - {{key: {prefix}DB_PASSWORD, generate: \"base64:24\"}}\n  - {{key: {prefix}CLIENT_ID, generate: manual, env: CLIENT}}\n"
    );
    RotationPlan::parse(&text, std::path::Path::new("plan.yaml")).unwrap()
}

async fn ensure_rules(name: &str, writer: Arc<dyn SecretWriter>, prefix: &str) {
    let id = StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: "s".into(),
    };
    let writers = BTreeMap::from([(id, writer.clone())]);
    let plan = plan(prefix);
    let key = FingerprintKey::random();
    let run = |rotate: bool, env: Vec<(&'static str, &'static str)>| {
        let plan = plan.clone();
        let writers = writers.clone();
        let key = key.clone();
        async move {
            let lookup = move |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
            let plans = rotation::plan(&plan, &writers, rotate, &lookup, &key)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let actions: Vec<Action> = plans.iter().map(|p| p.action).collect();
            let results = rotation::apply(plans, &writers).await;
            for r in &results {
                assert!(r.error.is_none(), "{name}: {:?}", r.error);
            }
            actions
        }
    };
    assert_eq!(
        run(false, vec![]).await,
        [Action::Create, Action::Create, Action::Missing],
        "{name}: bootstrap"
    );
    let jwt = writer
        .get(&RemoteKey::new(format!("{prefix}JWT_SECRET")))
        .await
        .unwrap()
        .value;
    assert_eq!(jwt.len(), 64, "{name}");
    assert_eq!(
        run(false, vec![]).await,
        [Action::Keep, Action::Keep, Action::Missing],
        "{name}: re-run"
    );
    assert_eq!(
        run(false, vec![("JWT", "from-env"), ("CLIENT", "abc")]).await,
        [Action::Update, Action::Keep, Action::Create],
        "{name}"
    );
    assert_eq!(
        writer
            .get(&RemoteKey::new(format!("{prefix}JWT_SECRET")))
            .await
            .unwrap()
            .value
            .expose(),
        b"from-env"
    );
    assert_eq!(
        run(false, vec![("JWT", "from-env"), ("CLIENT", "abc")]).await,
        [Action::Keep, Action::Keep, Action::Keep],
        "{name}"
    );
    let db = writer
        .get(&RemoteKey::new(format!("{prefix}DB_PASSWORD")))
        .await
        .unwrap()
        .value;
    assert_eq!(
        run(true, vec![]).await,
        [Action::Rotate, Action::Rotate, Action::Keep],
        "{name}: --rotate"
    );
    assert_ne!(
        writer
            .get(&RemoteKey::new(format!("{prefix}DB_PASSWORD")))
            .await
            .unwrap()
            .value,
        db,
        "{name}"
    );
    assert_eq!(
        writer
            .get(&RemoteKey::new(format!("{prefix}CLIENT_ID")))
            .await
            .unwrap()
            .value
            .expose(),
        b"abc"
    );
}

#[tokio::test]
async fn aws_on_moto() {
    let source = secretsync::aws::AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(secretsync_fakes::moto::Moto::shared().url())
        .with_credentials("testing", "testing".into())
        .build()
        .await
        .unwrap();
    ensure_rules("aws", Arc::new(source), &format!("R{:08X}_", rand::random::<u32>())).await;
}

#[tokio::test]
async fn gcp_on_the_fake() {
    let fake = secretsync_fakes::gcp::FakeSecretManager::start().await;
    let source = secretsync::gcp::GcpSecretManagerBuilder::new()
        .with_project_id("p")
        .with_endpoint(fake.url())
        .build()
        .unwrap();
    ensure_rules("gcpsm", Arc::new(source), "").await;
}

#[tokio::test]
async fn doppler_on_the_fake() {
    let fake = secretsync_fakes::doppler::FakeDoppler::start().await;
    let token = fake.service_token("backend", "prd");
    let source = secretsync::doppler::DopplerBuilder::new()
        .with_token(token)
        .with_api_host(fake.url())
        .build()
        .unwrap();
    ensure_rules("doppler", Arc::new(source), "").await;
}

#[tokio::test]
async fn file_and_fake() {
    let dir = tempfile::tempdir().unwrap();
    ensure_rules(
        "file",
        Arc::new(FileSource::new(dir.path().join("s.yaml"), FileFormat::Yaml)),
        "",
    )
    .await;
    ensure_rules("fake", Arc::new(MemorySource::new("fake")), "").await;
}
