//! A change event that makes the `sync` daemon rewrite a target also pushes the
//! PushSecrets that read that target, in the same burst: `POST /refresh` for the key an
//! ExternalSecret reads → its target is rewritten → the PushSecret selecting that target
//! writes the new value to its remote store once, long before either's 1h refresh.
//! Counted at the remote store (a `file` store: the file's content) and in the report.

use std::path::Path;
use std::time::Duration;

use secretsync_fakes::daemon::DaemonProcess;

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");
const TOKEN: &str = "push-refresh-t0ken";

const MANIFESTS: &str = r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: local, namespace: dev}
spec: {provider: {file: {path: secrets.yaml}}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: remote, namespace: dev}
spec: {provider: {file: {path: remote.yaml}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: app, namespace: dev}
spec:
  refreshInterval: 1h
  secretStoreRef: {name: local}
  target: {name: app-secrets}
  data:
    - {secretKey: API_TOKEN, remoteRef: {key: api-token}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: unrelated, namespace: dev}
spec:
  refreshInterval: 1h
  secretStoreRef: {name: local}
  data:
    - {secretKey: OTHER, remoteRef: {key: other}}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: app, namespace: dev}
spec:
  refreshInterval: 1h
  secretStoreRefs: [{name: remote}]
  selector: {secret: {name: app-secrets}}
  data:
    - match: {secretKey: API_TOKEN, remoteRef: {remoteKey: app-api-token}}
"#;

fn remote(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("remote.yaml")).unwrap_or_default()
}

fn refresh(url: &str, key: &str) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("{url}/refresh?store=local&namespace=dev&key={key}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .expect("the daemon answers")
        .status()
        .as_u16()
}

#[test]
fn an_event_driven_sync_pushes_the_target_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), MANIFESTS).unwrap();
    std::fs::write(dir.path().join("secrets.yaml"), "api-token: one\nother: o\n").unwrap();
    std::fs::write(dir.path().join("remote.yaml"), "{}\n").unwrap();
    let out = dir.path().join("out").display().to_string();
    let envs = [
        ("SECRETSYNC_REFRESH_TOKEN", TOKEN.to_string()),
        ("SECRETSYNC_STATE_DIR", dir.path().join("state").display().to_string()),
        (
            "SECRETSYNC_PUSH_STATE_DIR",
            dir.path().join("push-state").display().to_string(),
        ),
    ];
    let (d, first) = DaemonProcess::start(BIN, &dir.path().join("m.yaml"), &["--output", &out], &envs);
    assert_eq!(first["push"]["writes"], 1, "the first cycle pushes: {first}");
    assert!(
        remote(dir.path()).contains("app-api-token: one"),
        "{}",
        remote(dir.path())
    );

    // The value changes at its source; an event names the key.
    std::fs::write(dir.path().join("secrets.yaml"), "api-token: two\nother: o\n").unwrap();
    assert_eq!(refresh(&d.url, "api-token"), 202);
    let r = d.next_report(Duration::from_secs(20)).expect("an event-driven cycle");
    assert_eq!(r["events"], 1, "{r}");
    assert_eq!(r["writes"], 1, "the target rewritten: {r}");
    assert_eq!(r["push"]["writes"], 1, "and pushed in the same burst: {r}");
    assert!(
        remote(dir.path()).contains("app-api-token: two"),
        "{}",
        remote(dir.path())
    );

    // An event for a key that feeds no PushSecret writes its target and pushes nothing.
    std::fs::write(dir.path().join("secrets.yaml"), "api-token: two\nother: changed\n").unwrap();
    let before = remote(dir.path());
    assert_eq!(refresh(&d.url, "other"), 202);
    let r = d.next_report(Duration::from_secs(20)).expect("an event-driven cycle");
    assert_eq!(r["writes"], 1, "{r}");
    assert_eq!(r["push"]["writes"].as_u64().unwrap_or(0), 0, "{r}");
    assert_eq!(remote(dir.path()), before, "the remote store untouched");
}
