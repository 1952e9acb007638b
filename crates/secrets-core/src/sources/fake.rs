//! ESO's `fake` provider: values inline in the store manifest (`spec.provider.fake.data`).

use std::sync::Arc;

use async_trait::async_trait;

use super::MemorySource;
use crate::error::Result;
use crate::manifest::{FakeProvider, ProviderSpec, Store};
use crate::registry::{BuiltStore, CredentialResolver, SourceFactory};
use crate::value::SecretValue;

/// The fake provider is the in-memory store, filled from the manifest. Writes (rotation)
/// go to memory only: the manifest file is not changed.
pub type FakeSource = MemorySource;

/// Builds [`FakeSource`]s.
#[derive(Debug, Clone, Copy)]
pub struct FakeFactory;

/// Builds a fake source from its spec.
pub fn fake_source(spec: &FakeProvider) -> FakeSource {
    let s = MemorySource::new("fake");
    for d in &spec.data {
        let value = match &d.value_map {
            Some(m) if d.value.is_empty() => {
                SecretValue::from(serde_json::to_string(m).expect("a string map serializes"))
            }
            _ => SecretValue::from(d.value.as_str()),
        };
        match &d.version {
            Some(v) => s.set_version(&d.key, v, value),
            None => {
                s.set(&d.key, value);
            }
        }
    }
    s
}

#[async_trait]
impl SourceFactory for FakeFactory {
    fn provider(&self) -> &'static str {
        "fake"
    }
    async fn build(&self, store: &Store, _credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let ProviderSpec::Fake(spec) = &store.spec.provider else {
            unreachable!("registry dispatches by provider")
        };
        Ok(BuiltStore::writable(fake_source(spec)))
    }
}
