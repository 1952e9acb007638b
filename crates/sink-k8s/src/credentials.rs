//! [`KubeCredentials`]: stores' `secretRef`s read from Kubernetes Secrets.

use std::fmt;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use secretsync_core::manifest::SecretKeySelector;
use secretsync_core::registry::CredentialResolver;
use secretsync_core::{Error, Result, SecretValue};

use crate::error::from_kube;

/// Resolves a `SecretKeySelector` by reading the key of a Secret in the cluster: in the
/// selector's namespace, else the store's (the `namespace` argument), else the client's
/// default namespace.
#[derive(Clone)]
pub struct KubeCredentials {
    client: kube::Client,
}

impl fmt::Debug for KubeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeCredentials").finish_non_exhaustive()
    }
}

impl KubeCredentials {
    /// A resolver using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl CredentialResolver for KubeCredentials {
    async fn resolve(&self, selector: &SecretKeySelector, namespace: Option<&str>) -> Result<SecretValue> {
        let ns = selector
            .namespace
            .as_deref()
            .or(namespace)
            .unwrap_or(self.client.default_namespace())
            .to_string();
        let what = format!("credential Secret {ns}/{}", selector.name);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let secret = api
            .get_opt(&selector.name)
            .await
            .map_err(|e| from_kube(e, &format!("reading {what}")))?;
        let Some(mut secret) = secret else {
            return Err(Error::not_found(what));
        };
        let value = secret.data.as_mut().and_then(|d| d.remove(&selector.key));
        match value {
            Some(bytes) => Ok(SecretValue::new(bytes.0)),
            None => Err(Error::not_found(format!("{what} has no key `{}`", selector.key))),
        }
    }
}
