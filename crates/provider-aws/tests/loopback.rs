//! What moto cannot do: throttle, and deny one action while allowing another. A loopback
//! HTTP peer answers the AWS JSON protocol (`X-Amz-Target`, `__type` errors) with scripted
//! answers, to check the SDK retry configuration, per-attempt call counts and the
//! fallbacks for policies that deny `BatchGetSecretValue` or `ListSecrets`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use secretsync_aws::AwsSecretsManagerBuilder;
use secretsync_core::{Error, RemoteKey, SecretSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Answer = (&'static str, String);

const VALUE: &str = r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:busy-AbCdEf","Name":"busy","VersionId":"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0","SecretString":"finally","VersionStages":["AWSCURRENT"],"CreatedDate":1.7e9}"#;

fn throttled() -> Answer {
    (
        "400 Bad Request",
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
    )
}

fn denied(action: &str) -> Answer {
    (
        "400 Bad Request",
        format!(
            r#"{{"__type":"AccessDeniedException","message":"User: arn:aws:iam::123456789012:user/eso-reader is not authorized to perform: secretsmanager:{action} because no identity-based policy allows the secretsmanager:{action} action"}}"#
        ),
    )
}

/// The first `throttle` requests get 400 ThrottlingException, the others a value.
async fn peer(throttle: usize) -> (String, Arc<AtomicUsize>) {
    scripted(move |_, i| {
        if i < throttle {
            throttled()
        } else {
            ("200 OK", VALUE.to_string())
        }
    })
    .await
}

/// Serves until the test ends: `answer(operation, request number)`.
async fn scripted(answer: impl Fn(&str, usize) -> Answer + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let answer = Arc::new(answer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                // Read one request: headers, then Content-Length bytes.
                let mut buf = vec![];
                let mut chunk = [0u8; 4096];
                let body_start = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_start]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_start + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let i = counter.fetch_add(1, Ordering::SeqCst);
                let op = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-amz-target:"))
                    .and_then(|t| t.trim().rsplit('.').next())
                    .unwrap_or("")
                    .to_string();
                let (status, body) = answer(&op, i);
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, seen)
}

fn builder(url: &str, attempts: u32) -> AwsSecretsManagerBuilder {
    AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(url)
        .with_credentials("testing", "testing".into())
        .with_retry(attempts, Duration::from_millis(1))
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_counted_per_attempt() {
    let (url, seen) = peer(2).await;
    let sm = builder(&url, 5).build().await.unwrap();
    let v = sm.get(&RemoteKey::new("busy")).await.expect("third attempt succeeds");
    assert_eq!(v.value.expose_str(), Some("finally"));
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let snap = sm.call_stats().unwrap().snapshot();
    assert_eq!(
        snap.get(&("GetSecretValue".into(), "throttled".into())),
        Some(&2),
        "{snap:?}"
    );
    assert_eq!(snap.get(&("GetSecretValue".into(), "ok".into())), Some(&1), "{snap:?}");
    assert_eq!(sm.api_calls(), 3);
}

#[tokio::test]
async fn persistent_throttling_is_a_retryable_throttled_error() {
    let (url, seen) = peer(usize::MAX).await;
    let sm = builder(&url, 3).build().await.unwrap();
    let e = sm.get(&RemoteKey::new("busy")).await.unwrap_err();
    assert!(matches!(e, Error::Throttled { .. }), "{e}");
    assert!(e.is_retryable());
    assert_eq!(seen.load(Ordering::SeqCst), 3, "max attempts");
    // get_many: the whole batch failed, so every key carries the error.
    let out = sm.get_many(&[RemoteKey::new("a"), RemoteKey::new("b")]).await;
    assert!(out.iter().all(|r| matches!(r, Err(Error::Throttled { .. }))), "{out:?}");
    assert_eq!(sm.call_stats().unwrap().of("BatchGetSecretValue"), 3);
}

#[tokio::test]
async fn denied_batch_falls_back_to_get_secret_value() {
    // x-amz-target is lower-cased with the head: operation names arrive lower case.
    let (url, _) = scripted(|op, _| match op {
        "batchgetsecretvalue" => denied("BatchGetSecretValue"),
        "getsecretvalue" => ("200 OK", VALUE.to_string()),
        _ => (
            "400 Bad Request",
            r#"{"__type":"InvalidRequestException","message":"unexpected"}"#.to_string(),
        ),
    })
    .await;
    let sm = builder(&url, 1).build().await.unwrap();
    let out = sm.get_many(&[RemoteKey::new("busy"), RemoteKey::new("busy2")]).await;
    assert!(
        out.iter()
            .all(|r| r.as_ref().is_ok_and(|f| f.value.expose_str() == Some("finally"))),
        "{out:?}"
    );
    let stats = sm.call_stats().unwrap();
    assert_eq!(
        stats.snapshot().get(&("BatchGetSecretValue".into(), "denied".into())),
        Some(&1)
    );
    assert_eq!(stats.of("GetSecretValue"), 2);
    // Later reads go one by one without trying the batch again.
    sm.get_many(&[RemoteKey::new("busy")]).await;
    assert_eq!(stats.of("BatchGetSecretValue"), 1);
    assert_eq!(stats.of("GetSecretValue"), 3);
}

#[tokio::test]
async fn denied_get_names_action_and_secret() {
    let (url, _) = scripted(|_, _| denied("GetSecretValue")).await;
    let sm = builder(&url, 3).build().await.unwrap();
    let e = sm.get(&RemoteKey::new("tomoda-s3-uploader-dev")).await.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("secretsmanager:GetSecretValue on `tomoda-s3-uploader-dev`"),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert_eq!(sm.api_calls(), 1, "a denial is not retried");
}

#[tokio::test]
async fn denied_list_makes_tokens_unknown() {
    let (url, _) = scripted(|op, _| match op {
        "listsecrets" => denied("ListSecrets"),
        _ => (
            "400 Bad Request",
            r#"{"__type":"InvalidRequestException","message":"unexpected"}"#.to_string(),
        ),
    })
    .await;
    let sm = builder(&url, 1).build().await.unwrap();
    let keys = [RemoteKey::new("a"), RemoteKey::new("b")];
    let t = sm.change_tokens(&keys).await;
    assert!(t.iter().all(|t| matches!(t, Ok(None))), "{t:?}");
    // Not asked again.
    sm.change_tokens(&keys).await;
    assert_eq!(sm.call_stats().unwrap().of("ListSecrets"), 1);
}

#[tokio::test]
async fn unreachable_endpoint_is_a_retryable_provider_error() {
    // Port 1: nothing listens there. (A freed ephemeral port may be taken by a fake a
    // parallel test starts.)
    let port = 1;
    let sm = builder(&format!("http://127.0.0.1:{port}"), 2).build().await.unwrap();
    let e = sm.get(&RemoteKey::new("x")).await.unwrap_err();
    assert!(matches!(e, Error::Provider { retryable: true, .. }), "{e}");
    assert!(e.to_string().contains("secretsmanager:GetSecretValue on `x`"), "{e}");
}
