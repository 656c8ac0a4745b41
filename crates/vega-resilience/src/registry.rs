//! Breakers by service name.
//!
//! A [`BreakerRegistry`] holds the default [`BreakerSettings`] and, per
//! service, an override whose set fields replace the default's, plus the
//! name of the fallback the caller should use while the breaker rejects
//! calls. Breakers of configured services exist from the start; any other
//! service gets one with the default settings on first use. Operators act
//! on breakers by name.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use vega_core::{Classify, ErrorClass};

use crate::breaker::{BreakerSettings, CircuitBreaker, Snapshot};
use crate::settings::{InvalidSettings, SettingError};
use crate::ticker::Ticker;

/// Per-service changes to the default settings; `None` keeps the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BreakerOverride {
    pub failure_rate_threshold: Option<f32>,
    pub slow_call_rate_threshold: Option<f32>,
    pub slow_call_duration: Option<Duration>,
    pub minimum_calls: Option<u32>,
    pub sliding_window_size: Option<u32>,
    pub wait_duration_in_open: Option<Duration>,
    pub permitted_calls_in_half_open: Option<u32>,
    /// Name of the behaviour to use while calls are not permitted, e.g.
    /// `route_to_duckdb`. The names are defined by the caller.
    pub fallback: Option<String>,
}

impl BreakerOverride {
    /// `base` with this override's set fields.
    pub fn apply(&self, base: &BreakerSettings) -> BreakerSettings {
        BreakerSettings {
            failure_rate_threshold: self
                .failure_rate_threshold
                .unwrap_or(base.failure_rate_threshold),
            slow_call_rate_threshold: self
                .slow_call_rate_threshold
                .unwrap_or(base.slow_call_rate_threshold),
            slow_call_duration: self.slow_call_duration.unwrap_or(base.slow_call_duration),
            minimum_calls: self.minimum_calls.unwrap_or(base.minimum_calls),
            sliding_window_size: self.sliding_window_size.unwrap_or(base.sliding_window_size),
            wait_duration_in_open: self
                .wait_duration_in_open
                .unwrap_or(base.wait_duration_in_open),
            permitted_calls_in_half_open: self
                .permitted_calls_in_half_open
                .unwrap_or(base.permitted_calls_in_half_open),
        }
    }

    /// Whether the override sets the field named `field`.
    fn sets(&self, field: &str) -> bool {
        match field {
            "failure_rate_threshold" => self.failure_rate_threshold.is_some(),
            "slow_call_rate_threshold" => self.slow_call_rate_threshold.is_some(),
            "slow_call_duration" => self.slow_call_duration.is_some(),
            "minimum_calls" => self.minimum_calls.is_some(),
            "sliding_window_size" => self.sliding_window_size.is_some(),
            "wait_duration_in_open" => self.wait_duration_in_open.is_some(),
            "permitted_calls_in_half_open" => self.permitted_calls_in_half_open.is_some(),
            _ => true,
        }
    }
}

/// The default settings and the per-service overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistrySettings {
    pub default: BreakerSettings,
    pub services: BTreeMap<String, BreakerOverride>,
}

impl RegistrySettings {
    /// Checks the default (paths `default.<field>`) and every override
    /// (paths `services.<name>.<field>`, only for fields it sets).
    pub fn validate(&self) -> Result<(), Vec<SettingError>> {
        let mut errors: Vec<SettingError> = match self.default.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.prefixed("default")).collect(),
        };
        for (name, o) in &self.services {
            let prefix = format!("services.{name}");
            if name.trim().is_empty() {
                errors.push(SettingError::new("services", "a service name is empty"));
            }
            if let Err(e) = o.apply(&self.default).validate() {
                errors.extend(
                    e.into_iter()
                        .filter(|e| o.sets(&e.field))
                        .map(|e| e.prefixed(&prefix)),
                );
            }
            if o.fallback.as_deref().is_some_and(|f| f.trim().is_empty()) {
                errors.push(SettingError::new(
                    format!("{prefix}.fallback"),
                    "must name a fallback or be left out",
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Checks that every fallback is one of `known`.
    pub fn validate_fallbacks(&self, known: &[&str]) -> Result<(), Vec<SettingError>> {
        let errors: Vec<SettingError> = self
            .services
            .iter()
            .filter_map(|(name, o)| {
                let fallback = o.fallback.as_deref()?;
                (!known.contains(&fallback)).then(|| {
                    SettingError::new(
                        format!("services.{name}.fallback"),
                        format!(
                            "unknown fallback {fallback:?} for service {name:?}; known: {}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    )
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The effective settings of `service`.
    pub fn settings_for(&self, service: &str) -> BreakerSettings {
        match self.services.get(service) {
            Some(o) => o.apply(&self.default),
            None => self.default.clone(),
        }
    }
}

/// An operator action named a breaker that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("no circuit breaker for service {service:?}")]
    UnknownService { service: String },
}

impl Classify for RegistryError {
    fn class(&self) -> ErrorClass {
        ErrorClass::NotFound
    }
}

/// Circuit breakers by service name; thread-safe.
///
/// Service names should come from a fixed set (configuration, code), not
/// from requests: every name gets a breaker that lives as long as the
/// registry.
#[derive(Debug)]
pub struct BreakerRegistry {
    settings: RegistrySettings,
    ticker: Arc<dyn Ticker>,
    breakers: Mutex<BTreeMap<String, Arc<CircuitBreaker>>>,
}

impl BreakerRegistry {
    /// Validates `settings` and creates the breakers of configured services.
    pub fn new(
        settings: RegistrySettings,
        ticker: Arc<dyn Ticker>,
    ) -> Result<Self, InvalidSettings> {
        settings.validate()?;
        let breakers = settings
            .services
            .keys()
            .map(|name| {
                let b = CircuitBreaker::from_valid(
                    name.clone(),
                    settings.settings_for(name),
                    Arc::clone(&ticker),
                );
                (name.clone(), Arc::new(b))
            })
            .collect();
        Ok(Self {
            settings,
            ticker,
            breakers: Mutex::new(breakers),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<CircuitBreaker>>> {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// The breaker of `service`, created with the default settings if the
    /// service is not configured and has none yet.
    pub fn get_or_create(&self, service: &str) -> Arc<CircuitBreaker> {
        let mut breakers = self.lock();
        if let Some(b) = breakers.get(service) {
            return Arc::clone(b);
        }
        let b = Arc::new(CircuitBreaker::from_valid(
            service.to_string(),
            self.settings.settings_for(service),
            Arc::clone(&self.ticker),
        ));
        breakers.insert(service.to_string(), Arc::clone(&b));
        b
    }

    /// The breaker of `service`, if it exists.
    pub fn get(&self, service: &str) -> Option<Arc<CircuitBreaker>> {
        self.lock().get(service).cloned()
    }

    /// The configured fallback of `service`.
    pub fn fallback(&self, service: &str) -> Option<&str> {
        self.settings.services.get(service)?.fallback.as_deref()
    }

    /// Every breaker with its snapshot, ordered by service name.
    pub fn all(&self) -> Vec<(String, Snapshot)> {
        // Snapshot outside the registry lock: each takes its breaker's lock.
        let breakers: Vec<(String, Arc<CircuitBreaker>)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        breakers
            .into_iter()
            .map(|(name, b)| (name, b.snapshot()))
            .collect()
    }

    fn existing(&self, service: &str) -> Result<Arc<CircuitBreaker>, RegistryError> {
        self.get(service)
            .ok_or_else(|| RegistryError::UnknownService {
                service: service.to_string(),
            })
    }

    /// Rejects every call to `service` until reset or disabled.
    pub fn force_open(&self, service: &str) -> Result<(), RegistryError> {
        self.existing(service)?.transition_to_forced_open();
        Ok(())
    }

    /// Lets every call to `service` through and records nothing.
    pub fn disable(&self, service: &str) -> Result<(), RegistryError> {
        self.existing(service)?.transition_to_disabled();
        Ok(())
    }

    /// Closes the breaker of `service` with an empty window.
    pub fn reset(&self, service: &str) -> Result<(), RegistryError> {
        self.existing(service)?.reset();
        Ok(())
    }

    /// Checks that every configured fallback is one of `known`.
    pub fn validate_fallbacks(&self, known: &[&str]) -> Result<(), Vec<SettingError>> {
        self.settings.validate_fallbacks(known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerState;
    use crate::ticker::ManualTicker;

    /// The shipped block: a default and two services with fallbacks.
    fn shipped() -> RegistrySettings {
        let mut services = BTreeMap::new();
        services.insert(
            "embedding_service".to_string(),
            BreakerOverride {
                failure_rate_threshold: Some(30.0),
                fallback: Some("skip_embedding".into()),
                ..Default::default()
            },
        );
        services.insert(
            "trino".to_string(),
            BreakerOverride {
                failure_rate_threshold: Some(40.0),
                fallback: Some("route_to_duckdb".into()),
                ..Default::default()
            },
        );
        RegistrySettings {
            default: BreakerSettings::default(),
            services,
        }
    }

    fn registry(settings: RegistrySettings) -> BreakerRegistry {
        BreakerRegistry::new(settings, Arc::new(ManualTicker::new())).expect("valid")
    }

    #[test]
    fn override_replaces_only_the_fields_it_sets() {
        let s = shipped().settings_for("trino");
        assert_eq!(s.failure_rate_threshold, 40.0);
        assert_eq!(
            BreakerSettings {
                failure_rate_threshold: 50.0,
                ..s
            },
            BreakerSettings::default()
        );
    }

    #[test]
    fn unconfigured_service_gets_the_default() {
        let r = registry(shipped());
        let b = r.get_or_create("postgres");
        assert_eq!(b.settings(), &BreakerSettings::default());
        assert_eq!(r.fallback("postgres"), None);
    }

    #[test]
    fn get_or_create_returns_the_same_breaker() {
        let r = registry(shipped());
        let a = r.get_or_create("trino");
        let b = r.get_or_create("trino");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.settings().failure_rate_threshold, 40.0);
    }

    #[test]
    fn configured_services_are_listed_from_the_start() {
        let r = registry(shipped());
        let names: Vec<String> = r.all().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["embedding_service", "trino"]);
        assert_eq!(r.fallback("trino"), Some("route_to_duckdb"));
    }

    #[test]
    fn operator_actions_change_the_named_breaker() {
        let r = registry(shipped());
        r.force_open("trino").expect("known");
        assert_eq!(r.get_or_create("trino").state(), BreakerState::ForcedOpen);
        r.disable("trino").expect("known");
        assert_eq!(r.get_or_create("trino").state(), BreakerState::Disabled);
        r.reset("trino").expect("known");
        assert_eq!(r.get_or_create("trino").state(), BreakerState::Closed);
        assert_eq!(
            r.get_or_create("embedding_service").state(),
            BreakerState::Closed
        );
    }

    #[test]
    fn operator_action_on_unknown_service_fails() {
        let r = registry(shipped());
        let err = r.force_open("nope").unwrap_err();
        assert_eq!(
            err,
            RegistryError::UnknownService {
                service: "nope".into()
            }
        );
        assert!(r.get("nope").is_none(), "a failed action creates nothing");
    }

    #[test]
    fn override_errors_carry_the_service_path() {
        let mut s = shipped();
        s.default.minimum_calls = 0;
        if let Some(o) = s.services.get_mut("trino") {
            o.failure_rate_threshold = Some(140.0);
            o.sliding_window_size = Some(0);
        }
        let fields: Vec<String> = s
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        // The default's bad field is reported once, not again per service.
        assert_eq!(
            fields,
            [
                "default.minimum_calls",
                "services.trino.failure_rate_threshold",
                "services.trino.sliding_window_size",
            ]
        );
        assert!(BreakerRegistry::new(s, Arc::new(ManualTicker::new())).is_err());
    }

    #[test]
    fn unknown_fallback_names_the_fallback_and_the_service() {
        let r = registry(shipped());
        assert_eq!(
            r.validate_fallbacks(&["skip_embedding", "route_to_duckdb"]),
            Ok(())
        );
        let errors = r.validate_fallbacks(&["skip_embedding"]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "services.trino.fallback");
        assert_eq!(
            errors[0].message,
            "unknown fallback \"route_to_duckdb\" for service \"trino\"; known: skip_embedding"
        );
    }

    #[test]
    fn empty_fallback_is_rejected() {
        let mut s = shipped();
        if let Some(o) = s.services.get_mut("trino") {
            o.fallback = Some(String::new());
        }
        let errors = s.validate().unwrap_err();
        assert_eq!(errors[0].field, "services.trino.fallback");
    }
}
