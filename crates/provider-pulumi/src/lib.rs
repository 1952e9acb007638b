#![doc = include_str!("../README.md")]

mod client;
mod config;
mod error;
mod factory;
mod path;
mod source;
mod yaml_edit;

pub use config::{
    BACKEND_URL_ENV, ConfigProblem, DEFAULT_API_URL, DEFAULT_FRESHNESS, DEFAULT_MAX_AGE, DEFAULT_OPEN_DURATION,
    EscAccessToken, EscAuth, EscStoreConfig, PulumiBuilder, TOKEN_ENV,
};
pub use factory::PulumiFactory;
pub use path::PropertyPath;
pub use source::EscSource;
