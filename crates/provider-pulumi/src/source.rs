//! [`EscSource`]: reads (and writes) one Pulumi ESC environment.

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

use crate::client::{Client, OP_READ, RetryPolicy};
use crate::config::{DEFAULT_API_URL, EscStoreConfig, PulumiBuilder, TOKEN_ENV};
use crate::error::{self, PROVIDER, Target};
use crate::path::{self, Node, PropertyPath, Step};
use crate::yaml_edit;

/// One open-and-read of the environment, resolved.
struct Snapshot {
    /// The ETag of the revision the values come from, when known.
    etag: Option<String>,
    properties: BTreeMap<String, Node>,
    /// Values came from imported environments or `fn::open` providers: the ETag alone
    /// does not say when they change.
    dynamic: bool,
    fetched_at: Instant,
}

struct Session {
    id: String,
    etag: Option<String>,
    expires: Instant,
}

#[derive(Default)]
struct Cache {
    snapshot: Option<Arc<Snapshot>>,
    validated_at: Option<Instant>,
    session: Option<Session>,
}

/// A Pulumi ESC environment as a secretsync source and writer.
///
/// # How reads are served
///
/// Every read — `get`, `get_many`, `find`, `change_tokens` — is answered from one open and
/// one read of the whole environment (`POST …/open`, then `GET …/open/{id}`), however many
/// specs and keys read it. A check serves reads for a *freshness window* (default 2 s,
/// [`PulumiBuilder::with_freshness`]), so the engine's calls of one cycle cost one check.
/// The first read after the window asks `HEAD …/{env}` for the environment's ETag: the
/// same ETag means the values are current — one request, no open, no read, unchanged
/// change tokens, so the engine renders and writes nothing. A new ETag opens the
/// environment again (a session that still lives and belongs to that ETag is read again
/// instead of opening a new one).
///
/// The ETag covers the environment's own definition. Values that ESC reports as coming
/// from imported environments or from `fn::open` providers can change without it, so when
/// there are any the environment is opened again after at most
/// [`PulumiBuilder::with_max_age`] (default 5 min).
///
/// Keys are ESC property paths as ESO writes them (`pulumiConfig["postgresql:password"]`,
/// `pulumiConfig.dbHost`, `files[0]`). A string is its text; numbers and booleans their
/// JSON; objects and arrays the JSON of their plain values (so `remoteRef.property` and
/// `dataFrom.extract` work on them). ESC's metadata (`secret`, `trace`) never reaches a
/// target; a value ESC reports as `unknown` is an error for the keys that read it.
///
/// Change tokens are per key: an HMAC-SHA256 of path and value under a key drawn at random
/// when the source is built, so a token changes exactly when that key's value does.
pub struct EscSource {
    client: Client,
    freshness: Duration,
    open_duration: Duration,
    max_age: Duration,
    token_key: [u8; 32],
    cache: tokio::sync::Mutex<Cache>,
    writes: tokio::sync::Mutex<()>,
}

impl fmt::Debug for EscSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EscSource")
            .field("api_url", &self.client.base().as_str())
            .field("organization", &self.client.target.organization)
            .field("project", &self.client.target.project)
            .field("environment", &self.client.target.environment)
            .field("freshness", &self.freshness)
            .finish_non_exhaustive()
    }
}

impl EscSource {
    pub(crate) fn new(b: PulumiBuilder, token: SecretValue, base: reqwest::Url, target: Target) -> Result<Self> {
        let retry = RetryPolicy {
            max_retries: b.max_retries,
            base: b.base_backoff,
            cap: b.max_backoff,
            max_retry_after: b.max_retry_after,
            total: None,
        };
        let client = Client::new(base, token, target, retry, b.timeout)?;
        let mut token_key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut token_key[..]);
        Ok(Self {
            client,
            freshness: b.freshness,
            open_duration: b.open_duration,
            max_age: b.max_age,
            token_key,
            cache: tokio::sync::Mutex::new(Cache::default()),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The organization.
    pub fn organization(&self) -> &str {
        &self.client.target.organization
    }

    /// The ESC project.
    pub fn project(&self) -> &str {
        &self.client.target.project
    }

    /// The environment.
    pub fn environment(&self) -> &str {
        &self.client.target.environment
    }

    /// The ESC API base URL requests go to.
    pub fn api_url(&self) -> &str {
        self.client.base().as_str()
    }

    /// Checks the environment now (one `HEAD`, and an open and read if it changed),
    /// whatever the age of the last check.
    pub async fn refresh(&self) -> Result<()> {
        self.snapshot(true).await.map(|_| ())
    }

    fn token_of(&self, path: &PropertyPath, value: &SecretValue) -> ChangeToken {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.token_key).expect("HMAC takes any key length");
        mac.update(path.to_string().as_bytes());
        mac.update(&[0]);
        mac.update(value.expose());
        let digest = mac.finalize().into_bytes();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn is_own(&self, env: &str) -> bool {
        let t = &self.client.target;
        env.is_empty()
            || env == t.environment
            || env == format!("{}/{}", t.project, t.environment)
            || env == format!("{}/{}/{}", t.organization, t.project, t.environment)
    }

    /// The current values: cached while fresh (unless `force`), else checked with `HEAD`
    /// and re-read when the ETag changed.
    async fn snapshot(&self, force: bool) -> Result<Arc<Snapshot>> {
        let mut cache = self.cache.lock().await;
        if !force
            && let (Some(s), Some(at)) = (&cache.snapshot, cache.validated_at)
            && at.elapsed() < self.freshness
        {
            return Ok(s.clone());
        }
        if let Some(s) = cache.snapshot.clone() {
            if s.dynamic && s.fetched_at.elapsed() >= self.max_age {
                return self.reload(&mut cache, None).await;
            }
            let current = self.client.etag().await?;
            if current.is_some() && current == s.etag {
                cache.validated_at = Some(Instant::now());
                return Ok(s);
            }
            return self.reload(&mut cache, current).await;
        }
        self.reload(&mut cache, None).await
    }

    /// Opens (or reuses a live session of the revision `etag`) and reads the environment.
    async fn reload(&self, cache: &mut Cache, etag: Option<String>) -> Result<Arc<Snapshot>> {
        let now = Instant::now();
        let mut reuse = cache
            .session
            .as_ref()
            .filter(|s| s.expires > now && etag.is_some() && s.etag == etag)
            .map(|s| (s.id.clone(), s.etag.clone()));
        for _ in 0..2 {
            let (id, session_etag) = match reuse.take() {
                Some(r) => r,
                None => {
                    let opened = self.client.open(self.open_duration).await?;
                    let session_etag = opened.etag.or_else(|| etag.clone());
                    // Served a little less than asked, so a read never races the expiry.
                    let life = self.open_duration.mul_f64(0.9);
                    cache.session = Some(Session {
                        id: opened.id.clone(),
                        etag: session_etag.clone(),
                        expires: Instant::now() + life,
                    });
                    (opened.id, session_etag)
                }
            };
            let Some(body) = self.client.read(&id).await? else {
                // The session ended early: open a new one.
                cache.session = None;
                continue;
            };
            let resolved = path::resolve(&body).ok_or_else(|| {
                Error::provider(
                    PROVIDER,
                    format!(
                        "{OP_READ} on {}: the answer is not the environment ESC documents",
                        self.client.target
                    ),
                    false,
                )
            })?;
            drop(body);
            let dynamic = resolved.has_open || resolved.sources.iter().any(|s| !self.is_own(s));
            let snap = Arc::new(Snapshot {
                etag: session_etag,
                properties: resolved.properties,
                dynamic,
                fetched_at: Instant::now(),
            });
            cache.snapshot = Some(snap.clone());
            cache.validated_at = Some(Instant::now());
            return Ok(snap);
        }
        Err(Error::provider(
            PROVIDER,
            format!(
                "{OP_READ} on {}: ESC ended the open session before it could be read",
                self.client.target
            ),
            true,
        ))
    }

    fn check_version(&self, key: &RemoteKey) -> Result<()> {
        match key.version.as_deref() {
            None | Some("latest") | Some("current") => Ok(()),
            Some(v) => Err(Error::not_supported(format!(
                "remoteRef.version `{v}` of key `{}` in {}: reading an older ESC revision is not supported",
                key.key, self.client.target
            ))),
        }
    }

    fn parse_key(&self, key: &str) -> Result<PropertyPath> {
        PropertyPath::parse(key).map_err(|e| e.context(format!("key `{key}` in {}", self.client.target)))
    }

    fn lookup(&self, snap: &Snapshot, key: &RemoteKey) -> Result<Fetched> {
        self.check_version(key)?;
        let path = self.parse_key(&key.key)?;
        let node = Node::lookup(&snap.properties, &path).map_err(|missing_at| {
            let what = if missing_at + 1 < path.steps().len() {
                format!(" (no `{}`)", PropertyPath(path.steps()[..=missing_at].to_vec()))
            } else {
                String::new()
            };
            Error::not_found(format!("key `{}` in {}{what}", key.key, self.client.target))
        })?;
        let value = node.to_value().ok_or_else(|| {
            Error::provider(
                PROVIDER,
                format!(
                    "key `{}` in {}: ESC reports the value as unknown (an import or fn::open provider did not resolve)",
                    key.key, self.client.target
                ),
                true,
            )
        })?;
        Ok(Fetched {
            version: Some(self.token_of(&path, &value)),
            value,
        })
    }
}

#[async_trait]
impl SecretSource for EscSource {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn forget(&self, _keys: &[RemoteKey]) {
        // The next read checks the environment again (one request when unchanged).
        self.cache.lock().await.validated_at = None;
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

    /// Names are the environment's top-level keys and the keys of `pulumiConfig`, as
    /// property paths (`dbHost`, `pulumiConfig.dbHost`, `pulumiConfig["postgresql:password"]`);
    /// `find.path` is a prefix of those names.
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        if !query.tags.is_empty() {
            return Err(Error::not_supported(format!(
                "dataFrom.find by tags on {}: ESC values have no tags",
                self.client.target
            )));
        }
        let re = match &query.name_regexp {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| Error::invalid(format!("find.name.regexp `{r}`: {e}")))?),
            None => None,
        };
        let snap = self.snapshot(false).await?;
        let mut names = vec![];
        for (k, v) in &snap.properties {
            if k == "pulumiConfig"
                && let Node::Object(children) = v
            {
                for c in children.keys() {
                    names.push(PropertyPath::of_keys(["pulumiConfig", c.as_str()]).to_string());
                }
                continue;
            }
            names.push(PropertyPath(vec![Step::Key(k.clone())]).to_string());
        }
        Ok(names
            .into_iter()
            .filter(|n| re.as_ref().is_none_or(|re| re.is_match(n)))
            .filter(|n| query.path.as_ref().is_none_or(|p| n.starts_with(p.as_str())))
            .collect())
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

/// Writes edit the environment's YAML definition: `GET` it, set the one path to
/// `fn::secret: <value>` leaving every other byte as it was, `PATCH` it back on condition
/// that the ETag is unchanged (a concurrent edit is [`Error::Conflict`], nothing is lost).
///
/// - Versions are ESC revisions: [`WriteOutcome`] carries the revision written and the one
///   before; `disable_version` is [`Error::NotSupported`] (ESC keeps every revision;
///   retracting one is a human decision).
/// - ESC has no per-value labels for a `managed-by` mark: every path of the environment
///   counts as managed (`describe` says `managed: true`). Scope what secretsync may write
///   with the token's team permissions.
/// - `describe` and the `current_version` it gives are the per-key change token of the
///   resolved value, like reads.
#[async_trait]
impl SecretWriter for EscSource {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        let snap = self.snapshot(true).await?;
        match self.lookup(&snap, &RemoteKey::new(key)) {
            Ok(f) => {
                let token = f.version.unwrap_or_default();
                Ok(Some(RemoteDescription {
                    current_version: Some(token.clone()),
                    managed: true,
                    versions: vec![VersionInfo {
                        id: token,
                        enabled: true,
                    }],
                }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        let key = request.key.as_str();
        let path = self.parse_key(key)?;
        let _serial = self.writes.lock().await;
        let value = match &request.property {
            None => request.value.clone(),
            Some(p) => {
                let snap = self.snapshot(true).await?;
                let current = match self.lookup(&snap, &RemoteKey::new(key)) {
                    Ok(f) => Some(f.value),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e),
                };
                secretsync_core::sources::memory::merge_property(current.as_ref(), p, &request.value, key)?
            }
        };
        let def = self.client.definition().await?;
        let target = self.client.target.to_string();
        let edited = yaml_edit::set_secret(&def.yaml, &path, &value, &target)?;
        drop(def.yaml);
        let (_etag, revision) = self.client.update(edited.yaml, def.etag.as_deref()).await?;
        // The environment changed: the next read checks (and sees the new ETag).
        self.cache.lock().await.validated_at = None;
        let version = revision.map(|r| r.to_string());
        Ok(if edited.existed {
            WriteOutcome::Updated {
                version,
                previous: def.revision.map(|r| r.to_string()),
                disabled_previous: false,
            }
        } else {
            WriteOutcome::Created { version }
        })
    }

    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        Err(Error::not_supported(format!(
            "disable revision `{version}` of `{key}` in {}: ESC keeps every revision of an environment",
            self.client.target
        )))
    }
}

// Building lives beside what it builds, so the settings module does not depend on it.
impl PulumiBuilder {
    /// Checks the settings and builds the source. No request is sent.
    pub fn build(self) -> Result<EscSource> {
        let config = EscStoreConfig {
            organization: self.organization.clone().unwrap_or_default(),
            project: self.project.clone().unwrap_or_default(),
            environment: self.environment.clone().unwrap_or_default(),
            api_url: self.api_url.clone(),
            ..Default::default()
        };
        if let Some(p) = config.problems().into_iter().next() {
            return Err(Error::invalid(format!("Pulumi ESC {}: {}", p.field, p.message)));
        }
        let token = self.token.clone().ok_or_else(|| Error::Unauthenticated {
            what: format!(
                "no Pulumi access token for {}/{}/{}: set {TOKEN_ENV} or the store's auth.accessToken.secretRef",
                config.organization, config.project, config.environment
            ),
        })?;
        let text = token
            .expose_str()
            .ok_or_else(|| Error::invalid("the Pulumi access token is not UTF-8"))?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                "the Pulumi access token is empty or has characters not allowed in an HTTP header",
            ));
        }
        let url = self.api_url.clone().unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let base = reqwest::Url::parse(url.trim_end_matches('/'))
            .map_err(|e| Error::invalid(format!("Pulumi ESC apiUrl `{url}`: {e}")))?;
        let target = Target {
            organization: config.organization,
            project: config.project,
            environment: config.environment,
        };
        EscSource::new(self, token, base, target)
    }
}
