//! [`DopplerSource`]: reads (and writes) one Doppler config.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use secretsync_core::source::{
    ChangeToken, Fetched, FindQuery, RemoteDescription, RemoteKey, SecretSource, SecretWriter, SourceCapabilities,
    VersionInfo, WriteOutcome, WriteRequest,
};
use secretsync_core::{CallStats, Error, Result, SecretValue};
use sha2::Sha256;

use crate::client::{ChangeRequest, Client, Download, OP_DOWNLOAD, RetryPolicy};
use crate::config::{CONFIG_ENV, DEFAULT_API_HOST, DopplerBuilder, PROJECT_ENV, TOKEN_ENV};
use crate::error::{self, PROVIDER, Target};
use crate::transform::NameTransformer;

/// One download of a config, parsed.
struct Snapshot {
    etag: Option<String>,
    /// Doppler name → value.
    secrets: BTreeMap<String, SecretValue>,
    /// Doppler name → change token.
    tokens: BTreeMap<String, ChangeToken>,
    /// Transformed name → Doppler name, when a name transformer is set.
    aliases: BTreeMap<String, String>,
}

impl Snapshot {
    /// The Doppler name a key refers to: itself, or the name it is the transform of.
    fn resolve<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        if self.secrets.contains_key(key) {
            return Some(key);
        }
        self.aliases.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Cache {
    snapshot: Option<Arc<Snapshot>>,
    validated_at: Option<Instant>,
}

/// A Doppler config as a secretsync source and writer.
///
/// # How reads are served
///
/// Every read — `get`, `get_many`, `find`, `change_tokens` — is answered from one download
/// of the whole config (`GET /v3/configs/config/secrets/download?format=json`). A download
/// serves reads for a *freshness window* (default 2 s, [`DopplerBuilder::with_freshness`]);
/// the first read after the window revalidates it with `If-None-Match: <ETag>`, which
/// Doppler answers `304 Not Modified` while the config is unchanged. The engine's calls of
/// one cycle (`find`, then `change_tokens`, then `get_many`) fall in one window, so a cycle
/// costs exactly one request, however many specs and keys read the config; an unchanged
/// config costs one `304`.
///
/// Change tokens are per key: an HMAC-SHA256 of name and value under a key drawn at random
/// when the source is built, so a token changes exactly when that key's value does and says
/// nothing about the value. [`Fetched::version`] carries the same token.
///
/// Concurrent reads share one request: the refresh is single-flight.
pub struct DopplerSource {
    client: Client,
    transformer: Option<NameTransformer>,
    freshness: Duration,
    token_key: [u8; 32],
    cache: tokio::sync::Mutex<Cache>,
}

impl fmt::Debug for DopplerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DopplerSource")
            .field("api_host", &self.client.base().as_str())
            .field("project", &self.client.target.project)
            .field("config", &self.client.target.config)
            .field("name_transformer", &self.transformer.map(NameTransformer::as_str))
            .field("freshness", &self.freshness)
            .finish_non_exhaustive()
    }
}

impl DopplerSource {
    pub(crate) fn new(
        b: DopplerBuilder,
        token: SecretValue,
        base: reqwest::Url,
        transformer: Option<NameTransformer>,
    ) -> Result<Self> {
        let retry = RetryPolicy {
            max_retries: b.max_retries,
            base: b.base_backoff,
            cap: b.max_backoff,
            max_retry_after: b.max_retry_after,
            total: None,
        };
        let target = Target {
            project: b.project.clone(),
            config: b.config.clone(),
        };
        let client = Client::new(base, token, target, retry, b.timeout)?;
        let mut token_key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut token_key[..]);
        Ok(Self {
            client,
            transformer,
            freshness: b.freshness,
            token_key,
            cache: tokio::sync::Mutex::new(Cache::default()),
        })
    }

    /// The project, when set (a service token implies it otherwise).
    pub fn project(&self) -> Option<&str> {
        self.client.target.project.as_deref()
    }

    /// The config, when set (a service token implies it otherwise).
    pub fn config(&self) -> Option<&str> {
        self.client.target.config.as_deref()
    }

    /// The API base URL requests go to.
    pub fn api_host(&self) -> &str {
        self.client.base().as_str()
    }

    /// Revalidates the cached download now (one conditional request), whatever its age.
    pub async fn refresh(&self) -> Result<()> {
        self.snapshot(true).await.map(|_| ())
    }

    fn token_of(&self, name: &str, value: &SecretValue) -> ChangeToken {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.token_key).expect("HMAC takes any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(value.expose());
        let digest = mac.finalize().into_bytes();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The current download: cached while fresh (unless `force`), else revalidated.
    async fn snapshot(&self, force: bool) -> Result<Arc<Snapshot>> {
        let mut cache = self.cache.lock().await;
        if !force
            && let (Some(s), Some(at)) = (&cache.snapshot, cache.validated_at)
            && at.elapsed() < self.freshness
        {
            return Ok(s.clone());
        }
        let etag = cache.snapshot.as_ref().and_then(|s| s.etag.clone());
        match self.client.download(etag.as_deref()).await? {
            Download::NotModified => match &cache.snapshot {
                Some(s) => {
                    let s = s.clone();
                    cache.validated_at = Some(Instant::now());
                    Ok(s)
                }
                None => Err(Error::provider(
                    PROVIDER,
                    format!(
                        "{OP_DOWNLOAD} on {}: 304 Not Modified without a cached download",
                        self.client.target
                    ),
                    true,
                )),
            },
            Download::Modified { etag, body } => {
                let s = Arc::new(self.parse(etag, body)?);
                cache.snapshot = Some(s.clone());
                cache.validated_at = Some(Instant::now());
                Ok(s)
            }
        }
    }

    fn parse(&self, etag: Option<String>, body: Vec<u8>) -> Result<Snapshot> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
            // serde_json's message may quote input; only its position is kept.
            Error::provider(
                PROVIDER,
                format!(
                    "{OP_DOWNLOAD} on {}: the answer is not a JSON object (line {} column {})",
                    self.client.target,
                    e.line(),
                    e.column()
                ),
                false,
            )
        })?;
        drop(body);
        let mut secrets = BTreeMap::new();
        for (name, value) in map {
            let value = match value {
                serde_json::Value::String(s) => SecretValue::from_string(s),
                other => SecretValue::from_string(other.to_string()),
            };
            secrets.insert(name, value);
        }
        let tokens = secrets.iter().map(|(k, v)| (k.clone(), self.token_of(k, v))).collect();
        let mut aliases = BTreeMap::new();
        if let Some(t) = self.transformer {
            for name in secrets.keys() {
                let alias = t.apply(name);
                if aliases.contains_key(&alias) {
                    tracing::debug!(name = %name, alias = %alias, "two Doppler names transform to one name; the first is kept");
                    continue;
                }
                aliases.insert(alias, name.clone());
            }
        }
        Ok(Snapshot {
            etag,
            secrets,
            tokens,
            aliases,
        })
    }

    fn check_version(&self, key: &RemoteKey) -> Result<()> {
        match key.version.as_deref() {
            None | Some("latest") | Some("current") => Ok(()),
            Some(v) => Err(Error::not_supported(format!(
                "remoteRef.version `{v}` of key `{}`: Doppler secrets have no versions",
                key.key
            ))),
        }
    }

    fn missing(&self, key: &str) -> Error {
        Error::not_found(format!("key `{key}` in {}", self.client.target))
    }

    fn lookup(&self, snap: &Snapshot, key: &RemoteKey) -> Result<Fetched> {
        self.check_version(key)?;
        let name = snap.resolve(&key.key).ok_or_else(|| self.missing(&key.key))?;
        Ok(Fetched {
            value: snap.secrets[name].clone(),
            version: Some(snap.tokens[name].clone()),
        })
    }
}

#[async_trait]
impl SecretSource for DopplerSource {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> SourceCapabilities {
        let mut c = SourceCapabilities::none();
        c.batch_read = true;
        c.find_by_name = true;
        c.find_by_path = true;
        c.change_tokens = true;
        c
    }

    async fn get(&self, key: &RemoteKey) -> Result<Fetched> {
        self.check_version(key)?;
        let snap = self.snapshot(false).await?;
        self.lookup(&snap, key)
    }

    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        if keys.is_empty() {
            return vec![];
        }
        match self.snapshot(false).await {
            Ok(snap) => keys.iter().map(|k| self.lookup(&snap, k)).collect(),
            Err(e) => keys.iter().map(|_| Err(error::duplicate(&e))).collect(),
        }
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        if !query.tags.is_empty() {
            return Err(Error::not_supported(
                "dataFrom.find by tags on provider doppler: Doppler secrets have no tags",
            ));
        }
        let re = match &query.name_regexp {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| Error::invalid(format!("find.name.regexp `{r}`: {e}")))?),
            None => None,
        };
        let snap = self.snapshot(false).await?;
        // With a name transformer, find sees transformed names (as ESO's does).
        let names: Vec<&String> = if self.transformer.is_some() {
            snap.aliases.keys().collect()
        } else {
            snap.secrets.keys().collect()
        };
        Ok(names
            .into_iter()
            .filter(|n| re.as_ref().is_none_or(|re| re.is_match(n)))
            .filter(|n| query.path.as_ref().is_none_or(|p| n.starts_with(p.as_str())))
            .cloned()
            .collect())
    }

    async fn forget(&self, _keys: &[RemoteKey]) {
        // The next read revalidates the download (one request, `304` when unchanged).
        self.cache.lock().await.validated_at = None;
    }

    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        if keys.is_empty() {
            return vec![];
        }
        match self.snapshot(false).await {
            Ok(snap) => keys.iter().map(|k| self.lookup(&snap, k).map(|f| f.version)).collect(),
            Err(e) => keys.iter().map(|_| Err(error::duplicate(&e))).collect(),
        }
    }

    fn call_stats(&self) -> Option<&CallStats> {
        Some(&self.client.stats)
    }
}

/// Doppler secret names: upper-case letters, digits and underscores, not starting with a digit.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Writes. Doppler has no tags or labels to carry a `managed-by` mark, and no versions:
///
/// - every secret of the config counts as managed (`describe` says `managed: true`), so
///   writes are allowed; scope what secretsync may write with the token (a read-only
///   service token for stores that only read, a read/write one bound to the one config
///   rotation writes);
/// - `put` replaces the value; the previous value is gone, so `disabled_previous` is
///   `false` and `disable_version` is [`Error::NotSupported`];
/// - `delete` is [`Error::NotSupported`]: with every secret counting as managed, a delete
///   could remove a value secretsync never created.
#[async_trait]
impl SecretWriter for DopplerSource {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        let snap = self.snapshot(true).await?;
        Ok(snap.tokens.get(key).map(|token| RemoteDescription {
            current_version: Some(token.clone()),
            managed: true,
            versions: vec![VersionInfo {
                id: token.clone(),
                enabled: true,
            }],
        }))
    }

    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        let key = request.key.as_str();
        if !valid_name(key) {
            return Err(Error::invalid(format!(
                "Doppler secret name `{key}`: use upper-case letters, digits and underscores, not starting with a digit"
            )));
        }
        if matches!(key, "DOPPLER_PROJECT" | "DOPPLER_ENVIRONMENT" | "DOPPLER_CONFIG") {
            return Err(Error::invalid(format!(
                "Doppler secret `{key}` is set by Doppler and cannot be written"
            )));
        }
        let snap = self.snapshot(true).await?;
        let current = snap.secrets.get(key);
        let value = match &request.property {
            None => request.value.clone(),
            Some(p) => secretsync_core::sources::memory::merge_property(current, p, &request.value, key)?,
        };
        let text = value
            .expose_str()
            .ok_or_else(|| Error::invalid(format!("write to Doppler secret `{key}`: the value is not UTF-8 text")))?;
        self.client
            .update(&[ChangeRequest {
                original_name: current.map(|_| key),
                name: key,
                value: text,
            }])
            .await?;
        // The config changed: the next read revalidates (and gets the new ETag).
        self.cache.lock().await.validated_at = None;
        let version = Some(self.token_of(key, &value));
        Ok(match snap.tokens.get(key) {
            None => WriteOutcome::Created { version },
            Some(previous) => WriteOutcome::Updated {
                version,
                previous: Some(previous.clone()),
                disabled_previous: false,
            },
        })
    }

    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        Err(Error::not_supported(format!(
            "disable version `{version}` of Doppler secret `{key}`: Doppler keeps no versions of a secret (a write replaces the value)"
        )))
    }

    /// Refused, before any request: a Doppler secret carries no mark of who created it, so
    /// a delete could remove a value secretsync never wrote (`deletionPolicy: Delete` leaves
    /// Doppler keys in place and says so).
    async fn delete(&self, key: &str) -> Result<()> {
        Err(Error::not_supported(format!(
            "delete Doppler secret `{key}`: Doppler secrets carry no tag or label to tell which ones secretsync created, so secretsync never deletes them; remove it in Doppler if it should go"
        )))
    }
}

// Building lives beside what it builds, so the settings module does not depend on it.
impl DopplerBuilder {
    /// Checks the settings and builds the source. No request is sent.
    pub fn build(self) -> Result<DopplerSource> {
        let token = self.token.clone().ok_or_else(|| Error::Unauthenticated {
            what: format!("no Doppler token: set {TOKEN_ENV} or the store's auth.secretRef.dopplerToken"),
        })?;
        let text = token
            .expose_str()
            .ok_or_else(|| Error::invalid("the Doppler token is not UTF-8"))?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                "the Doppler token is empty or has characters not allowed in an HTTP header",
            ));
        }
        if !self.is_service_token() && (self.project.is_none() || self.config.is_none()) {
            return Err(Error::invalid(format!(
                "Doppler project and config are required unless the token is a service token (dp.st.…): set project and config on the store or {PROJECT_ENV} and {CONFIG_ENV}"
            )));
        }
        if let Some(f) = self.format.as_deref()
            && f != "json"
        {
            return Err(Error::not_supported(format!(
                "Doppler format `{f}` (ESO's DOPPLER_SECRETS_FILE download); only `json` is supported"
            )));
        }
        let transformer = self
            .name_transformer
            .as_deref()
            .map(NameTransformer::parse)
            .transpose()?;
        let host = self.api_host.clone().unwrap_or_else(|| DEFAULT_API_HOST.to_string());
        let host = if host.contains("://") {
            host
        } else {
            format!("https://{host}")
        };
        let base = reqwest::Url::parse(host.trim_end_matches('/'))
            .map_err(|e| Error::invalid(format!("Doppler API host `{host}`: {e}")))?;
        // The bearer token goes to this host: plain http only to loopback (a test server).
        secretsync_core::net::check_endpoint(base.as_str(), "Doppler API host")?;
        DopplerSource::new(self, token, base, transformer)
    }
}
