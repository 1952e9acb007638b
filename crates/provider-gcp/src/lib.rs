#![doc = include_str!("../README.md")]

mod client;
pub mod config;
mod error;
pub mod events;
mod factory;
pub mod manifest;

pub use client::GcpSecretManager;
pub use config::{
    DEFAULT_ENDPOINT, DEFAULT_METADATA_CALLS_PER_MINUTE, EMULATOR_HOST_ENV, GcpCredentials, GcpSecretManagerBuilder,
    PROJECT_ENV, VersionSelectionPolicy,
};
pub use events::{PUBSUB_EMULATOR_HOST_ENV, PUBSUB_SCHEME, PubSubEvents, PubSubEventsBuilder, PubSubEventsFactory};
pub use factory::GcpFactory;

/// The provider's name, the key under `spec.provider`.
pub const PROVIDER: &str = "gcpsm";
