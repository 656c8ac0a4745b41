//! The wire format of Trino's client protocol: the `QueryResults` document
//! every statement request answers with, its columns, statistics and
//! errors, the header names, and the encoding of session properties in
//! headers (`name=value`, the value percent-encoded).

use serde::Deserialize;
use serde_json::Value;

/// The path of the statement resource; the SQL is the POST body.
pub const STATEMENT_PATH: &str = "/v1/statement";

// Header names, lower-case as HTTP/2 and the `http` crate want them (HTTP
// header names are case-insensitive).
pub const HEADER_USER: &str = "x-trino-user";
pub const HEADER_SOURCE: &str = "x-trino-source";
pub const HEADER_CATALOG: &str = "x-trino-catalog";
pub const HEADER_SCHEMA: &str = "x-trino-schema";
pub const HEADER_SESSION: &str = "x-trino-session";
pub const HEADER_CLIENT_TAGS: &str = "x-trino-client-tags";
pub const HEADER_CLIENT_INFO: &str = "x-trino-client-info";
pub const HEADER_SET_SESSION: &str = "x-trino-set-session";
pub const HEADER_CLEAR_SESSION: &str = "x-trino-clear-session";
pub const HEADER_SET_CATALOG: &str = "x-trino-set-catalog";
pub const HEADER_SET_SCHEMA: &str = "x-trino-set-schema";

/// One answer to a statement request (Trino's `QueryResults`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResults {
    pub id: String,
    #[serde(default)]
    pub info_uri: Option<String>,
    #[serde(default)]
    pub next_uri: Option<String>,
    #[serde(default)]
    pub columns: Option<Vec<Column>>,
    #[serde(default)]
    pub data: Option<Vec<Vec<Value>>>,
    #[serde(default)]
    pub stats: Option<StatementStats>,
    #[serde(default)]
    pub error: Option<QueryError>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
    #[serde(default)]
    pub update_type: Option<String>,
    #[serde(default)]
    pub update_count: Option<u64>,
}

/// A result column: its name, its type as Trino prints it
/// (`decimal(10,2)`, `timestamp(3) with time zone`) and the structured
/// signature of that type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default)]
    pub type_signature: Option<TypeSignature>,
}

/// Trino's `ClientTypeSignature`: the raw type name and its arguments
/// (lengths, precisions, element types), kept as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeSignature {
    pub raw_type: String,
    #[serde(default)]
    pub arguments: Vec<Value>,
}

/// The part of `stats` the client reads; Trino sends more.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementStats {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub elapsed_time_millis: Option<u64>,
    #[serde(default)]
    pub queued_time_millis: Option<u64>,
    #[serde(default)]
    pub cpu_time_millis: Option<u64>,
    #[serde(default)]
    pub processed_rows: Option<u64>,
    #[serde(default)]
    pub processed_bytes: Option<u64>,
}

/// Trino's `QueryError`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error_code: i64,
    #[serde(default)]
    pub error_name: String,
    #[serde(default)]
    pub error_type: String,
    /// The Java exception behind the error (type, message, stack); kept
    /// as JSON and never shown to users.
    #[serde(default)]
    pub failure_info: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    #[serde(default)]
    pub message: String,
}

/// `name=value` with the value percent-encoded, as `X-Trino-Session`
/// carries one property.
pub fn encode_session_property(name: &str, value: &str) -> String {
    format!("{name}={}", percent_encode(value))
}

/// Splits an `X-Trino-Set-Session` value (`name=value`, the value
/// percent-encoded); `None` when there is no `=`.
pub fn decode_session_property(header: &str) -> Option<(String, String)> {
    let (name, value) = header.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some((name.to_string(), percent_decode(value.trim())))
}

/// Percent-encodes everything but unreserved characters (RFC 3986), as
/// form encoding does except that a space becomes `%20`.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (a space in form encoding, which Trino's
/// Java side produces); invalid escapes are kept as they are.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as Trino 4xx sends it for a page of a running query.
    const RUNNING_PAGE: &str = r#"{
      "id": "20240521_101530_00012_x7k2p",
      "infoUri": "http://trino:8080/ui/query.html?20240521_101530_00012_x7k2p",
      "partialCancelUri": "http://trino:8080/v1/stage/20240521_101530_00012_x7k2p.0",
      "nextUri": "http://trino:8080/v1/statement/executing/20240521_101530_00012_x7k2p/y0d7a/2",
      "columns": [
        {"name": "id", "type": "bigint", "typeSignature": {"rawType": "bigint", "arguments": []}},
        {"name": "price", "type": "decimal(10,2)", "typeSignature": {"rawType": "decimal",
          "arguments": [{"kind": "LONG", "value": 10}, {"kind": "LONG", "value": 2}]}}
      ],
      "data": [[1, "9.99"], [2, null]],
      "stats": {"state": "RUNNING", "queued": false, "scheduled": true, "nodes": 1,
        "totalSplits": 4, "queuedSplits": 0, "runningSplits": 1, "completedSplits": 3,
        "cpuTimeMillis": 12, "wallTimeMillis": 30, "queuedTimeMillis": 1,
        "elapsedTimeMillis": 45, "processedRows": 2, "processedBytes": 64,
        "physicalInputBytes": 64, "peakMemoryBytes": 100, "spilledBytes": 0},
      "warnings": []
    }"#;

    const FAILED_PAGE: &str = r#"{
      "id": "20240521_101530_00013_x7k2p",
      "infoUri": "http://trino:8080/ui/query.html?20240521_101530_00013_x7k2p",
      "stats": {"state": "FAILED", "queued": false, "scheduled": false, "nodes": 0,
        "totalSplits": 0, "elapsedTimeMillis": 3},
      "error": {
        "message": "line 1:1: mismatched input 'SELEC'. Expecting: 'ALTER', 'SELECT', <query>",
        "errorCode": 1, "errorName": "SYNTAX_ERROR", "errorType": "USER_ERROR",
        "errorLocation": {"lineNumber": 1, "columnNumber": 1},
        "failureInfo": {"type": "io.trino.sql.parser.ParsingException",
          "message": "line 1:1: mismatched input 'SELEC'", "suppressed": [], "stack": []}
      },
      "warnings": []
    }"#;

    #[test]
    fn parses_a_running_page() {
        let page: QueryResults = serde_json::from_str(RUNNING_PAGE).expect("page");
        assert_eq!(page.id, "20240521_101530_00012_x7k2p");
        assert!(page.next_uri.as_deref().unwrap_or("").ends_with("/2"));
        let columns = page.columns.expect("columns");
        assert_eq!(columns[1].data_type, "decimal(10,2)");
        assert_eq!(
            columns[1]
                .type_signature
                .as_ref()
                .map(|s| s.raw_type.as_str()),
            Some("decimal")
        );
        assert_eq!(page.data.expect("data").len(), 2);
        let stats = page.stats.expect("stats");
        assert_eq!(stats.state, "RUNNING");
        assert_eq!(stats.processed_rows, Some(2));
        assert!(page.error.is_none());
    }

    #[test]
    fn parses_a_failed_page() {
        let page: QueryResults = serde_json::from_str(FAILED_PAGE).expect("page");
        assert!(page.next_uri.is_none());
        let error = page.error.expect("error");
        assert_eq!(error.error_name, "SYNTAX_ERROR");
        assert_eq!(error.error_type, "USER_ERROR");
        assert_eq!(error.error_code, 1);
        assert!(error.message.contains("mismatched input 'SELEC'"));
        assert!(error.failure_info.is_some());
    }

    #[test]
    fn parses_a_queued_page_without_columns() {
        let page: QueryResults = serde_json::from_str(
            r#"{"id": "q1", "nextUri": "http://t/v1/statement/queued/q1/a/1",
                "stats": {"state": "QUEUED"}, "warnings": []}"#,
        )
        .expect("page");
        assert!(page.columns.is_none());
        assert!(page.data.is_none());
    }

    #[test]
    fn session_properties_round_trip_through_headers() {
        let header = encode_session_property("query_max_run_time", "10 m, then=stop");
        assert_eq!(header, "query_max_run_time=10%20m%2C%20then%3Dstop");
        assert_eq!(
            decode_session_property(&header),
            Some(("query_max_run_time".into(), "10 m, then=stop".into()))
        );
        assert_eq!(
            decode_session_property("a=b+c%2"),
            Some(("a".into(), "b c%2".into()))
        );
        assert_eq!(decode_session_property("novalue"), None);
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }
}
