//! [`AwsSecretsManagerBuilder`]: region, endpoint, credentials, roles, retries.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::web_identity_token::{StaticConfiguration, WebIdentityTokenCredentialsProvider};
use aws_sdk_secretsmanager::config::{Credentials, ProvideCredentials, Region, SharedCredentialsProvider};
use secretsync_core::{Error, Result, SecretValue};

use crate::client::AwsSecretsManager;

/// Default number of attempts per request (first try included); throttling and
/// transient errors are retried with exponential backoff and jitter.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default first backoff between attempts.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Default limit on one attempt of one request.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// Default time a listing downloaded by `find` may answer the next `change_tokens`.
pub const DEFAULT_LISTING_REUSE: Duration = Duration::from_secs(5);
/// Session name used for AssumeRole and web identity.
pub const SESSION_NAME: &str = "secretsync";

/// Environment variables [`AwsSecretsManagerBuilder::from_env`] reads besides the SDK's own.
const ENV_REGION: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];

#[derive(Clone)]
struct StaticKeys {
    access_key_id: String,
    secret_access_key: SecretValue,
    session_token: Option<SecretValue>,
}

#[derive(Clone)]
enum CredentialSource {
    /// The standard chain (env, profile, web identity, ECS, IMDS); only with `from_env`.
    Chain,
    /// Access keys given by the caller (or a store's `auth.secretRef`).
    Static(StaticKeys),
    /// A web identity token file and a role (IRSA).
    WebIdentity { token_file: PathBuf, role_arn: String },
}

/// Builds an [`AwsSecretsManager`].
///
/// [`new`](Self::new) starts from nothing: region and credentials must be given, and no
/// environment variable or profile is read, so a test or an embedding service gets exactly
/// what it configured. [`from_env`](Self::from_env) starts from the standard AWS
/// environment and credential chain: `AWS_REGION`, `AWS_ACCESS_KEY_ID`/…, `AWS_PROFILE`,
/// web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), container and instance
/// credentials, and the endpoint variables `AWS_ENDPOINT_URL_SECRETS_MANAGER` and
/// `AWS_ENDPOINT_URL`. `with_*` settings override either.
///
/// ```no_run
/// # async fn f() -> secretsync_core::Result<()> {
/// use secretsync_aws::AwsSecretsManagerBuilder;
/// let sm = AwsSecretsManagerBuilder::new()
///     .with_region("eu-central-1")
///     .with_endpoint("http://127.0.0.1:5000")
///     .with_credentials("testing", "testing".into())
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AwsSecretsManagerBuilder {
    from_env: bool,
    region: Option<String>,
    endpoint: Option<String>,
    sts_endpoint: Option<String>,
    profile: Option<String>,
    credentials: CredentialSource,
    roles: Vec<String>,
    external_id: Option<String>,
    session_tags: Vec<(String, String)>,
    prefix: Option<String>,
    max_attempts: u32,
    initial_backoff: Duration,
    attempt_timeout: Duration,
    listing_reuse: Duration,
}

impl fmt::Debug for AwsSecretsManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = match &self.credentials {
            CredentialSource::Chain => "default chain",
            CredentialSource::Static(_) => "static keys",
            CredentialSource::WebIdentity { .. } => "web identity",
        };
        f.debug_struct("AwsSecretsManagerBuilder")
            .field("from_env", &self.from_env)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("sts_endpoint", &self.sts_endpoint)
            .field("profile", &self.profile)
            .field("credentials", &credentials)
            .field("roles", &self.roles)
            .field("prefix", &self.prefix)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl Default for AwsSecretsManagerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AwsSecretsManagerBuilder {
    /// A builder that reads nothing from the environment.
    pub fn new() -> Self {
        Self {
            from_env: false,
            region: None,
            endpoint: None,
            sts_endpoint: None,
            profile: None,
            credentials: CredentialSource::Chain,
            roles: vec![],
            external_id: None,
            session_tags: vec![],
            prefix: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            listing_reuse: DEFAULT_LISTING_REUSE,
        }
    }

    /// A builder on the standard AWS environment and credential chain (see the type docs).
    pub fn from_env() -> Self {
        let mut b = Self::new();
        b.from_env = true;
        // The SDK resolves the region itself too; reading it here makes `Debug` and errors
        // say which region is used.
        b.region = ENV_REGION
            .iter()
            .find_map(|v| std::env::var(v).ok())
            .filter(|r| !r.is_empty());
        b
    }

    /// The region (`eu-central-1`).
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The Secrets Manager endpoint URL (an emulator such as moto, a VPC endpoint).
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The STS endpoint URL used by AssumeRole and web identity (default: the SDK's,
    /// which honours `AWS_ENDPOINT_URL_STS` with `from_env`).
    pub fn with_sts_endpoint(mut self, url: impl Into<String>) -> Self {
        self.sts_endpoint = Some(url.into());
        self
    }

    /// A named profile of `~/.aws/config` (only with [`from_env`](Self::from_env)).
    pub fn with_profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Static access keys.
    pub fn with_credentials(mut self, access_key_id: impl Into<String>, secret_access_key: SecretValue) -> Self {
        self.credentials = CredentialSource::Static(StaticKeys {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
        });
        self
    }

    /// Static temporary credentials (with a session token).
    pub fn with_session_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: SecretValue,
        session_token: SecretValue,
    ) -> Self {
        self.credentials = CredentialSource::Static(StaticKeys {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: Some(session_token),
        });
        self
    }

    /// Web identity federation (IRSA): exchange the token in `token_file` for `role_arn`.
    pub fn with_web_identity(mut self, token_file: impl Into<PathBuf>, role_arn: impl Into<String>) -> Self {
        self.credentials = CredentialSource::WebIdentity {
            token_file: token_file.into(),
            role_arn: role_arn.into(),
        };
        self
    }

    /// Assume this role (AssumeRole) with the base credentials. Called several times, the
    /// roles are assumed in a chain, in call order; the last one is used.
    pub fn with_role(mut self, role_arn: impl Into<String>) -> Self {
        self.roles.push(role_arn.into());
        self
    }

    /// External ID for the last AssumeRole.
    pub fn with_external_id(mut self, external_id: impl Into<String>) -> Self {
        self.external_id = Some(external_id.into());
        self
    }

    /// A session tag for the last AssumeRole.
    pub fn with_session_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.session_tags.push((key.into(), value.into()));
        self
    }

    /// A prefix added to every key (ESO `spec.provider.aws.prefix`); `find` returns names
    /// without it.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into()).filter(|p| !p.is_empty());
        self
    }

    /// Attempts per request (at least 1) and the first backoff between them.
    pub fn with_retry(mut self, max_attempts: u32, initial_backoff: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.initial_backoff = initial_backoff;
        self
    }

    /// Limit on one attempt of one request.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// How long a listing downloaded by `find` may answer the next `change_tokens` for the
    /// secrets it saw (once). `Duration::ZERO` turns the reuse off.
    pub fn with_listing_reuse(mut self, reuse: Duration) -> Self {
        self.listing_reuse = reuse;
        self
    }

    /// Builds the client. No request is sent, except that the standard chain may look up
    /// the region (instance metadata) when none is configured.
    pub async fn build(self) -> Result<AwsSecretsManager> {
        if let Some(url) = self.endpoint.as_deref() {
            secretsync_core::net::check_endpoint(url, "AWS Secrets Manager endpoint")?;
        }
        let SdkParts {
            base,
            credentials,
            region,
        } = self.sdk_parts().await?;
        let mut sm = aws_sdk_secretsmanager::config::Builder::from(&base);
        if let Some(p) = credentials {
            sm = sm.credentials_provider(p);
        }
        if let Some(url) = &self.endpoint {
            sm = sm.endpoint_url(url.clone());
        }
        let stats = Arc::new(secretsync_core::CallStats::new());
        sm = sm.interceptor(crate::client::CallCounter::new(stats.clone()));
        // The endpoint in effect (ours, or the environment's), named by errors.
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| {
                std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
                    .ok()
                    .filter(|e| !e.is_empty())
            })
            .or_else(|| base.endpoint_url().map(str::to_string));
        let client = aws_sdk_secretsmanager::Client::from_conf(sm.build());
        Ok(AwsSecretsManager::new(crate::client::Parts {
            client,
            stats,
            region,
            endpoint,
            prefix: self.prefix.clone(),
            listing_reuse: self.listing_reuse,
        }))
    }

    /// The prefix added to every key, if any.
    pub(crate) fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The region configured (store, `with_region`, or the environment), if any.
    pub(crate) fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// What every client of these settings shares: the SDK configuration (region, retries,
    /// timeouts, `AWS_ENDPOINT_URL*` with `from_env`) and the credentials (static keys, web
    /// identity, role chain), so the SQS event source authenticates exactly as the store does.
    pub(crate) async fn sdk_parts(&self) -> Result<SdkParts> {
        let retry = RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(self.attempt_timeout)
            .build();

        let base: SdkConfig = if self.from_env {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .retry_config(retry.clone())
                .timeout_config(timeouts.clone());
            if let Some(r) = &self.region {
                loader = loader.region(Region::new(r.clone()));
            }
            if let Some(p) = &self.profile {
                loader = loader.profile_name(p.clone());
            }
            loader.load().await
        } else {
            if self.profile.is_some() {
                return Err(Error::invalid(
                    "AWS profile is only read with AwsSecretsManagerBuilder::from_env()",
                ));
            }
            let mut b = SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .retry_config(retry.clone())
                .timeout_config(timeouts.clone())
                .time_source(aws_smithy_async::time::SharedTimeSource::default());
            if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
                b = b.sleep_impl(sleep);
            }
            if let Some(r) = &self.region {
                b = b.region(Region::new(r.clone()));
            }
            b.build()
        };
        // Plain http only to loopback (an emulator): values must not cross a network in clear.
        for (url, what) in [
            (base.endpoint_url(), "AWS_ENDPOINT_URL"),
            (self.sts_endpoint.as_deref(), "AWS STS endpoint"),
        ] {
            if let Some(url) = url {
                secretsync_core::net::check_endpoint(url, what)?;
            }
        }
        let region = base.region().map(|r| r.to_string()).ok_or_else(|| {
            Error::invalid("no AWS region: set spec.provider.aws.region in the store, or AWS_REGION (a program building the client itself: AwsSecretsManagerBuilder::with_region)")
        })?;

        // STS (AssumeRole, web identity) gets its own endpoint: a Secrets Manager VPC
        // endpoint must not receive STS calls.
        let sts_config = {
            let mut b = base.clone().into_builder();
            if let Some(url) = &self.sts_endpoint {
                b = b.endpoint_url(url.clone());
            }
            b.build()
        };

        let mut provider: Option<SharedCredentialsProvider> = match &self.credentials {
            CredentialSource::Chain if !self.from_env => {
                return Err(Error::Unauthenticated {
                    what: "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the store's spec.provider.aws.auth (a program building the client itself: AwsSecretsManagerBuilder::from_env or with_credentials)".into(),
                });
            }
            CredentialSource::Chain => None,
            CredentialSource::Static(k) => Some(SharedCredentialsProvider::new(static_credentials(k)?)),
            CredentialSource::WebIdentity { token_file, role_arn } => {
                let mut pc = aws_config::provider_config::ProviderConfig::default()
                    .with_region(Some(Region::new(region.clone())));
                if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
                    pc = pc.with_sleep_impl(sleep);
                }
                if self.sts_endpoint.is_some() {
                    return Err(Error::not_supported(
                        "a custom STS endpoint with web identity credentials (use AWS_ENDPOINT_URL_STS)",
                    ));
                }
                let p = WebIdentityTokenCredentialsProvider::builder()
                    .configure(&pc)
                    .static_configuration(StaticConfiguration {
                        web_identity_token_file: token_file.clone(),
                        role_arn: role_arn.clone(),
                        session_name: SESSION_NAME.into(),
                    })
                    .build();
                Some(SharedCredentialsProvider::new(p))
            }
        };

        let last = self.roles.len().saturating_sub(1);
        for (i, role) in self.roles.iter().enumerate() {
            let base_provider = match provider.take() {
                Some(p) => p,
                None => base.credentials_provider().ok_or_else(|| Error::Unauthenticated {
                    what: format!("no AWS credentials to assume role {role} with"),
                })?,
            };
            let mut b = AssumeRoleProvider::builder(role.clone())
                .session_name(SESSION_NAME)
                .region(Region::new(region.clone()))
                .configure(&sts_config);
            if i == last {
                if let Some(id) = &self.external_id {
                    b = b.external_id(id.clone());
                }
                if !self.session_tags.is_empty() {
                    b = b.tags(self.session_tags.clone());
                }
            }
            provider = Some(SharedCredentialsProvider::new(
                b.build_from_provider(base_provider).await,
            ));
        }
        Ok(SdkParts {
            base,
            credentials: provider,
            region,
        })
    }
}

/// The SDK configuration and credentials a builder describes, for any AWS client.
pub(crate) struct SdkParts {
    /// Region, retries, timeouts, sleep and time sources, environment endpoints.
    pub(crate) base: SdkConfig,
    /// The credentials, when not the SDK's default chain.
    pub(crate) credentials: Option<SharedCredentialsProvider>,
    /// The region.
    pub(crate) region: String,
}

fn static_credentials(k: &StaticKeys) -> Result<impl ProvideCredentials + 'static> {
    let utf8 = |v: &SecretValue, what: &str| {
        v.expose_str()
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(format!("AWS {what} is not UTF-8")))
    };
    if k.access_key_id.is_empty() {
        return Err(Error::Unauthenticated {
            what: "AWS access key id is empty".into(),
        });
    }
    let secret = utf8(&k.secret_access_key, "secret access key")?;
    let token = k.session_token.as_ref().map(|t| utf8(t, "session token")).transpose()?;
    Ok(Credentials::new(
        k.access_key_id.clone(),
        secret,
        token,
        None,
        "secretsync",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_has_no_credentials() {
        let b = AwsSecretsManagerBuilder::new()
            .with_region("eu-central-1")
            .with_session_credentials(
                "AKIDCANARY",
                SecretValue::from("secret-canary"),
                SecretValue::from("token-canary"),
            );
        let d = format!("{b:?}");
        assert!(!d.contains("secret-canary") && !d.contains("token-canary"), "{d}");
        assert!(d.contains("static keys") && d.ends_with(".. }"), "{d}");
    }

    #[tokio::test]
    async fn new_without_credentials_or_region_fails_clearly() {
        let e = AwsSecretsManagerBuilder::new()
            .with_region("eu-central-1")
            .build()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e}");
        let e = AwsSecretsManagerBuilder::new()
            .with_credentials("a", SecretValue::from("b"))
            .build()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("region"), "{e}");
    }
}
