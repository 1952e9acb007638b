//! [`PulumiFactory`]: builds an [`EscSource`](crate::EscSource) from an ESO store.
//!

use std::sync::Arc;

use async_trait::async_trait;
use secretsync_core::manifest::Store;
use secretsync_core::registry::{BuiltStore, CredentialResolver, SourceFactory};
use secretsync_core::{Error, Result, SecretValue};

use crate::config::{BACKEND_URL_ENV, ConfigProblem, EscStoreConfig, PulumiBuilder, TOKEN_ENV, esc_url_of_backend};

/// Builds Pulumi ESC stores (`spec.provider.pulumi`).
///
/// - token: `auth.accessToken.secretRef` (or the deprecated `accessToken.secretRef`) through
///   the [`CredentialResolver`] (in a cluster the referenced Secret; outside one,
///   `EnvFileCredentials`' environment variable or file), else `PULUMI_ACCESS_TOKEN`;
/// - API: the store's `apiUrl`, else `PULUMI_BACKEND_URL` + `/api/esc`, else
///   `https://api.pulumi.com/api/esc`;
/// - `auth.oidcConfig` is a clear "not supported yet".
///
/// No request is sent while validating or building.
#[derive(Debug, Clone, Copy, Default)]
pub struct PulumiFactory;

fn located(store: &Store, p: &ConfigProblem) -> Error {
    let at = store.provider_field(&p.field);
    if p.not_supported {
        Error::manifest(
            at,
            format!("not supported yet: spec.provider.pulumi.{} ({})", p.field, p.message),
        )
    } else {
        Error::manifest(at, p.message.clone())
    }
}

#[async_trait]
impl SourceFactory for PulumiFactory {
    fn provider(&self) -> &'static str {
        "pulumi"
    }

    fn validate(&self, store: &Store) -> Vec<Error> {
        match store.provider_config::<EscStoreConfig>() {
            Err(e) => vec![e],
            Ok(c) => c.problems().iter().map(|p| located(store, p)).collect(),
        }
    }

    async fn build(&self, store: &Store, credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let c: EscStoreConfig = store.provider_config()?;
        if let Some(p) = c.problems().first() {
            return Err(located(store, p));
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let token: SecretValue = match c.token_ref() {
            Some((field, selector)) => credentials
                .resolve(selector, store.id.namespace.as_deref())
                .await
                .map_err(|e| e.context(format!("spec.provider.pulumi.{field}")))?,
            None => env(TOKEN_ENV)
                .map(|t| SecretValue::from(t.trim().to_string()))
                .ok_or_else(|| Error::Unauthenticated {
                    what: format!(
                        "{}: no spec.provider.pulumi.auth.accessToken and {TOKEN_ENV} is not set",
                        store.id
                    ),
                })?,
        };
        let api = c
            .api_url
            .clone()
            .or_else(|| env(BACKEND_URL_ENV).map(|b| esc_url_of_backend(&b)));
        let mut b = PulumiBuilder::new()
            .with_token(token)
            .with_organization(&c.organization)
            .with_project(&c.project)
            .with_environment(&c.environment);
        if let Some(url) = api {
            b = b.with_api_url(url);
        }
        Ok(BuiltStore::writable(b.build()?))
    }
}
