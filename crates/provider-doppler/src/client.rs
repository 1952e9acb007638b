//! The HTTP side: one keep-alive `reqwest::Client`, Doppler's endpoints, bounded retries
//! with backoff, and a count of every request.

use std::time::Duration;

use reqwest::{StatusCode, Url, header};
use secretsync_core::{CallStats, Error, Result, SecretValue};

use crate::error::{self, Target};

/// Operation names recorded in [`CallStats`].
pub(crate) const OP_DOWNLOAD: &str = "secrets/download";
/// `POST /v3/configs/config/secrets`.
pub(crate) const OP_UPDATE: &str = "secrets/update";

/// What a conditional download returned.
pub(crate) enum Download {
    /// New content (`200`), with its ETag.
    Modified { etag: Option<String>, body: Vec<u8> },
    /// `304 Not Modified`: the cached content is current.
    NotModified,
}

/// The retry policy: core's one [`Backoff`](secretsync_core::backoff::Backoff).
pub(crate) type RetryPolicy = secretsync_core::backoff::Backoff;

pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    token: SecretValue,
    pub(crate) target: Target,
    retry: RetryPolicy,
    pub(crate) stats: CallStats,
}

impl Client {
    pub(crate) fn new(
        base: Url,
        token: SecretValue,
        target: Target,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("secretsync-doppler/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| Error::provider(error::PROVIDER, format!("building the HTTP client: {e}"), false))?;
        Ok(Self {
            http,
            base,
            token,
            target,
            retry,
            stats: CallStats::new(),
        })
    }

    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str, params: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}{path}"));
        {
            let mut q = url.query_pairs_mut();
            if let Some(p) = &self.target.project {
                q.append_pair("project", p);
            }
            if let Some(c) = &self.target.config {
                q.append_pair("config", c);
            }
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        url
    }

    fn token_str(&self) -> &str {
        // Checked to be UTF-8 by the builder.
        self.token.expose_str().unwrap_or_default()
    }

    /// Sends the request made by `make` (attempt by attempt), retrying 429, 5xx and network
    /// errors; returns the final response of a status below 400 or 304.
    async fn send(&self, operation: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let mut attempt = 0u32;
        let start = std::time::Instant::now();
        loop {
            let request = make()
                .bearer_auth(self.token_str())
                .header(header::ACCEPT, "application/json");
            let outcome = request.send().await;
            let last = attempt >= self.retry.max_retries;
            let elapsed = start.elapsed();
            match outcome {
                Err(e) => {
                    self.stats.record(operation, "error");
                    tracing::debug!(operation, attempt, error = %e, "doppler request failed");
                    if last {
                        return Err(error::from_transport(e, operation, &self.target));
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Ok(response) => {
                    let status = response.status();
                    self.stats.record(operation, &error::status_word(status.as_u16()));
                    if status.is_success() || status == StatusCode::NOT_MODIFIED {
                        return Ok(response);
                    }
                    let retry_after = retry_after(response.headers());
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let wait = if retryable {
                        self.retry.wait(attempt, retry_after, elapsed)
                    } else {
                        None
                    };
                    let Some(wait) = wait else {
                        let body = response.bytes().await.unwrap_or_default();
                        let messages = error::doppler_messages(&body, self.token_str());
                        return Err(error::from_status(
                            status.as_u16(),
                            operation,
                            &self.target,
                            messages,
                            retry_after,
                        ));
                    };
                    tracing::debug!(
                        operation,
                        attempt,
                        status = status.as_u16(),
                        wait_ms = wait.as_millis() as u64,
                        "doppler asked to retry"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
            attempt += 1;
        }
    }

    /// `GET /v3/configs/config/secrets/download?format=json`, conditional on `etag`.
    pub(crate) async fn download(&self, etag: Option<&str>) -> Result<Download> {
        let url = self.url("/v3/configs/config/secrets/download", &[("format", "json")]);
        let response = self
            .send(OP_DOWNLOAD, || {
                let r = self.http.get(url.clone());
                match etag {
                    Some(t) => r.header(header::IF_NONE_MATCH, t),
                    None => r,
                }
            })
            .await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Download::NotModified);
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .bytes()
            .await
            .map_err(|e| error::from_transport(e, OP_DOWNLOAD, &self.target))?;
        Ok(Download::Modified {
            etag,
            body: body.to_vec(),
        })
    }

    /// `POST /v3/configs/config/secrets` with `change_requests`.
    pub(crate) async fn update(&self, changes: &[ChangeRequest<'_>]) -> Result<()> {
        let url = self.url("/v3/configs/config/secrets", &[]);
        let mut body = serde_json::Map::new();
        if let Some(p) = &self.target.project {
            body.insert("project".into(), p.clone().into());
        }
        if let Some(c) = &self.target.config {
            body.insert("config".into(), c.clone().into());
        }
        let changes: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| {
                serde_json::json!({
                    "originalName": c.original_name,
                    "name": c.name,
                    "value": c.value,
                    "shouldDelete": false,
                })
            })
            .collect();
        body.insert("change_requests".into(), changes.into());
        let payload = serde_json::to_vec(&body).map_err(|_| Error::invalid("encoding a Doppler update"))?;
        drop(body);
        let response = self
            .send(OP_UPDATE, || {
                self.http
                    .post(url.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(payload.clone())
            })
            .await?;
        // The answer lists every secret with its value; read it off the wire and drop it.
        let _ = response.bytes().await;
        Ok(())
    }
}

/// One entry of `change_requests` (Doppler's documented shape).
pub(crate) struct ChangeRequest<'a> {
    /// The current name; `None` for a new secret.
    pub original_name: Option<&'a str>,
    /// The name after the change.
    pub name: &'a str,
    /// The new value.
    pub value: &'a str,
}

/// `Retry-After` in seconds (an HTTP date is not honoured).
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    secretsync_core::backoff::parse_retry_after(headers.get(header::RETRY_AFTER)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 4,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(400),
            max_retry_after: Duration::from_secs(1),
            total: None,
        };
        for attempt in 0..8 {
            let d = p.delay(attempt);
            let cap = Duration::from_millis(100 * (1 << attempt.min(2)));
            assert!(d <= cap && d >= cap / 2, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn parses_retry_after_seconds() {
        let mut h = header::HeaderMap::new();
        h.insert(header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
