//! [`EscStoreConfig`] (ESO's `spec.provider.pulumi`) and [`PulumiBuilder`] (settings of an
//! [`EscSource`](crate::EscSource)).

use std::fmt;
use std::time::Duration;

use secretsync_core::SecretValue;
use secretsync_core::manifest::SecretKeySelector;
use serde::{Deserialize, Serialize};

/// ESC's API, when nothing else is configured (ESO's default `apiUrl`).
pub const DEFAULT_API_URL: &str = "https://api.pulumi.com/api/esc";
/// Environment variable with the access token (Pulumi's CLI and SDKs read it).
pub const TOKEN_ENV: &str = "PULUMI_ACCESS_TOKEN";
/// Environment variable with the Pulumi Cloud backend URL; the ESC API is `<backend>/api/esc`.
pub const BACKEND_URL_ENV: &str = "PULUMI_BACKEND_URL";
/// How long one check of the environment serves reads before the next read checks again.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(2);
/// How long an open session is asked to live (`?duration=`).
pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(3600);
/// How long values that came from imported environments or `fn::open` providers are served
/// before the environment is opened again, whatever its ETag says.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// ESO's `spec.provider.pulumi`, unchanged.
///
/// ```yaml
/// pulumi:
///   organization: aphiria
///   project: aphiria.com
///   environment: Preview
///   apiUrl: https://api.pulumi.com/api/esc     # the default
///   auth:
///     accessToken:
///       secretRef: {name: pulumi-access-token, key: token, namespace: external-secrets}
/// ```
///
/// The deprecated top-level `accessToken.secretRef` is accepted too; `auth.oidcConfig` is
/// parsed and refused as not supported yet. Unknown fields are errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscStoreConfig {
    /// The Pulumi organization.
    #[serde(default)]
    pub organization: String,
    /// The ESC project the environment belongs to.
    #[serde(default)]
    pub project: String,
    /// The environment's name.
    #[serde(default)]
    pub environment: String,
    /// The ESC API base URL (default `https://api.pulumi.com/api/esc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// How secretsync authenticates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EscAuth>,
    /// Deprecated by ESO in favour of `auth.accessToken`; still accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<EscAccessToken>,
}

/// ESO's `spec.provider.pulumi.auth`: exactly one of `accessToken` and `oidcConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscAuth {
    /// A Pulumi access token in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<EscAccessToken>,
    /// OIDC with a Kubernetes ServiceAccount token (not supported yet; kept raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config: Option<serde_json::Value>,
}

/// ESO's `PulumiProviderSecretRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscAccessToken {
    /// The Secret and key holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
}

/// A problem with a store's settings: the field path under `spec.provider.pulumi` and what
/// is wrong (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Like `auth.accessToken.secretRef.key`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// Whether it is a missing feature rather than a mistake.
    pub not_supported: bool,
}

fn valid_org(s: &str) -> bool {
    // ESC's OpenAPI: ^[a-zA-Z0-9][a-zA-Z0-9-_]{1,38}[a-zA-Z0-9]$
    let b = s.as_bytes();
    (3..=40).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

fn valid_name(s: &str) -> bool {
    // ESC's OpenAPI project and environment names: [a-zA-Z0-9-_.]{1,100}, not `.` / `..`.
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

impl EscStoreConfig {
    /// The token's Secret reference, from `auth.accessToken` or the deprecated
    /// `accessToken`, with the field path it came from.
    pub fn token_ref(&self) -> Option<(&'static str, &SecretKeySelector)> {
        if let Some(r) = self
            .auth
            .as_ref()
            .and_then(|a| a.access_token.as_ref())
            .and_then(|t| t.secret_ref.as_ref())
        {
            return Some(("auth.accessToken.secretRef", r));
        }
        self.access_token
            .as_ref()
            .and_then(|t| t.secret_ref.as_ref())
            .map(|r| ("accessToken.secretRef", r))
    }

    /// Offline checks: required fields, names ESC accepts, one way to authenticate, an API
    /// URL that is https (or http to loopback). No request is sent.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = vec![];
        let mut bad = |field: &str, message: String| {
            out.push(ConfigProblem {
                field: field.into(),
                message,
                not_supported: false,
            })
        };
        for (field, value, ok) in [
            ("organization", &self.organization, valid_org(&self.organization)),
            ("project", &self.project, valid_name(&self.project)),
            ("environment", &self.environment, valid_name(&self.environment)),
        ] {
            if value.trim().is_empty() {
                bad(field, format!("`{field}` is required"));
            } else if !ok {
                bad(
                    field,
                    format!("`{value}` is not a valid ESC {field} name (letters, digits, `-`, `_`, `.`)"),
                );
            }
        }
        if let Some(url) = &self.api_url
            && let Some(problem) = secretsync_core::net::endpoint_problem(url)
        {
            bad("apiUrl", problem);
        }
        let auth_token = self.auth.as_ref().and_then(|a| a.access_token.as_ref());
        let oidc = self.auth.as_ref().and_then(|a| a.oidc_config.as_ref());
        if auth_token.is_some() && oidc.is_some() {
            bad(
                "auth",
                "exactly one of `auth.accessToken` and `auth.oidcConfig` may be set".into(),
            );
        }
        if auth_token.is_some() && self.access_token.is_some() {
            bad(
                "accessToken",
                "set `auth.accessToken` or the deprecated `accessToken`, not both".into(),
            );
        }
        for (field, t) in [
            ("auth.accessToken", auth_token),
            ("accessToken", self.access_token.as_ref()),
        ] {
            match t.map(|t| t.secret_ref.as_ref()) {
                None => {}
                Some(None) => bad(
                    &format!("{field}.secretRef"),
                    format!("`{field}.secretRef` is required"),
                ),
                Some(Some(r)) => {
                    if r.name.trim().is_empty() {
                        bad(&format!("{field}.secretRef.name"), "the Secret name is required".into());
                    }
                    if r.key.trim().is_empty() {
                        bad(
                            &format!("{field}.secretRef.key"),
                            "the key in the Secret is required".into(),
                        );
                    }
                }
            }
        }
        if oidc.is_some() {
            out.push(ConfigProblem {
                field: "auth.oidcConfig".into(),
                message: "OIDC authentication; use auth.accessToken.secretRef, or PULUMI_ACCESS_TOKEN out of a cluster"
                    .into(),
                not_supported: true,
            });
        }
        out
    }
}

/// Builds an [`EscSource`](crate::EscSource).
///
/// ```no_run
/// # async fn f() -> secretsync_core::Result<()> {
/// use secretsync_core::SecretSourceExt;
/// let esc = secretsync_pulumi::PulumiBuilder::from_env()
///     .with_organization("aphiria")
///     .with_project("aphiria.com")
///     .with_environment("Preview")
///     .build()?;
/// let password = esc.get_value(r#"pulumiConfig["postgresql:password"]"#).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PulumiBuilder {
    pub(crate) token: Option<SecretValue>,
    pub(crate) organization: Option<String>,
    pub(crate) project: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) api_url: Option<String>,
    pub(crate) freshness: Duration,
    pub(crate) open_duration: Duration,
    pub(crate) max_age: Duration,
    pub(crate) max_retries: u32,
    pub(crate) base_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) timeout: Duration,
}

impl fmt::Debug for PulumiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PulumiBuilder")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("environment", &self.environment)
            .field("api_url", &self.api_url)
            .field("freshness", &self.freshness)
            .field("open_duration", &self.open_duration)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl Default for PulumiBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `<backend>/api/esc`, as Pulumi's SDKs derive it from `PULUMI_BACKEND_URL`.
pub(crate) fn esc_url_of_backend(backend: &str) -> String {
    let b = backend.trim().trim_end_matches('/');
    if b.ends_with("/api/esc") {
        b.to_string()
    } else {
        format!("{b}/api/esc")
    }
}

impl PulumiBuilder {
    /// Empty settings: a token, organization, project and environment are required.
    pub fn new() -> Self {
        Self {
            token: None,
            organization: None,
            project: None,
            environment: None,
            api_url: None,
            freshness: DEFAULT_FRESHNESS,
            open_duration: DEFAULT_OPEN_DURATION,
            max_age: DEFAULT_MAX_AGE,
            max_retries: 4,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            timeout: Duration::from_secs(15),
        }
    }

    /// Settings from `PULUMI_ACCESS_TOKEN` and `PULUMI_BACKEND_URL` (its ESC API is
    /// `<backend>/api/esc`), where set and not empty.
    pub fn from_env() -> Self {
        let mut b = Self::new();
        b.token = std::env::var(TOKEN_ENV).ok().and_then(non_empty).map(SecretValue::from);
        if let Some(backend) = std::env::var(BACKEND_URL_ENV).ok().and_then(non_empty) {
            b.api_url = Some(esc_url_of_backend(&backend));
        }
        b
    }

    /// The Pulumi access token.
    pub fn with_token(mut self, token: impl Into<SecretValue>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The organization.
    pub fn with_organization(mut self, org: impl Into<String>) -> Self {
        self.organization = non_empty(org.into());
        self
    }

    /// The ESC project.
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = non_empty(project.into());
        self
    }

    /// The environment.
    pub fn with_environment(mut self, env: impl Into<String>) -> Self {
        self.environment = non_empty(env.into());
        self
    }

    /// The ESC API base URL, like ESO's `apiUrl` (default `https://api.pulumi.com/api/esc`).
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = non_empty(url.into());
        self
    }

    /// The Pulumi Cloud backend URL (`PULUMI_BACKEND_URL`'s form); ESC is `<backend>/api/esc`.
    pub fn with_backend_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = non_empty(url.into()).map(|u| esc_url_of_backend(&u));
        self
    }

    /// How long one check of the environment (a `HEAD`, or an open and read) serves reads
    /// before the next read checks again (default 2 s). All calls of one engine cycle fall in
    /// this window, so a cycle costs one request when nothing changed; `Duration::ZERO`
    /// checks on every call.
    pub fn with_freshness(mut self, freshness: Duration) -> Self {
        self.freshness = freshness;
        self
    }

    /// The lifetime asked for an open session (default 1 h). A session is reused while it
    /// lives and the environment's ETag has not changed.
    pub fn with_open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = duration.max(Duration::from_secs(1));
        self
    }

    /// How long values that came from imported environments or `fn::open` providers are
    /// served before the environment is opened again even with an unchanged ETag (default
    /// 5 min): the ETag covers the environment's own definition, not what it imports or
    /// what its providers return.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Retries after a 429, a 5xx or a network error (default 4, so 5 attempts).
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Exponential backoff (with jitter) between retries without `Retry-After`.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// The longest `Retry-After` waited inside a call (default 30 s); a longer one ends the
    /// call with [`Error::Throttled`] carrying it.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Per-request timeout (default 15 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretsync_core::Error;

    fn ok() -> PulumiBuilder {
        PulumiBuilder::new()
            .with_token("pul-TOPSECRETTOKEN")
            .with_organization("aphiria")
            .with_project("aphiria.com")
            .with_environment("Preview")
    }

    #[test]
    fn debug_never_shows_the_token() {
        let d = format!("{:?}", ok());
        assert!(
            !d.contains("TOPSECRET") && d.contains("[REDACTED]") && d.ends_with(".. }"),
            "{d}"
        );
    }

    #[test]
    fn required_fields_and_endpoints() {
        assert!(ok().build().is_ok());
        let e = PulumiBuilder::new()
            .with_token("t")
            .with_organization("aphiria")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("project"), "{e}");
        let e = ok().with_api_url("http://example.com/api/esc").build().unwrap_err();
        assert!(
            e.to_string().contains("loopback"),
            "the token never travels in clear: {e}"
        );
        assert!(ok().with_api_url("http://127.0.0.1:9/api/esc").build().is_ok());
        let e = PulumiBuilder::new()
            .with_organization("aphiria")
            .with_project("p")
            .with_environment("e")
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e}");
        assert!(ok().with_environment("a/b").build().is_err());
    }

    #[test]
    fn backend_url_becomes_the_esc_api() {
        assert_eq!(
            esc_url_of_backend("https://api.pulumi.com"),
            "https://api.pulumi.com/api/esc"
        );
        assert_eq!(
            esc_url_of_backend("http://127.0.0.1:8/api/esc/"),
            "http://127.0.0.1:8/api/esc"
        );
    }

    #[test]
    fn eso_schema_parses_and_checks() {
        let c: EscStoreConfig = serde_json::from_value(serde_json::json!({
            "organization": "aphiria", "project": "aphiria.com", "environment": "Preview",
            "auth": {"accessToken": {"secretRef": {"name": "pulumi", "key": "token", "namespace": "external-secrets"}}}
        }))
        .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.token_ref().unwrap().0, "auth.accessToken.secretRef");
        let old: EscStoreConfig = serde_json::from_value(serde_json::json!({
            "organization": "aphiria", "project": "p", "environment": "e",
            "accessToken": {"secretRef": {"name": "pulumi", "key": "token"}}
        }))
        .unwrap();
        assert_eq!(old.token_ref().unwrap().0, "accessToken.secretRef");
        let oidc: EscStoreConfig = serde_json::from_value(serde_json::json!({
            "organization": "aphiria", "project": "p", "environment": "e",
            "auth": {"oidcConfig": {"organization": "aphiria", "serviceAccountRef": {"name": "sa"}}}
        }))
        .unwrap();
        let p = oidc.problems();
        assert!(
            p.len() == 1 && p[0].not_supported && p[0].field == "auth.oidcConfig",
            "{p:?}"
        );
        assert!(serde_json::from_value::<EscStoreConfig>(serde_json::json!({"organization": "a", "typo": 1})).is_err());
        let missing = EscStoreConfig::default().problems();
        assert_eq!(
            missing.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
            ["organization", "project", "environment"]
        );
    }
}
