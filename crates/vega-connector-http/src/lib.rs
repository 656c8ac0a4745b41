//! The HTTP connector: JSON, NDJSON and CSV records fetched over HTTP(S),
//! page by page.
//!
//! # Connection parameters
//!
//! ```json
//! {"base_url": "https://api.example.com/api",
//!  "headers": {"Accept": {"value": "application/json"},
//!              "Authorization": {"env": "EXAMPLE_TOKEN"}},
//!  "timeout_ms": 30000, "connect_timeout_ms": 10000,
//!  "max_pages": 10000, "max_response_bytes": 268435456,
//!  "health_path": "/health"}
//! ```
//!
//! Only `base_url` is required (http or https; no credentials, query or
//! fragment). A header is either a plain, non-secret `{"value": …}` or a
//! secret reference (`{"env": …}` / `{"file": …}`, see
//! [`vega_connectors::secret`]) resolved only when requests are made;
//! `Authorization`, `Proxy-Authorization` and `Cookie` must be references.
//! `timeout_ms` bounds each request including reading its body;
//! `max_pages` bounds one read (a source with more pages fails the read
//! rather than being cut short); a response body larger than
//! `max_response_bytes` is refused.
//!
//! # Asset source
//!
//! ```json
//! {"path": "/v1/items", "query": {"status": "open"},
//!  "format": "json", "records": "/data/items",
//!  "pagination": {"type": "cursor", "cursor_param": "cursor", "pointer": "/next_cursor"},
//!  "batch_size": 8192}
//! ```
//!
//! `path` (below the base URL's path) is required. `format` is `json`
//! (default), `ndjson` or `csv` (`"csv": {"delimiter": ",", "header": true}`).
//! For json, `records` is a JSON pointer to the array of records in each
//! page; without it the page itself must be the array. `pagination` is one of
//! - `{"type": "next_link", "pointer": "/links/next"}`: the next page's URL
//!   (absolute or relative to the page) in the body;
//! - `{"type": "link_header"}`: the `Link: <…>; rel="next"` header;
//! - `{"type": "offset", "limit_param": "limit", "offset_param": "offset",
//!   "limit": 100}`: a page with fewer than `limit` records is the last;
//! - `{"type": "cursor", "cursor_param": "cursor", "pointer": "/next_cursor"}`:
//!   the cursor is sent back until it is absent, `null` or empty.
//!
//! Without `pagination` one request is made. Next links must stay on the
//! base URL's origin (scheme, host, port), like redirects, so the
//! connection's headers are never sent elsewhere.
//!
//! # Incremental reads
//!
//! With `"incremental": {"cursor_param": "updated_since", "cursor_field":
//! "updated_at", "key_field": "id"}` the watermark's value (the highest
//! `cursor_field` read so far, a number or a string such as an RFC 3339
//! UTC timestamp) is sent as the `cursor_param` query parameter of the
//! first request. The server is expected to return records whose cursor is
//! at or after it; records before the watermark, and records at it whose
//! key (`key_field`, or a hash of the whole record without it) was already
//! read, are skipped. CSV sources have no incremental mode.
//!
//! # Schemas and errors
//!
//! The schema is inferred (arrow-json or arrow-csv, as in the file
//! connector) from the first page that has records; a later record that
//! does not fit fails the read with [`ConnectorError::BadData`] naming the
//! page URL (without its query string), the page number and the record.
//! Connection failures, timeouts, 5xx, 408 and 429 are retryable; 401 and
//! 403 are [`ConnectorError::Auth`]; other 4xx are permanent.

pub mod client;
pub mod config;
pub mod source;
#[cfg(test)]
mod tests;

use serde_json::Value;
use vega_connectors::{BatchSource, Connector, ConnectorError, IncrementalSource, Watermark};
use vega_core::ConnectorKind;

pub use config::{
    CsvSettings, HeaderSpec, HttpConnectionParams, HttpFormat, HttpSource, IncrementalSettings,
    Pagination,
};
pub use source::HttpBatchSource;

use client::{describe, HttpClient};

/// Reads records from HTTP APIs. Its methods do blocking I/O: call them on
/// a blocking thread, outside any async runtime's worker threads.
#[derive(Debug, Clone, Default)]
pub struct HttpConnector;

impl HttpConnector {
    pub fn new() -> Self {
        Self
    }
}

impl Connector for HttpConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Http
    }

    fn check_connection(&self, params: &Value) -> Result<(), ConnectorError> {
        HttpConnectionParams::parse(params).map(|_| ())
    }

    fn check_source(&self, params: &Value, source: &Value) -> Result<(), ConnectorError> {
        let params = HttpConnectionParams::parse(params)?;
        let source = HttpSource::parse(source)?;
        params.url_for(&source.path).map(|_| ())
    }

    /// GETs the base URL (or `health_path` below it); any 2xx passes.
    fn test(&self, params: &Value) -> Result<(), ConnectorError> {
        let params = HttpConnectionParams::parse(params)?;
        let url = match &params.health_path {
            Some(path) => params.url_for(path)?,
            None => params.base_url.clone(),
        };
        let client = HttpClient::new(&params)?;
        let page = client.get(&url)?;
        tracing::debug!(url = %describe(&page.url), bytes = page.body.len(), "HTTP connection test passed");
        Ok(())
    }

    fn open_full(
        &self,
        params: &Value,
        source: &Value,
    ) -> Result<Box<dyn BatchSource>, ConnectorError> {
        let params = HttpConnectionParams::parse(params)?;
        let source = HttpSource::parse(source)?;
        Ok(Box::new(HttpBatchSource::open(&params, source)?))
    }

    fn open_incremental(
        &self,
        params: &Value,
        source: &Value,
        since: &Watermark,
    ) -> Result<Box<dyn IncrementalSource>, ConnectorError> {
        let params = HttpConnectionParams::parse(params)?;
        let source = HttpSource::parse(source)?;
        Ok(Box::new(HttpBatchSource::open_incremental(
            &params, source, since,
        )?))
    }
}
