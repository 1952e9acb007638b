//! Throttling: moto never throttles, so a loopback HTTP peer answers the AWS JSON protocol
//! with `ThrottlingException` a given number of times, then with a real GetSecretValue
//! answer. This checks the SDK retry configuration and the per-attempt call counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use provider_aws::AwsSecretsManagerBuilder;
use secrets_core::{Error, RemoteKey, SecretSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves until dropped; the first `throttle` requests get 400 ThrottlingException.
async fn peer(throttle: usize) -> (String, Arc<AtomicUsize>) {
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
                let (status, body) = if i < throttle {
                    (
                        "400 Bad Request",
                        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
                    )
                } else {
                    (
                        "200 OK",
                        r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:busy-AbCdEf","Name":"busy","VersionId":"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0","SecretString":"finally","VersionStages":["AWSCURRENT"],"CreatedDate":1.7e9}"#
                            .to_string(),
                    )
                };
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
async fn unreachable_endpoint_is_a_retryable_provider_error() {
    // Bind and drop: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sm = builder(&format!("http://127.0.0.1:{port}"), 2).build().await.unwrap();
    let e = sm.get(&RemoteKey::new("x")).await.unwrap_err();
    assert!(matches!(e, Error::Provider { retryable: true, .. }), "{e}");
    assert!(e.to_string().contains("secretsmanager:GetSecretValue on `x`"), "{e}");
}
