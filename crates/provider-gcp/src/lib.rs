#![doc = include_str!("../README.md")]

mod client;
pub mod config;
mod error;
mod factory;
pub mod manifest;

pub use client::GcpSecretManager;
pub use config::{
    DEFAULT_ENDPOINT, DEFAULT_METADATA_CALLS_PER_MINUTE, EMULATOR_HOST_ENV, GcpCredentials, GcpSecretManagerBuilder,
    PROJECT_ENV, VersionSelectionPolicy,
};
pub use factory::GcpFactory;

/// The provider's name, the key under `spec.provider`.
pub const PROVIDER: &str = "gcpsm";
