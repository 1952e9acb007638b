//! Building sources from stores: provider factories and store credentials.
//!
//! Core registers the `fake` and `file` providers; the facade registers `aws`, `gcpsm` and
//! `doppler` when their features are compiled in. A store whose provider is not registered
//! is a clear error naming the feature to enable.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::manifest::{Manifests, SecretKeySelector, Store, StoreId};
use crate::source::{SecretSource, SecretWriter};
use crate::value::SecretValue;

/// Resolves a `SecretKeySelector` (a store's credentials) to a value.
#[async_trait]
pub trait CredentialResolver: Send + Sync + fmt::Debug {
    /// The value of `selector`; `namespace` is used when the selector has none.
    async fn resolve(&self, selector: &SecretKeySelector, namespace: Option<&str>) -> Result<SecretValue>;
}

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

/// Builds a source from a store of one provider.
#[async_trait]
pub trait SourceFactory: Send + Sync {
    /// The key under `spec.provider` this factory handles (`aws`, `gcpsm`, ...).
    fn provider(&self) -> &'static str;
    /// Builds the source. No network call is required here; `--check` builds stores.
    async fn build(&self, store: &Store, credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore>;
}

/// The Cargo feature of the facade that compiles a provider in.
pub fn feature_of(provider: &str) -> &str {
    match provider {
        "gcpsm" => "gcp",
        other => other,
    }
}

/// Provider factories by name, plus the credential resolver they use.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn SourceFactory>>,
    credentials: Arc<dyn CredentialResolver>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.factories.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::with_builtin()
    }
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self {
            factories: BTreeMap::new(),
            credentials: Arc::new(EnvFileCredentials::default()),
        }
    }

    /// The built-in providers: `fake` and `file`.
    pub fn with_builtin() -> Self {
        let mut r = Self::empty();
        r.register(Arc::new(crate::sources::FakeFactory));
        r.register(Arc::new(crate::sources::FileFactory));
        r
    }

    /// Adds (or replaces) a factory.
    pub fn register(&mut self, factory: Arc<dyn SourceFactory>) -> &mut Self {
        self.factories.insert(factory.provider(), factory);
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

    /// Checks, without building, that a store's provider is compiled in.
    pub fn check(&self, store: &Store) -> Result<()> {
        let provider = store.spec.provider.name();
        if self.factories.contains_key(provider) {
            return Ok(());
        }
        Err(Error::manifest(
            store.origin.field(format!("spec.provider.{provider}")),
            format!(
                "provider {provider} needs feature `{}` (build secretsync with --features {})",
                feature_of(provider),
                feature_of(provider)
            ),
        ))
    }

    /// Builds one store.
    pub async fn build(&self, store: &Store) -> Result<BuiltStore> {
        self.check(store)?;
        let factory = &self.factories[store.spec.provider.name()];
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
