//! The PostgreSQL connector: reads a table or a `SELECT` query into Arrow
//! batches, in full or incrementally by a cursor column.
//!
//! Connection parameters:
//!
//! ```json
//! {"host": "db.internal", "port": 5432, "database": "sales", "user": "vega",
//!  "password": {"env": "PG_PASSWORD"}, "sslmode": "prefer",
//!  "connect_timeout_ms": 10000}
//! ```
//!
//! `hosts` (a list, tried in order) may replace `host`; a host starting
//! with `/` is a unix socket directory. `port` defaults to 5432,
//! `connect_timeout_ms` to 10 s. The password is only ever a reference
//! (`{"env": …}` or `{"file": …}`); a plain string is refused. `sslmode` is
//! `disable`, `prefer` (the default: TLS when the server offers it) or
//! `require` (TLS or no connection), with libpq's meanings; the server's
//! certificate is not verified (`verify-full` is not offered yet).
//!
//! Asset source: `{"table": "schema.name"}` or `{"query": "SELECT …"}`
//! (exactly one), `batch_rows` (default 8192), and for incremental reads
//! `cursor_column` and `key_columns` (the columns that identify a row).
//!
//! # Reads
//!
//! Reads stream through a server-side cursor in a read-only transaction,
//! `batch_rows` rows at a time (see [`source`]); types map to Arrow as
//! described in [`types`].
//!
//! An incremental read returns the rows whose cursor is at or after the
//! watermark's value, ordered by the cursor, except those at exactly that
//! value whose key is in `keys_at_value`; the new watermark is the highest
//! cursor value read with the keys of the rows at it. So rows sharing the
//! watermark value, whether read before or committed after the last read,
//! are neither lost nor duplicated. Limits: rows with a NULL cursor are
//! never read incrementally; key columns should be unique and not NULL (a
//! row with a NULL key at the watermark value is read again rather than
//! lost); a row committed later with a cursor value *below* the watermark
//! is not seen (the cursor must grow with commit order, as a sequence or a
//! commit timestamp does); `numeric` cursor values are compared by their
//! text, so `1.0` and `1.00` count as different values at the boundary;
//! `keys_at_value` holds every key at the highest value, so a cursor with
//! very many rows per value (a date) makes a large watermark.
//!
//! # Errors
//!
//! Connection refused, timed out or lost (also mid-read) →
//! [`ConnectorError::Unreachable`]; refused credentials →
//! [`ConnectorError::Auth`]; a missing table or column or any other SQL
//! error → permanent [`ConnectorError::Remote`]; a type that cannot be
//! read → [`ConnectorError::Unsupported`] naming the column.

mod config;
mod connect;
pub mod source;
pub mod types;

#[cfg(test)]
mod tests;

use serde_json::Value;
use vega_connectors::{BatchSource, Connector, ConnectorError, IncrementalSource, Watermark};
use vega_core::ConnectorKind;

pub use config::{
    PostgresConnectionParams, PostgresSource, Relation, SslMode, DEFAULT_BATCH_ROWS,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_PORT, MAX_BATCH_ROWS,
};
pub use source::{Column, PostgresBatchSource};

/// Reads from PostgreSQL servers with the synchronous `postgres` driver:
/// call its methods on a blocking thread.
#[derive(Debug, Clone, Default)]
pub struct PostgresConnector;

impl PostgresConnector {
    pub fn new() -> Self {
        PostgresConnector
    }

    /// Connects and describes the source's columns (names, PostgreSQL and
    /// Arrow types) without reading rows.
    pub fn describe(&self, params: &Value, source: &Value) -> Result<Vec<Column>, ConnectorError> {
        let params = PostgresConnectionParams::parse(params)?;
        let source = PostgresSource::parse(source)?;
        let mut conn = connect::connect(&params)?;
        source::describe(&mut conn, &source)
    }

    /// Opens a full or incremental read as the concrete source type.
    pub fn open(
        &self,
        params: &Value,
        source: &Value,
        since: Option<&Watermark>,
    ) -> Result<PostgresBatchSource, ConnectorError> {
        let params = PostgresConnectionParams::parse(params)?;
        let source = PostgresSource::parse(source)?;
        if since.is_some() {
            source.incremental_columns()?;
        }
        let conn = connect::connect(&params)?;
        PostgresBatchSource::open(conn, &source, since)
    }
}

impl Connector for PostgresConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Postgres
    }

    fn check_connection(&self, params: &Value) -> Result<(), ConnectorError> {
        PostgresConnectionParams::parse(params).map(|_| ())
    }

    /// Checks the source's fields, then connects and describes the query:
    /// a missing table, a bad query, an unsupported column type or an
    /// unknown cursor or key column fails here.
    fn check_source(&self, params: &Value, source: &Value) -> Result<(), ConnectorError> {
        let parsed_params = PostgresConnectionParams::parse(params)?;
        let parsed = PostgresSource::parse(source)?;
        let mut conn = connect::connect(&parsed_params)?;
        let columns = source::describe(&mut conn, &parsed)?;
        if parsed.cursor_column.is_some() || !parsed.key_columns.is_empty() {
            source::check_incremental(&columns, &parsed)?;
        }
        Ok(())
    }

    fn test(&self, params: &Value) -> Result<(), ConnectorError> {
        let params = PostgresConnectionParams::parse(params)?;
        let mut conn = connect::connect(&params)?;
        let what = conn.what.clone();
        conn.client
            .simple_query("SELECT 1")
            .map_err(|e| connect::map_error(&what, e))?;
        Ok(())
    }

    fn open_full(
        &self,
        params: &Value,
        source: &Value,
    ) -> Result<Box<dyn BatchSource>, ConnectorError> {
        Ok(Box::new(self.open(params, source, None)?))
    }

    fn open_incremental(
        &self,
        params: &Value,
        source: &Value,
        since: &Watermark,
    ) -> Result<Box<dyn IncrementalSource>, ConnectorError> {
        Ok(Box::new(self.open(params, source, Some(since))?))
    }
}
