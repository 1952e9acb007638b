//! Templates end to end through the engine: a TLS bundle from a PKCS#12 archive and a JWK,
//! and a docker config built with `range` from a template kept in a ConfigMap
//! (`templateFrom`), synced into the memory sink.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use secretsync_core::engine::{CycleOptions, Engine};
use secretsync_core::manifest::{StoreId, StoreKind, load_str, validate};
use secretsync_core::registry::BuiltStore;
use secretsync_core::sources::MemorySource;
use secretsync_core::testkit::MemorySink;
use secretsync_core::{TargetKind, TargetRef};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/template-crypto")
            .join(name),
    )
    .unwrap()
}

const MANIFESTS: &str = r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: mem}
spec: {provider: {fake: {data: []}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: web-tls, namespace: prod}
spec:
  secretStoreRef: {name: mem, kind: ClusterSecretStore}
  target:
    template:
      type: kubernetes.io/tls
      engineVersion: v2
      data:
        tls.crt: '{{ .keystore | b64dec | pkcs12certPass "s3cret" | filterCertChain "leaf" }}'
        tls.key: '{{ .keystore | b64dec | pkcs12keyPass "s3cret" }}'
        ca.crt: '{{ .keystore | b64dec | pkcs12certPass "s3cret" | filterCertChain "root" }}'
        jwt.pub: '{{ .jwkPublic | jwkPublicKeyPem }}'
        jwt.key: '{{ .jwkPrivate | jwkPrivateKeyPem }}'
        sans: '{{ .keystore | b64dec | pkcs12certPass "s3cret" | certSANs | join "," }}'
  data:
    - {secretKey: keystore, remoteRef: {key: tls/keystore}}
    - {secretKey: jwkPublic, remoteRef: {key: auth/jwk-public}}
    - {secretKey: jwkPrivate, remoteRef: {key: auth/jwk-private}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: docker-templates, namespace: prod}
data:
  .dockerconfigjson: |
    {{- $auths := dict -}}
    {{- range $registry, $c := .registries | fromJson -}}
    {{- $_ := set $auths $registry (dict "username" $c.user "password" $c.pass "auth" (printf "%s:%s" $c.user $c.pass | b64enc)) -}}
    {{- end -}}
    {{- dict "auths" $auths | toJson -}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: pull-secret, namespace: prod}
spec:
  secretStoreRef: {name: mem, kind: ClusterSecretStore}
  target:
    template:
      type: kubernetes.io/dockerconfigjson
      templateFrom:
        - configMap:
            name: docker-templates
            items: [{key: .dockerconfigjson}]
        - target: Labels
          literal: 'registries: "{{ .registries | fromJson | len }}"'
  data:
    - {secretKey: registries, remoteRef: {key: registry/creds}}
"#;

#[tokio::test]
async fn tls_bundle_and_docker_config_sync_end_to_end() {
    let m = load_str(MANIFESTS, "templates.yaml")
        .into_result()
        .expect("manifests load");
    let (errors, _) = validate(&m, Default::default());
    assert!(errors.is_empty(), "{errors:?}");
    let src = Arc::new(MemorySource::new("fake"));
    let b64 = base64::engine::general_purpose::STANDARD;
    src.set("tls/keystore", b64.encode(fixture("leaf-pass.p12")).as_str());
    src.set(
        "auth/jwk-public",
        String::from_utf8(fixture("rsa-public.jwk")).unwrap().as_str(),
    );
    src.set(
        "auth/jwk-private",
        String::from_utf8(fixture("rsa-private.jwk")).unwrap().as_str(),
    );
    src.set(
        "registry/creds",
        r#"{"registry.example.com":{"user":"u1","pass":"p1"},"ghcr.io":{"user":"bot","pass":"t0ken"}}"#,
    );
    let sink = Arc::new(MemorySink::new());
    let store = StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: "mem".into(),
    };
    let engine = Engine::new(
        BTreeMap::from([(
            store,
            BuiltStore {
                source: src.clone(),
                writer: None,
            },
        )]),
        sink.clone(),
    );
    let report = engine.run(&m, &CycleOptions::default()).await;
    assert!(report.all_synced(), "{:?}", report.failed().next());

    let tls = sink
        .get(&TargetRef {
            kind: TargetKind::Secret,
            namespace: "prod".into(),
            name: "web-tls".into(),
        })
        .expect("web-tls written");
    assert_eq!(tls.secret_type.as_deref(), Some("kubernetes.io/tls"));
    let get = |k: &str| tls.data.get(k).unwrap_or_else(|| panic!("key {k}")).expose().to_vec();
    assert_eq!(get("tls.crt"), fixture("leaf.crt"));
    assert_eq!(get("ca.crt"), fixture("root.crt"));
    assert_eq!(get("tls.key"), fixture("expected-pkcs12key.pem"));
    assert_eq!(get("jwt.pub"), fixture("expected-rsa-public.pem"));
    assert_eq!(get("jwt.key"), fixture("expected-rsa-private.pem"));
    assert_eq!(
        get("sans"),
        b"app.example.com,www.example.com,10.0.0.1,2001:db8::1,ops@example.com,spiffe://example.com/app"
    );
    assert_eq!(tls.data.len(), 6, "Replace: only templated keys");

    let pull = sink
        .get(&TargetRef {
            kind: TargetKind::Secret,
            namespace: "prod".into(),
            name: "pull-secret".into(),
        })
        .expect("pull-secret written");
    assert_eq!(pull.secret_type.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    let cfg: serde_json::Value =
        serde_json::from_slice(pull.data.get(".dockerconfigjson").unwrap().expose()).expect("JSON");
    assert_eq!(cfg["auths"]["ghcr.io"]["auth"], b64.encode("bot:t0ken"));
    assert_eq!(cfg["auths"]["registry.example.com"]["username"], "u1");
    assert_eq!(
        String::from_utf8(pull.data.get(".dockerconfigjson").unwrap().expose().to_vec()).unwrap(),
        r#"{"auths":{"ghcr.io":{"auth":"Ym90OnQwa2Vu","password":"t0ken","username":"bot"},"registry.example.com":{"auth":"dTE6cDE=","password":"p1","username":"u1"}}}"#
    );
    assert_eq!(pull.labels.get("registries").map(String::as_str), Some("2"));

    // A second cycle with nothing changed writes nothing.
    let again = engine.run(&m, &CycleOptions::default()).await;
    assert_eq!(again.writes, 0);
}

#[test]
fn template_from_errors_name_the_field() {
    let bad = MANIFESTS.replace("items: [{key: .dockerconfigjson}]", "items: [{key: nope}]");
    let m = load_str(&bad, "templates.yaml").into_result().expect("loads");
    let (errors, _) = validate(&m, Default::default());
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter().any(
            |e| e.contains("spec.target.template.templateFrom[0].configMap.items[0].key")
                && e.contains("key `nope` is not in configMap `docker-templates`")
        ),
        "{text:?}"
    );
    let v1 = MANIFESTS.replace("engineVersion: v2", "engineVersion: v1");
    let m = load_str(&v1, "templates.yaml").into_result().expect("loads");
    let (errors, _) = validate(&m, Default::default());
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("spec.target.template.engineVersion")),
        "{errors:?}"
    );
}
