//! Terraform's files as a source: the `file` provider reads `.tfvars` (HCL) and
//! `terraform output -json`, through the same manifest a user writes.

use std::sync::Arc;

use secretsync_core::manifest::load_str;
use secretsync_core::registry::Registry;
use secretsync_core::sources::{FileFactory, FileFormat, FileSource};
use secretsync_core::{RemoteKey, SecretSource};

/// Seed 001's `prod.secrets.tfvars`, with the other things a tfvars file holds.
const TFVARS: &str = r#"
# Seed 001: values kept out of git
db_password = "super_secure_db_password"
auth_secret = "your_jwt_signing_secret_key" // trailing comment
api_token   = "your_static_api_token"
/* a block
   comment */
replicas = 3
ratio    = 0.5
enabled  = true
nothing  = null
zones    = ["a", "b"]
tags     = { team = "ml", tier = 1 }
cert = <<EOT
line one
line two
EOT
indented = <<-EOT
    kept
      nested
    EOT
"#;

async fn get(source: &FileSource, key: &str) -> String {
    let v = source.get(&RemoteKey::new(key)).await.expect(key).value;
    v.expose_str().expect("utf-8").to_string()
}

#[tokio::test]
async fn tfvars_attributes_read_as_strings_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prod.secrets.tfvars");
    std::fs::write(&path, TFVARS).unwrap();
    let format = FileFormat::detect(&path, None).unwrap();
    assert_eq!(format, FileFormat::Tfvars, "recognised by extension");
    let source = FileSource::new(&path, format);
    assert_eq!(get(&source, "db_password").await, "super_secure_db_password");
    assert_eq!(get(&source, "auth_secret").await, "your_jwt_signing_secret_key");
    assert_eq!(get(&source, "api_token").await, "your_static_api_token");
    assert_eq!(get(&source, "replicas").await, "3");
    assert_eq!(get(&source, "ratio").await, "0.5");
    assert_eq!(get(&source, "enabled").await, "true");
    assert_eq!(get(&source, "nothing").await, "");
    assert_eq!(get(&source, "zones").await, r#"["a","b"]"#);
    let tags: serde_json::Value = serde_json::from_str(&get(&source, "tags").await).unwrap();
    assert_eq!(tags, serde_json::json!({"team": "ml", "tier": 1}));
    assert_eq!(get(&source, "cert").await, "line one\nline two\n");
    assert_eq!(get(&source, "indented").await, "kept\n  nested\n");
    let all = source.find(&Default::default()).await.unwrap();
    assert_eq!(all.len(), 11, "{all:?}");
}

#[tokio::test]
async fn a_syntax_error_names_file_line_and_attribute_never_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.tfvars");
    std::fs::write(
        &path,
        "db_password = \"super_secure_db_password\"\nauth_secret = \"hunter2-secret\n\napi_token = \"tok\"\n",
    )
    .unwrap();
    let source = FileSource::new(&path, FileFormat::Tfvars);
    let err = source
        .get(&RemoteKey::new("db_password"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.tfvars"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("`auth_secret`"), "{err}");
    for secret in ["hunter2", "super_secure", "tok\""] {
        assert!(!err.contains(secret), "value leaked: {err}");
    }

    std::fs::write(&path, "a = \"x\" # \"quoted\" comment\nb = { k = \"v\" \"w\" }\n").unwrap();
    let err = source.get(&RemoteKey::new("a")).await.unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("`b`"), "{err}");
    assert!(!err.contains("\"v\"") && !err.contains("\"w\""), "{err}");

    std::fs::write(&path, "a = \"x\"\nb = var.other\n").unwrap();
    let err = source.get(&RemoteKey::new("a")).await.unwrap_err().to_string();
    assert!(err.contains("attribute `b` at line 2"), "{err}");

    std::fs::write(&path, "a = \"x\"\nresource \"x\" \"y\" {\n  k = \"v\"\n}\n").unwrap();
    let err = source.get(&RemoteKey::new("a")).await.unwrap_err().to_string();
    assert!(err.contains("block `resource` at line 2"), "{err}");
}

#[tokio::test]
async fn terraform_output_json_reads_each_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outputs.json");
    std::fs::write(
        &path,
        r#"{
  "db_host": {"sensitive": false, "type": "string", "value": "10.0.0.3"},
  "db_password": {"sensitive": true, "type": "string", "value": "s3cret"},
  "ports": {"sensitive": false, "type": ["list", "number"], "value": [5432, 6379]},
  "conn": {"sensitive": false, "type": ["object", {}], "value": {"user": "app"}}
}"#,
    )
    .unwrap();
    let source = FileSource::new(&path, FileFormat::detect(&path, Some("terraform-output")).unwrap());
    assert_eq!(get(&source, "db_host").await, "10.0.0.3");
    assert_eq!(get(&source, "db_password").await, "s3cret");
    assert_eq!(get(&source, "ports").await, "[5432,6379]");
    assert_eq!(get(&source, "conn").await, r#"{"user":"app"}"#);

    std::fs::write(&path, r#"{"x": "not an output"}"#).unwrap();
    let err = source.get(&RemoteKey::new("x")).await.unwrap_err().to_string();
    assert!(err.contains("output `x`"), "{err}");
    assert!(!err.contains("not an output"), "{err}");
}

#[tokio::test]
async fn tfvars_json_is_recognised_and_a_store_reads_tfvars() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("prod.tfvars.json");
    std::fs::write(&json, r#"{"api_token": "t", "zones": ["a"]}"#).unwrap();
    let source = FileSource::new(&json, FileFormat::detect(&json, None).unwrap());
    assert_eq!(get(&source, "api_token").await, "t");
    assert_eq!(get(&source, "zones").await, r#"["a"]"#);

    std::fs::write(dir.path().join("prod.secrets.tfvars"), TFVARS).unwrap();
    let manifest = "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: tf}\nspec:\n  provider:\n    file: {path: prod.secrets.tfvars, format: tfvars}\n";
    let loaded = load_str(manifest, dir.path().join("store.yaml"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut registry = Registry::empty();
    registry.register(Arc::new(FileFactory));
    let built = registry.build(&loaded.manifests.stores[0]).await.unwrap();
    let v = built.source.get(&RemoteKey::new("api_token")).await.unwrap().value;
    assert_eq!(v.expose_str(), Some("your_static_api_token"));
    // Writes are refused: Terraform's files are the user's.
    let writer = built.writer.expect("file stores are writable");
    let err = writer
        .put(&secretsync_core::WriteRequest::new(
            "x",
            secretsync_core::SecretValue::from("y"),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}
