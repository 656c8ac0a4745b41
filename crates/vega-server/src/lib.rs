//! The server part of Vega: the HTTP API (`/api/v1`), the operations port
//! (`/health*`, `/metrics`), authentication, request telemetry, and the
//! start-up and shutdown sequence that wires catalog, storage, sync and the
//! query engine together.
//!
//! Only this crate knows HTTP.

pub mod auth;
pub mod backup;
pub mod backup_schedule;
pub mod breakers;
pub mod cache;
pub mod cluster;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod ingest;
pub mod metrics;
pub mod mqtt;
pub mod publish;
pub mod ratelimit;
pub mod remote_engine;
pub mod router;
pub mod routes;
pub mod starting;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod validation;
pub mod watch;

pub use startup::{start, RunningServer, StartError, StartOptions};
