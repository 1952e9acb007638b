//! Seed 001 (FlowyML) end to end: the git-ignored `prod.secrets.tfvars` → the `file` store
//! (`format: tfvars`) → an ExternalSecret → a PushSecret → AWS Secrets Manager (moto's
//! server, through aws-sdk-secretsmanager) and GCP Secret Manager (the fake, through
//! google-cloud-secretmanager-v1). Instead of `terraform apply -var-file=...`: a second run
//! writes nothing, editing one value writes exactly once per provider, and an empty value is
//! refused for GCP before any call, naming the key. Writes are counted at the servers.

use std::sync::Arc;

use secretsync::app::{Exit, Format, SinkChoice, SyncOptions, run_sync};
use secretsync::engine::{CycleOptions, Engine};
use secretsync::manifest::{Manifests, load_str};
use secretsync::push::{PushOutcome, PushReport, push_all};
use secretsync::registry::EnvFileCredentials;
use secretsync::sinks::MemorySink;
use secretsync_fakes::gcp::FakeSecretManager;
use secretsync_fakes::moto::{Moto, recording};

const PROJECT: &str = "flowyml-prod";

/// The seed's file, as its page shows it.
const TFVARS: &str = r#"db_password = "super_secure_db_password"
auth_secret = "your_jwt_signing_secret_key"
api_token   = "your_static_api_token"
"#;

fn manifests(gcp: &str, aws: &str, prefix: &str) -> String {
    format!(
        r#"apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: tfvars}}
spec:
  provider:
    file: {{path: prod.secrets.tfvars, format: tfvars}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: gcp, labels: {{flowyml/push: "yes"}}}}
spec:
  provider:
    gcpsm: {{projectID: {PROJECT}, endpoint: "{gcp}"}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: aws, labels: {{flowyml/push: "yes"}}}}
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      endpoint: "{aws}"
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-creds, key: access-key, namespace: external-secrets}}
          secretAccessKeySecretRef: {{name: aws-creds, key: secret-access-key, namespace: external-secrets}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: flowyml, namespace: prod}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: tfvars, kind: ClusterSecretStore}}
  target: {{name: flowyml-secrets}}
  data:
    - {{secretKey: db_password, remoteRef: {{key: db_password}}}}
    - {{secretKey: auth_secret, remoteRef: {{key: auth_secret}}}}
    - {{secretKey: api_token, remoteRef: {{key: api_token}}}}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {{name: flowyml, namespace: prod}}
spec:
  refreshInterval: 1h
  updatePolicy: Replace
  deletionPolicy: None
  secretStoreRefs:
    - {{labelSelector: {{matchLabels: {{flowyml/push: "yes"}}}}, kind: ClusterSecretStore}}
  selector:
    secret: {{name: flowyml-secrets}}
  data:
    - match: {{secretKey: db_password, remoteRef: {{remoteKey: {prefix}db-password}}}}
    - match: {{secretKey: auth_secret, remoteRef: {{remoteKey: {prefix}auth-secret}}}}
    - match: {{secretKey: api_token, remoteRef: {{remoteKey: {prefix}api-token}}}}
"#
    )
}

struct World {
    dir: tempfile::TempDir,
    creds: tempfile::TempDir,
    gcp: FakeSecretManager,
    prefix: String,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
        // The AWS credentials Secret, out of a cluster: files under a credentials folder.
        let creds = tempfile::tempdir().unwrap();
        let c = creds.path().join("external-secrets/aws-creds");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("access-key"), "testing").unwrap();
        std::fs::write(c.join("secret-access-key"), "testing").unwrap();
        let gcp = FakeSecretManager::start().await;
        let prefix = format!("flowyml-{:08x}-", rand::random::<u32>());
        let text = manifests(&gcp.url(), Moto::shared().url(), &prefix);
        std::fs::write(dir.path().join("flowyml.yaml"), text).unwrap();
        Self {
            dir,
            creds,
            gcp,
            prefix,
        }
    }

    fn manifests(&self) -> Manifests {
        let path = self.dir.path().join("flowyml.yaml");
        load_str(&std::fs::read_to_string(&path).unwrap(), &path)
            .into_result()
            .unwrap()
    }

    /// One `sync --once`, as the app runs it: the ExternalSecret cycle, then the pushes.
    async fn sync_once(&self) -> PushReport {
        let m = self.manifests();
        let registry =
            secretsync::registry().with_credentials(Arc::new(EnvFileCredentials::with_dir(self.creds.path())));
        let (stores, errors) = registry.build_all(&m).await;
        assert!(errors.is_empty(), "{errors:?}");
        let engine = Engine::new(stores, Arc::new(MemorySink::new()));
        let cycle = engine.run(&m, &CycleOptions::default()).await;
        assert!(cycle.all_synced(), "{}", cycle.to_text());
        push_all(&m, &engine).await
    }

    /// Writes of our keys that moto recorded so far.
    fn aws_writes(&self) -> usize {
        recording()
            .iter()
            .filter(|r| matches!(r.op.as_str(), "CreateSecret" | "PutSecretValue" | "UpdateSecret"))
            .filter(|r| r.body.contains(&self.prefix))
            .count()
    }

    fn gcp_writes(&self) -> usize {
        self.gcp.count("CreateSecret") + self.gcp.count("AddSecretVersion") + self.gcp.count("UpdateSecret")
    }

    fn gcp_value(&self, key: &str) -> Vec<u8> {
        let parent = format!("projects/{PROJECT}");
        let id = format!("{}{key}", self.prefix);
        let n = self.gcp.version_count(&parent, &id) as u64;
        self.gcp.data(&parent, &id, n).unwrap_or_default()
    }

    fn edit(&self, from: &str, to: &str) {
        let p = self.dir.path().join("prod.secrets.tfvars");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from));
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }
}

#[tokio::test]
async fn seed_001_tfvars_to_aws_and_gcp_once_then_only_what_changed() {
    let w = World::new().await;

    // 1. First run: three secrets created in each provider.
    let (aws0, gcp0) = (w.aws_writes(), w.gcp_writes());
    let r = w.sync_once().await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.writes, 6, "{}", r.to_text());
    assert!(r.entries.iter().all(|e| e.outcome == PushOutcome::Created));
    assert_eq!(w.aws_writes() - aws0, 3, "AWS: one CreateSecret per key");
    assert!(
        w.gcp_writes() - gcp0 >= 3,
        "GCP: CreateSecret + AddSecretVersion per key"
    );
    assert_eq!(w.gcp_value("db-password"), b"super_secure_db_password");
    assert!(!r.to_text().contains("super_secure"), "reports hold no values");

    // 2. Second run: nothing to write, counted at the servers.
    let (aws1, gcp1) = (w.aws_writes(), w.gcp_writes());
    let r = w.sync_once().await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.writes, 0, "{}", r.to_text());
    assert_eq!(w.aws_writes(), aws1, "moto saw no write");
    assert_eq!(w.gcp_writes(), gcp1, "the GCP fake saw no write");

    // 3. Rotate one value by editing the file: exactly one write per provider.
    w.edit("your_static_api_token", "rotated_api_token");
    let (aws2, gcp2) = (w.aws_writes(), w.gcp_writes());
    let r = w.sync_once().await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.writes, 2, "{}", r.to_text());
    assert_eq!(w.aws_writes() - aws2, 1, "one PutSecretValue at moto");
    assert_eq!(w.gcp_writes() - gcp2, 1, "one AddSecretVersion at the GCP fake");
    assert_eq!(w.gcp_value("api-token"), b"rotated_api_token");

    // 4. An empty value: refused for GCP before any call, naming the key; AWS takes it.
    w.edit("\"your_jwt_signing_secret_key\"", "\"\"");
    w.gcp.clear_log();
    let r = w.sync_once().await;
    let gcp_entry = r
        .entries
        .iter()
        .find(|e| e.store.contains("gcp") && e.remote_key.ends_with("auth-secret"))
        .unwrap();
    assert_eq!(gcp_entry.outcome, PushOutcome::Failed);
    let err = gcp_entry.error.as_deref().unwrap();
    assert!(err.contains("`auth_secret`") && err.contains("empty"), "{err}");
    let auth_calls = w
        .gcp
        .requests()
        .iter()
        .filter(|q| q.path.contains("auth-secret"))
        .count();
    assert_eq!(auth_calls, 0, "no GCP call for the empty key");
    assert_eq!(w.gcp_value("auth-secret"), b"your_jwt_signing_secret_key", "kept");
    assert!(!r.ok());
}

/// The same through the command line's `sync --once`: one run carries the tfvars to the
/// providers, the report names the pushes and the exit code says whether they worked.
#[tokio::test]
async fn sync_once_runs_the_push_after_the_external_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    let manifest = r#"apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: tfvars}
spec: {provider: {file: {path: prod.secrets.tfvars}}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: remote}
spec: {provider: {file: {path: remote.yaml}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: flowyml, namespace: prod}
spec:
  secretStoreRef: {name: tfvars, kind: ClusterSecretStore}
  target: {name: flowyml-secrets}
  data:
    - {secretKey: api_token, remoteRef: {key: api_token}}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: flowyml, namespace: prod}
spec:
  secretStoreRefs: [{name: remote, kind: ClusterSecretStore}]
  selector: {secret: {name: flowyml-secrets}}
  data:
    - match: {secretKey: api_token, remoteRef: {remoteKey: API_TOKEN}}
"#;
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, manifest).unwrap();
    let run = || async {
        let opts = SyncOptions {
            manifests: vec![path.clone()],
            once: true,
            sink: SinkChoice::Folder(dir.path().join("out")),
            format: Format::Json,
            ..Default::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_sync(&opts, &mut out, &mut err).await;
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        (code, json, String::from_utf8(err).unwrap())
    };
    let (code, json, err) = run().await;
    assert_eq!(code, Exit::Synced, "{json} {err}");
    assert_eq!(json["push"]["writes"], 1, "{json}");
    let remote = std::fs::read_to_string(dir.path().join("remote.yaml")).unwrap();
    assert!(remote.contains("API_TOKEN: your_static_api_token"), "{remote}");
    let (code, json, _) = run().await;
    assert_eq!(code, Exit::Synced);
    assert_eq!(json["push"]["writes"], 0, "{json}");
    assert_eq!(json["push"]["entries"][0]["outcome"], "Unchanged", "{json}");
    assert!(
        !json.to_string().contains("your_static"),
        "no value in the report: {json}"
    );

    // A push that fails is a failed run.
    std::fs::write(
        &path,
        manifest.replace(
            "secretKey: api_token, remoteRef: {remoteKey",
            "secretKey: nope, remoteRef: {remoteKey",
        ),
    )
    .unwrap();
    let (code, json, _) = run().await;
    assert_eq!(code, Exit::SpecFailed, "{json}");
}

/// The same push to Doppler (the fake, through our reqwest client) and to the file store;
/// `IfNotExists` leaves a value someone set by hand alone.
#[tokio::test]
async fn the_same_push_to_doppler_and_the_file_store() {
    let doppler = secretsync_fakes::doppler::FakeDoppler::start().await;
    doppler.create_config("flowyml", "prd");
    doppler.set_secret("flowyml", "prd", "API_TOKEN", "set-by-hand");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    let creds = tempfile::tempdir().unwrap();
    let c = creds.path().join("external-secrets/doppler-token");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("token"), doppler.service_token("flowyml", "prd")).unwrap();
    let text = format!(
        r#"apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: tfvars}}
spec: {{provider: {{file: {{path: prod.secrets.tfvars}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: doppler}}
spec:
  provider:
    doppler:
      endpoint: "{}"
      auth: {{secretRef: {{dopplerToken: {{name: doppler-token, key: token, namespace: external-secrets}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {{name: local}}
spec: {{provider: {{file: {{path: pushed.env}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: flowyml, namespace: prod}}
spec:
  secretStoreRef: {{name: tfvars, kind: ClusterSecretStore}}
  target: {{name: flowyml-secrets}}
  dataFrom: [{{extract: {{key: ignored}}}}]
"#,
        doppler.url()
    )
    .replace("  dataFrom: [{extract: {key: ignored}}]\n", "  data:\n    - {secretKey: db_password, remoteRef: {key: db_password}}\n    - {secretKey: api_token, remoteRef: {key: api_token}}\n");
    let push = |policy: &str| {
        format!(
            r#"---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {{name: flowyml-{}, namespace: prod}}
spec:
  updatePolicy: {policy}
  secretStoreRefs: [{{name: doppler, kind: ClusterSecretStore}}, {{name: local, kind: ClusterSecretStore}}]
  selector: {{secret: {{name: flowyml-secrets}}}}
  data:
    - match: {{secretKey: {}, remoteRef: {{remoteKey: {}}}}}
"#,
            policy.to_lowercase(),
            if policy == "Replace" {
                "db_password"
            } else {
                "api_token"
            },
            if policy == "Replace" {
                "DB_PASSWORD"
            } else {
                "API_TOKEN"
            },
        )
    };
    let all = format!("{text}{}{}", push("Replace"), push("IfNotExists"));
    let m = load_str(&all, dir.path().join("m.yaml")).into_result().unwrap();
    let run = || async {
        let registry = secretsync::registry().with_credentials(Arc::new(EnvFileCredentials::with_dir(creds.path())));
        let (stores, errors) = registry.build_all(&m).await;
        assert!(errors.is_empty(), "{errors:?}");
        let engine = Engine::new(stores, Arc::new(MemorySink::new()));
        assert!(engine.run(&m, &CycleOptions::default()).await.all_synced());
        let r = push_all(&m, &engine).await;
        assert!(r.ok(), "{}", r.to_text());
        r
    };
    let doppler_writes = || doppler.requests().iter().filter(|r| r.method == "POST").count();

    let r = run().await;
    // DB_PASSWORD to both stores; API_TOKEN exists in Doppler (left alone), is new locally.
    assert_eq!(r.writes, 3, "{}", r.to_text());
    assert_eq!(doppler_writes(), 1);
    assert_eq!(
        doppler.secret("flowyml", "prd", "DB_PASSWORD").as_deref(),
        Some("super_secure_db_password")
    );
    assert_eq!(
        doppler.secret("flowyml", "prd", "API_TOKEN").as_deref(),
        Some("set-by-hand")
    );
    let local = std::fs::read_to_string(dir.path().join("pushed.env")).unwrap();
    assert!(local.contains("DB_PASSWORD=\"super_secure_db_password\""), "{local}");
    assert!(local.contains("API_TOKEN=\"your_static_api_token\""), "{local}");

    let r = run().await;
    assert_eq!(r.writes, 0, "{}", r.to_text());
    assert_eq!(doppler_writes(), 1, "no write at Doppler on a re-run");

    // `deletionPolicy: Delete`, then DB_PASSWORD dropped from the PushSecret: the file store
    // deletes it; Doppler cannot tell what secretsync created, so its key stays, the report
    // says why once, and later runs neither retry nor fail.
    let state = dir.path().join("push-state");
    let with_delete = |keep_db: bool| {
        let mut ps = push("Replace").replace(
            "  updatePolicy: Replace\n",
            "  updatePolicy: Replace\n  deletionPolicy: Delete\n",
        );
        if !keep_db {
            ps = ps.replace(
                "secretKey: db_password, remoteRef: {remoteKey: DB_PASSWORD}",
                "secretKey: api_token, remoteRef: {remoteKey: TOKEN_COPY}",
            );
        }
        load_str(&format!("{text}{ps}"), dir.path().join("m.yaml"))
            .into_result()
            .unwrap()
    };
    let push_with_state = |m: Manifests| {
        let creds = creds.path().to_path_buf();
        let state = state.clone();
        async move {
            let registry = secretsync::registry().with_credentials(Arc::new(EnvFileCredentials::with_dir(&creds)));
            let (stores, errors) = registry.build_all(&m).await;
            assert!(errors.is_empty(), "{errors:?}");
            let engine = Engine::new(stores, Arc::new(MemorySink::new()));
            assert!(engine.run(&m, &CycleOptions::default()).await.all_synced());
            secretsync::push::push_all_with(&m, &engine, &secretsync::push::PushOptions { state_dir: Some(state) })
                .await
        }
    };
    let r = push_with_state(with_delete(true)).await;
    assert!(r.ok(), "{}", r.to_text());
    let r = push_with_state(with_delete(false)).await;
    assert!(r.ok(), "a key Doppler cannot delete is not a failure: {}", r.to_text());
    let outcome = |store: &str, key: &str| {
        r.entries
            .iter()
            .find(|e| e.store.contains(store) && e.remote_key == key)
            .map(|e| (e.outcome, e.error.clone().unwrap_or_default()))
            .unwrap_or_else(|| panic!("no entry for {store} {key}: {}", r.to_text()))
    };
    assert_eq!(
        outcome("local", "DB_PASSWORD").0,
        PushOutcome::Deleted,
        "{}",
        r.to_text()
    );
    let (o, why) = outcome("doppler", "DB_PASSWORD");
    assert_eq!(o, PushOutcome::LeftNotDeletable, "{}", r.to_text());
    assert!(why.contains("no tag or label"), "{why}");
    assert!(!why.contains("super_secure"), "never a value: {why}");
    assert_eq!(
        doppler.secret("flowyml", "prd", "DB_PASSWORD").as_deref(),
        Some("super_secure_db_password"),
        "the Doppler key stays"
    );
    assert!(
        !std::fs::read_to_string(dir.path().join("pushed.env"))
            .unwrap()
            .contains("DB_PASSWORD=")
    );
    let r = push_with_state(with_delete(false)).await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.deletes, 0);
    assert!(
        r.entries.iter().all(|e| e.remote_key != "DB_PASSWORD"),
        "not tried again: {}",
        r.to_text()
    );
}

/// ESO's bug avoided: a GCP secret that exists with no version (created by Terraform's
/// `google_secret_manager_secret` before its first `..._version`) gets its first version.
#[tokio::test]
async fn a_gcp_secret_without_a_version_gets_its_first_version() {
    let w = World::new().await;
    let parent = format!("projects/{PROJECT}");
    for k in ["db-password", "auth-secret", "api-token"] {
        w.gcp
            .create_secret(&parent, &format!("{}{k}", w.prefix), &[("managed-by", "secretsync")]);
    }
    let r = w.sync_once().await;
    assert!(r.ok(), "{}", r.to_text());
    let gcp: Vec<PushOutcome> = r
        .entries
        .iter()
        .filter(|e| e.store.contains("gcp"))
        .map(|e| e.outcome)
        .collect();
    assert_eq!(gcp, [PushOutcome::Updated; 3], "{}", r.to_text());
    assert_eq!(w.gcp.version_count(&parent, &format!("{}db-password", w.prefix)), 1);
    assert_eq!(w.gcp_value("db-password"), b"super_secure_db_password");
    let again = w.sync_once().await;
    assert_eq!(again.writes, 0, "{}", again.to_text());
}

/// `deletionPolicy: Delete` on AWS and GCP: a key dropped from the PushSecret is deleted at
/// moto with a recovery window (restorable) and at the GCP fake; the others stay.
#[tokio::test]
async fn delete_on_aws_and_gcp_removes_only_the_dropped_key() {
    let w = World::new().await;
    let state = w.dir.path().join("push-state");
    let path = w.dir.path().join("flowyml.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("  deletionPolicy: None", "  deletionPolicy: Delete");
    std::fs::write(&path, &text).unwrap();
    let run = || async {
        let m = w.manifests();
        let registry = secretsync::registry().with_credentials(Arc::new(EnvFileCredentials::with_dir(w.creds.path())));
        let (stores, errors) = registry.build_all(&m).await;
        assert!(errors.is_empty(), "{errors:?}");
        let engine = Engine::new(stores, Arc::new(MemorySink::new()));
        assert!(engine.run(&m, &CycleOptions::default()).await.all_synced());
        let r = secretsync::push::push_all_with(
            &m,
            &engine,
            &secretsync::push::PushOptions {
                state_dir: Some(state.clone()),
            },
        )
        .await;
        assert!(r.ok(), "{}", r.to_text());
        r
    };
    assert_eq!(run().await.writes, 6);
    let dropped = format!(
        "    - match: {{secretKey: api_token, remoteRef: {{remoteKey: {}api-token}}}}\n",
        w.prefix
    );
    assert!(text.contains(&dropped));
    std::fs::write(&path, text.replace(&dropped, "")).unwrap();
    let before = recording().len();
    w.gcp.clear_log();
    let r = run().await;
    assert_eq!((r.writes, r.deletes), (0, 2), "{}", r.to_text());
    // GCP has no recovery window: the secret is gone, deleted once.
    assert_eq!(w.gcp.count("DeleteSecret"), 1);
    let parent = format!("projects/{PROJECT}");
    assert!(w.gcp.labels(&parent, &format!("{}api-token", w.prefix)).is_none());
    assert!(w.gcp.labels(&parent, &format!("{}db-password", w.prefix)).is_some());
    let deletes: Vec<String> = recording()[before..]
        .iter()
        .filter(|q| q.op == "DeleteSecret")
        .map(|q| q.body.clone())
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(deletes[0].contains(&format!("{}api-token", w.prefix)), "{deletes:?}");
    assert!(deletes[0].contains("\"RecoveryWindowInDays\":30"), "{deletes:?}");
    assert!(!deletes[0].contains("ForceDeleteWithoutRecovery"), "{deletes:?}");
    // The next run deletes nothing more.
    assert_eq!(run().await.deletes, 0);
}
