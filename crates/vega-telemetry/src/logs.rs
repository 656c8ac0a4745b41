//! Structured logs: one JSON object per line, in the shape operations tools
//! expect (SPEC §4, "Logs").
//!
//! Every line has exactly these top-level keys:
//!
//! | key        | value                                                        |
//! |------------|--------------------------------------------------------------|
//! | `datetime` | RFC 3339, UTC, millisecond precision (`2024-05-01T12:00:00.123Z`) |
//! | `level`    | `trace`, `debug`, `info`, `warn` or `error`                  |
//! | `service`  | the configured service name (default `vega`)                 |
//! | `trace_id` | from the innermost enclosing span that has it, else `null`   |
//! | `span_id`  | likewise                                                     |
//! | `user_id`  | likewise                                                     |
//! | `message`  | the event's message (empty if it has none)                   |
//! | `context`  | every other field of the event and of its enclosing spans, plus `target` (the module path) |
//!
//! In `context`, a field of an inner span overrides the same field of an
//! outer span, and a field of the event overrides both. Field values keep
//! their JSON type: integers and floats stay numbers, booleans stay booleans,
//! everything else becomes a string.
//!
//! The HTTP layer opens one span per request with `trace_id` and `span_id`
//! and declares `user_id = tracing::field::Empty`, recording it with
//! `Span::record` once the caller is authenticated; late records are picked
//! up by every event logged afterwards.
//!
//! # Secrets
//!
//! Callers must never put secrets (passwords, API keys, tokens, connection
//! strings with credentials) into log fields or messages. As a second line of
//! defence, the value of any field whose name contains `password`, `secret`,
//! `token` or `authorization` (case-insensitive) is replaced with `"***"`.
//! Messages are not inspected.

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Number, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::TelemetryError;

/// The service name used when none is configured.
pub const DEFAULT_SERVICE: &str = "vega";

/// What replaces the value of a field that looks like a secret.
const REDACTED: &str = "***";

/// Substrings of field names whose values are never logged.
const SECRET_MARKERS: [&str; 4] = ["password", "secret", "token", "authorization"];

/// Fields lifted from spans to the top level of a line.
const ID_FIELDS: [&str; 3] = ["trace_id", "span_id", "user_id"];

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (see the module documentation).
    Json,
    /// `tracing-subscriber`'s human-readable format.
    Pretty,
}

/// Parses an `EnvFilter` directive such as `info` or `info,vega_sync=debug`.
///
/// Unlike `EnvFilter::new`, an invalid directive is an error naming it, not
/// silently ignored.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| TelemetryError::InvalidFilter {
            directive: filter.to_string(),
            reason: e.to_string(),
        })
}

/// Installs the global subscriber, writing to stderr in `format`, filtered
/// by the `EnvFilter` directive `filter`. Also routes `log` crate records
/// into it. Fails if the filter is invalid or a global subscriber is
/// already installed. An empty `service` means [`DEFAULT_SERVICE`].
pub fn init(format: LogFormat, filter: &str, service: &'static str) -> Result<(), TelemetryError> {
    let filter = parse_filter(filter)?;
    let (json, pretty) = match format {
        LogFormat::Json => (Some(json_layer(service, io::stderr)), None),
        LogFormat::Pretty => (
            None,
            Some(tracing_subscriber::fmt::layer().with_writer(io::stderr)),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(pretty)
        .try_init()
        .map_err(|e| TelemetryError::SubscriberInstall(e.to_string()))
}

/// A layer writing JSON log lines for `service` to `writer`. An empty
/// `service` means [`DEFAULT_SERVICE`].
pub fn json_layer<W>(service: &'static str, writer: W) -> JsonLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    JsonLayer {
        service: if service.is_empty() {
            DEFAULT_SERVICE
        } else {
            service
        },
        writer,
    }
}

/// The layer behind [`json_layer`]: it keeps each span's fields in the
/// span's extensions (updated on `record`) and writes one JSON line per event.
#[derive(Debug)]
pub struct JsonLayer<W> {
    service: &'static str,
    writer: W,
}

/// The fields recorded so far on one span, stored in its extensions.
#[derive(Debug, Default)]
struct SpanFields(Map<String, Value>);

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut JsonVisitor {
            fields: &mut fields.0,
            skip_log_fields: false,
        });
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<SpanFields>().is_none() {
            extensions.insert(SpanFields::default());
        }
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor {
                fields: &mut fields.0,
                skip_log_fields: false,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());

        let mut ids: [Value; 3] = [Value::Null, Value::Null, Value::Null];
        let mut context = Map::new();
        let mut absorb = |fields: &Map<String, Value>, ids: &mut [Value; 3]| {
            for (name, value) in fields {
                match ID_FIELDS.iter().position(|f| f == name) {
                    Some(i) => ids[i] = value.clone(),
                    None => {
                        context.insert(name.clone(), value.clone());
                    }
                }
            }
        };
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    absorb(&fields.0, &mut ids);
                }
            }
        }
        let mut event_fields = Map::new();
        event.record(&mut JsonVisitor {
            fields: &mut event_fields,
            skip_log_fields: event.is_log(),
        });
        let message = event_fields
            .remove("message")
            .unwrap_or_else(|| Value::String(String::new()));
        absorb(&event_fields, &mut ids);
        context.insert(
            "target".to_string(),
            Value::String(metadata.target().to_string()),
        );

        let [trace_id, span_id, user_id] = ids;
        let mut line = String::with_capacity(256);
        let datetime = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let level = metadata.level().as_str().to_ascii_lowercase();
        let _ = write!(
            line,
            "{{\"datetime\":{},\"level\":{},\"service\":{},\"trace_id\":{},\"span_id\":{},\"user_id\":{},\"message\":{},\"context\":{}}}",
            Value::String(datetime),
            Value::String(level),
            Value::String(self.service.to_string()),
            trace_id,
            span_id,
            user_id,
            message,
            Value::Object(context),
        );
        line.push('\n');
        let mut writer = self.writer.make_writer_for(metadata);
        // A failing log sink must not take the process down; there is nowhere
        // better to report the failure.
        let _ = writer.write_all(line.as_bytes());
    }
}

/// Whether a field's value must not be logged.
fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|marker| name.contains(marker))
}

/// Records field values into a JSON map, keeping their JSON types.
struct JsonVisitor<'a> {
    fields: &'a mut Map<String, Value>,
    /// Drop the `log.*` fields that `tracing-log` adds to `log` records.
    skip_log_fields: bool,
}

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if self.skip_log_fields && name.starts_with("log.") {
            return;
        }
        let value = if is_secret(name) {
            Value::String(REDACTED.to_string())
        } else {
            value
        };
        self.fields.insert(name.to_string(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let json =
            Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, json);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let json =
            i64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, json);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let json =
            u64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, json);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// An in-memory log sink: a [`MakeWriter`] over a shared buffer, for tests
/// that assert on log output.
#[derive(Clone, Debug, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Everything written so far, each line parsed as JSON.
    pub fn json_lines(&self) -> Result<Vec<Value>, serde_json::Error> {
        self.contents().lines().map(serde_json::from_str).collect()
    }
}

/// The writer handed out by [`LogBuffer`].
#[derive(Debug)]
pub struct LogBufferWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBufferWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogBufferWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogBufferWriter(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::field::Empty;
    use tracing_subscriber::Registry;

    /// Runs `f` with a JSON subscriber for `service` installed on this thread
    /// only, and returns the parsed lines.
    fn capture(service: &'static str, f: impl FnOnce()) -> Vec<Value> {
        let buffer = LogBuffer::new();
        let subscriber = Registry::default().with(json_layer(service, buffer.clone()));
        tracing::subscriber::with_default(subscriber, f);
        buffer.json_lines().expect("every line is JSON")
    }

    fn one_line(f: impl FnOnce()) -> Value {
        let mut lines = capture("vega", f);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines.remove(0)
    }

    #[test]
    fn line_has_exactly_the_documented_top_level_keys() {
        let line = one_line(|| tracing::info!(asset = "sales", "hello"));
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "context", "datetime", "level", "message", "service", "span_id", "trace_id",
                "user_id"
            ]
        );
        assert_eq!(line["message"], "hello");
    }

    #[test]
    fn each_event_is_one_line() {
        let buffer = LogBuffer::new();
        let subscriber = Registry::default().with(json_layer("vega", buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            tracing::warn!("second\nwith a newline");
        });
        let text = buffer.contents();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        assert_eq!(
            buffer.json_lines().unwrap()[1]["message"],
            "second\nwith a newline"
        );
    }

    #[test]
    fn datetime_is_rfc3339_utc_with_milliseconds() {
        let line = one_line(|| tracing::info!("tick"));
        let datetime = line["datetime"].as_str().unwrap();
        assert_eq!(
            datetime.len(),
            "2024-05-01T12:00:00.123Z".len(),
            "{datetime}"
        );
        assert!(datetime.ends_with('Z'), "{datetime}");
        assert_eq!(&datetime[19..20], ".", "{datetime}");
        let parsed = chrono::DateTime::parse_from_rfc3339(datetime).unwrap();
        let age = Utc::now().signed_duration_since(parsed);
        assert!(age.num_seconds().abs() < 60, "{datetime}");
    }

    #[test]
    fn level_is_lower_case() {
        let lines = capture("vega", || {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
        });
        let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
        assert_eq!(levels, ["error", "warn", "info"]);
    }

    #[test]
    fn service_is_the_configured_name() {
        let lines = capture("vega-worker", || tracing::info!("x"));
        assert_eq!(lines[0]["service"], "vega-worker");
    }

    #[test]
    fn empty_service_means_vega() {
        let lines = capture("", || tracing::info!("x"));
        assert_eq!(lines[0]["service"], DEFAULT_SERVICE);
    }

    #[test]
    fn ids_are_null_outside_any_span() {
        let line = one_line(|| tracing::info!("no request"));
        assert_eq!(line["trace_id"], Value::Null);
        assert_eq!(line["span_id"], Value::Null);
        assert_eq!(line["user_id"], Value::Null);
    }

    #[test]
    fn ids_come_from_the_enclosing_span_and_stay_out_of_context() {
        let line = one_line(|| {
            let span = tracing::info_span!(
                "request",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = "00f067aa0ba902b7",
                user_id = Empty
            );
            let _guard = span.enter();
            tracing::info!("handled");
        });
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["span_id"], "00f067aa0ba902b7");
        assert_eq!(
            line["user_id"],
            Value::Null,
            "declared Empty and never recorded"
        );
        let context = line["context"].as_object().unwrap();
        for id in ID_FIELDS {
            assert!(
                !context.contains_key(id),
                "{id} leaked into context: {context:?}"
            );
        }
    }

    #[test]
    fn user_id_recorded_late_appears_in_later_lines() {
        let lines = capture("vega", || {
            let span =
                tracing::info_span!("request", trace_id = "t1", span_id = "s1", user_id = Empty);
            let _guard = span.enter();
            tracing::info!("before auth");
            span.record("user_id", "alice");
            tracing::info!("after auth");
        });
        assert_eq!(lines[0]["user_id"], Value::Null);
        assert_eq!(lines[1]["user_id"], "alice");
        assert_eq!(lines[1]["trace_id"], "t1");
    }

    #[test]
    fn innermost_span_with_an_id_wins() {
        let line = one_line(|| {
            let outer = tracing::info_span!(
                "request",
                trace_id = "outer-trace",
                span_id = "outer-span",
                user_id = "bob"
            );
            let _o = outer.enter();
            let inner = tracing::info_span!("call", span_id = "inner-span");
            let _i = inner.enter();
            let innermost = tracing::info_span!("step", asset = "sales");
            let _s = innermost.enter();
            tracing::info!("deep");
        });
        assert_eq!(line["span_id"], "inner-span");
        assert_eq!(
            line["trace_id"], "outer-trace",
            "inherited from the outer span"
        );
        assert_eq!(line["user_id"], "bob");
    }

    #[test]
    fn context_merges_span_and_event_fields_with_target() {
        let line = one_line(|| {
            let span = tracing::info_span!("request", method = "GET", route = "/assets/{name}");
            let _guard = span.enter();
            tracing::info!(
                asset = "sales",
                engine = "duckdb",
                rows_returned = 42u64,
                "query done"
            );
        });
        let context = &line["context"];
        assert_eq!(context["method"], "GET");
        assert_eq!(context["route"], "/assets/{name}");
        assert_eq!(context["asset"], "sales");
        assert_eq!(context["engine"], "duckdb");
        assert_eq!(context["rows_returned"], 42);
        assert_eq!(context["target"], module_path!());
        assert!(context.get("message").is_none());
    }

    #[test]
    fn event_fields_override_span_fields_and_inner_spans_override_outer() {
        let line = one_line(|| {
            let outer = tracing::info_span!("outer", status = "outer", engine = "trino");
            let _o = outer.enter();
            let inner = tracing::info_span!("inner", engine = "duckdb");
            let _i = inner.enter();
            tracing::info!(status = 200u16, "done");
        });
        assert_eq!(line["context"]["engine"], "duckdb");
        assert_eq!(line["context"]["status"], 200);
    }

    #[test]
    fn field_values_keep_their_json_types() {
        let line = one_line(|| {
            tracing::info!(
                duration_ms = 12.5f64,
                rows_returned = 7u64,
                offset = -3i64,
                cached = true,
                asset = "sales",
                huge = u128::MAX,
                not_a_number = f64::NAN,
                path = ?std::path::Path::new("/data"),
                "typed"
            );
        });
        let context = &line["context"];
        assert_eq!(context["duration_ms"], serde_json::json!(12.5));
        assert!(context["rows_returned"].is_u64());
        assert_eq!(context["offset"], -3);
        assert_eq!(context["cached"], true);
        assert_eq!(context["asset"], "sales");
        assert_eq!(
            context["huge"],
            u128::MAX.to_string(),
            "too big for JSON numbers"
        );
        assert_eq!(context["not_a_number"], "NaN");
        assert_eq!(context["path"], "\"/data\"");
    }

    #[test]
    fn span_fields_recorded_late_keep_their_type() {
        let line = one_line(|| {
            let span = tracing::info_span!("request", status = Empty, duration_ms = Empty);
            let _guard = span.enter();
            span.record("status", 503u16);
            span.record("duration_ms", 1.25f64);
            tracing::info!("finished");
        });
        assert_eq!(line["context"]["status"], 503);
        assert_eq!(line["context"]["duration_ms"], serde_json::json!(1.25));
    }

    #[test]
    fn secret_looking_fields_are_redacted_in_events_and_spans() {
        let buffer = LogBuffer::new();
        let subscriber = Registry::default().with(json_layer("vega", buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!("connect", db_password = "hunter2", authorization = Empty);
            let _guard = span.enter();
            span.record("authorization", "Bearer abc.def");
            tracing::info!(
                api_token = "tok-123",
                client_SECRET = "s3cr3t",
                password_len = 7u64,
                asset = "sales",
                "connecting"
            );
        });
        let text = buffer.contents();
        for secret in ["hunter2", "abc.def", "tok-123", "s3cr3t"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let context = &buffer.json_lines().unwrap()[0]["context"];
        for name in [
            "db_password",
            "authorization",
            "api_token",
            "client_SECRET",
            "password_len",
        ] {
            assert_eq!(context[name], REDACTED, "{name}");
        }
        assert_eq!(context["asset"], "sales", "ordinary fields are untouched");
    }

    #[test]
    fn log_crate_records_use_their_own_target_without_log_fields() {
        use tracing_log::log;
        let line = one_line(|| {
            let record = log::Record::builder()
                .args(format_args!("from log"))
                .level(log::Level::Warn)
                .target("hyper::client")
                .module_path(Some("hyper::client"))
                .file(Some("client.rs"))
                .line(Some(7))
                .build();
            tracing_log::format_trace(&record).unwrap();
        });
        assert_eq!(line["message"], "from log");
        assert_eq!(line["level"], "warn");
        assert_eq!(line["context"]["target"], "hyper::client");
        let context = line["context"].as_object().unwrap();
        assert!(
            context.keys().all(|k| !k.starts_with("log.")),
            "{context:?}"
        );
    }

    #[test]
    fn filter_limits_events_when_composed() {
        let buffer = LogBuffer::new();
        let subscriber = Registry::default()
            .with(parse_filter("warn").unwrap())
            .with(json_layer("vega", buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("dropped");
            tracing::warn!("kept");
        });
        let lines = buffer.json_lines().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["message"], "kept");
    }

    #[test]
    fn invalid_filter_is_an_error_naming_it() {
        let err = parse_filter("info,vega_sync=loud").unwrap_err();
        assert!(matches!(err, TelemetryError::InvalidFilter { .. }));
        assert!(err.to_string().contains("info,vega_sync=loud"), "{err}");
    }

    #[test]
    fn init_rejects_an_invalid_filter_before_installing_anything() {
        let err = init(LogFormat::Json, "vega=notalevel", "vega").unwrap_err();
        assert!(err.to_string().contains("vega=notalevel"), "{err}");
    }
}
