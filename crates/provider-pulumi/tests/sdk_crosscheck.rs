//! Cross-check of the fake and the provider with Pulumi's own client: PyPI `pulumi-esc-sdk`
//! (0.14, installed into `.venv` by `scripts/setup-test-env.sh`) opens and reads the fake's
//! environment and must see what the provider reads; its `update_environment_yaml` edits are
//! what the provider reads next; the provider's writes are what the SDK reads.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use secretsync_core::SecretSourceExt;
use secretsync_core::SecretValue;
use secretsync_core::source::{SecretWriter, WriteRequest};
use serde_json::{Value, json};

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join(".venv/bin/python");
    let ok = py.is_file()
        && std::process::Command::new(&py)
            .args(["-c", "import pulumi_esc_sdk"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "pulumi-esc-sdk is missing from {}: run scripts/setup-test-env.sh to install PyPI pulumi-esc-sdk into .venv",
        py.display()
    );
    py
}

/// Runs the SDK: `op` is `read` (prints the values of `open_and_read_environment`) or
/// `update` (sends stdin as the YAML definition).
async fn sdk(backend: &str, token: &str, project: &str, env: &str, op: &str, input: &str) -> Value {
    const SCRIPT: &str = r#"
import json, sys
import pulumi_esc_sdk as esc
backend, token, org, project, env, op = sys.argv[1:7]
client = esc.EscClient(esc.Configuration(host=backend, access_token=token))
if op == "read":
    _, values, _ = client.open_and_read_environment(org, project, env)
    print(json.dumps(values))
elif op == "update":
    diags = client.update_environment_yaml(org, project, env, sys.stdin.read())
    print(json.dumps({"diagnostics": [d.summary for d in (diags.diagnostics or [])]}))
elif op == "get":
    _, raw = client.get_environment(org, project, env)
    print(json.dumps({"yaml": raw.decode("utf-8")}))
"#;
    let mut cmd = tokio::process::Command::new(python());
    cmd.args(["-c", SCRIPT, backend, token, ORG, project, env, op])
        .env_remove("PULUMI_ACCESS_TOKEN")
        .env_remove("PULUMI_BACKEND_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn python");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).await.expect("write stdin");
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the SDK finished in time")
        .expect("the SDK ran");
    assert!(
        out.status.success(),
        "pulumi-esc-sdk {op} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the script")
}

const YAML: &str = r#"# seed 002's shape
imports:
  - shared/base
values:
  region: nyc3
  smtpPort: 587
  pulumiConfig:
    "postgresql:user": aphiria
    "postgresql:password":
      fn::secret: pg-pass
    "namespace:imagePullSecret:token":
      fn::secret: ghp_token
    grafana:
      ports: [3000, 3001]
      oauth: {clientId: id-1}
"#;

#[tokio::test]
async fn the_sdk_and_the_provider_read_the_same_values_and_see_each_others_writes() {
    let (fake, project, token) = fake_env("Preview", YAML).await;
    fake.set_yaml(ORG, "shared", "base", "values:\n  fromBase: yes-it-is\n");
    let source = builder(&fake, &token, &project, "Preview")
        .with_freshness(Duration::ZERO)
        .build()
        .unwrap();

    // 1. The SDK opens and reads; the provider reads every leaf the same.
    let values = sdk(&fake.url(), &token, &project, "Preview", "read", "").await;
    assert_eq!(values["pulumiConfig"]["postgresql:password"], "pg-pass");
    for (path, want) in [
        ("region", values["region"].clone()),
        ("fromBase", values["fromBase"].clone()),
        (
            r#"pulumiConfig["postgresql:user"]"#,
            values["pulumiConfig"]["postgresql:user"].clone(),
        ),
        (
            r#"pulumiConfig["postgresql:password"]"#,
            values["pulumiConfig"]["postgresql:password"].clone(),
        ),
        (
            r#"pulumiConfig["namespace:imagePullSecret:token"]"#,
            values["pulumiConfig"]["namespace:imagePullSecret:token"].clone(),
        ),
    ] {
        let got = source.get_value(path).await.unwrap();
        assert_eq!(got.expose_str(), want.as_str(), "{path}");
    }
    // Non-strings and objects: the provider gives their JSON, equal to the SDK's values.
    let port: Value = serde_json::from_slice(source.get_value("smtpPort").await.unwrap().expose()).unwrap();
    assert_eq!(port, values["smtpPort"]);
    let grafana: Value =
        serde_json::from_slice(source.get_value("pulumiConfig.grafana").await.unwrap().expose()).unwrap();
    assert_eq!(grafana, values["pulumiConfig"]["grafana"]);
    assert_eq!(grafana, json!({"ports": [3000, 3001], "oauth": {"clientId": "id-1"}}));

    // 2. The SDK edits the definition; the provider reads the new value.
    let edited = YAML.replace("fn::secret: pg-pass", "fn::secret: pg-pass-2");
    let d = sdk(&fake.url(), &token, &project, "Preview", "update", &edited).await;
    assert_eq!(d["diagnostics"], json!([]));
    assert_eq!(
        source
            .get_value(r#"pulumiConfig["postgresql:password"]"#)
            .await
            .unwrap()
            .expose_str(),
        Some("pg-pass-2")
    );

    // 3. The provider writes; the SDK reads the new value and the definition keeps the rest.
    source
        .put(&WriteRequest::new(
            r#"pulumiConfig["postgresql:password"]"#,
            SecretValue::from("pg-pass-3"),
        ))
        .await
        .unwrap();
    let values = sdk(&fake.url(), &token, &project, "Preview", "read", "").await;
    assert_eq!(values["pulumiConfig"]["postgresql:password"], "pg-pass-3");
    assert_eq!(values["pulumiConfig"]["grafana"]["ports"], json!([3000, 3001]));
    let def = sdk(&fake.url(), &token, &project, "Preview", "get", "").await;
    assert_eq!(
        def["yaml"].as_str().unwrap(),
        edited.replace("fn::secret: pg-pass-2", "fn::secret: \"pg-pass-3\"")
    );
}
