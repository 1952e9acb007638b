//! Change events pushed over HTTP to the `sync` daemon (the real binary): an authenticated
//! `POST /refresh` and Doppler's signed webhooks (against the Doppler fake) sync only the
//! readers of the changed key, reading only that key, long before their 1h refresh; a
//! burst of duplicates costs one sync; anything unsigned, forged, replayed or
//! unauthenticated is refused with 401 and changes nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use secretsync_fakes::daemon::DaemonProcess;

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");
const TOKEN: &str = "refresh-t0ken";

/// The daemon with the file/Doppler manifests of `dir`, writing to `dir/out`.
fn start_daemon(dir: &Path, envs: &[(&str, String)]) -> DaemonProcess {
    let out = dir.join("out").display().to_string();
    let mut all = vec![
        ("SECRETSYNC_REFRESH_TOKEN", TOKEN.to_string()),
        ("SECRETSYNC_STATE_DIR", dir.join("state").display().to_string()),
    ];
    all.extend(envs.iter().cloned());
    let (d, first) = DaemonProcess::start(BIN, &dir.join("m.yaml"), &["--output", &out], &all);
    assert_eq!(first["specs"].as_array().unwrap().len(), 2, "{first}");
    d
}

fn post(url: &str, auth: Option<&str>, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    post_with(&reqwest::blocking::Client::new(), url, auth, headers, body)
}

fn post_with(
    client: &reqwest::blocking::Client,
    url: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> u16 {
    let mut req = client.post(url).body(body.to_vec());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().expect("the daemon answers").status().as_u16()
}

fn value_of(dir: &Path, ns: &str, name: &str, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("out").join(ns).join(format!("{name}.yaml"))).unwrap_or_default();
    let doc: serde_json::Value = serde_norway::from_str(&text).unwrap_or_default();
    let b64 = doc["data"][key].as_str().unwrap_or_default();
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default(),
    )
    .unwrap()
}

const FILE_STORE: &str = "apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: local, namespace: dev}
spec: {provider: {file: {path: secrets.yaml}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: api, namespace: dev}
spec:
  refreshInterval: 1h
  secretStoreRef: {name: local}
  data:
    - {secretKey: DB, remoteRef: {key: db}}
    - {secretKey: JWT, remoteRef: {key: jwt}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: other, namespace: dev}
spec:
  refreshInterval: 1h
  secretStoreRef: {name: local}
  data:
    - {secretKey: JWT, remoteRef: {key: jwt}}
";

#[test]
fn refresh_needs_the_token_and_syncs_only_the_readers_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secrets.yaml"), "db: one\njwt: j\nunread: u\n").unwrap();
    std::fs::write(dir.path().join("m.yaml"), FILE_STORE).unwrap();
    let d = start_daemon(dir.path(), &[]);
    assert_eq!(value_of(dir.path(), "dev", "api", "DB"), "one");

    std::fs::write(dir.path().join("secrets.yaml"), "db: two\njwt: j\nunread: u\n").unwrap();
    let refresh = format!("{}/refresh?store=local&namespace=dev&key=db", d.url);
    assert_eq!(post(&refresh, None, &[], b""), 401, "no token");
    assert_eq!(post(&refresh, Some("Bearer wrong"), &[], b""), 401, "a wrong token");
    assert_eq!(post(&refresh, Some(TOKEN), &[], b""), 401, "not a bearer token");
    assert!(
        d.reports_within(Duration::from_secs(2)).is_empty(),
        "refused calls sync nothing"
    );
    assert_eq!(value_of(dir.path(), "dev", "api", "DB"), "one");

    let auth = format!("Bearer {TOKEN}");
    assert_eq!(post(&refresh, Some(&auth), &[], b""), 202);
    let r = d.next_report(Duration::from_secs(20)).expect("an event-driven cycle");
    assert_eq!(r["events"], 1, "{r}");
    assert_eq!(r["values_read"], 1, "only the key the event named: {r}");
    assert_eq!(r["writes"], 1, "{r}");
    let specs: Vec<&str> = r["specs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(specs, ["api"], "only the spec reading `db`");
    assert_eq!(value_of(dir.path(), "dev", "api", "DB"), "two");

    // A key nobody reads, and an unknown store: no cycle.
    let unread = format!("{}/refresh?store=local&namespace=dev&key=unread", d.url);
    assert_eq!(post(&unread, Some(&auth), &[], b""), 202);
    let unknown = format!("{}/refresh?store=nope&namespace=dev", d.url);
    assert_eq!(post(&unknown, Some(&auth), &[], b""), 404);
    assert!(d.reports_within(Duration::from_secs(2)).is_empty());

    // 100 duplicate events at once: one sync.
    std::fs::write(dir.path().join("secrets.yaml"), "db: three\njwt: j\nunread: u\n").unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let client = reqwest::blocking::Client::new();
                for _ in 0..25 {
                    assert_eq!(post_with(&client, &refresh, Some(&auth), &[], b""), 202);
                }
            });
        }
    });
    let took = started.elapsed();
    let burst = d.reports_within(Duration::from_secs(4));
    assert_eq!(burst.len(), 1, "one sync for a burst sent in {took:?}: {burst:?}");
    assert_eq!(burst[0]["events"], 100);
    assert_eq!(burst[0]["values_read"], 1);
    assert_eq!(value_of(dir.path(), "dev", "api", "DB"), "three");

    let metrics = reqwest::blocking::get(format!("{}/metrics", d.url))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("secretsync_events_total{source=\"refresh\",store=\"\",outcome=\"refused\"} 3"),
        "{metrics}"
    );
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doppler_webhooks_must_be_signed_and_fresh() {
    let doppler = secretsync_fakes::doppler::FakeDoppler::start().await;
    doppler.create_config("backend", "prd");
    doppler.set_secrets("backend", "prd", [("DB_PASSWORD", "one"), ("JWT", "j")]);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    for (name, key, value) in [
        ("doppler-token", "token", doppler.service_token("backend", "prd")),
        ("doppler-webhook", "signing", "whsec-1".to_string()),
    ] {
        std::fs::create_dir_all(creds.join("dev").join(name)).unwrap();
        std::fs::write(creds.join("dev").join(name).join(key), value).unwrap();
    }
    let m = format!(
        r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: doppler
  namespace: dev
  annotations:
    secretsync.io/events: doppler-webhook
    secretsync.io/events-secret: dev/doppler-webhook/signing
spec:
  provider:
    doppler:
      endpoint: "{}"
      auth: {{secretRef: {{dopplerToken: {{name: doppler-token, key: token}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: api, namespace: dev}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: doppler}}
  data:
    - {{secretKey: DB_PASSWORD, remoteRef: {{key: DB_PASSWORD}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: jwt, namespace: dev}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: doppler}}
  data:
    - {{secretKey: JWT, remoteRef: {{key: JWT}}}}
"#,
        doppler.url()
    );
    std::fs::write(dir.path().join("m.yaml"), m).unwrap();
    let path = dir.path().to_path_buf();
    let creds_dir = creds.display().to_string();
    let d = tokio::task::spawn_blocking(move || start_daemon(&path, &[("SECRETSYNC_SECRETS_DIR", creds_dir)]))
        .await
        .unwrap();
    let dir_path = dir.path().to_path_buf();
    assert_eq!(value_of(&dir_path, "dev", "api", "DB_PASSWORD"), "one");
    doppler.set_secret("backend", "prd", "DB_PASSWORD", "two");
    let hook = format!("{}/events/doppler/dev/doppler", d.url);
    let body = br#"{"type":"config.secrets.update","config":{"name":"prd","project":"backend"},"project":{"id":"backend","name":"backend"},"diff":{"added":[],"updated":["DB_PASSWORD"],"removed":[]}}"#.to_vec();
    let good = sign("whsec-1", &body);
    let forged = sign("guess", &body);
    tokio::task::block_in_place(|| {
        assert_eq!(post(&hook, None, &[], &body), 401, "unsigned");
        assert_eq!(
            post(&hook, None, &[("x-doppler-signature", &forged)], &body),
            401,
            "forged"
        );
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("prd", "dev")
            .into_bytes();
        assert_eq!(
            post(&hook, None, &[("x-doppler-signature", &good)], &tampered),
            401,
            "tampered"
        );
        let other_store = hook.replace("/dev/doppler", "/dev/other");
        assert_eq!(post(&other_store, None, &[("x-doppler-signature", &good)], &body), 401);
        assert!(
            d.reports_within(Duration::from_secs(2)).is_empty(),
            "refused hooks sync nothing"
        );

        assert_eq!(post(&hook, None, &[("x-doppler-signature", &good)], &body), 202);
        let r = d.next_report(Duration::from_secs(20)).expect("an event-driven cycle");
        let specs: Vec<&str> = r["specs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(specs, ["api"], "only the reader of DB_PASSWORD: {r}");
        assert_eq!(r["writes"], 1, "{r}");
        assert_eq!(value_of(&dir_path, "dev", "api", "DB_PASSWORD"), "two");

        // A second change right after that read (inside the Doppler source's 2 s
        // freshness window): the event makes the source ask Doppler again.
        doppler.set_secret("backend", "prd", "DB_PASSWORD", "three");
        let body2 = br#"{"type":"config.secrets.update","config":{"name":"prd","project":"backend"},"diff":{"updated":["DB_PASSWORD"]}}"#;
        let sig2 = sign("whsec-1", body2);
        assert_eq!(post(&hook, None, &[("x-doppler-signature", &sig2)], body2), 202);
        let r = d.next_report(Duration::from_secs(20)).expect("an event-driven cycle");
        assert_eq!(r["writes"], 1, "{r}");
        assert_eq!(value_of(&dir_path, "dev", "api", "DB_PASSWORD"), "three");
        assert_eq!(
            post(&hook, None, &[("x-doppler-signature", &good)], &body),
            401,
            "a replay"
        );
        assert!(
            d.reports_within(Duration::from_secs(2)).is_empty(),
            "a replay syncs nothing"
        );
    });
    assert_eq!(value_of(&dir_path, "dev", "api", "DB_PASSWORD"), "three");
    drop(d);
}

#[test]
fn check_names_a_bad_events_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.yaml");
    std::fs::write(
        &m,
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata:\n  name: local\n  namespace: dev\n  annotations: {secretsync.io/events: 'carrier-pigeon:coop-7'}\nspec: {provider: {file: {path: secrets.yaml}}}\n",
    )
    .unwrap();
    let o = Command::new(BIN).args(["check", "-m"]).arg(&m).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("metadata.annotations.secretsync.io/events"), "{err}");
    assert!(err.contains("unknown event source `carrier-pigeon`"), "{err}");
    assert!(err.contains("doppler-webhook"), "lists what is known: {err}");
}

/// An event source that is down (here an SQS queue on a port nothing listens on): every
/// report says why events are not flowing, and the specs keep syncing on their interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_event_source_is_reported_and_polling_goes_on() {
    use secretsync_core::{SecretValue, SecretWriter, WriteRequest};
    let moto = secretsync_fakes::moto::Moto::shared().url().to_string();
    let key = format!("events-down-{}", std::process::id());
    let aws = secretsync::aws::AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(moto.clone())
        .with_credentials("testing", "testing".into())
        .build()
        .await
        .unwrap();
    aws.put(&WriteRequest::new(&key, SecretValue::from("one")))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        format!(
            "apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: aws
  namespace: dev
  annotations: {{secretsync.io/events: 'aws-sqs:http://127.0.0.1:1/000000000000/changes'}}
spec: {{provider: {{aws: {{service: SecretsManager, region: us-east-1, endpoint: '{moto}'}}}}}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {{name: api, namespace: dev}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: aws}}
  data: [{{secretKey: DB, remoteRef: {{key: {key}}}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: plain, namespace: dev}}
stringData: {{a: b}}
"
        ),
    )
    .unwrap();
    let path = dir.path().to_path_buf();
    let envs = [
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ];
    let d = tokio::task::block_in_place(|| start_daemon(&path, &envs));
    assert_eq!(value_of(dir.path(), "dev", "api", "DB"), "one");
    aws.put(&WriteRequest::new(&key, SecretValue::from("two")))
        .await
        .unwrap();
    let reports = tokio::task::block_in_place(|| d.reports_within(Duration::from_secs(8)));
    assert!(!reports.is_empty(), "the spec keeps syncing on its 2s interval");
    let down = &reports.last().unwrap()["events_down"];
    assert_eq!(down[0]["source"], "aws-sqs", "{down}");
    assert!(
        down[0]["problem"].as_str().unwrap().contains("127.0.0.1"),
        "names where it could not connect: {down}"
    );
    assert_eq!(
        value_of(dir.path(), "dev", "api", "DB"),
        "two",
        "polling carried the change"
    );
}

/// A daemon embedded in a program (`run_sync`) that is stopped closes its port: nothing
/// keeps serving `/refresh` behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_daemon_stops_serving() {
    use secretsync::app::events::ListenOn;
    use secretsync::app::{Exit, SinkChoice, Stop, SyncOptions, run_sync};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secrets.yaml"), "db: one\njwt: j\n").unwrap();
    std::fs::write(dir.path().join("m.yaml"), FILE_STORE).unwrap();
    let listen = ListenOn::new("127.0.0.1:0".parse().unwrap());
    let (stop, handle) = Stop::manual();
    let opts = SyncOptions {
        manifests: vec![dir.path().join("m.yaml")],
        sink: SinkChoice::Folder(dir.path().join("out")),
        listen: Some(listen.clone()),
        stop,
        ..SyncOptions::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let daemon = run_sync(&opts, &mut out, &mut err);
    let probe = async {
        let t = Instant::now();
        let addr = loop {
            if let Some(a) = listen.local_addr() {
                break a;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_ok(),
            "serving while running"
        );
        handle.stop();
        addr
    };
    let (code, addr) = tokio::join!(daemon, probe);
    assert!(matches!(code, Exit::Synced | Exit::Interrupted), "{code:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port closes with the daemon"
    );
}
