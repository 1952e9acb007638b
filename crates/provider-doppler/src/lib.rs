#![doc = include_str!("../README.md")]

mod client;
mod config;
mod error;
mod factory;
pub mod manifest;
mod source;
mod transform;

pub use config::{
    API_HOST_ENV, CONFIG_ENV, DEFAULT_API_HOST, DEFAULT_FRESHNESS, DopplerBuilder, PROJECT_ENV, TOKEN_ENV,
};
pub use factory::DopplerFactory;
pub use source::DopplerSource;
pub use transform::NameTransformer;
