//! Change events in the operator, through the Kubernetes fake and real peers: a signed
//! Doppler webhook (the Doppler fake) syncs only the readers of the changed key with one
//! provider read and one restart; forged, unsigned, replayed and unauthenticated requests
//! are refused with 401 and change nothing; an EventBridge event on moto's SQS reaches its
//! target; a source that is down shows on the store's status and in `/metrics` while
//! polling still syncs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use secretsync_core::registry::Registry;
use secretsync_core::{SecretValue, SecretWriter, WriteRequest};
use secretsync_fakes::kube::FakeKube;
use secretsync_k8s::KubeCredentials;
use secretsync_operator::{Controller, ControllerConfig, ControllerHandle, EVENTS_CONDITION};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const TOKEN: &str = "refresh-t0ken";

struct Running {
    handle: ControllerHandle,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The controller and its HTTP server on a free port.
    async fn start(client: kube::Client, registry: Registry) -> Self {
        Self::start_with(client, registry, config("events-test")).await
    }

    async fn start_with(client: kube::Client, registry: Registry, cfg: ControllerConfig) -> Self {
        let c = Controller::new(client, registry, cfg).unwrap();
        let handle = c.handle();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(secretsync_operator::serve(listener, handle.clone()));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            c.run(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            handle,
            url,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

fn config(identity: &str) -> ControllerConfig {
    ControllerConfig {
        identity: identity.into(),
        refresh_token: Some(SecretValue::from(TOKEN)),
        fingerprint_key_secret: None,
        ..ControllerConfig::default()
    }
}

/// Polls `f` every 20 ms until it is `Some`, failing after `limit`.
async fn eventually<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.0 request; the status code and the body.
async fn http(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The value of one sample whose name and labels contain every `parts`.
fn sample(text: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn eso(client: &kube::Client, kind: &str, plural: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("external-secrets.io", "v1", kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

async fn create(api: &Api<DynamicObject>, obj: Value) {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

async fn create_secret(client: &kube::Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "stringData": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

/// A Deployment reading Secret `name` at start-up (restarted when it changes).
async fn consumer(client: &kube::Client, ns: &str, name: &str) {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "app", "envFrom": [{"secretRef": {"name": name}}]}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

fn external_secret(ns: &str, name: &str, store: &str, interval: &str, pairs: &[(&str, &str)]) -> Value {
    let data: Vec<Value> = pairs
        .iter()
        .map(|(k, r)| json!({"secretKey": k, "remoteRef": {"key": r}}))
        .collect();
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "refreshInterval": interval,
            "secretStoreRef": {"kind": "SecretStore", "name": store},
            "target": {"name": name},
            "data": data,
        },
    })
}

fn value(kube: &FakeKube, ns: &str, name: &str, key: &str) -> Option<String> {
    use base64::Engine as _;
    let s = kube.object("v1", "secrets", Some(ns), name)?;
    let b = base64::engine::general_purpose::STANDARD
        .decode(s["data"][key].as_str()?)
        .ok()?;
    String::from_utf8(b).ok()
}

fn writes_to(kube: &FakeKube, path: &str) -> usize {
    kube.requests()
        .iter()
        .filter(|r| r.is_write() && r.path == path)
        .count()
}

/// The store's `EventsReady` condition, once it has one.
fn events_condition(kube: &FakeKube, ns: &str, store: &str) -> Option<Value> {
    let s = kube.object("external-secrets.io/v1", "secretstores", Some(ns), store)?;
    s["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == EVENTS_CONDITION)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_doppler_webhook_syncs_the_readers_with_one_read_and_forgeries_change_nothing() {
    let doppler = secretsync_fakes::doppler::FakeDoppler::start().await;
    doppler.create_config("backend", "prd");
    doppler.set_secrets("backend", "prd", [("DB_PASSWORD", "v1"), ("API_KEY", "k1")]);
    let kube = FakeKube::start().await;
    kube.create_namespaces(&["dev"]);
    let client = kube.client();
    create_secret(
        &client,
        "dev",
        "doppler-token",
        &[("token", &doppler.service_token("backend", "prd"))],
    )
    .await;
    create_secret(&client, "dev", "doppler-webhook", &[("signing", "whsec-1")]).await;
    consumer(&client, "dev", "api").await;
    consumer(&client, "dev", "other").await;
    create(
        &eso(&client, "SecretStore", "secretstores", Some("dev")),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "doppler", "namespace": "dev", "annotations": {
                "secretsync.io/events": "doppler-webhook",
                "secretsync.io/events-secret": "dev/doppler-webhook/signing",
            }},
            "spec": {"provider": {"doppler": {
                "endpoint": doppler.url(),
                "auth": {"secretRef": {"dopplerToken": {"name": "doppler-token", "key": "token"}}},
            }}},
        }),
    )
    .await;
    let es = eso(&client, "ExternalSecret", "externalsecrets", Some("dev"));
    create(
        &es,
        external_secret(
            "dev",
            "api",
            "doppler",
            "1h",
            &[("DB_PASSWORD", "DB_PASSWORD"), ("API_KEY", "API_KEY")],
        ),
    )
    .await;
    create(
        &es,
        external_secret("dev", "other", "doppler", "1h", &[("API_KEY", "API_KEY")]),
    )
    .await;

    let mut registry = Registry::with_builtin();
    registry.register(Arc::new(secretsync_doppler::DopplerFactory));
    let registry = registry.with_credentials(Arc::new(KubeCredentials::new(client.clone())));
    let op = Running::start(client.clone(), registry).await;
    eventually(Duration::from_secs(20), "the first sync", async || {
        (value(&kube, "dev", "api", "DB_PASSWORD").as_deref() == Some("v1")
            && value(&kube, "dev", "other", "API_KEY").as_deref() == Some("k1"))
        .then_some(())
    })
    .await;
    // The signing secret is read once the source starts: the store says events flow.
    let cond = eventually(Duration::from_secs(20), "EventsReady on the store", async || {
        events_condition(&kube, "dev", "doppler").filter(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(cond["reason"], "EventsFlowing", "{cond}");

    let download = "/v3/configs/config/secrets/download";
    let api_secret = "/api/v1/namespaces/dev/secrets/api";
    let other_secret = "/api/v1/namespaces/dev/secrets/other";
    let api_deploy = "/apis/apps/v1/namespaces/dev/deployments/api";
    let other_deploy = "/apis/apps/v1/namespaces/dev/deployments/other";
    let before = (
        doppler.count("GET", download),
        writes_to(&kube, api_secret),
        writes_to(&kube, api_deploy),
        writes_to(&kube, other_secret),
        writes_to(&kube, other_deploy),
    );

    // Changed at Doppler; then forged, unsigned, foreign-store and unauthenticated requests.
    doppler.set_secret("backend", "prd", "DB_PASSWORD", "v2");
    let body = br#"{"type":"config.secrets.update","config":{"name":"prd","project":"backend"},"diff":{"added":[],"updated":["DB_PASSWORD"],"removed":[]}}"#;
    let hook = "/events/doppler/dev/doppler";
    let forged = sign(b"not-the-secret", body);
    assert_eq!(
        http(&op.url, "POST", hook, &[("X-Doppler-Signature", &forged)], body)
            .await
            .0,
        401
    );
    assert_eq!(http(&op.url, "POST", hook, &[], body).await.0, 401, "unsigned");
    let good = sign(b"whsec-1", body);
    let unknown = "/events/doppler/dev/nope";
    assert_eq!(
        http(&op.url, "POST", unknown, &[("X-Doppler-Signature", &good)], body)
            .await
            .0,
        401
    );
    let refresh = "/refresh?store=doppler&namespace=dev&key=DB_PASSWORD";
    assert_eq!(http(&op.url, "POST", refresh, &[], b"").await.0, 401, "no token");
    assert_eq!(
        http(&op.url, "POST", refresh, &[("Authorization", "Bearer wrong")], b"")
            .await
            .0,
        401
    );
    // Refused requests queue nothing: after a burst window, nothing was read or written.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        doppler.count("GET", download),
        before.0,
        "refused requests read nothing"
    );
    assert_eq!(writes_to(&kube, api_secret), before.1, "refused requests write nothing");
    assert_eq!(value(&kube, "dev", "api", "DB_PASSWORD").as_deref(), Some("v1"));

    // The signed webhook: only `api` reads DB_PASSWORD; one download, one write, one restart.
    let t0 = Instant::now();
    assert_eq!(
        http(&op.url, "POST", hook, &[("X-Doppler-Signature", &good)], body)
            .await
            .0,
        202
    );
    eventually(Duration::from_secs(10), "the event-driven sync", async || {
        (value(&kube, "dev", "api", "DB_PASSWORD").as_deref() == Some("v2")).then_some(())
    })
    .await;
    let took = t0.elapsed();
    eventually(Duration::from_secs(5), "the restart", async || {
        (writes_to(&kube, api_deploy) > before.2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        doppler.count("GET", download) - before.0,
        1,
        "one provider read (took {took:?})"
    );
    assert_eq!(writes_to(&kube, api_secret) - before.1, 1, "one Secret write");
    assert_eq!(writes_to(&kube, api_deploy) - before.2, 1, "consumers restarted once");
    assert_eq!(
        writes_to(&kube, other_secret),
        before.3,
        "`other` does not read DB_PASSWORD"
    );
    assert_eq!(
        writes_to(&kube, other_deploy),
        before.4,
        "nor is its consumer restarted"
    );

    // The same delivery again is a replay.
    assert_eq!(
        http(&op.url, "POST", hook, &[("X-Doppler-Signature", &good)], body)
            .await
            .0,
        401
    );

    // 100 distinct signed deliveries for one key at once: one sync.
    doppler.set_secret("backend", "prd", "DB_PASSWORD", "v3");
    let before = (doppler.count("GET", download), writes_to(&kube, api_deploy));
    let sends = (0..100).map(|i| {
        let url = op.url.clone();
        async move {
            let body = format!(
                r#"{{"type":"config.secrets.update","config":{{"name":"prd"}},"diff":{{"updated":["DB_PASSWORD"]}},"n":{i}}}"#
            );
            let sig = sign(b"whsec-1", body.as_bytes());
            http(&url, "POST", hook, &[("X-Doppler-Signature", &sig)], body.as_bytes()).await.0
        }
    });
    let codes = futures::future::join_all(sends).await;
    assert!(codes.iter().all(|c| *c == 202), "{codes:?}");
    eventually(Duration::from_secs(10), "the burst's sync", async || {
        (value(&kube, "dev", "api", "DB_PASSWORD").as_deref() == Some("v3")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        doppler.count("GET", download) - before.0,
        1,
        "a burst of 100 costs one read"
    );
    assert_eq!(writes_to(&kube, api_deploy) - before.1, 1, "and one restart");

    // `/refresh` with the token works too.
    assert_eq!(
        http(
            &op.url,
            "POST",
            refresh,
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            b""
        )
        .await
        .0,
        202
    );
    let metrics = http(&op.url, "GET", "/metrics", &[], b"").await.1;
    let store = "store=\"SecretStore dev/doppler\"";
    assert!(
        sample(&metrics, &["secretsync_events_total", store, "outcome=\"synced\""]).unwrap() >= 101.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &["secretsync_events_total", store, "outcome=\"refused\""]),
        Some(3.0),
        "forged, unsigned, replayed: {metrics}"
    );
    assert_eq!(sample(&metrics, &["secretsync_events_up", store]), Some(1.0));
    assert!(metrics.trim_end().ends_with("# EOF"), "valid OpenMetrics");
    op.stop().await;
}

fn sqs() -> aws_sdk_sqs::Client {
    let moto = secretsync_fakes::moto::Moto::shared().url().to_string();
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(moto)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .build(),
    )
}

/// What EventBridge delivers to a queue for a Secrets Manager `PutSecretValue`.
fn put_secret_value(name: &str) -> String {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "PutSecretValue",
            "awsRegion": "us-east-1",
            "requestParameters": {"secretId": name, "clientRequestToken": "tok"},
            "responseElements": {"arn": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-Xy12Ab")},
        }
    })
    .to_string()
}

fn aws_store(ns: &str, name: &str, moto: &str, queue: &str) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
        "metadata": {"name": name, "namespace": ns, "annotations": {"secretsync.io/events": format!("aws-sqs:{queue}")}},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager", "region": "us-east-1", "endpoint": moto,
            "auth": {"secretRef": {
                "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id"},
                "secretAccessKeySecretRef": {"name": "aws-creds", "key": "secret"},
            }},
        }}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_event_reaches_its_target_and_a_missing_queue_shows_while_polling_syncs() {
    let moto = secretsync_fakes::moto::Moto::shared().url().to_string();
    let p = format!("opev-{}-{:08x}-", std::process::id(), rand::random::<u32>());
    let aws = secretsync_aws::AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(moto.clone())
        .with_credentials("testing", "testing".into())
        .build()
        .await
        .unwrap();
    for (k, v) in [("db", "one"), ("jwt", "j"), ("polled", "p1")] {
        aws.put(&WriteRequest::new(format!("{p}{k}"), SecretValue::from(v)))
            .await
            .unwrap();
    }
    let queue = sqs()
        .create_queue()
        .queue_name(format!("{p}changes"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    // A queue URL on moto that does not exist: the source is down.
    let missing = format!("{}missing", queue.strip_suffix("changes").unwrap());

    let kube = FakeKube::start().await;
    kube.create_namespaces(&["dev"]);
    let client = kube.client();
    create_secret(&client, "dev", "aws-creds", &[("id", "testing"), ("secret", "testing")]).await;
    let stores = eso(&client, "SecretStore", "secretstores", Some("dev"));
    create(&stores, aws_store("dev", "aws", &moto, &queue)).await;
    create(&stores, aws_store("dev", "aws-down", &moto, &missing)).await;
    let es = eso(&client, "ExternalSecret", "externalsecrets", Some("dev"));
    let k = |s: &str| format!("{p}{s}");
    create(
        &es,
        external_secret("dev", "api", "aws", "1h", &[("DB", &k("db")), ("JWT", &k("jwt"))]),
    )
    .await;
    create(
        &es,
        external_secret("dev", "polled", "aws-down", "2s", &[("V", &k("polled"))]),
    )
    .await;

    let mut registry = Registry::with_builtin();
    registry.register(Arc::new(secretsync_aws::AwsFactory));
    registry.register_events(Arc::new(secretsync_aws::SqsEventsFactory));
    let registry = registry.with_credentials(Arc::new(KubeCredentials::new(client.clone())));
    let op = Running::start(client.clone(), registry).await;
    eventually(Duration::from_secs(30), "the first sync", async || {
        (value(&kube, "dev", "api", "DB").as_deref() == Some("one")
            && value(&kube, "dev", "polled", "V").as_deref() == Some("p1"))
        .then_some(())
    })
    .await;

    // Once the store says events flow, the change and its event: the target follows long
    // before its 1h refresh.
    eventually(Duration::from_secs(10), "EventsReady True on aws", async || {
        events_condition(&kube, "dev", "aws").filter(|c| c["status"] == "True")
    })
    .await;
    let api_secret = "/api/v1/namespaces/dev/secrets/api";
    let writes_before = writes_to(&kube, api_secret);
    aws.put(&WriteRequest::new(k("db"), SecretValue::from("two")))
        .await
        .unwrap();
    sqs()
        .send_message()
        .queue_url(&queue)
        .message_body(put_secret_value(&k("db")))
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the event-driven sync", async || {
        (value(&kube, "dev", "api", "DB").as_deref() == Some("two")).then_some(())
    })
    .await;
    assert_eq!(
        writes_to(&kube, api_secret) - writes_before,
        1,
        "{:?}",
        kube.requests()
            .iter()
            .filter(|r| r.path.starts_with(api_secret))
            .map(|r| format!("{} {} {}", r.method, r.query, r.status))
            .collect::<Vec<_>>()
    );
    // Acknowledged after the sync: the queue is empty.
    let left = eventually(Duration::from_secs(10), "the message deleted", async || {
        let a = sqs()
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let attrs = a.attributes().cloned().unwrap_or_default();
        let n =
            |q: aws_sdk_sqs::types::QueueAttributeName| attrs.get(&q).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let total = n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        (total == 0).then_some(total)
    })
    .await;
    assert_eq!(left, 0);

    // The missing queue: the store says why, once; /metrics too; polling still syncs.
    let cond = eventually(Duration::from_secs(20), "EventsReady False on aws-down", async || {
        events_condition(&kube, "dev", "aws-down").filter(|c| c["status"] == "False")
    })
    .await;
    assert_eq!(cond["reason"], "EventSourceDown", "{cond}");
    let message = cond["message"].as_str().unwrap().to_string();
    assert!(message.contains("missing"), "names the queue: {message}");
    let status_path = "/apis/external-secrets.io/v1/namespaces/dev/secretstores/aws-down/status";
    let status_writes = writes_to(&kube, status_path);
    aws.put(&WriteRequest::new(k("polled"), SecretValue::from("p2")))
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "the poll of aws-down's spec", async || {
        (value(&kube, "dev", "polled", "V").as_deref() == Some("p2")).then_some(())
    })
    .await;
    let metrics = http(&op.url, "GET", "/metrics", &[], b"").await.1;
    let down = "store=\"SecretStore dev/aws-down\"";
    assert_eq!(
        sample(&metrics, &["secretsync_events_up", down]),
        Some(0.0),
        "{metrics}"
    );
    assert!(sample(&metrics, &["secretsync_events_total", down, "outcome=\"error\""]).unwrap() >= 1.0);
    let up = "store=\"SecretStore dev/aws\"";
    assert_eq!(sample(&metrics, &["secretsync_events_up", up]), Some(1.0), "{metrics}");
    assert_eq!(
        sample(&metrics, &["secretsync_events_total", up, "outcome=\"synced\""]),
        Some(1.0)
    );
    // Retries with the same problem write no status.
    assert_eq!(
        writes_to(&kube, status_path),
        status_writes,
        "an unchanged condition is not rewritten"
    );
    // A flowing source says so once its grace period passed.
    eventually(Duration::from_secs(10), "EventsReady True on aws", async || {
        events_condition(&kube, "dev", "aws").filter(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(
        writes_to(&kube, status_path),
        status_writes,
        "still no rewrite of aws-down's condition"
    );

    // Fixing the annotation restarts the store's source: it flows, and the status says so.
    let fixed = sqs()
        .create_queue()
        .queue_name(format!("{p}fixed"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    stores
        .patch(
            "aws-down",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"secretsync.io/events": format!("aws-sqs:{fixed}")}}}),
            ),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "EventsReady True on aws-down", async || {
        events_condition(&kube, "dev", "aws-down").filter(|c| c["status"] == "True")
    })
    .await;
    let metrics = http(&op.url, "GET", "/metrics", &[], b"").await.1;
    assert_eq!(
        sample(&metrics, &["secretsync_events_up", down]),
        Some(1.0),
        "{metrics}"
    );

    // Deleting a store stops its source: its series go away.
    stores.delete("aws", &Default::default()).await.unwrap();
    eventually(Duration::from_secs(10), "aws's event series gone", async || {
        let metrics = http(&op.url, "GET", "/metrics", &[], b"").await.1;
        sample(&metrics, &["secretsync_events_up", up]).is_none().then_some(())
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_runs_event_sources_and_a_new_leader_takes_them_over() {
    let lease = Duration::from_secs(3);
    let kube = FakeKube::start().await;
    kube.create_namespaces(&["dev", "kube-system"]);
    let client = kube.client();
    create_secret(&client, "dev", "webhook", &[("signing", "whsec-ha")]).await;
    create(
        &eso(&client, "SecretStore", "secretstores", Some("dev")),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "hooked", "namespace": "dev", "annotations": {
                "secretsync.io/events": "doppler-webhook",
                "secretsync.io/events-secret": "dev/webhook/signing",
            }},
            "spec": {"provider": {"fake": {"data": [{"key": "k", "value": "one"}]}}},
        }),
    )
    .await;
    create(
        &eso(&client, "ExternalSecret", "externalsecrets", Some("dev")),
        external_secret("dev", "es", "hooked", "1h", &[("K", "k")]),
    )
    .await;
    let ha = |id: &str| ControllerConfig {
        lease: Some(secretsync_operator::LeaseConfig::new("events-ha", "kube-system", lease)),
        ..config(id)
    };
    let a = Running::start_with(kube.named_client("a"), Registry::with_builtin(), ha("a")).await;
    eventually(Duration::from_secs(10), "a leads", async || {
        a.handle.is_leader().then_some(())
    })
    .await;
    let b = Running::start_with(kube.named_client("b"), Registry::with_builtin(), ha("b")).await;
    eventually(Duration::from_secs(10), "the Secret", async || {
        value(&kube, "dev", "es", "K")
    })
    .await;

    // A signed delivery that is not a secrets update: 200 ("ignored") once the key is read.
    let hook = "/events/doppler/dev/hooked";
    let signed = async |url: &str, n: u32| {
        let body = format!(r#"{{"type":"project.updated","n":{n}}}"#);
        let sig = sign(b"whsec-ha", body.as_bytes());
        http(url, "POST", hook, &[("X-Doppler-Signature", &sig)], body.as_bytes())
            .await
            .0
    };
    let mut n = 0;
    eventually(
        Duration::from_secs(10),
        "the leader accepts signed webhooks",
        async || {
            n += 1;
            (signed(&a.url, n).await == 200).then_some(())
        },
    )
    .await;
    // The follower runs nothing: it answers 503 to a signed delivery, 401 without the
    // token, never read the signing Secret, and shows no event series.
    assert!(!b.handle.is_leader());
    n += 1;
    assert_eq!(signed(&b.url, n).await, 503);
    let refresh = "/refresh?store=hooked&namespace=dev";
    assert_eq!(http(&b.url, "POST", refresh, &[], b"").await.0, 401);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        http(&b.url, "POST", refresh, &[("Authorization", &bearer)], b"")
            .await
            .0,
        503
    );
    let read_signing_secret = |client: &str| {
        kube.requests()
            .iter()
            .filter(|r| r.client.as_deref() == Some(client) && r.path.ends_with("/namespaces/dev/secrets"))
            .filter(|r| r.query.contains("metadata.name%3Dwebhook") || r.query.contains("metadata.name=webhook"))
            .count()
    };
    assert!(read_signing_secret("a") >= 1, "the leader watches the signing Secret");
    assert_eq!(read_signing_secret("b"), 0, "the follower does not");
    let store = "store=\"SecretStore dev/hooked\"";
    let metrics_b = http(&b.url, "GET", "/metrics", &[], b"").await.1;
    assert_eq!(
        sample(&metrics_b, &["secretsync_events_up", store]),
        None,
        "{metrics_b}"
    );

    // The leader stops (releasing the Lease): b takes over and starts the source.
    a.stop().await;
    eventually(Duration::from_secs(10), "b leads", async || {
        b.handle.is_leader().then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "b accepts signed webhooks", async || {
        n += 1;
        (signed(&b.url, n).await == 200).then_some(())
    })
    .await;
    assert!(read_signing_secret("b") >= 1);
    let metrics_b = http(&b.url, "GET", "/metrics", &[], b"").await.1;
    assert_eq!(
        sample(&metrics_b, &["secretsync_events_up", store]),
        Some(1.0),
        "{metrics_b}"
    );
    b.stop().await;
}
