//! The `circuit_breaker` block (seed `operations-and-reliability.md`
//! §17.4): the settings of the circuit breakers around calls that leave a
//! Vega process, a default for every service and overrides per service,
//! each with what to do instead of a call while its breaker is open.
//!
//! The keys and their meaning are Resilience4j's count-based breaker: the
//! outcomes of the last `sliding_window_size` calls are kept; once at least
//! `minimum_calls` are in the window, the breaker opens when the share of
//! failed calls reaches `failure_rate_threshold` percent or the share of
//! calls slower than `slow_call_duration` reaches `slow_call_rate_threshold`
//! percent. It stays open for `wait_duration_in_open`, then lets
//! `permitted_calls_in_half_open` trial calls through, whose outcomes decide
//! whether it closes or opens again.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::HumanDuration;
use crate::keypath::{render, Key, KeyPath, PathBuild};
use crate::percent::Percent;
use crate::validate::Findings;

/// The seed's failure-rate threshold: half of the recent calls failing is
/// well past a blip and clearly a service in trouble.
pub const DEFAULT_FAILURE_RATE_THRESHOLD: Percent = Percent::new(50.0);

/// The seed's slow-call threshold: only when most calls are slow does the
/// breaker open for slowness, so a few heavy requests do not trip it.
pub const DEFAULT_SLOW_CALL_RATE_THRESHOLD: Percent = Percent::new(80.0);

/// The seed's slow-call bound: an interactive request that waits five
/// seconds for one dependency is already a bad answer.
pub const DEFAULT_SLOW_CALL_DURATION: HumanDuration = HumanDuration::from_secs(5);

/// The seed's minimum: rates over fewer than ten calls say too little, so a
/// service that failed its first two calls is not cut off.
pub const DEFAULT_MINIMUM_CALLS: u32 = 10;

/// The seed's window: the last hundred calls, enough for the rates to be
/// meaningful and few enough to follow a change within seconds under load.
pub const DEFAULT_SLIDING_WINDOW_SIZE: u32 = 100;

/// The seed's open time: long enough for a restarted service to come back,
/// short enough that a recovered one is not left unused for long.
pub const DEFAULT_WAIT_DURATION_IN_OPEN: HumanDuration = HumanDuration::from_secs(30);

/// The seed's trial calls: five outcomes decide whether the service has
/// recovered, while a service still down gets only five more requests.
pub const DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN: u32 = 5;

/// The largest accepted `sliding_window_size`. The breaker keeps the
/// outcome of every call in its window; beyond ten thousand calls it needs
/// thousands of failures before it reacts to an outage, which defeats its
/// purpose, and larger values are nearly always a typo.
pub const MAX_SLIDING_WINDOW_SIZE: u32 = 10_000;

/// The service whose calls `route_to_duckdb` can replace.
pub const TRINO_SERVICE: &str = "trino";

/// What is done instead of a call while its breaker is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// The call fails at once with a "try again" error (HTTP 503); no
    /// fallback. The default.
    #[default]
    FailFast,
    /// A query meant for Trino is run by DuckDB on this node instead. Only
    /// for the service `trino`.
    RouteToDuckdb,
    /// The call is optional: it is skipped and the answer is given without
    /// its result (the seed's embedding service).
    SkipEmbedding,
}

/// Every fallback, in the order error messages list them.
pub const KNOWN_FALLBACKS: [Fallback; 3] = [
    Fallback::RouteToDuckdb,
    Fallback::SkipEmbedding,
    Fallback::FailFast,
];

impl Fallback {
    /// The name used in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Fallback::FailFast => "fail_fast",
            Fallback::RouteToDuckdb => "route_to_duckdb",
            Fallback::SkipEmbedding => "skip_embedding",
        }
    }

    /// The only service this fallback may be set for, if it is limited.
    pub fn only_for(&self) -> Option<&'static str> {
        match self {
            Fallback::RouteToDuckdb => Some(TRINO_SERVICE),
            Fallback::FailFast | Fallback::SkipEmbedding => None,
        }
    }
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The names of [`KNOWN_FALLBACKS`] as error messages list them.
fn known_fallbacks() -> String {
    KNOWN_FALLBACKS
        .iter()
        .map(|fallback| match fallback.only_for() {
            Some(service) => format!("{fallback} (service {service} only)"),
            None => fallback.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Fallback {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        KNOWN_FALLBACKS
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown fallback \"{s}\"; known fallbacks: {}",
                    known_fallbacks()
                )
            })
    }
}

impl Serialize for Fallback {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Fallback {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FallbackVisitor;
        impl Visitor<'_> for FallbackVisitor {
            type Value = Fallback;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "one of the fallbacks {}", known_fallbacks())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Fallback, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(FallbackVisitor)
    }
}

/// The `circuit_breaker` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// The settings of every service's breaker, unless the service says
    /// otherwise.
    pub default: BreakerSettings,
    /// Per service (by name, e.g. `trino`): the settings that differ from
    /// `default`, and the fallback.
    pub services: BTreeMap<String, ServiceBreakerConfig>,
}

/// The settings of one breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Percent of failed calls in the window at which the breaker opens;
    /// more than 0, at most 100.
    pub failure_rate_threshold: Percent,
    /// Percent of slow calls in the window at which the breaker opens; more
    /// than 0, at most 100.
    pub slow_call_rate_threshold: Percent,
    /// A call that takes longer than this counts as slow.
    pub slow_call_duration: HumanDuration,
    /// Calls the window must hold before the rates are looked at (at least
    /// 1, at most `sliding_window_size`).
    pub minimum_calls: u32,
    /// How many of the latest calls the rates are computed over (1 to
    /// 10 000).
    pub sliding_window_size: u32,
    /// How long an open breaker refuses calls before it lets trial calls
    /// through.
    pub wait_duration_in_open: HumanDuration,
    /// Trial calls let through after the wait (at least 1); their outcomes
    /// close the breaker or open it again.
    pub permitted_calls_in_half_open: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_rate_threshold: DEFAULT_FAILURE_RATE_THRESHOLD,
            slow_call_rate_threshold: DEFAULT_SLOW_CALL_RATE_THRESHOLD,
            slow_call_duration: DEFAULT_SLOW_CALL_DURATION,
            minimum_calls: DEFAULT_MINIMUM_CALLS,
            sliding_window_size: DEFAULT_SLIDING_WINDOW_SIZE,
            wait_duration_in_open: DEFAULT_WAIT_DURATION_IN_OPEN,
            permitted_calls_in_half_open: DEFAULT_PERMITTED_CALLS_IN_HALF_OPEN,
        }
    }
}

/// One service's breaker: any of the settings (unset ones come from
/// `circuit_breaker.default`) and a fallback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceBreakerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate_threshold: Option<Percent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_rate_threshold: Option<Percent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_duration: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_calls: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliding_window_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_duration_in_open: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permitted_calls_in_half_open: Option<u32>,
    /// What to do instead of a call while the breaker is open:
    /// `fail_fast` (the default), `skip_embedding`, or `route_to_duckdb`
    /// (service `trino` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// The breaker of one service as it applies: the service's settings over
/// the defaults, and its fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveBreaker {
    pub settings: BreakerSettings,
    pub fallback: Fallback,
}

impl ServiceBreakerConfig {
    /// These settings over `default`.
    pub fn over(&self, default: &BreakerSettings) -> BreakerSettings {
        BreakerSettings {
            failure_rate_threshold: self
                .failure_rate_threshold
                .unwrap_or(default.failure_rate_threshold),
            slow_call_rate_threshold: self
                .slow_call_rate_threshold
                .unwrap_or(default.slow_call_rate_threshold),
            slow_call_duration: self
                .slow_call_duration
                .unwrap_or(default.slow_call_duration),
            minimum_calls: self.minimum_calls.unwrap_or(default.minimum_calls),
            sliding_window_size: self
                .sliding_window_size
                .unwrap_or(default.sliding_window_size),
            wait_duration_in_open: self
                .wait_duration_in_open
                .unwrap_or(default.wait_duration_in_open),
            permitted_calls_in_half_open: self
                .permitted_calls_in_half_open
                .unwrap_or(default.permitted_calls_in_half_open),
        }
    }
}

impl CircuitBreakerConfig {
    /// The breaker of the service `name`: its own settings over
    /// `default`, and its fallback (`fail_fast` unless set). A service that
    /// is not listed gets `default` and `fail_fast`.
    pub fn effective(&self, name: &str) -> EffectiveBreaker {
        match self.services.get(name) {
            Some(service) => EffectiveBreaker {
                settings: service.over(&self.default),
                fallback: service.fallback.unwrap_or_default(),
            },
            None => EffectiveBreaker {
                settings: self.default.clone(),
                fallback: Fallback::default(),
            },
        }
    }

    /// Adds every broken rule of the block at `at` to `f`.
    pub(crate) fn check(&self, at: &[Key], f: &mut Findings) {
        let default_at = at.key("default");
        let d = &self.default;
        check_rate(
            f,
            default_at.key("failure_rate_threshold"),
            d.failure_rate_threshold,
        );
        check_rate(
            f,
            default_at.key("slow_call_rate_threshold"),
            d.slow_call_rate_threshold,
        );
        check_slow_call_duration(
            f,
            default_at.key("slow_call_duration"),
            d.slow_call_duration,
        );
        f.at_least_one_at(default_at.key("minimum_calls"), u64::from(d.minimum_calls));
        check_window(
            f,
            default_at.key("sliding_window_size"),
            d.sliding_window_size,
        );
        check_wait(
            f,
            default_at.key("wait_duration_in_open"),
            d.wait_duration_in_open,
        );
        f.at_least_one_at(
            default_at.key("permitted_calls_in_half_open"),
            u64::from(d.permitted_calls_in_half_open),
        );
        check_minimum_within_window(
            f,
            d,
            default_at.key("minimum_calls"),
            default_at.key("sliding_window_size"),
            true,
        );

        for (name, service) in &self.services {
            let here = at.key("services").key(name);
            if name.trim().is_empty() {
                f.at(here.clone(), "a service name must not be empty");
            }
            if let Some(rate) = service.failure_rate_threshold {
                check_rate(f, here.key("failure_rate_threshold"), rate);
            }
            if let Some(rate) = service.slow_call_rate_threshold {
                check_rate(f, here.key("slow_call_rate_threshold"), rate);
            }
            if let Some(duration) = service.slow_call_duration {
                check_slow_call_duration(f, here.key("slow_call_duration"), duration);
            }
            if let Some(calls) = service.minimum_calls {
                f.at_least_one_at(here.key("minimum_calls"), u64::from(calls));
            }
            if let Some(size) = service.sliding_window_size {
                check_window(f, here.key("sliding_window_size"), size);
            }
            if let Some(wait) = service.wait_duration_in_open {
                check_wait(f, here.key("wait_duration_in_open"), wait);
            }
            if let Some(calls) = service.permitted_calls_in_half_open {
                f.at_least_one_at(here.key("permitted_calls_in_half_open"), u64::from(calls));
            }
            // The rule between the two counts, for the merged settings, and
            // only where this service sets one of them (else the default's
            // check already covers it).
            if service.minimum_calls.is_some() || service.sliding_window_size.is_some() {
                let from = |key: &str, set: bool| {
                    if set {
                        here.key(key)
                    } else {
                        default_at.key(key)
                    }
                };
                check_minimum_within_window(
                    f,
                    &service.over(&self.default),
                    from("minimum_calls", service.minimum_calls.is_some()),
                    from("sliding_window_size", service.sliding_window_size.is_some()),
                    service.minimum_calls.is_some(),
                );
            }
            if let Some(fallback) = service.fallback {
                if let Some(only) = fallback.only_for() {
                    if name != only {
                        f.at(
                            here.key("fallback"),
                            format!(
                                "{fallback} is only for the service {only} (it answers a query meant \
                                 for Trino with DuckDB on this node); the service \"{name}\" cannot use it"
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn check_rate(f: &mut Findings, path: KeyPath, rate: Percent) {
    let value = rate.value();
    if !(value > 0.0 && value <= 100.0) {
        f.at(
            path,
            format!("must be a percentage greater than 0 and at most 100, is {rate}"),
        );
    }
}

fn check_slow_call_duration(f: &mut Findings, path: KeyPath, duration: HumanDuration) {
    f.not_zero_at(path, duration.is_zero(), "every call would count as slow");
}

fn check_wait(f: &mut Findings, path: KeyPath, wait: HumanDuration) {
    f.not_zero_at(
        path,
        wait.is_zero(),
        "an open breaker would let trial calls through at once",
    );
}

fn check_window(f: &mut Findings, path: KeyPath, size: u32) {
    if size == 0 {
        f.at(path, "must be at least 1, is 0");
    } else if size > MAX_SLIDING_WINDOW_SIZE {
        f.at(
            path,
            format!(
                "must be at most {MAX_SLIDING_WINDOW_SIZE}, is {size}: over a larger window the \
                 breaker reacts to an outage only after thousands of failed calls"
            ),
        );
    }
}

/// `minimum_calls` must not exceed `sliding_window_size`: the window never
/// holds more calls than its size, so the breaker could never open. The
/// problem is reported at `report_at`, one of the two keys (the one the
/// user set for the breaker in question); `minimum` and `window` are where
/// the two values come from.
fn check_minimum_within_window(
    f: &mut Findings,
    settings: &BreakerSettings,
    minimum: KeyPath,
    window: KeyPath,
    report_at_minimum: bool,
) {
    let (calls, size) = (settings.minimum_calls, settings.sliding_window_size);
    if size == 0 || calls <= size {
        return;
    }
    let why = "the window never holds that many calls, so the breaker could never open";
    if report_at_minimum {
        let message = format!("{calls} exceeds {} ({size}): {why}", render(&window));
        f.at_related(minimum, window, message);
    } else {
        let message = format!("{size} is less than {} ({calls}): {why}", render(&minimum));
        f.at_related(window, minimum, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_settings_merge_the_service_over_the_default() {
        let mut config = CircuitBreakerConfig::default();
        config.services.insert(
            "trino".into(),
            ServiceBreakerConfig {
                failure_rate_threshold: Some(Percent::new(40.0)),
                fallback: Some(Fallback::RouteToDuckdb),
                ..ServiceBreakerConfig::default()
            },
        );
        let trino = config.effective("trino");
        assert_eq!(trino.fallback, Fallback::RouteToDuckdb);
        assert_eq!(trino.settings.failure_rate_threshold, Percent::new(40.0));
        assert_eq!(
            trino.settings.slow_call_duration,
            DEFAULT_SLOW_CALL_DURATION
        );
        let other = config.effective("unlisted");
        assert_eq!(other.settings, BreakerSettings::default());
        assert_eq!(other.fallback, Fallback::FailFast);
    }

    #[test]
    fn fallback_names_round_trip_and_unknown_ones_list_the_known() {
        for fallback in KNOWN_FALLBACKS {
            assert_eq!(fallback.as_str().parse::<Fallback>(), Ok(fallback));
        }
        let err = "retry_later".parse::<Fallback>().unwrap_err();
        assert_eq!(
            err,
            "unknown fallback \"retry_later\"; known fallbacks: route_to_duckdb (service trino only), \
             skip_embedding, fail_fast"
        );
    }
}
