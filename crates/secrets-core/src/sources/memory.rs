//! An in-memory source and writer with versions, labels and call counting.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::source::*;
use crate::value::SecretValue;

#[derive(Debug, Clone)]
struct Version {
    id: String,
    value: SecretValue,
    enabled: bool,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    versions: Vec<Version>,
    labels: BTreeMap<String, String>,
}

impl Entry {
    fn current(&self) -> Option<&Version> {
        self.versions.last()
    }
}

/// Secrets held in memory: versions (`"1"`, `"2"`, … unless given), labels, the
/// managed-by mark, and a count of calls. Backs ESO's `fake` provider and the test kit.
#[derive(Debug)]
pub struct MemorySource {
    provider: String,
    entries: Mutex<BTreeMap<String, Entry>>,
    calls: AtomicU64,
}

impl Default for MemorySource {
    fn default() -> Self {
        Self::new("memory")
    }
}

impl MemorySource {
    /// An empty store reporting `provider` as its name.
    pub fn new(provider: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            entries: Mutex::new(BTreeMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// Sets a value as a new current version (marked managed), as an operator outside
    /// secretsync would. Returns the version id.
    pub fn set(&self, key: &str, value: impl Into<SecretValue>) -> String {
        self.add_version(key, value.into(), None, true)
    }

    /// Sets a value under a given version id.
    pub fn set_version(&self, key: &str, version: &str, value: impl Into<SecretValue>) {
        self.add_version(key, value.into(), Some(version.to_string()), true);
    }

    /// Sets a value on a secret that is not marked managed-by secretsync.
    pub fn set_unmanaged(&self, key: &str, value: impl Into<SecretValue>) {
        self.add_version(key, value.into(), None, false);
    }

    /// Sets a label.
    pub fn set_label(&self, key: &str, label: &str, value: &str) {
        let mut e = self.entries.lock().expect("lock");
        e.entry(key.to_string())
            .or_default()
            .labels
            .insert(label.to_string(), value.to_string());
    }

    /// Removes a key.
    pub fn remove(&self, key: &str) {
        self.entries.lock().expect("lock").remove(key);
    }

    fn add_version(&self, key: &str, value: SecretValue, id: Option<String>, managed: bool) -> String {
        let mut e = self.entries.lock().expect("lock");
        let entry = e.entry(key.to_string()).or_default();
        let id = id.unwrap_or_else(|| (entry.versions.len() + 1).to_string());
        entry.versions.retain(|v| v.id != id);
        entry.versions.push(Version {
            id: id.clone(),
            value,
            enabled: true,
        });
        if managed {
            entry.labels.insert(MANAGED_BY_KEY.into(), MANAGED_BY_VALUE.into());
        }
        id
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn lookup(&self, key: &RemoteKey) -> Result<Fetched> {
        let e = self.entries.lock().expect("lock");
        let entry = e
            .get(&key.key)
            .ok_or_else(|| Error::not_found(format!("key `{}` in {} store", key.key, self.provider)))?;
        let v = match key.version.as_deref() {
            None | Some("latest") | Some("AWSCURRENT") => entry.current(),
            Some("AWSPREVIOUS") => entry.versions.iter().rev().nth(1),
            Some(id) => entry.versions.iter().find(|v| v.id == id),
        }
        .ok_or_else(|| Error::not_found(format!("version of key `{key}` in {} store", self.provider)))?;
        if !v.enabled {
            return Err(Error::not_found(format!(
                "key `{key}` in {} store: version {} is disabled",
                self.provider, v.id
            )));
        }
        Ok(Fetched {
            value: v.value.clone(),
            version: Some(v.id.clone()),
        })
    }
}

#[async_trait]
impl SecretSource for MemorySource {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities {
            batch_read: true,
            find_by_name: true,
            find_by_path: true,
            find_by_tags: true,
            change_tokens: true,
            metadata: true,
            versions: true,
            binary: true,
        }
    }

    async fn get(&self, key: &RemoteKey) -> Result<Fetched> {
        self.count();
        self.lookup(key)
    }

    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        self.count();
        keys.iter().map(|k| self.lookup(k)).collect()
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        self.count();
        let re = match &query.name_regexp {
            Some(r) => Some(crate::rules::compile_regex(r).map_err(|e| e.context("find.name.regexp"))?),
            None => None,
        };
        let e = self.entries.lock().expect("lock");
        Ok(e.iter()
            .filter(|(k, v)| {
                re.as_ref().is_none_or(|re| re.is_match(k))
                    && query.path.as_ref().is_none_or(|p| k.starts_with(p.as_str()))
                    && query.tags.iter().all(|(tk, tv)| v.labels.get(tk) == Some(tv))
                    && v.current().is_some()
            })
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        self.count();
        keys.iter().map(|k| self.lookup(k).map(|f| f.version)).collect()
    }

    async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
        self.count();
        let e = self.entries.lock().expect("lock");
        e.get(key)
            .map(|v| v.labels.clone())
            .ok_or_else(|| Error::not_found(format!("key `{key}` in {} store", self.provider)))
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl SecretWriter for MemorySource {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        self.count();
        let e = self.entries.lock().expect("lock");
        Ok(e.get(key).map(|entry| RemoteDescription {
            current_version: entry.versions.iter().rev().find(|v| v.enabled).map(|v| v.id.clone()),
            managed: entry.labels.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY_VALUE),
            versions: entry
                .versions
                .iter()
                .rev()
                .map(|v| VersionInfo {
                    id: v.id.clone(),
                    enabled: v.enabled,
                })
                .collect(),
        }))
    }

    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        self.count();
        let mut e = self.entries.lock().expect("lock");
        let exists = e.contains_key(&request.key);
        let entry = e.entry(request.key.clone()).or_default();
        if exists && !request.force && entry.labels.get(MANAGED_BY_KEY).map(String::as_str) != Some(MANAGED_BY_VALUE) {
            return Err(Error::PermissionDenied {
                what: format!(
                    "write to `{}` in {} store: not managed by secretsync (no {MANAGED_BY_KEY} label); force to override",
                    request.key, self.provider
                ),
            });
        }
        let value = match &request.property {
            None => request.value.clone(),
            Some(p) => merge_property(entry.current().map(|v| &v.value), p, &request.value, &request.key)?,
        };
        let previous = entry.current().map(|v| v.id.clone());
        let id = (entry.versions.len() + 1).to_string();
        entry.versions.push(Version {
            id: id.clone(),
            value,
            enabled: true,
        });
        entry.labels.insert(MANAGED_BY_KEY.into(), MANAGED_BY_VALUE.into());
        let mut disabled = false;
        if request.disable_previous
            && let Some(prev) = &previous
            && let Some(v) = entry.versions.iter_mut().find(|v| &v.id == prev)
        {
            v.enabled = false;
            disabled = true;
        }
        Ok(match previous {
            None => WriteOutcome::Created { version: Some(id) },
            Some(p) => WriteOutcome::Updated {
                version: Some(id),
                previous: Some(p),
                disabled_previous: disabled,
            },
        })
    }

    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        self.count();
        let mut e = self.entries.lock().expect("lock");
        let entry = e
            .get_mut(key)
            .ok_or_else(|| Error::not_found(format!("key `{key}` in {} store", self.provider)))?;
        let v =
            entry.versions.iter_mut().find(|v| v.id == version).ok_or_else(|| {
                Error::not_found(format!("version {version} of key `{key}` in {} store", self.provider))
            })?;
        v.enabled = false;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.count();
        let mut e = self.entries.lock().expect("lock");
        let Some(entry) = e.get(key) else {
            return Ok(());
        };
        let mark = entry.labels.get(MANAGED_BY_KEY).map(String::as_str);
        if mark != Some(MANAGED_BY_VALUE) && mark != Some(ESO_MANAGED_BY_VALUE) {
            return Err(Error::PermissionDenied {
                what: format!(
                    "delete `{key}` in {} store: not managed by secretsync or external-secrets (no {MANAGED_BY_KEY} label)",
                    self.provider
                ),
            });
        }
        e.remove(key);
        Ok(())
    }
}

/// Sets top-level `property` of the JSON object in `current` (or a new object) to `value`.
/// Shared by writers that store JSON blobs.
pub fn merge_property(
    current: Option<&SecretValue>,
    property: &str,
    value: &SecretValue,
    key: &str,
) -> Result<SecretValue> {
    let mut obj = match current {
        None => serde_json::Map::new(),
        Some(c) => match c
            .expose_str()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        {
            Some(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(Error::invalid(format!(
                    "write to property `{property}` of `{key}`: the current value is not a JSON object"
                )));
            }
        },
    };
    let v = value
        .expose_str()
        .ok_or_else(|| Error::invalid(format!("write to property `{property}` of `{key}`: value is not UTF-8")))?;
    obj.insert(property.to_string(), serde_json::Value::String(v.to_string()));
    Ok(SecretValue::from(serde_json::Value::Object(obj).to_string()))
}
