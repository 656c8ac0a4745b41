//! [`TrinoError`] and its classes: Trino's user errors are bad input, lost
//! or overloaded coordinators are unavailable (and worth a retry), deadlines
//! are timeouts, refused credentials are unauthenticated.

use vega_core::{Classify, ErrorClass};

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Opening the connection to the coordinator.
    Connect,
    /// One HTTP request, body included.
    Request,
    /// The whole statement.
    Query,
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::Request => "request",
            TimeoutKind::Query => "query",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrinoError {
    /// The configuration cannot make a client (a bad URL, a header value
    /// with control characters).
    #[error("invalid Trino configuration: {0}")]
    Config(String),
    /// Trino ran the statement and reported it failed (the `error` object of
    /// its answer).
    #[error("Trino query failed: {error_name}: {message}")]
    Query {
        /// `errorName`, e.g. `SYNTAX_ERROR`, `TABLE_NOT_FOUND`.
        error_name: String,
        /// `errorType`: `USER_ERROR`, `INTERNAL_ERROR`,
        /// `INSUFFICIENT_RESOURCES` or `EXTERNAL`.
        error_type: String,
        /// `errorCode`, Trino's numeric code.
        error_code: i64,
        message: String,
    },
    /// The coordinator could not be reached, answered 502/503/504 or 429,
    /// or dropped the connection.
    #[error("Trino unavailable: {message}")]
    Unavailable {
        message: String,
        /// Whether the statement may have reached Trino (false only when
        /// its POST was refused or never connected): a caller retries a
        /// statement with side effects only when this is false.
        submitted: bool,
    },
    /// The coordinator refused the credentials (HTTP 401).
    #[error("Trino refused the credentials: {0}")]
    Unauthenticated(String),
    /// The coordinator refused access (HTTP 403 or `PERMISSION_DENIED`).
    #[error("Trino denied access: {0}")]
    Forbidden(String),
    #[error("Trino {kind} timed out after {timeout_ms} ms")]
    Timeout { kind: TimeoutKind, timeout_ms: u64 },
    /// The caller cancelled the statement (classed as unavailable, like a
    /// draining server, but not retryable: the stop was asked for).
    #[error("Trino query cancelled")]
    Cancelled,
    /// An answer that does not follow the protocol: an unexpected status,
    /// malformed JSON, rows wider than the columns, a page too large.
    #[error("unexpected answer from Trino: {0}")]
    Protocol(String),
    /// A value Trino sent does not fit its column's type.
    #[error("cannot convert column '{column}' of Trino type {trino_type}: {message}")]
    Convert {
        column: String,
        trino_type: String,
        message: String,
    },
}

impl Classify for TrinoError {
    fn class(&self) -> ErrorClass {
        match self {
            TrinoError::Config(_) | TrinoError::Protocol(_) | TrinoError::Convert { .. } => {
                ErrorClass::Internal
            }
            TrinoError::Query {
                error_name,
                error_type,
                ..
            } => match (error_type.as_str(), error_name.as_str()) {
                (_, "PERMISSION_DENIED") => ErrorClass::Forbidden,
                (_, "EXCEEDED_TIME_LIMIT") => ErrorClass::Timeout,
                (_, "USER_CANCELED") => ErrorClass::Unavailable,
                // Internal errors that say the cluster, not the query, is
                // the problem: another try, later, can succeed.
                (_, "SERVER_SHUTTING_DOWN" | "SERVER_STARTING_UP" | "NO_NODES_AVAILABLE") => {
                    ErrorClass::Unavailable
                }
                ("USER_ERROR", _) => ErrorClass::BadInput,
                ("INSUFFICIENT_RESOURCES", _) => ErrorClass::Unavailable,
                _ => ErrorClass::Internal,
            },
            TrinoError::Unavailable { .. } | TrinoError::Cancelled => ErrorClass::Unavailable,
            TrinoError::Unauthenticated(_) => ErrorClass::Unauthenticated,
            TrinoError::Forbidden(_) => ErrorClass::Forbidden,
            TrinoError::Timeout { .. } => ErrorClass::Timeout,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            // The caller (or someone on Trino) stopped it on purpose.
            TrinoError::Cancelled => false,
            TrinoError::Query { error_name, .. } if error_name == "USER_CANCELED" => false,
            _ => matches!(self.class(), ErrorClass::Unavailable | ErrorClass::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, kind: &str) -> TrinoError {
        TrinoError::Query {
            error_name: name.into(),
            error_type: kind.into(),
            error_code: 1,
            message: "m".into(),
        }
    }

    #[test]
    fn user_errors_are_bad_input_and_not_retryable() {
        let e = query("SYNTAX_ERROR", "USER_ERROR");
        assert_eq!(e.class(), ErrorClass::BadInput);
        assert!(!e.is_retryable());
        assert_eq!(
            query("TABLE_NOT_FOUND", "USER_ERROR").class(),
            ErrorClass::BadInput
        );
        assert_eq!(
            query("PERMISSION_DENIED", "USER_ERROR").class(),
            ErrorClass::Forbidden
        );
    }

    #[test]
    fn server_side_failures_have_their_classes() {
        assert_eq!(
            query("GENERIC_INTERNAL_ERROR", "INTERNAL_ERROR").class(),
            ErrorClass::Internal
        );
        let busy = query("CLUSTER_OUT_OF_MEMORY", "INSUFFICIENT_RESOURCES");
        assert_eq!(busy.class(), ErrorClass::Unavailable);
        assert!(busy.is_retryable());
        assert_eq!(
            query("EXCEEDED_TIME_LIMIT", "INSUFFICIENT_RESOURCES").class(),
            ErrorClass::Timeout
        );
        assert!(!query("USER_CANCELED", "USER_ERROR").is_retryable());
        assert!(query("SERVER_SHUTTING_DOWN", "INTERNAL_ERROR").is_retryable());
    }

    #[test]
    fn transport_failures_are_retryable_and_cancellation_is_not() {
        let lost = TrinoError::Unavailable {
            message: "connection reset".into(),
            submitted: true,
        };
        assert_eq!(lost.class(), ErrorClass::Unavailable);
        assert!(lost.is_retryable());
        let slow = TrinoError::Timeout {
            kind: TimeoutKind::Request,
            timeout_ms: 10,
        };
        assert_eq!(slow.class(), ErrorClass::Timeout);
        assert!(slow.is_retryable());
        assert!(!TrinoError::Cancelled.is_retryable());
        assert_eq!(
            TrinoError::Unauthenticated("401".into()).class(),
            ErrorClass::Unauthenticated
        );
        assert_eq!(
            TrinoError::Protocol("bad json".into()).class(),
            ErrorClass::Internal
        );
    }
}
