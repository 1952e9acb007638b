//! [`GcpSecretManagerBuilder`]: project, location, endpoint, credentials, retries, budgets.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secretsync_core::{Error, Result, SecretValue};

/// Environment variable naming the project (`GOOGLE_CLOUD_PROJECT`).
pub const PROJECT_ENV: &str = "GOOGLE_CLOUD_PROJECT";
/// Environment variable pointing at a Secret Manager emulator, `host:port`, by the
/// convention of Google's other emulators (`PUBSUB_EMULATOR_HOST`, ...): requests go over
/// plain HTTP to that address with anonymous credentials.
pub const EMULATOR_HOST_ENV: &str = "SECRETMANAGER_EMULATOR_HOST";
/// The global endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://secretmanager.googleapis.com";
/// Default budget of metadata calls per minute for change detection: below Secret
/// Manager's default quota of 600 read requests per minute per project.
pub const DEFAULT_METADATA_CALLS_PER_MINUTE: u32 = 500;

/// ESO's `secretVersionSelectionPolicy`: what to read when `latest` is not readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionSelectionPolicy {
    /// Fail when the latest version is disabled or destroyed (ESO's default).
    #[default]
    LatestOrFail,
    /// Read the newest enabled version when the latest one is disabled or destroyed.
    LatestOrFetch,
}

impl FromStr for VersionSelectionPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "LatestOrFail" => Ok(Self::LatestOrFail),
            "LatestOrFetch" => Ok(Self::LatestOrFetch),
            other => Err(Error::invalid(format!(
                "secretVersionSelectionPolicy `{other}`: expected LatestOrFail or LatestOrFetch"
            ))),
        }
    }
}

/// How the client authenticates.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum GcpCredentials {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user
    /// credentials, or the metadata server (GKE Workload Identity, GCE, Cloud Run).
    #[default]
    ApplicationDefault,
    /// No credentials (emulators).
    Anonymous,
    /// A service-account key JSON (ESO's `auth.secretRef`).
    ServiceAccountKey(SecretValue),
}

impl fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GcpCredentials::ApplicationDefault => "ApplicationDefault",
            GcpCredentials::Anonymous => "Anonymous",
            GcpCredentials::ServiceAccountKey(_) => "ServiceAccountKey([REDACTED])",
        })
    }
}

/// Builds a [`GcpSecretManager`](crate::GcpSecretManager).
///
/// Endpoint precedence: [`with_endpoint`](Self::with_endpoint) (the store's `endpoint`),
/// then [`EMULATOR_HOST_ENV`] (read by [`from_env`](Self::from_env)), then the regional
/// endpoint of [`with_location`](Self::with_location), then [`DEFAULT_ENDPOINT`]. A
/// plain `http://` endpoint always uses anonymous credentials, so no token is ever sent
/// in clear text.
///
/// ```no_run
/// # async fn sample() -> secretsync_core::Result<()> {
/// use secretsync_gcp::GcpSecretManagerBuilder;
/// use secretsync_core::{SecretSourceExt as _};
/// let gcp = GcpSecretManagerBuilder::from_env().with_project_id("development-485000").build()?;
/// let jwt = gcp.get_value("tomoda-jwt-secret").await?;
/// # let _ = jwt; Ok(()) }
/// ```
#[derive(Clone)]
pub struct GcpSecretManagerBuilder {
    pub(crate) project_id: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) credentials: GcpCredentials,
    pub(crate) policy: VersionSelectionPolicy,
    pub(crate) metadata_calls_per_minute: u32,
    pub(crate) attempt_timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) retry_time_limit: Duration,
    pub(crate) initial_backoff: Duration,
    pub(crate) page_size: i32,
}

impl fmt::Debug for GcpSecretManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpSecretManagerBuilder")
            .field("project_id", &self.project_id)
            .field("location", &self.location)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .field("policy", &self.policy)
            .field("metadata_calls_per_minute", &self.metadata_calls_per_minute)
            .finish_non_exhaustive()
    }
}

impl Default for GcpSecretManagerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GcpSecretManagerBuilder {
    /// Defaults: no project, global endpoint, Application Default Credentials,
    /// `LatestOrFail`, 500 metadata calls a minute, 10 s per attempt, 3 attempts within 15 s.
    pub fn new() -> Self {
        Self {
            project_id: None,
            location: None,
            endpoint: None,
            credentials: GcpCredentials::ApplicationDefault,
            policy: VersionSelectionPolicy::LatestOrFail,
            metadata_calls_per_minute: DEFAULT_METADATA_CALLS_PER_MINUTE,
            attempt_timeout: Duration::from_secs(10),
            max_attempts: 3,
            retry_time_limit: Duration::from_secs(15),
            initial_backoff: Duration::from_millis(200),
            page_size: 250,
        }
    }

    /// [`new`](Self::new), then [`PROJECT_ENV`] and [`EMULATOR_HOST_ENV`] when set.
    pub fn from_env() -> Self {
        let mut b = Self::new();
        if let Some(p) = std::env::var(PROJECT_ENV).ok().filter(|p| !p.is_empty()) {
            b = b.with_project_id(p);
        }
        if let Some(h) = std::env::var(EMULATOR_HOST_ENV).ok().filter(|h| !h.is_empty()) {
            b = b.with_emulator_host(h);
        }
        b
    }

    /// The project id (ESO `projectID`).
    pub fn with_project_id(mut self, project: impl Into<String>) -> Self {
        self.project_id = Some(project.into());
        self
    }

    /// A location for regional secrets (ESO `location`): resources become
    /// `projects/{p}/locations/{l}/secrets/…` at `https://secretmanager.{l}.rep.googleapis.com`.
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// The endpoint URL (`https://…`, or `http://host:port` for an emulator).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// An emulator at `host:port` (what [`EMULATOR_HOST_ENV`] holds): plain HTTP, anonymous.
    pub fn with_emulator_host(mut self, host: impl AsRef<str>) -> Self {
        let host = host.as_ref();
        self.endpoint = Some(if host.contains("://") {
            host.to_string()
        } else {
            format!("http://{host}")
        });
        self.credentials = GcpCredentials::Anonymous;
        self
    }

    /// How to authenticate.
    pub fn with_credentials(mut self, credentials: GcpCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// A service-account key JSON. When no project is set, the key's `project_id` is used.
    pub fn with_service_account_key(self, key_json: SecretValue) -> Self {
        self.with_credentials(GcpCredentials::ServiceAccountKey(key_json))
    }

    /// `LatestOrFail` or `LatestOrFetch`.
    pub fn with_version_selection_policy(mut self, policy: VersionSelectionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How many metadata calls a minute change detection may spend (a token bucket
    /// refilled continuously, bursting up to the full minute). When it is empty,
    /// `change_tokens` answers "unknown" for the remaining keys instead of waiting, and the
    /// engine reads those values. 0 turns change detection off.
    pub fn with_metadata_calls_per_minute(mut self, n: u32) -> Self {
        self.metadata_calls_per_minute = n;
        self
    }

    /// Time limit of one HTTP attempt.
    pub fn with_attempt_timeout(mut self, t: Duration) -> Self {
        self.attempt_timeout = t;
        self
    }

    /// Attempts per call (at least 1), for transient failures (connection refused, 503,
    /// 429 RESOURCE_EXHAUSTED); writes that may have reached the server are not repeated.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Upper bound on the time one call spends retrying.
    pub fn with_retry_time_limit(mut self, t: Duration) -> Self {
        self.retry_time_limit = t;
        self
    }

    /// First backoff delay (doubled each retry, up to 5 s).
    pub fn with_initial_backoff(mut self, t: Duration) -> Self {
        self.initial_backoff = t;
        self
    }

    /// Page size of `ListSecrets` / `ListSecretVersions` (1..=25000; default 250).
    pub fn with_page_size(mut self, n: i32) -> Self {
        self.page_size = n.clamp(1, 25_000);
        self
    }

    /// The endpoint this configuration talks to.
    pub fn effective_endpoint(&self) -> String {
        match (&self.endpoint, &self.location) {
            (Some(e), _) => e.trim_end_matches('/').to_string(),
            (None, Some(l)) => format!("https://secretmanager.{l}.rep.googleapis.com"),
            (None, None) => DEFAULT_ENDPOINT.to_string(),
        }
    }
}

/// Project ids, locations: letters, digits, `-`, `.`, `:` (domain-scoped projects).
pub(crate) fn valid_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
}

/// Secret ids: 1-255 of `[A-Za-z0-9_-]`.
pub(crate) fn valid_secret_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
