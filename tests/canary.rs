//! A canary value through every source (AWS on moto, GCP and Doppler on their fakes, the
//! `file` and `fake` providers) and every sink (folder, dotenv, Kubernetes on its fake, and
//! stdout in a child process), on good paths and error paths, with logging at trace level:
//! it reaches its targets and nothing else — not the logs, errors, Debug output, plans,
//! reports, call statistics, request logs, or any other file.
//!
//! And credentials: a canary token, key or password given to each provider's builder never
//! shows in Debug output, errors or trace logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use secretsync::aws::{AwsSecretsManager, AwsSecretsManagerBuilder};
use secretsync::doppler::DopplerBuilder;
use secretsync::engine::{CycleOptions, Engine};
use secretsync::gcp::GcpSecretManagerBuilder;
use secretsync::k8s::KubeSink;
use secretsync::manifest::{Manifests, StoreId, StoreKind, load_str};
use secretsync::registry::BuiltStore;
use secretsync::sinks::{DotenvSink, FolderSink, StdoutSink};
use secretsync::testkit::{CANARY, assert_no_canary, capture_logs, unique_prefix};
use secretsync::{RemoteKey, SecretSink, SecretSource, SecretValue, SecretWriter, TargetRef, WriteRequest};
use secretsync_fakes::doppler::FakeDoppler;
use secretsync_fakes::gcp::FakeSecretManager;
use secretsync_fakes::kube::FakeKube;

// ---------------------------------------------------------------------------------------
// moto.

/// moto's server (`secretsync_fakes::moto`: `SECRETSYNC_MOTO_URL`, else `.venv/bin/moto_server` for this
/// test binary; a test that cannot reach it fails).
fn moto_url() -> String {
    secretsync_fakes::moto::Moto::shared().url().to_string()
}

fn aws_builder() -> AwsSecretsManagerBuilder {
    AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(moto_url())
        .with_credentials("testing", "testing".into())
        .with_listing_reuse(Duration::ZERO)
}

// ---------------------------------------------------------------------------------------
// The manifests: per store, the canary read directly, through `property`, through a
// template, and five error paths over values holding the canary.

const GCP_PROJECT: &str = "canary-485000";
const GCP_PARENT: &str = "projects/canary-485000";

/// The remote keys every store holds (`{p}` is the per-test prefix for shared servers).
fn remote_values(p: &str) -> Vec<(String, String)> {
    vec![
        (format!("{p}token"), CANARY.to_string()),
        (
            format!("{p}blob"),
            format!(r#"{{"user":"app","password":"{CANARY}","nested":{{"k":"{CANARY}"}}}}"#),
        ),
    ]
}

fn store_id(name: &str) -> StoreId {
    StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: name.into(),
    }
}

/// Good and bad ExternalSecrets on `store`; targets are `<store>-ok`, `<store>-bad-*`.
fn specs(store: &str, p: &str) -> String {
    let head = |name: &str| {
        format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {store}-{name}, namespace: canary}}\nspec:\n  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n"
        )
    };
    let mut out = String::new();
    out += &head("ok");
    out += &format!(
        "  target:\n    template:\n      data:\n        DSN: 'postgres://app:{{{{ .PASSWORD }}}}@db/app'\n        TOKEN: '{{{{ .TOKEN }}}}'\n        PASSWORD: '{{{{ .PASSWORD }}}}'\n        NESTED: '{{{{ .NESTED }}}}'\n  data:\n    - {{secretKey: TOKEN, remoteRef: {{key: {p}token}}}}\n    - {{secretKey: PASSWORD, remoteRef: {{key: {p}blob, property: password}}}}\n    - {{secretKey: NESTED, remoteRef: {{key: {p}blob, property: nested}}}}\n"
    );
    // The value is not JSON but a property is asked for.
    out += &head("bad-notjson");
    out += &format!("  data:\n    - {{secretKey: A, remoteRef: {{key: {p}token, property: password}}}}\n");
    // The property is missing from a JSON value holding the canary.
    out += &head("bad-property");
    out += &format!("  data:\n    - {{secretKey: A, remoteRef: {{key: {p}blob, property: nope}}}}\n");
    // The value is not base64.
    out += &head("bad-base64");
    out += &format!("  data:\n    - {{secretKey: A, remoteRef: {{key: {p}token, decodingStrategy: Base64}}}}\n");
    // A template function fails on the value (sprig's `b64dec` and `fromJson` do not fail,
    // as in Go: they return an error text or an empty map; `mustFromJson` does).
    out += &head("bad-template");
    out += &format!(
        "  target:\n    template:\n      data:\n        X: '{{{{ .A | mustFromJson | toJson }}}}'\n  data:\n    - {{secretKey: A, remoteRef: {{key: {p}token}}}}\n"
    );
    // The remote key is missing.
    out += &head("bad-missing");
    out += &format!("  data:\n    - {{secretKey: A, remoteRef: {{key: {p}absent}}}}\n");
    out
}

const STORE_NAMES: [&str; 5] = ["aws", "gcp", "doppler", "file", "fake"];

struct World {
    dir: tempfile::TempDir,
    manifests: Manifests,
    stores: BTreeMap<StoreId, BuiltStore>,
    _doppler: FakeDoppler,
    gcp: FakeSecretManager,
}

/// Every source holding the canary, and the manifests that read it.
async fn world() -> World {
    let p = unique_prefix("c").replace('-', "") + "-";
    let dir = tempfile::tempdir().unwrap();
    let values = remote_values(&p);

    // AWS on moto.
    let aws = aws_builder().build().await.unwrap();
    for (k, v) in &values {
        aws.put(&WriteRequest::new(k, SecretValue::from(v.as_str())))
            .await
            .unwrap();
    }
    // GCP on its fake.
    let gcp = FakeSecretManager::start().await;
    for (k, v) in &values {
        gcp.create_secret(GCP_PARENT, k, &[]);
        gcp.add_version(GCP_PARENT, k, v.as_bytes());
    }
    let gcp_source = GcpSecretManagerBuilder::new()
        .with_emulator_host(gcp.host())
        .with_project_id(GCP_PROJECT)
        .build()
        .unwrap();
    // Doppler on its fake.
    let doppler = FakeDoppler::start().await;
    let project = unique_prefix("proj");
    doppler.create_config(&project, "prd");
    doppler.set_secrets(&project, "prd", values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let token = doppler.service_token(&project, "prd");
    let doppler_source = DopplerBuilder::new()
        .with_token(token.as_str())
        .with_api_host(doppler.url())
        .with_freshness(Duration::ZERO)
        .build()
        .unwrap();
    // The file provider: a JSON file; the fake provider: values in its store.
    let file = dir.path().join("store/secrets.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let json: serde_json::Map<String, serde_json::Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    std::fs::write(&file, serde_json::to_string(&json).unwrap()).unwrap();
    let fake_data: String = values
        .iter()
        .map(|(k, v)| format!("        - {{key: {k}, value: {}}}\n", serde_json::to_string(v).unwrap()))
        .collect();

    let mut text = format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: file}}\nspec:\n  provider:\n    file: {{path: {}, format: json}}\n---\napiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: fake}}\nspec:\n  provider:\n    fake:\n      data:\n{fake_data}",
        file.display()
    );
    for s in STORE_NAMES {
        text += &specs(s, &p);
    }
    let manifests = load_str(&text, "canary.yaml").into_result().expect("manifests load");
    let (mut stores, errors) = secretsync::registry().build_all(&manifests).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(stores.len(), 2, "file and fake built from the manifests");
    let built = |s: Arc<dyn SecretSource>| BuiltStore {
        source: s,
        writer: None,
    };
    stores.insert(store_id("aws"), built(Arc::new(aws)));
    stores.insert(store_id("gcp"), built(Arc::new(gcp_source)));
    stores.insert(store_id("doppler"), built(Arc::new(doppler_source)));
    World {
        dir,
        manifests,
        stores,
        _doppler: doppler,
        gcp,
    }
}

/// Runs a plan, a cycle and an unchanged cycle at trace level; checks everything but the
/// targets; returns the number of targets written.
async fn run_and_check(w: &World, sink: Arc<dyn SecretSink>, place: &str) {
    let engine = Engine::new(w.stores.clone(), sink.clone());
    let ((plan, first, second), logs) = capture_logs(async {
        let plan = engine
            .run(
                &w.manifests,
                &CycleOptions {
                    dry_run: true,
                    only: None,
                    ..Default::default()
                },
            )
            .await;
        let first = engine.run(&w.manifests, &CycleOptions::default()).await;
        let second = engine.run(&w.manifests, &CycleOptions::default()).await;
        (plan, first, second)
    })
    .await;
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "{place}: trace-level logs were captured"
    );
    assert_no_canary(&logs, &format!("{place}: logs at trace level"));
    for (what, r) in [("plan", &plan), ("report", &first), ("second report", &second)] {
        assert_no_canary(&r.to_text(), &format!("{place}: text {what}"));
        assert_no_canary(&serde_json::to_string(r).unwrap(), &format!("{place}: JSON {what}"));
        assert_no_canary(&format!("{r:?}"), &format!("{place}: Debug of the {what}"));
    }
    // Every store: one good spec, five failing ones, each failure with a message.
    for s in STORE_NAMES {
        let ok = first.spec("canary", &format!("{s}-ok")).expect("reported");
        assert!(
            ok.message.is_empty() && ok.changed,
            "{place}: {s}-ok synced: {}",
            first.to_text()
        );
        for bad in ["notjson", "property", "base64", "template", "missing"] {
            let r = first.spec("canary", &format!("{s}-bad-{bad}")).expect("reported");
            assert!(
                !r.message.is_empty(),
                "{place}: {s}-bad-{bad} failed: {}",
                first.to_text()
            );
        }
    }
    assert_eq!(first.failed().count(), 5 * STORE_NAMES.len(), "{}", first.to_text());
    assert_eq!(first.writes as usize, STORE_NAMES.len(), "{place}: {}", first.to_text());
    // Debug of everything the caller holds, and the metrics of every source.
    assert_no_canary(
        &format!("{engine:?} {:?} {sink:?}", w.manifests),
        &format!("{place}: Debug"),
    );
    for (id, b) in &w.stores {
        assert_no_canary(&format!("{:?}", b.source), &format!("{place}: Debug of store {id}"));
        if let Some(stats) = b.source.call_stats() {
            assert_no_canary(&format!("{stats:?}"), &format!("{place}: call stats of {id}"));
        }
    }
}

/// The canary, raw or in base64, appears in no file under `dir` but the allowed ones.
fn assert_only_in(dir: &Path, allowed: &[PathBuf]) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !allowed.contains(&p) {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                assert_no_canary(&text, &format!("the file {}", p.display()));
            }
        }
    }
}

fn targets_of_ok_specs() -> Vec<TargetRef> {
    STORE_NAMES
        .iter()
        .map(|s| TargetRef::secret("canary", format!("{s}-ok")))
        .collect()
}

/// What a good target must hold.
async fn assert_target_holds_canary(sink: &dyn SecretSink, t: &TargetRef) {
    let state = sink.read(t).await.unwrap().unwrap_or_else(|| panic!("{t} written"));
    let get = |k: &str| {
        state
            .data
            .get(k)
            .and_then(|v| v.expose_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(get("TOKEN"), CANARY, "{t}");
    assert_eq!(get("PASSWORD"), CANARY, "{t}");
    assert_eq!(get("DSN"), format!("postgres://app:{CANARY}@db/app"), "{t}");
    assert_eq!(get("NESTED"), format!(r#"{{"k":"{CANARY}"}}"#), "{t}");
}

#[tokio::test]
async fn canary_through_every_source_into_folder_and_dotenv() {
    let w = world().await;
    // The store's own file holds the canary: that is where it is kept.
    let mut allowed = vec![w.dir.path().join("store/secrets.json")];

    let folder = Arc::new(FolderSink::new(w.dir.path().join("folder")));
    run_and_check(&w, folder.clone(), "folder sink").await;
    for t in targets_of_ok_specs() {
        assert_target_holds_canary(folder.as_ref(), &t).await;
        allowed.push(folder.path_of(&t));
    }

    let dotenv = Arc::new(DotenvSink::new(format!(
        "{}/env/{{namespace}}/{{name}}.env",
        w.dir.path().display()
    )));
    run_and_check(&w, dotenv.clone(), "dotenv sink").await;
    for t in targets_of_ok_specs() {
        assert_target_holds_canary(dotenv.as_ref(), &t).await;
        allowed.push(dotenv.path_of(&t));
    }
    assert_only_in(w.dir.path(), &allowed);
    assert!(w.gcp.unknown_routes().is_empty());
}

#[tokio::test]
async fn canary_through_every_source_into_kubernetes() {
    secretsync::k8s::install_crypto_provider();
    let w = world().await;
    let kube = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    kube.create_namespaces(&["canary"]);
    let sink = Arc::new(KubeSink::new(kube.client()));
    run_and_check(&w, sink.clone(), "kubernetes sink").await;
    for t in targets_of_ok_specs() {
        assert_target_holds_canary(sink.as_ref(), &t).await;
    }
    // The API server saw the values only in the bodies of the good targets' applies.
    assert_no_canary(&format!("{:?}", kube.requests()), "the API server's request log");
    for s in STORE_NAMES {
        for bad in ["notjson", "property", "base64", "template", "missing"] {
            let name = format!("{s}-bad-{bad}");
            assert!(
                kube.object("v1", "secrets", Some("canary"), &name).is_none(),
                "{name} not written"
            );
        }
    }
    assert_only_in(w.dir.path(), &[w.dir.path().join("store/secrets.json")]);
}

const STDOUT_CHILD: &str = "SECRETSYNC_CANARY_STDOUT_CHILD";

/// The stdout sink, in a child process (it writes to the process's stdout): the canary is
/// in stdout, inside the printed manifests, and not in the trace logs on stderr.
#[tokio::test]
async fn canary_through_the_stdout_sink() {
    if let Ok(dir) = std::env::var(STDOUT_CHILD) {
        // The child: file and fake providers (no network), trace logs to stderr.
        let file = Path::new(&dir).join("secrets.json");
        let text = format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: file}}\nspec:\n  provider:\n    file: {{path: {}, format: json}}\n{}",
            file.display(),
            specs("file", "")
        );
        let manifests = load_str(&text, "canary.yaml").into_result().unwrap();
        let (stores, _) = secretsync::registry().build_all(&manifests).await;
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let engine = Engine::new(stores, Arc::new(StdoutSink));
        let r = engine.run(&manifests, &CycleOptions::default()).await;
        eprintln!("REPORT {}", serde_json::to_string(&r).unwrap());
        eprintln!("DEBUG {r:?} {engine:?}");
        println!("\n<<<END>>>");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json: serde_json::Map<String, serde_json::Value> = remote_values("")
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    std::fs::write(dir.path().join("secrets.json"), serde_json::to_string(&json).unwrap()).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "canary_through_the_stdout_sink",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(STDOUT_CHILD, dir.path())
        .output()
        .expect("run the child");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("REPORT ") && stderr.contains("DEBUG"),
        "debug-level logs captured: {stderr}"
    );
    assert_no_canary(&stderr, "the child's stderr (trace logs, report, Debug)");
    // The printed manifest is the target: the canary is there, base64-encoded, and the
    // printed documents parse back to it.
    let printed = &stdout[stdout.find("---\n").expect("a manifest printed")..stdout.find("\n<<<END>>>").unwrap()];
    let docs: Vec<&str> = printed.split("---\n").filter(|d| d.contains("kind: Secret")).collect();
    assert_eq!(docs.len(), 1, "one good target printed: {stdout}");
    let start = docs[0].find("apiVersion").unwrap();
    let (_, state) = secretsync::sinks::parse_manifest(&docs[0][start..], "stdout").unwrap();
    assert_eq!(state.data.get("TOKEN").unwrap().expose_str(), Some(CANARY));
    assert_only_in(dir.path(), &[dir.path().join("secrets.json")]);
}

/// Credentials given to each provider never show in Debug, errors or trace logs.
#[tokio::test]
async fn credentials_never_in_debug_errors_or_logs() {
    // AWS: an access key pair and a session token.
    let b = AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(moto_url())
        .with_session_credentials("AKIACANARY", SecretValue::from(CANARY), SecretValue::from(CANARY));
    assert_no_canary(&format!("{b:?}"), "Debug of the AWS builder");
    let (aws, logs) = capture_logs(async {
        let aws: AwsSecretsManager = b.build().await.unwrap();
        let missing = aws.get(&RemoteKey::new("canary-no-such-secret")).await.unwrap_err();
        assert_no_canary(&format!("{missing} {missing:?}"), "an AWS error");
        aws
    })
    .await;
    assert_no_canary(&format!("{aws:?}"), "Debug of the AWS source");
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "logs captured");
    assert_no_canary(&logs, "trace logs of an AWS call with canary credentials");

    // GCP: a service-account key whose private key is the canary (refused: not a real key).
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "1",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"),
        "client_email": "sa@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    });
    let b = GcpSecretManagerBuilder::new()
        .with_project_id("p")
        .with_service_account_key(SecretValue::from(key.to_string()));
    assert_no_canary(&format!("{b:?}"), "Debug of the GCP builder");
    let (result, logs) = capture_logs(async {
        match b.build() {
            Ok(src) => {
                assert_no_canary(&format!("{src:?}"), "Debug of the GCP source");
                src.get(&RemoteKey::new("x"))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e} {e:?}"))
            }
            Err(e) => Err(format!("{e} {e:?}")),
        }
    })
    .await;
    let err = result.expect_err("a fake key cannot authenticate");
    assert_no_canary(&err, "the GCP error");
    assert_no_canary(&logs, "trace logs of a GCP call with a canary key");

    // Doppler: a canary token the API does not know (401).
    let fake = FakeDoppler::start().await;
    let b = DopplerBuilder::new()
        .with_token(CANARY)
        .with_api_host(fake.url())
        .with_project("p")
        .with_config("c");
    assert_no_canary(&format!("{b:?}"), "Debug of the Doppler builder");
    let (err, logs) = capture_logs(async {
        let src = b.build().unwrap();
        assert_no_canary(&format!("{src:?}"), "Debug of the Doppler source");
        let e = src.get(&RemoteKey::new("X")).await.unwrap_err();
        format!("{e} {e:?}")
    })
    .await;
    assert!(
        err.to_lowercase().contains("401") || err.to_lowercase().contains("unauth"),
        "{err}"
    );
    assert_no_canary(&err, "the Doppler error");
    assert_no_canary(&logs, "trace logs of a Doppler call with a canary token");
    // Kubernetes credentials (a bearer token in a kubeconfig) are checked in
    // crates/sink-k8s/tests/sink.rs: this package does not depend on `kube` directly.
}

const KUBE_CHILD: &str = "SECRETSYNC_CANARY_KUBE_CHILD";

/// A kubeconfig whose bearer token is the canary (read from `KUBECONFIG` in a child
/// process, since the environment is process-wide): the token is not in KubeSink's Debug,
/// its errors, or trace logs.
#[tokio::test]
async fn kube_token_never_in_debug_errors_or_logs() {
    if std::env::var_os(KUBE_CHILD).is_some() {
        secretsync::k8s::install_crypto_provider();
        let (out, logs) = capture_logs(async {
            let sink = KubeSink::infer().await.expect("a client from KUBECONFIG");
            let read = sink.read(&TargetRef::secret("ns", "x")).await;
            let bad = sink.read(&TargetRef::secret("ns", "Not_Valid")).await;
            format!("{sink:?} {read:?} {bad:?}")
        })
        .await;
        assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "logs captured");
        assert_no_canary(&out, "KubeSink Debug and results");
        assert_no_canary(&logs, "trace logs of Kubernetes calls with a canary token");
        return;
    }
    secretsync::k8s::install_crypto_provider();
    let kube = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    kube.create_namespaces(&["canary"]);
    let dir = tempfile::tempdir().unwrap();
    let config = kube
        .kubeconfig_yaml()
        .replace("token: fake-token", &format!("token: {CANARY}"));
    assert!(config.contains(CANARY), "the kubeconfig carries the canary token");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, config).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args([
                "--exact",
                "kube_token_never_in_debug_errors_or_logs",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KUBE_CHILD, "1")
            .env("KUBECONFIG", &path)
            .output()
            .expect("run the child")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    assert!(kube.request_count() >= 1, "the child talked to the fake");
}
