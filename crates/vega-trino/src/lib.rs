//! A client for Trino's REST protocol: [`TrinoClient::execute`] posts a
//! statement to the coordinator, follows its `nextUri` pages to the end and
//! returns a [`TrinoResult`], whose rows convert to an Arrow record batch
//! ([`TrinoResult::to_arrow`]; the type map is in [`types`]).
//!
//! Errors are [`TrinoError`]s that implement [`vega_core::Classify`]: bad
//! SQL is bad input, an unreachable or overloaded coordinator is
//! unavailable (retryable), deadlines are timeouts.
//!
//! Modules: `config` (connection, session and bounds), `client` (the
//! request loop, retries, cancellation), `protocol` (the wire format),
//! `result` (what a statement returned), `types` (Trino to Arrow), `error`.

mod base64;
mod client;
mod config;
mod error;
pub mod protocol;
mod result;
pub mod types;

pub use client::{
    load_ca_file, TrinoClient, CANCEL_REQUEST_TIMEOUT, MAX_FETCH_RETRIES, MAX_PAGE_BYTES,
    MAX_RETRY_AFTER, RETRY_BACKOFF_INITIAL, RETRY_BACKOFF_MAX,
};
pub use config::{
    Secret, TrinoAuth, TrinoConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_ROWS,
    DEFAULT_QUERY_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SOURCE, REDACTED,
};
pub use error::{TimeoutKind, TrinoError};
pub use protocol::Column;
pub use result::{QueryStats, SessionChanges, TrinoResult};
pub use tokio_util::sync::CancellationToken;
pub use types::TrinoType;
