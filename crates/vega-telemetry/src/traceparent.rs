//! W3C Trace Context: parsing and formatting the `traceparent` header
//! (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`).
//!
//! Parsing follows the W3C recommendation: hex digits must be lower case,
//! the version `ff` is invalid, all-zero trace and parent ids are invalid,
//! version `00` has exactly 55 characters, and a higher version may carry
//! further `-`-separated data that is ignored.

use std::fmt;
use std::str::FromStr;

use crate::TelemetryError;

/// Length of a version-00 `traceparent` value.
const HEADER_LEN: usize = 55;

/// The `sampled` bit of the trace flags.
const FLAG_SAMPLED: u8 = 0x01;

/// The trace context of one unit of work: which trace it belongs to, the id
/// of its span, and whether the trace is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The id of the whole trace; never all zero.
    pub trace_id: [u8; 16],
    /// The id of this span (the parent id when sent downstream); never all zero.
    pub span_id: [u8; 8],
    /// Whether the caller records this trace.
    pub sampled: bool,
}

impl TraceContext {
    /// Starts a new trace with random trace and span ids, sampled.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: random_nonzero(),
            span_id: random_nonzero(),
            sampled: true,
        }
    }

    /// A child of `incoming`: the same trace id and sampling decision, and a
    /// new random span id.
    pub fn child_of(incoming: &TraceContext) -> Self {
        TraceContext {
            trace_id: incoming.trace_id,
            span_id: random_nonzero(),
            sampled: incoming.sampled,
        }
    }

    /// Parses a `traceparent` header value.
    pub fn parse(header: &str) -> Result<Self, TelemetryError> {
        let invalid = TelemetryError::InvalidTraceparent;
        let bytes = header.as_bytes();
        if bytes.len() < HEADER_LEN {
            return Err(invalid("too short"));
        }
        let version =
            decode_hex::<1>(&bytes[0..2]).ok_or(invalid("version is not lower-case hex"))?[0];
        if version == 0xff {
            return Err(invalid("version ff is not allowed"));
        }
        if version == 0x00 && bytes.len() != HEADER_LEN {
            return Err(invalid("version 00 must be exactly 55 characters"));
        }
        if bytes.len() > HEADER_LEN && bytes[HEADER_LEN] != b'-' {
            return Err(invalid("unexpected data after the flags"));
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(invalid("fields must be separated by '-'"));
        }
        let trace_id = decode_hex::<16>(&bytes[3..35])
            .ok_or(invalid("trace id is not 32 lower-case hex digits"))?;
        let span_id = decode_hex::<8>(&bytes[36..52])
            .ok_or(invalid("parent id is not 16 lower-case hex digits"))?;
        let flags = decode_hex::<1>(&bytes[53..55])
            .ok_or(invalid("flags are not 2 lower-case hex digits"))?[0];
        if trace_id == [0; 16] {
            return Err(invalid("trace id is all zeros"));
        }
        if span_id == [0; 8] {
            return Err(invalid("parent id is all zeros"));
        }
        Ok(TraceContext {
            trace_id,
            span_id,
            sampled: flags & FLAG_SAMPLED != 0,
        })
    }

    /// The version-00 `traceparent` header value for this context, with this
    /// span as the parent.
    pub fn to_header(&self) -> String {
        let flags = if self.sampled { FLAG_SAMPLED } else { 0 };
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            flags
        )
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The span id as 16 lower-case hex digits.
    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }
}

impl FromStr for TraceContext {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceContext::parse(s)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header())
    }
}

/// Decodes exactly `2 * N` lower-case hex digits.
fn decode_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N
        || !digits
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

/// Random bytes that are not all zero.
fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = std::array::from_fn(|_| rand::random::<u8>());
        if bytes != [0; N] {
            return bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_w3c_example() {
        let ctx = TraceContext::parse(VALID).unwrap();
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id_hex(), "00f067aa0ba902b7");
        assert!(ctx.sampled);
    }

    #[test]
    fn round_trips_through_to_header() {
        assert_eq!(TraceContext::parse(VALID).unwrap().to_header(), VALID);
    }

    #[test]
    fn flags_without_the_sampled_bit_parse_as_not_sampled() {
        let ctx =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!ctx.sampled);
        assert!(ctx.to_header().ends_with("-00"));
    }

    #[test]
    fn rejects_all_zero_trace_id() {
        let err = TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
            .unwrap_err();
        assert!(err.to_string().contains("trace id is all zeros"), "{err}");
    }

    #[test]
    fn rejects_all_zero_parent_id() {
        let err = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
            .unwrap_err();
        assert!(err.to_string().contains("parent id is all zeros"), "{err}");
    }

    #[test]
    fn rejects_short_trace_id() {
        assert!(
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01").is_err()
        );
    }

    #[test]
    fn rejects_long_parent_id() {
        assert!(
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b70-01")
                .is_err()
        );
    }

    #[test]
    fn rejects_trailing_data_for_version_00() {
        assert!(TraceContext::parse(&format!("{VALID}-extra")).is_err());
    }

    #[test]
    fn rejects_empty_and_truncated_values() {
        assert!(TraceContext::parse("").is_err());
        assert!(TraceContext::parse(&VALID[..54]).is_err());
    }

    #[test]
    fn rejects_uppercase_hex_in_each_field() {
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_non_hex_characters() {
        assert!(
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01").is_err()
        );
    }

    #[test]
    fn rejects_version_ff() {
        let err = TraceContext::parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap_err();
        assert!(err.to_string().contains("version ff"), "{err}");
    }

    #[test]
    fn rejects_wrong_separators() {
        assert!(
            TraceContext::parse("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01").is_err()
        );
    }

    #[test]
    fn accepts_a_future_version_with_extra_fields() {
        let ctx =
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
                .unwrap();
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.to_header(), VALID, "we always emit version 00");
    }

    #[test]
    fn new_root_has_nonzero_distinct_ids_and_a_valid_header() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id, [0; 16]);
        assert_ne!(a.span_id, [0; 8]);
        assert_ne!(a.trace_id, b.trace_id);
        assert!(a.sampled);
        assert_eq!(TraceContext::parse(&a.to_header()).unwrap(), a);
    }

    #[test]
    fn child_keeps_trace_id_and_sampling_with_a_new_span_id() {
        let parent =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let child = TraceContext::child_of(&parent);
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert!(!child.sampled);
    }

    #[test]
    fn hex_accessors_are_lowercase_and_fixed_width() {
        let ctx = TraceContext {
            trace_id: [0xAB; 16],
            span_id: [0x01; 8],
            sampled: true,
        };
        assert_eq!(ctx.trace_id_hex(), "ab".repeat(16));
        assert_eq!(ctx.span_id_hex(), "01".repeat(8));
    }
}
