//! The parser: splits a body into lines, and each line into measurement,
//! tags, fields and timestamp in one pass over its bytes.
//!
//! Names are sliced straight out of the line; only an element that contains
//! a backslash is copied through the unescaper. The scanner and the
//! unescaper share one rule, so they always agree on where an element ends:
//! a backslash followed by one of the element's special characters is an
//! escape pair, and any other backslash is an ordinary character (the byte
//! after it keeps its own meaning).

use std::collections::HashSet;

use vega_core::{FieldValue, Point};

use crate::error::{excerpt, LineError, LineErrorKind};
use crate::precision::Precision;
use crate::value::{parse_timestamp, parse_unquoted};

/// The key that neither a tag nor a field may have: Vega stores the
/// timestamp in a column of that name.
pub const RESERVED_KEY: &str = "time";

/// Up to this many keys, duplicates are found by comparing pairs; above it,
/// with a hash set (so a line with thousands of fields stays linear).
const SMALL_SET: usize = 16;

/// One valid line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPoint {
    /// The 1-based line number in the body.
    pub line: usize,
    /// The measurement name, unescaped.
    pub measurement: String,
    /// Tags and fields (unescaped, in the order of the line) and the time in
    /// nanoseconds.
    pub point: Point,
}

/// The result of [`parse`]: the valid lines as points and one error for
/// each bad line, both in line order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// The points of the valid lines.
    pub points: Vec<ParsedPoint>,
    /// One error per rejected line.
    pub errors: Vec<LineError>,
}

/// Parses every line of `body`. Valid lines become points, each bad line
/// becomes one error, and a bad line never stops the others (partial-write
/// semantics). Blank lines and comment lines are skipped. Timestamps are read
/// in `precision` and converted to nanoseconds; lines without a timestamp get
/// `default_time_ns` as it is.
pub fn parse(body: &[u8], precision: Precision, default_time_ns: i64) -> Parsed {
    let mut out = Parsed::default();
    let mut record = |result: Result<ParsedPoint, LineError>| match result {
        Ok(point) => out.points.push(point),
        Err(error) => out.errors.push(error),
    };
    match std::str::from_utf8(body) {
        // The common case: the whole body is valid UTF-8, checked once.
        Ok(text) => {
            for (index, raw) in text.split('\n').enumerate() {
                let line = index + 1;
                if let Some(content) = line_content(raw) {
                    record(parse_line(content, line, precision, default_time_ns));
                }
            }
        }
        // Some line is not UTF-8: check line by line, so that only the bad
        // lines are lost.
        Err(_) => {
            for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
                let line = index + 1;
                let Some(content) = line_content_bytes(raw) else {
                    continue;
                };
                let result = match std::str::from_utf8(content) {
                    Ok(content) => parse_line(content, line, precision, default_time_ns),
                    Err(e) => Err(LineError::new(
                        line,
                        LineErrorKind::InvalidUtf8,
                        format!(
                            "the line is not valid UTF-8 (invalid byte at offset {}): {}",
                            e.valid_up_to(),
                            excerpt(&String::from_utf8_lossy(
                                content.get(..256).unwrap_or(content)
                            ))
                        ),
                    )),
                };
                record(result);
            }
        }
    }
    out
}

/// The part of a line to parse, or `None` for a blank or comment line: one
/// trailing `\r` and the leading spaces and tabs removed.
fn line_content(raw: &str) -> Option<&str> {
    let s = raw.strip_suffix('\r').unwrap_or(raw);
    let s = s.trim_start_matches([' ', '\t']);
    if s.is_empty() || s.starts_with('#') {
        None
    } else {
        Some(s)
    }
}

/// [`line_content`] for a line not yet known to be UTF-8.
fn line_content_bytes(raw: &[u8]) -> Option<&[u8]> {
    let s = raw.strip_suffix(b"\r").unwrap_or(raw);
    let start = s.iter().position(|&b| b != b' ' && b != b'\t')?;
    let s = s.get(start..)?;
    if s.first() == Some(&b'#') {
        None
    } else {
        Some(s)
    }
}

/// Bytes a backslash escapes in a measurement name (and that end it).
#[inline]
fn measurement_special(c: u8) -> bool {
    c == b',' || c == b' '
}

/// Bytes a backslash escapes in tag keys, tag values and field keys (and
/// that end them).
#[inline]
fn key_special(c: u8) -> bool {
    c == b',' || c == b' ' || c == b'='
}

/// Bytes a backslash escapes in a string field value.
#[inline]
fn string_special(c: u8) -> bool {
    c == b'"' || c == b'\\'
}

/// `s[start..end]`, or `""` if that is not a valid range (it always is:
/// every index used here is at an ASCII byte or at the end of the line).
#[inline]
fn sub(s: &str, start: usize, end: usize) -> &str {
    s.get(start..end).unwrap_or("")
}

/// The index of the first byte at or after `start` that matches `pred`, or
/// the length of `b`.
#[inline]
fn find(b: &[u8], start: usize, pred: impl Fn(u8) -> bool) -> usize {
    b.get(start..)
        .and_then(|rest| rest.iter().position(|&c| pred(c)))
        .map_or(b.len(), |p| start + p)
}

#[inline]
fn skip_spaces(b: &[u8], mut pos: usize) -> usize {
    while b.get(pos) == Some(&b' ') {
        pos += 1;
    }
    pos
}

/// Scans a name from `start` to the first unescaped special byte (or the
/// end). Returns the end and whether an escape pair was seen, or `Err(())`
/// for a backslash that is the last byte of the line.
#[inline]
fn scan_name(b: &[u8], start: usize, special: impl Fn(u8) -> bool) -> Result<(usize, bool), ()> {
    let mut i = start;
    let mut escaped = false;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            match b.get(i + 1) {
                None => return Err(()),
                Some(&next) if special(next) => {
                    escaped = true;
                    i += 2;
                }
                Some(_) => i += 1,
            }
        } else if special(c) {
            break;
        } else {
            i += 1;
        }
    }
    Ok((i, escaped))
}

/// Finds the closing double quote of a string value whose content starts at
/// `start`. Returns its index and whether an escape pair was seen, or `None`
/// if the line ends first.
fn scan_string(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start;
    let mut escaped = false;
    loop {
        i += b.get(i..)?.iter().position(|&c| c == b'"' || c == b'\\')?;
        if b.get(i) == Some(&b'"') {
            return Some((i, escaped));
        }
        if b.get(i + 1).is_some_and(|&next| string_special(next)) {
            escaped = true;
            i += 2;
        } else {
            i += 1;
        }
    }
}

/// Removes the backslash of every escape pair (a backslash followed by a
/// byte for which `special` holds). Only called when the scanner saw one.
fn unescape(s: &str, special: impl Fn(u8) -> bool) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut segment = 0;
    let mut i = 0;
    while i + 1 < b.len() {
        if b.get(i) == Some(&b'\\') && b.get(i + 1).is_some_and(|&next| special(next)) {
            out.push_str(sub(s, segment, i));
            // The escaped byte starts the next segment.
            segment = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(sub(s, segment, s.len()));
    out
}

#[inline]
fn name(s: &str, escaped: bool, special: impl Fn(u8) -> bool) -> String {
    if escaped {
        unescape(s, special)
    } else {
        s.to_owned()
    }
}

/// The error for a backslash at the very end of a line.
fn dangling_backslash(line: usize, s: &str) -> LineError {
    const TAIL_CHARS: usize = 32;
    let tail_start = s
        .char_indices()
        .rev()
        .nth(TAIL_CHARS - 1)
        .map_or(0, |(i, _)| i);
    let tail = sub(s, tail_start, s.len());
    let mut quoted = excerpt(tail);
    if tail_start > 0 {
        // After the opening backtick: the start of the line was cut.
        quoted.insert(1, '…');
    }
    LineError::new(
        line,
        LineErrorKind::BadEscape,
        format!("the line ends with a backslash that escapes nothing: {quoted}"),
    )
}

/// Parses one line (already without its line break, trailing `\r` and
/// leading whitespace).
fn parse_line(
    s: &str,
    line: usize,
    precision: Precision,
    default_time_ns: i64,
) -> Result<ParsedPoint, LineError> {
    let b = s.as_bytes();
    let error = |kind, message| LineError::new(line, kind, message);

    // Measurement.
    let (m_end, m_escaped) =
        scan_name(b, 0, measurement_special).map_err(|()| dangling_backslash(line, s))?;
    if m_end == 0 {
        return Err(error(
            LineErrorKind::MissingMeasurement,
            format!("the line has no measurement name: {}", excerpt(s)),
        ));
    }
    let measurement = name(sub(s, 0, m_end), m_escaped, measurement_special);
    let mut pos = m_end;

    // Tag set.
    let mut tags = Vec::new();
    while b.get(pos) == Some(&b',') {
        let (tag, next) = parse_tag(s, pos + 1, line)?;
        tags.push(tag);
        pos = next;
    }

    // Field set.
    pos = skip_spaces(b, pos);
    if pos >= b.len() {
        return Err(error(
            LineErrorKind::MissingFields,
            format!("the line has no field set: {}", excerpt(s.trim_end())),
        ));
    }
    let mut fields = Vec::new();
    loop {
        let (field, next) = parse_field(s, pos, line)?;
        fields.push(field);
        pos = next;
        if b.get(pos) == Some(&b',') {
            pos += 1;
        } else {
            break;
        }
    }

    // Timestamp.
    pos = skip_spaces(b, pos);
    let time_ns = if pos >= b.len() {
        default_time_ns
    } else {
        let end = find(b, pos, |c| c == b' ');
        let text = sub(s, pos, end);
        if end == b.len() && text.ends_with('\\') {
            return Err(dangling_backslash(line, s));
        }
        let ns = parse_timestamp(text, precision)
            .map_err(|message| error(LineErrorKind::BadTimestamp, message))?;
        let rest = skip_spaces(b, end);
        if rest < b.len() {
            return Err(error(
                LineErrorKind::TrailingGarbage,
                format!(
                    "unexpected text after the timestamp: {}",
                    excerpt(sub(s, rest, s.len()))
                ),
            ));
        }
        ns
    };

    check_keys(&tags, &fields).map_err(|(kind, message)| error(kind, message))?;
    Ok(ParsedPoint {
        line,
        measurement,
        point: Point {
            tags,
            fields,
            time_ns,
        },
    })
}

/// Parses the tag that starts at `start` (just after its comma). Returns the
/// tag and the index of the byte after its value.
fn parse_tag(s: &str, start: usize, line: usize) -> Result<((String, String), usize), LineError> {
    let b = s.as_bytes();
    let bad_tag = |message| LineError::new(line, LineErrorKind::BadTag, message);

    let (key_end, key_escaped) =
        scan_name(b, start, key_special).map_err(|()| dangling_backslash(line, s))?;
    if b.get(key_end) != Some(&b'=') {
        return Err(bad_tag(if key_end == start {
            format!(
                "empty tag (no key=value after the comma): {}",
                excerpt(sub(s, 0, key_end))
            )
        } else {
            format!(
                "tag {} has no '=' and value",
                excerpt(sub(s, start, key_end))
            )
        }));
    }
    let value_start = key_end + 1;
    let (value_end, value_escaped) =
        scan_name(b, value_start, key_special).map_err(|()| dangling_backslash(line, s))?;
    if key_end == start {
        return Err(bad_tag(format!(
            "tag with an empty key: {}",
            excerpt(sub(s, start, value_end))
        )));
    }
    let key_text = sub(s, start, key_end);
    if value_end == value_start {
        return Err(bad_tag(format!(
            "tag {} has an empty value",
            excerpt(key_text)
        )));
    }
    if b.get(value_end) == Some(&b'=') {
        let text_end = find(b, value_end, |c| c == b',' || c == b' ');
        return Err(bad_tag(format!(
            "tag {} has an unescaped '=' in its value: {}",
            excerpt(key_text),
            excerpt(sub(s, value_start, text_end))
        )));
    }
    let key = name(key_text, key_escaped, key_special);
    let value = name(sub(s, value_start, value_end), value_escaped, key_special);
    Ok(((key, value), value_end))
}

/// Parses the field that starts at `start`. Returns the field and the index
/// of the byte after its value (a comma, a space or the end of the line).
fn parse_field(
    s: &str,
    start: usize,
    line: usize,
) -> Result<((String, FieldValue), usize), LineError> {
    let b = s.as_bytes();
    let error = |kind, message| LineError::new(line, kind, message);

    let (key_end, key_escaped) =
        scan_name(b, start, key_special).map_err(|()| dangling_backslash(line, s))?;
    if b.get(key_end) != Some(&b'=') {
        return Err(error(
            LineErrorKind::BadField,
            if key_end == start {
                format!(
                    "empty field (no key=value after the comma): {}",
                    excerpt(sub(s, 0, key_end))
                )
            } else {
                format!(
                    "field {} has no '=' and value",
                    excerpt(sub(s, start, key_end))
                )
            },
        ));
    }
    let value_start = key_end + 1;
    if key_end == start {
        let text_end = find(b, value_start, |c| c == b',' || c == b' ');
        return Err(error(
            LineErrorKind::BadField,
            format!(
                "field with an empty key: {}",
                excerpt(sub(s, start, text_end))
            ),
        ));
    }
    let key = name(sub(s, start, key_end), key_escaped, key_special);

    match b.get(value_start) {
        Some(b'"') => {
            let content_start = value_start + 1;
            let Some((close, escaped)) = scan_string(b, content_start) else {
                return Err(error(
                    LineErrorKind::UnterminatedString,
                    format!(
                        "field {}: the string value has no closing double quote: {}",
                        excerpt(&key),
                        excerpt(sub(s, value_start, s.len()))
                    ),
                ));
            };
            let end = close + 1;
            if let Some(&c) = b.get(end) {
                if c != b',' && c != b' ' {
                    let text_end = find(b, end, |c| c == b',' || c == b' ');
                    return Err(error(
                        LineErrorKind::BadFieldValue,
                        format!(
                            "field {}: unexpected text after the closing double quote: {}",
                            excerpt(&key),
                            excerpt(sub(s, end, text_end))
                        ),
                    ));
                }
            }
            let value = name(sub(s, content_start, close), escaped, string_special);
            Ok(((key, FieldValue::String(value)), end))
        }
        None | Some(b',' | b' ') => Err(error(
            LineErrorKind::BadFieldValue,
            format!("field {} has no value", excerpt(&key)),
        )),
        Some(_) => {
            let end = find(b, value_start, |c| c == b',' || c == b' ');
            let text = sub(s, value_start, end);
            if end == b.len() && text.ends_with('\\') {
                return Err(dangling_backslash(line, s));
            }
            let value = parse_unquoted(text).map_err(|message| {
                error(
                    LineErrorKind::BadFieldValue,
                    format!("field {}: {message}", excerpt(&key)),
                )
            })?;
            Ok(((key, value), end))
        }
    }
}

/// The checks that need all keys of the line: the reserved key, duplicates,
/// and a key used as both tag and field.
fn check_keys(
    tags: &[(String, String)],
    fields: &[(String, FieldValue)],
) -> Result<(), (LineErrorKind, String)> {
    let reserved = |what: &str| {
        (
            LineErrorKind::ReservedKey,
            format!(
                "{what} key `{RESERVED_KEY}` is reserved: it is the name of the timestamp column"
            ),
        )
    };
    if tags.iter().any(|(k, _)| k == RESERVED_KEY) {
        return Err(reserved("tag"));
    }
    if fields.iter().any(|(k, _)| k == RESERVED_KEY) {
        return Err(reserved("field"));
    }
    if let Some(key) = first_duplicate(tags) {
        return Err((
            LineErrorKind::DuplicateTag,
            format!("tag key {} appears more than once", excerpt(key)),
        ));
    }
    if let Some(key) = first_duplicate(fields) {
        return Err((
            LineErrorKind::DuplicateField,
            format!("field key {} appears more than once", excerpt(key)),
        ));
    }
    if let Some(key) = first_conflict(tags, fields) {
        return Err((
            LineErrorKind::KeyConflict,
            format!("key {} is used both as a tag and as a field", excerpt(key)),
        ));
    }
    Ok(())
}

/// The first key (in line order) that an earlier entry already has.
fn first_duplicate<T>(items: &[(String, T)]) -> Option<&str> {
    if items.len() <= SMALL_SET {
        items
            .iter()
            .enumerate()
            .find(|(i, (key, _))| items.iter().take(*i).any(|(earlier, _)| earlier == key))
            .map(|(_, (key, _))| key.as_str())
    } else {
        let mut seen = HashSet::with_capacity(items.len());
        items
            .iter()
            .map(|(key, _)| key.as_str())
            .find(|key| !seen.insert(*key))
    }
}

/// The first field key (in line order) that is also a tag key.
fn first_conflict<'a>(
    tags: &[(String, String)],
    fields: &'a [(String, FieldValue)],
) -> Option<&'a str> {
    if tags.is_empty() {
        return None;
    }
    let mut field_keys = fields.iter().map(|(key, _)| key.as_str());
    if tags.len().saturating_mul(fields.len()) <= SMALL_SET * SMALL_SET {
        field_keys.find(|key| tags.iter().any(|(tag, _)| tag == key))
    } else {
        let tag_keys: HashSet<&str> = tags.iter().map(|(key, _)| key.as_str()).collect();
        field_keys.find(|key| tag_keys.contains(key))
    }
}
