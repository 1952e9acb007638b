//! Where secrets are kept: [`SecretSource`] (read) and [`SecretWriter`] (write).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::value::SecretValue;

/// One remote value: a key in a store, and optionally a version.
///
/// `version` is the provider's: an AWS stage (`AWSCURRENT`, `AWSPREVIOUS`) or `uuid/<id>`,
/// a GCP version number or `latest`, a fake's version string. `None` means the current one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteKey {
    /// The remote name (secret name, path, Doppler key).
    pub key: String,
    /// The version, if not the current one.
    pub version: Option<String>,
}

impl RemoteKey {
    /// The current version of `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            version: None,
        }
    }
    /// A given version of `key`.
    pub fn with_version(key: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            version: Some(version.into()),
        }
    }
}

impl fmt::Display for RemoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}@{}", self.key, v),
            None => f.write_str(&self.key),
        }
    }
}

/// A value read from a source, with the version it resolved to.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The value.
    pub value: SecretValue,
    /// The provider's id of the version that was read, when it has one. Used as the change
    /// token for this key, so it must change whenever the value does.
    pub version: Option<String>,
}

impl Fetched {
    /// A value without version information.
    pub fn new(value: SecretValue) -> Self {
        Self { value, version: None }
    }
}

/// A cheap token that changes whenever the value of a key changes (a version id, an ETag).
pub type ChangeToken = String;

/// `dataFrom.find`: which remote names to read. All set criteria must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindQuery {
    /// A regular expression the name must match (ESO `find.name.regexp`).
    pub name_regexp: Option<String>,
    /// A prefix the name must start with (ESO `find.path`).
    pub path: Option<String>,
    /// Tags or labels the secret must carry (ESO `find.tags`).
    pub tags: BTreeMap<String, String>,
}

/// What a source supports. The engine and tests ask this instead of matching on names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceCapabilities {
    /// `get_many` reads several keys in one API call.
    pub batch_read: bool,
    /// `find` by name regexp.
    pub find_by_name: bool,
    /// `find` by path prefix.
    pub find_by_path: bool,
    /// `find` by tags / labels.
    pub find_by_tags: bool,
    /// `change_tokens` is cheaper than reading values, so the engine asks it first.
    pub change_tokens: bool,
    /// `metadata` returns tags/labels (`metadataPolicy: Fetch`).
    pub metadata: bool,
    /// `RemoteKey::version` can select a non-current version.
    pub versions: bool,
    /// Values may be binary (not UTF-8).
    pub binary: bool,
}

impl SourceCapabilities {
    /// Everything off; set what the source supports.
    pub fn none() -> Self {
        Self::default()
    }
}

/// How many reads the default [`SecretSource::get_many`] runs at once.
pub const DEFAULT_READ_CONCURRENCY: usize = 8;

/// A place secrets are read from.
///
/// # Contract
///
/// - `get` returns the value of the key's current version, or of `version` if given;
///   a missing key or version is [`Error::NotFound`], never an empty value.
/// - `get_many` returns exactly one result per input key, in input order; one key's failure
///   is that entry's error and does not fail the others.
/// - `find` returns every matching name once, following every page of the provider's API.
/// - `change_tokens` returns one entry per key in input order: `Some(token)` changes whenever
///   the value changes; `None` means unknown (the engine then reads the value).
/// - The engine calls, per store and cycle: `find` for each distinct query, then
///   `change_tokens` when [`SourceCapabilities::change_tokens`] is set, then `get_many` for
///   keys whose token changed or is unknown. A source may serve later calls of a cycle from
///   what an earlier call of the same cycle downloaded.
/// - No error, log line or `Debug` output contains a value or a credential.
/// - `api_calls` counts requests sent to the provider since the source was built.
#[async_trait]
pub trait SecretSource: Send + Sync + fmt::Debug {
    /// The provider's name (`aws`, `gcpsm`, `doppler`, `fake`, `file`).
    fn provider(&self) -> &str;

    /// What this source supports.
    fn capabilities(&self) -> SourceCapabilities;

    /// Reads one value.
    async fn get(&self, key: &RemoteKey) -> Result<Fetched>;

    /// Reads many values. The default runs [`get`](Self::get) with bounded concurrency;
    /// providers with a batch API override it.
    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        // At most DEFAULT_READ_CONCURRENCY futures exist at once (not one per key), and no
        // closure is held across an await, so the future stays `Send` for spawning callers.
        let mut out = Vec::with_capacity(keys.len());
        let mut pending = keys.iter();
        let mut in_flight = futures::stream::FuturesOrdered::new();
        loop {
            while in_flight.len() < DEFAULT_READ_CONCURRENCY {
                match pending.next() {
                    Some(k) => in_flight.push_back(self.get(k)),
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(r) => out.push(r),
                None => break,
            }
        }
        out
    }

    /// Names matching a query (`dataFrom.find`).
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        let _ = query;
        Err(Error::not_supported(format!(
            "dataFrom.find on provider {}",
            self.provider()
        )))
    }

    /// A change event said these keys changed: the next read of them must ask the provider.
    /// Sources that serve reads from a short-lived snapshot (Doppler's and Pulumi's
    /// freshness window) drop it; the default does nothing.
    async fn forget(&self, keys: &[RemoteKey]) {
        let _ = keys;
    }

    /// Cheap change tokens for keys; see the contract.
    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        keys.iter().map(|_| Ok(None)).collect()
    }

    /// Tags / labels / annotations of a secret (`metadataPolicy: Fetch`).
    async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
        let _ = key;
        Err(Error::not_supported(format!(
            "metadataPolicy Fetch on provider {}",
            self.provider()
        )))
    }

    /// Requests sent to the provider since this source was built.
    fn api_calls(&self) -> u64 {
        self.call_stats().map(CallStats::total).unwrap_or(0)
    }

    /// Per-operation request counts, for sources that keep them.
    fn call_stats(&self) -> Option<&CallStats> {
        None
    }
}

/// What [`SecretWriter::put`] writes.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// The remote name.
    pub key: String,
    /// The new value (or the new value of `property`).
    pub value: SecretValue,
    /// Write into this top-level property of the existing JSON object instead of replacing
    /// the whole value; other properties are kept.
    pub property: Option<String>,
    /// After adding the new version, disable the previous one where the provider can
    /// (seed 000's script: "creates a new version, disables the old").
    pub disable_previous: bool,
    /// Write even to a secret that secretsync did not create (no `managed-by` tag/label).
    pub force: bool,
}

impl WriteRequest {
    /// A whole-value write that refuses unmanaged secrets and keeps the previous version.
    pub fn new(key: impl Into<String>, value: SecretValue) -> Self {
        Self {
            key: key.into(),
            value,
            property: None,
            disable_previous: false,
            force: false,
        }
    }
}

/// The label or tag secretsync puts on secrets it creates: `managed-by: secretsync`.
pub const MANAGED_BY_KEY: &str = "managed-by";
/// Value of [`MANAGED_BY_KEY`].
pub const MANAGED_BY_VALUE: &str = "secretsync";

/// One version of a remote secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Provider version id, in the form [`RemoteKey::version`] accepts (AWS: `uuid/<id>`).
    pub id: String,
    /// Whether it can be read.
    pub enabled: bool,
}

/// What a writer knows about a remote secret, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDescription {
    /// The current version's id, if any version exists.
    pub current_version: Option<String>,
    /// Whether secretsync manages it (carries `managed-by: secretsync`).
    pub managed: bool,
    /// Known versions, newest first, where the provider lists them.
    pub versions: Vec<VersionInfo>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The secret did not exist and was created with a first version.
    Created {
        /// The new version id, if the provider has one.
        version: Option<String>,
    },
    /// A new version was added.
    Updated {
        /// The new version id.
        version: Option<String>,
        /// The previous version id, and whether it was disabled.
        previous: Option<String>,
        /// Whether `previous` was disabled.
        disabled_previous: bool,
    },
}

/// A source that accepts writes: used by rotation and push.
///
/// # Contract
///
/// - `put` creates a missing secret (tagged `managed-by: secretsync`) or adds a version to
///   an existing one; afterwards `get` returns the new value and the previous current
///   version stays readable by its id (or stage) unless disabled.
/// - `put` refuses, before writing, a secret without the managed-by mark unless
///   `force`, with [`Error::PermissionDenied`] naming the key.
/// - `put` with `property` merges into the existing JSON object.
/// - `describe` of a missing key is `Ok(None)`.
/// - `disable_version` makes that version unreadable; `get` of it then fails.
#[async_trait]
pub trait SecretWriter: SecretSource {
    /// Current version and management mark of a secret, `None` if it does not exist.
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>>;

    /// Creates or adds a version.
    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome>;

    /// Disables one version.
    async fn disable_version(&self, key: &str, version: &str) -> Result<()>;

    /// Deletes a secret that carries the managed-by mark (secretsync's, or ESO's
    /// `managed-by: external-secrets`): where the provider has one, with a recovery window,
    /// so a mistake can be undone. A secret without the mark is refused with
    /// [`Error::PermissionDenied`] naming the key, before any change; a missing one is
    /// `Ok(())`. The default is [`Error::NotSupported`].
    async fn delete(&self, key: &str) -> Result<()> {
        Err(Error::not_supported(format!(
            "delete `{key}`: provider {} cannot delete secrets",
            self.provider()
        )))
    }
}

/// ESO's value of [`MANAGED_BY_KEY`] on secrets it pushed; accepted as managed for
/// deletion, so a team can move from ESO's PushSecrets to secretsync's.
pub const ESO_MANAGED_BY_VALUE: &str = "external-secrets";

/// Conveniences for every source.
#[async_trait]
pub trait SecretSourceExt: SecretSource {
    /// Reads the current value of `key`.
    async fn get_value(&self, key: &str) -> Result<SecretValue> {
        Ok(self.get(&RemoteKey::new(key)).await?.value)
    }
}

impl<T: SecretSource + ?Sized> SecretSourceExt for T {}

macro_rules! forward_source {
    ($ty:ty) => {
        #[async_trait]
        impl<T: SecretSource + ?Sized> SecretSource for $ty {
            fn provider(&self) -> &str {
                (**self).provider()
            }
            fn capabilities(&self) -> SourceCapabilities {
                (**self).capabilities()
            }
            async fn get(&self, key: &RemoteKey) -> Result<Fetched> {
                (**self).get(key).await
            }
            async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
                (**self).get_many(keys).await
            }
            async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
                (**self).find(query).await
            }
            async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
                (**self).change_tokens(keys).await
            }
            async fn forget(&self, keys: &[RemoteKey]) {
                (**self).forget(keys).await
            }
            async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
                (**self).metadata(key).await
            }
            fn api_calls(&self) -> u64 {
                (**self).api_calls()
            }
            fn call_stats(&self) -> Option<&CallStats> {
                (**self).call_stats()
            }
        }

        #[async_trait]
        impl<T: SecretWriter + ?Sized> SecretWriter for $ty {
            async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
                (**self).describe(key).await
            }
            async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
                (**self).put(request).await
            }
            async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
                (**self).disable_version(key, version).await
            }
            async fn delete(&self, key: &str) -> Result<()> {
                (**self).delete(key).await
            }
        }
    };
}

forward_source!(Arc<T>);
forward_source!(Box<T>);

/// Counts of provider API requests by operation and outcome, kept by each network
/// provider and exposed through [`SecretSource::call_stats`] (metrics, tests, benches).
#[derive(Debug, Default)]
pub struct CallStats {
    counts: std::sync::Mutex<BTreeMap<(String, String), u64>>,
}

impl CallStats {
    /// A new, empty counter.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records one request of `operation` (`BatchGetSecretValue`) that ended in `status`
    /// (`ok`, `not_found`, `throttled`, `error`, or an HTTP status code).
    pub fn record(&self, operation: &str, status: &str) {
        *self
            .counts
            .lock()
            .expect("lock")
            .entry((operation.to_string(), status.to_string()))
            .or_default() += 1;
    }
    /// Total requests.
    pub fn total(&self) -> u64 {
        self.counts.lock().expect("lock").values().sum()
    }
    /// Requests of one operation, any status.
    pub fn of(&self, operation: &str) -> u64 {
        self.counts
            .lock()
            .expect("lock")
            .iter()
            .filter(|((op, _), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    }
    /// A copy of all counts.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().expect("lock").clone()
    }
}
