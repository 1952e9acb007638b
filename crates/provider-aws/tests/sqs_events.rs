//! The `aws-sqs` event source against moto's SQS (the same moto server as the Secrets Manager
//! tests, started by `secretsync_fakes::moto`), with messages shaped as EventBridge delivers
//! Secrets Manager's CloudTrail events to a queue. Queues are made and messages sent with
//! the real `aws-sdk-sqs` client.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, moto_url, prefix};
use secretsync_aws::{SqsEvents, SqsEventsBuilder};
use secretsync_core::Error;
use secretsync_core::events::{AckToken, Delivery, EventSource};

async fn sqs() -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(moto_url())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// A new queue with `visibility` seconds of visibility timeout; its URL.
async fn queue(visibility: u32) -> String {
    let out = sqs()
        .await
        .create_queue()
        .queue_name(format!("{}secret-changes", prefix()))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            visibility.to_string(),
        )
        .send()
        .await
        .expect("create queue");
    out.queue_url().expect("url").to_string()
}

async fn send(url: &str, body: String) {
    sqs()
        .await
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

fn arn(name: &str) -> String {
    format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-Xy12Ab")
}

/// What EventBridge delivers to a queue target for a Secrets Manager API call.
fn api_call(event: &str, secret_id: &str, name: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "time": chrono_now(),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": { "type": "IAMUser", "accountId": "123456789012", "userName": "ci" },
            "eventTime": chrono_now(),
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": event,
            "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.7",
            "userAgent": "aws-cli/2.15",
            "requestParameters": { "secretId": secret_id, "clientRequestToken": "tok" },
            "responseElements": { "arn": arn(name), "versionId": "a5a5" },
            "requestID": "0f0f",
            "eventID": "1e1e",
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": "123456789012",
            "eventCategory": "Management"
        }
    })
    .to_string()
}

/// Rotation's outcome, a service event.
fn rotation_succeeded(name: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": "c9c9",
        "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "time": chrono_now(),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.05",
            "userIdentity": { "accountId": "123456789012", "invokedBy": "secretsmanager.amazonaws.com" },
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "RotationSucceeded",
            "awsRegion": "us-east-1",
            "requestParameters": null,
            "responseElements": null,
            "additionalEventData": { "SecretId": arn(name) },
            "eventType": "AwsServiceEvent",
            "recipientAccountId": "123456789012"
        }
    })
    .to_string()
}

/// RFC 3339 "now", as EventBridge writes `time`.
fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    aws_smithy_types::DateTime::from_secs(secs as i64)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .expect("format")
}

async fn source(url: &str) -> SqsEvents {
    // No endpoint given: the queue URL's origin (moto) is used.
    SqsEventsBuilder::new(url, builder().with_endpoint("https://secretsmanager.invalid"))
        .with_wait(Duration::from_secs(2))
        .build()
        .await
        .expect("source")
}

async fn receive_n(src: &SqsEvents, n: usize, limit: Duration) -> Vec<Delivery> {
    let start = Instant::now();
    let mut out = vec![];
    while out.len() < n && start.elapsed() < limit {
        out.extend(src.receive().await.expect("receive"));
    }
    out
}

fn acks(ds: &[Delivery]) -> Vec<AckToken> {
    ds.iter().filter_map(|d| d.ack.clone()).collect()
}

#[tokio::test]
async fn eventbridge_events_become_change_events_and_deleted_ones_stay_gone() {
    let url = queue(2).await;
    let src = source(&url).await;
    send(&url, api_call("PutSecretValue", "prod/db", "prod/db")).await;
    send(&url, api_call("UpdateSecretVersionStage", &arn("api"), "api")).await;
    send(&url, rotation_succeeded("jwt")).await;
    send(&url, api_call("TagResource", "prod/db", "prod/db")).await; // not a change
    send(&url, "hello".to_string()).await; // not an event at all

    let got = receive_n(&src, 5, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got.iter().all(|d| d.ack.is_some()));
    let mut events: Vec<(String, Vec<String>)> = got
        .iter()
        .flat_map(|d| d.events.iter().map(|e| (e.kind.clone(), e.keys.clone())))
        .collect();
    events.sort();
    assert_eq!(
        events,
        vec![
            (
                "PutSecretValue".to_string(),
                vec!["prod/db".to_string(), arn("prod/db")]
            ),
            ("RotationSucceeded".to_string(), vec![arn("jwt"), "jwt".to_string()]),
            (
                "UpdateSecretVersionStage".to_string(),
                vec![arn("api"), "api".to_string()]
            ),
        ]
    );
    for e in got.iter().flat_map(|d| &d.events) {
        let lag = std::time::SystemTime::now()
            .duration_since(e.published.expect("time"))
            .unwrap_or_default();
        assert!(lag < Duration::from_secs(60), "{lag:?}");
    }

    src.ack(&acks(&got)).await.expect("delete");
    tokio::time::sleep(Duration::from_secs(3)).await; // past the visibility timeout
    let again = receive_n(&src, 1, Duration::from_secs(3)).await;
    assert!(again.is_empty(), "deleted messages came back: {again:?}");
    let attrs = sqs()
        .await
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("attributes");
    let count = |a: aws_sdk_sqs::types::QueueAttributeName| {
        attrs.attributes().and_then(|m| m.get(&a)).cloned().unwrap_or_default()
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "0"
    );
}

#[tokio::test]
async fn undeleted_messages_come_back_after_the_visibility_timeout() {
    let url = queue(2).await;
    let src = source(&url).await;
    send(&url, api_call("PutSecretValue", "kept", "kept")).await;
    send(&url, api_call("DeleteSecret", "dropped", "dropped")).await;
    let got = receive_n(&src, 2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (done, _crashed): (Vec<_>, Vec<_>) = got.into_iter().partition(|d| d.events[0].keys[0] == "kept");
    assert_eq!(done.len(), 1);
    src.ack(&acks(&done)).await.expect("delete");

    let start = Instant::now();
    let again = receive_n(&src, 1, Duration::from_secs(20)).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].events[0].kind, "DeleteSecret");
    assert_eq!(again[0].events[0].keys[0], "dropped");
    eprintln!("redelivered after {:?} (visibility timeout 2 s)", start.elapsed());
    src.ack(&acks(&again)).await.expect("delete");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(receive_n(&src, 1, Duration::from_secs(3)).await.is_empty());
}

#[tokio::test]
async fn a_missing_queue_is_not_found_naming_it() {
    let url = format!("{}/123456789012/{}missing", moto_url(), prefix());
    let src = source(&url).await;
    let e = src.receive().await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn an_unreachable_queue_is_a_retryable_error_naming_the_host() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}/123456789012/gone");
    let src = SqsEventsBuilder::new(&url, builder().with_retry(1, Duration::from_millis(10)))
        .build()
        .await
        .expect("source");
    let e = src.receive().await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("cannot reach"),
        "{text}"
    );
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn plain_http_to_a_remote_queue_is_refused() {
    let e = SqsEventsBuilder::new("http://queue.example.com/123456789012/q", builder())
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
}

#[tokio::test]
async fn an_idle_source_long_polls_instead_of_spinning() {
    let url = queue(30).await;
    let src = source(&url).await; // wait 2 s
    let mark = common::recording().len();
    let start = Instant::now();
    let mut polls = 0u64;
    while start.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        assert!(src.receive().await.expect("receive").is_empty());
        assert!(t.elapsed() >= Duration::from_millis(1900), "{:?}", t.elapsed());
        polls += 1;
    }
    // Counted at the server: moto's recorder.
    let at_server = common::recorded_since(mark, url.rsplit('/').next().expect("name"));
    let receives = common::count(&at_server, "ReceiveMessage") as u64;
    assert_eq!(receives, polls, "{at_server:?}");
    assert!(receives <= 5, "{receives} receives in {:?}", start.elapsed());
    eprintln!(
        "idle: {receives} ReceiveMessage in {:?} with a 2 s wait",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_message_sent_during_a_long_poll_arrives_at_once() {
    let url = queue(30).await;
    let src = Arc::new(SqsEventsBuilder::new(&url, builder()).build().await.expect("source"));
    let mut latencies = vec![];
    for _ in 0..10 {
        let waiting = {
            let src = src.clone();
            tokio::spawn(async move {
                let r = src.receive().await;
                (r, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        send(&url, api_call("PutSecretValue", "db", "db")).await;
        let (got, at) = waiting.await.expect("task");
        let got = got.expect("receive");
        assert_eq!(got.len(), 1, "{got:?}");
        latencies.push(at.duration_since(sent));
        src.ack(&acks(&got)).await.expect("delete");
    }
    latencies.sort();
    eprintln!("send → delivery: {latencies:?}");
    assert!(
        latencies[5] < Duration::from_secs(2),
        "median {:?} of {latencies:?}",
        latencies[5]
    );
}

fn store_yaml(events: &str, prefix: &str) -> String {
    format!(
        r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: aws-events
  namespace: ns1
  annotations:
    secretsync.io/events: "{events}"
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      endpoint: {}
      prefix: {prefix}
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}
          secretAccessKeySecretRef: {{name: aws-creds, key: secret-access-key}}
"#,
        moto_url()
    )
}

fn registry(dir: &std::path::Path) -> secretsync_core::registry::Registry {
    let mut r = secretsync_core::registry::Registry::with_builtin()
        .with_credentials(Arc::new(secretsync_core::registry::EnvFileCredentials::with_dir(dir)));
    r.register(Arc::new(secretsync_aws::AwsFactory));
    r.register_events(Arc::new(secretsync_aws::SqsEventsFactory));
    r
}

fn creds_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("ns1/aws-creds");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join("access-key"), "testing\n").expect("write");
    std::fs::write(d.join("secret-access-key"), "testing\n").expect("write");
    dir
}

#[tokio::test]
async fn the_registry_builds_the_source_a_store_annotation_names() {
    let url = queue(30).await;
    let dir = creds_dir();
    let reg = registry(dir.path());
    let m = secretsync_core::manifest::load_str(&store_yaml(&format!("aws-sqs:{url}"), "prod/"), "store.yaml")
        .into_result()
        .expect("manifest");
    let store = &m.stores[0];
    assert!(reg.validate_events(store, &[]).is_empty());
    let src = reg.build_events(store).await.expect("an event source").expect("builds");
    assert_eq!(src.scheme(), "aws-sqs");
    send(&url, api_call("PutSecretValue", "prod/db", "prod/db")).await;
    let start = Instant::now();
    let mut got = vec![];
    while got.is_empty() && start.elapsed() < Duration::from_secs(30) {
        got = src.receive().await.expect("receive");
    }
    assert_eq!(got.len(), 1);
    // The store's prefix `prod/`: specs of this store write `db`.
    assert_eq!(
        got[0].events[0].keys,
        vec!["prod/db".to_string(), "db".into(), arn("prod/db")]
    );
    src.ack(&acks(&got)).await.expect("delete");
}

#[tokio::test]
async fn bad_annotations_are_manifest_errors_naming_the_annotation() {
    let dir = creds_dir();
    let reg = registry(dir.path());
    for (value, says) in [
        ("aws-sqs:secret-changes", "not a URL"),
        (
            "aws-sqs:https://sqs.eu-central-1.amazonaws.com/secret-changes",
            "/<account>/<queue>",
        ),
        ("aws-sqs:http://queue.example.com/1/q", "plain http"),
    ] {
        let m = secretsync_core::manifest::load_str(&store_yaml(value, "p/"), "store.yaml")
            .into_result()
            .expect("manifest");
        let errors = reg.validate_events(&m.stores[0], &[]);
        assert_eq!(errors.len(), 1, "{value}: {errors:?}");
        let text = errors[0].to_string();
        assert!(
            text.contains("store.yaml")
                && text.contains("metadata.annotations.secretsync.io/events")
                && text.contains(says),
            "{value}: {text}"
        );
        assert!(reg.build_events(&m.stores[0]).await.expect("named").is_err());
    }
    // On a store of another provider.
    let yaml = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata:\n  name: f\n  namespace: ns1\n  annotations:\n    secretsync.io/events: aws-sqs:https://sqs.eu-central-1.amazonaws.com/1/q\nspec:\n  provider:\n    fake:\n      data: []\n";
    let m = secretsync_core::manifest::load_str(yaml, "store.yaml")
        .into_result()
        .expect("manifest");
    let errors = reg.validate_events(&m.stores[0], &[]);
    assert!(
        errors.iter().any(|e| e.to_string().contains("must be aws")),
        "{errors:?}"
    );
}
