//! Domain types shared by every part of Vega: ids, connections, assets,
//! versions and their manifests, jobs, API keys and roles, the clock, and the
//! error classes that the HTTP layer turns into status codes.
//!
//! This crate knows no I/O: no database, no files, no HTTP, no DuckDB.

pub mod clock;
pub mod error;
pub mod id;
pub mod model;
pub mod name;
pub mod point;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Classify, ErrorClass};
pub use id::{Id, IdKind};
pub use model::*;
pub use name::{AssetName, NameError};
pub use point::{FieldValue, Point};

/// The version of this build, as shown by `vega --version` and `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
