//! Ctrl-C is never lost while a daemon cycle runs: with an AWS store whose endpoint
//! refuses connections (every fetch retries with backoff), each SIGINT — whenever it lands —
//! stops `secretsync sync` promptly, and a second one exits at once.

use std::process::Stdio;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");

fn fifty_specs(dir: &std::path::Path) -> std::path::PathBuf {
    let mut m = String::from(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: aws}\nspec: {provider: {aws: {service: SecretsManager, region: us-east-1}}}\n",
    );
    for i in 0..50 {
        m.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: app-{i}, namespace: dev}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: aws, kind: ClusterSecretStore}}\n  data:\n    - {{secretKey: K, remoteRef: {{key: app-{i}}}}}\n"
        ));
    }
    let p = dir.join("fifty-specs.yaml");
    std::fs::write(&p, m).unwrap();
    p
}

async fn interrupt_after(delay: Duration, signals: usize) -> (Duration, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let m = fifty_specs(dir.path());
    let child = tokio::process::Command::new(BIN)
        .args([
            "sync",
            "-m",
            m.to_str().unwrap(),
            "--output",
            dir.path().join("o").to_str().unwrap(),
        ])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(delay).await;
    let pid = child.id().unwrap().to_string();
    let sent = Instant::now();
    for _ in 0..signals {
        assert!(
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("secretsync stops on Ctrl-C")
        .unwrap()
        .status;
    (sent.elapsed(), status.code())
}

#[tokio::test]
async fn every_ctrl_c_stops_the_daemon_even_mid_cycle() {
    for ms in [300, 700, 1200, 2000, 3100, 4500] {
        let (took, code) = interrupt_after(Duration::from_millis(ms), 1).await;
        assert!(took < Duration::from_secs(2), "Ctrl-C after {ms} ms took {took:?}");
        assert!(matches!(code, Some(1 | 130)), "after {ms} ms: exit {code:?}");
    }
    let (took, code) = interrupt_after(Duration::from_millis(800), 2).await;
    assert!(took < Duration::from_secs(2), "two Ctrl-C took {took:?}");
    assert!(matches!(code, Some(1 | 130)), "{code:?}");
}
