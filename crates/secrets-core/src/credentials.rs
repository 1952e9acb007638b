//! What resolves a store's `secretRef` (a `SecretKeySelector`) to a value: the environment
//! and files out of a cluster ([`crate::registry::EnvFileCredentials`]), the cluster's Secrets
//! in one. Provider factories and event sources both take one.

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::manifest::SecretKeySelector;
use crate::value::SecretValue;

/// Resolves a `SecretKeySelector` (a store's credentials) to a value.
#[async_trait]
pub trait CredentialResolver: Send + Sync + fmt::Debug {
    /// The value of `selector`; `namespace` is used when the selector has none.
    async fn resolve(&self, selector: &SecretKeySelector, namespace: Option<&str>) -> Result<SecretValue>;
}
