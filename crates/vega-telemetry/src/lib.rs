//! Telemetry for Vega: structured JSON log lines, W3C trace context, process
//! and host resource statistics, and their Prometheus text exposition.
//!
//! The library installs nothing by itself. A binary calls [`init`] once at
//! start-up to install the global `tracing` subscriber; tests and other crates
//! compose [`json_layer`] into their own subscribers instead.

pub mod error;
pub mod logs;
pub mod metrics;
pub mod process;
pub mod traceparent;

pub use error::TelemetryError;
pub use logs::{init, json_layer, parse_filter, JsonLayer, LogBuffer, LogFormat, DEFAULT_SERVICE};
pub use metrics::encode_process_metrics;
pub use process::{disk_usage, system_memory, DiskUsage, ProcessStats, SystemMemory};
pub use traceparent::TraceContext;
