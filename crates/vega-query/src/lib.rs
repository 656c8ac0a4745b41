//! The query part of Vega: embedded DuckDB behind a sandbox, and the
//! encoders that turn Arrow results into JSON, CSV and Arrow IPC.
//!
//! Only this crate links DuckDB. Nothing here knows HTTP or the catalog: the
//! server tells the engine which files make up each asset's active version.

mod engine;
mod error;
pub mod format;
pub mod sandbox;

pub use engine::{
    sql_ident, sql_string, AssetState, AssetView, EngineConfig, QueryEngine, QueryOutput,
    QueryRequest, ReadSet,
};
pub use error::QueryError;
