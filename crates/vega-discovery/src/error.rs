//! [`DiscoveryError`]: what can go wrong registering or discovering, with
//! its [`ErrorClass`]. An unreachable backend is `Unavailable` (retryable),
//! so start-up retries it ([`crate::register_with_backoff`]) and readiness
//! shows it.

use vega_core::{Classify, ErrorClass};

/// An error of a discovery provider. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The backend could not be reached, timed out, or answered that it
    /// cannot serve now (5xx, 429). Retryable.
    #[error("{provider} at {endpoint} is unavailable: {message}")]
    Unavailable {
        provider: &'static str,
        endpoint: String,
        message: String,
    },
    /// The backend refused the credentials (a wrong or missing token).
    #[error("{provider} refused the credentials: {message}")]
    Unauthenticated {
        provider: &'static str,
        message: String,
    },
    /// The credentials are known but lack the permission.
    #[error("{provider} denied the operation: {message}")]
    Forbidden {
        provider: &'static str,
        message: String,
    },
    /// The registration cannot be registered as it is.
    #[error("invalid registration: {0}")]
    InvalidRegistration(String),
    /// The provider's settings are unusable (a bad endpoint or name).
    #[error("invalid {provider} settings: {message}")]
    InvalidSettings {
        provider: &'static str,
        message: String,
    },
    /// The backend refused the request with a client-error status.
    #[error("{provider} refused the request ({status}): {message}")]
    Rejected {
        provider: &'static str,
        status: u16,
        message: String,
    },
    /// The backend answered something this client cannot read.
    #[error("{provider} at {endpoint} answered unexpectedly: {message}")]
    BadResponse {
        provider: &'static str,
        endpoint: String,
        message: String,
    },
}

impl Classify for DiscoveryError {
    fn class(&self) -> ErrorClass {
        match self {
            DiscoveryError::Unavailable { .. } => ErrorClass::Unavailable,
            DiscoveryError::Unauthenticated { .. } => ErrorClass::Unauthenticated,
            DiscoveryError::Forbidden { .. } => ErrorClass::Forbidden,
            DiscoveryError::InvalidRegistration(_) | DiscoveryError::InvalidSettings { .. } => {
                ErrorClass::BadInput
            }
            // A 400 answers what we sent, which comes from the settings
            // (e.g. a health URL Consul cannot use); other refusals are a
            // client bug.
            DiscoveryError::Rejected { status: 400, .. } => ErrorClass::BadInput,
            DiscoveryError::Rejected { .. } | DiscoveryError::BadResponse { .. } => {
                ErrorClass::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_backends_are_retryable() {
        let unavailable = DiscoveryError::Unavailable {
            provider: "etcd",
            endpoint: "http://127.0.0.1:1".into(),
            message: "connection refused".into(),
        };
        assert_eq!(unavailable.class(), ErrorClass::Unavailable);
        assert!(unavailable.is_retryable());
        let denied = DiscoveryError::Unauthenticated {
            provider: "consul",
            message: "ACL not found".into(),
        };
        assert!(!denied.is_retryable());
        let rejected = DiscoveryError::Rejected {
            provider: "consul",
            status: 400,
            message: "Invalid check".into(),
        };
        assert_eq!(rejected.class(), ErrorClass::BadInput);
    }
}
