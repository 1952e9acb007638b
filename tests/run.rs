//! `run`: values reach a child process's environment, `--redact` masks them in its output,
//! `--watch` restarts it on change, and nothing is written to disk. Drives the real `run`
//! example binary (built by `cargo test`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

fn run_binary() -> PathBuf {
    // target/debug/deps/run-<hash> -> target/debug/examples/run
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples").join("run");
    assert!(
        p.exists(),
        "{} is missing: `cargo test` builds the examples; run `cargo build --examples`",
        p.display()
    );
    p
}

fn manifests(dir: &Path, secrets: &str) -> PathBuf {
    std::fs::write(dir.join("secrets.yaml"), secrets).unwrap();
    let m = dir.join("manifests.yaml");
    std::fs::write(
        &m,
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: local, namespace: dev}\nspec: {provider: {file: {path: secrets.yaml}}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: app, namespace: dev}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {name: local}\n  data:\n    - {secretKey: API_TOKEN, remoteRef: {key: api-token}}\n    - {secretKey: DB_PASSWORD, remoteRef: {key: db, property: password}}\n",
    )
    .unwrap();
    m
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test]
async fn values_reach_the_child_redacted_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(
        dir.path(),
        "api-token: tok-4f9a-canary\ndb: '{\"password\":\"pw-77c1-canary\"}'\n",
    );
    let cwd = tempfile::tempdir().unwrap();
    let before = (listing(dir.path()), listing(cwd.path()));
    let out = tokio::process::Command::new(run_binary())
        .current_dir(cwd.path())
        .args([
            "--manifest",
            m.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo \"token=$API_TOKEN\"; echo \"db=$DB_PASSWORD\" >&2; test \"$DB_PASSWORD\" = pw-77c1-canary",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "token=tok-4f9a-canary\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "db=pw-77c1-canary\n");

    let out = tokio::process::Command::new(run_binary())
        .current_dir(cwd.path())
        .args([
            "--manifest",
            m.to_str().unwrap(),
            "--redact",
            "--",
            "sh",
            "-c",
            "echo \"token=$API_TOKEN\"; echo \"db=$DB_PASSWORD\" >&2; exit 3",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "the child's exit code is ours");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "token=[REDACTED]\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "db=[REDACTED]\n");
    assert_eq!(
        (listing(dir.path()), listing(cwd.path())),
        before,
        "nothing written to disk"
    );
}

#[tokio::test]
async fn a_failed_fetch_never_starts_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), "api-token: t\n");
    let out = tokio::process::Command::new(run_binary())
        .args(["--manifest", m.to_str().unwrap(), "--", "sh", "-c", "echo started"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`db`") && err.contains("spec.data[1]"), "{err}");
}

#[tokio::test]
async fn watch_restarts_the_command_when_a_value_changes() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), "api-token: first\ndb: '{\"password\":\"p\"}'\n");
    let mut child = tokio::process::Command::new(run_binary())
        .args([
            "--manifest",
            m.to_str().unwrap(),
            "--watch",
            "--interval",
            "1",
            "--",
            "sh",
            "-c",
            "echo \"token=$API_TOKEN\"; exec sleep 30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next(&mut lines).await, "token=first");
    std::fs::write(
        dir.path().join("secrets.yaml"),
        "api-token: second\ndb: '{\"password\":\"p\"}'\n",
    )
    .unwrap();
    assert_eq!(next(&mut lines).await, "token=second", "restarted with the new value");
    child.kill().await.unwrap();
}

async fn next(l: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(20), l.next_line())
        .await
        .expect("output in time")
        .unwrap()
        .unwrap()
}
