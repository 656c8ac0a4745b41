//! Per-request telemetry: a span carrying the W3C trace context (taken from
//! an incoming `traceparent` or started here, and returned in the response),
//! the `http_request_duration_seconds` histogram by route template, and
//! refusal of new API requests while the node drains.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use vega_telemetry::traceparent::TraceContext;

use crate::error::ApiError;
use crate::metrics::HttpLabels;
use crate::state::AppState;

pub const TRACEPARENT: &str = "traceparent";

/// Opens the request span, measures the request, returns `traceparent`.
pub async fn trace_and_measure(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| TraceContext::parse(v).ok());
    let context = match &incoming {
        Some(parent) => TraceContext::child_of(parent),
        None => TraceContext::new_root(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let span = tracing::info_span!(
        "request",
        trace_id = %context.trace_id_hex(),
        span_id = %context.span_id_hex(),
        user_id = tracing::field::Empty,
        method = %method,
        route = %route,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    state
        .metrics
        .http_request_duration
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route: route.clone(),
            status: status.as_u16().to_string(),
        })
        .observe(elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&context.to_header()) {
        response.headers_mut().insert(TRACEPARENT, v);
    }
    span.in_scope(|| {
        if route != "/health" && !route.starts_with("/health/") {
            tracing::info!(
                status = status.as_u16(),
                duration_ms = elapsed.as_millis() as u64,
                "request finished"
            );
        }
    });
    response
}

/// Refuses new API requests with 503 once the node drains.
pub async fn refuse_while_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.is_draining() {
        return ApiError::unavailable("this node is shutting down; retry on another node")
            .into_response();
    }
    next.run(request).await
}

/// Bounds every API request except queries (which carry their own
/// `timeout_ms`) by `api.request_timeout`; answers 504 when it passes.
pub async fn request_deadline(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let is_query = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| p.as_str() == "/api/v1/query");
    if is_query {
        return next.run(request).await;
    }
    let limit = state.limits.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "request_timeout",
            format!(
                "the request did not finish within api.request_timeout ({} ms)",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}
