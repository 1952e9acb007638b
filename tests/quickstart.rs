//! The README's quickstart: `sync --manifest examples/manifests/quickstart.yaml --once
//! --output DIR` on a fresh clone, no cloud account, no cluster.

use std::path::PathBuf;

use secretsync::app::{Exit, Format, SinkChoice, SyncOptions, run_sync};
use secretsync::sinks::parse_manifest;

fn quickstart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/manifests/quickstart.yaml")
}

async fn sync_json(opts: &SyncOptions) -> (Exit, serde_json::Value, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_sync(opts, &mut out, &mut err).await;
    let out = String::from_utf8(out).unwrap();
    let json = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
    (code, json, String::from_utf8(err).unwrap())
}

#[tokio::test]
async fn quickstart_writes_the_expected_secrets_then_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SyncOptions {
        manifests: vec![quickstart()],
        once: true,
        sink: SinkChoice::Folder(dir.path().to_path_buf()),
        format: Format::Json,
        ..Default::default()
    };
    let (code, report, err) = sync_json(&opts).await;
    assert_eq!(code, Exit::Synced, "{err}");
    assert_eq!(report["writes"], 4);
    let read = |rel: &str| {
        let text = std::fs::read_to_string(dir.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        parse_manifest(&text, rel).unwrap().1
    };
    let get =
        |s: &secretsync::TargetState, k: &str| String::from_utf8(s.data.get(k).unwrap().expose().to_vec()).unwrap();
    let s3 = read("tomoda/s3-uploader-secret.yaml");
    assert_eq!(
        s3.data.keys().cloned().collect::<Vec<_>>(),
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "S3_BASE_URL",
            "S3_BUCKET",
            "S3_REGION"
        ]
    );
    assert_eq!(get(&s3, "S3_BUCKET"), "tomoda-assets-dev");
    assert_eq!(get(&s3, "S3_REGION"), "ap-northeast-1");
    let backend = read("tomoda/backend-secrets-dev.yaml");
    let pg = read("data/postgres-dev-credentials-eso.yaml");
    assert_eq!(
        get(&backend, "DB_PASSWORD"),
        get(&pg, "password"),
        "one DB password, two targets in two namespaces"
    );
    assert_eq!(pg.secret_type.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(get(&pg, "username"), "tomoda_dev_user");
    let cm = read("tomoda/backend-config-dev.configmap.yaml");
    assert_eq!(get(&cm, "DB_PORT"), "5432");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tomoda/backend-secrets-dev.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let specs = report["specs"].as_array().unwrap();
    assert_eq!(specs.len(), 4);
    for s in specs {
        assert_eq!(s["status"], "SecretSynced");
        assert_eq!(s["changed"], true);
        for field in ["name", "namespace", "message"] {
            assert!(s[field].is_string(), "{field} in {s}");
        }
    }

    // The second run changes nothing and writes nothing.
    let before: Vec<_> = ["tomoda/s3-uploader-secret.yaml", "tomoda/backend-secrets-dev.yaml"]
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    let (code, report, _) = sync_json(&opts).await;
    assert_eq!(code, Exit::Synced);
    assert_eq!(report["writes"], 0);
    assert!(
        report["specs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["changed"] == false)
    );
    let after: Vec<_> = ["tomoda/s3-uploader-secret.yaml", "tomoda/backend-secrets-dev.yaml"]
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn check_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let check = SyncOptions {
        manifests: vec![quickstart()],
        check: true,
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run_sync(&check, &mut out, &mut err).await, Exit::Synced);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("ok: 1 store(s), 3 ExternalSecret(s), 1 static target(s)")
    );

    // A broken manifest: exit 2 with every problem listed, nothing written.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: a, namespace: n}\nspec:\n  secretStoreRef: {name: nowhere}\n  data:\n    - {secretKey: 'A B', remoteRef: {key: k}}\n    - {secretKey: 'A B', remoteRef: {key: k}}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let opts = SyncOptions {
        manifests: vec![bad.clone()],
        once: true,
        sink: SinkChoice::Folder(out_dir.clone()),
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run_sync(&opts, &mut out, &mut err).await, Exit::BadInput);
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains("spec.secretStoreRef.name: missing store"), "{err}");
    assert!(err.contains("spec.data[0].secretKey: key `A B`"), "{err}");
    assert!(err.contains("spec.data[1].secretKey: duplicate secretKey"), "{err}");
    assert!(!out_dir.exists());

    // --check fails on the missing store too, as an error (the run fails that spec).
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let check = SyncOptions {
        manifests: vec![bad],
        check: true,
        ..Default::default()
    };
    assert_eq!(
        run_sync(&check, &mut out, &mut err).await,
        Exit::BadInput,
        "the bad keys still fail"
    );
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains("missing store")),
        "{err}"
    );

    // A spec failing at sync time: exit 1.
    let failing = dir.path().join("failing.yaml");
    std::fs::write(
        &failing,
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: s, namespace: n}\nspec: {provider: {fake: {data: [{key: k, value: v}]}}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: a, namespace: n}\nspec:\n  secretStoreRef: {name: s}\n  data: [{secretKey: A, remoteRef: {key: missing}}]\n",
    )
    .unwrap();
    let opts = SyncOptions {
        manifests: vec![failing],
        once: true,
        sink: SinkChoice::Folder(out_dir),
        format: Format::Json,
        ..Default::default()
    };
    let (code, report, _) = sync_json(&opts).await;
    assert_eq!(code, Exit::SpecFailed);
    assert_eq!(report["specs"][0]["status"], "SecretSyncedError");
    assert!(report["specs"][0]["message"].as_str().unwrap().contains("`missing`"));
}

#[tokio::test]
async fn daemon_picks_up_force_sync_and_remote_changes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.yaml");
    let doc = |value: &str, force: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: s, namespace: n}}\nspec: {{provider: {{fake: {{data: [{{key: k, value: {value}}}]}}}}}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: a, namespace: n, annotations: {{force-sync: \"{force}\"}}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: s}}\n  data: [{{secretKey: K, remoteRef: {{key: k}}}}]\n"
        )
    };
    std::fs::write(&manifest, doc("v1", "1")).unwrap();
    let out_dir = dir.path().join("out");
    let opts = SyncOptions {
        manifests: vec![manifest.clone()],
        sink: SinkChoice::Folder(out_dir.clone()),
        format: Format::Json,
        reload_every: Some(std::time::Duration::from_millis(100)),
        max_cycles: Some(2),
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let edit = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        // `kubectl annotate externalsecret a force-sync=$(date +%s) --overwrite`, as a file edit.
        std::fs::write(&manifest, doc("v2", "2")).unwrap();
    };
    let (code, ()) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(run_sync(&opts, &mut out, &mut err), edit)
    })
    .await
    .expect("the forced cycle runs long before the 1h refresh interval");
    assert_eq!(code, Exit::Synced, "{}", String::from_utf8_lossy(&err));
    let reports: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (reports[0]["writes"].as_u64(), reports[1]["writes"].as_u64()),
        (Some(1), Some(1))
    );
    let text = std::fs::read_to_string(out_dir.join("n/a.yaml")).unwrap();
    let (_, state) = parse_manifest(&text, "a.yaml").unwrap();
    assert_eq!(state.data.get("K").unwrap().expose(), b"v2");
}
