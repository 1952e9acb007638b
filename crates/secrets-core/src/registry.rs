//! Building sources from stores: provider factories and store credentials.
//!
//! A provider is a plug-in ([`SourceFactory`]): it owns its `spec.provider.<name>` schema,
//! its offline validation and its factory, and is registered under its name. Core registers
//! its built-ins, `fake` and `file`; the facade registers the providers compiled into it and
//! records the features of the others ([`Registry::needs_feature`]), so a store whose provider
//! is missing is a clear error naming the feature to enable; a user registers their own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::manifest::{ESO_PROVIDERS, Manifests, NOT_SUPPORTED_PREFIX, SecretKeySelector, Store, StoreId};
use crate::source::{SecretSource, SecretWriter};
use crate::value::SecretValue;

pub use crate::credentials::CredentialResolver;

/// Out of a cluster, a store's `secretRef` is read from:
///
/// 1. the environment variable `SECRETSYNC_SECRET_<NAMESPACE>_<NAME>_<KEY>` (upper case, every
///    character outside `[A-Z0-9]` replaced by `_`), e.g. `doppler-token-auth` / `dopplerToken`
///    in `external-secrets` is `SECRETSYNC_SECRET_EXTERNAL_SECRETS_DOPPLER_TOKEN_AUTH_DOPPLERTOKEN`;
/// 2. else the file `<dir>/<namespace>/<name>/<key>`, where `<dir>` is `SECRETSYNC_SECRETS_DIR`
///    (default `.secretsync/secrets`). A trailing newline is dropped.
#[derive(Debug, Clone)]
pub struct EnvFileCredentials {
    dir: PathBuf,
}

/// Environment variable naming the folder of [`EnvFileCredentials`].
pub const SECRETS_DIR_ENV: &str = "SECRETSYNC_SECRETS_DIR";

impl Default for EnvFileCredentials {
    fn default() -> Self {
        Self {
            dir: std::env::var_os(SECRETS_DIR_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".secretsync/secrets")),
        }
    }
}

impl EnvFileCredentials {
    /// Reads files under `dir`.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The environment variable that holds a selector's value.
    pub fn env_name(selector: &SecretKeySelector, namespace: &str) -> String {
        let clean = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        };
        format!(
            "SECRETSYNC_SECRET_{}_{}_{}",
            clean(namespace),
            clean(&selector.name),
            clean(&selector.key)
        )
    }
}

#[async_trait]
impl CredentialResolver for EnvFileCredentials {
    async fn resolve(&self, selector: &SecretKeySelector, namespace: Option<&str>) -> Result<SecretValue> {
        let ns = selector.namespace.as_deref().or(namespace).unwrap_or("default");
        let var = Self::env_name(selector, ns);
        if let Ok(v) = std::env::var(&var) {
            return Ok(SecretValue::from(v));
        }
        let path = self.dir.join(ns).join(&selector.name).join(&selector.key);
        match tokio::fs::read(&path).await {
            Ok(mut bytes) => {
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                Ok(SecretValue::new(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(format!(
                "credential secret {ns}/{} key `{}`: set {var} or create {}",
                selector.name,
                selector.key,
                path.display()
            ))),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// Tries resolvers in order; the first that does not answer NotFound wins.
#[derive(Debug, Clone)]
pub struct ChainCredentials(pub Vec<Arc<dyn CredentialResolver>>);

#[async_trait]
impl CredentialResolver for ChainCredentials {
    async fn resolve(&self, selector: &SecretKeySelector, namespace: Option<&str>) -> Result<SecretValue> {
        let mut last = Error::not_found(format!(
            "credential secret `{}` key `{}`: no resolver",
            selector.name, selector.key
        ));
        for r in &self.0 {
            match r.resolve(selector, namespace).await {
                Err(e) if e.is_not_found() => last = e,
                other => return other,
            }
        }
        Err(last)
    }
}

/// A built store: its source, and its writer when it accepts writes.
#[derive(Debug, Clone)]
pub struct BuiltStore {
    /// Reads.
    pub source: Arc<dyn SecretSource>,
    /// Writes (rotation, push), when supported.
    pub writer: Option<Arc<dyn SecretWriter>>,
}

impl BuiltStore {
    /// A store that reads and writes through one object.
    pub fn writable<W: SecretWriter + 'static>(w: W) -> Self {
        let w: Arc<dyn SecretWriter> = Arc::new(w);
        Self {
            source: w.clone(),
            writer: Some(w),
        }
    }
    /// A read-only store.
    pub fn read_only<S: SecretSource + 'static>(s: S) -> Self {
        Self {
            source: Arc::new(s),
            writer: None,
        }
    }
}

/// A provider plug-in: builds the source of a store whose `spec.provider` names it.
///
/// # Contract
///
/// - [`provider`](Self::provider) is the key under `spec.provider` this factory handles
///   (`aws`, `gcpsm`, a user's own `acme-vault`...); one factory per name in a [`Registry`].
/// - [`validate`](Self::validate) is offline (no network, no credential lookup): it parses
///   the settings into the provider's own type with [`Store::provider_config`] (unknown
///   fields are errors) and returns every problem it finds, each located with
///   [`Store::provider_field`], never quoting a value. `--check` runs it.
/// - [`build`](Self::build) sends no request; the registry has validated the store first.
#[async_trait]
pub trait SourceFactory: Send + Sync {
    /// The key under `spec.provider` this factory handles (`aws`, `gcpsm`, ...).
    fn provider(&self) -> &'static str;
    /// Every problem of the store's settings that can be known offline.
    fn validate(&self, store: &Store) -> Vec<Error>;
    /// Builds the source. No network call is required here; `--check` builds stores.
    async fn build(&self, store: &Store, credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore>;
}

/// Provider factories by name, plus the credential resolver they use.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn SourceFactory>>,
    /// Event source factories by scheme (`gcp-pubsub`, `aws-sqs`).
    events: BTreeMap<&'static str, Arc<dyn crate::events::EventSourceFactory>>,
    /// Providers known but not compiled in: provider → the Cargo feature that adds it.
    features: BTreeMap<String, String>,
    credentials: Arc<dyn CredentialResolver>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.factories.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self {
            factories: BTreeMap::new(),
            events: BTreeMap::new(),
            features: BTreeMap::new(),
            credentials: Arc::new(EnvFileCredentials::default()),
        }
    }

    /// Adds (or replaces) a factory.
    pub fn register(&mut self, factory: Arc<dyn SourceFactory>) -> &mut Self {
        self.features.remove(factory.provider());
        self.factories.insert(factory.provider(), factory);
        self
    }

    /// Adds (or replaces) an event source factory.
    pub fn register_events(&mut self, factory: Arc<dyn crate::events::EventSourceFactory>) -> &mut Self {
        self.events.insert(factory.scheme(), factory);
        self
    }

    /// Event schemes registered (besides the webhooks a server handles itself).
    pub fn event_schemes(&self) -> Vec<&'static str> {
        self.events.keys().copied().collect()
    }

    /// Problems of a store's `secretsync.io/events` annotations that can be known offline.
    /// `served` are the schemes the caller handles itself (`doppler-webhook` on its HTTP
    /// server).
    pub fn validate_events(&self, store: &Store, served: &[&str]) -> Vec<Error> {
        use crate::events::{EVENTS_ANNOTATION, EventAddress};
        match EventAddress::of(store) {
            None => vec![],
            Some(Err(e)) => vec![e],
            Some(Ok(a)) => match self.events.get(a.scheme.as_str()) {
                Some(f) => f.validate(store, &a),
                None if served.contains(&a.scheme.as_str()) => vec![],
                None => {
                    let mut known: Vec<&str> = self.events.keys().copied().chain(served.iter().copied()).collect();
                    known.sort_unstable();
                    vec![Error::manifest(
                        store.origin.field(format!("metadata.annotations.{EVENTS_ANNOTATION}")),
                        format!(
                            "unknown event source `{}` (expected one of {})",
                            a.scheme,
                            if known.is_empty() {
                                "none in this build".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    )]
                }
            },
        }
    }

    /// Builds the event source a store's annotation names; `None` when it names none or a
    /// scheme this registry does not build (a webhook the caller serves).
    pub async fn build_events(&self, store: &Store) -> Option<Result<Arc<dyn crate::events::EventSource>>> {
        let address = match crate::events::EventAddress::of(store)? {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        let factory = self.events.get(address.scheme.as_str())?;
        if let Some(e) = factory.validate(store, &address).into_iter().next() {
            return Some(Err(e));
        }
        Some(
            factory
                .build(store, &address, self.credentials.clone())
                .await
                .map_err(|e| e.context(format!("events of {} ({})", store.id, store.origin))),
        )
    }

    /// The credential resolver stores are built with.
    pub fn credentials(&self) -> Arc<dyn CredentialResolver> {
        self.credentials.clone()
    }

    /// Records that `provider` exists but is not compiled into this build: a store using it
    /// is the error "provider <provider> needs feature `<feature>`".
    pub fn needs_feature(&mut self, provider: &str, feature: &str) -> &mut Self {
        if !self.factories.contains_key(provider) {
            self.features.insert(provider.to_string(), feature.to_string());
        }
        self
    }

    /// Uses another credential resolver (the Kubernetes one in a cluster).
    pub fn with_credentials(mut self, credentials: Arc<dyn CredentialResolver>) -> Self {
        self.credentials = credentials;
        self
    }

    /// Providers registered.
    pub fn providers(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// The factory for a store's provider, or why there is none.
    fn factory(&self, store: &Store) -> Result<&Arc<dyn SourceFactory>> {
        let provider = store.spec.provider.name();
        if let Some(f) = self.factories.get(provider) {
            return Ok(f);
        }
        let at = store.origin.field(format!("spec.provider.{provider}"));
        let message = if let Some(feature) = self.features.get(provider) {
            format!("provider {provider} needs feature `{feature}` (build secretsync with --features {feature})")
        } else if ESO_PROVIDERS.contains(&provider) {
            format!("{NOT_SUPPORTED_PREFIX}spec.provider.{provider} (provider `{provider}`)")
        } else {
            let known: Vec<&str> = self.factories.keys().copied().collect();
            format!("unknown provider `{provider}` (expected one of {})", known.join(", "))
        };
        Err(Error::manifest(at, message))
    }

    /// Every problem of a store's provider settings that can be known offline: a provider
    /// not compiled in, unknown or invalid fields (the provider's own validation).
    pub fn validate(&self, store: &Store) -> Vec<Error> {
        match self.factory(store) {
            Ok(f) => f.validate(store),
            Err(e) => vec![e],
        }
    }

    /// The first problem [`validate`](Self::validate) finds, if any.
    pub fn check(&self, store: &Store) -> Result<()> {
        match self.validate(store).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Builds one store (after [`check`](Self::check)).
    pub async fn build(&self, store: &Store) -> Result<BuiltStore> {
        let factory = self.factory(store)?;
        if let Some(e) = factory.validate(store).into_iter().next() {
            return Err(e);
        }
        factory
            .build(store, self.credentials.clone())
            .await
            .map_err(|e| match e {
                e @ Error::Manifest { .. } => e,
                e => e.context(format!("{} ({})", store.id, store.origin)),
            })
    }

    /// Builds every store of the manifests; a store that fails is reported and left out.
    pub async fn build_all(&self, manifests: &Manifests) -> (BTreeMap<StoreId, BuiltStore>, Vec<Error>) {
        let mut built = BTreeMap::new();
        let mut errors = vec![];
        for store in &manifests.stores {
            match self.build(store).await {
                Ok(b) => {
                    built.insert(store.id.clone(), b);
                }
                Err(e) => errors.push(e),
            }
        }
        (built, errors)
    }
}
