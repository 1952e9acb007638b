#![doc = include_str!("../README.md")]

mod client;
mod config;
mod error;
pub mod events;
mod factory;
pub mod manifest;

pub use client::{AwsSecretsManager, BATCH_LIMIT, LIST_PAGE_SIZE};
pub use config::{
    AwsSecretsManagerBuilder, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_INITIAL_BACKOFF, DEFAULT_LISTING_REUSE,
    DEFAULT_MAX_ATTEMPTS, SESSION_NAME,
};
pub use events::{SQS_SCHEME, SqsEvents, SqsEventsBuilder, SqsEventsFactory};
pub use factory::{AwsFactory, builder_for_store};
