//! Secret Manager change notifications through a Pub/Sub pull subscription:
//! [`PubSubEvents`] (an [`EventSource`]) and [`PubSubEventsFactory`] (scheme `gcp-pubsub`).
//!
//! Secret Manager publishes a message to each topic of a secret when the secret or one of
//! its versions changes. The message's attributes say what happened (`eventType`:
//! `SECRET_VERSION_ADD`, `SECRET_VERSION_ENABLE`, `SECRET_VERSION_DISABLE`,
//! `SECRET_VERSION_DESTROY`, `SECRET_UPDATE`, `SECRET_DELETE`, `SECRET_ROTATE`, …) and to
//! which secret (`secretId`: `projects/<p>/secrets/<name>`; `versionId` for version events);
//! `data` is the JSON of the Secret or SecretVersion resource, which is not needed here.
//!
//! The subscription is pulled over Pub/Sub's REST API (`:pull`, `:acknowledge`), which the
//! Pub/Sub emulator serves too. REST rather than a gRPC client: two calls, and no protobuf
//! or tonic build for them.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use secretsync_core::error::redact_quoted;
use secretsync_core::events::{
    AckToken, ChangeEvent, Delivery, EVENTS_ANNOTATION, EventAddress, EventSource, EventSourceFactory,
};
use secretsync_core::manifest::Store;
use secretsync_core::registry::CredentialResolver;
use secretsync_core::source::CallStats;
use secretsync_core::{Error, Result};
use serde::Deserialize;

use crate::config::{GcpCredentials, valid_name_part};
use crate::manifest::GcpProvider;

/// The scheme of the `secretsync.io/events` annotation this source serves.
pub const PUBSUB_SCHEME: &str = "gcp-pubsub";
/// Pub/Sub's endpoint.
pub const PUBSUB_ENDPOINT: &str = "https://pubsub.googleapis.com";
/// The Pub/Sub emulator's `host:port`, by Google's convention: plain HTTP, no credentials.
pub const PUBSUB_EMULATOR_HOST_ENV: &str = "PUBSUB_EMULATOR_HOST";
/// How long one pull waits at the server for messages.
pub const DEFAULT_PULL_WAIT: Duration = Duration::from_secs(20);
/// Messages one pull may return.
pub const DEFAULT_MAX_MESSAGES: u32 = 100;
/// Shortest time between the starts of two pulls that found nothing, so a server that
/// answers an empty pull at once does not make an idle source spin.
pub const DEFAULT_MIN_IDLE_INTERVAL: Duration = Duration::from_secs(2);

/// What errors and call counts name this source by.
const SOURCE: &str = "gcp-pubsub";
/// Ack ids per `:acknowledge` call (a request is limited to 512 KB; ack ids are a few
/// hundred bytes).
const ACK_CHUNK: usize = 500;

/// Builds a [`PubSubEvents`] for one subscription.
///
/// Endpoint: [`with_endpoint`](Self::with_endpoint), else [`PUBSUB_EMULATOR_HOST_ENV`]
/// (read by [`from_env`](Self::from_env)), else [`PUBSUB_ENDPOINT`]. An emulator gets no
/// credentials; an explicit `http://` endpoint is refused unless it is loopback, so a token
/// never crosses a network in clear text.
///
/// ```no_run
/// # async fn sample() -> secretsync_core::Result<()> {
/// use secretsync_core::events::EventSource as _;
/// use secretsync_gcp::PubSubEventsBuilder;
/// let events = PubSubEventsBuilder::from_env("projects/p/subscriptions/secrets").build()?;
/// for d in events.receive().await? {
///     println!("{:?}", d.events);
///     events.ack(d.ack.as_slice()).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PubSubEventsBuilder {
    subscription: String,
    endpoint: Option<String>,
    emulator: bool,
    credentials: GcpCredentials,
    max_messages: u32,
    pull_wait: Duration,
    min_idle_interval: Duration,
    secret_parents: Vec<String>,
}

impl fmt::Debug for PubSubEventsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSubEventsBuilder")
            .field("subscription", &self.subscription)
            .field("endpoint", &self.endpoint)
            .field("emulator", &self.emulator)
            .field("credentials", &self.credentials)
            .field("max_messages", &self.max_messages)
            .field("pull_wait", &self.pull_wait)
            .finish_non_exhaustive()
    }
}

impl PubSubEventsBuilder {
    /// The subscription `projects/<p>/subscriptions/<s>`, Application Default Credentials,
    /// the global endpoint.
    pub fn new(subscription: impl Into<String>) -> Self {
        Self {
            subscription: subscription.into(),
            endpoint: None,
            emulator: false,
            credentials: GcpCredentials::ApplicationDefault,
            max_messages: DEFAULT_MAX_MESSAGES,
            pull_wait: DEFAULT_PULL_WAIT,
            min_idle_interval: DEFAULT_MIN_IDLE_INTERVAL,
            secret_parents: vec![],
        }
    }

    /// [`new`](Self::new), then [`PUBSUB_EMULATOR_HOST_ENV`] when set.
    pub fn from_env(subscription: impl Into<String>) -> Self {
        let b = Self::new(subscription);
        match std::env::var(PUBSUB_EMULATOR_HOST_ENV)
            .ok()
            .filter(|h| !h.trim().is_empty())
        {
            Some(h) => b.with_emulator_host(h.trim()),
            None => b,
        }
    }

    /// The endpoint URL (`https://…`, or `http://127.0.0.1:port` for a local emulator).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self.emulator = false;
        self
    }

    /// The Pub/Sub emulator at `host:port`: plain HTTP, no credentials sent.
    pub fn with_emulator_host(mut self, host: impl AsRef<str>) -> Self {
        let host = host.as_ref();
        self.endpoint = Some(if host.contains("://") {
            host.to_string()
        } else {
            format!("http://{host}")
        });
        self.emulator = true;
        self.credentials = GcpCredentials::Anonymous;
        self
    }

    /// How to authenticate.
    pub fn with_credentials(mut self, credentials: GcpCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Messages one pull may return (1..=1000).
    pub fn with_max_messages(mut self, n: u32) -> Self {
        self.max_messages = n.clamp(1, 1000);
        self
    }

    /// How long one pull waits at the server for messages (at least 1 s).
    pub fn with_pull_wait(mut self, wait: Duration) -> Self {
        self.pull_wait = wait.max(Duration::from_secs(1));
        self
    }

    /// Shortest time between the starts of two pulls that found nothing.
    pub fn with_min_idle_interval(mut self, interval: Duration) -> Self {
        self.min_idle_interval = interval;
        self
    }

    /// A parent (`projects/<project id>` or `projects/<p>/locations/<l>`) under which an
    /// event's secret is also named: Secret Manager's notifications name the project by
    /// number (`projects/123456/secrets/db`), while a `remoteRef.key` written in full
    /// usually names it by id. The factory adds the store's.
    pub fn with_secret_parent(mut self, parent: impl Into<String>) -> Self {
        self.secret_parents.push(parent.into());
        self
    }

    /// Builds the source. No request is sent; credentials are looked up on first use.
    pub fn build(self) -> Result<PubSubEvents> {
        check_subscription(&self.subscription)?;
        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| PUBSUB_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let plain_http = endpoint.starts_with("http://");
        if !self.emulator {
            secretsync_core::net::check_endpoint(&endpoint, "Pub/Sub endpoint")?;
        } else if !(plain_http || endpoint.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "{PUBSUB_EMULATOR_HOST_ENV}: `{endpoint}` is not host:port or an http(s) URL"
            )));
        }
        let auth = match (&self.credentials, plain_http) {
            // Never send a token in clear text: an http:// endpoint is an emulator.
            (_, true) | (GcpCredentials::Anonymous, _) => Auth::Anonymous,
            (GcpCredentials::ServiceAccountKey(key), false) => {
                let json: serde_json::Value = serde_json::from_slice(key.expose()).map_err(|_| {
                    Error::invalid("gcp-pubsub auth.secretRef: the service-account key is not valid JSON")
                })?;
                let c = google_cloud_auth::credentials::service_account::Builder::new(json)
                    .build()
                    .map_err(|e| {
                        Error::invalid(format!(
                            "gcp-pubsub auth.secretRef: not a usable service-account key: {}",
                            redact_quoted(&e.to_string())
                        ))
                    })?;
                Auth::Google {
                    kind: "ServiceAccountKey",
                    credentials: tokio::sync::OnceCell::new_with(Some(c)),
                }
            }
            (GcpCredentials::ApplicationDefault, false) => Auth::Google {
                kind: "ApplicationDefault",
                credentials: tokio::sync::OnceCell::new(),
            },
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::provider(SOURCE, format!("cannot set up an HTTP client: {e}"), false))?;
        Ok(PubSubEvents {
            subscription: self.subscription,
            endpoint,
            emulator: plain_http,
            auth,
            http,
            max_messages: self.max_messages,
            pull_wait: self.pull_wait,
            min_idle_interval: self.min_idle_interval,
            secret_parents: self.secret_parents,
            stats: Arc::new(CallStats::new()),
        })
    }
}

enum Auth {
    Anonymous,
    Google {
        kind: &'static str,
        credentials: tokio::sync::OnceCell<Credentials>,
    },
}

/// Secret Manager notifications from a Pub/Sub pull subscription.
///
/// `receive` is one `:pull` that the server holds up to the pull wait (20 s by default)
/// until messages arrive; `ack` is `:acknowledge`. Messages not acknowledged within the
/// subscription's ack deadline are delivered again, so a crash between receiving and
/// handling loses nothing.
pub struct PubSubEvents {
    subscription: String,
    endpoint: String,
    emulator: bool,
    auth: Auth,
    http: reqwest::Client,
    max_messages: u32,
    pull_wait: Duration,
    min_idle_interval: Duration,
    secret_parents: Vec<String>,
    stats: Arc<CallStats>,
}

impl fmt::Debug for PubSubEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = match &self.auth {
            Auth::Anonymous => "Anonymous",
            Auth::Google { kind, .. } => kind,
        };
        f.debug_struct("PubSubEvents")
            .field("subscription", &self.subscription)
            .field("endpoint", &self.endpoint)
            .field("credentials", &credentials)
            .finish_non_exhaustive()
    }
}

/// `:pull`'s answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<ReceivedMessage>,
}

/// One received message, as Pub/Sub's REST API returns it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceivedMessage {
    ack_id: String,
    #[serde(default)]
    message: PubsubMessage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PubsubMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    publish_time: Option<String>,
}

/// Google's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

impl PubSubEvents {
    /// The subscription it pulls.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls made so far, by operation (`Pull`, `Acknowledge`) and outcome.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    async fn auth_headers(&self, op: &str) -> Result<Option<reqwest::header::HeaderMap>> {
        let Auth::Google { kind, credentials } = &self.auth else {
            return Ok(None);
        };
        let unauthenticated = |e: String| Error::Unauthenticated {
            what: format!(
                "{op} of Pub/Sub subscription `{}`: could not get Google credentials ({kind}: {e}); configure auth.secretRef, Workload Identity or Application Default Credentials",
                self.subscription
            ),
        };
        let c = credentials
            .get_or_try_init(|| async {
                google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|e| unauthenticated(redact_quoted(&e.to_string())))
            })
            .await?;
        match c.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(Some(data)),
            Ok(CacheableResource::NotModified) => Err(unauthenticated("no headers returned".into())),
            Err(e) => Err(unauthenticated(redact_quoted(&e.to_string()))),
        }
    }

    /// One POST to `{endpoint}/v1/{subscription}:{verb}`; the parsed body, or the error.
    async fn call(
        &self,
        verb: &str,
        op: &'static str,
        body: serde_json::Value,
        wait: Option<Duration>,
    ) -> Result<Answer> {
        let url = format!("{}/v1/{}:{verb}", self.endpoint, self.subscription);
        let mut req = self.http.post(&url).json(&body);
        if let Some(h) = self.auth_headers(op).await? {
            req = req.headers(h);
        }
        let client_limit = match wait {
            Some(w) => {
                let secs = w.as_secs().max(1);
                // Google's system parameter bounding how long the server holds the call;
                // the emulator (a gRPC server behind an HTTP bridge) honours the gRPC one.
                req = req.header("X-Server-Timeout", secs.to_string());
                if self.emulator {
                    req = req.header("grpc-timeout", format!("{secs}S"));
                }
                w + Duration::from_secs(10)
            }
            None => Duration::from_secs(30),
        };
        let resp = match req.timeout(client_limit).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() && wait.is_some() => {
                self.stats.record(op, "ok");
                return Ok(Answer::GaveUp);
            }
            Err(e) => {
                self.stats.record(op, "error");
                let why = if e.is_connect() {
                    "connection failed"
                } else if e.is_timeout() {
                    "timed out"
                } else {
                    "request failed"
                };
                return Err(Error::provider(
                    SOURCE,
                    format!(
                        "{op} of Pub/Sub subscription `{}`: cannot reach Pub/Sub at {} ({why})",
                        self.subscription,
                        host_of(&self.endpoint)
                    ),
                    true,
                ));
            }
        };
        let status = resp.status();
        let text = resp.bytes().await.map_err(|_| {
            self.stats.record(op, "error");
            Error::provider(
                SOURCE,
                format!(
                    "{op} of Pub/Sub subscription `{}`: the response from {} could not be read",
                    self.subscription,
                    host_of(&self.endpoint)
                ),
                true,
            )
        })?;
        if status.is_success() {
            self.stats.record(op, "ok");
            return Ok(Answer::Body(text.to_vec()));
        }
        let err: ErrorBody = serde_json::from_slice(&text).unwrap_or_default();
        let e = self.map_status(op, status.as_u16(), &err.error);
        self.stats.record(
            op,
            match &e {
                Error::NotFound { .. } => "not_found",
                Error::PermissionDenied { .. } | Error::Unauthenticated { .. } => "denied",
                Error::Throttled { .. } => "throttled",
                _ => "error",
            },
        );
        Err(e)
    }

    fn map_status(&self, op: &str, status: u16, detail: &ErrorDetail) -> Error {
        let sub = &self.subscription;
        let at = host_of(&self.endpoint);
        let msg = if detail.message.is_empty() {
            format!("HTTP {status}")
        } else {
            redact_quoted(&detail.message)
        };
        match (status, detail.status.as_str()) {
            (404, _) | (_, "NOT_FOUND") => Error::not_found(format!(
                "Pub/Sub subscription `{sub}` at {at} ({msg}); create it with `gcloud pubsub subscriptions create`"
            )),
            (403, _) | (_, "PERMISSION_DENIED") => Error::PermissionDenied {
                what: format!(
                    "{op} of Pub/Sub subscription `{sub}`: the caller needs roles/pubsub.subscriber (permission pubsub.subscriptions.consume) on it ({msg})"
                ),
            },
            (401, _) | (_, "UNAUTHENTICATED") => Error::Unauthenticated {
                what: format!("{op} of Pub/Sub subscription `{sub}`: the credentials were rejected ({msg})"),
            },
            (429, _) | (_, "RESOURCE_EXHAUSTED") => Error::Throttled {
                provider: SOURCE.into(),
                retry_after: None,
            },
            (400, _) | (_, "INVALID_ARGUMENT") => {
                Error::invalid(format!("{op} of Pub/Sub subscription `{sub}` at {at}: {msg}"))
            }
            _ => Error::provider(
                SOURCE,
                format!("{op} of Pub/Sub subscription `{sub}` at {at}: HTTP {status} ({msg})"),
                status >= 500,
            ),
        }
    }
}

/// The body of a successful call, or a pull the client stopped waiting for.
enum Answer {
    Body(Vec<u8>),
    GaveUp,
}

#[async_trait]
impl EventSource for PubSubEvents {
    fn scheme(&self) -> &'static str {
        PUBSUB_SCHEME
    }

    async fn receive(&self) -> Result<Vec<Delivery>> {
        let started = Instant::now();
        let body = serde_json::json!({ "maxMessages": self.max_messages });
        let out = match self.call("pull", "Pull", body, Some(self.pull_wait)).await? {
            Answer::GaveUp => vec![],
            Answer::Body(bytes) => {
                let resp: PullResponse = serde_json::from_slice(&bytes).map_err(|_| {
                    Error::provider(
                        SOURCE,
                        format!(
                            "Pull of Pub/Sub subscription `{}`: the answer from {} is not a pull response",
                            self.subscription,
                            host_of(&self.endpoint)
                        ),
                        true,
                    )
                })?;
                resp.received_messages
                    .into_iter()
                    .map(|m| delivery(m, &self.secret_parents))
                    .collect()
            }
        };
        if out.is_empty() {
            let rest = self.min_idle_interval.saturating_sub(started.elapsed());
            if !rest.is_zero() {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(out)
    }

    async fn ack(&self, tokens: &[AckToken]) -> Result<()> {
        for chunk in tokens.chunks(ACK_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|t| t.0.as_str()).collect();
            self.call("acknowledge", "Acknowledge", serde_json::json!({ "ackIds": ids }), None)
                .await?;
        }
        Ok(())
    }
}

/// What one message says: a Secret Manager notification names a secret (by id, by the
/// full name it carries, and by its full name under each of `parents`); anything else is
/// acknowledged and ignored.
fn delivery(m: ReceivedMessage, parents: &[String]) -> Delivery {
    let ack = Some(AckToken(m.ack_id));
    let msg = m.message;
    let Some(kind) = msg.attributes.get("eventType").filter(|k| !k.is_empty()) else {
        return Delivery { events: vec![], ack };
    };
    // The full resource name: the `secretId` attribute, else the `name` in the resource JSON
    // (`projects/p/secrets/s` or `…/versions/3`). TOPIC_CONFIGURED test messages have neither.
    let secret_id = msg.attributes.get("secretId").cloned().or_else(|| {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(msg.data.as_deref()?)
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
        let name = v.get("name")?.as_str()?;
        Some(name.split("/versions/").next().unwrap_or(name).to_string())
    });
    let Some(name) = secret_id.as_deref().and_then(secret_name) else {
        return Delivery { events: vec![], ack };
    };
    let full = secret_id.clone().unwrap_or_default();
    let mut keys = vec![name.to_string()];
    if full != name {
        keys.push(full);
    }
    for p in parents {
        let alt = format!("{}/secrets/{name}", p.trim_end_matches('/'));
        if !keys.contains(&alt) {
            keys.push(alt);
        }
    }
    let published = msg.publish_time.as_deref().and_then(parse_time);
    Delivery {
        events: vec![ChangeEvent {
            keys,
            kind: kind.clone(),
            published,
        }],
        ack,
    }
}

/// `db` of `projects/p/secrets/db` or `projects/p/locations/l/secrets/db`.
fn secret_name(resource: &str) -> Option<&str> {
    let (_, rest) = resource.rsplit_once("/secrets/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

fn parse_time(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(SystemTime::from)
}

/// `host:port` of a URL, for messages.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// `projects/<project>/subscriptions/<subscription>`, with Pub/Sub's naming rules.
fn check_subscription(s: &str) -> Result<()> {
    let expected = "expected `projects/<project>/subscriptions/<subscription>`";
    let parts: Vec<&str> = s.split('/').collect();
    let [p, project, sub_kw, sub] = parts.as_slice() else {
        return Err(Error::invalid(format!("Pub/Sub subscription `{s}`: {expected}")));
    };
    if *p != "projects" || *sub_kw != "subscriptions" {
        return Err(Error::invalid(format!("Pub/Sub subscription `{s}`: {expected}")));
    }
    if !valid_name_part(project) {
        return Err(Error::invalid(format!(
            "Pub/Sub subscription `{s}`: `{project}` is not a valid project id"
        )));
    }
    // Pub/Sub: 3-255 characters, starting with a letter, of letters, digits and `-_.~+%`,
    // not starting with `goog`.
    let ok = (3..=255).contains(&sub.len())
        && sub.starts_with(|c: char| c.is_ascii_alphabetic())
        && !sub.starts_with("goog")
        && sub
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '%'));
    if !ok {
        return Err(Error::invalid(format!(
            "Pub/Sub subscription `{s}`: `{sub}` is not a valid subscription id (3-255 letters, digits, `-_.~+%`, starting with a letter)"
        )));
    }
    Ok(())
}

/// The `gcp-pubsub` event source: `secretsync.io/events: gcp-pubsub:projects/P/subscriptions/S`
/// on a store with `spec.provider.gcpsm`. Register it with
/// `Registry::register_events(Arc::new(PubSubEventsFactory))`.
///
/// The source authenticates as the store does (`auth.secretRef`'s service-account key, else
/// Application Default Credentials / Workload Identity), and goes to the emulator at
/// `PUBSUB_EMULATOR_HOST` when that is set. The caller needs `roles/pubsub.subscriber` on
/// the subscription.
#[derive(Debug, Clone, Copy, Default)]
pub struct PubSubEventsFactory;

#[async_trait]
impl EventSourceFactory for PubSubEventsFactory {
    fn scheme(&self) -> &'static str {
        PUBSUB_SCHEME
    }

    fn validate(&self, store: &Store, address: &EventAddress) -> Vec<Error> {
        let at = || store.origin.field(format!("metadata.annotations.{EVENTS_ANNOTATION}"));
        let mut errors = vec![];
        if let Err(e) = check_subscription(&address.address) {
            let msg = match e {
                Error::InvalidInput { message } => message,
                e => e.to_string(),
            };
            errors.push(Error::manifest(at(), msg));
        }
        let provider = store.spec.provider.name();
        if provider != crate::PROVIDER {
            errors.push(Error::manifest(
                at(),
                format!("gcp-pubsub events name GCP Secret Manager secrets: the store's provider must be gcpsm, not {provider}"),
            ));
        }
        errors
    }

    async fn build(
        &self,
        store: &Store,
        address: &EventAddress,
        credentials: Arc<dyn CredentialResolver>,
    ) -> Result<Arc<dyn EventSource>> {
        let mut b = PubSubEventsBuilder::from_env(address.address.clone());
        if let Some(parent) = store_parent(store) {
            b = b.with_secret_parent(parent);
        }
        if !b.emulator
            && let Ok(spec) = store.provider_config::<GcpProvider>()
            && let Some(r) = spec.auth.as_ref().and_then(|a| a.secret_ref.as_ref())
        {
            let key = credentials
                .resolve(&r.secret_access_key_secret_ref, store.id.namespace.as_deref())
                .await
                .map_err(|e| e.context(format!("{} auth.secretRef", store.id)))?;
            b = b.with_credentials(GcpCredentials::ServiceAccountKey(key));
        }
        let source = b.build().map_err(|e| match e {
            Error::InvalidInput { message } => Error::manifest(
                store.origin.field(format!("metadata.annotations.{EVENTS_ANNOTATION}")),
                message,
            ),
            e => e,
        })?;
        Ok(Arc::new(source))
    }
}

/// `projects/<projectID>[/locations/<location>]` of a gcpsm store, when it names a project.
fn store_parent(store: &Store) -> Option<String> {
    let spec = store.provider_config::<GcpProvider>().ok()?;
    let project = spec.project_id.as_deref().filter(|p| !p.is_empty())?;
    Some(match spec.location.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => format!("projects/{project}/locations/{l}"),
        None => format!("projects/{project}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(attrs: &[(&str, &str)], data: Option<&str>) -> ReceivedMessage {
        ReceivedMessage {
            ack_id: "ack-1".into(),
            message: PubsubMessage {
                data: data.map(|d| base64::engine::general_purpose::STANDARD.encode(d)),
                attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                publish_time: Some("2026-01-20T19:17:45.081Z".into()),
            },
        }
    }

    #[test]
    fn a_version_event_names_the_secret_by_id_and_full_name() {
        let d = delivery(
            msg(
                &[
                    ("eventType", "SECRET_VERSION_ADD"),
                    ("dataFormat", "JSON_API_V1"),
                    ("secretId", "projects/p/secrets/db-password"),
                    ("versionId", "projects/p/secrets/db-password/versions/3"),
                    ("timestamp", "2026-01-20T11:17:45.081104-08:00"),
                ],
                Some(r#"{"name":"projects/123/secrets/db-password/versions/3","state":"ENABLED"}"#),
            ),
            &[],
        );
        assert_eq!(d.ack, Some(AckToken("ack-1".into())));
        assert_eq!(d.events.len(), 1);
        let e = &d.events[0];
        assert_eq!(e.keys, vec!["db-password", "projects/p/secrets/db-password"]);
        assert_eq!(e.kind, "SECRET_VERSION_ADD");
        let t = e.published.expect("publishTime");
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after epoch")
                .as_millis(),
            1_768_936_665_081
        );
    }

    #[test]
    fn regional_secrets_and_resource_data_without_attribute() {
        let d = delivery(
            msg(
                &[("eventType", "SECRET_UPDATE")],
                Some(r#"{"name":"projects/p/locations/europe-west1/secrets/api"}"#),
            ),
            &[],
        );
        assert_eq!(
            d.events[0].keys,
            vec!["api", "projects/p/locations/europe-west1/secrets/api"]
        );
    }

    #[test]
    fn a_notification_naming_the_project_by_number_matches_keys_naming_it_by_id() {
        // Real notifications: `secretId` with the project number.
        let d = delivery(
            msg(
                &[
                    ("eventType", "SECRET_VERSION_ADD"),
                    ("secretId", "projects/123456789/secrets/db"),
                ],
                None,
            ),
            &["projects/development-485000".to_string()],
        );
        assert_eq!(
            d.events[0].keys,
            vec![
                "db",
                "projects/123456789/secrets/db",
                "projects/development-485000/secrets/db"
            ]
        );
        let m = secretsync_core::manifest::load_str(
            "apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: gcp
  namespace: dev
  annotations: {secretsync.io/events: 'gcp-pubsub:projects/development-485000/subscriptions/s1'}
spec: {provider: {gcpsm: {projectID: development-485000}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: api, namespace: dev}
spec:
  secretStoreRef: {name: gcp}
  data:
    - {secretKey: DB, remoteRef: {key: projects/development-485000/secrets/db}}
",
            "m.yaml",
        )
        .manifests;
        let store = &m.stores[0];
        let parent = store_parent(store).expect("the store names a project");
        assert_eq!(parent, "projects/development-485000");
        let d = delivery(
            msg(
                &[
                    ("eventType", "SECRET_VERSION_ADD"),
                    ("secretId", "projects/123456789/secrets/db"),
                ],
                None,
            ),
            &[parent],
        );
        let keys: std::collections::BTreeSet<String> = d.events[0].keys.iter().cloned().collect();
        assert_eq!(
            secretsync_core::events::readers_of(&m, &store.id, Some(&keys)).len(),
            1,
            "the spec naming the project by id reads the changed secret"
        );
        let unrelated = delivery(
            msg(
                &[
                    ("eventType", "SECRET_VERSION_ADD"),
                    ("secretId", "projects/123456789/secrets/other"),
                ],
                None,
            ),
            &[store_parent(store).unwrap()],
        );
        let keys: std::collections::BTreeSet<String> = unrelated.events[0].keys.iter().cloned().collect();
        assert!(secretsync_core::events::readers_of(&m, &store.id, Some(&keys)).is_empty());
    }

    #[test]
    fn other_messages_are_acked_and_ignored() {
        for m in [
            msg(&[("eventType", "TOPIC_CONFIGURED")], None),
            msg(&[("foo", "bar")], Some("not json")),
            msg(&[], None),
        ] {
            let d = delivery(m, &[]);
            assert!(d.events.is_empty(), "{d:?}");
            assert!(d.ack.is_some());
        }
    }

    #[test]
    fn subscription_names_are_checked() {
        assert!(check_subscription("projects/p-1/subscriptions/secrets").is_ok());
        for bad in [
            "secrets",
            "projects/p/topics/t",
            "projects//subscriptions/s1x",
            "projects/p/subscriptions/ab",
            "projects/p/subscriptions/1abc",
            "projects/p/subscriptions/goog-x",
        ] {
            assert!(check_subscription(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_statuses_map_to_core_errors_naming_the_subscription() {
        let s = PubSubEventsBuilder::new("projects/p/subscriptions/sub")
            .with_emulator_host("127.0.0.1:8085")
            .build()
            .expect("emulator");
        let detail = |status: &str| ErrorDetail {
            message: format!("User not authorized to perform this action. \"quoted\" ({status})"),
            status: status.into(),
        };
        let e = s.map_status("Pull", 403, &detail("PERMISSION_DENIED"));
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        assert!(
            e.to_string().contains("roles/pubsub.subscriber") && e.to_string().contains("projects/p/subscriptions/sub")
        );
        assert!(!e.to_string().contains("quoted"), "{e}");
        let e = s.map_status("Pull", 401, &detail("UNAUTHENTICATED"));
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");
        let e = s.map_status("Pull", 404, &detail("NOT_FOUND"));
        assert!(
            e.is_not_found() && e.to_string().contains("projects/p/subscriptions/sub"),
            "{e}"
        );
        let e = s.map_status("Pull", 429, &detail("RESOURCE_EXHAUSTED"));
        assert!(matches!(e, Error::Throttled { .. }) && e.is_retryable(), "{e:?}");
        let e = s.map_status("Pull", 503, &detail("UNAVAILABLE"));
        assert!(e.is_retryable() && e.to_string().contains("127.0.0.1:8085"), "{e}");
    }

    #[test]
    fn plain_http_is_refused_unless_loopback_and_debug_has_no_key() {
        let e = PubSubEventsBuilder::new("projects/p/subscriptions/sub")
            .with_endpoint("http://pubsub.example.com")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
        let b = PubSubEventsBuilder::new("projects/p/subscriptions/sub")
            .with_credentials(GcpCredentials::ServiceAccountKey("key-canary".into()));
        assert!(!format!("{b:?}").contains("canary"));
        let s = PubSubEventsBuilder::new("projects/p/subscriptions/sub")
            .with_emulator_host("127.0.0.1:8085")
            .build()
            .expect("emulator");
        assert_eq!(s.endpoint(), "http://127.0.0.1:8085");
        assert!(format!("{s:?}").contains("Anonymous"));
    }
}
