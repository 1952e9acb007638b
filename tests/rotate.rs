//! Seed 000's rotation scenario through `rotate`, on a local file store and a folder of
//! manifests (the Kubernetes, AWS and GCP versions run in their crates' tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secretsync::app::rotate::{RotateOptions, run_rotate};
use secretsync::app::{Exit, Format, SinkChoice};
use secretsync::sinks::parse_manifest;

const MANIFESTS: &str = r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: tomoda}
spec:
  provider:
    file: {path: secrets.json}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: backend-secrets-dev, namespace: tomoda}
spec:
  secretStoreRef: {name: tomoda, kind: ClusterSecretStore}
  data:
    - {secretKey: JWT_SECRET, remoteRef: {key: tomoda-jwt-secret}}
    - {secretKey: ENCRYPTION_KEY, remoteRef: {key: tomoda-encryption-key}}
    - {secretKey: DB_PASSWORD, remoteRef: {key: tomoda-db-password}}
    - {secretKey: REDIS_PASSWORD, remoteRef: {key: tomoda-redis-password}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: postgres-dev-credentials-eso, namespace: data}
spec:
  secretStoreRef: {name: tomoda, kind: ClusterSecretStore}
  data:
    - {secretKey: password, remoteRef: {key: tomoda-db-password}}
"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifests.yaml"), MANIFESTS).unwrap();
        Self { dir }
    }
    fn opts(&self, rotate: bool, dry_run: bool, yes: bool) -> RotateOptions {
        RotateOptions {
            plan: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rotation/plan.yaml"),
            manifests: vec![self.dir.path().join("manifests.yaml")],
            rotate,
            dry_run,
            yes,
            sink: SinkChoice::Folder(self.dir.path().join("out")),
            format: Format::Json,
        }
    }
    fn store(&self) -> BTreeMap<String, String> {
        match std::fs::read_to_string(self.dir.path().join("secrets.json")) {
            Ok(t) => serde_json::from_str(&t).unwrap(),
            Err(_) => BTreeMap::new(),
        }
    }
    fn target(&self, rel: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let text = std::fs::read_to_string(self.dir.path().join("out").join(rel)).ok()?;
        let (_, state) = parse_manifest(&text, rel).unwrap();
        Some(
            state
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_vec()))
                .collect(),
        )
    }
}

async fn rotate(opts: &RotateOptions, vars: &[(&str, &str)], input: &str) -> (Exit, serde_json::Value, String, String) {
    let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let env = move |k: &str| vars.get(k).cloned();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_rotate(opts, &env, &mut input.as_bytes(), &mut out, &mut err).await;
    let out = String::from_utf8(out).unwrap();
    let json = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (code, json, out, String::from_utf8(err).unwrap())
}

fn actions(report: &serde_json::Value) -> BTreeMap<String, String> {
    report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let plan = if k.get("plan").is_some() { &k["plan"] } else { k };
            (
                plan["key"].as_str().unwrap().to_string(),
                plan["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn seed_000_bootstrap_rerun_set_and_rotate() {
    let env = Env::new();
    // Bootstrap with empty values: generated kinds are generated, the manual one is missing.
    let (code, report, _, err) = rotate(&env.opts(false, false, true), &[], "").await;
    assert_eq!(code, Exit::Synced, "{err}");
    let a = actions(&report);
    for k in [
        "tomoda-jwt-secret",
        "tomoda-encryption-key",
        "tomoda-db-password",
        "tomoda-redis-password",
    ] {
        assert_eq!(a[k], "Create", "{k}");
    }
    assert_eq!(a["tomoda-google-client-id"], "Missing");
    let store = env.store();
    assert_eq!(store["tomoda-jwt-secret"].len(), 64, "hex 32");
    assert_eq!(store["tomoda-encryption-key"].len(), 32, "hex 16");
    assert_eq!(store["tomoda-db-password"].len(), 32, "base64 24");
    assert!(!store.contains_key("tomoda-google-client-id"));
    // The DB password reached the database Secret before the backend's, each verified.
    let steps = report["steps"].as_array().unwrap();
    let order: Vec<&str> = steps.iter().map(|s| s["spec"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        ["data/postgres-dev-credentials-eso", "tomoda/backend-secrets-dev"]
    );
    assert!(steps.iter().all(|s| s["verified"] == true), "{steps:?}");
    let backend = env.target("tomoda/backend-secrets-dev.yaml").unwrap();
    let pg = env.target("data/postgres-dev-credentials-eso.yaml").unwrap();
    assert_eq!(backend["DB_PASSWORD"], store["tomoda-db-password"].as_bytes());
    assert_eq!(pg["password"], store["tomoda-db-password"].as_bytes());

    // A second run changes nothing.
    let (code, report, _, _) = rotate(&env.opts(false, false, true), &[], "").await;
    assert_eq!(code, Exit::Synced);
    assert!(
        actions(&report)
            .iter()
            .all(|(k, a)| a == "Keep" || (k == "tomoda-google-client-id" && a == "Missing"))
    );
    assert!(report["steps"].as_array().unwrap().is_empty());
    assert_eq!(env.store(), store);

    // A value given in the environment: set and differs -> new value; equal -> nothing.
    let (_, report, _, _) = rotate(
        &env.opts(false, false, true),
        &[("TOMODA_GOOGLE_CLIENT_ID", "1234.apps.googleusercontent.com")],
        "",
    )
    .await;
    assert_eq!(actions(&report)["tomoda-google-client-id"], "Create");
    let (_, report, _, _) = rotate(
        &env.opts(false, false, true),
        &[("TOMODA_GOOGLE_CLIENT_ID", "1234.apps.googleusercontent.com")],
        "",
    )
    .await;
    assert_eq!(actions(&report)["tomoda-google-client-id"], "Keep");
    let (_, report, _, _) = rotate(&env.opts(false, false, true), &[("TOMODA_JWT_SECRET", "from-env")], "").await;
    assert_eq!(actions(&report)["tomoda-jwt-secret"], "Update");
    assert_eq!(env.store()["tomoda-jwt-secret"], "from-env");

    // --rotate regenerates exactly the generated kinds and updates their targets.
    let before = env.store();
    let (code, report, _, _) = rotate(&env.opts(true, false, true), &[], "").await;
    assert_eq!(code, Exit::Synced);
    let a = actions(&report);
    let after = env.store();
    for k in [
        "tomoda-jwt-secret",
        "tomoda-encryption-key",
        "tomoda-db-password",
        "tomoda-redis-password",
    ] {
        assert_eq!(a[k], "Rotate");
        assert_ne!(before[k], after[k], "{k} rotated");
    }
    assert_eq!(a["tomoda-google-client-id"], "Keep");
    assert_eq!(before["tomoda-google-client-id"], after["tomoda-google-client-id"]);
    assert_eq!(
        env.target("tomoda/backend-secrets-dev.yaml").unwrap()["JWT_SECRET"],
        after["tomoda-jwt-secret"].as_bytes()
    );
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(
        steps[0]["spec"], "data/postgres-dev-credentials-eso",
        "the database first"
    );
}

#[tokio::test]
async fn dry_run_and_confirmation_write_nothing() {
    let env = Env::new();
    let (code, report, _, _) = rotate(&env.opts(false, true, false), &[], "").await;
    assert_eq!(code, Exit::Synced);
    assert_eq!(report["dry_run"], true);
    assert_eq!(actions(&report)["tomoda-jwt-secret"], "Create");
    assert!(env.store().is_empty() && env.target("tomoda/backend-secrets-dev.yaml").is_none());
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("new_value"), "values never appear in the plan");

    // Text mode prints impact notes and asks; "n" aborts.
    let mut opts = env.opts(false, false, false);
    opts.format = Format::Text;
    let (code, _, out, err) = rotate(&opts, &[], "n\n").await;
    assert_eq!(code, Exit::SpecFailed);
    assert!(
        out.contains("tomoda-jwt-secret: All active sessions invalidated"),
        "{out}"
    );
    assert!(out.contains("write 4 secret(s)? [y/N]"), "{out}");
    assert!(err.contains("aborted"), "{err}");
    assert!(env.store().is_empty());
    let (code, _, out, _) = rotate(&opts, &[], "yes\n").await;
    assert_eq!(code, Exit::Synced, "{out}");
    assert_eq!(env.store().len(), 4);
}

#[test]
fn plan_errors_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plan.yaml");
    std::fs::write(&p, "store: {name: s}\nsecrets:\n  - {key: a, generate: hex}\n").unwrap();
    let e = secretsync::rotation::RotationPlan::load(Path::new(&p))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("plan.yaml") && e.contains("secrets[0].generate") && e.contains("needs a length"),
        "{e}"
    );
    std::fs::write(&p, "secrets:\n  - {key: a, generate: uuid, envv: X}\n").unwrap();
    let e = secretsync::rotation::RotationPlan::load(Path::new(&p))
        .unwrap_err()
        .to_string();
    assert!(e.contains("secrets[0].envv") && e.contains("unknown field"), "{e}");
}
