//! [`GcpFactory`]: builds a [`GcpSecretManager`] from a store's `spec.provider.gcpsm`.

use std::sync::Arc;

use async_trait::async_trait;
use secretsync_core::manifest::Store;
use secretsync_core::registry::{BuiltStore, CredentialResolver, SourceFactory};
use secretsync_core::{Error, Result};

use crate::PROVIDER;
use crate::config::{GcpSecretManagerBuilder, VersionSelectionPolicy};
use crate::manifest::GcpProvider;

/// The `gcpsm` provider: register it in a `secretsync_core::registry::Registry`.
///
/// Settings come from the store, then from the environment ([`GcpSecretManagerBuilder::from_env`]):
/// `projectID` (else `GOOGLE_CLOUD_PROJECT`, else the service-account key's `project_id`),
/// `location`, `endpoint` (else `SECRETMANAGER_EMULATOR_HOST`), `secretVersionSelectionPolicy`,
/// and `auth`:
///
/// - `auth.secretRef.secretAccessKeySecretRef`: a service-account key JSON, read through the
///   registry's credential resolver;
/// - `auth.workloadIdentity`, or no `auth`: Application Default Credentials. On GKE that is
///   the pod's own Workload Identity (its Kubernetes service account bound to a Google
///   service account); the `serviceAccountRef` token exchange ESO performs is not done;
/// - `auth.workloadIdentityFederation`: not supported yet (an error).
///
/// With a plain `http://` endpoint (an emulator) no credentials are read or sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcpFactory;

#[async_trait]
impl SourceFactory for GcpFactory {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn validate(&self, store: &Store) -> Vec<Error> {
        match store.provider_config::<GcpProvider>() {
            Ok(spec) => validate(store, &spec),
            Err(e) => vec![e],
        }
    }

    async fn build(&self, store: &Store, credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let spec: GcpProvider = store.provider_config()?;
        if let Some(e) = validate(store, &spec).into_iter().next() {
            return Err(e);
        }
        let spec = &spec;
        let at = |f: &str| store.provider_field(f);
        let mut b = GcpSecretManagerBuilder::from_env();
        if let Some(p) = spec.project_id.as_deref().filter(|p| !p.is_empty()) {
            b = b.with_project_id(p);
        }
        if let Some(l) = spec.location.as_deref().filter(|l| !l.is_empty()) {
            b = b.with_location(l);
        }
        if let Some(e) = spec.endpoint.as_deref().filter(|e| !e.is_empty()) {
            b = b.with_endpoint(e);
        }
        if let Some(p) = spec
            .secret_version_selection_policy
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            let policy = p
                .parse()
                .map_err(|e: Error| Error::manifest(at("secretVersionSelectionPolicy"), e.to_string()))?;
            b = b.with_version_selection_policy(policy);
        }
        let plain_http = b.effective_endpoint().starts_with("http://");
        if let Some(auth) = &spec.auth {
            // An emulator gets no credentials, so do not require them to exist.
            if let Some(r) = &auth.secret_ref
                && !plain_http
            {
                let sel = &r.secret_access_key_secret_ref;
                let key = credentials
                    .resolve(sel, store.id.namespace.as_deref())
                    .await
                    .map_err(|e| e.context(format!("{} auth.secretRef", store.id)))?;
                b = b.with_service_account_key(key);
            }
        }
        let source = b.build().map_err(|e| match e {
            Error::InvalidInput { message } => Error::manifest(store.origin.field("spec.provider.gcpsm"), message),
            e => e,
        })?;
        Ok(BuiltStore::writable(source))
    }
}

/// Offline checks of `spec.provider.gcpsm`: every problem, each naming its field.
fn validate(store: &Store, spec: &GcpProvider) -> Vec<Error> {
    let mut errors = vec![];
    if let Some(auth) = &spec.auth {
        if auth.workload_identity_federation.is_some() {
            errors.push(Error::manifest(
                store.provider_field("auth.workloadIdentityFederation"),
                "not supported yet: spec.provider.gcpsm.auth.workloadIdentityFederation",
            ));
        }
        if auth.secret_ref.is_some() && auth.workload_identity.is_some() {
            errors.push(Error::manifest(
                store.provider_field("auth"),
                "set one of secretRef and workloadIdentity, not both",
            ));
        }
    }
    if let Some(p) = spec
        .secret_version_selection_policy
        .as_deref()
        .filter(|p| !p.is_empty())
        && p.parse::<VersionSelectionPolicy>().is_err()
    {
        errors.push(Error::manifest(
            store.provider_field("secretVersionSelectionPolicy"),
            format!("unknown policy `{p}` (LatestOrFail, LatestOrFetch)"),
        ));
    }
    if let Some(url) = spec.endpoint.as_deref().filter(|e| !e.is_empty())
        && let Some(problem) = secretsync_core::net::endpoint_problem(url)
    {
        errors.push(Error::manifest(store.provider_field("endpoint"), problem));
    }
    errors
}
