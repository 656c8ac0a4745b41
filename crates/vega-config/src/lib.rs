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

pub mod balance;
pub mod breaker;
pub mod bytesize;
pub mod config;
pub mod discovery;
pub mod duration;
pub mod error;
mod keypath;
mod load;
pub mod net;
pub mod percent;
pub mod resilience;
pub mod secret;
pub mod trino;
mod validate;

pub use balance::{Algorithm, Backend, HealthCheckConfig, LoadBalancerConfig, StickySessionConfig};
pub use breaker::{
    BreakerSettings, CircuitBreakerConfig, EffectiveBreaker, Fallback, ServiceBreakerConfig,
    KNOWN_FALLBACKS,
};
pub use bytesize::{ByteSize, ByteSizeError};
pub use config::*;
pub use discovery::{
    ConsulDiscoveryConfig, DiscoveredService, DiscoveryConfig, DiscoveryProvider,
    DnsDiscoveryConfig, EtcdDiscoveryConfig, RegistrationConfig, RegistrationHealthCheck,
    ServiceDiscoveryConfig, StaticDiscoveryConfig,
};
pub use duration::{DurationError, HumanDuration};
pub use error::{ConfigErrors, ConfigProblem, KeyProblem, ProblemSource};
pub use load::{load, load_from_process_env, ENV_LEVEL_SEPARATOR, ENV_PREFIX, IGNORED_ENV_VARS};
pub use net::{parse_address, parse_http_url, BackendAddress, Host, HttpUrl};
pub use percent::Percent;
pub use resilience::{BulkheadConfig, ResilienceConfig, RetryConfig};
pub use secret::{Secret, REDACTED};
pub use trino::{BasicAuth, Engine, TrinoAuth, TrinoConfig, TrinoHealthCheckConfig};
