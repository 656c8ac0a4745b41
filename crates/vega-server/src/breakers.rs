//! Circuit breakers of this node: built from `circuit_breaker` (the seed's
//! Resilience4j keys), one per connection (named after it) and one for
//! Trino, shown in `/health` and `/metrics`, and set by operators through
//! `PUT /api/v1/breakers/{service}`.
//!
//! An operator's action is a runtime setting (`breakers` in the catalog:
//! per service the action and when it was taken), applied on this node at
//! once and on every other node at its next catalog look, so forcing a
//! breaker open through the load balancer reaches the whole cluster. The
//! counts themselves stay per node: each node judges the calls it makes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vega_config::{CircuitBreakerConfig, Fallback};
use vega_resilience::{
    BreakerOverride, BreakerRegistry, BreakerSettings, RegistrySettings, Snapshot, Ticker,
};

/// The catalog setting holding operators' actions.
pub const SETTING: &str = "breakers";

/// What an operator does to a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerAction {
    /// Reject every call until reset (FORCED_OPEN).
    ForceOpen,
    /// Let every call through and record nothing (DISABLED): "force close".
    Disable,
    /// Back to CLOSED with an empty window (also ends force_open/disable).
    Reset,
}

/// One stored action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAction {
    pub action: BreakerAction,
    pub at: DateTime<Utc>,
}

fn settings(s: &vega_config::BreakerSettings) -> BreakerSettings {
    BreakerSettings {
        failure_rate_threshold: s.failure_rate_threshold.value() as f32,
        slow_call_rate_threshold: s.slow_call_rate_threshold.value() as f32,
        slow_call_duration: s.slow_call_duration.into(),
        minimum_calls: s.minimum_calls,
        sliding_window_size: s.sliding_window_size,
        wait_duration_in_open: s.wait_duration_in_open.into(),
        permitted_calls_in_half_open: s.permitted_calls_in_half_open,
    }
}

/// The registry's settings from the configuration block.
pub fn registry_settings(config: &CircuitBreakerConfig) -> RegistrySettings {
    RegistrySettings {
        default: settings(&config.default),
        services: config
            .services
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    BreakerOverride {
                        failure_rate_threshold: s.failure_rate_threshold.map(|p| p.value() as f32),
                        slow_call_rate_threshold: s
                            .slow_call_rate_threshold
                            .map(|p| p.value() as f32),
                        slow_call_duration: s.slow_call_duration.map(Into::into),
                        minimum_calls: s.minimum_calls,
                        sliding_window_size: s.sliding_window_size,
                        wait_duration_in_open: s.wait_duration_in_open.map(Into::into),
                        permitted_calls_in_half_open: s.permitted_calls_in_half_open,
                        fallback: s.fallback.map(|f| f.as_str().to_string()),
                    },
                )
            })
            .collect(),
    }
}

/// The breakers of this node, with the operator actions applied so far.
pub struct Breakers {
    registry: Arc<BreakerRegistry>,
    config: CircuitBreakerConfig,
    /// The newest action applied per service (so a look at the catalog
    /// applies only what is new).
    applied: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl Breakers {
    pub fn new(
        config: &CircuitBreakerConfig,
        ticker: Arc<dyn Ticker>,
    ) -> Result<Self, vega_resilience::InvalidSettings> {
        Ok(Breakers {
            registry: Arc::new(BreakerRegistry::new(registry_settings(config), ticker)?),
            config: config.clone(),
            applied: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn registry(&self) -> &Arc<BreakerRegistry> {
        &self.registry
    }

    /// The fallback configured for `service` (`fail_fast` when none).
    pub fn fallback(&self, service: &str) -> Fallback {
        self.config.effective(service).fallback
    }

    /// Applies `action` to `service`'s breaker (made if it is new).
    pub fn apply(&self, service: &str, action: BreakerAction) {
        let breaker = self.registry.get_or_create(service);
        match action {
            BreakerAction::ForceOpen => {
                breaker.transition_to_forced_open();
            }
            BreakerAction::Disable => {
                breaker.transition_to_disabled();
            }
            BreakerAction::Reset => breaker.reset(),
        }
        tracing::warn!(service, action = ?action, state = %breaker.state(), "circuit breaker set by an operator");
    }

    /// Applies the stored actions newer than what this node applied.
    pub fn apply_setting(&self, value: Option<&serde_json::Value>) {
        let Some(value) = value else {
            return;
        };
        let Ok(stored) = serde_json::from_value::<BTreeMap<String, StoredAction>>(value.clone())
        else {
            tracing::warn!("the stored circuit-breaker actions are not readable; ignored");
            return;
        };
        for (service, stored) in stored {
            let newer = {
                let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
                match applied.get(&service) {
                    Some(at) if *at >= stored.at => false,
                    _ => {
                        applied.insert(service.clone(), stored.at);
                        true
                    }
                }
            };
            if newer {
                self.apply(&service, stored.action);
            }
        }
    }

    /// Notes that this node applied `service`'s action taken `at`.
    pub fn mark_applied(&self, service: &str, at: DateTime<Utc>) {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.to_string(), at);
    }

    /// Every breaker's state and counts.
    pub fn views(&self) -> Vec<BreakerView> {
        self.registry
            .all()
            .into_iter()
            .map(|(service, s)| BreakerView::of(&service, &s, self.fallback(&service)))
            .collect()
    }

    /// The breakers in Prometheus text: state (one series per state, 1 for
    /// the current one), buffered/failed/slow calls, rates, rejections and
    /// transitions.
    pub fn metrics_text(&self) -> String {
        const STATES: [&str; 6] = [
            "closed",
            "open",
            "half_open",
            "disabled",
            "forced_open",
            "metrics_only",
        ];
        let all = self.registry.all();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP vega_circuit_breaker_state Whether the breaker is in the state (1) or not (0).\n# TYPE vega_circuit_breaker_state gauge"
        );
        for (service, s) in &all {
            for state in STATES {
                let on = u8::from(s.state.as_str() == state);
                let _ = writeln!(
                    out,
                    "vega_circuit_breaker_state{{service=\"{}\",state=\"{state}\"}} {on}",
                    escape(service)
                );
            }
        }
        let gauges: [Gauge; 5] = [
            (
                "vega_circuit_breaker_buffered_calls",
                "Outcomes in the sliding window.",
                |s| s.buffered_calls as f64,
            ),
            (
                "vega_circuit_breaker_failed_calls",
                "Failed outcomes in the sliding window.",
                |s| s.failed_calls as f64,
            ),
            (
                "vega_circuit_breaker_slow_calls",
                "Slow outcomes in the sliding window.",
                |s| s.slow_calls as f64,
            ),
            (
                "vega_circuit_breaker_failure_rate",
                "Percent of failed calls in the window (-1: fewer than minimum_calls).",
                |s| s.failure_rate.map_or(-1.0, f64::from),
            ),
            (
                "vega_circuit_breaker_slow_call_rate",
                "Percent of slow calls in the window (-1: fewer than minimum_calls).",
                |s| s.slow_call_rate.map_or(-1.0, f64::from),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (service, s) in &all {
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{}\"}} {}",
                    escape(service),
                    value(s)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP vega_circuit_breaker_not_permitted_calls_total Calls the breaker rejected.\n# TYPE vega_circuit_breaker_not_permitted_calls_total counter"
        );
        for (service, s) in &all {
            let _ = writeln!(
                out,
                "vega_circuit_breaker_not_permitted_calls_total{{service=\"{}\"}} {}",
                escape(service),
                s.counters.not_permitted_total
            );
        }
        out
    }
}

/// A gauge of the breakers' text: name, help, value of a snapshot.
type Gauge = (&'static str, &'static str, fn(&Snapshot) -> f64);

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A breaker as `/health` and `GET /api/v1/breakers` show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BreakerView {
    pub service: String,
    /// closed, open, half_open, disabled, forced_open or metrics_only.
    pub state: String,
    /// Percent of failed calls in the window; absent before minimum_calls.
    pub failure_rate: Option<f32>,
    pub slow_call_rate: Option<f32>,
    pub buffered_calls: u32,
    pub failed_calls: u32,
    pub slow_calls: u32,
    /// Calls rejected since the current state was entered.
    pub not_permitted_calls: u64,
    /// While open: milliseconds until trial calls are let through.
    pub retry_after_ms: Option<u64>,
    /// What is done instead while calls are rejected.
    pub fallback: String,
}

impl BreakerView {
    fn of(service: &str, s: &Snapshot, fallback: Fallback) -> Self {
        BreakerView {
            service: service.to_string(),
            state: s.state.as_str().to_string(),
            failure_rate: s.failure_rate,
            slow_call_rate: s.slow_call_rate,
            buffered_calls: s.buffered_calls,
            failed_calls: s.failed_calls,
            slow_calls: s.slow_calls,
            not_permitted_calls: s.not_permitted_calls,
            retry_after_ms: s.retry_after.map(|d| d.as_millis() as u64),
            fallback: fallback.as_str().to_string(),
        }
    }
}
