#![doc = include_str!("../README.md")]

pub mod backoff;
pub mod credentials;
pub mod duration;
pub mod engine;
pub mod error;
pub mod events;
pub mod files;
pub mod fingerprint;
pub mod format;
pub mod generators;
pub mod layers;
pub mod manifest;
pub mod net;
pub mod push;
pub mod redact;
pub mod registry;
pub mod rotation;
pub mod rules;
pub mod sink;
pub mod sinks;
pub mod source;
pub mod sources;
pub mod template;
pub mod transform;
pub mod value;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use error::{Error, Location, Result, ResultExt};
pub use fingerprint::{Fingerprint, FingerprintKey};
pub use sink::{
    ApplyOutcome, Compared, ConsumerRef, CreationPolicy, DeletionPolicy, DesiredTarget, OwnerRef, RestartRequest,
    Restarter, SecretSink, SinkCapabilities, TargetKind, TargetRef, TargetState,
};
pub use source::{
    CallStats, ChangeToken, Fetched, FindQuery, RemoteDescription, RemoteKey, SecretSource, SecretSourceExt,
    SecretWriter, SourceCapabilities, VersionInfo, WriteOutcome, WriteRequest,
};
pub use value::{SecretMap, SecretValue};
