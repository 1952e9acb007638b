//! Change events end to end: how long from a provider's change event to the Kubernetes
//! Secret holding the new value, with the real `secretsync` daemon (refreshInterval 1h, so
//! only the event can explain the sync), into the Kubernetes fake, with a Deployment that
//! consumes the Secret.
//!
//! `cargo bench --features full --bench events` prints, per source, the median / min /
//! max latency over 10 changes, the values read per event-driven sync and the consumers
//! restarted per change. Sources: a signed Doppler webhook (the Doppler fake), an
//! authenticated `POST /refresh` (the `file` provider), AWS Secrets Manager with an
//! EventBridge event on an SQS queue (both on moto's server), and GCP Secret Manager (the
//! GCP fake) with its notification published to a topic on the real Pub/Sub emulator, as
//! Secret Manager publishes it (attributes `eventType`/`secretId` naming the project by
//! number, the version resource as JSON).

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use secretsync_fakes::daemon::DaemonProcess;
use secretsync_fakes::kube::FakeKube;

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");
const ROUNDS: usize = 10;

fn start(dir: &Path, kubeconfig: &Path, envs: &[(&str, String)]) -> DaemonProcess {
    let mut all = vec![
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("SECRETSYNC_REFRESH_TOKEN", "bench-token".to_string()),
        ("SECRETSYNC_STATE_DIR", dir.join("state").display().to_string()),
    ];
    all.extend(envs.iter().cloned());
    let (d, first) = DaemonProcess::start(BIN, &dir.join("m.yaml"), &[], &all);
    assert_eq!(first["writes"], 1, "{first}");
    d
}

fn secret_value(kube: &FakeKube, key: &str) -> Option<Vec<u8>> {
    let s = kube.object("v1", "secrets", Some("dev"), "api")?;
    let b64 = s["data"][key].as_str()?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

struct Round {
    latency: Duration,
    values_read: u64,
    restarts: usize,
}

/// Sets the new value at the provider, sends the event, waits until the Secret has it, then
/// asks `observe` for the values read and the consumers restarted by that sync.
fn measure_with(
    kube: &FakeKube,
    mut change: impl FnMut(usize) -> String,
    mut send: impl FnMut(usize),
    mut observe: impl FnMut() -> (u64, usize),
) -> Vec<Round> {
    let mut rounds = vec![];
    for i in 0..ROUNDS {
        let want = change(i);
        let t0 = Instant::now();
        send(i);
        loop {
            if secret_value(kube, "DB_PASSWORD").as_deref() == Some(want.as_bytes()) {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "round {i}: no sync in 30 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        let latency = t0.elapsed();
        let (values_read, restarts) = observe();
        rounds.push(Round {
            latency,
            values_read,
            restarts,
        });
        // Apart from the next change, as real changes are.
        std::thread::sleep(Duration::from_millis(300));
    }
    rounds
}

/// [`measure_with`] for the daemon: what its JSON report of the sync says.
fn measure(
    kube: &FakeKube,
    d: &DaemonProcess,
    change: impl FnMut(usize) -> String,
    send: impl FnMut(usize),
) -> Vec<Round> {
    measure_with(kube, change, send, || {
        let r = d.next_report(Duration::from_secs(10)).expect("its report");
        (
            r["values_read"].as_u64().unwrap_or(0),
            r["restarts"].as_array().map_or(0, Vec::len),
        )
    })
}

fn print(name: &str, rounds: &[Round]) {
    let mut l: Vec<Duration> = rounds.iter().map(|r| r.latency).collect();
    l.sort();
    let reads: Vec<u64> = rounds.iter().map(|r| r.values_read).collect();
    let restarts: Vec<usize> = rounds.iter().map(|r| r.restarts).collect();
    println!(
        "events/{name}: event → Secret updated: median {:.0} ms, min {:.0} ms, max {:.0} ms over {} changes; values read per sync {:?}; consumers restarted per change {:?}",
        l[l.len() / 2].as_secs_f64() * 1000.0,
        l[0].as_secs_f64() * 1000.0,
        l[l.len() - 1].as_secs_f64() * 1000.0,
        l.len(),
        reads,
        restarts
    );
}

async fn cluster(dir: &Path) -> (FakeKube, std::path::PathBuf) {
    let kube = FakeKube::start().await;
    kube.create_namespaces(&["dev"]);
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api", "namespace": "dev"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}},
            "spec": {"containers": [{"name": "app", "image": "app", "envFrom": [{"secretRef": {"name": "api"}}]}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(kube.client(), "dev")
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig_yaml()).unwrap();
    (kube, kubeconfig)
}

const SPEC: &str = "---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: api, namespace: dev}
spec:
  refreshInterval: 1h
  secretStoreRef: {name: STORE}
  data:
    - {secretKey: DB_PASSWORD, remoteRef: {key: DB_PASSWORD}}
    - {secretKey: K1, remoteRef: {key: K1}}
    - {secretKey: K2, remoteRef: {key: K2}}
    - {secretKey: K3, remoteRef: {key: K3}}
    - {secretKey: K4, remoteRef: {key: K4}}
";

async fn doppler_webhook() {
    let doppler = doppler_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (kube, kubeconfig) = cluster(dir.path()).await;
    let creds = dir.path().join("creds");
    for (name, key, value) in [
        ("doppler-token", "token", doppler.service_token("backend", "prd")),
        ("doppler-webhook", "signing", "whsec-bench".to_string()),
    ] {
        std::fs::create_dir_all(creds.join("dev").join(name)).unwrap();
        std::fs::write(creds.join("dev").join(name).join(key), value).unwrap();
    }
    let m = format!(
        "apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: doppler
  namespace: dev
  annotations: {{secretsync.io/events: doppler-webhook, secretsync.io/events-secret: dev/doppler-webhook/signing}}
spec:
  provider:
    doppler:
      endpoint: \"{}\"
      auth: {{secretRef: {{dopplerToken: {{name: doppler-token, key: token}}}}}}
{}",
        doppler.url(),
        SPEC.replace("STORE", "doppler")
    );
    std::fs::write(dir.path().join("m.yaml"), m).unwrap();
    let path = dir.path().to_path_buf();
    let rounds = tokio::task::block_in_place(|| {
        let d = start(
            &path,
            &kubeconfig,
            &[("SECRETSYNC_SECRETS_DIR", creds.display().to_string())],
        );
        let hook = format!("{}/events/doppler/dev/doppler", d.url);
        let client = reqwest::blocking::Client::new();
        measure(
            &kube,
            &d,
            |i| {
                let v = format!("doppler-{i}");
                doppler.set_secret("backend", "prd", "DB_PASSWORD", &v);
                v
            },
            |i| send_webhook(&client, &hook, i),
        )
    });
    print("doppler-webhook", &rounds);
}

/// A Doppler webhook about `DB_PASSWORD` (round `i`), signed with `whsec-bench`; 202.
fn send_webhook(client: &reqwest::blocking::Client, hook: &str, i: usize) {
    let body = format!(
        r#"{{"type":"config.secrets.update","config":{{"name":"prd","project":"backend"}},"diff":{{"updated":["DB_PASSWORD"]}},"n":{i}}}"#
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec-bench").unwrap();
    mac.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let status = client
        .post(hook)
        .header("x-doppler-signature", sig)
        .body(body)
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 202);
}

/// A Doppler config with `DB_PASSWORD` and four more keys.
async fn doppler_fake() -> secretsync_fakes::doppler::FakeDoppler {
    let doppler = secretsync_fakes::doppler::FakeDoppler::start().await;
    doppler.create_config("backend", "prd");
    doppler.set_secrets(
        "backend",
        "prd",
        [("DB_PASSWORD", "v"), ("K1", "1"), ("K2", "2"), ("K3", "3"), ("K4", "4")],
    );
    doppler
}

/// The operator (in process) instead of the daemon: the same Doppler webhook, the store,
/// ExternalSecret and signing Secret as cluster objects. Values read: Doppler downloads
/// per sync (one download serves any number of keys); restarts: Deployment patches.
async fn operator_doppler() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let doppler = doppler_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (kube, _) = cluster(dir.path()).await;
    let client = kube.client();
    for (name, key, value) in [
        ("doppler-token", "token", doppler.service_token("backend", "prd")),
        ("doppler-webhook", "signing", "whsec-bench".to_string()),
    ] {
        let s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "dev"}, "stringData": {key: value},
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), "dev")
            .create(&PostParams::default(), &s)
            .await
            .unwrap();
    }
    let docs = format!(
        "apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: doppler
  namespace: dev
  annotations: {{secretsync.io/events: doppler-webhook, secretsync.io/events-secret: dev/doppler-webhook/signing}}
spec:
  provider:
    doppler:
      endpoint: \"{}\"
      auth: {{secretRef: {{dopplerToken: {{name: doppler-token, key: token}}}}}}
{}",
        doppler.url(),
        SPEC.replace("STORE", "doppler")
    );
    for doc in serde_norway::Deserializer::from_str(&docs) {
        let v = <serde_json::Value as serde::Deserialize>::deserialize(doc).unwrap();
        let kind = v["kind"].as_str().unwrap().to_string();
        let plural = format!("{}s", kind.to_lowercase());
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("external-secrets.io", "v1", &kind), &plural);
        let obj: DynamicObject = serde_json::from_value(v).unwrap();
        Api::<DynamicObject>::namespaced_with(client.clone(), "dev", &ar)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }
    let registry = secretsync::registry().with_credentials(std::sync::Arc::new(secretsync::k8s::KubeCredentials::new(
        client.clone(),
    )));
    let config = secretsync::operator::ControllerConfig {
        fingerprint_key_secret: None,
        ..Default::default()
    };
    let controller = secretsync::operator::Controller::new(client.clone(), registry, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/events/doppler/dev/doppler", listener.local_addr().unwrap());
    tokio::spawn(secretsync::operator::serve(listener, controller.handle()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(controller.run(async move {
        let _ = stopped.await;
    }));
    let deploy = "/apis/apps/v1/namespaces/dev/deployments/api";
    let restarts = || kube.writes().iter().filter(|r| r.path == deploy).count();
    let downloads = || doppler.count("GET", "/v3/configs/config/secrets/download");
    let rounds = tokio::task::block_in_place(|| {
        let client = reqwest::blocking::Client::new();
        // The first sync done and the signing key read: a signed webhook is accepted.
        let t0 = Instant::now();
        while secret_value(&kube, "DB_PASSWORD").as_deref() != Some(b"v".as_slice()) {
            assert!(t0.elapsed() < Duration::from_secs(60), "the operator's first sync");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Until the signing key is read, every webhook is refused: probe with a signed
        // payload that is not a secrets update (200 "ignored" once the key is there).
        let t0 = Instant::now();
        loop {
            let body = format!(r#"{{"type":"project.updated","n":"{:?}"}}"#, t0.elapsed());
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec-bench").unwrap();
            mac.update(body.as_bytes());
            let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            let code = client
                .post(&hook)
                .header("x-doppler-signature", sig)
                .body(body)
                .send()
                .unwrap()
                .status();
            if code.as_u16() == 200 {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "the signing key is read");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut before = (downloads(), restarts());
        measure_with(
            &kube,
            |i| {
                let v = format!("operator-{i}");
                doppler.set_secret("backend", "prd", "DB_PASSWORD", &v);
                v
            },
            |i| send_webhook(&client, &hook, i),
            || {
                let t0 = Instant::now();
                while restarts() == before.1 && t0.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(100));
                let now = (downloads(), restarts());
                let seen = ((now.0 - before.0) as u64, now.1 - before.1);
                before = now;
                seen
            },
        )
    });
    let _ = stop.send(());
    let _ = run.await;
    print("operator-doppler-webhook", &rounds);
}

async fn refresh() {
    let dir = tempfile::tempdir().unwrap();
    let (kube, kubeconfig) = cluster(dir.path()).await;
    let file = dir.path().join("secrets.yaml");
    let write =
        |v: &str| std::fs::write(&file, format!("DB_PASSWORD: {v}\nK1: '1'\nK2: '2'\nK3: '3'\nK4: '4'\n")).unwrap();
    write("v");
    let m = format!(
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: local, namespace: dev}}\nspec: {{provider: {{file: {{path: secrets.yaml}}}}}}\n{}",
        SPEC.replace("STORE", "local")
    );
    std::fs::write(dir.path().join("m.yaml"), m).unwrap();
    let path = dir.path().to_path_buf();
    let rounds = tokio::task::block_in_place(|| {
        let d = start(&path, &kubeconfig, &[]);
        let url = format!("{}/refresh?store=local&namespace=dev&key=DB_PASSWORD", d.url);
        let client = reqwest::blocking::Client::new();
        measure(
            &kube,
            &d,
            |i| {
                let v = format!("file-{i}");
                write(&v);
                v
            },
            |_| {
                let status = client
                    .post(&url)
                    .header("authorization", "Bearer bench-token")
                    .send()
                    .unwrap()
                    .status();
                assert_eq!(status.as_u16(), 202);
            },
        )
    });
    print("refresh", &rounds);
}

async fn aws_sqs() {
    use secretsync_core::{SecretValue, SecretWriter, WriteRequest};
    let moto = secretsync_fakes::moto::Moto::shared().url().to_string();
    let p = format!("bench-events-{}-", std::process::id());
    let aws = secretsync::aws::AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(moto.clone())
        .with_credentials("testing", "testing".into())
        .build()
        .await
        .unwrap();
    for (k, v) in [("DB_PASSWORD", "v"), ("K1", "1"), ("K2", "2"), ("K3", "3"), ("K4", "4")] {
        aws.put(&WriteRequest::new(format!("{p}{k}"), SecretValue::from(v)))
            .await
            .unwrap();
    }
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(&moto)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "bench",
            ))
            .build(),
    );
    let queue = sqs
        .create_queue()
        .queue_name(format!("{p}changes"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let (kube, kubeconfig) = cluster(dir.path()).await;
    let m = format!(
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata:\n  name: aws\n  namespace: dev\n  annotations: {{secretsync.io/events: 'aws-sqs:{queue}'}}\nspec: {{provider: {{aws: {{service: SecretsManager, region: us-east-1, endpoint: '{moto}'}}}}}}\n{}",
        SPEC.replace("STORE", "aws").replace("key: ", &format!("key: {p}"))
    );
    std::fs::write(dir.path().join("m.yaml"), m).unwrap();
    let path = dir.path().to_path_buf();
    let envs = [
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ];
    let rt = tokio::runtime::Handle::current();
    let rounds = tokio::task::block_in_place(|| {
        let d = start(&path, &kubeconfig, &envs);
        measure(
            &kube,
            &d,
            |i| {
                let v = format!("aws-{i}");
                rt.block_on(aws.put(&WriteRequest::new(
                    format!("{p}DB_PASSWORD"),
                    SecretValue::from(v.as_str()),
                )))
                .unwrap();
                v
            },
            |_| {
                let body = serde_json::json!({
                    "version": "0",
                    "detail-type": "AWS API Call via CloudTrail",
                    "source": "aws.secretsmanager",
                    "region": "us-east-1",
                    "detail": {
                        "eventSource": "secretsmanager.amazonaws.com",
                        "eventName": "PutSecretValue",
                        "requestParameters": {"secretId": format!("{p}DB_PASSWORD")},
                    }
                })
                .to_string();
                rt.block_on(sqs.send_message().queue_url(&queue).message_body(body).send())
                    .unwrap();
            },
        )
    });
    print("aws-sqs", &rounds);
}

/// A request to the Pub/Sub emulator's REST API that must succeed.
fn pubsub(client: &reqwest::blocking::Client, method: reqwest::Method, url: &str, body: serde_json::Value) {
    let resp = client
        .request(method, url)
        .json(&body)
        .send()
        .expect("the emulator answers");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
}

async fn gcp_pubsub() {
    const PROJECT: &str = "bench-events";
    const PROJECT_NUMBER: &str = "123456789012";
    let parent = format!("projects/{PROJECT}");
    let gcp = secretsync_fakes::gcp::FakeSecretManager::start().await;
    for (k, v) in [("DB_PASSWORD", "v"), ("K1", "1"), ("K2", "2"), ("K3", "3"), ("K4", "4")] {
        gcp.add_version(&parent, k, v.as_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let (kube, kubeconfig) = cluster(dir.path()).await;
    let path = dir.path().to_path_buf();
    let rounds = tokio::task::block_in_place(|| {
        let emulator = secretsync_fakes::pubsub::PubSubEmulator::shared();
        let http = reqwest::blocking::Client::new();
        let topic = format!("projects/{PROJECT}/topics/secret-events-{}", std::process::id());
        let subscription = format!("projects/{PROJECT}/subscriptions/secretsync-{}", std::process::id());
        pubsub(
            &http,
            reqwest::Method::PUT,
            &format!("{}/v1/{topic}", emulator.url()),
            serde_json::json!({}),
        );
        pubsub(
            &http,
            reqwest::Method::PUT,
            &format!("{}/v1/{subscription}", emulator.url()),
            serde_json::json!({"topic": topic, "ackDeadlineSeconds": 30}),
        );
        let m = format!(
            "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata:\n  name: gcp\n  namespace: dev\n  annotations: {{secretsync.io/events: 'gcp-pubsub:{subscription}'}}\nspec: {{provider: {{gcpsm: {{projectID: {PROJECT}, endpoint: '{}'}}}}}}\n{}",
            gcp.url(),
            SPEC.replace("STORE", "gcp")
        );
        std::fs::write(path.join("m.yaml"), m).unwrap();
        let d = start(
            &path,
            &kubeconfig,
            &[("PUBSUB_EMULATOR_HOST", emulator.host().to_string())],
        );
        let publish = format!("{}/v1/{topic}:publish", emulator.url());
        let version = std::cell::Cell::new(1u64);
        measure(
            &kube,
            &d,
            |i| {
                let v = format!("gcp-{i}");
                version.set(gcp.add_version(&parent, "DB_PASSWORD", v.as_bytes()));
                v
            },
            |_| {
                // What Secret Manager publishes for a new version: the project by number.
                let secret_id = format!("projects/{PROJECT_NUMBER}/secrets/DB_PASSWORD");
                let version = version.get();
                let resource = serde_json::json!({
                    "name": format!("{secret_id}/versions/{version}"),
                    "createTime": "2026-01-20T19:17:44.906371Z",
                    "state": "ENABLED",
                    "replicationStatus": {"automatic": {}},
                    "etag": "\"1616d9a3d7c883\"",
                });
                pubsub(
                    &http,
                    reqwest::Method::POST,
                    &publish,
                    serde_json::json!({"messages": [{
                        "attributes": {
                            "eventType": "SECRET_VERSION_ADD",
                            "dataFormat": "JSON_API_V1",
                            "secretId": secret_id,
                            "versionId": format!("{secret_id}/versions/{version}"),
                            "timestamp": "2026-01-20T11:17:45.081104-08:00",
                        },
                        "data": base64::engine::general_purpose::STANDARD.encode(resource.to_string()),
                    }]}),
                );
            },
        )
    });
    print("gcp-pubsub", &rounds);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once too. A name after
    // `--` runs only the rows whose name contains it (`-- gcp`).
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let run = |name: &str| name.contains(filter.as_str());
    if run("doppler-webhook") {
        doppler_webhook().await;
    }
    if run("refresh") {
        refresh().await;
    }
    if run("aws-sqs") {
        aws_sqs().await;
    }
    if run("gcp-pubsub") {
        gcp_pubsub().await;
    }
    if run("operator-doppler-webhook") {
        operator_doppler().await;
    }
}
