//! Streaming ingest (SPEC §1 `stream` mode): points from line-protocol
//! writes and MQTT messages are made durable in a write-ahead log, kept in a
//! bounded buffer that queries see at once, and flushed to Parquet segments.
//!
//! - [`service`]: the write path, flushes, replay and log truncation.
//! - [`schema`]: points → typed Arrow columns, type conflicts.
//! - [`codec`]: the log record of one write.

pub mod codec;
pub mod error;
pub mod schema;
pub mod service;

pub use codec::DedupKey;
pub use error::IngestError;
pub use service::{
    log_lease_name, AdoptReport, IngestObserver, IngestOptions, IngestService, IngestStats,
    LiveRows, ObjectLog, ObjectLogs, OtherLog, WriteReport, LINE_PROTOCOL_CONNECTION,
};

#[cfg(test)]
mod tests;
