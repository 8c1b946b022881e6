//! Classifies failed AWS calls, in one place: what is throttling, what is
//! worth retrying, what needs an operator.
//!
//! This classification decides what we count (`throttled` vs `error`, the
//! `kind` of each failed attempt), which failed attempts a CloudWatch Logs
//! call retries ([`super::attempts`]: throttled and transient ones) and
//! whether the poller should expect a later poll to succeed.

use aws_sdk_cloudwatchlogs::config::http::HttpResponse;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::api::ApiError;

/// Error codes that mean "slow down" (the AWS SDKs' throttling list, as far
/// as CloudWatch Logs can send them).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
];

/// Error codes of transient server-side faults.
const TRANSIENT_CODES: &[&str] = &[
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// How a call failed, before any HTTP status or error code is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The request could not be built or sent as configured (a bad endpoint
    /// URL, missing credentials or region): no retry will fix it.
    Local,
    /// Timeout, refused or reset connection, unreadable response.
    Transport,
    /// The service answered with an error (status and code tell which).
    Service,
}

/// The one classification rule: throttling first (429 or a throttling
/// code), then transient faults (transport, 5xx, a transient code), and
/// everything else — 4xx such as access denied, unknown log group, invalid
/// parameter, and local failures — is fatal.
pub fn classify(
    operation: &'static str,
    kind: FailureKind,
    status: Option<u16>,
    code: Option<&str>,
    message: String,
) -> ApiError {
    let throttled = status == Some(429) || code.is_some_and(|c| THROTTLING_CODES.contains(&c));
    let transient = kind == FailureKind::Transport
        || status.is_some_and(|s| (500..600).contains(&s))
        || code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
    if throttled {
        ApiError::Throttled { operation, message }
    } else if transient {
        ApiError::Retriable { operation, message }
    } else {
        ApiError::Fatal { operation, message }
    }
}

/// What went wrong with one failed attempt, finer than the outcome: the
/// `kind` label of `vpcflow_api_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The request could not be built or sent as configured.
    Local,
    /// No answer within the attempt timeout.
    Timeout,
    /// Refused, reset or dropped connection.
    Connection,
    /// An answer that could not be read (a truncated or garbled body; one
    /// with a success status comes as `Service` with that status).
    BadResponse,
    /// The service answered with an error status and code.
    Service,
}

/// Codes that mean "these credentials may not do this".
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
];

/// The bounded `kind` label of a failed attempt: `throttled`, `timeout`,
/// `connection`, `bad_response`, `server_error` (5xx or a transient code),
/// `denied` (403 or a credentials code), `invalid_parameter` (what an
/// expired `nextToken` is answered with), `not_found`, `client_error` (any
/// other 4xx) or `local`.
pub fn attempt_kind(
    failure: AttemptFailure,
    status: Option<u16>,
    code: Option<&str>,
) -> &'static str {
    let throttled = status == Some(429) || code.is_some_and(|c| THROTTLING_CODES.contains(&c));
    match failure {
        _ if throttled => "throttled",
        AttemptFailure::Local => "local",
        AttemptFailure::Timeout => "timeout",
        AttemptFailure::Connection => "connection",
        AttemptFailure::BadResponse => "bad_response",
        AttemptFailure::Service => match (status, code) {
            // A success status whose body could not be read as an answer.
            (Some(200..=299), _) => "bad_response",
            (Some(500..=599), _) => "server_error",
            (_, Some(code)) if TRANSIENT_CODES.contains(&code) => "server_error",
            (Some(403), _) => "denied",
            (_, Some(code)) if DENIED_CODES.contains(&code) => "denied",
            (_, Some("InvalidParameterException")) => "invalid_parameter",
            (_, Some("ResourceNotFoundException")) => "not_found",
            _ => "client_error",
        },
    }
}

/// Maps an SDK error onto [`classify`]. The message is the error chain
/// (codes, service message, request id); it never holds credentials.
pub fn from_sdk_error<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = DisplayErrorContext(err).to_string();
    let (kind, status, code) = match err {
        SdkError::ConstructionFailure(_) => (FailureKind::Local, None, None),
        SdkError::TimeoutError(_) => (FailureKind::Transport, None, None),
        SdkError::DispatchFailure(failure) if failure.is_user() => (FailureKind::Local, None, None),
        SdkError::DispatchFailure(_) => (FailureKind::Transport, None, None),
        SdkError::ResponseError(resp) => (
            FailureKind::Transport,
            Some(resp.raw().status().as_u16()),
            None,
        ),
        SdkError::ServiceError(service) => (
            FailureKind::Service,
            Some(service.raw().status().as_u16()),
            service.err().code(),
        ),
        // SdkError is non-exhaustive: an unknown kind is retried rather
        // than given up on.
        _ => (FailureKind::Transport, None, None),
    };
    classify(operation, kind, status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(kind: FailureKind, status: Option<u16>, code: Option<&str>) -> &'static str {
        match classify("FilterLogEvents", kind, status, code, String::new()) {
            ApiError::Throttled { .. } => "throttled",
            ApiError::Retriable { .. } => "retriable",
            ApiError::Fatal { .. } | ApiError::ExpiredToken { .. } => "fatal",
        }
    }

    #[test]
    fn classifies_throttling_transient_and_fatal() {
        use FailureKind::*;
        let cases = [
            (Service, Some(400), Some("ThrottlingException"), "throttled"),
            (
                Service,
                Some(400),
                Some("LimitExceededException"),
                "throttled",
            ),
            (Service, Some(429), None, "throttled"),
            (
                Service,
                Some(503),
                Some("ServiceUnavailableException"),
                "retriable",
            ),
            (Service, Some(500), Some("InternalFailure"), "retriable"),
            (Service, Some(502), None, "retriable"),
            (Transport, None, None, "retriable"),
            (Transport, Some(200), None, "retriable"),
            (
                Service,
                Some(400),
                Some("ResourceNotFoundException"),
                "fatal",
            ),
            (
                Service,
                Some(400),
                Some("InvalidParameterException"),
                "fatal",
            ),
            (Service, Some(403), Some("AccessDeniedException"), "fatal"),
            (
                Service,
                Some(400),
                Some("UnrecognizedClientException"),
                "fatal",
            ),
            (Local, None, None, "fatal"),
        ];
        for (kind, status, code, want) in cases {
            assert_eq!(
                label(kind, status, code),
                want,
                "{kind:?} {status:?} {code:?}"
            );
        }
    }

    #[test]
    fn attempt_kinds_tell_what_failed() {
        use AttemptFailure::*;
        let cases = [
            (Service, Some(400), Some("ThrottlingException"), "throttled"),
            (Service, Some(429), None, "throttled"),
            (Service, Some(500), None, "server_error"),
            (
                Service,
                Some(503),
                Some("ServiceUnavailableException"),
                "server_error",
            ),
            (
                Service,
                Some(400),
                Some("ServiceUnavailableException"),
                "server_error",
            ),
            (Service, Some(403), None, "denied"),
            (Service, Some(400), Some("AccessDeniedException"), "denied"),
            (
                Service,
                Some(400),
                Some("UnrecognizedClientException"),
                "denied",
            ),
            (
                Service,
                Some(400),
                Some("InvalidParameterException"),
                "invalid_parameter",
            ),
            (
                Service,
                Some(400),
                Some("ResourceNotFoundException"),
                "not_found",
            ),
            (Service, Some(400), Some("SomethingElse"), "client_error"),
            (Timeout, None, None, "timeout"),
            (Connection, None, None, "connection"),
            (BadResponse, Some(200), None, "bad_response"),
            (Service, Some(200), None, "bad_response"),
            (Local, None, None, "local"),
        ];
        for (failure, status, code, want) in cases {
            assert_eq!(
                attempt_kind(failure, status, code),
                want,
                "{failure:?} {status:?} {code:?}"
            );
        }
    }

    #[test]
    fn metric_labels_are_bounded() {
        let e = classify(
            "DescribeLogStreams",
            FailureKind::Service,
            Some(429),
            None,
            "x".into(),
        );
        assert_eq!(e.metric_label(), "throttled");
        assert_eq!(e.operation(), "DescribeLogStreams");
        assert!(e.is_retriable());
        let e = classify(
            "FilterLogEvents",
            FailureKind::Transport,
            None,
            None,
            "x".into(),
        );
        assert_eq!(e.metric_label(), "error");
        let e = classify(
            "FilterLogEvents",
            FailureKind::Local,
            None,
            None,
            "x".into(),
        );
        assert_eq!(e.metric_label(), "error");
        assert!(!e.is_retriable());
    }
}
