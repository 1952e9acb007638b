//! `kv`: a team's in-house secret service as a secretsync provider (a plug-in outside the
//! workspace crates). Its API is in `kv_server.py`; its ESO-style settings are
//! `spec.provider.kv: {url, prefix}`.

use std::sync::Arc;

use async_trait::async_trait;
use secretsync::manifest::Store;
use secretsync::registry::{BuiltStore, CredentialResolver, SourceFactory};
use secretsync::source::{Fetched, FindQuery, RemoteDescription, RemoteKey, SourceCapabilities};
use secretsync::source::{MANAGED_BY_KEY, MANAGED_BY_VALUE, WriteOutcome, WriteRequest};
use secretsync::{Error, Result, SecretSource, SecretValue, SecretWriter};
use serde_json::{Value, json};

/// `spec.provider.kv`: this provider's own schema (unknown fields are errors).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvSettings {
    /// The service's base URL.
    pub url: String,
    /// Prepended to every key.
    #[serde(default)]
    pub prefix: String,
}

/// Registers as `kv`.
pub struct KvFactory;

#[async_trait]
impl SourceFactory for KvFactory {
    fn provider(&self) -> &'static str {
        "kv"
    }
    fn validate(&self, store: &Store) -> Vec<Error> {
        match store.provider_config::<KvSettings>() {
            Err(e) => vec![e],
            Ok(s) => secretsync::net::check_endpoint(&s.url, "url")
                .err()
                .map(|e| Error::manifest(store.provider_field("url"), e.to_string()))
                .into_iter()
                .collect(),
        }
    }
    async fn build(&self, store: &Store, _credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let s: KvSettings = store.provider_config()?;
        Ok(BuiltStore::writable(KvSource::new(&s.url, &s.prefix)))
    }
}

/// Reads and writes the service; Debug shows the URL only.
#[derive(Debug)]
pub struct KvSource {
    url: String,
    prefix: String,
    http: reqwest::Client,
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::provider("kv", format!("{what}: {e}"), true)
}

impl KvSource {
    /// A source over the service at `url`.
    pub fn new(url: &str, prefix: &str) -> Self {
        let (url, prefix) = (url.trim_end_matches('/').to_string(), prefix.to_string());
        Self {
            url,
            prefix,
            http: reqwest::Client::new(),
        }
    }
    /// The secret's JSON (`value`, `version`, `labels`), `None` when missing.
    async fn fetch(&self, key: &str) -> Result<Option<Value>> {
        let url = format!("{}/v1/secrets/{}{key}", self.url, self.prefix);
        let r = self.http.get(url).send().await.map_err(|e| failed(key, e))?;
        match r.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(r.json().await.map_err(|e| failed(key, e))?)),
            s => Err(failed(key, format!("status {s}"))),
        }
    }
}

#[async_trait]
impl SecretSource for KvSource {
    fn provider(&self) -> &str {
        "kv"
    }
    fn capabilities(&self) -> SourceCapabilities {
        let mut c = SourceCapabilities::none();
        (c.find_by_name, c.find_by_path) = (true, true);
        c
    }
    async fn get(&self, key: &RemoteKey) -> Result<Fetched> {
        let s = self
            .fetch(&key.key)
            .await?
            .ok_or_else(|| Error::not_found(format!("kv secret `{}`", key.key)))?;
        let value = SecretValue::from(s["value"].as_str().unwrap_or_default());
        Ok(Fetched {
            value,
            version: Some(s["version"].to_string()),
        })
    }
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        let url = format!("{}/v1/secrets", self.url);
        let prefix = format!("{}{}", self.prefix, query.path.as_deref().unwrap_or(""));
        let r = self.http.get(url).query(&[("prefix", &prefix)]).send().await;
        let body: Value = r
            .map_err(|e| failed("list", e))?
            .json()
            .await
            .map_err(|e| failed("list", e))?;
        let re = query.name_regexp.as_deref().map(regex::Regex::new).transpose();
        let re = re.map_err(|e| Error::invalid(format!("find.name.regexp: {e}")))?;
        let names = body["keys"].as_array().into_iter().flatten().filter_map(Value::as_str);
        let names = names.filter_map(|n| n.strip_prefix(&self.prefix));
        Ok(names
            .filter(|n| re.as_ref().is_none_or(|re| re.is_match(n)))
            .map(String::from)
            .collect())
    }
}

#[async_trait]
impl SecretWriter for KvSource {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        Ok(self.fetch(key).await?.map(|s| RemoteDescription {
            current_version: Some(s["version"].to_string()),
            managed: s["labels"][MANAGED_BY_KEY] == MANAGED_BY_VALUE,
            versions: vec![],
        }))
    }
    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        let key = &request.key;
        let current = self.fetch(key).await?;
        if current
            .as_ref()
            .is_some_and(|s| s["labels"][MANAGED_BY_KEY] != MANAGED_BY_VALUE)
            && !request.force
        {
            return Err(Error::PermissionDenied {
                what: format!("kv secret `{key}` is not managed by secretsync"),
            });
        }
        let value = match &request.property {
            Some(p) => {
                let old = current
                    .as_ref()
                    .map(|s| SecretValue::from(s["value"].as_str().unwrap_or_default()));
                secretsync::sources::memory::merge_property(old.as_ref(), p, &request.value, key)?
            }
            None => request.value.clone(),
        };
        let text = value
            .expose_str()
            .ok_or_else(|| Error::invalid(format!("kv secret `{key}`: not UTF-8")))?;
        let body = json!({"value": text, "labels": {MANAGED_BY_KEY: MANAGED_BY_VALUE}});
        let url = format!("{}/v1/secrets/{}{key}", self.url, self.prefix);
        let r = self
            .http
            .put(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| failed(key, e))?;
        let r: Value = r
            .error_for_status()
            .map_err(|e| failed(key, e))?
            .json()
            .await
            .map_err(|e| failed(key, e))?;
        let version = Some(r["version"].to_string());
        Ok(match current {
            None => WriteOutcome::Created { version },
            Some(s) => WriteOutcome::Updated {
                version,
                previous: Some(s["version"].to_string()),
                disabled_previous: false,
            },
        })
    }
    async fn disable_version(&self, key: &str, _version: &str) -> Result<()> {
        Err(Error::not_supported(format!(
            "kv secret `{key}`: versions cannot be disabled"
        )))
    }
}
