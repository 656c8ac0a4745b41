//! Asset schedules: an interval (`"15m"`) or a cron expression with seconds
//! (`"0 */5 * * * *"`). The scheduler asks [`Schedule::next_after`] when an
//! asset is next due after its last run, and spreads runs with a jitter
//! derived from the asset id, so that assets on the same schedule do not all
//! start in the same second and a restart does not change the times.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use vega_config::HumanDuration;

/// The longest jitter added to a due time.
pub const MAX_JITTER: Duration = Duration::from_secs(30);

/// When an asset syncs on its own.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// Parses an interval (`30s`, `15m`, `1h`, `1d`; at least one second)
    /// or a cron expression (six or seven fields, seconds first).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.split_whitespace().count() >= 5 {
            return cron::Schedule::from_str(text)
                .map(|c| Schedule::Cron(Box::new(c)))
                .map_err(|e| format!("invalid cron expression '{text}': {e} (six fields, seconds first: \"0 */5 * * * *\")"));
        }
        let every: HumanDuration = text.parse().map_err(|e| {
            format!(
                "invalid schedule '{text}': {e}; use an interval like \"15m\" or a cron expression"
            )
        })?;
        let every: Duration = every.into();
        if every < Duration::from_secs(1) {
            return Err(format!(
                "invalid schedule '{text}': the interval must be at least one second"
            ));
        }
        Ok(Schedule::Every(every))
    }

    /// The first time after `last` at which the asset is due, without jitter.
    pub fn next_after(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(every) => chrono::Duration::from_std(*every).ok().map(|d| last + d),
            Schedule::Cron(cron) => cron.after(&last).next(),
        }
    }

    /// The jitter for `key` (an asset id): a stable fraction of a tenth of
    /// the interval, at most [`MAX_JITTER`].
    pub fn jitter(&self, key: &str) -> Duration {
        let spread = match self {
            Schedule::Every(every) => (*every / 10).min(MAX_JITTER),
            Schedule::Cron(_) => Duration::from_secs(1),
        };
        // FNV-1a: stable across runs and platforms.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let fraction = (hash % 10_000) as f64 / 10_000.0;
        spread.mul_f64(fraction)
    }

    /// Whether an asset last run at `last` is due at `now`.
    pub fn is_due(&self, key: &str, last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self.next_after(last) {
            Some(next) => match chrono::Duration::from_std(self.jitter(key)) {
                Ok(jitter) => now >= next + jitter,
                Err(_) => now >= next,
            },
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        vega_core::clock::from_catalog_time(s).unwrap()
    }

    #[test]
    fn intervals_parse_and_add_to_the_last_run() {
        let s = Schedule::parse("15m").unwrap();
        assert_eq!(
            s.next_after(t("2026-01-01T00:00:00Z")),
            Some(t("2026-01-01T00:15:00Z"))
        );
    }

    #[test]
    fn cron_expressions_parse_with_seconds() {
        let s = Schedule::parse("0 */5 * * * *").unwrap();
        assert_eq!(
            s.next_after(t("2026-01-01T00:01:00Z")),
            Some(t("2026-01-01T00:05:00Z"))
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_a_hint() {
        for bad in ["", "soon", "0ms", "500ms", "61 * * * * *", "* * *"] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(
                err.contains("schedule") || err.contains("cron"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn jitter_is_stable_bounded_and_differs_between_assets() {
        let s = Schedule::parse("10m").unwrap();
        let a = s.jitter("ast_a");
        assert_eq!(a, s.jitter("ast_a"));
        assert!(a <= Duration::from_secs(30));
        assert_ne!(a, s.jitter("ast_b"));
        let short = Schedule::parse("10s").unwrap();
        assert!(short.jitter("ast_a") <= Duration::from_secs(1));
    }

    #[test]
    fn due_only_after_interval_plus_jitter() {
        let s = Schedule::parse("1m").unwrap();
        let last = t("2026-01-01T00:00:00Z");
        assert!(!s.is_due("ast_x", last, t("2026-01-01T00:00:59Z")));
        assert!(s.is_due("ast_x", last, t("2026-01-01T00:01:07Z")));
    }
}
