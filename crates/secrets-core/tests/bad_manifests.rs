//! A corpus of broken manifests (tests/bad-manifests/*.yaml), each starting with
//! `# expect: <the exact error>`. Loading, validating, checking providers and — when all
//! that passes — one sync cycle must give exactly that error, naming file, document and
//! field, and never a value. `BLESS=1` rewrites the expectations (review the diff).

use std::path::Path;
use std::sync::Arc;

use secretsync_core::engine::{CycleOptions, Engine};
use secretsync_core::manifest::{ValidateOptions, load_str, validate};
use secretsync_core::registry::Registry;
use secretsync_core::testkit::{CANARY, MemorySink, assert_no_canary};

async fn first_error(text: &str, file: &str) -> Option<String> {
    let loaded = load_str(text, file);
    if let Some(e) = loaded.errors.first() {
        return Some(e.to_string());
    }
    let (errors, _) = validate(&loaded.manifests, ValidateOptions::default());
    if let Some(e) = errors.first() {
        return Some(e.to_string());
    }
    // As the facade's registry of a build without the cloud providers: core's built-ins, and
    // the features that would add the first-party providers.
    let mut registry = Registry::with_builtin();
    registry
        .needs_feature("aws", "aws")
        .needs_feature("gcpsm", "gcp")
        .needs_feature("doppler", "doppler");
    for s in &loaded.manifests.stores {
        if let Err(e) = registry.check(s) {
            return Some(e.to_string());
        }
    }
    let (stores, errors) = registry.build_all(&loaded.manifests).await;
    if let Some(e) = errors.first() {
        return Some(e.to_string());
    }
    let engine = Engine::new(stores, Arc::new(MemorySink::new()));
    let report = engine.run(&loaded.manifests, &CycleOptions::default()).await;
    report.failed().next().map(|s| s.message.clone())
}

#[tokio::test]
async fn every_broken_manifest_gives_its_exact_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-manifests");
    let bless = std::env::var_os("BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus is there");
    let mut failures = vec![];
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let raw = std::fs::read_to_string(&path).unwrap();
        let (expect, body) = match raw.strip_prefix("# expect: ") {
            Some(rest) => {
                let (line, body) = rest.split_once('\n').unwrap();
                (Some(line.to_string()), body.to_string())
            }
            None => (None, raw.clone()),
        };
        let got = first_error(&body, &name)
            .await
            .unwrap_or_else(|| panic!("{name}: no error at all"));
        assert_no_canary(&got, &format!("the error of {name}"));
        assert!(got.contains(&name), "{name}: the error names the file: {got}");
        if bless {
            std::fs::write(&path, format!("# expect: {got}\n{body}")).unwrap();
        } else if expect.as_deref() != Some(got.as_str()) {
            failures.push(format!(
                "{name}:\n  expected: {}\n  got:      {got}",
                expect.unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_target_over_one_mebibyte_is_refused_before_any_write() {
    let big = "x".repeat(600 * 1024);
    let text = format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: fake}}\nspec:\n  provider:\n    fake:\n      data:\n        - {{key: a, value: {big}}}\n        - {{key: b, value: {big}}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: big, namespace: prod}}\nspec:\n  secretStoreRef: {{name: fake, kind: ClusterSecretStore}}\n  data:\n    - {{secretKey: A, remoteRef: {{key: a}}}}\n    - {{secretKey: B, remoteRef: {{key: b}}}}\n"
    );
    let loaded = load_str(&text, "big.yaml").into_result().unwrap();
    let (stores, _) = Registry::with_builtin().build_all(&loaded).await;
    let sink = Arc::new(MemorySink::new());
    let report = Engine::new(stores, sink.clone())
        .run(&loaded, &CycleOptions::default())
        .await;
    let msg = &report.failed().next().expect("refused").message;
    assert_eq!(
        msg,
        "big.yaml: document 2 (ExternalSecret prod/big): spec.target: invalid input: Secret prod/big would be 1228802 bytes, over Kubernetes' 1 MiB limit"
    );
    assert_eq!(sink.writes(), 0);
    assert!(!msg.contains(CANARY));
}

/// `manifest::from_value` (what the operator uses for objects read from the cluster) gives
/// the same load errors as the text loader, document by document, for every manifest of
/// the corpus that is valid YAML.
#[test]
fn from_value_gives_the_text_loaders_errors() {
    use secretsync_core::error::Location;
    use secretsync_core::manifest::from_value;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-manifests");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let values: Result<Vec<serde_json::Value>, _> = serde_norway::Deserializer::from_str(&text)
            .map(serde::Deserialize::deserialize)
            .collect();
        let Ok(values) = values else { continue };
        let from_text: Vec<String> = load_str(&text, &name).errors.iter().map(|e| e.to_string()).collect();
        let from_values: Vec<String> = values
            .into_iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let origin = Location {
                    file: name.clone().into(),
                    document: i + 1,
                    object: None,
                    field: None,
                };
                from_value(v, origin).errors.into_iter().map(|e| e.to_string())
            })
            .collect();
        assert_eq!(from_values, from_text, "{name}");
        compared += 1;
    }
    assert!(compared >= 10, "the corpus was compared ({compared} files)");
}
