//! [`GcpSecretManager`]: the source and writer, over `google-cloud-secretmanager-v1`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use google_cloud_auth::credentials::Credentials;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model::{self, secret_version::State};
use secretsync_core::error::redact_quoted;
use secretsync_core::source::{
    CallStats, ChangeToken, DEFAULT_READ_CONCURRENCY, FindQuery, MANAGED_BY_KEY, MANAGED_BY_VALUE, RemoteDescription,
    SecretSource, SecretWriter, SourceCapabilities, VersionInfo, WriteOutcome, WriteRequest,
};
use secretsync_core::sources::memory::merge_property;
use secretsync_core::{Error, Fetched, RemoteKey, Result, SecretValue};

use crate::PROVIDER;
use crate::config::{
    GcpCredentials, GcpSecretManagerBuilder, VersionSelectionPolicy, valid_name_part, valid_secret_id,
};
use crate::error::{self as gerr, Subject};

/// GCP Secret Manager as a [`SecretSource`] and [`SecretWriter`].
///
/// Built with [`GcpSecretManagerBuilder`] or, from a store, by [`crate::GcpFactory`].
/// See the crate documentation for the calls each operation makes.
pub struct GcpSecretManager {
    project: String,
    location: Option<String>,
    parent: String,
    endpoint: String,
    credentials: Option<Credentials>,
    credentials_kind: &'static str,
    policy: VersionSelectionPolicy,
    attempt_timeout: Duration,
    max_attempts: u32,
    retry_time_limit: Duration,
    initial_backoff: Duration,
    page_size: i32,
    client: tokio::sync::OnceCell<SecretManagerService>,
    budget: Budget,
    stats: CallStats,
    /// Last known change token of each key and when it was checked, so keys over the
    /// per-minute budget keep their last token (checked in a later cycle, oldest first)
    /// instead of forcing a billed access.
    tokens: std::sync::Mutex<std::collections::HashMap<RemoteKey, (ChangeToken, std::time::Instant)>>,
}

impl fmt::Debug for GcpSecretManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpSecretManager")
            .field("project", &self.project)
            .field("location", &self.location)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials_kind)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A token bucket for metadata calls: `per_minute` capacity, refilled continuously.
#[derive(Debug)]
struct Budget {
    per_minute: u32,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            state: Mutex::new((f64::from(per_minute), Instant::now())),
        }
    }
    fn refill(&self, s: &mut (f64, Instant)) {
        let cap = f64::from(self.per_minute);
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * cap / 60.0).min(cap);
        s.1 = now;
    }
    /// Takes one call from the budget if there is one.
    fn try_take(&self) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        let mut s = self.state.lock().expect("budget lock");
        self.refill(&mut s);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
    /// Accounts for a read call that is made regardless (find, metadata, describe).
    fn spend(&self) {
        let mut s = self.state.lock().expect("budget lock");
        self.refill(&mut s);
        s.0 = (s.0 - 1.0).max(0.0);
    }
}

/// A failed call: the raw client error (to look at its code) or an error of ours.
enum CallError {
    Api(GaxError),
    Core(Error),
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        CallError::Core(e)
    }
}

/// The trailing version id of `projects/…/versions/3`.
fn version_id(name: &str) -> String {
    name.rsplit_once("/versions/")
        .map(|(_, v)| v)
        .unwrap_or(name)
        .to_string()
}

fn state_name(s: &State) -> &'static str {
    match s {
        State::Enabled => "ENABLED",
        State::Disabled => "DISABLED",
        State::Destroyed => "DESTROYED",
        _ => "UNSPECIFIED",
    }
}

fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A label key or value usable in a list filter without quoting.
fn valid_label_part(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

impl GcpSecretManager {
    pub(crate) fn from_builder(b: GcpSecretManagerBuilder) -> Result<Self> {
        let endpoint = b.effective_endpoint();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(Error::invalid(format!(
                "gcpsm endpoint `{endpoint}`: expected an http:// or https:// URL"
            )));
        }
        let plain_http = endpoint.starts_with("http://");
        let mut project = b.project_id.clone().filter(|p| !p.is_empty());
        let (credentials, credentials_kind) = match (&b.credentials, plain_http) {
            // Never send a token in clear text: an http:// endpoint is an emulator.
            (_, true) | (GcpCredentials::Anonymous, _) => (
                Some(google_cloud_auth::credentials::anonymous::Builder::new().build()),
                "Anonymous",
            ),
            (GcpCredentials::ServiceAccountKey(key), false) => {
                let json: serde_json::Value = serde_json::from_slice(key.expose())
                    .map_err(|_| Error::invalid("gcpsm auth.secretRef: the service-account key is not valid JSON"))?;
                if project.is_none() {
                    project = json.get("project_id").and_then(|p| p.as_str()).map(str::to_string);
                }
                let c = google_cloud_auth::credentials::service_account::Builder::new(json)
                    .build()
                    .map_err(|e| {
                        Error::invalid(format!(
                            "gcpsm auth.secretRef: not a usable service-account key: {}",
                            redact_quoted(&e.to_string())
                        ))
                    })?;
                (Some(c), "ServiceAccountKey")
            }
            (GcpCredentials::ApplicationDefault, false) => (None, "ApplicationDefault"),
        };
        let project = project.ok_or_else(|| {
            Error::invalid("gcpsm: no project: set spec.provider.gcpsm.projectID or GOOGLE_CLOUD_PROJECT")
        })?;
        if !valid_name_part(&project) {
            return Err(Error::invalid(format!(
                "gcpsm projectID `{project}` is not a valid project id"
            )));
        }
        if let Some(l) = &b.location
            && !valid_name_part(l)
        {
            return Err(Error::invalid(format!("gcpsm location `{l}` is not a valid location")));
        }
        let parent = match &b.location {
            Some(l) => format!("projects/{project}/locations/{l}"),
            None => format!("projects/{project}"),
        };
        Ok(Self {
            project,
            location: b.location,
            parent,
            endpoint,
            credentials,
            credentials_kind,
            policy: b.policy,
            attempt_timeout: b.attempt_timeout,
            max_attempts: b.max_attempts.max(1),
            retry_time_limit: b.retry_time_limit,
            initial_backoff: b.initial_backoff,
            page_size: b.page_size,
            client: tokio::sync::OnceCell::new(),
            budget: Budget::new(b.metadata_calls_per_minute),
            stats: CallStats::new(),
            tokens: Default::default(),
        })
    }

    /// The project.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `projects/{p}` or `projects/{p}/locations/{l}`.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// The version selection policy.
    pub fn version_selection_policy(&self) -> VersionSelectionPolicy {
        self.policy
    }

    async fn client(&self) -> Result<&SecretManagerService> {
        self.client
            .get_or_try_init(|| async {
                let mut b = SecretManagerService::builder()
                    .with_endpoint(self.endpoint.clone())
                    // Retries are ours (see `call`), so every attempt is counted and bounded.
                    .with_retry_policy(NeverRetry)
                    .with_attempt_timeout(self.attempt_timeout);
                if let Some(c) = &self.credentials {
                    b = b.with_credentials(c.clone());
                }
                b.build().await.map_err(|e| Error::Unauthenticated {
                    what: format!(
                        "gcpsm: cannot set up the Secret Manager client for {} ({}): {}",
                        self.endpoint,
                        self.credentials_kind,
                        redact_quoted(&e.to_string())
                    ),
                })
            })
            .await
    }

    fn scope(&self) -> String {
        match &self.location {
            Some(l) => format!("project {}, location {l}", self.project),
            None => format!("project {}", self.project),
        }
    }

    fn subject(&self, secret: &str, version: Option<&str>) -> Subject {
        Subject {
            secret: secret.to_string(),
            version: version.map(str::to_string),
            scope: self.scope(),
        }
    }

    /// The full secret name for a key: a secret id, or a full `projects/…/secrets/…` name.
    fn secret_name(&self, key: &str) -> Result<String> {
        if key.starts_with("projects/") {
            let segs: Vec<&str> = key.split('/').collect();
            let ok = match segs.as_slice() {
                ["projects", p, "secrets", s] => valid_name_part(p) && valid_secret_id(s),
                ["projects", p, "locations", l, "secrets", s] => {
                    valid_name_part(p) && valid_name_part(l) && valid_secret_id(s)
                }
                _ => false,
            };
            return if ok {
                Ok(key.to_string())
            } else {
                Err(Error::invalid(format!("gcpsm key `{key}` is not a secret name")))
            };
        }
        if !valid_secret_id(key) {
            return Err(Error::invalid(format!(
                "gcpsm key `{key}`: a secret id is 1-255 characters of letters, digits, `-` and `_`"
            )));
        }
        Ok(format!("{}/secrets/{key}", self.parent))
    }

    fn map(&self, op: &str, subject: &Subject, e: CallError) -> Error {
        match e {
            CallError::Core(e) => e,
            CallError::Api(e) => gerr::map(op, subject, &e, &self.endpoint, self.attempt_timeout),
        }
    }

    /// One API call with bounded retries; every attempt is recorded in the call stats.
    async fn call<T, F, Fut>(&self, op: &'static str, idempotent: bool, f: F) -> std::result::Result<T, CallError>
    where
        F: Fn(&SecretManagerService) -> Fut,
        Fut: Future<Output = google_cloud_gax::Result<T>>,
    {
        let client = self.client().await?;
        let start = Instant::now();
        // Core's one retry policy; the whole call stays within the retry time limit.
        let backoff = secretsync_core::backoff::Backoff {
            base: self.initial_backoff,
            cap: Duration::from_secs(5),
            max_retries: self.max_attempts.saturating_sub(1),
            max_retry_after: self.retry_time_limit,
            total: Some(self.retry_time_limit),
        };
        let mut attempt = 0u32;
        loop {
            match f(client).await {
                Ok(v) => {
                    self.stats.record(op, "ok");
                    return Ok(v);
                }
                Err(e) => {
                    self.stats.record(op, gerr::status_label(&e));
                    if !gerr::is_transient(&e, idempotent) {
                        return Err(CallError::Api(e));
                    }
                    let Some(wait) = backoff.wait(attempt, gerr::server_retry_after(&e), start.elapsed()) else {
                        return Err(CallError::Api(e));
                    };
                    attempt += 1;
                    tracing::debug!(
                        operation = op,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "gcpsm: retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// AccessSecretVersion of `secret/versions/version`, with the CRC32C check.
    async fn access(&self, secret: &str, version: &str) -> std::result::Result<Fetched, CallError> {
        let name = format!("{secret}/versions/{version}");
        let resp = self
            .call("AccessSecretVersion", true, |c| {
                c.access_secret_version().set_name(name.clone()).send()
            })
            .await?;
        let resolved = version_id(&resp.name);
        let payload = resp.payload.unwrap_or_default();
        if let Some(want) = payload.data_crc32c {
            let got = i64::from(crc32c::crc32c(&payload.data));
            if got != want {
                return Err(CallError::Core(Error::Provider {
                    provider: PROVIDER.into(),
                    message: format!(
                        "AccessSecretVersion of version {resolved} of `{}`: the payload failed its CRC32C check (corrupted in transit)",
                        short(secret)
                    ),
                    retryable: true,
                    source: None,
                }));
            }
        }
        let value = SecretValue::new(payload.data.to_vec());
        Ok(Fetched {
            value,
            version: Some(resolved),
        })
    }

    /// Every version of a secret, newest first (following every page).
    async fn list_versions(
        &self,
        secret: &str,
        filter: &str,
    ) -> std::result::Result<Vec<(u64, String, State)>, CallError> {
        let mut out = vec![];
        let mut token = String::new();
        loop {
            let t = token.clone();
            let page = self
                .call("ListSecretVersions", true, |c| {
                    c.list_secret_versions()
                        .set_parent(secret.to_string())
                        .set_page_size(self.page_size)
                        .set_page_token(t.clone())
                        .set_filter(filter.to_string())
                        .send()
                })
                .await?;
            for v in page.versions {
                let id = version_id(&v.name);
                let n = id.parse::<u64>().unwrap_or(0);
                out.push((n, id, v.state));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        // Servers list newest first; emulators may not, so sort.
        out.sort_by_key(|v| std::cmp::Reverse(v.0));
        Ok(out)
    }

    /// The newest ENABLED version's id.
    async fn newest_enabled(&self, secret: &str) -> std::result::Result<Option<String>, CallError> {
        let versions = self.list_versions(secret, "state:ENABLED").await?;
        Ok(versions
            .into_iter()
            .find(|(_, _, s)| *s == State::Enabled)
            .map(|(_, id, _)| id))
    }

    async fn get_inner(&self, key: &RemoteKey) -> Result<Fetched> {
        let secret = self.secret_name(&key.key)?;
        let version = key.version.as_deref().filter(|v| !v.is_empty()).unwrap_or("latest");
        if !valid_version(version) {
            return Err(Error::invalid(format!(
                "gcpsm version `{version}` of `{}`: expected a number, an alias or `latest`",
                key.key
            )));
        }
        let subject = self.subject(&key.key, Some(version));
        match self.access(&secret, version).await {
            Ok(f) => Ok(f),
            Err(CallError::Api(e))
                if version == "latest"
                    && self.policy == VersionSelectionPolicy::LatestOrFetch
                    && gerr::code_of(&e) == Some(Code::FailedPrecondition) =>
            {
                let newest = self
                    .newest_enabled(&secret)
                    .await
                    .map_err(|e| self.map("ListSecretVersions", &subject, e))?;
                let Some(v) = newest else {
                    return Err(Error::not_found(format!(
                        "no ENABLED version of `{}` ({}); the latest one is not readable and policy LatestOrFetch found no other",
                        key.key,
                        self.scope()
                    )));
                };
                self.access(&secret, &v)
                    .await
                    .map_err(|e| self.map("AccessSecretVersion", &self.subject(&key.key, Some(&v)), e))
            }
            Err(e) => Err(self.map("AccessSecretVersion", &subject, e)),
        }
    }

    /// One change token: GetSecretVersion returns the version `latest` resolves to.
    async fn token_of(&self, key: &RemoteKey) -> Result<Option<ChangeToken>> {
        let secret = self.secret_name(&key.key)?;
        let version = key.version.as_deref().filter(|v| !v.is_empty()).unwrap_or("latest");
        if !valid_version(version) {
            return Err(Error::invalid(format!(
                "gcpsm version `{version}` of `{}`: expected a number, an alias or `latest`",
                key.key
            )));
        }
        let subject = self.subject(&key.key, Some(version));
        let name = format!("{secret}/versions/{version}");
        let v = self
            .call("GetSecretVersion", true, |c| {
                c.get_secret_version().set_name(name.clone()).send()
            })
            .await
            .map_err(|e| self.map("GetSecretVersion", &subject, e))?;
        let id = version_id(&v.name);
        if v.state == State::Enabled {
            return Ok(Some(id));
        }
        if version == "latest" && self.policy == VersionSelectionPolicy::LatestOrFetch {
            self.budget.spend();
            return self
                .newest_enabled(&secret)
                .await
                .map_err(|e| self.map("ListSecretVersions", &subject, e));
        }
        Err(Error::Provider {
            provider: PROVIDER.into(),
            message: format!(
                "version {id} of `{}` is {} ({}); enable it, select another version, or use secretVersionSelectionPolicy LatestOrFetch",
                key.key,
                state_name(&v.state),
                self.scope()
            ),
            retryable: false,
            source: None,
        })
    }

    /// GetSecret; `Ok(None)` when it does not exist.
    async fn get_secret(&self, key: &str, secret: &str) -> Result<Option<model::Secret>> {
        let subject = self.subject(key, None);
        match self
            .call("GetSecret", true, |c| {
                c.get_secret().set_name(secret.to_string()).send()
            })
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(CallError::Api(e)) if gerr::code_of(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(self.map("GetSecret", &subject, e)),
        }
    }
}

/// The id of a full secret name, for messages.
fn short(secret: &str) -> &str {
    secret.rsplit('/').next().unwrap_or(secret)
}

fn is_managed(s: &model::Secret) -> bool {
    s.labels.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

impl GcpSecretManager {
    /// The current token of one key (a metadata call), remembered with when it was checked.
    async fn checked_token(&self, i: usize, k: &RemoteKey) -> (usize, Result<Option<ChangeToken>>) {
        let r = self.token_of(k).await;
        if let Ok(Some(t)) = &r {
            self.tokens
                .lock()
                .expect("tokens lock")
                .insert(k.clone(), (t.clone(), std::time::Instant::now()));
        }
        (i, r)
    }
}

#[async_trait]
impl SecretSource for GcpSecretManager {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> SourceCapabilities {
        let mut c = SourceCapabilities::none();
        c.find_by_name = true;
        c.find_by_path = true;
        c.find_by_tags = true;
        c.change_tokens = true;
        c.metadata = true;
        c.versions = true;
        c.binary = true;
        c
    }

    async fn get(&self, key: &RemoteKey) -> Result<Fetched> {
        let r = self.get_inner(key).await;
        // An access tells the current version for free: it is a fresh token.
        if let Ok(Fetched { version: Some(v), .. }) = &r
            && key.version.as_deref().is_none_or(|v| v == "latest")
        {
            self.tokens
                .lock()
                .expect("tokens lock")
                .insert(key.clone(), (v.clone(), std::time::Instant::now()));
        }
        r
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        let re = match &query.name_regexp {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| Error::invalid(format!("find.name.regexp: {e}")))?),
            None => None,
        };
        let mut clauses = vec![];
        for (k, v) in &query.tags {
            if !valid_label_part(k) || !(v.is_empty() || valid_label_part(v)) {
                return Err(Error::invalid(format!(
                    "find.tags `{k}`: GCP label keys and values are letters, digits, `-` and `_`"
                )));
            }
            clauses.push(format!("labels.{k}={v}"));
        }
        let filter = clauses.join(" AND ");
        let subject = self.subject(&format!("{}/secrets", self.parent), None);
        let mut names = BTreeSet::new();
        let mut token = String::new();
        loop {
            self.budget.spend();
            let t = token.clone();
            let page = self
                .call("ListSecrets", true, |c| {
                    c.list_secrets()
                        .set_parent(self.parent.clone())
                        .set_page_size(self.page_size)
                        .set_page_token(t.clone())
                        .set_filter(filter.clone())
                        .send()
                })
                .await
                .map_err(|e| self.map("ListSecrets", &subject, e))?;
            for s in page.secrets {
                let id = short(&s.name);
                // The server filters by labels; check again for servers that ignore filters.
                let labels_ok = query.tags.iter().all(|(k, v)| s.labels.get(k) == Some(v));
                let name_ok = re.as_ref().is_none_or(|re| re.is_match(id));
                let path_ok = query.path.as_ref().is_none_or(|p| id.starts_with(p.as_str()));
                if labels_ok && name_ok && path_ok {
                    names.insert(id.to_string());
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        Ok(names.into_iter().collect())
    }

    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        // The budget goes to the keys checked longest ago (never-checked first); keys past
        // it keep their last known token until a later cycle, so an unchanged cycle makes no
        // billed access even when it has more keys than the budget. Keys never seen are
        // "unknown" and get read.
        let known: std::collections::HashMap<RemoteKey, (ChangeToken, std::time::Instant)> = {
            let t = self.tokens.lock().expect("tokens lock");
            keys.iter()
                .filter_map(|k| t.get(k).map(|v| (k.clone(), v.clone())))
                .collect()
        };
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| known.get(&keys[i]).map(|(_, at)| *at));
        let mut checked = vec![false; keys.len()];
        for &i in &order {
            checked[i] = self.budget.try_take();
        }
        // Keys past the budget answer at once; only the checked ones make calls, at most
        // DEFAULT_READ_CONCURRENCY at a time (no future per key is built up front).
        let mut out: Vec<Result<Option<ChangeToken>>> = Vec::with_capacity(keys.len());
        let mut slots: Vec<usize> = vec![];
        for (i, (k, check)) in keys.iter().zip(&checked).enumerate() {
            if *check {
                slots.push(i);
                out.push(Ok(None));
            } else {
                out.push(Ok(known.get(k).map(|(t, _)| t.clone())));
            }
        }
        let mut pending = slots.into_iter();
        let mut in_flight = futures::stream::FuturesOrdered::new();
        loop {
            while in_flight.len() < DEFAULT_READ_CONCURRENCY {
                match pending.next() {
                    Some(i) => in_flight.push_back(self.checked_token(i, &keys[i])),
                    None => break,
                }
            }
            match in_flight.next().await {
                Some((i, r)) => out[i] = r,
                None => break,
            }
        }
        out
    }

    async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
        let secret = self.secret_name(key)?;
        self.budget.spend();
        let s = self
            .get_secret(key, &secret)
            .await?
            .ok_or_else(|| Error::not_found(format!("secret `{key}` ({})", self.scope())))?;
        // Labels win over annotations of the same key.
        let mut out: BTreeMap<String, String> = s.annotations.into_iter().collect();
        out.extend(s.labels);
        Ok(out)
    }

    fn call_stats(&self) -> Option<&CallStats> {
        Some(&self.stats)
    }
}

#[async_trait]
impl SecretWriter for GcpSecretManager {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        let secret = self.secret_name(key)?;
        self.budget.spend();
        let Some(s) = self.get_secret(key, &secret).await? else {
            return Ok(None);
        };
        let versions = self
            .list_versions(&secret, "")
            .await
            .map_err(|e| self.map("ListSecretVersions", &self.subject(key, None), e))?;
        Ok(Some(RemoteDescription {
            current_version: versions
                .iter()
                .find(|(_, _, s)| *s == State::Enabled)
                .map(|(_, id, _)| id.clone()),
            managed: is_managed(&s),
            versions: versions
                .into_iter()
                .map(|(_, id, s)| VersionInfo {
                    id,
                    enabled: s == State::Enabled,
                })
                .collect(),
        }))
    }

    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        let key = &request.key;
        let secret = self.secret_name(key)?;
        if request.property.is_none() && request.value.is_empty() {
            return Err(Error::invalid(format!(
                "refusing to write an empty value to `{key}`: GCP Secret Manager rejects empty payloads"
            )));
        }
        // Create the secret, or check that we may write to it.
        let mut created = false;
        match self.get_secret(key, &secret).await? {
            Some(s) => {
                if !request.force && !is_managed(&s) {
                    return Err(Error::PermissionDenied {
                        what: format!(
                            "write to `{key}` ({}): not managed by secretsync (no label {MANAGED_BY_KEY}={MANAGED_BY_VALUE}); force to override",
                            self.scope()
                        ),
                    });
                }
            }
            None => {
                let parent = secret
                    .rsplit_once("/secrets/")
                    .map(|(p, _)| p.to_string())
                    .unwrap_or_else(|| self.parent.clone());
                let id = short(&secret).to_string();
                let mut body = model::Secret::new().set_labels([(MANAGED_BY_KEY, MANAGED_BY_VALUE)]);
                // Regional secrets live in their location and take no replication policy.
                if !parent.contains("/locations/") {
                    body = body
                        .set_replication(model::Replication::new().set_automatic(model::replication::Automatic::new()));
                }
                match self
                    .call("CreateSecret", false, |c| {
                        c.create_secret()
                            .set_parent(parent.clone())
                            .set_secret_id(id.clone())
                            .set_secret(body.clone())
                            .send()
                    })
                    .await
                {
                    Ok(_) => created = true,
                    // Created concurrently: check it like an existing one.
                    Err(CallError::Api(e)) if gerr::code_of(&e) == Some(Code::AlreadyExists) => {
                        let s = self
                            .get_secret(key, &secret)
                            .await?
                            .ok_or_else(|| Error::not_found(format!("secret `{key}` ({})", self.scope())))?;
                        if !request.force && !is_managed(&s) {
                            return Err(Error::PermissionDenied {
                                what: format!(
                                    "write to `{key}` ({}): not managed by secretsync; force to override",
                                    self.scope()
                                ),
                            });
                        }
                    }
                    Err(e) => return Err(self.map("CreateSecret", &self.subject(key, None), e)),
                }
            }
        }
        // The version `latest` points at now, to disable it afterwards.
        let previous = if created {
            None
        } else {
            let name = format!("{secret}/versions/latest");
            match self
                .call("GetSecretVersion", true, |c| {
                    c.get_secret_version().set_name(name.clone()).send()
                })
                .await
            {
                Ok(v) => Some((version_id(&v.name), v.state == State::Enabled)),
                Err(CallError::Api(e)) if gerr::code_of(&e) == Some(Code::NotFound) => None,
                Err(e) => {
                    return Err(self.map("GetSecretVersion", &self.subject(key, Some("latest")), e));
                }
            }
        };
        let value = match &request.property {
            None => request.value.clone(),
            Some(p) => {
                let current = match &previous {
                    Some(_) => Some(self.get_inner(&RemoteKey::new(key.clone())).await?.value),
                    None => None,
                };
                merge_property(current.as_ref(), p, &request.value, key)?
            }
        };
        if value.is_empty() {
            return Err(Error::invalid(format!(
                "refusing to write an empty value to `{key}`: GCP Secret Manager rejects empty payloads"
            )));
        }
        let crc = i64::from(crc32c::crc32c(value.expose()));
        let payload = model::SecretPayload::new()
            .set_data(bytes_of(&value))
            .set_data_crc32c(crc);
        let added = self
            .call("AddSecretVersion", false, |c| {
                c.add_secret_version()
                    .set_parent(secret.clone())
                    .set_payload(payload.clone())
                    .send()
            })
            .await
            .map_err(|e| self.map("AddSecretVersion", &self.subject(key, None), e))?;
        let version = version_id(&added.name);
        let mut disabled_previous = false;
        if request.disable_previous
            && let Some((prev, true)) = &previous
            && prev != &version
        {
            self.disable_version(key, prev).await.map_err(|e| {
                e.context(format!(
                    "added version {version} of `{key}`, but disabling the previous version {prev} failed"
                ))
            })?;
            disabled_previous = true;
        }
        Ok(match (created, previous) {
            (true, _) => WriteOutcome::Created { version: Some(version) },
            (false, previous) => WriteOutcome::Updated {
                version: Some(version),
                previous: previous.map(|(p, _)| p),
                disabled_previous,
            },
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let secret = self.secret_name(key)?;
        let Some(s) = self.get_secret(key, &secret).await? else {
            return Ok(());
        };
        let mark = s.labels.get(MANAGED_BY_KEY).map(String::as_str);
        if mark != Some(MANAGED_BY_VALUE) && mark != Some(secretsync_core::source::ESO_MANAGED_BY_VALUE) {
            return Err(Error::PermissionDenied {
                what: format!(
                    "delete `{key}` ({}): not managed by secretsync or external-secrets (no label {MANAGED_BY_KEY}); left alone",
                    self.scope()
                ),
            });
        }
        // GCP has no recovery window: the etag makes the delete apply only to the secret
        // just checked, not to one re-created meanwhile.
        let etag = s.etag.clone();
        match self
            .call("DeleteSecret", false, |c| {
                c.delete_secret().set_name(secret.clone()).set_etag(etag.clone()).send()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(CallError::Api(e)) if gerr::code_of(&e) == Some(Code::NotFound) => Ok(()),
            Err(e) => Err(self.map("DeleteSecret", &self.subject(key, None), e)),
        }
    }

    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        let secret = self.secret_name(key)?;
        let version = version_id(version);
        if !valid_version(&version) {
            return Err(Error::invalid(format!(
                "gcpsm version `{version}` of `{key}`: expected a number"
            )));
        }
        let name = format!("{secret}/versions/{version}");
        self.call("DisableSecretVersion", true, |c| {
            c.disable_secret_version().set_name(name.clone()).send()
        })
        .await
        .map(|_| ())
        .map_err(|e| self.map("DisableSecretVersion", &self.subject(key, Some(&version)), e))
    }
}

/// The value's bytes for the request body. This copy is not zeroized: the client library
/// takes `bytes::Bytes`.
fn bytes_of(v: &SecretValue) -> Vec<u8> {
    v.expose().to_vec()
}

// Building lives beside what it builds, so the settings module does not depend on it.
impl GcpSecretManagerBuilder {
    /// Checks the settings and builds the source. No network call is made; the client
    /// connects on first use.
    pub fn build(self) -> Result<GcpSecretManager> {
        // Values come back over this endpoint: plain http only to loopback (an emulator).
        secretsync_core::net::check_endpoint(&self.effective_endpoint(), "GCP Secret Manager endpoint")?;
        GcpSecretManager::from_builder(self)
    }
}
