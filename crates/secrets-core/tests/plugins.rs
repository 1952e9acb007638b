//! Providers are plug-ins: a provider outside core registers under its own name, owns its
//! schema and validation, and is found by `spec.provider.<name>`.

use std::sync::Arc;

use async_trait::async_trait;
use secretsync_core::manifest::{Store, load_str};
use secretsync_core::registry::{BuiltStore, CredentialResolver, Registry, SourceFactory};
use secretsync_core::sources::MemorySource;
use secretsync_core::{Error, RemoteKey, Result, SecretValue};

/// An in-house provider's settings: `spec.provider.acme: {vault: <name>, keys: {k: v}}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AcmeSettings {
    vault: String,
    #[serde(default)]
    keys: std::collections::BTreeMap<String, String>,
}

struct Acme;

#[async_trait]
impl SourceFactory for Acme {
    fn provider(&self) -> &'static str {
        "acme"
    }
    fn validate(&self, store: &Store) -> Vec<Error> {
        match store.provider_config::<AcmeSettings>() {
            Ok(s) if s.vault.is_empty() => vec![Error::manifest(store.provider_field("vault"), "empty vault name")],
            Ok(_) => vec![],
            Err(e) => vec![e],
        }
    }
    async fn build(&self, store: &Store, _c: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let s: AcmeSettings = store.provider_config()?;
        let source = MemorySource::new("acme");
        for (k, v) in s.keys {
            source.set(&format!("{}/{k}", s.vault), SecretValue::from(v));
        }
        Ok(BuiltStore::read_only(source))
    }
}

fn store(provider_yaml: &str) -> Store {
    let text = format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: s}}\nspec:\n  provider:\n{provider_yaml}"
    );
    load_str(&text, "store.yaml")
        .into_result()
        .expect("loads: core keeps provider settings raw")
        .stores[0]
        .clone()
}

#[tokio::test]
async fn a_provider_core_does_not_know_is_loaded_validated_and_built_through_the_registry() {
    let mut registry = Registry::with_builtin();
    registry.register(Arc::new(Acme));
    let good = store("    acme: {vault: team, keys: {db: hunter2}}\n");
    assert!(registry.validate(&good).is_empty());
    let built = registry.build(&good).await.unwrap();
    let v = built.source.get(&RemoteKey::new("team/db")).await.unwrap();
    assert_eq!(v.value.expose_str(), Some("hunter2"));
    assert!(built.writer.is_none());

    // Its schema is its own: unknown fields are errors located under spec.provider.acme.
    let typo = store("    acme: {vault: team, kyes: {db: canary-7f3a9c-DO-NOT-LEAK}}\n");
    let errors = registry.validate(&typo);
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "store.yaml: document 1 (ClusterSecretStore s): spec.provider.acme.kyes: unknown field `kyes`, expected `vault` or `keys`"
        ]
    );
    let empty = store("    acme: {vault: ''}\n");
    assert_eq!(
        registry.check(&empty).unwrap_err().to_string(),
        "store.yaml: document 1 (ClusterSecretStore s): spec.provider.acme.vault: empty vault name"
    );
    // Building validates first.
    assert!(registry.build(&empty).await.is_err());
}

#[test]
fn a_provider_that_is_not_registered_says_why() {
    let mut registry = Registry::with_builtin();
    registry.needs_feature("aws", "aws");
    let msg = |yaml: &str| registry.check(&store(yaml)).unwrap_err().to_string();
    assert_eq!(
        msg("    aws: {region: eu-central-1}\n"),
        "store.yaml: document 1 (ClusterSecretStore s): spec.provider.aws: provider aws needs feature `aws` (build secretsync with --features aws)"
    );
    assert_eq!(
        msg("    vault: {server: x}\n"),
        "store.yaml: document 1 (ClusterSecretStore s): spec.provider.vault: not supported yet: spec.provider.vault (provider `vault`)"
    );
    assert_eq!(
        msg("    acme: {vault: team}\n"),
        "store.yaml: document 1 (ClusterSecretStore s): spec.provider.acme: unknown provider `acme` (expected one of fake, file)"
    );
    // A user's provider may take an ESO provider's name.
    registry.register(Arc::new(Acme));
    assert!(registry.check(&store("    acme: {vault: team}\n")).is_ok());
    assert!(registry.providers().contains(&"acme"));
}

#[test]
fn debug_of_a_store_never_prints_inline_values() {
    let s = store("    fake: {data: [{key: a, value: canary-7f3a9c-DO-NOT-LEAK}]}\n");
    let d = format!("{s:?}");
    assert!(!d.contains("canary-7f3a9c"), "{d}");
    assert!(d.contains("fake"), "{d}");
}
