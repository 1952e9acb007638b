//! The `gcp-pubsub` event source against Google's real Pub/Sub emulator (started on a free
//! port by `secretsync_fakes::pubsub`; the test fails when it is not installed). Topics and
//! subscriptions are made through the emulator's REST API, and messages are published the
//! way Secret Manager publishes its notifications: attributes plus the resource as base64
//! JSON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use secretsync_core::Error;
use secretsync_core::events::{AckToken, Delivery, EventSource};
use secretsync_fakes::pubsub::PubSubEmulator;
use secretsync_gcp::{PubSubEvents, PubSubEventsBuilder};

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A topic and a subscription on it with `ack_deadline` seconds, in a project of its own.
struct Sub {
    url: String,
    project: String,
    topic: String,
    subscription: String,
}

async fn admin(method: reqwest::Method, url: &str, body: serde_json::Value) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("emulator reachable");
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.expect("JSON");
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

async fn subscription(emulator: &PubSubEmulator, ack_deadline: u32) -> Sub {
    let url = emulator.url();
    let project = unique("proj");
    let topic = format!("projects/{project}/topics/{}", unique("secrets"));
    let subscription = format!("projects/{project}/subscriptions/{}", unique("sync"));
    admin(
        reqwest::Method::PUT,
        &format!("{url}/v1/{topic}"),
        serde_json::json!({}),
    )
    .await;
    admin(
        reqwest::Method::PUT,
        &format!("{url}/v1/{subscription}"),
        serde_json::json!({ "topic": topic, "ackDeadlineSeconds": ack_deadline }),
    )
    .await;
    Sub {
        url,
        project,
        topic,
        subscription,
    }
}

impl Sub {
    fn source(&self, emulator: &PubSubEmulator) -> PubSubEvents {
        PubSubEventsBuilder::new(&self.subscription)
            .with_emulator_host(emulator.host())
            .with_pull_wait(Duration::from_secs(2))
            .build()
            .expect("source")
    }

    /// Publishes what Secret Manager publishes for `event` on secret `name`.
    async fn notify(&self, event: &str, name: &str, version: Option<u32>) {
        let secret_id = format!("projects/{}/secrets/{name}", self.project);
        let mut attributes = serde_json::json!({
            "eventType": event,
            "dataFormat": "JSON_API_V1",
            "secretId": secret_id,
            "timestamp": "2026-01-20T11:17:45.081104-08:00",
        });
        let resource = match version {
            Some(v) => {
                attributes["versionId"] = format!("{secret_id}/versions/{v}").into();
                serde_json::json!({
                    "name": format!("projects/123456789/secrets/{name}/versions/{v}"),
                    "createTime": "2026-01-20T19:17:44.906371Z",
                    "state": "ENABLED",
                    "replicationStatus": { "automatic": {} },
                    "etag": "\"1616d9a3d7c883\"",
                })
            }
            None => serde_json::json!({
                "name": format!("projects/123456789/secrets/{name}"),
                "replication": { "automatic": {} },
                "createTime": "2026-01-20T19:10:01.146431Z",
                "topics": [{ "name": self.topic }],
                "etag": "\"1616d9a3d7c883\"",
            }),
        };
        self.publish(serde_json::json!({
            "attributes": attributes,
            "data": base64::engine::general_purpose::STANDARD.encode(resource.to_string()),
        }))
        .await;
    }

    async fn publish(&self, message: serde_json::Value) {
        admin(
            reqwest::Method::POST,
            &format!("{}/v1/{}:publish", self.url, self.topic),
            serde_json::json!({ "messages": [message] }),
        )
        .await;
    }
}

/// Receives until `n` deliveries arrived or `limit` passed.
async fn receive_n(src: &PubSubEvents, n: usize, limit: Duration) -> Vec<Delivery> {
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
async fn notifications_become_change_events_and_acked_ones_stay_gone() {
    let emulator = PubSubEmulator::shared();
    let sub = subscription(emulator, 10).await;
    let src = sub.source(emulator);
    sub.notify("SECRET_VERSION_ADD", "db-password", Some(3)).await;
    sub.notify("SECRET_ROTATE", "api-key", None).await;
    // The test message Secret Manager sends when topics are set: no secret, acked and ignored.
    sub.publish(serde_json::json!({ "attributes": { "eventType": "TOPIC_CONFIGURED" } }))
        .await;
    // Not from Secret Manager at all.
    sub.publish(serde_json::json!({ "data": base64::engine::general_purpose::STANDARD.encode("hello") }))
        .await;

    let got = receive_n(&src, 4, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 4, "{got:?}");
    let mut events: Vec<(Vec<String>, String)> = got
        .iter()
        .flat_map(|d| d.events.iter().map(|e| (e.keys.clone(), e.kind.clone())))
        .collect();
    events.sort();
    let full = |n: &str| format!("projects/{}/secrets/{n}", sub.project);
    assert_eq!(
        events,
        vec![
            (
                vec!["api-key".to_string(), full("api-key")],
                "SECRET_ROTATE".to_string()
            ),
            (
                vec!["db-password".to_string(), full("db-password")],
                "SECRET_VERSION_ADD".to_string()
            ),
        ]
    );
    assert!(got.iter().all(|d| d.ack.is_some()));
    for e in got.iter().flat_map(|d| &d.events) {
        let lag = std::time::SystemTime::now()
            .duration_since(e.published.expect("publishTime"))
            .expect("published in the past");
        assert!(lag < Duration::from_secs(60), "{lag:?}");
    }

    src.ack(&acks(&got)).await.expect("ack");
    // Past the ack deadline nothing comes back.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let again = receive_n(&src, 1, Duration::from_secs(3)).await;
    assert!(again.is_empty(), "acknowledged messages came back: {again:?}");
}

#[tokio::test]
async fn unacknowledged_messages_are_delivered_again_after_the_deadline() {
    let emulator = PubSubEmulator::shared();
    let sub = subscription(emulator, 10).await;
    let src = sub.source(emulator);
    sub.notify("SECRET_VERSION_ADD", "kept", Some(1)).await;
    sub.notify("SECRET_VERSION_DISABLE", "dropped", Some(1)).await;
    let got = receive_n(&src, 2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    // The sync of `kept` finished: ack it. `dropped`'s handler "crashed": no ack.
    let (done, crashed): (Vec<_>, Vec<_>) = got.into_iter().partition(|d| d.events[0].keys[0] == "kept");
    src.ack(&acks(&done)).await.expect("ack");

    let start = Instant::now();
    let again = receive_n(&src, 1, Duration::from_secs(30)).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].events[0].keys[0], "dropped");
    assert_eq!(again[0].events[0].kind, "SECRET_VERSION_DISABLE");
    assert_ne!(again[0].ack, crashed[0].ack, "a redelivery gets a new ack id");
    eprintln!("redelivered after {:?} (ack deadline 10 s)", start.elapsed());
    src.ack(&acks(&again)).await.expect("ack");
    let none = receive_n(&src, 1, Duration::from_secs(13)).await;
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn a_missing_subscription_is_not_found_naming_it() {
    let emulator = PubSubEmulator::shared();
    let name = format!("projects/{}/subscriptions/{}", unique("proj"), unique("missing"));
    let src = PubSubEventsBuilder::new(&name)
        .with_emulator_host(emulator.host())
        .build()
        .expect("source");
    let e = src.receive().await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains(&name), "{e}");
    assert!(!e.is_retryable());
    let e = src.ack(&[AckToken("x".into())]).await.unwrap_err();
    assert!(e.to_string().contains(&name), "{e}");
}

#[tokio::test]
async fn an_emulator_that_is_down_is_a_clear_retryable_error_naming_the_host() {
    let mut emulator = PubSubEmulator::start();
    let sub = subscription(&emulator, 10).await;
    let src = sub.source(&emulator);
    assert!(src.receive().await.expect("up").is_empty());
    emulator.stop();
    let e = src.receive().await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains(emulator.host()), "{text}");
    assert!(text.contains(&sub.subscription), "{text}");
    assert!(text.contains("cannot reach"), "{text}");
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn an_idle_source_waits_at_the_server_instead_of_spinning() {
    let emulator = PubSubEmulator::shared();
    let sub = subscription(emulator, 10).await;
    let src = sub.source(emulator); // pull wait 2 s
    let start = Instant::now();
    let mut polls = 0;
    while start.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        assert!(src.receive().await.expect("receive").is_empty());
        assert!(t.elapsed() >= Duration::from_millis(1900), "{:?}", t.elapsed());
        polls += 1;
    }
    let pulls = src.stats().of("Pull");
    assert_eq!(pulls, polls);
    assert!(pulls <= 5, "{pulls} pulls in {:?}", start.elapsed());
    eprintln!(
        "idle: {pulls} pulls in {:?} with a 2 s pull wait (about {:.0}/min at the default 20 s)",
        start.elapsed(),
        60.0 / 20.0
    );
}

#[tokio::test]
async fn a_message_published_during_a_pull_arrives_at_once() {
    let emulator = PubSubEmulator::shared();
    let sub = subscription(emulator, 10).await;
    let src = Arc::new(
        PubSubEventsBuilder::new(&sub.subscription)
            .with_emulator_host(emulator.host())
            .build()
            .expect("source"),
    );
    let mut latencies = vec![];
    for i in 0..10 {
        let waiting = {
            let src = src.clone();
            tokio::spawn(async move {
                let r = src.receive().await;
                (r, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        sub.notify("SECRET_VERSION_ADD", "db", Some(i + 1)).await;
        let (got, at) = waiting.await.expect("task");
        let got = got.expect("receive");
        assert_eq!(got.len(), 1, "{got:?}");
        latencies.push(at.duration_since(sent));
        src.ack(&acks(&got)).await.expect("ack");
    }
    latencies.sort();
    eprintln!("publish → delivery: {latencies:?}");
    assert!(
        latencies[5] < Duration::from_secs(2),
        "median {:?} of {latencies:?}",
        latencies[5]
    );
}

fn store_yaml(kind: &str, events: &str, provider: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: {kind}\nmetadata:\n  name: gsm\n  namespace: external-secrets\n  annotations:\n    secretsync.io/events: \"{events}\"\nspec:\n  provider:\n{provider}"
    )
}

fn registry(dir: &std::path::Path) -> secretsync_core::registry::Registry {
    let mut r = secretsync_core::registry::Registry::with_builtin()
        .with_credentials(Arc::new(secretsync_core::registry::EnvFileCredentials::with_dir(dir)));
    r.register(Arc::new(secretsync_gcp::GcpFactory));
    r.register_events(Arc::new(secretsync_gcp::PubSubEventsFactory));
    r
}

#[tokio::test]
async fn the_registry_builds_the_source_offline_and_never_prints_the_key() {
    use secretsync_core::testkit::{CANARY, assert_no_canary};
    let dir = tempfile::tempdir().expect("tmp");
    let key_dir = dir.path().join("external-secrets/gcp-sa");
    std::fs::create_dir_all(&key_dir).expect("mkdir");
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "abc",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"),
        "client_email": "eso@p.iam.gserviceaccount.com",
    });
    std::fs::write(key_dir.join("key.json"), key.to_string()).expect("write");
    let yaml = store_yaml(
        "SecretStore",
        "gcp-pubsub:projects/p/subscriptions/secretsync",
        "    gcpsm:\n      projectID: p\n      auth:\n        secretRef:\n          secretAccessKeySecretRef:\n            name: gcp-sa\n            key: key.json\n",
    );
    let m = secretsync_core::manifest::load_str(&yaml, "store.yaml")
        .into_result()
        .expect("manifest");
    let reg = registry(dir.path());
    assert!(reg.validate_events(&m.stores[0], &[]).is_empty());
    let src = reg
        .build_events(&m.stores[0])
        .await
        .expect("an event source")
        .expect("builds without network");
    assert_eq!(src.scheme(), "gcp-pubsub");
    let dbg = format!("{src:?}");
    assert_no_canary(&dbg, "Debug of the event source");
    assert!(dbg.contains("projects/p/subscriptions/secretsync"), "{dbg}");
}

#[tokio::test]
async fn bad_annotations_are_manifest_errors_naming_the_annotation() {
    let dir = tempfile::tempdir().expect("tmp");
    let reg = registry(dir.path());
    for (value, says) in [
        (
            "gcp-pubsub:secretsync",
            "projects/<project>/subscriptions/<subscription>",
        ),
        (
            "gcp-pubsub:projects/p/topics/secrets",
            "projects/<project>/subscriptions/<subscription>",
        ),
        ("gcp-pubsub:projects/p/subscriptions/x", "not a valid subscription id"),
    ] {
        let yaml = store_yaml("ClusterSecretStore", value, "    gcpsm:\n      projectID: p\n");
        let m = secretsync_core::manifest::load_str(&yaml, "store.yaml")
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
    let yaml = store_yaml(
        "ClusterSecretStore",
        "gcp-pubsub:projects/p/subscriptions/secretsync",
        "    fake:\n      data: []\n",
    );
    let m = secretsync_core::manifest::load_str(&yaml, "store.yaml")
        .into_result()
        .expect("manifest");
    let errors = reg.validate_events(&m.stores[0], &[]);
    assert!(
        errors.iter().any(|e| e.to_string().contains("must be gcpsm")),
        "{errors:?}"
    );
}
