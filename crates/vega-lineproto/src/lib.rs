//! InfluxDB line protocol, as InfluxDB 1.x and 2.x clients and Telegraf
//! send it to `/write` and `/api/v2/write`, parsed into [`vega_core::Point`]s.
//!
//! [`parse`] reads a whole request body. Every valid line becomes a
//! [`ParsedPoint`]; every bad line becomes one [`LineError`] and never stops
//! the others (partial writes, as in InfluxDB). The parser is strict: what it
//! cannot read exactly is rejected, never guessed.
//!
//! ```
//! use vega_core::FieldValue;
//! use vega_lineproto::{parse, Precision};
//!
//! let body = b"cpu,host=a usage=1.5,n=2i 1700000000\nmem used\n";
//! let parsed = parse(body, Precision::Seconds, 0);
//!
//! let cpu = &parsed.points[0];
//! assert_eq!(cpu.measurement, "cpu");
//! assert_eq!(cpu.point.tags, vec![("host".to_string(), "a".to_string())]);
//! assert_eq!(cpu.point.fields[1], ("n".to_string(), FieldValue::Integer(2)));
//! assert_eq!(cpu.point.time_ns, 1_700_000_000_000_000_000);
//!
//! let error = &parsed.errors[0];
//! assert_eq!(error.kind.as_str(), "bad_field");
//! assert_eq!(error.to_string(), "line 2: field `used` has no '=' and value");
//! ```
//!
//! # Grammar
//!
//! ```text
//! body        = line *( "\n" line )             ; a trailing "\r" is dropped
//! line        = *( " " / "\t" ) ( point / comment / "" )
//! comment     = "#" *any
//! point       = measurement *( "," tag ) 1*" " field *( "," field )
//!               [ 1*" " timestamp ] *" "
//! tag         = tag-key "=" tag-value           ; neither may be empty
//! field       = field-key "=" field-value
//! field-value = float / integer "i" / unsigned "u" / string / boolean
//! float       = ( DIGIT / "-" / "." ) *( DIGIT / "." / "e" / "E" / "+" / "-" )
//!                                               ; `1`, `1.`, `-1.5e3`: a finite f64
//! integer     = [ "-" ] 1*digit                 ; i64 range
//! unsigned    = 1*digit                         ; u64 range
//! string      = DQUOTE *char DQUOTE
//! boolean     = t / T / true / True / TRUE / f / F / false / False / FALSE
//! timestamp   = [ "-" ] 1*digit                 ; in the request's precision
//! ```
//!
//! A float is any text of that shape that Rust's `f64` parser accepts; NaN,
//! the infinities and values beyond the `f64` range are rejected. Timestamps
//! are scaled to nanoseconds with overflow detection and must fall in the
//! range InfluxDB accepts ([`MIN_TIME_NS`]..=[`MAX_TIME_NS`]). A line
//! without a timestamp gets the caller's default time.
//!
//! # Escapes
//!
//! | element | a backslash escapes |
//! |---|---|
//! | measurement | comma, space |
//! | tag key, tag value, field key | comma, equals sign, space |
//! | string field value | double quote, backslash |
//!
//! A backslash before any other character is an ordinary character, and
//! the character after it keeps its meaning: the tag value `a\\,b` reads as
//! `a\,b` (a literal backslash, then an escaped comma). So in string values
//! a doubled backslash is one backslash (`"C:\\temp"` is `C:\temp`) while a
//! lone one stays (`"C:\temp"` is `C:\temp` too), and in names a doubled
//! backslash stays two backslashes.
//!
//! As the InfluxDB documentation says, line protocol has no newlines inside
//! values: a line break always ends the line, even inside double quotes.
//!
//! # Errors
//!
//! Each bad line gives one [`LineError`] whose [`LineErrorKind`] has a stable
//! label ([`LineErrorKind::as_str`]) for metrics:
//!
//! | label | the line… |
//! |---|---|
//! | `invalid_utf8` | is not valid UTF-8 |
//! | `missing_measurement` | starts with a comma |
//! | `missing_fields` | has no field set |
//! | `bad_tag` | has a tag without `=`, with an empty key or value, or with an unescaped `=` in its value |
//! | `bad_field` | has a field without `=` or with an empty key |
//! | `bad_field_value` | has a field value of no known type, or out of range |
//! | `bad_escape` | ends with a backslash that escapes nothing |
//! | `unterminated_string` | has a string value without its closing quote |
//! | `bad_timestamp` | has a timestamp that is not an integer or is out of range |
//! | `duplicate_tag` | has the same tag key twice |
//! | `duplicate_field` | has the same field key twice |
//! | `reserved_key` | has a tag or field named `time` (Vega's timestamp column) |
//! | `key_conflict` | uses one key as a tag and as a field |
//! | `trailing_garbage` | has text after the timestamp |
//!
//! Syntax is checked left to right and the first problem is reported; the
//! key checks (reserved, duplicate, conflict) come after a line's syntax is
//! known to be good. Messages quote the offending text, shortened to
//! [`EXCERPT_CHARS`] characters.
//!
//! Tags and fields keep the order of the line; sorting tags is the caller's
//! choice.

mod error;
mod parse;
mod precision;
mod value;

pub use error::{LineError, LineErrorKind, EXCERPT_CHARS};
pub use parse::{parse, Parsed, ParsedPoint, RESERVED_KEY};
pub use precision::{Precision, UnknownPrecision};
pub use value::{MAX_TIME_NS, MIN_TIME_NS};

#[cfg(test)]
mod tests;
