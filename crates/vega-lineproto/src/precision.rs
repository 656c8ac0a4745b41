//! Timestamp precision: the unit of the timestamps in a write request's
//! body, chosen by the request's `precision` query parameter.
//!
//! The two write APIs accept different spellings. `/api/v2/write` takes
//! `ns`, `us`, `ms` and `s`, and answers 400 to anything else (`µs` and the
//! long names included), as InfluxDB 2 does. The 1.x `/write` endpoint takes
//! what InfluxDB 1.8 takes (`n`, `ns`, `u`, `ms`, `s`, `m`, `h`) and also the
//! unambiguous `us` and `µ` for microseconds, which 1.8 itself refuses. An
//! absent or empty parameter means nanoseconds for both; matching is
//! case-sensitive (`m` is minutes, never months).

use std::fmt;

use vega_core::{Classify, ErrorClass};

use crate::error::excerpt;

/// The unit of the timestamps in a body of line protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Nanoseconds (the default).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (1.x `/write` only).
    Minutes,
    /// Hours (1.x `/write` only).
    Hours,
}

impl Precision {
    /// The values `/api/v2/write` accepts, as error messages list them.
    pub const V2_VALUES: &'static [&'static str] = &["ns", "us", "ms", "s"];

    /// The values the 1.x `/write` endpoint accepts, as error messages list
    /// them. `µ` is the micro sign, U+00B5.
    pub const V1_VALUES: &'static [&'static str] =
        &["n", "ns", "u", "us", "µ", "ms", "s", "m", "h"];

    /// Reads the `precision` parameter of `/api/v2/write`: `ns`, `us`, `ms`
    /// or `s`; empty means nanoseconds. Matching is case-sensitive, as in
    /// InfluxDB 2.
    pub fn parse_v2(s: &str) -> Result<Precision, UnknownPrecision> {
        match s {
            "" | "ns" => Ok(Precision::Nanoseconds),
            "us" => Ok(Precision::Microseconds),
            "ms" => Ok(Precision::Milliseconds),
            "s" => Ok(Precision::Seconds),
            _ => Err(UnknownPrecision::new(s, Self::V2_VALUES)),
        }
    }

    /// Reads the `precision` parameter of the 1.x `/write` endpoint: `n` or
    /// `ns`, `u`, `us` or `µ`, `ms`, `s`, `m`, `h`; empty means nanoseconds.
    /// Matching is case-sensitive (`m` is minutes, never months).
    pub fn parse_v1(s: &str) -> Result<Precision, UnknownPrecision> {
        match s {
            "" | "n" | "ns" => Ok(Precision::Nanoseconds),
            "u" | "us" | "µ" => Ok(Precision::Microseconds),
            "ms" => Ok(Precision::Milliseconds),
            "s" => Ok(Precision::Seconds),
            "m" => Ok(Precision::Minutes),
            "h" => Ok(Precision::Hours),
            _ => Err(UnknownPrecision::new(s, Self::V1_VALUES)),
        }
    }

    /// How many nanoseconds one unit of this precision is.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60 * 1_000_000_000,
            Precision::Hours => 3_600 * 1_000_000_000,
        }
    }

    /// The short name: `ns`, `us`, `ms`, `s`, `m` or `h`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        }
    }

    /// Converts a timestamp in this precision to nanoseconds, or `None` when
    /// the result does not fit in an `i64`.
    pub const fn to_nanos(self, value: i64) -> Option<i64> {
        value.checked_mul(self.nanos_per_unit())
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `precision` parameter that the endpoint does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown precision {}; accepted values: {}",
    excerpt(.value),
    .accepted.join(", ")
)]
pub struct UnknownPrecision {
    /// The value as given.
    pub value: String,
    /// The values the endpoint accepts.
    pub accepted: &'static [&'static str],
}

impl UnknownPrecision {
    fn new(value: &str, accepted: &'static [&'static str]) -> Self {
        UnknownPrecision {
            value: value.to_owned(),
            accepted,
        }
    }
}

impl Classify for UnknownPrecision {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}
