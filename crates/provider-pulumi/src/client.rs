//! The HTTP side: one keep-alive `reqwest::Client`, ESC's endpoints for one environment,
//! bounded retries with backoff, and a count of every request.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url, header};
use secretsync_core::{CallStats, Error, Result, SecretValue};

use crate::error::{self, PROVIDER, Target};

/// Operation names recorded in [`CallStats`] (ESC's OpenAPI operation ids).
pub(crate) const OP_HEAD: &str = "GetEnvironmentETag";
pub(crate) const OP_OPEN: &str = "OpenEnvironment";
pub(crate) const OP_READ: &str = "ReadOpenEnvironment";
pub(crate) const OP_GET: &str = "GetEnvironment";
pub(crate) const OP_UPDATE: &str = "UpdateEnvironmentYaml";

/// ESC's revision header on definition reads and writes.
const REVISION_HEADER: &str = "Pulumi-ESC-Revision";

/// The retry policy: core's one [`Backoff`](secretsync_core::backoff::Backoff).
pub(crate) type RetryPolicy = secretsync_core::backoff::Backoff;

/// An opened session.
pub(crate) struct Opened {
    pub id: String,
    /// The ETag of the revision that was opened, when ESC says it.
    pub etag: Option<String>,
}

/// A definition read with `GET`.
pub(crate) struct Definition {
    pub yaml: String,
    pub etag: Option<String>,
    pub revision: Option<u64>,
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    token: SecretValue,
    pub(crate) target: Target,
    retry: RetryPolicy,
    pub(crate) stats: CallStats,
}

fn header_str(h: &header::HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
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
            .user_agent(concat!("secretsync-pulumi/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| Error::provider(PROVIDER, format!("building the HTTP client: {e}"), false))?;
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

    /// `<base>/environments/{org}/{project}/{env}[/extra...]`, each name one path segment.
    fn url(&self, extra: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut segs = url.path_segments_mut().expect("http(s) URLs have paths");
            segs.pop_if_empty();
            segs.push("environments");
            segs.push(&self.target.organization);
            segs.push(&self.target.project);
            segs.push(&self.target.environment);
            for e in extra {
                segs.push(e);
            }
        }
        url
    }

    fn token_str(&self) -> &str {
        // Checked to be UTF-8 by the builder.
        self.token.expose_str().unwrap_or_default()
    }

    /// Sends the request made by `make` (attempt by attempt), retrying 429 always and — when
    /// `idempotent` — 5xx and network errors; returns the final success response.
    async fn send(
        &self,
        operation: &str,
        idempotent: bool,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut attempt = 0u32;
        let start = std::time::Instant::now();
        loop {
            let request = make()
                .header(header::AUTHORIZATION, format!("token {}", self.token_str()))
                .header(header::ACCEPT, "application/json");
            let outcome = request.send().await;
            let last = attempt >= self.retry.max_retries;
            let elapsed = start.elapsed();
            match outcome {
                Err(e) => {
                    self.stats.record(operation, "error");
                    let connect = e.is_connect();
                    let e = e.without_url();
                    tracing::debug!(operation, attempt, error = %e, "pulumi esc request failed");
                    if last || !(idempotent || connect) {
                        return Err(error::from_transport(e, operation, &self.target));
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Ok(response) => {
                    let status = response.status();
                    self.stats.record(operation, &error::status_word(status.as_u16()));
                    if status.is_success() {
                        return Ok(response);
                    }
                    let retry_after = retry_after(response.headers());
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS || (idempotent && status.is_server_error());
                    let wait = if retryable {
                        self.retry.wait(attempt, retry_after, elapsed)
                    } else {
                        None
                    };
                    let Some(wait) = wait else {
                        let body = response.bytes().await.unwrap_or_default();
                        let message = error::esc_message(&body, self.token_str());
                        return Err(error::from_status(
                            status.as_u16(),
                            operation,
                            &self.target,
                            message,
                            retry_after,
                        ));
                    };
                    tracing::debug!(
                        operation,
                        attempt,
                        status = status.as_u16(),
                        wait_ms = wait.as_millis() as u64,
                        "pulumi esc asked to retry"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
            attempt += 1;
        }
    }

    /// `HEAD /environments/{org}/{project}/{env}`: the current ETag.
    pub(crate) async fn etag(&self) -> Result<Option<String>> {
        let url = self.url(&[]);
        let r = self
            .send(OP_HEAD, true, || self.http.request(Method::HEAD, url.clone()))
            .await?;
        Ok(header_str(r.headers(), header::ETAG))
    }

    /// `POST .../open?duration=<secs>s`: a new session.
    pub(crate) async fn open(&self, duration: Duration) -> Result<Opened> {
        let mut url = self.url(&["open"]);
        url.query_pairs_mut()
            .append_pair("duration", &format!("{}s", duration.as_secs().max(1)));
        let r = self.send(OP_OPEN, true, || self.http.post(url.clone())).await?;
        let etag = header_str(r.headers(), header::ETAG);
        let body = r
            .bytes()
            .await
            .map_err(|e| error::from_transport(e, OP_OPEN, &self.target))?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| self.malformed(OP_OPEN))?;
        let id = v
            .get("id")
            .and_then(|i| i.as_str())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| self.malformed(OP_OPEN))?;
        Ok(Opened {
            id: id.to_string(),
            etag,
        })
    }

    /// `GET .../open/{id}`: every resolved property. `Ok(None)`: the session is gone (404).
    pub(crate) async fn read(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let url = self.url(&["open", id]);
        match self.send(OP_READ, true, || self.http.get(url.clone())).await {
            Ok(r) => {
                let body = r
                    .bytes()
                    .await
                    .map_err(|e| error::from_transport(e, OP_READ, &self.target))?;
                // serde_json's message may quote input; it is not kept.
                let v = serde_json::from_slice(&body).map_err(|_| self.malformed(OP_READ))?;
                Ok(Some(v))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /environments/{org}/{project}/{env}`: the YAML definition.
    pub(crate) async fn definition(&self) -> Result<Definition> {
        let url = self.url(&[]);
        let r = self
            .send(OP_GET, true, || {
                self.http.get(url.clone()).header(header::ACCEPT, "application/x-yaml")
            })
            .await?;
        let etag = header_str(r.headers(), header::ETAG);
        let revision = header_str(r.headers(), REVISION_HEADER).and_then(|r| r.trim().parse().ok());
        let body = r
            .bytes()
            .await
            .map_err(|e| error::from_transport(e, OP_GET, &self.target))?;
        let yaml = String::from_utf8(body.to_vec()).map_err(|_| {
            Error::provider(
                PROVIDER,
                format!("{OP_GET} of {}: the definition is not UTF-8", self.target),
                false,
            )
        })?;
        Ok(Definition { yaml, etag, revision })
    }

    /// `PATCH /environments/{org}/{project}/{env}` with a YAML definition, on condition that
    /// the environment's ETag is still `etag` (sent as `If-Match`, and as `ETag`, which is
    /// the header Pulumi's own client sends for this precondition). Returns the new ETag and
    /// revision when ESC says them.
    pub(crate) async fn update(&self, yaml: String, etag: Option<&str>) -> Result<(Option<String>, Option<u64>)> {
        let url = self.url(&[]);
        let r = self
            .send(OP_UPDATE, false, || {
                let mut b = self
                    .http
                    .patch(url.clone())
                    .header(header::CONTENT_TYPE, "application/x-yaml")
                    .body(yaml.clone());
                if let Some(t) = etag {
                    b = b.header(header::IF_MATCH, t).header(header::ETAG, t);
                }
                b
            })
            .await?;
        let new_etag = header_str(r.headers(), header::ETAG);
        let revision = header_str(r.headers(), REVISION_HEADER).and_then(|r| r.trim().parse().ok());
        let body = r.bytes().await.unwrap_or_default();
        // A 200 may still carry diagnostics.
        if let Some(m) = error::esc_message(&body, self.token_str()) {
            return Err(Error::invalid(format!(
                "{OP_UPDATE} on {}: ESC refused the definition: {m}",
                self.target
            )));
        }
        Ok((new_etag, revision))
    }

    fn malformed(&self, operation: &str) -> Error {
        Error::provider(
            PROVIDER,
            format!(
                "{operation} on {}: the answer is not the JSON ESC documents",
                self.target
            ),
            false,
        )
    }
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
}
