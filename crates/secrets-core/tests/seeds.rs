//! Real teams' manifests load unchanged.

use std::time::Duration;

use secretsync_core::manifest::{RefreshPolicy, SecretKeySelector, StoreKind, ValidateOptions, load_paths, validate};
use secretsync_core::{CreationPolicy, TargetRef};

#[test]
fn seed_003_doppler_manifests_load_unchanged() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/seed-003-doppler.yaml"
    );
    let m = load_paths(&[path]).into_result().expect("seed 003 loads");
    let (errors, warnings) = validate(&m, ValidateOptions::default());
    assert!(errors.is_empty() && warnings.is_empty(), "{errors:?} {warnings:?}");
    let store = &m.stores[0];
    assert_eq!(
        (store.id.kind, store.id.name.as_str()),
        (StoreKind::ClusterSecretStore, "doppler-secret-store")
    );
    // Core keeps the provider's settings raw; the Doppler crate owns their schema.
    assert_eq!(store.spec.provider.name(), "doppler", "a doppler store");
    let token: SecretKeySelector =
        serde_json::from_value(store.spec.provider.config()["auth"]["secretRef"]["dopplerToken"].clone()).unwrap();
    let token = &token;
    assert_eq!(
        (token.name.as_str(), token.key.as_str(), token.namespace.as_deref()),
        ("doppler-token-auth", "dopplerToken", Some("external-secrets"))
    );
    let es = &m.external_secrets[0];
    assert_eq!(es.api_version, "external-secrets.io/v1beta1");
    assert_eq!(es.target_ref(), TargetRef::secret("default", "bookmarked-secrets"));
    assert_eq!(es.spec.target.creation_policy, CreationPolicy::Owner);
    assert_eq!(es.refresh_interval().unwrap(), Some(Duration::from_secs(60)));
    assert_eq!(es.refresh_policy(), RefreshPolicy::Periodic);
    assert_eq!(
        es.spec.data.iter().map(|d| d.secret_key.as_str()).collect::<Vec<_>>(),
        ["DATABASE_URL", "JWT_SECRET"]
    );
    assert_eq!(es.store_id().unwrap(), store.id);
}
