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

pub mod arrow_util;
mod error;
pub mod file;
pub mod line_protocol;
mod params;
pub mod registry;
pub mod secret;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vega_core::ConnectorKind;

pub use error::ConnectorError;
pub use file::{FileConnectionParams, FileConnector, FileFormat, FileSource, ResolvedFile};
pub use registry::ConnectorRegistry;

/// A stream of Arrow record batches with a fixed schema, read on a blocking thread.
pub trait BatchSource: Send {
    /// The schema of every batch this source yields.
    fn schema(&self) -> SchemaRef;

    /// The next batch, or `None` at the end. After an error the source is
    /// finished: later calls fail again.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError>;
}

/// Where an incremental read resumes. `value` is the highest cursor value
/// read so far (JSON: a number, or a string for text and timestamps);
/// `keys_at_value` are the keys of the rows already read whose cursor equals
/// `value`, so that rows sharing the watermark are neither lost (the next
/// read includes `cursor = value`) nor duplicated (those keys are skipped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub keys_at_value: Vec<String>,
}

/// A batch source that reads only what is new since a [`Watermark`] and
/// reports the watermark to store once it is exhausted.
pub trait IncrementalSource: BatchSource {
    /// The watermark after everything read so far.
    fn watermark(&self) -> Watermark;
}

/// One kind of source. Methods do blocking I/O: call them on a blocking
/// thread. `params` are the connection's parameters, `source` the asset's
/// source description; both are JSON, validated here (unknown fields are
/// refused, errors name the field).
pub trait Connector: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> ConnectorKind;

    /// Validates connection parameters without contacting the source.
    fn check_connection(&self, params: &Value) -> Result<(), ConnectorError>;

    /// Validates an asset's source description against its connection
    /// (for files: the path exists and is allowed).
    fn check_source(&self, params: &Value, source: &Value) -> Result<(), ConnectorError>;

    /// Contacts the source (`POST /connections/{id}/test`, `/health`).
    fn test(&self, params: &Value) -> Result<(), ConnectorError>;

    /// Opens a read of everything the source holds.
    fn open_full(
        &self,
        params: &Value,
        source: &Value,
    ) -> Result<Box<dyn BatchSource>, ConnectorError>;

    /// Opens a read of what is new since `since`.
    fn open_incremental(
        &self,
        _params: &Value,
        _source: &Value,
        _since: &Watermark,
    ) -> Result<Box<dyn IncrementalSource>, ConnectorError> {
        Err(ConnectorError::Unsupported {
            message: format!(
                "the {} connector has no incremental mode",
                self.kind().as_str()
            ),
        })
    }
}
