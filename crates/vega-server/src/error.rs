//! The one API error type. Every failure a handler can meet converts into
//! [`ApiError`], which answers `{"error": {"code", "message", "details"}}` with
//! the status its class implies. Internal errors are logged here, once, with
//! their detail, and answered opaquely.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use vega_catalog::CatalogError;
use vega_connectors::ConnectorError;
use vega_core::{Classify, ErrorClass};
use vega_query::QueryError;
use vega_sync::SyncError;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "rule_broken", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).with_retry_after(5)
    }

    /// Maps an error by its class; internal detail is logged, not returned.
    pub fn from_class(class: ErrorClass, code: &'static str, message: String) -> Self {
        let status = status_of(class);
        if class == ErrorClass::Internal {
            tracing::error!(error = %message, code, "internal error");
            return Self::new(status, "internal", "internal error; see the server log");
        }
        let err = Self::new(status, code, message);
        if class == ErrorClass::Unavailable {
            err.with_retry_after(5)
        } else {
            err
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The HTTP status of an error class.
pub fn status_of(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::BadInput => StatusCode::BAD_REQUEST,
        ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorClass::Forbidden => StatusCode::FORBIDDEN,
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::Conflict => StatusCode::CONFLICT,
        ErrorClass::RuleBroken => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn class_code(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::BadInput => "bad_request",
        ErrorClass::Unauthenticated => "unauthenticated",
        ErrorClass::Forbidden => "forbidden",
        ErrorClass::NotFound => "not_found",
        ErrorClass::Conflict => "conflict",
        ErrorClass::RuleBroken => "rule_broken",
        ErrorClass::Timeout => "timeout",
        ErrorClass::Unavailable => "unavailable",
        ErrorClass::Internal => "internal",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let class = e.class();
        let mut err = ApiError::from_class(class, class_code(class), e.to_string());
        if let CatalogError::Conflict {
            existing: Some(existing),
            ..
        } = &e
        {
            err = err.with_details(json!({ "existing": existing }));
        }
        err
    }
}

impl From<ConnectorError> for ApiError {
    fn from(e: ConnectorError) -> Self {
        let class = e.class();
        ApiError::from_class(class, class_code(class), e.to_string())
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Catalog(e) => e.into(),
            SyncError::Connector(e) => e.into(),
            other => {
                let class = other.class();
                ApiError::from_class(class, class_code(class), other.to_string())
            }
        }
    }
}

impl From<vega_ingest::IngestError> for ApiError {
    fn from(e: vega_ingest::IngestError) -> Self {
        use vega_ingest::IngestError;
        let retry = e.retry_after();
        let mut err = match e {
            IngestError::Catalog(e) => return e.into(),
            IngestError::Busy { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "buffer_full",
                e.to_string(),
            ),
            IngestError::DiskFull(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "disk_full", e.to_string())
            }
            other => {
                let class = other.class();
                ApiError::from_class(class, class_code(class), other.to_string())
            }
        };
        if let Some(after) = retry {
            err = err.with_retry_after(after.as_secs().max(1));
        }
        err
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let class = e.class();
        let mut err = ApiError::from_class(class, e.code(), e.to_string());
        if let QueryError::BadSql {
            position: Some(p), ..
        } = &e
        {
            err = err.with_details(json!({ "position": p }));
        }
        if let QueryError::Busy { .. } = &e {
            err = err.with_retry_after(1);
        }
        err
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match &rejection {
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "request body is larger than api.max_body_bytes",
                )
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body with Content-Type: application/json",
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                rejection.body_text(),
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query_string",
            rejection.body_text(),
        )
    }
}
