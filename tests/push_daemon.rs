//! The `sync` daemon honours a PushSecret's `refreshInterval` (ESO's default 1h): a cycle
//! re-checks it only when it is due — the first cycle, or when the ExternalSecret target it
//! reads was written in that cycle — not on every cycle that refreshes some ExternalSecret.

use std::time::Duration;

use secretsync::app::{Format, SinkChoice, Stop, SyncOptions, run_sync};

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
  refreshInterval: 1s
  secretStoreRef: {name: local}
  target: {name: app-secrets}
  data:
    - {secretKey: API_TOKEN, remoteRef: {key: api-token}}
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

#[tokio::test]
async fn the_daemon_pushes_when_due_not_every_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.yaml");
    std::fs::write(&m, MANIFESTS).unwrap();
    std::fs::write(dir.path().join("secrets.yaml"), "api-token: one\n").unwrap();
    std::fs::write(dir.path().join("remote.yaml"), "{}\n").unwrap();
    let (stop, handle) = Stop::manual();
    let opts = SyncOptions {
        manifests: vec![m],
        sink: SinkChoice::Folder(dir.path().join("out")),
        format: Format::Json,
        stop,
        ..SyncOptions::default()
    };
    let secrets = dir.path().join("secrets.yaml");
    let editor = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        std::fs::write(&secrets, "api-token: two\n").unwrap();
        tokio::time::sleep(Duration::from_millis(3000)).await;
        handle.stop();
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run_sync(&opts, &mut out, &mut err).await;
    editor.await.unwrap();
    let reports: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let err = String::from_utf8_lossy(&err);
    assert!(
        reports.len() >= 4,
        "the ExternalSecret refreshes every second: {reports:?} {err}"
    );
    let pushed: Vec<usize> = reports
        .iter()
        .map(|r| r["push"]["entries"].as_array().map_or(0, Vec::len))
        .collect();
    let writes: Vec<u64> = reports
        .iter()
        .map(|r| r["push"]["writes"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        pushed.iter().filter(|n| **n > 0).count(),
        2,
        "pushed on the first cycle and after the edit only: {pushed:?}"
    );
    assert_eq!(writes.iter().sum::<u64>(), 2, "{writes:?}");
    assert_eq!(pushed[0], 1, "the first cycle pushes: {pushed:?}");
    let remote = std::fs::read_to_string(dir.path().join("remote.yaml")).unwrap();
    assert!(remote.contains("app-api-token: two"), "{remote}");
}
