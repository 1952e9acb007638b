//! Seed 000's scenario end to end, across real clients: GCP Secret Manager (the faithful
//! fake, through google-cloud-secretmanager-v1), AWS Secrets Manager (moto's server, through
//! aws-sdk-secretsmanager) and Kubernetes (the fake API server, through kube). Rotation
//! bootstraps the generated secrets, a re-run changes nothing, `--rotate` changes only the
//! generated ones, updates their Secrets — the database's before the backend's — and
//! restarts exactly their consumers.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, PostParams};
use secretsync::engine::{CycleOptions, Engine};
use secretsync::manifest::{SpecId, StoreId, load_str};
use secretsync::registry::EnvFileCredentials;
use secretsync::rotation::{self, Action, RotationPlan};
use secretsync::{FingerprintKey, SecretValue, SecretWriter, WriteRequest};
use secretsync_fakes::gcp::{FakeSecretManager, VersionState};
use secretsync_fakes::kube::FakeKube;
use secretsync_fakes::moto::Moto;
use secretsync_k8s::{KubeRestarter, KubeSink, RESTARTED_AT_ANNOTATION};
use serde_json::json;

const PROJECT: &str = "development-485000";

fn manifests(gcp: &str, aws: &str, s3_key: &str) -> String {
    format!(
        r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: gsm-tomoda}}
spec:
  provider:
    gcpsm: {{projectID: {PROJECT}, endpoint: "{gcp}"}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: aws-sm-tomoda}}
spec:
  provider:
    aws:
      service: SecretsManager
      region: ap-northeast-1
      endpoint: "{aws}"
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-eso-credentials, key: access-key, namespace: external-secrets}}
          secretAccessKeySecretRef: {{name: aws-eso-credentials, key: secret-access-key, namespace: external-secrets}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: backend-secrets-dev, namespace: tomoda}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: gsm-tomoda, kind: ClusterSecretStore}}
  target: {{name: backend-secrets-dev}}
  data:
    - {{secretKey: JWT_SECRET, remoteRef: {{key: tomoda-jwt-secret}}}}
    - {{secretKey: ENCRYPTION_KEY, remoteRef: {{key: tomoda-encryption-key}}}}
    - {{secretKey: DB_PASSWORD, remoteRef: {{key: tomoda-db-password}}}}
    - {{secretKey: REDIS_PASSWORD, remoteRef: {{key: tomoda-redis-password}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: postgres-dev-credentials-eso, namespace: data}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: gsm-tomoda, kind: ClusterSecretStore}}
  target:
    name: postgres-dev-credentials-eso
    template:
      type: kubernetes.io/basic-auth
      data: {{username: tomoda_dev_user, password: "{{{{ .password }}}}"}}
  data:
    - {{secretKey: password, remoteRef: {{key: tomoda-db-password}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: s3-uploader-secret, namespace: tomoda}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: aws-sm-tomoda, kind: ClusterSecretStore}}
  target: {{name: s3-uploader-secret}}
  data:
    - {{secretKey: AWS_ACCESS_KEY_ID, remoteRef: {{key: {s3_key}, property: AWS_ACCESS_KEY_ID}}}}
    - {{secretKey: AWS_SECRET_ACCESS_KEY, remoteRef: {{key: {s3_key}, property: AWS_SECRET_ACCESS_KEY}}}}
    - {{secretKey: S3_BUCKET, remoteRef: {{key: {s3_key}, property: S3_BUCKET}}}}
    - {{secretKey: S3_REGION, remoteRef: {{key: {s3_key}, property: S3_REGION}}}}
    - {{secretKey: S3_BASE_URL, remoteRef: {{key: {s3_key}, property: S3_BASE_URL}}}}
"#
    )
}

const PLAN: &str = r#"
store: {name: gsm-tomoda}
secrets:
  - {key: tomoda-jwt-secret, generate: "hex:32", env: TOMODA_JWT_SECRET, impact: "All active sessions invalidated"}
  - {key: tomoda-encryption-key, generate: "hex:16", env: TOMODA_ENCRYPTION_KEY}
  - key: tomoda-db-password
    generate: "base64:24"
    env: TOMODA_DB_PASSWORD
    order: [data/postgres-dev-credentials-eso, tomoda/backend-secrets-dev]
  - {key: tomoda-redis-password, generate: "base64:24", env: TOMODA_REDIS_PASSWORD}
  - {key: tomoda-google-client-id, generate: manual, env: TOMODA_GOOGLE_CLIENT_ID}
"#;

fn template(secret: Option<&str>, volume: bool) -> serde_json::Value {
    let container = match (secret, volume) {
        (Some(s), false) => json!({"name": "app", "image": "app", "envFrom": [{"secretRef": {"name": s}}]}),
        (Some(_), true) => {
            json!({"name": "app", "image": "app", "volumeMounts": [{"name": "creds", "mountPath": "/creds"}]})
        }
        (None, _) => json!({"name": "app", "image": "app"}),
    };
    let mut spec = json!({"containers": [container]});
    if let (Some(s), true) = (secret, volume) {
        spec["volumes"] = json!([{"name": "creds", "secret": {"secretName": s}}]);
    }
    spec
}

async fn deployment(client: &kube::Client, ns: &str, name: &str, secret: Option<&str>) {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": template(secret, false)}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

async fn restarted(client: &kube::Client) -> Vec<String> {
    let mut out = vec![];
    for ns in ["tomoda", "data"] {
        for d in Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
            .unwrap()
        {
            let ann = d
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .unwrap_or_default();
            if ann.contains_key(RESTARTED_AT_ANNOTATION) {
                out.push(format!("Deployment {ns}/{}", d.metadata.name.unwrap()));
            }
        }
        for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
            .unwrap()
        {
            let ann = s
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .unwrap_or_default();
            if ann.contains_key(RESTARTED_AT_ANNOTATION) {
                out.push(format!("StatefulSet {ns}/{}", s.metadata.name.unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn seed_000_bootstrap_rerun_and_rotate_across_gcp_aws_and_kubernetes() {
    secretsync_k8s::install_crypto_provider();
    let gcp = FakeSecretManager::start().await;
    let kube = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    kube.create_namespaces(&["tomoda", "data", "external-secrets"]);
    let moto = Moto::shared();
    let client = kube.client();

    // The workloads of seed 000: the backend reads backend-secrets-dev, CNPG's Postgres
    // mounts its credentials, the uploader reads its S3 keys, one reads nothing.
    deployment(&client, "tomoda", "tomoda-api", Some("backend-secrets-dev")).await;
    deployment(&client, "tomoda", "tomoda-async", Some("backend-secrets-dev")).await;
    deployment(&client, "tomoda", "s3-uploader", Some("s3-uploader-secret")).await;
    deployment(&client, "tomoda", "unrelated", None).await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "postgres-dev", "namespace": "data"},
        "spec": {"serviceName": "postgres-dev", "selector": {"matchLabels": {"app": "pg"}}, "template": {"metadata": {"labels": {"app": "pg"}}, "spec": template(Some("postgres-dev-credentials-eso"), true)}}
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), "data")
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();

    // ESO's aws-eso-credentials Secret, out of a cluster: files under a credentials folder.
    let creds = tempfile::tempdir().unwrap();
    let dir = creds.path().join("external-secrets/aws-eso-credentials");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("access-key"), "testing").unwrap();
    std::fs::write(dir.join("secret-access-key"), "testing").unwrap();

    let s3_key = format!("tomoda-s3-uploader-dev-{}", std::process::id());
    let m = load_str(&manifests(&gcp.url(), moto.url(), &s3_key), "seed000.yaml")
        .into_result()
        .unwrap();
    let registry = secretsync::registry().with_credentials(Arc::new(EnvFileCredentials::with_dir(creds.path())));
    let (stores, errors) = registry.build_all(&m).await;
    assert!(errors.is_empty(), "{errors:?}");
    let writers: BTreeMap<StoreId, Arc<dyn SecretWriter>> = stores
        .iter()
        .filter_map(|(id, b)| b.writer.clone().map(|w| (id.clone(), w)))
        .collect();

    // Terraform writes the S3 uploader's JSON blob to AWS SM.
    let aws = writers.iter().find(|(id, _)| id.name == "aws-sm-tomoda").unwrap().1;
    let blob = json!({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "uploader-secret", "S3_BUCKET": "tomoda-assets-dev", "S3_REGION": "ap-northeast-1", "S3_BASE_URL": "https://assets-dev.tomoda.life"});
    aws.put(&WriteRequest::new(&s3_key, SecretValue::from(blob.to_string())))
        .await
        .unwrap();

    let engine = Engine::new(stores, Arc::new(KubeSink::new(client.clone())))
        .with_restarter(Arc::new(KubeRestarter::new(client.clone())));
    let plan = RotationPlan::parse(PLAN, std::path::Path::new("plan.yaml")).unwrap();
    let key = FingerprintKey::random();
    let no_env = |_: &str| None;
    let actions = |plans: &[rotation::KeyPlan]| {
        plans
            .iter()
            .map(|p| (p.key.clone(), p.action))
            .collect::<BTreeMap<_, _>>()
    };

    // 1. Bootstrap with empty values.
    let plans = rotation::plan(&plan, &writers, false, &no_env, &key).await.unwrap();
    let a = actions(&plans);
    for k in [
        "tomoda-jwt-secret",
        "tomoda-encryption-key",
        "tomoda-db-password",
        "tomoda-redis-password",
    ] {
        assert_eq!(a[k], Action::Create, "{k}");
    }
    assert_eq!(
        a["tomoda-google-client-id"],
        Action::Missing,
        "manual secrets are reported missing"
    );
    let results = rotation::apply(plans, &writers).await;
    assert!(results.iter().all(|r| r.error.is_none()), "{results:?}");
    let steps = rotation::propagate(&results, &plan, &m, &engine).await;
    let order: Vec<&str> = steps.iter().map(|s| s.spec.as_str()).collect();
    assert_eq!(
        order,
        ["data/postgres-dev-credentials-eso", "tomoda/backend-secrets-dev"]
    );
    assert!(steps.iter().all(|s| s.verified), "{steps:?}");
    let parent = format!("projects/{PROJECT}");
    assert_eq!(
        gcp.data(&parent, "tomoda-jwt-secret", 1).unwrap().len(),
        64,
        "openssl rand -hex 32"
    );
    assert_eq!(gcp.version_count(&parent, "tomoda-google-client-id"), 0);
    // The AWS-fed Secret, through the same engine.
    let only = |ns: &str, n: &str| CycleOptions {
        dry_run: false,
        only: Some(
            [SpecId {
                namespace: ns.into(),
                name: n.into(),
            }]
            .into(),
        ),
        ..Default::default()
    };
    let r = engine.run(&m, &only("tomoda", "s3-uploader-secret")).await;
    assert!(r.all_synced(), "{}", r.to_text());
    let secret = kube
        .object("v1", "secrets", Some("tomoda"), "s3-uploader-secret")
        .expect("created");
    assert_eq!(secret["data"].as_object().unwrap().len(), 5);
    assert_eq!(
        restarted(&client).await,
        Vec::<String>::new(),
        "creating Secrets restarts nothing"
    );

    // 2. A second run changes nothing: no version added, no Kubernetes write.
    gcp.clear_log();
    kube.clear_requests();
    let plans = rotation::plan(&plan, &writers, false, &no_env, &key).await.unwrap();
    assert!(
        plans.iter().all(|p| matches!(p.action, Action::Keep | Action::Missing)),
        "{plans:?}"
    );
    let results = rotation::apply(plans, &writers).await;
    assert!(rotation::propagate(&results, &plan, &m, &engine).await.is_empty());
    let r = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(r.writes, 0, "{}", r.to_text());
    assert_eq!((gcp.count("AddSecretVersion"), kube.write_count()), (0, 0));

    // 3. --rotate: only the generated ones, old versions disabled, their Secrets updated in
    // order, exactly their consumers restarted once.
    kube.clear_requests();
    let before_pw = gcp.data(&parent, "tomoda-db-password", 1).unwrap();
    let plans = rotation::plan(&plan, &writers, true, &no_env, &key).await.unwrap();
    let a = actions(&plans);
    assert_eq!(a.values().filter(|a| **a == Action::Rotate).count(), 4);
    assert_eq!(a["tomoda-google-client-id"], Action::Missing);
    let results = rotation::apply(plans, &writers).await;
    for k in [
        "tomoda-jwt-secret",
        "tomoda-encryption-key",
        "tomoda-db-password",
        "tomoda-redis-password",
    ] {
        assert_eq!(
            gcp.state(&parent, k, 1),
            Some(VersionState::Disabled),
            "{k}: the old version is disabled"
        );
        assert_eq!(gcp.state(&parent, k, 2), Some(VersionState::Enabled), "{k}");
    }
    assert_ne!(gcp.data(&parent, "tomoda-db-password", 2).unwrap(), before_pw);
    let steps = rotation::propagate(&results, &plan, &m, &engine).await;
    assert_eq!(
        steps.iter().map(|s| s.spec.as_str()).collect::<Vec<_>>(),
        ["data/postgres-dev-credentials-eso", "tomoda/backend-secrets-dev"]
    );
    assert!(steps.iter().all(|s| s.verified), "{steps:?}");
    assert_eq!(steps[0].restarted, ["StatefulSet data/postgres-dev"]);
    assert_eq!(
        steps[1].restarted,
        ["Deployment tomoda/tomoda-api", "Deployment tomoda/tomoda-async"]
    );
    assert_eq!(
        restarted(&client).await,
        [
            "Deployment tomoda/tomoda-api",
            "Deployment tomoda/tomoda-async",
            "StatefulSet data/postgres-dev"
        ]
    );
    // The database's Secret was written before the backend's.
    let writes = kube.writes();
    let pos = |name: &str| {
        writes
            .iter()
            .position(|w| w.path.ends_with(&format!("/secrets/{name}")))
            .unwrap_or_else(|| panic!("{name} written"))
    };
    assert!(pos("postgres-dev-credentials-eso") < pos("backend-secrets-dev"));
    let pg = kube
        .object("v1", "secrets", Some("data"), "postgres-dev-credentials-eso")
        .unwrap();
    use base64::Engine as _;
    let pw = base64::engine::general_purpose::STANDARD
        .decode(pg["data"]["password"].as_str().unwrap())
        .unwrap();
    assert_eq!(pw, gcp.data(&parent, "tomoda-db-password", 2).unwrap());
}
