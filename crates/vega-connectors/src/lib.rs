//! Connectors: where Vega reads data from.
//!
//! Every connector turns a connection's parameters plus an asset's `source`
//! description (both JSON, see SPEC §1) into a [`BatchSource`]: a stream of
//! Arrow record batches with a fixed schema. Sources do blocking I/O and are
//! meant to run on a blocking thread.
//!
//! Each connector lives in its own folder with the same shape:
//! `config.rs` (its JSON parameters), `source.rs` (its batch sources),
//! `mod.rs` (the connector itself) and `tests.rs`.

mod error;
pub mod file;
mod params;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

pub use error::ConnectorError;
pub use file::{FileConnectionParams, FileConnector, FileFormat, FileSource, ResolvedFile};

/// A stream of Arrow record batches with a fixed schema, read on a blocking thread.
pub trait BatchSource: Send {
    /// The schema of every batch this source yields.
    fn schema(&self) -> SchemaRef;

    /// The next batch, or `None` at the end. After an error the source is
    /// finished: later calls fail again.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError>;
}
