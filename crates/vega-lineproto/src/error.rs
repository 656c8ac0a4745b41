//! Per-line errors: what was wrong with one line of a body, with a stable
//! label for metrics and a message that quotes the offending text.

use std::fmt;

use vega_core::{Classify, ErrorClass};

/// Why a line was rejected. Each kind has a stable snake_case label
/// ([`LineErrorKind::as_str`]) for metrics and API responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineErrorKind {
    /// The line is not valid UTF-8 (`invalid_utf8`).
    InvalidUtf8,
    /// The line starts with a comma: no measurement name
    /// (`missing_measurement`).
    MissingMeasurement,
    /// Measurement and tags but no field set (`missing_fields`).
    MissingFields,
    /// A tag without `=`, with an empty key or value, or with an unescaped
    /// `=` in its value (`bad_tag`).
    BadTag,
    /// A field without `=` or with an empty key (`bad_field`).
    BadField,
    /// A field value that is not a float, integer, unsigned, string or
    /// boolean, or is out of range (`bad_field_value`).
    BadFieldValue,
    /// A backslash at the very end of the line, with nothing to escape
    /// (`bad_escape`).
    BadEscape,
    /// A string field value without its closing double quote
    /// (`unterminated_string`).
    UnterminatedString,
    /// A timestamp that is not an integer or does not fit in the nanosecond
    /// range (`bad_timestamp`).
    BadTimestamp,
    /// The same tag key twice in one line (`duplicate_tag`).
    DuplicateTag,
    /// The same field key twice in one line (`duplicate_field`).
    DuplicateField,
    /// A tag or field named `time`, the name of Vega's timestamp column
    /// (`reserved_key`).
    ReservedKey,
    /// The same key used as a tag and as a field (`key_conflict`).
    KeyConflict,
    /// Text after the timestamp (`trailing_garbage`).
    TrailingGarbage,
}

impl LineErrorKind {
    /// Every kind, in declaration order (for pre-registering metrics).
    pub const ALL: [LineErrorKind; 14] = [
        LineErrorKind::InvalidUtf8,
        LineErrorKind::MissingMeasurement,
        LineErrorKind::MissingFields,
        LineErrorKind::BadTag,
        LineErrorKind::BadField,
        LineErrorKind::BadFieldValue,
        LineErrorKind::BadEscape,
        LineErrorKind::UnterminatedString,
        LineErrorKind::BadTimestamp,
        LineErrorKind::DuplicateTag,
        LineErrorKind::DuplicateField,
        LineErrorKind::ReservedKey,
        LineErrorKind::KeyConflict,
        LineErrorKind::TrailingGarbage,
    ];

    /// The stable snake_case label, used as a metrics label value.
    pub const fn as_str(&self) -> &'static str {
        match self {
            LineErrorKind::InvalidUtf8 => "invalid_utf8",
            LineErrorKind::MissingMeasurement => "missing_measurement",
            LineErrorKind::MissingFields => "missing_fields",
            LineErrorKind::BadTag => "bad_tag",
            LineErrorKind::BadField => "bad_field",
            LineErrorKind::BadFieldValue => "bad_field_value",
            LineErrorKind::BadEscape => "bad_escape",
            LineErrorKind::UnterminatedString => "unterminated_string",
            LineErrorKind::BadTimestamp => "bad_timestamp",
            LineErrorKind::DuplicateTag => "duplicate_tag",
            LineErrorKind::DuplicateField => "duplicate_field",
            LineErrorKind::ReservedKey => "reserved_key",
            LineErrorKind::KeyConflict => "key_conflict",
            LineErrorKind::TrailingGarbage => "trailing_garbage",
        }
    }
}

impl fmt::Display for LineErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rejected line. Displays as `line 3: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// The 1-based line number in the body.
    pub line: usize,
    /// What kind of problem it is.
    pub kind: LineErrorKind,
    /// What is wrong, quoting the offending text (shortened to
    /// [`EXCERPT_CHARS`] characters).
    pub message: String,
}

impl LineError {
    pub(crate) fn new(line: usize, kind: LineErrorKind, message: String) -> Self {
        LineError {
            line,
            kind,
            message,
        }
    }
}

impl Classify for LineError {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// How many characters of the offending text a message quotes at most.
pub const EXCERPT_CHARS: usize = 64;

/// The text quoted for a message: in backticks, cut after
/// [`EXCERPT_CHARS`] characters (marked with `…`), control characters
/// written as escapes so that a message stays on one line.
pub(crate) fn excerpt(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(EXCERPT_CHARS * 2) + 4);
    out.push('`');
    let mut chars = text.chars();
    for c in chars.by_ref().take(EXCERPT_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out.push('`');
    out
}
