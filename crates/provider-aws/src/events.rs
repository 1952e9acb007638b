//! Secrets Manager changes through EventBridge to an SQS queue: [`SqsEvents`] (an
//! [`EventSource`]) and [`SqsEventsFactory`] (scheme `aws-sqs`).
//!
//! Secrets Manager's API calls reach EventBridge as CloudTrail events (`source:
//! aws.secretsmanager`, `detail-type: AWS API Call via CloudTrail`; rotation's outcome as
//! `AWS Service Event via CloudTrail`). A rule sends them to a queue; this source long-polls
//! the queue (`ReceiveMessage`, 20 s) and deletes what was handled (`DeleteMessageBatch`).
//! A message not deleted comes back after the queue's visibility timeout, so a crash
//! between receiving and handling loses nothing.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use secretsync_core::events::{
    AckToken, ChangeEvent, Delivery, EVENTS_ANNOTATION, EventAddress, EventSource, EventSourceFactory,
};
use secretsync_core::manifest::Store;
use secretsync_core::registry::CredentialResolver;
use secretsync_core::source::CallStats;
use secretsync_core::{Error, Result};

use crate::config::AwsSecretsManagerBuilder;
use crate::error::{Kind, kind_of_code, sanitize};

/// The scheme of the `secretsync.io/events` annotation this source serves.
pub const SQS_SCHEME: &str = "aws-sqs";
/// How long one `ReceiveMessage` waits for messages (SQS's maximum).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// Shortest time between the starts of two receives that found nothing, so a queue that
/// answers at once (long polling off at the server) does not make an idle source spin.
pub const DEFAULT_MIN_IDLE_INTERVAL: Duration = Duration::from_secs(2);

/// What errors name this source by.
const SOURCE: &str = "aws-sqs";
/// SQS's limit of messages per receive and entries per batch delete.
const BATCH: usize = 10;

/// Secrets Manager's CloudTrail events that mean a secret's value, current version or
/// existence may have changed. Other events (tags, policies, replication, reads) are
/// acknowledged and ignored.
const CHANGES: &[&str] = &[
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotationSucceeded",
    "RotateSecret",
    "CreateSecret",
    "DeleteSecret",
    "RestoreSecret",
];

/// Builds an [`SqsEvents`] for one queue, authenticating as an
/// [`AwsSecretsManagerBuilder`] describes (region, credentials, roles).
///
/// Endpoint: [`with_endpoint`](Self::with_endpoint), else `AWS_ENDPOINT_URL_SQS` /
/// `AWS_ENDPOINT_URL` (with [`AwsSecretsManagerBuilder::from_env`]), else the queue URL's own
/// origin when it is not an `amazonaws.com` URL (an emulator such as moto: plain http only to
/// loopback), else SQS's regional endpoint. The region is the queue URL's
/// (`https://sqs.<region>.amazonaws.com/…`) when it names one.
///
/// ```no_run
/// # async fn sample() -> secretsync_core::Result<()> {
/// use secretsync_aws::{AwsSecretsManagerBuilder, SqsEventsBuilder};
/// use secretsync_core::events::EventSource as _;
/// let events = SqsEventsBuilder::new(
///     "https://sqs.eu-central-1.amazonaws.com/123456789012/secret-changes",
///     AwsSecretsManagerBuilder::from_env(),
/// )
/// .build()
/// .await?;
/// for d in events.receive().await? {
///     println!("{:?}", d.events);
///     events.ack(d.ack.as_slice()).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqsEventsBuilder {
    queue_url: String,
    aws: AwsSecretsManagerBuilder,
    endpoint: Option<String>,
    wait: Duration,
    min_idle_interval: Duration,
}

impl SqsEventsBuilder {
    /// Events of the queue at `queue_url`, with the settings (and credentials) of `aws`.
    pub fn new(queue_url: impl Into<String>, aws: AwsSecretsManagerBuilder) -> Self {
        Self {
            queue_url: queue_url.into(),
            aws,
            endpoint: None,
            wait: DEFAULT_WAIT,
            min_idle_interval: DEFAULT_MIN_IDLE_INTERVAL,
        }
    }

    /// The SQS endpoint URL.
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// How long one receive waits for messages (1..=20 s).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.clamp(Duration::from_secs(1), Duration::from_secs(20));
        self
    }

    /// Shortest time between the starts of two receives that found nothing.
    pub fn with_min_idle_interval(mut self, interval: Duration) -> Self {
        self.min_idle_interval = interval;
        self
    }

    /// Builds the source. No request is sent (except what the credential chain may need).
    pub async fn build(self) -> Result<SqsEvents> {
        let queue = parse_queue_url(&self.queue_url)?;
        let mut aws = self.aws.clone();
        if let Some(r) = &queue.region
            && aws.region() != Some(r.as_str())
        {
            aws = aws.with_region(r.clone());
        }
        let parts = aws.sdk_parts().await?;
        let endpoint = match (&self.endpoint, parts.base.endpoint_url(), &queue.origin) {
            (Some(e), _, _) => Some(e.clone()),
            (None, Some(_), _) => None, // the environment's, applied by the SDK
            (None, None, Some(origin)) => Some(origin.clone()),
            (None, None, None) => None,
        };
        if let Some(e) = &endpoint {
            secretsync_core::net::check_endpoint(e, "SQS endpoint")?;
        }
        let mut conf = aws_sdk_sqs::config::Builder::from(&parts.base).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                // The long poll itself takes `wait`.
                .operation_attempt_timeout(self.wait + Duration::from_secs(10))
                .build(),
        );
        if let Some(p) = parts.credentials {
            conf = conf.credentials_provider(p);
        }
        if let Some(e) = &endpoint {
            conf = conf.endpoint_url(e.clone());
        }
        Ok(SqsEvents {
            client: aws_sdk_sqs::Client::from_conf(conf.build()),
            queue_url: self.queue_url,
            endpoint,
            prefix: aws.prefix().map(str::to_string),
            wait: self.wait,
            min_idle_interval: self.min_idle_interval,
            stats: Arc::new(CallStats::new()),
        })
    }
}

/// Secrets Manager changes from an SQS queue fed by an EventBridge rule.
pub struct SqsEvents {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    endpoint: Option<String>,
    prefix: Option<String>,
    wait: Duration,
    min_idle_interval: Duration,
    stats: Arc<CallStats>,
}

impl fmt::Debug for SqsEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsEvents")
            .field("queue_url", &self.queue_url)
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SqsEvents {
    /// The queue it reads.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Calls made so far, by operation (`ReceiveMessage`, `DeleteMessageBatch`) and outcome.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Maps an SDK error of `op` into the core error, naming the queue, never a body.
    fn map<E, R>(&self, op: &'static str, err: SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + 'static,
    {
        let q = &self.queue_url;
        let e = match &err {
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or("").to_string();
                let msg = se.err().message().map(sanitize).unwrap_or_default();
                let detail = if msg.is_empty() {
                    code.clone()
                } else {
                    format!("{code}: {msg}")
                };
                // SQS's own codes first (JSON protocol, or the query protocol's `AWS.SimpleQueueService.*`).
                if code.contains("NonExistentQueue") || code.ends_with("QueueDoesNotExist") {
                    Error::not_found(format!(
                        "SQS queue `{q}` ({detail}); create it with `aws sqs create-queue`"
                    ))
                } else if code.ends_with("RequestThrottled") || code.ends_with("KmsThrottled") {
                    Error::Throttled {
                        provider: SOURCE.into(),
                        retry_after: None,
                    }
                } else if code.ends_with("KmsAccessDenied") {
                    Error::PermissionDenied {
                        what: format!(
                            "sqs:{op} on `{q}`: the caller needs kms:Decrypt on the queue's KMS key ({detail})"
                        ),
                    }
                } else {
                    match kind_of_code(&code, None) {
                        Kind::NotFound => Error::not_found(format!("SQS queue `{q}` ({detail})")),
                        Kind::Denied => Error::PermissionDenied {
                            what: format!(
                                "sqs:{op} on `{q}`: the caller needs sqs:ReceiveMessage and sqs:DeleteMessage on the queue ({detail})"
                            ),
                        },
                        Kind::Unauthenticated => Error::Unauthenticated {
                            what: format!("AWS credentials for sqs:{op} on `{q}` ({detail})"),
                        },
                        Kind::Throttled => Error::Throttled {
                            provider: SOURCE.into(),
                            retry_after: None,
                        },
                        Kind::Transient => {
                            Error::provider(SOURCE, format!("sqs:{op} on `{q}` failed ({detail})"), true)
                        }
                        _ => Error::provider(SOURCE, format!("sqs:{op} on `{q}` failed ({detail})"), false),
                    }
                }
            }
            SdkError::TimeoutError(_) => Error::provider(SOURCE, format!("sqs:{op} on `{q}` timed out"), true),
            SdkError::DispatchFailure(df) => {
                let f = crate::error::Failure::from_sdk(op, q, &err);
                if f.kind == Kind::Unauthenticated {
                    Error::Unauthenticated {
                        what: format!(
                            "AWS credentials for sqs:{op} on `{q}` ({})",
                            f.detail.unwrap_or_default()
                        ),
                    }
                } else {
                    let host = self
                        .endpoint
                        .as_deref()
                        .map(host_of)
                        .unwrap_or_else(|| host_of(q))
                        .to_string();
                    let why = if df.is_timeout() {
                        "connection timed out"
                    } else {
                        "connection failed"
                    };
                    Error::provider(
                        SOURCE,
                        format!("sqs:{op} on `{q}`: cannot reach SQS at {host} ({why})"),
                        true,
                    )
                }
            }
            _ => {
                let f = crate::error::Failure::from_sdk(op, q, &err);
                Error::provider(
                    SOURCE,
                    format!("sqs:{op} on `{q}` failed ({})", f.detail.unwrap_or_default()),
                    f.kind == Kind::Transient,
                )
            }
        };
        self.stats.record(
            op,
            match &e {
                Error::NotFound { .. } => "not_found",
                Error::PermissionDenied { .. } | Error::Unauthenticated { .. } => "denied",
                Error::Throttled { .. } => "throttled",
                _ => "error",
            },
        );
        e
    }
}

#[async_trait]
impl EventSource for SqsEvents {
    fn scheme(&self) -> &'static str {
        SQS_SCHEME
    }

    async fn receive(&self) -> Result<Vec<Delivery>> {
        let started = Instant::now();
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .wait_time_seconds(self.wait.as_secs() as i32)
            .max_number_of_messages(BATCH as i32)
            .send()
            .await
            .map_err(|e| self.map("ReceiveMessage", e))?;
        self.stats.record("ReceiveMessage", "ok");
        let deliveries: Vec<Delivery> = out
            .messages()
            .iter()
            .filter_map(|m| {
                let ack = AckToken(m.receipt_handle()?.to_string());
                Some(Delivery {
                    events: parse_body(m.body().unwrap_or(""), self.prefix.as_deref()),
                    ack: Some(ack),
                })
            })
            .collect();
        if deliveries.is_empty() {
            let rest = self.min_idle_interval.saturating_sub(started.elapsed());
            if !rest.is_zero() {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(deliveries)
    }

    async fn ack(&self, tokens: &[AckToken]) -> Result<()> {
        let mut failed = std::collections::BTreeMap::<String, usize>::new();
        for chunk in tokens.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&t.0)
                        .build()
                        .map_err(|_| Error::invalid("an SQS delete entry without id or receipt handle"))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.map("DeleteMessageBatch", e))?;
            self.stats.record("DeleteMessageBatch", "ok");
            for f in out.failed() {
                *failed.entry(f.code().to_string()).or_default() += 1;
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        // An expired receipt handle means the message is delivered again: one more sync.
        let codes: Vec<String> = failed.iter().map(|(c, n)| format!("{n}× {c}")).collect();
        Err(Error::provider(
            SOURCE,
            format!(
                "sqs:DeleteMessageBatch on `{}`: {} message(s) not deleted ({}); they will be delivered again",
                self.queue_url,
                failed.values().sum::<usize>(),
                codes.join(", ")
            ),
            false,
        ))
    }
}

/// The changes one message body describes: an EventBridge event from `aws.secretsmanager`
/// (possibly wrapped in an SNS notification). Anything else describes none.
pub(crate) fn parse_body(body: &str, prefix: Option<&str>) -> Vec<ChangeEvent> {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) else {
        return vec![];
    };
    // SNS → SQS without raw delivery wraps the event.
    if v.get("Type").and_then(|t| t.as_str()) == Some("Notification")
        && let Some(inner) = v.get("Message").and_then(|m| m.as_str())
    {
        match serde_json::from_str(inner) {
            Ok(i) => v = i,
            Err(_) => return vec![],
        }
    }
    if v.get("source").and_then(|s| s.as_str()) != Some("aws.secretsmanager") {
        return vec![];
    }
    let detail = &v["detail"];
    let Some(name) = detail.get("eventName").and_then(|n| n.as_str()) else {
        return vec![];
    };
    if !CHANGES.contains(&name) {
        return vec![];
    }
    let mut ids: Vec<&str> = vec![];
    for p in [
        "/requestParameters/secretId",
        "/requestParameters/name",
        "/responseElements/arn",
        "/responseElements/name",
        "/additionalEventData/SecretId",
        "/serviceEventDetails/secretId",
    ] {
        if let Some(s) = detail.pointer(p).and_then(|s| s.as_str()) {
            ids.push(s);
        }
    }
    if let Some(rs) = v.get("resources").and_then(|r| r.as_array()) {
        ids.extend(rs.iter().filter_map(|r| r.as_str()).filter(|r| r.contains(":secret:")));
    }
    let mut keys: Vec<String> = vec![];
    let mut add = |k: &str| {
        if !k.is_empty() && !keys.iter().any(|x| x == k) {
            keys.push(k.to_string());
        }
    };
    for id in ids {
        add(id);
        let name = match id.split_once(":secret:") {
            Some((_, rest)) if id.starts_with("arn:") => strip_suffix(rest),
            _ => id,
        };
        add(name);
        if let Some(p) = prefix
            && let Some(short) = name.strip_prefix(p)
        {
            add(short);
        }
    }
    // No secret named (keys empty): something in the store changed.
    vec![ChangeEvent {
        keys,
        kind: name.to_string(),
        published: published(&v),
    }]
}

/// `db-AbC123` → `db`: the six random characters Secrets Manager appends to ARNs.
fn strip_suffix(arn_name: &str) -> &str {
    match arn_name.rsplit_once('-') {
        Some((name, suffix))
            if !name.is_empty() && suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            name
        }
        _ => arn_name,
    }
}

fn published(v: &serde_json::Value) -> Option<SystemTime> {
    let t = v
        .get("time")
        .or_else(|| v.pointer("/detail/eventTime"))
        .and_then(|t| t.as_str())?;
    let dt = aws_smithy_types::DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime).ok()?;
    SystemTime::try_from(dt).ok()
}

/// What a queue URL tells: the region of an AWS URL, or the origin of any other (an emulator).
struct QueueUrl {
    region: Option<String>,
    origin: Option<String>,
}

fn parse_queue_url(url: &str) -> Result<QueueUrl> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "SQS queue URL `{url}`: {why} (expected https://sqs.<region>.amazonaws.com/<account>/<queue>)"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not a URL"))?;
    if !matches!(scheme, "https" | "http") {
        return Err(bad("not an http(s) URL"));
    }
    let (host, path) = rest.split_once('/').ok_or_else(|| bad("no queue path"))?;
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if host.is_empty() || segments.len() != 2 || segments.iter().any(|s| s.is_empty()) {
        return Err(bad("no `/<account>/<queue>` path"));
    }
    let hostname = host.split(':').next().unwrap_or(host);
    if hostname.ends_with(".amazonaws.com") || hostname.ends_with(".amazonaws.com.cn") {
        // sqs.<region>.amazonaws.com, or the legacy <region>.queue.amazonaws.com.
        let labels: Vec<&str> = hostname.split('.').collect();
        let region = match labels.as_slice() {
            ["sqs", region, ..] => Some(region.to_string()),
            [region, "queue", ..] => Some(region.to_string()),
            _ => None,
        };
        if scheme != "https" {
            return Err(bad("plain http to AWS"));
        }
        return Ok(QueueUrl { region, origin: None });
    }
    Ok(QueueUrl {
        region: None,
        origin: Some(format!("{scheme}://{host}")),
    })
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// The `aws-sqs` event source: `secretsync.io/events: aws-sqs:<queue url>` on a store with
/// `spec.provider.aws`. Register it with `Registry::register_events(Arc::new(SqsEventsFactory))`.
///
/// The source uses the store's region, credentials and roles (everything but its Secrets
/// Manager `endpoint`), and needs `sqs:ReceiveMessage` and `sqs:DeleteMessage` on the queue.
/// With the store's `prefix`, an event names the secret with and without it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqsEventsFactory;

#[async_trait]
impl EventSourceFactory for SqsEventsFactory {
    fn scheme(&self) -> &'static str {
        SQS_SCHEME
    }

    fn validate(&self, store: &Store, address: &EventAddress) -> Vec<Error> {
        let at = || store.origin.field(format!("metadata.annotations.{EVENTS_ANNOTATION}"));
        let mut errors = vec![];
        let checked = parse_queue_url(&address.address).and_then(|q| match &q.origin {
            Some(o) => secretsync_core::net::check_endpoint(o, "SQS queue URL"),
            None => Ok(()),
        });
        if let Err(e) = checked {
            let msg = match e {
                Error::InvalidInput { message } => message,
                e => e.to_string(),
            };
            errors.push(Error::manifest(at(), msg));
        }
        let provider = store.spec.provider.name();
        if provider != "aws" {
            errors.push(Error::manifest(
                at(),
                format!(
                    "aws-sqs events name AWS Secrets Manager secrets: the store's provider must be aws, not {provider}"
                ),
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
        let aws = crate::factory::builder_for_store(store, credentials.as_ref()).await?;
        let source = SqsEventsBuilder::new(address.address.clone(), aws)
            .build()
            .await
            .map_err(|e| match e {
                Error::InvalidInput { message } => Error::manifest(
                    store.origin.field(format!("metadata.annotations.{EVENTS_ANNOTATION}")),
                    message,
                ),
                e => e,
            })?;
        Ok(Arc::new(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_call(event: &str, request: serde_json::Value, response: serde_json::Value) -> String {
        serde_json::json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.secretsmanager",
            "account": "123456789012",
            "time": "2026-03-01T21:49:34Z",
            "region": "eu-central-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.08",
                "eventSource": "secretsmanager.amazonaws.com",
                "eventName": event,
                "awsRegion": "eu-central-1",
                "requestParameters": request,
                "responseElements": response,
                "eventType": "AwsApiCall",
            }
        })
        .to_string()
    }

    const ARN: &str = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/db-AbC123";

    #[test]
    fn put_secret_value_names_the_secret_by_name_and_arn() {
        let body = api_call(
            "PutSecretValue",
            serde_json::json!({ "secretId": "prod/db", "clientRequestToken": "x" }),
            serde_json::json!({ "arn": ARN, "versionId": "v2" }),
        );
        let e = parse_body(&body, None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, "PutSecretValue");
        assert_eq!(e[0].keys, vec!["prod/db".to_string(), ARN.to_string()]);
        let t = e[0].published.expect("time");
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).expect("after").as_secs(),
            1_772_401_774
        );
        // With the store's prefix `prod/`, specs write `db`.
        let e = parse_body(&body, Some("prod/"));
        assert_eq!(e[0].keys, vec!["prod/db", "db", ARN]);
    }

    #[test]
    fn an_arn_only_event_also_names_the_secret() {
        let body = api_call(
            "UpdateSecretVersionStage",
            serde_json::json!({ "secretId": ARN, "versionStage": "AWSCURRENT" }),
            serde_json::json!(null),
        );
        assert_eq!(parse_body(&body, None)[0].keys, vec![ARN, "prod/db"]);
    }

    #[test]
    fn rotation_succeeded_service_event() {
        let body = serde_json::json!({
            "version": "0",
            "detail-type": "AWS Service Event via CloudTrail",
            "source": "aws.secretsmanager",
            "time": "2026-03-01T21:49:34Z",
            "detail": {
                "eventName": "RotationSucceeded",
                "eventType": "AwsServiceEvent",
                "additionalEventData": { "SecretId": ARN },
            }
        })
        .to_string();
        let e = parse_body(&body, None);
        assert_eq!(e[0].kind, "RotationSucceeded");
        assert_eq!(e[0].keys, vec![ARN, "prod/db"]);
    }

    #[test]
    fn sns_wrapped_events_are_unwrapped() {
        let inner = api_call(
            "UpdateSecret",
            serde_json::json!({ "secretId": "api" }),
            serde_json::json!({ "arn": "arn:aws:secretsmanager:eu-central-1:1:secret:api-x1Y2z3" }),
        );
        let body = serde_json::json!({ "Type": "Notification", "MessageId": "m", "Message": inner }).to_string();
        assert_eq!(parse_body(&body, None)[0].keys[0], "api");
    }

    #[test]
    fn other_messages_describe_nothing() {
        for body in [
            "not json".to_string(),
            serde_json::json!({ "source": "aws.s3", "detail": { "eventName": "PutObject" } }).to_string(),
            api_call(
                "TagResource",
                serde_json::json!({ "secretId": "db" }),
                serde_json::json!(null),
            ),
            api_call(
                "GetSecretValue",
                serde_json::json!({ "secretId": "db" }),
                serde_json::json!(null),
            ),
        ] {
            assert!(parse_body(&body, None).is_empty(), "{body}");
        }
    }

    #[tokio::test]
    async fn service_errors_map_to_core_errors_naming_the_queue() {
        use aws_sdk_sqs::config::http::HttpResponse;
        use aws_sdk_sqs::error::ErrorMetadata;
        use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
        use aws_smithy_types::body::SdkBody;
        let url = "https://sqs.eu-central-1.amazonaws.com/123456789012/changes";
        let src = SqsEventsBuilder::new(
            url,
            AwsSecretsManagerBuilder::new().with_credentials("a", secretsync_core::SecretValue::from("b")),
        )
        .build()
        .await
        .expect("builds offline");
        let err = |code: &str, message: &str| {
            let meta = ErrorMetadata::builder().code(code).message(message).build();
            let raw = HttpResponse::new(400u16.try_into().expect("status"), SdkBody::from("{}"));
            SdkError::service_error(ReceiveMessageError::generic(meta), raw)
        };
        let e = src.map(
            "ReceiveMessage",
            err("AccessDenied", "not authorized to perform sqs:ReceiveMessage"),
        );
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        assert!(
            e.to_string().contains(url) && e.to_string().contains("sqs:DeleteMessage"),
            "{e}"
        );
        let e = src.map(
            "ReceiveMessage",
            err("QueueDoesNotExist", "The specified queue does not exist."),
        );
        assert!(e.is_not_found() && e.to_string().contains(url), "{e}");
        let e = src.map("ReceiveMessage", err("AWS.SimpleQueueService.NonExistentQueue", "gone"));
        assert!(e.is_not_found(), "{e}");
        let e = src.map("ReceiveMessage", err("InvalidClientTokenId", "bad token"));
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");
        let e = src.map("ReceiveMessage", err("RequestThrottled", "slow down"));
        assert!(matches!(e, Error::Throttled { .. }) && e.is_retryable(), "{e:?}");
        let e = src.map("ReceiveMessage", err("KmsAccessDenied", "no"));
        assert!(e.to_string().contains("kms:Decrypt"), "{e}");
        assert_eq!(src.stats().of("ReceiveMessage"), 6);
    }

    #[test]
    fn suffixes_and_queue_urls() {
        assert_eq!(strip_suffix("db-AbC123"), "db");
        assert_eq!(strip_suffix("db"), "db");
        assert_eq!(strip_suffix("my-db"), "my-db");
        let q = parse_queue_url("https://sqs.eu-central-1.amazonaws.com/123456789012/changes").expect("aws");
        assert_eq!(q.region.as_deref(), Some("eu-central-1"));
        assert!(q.origin.is_none());
        let q = parse_queue_url("http://127.0.0.1:5000/123456789012/changes").expect("moto");
        assert_eq!(q.origin.as_deref(), Some("http://127.0.0.1:5000"));
        for bad in [
            "changes",
            "https://sqs.eu-central-1.amazonaws.com/changes",
            "http://sqs.eu-central-1.amazonaws.com/1/changes",
            "ftp://x/1/q",
        ] {
            assert!(parse_queue_url(bad).is_err(), "{bad}");
        }
    }
}
