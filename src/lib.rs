#![doc = include_str!("../README.md")]
//!
//! ---
//!
//! Moves secrets from where they are kept (AWS Secrets Manager, GCP Secret Manager,
//! Doppler, a local file) to where they are used (Kubernetes Secrets and ConfigMaps, `.env`
//! files, folders, a child process's environment), keeps them in sync, and rotates them.
//! It reads External Secrets Operator manifests unchanged.
//!
//! This is the facade: it re-exports [`secretsync_core`] and, behind features, the providers
//! (`aws`, `gcp`, `doppler`) and the Kubernetes sink (`k8s`); `full` enables them all.
//!
//! ```no_run
//! use secretsync::prelude::*;
//!
//! # async fn demo() -> Result<(), secretsync::Error> {
//! let manifests = secretsync::manifest::load_paths(&["examples/manifests/quickstart.yaml"]).into_result()?;
//! let (stores, _errors) = secretsync::registry().build_all(&manifests).await;
//! let engine = Engine::new(stores, std::sync::Arc::new(FolderSink::new("out")));
//! let report = engine.run(&manifests, &CycleOptions::default()).await;
//! assert!(report.all_synced());
//! # Ok(()) }
//! ```

pub mod app;

pub use secretsync_core::*;

#[cfg(feature = "aws")]
pub use secretsync_aws as aws;
#[cfg(feature = "doppler")]
pub use secretsync_doppler as doppler;
#[cfg(feature = "gcp")]
pub use secretsync_gcp as gcp;
#[cfg(feature = "k8s")]
pub use secretsync_k8s as k8s;
#[cfg(feature = "k8s")]
pub use secretsync_operator as operator;
#[cfg(feature = "pulumi")]
pub use secretsync_pulumi as pulumi;

/// Registers a first-party provider when its feature is compiled in, and otherwise records
/// the feature that adds it (so a store using it says which feature to enable).
macro_rules! provider {
    ($registry:ident, $feature:literal, $name:literal, $factory:expr) => {
        #[cfg(feature = $feature)]
        $registry.register(std::sync::Arc::new($factory));
        #[cfg(not(feature = $feature))]
        $registry.needs_feature($name, $feature);
    };
}

/// Providers added by the program with [`register_provider`].
static EXTRA_PROVIDERS: std::sync::RwLock<Vec<std::sync::Arc<dyn registry::SourceFactory>>> =
    std::sync::RwLock::new(Vec::new());

/// Adds a provider to every [`registry()`] this process builds from now on: how a program
/// brings its own provider (a plug-in outside this workspace) to the `secretsync` command
/// line (`app::cli`) and everything else that builds stores through [`registry()`]. A
/// provider of the same name as a built-in one replaces it. See
/// `examples/custom-provider.rs`.
pub fn register_provider(factory: std::sync::Arc<dyn registry::SourceFactory>) {
    EXTRA_PROVIDERS.write().unwrap_or_else(|e| e.into_inner()).push(factory);
}

/// A registry with every provider compiled into this build: `fake` and `file` always,
/// `aws`, `gcpsm`, `doppler` and `pulumi` with their features. Add your own with
/// [`Registry::register`](registry::Registry::register).
pub fn registry() -> registry::Registry {
    let mut r = registry::Registry::with_builtin();
    provider!(r, "aws", "aws", secretsync_aws::AwsFactory);
    #[cfg(feature = "aws")]
    r.register_events(std::sync::Arc::new(secretsync_aws::SqsEventsFactory));
    provider!(r, "gcp", "gcpsm", secretsync_gcp::GcpFactory);
    #[cfg(feature = "gcp")]
    r.register_events(std::sync::Arc::new(secretsync_gcp::PubSubEventsFactory));
    provider!(r, "doppler", "doppler", secretsync_doppler::DopplerFactory);
    provider!(r, "pulumi", "pulumi", secretsync_pulumi::PulumiFactory);
    for f in EXTRA_PROVIDERS.read().unwrap_or_else(|e| e.into_inner()).iter() {
        r.register(f.clone());
    }
    r
}

/// The names most programs need.
pub mod prelude {
    pub use secretsync_core::engine::{CycleOptions, CycleReport, Engine, Scheduler, SyncStatus};
    pub use secretsync_core::manifest::{ExternalSecret, Manifests, load_paths, load_str};
    pub use secretsync_core::registry::{BuiltStore, Registry};
    pub use secretsync_core::sinks::{DotenvSink, FolderSink, StdoutSink};
    pub use secretsync_core::{
        Error, RemoteKey, Restarter, SecretMap, SecretSink, SecretSource, SecretSourceExt, SecretValue, SecretWriter,
        TargetRef,
    };
}
