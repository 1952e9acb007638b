//! [`DopplerFactory`]: builds a [`DopplerSource`](crate::DopplerSource) from an ESO store.

use std::sync::Arc;

use async_trait::async_trait;
use secretsync_core::manifest::Store;
use secretsync_core::registry::{BuiltStore, CredentialResolver, SourceFactory};
use secretsync_core::{Error, Result, SecretValue};

use crate::config::{API_HOST_ENV, CONFIG_ENV, DopplerBuilder, PROJECT_ENV, TOKEN_ENV};
use crate::manifest::DopplerProvider;

/// Builds Doppler stores (`spec.provider.doppler`).
///
/// - token: `auth.secretRef.dopplerToken` through the [`CredentialResolver`] (in a cluster
///   the referenced Secret; outside one, `EnvFileCredentials`' environment variable or file),
///   else `DOPPLER_TOKEN`;
/// - project and config: the store's, else `DOPPLER_PROJECT` / `DOPPLER_CONFIG` — except
///   with a service token (`dp.st.…`), which implies both, so the environment is not used;
/// - API host: the store's `endpoint` (a secretsync addition), else `DOPPLER_API_HOST`,
///   else `https://api.doppler.com`;
/// - `nameTransformer` as ESO; `format` other than `json` is not supported.
///
/// No request is sent while building.
#[derive(Debug, Clone, Copy, Default)]
pub struct DopplerFactory;

#[async_trait]
impl SourceFactory for DopplerFactory {
    fn provider(&self) -> &'static str {
        "doppler"
    }

    fn validate(&self, store: &Store) -> Vec<Error> {
        match store.provider_config::<DopplerProvider>() {
            Ok(spec) => validate(store, &spec),
            Err(e) => vec![e],
        }
    }

    async fn build(&self, store: &Store, credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let spec: DopplerProvider = store.provider_config()?;
        if let Some(e) = validate(store, &spec).into_iter().next() {
            return Err(e);
        }
        let spec = &spec;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let token: SecretValue = match &spec.auth {
            Some(auth) => credentials
                .resolve(&auth.secret_ref.doppler_token, store.id.namespace.as_deref())
                .await
                .map_err(|e| e.context("spec.provider.doppler.auth.secretRef.dopplerToken"))?,
            None => env(TOKEN_ENV)
                .map(|t| SecretValue::from(t.trim().to_string()))
                .ok_or_else(|| Error::Unauthenticated {
                    what: format!("{}: no spec.provider.doppler.auth and {TOKEN_ENV} is not set", store.id),
                })?,
        };
        let mut b = DopplerBuilder::new().with_token(token);
        let service = b.is_service_token();
        let pick = |own: &Option<String>, var: &str| own.clone().or_else(|| if service { None } else { env(var) });
        if let Some(p) = pick(&spec.project, PROJECT_ENV) {
            b = b.with_project(p);
        }
        if let Some(c) = pick(&spec.config, CONFIG_ENV) {
            b = b.with_config(c);
        }
        if let Some(host) = spec.endpoint.clone().or_else(|| env(API_HOST_ENV)) {
            b = b.with_api_host(host);
        }
        if let Some(t) = &spec.name_transformer {
            b = b.with_name_transformer(t.clone());
        }
        if let Some(f) = &spec.format {
            b = b.with_format(f.clone());
        }
        Ok(BuiltStore::writable(b.build()?))
    }
}

/// Offline checks of `spec.provider.doppler`: every problem, each naming its field.
fn validate(store: &Store, spec: &DopplerProvider) -> Vec<Error> {
    let mut errors = vec![];
    // A bare host means https, as with DOPPLER_API_HOST.
    if let Some(url) = spec.endpoint.as_deref().filter(|e| !e.is_empty())
        && let Some(problem) = secretsync_core::net::endpoint_problem(&if url.contains("://") {
            url.to_string()
        } else {
            format!("https://{url}")
        })
    {
        errors.push(Error::manifest(store.provider_field("endpoint"), problem));
    }
    if let Some(t) = spec.name_transformer.as_deref().filter(|t| !t.is_empty())
        && let Err(e) = crate::transform::NameTransformer::parse(t)
    {
        errors.push(Error::manifest(store.provider_field("nameTransformer"), e.to_string()));
    }
    if let Some(f) = spec.format.as_deref().filter(|f| !f.is_empty() && *f != "json") {
        errors.push(Error::manifest(
            store.provider_field("format"),
            format!(
                "not supported yet: spec.provider.doppler.format (`{f}`, ESO's DOPPLER_SECRETS_FILE download; only json)"
            ),
        ));
    }
    errors
}
