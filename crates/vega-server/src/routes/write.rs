//! Line-protocol writes, compatible with InfluxDB clients and Telegraf:
//! `POST /api/v2/write?bucket=&precision=` and `POST /write?db=&precision=`.
//!
//! Each measurement goes to the stream asset `<bucket>.<measurement>`,
//! created on first write. Writes are acknowledged (204) only once durable
//! in the write-ahead log. Bad lines do not stop good ones (partial write):
//! the answer is then 400 listing each bad line's number, reason and
//! message, and the good lines are written. Bodies may be gzip-compressed;
//! their size after decompression is bounded by `ingest.max_body_bytes`.

use std::collections::BTreeMap;
use std::io::Read;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use vega_core::Role;
use vega_lineproto::Precision;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::metrics::ReasonLabels;
use crate::routes::views::ErrorBody;
use crate::state::AppState;

/// Bad lines listed in a 400 at most (the count is always complete).
const MAX_LISTED_ERRORS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
pub struct WriteV2Params {
    /// The namespace of the assets written (`<bucket>.<measurement>`).
    pub bucket: Option<String>,
    /// Accepted and ignored (Vega has no organizations).
    pub org: Option<String>,
    /// `ns` (default), `us`, `ms` or `s`.
    pub precision: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct WriteV1Params {
    /// The namespace of the assets written (`<db>.<measurement>`).
    pub db: Option<String>,
    /// Accepted and ignored (retention is set per asset).
    pub rp: Option<String>,
    /// `n`/`ns` (default), `u`/`us`, `ms`, `s`, `m` or `h`.
    pub precision: Option<String>,
    /// Accepted and ignored.
    pub consistency: Option<String>,
}

/// Writes line protocol (InfluxDB 2 API).
#[utoipa::path(post, path = "/api/v2/write", tag = "write",
    params(WriteV2Params),
    request_body(content = String, content_type = "text/plain", description = "line protocol, optionally with Content-Encoding: gzip"),
    responses((status = 204, description = "every line is durable"),
              (status = 400, body = ErrorBody, description = "bad parameters, or a partial write: details.rejected lists the bad lines, the others were written"),
              (status = 413, body = ErrorBody), (status = 503, body = ErrorBody, description = "buffer or disk full; see Retry-After")))]
pub async fn write_v2(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(params): ApiQuery<WriteV2Params>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Writer)?;
    let bucket = params.bucket.ok_or_else(|| {
        ApiError::bad_request("the bucket parameter is required")
            .with_details(json!({ "field": "bucket" }))
    })?;
    let precision = match params.precision.as_deref() {
        None | Some("") => Precision::Nanoseconds,
        Some(p) => Precision::parse_v2(p).map_err(|e| {
            ApiError::bad_request(e.to_string()).with_details(json!({ "field": "precision" }))
        })?,
    };
    write(&state, &bucket, precision, &headers, body).await
}

/// Writes line protocol (InfluxDB 1.x API, as Telegraf's `influxdb` output sends it).
#[utoipa::path(post, path = "/write", tag = "write",
    params(WriteV1Params),
    request_body(content = String, content_type = "text/plain", description = "line protocol, optionally with Content-Encoding: gzip"),
    responses((status = 204, description = "every line is durable"),
              (status = 400, body = ErrorBody, description = "bad parameters, or a partial write: details.rejected lists the bad lines, the others were written"),
              (status = 413, body = ErrorBody), (status = 503, body = ErrorBody, description = "buffer or disk full; see Retry-After")))]
pub async fn write_v1(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(params): ApiQuery<WriteV1Params>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Writer)?;
    let db = params.db.ok_or_else(|| {
        ApiError::bad_request("the db parameter is required").with_details(json!({ "field": "db" }))
    })?;
    let precision = match params.precision.as_deref() {
        None | Some("") => Precision::Nanoseconds,
        Some(p) => Precision::parse_v1(p).map_err(|e| {
            ApiError::bad_request(e.to_string()).with_details(json!({ "field": "precision" }))
        })?,
    };
    write(&state, &db, precision, &headers, body).await
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the body is larger than ingest.max_body_bytes ({limit} bytes, after decompression)"
        ),
    )
}

/// The body, decompressed, at most `limit` bytes.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large(limit))?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(raw.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]).take(limit as u64 + 1);
            decoder
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request(format!("the body is not valid gzip: {e}")))?;
            if out.len() > limit {
                return Err(too_large(limit));
            }
            Ok(out)
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("Content-Encoding '{other}' is not supported; send identity or gzip"),
        )),
    }
}

async fn write(
    state: &AppState,
    bucket: &str,
    precision: Precision,
    headers: &HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    vega_core::name::validate_part("namespace", bucket).map_err(|e| {
        ApiError::bad_request(format!("bucket: {e}")).with_details(json!({ "field": "bucket" }))
    })?;
    let body = read_body(headers, body, state.ingest_limits.max_body_bytes).await?;
    let now_ns = state.clock.now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let parsed =
        tokio::task::spawn_blocking(move || vega_lineproto::parse(&body, precision, now_ns))
            .await
            .map_err(|e| {
                ApiError::from_class(vega_core::ErrorClass::Internal, "internal", e.to_string())
            })?;
    // (line, reason, message) of every refused line.
    let mut rejected: Vec<(usize, String, String)> = parsed
        .errors
        .iter()
        .map(|e| (e.line, e.kind.as_str().to_string(), e.message.clone()))
        .collect();
    let mut groups: BTreeMap<String, Vec<(usize, vega_core::Point)>> = BTreeMap::new();
    for p in parsed.points {
        groups
            .entry(p.measurement)
            .or_default()
            .push((p.line, p.point));
    }
    let mut written = 0usize;
    for (measurement, points) in groups {
        let asset = match state.ingest.line_protocol_asset(bucket, &measurement).await {
            Ok(a) => a,
            Err(vega_ingest::IngestError::Invalid(message)) => {
                for (line, _) in &points {
                    rejected.push((*line, "bad_name".into(), message.clone()));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let lines: Vec<usize> = points.iter().map(|(l, _)| *l).collect();
        // A task of its own: a client that hangs up cannot stop a write
        // between the log and the buffer.
        let ingest = state.ingest.clone();
        let points: Vec<vega_core::Point> = points.into_iter().map(|(_, p)| p).collect();
        let report = tokio::spawn(async move { ingest.write(&asset, points, None, false).await })
            .await
            .map_err(|e| {
                ApiError::from_class(vega_core::ErrorClass::Internal, "internal", e.to_string())
            })??;
        written += report.accepted;
        for (index, reason) in report.rejected {
            rejected.push((lines[index], "type_conflict".into(), reason));
        }
    }
    if rejected.is_empty() {
        return Ok(StatusCode::NO_CONTENT);
    }
    for (_, reason, _) in &rejected {
        state
            .metrics
            .ingest_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.clone(),
            })
            .inc();
    }
    rejected.sort_by_key(|(line, _, _)| *line);
    let count = rejected.len();
    let first = rejected[0].clone();
    let listed: Vec<_> = rejected
        .into_iter()
        .take(MAX_LISTED_ERRORS)
        .map(
            |(line, reason, message)| json!({ "line": line, "reason": reason, "message": message }),
        )
        .collect();
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "partial_write",
        format!(
            "partial write: {count} line(s) rejected, {written} written; first: line {}: {}",
            first.0, first.2
        ),
    )
    .with_details(json!({ "written": written, "rejected_count": count, "rejected": listed })))
}
