//! Shared by the integration tests: a fake ESC with an environment, a source on it, and an
//! engine whose store is that source.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secretsync_core::engine::Engine;
use secretsync_core::manifest::{Manifests, StoreId, load_str};
use secretsync_core::registry::{BuiltStore, Registry};
use secretsync_core::sinks::MemorySink;
use secretsync_fakes::pulumi::FakeEsc;
use secretsync_pulumi::{EscSource, PulumiBuilder};

/// The organization of every test.
pub const ORG: &str = "aphiria";

/// A random name, so tests never share state.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A fake with one environment (a random project) holding `yaml`, and a read/write token.
pub async fn fake_env(env: &str, yaml: &str) -> (FakeEsc, String, String) {
    let fake = FakeEsc::start().await;
    let project = unique("proj");
    fake.set_yaml(ORG, &project, env, yaml);
    let token = fake.token();
    (fake, project, token)
}

/// A source on the fake with quick retries.
pub fn builder(fake: &FakeEsc, token: &str, project: &str, env: &str) -> PulumiBuilder {
    PulumiBuilder::new()
        .with_token(token)
        .with_organization(ORG)
        .with_project(project)
        .with_environment(env)
        .with_api_url(fake.api_url())
        .with_backoff(Duration::from_millis(5), Duration::from_millis(40))
}

pub fn source(fake: &FakeEsc, token: &str, project: &str, env: &str) -> EscSource {
    builder(fake, token, project, env).build().expect("build")
}

/// Manifests whose ClusterSecretStore `store` is replaced by `source` in the engine.
///
/// Until core parses `spec.provider.pulumi` (the plug-in API), the manifests name the
/// store with the built-in `fake` provider and the engine is handed the ESC source under
/// that store's id; every read still goes to `EscSource` and over HTTP to the fake ESC.
pub async fn engine_on(manifests: &str, store: &str, source: EscSource) -> (Manifests, Engine, Arc<MemorySink>) {
    let m = load_str(manifests, "pulumi.yaml").into_result().expect("manifests");
    let (mut stores, errors) = Registry::with_builtin().build_all(&m).await;
    assert!(errors.is_empty(), "{errors:?}");
    let id = stores
        .keys()
        .find(|id: &&StoreId| id.name == store)
        .cloned()
        .expect("store in manifests");
    stores.insert(id, BuiltStore::writable(source));
    let sink = Arc::new(MemorySink::new());
    let engine = Engine::new(stores.into_iter().collect::<BTreeMap<_, _>>(), sink.clone());
    (m, engine, sink)
}

/// ESC requests seen by the fake, by operation.
pub fn ops(fake: &FakeEsc) -> Vec<&'static str> {
    fake.requests().iter().map(|r| r.operation()).collect()
}
