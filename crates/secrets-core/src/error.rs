//! The one error type of secretsync.
//!
//! Every variant says what happened and names where: file, document, spec,
//! store, key, field path. None ever carries a secret value: messages are
//! built from names only, and text that comes from parsers (which may quote
//! input) goes through [`redact_quoted`] first.

use std::path::PathBuf;
use std::time::Duration;

/// Shorthand for results in secretsync.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in the manifests something is: file, document index (1-based) and field path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The file the document came from (`<memory>` for strings).
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    /// `Kind namespace/name` of the document, when known.
    pub object: Option<String>,
    /// Field path inside the document, like `spec.data[1].remoteRef.property`.
    pub field: Option<String>,
}

impl Location {
    /// The same location with a field path.
    pub fn field(&self, path: impl Into<String>) -> Location {
        Location {
            field: Some(path.into()),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if let Some(p) = &self.field {
            write!(f, ": {p}")?;
        }
        Ok(())
    }
}

/// What went wrong. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remote secret, version, property or target does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for, by name.
        what: String,
    },
    /// The caller is known but may not do this.
    #[error("permission denied: {what}")]
    PermissionDenied {
        /// The action and the resource, and the permission it needs where known.
        what: String,
    },
    /// Credentials are missing, invalid or expired.
    #[error("unauthenticated: {what}")]
    Unauthenticated {
        /// Which credentials, by name (never their value).
        what: String,
    },
    /// The provider asked us to slow down.
    #[error("throttled by {provider}{}", retry_after.map(|d| format!(", retry after {}ms", d.as_millis())).unwrap_or_default())]
    Throttled {
        /// Provider name.
        provider: String,
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// A manifest, plan or argument is wrong.
    #[error("{location}: {message}")]
    Manifest {
        /// File, document and field.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// Input that is not from a manifest is wrong (a value that is not JSON, a bad key...).
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong, naming keys and fields, never values.
        message: String,
    },
    /// A feature, field or operation is not supported (yet).
    #[error("not supported: {what}")]
    NotSupported {
        /// What is missing.
        what: String,
    },
    /// A write lost a race or the target is owned by someone else.
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicted.
        what: String,
    },
    /// An operation took longer than allowed.
    #[error("timed out after {}ms: {what}", after.as_millis())]
    Timeout {
        /// The operation.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Any other provider failure.
    #[error("{provider}: {message}")]
    Provider {
        /// Provider name (`aws`, `gcpsm`, `doppler`, `kubernetes`, ...).
        provider: String,
        /// What failed, by operation and resource name.
        message: String,
        /// Whether trying again may succeed (network errors, 5xx).
        retryable: bool,
        /// The underlying error, if any. Must not carry values either.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An error with what we were doing around it (the spec, the store, the target).
    #[error("{context}: {source}")]
    Context {
        /// What we were doing.
        context: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// A [`Error::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }
    /// A [`Error::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput {
            message: message.into(),
        }
    }
    /// A [`Error::NotSupported`].
    pub fn not_supported(what: impl Into<String>) -> Self {
        Error::NotSupported { what: what.into() }
    }
    /// A [`Error::Manifest`].
    pub fn manifest(location: Location, message: impl Into<String>) -> Self {
        Error::Manifest {
            location,
            message: message.into(),
        }
    }
    /// A [`Error::Provider`] without a source.
    pub fn provider(provider: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Error::Provider {
            provider: provider.into(),
            message: message.into(),
            retryable,
            source: None,
        }
    }
    /// A [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps the error with what we were doing.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, past every [`Error::Context`].
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// Whether trying again later may succeed: throttling, timeouts, transient provider
    /// errors. Not found, denied, invalid input and unsupported are permanent.
    pub fn is_retryable(&self) -> bool {
        match self.root() {
            Error::Throttled { .. } | Error::Timeout { .. } | Error::Conflict { .. } => true,
            Error::Provider { retryable, .. } => *retryable,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.root() {
            Error::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether this is (or wraps) a [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self.root(), Error::NotFound { .. })
    }
}

/// Extension for results: add context on the error path.
pub trait ResultExt<T> {
    /// Wraps an error with what we were doing.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.context(context()))
    }
}

/// Replaces the content of every double-quoted string in a parser's
/// message with `[REDACTED]`. Parsers quote the input they reject (`invalid type: string
/// "hunter2"`), and that input may be a secret; field names use backticks and survive.
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            out.push_str("\"[REDACTED]\"");
            let mut escaped = false;
            for d in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if d == '\\' {
                    escaped = true;
                } else if d == '"' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_quoted_input() {
        let m = redact_quoted(r#"invalid type: string "s3cr\"et", expected a map at line 3"#);
        assert_eq!(m, r#"invalid type: string "[REDACTED]", expected a map at line 3"#);
        assert_eq!(redact_quoted("unknown field `foo`"), "unknown field `foo`");
    }

    #[test]
    fn retryable_through_context() {
        let e = Error::Throttled {
            provider: "aws".into(),
            retry_after: Some(Duration::from_secs(2)),
        }
        .context("spec ns/x");
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(!Error::not_found("x").is_retryable());
    }
}
