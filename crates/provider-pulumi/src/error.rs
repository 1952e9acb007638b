//! The one place ESC's HTTP answers become [`secretsync_core::Error`].
//!
//! Messages name the operation and the environment (`org/project/env`); never a value or
//! the token. ESC's own error text (`{"code": 404, "message": "..."}`) and diagnostic
//! summaries are kept — they say *why* — with the token removed, quoted text redacted and
//! the length bounded.

use std::time::Duration;

use secretsync_core::Error;

/// The provider name used in errors and call stats.
pub(crate) const PROVIDER: &str = "pulumi";

/// Which environment a request was about, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub organization: String,
    pub project: String,
    pub environment: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pulumi ESC environment `{}/{}/{}`",
            self.organization, self.project, self.environment
        )
    }
}

fn bounded(mut text: String, token: &str) -> String {
    if !token.is_empty() {
        text = text.replace(token, "[REDACTED]");
    }
    // Diagnostics may quote definition text; quoted text never reaches an error.
    let mut text = secretsync_core::error::redact_quoted(&text);
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// ESC's explanation from an error body: `message`, or the diagnostics (`path: summary`).
pub(crate) fn esc_message(body: &[u8], token: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(diags) = v.get("diagnostics").and_then(|d| d.as_array()) {
        let text = diags
            .iter()
            .map(|d| {
                let summary = d.get("summary").and_then(|s| s.as_str()).unwrap_or("error");
                match d.get("path").and_then(|p| p.as_str()) {
                    Some(p) if !p.is_empty() => format!("{p}: {summary}"),
                    _ => summary.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        if !text.is_empty() {
            return Some(bounded(format!("diagnostics: {text}"), token));
        }
    }
    let m = v.get("message")?.as_str()?.trim();
    (!m.is_empty()).then(|| bounded(m.to_string(), token))
}

/// Maps a non-success HTTP status of `operation` on `target` to an error.
pub(crate) fn from_status(
    status: u16,
    operation: &str,
    target: &Target,
    message: Option<String>,
    retry_after: Option<Duration>,
) -> Error {
    let why = message.map(|m| format!(": {m}")).unwrap_or_default();
    match status {
        401 => Error::Unauthenticated {
            what: format!("the Pulumi access token was rejected on {operation} of {target} (HTTP 401{why})"),
        },
        403 => Error::PermissionDenied {
            what: format!("{operation} on {target}: the Pulumi access token may not do this (HTTP 403{why})"),
        },
        404 => Error::not_found(format!("{target} ({operation}, HTTP 404{why})")),
        429 => Error::Throttled {
            provider: PROVIDER.into(),
            retry_after,
        },
        409 | 412 => Error::Conflict {
            what: format!("{operation} on {target}: the environment changed since it was read (HTTP {status}{why})"),
        },
        400 | 422 => Error::invalid(format!(
            "{operation} on {target}: ESC refused the request (HTTP {status}{why})"
        )),
        s => Error::provider(PROVIDER, format!("{operation} on {target}: HTTP {s}{why}"), s >= 500),
    }
}

/// Maps a transport failure (connect, timeout, body) of `operation`.
pub(crate) fn from_transport(err: reqwest::Error, operation: &str, target: &Target) -> Error {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // reqwest's error names the URL (host and environment path); the token travels in a
    // header and never appears in it.
    Error::Provider {
        provider: PROVIDER.into(),
        message: format!("{operation} on {target}: {kind}"),
        retryable: true,
        source: Some(Box::new(err.without_url())),
    }
}

/// The same error again, for each key of a batch that one failed request answered for.
pub(crate) fn duplicate(e: &Error) -> Error {
    match e.root() {
        Error::NotFound { what } => Error::NotFound { what: what.clone() },
        Error::PermissionDenied { what } => Error::PermissionDenied { what: what.clone() },
        Error::Unauthenticated { what } => Error::Unauthenticated { what: what.clone() },
        Error::Throttled { provider, retry_after } => Error::Throttled {
            provider: provider.clone(),
            retry_after: *retry_after,
        },
        Error::InvalidInput { message } => Error::InvalidInput {
            message: message.clone(),
        },
        Error::NotSupported { what } => Error::NotSupported { what: what.clone() },
        Error::Conflict { what } => Error::Conflict { what: what.clone() },
        Error::Timeout { what, after } => Error::Timeout {
            what: what.clone(),
            after: *after,
        },
        Error::Provider {
            provider,
            message,
            retryable,
            source,
        } => Error::Provider {
            provider: provider.clone(),
            message: match source {
                Some(s) => format!("{message}: {s}"),
                None => message.clone(),
            },
            retryable: *retryable,
            source: None,
        },
        other => Error::provider(PROVIDER, other.to_string(), other.is_retryable()),
    }
}

/// The call-stats status word for an HTTP status.
pub(crate) fn status_word(status: u16) -> String {
    match status {
        200..=299 => "ok".into(),
        304 => "not_modified".into(),
        404 => "not_found".into(),
        409 => "conflict".into(),
        429 => "throttled".into(),
        s => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            organization: "aphiria".into(),
            project: "aphiria.com".into(),
            environment: "Preview".into(),
        }
    }

    #[test]
    fn messages_never_carry_the_token_or_quoted_text() {
        let body = br#"{"code":401,"message":"token pul-SECRETTOKEN is invalid"}"#;
        let m = esc_message(body, "pul-SECRETTOKEN").unwrap();
        let e = from_status(401, "OpenEnvironment", &target(), Some(m), None);
        let text = e.to_string();
        assert!(matches!(e, Error::Unauthenticated { .. }));
        assert!(
            text.contains("aphiria/aphiria.com/Preview") && !text.contains("SECRETTOKEN"),
            "{text}"
        );
        let diags = br#"{"diagnostics":[{"summary":"expected \"hunter2\" to be a number","path":"values.x"}]}"#;
        let m = esc_message(diags, "t").unwrap();
        assert!(m.contains("values.x") && !m.contains("hunter2"), "{m}");
    }

    #[test]
    fn statuses_map_to_variants() {
        let t = target();
        assert!(matches!(
            from_status(403, "op", &t, None, None),
            Error::PermissionDenied { .. }
        ));
        assert!(from_status(404, "op", &t, None, None).is_not_found());
        assert!(matches!(from_status(409, "op", &t, None, None), Error::Conflict { .. }));
        let throttled = from_status(429, "op", &t, None, Some(Duration::from_secs(3)));
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
        assert!(from_status(503, "op", &t, None, None).is_retryable());
        assert!(!from_status(400, "op", &t, None, None).is_retryable());
    }
}
