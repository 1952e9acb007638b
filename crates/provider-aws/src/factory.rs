//! [`AwsFactory`]: builds the source of a store with `spec.provider.aws`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secretsync_core::Error;
use secretsync_core::Result;
use secretsync_core::manifest::{AwsProvider, ProviderSpec, Store};
use secretsync_core::registry::{BuiltStore, CredentialResolver, SourceFactory};

use crate::config::AwsSecretsManagerBuilder;

/// Environment variables of IRSA, set in the pod by the EKS pod identity webhook.
const ENV_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
const ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";

/// The `aws` provider for the registry: ESO's `spec.provider.aws`.
///
/// | field | |
/// |---|---|
/// | `service` | `SecretsManager` only |
/// | `region` | else `AWS_REGION` / profile |
/// | `auth.secretRef` | access key id, secret access key, session token, through the [`CredentialResolver`] |
/// | `auth.jwt` | web identity from `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (IRSA in the pod running secretsync) |
/// | none | the standard AWS credential chain |
/// | `role`, `additionalRoles`, `externalID`, `sessionTags` | AssumeRole (chained: additional roles first, then `role`) |
/// | `transitiveTagKeys` | not supported yet |
/// | `prefix` | added to every key |
/// | `endpoint` (secretsync) | Secrets Manager and STS endpoint, e.g. an emulator |
/// | `secretsManager` | accepted; only used by deletes, which secretsync does not do |
/// | `spec.retrySettings` | attempts (`maxRetries` + 1) and first backoff (`retryInterval`) |
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsFactory;

#[async_trait]
impl SourceFactory for AwsFactory {
    fn provider(&self) -> &'static str {
        "aws"
    }

    async fn build(&self, store: &Store, credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let builder = builder_for_store(store, credentials.as_ref()).await?;
        Ok(BuiltStore::writable(builder.build().await?))
    }
}

fn not_supported(field: &str, why: &str) -> Error {
    Error::not_supported(format!("spec.provider.aws.{field} ({why})"))
}

/// The builder a store's settings describe, on top of [`AwsSecretsManagerBuilder::from_env`].
pub async fn builder_for_store(
    store: &Store,
    credentials: &dyn CredentialResolver,
) -> Result<AwsSecretsManagerBuilder> {
    let ProviderSpec::Aws(spec) = &store.spec.provider else {
        return Err(Error::invalid(format!("store {} is not an aws store", store.id)));
    };
    let AwsProvider {
        service,
        region,
        role,
        additional_roles,
        external_id,
        session_tags,
        transitive_tag_keys,
        prefix,
        auth,
        secrets_manager: _,
        endpoint,
    } = spec;
    if service != "SecretsManager" {
        return Err(not_supported(
            "service",
            &format!("service `{service}`; only SecretsManager"),
        ));
    }
    if !transitive_tag_keys.is_empty() {
        return Err(not_supported("transitiveTagKeys", "not supported yet"));
    }
    if role.is_none() && (!additional_roles.is_empty() || external_id.is_some() || !session_tags.is_empty()) {
        let field = if !additional_roles.is_empty() {
            "additionalRoles"
        } else if external_id.is_some() {
            "externalID"
        } else {
            "sessionTags"
        };
        return Err(Error::invalid(format!(
            "spec.provider.aws.{field} needs spec.provider.aws.role"
        )));
    }

    let mut b = AwsSecretsManagerBuilder::from_env();
    if let Some(r) = region {
        b = b.with_region(r.clone());
    }
    if let Some(url) = endpoint {
        b = b.with_endpoint(url.clone()).with_sts_endpoint(url.clone());
    }
    if let Some(p) = prefix {
        b = b.with_prefix(p.clone());
    }
    if let Some(r) = &store.spec.retry_settings {
        let attempts = r
            .max_retries
            .map(|n| n.saturating_add(1))
            .unwrap_or(crate::config::DEFAULT_MAX_ATTEMPTS);
        let backoff = match &r.retry_interval {
            Some(iv) => secretsync_core::duration::parse_go_duration(iv)
                .map_err(|e| Error::invalid(format!("spec.retrySettings.retryInterval: {e}")))?,
            None => crate::config::DEFAULT_INITIAL_BACKOFF,
        };
        b = b.with_retry(attempts, backoff.max(Duration::from_millis(1)));
    }

    let namespace = store.id.namespace.as_deref();
    match auth {
        Some(a) if a.secret_ref.is_some() && a.jwt.is_some() => {
            return Err(Error::invalid(
                "spec.provider.aws.auth: set either secretRef or jwt, not both",
            ));
        }
        Some(a) if a.secret_ref.is_some() => {
            let r = a.secret_ref.as_ref().expect("checked");
            let id = credentials.resolve(&r.access_key_id, namespace).await?;
            let id = id
                .expose_str()
                .map(|s| s.trim().to_string())
                .ok_or_else(|| Error::invalid("spec.provider.aws.auth.secretRef.accessKeyIDSecretRef: not UTF-8"))?;
            let secret = credentials.resolve(&r.secret_access_key, namespace).await?;
            b = match &r.session_token {
                Some(t) => {
                    let token = credentials.resolve(t, namespace).await?;
                    b.with_session_credentials(id, secret, token)
                }
                None => b.with_credentials(id, secret),
            };
        }
        Some(a) if a.jwt.is_some() => {
            let sa = &a.jwt.as_ref().expect("checked").service_account_ref;
            let token_file = std::env::var_os(ENV_TOKEN_FILE).filter(|v| !v.is_empty());
            let role_arn = std::env::var(ENV_ROLE_ARN).ok().filter(|v| !v.is_empty());
            let (Some(token_file), Some(role_arn)) = (token_file, role_arn) else {
                return Err(not_supported(
                    "auth.jwt",
                    &format!(
                        "minting a token for service account {}/{} is not supported yet; run secretsync with IRSA \
                         ({ENV_TOKEN_FILE} and {ENV_ROLE_ARN} set) to use web identity",
                        sa.namespace.as_deref().or(namespace).unwrap_or("default"),
                        sa.name
                    ),
                ));
            };
            b = b.with_web_identity(token_file, role_arn);
        }
        _ => {}
    }
    for r in additional_roles {
        b = b.with_role(r.clone());
    }
    if let Some(r) = role {
        b = b.with_role(r.clone());
        if let Some(id) = external_id {
            b = b.with_external_id(id.clone());
        }
        for t in session_tags {
            b = b.with_session_tag(t.key.clone(), t.value.clone());
        }
    }
    Ok(b)
}
