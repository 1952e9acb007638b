//! `sync --manifest M --once` with `KUBECONFIG` pointing at the fake API server writes the
//! Secrets and the ConfigMap, and a second run writes nothing — through the real `sync`
//! binary (built with feature `k8s`) and a real kube client.

use std::path::PathBuf;

fn sync_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples").join("sync");
    assert!(
        p.exists(),
        "{} is missing: `cargo test --features k8s` builds the examples",
        p.display()
    );
    p
}

#[tokio::test]
async fn sync_once_against_the_fake_api_server() {
    let kube = secretsync_fakes::kube::FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    kube.create_namespaces(&["tomoda", "data"]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig_yaml()).unwrap();
    let quickstart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/manifests/quickstart.yaml");
    let run = || {
        tokio::process::Command::new(sync_binary())
            .args(["--manifest", quickstart.to_str().unwrap(), "--once", "--format", "json"])
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
    };
    let out = run().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["writes"], 4, "{report}");
    for (ns, name) in [
        ("tomoda", "s3-uploader-secret"),
        ("tomoda", "backend-secrets-dev"),
        ("data", "postgres-dev-credentials-eso"),
    ] {
        let s = kube
            .object("v1", "secrets", Some(ns), name)
            .unwrap_or_else(|| panic!("Secret {ns}/{name}"));
        assert!(
            s["data"].as_object().is_some_and(|d| !d.is_empty()),
            "{ns}/{name} has data"
        );
    }
    assert!(
        kube.object("v1", "configmaps", Some("tomoda"), "backend-config-dev")
            .is_some()
    );

    let writes = kube.write_count();
    let out = run().await.unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["writes"], 0);
    assert_eq!(kube.write_count(), writes, "no write request reached the API server");
}
