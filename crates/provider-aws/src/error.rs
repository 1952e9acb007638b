//! The one place where AWS SDK errors become [`secretsync_core::Error`].
//!
//! Every error names the API operation (`secretsmanager:GetSecretValue`) and the secret,
//! never a value: AWS messages are kept only where they help (denied, not found) and pass
//! through [`sanitize`] first, because validation messages may quote request input.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use secretsync_core::Error;

/// Provider name used in errors and logs.
pub(crate) const PROVIDER: &str = "aws";

/// What kind of failure an AWS error code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NotFound,
    Denied,
    Unauthenticated,
    Throttled,
    Conflict,
    Invalid,
    /// Worth retrying: 5xx, network, timeouts.
    Transient,
    Other,
}

impl Kind {
    /// The `status` recorded in [`secretsync_core::CallStats`].
    pub(crate) fn status(self) -> &'static str {
        match self {
            Kind::NotFound => "not_found",
            Kind::Throttled => "throttled",
            Kind::Denied | Kind::Unauthenticated => "denied",
            _ => "error",
        }
    }
}

/// Classifies an AWS error code (and its message, for the codes AWS overloads).
pub(crate) fn kind_of_code(code: &str, message: Option<&str>) -> Kind {
    // Query-protocol and JSON-protocol codes both appear in the wild; some carry a
    // namespace (`aws.protocols#...`) or a suffix (`...:http://...`).
    let code = code.rsplit('#').next().unwrap_or(code);
    let code = code.split(':').next().unwrap_or(code);
    match code {
        "ResourceNotFoundException" => Kind::NotFound,
        "InvalidRequestException" if message.is_some_and(is_deletion_message) => Kind::NotFound,
        "AccessDeniedException" | "AccessDenied" | "AuthorizationError" | "UnauthorizedOperation" => Kind::Denied,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "SignatureDoesNotMatch" => Kind::Unauthenticated,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "LimitExceededException"
        | "ProvisionedThroughputExceededException" => Kind::Throttled,
        "ResourceExistsException" | "PreconditionNotMetException" => Kind::Conflict,
        "InvalidParameterException"
        | "InvalidRequestException"
        | "ValidationException"
        | "MalformedPolicyDocumentException"
        | "InvalidNextTokenException"
        | "EncryptionFailure" => Kind::Invalid,
        "InternalServiceError" | "InternalFailure" | "ServiceUnavailable" | "ServiceUnavailableException" => {
            Kind::Transient
        }
        _ => Kind::Other,
    }
}

fn is_deletion_message(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    // AWS: "…because it was marked for deletion."; moto: "…currently marked deleted."
    m.contains("marked for deletion") || m.contains("scheduled for deletion") || m.contains("marked deleted")
}

/// Operations whose request carries a secret value: their validation messages are dropped.
fn carries_value(op: &str) -> bool {
    matches!(op, "PutSecretValue" | "CreateSecret" | "UpdateSecret")
}

/// One failure of one operation on one secret, classified. Cheap to clone, so a failed
/// batch call can become the error of each of its ids.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) op: &'static str,
    pub(crate) resource: String,
    pub(crate) kind: Kind,
    /// The AWS error code, when the service answered.
    pub(crate) code: Option<String>,
    /// Sanitized detail.
    pub(crate) detail: Option<String>,
    /// Where the request went, named when the failure is about reaching the service
    /// (unreachable, an answer that is not AWS's): set by the client.
    pub(crate) endpoint: Option<String>,
}

impl Failure {
    /// A failure from an error code and message the service returned (whole call or one
    /// entry of a `BatchGetSecretValue`).
    pub(crate) fn from_code(op: &'static str, resource: &str, code: &str, message: Option<&str>) -> Self {
        let kind = kind_of_code(code, message);
        let keep_message = !carries_value(op)
            || matches!(
                kind,
                Kind::NotFound | Kind::Denied | Kind::Throttled | Kind::Unauthenticated
            );
        Failure {
            op,
            resource: resource.to_string(),
            kind,
            code: Some(code.to_string()),
            detail: message.filter(|_| keep_message).map(sanitize),
            endpoint: None,
        }
    }

    /// A failure that is not a service answer.
    pub(crate) fn local(op: &'static str, resource: &str, kind: Kind, detail: impl Into<String>) -> Self {
        Failure {
            op,
            resource: resource.to_string(),
            kind,
            code: None,
            detail: Some(detail.into()),
            endpoint: None,
        }
    }

    /// Names the endpoint the request went to, for failures about reaching the service.
    pub(crate) fn at(mut self, endpoint: &str) -> Self {
        if self.code.is_none() && matches!(self.kind, Kind::Transient | Kind::Other | Kind::Invalid) {
            self.endpoint = Some(endpoint.to_string());
        }
        self
    }

    /// Classifies an SDK error of `op` on `resource`.
    pub(crate) fn from_sdk<E, R>(op: &'static str, resource: &str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: std::fmt::Debug + 'static,
    {
        match err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                match e.code() {
                    Some(code) => Self::from_code(op, resource, code, e.message()),
                    None => {
                        let status = (se.raw() as &dyn std::any::Any)
                            .downcast_ref::<aws_smithy_runtime_api::client::orchestrator::HttpResponse>()
                            .map(|r| r.status().as_u16());
                        let detail = match status {
                            Some(s) => format!(
                                "HTTP {s} without an AWS error code: is the endpoint an AWS Secrets Manager API?"
                            ),
                            None => "an answer without an AWS error code: is the endpoint an AWS Secrets Manager API?"
                                .to_string(),
                        };
                        let kind = if status.is_some_and(|s| s >= 500) {
                            Kind::Transient
                        } else {
                            Kind::Other
                        };
                        Self::local(op, resource, kind, detail)
                    }
                }
            }
            SdkError::TimeoutError(_) => Self::local(op, resource, Kind::Transient, "request timed out"),
            SdkError::DispatchFailure(df) => {
                if let Some(ce) = find_in_chain::<CredentialsError>(err) {
                    return Self::local(op, resource, Kind::Unauthenticated, credentials_detail(ce));
                }
                let what = if df.is_timeout() {
                    "connection timed out".to_string()
                } else if let Some(cause) = network_cause(err) {
                    format!("cannot connect: {cause}")
                } else if df.is_io() {
                    "connection failed (network or endpoint unreachable)".to_string()
                } else {
                    "request could not be sent".to_string()
                };
                Self::local(op, resource, Kind::Transient, what)
            }
            SdkError::ResponseError(_) => Self::local(op, resource, Kind::Transient, "the response could not be read"),
            SdkError::ConstructionFailure(_) => {
                if let Some(ce) = find_in_chain::<CredentialsError>(err) {
                    return Self::local(op, resource, Kind::Unauthenticated, credentials_detail(ce));
                }
                Self::local(
                    op,
                    resource,
                    Kind::Invalid,
                    "the request could not be built (check region and endpoint)",
                )
            }
            _ => Self::local(op, resource, Kind::Other, "unexpected SDK error"),
        }
    }

    /// The [`secretsync_core::Error`] for this failure.
    pub(crate) fn into_error(self) -> Error {
        let action = format!("secretsmanager:{} on `{}`", self.op, self.resource);
        let at = self.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
        let detail = match (&self.code, &self.detail) {
            (Some(c), Some(d)) => format!(" ({c}: {d})"),
            (Some(c), None) => format!(" ({c})"),
            (None, Some(d)) => format!("{at} ({d})"),
            (None, None) => at,
        };
        match self.kind {
            Kind::NotFound => Error::not_found(format!("secret `{}` in AWS Secrets Manager{detail}", self.resource)),
            Kind::Denied => Error::PermissionDenied {
                what: format!("{action}{detail}"),
            },
            Kind::Unauthenticated => Error::Unauthenticated {
                what: format!("AWS credentials for {action}{detail}"),
            },
            Kind::Throttled => Error::Throttled {
                provider: PROVIDER.into(),
                retry_after: None,
            },
            Kind::Conflict => Error::Conflict {
                what: format!("{action}{detail}"),
            },
            Kind::Invalid => Error::provider(PROVIDER, format!("{action} was rejected{detail}"), false),
            Kind::Transient => Error::provider(PROVIDER, format!("{action} failed{detail}"), true),
            Kind::Other => Error::provider(PROVIDER, format!("{action} failed{detail}"), false),
        }
    }
}

/// Maps an SDK error of `op` on `resource` straight to a [`secretsync_core::Error`] (the
/// client goes through [`Failure::at`] to name its endpoint).
#[cfg(test)]
pub(crate) fn map_sdk_error<E, R>(op: &'static str, resource: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    Failure::from_sdk(op, resource, &err).into_error()
}

fn find_in_chain<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// What the connector said went wrong, in words a user can act on: a name that does not
/// resolve, a refused connection, a TLS failure. `None` when the chain says nothing known.
fn network_cause(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    let mut texts = vec![];
    while let Some(e) = cur {
        texts.push(e.to_string().to_ascii_lowercase());
        cur = e.source();
    }
    let all = texts.join(" | ");
    if all.contains("dns error")
        || all.contains("failed to lookup address")
        || all.contains("name or service not known")
    {
        Some("the host name does not resolve (DNS)".into())
    } else if all.contains("connection refused") {
        Some("connection refused (nothing listens there)".into())
    } else if all.contains("certificate") || all.contains("tls") || all.contains("handshake") {
        Some("TLS handshake failed (certificate or protocol)".into())
    } else {
        None
    }
}

fn credentials_detail(ce: &CredentialsError) -> String {
    let inner = ce
        .source()
        .map(|s| format!(": {}", sanitize(&s.to_string())))
        .unwrap_or_default();
    format!("{}{inner}", sanitize(&ce.to_string()))
}

/// Replaces quoted text (`'…'`, `"…"`) with `[REDACTED]` and bounds the length: AWS
/// validation messages quote the input they reject, and input may be a value.
pub(crate) fn sanitize(message: &str) -> String {
    let chars: Vec<char> = message.chars().collect();
    let mut out = String::with_capacity(message.len().min(400));
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate() {
        let prev_word = i > 0 && chars[i - 1].is_alphanumeric();
        let next_word = chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        match quote {
            // An apostrophe inside a word (`that's`) neither opens nor closes a quote.
            Some('\'') if c == '\'' && !next_word => {
                out.push(c);
                quote = None;
            }
            Some('"') if c == '"' => {
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || (c == '\'' && !prev_word) => {
                out.push(c);
                out.push_str("[REDACTED]");
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    if let Some(q) = quote {
        out.push(q);
    }
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::config::http::HttpResponse;
    use aws_sdk_secretsmanager::error::ErrorMetadata;
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
    use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;
    use aws_smithy_types::body::SdkBody;

    fn service_error(code: &str, message: &str) -> SdkError<GetSecretValueError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        let raw = HttpResponse::new(400u16.try_into().expect("status"), SdkBody::from("{}"));
        SdkError::service_error(GetSecretValueError::generic(meta), raw)
    }

    #[test]
    fn access_denied_names_action_and_secret() {
        let e = map_sdk_error(
            "GetSecretValue",
            "tomoda-s3-uploader-dev",
            service_error(
                "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/eso-reader is not authorized to perform: secretsmanager:GetSecretValue",
            ),
        );
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("secretsmanager:GetSecretValue on `tomoda-s3-uploader-dev`"),
            "{msg}"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn not_found_and_marked_for_deletion() {
        let e = map_sdk_error(
            "GetSecretValue",
            "x",
            service_error(
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.",
            ),
        );
        assert!(e.is_not_found(), "{e:?}");
        let e = map_sdk_error(
            "GetSecretValue",
            "x",
            service_error(
                "InvalidRequestException",
                "You can't perform this operation on the secret because it was marked for deletion.",
            ),
        );
        assert!(e.is_not_found(), "{e:?}");
        let e = map_sdk_error(
            "GetSecretValue",
            "x",
            service_error("InvalidRequestException", "something else"),
        );
        assert!(!e.is_not_found() && !e.is_retryable(), "{e:?}");
    }

    #[test]
    fn throttling_is_retryable() {
        let e = map_sdk_error(
            "BatchGetSecretValue",
            "x",
            service_error("ThrottlingException", "Rate exceeded"),
        );
        assert!(matches!(e, Error::Throttled { .. }), "{e:?}");
        assert!(e.is_retryable());
        let e = map_sdk_error("GetSecretValue", "x", service_error("InternalServiceError", "oops"));
        assert!(e.is_retryable());
    }

    #[test]
    fn unauthenticated_codes() {
        let e = map_sdk_error(
            "GetSecretValue",
            "x",
            service_error(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
        );
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");
    }

    #[test]
    fn validation_messages_of_value_carrying_calls_are_dropped() {
        let meta = ErrorMetadata::builder()
            .code("ValidationException")
            .message(
                "1 validation error detected: Value 'hunter2-canary' at 'secretString' failed to satisfy constraint",
            )
            .build();
        let raw = HttpResponse::new(400u16.try_into().expect("status"), SdkBody::from("{}"));
        let err: SdkError<PutSecretValueError, HttpResponse> =
            SdkError::service_error(PutSecretValueError::generic(meta), raw);
        let e = map_sdk_error("PutSecretValue", "k", err);
        let text = format!("{e} {e:?}");
        assert!(!text.contains("hunter2"), "{text}");
        // Other operations keep the message, with quoted input redacted.
        let e = map_sdk_error(
            "GetSecretValue",
            "k",
            service_error("ValidationException", "Value 'hunter2-canary' at 'secretId'"),
        );
        let text = format!("{e} {e:?}");
        assert!(!text.contains("hunter2") && text.contains("[REDACTED]"), "{text}");
    }

    #[test]
    fn sanitize_redacts_quotes_and_bounds_length() {
        assert_eq!(sanitize(r#"a 'b' "c" d"#), r#"a '[REDACTED]' "[REDACTED]" d"#);
        assert_eq!(sanitize("open 'quote"), "open '[REDACTED]'");
        assert_eq!(sanitize("a secret that's deleted"), "a secret that's deleted");
        assert_eq!(sanitize("Value 'it's' at"), "Value '[REDACTED]' at");
        assert!(sanitize(&"x".repeat(1000)).chars().count() <= 301);
    }
}
