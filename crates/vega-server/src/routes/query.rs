//! `POST /api/v1/query`: sandboxed, read-only SQL over assets.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use vega_core::Role;
use vega_query::format::{self, Column};
use vega_query::{QueryError, QueryRequest};

use super::views::ErrorBody;
use crate::auth::Principal;
use crate::cache::{CacheKey, CachedAnswer, Lookup};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::metrics::{QueryErrorLabels, QueryLabels};
use crate::state::AppState;

/// The engine names reported in responses, logs and metrics.
const DUCKDB: &str = "duckdb";
const TRINO: &str = "trino";

/// Which engine a request asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Choice {
    Auto,
    DuckDb,
    Trino,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// One SELECT statement; assets are addressed as `namespace.name`.
    pub sql: String,
    /// `json` (default), `csv` or `arrow`.
    #[serde(default)]
    pub format: Option<String>,
    /// At most this many rows are returned (default from `query.default_max_rows`).
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// Cancel the query after this long (default `query.default_timeout`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `auto` (default: `query.engine` decides, and with it the size of
    /// what the statement reads), `duckdb` or `trino` (needs
    /// `query.trino`).
    #[serde(default)]
    pub engine: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResult {
    pub columns: Vec<ColumnView>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Value>,
    pub row_count: usize,
    /// True when more rows existed than `max_rows`.
    pub truncated: bool,
    pub engine: String,
    pub elapsed_ms: f64,
    /// The assets read and the version of each.
    pub assets: Vec<AssetRead>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ColumnView {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
}

impl From<Column> for ColumnView {
    fn from(c: Column) -> Self {
        Self {
            name: c.name,
            sql_type: c.sql_type,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetRead {
    pub name: String,
    pub version: String,
}

enum Format {
    Json,
    Csv,
    Arrow,
}

impl Format {
    fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Arrow => "arrow",
        }
    }
}

#[utoipa::path(post, path = "/api/v1/query", tag = "query", request_body = QueryBody,
    responses((status = 200, body = QueryResult, description = "JSON; `text/csv` or `application/vnd.apache.arrow.stream` when asked"),
              (status = 400, body = ErrorBody, description = "invalid SQL; details.position is the character offset"),
              (status = 403, body = ErrorBody, description = "the SQL does something the sandbox forbids"),
              (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn query(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<QueryBody>,
) -> Result<Response, ApiError> {
    principal.require(Role::Reader)?;
    let format = match body.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some("arrow") => Format::Arrow,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be json, csv or arrow, not '{other}'"
            ))
            .with_details(json!({ "field": "format" })))
        }
    };
    let choice = match body.engine.as_deref() {
        None | Some("auto") => Choice::Auto,
        Some("duckdb") => Choice::DuckDb,
        Some("trino") if state.trino.is_some() => Choice::Trino,
        Some("trino") => {
            return Err(ApiError::unprocessable(
                "the trino engine is not configured on this node (query.trino)",
            )
            .with_details(json!({ "field": "engine" })))
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "engine must be auto, duckdb or trino, not '{other}'"
            ))
            .with_details(json!({ "field": "engine" })))
        }
    };
    let limits = &state.limits;
    let max_rows = match body.max_rows {
        None => limits.default_max_rows,
        Some(n) if n as usize > limits.max_rows_limit || n == 0 => {
            return Err(ApiError::bad_request(format!(
                "max_rows must be between 1 and {}",
                limits.max_rows_limit
            ))
            .with_details(json!({ "field": "max_rows" })))
        }
        Some(n) => n as usize,
    };
    let timeout = match body.timeout_ms {
        None => limits.default_timeout,
        Some(ms) if ms == 0 || Duration::from_millis(ms) > limits.max_timeout => {
            return Err(ApiError::bad_request(format!(
                "timeout_ms must be between 1 and {}",
                limits.max_timeout.as_millis()
            ))
            .with_details(json!({ "field": "timeout_ms" })))
        }
        Some(ms) => Duration::from_millis(ms),
    };

    let started = std::time::Instant::now();
    let policy = CachePolicy::of(&headers, state.cache.enabled());
    // What the statement reads: the cache's key, and Trino's routing. The
    // sandbox refuses here what it would refuse when the query runs.
    let remote = match (&state.trino, choice) {
        (Some(trino), Choice::Trino | Choice::Auto) => Some(trino),
        _ => None,
    };
    let read = match (policy, remote) {
        (CachePolicy::Off, None) => None,
        _ => match state.engine.read_set(&body.sql).await {
            Ok(read) => Some(read),
            // DuckDB reports what is wrong; Trino gets nothing the sandbox
            // refused.
            Err(e) if remote.is_some() => return Err(e.into()),
            Err(_) => None,
        },
    };
    let key = match policy {
        CachePolicy::Off => None,
        _ => read
            .as_ref()
            .and_then(|read| CacheKey::new(read, format.name(), max_rows)),
    };
    let to_trino = match (remote, &read) {
        (Some(_), Some(_)) if choice == Choice::Trino => true,
        (Some(trino), Some(read)) => match state.default_engine {
            vega_config::Engine::Duckdb => false,
            vega_config::Engine::Trino => true,
            vega_config::Engine::Auto => {
                read.assets.iter().any(|a| trino.assets.contains(&a.name))
                    || read_bytes(&state, read) > trino.size_threshold
            }
        },
        _ => false,
    };
    if let (Some(key), CachePolicy::Use) = (&key, policy) {
        if let Lookup::Hit(answer) = state.cache.get(key, std::time::Instant::now()) {
            state
                .metrics
                .query_duration
                .get_or_create(&QueryLabels {
                    engine: "cache".into(),
                    status: "ok".into(),
                })
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                engine = "cache",
                cached = true,
                age_ms = answer.created.elapsed().as_secs_f64() * 1000.0,
                "query answered from the result cache"
            );
            return Ok(respond(
                answer.content_type,
                answer.body,
                answer.truncated,
                "hit",
                answer.engine,
                None,
            ));
        }
    }
    let mut engine = DUCKDB;
    let mut fallback: Option<&'static str> = None;
    let mut result = None;
    if let (true, Some(trino), Some(read)) = (to_trino, remote, &read) {
        let assets = read
            .assets
            .iter()
            .map(|a| (a.name.clone(), a.version))
            .collect();
        match trino.query(&body.sql, max_rows, timeout, assets).await {
            Ok(output) => {
                engine = TRINO;
                result = Some(Ok(output));
            }
            Err(failure) if failure.allows_fallback() && trino.falls_back_to_duckdb() => {
                let reason = failure.reason();
                state
                    .metrics
                    .query_fallbacks
                    .get_or_create(&crate::metrics::FallbackLabels {
                        from: TRINO.into(),
                        to: DUCKDB.into(),
                        reason: reason.into(),
                    })
                    .inc();
                tracing::warn!(error = %failure, fallback = "route_to_duckdb", reason,
                    "trino did not answer; DuckDB answers instead");
                fallback = Some(reason);
            }
            Err(failure) => {
                state
                    .metrics
                    .query_errors
                    .get_or_create(&QueryErrorLabels {
                        engine: TRINO.into(),
                        code: failure.reason().into(),
                    })
                    .inc();
                tracing::info!(engine = TRINO, error = %failure, "query failed on trino");
                let class = failure.class();
                return Err(ApiError::from_class(class, "trino", failure.to_string()));
            }
        }
    }
    let result = match result {
        Some(r) => r,
        None => {
            state
                .engine
                .query(QueryRequest {
                    sql: body.sql,
                    max_rows,
                    timeout,
                })
                .await
        }
    };
    let output = match result {
        Ok(output) => output,
        Err(e) => {
            let status = match &e {
                QueryError::Timeout { .. } => "timeout",
                QueryError::Forbidden(_) | QueryError::Busy { .. } => "rejected",
                _ => "error",
            };
            state
                .metrics
                .query_errors
                .get_or_create(&QueryErrorLabels {
                    engine: engine.into(),
                    code: e.code().into(),
                })
                .inc();
            state
                .metrics
                .query_duration
                .get_or_create(&QueryLabels {
                    engine: engine.into(),
                    status: status.into(),
                })
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(engine, error_code = e.code(), "query refused or failed");
            return Err(e.into());
        }
    };
    let elapsed = output.elapsed;
    state
        .metrics
        .query_duration
        .get_or_create(&QueryLabels {
            engine: engine.into(),
            status: "ok".into(),
        })
        .observe(elapsed.as_secs_f64());
    state.metrics.query_rows.inc_by(output.rows as u64);
    let assets: Vec<String> = output
        .assets
        .iter()
        .map(|(name, v)| format!("{name}@v{v}"))
        .collect();
    tracing::info!(
        asset = %assets.join(","),
        engine,
        fallback,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        rows_returned = output.rows,
        truncated = output.truncated,
        "query answered"
    );

    let (content_type, body): (&'static str, Vec<u8>) = match format {
        Format::Json => {
            // Written in one pass: the rows go straight from Arrow to bytes.
            let columns: Vec<ColumnView> = format::columns(&output.schema)
                .into_iter()
                .map(Into::into)
                .collect();
            let assets: Vec<AssetRead> = output
                .assets
                .iter()
                .map(|(name, v)| AssetRead {
                    name: name.clone(),
                    version: format!("v{v}"),
                })
                .collect();
            let mut body = Vec::with_capacity(256 + output.rows * 32);
            let encode = |e: serde_json::Error| {
                ApiError::from(QueryError::Internal(format!("encoding JSON: {e}")))
            };
            body.extend_from_slice(b"{\"columns\":");
            serde_json::to_writer(&mut body, &columns).map_err(encode)?;
            body.extend_from_slice(b",\"rows\":");
            format::write_json_rows(&output, &mut body)?;
            body.extend_from_slice(
                format!(
                    ",\"row_count\":{},\"truncated\":{},\"engine\":\"{engine}\",\"elapsed_ms\":{},\"assets\":",
                    output.rows,
                    output.truncated,
                    elapsed.as_secs_f64() * 1000.0
                )
                .as_bytes(),
            );
            serde_json::to_writer(&mut body, &assets).map_err(encode)?;
            body.push(b'}');
            ("application/json", body)
        }
        Format::Csv => ("text/csv; charset=utf-8", format::csv(&output)?),
        Format::Arrow => (
            "application/vnd.apache.arrow.stream",
            format::arrow_ipc(&output)?,
        ),
    };
    let body = Bytes::from(body);
    let outcome = match (&key, policy) {
        (Some(key), CachePolicy::Use | CachePolicy::Refresh) => {
            state.cache.put(
                *key,
                CachedAnswer {
                    content_type,
                    body: body.clone(),
                    truncated: output.truncated,
                    created: started,
                    engine,
                },
            );
            "miss"
        }
        _ => "bypass",
    };
    Ok(respond(
        content_type,
        body,
        output.truncated,
        outcome,
        engine,
        fallback,
    ))
}

/// The bytes of the active versions of the assets `read` names, as the
/// engine's views hold them (what `auto` compares with Trino's
/// `size_threshold`).
fn read_bytes(state: &AppState, read: &vega_query::ReadSet) -> u64 {
    let views = state.engine.registered();
    read.assets
        .iter()
        .filter_map(|a| {
            views
                .iter()
                .find(|v| format!("{}.{}", v.namespace, v.name) == a.name)
        })
        .flat_map(|v| v.files.iter())
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// How a request may use the result cache (`Cache-Control`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum CachePolicy {
    /// Answer from the cache when possible; keep the answer.
    Use,
    /// `no-cache`: compute afresh, keep the answer.
    Refresh,
    /// `no-store`, or the cache is disabled: neither read nor keep.
    Off,
}

impl CachePolicy {
    fn of(headers: &HeaderMap, enabled: bool) -> Self {
        if !enabled {
            return CachePolicy::Off;
        }
        let mut policy = CachePolicy::Use;
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in text.split(',').map(|d| d.trim().to_ascii_lowercase()) {
                match directive.as_str() {
                    "no-store" => return CachePolicy::Off,
                    "no-cache" | "max-age=0" => policy = CachePolicy::Refresh,
                    _ => {}
                }
            }
        }
        policy
    }
}

/// The response of a query; `x-vega-cache` is `hit`, `miss` (computed and
/// kept) or `bypass` (not cacheable, or the request said `no-store`);
/// `x-vega-engine` names the engine that answered, and `x-vega-fallback`
/// why it was not the one chosen (`breaker_open`, `no_coordinator`, `bulkhead_full`,
/// `timeout`, `error`).
fn respond(
    content_type: &'static str,
    body: Bytes,
    truncated: bool,
    cache: &'static str,
    engine: &'static str,
    fallback: Option<&'static str>,
) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert("x-vega-engine", HeaderValue::from_static(engine));
    if let Some(reason) = fallback {
        headers.insert("x-vega-fallback", HeaderValue::from_static(reason));
    }
    headers.insert("x-vega-cache", HeaderValue::from_static(cache));
    if truncated {
        headers.insert("x-vega-truncated", HeaderValue::from_static("true"));
    }
    response
}
