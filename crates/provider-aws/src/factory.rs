//! [`AwsFactory`]: builds the source of a store with `spec.provider.aws`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secretsync_core::Error;
use secretsync_core::Result;
use secretsync_core::manifest::Store;
use secretsync_core::registry::{BuiltStore, CredentialResolver, SourceFactory};

use crate::config::AwsSecretsManagerBuilder;
use crate::manifest::AwsProvider;

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

    fn validate(&self, store: &Store) -> Vec<Error> {
        match store.provider_config::<AwsProvider>() {
            Ok(spec) => validate(store, &spec),
            Err(e) => vec![e],
        }
    }

    async fn build(&self, store: &Store, credentials: Arc<dyn CredentialResolver>) -> Result<BuiltStore> {
        let builder = builder_for_store(store, credentials.as_ref()).await?;
        Ok(BuiltStore::writable(builder.build().await?))
    }
}

/// NotSupported (permanent, not a typo to fix), in the store's document.
fn not_supported(store: &Store, field: &str, why: &str) -> Error {
    Error::not_supported(format!("spec.provider.aws.{field} ({why})")).context(store.origin.to_string())
}

/// Environment variables that can give the region when the store does not.
const REGION_ENV: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];

/// Offline checks of `spec.provider.aws`: every problem, each naming its field.
fn validate(store: &Store, spec: &AwsProvider) -> Vec<Error> {
    let mut errors = vec![];
    if spec.service != "SecretsManager" {
        errors.push(not_supported(
            store,
            "service",
            &format!("service `{}`; only SecretsManager", spec.service),
        ));
    }
    if !spec.transitive_tag_keys.is_empty() {
        errors.push(not_supported(store, "transitiveTagKeys", "not supported yet"));
    }
    if spec.role.is_none() {
        for (set, field) in [
            (!spec.additional_roles.is_empty(), "additionalRoles"),
            (spec.external_id.is_some(), "externalID"),
            (!spec.session_tags.is_empty(), "sessionTags"),
        ] {
            if set {
                errors.push(Error::manifest(
                    store.provider_field(field),
                    format!("spec.provider.aws.{field} needs spec.provider.aws.role"),
                ));
            }
        }
    }
    if let Some(a) = &spec.auth
        && a.secret_ref.is_some()
        && a.jwt.is_some()
    {
        errors.push(Error::manifest(
            store.provider_field("auth"),
            "set either secretRef or jwt, not both",
        ));
    }
    if let Some(url) = &spec.endpoint
        && let Some(problem) = secretsync_core::net::endpoint_problem(url)
    {
        errors.push(Error::manifest(store.provider_field("endpoint"), problem));
    }
    let region_elsewhere = REGION_ENV
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|r| !r.trim().is_empty()))
        || aws_config_file_exists()
        || on_aws_compute();
    match &spec.region {
        Some(r) if r.trim().is_empty() => errors.push(Error::manifest(store.provider_field("region"), "empty region")),
        Some(_) => {}
        None if region_elsewhere => {}
        None => errors.push(Error::manifest(
            store.provider_field("region"),
            "no region: set spec.provider.aws.region (or AWS_REGION for every store)",
        )),
    }
    if let Some(r) = &store.spec.retry_settings
        && let Some(iv) = &r.retry_interval
        && let Err(e) = secretsync_core::duration::parse_go_duration(iv)
    {
        errors.push(Error::manifest(
            store.origin.field("spec.retrySettings.retryInterval"),
            e,
        ));
    }
    errors
}

/// Whether this machine is an EC2 instance or an ECS/Lambda task, where the SDK finds the
/// region in instance metadata (read offline from the DMI vendor, the Xen hypervisor uuid or
/// the task environment; no request is sent), unless `AWS_EC2_METADATA_DISABLED=true`.
fn on_aws_compute() -> bool {
    // The SDK's switch: with instance metadata off, no region can come from there.
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    read("/sys/devices/virtual/dmi/id/sys_vendor").contains("Amazon EC2")
        || read("/sys/hypervisor/uuid").to_ascii_lowercase().starts_with("ec2")
        || [
            "ECS_CONTAINER_METADATA_URI_V4",
            "ECS_CONTAINER_METADATA_URI",
            "AWS_EXECUTION_ENV",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Whether an AWS shared config file exists (a profile there may set the region).
fn aws_config_file_exists() -> bool {
    let path = std::env::var_os("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws/config")));
    path.is_some_and(|p| p.is_file())
}

/// The builder a store's settings describe, on top of [`AwsSecretsManagerBuilder::from_env`].
pub async fn builder_for_store(
    store: &Store,
    credentials: &dyn CredentialResolver,
) -> Result<AwsSecretsManagerBuilder> {
    let spec: AwsProvider = store.provider_config()?;
    if let Some(e) = validate(store, &spec).into_iter().next() {
        return Err(e);
    }
    let AwsProvider {
        service: _,
        region,
        role,
        additional_roles,
        external_id,
        session_tags,
        transitive_tag_keys: _,
        prefix,
        auth,
        secrets_manager: _,
        endpoint,
    } = &spec;

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
                    store,
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
