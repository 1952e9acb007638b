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
#[cfg(feature = "pulumi")]
pub use secretsync_pulumi as pulumi;

#[allow(unused_imports)]
use std::sync::Arc;

/// A registry with every provider compiled into this build: `fake` and `file` always,
/// `aws`, `gcpsm` and `doppler` with their features.
pub fn registry() -> registry::Registry {
    #[allow(unused_mut)]
    let mut r = registry::Registry::with_builtin();
    #[cfg(feature = "aws")]
    r.register(Arc::new(secretsync_aws::AwsFactory));
    #[cfg(feature = "gcp")]
    r.register(Arc::new(secretsync_gcp::GcpFactory));
    #[cfg(feature = "doppler")]
    r.register(Arc::new(secretsync_doppler::DopplerFactory));
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
