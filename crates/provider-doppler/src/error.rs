//! The one place Doppler's HTTP answers become [`secretsync_core::Error`].
//!
//! Messages name the operation, the project and the config; never a value or the token.
//! Doppler's own error text (`{"messages": [...]}`) is kept, with any occurrence of the
//! token removed, because it says *why* ("Invalid Auth token", "Could not find requested
//! config").

use std::time::Duration;

use secretsync_core::Error;

/// The provider name used in errors and call stats.
pub(crate) const PROVIDER: &str = "doppler";

/// Which config a request was about, for messages.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub project: Option<String>,
    pub config: Option<String>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.project, &self.config) {
            (Some(p), Some(c)) => write!(f, "Doppler project `{p}` config `{c}`"),
            (Some(p), None) => write!(f, "Doppler project `{p}` (config of the service token)"),
            (None, Some(c)) => write!(f, "Doppler config `{c}` (project of the service token)"),
            (None, None) => f.write_str("the Doppler project and config of the service token"),
        }
    }
}

/// Doppler's error text from a JSON error body, token scrubbed, shortened.
pub(crate) fn doppler_messages(body: &[u8], token: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let messages = v.get("messages")?.as_array()?;
    let mut text = messages
        .iter()
        .filter_map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        return None;
    }
    if !token.is_empty() {
        text = text.replace(token, "[REDACTED]");
    }
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    Some(text)
}

/// Maps a non-success HTTP status of `operation` on `target` to an error.
pub(crate) fn from_status(
    status: u16,
    operation: &str,
    target: &Target,
    messages: Option<String>,
    retry_after: Option<Duration>,
) -> Error {
    let why = messages.map(|m| format!(": {m}")).unwrap_or_default();
    match status {
        401 => Error::Unauthenticated {
            what: format!("Doppler token for {target} was rejected on {operation} (HTTP 401{why})"),
        },
        403 => Error::PermissionDenied {
            what: format!("{operation} on {target}: the Doppler token may not do this (HTTP 403{why})"),
        },
        404 => Error::not_found(format!("{target} ({operation}, HTTP 404{why})")),
        429 => Error::Throttled {
            provider: PROVIDER.into(),
            retry_after,
        },
        400 | 422 => Error::invalid(format!(
            "{operation} on {target}: Doppler refused the request (HTTP {status}{why})"
        )),
        409 => Error::Conflict {
            what: format!("{operation} on {target} (HTTP 409{why})"),
        },
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
    // reqwest's error names the URL (host, path, project and config); the token travels in
    // a header and never appears in it.
    Error::Provider {
        provider: PROVIDER.into(),
        message: format!("{operation} on {target}: {kind}"),
        retryable: true,
        source: Some(Box::new(err)),
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
        429 => "throttled".into(),
        s => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_carry_the_token() {
        let body = br#"{"messages":["Invalid Auth token dp.st.dev.SECRETTOKEN"],"success":false}"#;
        let m = doppler_messages(body, "dp.st.dev.SECRETTOKEN").unwrap();
        assert!(!m.contains("SECRETTOKEN"), "{m}");
        let target = Target {
            project: Some("web".into()),
            config: Some("prd".into()),
        };
        let e = from_status(401, "secrets/download", &target, Some(m), None);
        let text = e.to_string();
        assert!(matches!(e, Error::Unauthenticated { .. }));
        assert!(
            text.contains("`web`") && text.contains("`prd`") && !text.contains("SECRETTOKEN"),
            "{text}"
        );
    }

    #[test]
    fn statuses_map_to_variants() {
        let t = Target {
            project: None,
            config: None,
        };
        assert!(matches!(
            from_status(403, "op", &t, None, None),
            Error::PermissionDenied { .. }
        ));
        assert!(from_status(404, "op", &t, None, None).is_not_found());
        let throttled = from_status(429, "op", &t, None, Some(Duration::from_secs(3)));
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
        assert!(from_status(503, "op", &t, None, None).is_retryable());
        assert!(!from_status(400, "op", &t, None, None).is_retryable());
    }
}
