//! Resilience for calls that leave the process: circuit breakers, retries
//! with backoff and budgets, timeouts, load-balanced pools with health
//! checks, and bulkheads.
//!
//! Everything here is in-process logic. Time comes from an injected
//! [`Ticker`] (or tokio's clock for sleeping), randomness from a seedable
//! source, and health checks from a caller-supplied [`HealthChecker`], so
//! every component is tested without sleeping or a network.
//!
//! Not here: configuration parsing (the settings structs are plain Rust;
//! the configuration crate maps its YAML onto them), HTTP of any kind, the
//! fallbacks themselves (a registry only names them), metrics export (the
//! components expose counters and snapshots for whoever exports them).
//!
//! | module | what |
//! |---|---|
//! | [`breaker`] | [`CircuitBreaker`]: Resilience4j count-based state machine |
//! | [`registry`] | [`BreakerRegistry`]: breakers by service, overrides, fallbacks, operator actions |
//! | [`retry`] | [`retry()`], [`RetryPolicy`], [`RetryBudget`], [`Timeouts`] |
//! | [`pool`] | [`ServicePool`]: round robin, least connections, consistent hashing, health |
//! | [`bulkhead`] | [`Bulkhead`]: bounded concurrency with a bounded wait |
//! | [`ticker`] | [`Ticker`] and its system, tokio and manual clocks |
//! | [`settings`] | [`SettingError`] and [`InvalidSettings`], shared by all settings |

pub mod breaker;
pub mod bulkhead;
pub mod pool;
pub mod registry;
pub mod retry;
pub mod settings;
pub mod ticker;

pub use breaker::{
    BreakerCounters, BreakerError, BreakerSettings, BreakerState, CallNotPermitted, CircuitBreaker,
    ErrorDisposition, Permit, Snapshot,
};
pub use bulkhead::{Bulkhead, BulkheadFull, BulkheadPermit, BulkheadSettings};
pub use pool::{
    spawn_health_checks, Algorithm, Backend, BackendStatus, HealthCheckSettings, HealthCheckTask,
    HealthChecker, Lease, OutlierSettings, PoolError, PoolSettings, ServicePool,
};
pub use registry::{BreakerOverride, BreakerRegistry, RegistryError, RegistrySettings};
pub use retry::{
    retry, with_timeout, GiveUp, Idempotency, RetryBudget, RetryBudgetSettings, RetryError,
    RetryPolicy, RetrySettings, TimeoutError, TimeoutKind, Timeouts,
};
pub use settings::{InvalidSettings, SettingError};
pub use ticker::{ManualTicker, SystemTicker, Ticker, TokioTicker};
