#![doc = include_str!("../README.md")]

mod client;
mod config;
mod error;
// `factory.rs` implements the plug-in API announced for secretsync-core
// (`SourceFactory::validate`, `Store::provider_config`); it joins the build once that API is on
// main: `mod factory; pub use factory::PulumiFactory;`.
mod path;
mod source;
mod yaml_edit;

pub use config::{
    BACKEND_URL_ENV, ConfigProblem, DEFAULT_API_URL, DEFAULT_FRESHNESS, DEFAULT_MAX_AGE, DEFAULT_OPEN_DURATION,
    EscAccessToken, EscAuth, EscStoreConfig, PulumiBuilder, TOKEN_ENV,
};
pub use path::PropertyPath;
pub use source::EscSource;
