//! Error classes: every error in Vega says which class it belongs to, and the
//! HTTP layer maps the class to a status code. Library crates keep their own
//! `thiserror` enums and implement [`Classify`].

/// What kind of failure an error is, independent of where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Malformed input: bad JSON, bad SQL, wrong type (HTTP 400).
    BadInput,
    /// No credentials or unknown credentials (HTTP 401).
    Unauthenticated,
    /// Credentials lack the role, or the operation is never allowed (HTTP 403).
    Forbidden,
    /// An id or name that does not exist (HTTP 404).
    NotFound,
    /// Duplicate name, a job already running, a resource in use (HTTP 409).
    Conflict,
    /// Well-formed input that breaks a rule (HTTP 422).
    RuleBroken,
    /// A deadline passed (HTTP 504 for queries).
    Timeout,
    /// Not ready, draining or overloaded; try again later (HTTP 503).
    Unavailable,
    /// A bug or an unexpected failure of a dependency (HTTP 500).
    Internal,
}

/// Implemented by every error type that can reach a user.
pub trait Classify {
    fn class(&self) -> ErrorClass;

    /// Whether retrying the same operation can succeed (a lost connection
    /// can; a missing file cannot).
    fn is_retryable(&self) -> bool {
        matches!(self.class(), ErrorClass::Unavailable | ErrorClass::Timeout)
    }
}
