//! kube's errors mapped into secretsync's, in one place. Server messages can quote input
//! (an invalid value), so quoted text is redacted and no source error is kept.

use secretsync_core::Error;
use secretsync_core::error::redact_quoted;

const PROVIDER: &str = "kubernetes";

/// Maps a kube error; `what` names the operation and the object (never a value).
pub fn from_kube(e: kube::Error, what: &str) -> Error {
    match e {
        kube::Error::Api(status) => {
            let message = redact_quoted(&status.message);
            match status.code {
                // The API server answers a write into a namespace that does not exist with
                // 404 `namespaces "x" not found`: say so, naming the namespace, rather than
                // leave the reader to think the object itself was missing.
                404 if status
                    .details
                    .as_ref()
                    .is_some_and(|d| d.kind == "namespaces" && !d.name.is_empty()) =>
                {
                    let ns = status.details.as_ref().map(|d| d.name.as_str()).unwrap_or_default();
                    Error::not_found(format!("{what}: namespace {ns} does not exist"))
                }
                404 => Error::not_found(what.to_string()),
                401 => Error::Unauthenticated {
                    what: format!("{what}: {message}"),
                },
                403 => Error::PermissionDenied {
                    what: format!("{what}: {message}"),
                },
                409 => Error::Conflict {
                    what: format!("{what}: {message}"),
                },
                429 => Error::Throttled {
                    provider: PROVIDER.into(),
                    retry_after: None,
                },
                400 | 413 | 415 | 422 => Error::invalid(format!("{what}: {message} ({})", status.reason)),
                code => Error::provider(
                    PROVIDER,
                    format!("{what}: {message} ({code} {})", status.reason),
                    code >= 500,
                ),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            Error::provider(PROVIDER, format!("{what}: {}", redact_quoted(&e.to_string())), true)
        }
        other => Error::provider(
            PROVIDER,
            format!("{what}: {}", redact_quoted(&other.to_string())),
            false,
        ),
    }
}

/// Whether a kube error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
