//! The batch source of the HTTP connector: fetches pages one at a time,
//! turns each page's records into Arrow batches, and follows the source's
//! pagination.
//!
//! Memory is bounded by one page (at most `max_response_bytes` of body)
//! plus its batches: a page is fetched only when the batches of the
//! previous one have been taken.
//!
//! Errors in the data name the page by its URL without the query string,
//! its 1-based number in the read, and the 1-based record (for NDJSON the
//! line) within the page, e.g. `http://host/v1/items page 3 record 17`.

use std::collections::{BTreeSet, VecDeque};
use std::io::Cursor;
use std::sync::Arc;

use arrow::csv::reader::Format;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use reqwest::header::LINK;
use reqwest::Url;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vega_connectors::arrow_util::{arrow_message, check_column_names, denull_schema, json_decoder};
use vega_connectors::file::source::INFER_RECORDS;
use vega_connectors::{BatchSource, ConnectorError, IncrementalSource, Watermark};

use crate::client::{describe, HttpClient, Page};
use crate::config::{
    HttpConnectionParams, HttpFormat, HttpSource, IncrementalSettings, Pagination,
};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads an HTTP source page by page.
pub struct HttpBatchSource {
    client: HttpClient,
    source: HttpSource,
    /// The first request, base of offset and cursor requests.
    first_url: Url,
    /// The next request; `None` once the last page has been fetched.
    next: Option<Url>,
    /// Pages fetched so far.
    pages: u64,
    max_pages: u64,
    /// Records seen so far for offset pagination.
    offset: u64,
    /// The cursor of the last cursor-paginated request.
    last_cursor: Option<String>,
    /// Known once a page with records has been read.
    schema: Option<SchemaRef>,
    csv_format: Format,
    queue: VecDeque<RecordBatch>,
    incremental: Option<IncrementalState>,
    failed: Option<String>,
}

impl std::fmt::Debug for HttpBatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBatchSource")
            .field("first_url", &describe(&self.first_url))
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl HttpBatchSource {
    /// Opens a full read: fetches pages until the first records arrive and
    /// infers the schema from them. A source with no records at all is
    /// refused, since its columns cannot be known.
    pub fn open(params: &HttpConnectionParams, source: HttpSource) -> Result<Self, ConnectorError> {
        let mut reader = Self::start(params, source, None)?;
        reader.fill_until_schema()?;
        if reader.schema.is_none() {
            return Err(ConnectorError::BadData {
                location: describe(&reader.first_url),
                message: "the source returned no records, so its columns cannot be inferred".into(),
            });
        }
        Ok(reader)
    }

    /// Opens an incremental read from `since`. With nothing new the source
    /// has an empty schema and yields no batches.
    pub fn open_incremental(
        params: &HttpConnectionParams,
        source: HttpSource,
        since: &Watermark,
    ) -> Result<Self, ConnectorError> {
        let Some(settings) = source.incremental.clone() else {
            return Err(ConnectorError::Unsupported {
                message: "this HTTP source has no \"incremental\" settings (cursor_param, cursor_field); only full reads are possible".into(),
            });
        };
        let mut reader = Self::start(
            params,
            source,
            Some(IncrementalState::new(settings, since)?),
        )?;
        reader.fill_until_schema()?;
        if reader.schema.is_none() {
            reader.schema = Some(Arc::new(Schema::empty()));
        }
        Ok(reader)
    }

    fn start(
        params: &HttpConnectionParams,
        source: HttpSource,
        incremental: Option<IncrementalState>,
    ) -> Result<Self, ConnectorError> {
        let mut first_url = params.url_for(&source.path)?;
        let mut extra: Vec<(String, String)> = source.query.clone();
        if let Some(Pagination::Offset {
            limit_param,
            offset_param,
            limit,
        }) = &source.pagination
        {
            extra.push((limit_param.clone(), limit.to_string()));
            extra.push((offset_param.clone(), "0".into()));
        }
        if let Some(state) = &incremental {
            if let Some(value) = state.since_param()? {
                extra.push((state.settings.cursor_param.clone(), value));
            }
        }
        set_params(&mut first_url, &extra);
        let client = HttpClient::new(params)?;
        let csv_format = Format::default()
            .with_header(source.csv.header)
            .with_delimiter(source.csv.delimiter);
        Ok(Self {
            client,
            next: Some(first_url.clone()),
            first_url,
            source,
            pages: 0,
            max_pages: params.max_pages,
            offset: 0,
            last_cursor: None,
            schema: None,
            csv_format,
            queue: VecDeque::new(),
            incremental,
            failed: None,
        })
    }

    fn fill_until_schema(&mut self) -> Result<(), ConnectorError> {
        while self.schema.is_none() && self.fetch_page()? {}
        Ok(())
    }

    /// Fetches the next page and queues its batches; `false` at the end.
    /// Response text quoted in an error has the secret header values
    /// scrubbed, in case the server echoes them.
    fn fetch_page(&mut self) -> Result<bool, ConnectorError> {
        self.fetch_page_unscrubbed().map_err(|e| match e {
            ConnectorError::BadData { location, message } => ConnectorError::BadData {
                location: self.client.scrub(&location),
                message: self.client.scrub(&message),
            },
            other => other,
        })
    }

    fn fetch_page_unscrubbed(&mut self) -> Result<bool, ConnectorError> {
        let Some(url) = self.next.take() else {
            return Ok(false);
        };
        if self.pages >= self.max_pages {
            return Err(ConnectorError::Remote {
                what: describe(&self.first_url),
                message: format!(
                    "the source has more than max_pages = {} pages; the read stopped rather than return part of the data (raise the connection's max_pages)",
                    self.max_pages
                ),
                permanent: true,
            });
        }
        self.pages += 1;
        let number = self.pages;
        let page = self.client.get(&url)?;
        let at = format!("{} page {number}", describe(&page.url));
        match self.source.format {
            HttpFormat::Json => {
                let mut doc: Value =
                    serde_json::from_slice(strip_bom(&page.body)).map_err(|e| {
                        ConnectorError::BadData {
                            location: format!("{at} line {} column {}", e.line(), e.column()),
                            message: json_message(&e),
                        }
                    })?;
                self.next = self.next_request(&page, Some(&doc), &at)?;
                let records = take_records(&mut doc, self.source.records.as_deref(), &at)?;
                let count = records.len();
                self.after_count(count as u64, &at)?;
                let numbered = records
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (i + 1, v))
                    .collect();
                self.queue_records(numbered, &at, "record")?;
            }
            HttpFormat::Ndjson => {
                let records = ndjson_records(&page.body, &at)?;
                self.next = self.next_request(&page, None, &at)?;
                self.after_count(records.len() as u64, &at)?;
                self.queue_records(records, &at, "line")?;
            }
            HttpFormat::Csv => {
                let rows = self.queue_csv(strip_bom(&page.body), &at)?;
                self.next = self.next_request(&page, None, &at)?;
                self.after_count(rows, &at)?;
            }
        }
        Ok(true)
    }

    /// Offset pagination: a short page ends the read, a full one moves on.
    fn after_count(&mut self, count: u64, at: &str) -> Result<(), ConnectorError> {
        let Some(Pagination::Offset {
            offset_param,
            limit,
            ..
        }) = &self.source.pagination
        else {
            return Ok(());
        };
        if count < *limit {
            self.next = None;
            return Ok(());
        }
        self.offset = self
            .offset
            .checked_add(count)
            .ok_or_else(|| ConnectorError::BadData {
                location: at.to_string(),
                message: "the offset overflowed".into(),
            })?;
        let mut url = self.first_url.clone();
        set_params(&mut url, &[(offset_param.clone(), self.offset.to_string())]);
        self.next = Some(url);
        Ok(())
    }

    /// The request after `page`, from the pagination (offset pagination is
    /// settled in [`Self::after_count`]).
    fn next_request(
        &mut self,
        page: &Page,
        doc: Option<&Value>,
        at: &str,
    ) -> Result<Option<Url>, ConnectorError> {
        let bad = |message: String| ConnectorError::BadData {
            location: at.to_string(),
            message,
        };
        let link = match &self.source.pagination {
            None | Some(Pagination::Offset { .. }) => return Ok(None),
            Some(Pagination::NextLink { pointer }) => match doc.and_then(|d| d.pointer(pointer)) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
                Some(Value::String(s)) => s.trim().to_string(),
                Some(other) => {
                    return Err(bad(format!(
                        "the next link at '{pointer}' is {}, not a URL string",
                        json_kind(other)
                    )))
                }
            },
            Some(Pagination::LinkHeader) => {
                let mut found = None;
                for value in page.headers.get_all(LINK) {
                    let text = value
                        .to_str()
                        .map_err(|_| bad("a Link header is not valid text".into()))?;
                    if let Some(target) = next_in_link_header(text) {
                        found = Some(target);
                        break;
                    }
                }
                match found {
                    Some(target) => target,
                    None => return Ok(None),
                }
            }
            Some(Pagination::Cursor {
                cursor_param,
                pointer,
            }) => {
                let cursor = match doc.and_then(|d| d.pointer(pointer)) {
                    None | Some(Value::Null) => return Ok(None),
                    Some(Value::String(s)) if s.is_empty() => return Ok(None),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(other) => {
                        return Err(bad(format!(
                            "the cursor at '{pointer}' is {}, not a string or number",
                            json_kind(other)
                        )))
                    }
                };
                if self.last_cursor.as_deref() == Some(cursor.as_str()) {
                    return Err(bad(format!(
                        "the cursor at '{pointer}' did not change from the previous page; the read stopped to avoid a loop"
                    )));
                }
                let mut url = self.first_url.clone();
                set_params(&mut url, &[(cursor_param.clone(), cursor.clone())]);
                self.last_cursor = Some(cursor);
                return Ok(Some(url));
            }
        };
        let url = page
            .url
            .join(&link)
            .map_err(|e| bad(format!("the next link is not a valid URL: {e}")))?;
        if !self.client.same_origin(&url) {
            return Err(bad(format!(
                "the next link goes to another origin ({}); it is not followed, so the connection's headers are not sent there",
                describe(&url)
            )));
        }
        if url == page.url {
            return Err(bad(
                "the next link points at the same page; the read stopped to avoid a loop".into(),
            ));
        }
        Ok(Some(url))
    }

    /// Filters (incremental), infers the schema if needed, and queues the
    /// records as batches. `numbered` pairs each record with its 1-based
    /// number (`unit` says what the number counts).
    fn queue_records(
        &mut self,
        numbered: Vec<(usize, Value)>,
        at: &str,
        unit: &str,
    ) -> Result<(), ConnectorError> {
        let mut kept = Vec::with_capacity(numbered.len());
        for (n, record) in numbered {
            if let Some(state) = &mut self.incremental {
                if !state.admit(&record, &format!("{at} {unit} {n}"))? {
                    continue;
                }
            }
            kept.push((n, record));
        }
        if kept.is_empty() {
            return Ok(());
        }
        let schema = match &self.schema {
            Some(s) => s.clone(),
            None => {
                let sample = kept.iter().take(INFER_RECORDS).map(|(_, v)| v);
                let schema = infer_json(at, sample)?;
                self.schema = Some(schema.clone());
                schema
            }
        };
        for chunk in kept.chunks(self.source.batch_size) {
            let values: Vec<&Value> = chunk.iter().map(|(_, v)| v).collect();
            let mut decoder = json_decoder(&schema, chunk.len())?;
            let result = decoder.serialize(&values).and_then(|()| decoder.flush());
            match result {
                Ok(Some(batch)) => self.queue.push_back(batch),
                Ok(None) => {}
                Err(e) => {
                    for (n, value) in chunk {
                        let mut single = json_decoder(&schema, 1)?;
                        let result = single
                            .serialize(std::slice::from_ref(value))
                            .and_then(|()| single.flush());
                        if let Err(e) = result {
                            return Err(ConnectorError::BadData {
                                location: format!("{at} {unit} {n}"),
                                message: format!(
                                    "does not fit the columns inferred from the first page: {}",
                                    arrow_message(&e)
                                ),
                            });
                        }
                    }
                    return Err(ConnectorError::BadData {
                        location: at.to_string(),
                        message: arrow_message(&e),
                    });
                }
            }
        }
        Ok(())
    }

    /// Decodes a CSV page into queued batches; returns its data rows.
    fn queue_csv(&mut self, body: &[u8], at: &str) -> Result<u64, ConnectorError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(0);
        }
        let bad = |e: ArrowError| ConnectorError::BadData {
            location: at.to_string(),
            message: arrow_message(&e),
        };
        let schema = match &self.schema {
            Some(schema) => {
                if self.source.csv.header {
                    let (header, _) = self
                        .csv_format
                        .infer_schema(Cursor::new(body), Some(0))
                        .map_err(bad)?;
                    let expected: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    let found: Vec<&str> =
                        header.fields().iter().map(|f| f.name().as_str()).collect();
                    if expected != found {
                        return Err(ConnectorError::BadData {
                            location: format!("{at} line 1"),
                            message: format!(
                                "the header [{}] differs from the first page's [{}]",
                                found.join(", "),
                                expected.join(", ")
                            ),
                        });
                    }
                }
                schema.clone()
            }
            None => {
                let (inferred, rows) = self
                    .csv_format
                    .infer_schema(Cursor::new(body), Some(INFER_RECORDS))
                    .map_err(bad)?;
                if rows == 0 {
                    return Ok(0);
                }
                check_column_names(&inferred, &format!("{at} line 1"))?;
                let schema = Arc::new(denull_schema(&inferred));
                self.schema = Some(schema.clone());
                schema
            }
        };
        let reader = arrow::csv::ReaderBuilder::new(schema)
            .with_format(self.csv_format.clone())
            .with_batch_size(self.source.batch_size)
            .build(Cursor::new(body))
            .map_err(bad)?;
        let mut rows = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| ConnectorError::BadData {
                location: at.to_string(),
                message: format!(
                    "does not fit the columns inferred from the first page: {}",
                    arrow_message(&e)
                ),
            })?;
            rows += batch.num_rows() as u64;
            self.queue.push_back(batch);
        }
        Ok(rows)
    }

    fn read_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            if let Some(batch) = self.queue.pop_front() {
                return Ok(Some(batch));
            }
            if !self.fetch_page()? {
                return Ok(None);
            }
        }
    }
}

impl BatchSource for HttpBatchSource {
    fn schema(&self) -> SchemaRef {
        self.schema
            .clone()
            .unwrap_or_else(|| Arc::new(Schema::empty()))
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if let Some(previous) = &self.failed {
            return Err(ConnectorError::BadData {
                location: describe(&self.first_url),
                message: format!("the read already failed: {previous}"),
            });
        }
        let result = self.read_batch();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }
}

impl IncrementalSource for HttpBatchSource {
    fn watermark(&self) -> Watermark {
        match &self.incremental {
            Some(state) => state.watermark(),
            None => Watermark::default(),
        }
    }
}

// ---------------------------------------------------------------- incremental

/// The watermark of an incremental read as records go by.
struct IncrementalState {
    settings: IncrementalSettings,
    since: Watermark,
    since_keys: BTreeSet<String>,
    value: Option<Value>,
    keys: BTreeSet<String>,
}

impl IncrementalState {
    fn new(settings: IncrementalSettings, since: &Watermark) -> Result<Self, ConnectorError> {
        if let Some(v) = &since.value {
            if !(v.is_string() || v.is_number()) {
                return Err(ConnectorError::Internal {
                    message: format!(
                        "the stored watermark is {}, not a string or number",
                        json_kind(v)
                    ),
                });
            }
        }
        let since_keys: BTreeSet<String> = since.keys_at_value.iter().cloned().collect();
        Ok(Self {
            settings,
            since: since.clone(),
            keys: since_keys.clone(),
            since_keys,
            value: since.value.clone(),
        })
    }

    /// The watermark as a query parameter value.
    fn since_param(&self) -> Result<Option<String>, ConnectorError> {
        Ok(match &self.since.value {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(ConnectorError::Internal {
                    message: format!(
                        "the stored watermark is {}, not a string or number",
                        json_kind(other)
                    ),
                })
            }
        })
    }

    /// Whether `record` is new; advances the watermark past it.
    fn admit(&mut self, record: &Value, location: &str) -> Result<bool, ConnectorError> {
        let bad = |message: String| ConnectorError::BadData {
            location: location.to_string(),
            message,
        };
        let field = &self.settings.cursor_field;
        let cursor = match record.get(field) {
            Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
            Some(Value::Null) | None => {
                return Err(bad(format!(
                    "the record has no value in the cursor field '{field}'"
                )))
            }
            Some(other) => {
                return Err(bad(format!(
                    "the cursor field '{field}' is {}, not a string or number",
                    json_kind(other)
                )))
            }
        };
        let key = self.key_of(record, location)?;
        if let Some(since) = &self.since.value {
            match compare(&cursor, since).map_err(bad)? {
                std::cmp::Ordering::Less => return Ok(false),
                std::cmp::Ordering::Equal if self.since_keys.contains(&key) => return Ok(false),
                _ => {}
            }
        }
        match &self.value {
            Some(current) => match compare(&cursor, current).map_err(bad)? {
                std::cmp::Ordering::Greater => {
                    self.value = Some(cursor);
                    self.keys.clear();
                    self.keys.insert(key);
                }
                std::cmp::Ordering::Equal => {
                    self.keys.insert(key);
                }
                std::cmp::Ordering::Less => {}
            },
            None => {
                self.value = Some(cursor);
                self.keys.insert(key);
            }
        }
        Ok(true)
    }

    fn key_of(&self, record: &Value, location: &str) -> Result<String, ConnectorError> {
        match &self.settings.key_field {
            Some(field) => match record.get(field) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Null) | None => Err(ConnectorError::BadData {
                    location: location.to_string(),
                    message: format!("the record has no value in the key field '{field}'"),
                }),
                Some(other) => Ok(other.to_string()),
            },
            None => {
                let text = serde_json::to_vec(record).map_err(|e| ConnectorError::Internal {
                    message: format!("cannot serialize a record: {e}"),
                })?;
                Ok(hex::encode(Sha256::digest(&text)))
            }
        }
    }

    fn watermark(&self) -> Watermark {
        Watermark {
            value: self.value.clone(),
            keys_at_value: self.keys.iter().cloned().collect(),
        }
    }
}

/// Orders two cursor values of the same kind: numbers numerically,
/// strings by their bytes.
fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return Ok(x.cmp(&y));
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return Ok(x.cmp(&y));
            }
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x.partial_cmp(&y)
                .ok_or_else(|| "the cursor values cannot be compared".to_string())
        }
        _ => Err(format!(
            "the cursor value is {} but the watermark is {}; they cannot be compared",
            json_kind(a),
            json_kind(b)
        )),
    }
}

// ---------------------------------------------------------------- helpers

/// Replaces (or adds) query parameters, keeping the others in order.
fn set_params(url: &mut Url, params: &[(String, String)]) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !params.iter().any(|(name, _)| name == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() && params.is_empty() {
        return;
    }
    let mut pairs = url.query_pairs_mut();
    pairs.clear();
    for (k, v) in kept.iter().chain(params) {
        pairs.append_pair(k, v);
    }
}

/// The records of a JSON page: the array at `pointer`, or the document.
fn take_records(
    doc: &mut Value,
    pointer: Option<&str>,
    at: &str,
) -> Result<Vec<Value>, ConnectorError> {
    let bad = |message: String| ConnectorError::BadData {
        location: at.to_string(),
        message,
    };
    let target = match pointer {
        None => doc.take(),
        Some(p) => match doc.pointer_mut(p) {
            Some(v) => v.take(),
            None => {
                return Err(bad(format!(
                    "there is no value at the records pointer '{p}'"
                )))
            }
        },
    };
    let records = match target {
        Value::Array(items) => items,
        Value::Null if pointer.is_some() => Vec::new(),
        other => {
            return Err(bad(match pointer {
                Some(p) => format!("expected an array of records at '{p}', found {}", json_kind(&other)),
                None => format!(
                    "expected the document to be an array of records, found {}; set \"records\" to a JSON pointer to the array",
                    json_kind(&other)
                ),
            }))
        }
    };
    if let Some((i, v)) = records.iter().enumerate().find(|(_, v)| !v.is_object()) {
        return Err(ConnectorError::BadData {
            location: format!("{at} record {}", i + 1),
            message: format!("expected a JSON object, found {}", json_kind(v)),
        });
    }
    Ok(records)
}

/// The objects of an NDJSON page with their 1-based line numbers.
fn ndjson_records(body: &[u8], at: &str) -> Result<Vec<(usize, Value)>, ConnectorError> {
    let mut out = Vec::new();
    for (i, line) in strip_bom(body).split(|b| *b == b'\n').enumerate() {
        let location = || format!("{at} line {}", i + 1);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| ConnectorError::BadData {
            location: location(),
            message: json_message(&e),
        })?;
        if !value.is_object() {
            return Err(ConnectorError::BadData {
                location: location(),
                message: format!("expected a JSON object, found {}", json_kind(&value)),
            });
        }
        out.push((i + 1, value));
    }
    Ok(out)
}

/// The target of the first `rel="next"` link of a `Link` header value
/// (RFC 8288): `<url>; rel="next", <url>; rel="prev"`.
pub(crate) fn next_in_link_header(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        rest = &rest[end + 1..];
        // The parameters run to the next comma outside quotes.
        let mut in_quotes = false;
        let mut stop = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    stop = i;
                    break;
                }
                _ => {}
            }
        }
        let params = &rest[..stop];
        rest = &rest[stop..];
        for param in params.split(';') {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("rel") {
                continue;
            }
            let value = value.trim().trim_matches('"');
            if value
                .split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
            {
                return Some(target.trim().to_string());
            }
        }
    }
}

fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(UTF8_BOM).unwrap_or(body)
}

/// Infers an Arrow schema from sample JSON objects.
fn infer_json<'a>(
    at: &str,
    samples: impl Iterator<Item = &'a Value>,
) -> Result<SchemaRef, ConnectorError> {
    let schema =
        arrow::json::reader::infer_json_schema_from_iterator(samples.map(Ok::<&Value, ArrowError>))
            .map_err(|e| ConnectorError::BadData {
                location: at.to_string(),
                message: arrow_message(&e),
            })?;
    if schema.fields().is_empty() {
        return Err(ConnectorError::BadData {
            location: at.to_string(),
            message: "the records have no fields to make columns from".into(),
        });
    }
    Ok(Arc::new(denull_schema(&schema)))
}

/// A serde_json message without its " at line L column C" suffix.
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = text.strip_suffix(&suffix).unwrap_or(&text);
    format!("invalid JSON: {message}")
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
