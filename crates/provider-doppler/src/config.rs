//! [`DopplerBuilder`]: settings of a Doppler source.

use std::fmt;
use std::time::Duration;

use secretsync_core::SecretValue;

/// Doppler's API, when nothing else is configured.
pub const DEFAULT_API_HOST: &str = "https://api.doppler.com";
/// Environment variable with the token (the Doppler CLI's).
pub const TOKEN_ENV: &str = "DOPPLER_TOKEN";
/// Environment variable with the project (the Doppler CLI's).
pub const PROJECT_ENV: &str = "DOPPLER_PROJECT";
/// Environment variable with the config (the Doppler CLI's).
pub const CONFIG_ENV: &str = "DOPPLER_CONFIG";
/// Environment variable with the API host (the Doppler CLI's `--api-host`).
pub const API_HOST_ENV: &str = "DOPPLER_API_HOST";

/// How long a downloaded config is served without asking Doppler again, by default.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(2);

/// Builds a [`DopplerSource`](crate::DopplerSource).
///
/// ```no_run
/// # async fn f() -> secretsync_core::Result<()> {
/// use secretsync_core::SecretSourceExt;
/// let doppler = secretsync_doppler::DopplerBuilder::from_env()
///     .with_project("backend")
///     .with_config("prd")
///     .build()?;
/// let url = doppler.get_value("DATABASE_URL").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DopplerBuilder {
    pub(crate) token: Option<SecretValue>,
    pub(crate) project: Option<String>,
    pub(crate) config: Option<String>,
    pub(crate) api_host: Option<String>,
    pub(crate) name_transformer: Option<String>,
    pub(crate) format: Option<String>,
    pub(crate) freshness: Duration,
    pub(crate) max_retries: u32,
    pub(crate) base_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) timeout: Duration,
}

impl fmt::Debug for DopplerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DopplerBuilder")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("project", &self.project)
            .field("config", &self.config)
            .field("api_host", &self.api_host)
            .field("name_transformer", &self.name_transformer)
            .field("format", &self.format)
            .field("freshness", &self.freshness)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl Default for DopplerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl DopplerBuilder {
    /// Empty settings: a token is required before [`build`](Self::build).
    pub fn new() -> Self {
        Self {
            token: None,
            project: None,
            config: None,
            api_host: None,
            name_transformer: None,
            format: None,
            freshness: DEFAULT_FRESHNESS,
            max_retries: 4,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }

    /// Settings from `DOPPLER_TOKEN`, `DOPPLER_PROJECT`, `DOPPLER_CONFIG` and
    /// `DOPPLER_API_HOST`, where set and not empty.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(non_empty);
        let mut b = Self::new();
        b.token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| SecretValue::from(t.trim().to_string()));
        b.project = var(PROJECT_ENV);
        b.config = var(CONFIG_ENV);
        b.api_host = var(API_HOST_ENV);
        b
    }

    /// The token: a service token (`dp.st.…`, bound to one project and config), a service
    /// account token or a personal token (both need project and config).
    pub fn with_token(mut self, token: impl Into<SecretValue>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The project (implied by a service token).
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = non_empty(project.into());
        self
    }

    /// The config (implied by a service token).
    pub fn with_config(mut self, config: impl Into<String>) -> Self {
        self.config = non_empty(config.into());
        self
    }

    /// The API base URL (default `https://api.doppler.com`); a host without a scheme gets
    /// `https://`.
    pub fn with_api_host(mut self, url: impl Into<String>) -> Self {
        self.api_host = non_empty(url.into());
        self
    }

    /// ESO's `nameTransformer` for `find`: `upper-camel`, `camel`, `lower-snake`, `tf-var`,
    /// `dotnet-env` or `lower-kebab`.
    pub fn with_name_transformer(mut self, transformer: impl Into<String>) -> Self {
        self.name_transformer = non_empty(transformer.into());
        self
    }

    /// ESO's `format`. Only `json` (the default) is supported; others fail at build.
    pub fn with_format(mut self, format: impl Into<String>) -> Self {
        self.format = non_empty(format.into());
        self
    }

    /// How long one download serves reads before the next read revalidates it with
    /// `If-None-Match` (default 2 s). All calls of one engine cycle fall in this window, so
    /// a cycle costs one request; `Duration::ZERO` revalidates on every call.
    pub fn with_freshness(mut self, freshness: Duration) -> Self {
        self.freshness = freshness;
        self
    }

    /// Retries after a 429, a 5xx or a network error (default 4, so 5 attempts).
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Exponential backoff (with jitter) between retries when Doppler gives no
    /// `Retry-After`: first wait about `base`, doubling, at most `max`.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// The longest `Retry-After` waited inside a call (default 30 s); a longer one ends the
    /// call at once with [`Error::Throttled`] carrying it, so the caller reschedules.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Per-request timeout (default 10 s, as the Doppler CLI).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the token is a service token, which implies project and config.
    pub(crate) fn is_service_token(&self) -> bool {
        self.token
            .as_ref()
            .and_then(|t| t.expose_str())
            .is_some_and(|t| t.starts_with("dp.st."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretsync_core::Error;

    #[test]
    fn debug_never_shows_the_token() {
        let b = DopplerBuilder::new()
            .with_token("dp.st.dev.TOPSECRETTOKEN")
            .with_project("p");
        let d = format!("{b:?}");
        assert!(
            !d.contains("TOPSECRET") && d.contains("[REDACTED]") && d.ends_with(".. }"),
            "{d}"
        );
    }

    #[test]
    fn personal_token_needs_project_and_config() {
        let e = DopplerBuilder::new().with_token("dp.pt.abc").build().unwrap_err();
        assert!(e.to_string().contains("project and config"), "{e}");
        assert!(DopplerBuilder::new().with_token("dp.st.dev.abc").build().is_ok());
        assert!(
            DopplerBuilder::new()
                .with_token("dp.pt.abc")
                .with_project("p")
                .with_config("c")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn missing_token_is_unauthenticated() {
        let e = DopplerBuilder::new()
            .with_project("p")
            .with_config("c")
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e}");
    }

    #[test]
    fn bad_settings_fail_at_build() {
        let ok = || DopplerBuilder::new().with_token("dp.st.dev.abc");
        assert!(ok().with_name_transformer("shouting").build().is_err());
        assert!(matches!(
            ok().with_format("env").build().unwrap_err(),
            Error::NotSupported { .. }
        ));
        assert!(ok().with_api_host("ftp://x").build().is_err());
        assert!(ok().with_api_host("api.example.test").build().is_ok());
        let e = ok()
            .with_api_host("http://example.com")
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "the token never travels in clear: {e}");
        assert!(ok().with_api_host("http://127.0.0.1:9").build().is_ok());
    }
}
