//! Templates end to end into Kubernetes: the real `secretsync` binary (`sync --once`,
//! `KUBECONFIG` pointing at `secretsync_fakes::kube::FakeKube`) reads a `file` store holding
//! a base64 PKCS#12 keystore, a JWK and registry credentials, renders ESO templates — a
//! `kubernetes.io/tls` bundle with `pkcs12cert` / `pkcs12key`, a `jwkPublicKeyPem`, and a
//! `.dockerconfigjson` built with `range` — and writes the Secrets through a real kube
//! client. The expected bytes were computed with openssl and Python's `cryptography` when
//! the fixtures were made (`tests/fixtures/templates-k8s/gen.sh`), not by secretsync.

use std::path::{Path, PathBuf};

use base64::Engine as _;

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates-k8s")
}

fn fixture(name: &str) -> Vec<u8> {
    let p = fixtures().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The manifests: one file store, a TLS Secret and a pull Secret, in namespace `shop`.
fn manifests(secrets: &Path) -> String {
    format!(
        r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: local, namespace: shop}}
spec: {{provider: {{file: {{path: "{secrets}"}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: shop-tls, namespace: shop}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: local}}
  target:
    name: shop-tls
    template:
      type: kubernetes.io/tls
      engineVersion: v2
      data:
        tls.crt: '{{{{ .keystore | b64dec | pkcs12certPass "hunter2" }}}}'
        tls.key: '{{{{ .keystore | b64dec | pkcs12keyPass "hunter2" }}}}'
        jwt.pub: '{{{{ .jwk | jwkPublicKeyPem }}}}'
  data:
    - {{secretKey: keystore, remoteRef: {{key: tls/keystore}}}}
    - {{secretKey: jwk, remoteRef: {{key: auth/jwk}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: shop-pull, namespace: shop}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: local}}
  target:
    name: shop-pull
    template:
      type: kubernetes.io/dockerconfigjson
      engineVersion: v2
      data:
        .dockerconfigjson: |
          {{{{- $auths := dict -}}}}
          {{{{- range $registry, $c := .registries | fromJson -}}}}
          {{{{- $_ := set $auths $registry (dict "username" $c.user "password" $c.pass "auth" (printf "%s:%s" $c.user $c.pass | b64enc)) -}}}}
          {{{{- end -}}}}
          {{{{- dict "auths" $auths | toJson -}}}}
  data:
    - {{secretKey: registries, remoteRef: {{key: registry/creds}}}}
"#,
        secrets = secrets.display()
    )
}

/// The decoded `data` of a Secret in the fake, by key.
fn secret_data(s: &serde_json::Value) -> Vec<(String, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    s["data"]
        .as_object()
        .expect("a Secret with data")
        .iter()
        .map(|(k, v)| (k.clone(), b64.decode(v.as_str().expect("base64 text")).expect("base64")))
        .collect()
}

#[tokio::test]
async fn tls_bundle_jwk_and_docker_config_sync_into_kubernetes() {
    let kube = secretsync_fakes::kube::FakeKube::start().await;
    kube.create_namespaces(&["shop"]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig_yaml()).unwrap();
    let manifest = dir.path().join("shop.yaml");
    std::fs::write(&manifest, manifests(&fixtures().join("secrets.json"))).unwrap();
    let run = || async {
        let out = tokio::process::Command::new(BIN)
            .args(["sync", "--once", "--format", "json", "-m"])
            .arg(&manifest)
            .env("KUBECONFIG", &kubeconfig)
            .env("SECRETSYNC_STATE_DIR", dir.path().join("state"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let report = run().await;
    assert_eq!(report["writes"], 2, "{report}");

    let tls = kube
        .object("v1", "secrets", Some("shop"), "shop-tls")
        .expect("Secret shop/shop-tls");
    assert_eq!(tls["type"], "kubernetes.io/tls");
    assert_eq!(
        secret_data(&tls),
        vec![
            ("jwt.pub".to_string(), fixture("expected-jwt.pub")),
            ("tls.crt".to_string(), fixture("expected-tls.crt")),
            ("tls.key".to_string(), fixture("expected-tls.key")),
        ],
        "keys and exact bytes of the TLS bundle"
    );

    let pull = kube
        .object("v1", "secrets", Some("shop"), "shop-pull")
        .expect("Secret shop/shop-pull");
    assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        secret_data(&pull),
        vec![(".dockerconfigjson".to_string(), fixture("expected-dockerconfig.json"))],
        "the docker config, byte for byte as Go's json.Marshal writes it"
    );

    // A second run renders the same bytes and sends no write.
    let writes = kube.write_count();
    assert!(writes >= 2, "the first run wrote through the API server");
    let report = run().await;
    assert_eq!(report["writes"], 0, "{report}");
    assert_eq!(kube.write_count(), writes, "no write request reached the API server");
}
