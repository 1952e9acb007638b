//! The one place where Google client errors become [`secretsync_core::Error`].
//!
//! Messages are built from operation and resource names only. Text from the server or the
//! client library goes through [`redact_quoted`] first, because a deserialization error
//! may quote what it failed to parse.

use std::time::Duration;

use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use secretsync_core::Error;
use secretsync_core::error::redact_quoted;

use crate::PROVIDER;

/// What an API call was about, for messages.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    /// The secret id (or the parent, for ListSecrets).
    pub secret: String,
    /// The version, when the call addresses one.
    pub version: Option<String>,
    /// `project p` or `project p, location l`.
    pub scope: String,
}

impl Subject {
    fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("version {v} of secret `{}` ({})", self.secret, self.scope),
            None => format!("secret `{}` ({})", self.secret, self.scope),
        }
    }
}

/// The IAM role and permission an operation needs.
pub(crate) fn role_for(operation: &str) -> (&'static str, &'static str) {
    match operation {
        "AccessSecretVersion" => ("roles/secretmanager.secretAccessor", "secretmanager.versions.access"),
        "GetSecretVersion" => ("roles/secretmanager.viewer", "secretmanager.versions.get"),
        "ListSecretVersions" => ("roles/secretmanager.viewer", "secretmanager.versions.list"),
        "ListSecrets" => ("roles/secretmanager.viewer", "secretmanager.secrets.list"),
        "GetSecret" => ("roles/secretmanager.viewer", "secretmanager.secrets.get"),
        "AddSecretVersion" => ("roles/secretmanager.secretVersionAdder", "secretmanager.versions.add"),
        "DisableSecretVersion" => (
            "roles/secretmanager.secretVersionManager",
            "secretmanager.versions.disable",
        ),
        "CreateSecret" => ("roles/secretmanager.admin", "secretmanager.secrets.create"),
        _ => ("roles/secretmanager.admin", "secretmanager.*"),
    }
}

/// The canonical status code of an error, from the body or the HTTP status.
pub(crate) fn code_of(e: &GaxError) -> Option<Code> {
    if let Some(s) = e.status() {
        return Some(s.code);
    }
    e.http_status_code().map(|c| match c {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    })
}

/// The label [`secretsync_core::CallStats`] records for a call's outcome.
pub(crate) fn status_label(e: &GaxError) -> &'static str {
    match code_of(e) {
        Some(Code::NotFound) => "not_found",
        Some(Code::PermissionDenied | Code::Unauthenticated) => "denied",
        Some(Code::ResourceExhausted) => "throttled",
        _ if e.is_authentication() => "denied",
        _ => "error",
    }
}

/// Whether trying the same request again may succeed.
pub(crate) fn is_transient(e: &GaxError, idempotent: bool) -> bool {
    // A connection that was never made, or credentials not yet fetched: nothing was sent.
    if e.is_connect() || e.is_transient_and_before_rpc() {
        return true;
    }
    if matches!(code_of(e), Some(Code::ResourceExhausted)) {
        // The server refused before doing anything.
        return true;
    }
    if !idempotent {
        return false;
    }
    e.is_io()
        || e.is_timeout()
        || matches!(
            code_of(e),
            Some(Code::Unavailable | Code::DeadlineExceeded | Code::Internal)
        )
}

/// The delay the server asked for (RetryInfo detail or a `Retry-After` header).
pub(crate) fn server_retry_after(e: &GaxError) -> Option<Duration> {
    let from_details = e.status().and_then(|s| {
        s.details.iter().find_map(|d| match d {
            StatusDetails::RetryInfo(r) => r.retry_delay.and_then(|d| Duration::try_from(d).ok()),
            _ => None,
        })
    });
    from_details.or_else(|| {
        e.http_headers()
            .and_then(|h| h.get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

/// The server's message, redacted, for errors where it helps.
fn server_message(e: &GaxError) -> String {
    match e.status() {
        Some(s) if !s.message.is_empty() => redact_quoted(&s.message),
        _ => redact_quoted(&e.to_string()),
    }
}

/// `version 3 … is DISABLED` from a FAILED_PRECONDITION message, when the server says which.
pub(crate) fn disabled_state(e: &GaxError) -> Option<(Option<String>, String)> {
    if code_of(e) != Some(Code::FailedPrecondition) {
        return None;
    }
    let msg = e.status().map(|s| s.message.clone()).unwrap_or_default();
    // Real service: "Secret Version [projects/…/versions/3] is in DISABLED state."
    // drongo:       "Cannot access secret version in state DISABLED."
    let re = regex::Regex::new(r"(?:versions/(\d+)\]?\s+is\s+in\s+|in\s+state\s+)(ENABLED|DISABLED|DESTROYED)")
        .expect("valid regex");
    let caps = re.captures(&msg);
    let state = caps
        .as_ref()
        .and_then(|c| c.get(2))
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "not ENABLED".into());
    let number = caps.as_ref().and_then(|c| c.get(1)).map(|m| m.as_str().to_string());
    Some((number, state))
}

/// Maps a failed call of `operation` on `subject` into the core error.
pub(crate) fn map(
    operation: &str,
    subject: &Subject,
    e: &GaxError,
    endpoint: &str,
    attempt_timeout: Duration,
) -> Error {
    let what = subject.describe();
    if e.is_authentication() {
        return Error::Unauthenticated {
            what: format!(
                "{operation} of {what}: could not get Google credentials ({}); configure auth.secretRef, Workload Identity or Application Default Credentials",
                redact_quoted(&e.to_string())
            ),
        };
    }
    if e.is_timeout() {
        return Error::Timeout {
            what: format!("{operation} of {what} at {endpoint}"),
            after: attempt_timeout,
        };
    }
    if e.is_connect() || (e.is_io() && e.status().is_none() && e.http_status_code().is_none()) {
        return Error::Provider {
            provider: PROVIDER.into(),
            message: format!(
                "{operation} of {what}: cannot reach Secret Manager at {endpoint} ({})",
                redact_quoted(&e.to_string())
            ),
            retryable: true,
            source: None,
        };
    }
    match code_of(e) {
        Some(Code::NotFound) => Error::not_found(format!("{what}: {}", server_message(e))),
        Some(Code::PermissionDenied) => {
            let (role, permission) = role_for(operation);
            Error::PermissionDenied {
                what: format!(
                    "{operation} of {what}: the caller needs {role} (permission {permission}) on the secret or its project"
                ),
            }
        }
        Some(Code::Unauthenticated) => Error::Unauthenticated {
            what: format!(
                "{operation} of {what}: the credentials were rejected ({})",
                server_message(e)
            ),
        },
        Some(Code::ResourceExhausted) => Error::Throttled {
            provider: PROVIDER.into(),
            retry_after: server_retry_after(e),
        },
        Some(Code::AlreadyExists) => Error::Conflict {
            what: format!("{operation} of {what}: it already exists"),
        },
        Some(Code::FailedPrecondition) => {
            let message = match disabled_state(e) {
                Some((number, state)) => {
                    let v = number
                        .or_else(|| subject.version.clone())
                        .unwrap_or_else(|| "latest".into());
                    format!(
                        "version {v} of `{}` is {state} ({}); enable it, select another version, or use secretVersionSelectionPolicy LatestOrFetch",
                        subject.secret, subject.scope
                    )
                }
                None => format!("{operation} of {what}: failed precondition: {}", server_message(e)),
            };
            Error::Provider {
                provider: PROVIDER.into(),
                message,
                retryable: false,
                source: None,
            }
        }
        Some(Code::InvalidArgument | Code::OutOfRange) => {
            Error::invalid(format!("{operation} of {what}: {}", server_message(e)))
        }
        Some(Code::Unimplemented) => Error::not_supported(format!("{operation} at {endpoint}: {}", server_message(e))),
        Some(code) => Error::Provider {
            provider: PROVIDER.into(),
            message: format!("{operation} of {what}: {} ({})", code.name(), server_message(e)),
            retryable: matches!(
                code,
                Code::Unavailable | Code::DeadlineExceeded | Code::Internal | Code::Aborted | Code::Unknown
            ),
            source: None,
        },
        None => Error::Provider {
            provider: PROVIDER.into(),
            message: format!("{operation} of {what}: {}", redact_quoted(&e.to_string())),
            retryable: e.is_io(),
            source: None,
        },
    }
}
