//! Seed 003's ClusterSecretStore and ExternalSecret, verbatim, against the fake: the store
//! builds through `DopplerFactory` with the token from `EnvFileCredentials`, and the values
//! the ExternalSecret reads are the ones in Doppler.

mod common;

use std::sync::Arc;

use common::*;
use secretsync_core::manifest::load_str;
use secretsync_core::registry::{EnvFileCredentials, Registry, SourceFactory};
use secretsync_core::source::RemoteKey;
use secretsync_doppler::DopplerFactory;
use secretsync_doppler::manifest::DopplerProvider;

const SEED: &str = include_str!("fixtures/seed003.yaml");

#[tokio::test]
async fn seed_003_store_and_external_secret_read_doppler() {
    let (fake, _project, _config, token) = fake_with(&[
        ("DATABASE_URL", "postgres://bookmarked:pw@db:5432/bookmarked"),
        ("JWT_SECRET", "jwt-signing-key"),
        ("OTHER", "x"),
    ])
    .await;

    let loaded = load_str(SEED, "seed003.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut manifests = loaded.manifests;
    assert_eq!(manifests.stores.len(), 1);
    assert_eq!(manifests.external_secrets.len(), 1);

    // Out of a cluster the secretRef is a file under the secrets folder.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("external-secrets/doppler-token-auth/dopplerToken");
    std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    // The seed's store talks to api.doppler.com; point it at the fake with our `endpoint`.
    let store = &mut manifests.stores[0];
    assert_eq!(store.spec.provider.name(), "doppler", "not a doppler store");
    let spec: DopplerProvider = store.provider_config().unwrap();
    assert!(
        spec.project.is_none() && spec.config.is_none(),
        "the seed relies on a service token"
    );
    store.spec.provider.config_mut()["endpoint"] = serde_json::json!(fake.url());

    let mut registry = Registry::with_builtin().with_credentials(Arc::new(EnvFileCredentials::with_dir(dir.path())));
    registry.register(Arc::new(DopplerFactory));
    assert_eq!(DopplerFactory.provider(), "doppler");
    let built = registry
        .build(&manifests.stores[0])
        .await
        .expect("the seed's store builds");
    assert!(built.writer.is_some());
    assert!(fake.requests().is_empty(), "building a store sends no request");

    let es = &manifests.external_secrets[0];
    assert_eq!(es.store_id(), Some(manifests.stores[0].id.clone()));
    let data = es
        .spec
        .data
        .iter()
        .map(|d| (d.secret_key.clone(), RemoteKey::new(d.remote_ref.key.clone())))
        .collect::<Vec<_>>();
    let keys: Vec<RemoteKey> = data.iter().map(|(_, k)| k.clone()).collect();
    let fetched = built.source.get_many(&keys).await;
    let got: Vec<(String, String)> = data
        .iter()
        .zip(fetched)
        .map(|((secret_key, _), f)| {
            (
                secret_key.clone(),
                f.expect("read").value.expose_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "DATABASE_URL".to_string(),
                "postgres://bookmarked:pw@db:5432/bookmarked".to_string()
            ),
            ("JWT_SECRET".to_string(), "jwt-signing-key".to_string()),
        ]
    );
    assert_eq!(downloads(&fake), vec![200], "one download for the whole ExternalSecret");
    assert_eq!(built.source.api_calls(), 1);
}

#[tokio::test]
async fn missing_credential_names_the_env_var_and_file() {
    let loaded = load_str(SEED, "seed003.yaml");
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::with_builtin().with_credentials(Arc::new(EnvFileCredentials::with_dir(dir.path())));
    registry.register(Arc::new(DopplerFactory));
    let err = registry
        .build(&loaded.manifests.stores[0])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SECRETSYNC_SECRET_EXTERNAL_SECRETS_DOPPLER_TOKEN_AUTH_DOPPLERTOKEN"),
        "{err}"
    );
    assert!(err.contains("dopplerToken"), "{err}");
}

#[tokio::test]
async fn seed_003_engine_cycles_cost_one_request_each() {
    use secretsync_core::engine::{CycleOptions, Engine};
    use secretsync_core::sink::TargetRef;
    use secretsync_core::testkit::MemorySink;

    let (fake, project, config, token) = fake_with(&[("DATABASE_URL", "postgres://one"), ("JWT_SECRET", "jwt")]).await;
    let mut manifests = load_str(SEED, "seed003.yaml").into_result().unwrap();
    assert_eq!(manifests.stores[0].spec.provider.name(), "doppler");
    manifests.stores[0].spec.provider.config_mut()["endpoint"] = serde_json::json!(fake.url());
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("external-secrets/doppler-token-auth/dopplerToken");
    std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    std::fs::write(&token_file, &token).unwrap();
    let mut registry = Registry::with_builtin().with_credentials(Arc::new(EnvFileCredentials::with_dir(dir.path())));
    registry.register(Arc::new(DopplerFactory));
    let (stores, errors) = registry.build_all(&manifests).await;
    assert!(errors.is_empty(), "{errors:?}");
    let sink = Arc::new(MemorySink::new());
    let engine = Engine::new(stores, sink.clone());

    let r1 = engine.run(&manifests, &CycleOptions::default()).await;
    assert!(r1.all_synced(), "{r1:?}");
    assert_eq!((r1.provider_calls, r1.writes), (1, 1), "{r1:?}");
    let target = sink
        .get(&TargetRef::secret("default", "bookmarked-secrets"))
        .expect("the Secret was written");
    assert_eq!(
        target.data.get("DATABASE_URL").and_then(|v| v.expose_str()),
        Some("postgres://one")
    );
    assert_eq!(target.data.get("JWT_SECRET").and_then(|v| v.expose_str()), Some("jwt"));

    // Past the freshness window, nothing changed: one 304 and no write.
    tokio::time::sleep(secretsync_doppler::DEFAULT_FRESHNESS + std::time::Duration::from_millis(100)).await;
    let r2 = engine.run(&manifests, &CycleOptions::default()).await;
    assert!(r2.all_synced(), "{r2:?}");
    assert_eq!((r2.provider_calls, r2.writes), (1, 0), "{r2:?}");
    assert_eq!(downloads(&fake), vec![200, 304]);

    // A rotation in Doppler: one request, one write.
    fake.set_secret(&project, &config, "DATABASE_URL", "postgres://two");
    tokio::time::sleep(secretsync_doppler::DEFAULT_FRESHNESS + std::time::Duration::from_millis(100)).await;
    let r3 = engine.run(&manifests, &CycleOptions::default()).await;
    assert_eq!((r3.provider_calls, r3.writes), (1, 1), "{r3:?}");
    let target = sink.get(&TargetRef::secret("default", "bookmarked-secrets")).unwrap();
    assert_eq!(
        target.data.get("DATABASE_URL").and_then(|v| v.expose_str()),
        Some("postgres://two")
    );
    assert_eq!(downloads(&fake), vec![200, 304, 200]);
}
