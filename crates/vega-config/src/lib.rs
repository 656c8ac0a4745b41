//! Vega's configuration: one optional YAML file plus `VEGA_*` environment
//! overrides, typed and validated at start.
//!
//! Unknown keys are rejected, every key has a default (so no file at all is
//! a valid configuration), and every problem is reported at once with its
//! key path and where the value came from. See `docs/configuration.md` for
//! the list of keys.
//!
//! ```no_run
//! let config = vega_config::load_from_process_env(None)?;
//! println!("{}", config.to_yaml());
//! # Ok::<(), vega_config::ConfigErrors>(())
//! ```

pub mod bytesize;
pub mod config;
pub mod duration;
pub mod error;
mod keypath;
mod load;
pub mod secret;
mod validate;

pub use bytesize::{ByteSize, ByteSizeError};
pub use config::*;
pub use duration::{DurationError, HumanDuration};
pub use error::{ConfigErrors, ConfigProblem, ProblemSource};
pub use load::{load, load_from_process_env, ENV_LEVEL_SEPARATOR, ENV_PREFIX, IGNORED_ENV_VARS};
pub use secret::{Secret, REDACTED};
