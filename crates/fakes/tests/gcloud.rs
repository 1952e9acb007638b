//! The GCP Secret Manager fake held to `gcloud` (installed here), pointed at it with
//! `api_endpoint_overrides/secretmanager` in an isolated `CLOUDSDK_CONFIG` with credentials
//! disabled. A missing gcloud fails the test.

mod common;

use std::process::Stdio;

use secretsync_fakes::gcp::{Crc32cMode, FakeSecretManager};
use tokio::io::AsyncWriteExt;

struct Gcloud {
    bin: std::path::PathBuf,
    config: tempfile::TempDir,
}

impl Gcloud {
    async fn new(endpoint: &str) -> Gcloud {
        let g = Gcloud {
            bin: common::on_path("gcloud"),
            config: tempfile::tempdir().unwrap(),
        };
        for (k, v) in [
            ("api_endpoint_overrides/secretmanager", endpoint),
            ("auth/disable_credentials", "true"),
            ("core/project", "gproj"),
            ("core/disable_usage_reporting", "true"),
            ("component_manager/disable_update_check", "true"),
        ] {
            g.ok(&["config", "set", k, v]).await;
        }
        g
    }

    fn cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.args(args)
            .env("CLOUDSDK_CONFIG", self.config.path())
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1");
        c
    }

    async fn ok(&self, args: &[&str]) -> String {
        common::run_ok(&mut self.cmd(args), &format!("gcloud {}", args.join(" "))).await
    }

    async fn err(&self, args: &[&str]) -> String {
        common::run_err(&mut self.cmd(args), &format!("gcloud {}", args.join(" "))).await
    }

    /// Runs with `data` on stdin (`--data-file=-`).
    async fn with_stdin(&self, args: &[&str], data: &[u8]) -> String {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).await.unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "gcloud {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// gcloud's own view of the fake: create with labels, add a version, access latest and by
/// number, list with a label filter page by page, disable / enable / destroy and what
/// access says of them, update labels, describe; a payload whose CRC32C does not match is
/// refused by gcloud itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_against_the_fake() {
    let fake = FakeSecretManager::start().await;
    let g = Gcloud::new(&format!("{}/", fake.url())).await;
    let p = "projects/gproj";
    g.with_stdin(
        &[
            "secrets",
            "create",
            "db",
            "--data-file=-",
            "--labels=env=prod",
            "--replication-policy=automatic",
        ],
        b"one",
    )
    .await;
    g.with_stdin(&["secrets", "versions", "add", "db", "--data-file=-"], b"two")
        .await;
    assert_eq!(fake.version_count(p, "db"), 2);
    assert_eq!(
        g.ok(&["secrets", "versions", "access", "latest", "--secret=db"]).await,
        "two"
    );
    assert_eq!(
        g.ok(&["secrets", "versions", "access", "1", "--secret=db"]).await,
        "one"
    );
    for i in 0..4 {
        let labels = format!("--labels=env={},idx={i}", if i % 2 == 0 { "prod" } else { "dev" });
        g.with_stdin(&["secrets", "create", &format!("s{i}"), "--data-file=-", &labels], b"x")
            .await;
    }
    // gcloud sends the label filter to the service and asks for pages of 100 whatever
    // `--page-size` says; with the service's pages made small, it follows nextPageToken.
    fake.clear_log();
    fake.set_max_page_size(1);
    let listed = g
        .ok(&["secrets", "list", "--filter=labels.env=prod", "--format=value(name)"])
        .await;
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["db", "s0", "s2"]);
    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.operation == "ListSecrets")
        .collect();
    assert!(lists[0].query.contains("filter=labels.env%3Dprod"), "{lists:?}");
    assert_eq!(lists.len(), 3, "one page per request: {lists:?}");
    g.ok(&["secrets", "versions", "disable", "1", "--secret=db"]).await;
    let e = g.err(&["secrets", "versions", "access", "1", "--secret=db"]).await;
    assert!(e.contains("FAILED_PRECONDITION") && e.contains("DISABLED"), "{e}");
    g.ok(&["secrets", "versions", "enable", "1", "--secret=db"]).await;
    assert_eq!(
        g.ok(&["secrets", "versions", "access", "1", "--secret=db"]).await,
        "one"
    );
    g.ok(&["secrets", "versions", "destroy", "1", "--secret=db", "--quiet"])
        .await;
    let states = g
        .ok(&["secrets", "versions", "list", "db", "--format=value(name,state)"])
        .await;
    assert_eq!(states.lines().collect::<Vec<_>>(), ["2\tenabled", "1\tdestroyed"]);
    g.ok(&["secrets", "update", "db", "--update-labels=team=a"]).await;
    let described: serde_json::Value =
        serde_json::from_str(&g.ok(&["secrets", "describe", "db", "--format=json"]).await).unwrap();
    assert_eq!(described["labels"], serde_json::json!({"env": "prod", "team": "a"}));
    let e = g
        .err(&["secrets", "versions", "access", "latest", "--secret=missing"])
        .await;
    assert!(e.contains("NOT_FOUND"), "{e}");
    // CRC32C: gcloud checks the checksum the service sends and refuses a mismatch.
    fake.set_crc32c(Crc32cMode::Corrupt);
    let e = g.err(&["secrets", "versions", "access", "latest", "--secret=db"]).await;
    assert!(
        e.to_lowercase().contains("checksum") || e.to_lowercase().contains("crc32c"),
        "{e}"
    );
    assert!(fake.unknown_routes().is_empty(), "{:?}", fake.unknown_routes());
}

/// The `fake-gcp` binary serves the same API on the port it prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gcp_binary_serves_gcloud() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-gcp"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut url)
        .await
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let g = Gcloud::new(url.trim()).await;
    g.with_stdin(&["secrets", "create", "bin", "--data-file=-"], b"from-binary")
        .await;
    assert_eq!(
        g.ok(&["secrets", "versions", "access", "latest", "--secret=bin"]).await,
        "from-binary"
    );
    child.kill().await.unwrap();
}
