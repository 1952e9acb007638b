//! ESO's `fake` provider: values inline in the store manifest (`spec.provider.fake.data`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::MemorySource;
use crate::error::{Error, Result};
use crate::manifest::Store;
use crate::registry::{BuiltStore, CredentialResolver, SourceFactory};
use crate::value::SecretValue;

/// The fake provider is the in-memory store, filled from the manifest. Writes (rotation)
/// go to memory only: the manifest file is not changed.
pub type FakeSource = MemorySource;

/// ESO `spec.provider.fake`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FakeProvider {
    /// The values.
    #[serde(default)]
    pub data: Vec<FakeData>,
}

/// One entry of the fake provider.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FakeData {
    /// Remote key.
    pub key: String,
    /// Value (secret: never printed).
    #[serde(default)]
    pub value: String,
    /// Deprecated map form: serialized to JSON as the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_map: Option<BTreeMap<String, String>>,
    /// Version the entry answers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl std::fmt::Debug for FakeData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeData")
            .field("key", &self.key)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

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
    fn validate(&self, store: &Store) -> Vec<Error> {
        let spec: FakeProvider = match store.provider_config() {
            Ok(s) => s,
            Err(e) => return vec![e],
        };
        let mut errors = vec![];
        let mut seen = BTreeSet::new();
        for (i, d) in spec.data.iter().enumerate() {
            if !seen.insert((d.key.as_str(), d.version.as_deref())) {
                errors.push(Error::manifest(
                    store.provider_field(&format!("data[{i}].key")),
                    format!("duplicate key `{}`", d.key),
                ));
            }
        }
        errors
    }
    async fn build(&self, store: &Store, _credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let spec: FakeProvider = store.provider_config()?;
        Ok(BuiltStore::writable(fake_source(&spec)))
    }
}
