//! Batch sources of the file connector, one per format.
//!
//! Errors in the data name the file as the source gave it and the 1-based
//! line in the file (the CSV header counts as line 1); for a top-level JSON
//! array the 1-based element instead.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::csv::reader::Format;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::Value;

use super::config::{CsvSettings, FileFormat};
use super::ResolvedFile;
use crate::arrow_util::{arrow_message, check_column_names, denull_schema, json_decoder};
use crate::error::ConnectorError;
use crate::BatchSource;

/// Records read to infer a CSV or JSON schema.
pub const INFER_RECORDS: usize = 1000;

/// The largest top-level JSON array file accepted: such a file is parsed
/// whole into memory (several times its size), unlike NDJSON, which is
/// streamed.
pub const MAX_JSON_ARRAY_BYTES: u64 = 256 * 1024 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Opens the source for a resolved file.
pub fn open(resolved: &ResolvedFile) -> Result<Box<dyn BatchSource>, ConnectorError> {
    Ok(match resolved.format {
        FileFormat::Csv => Box::new(CsvSource::open(resolved)?),
        FileFormat::Parquet => Box::new(ParquetSource::open(resolved)?),
        FileFormat::Ndjson => Box::new(NdjsonSource::open(resolved)?),
        FileFormat::Json => {
            if first_non_space_byte(&resolved.path)? == Some(b'[') {
                Box::new(JsonArraySource::open(resolved)?)
            } else {
                Box::new(NdjsonSource::open(resolved)?)
            }
        }
    })
}

// ---------------------------------------------------------------- CSV

/// CSV (or TSV) with a schema inferred from the first records.
pub struct CsvSource {
    display: String,
    path: PathBuf,
    settings: CsvSettings,
    format: Format,
    schema: SchemaRef,
    reader: arrow::csv::Reader<File>,
    rows_read: usize,
    failed: Option<String>,
}

impl CsvSource {
    pub fn open(resolved: &ResolvedFile) -> Result<Self, ConnectorError> {
        let settings = resolved.csv.clone().unwrap_or(CsvSettings {
            delimiter: b',',
            header: true,
            null: String::new(),
        });
        let mut format = Format::default()
            .with_header(settings.header)
            .with_delimiter(settings.delimiter);
        if !settings.null.is_empty() {
            // The empty string stays NULL too, so empty numeric fields parse.
            let pattern = format!("^(?:{})?$", regex::escape(&settings.null));
            let regex = regex::Regex::new(&pattern)
                .map_err(|e| ConnectorError::invalid("csv.null", format!("cannot be used: {e}")))?;
            format = format.with_null_regex(regex);
        }
        let source_for_errors = Diagnosis {
            display: &resolved.display,
            path: &resolved.path,
            settings: &settings,
            format: &format,
        };

        let (inferred, _) = format
            .infer_schema(open_data_file(&resolved.path)?, Some(INFER_RECORDS))
            .map_err(|e| source_for_errors.explain(e, None, 0))?;
        if inferred.fields().is_empty() {
            return Err(ConnectorError::bad_data(
                &resolved.display,
                "the file is empty; a header or data row is needed to know the columns",
            ));
        }
        if settings.header {
            check_column_names(&inferred, &format!("{} line 1", resolved.display))?;
        }
        let schema = Arc::new(denull_schema(&inferred));

        let reader = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_format(format.clone())
            .with_batch_size(resolved.batch_size)
            .build(open_data_file(&resolved.path)?)
            .map_err(|e| source_for_errors.explain(e, Some(&schema), 0))?;
        Ok(Self {
            display: resolved.display.clone(),
            path: resolved.path.clone(),
            settings,
            format,
            schema,
            reader,
            rows_read: 0,
            failed: None,
        })
    }
}

impl BatchSource for CsvSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if let Some(previous) = &self.failed {
            return Err(already_failed(&self.display, previous));
        }
        match self.reader.next() {
            None => Ok(None),
            Some(Ok(batch)) => {
                self.rows_read += batch.num_rows();
                Ok(Some(batch))
            }
            Some(Err(e)) => {
                let diagnosis = Diagnosis {
                    display: &self.display,
                    path: &self.path,
                    settings: &self.settings,
                    format: &self.format,
                };
                let err = diagnosis.explain(e, Some(&self.schema), self.rows_read);
                self.failed = Some(err.to_string());
                Err(err)
            }
        }
    }
}

/// Finds the line of a CSV error by re-reading the file record by record.
struct Diagnosis<'a> {
    display: &'a str,
    path: &'a Path,
    settings: &'a CsvSettings,
    format: &'a Format,
}

impl Diagnosis<'_> {
    /// Turns an arrow-csv error into a located [`ConnectorError`].
    fn explain(&self, error: ArrowError, schema: Option<&Schema>, skip: usize) -> ConnectorError {
        if let ArrowError::IoError(_, source) = error {
            return ConnectorError::from_io(self.path, source);
        }
        match self.find_bad_record(schema, skip) {
            Ok(Some((line, message))) => {
                ConnectorError::bad_data(format!("{} line {line}", self.display), message)
            }
            Ok(None) => ConnectorError::bad_data(
                format!("{} after data row {skip}", self.display),
                arrow_message(&error),
            ),
            Err(e) => e,
        }
    }

    /// The line and problem of the first record at or after data record
    /// `skip` that has the wrong number of fields or a value that does not
    /// parse as its column's type.
    fn find_bad_record(
        &self,
        schema: Option<&Schema>,
        skip: usize,
    ) -> Result<Option<(u64, String)>, ConnectorError> {
        let file = open_data_file(self.path)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(self.settings.header)
            .flexible(true)
            .delimiter(self.settings.delimiter)
            .from_reader(file);
        let mut width = schema.map(|s| s.fields().len());
        if self.settings.header {
            match reader.headers() {
                Ok(h) => {
                    width.get_or_insert(h.len());
                }
                Err(e) => return self.csv_error(e).map(Some),
            }
        }
        let checker = schema.map(|s| ValueChecker::new(s, self.format, self.settings));
        let mut record = csv::StringRecord::new();
        let mut index = 0usize;
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => return Ok(None),
                Ok(true) => {}
                Err(e) => return self.csv_error(e).map(Some),
            }
            let line = record.position().map_or(0, |p| p.line());
            let expected = *width.get_or_insert(record.len());
            index += 1;
            if index <= skip {
                continue;
            }
            if record.len() != expected {
                return Ok(Some((
                    line,
                    format!("expected {expected} fields, found {}", record.len()),
                )));
            }
            if let Some(problem) = checker.as_ref().and_then(|c| c.check(&record)) {
                return Ok(Some((line, problem)));
            }
        }
    }

    fn csv_error(&self, error: csv::Error) -> Result<(u64, String), ConnectorError> {
        let line = error.position().map_or(0, |p| p.line());
        match error.into_kind() {
            csv::ErrorKind::Io(source) => Err(ConnectorError::from_io(self.path, source)),
            csv::ErrorKind::Utf8 { err, .. } => Ok((
                line,
                format!("field {} is not valid UTF-8", err.field() + 1),
            )),
            other => Ok((line, format!("{other:?}"))),
        }
    }
}

/// Parses single values exactly as arrow-csv would, one column at a time.
struct ValueChecker<'a> {
    fields: &'a Fields,
    format: Format,
    delimiter: u8,
    null: &'a str,
}

impl<'a> ValueChecker<'a> {
    fn new(schema: &'a Schema, format: &Format, settings: &'a CsvSettings) -> Self {
        Self {
            fields: schema.fields(),
            format: format.clone().with_header(false),
            delimiter: settings.delimiter,
            null: &settings.null,
        }
    }

    /// The first value of `record` that does not parse, described.
    fn check(&self, record: &csv::StringRecord) -> Option<String> {
        for (i, (field, value)) in self.fields.iter().zip(record.iter()).enumerate() {
            if value.is_empty() || value == self.null || field.data_type() == &DataType::Utf8 {
                continue;
            }
            if !self.parses(field, value) {
                return Some(format!(
                    "column '{}' (field {}): '{}' is not a valid {}",
                    field.name(),
                    i + 1,
                    value,
                    field.data_type()
                ));
            }
        }
        None
    }

    fn parses(&self, field: &Arc<Field>, value: &str) -> bool {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .from_writer(Vec::new());
        if writer.write_record([value]).is_err() {
            return false;
        }
        let Ok(bytes) = writer.into_inner() else {
            return false;
        };
        let schema = Arc::new(Schema::new(vec![field.clone()]));
        let mut decoder = arrow::csv::ReaderBuilder::new(schema)
            .with_format(self.format.clone())
            .with_batch_size(1)
            .build_decoder();
        decoder.decode(&bytes).is_ok() && decoder.flush().is_ok()
    }
}

// ---------------------------------------------------------------- Parquet

/// A Parquet file, read with its own schema.
pub struct ParquetSource {
    display: String,
    schema: SchemaRef,
    reader: ParquetRecordBatchReader,
    failed: Option<String>,
}

impl ParquetSource {
    pub fn open(resolved: &ResolvedFile) -> Result<Self, ConnectorError> {
        let file =
            File::open(&resolved.path).map_err(|e| ConnectorError::from_io(&resolved.path, e))?;
        let unreadable = |e: parquet::errors::ParquetError| {
            ConnectorError::bad_data(
                &resolved.display,
                format!("not a readable Parquet file: {e}"),
            )
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(unreadable)?;
        let schema = builder.schema().clone();
        let reader = builder
            .with_batch_size(resolved.batch_size)
            .build()
            .map_err(unreadable)?;
        Ok(Self {
            display: resolved.display.clone(),
            schema,
            reader,
            failed: None,
        })
    }
}

impl BatchSource for ParquetSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if let Some(previous) = &self.failed {
            return Err(already_failed(&self.display, previous));
        }
        match self.reader.next() {
            None => Ok(None),
            Some(Ok(batch)) => Ok(Some(batch)),
            Some(Err(e)) => {
                let err = ConnectorError::bad_data(&self.display, arrow_message(&e));
                self.failed = Some(err.to_string());
                Err(err)
            }
        }
    }
}

// ---------------------------------------------------------------- NDJSON

/// Newline-delimited JSON objects, one per line, streamed.
pub struct NdjsonSource {
    display: String,
    path: PathBuf,
    schema: SchemaRef,
    reader: BufReader<File>,
    decoder: arrow::json::reader::Decoder,
    batch_size: usize,
    /// Lines read so far.
    line: u64,
    /// The lines of the batch being decoded, to locate a failing record.
    pending: Vec<(u64, String)>,
    failed: Option<String>,
}

impl NdjsonSource {
    pub fn open(resolved: &ResolvedFile) -> Result<Self, ConnectorError> {
        let display = resolved.display.as_str();
        let mut reader = BufReader::new(open_data_file(&resolved.path)?);
        let mut samples = Vec::new();
        let mut buf = String::new();
        let mut line = 0u64;
        while samples.len() < INFER_RECORDS {
            buf.clear();
            if read_line(&mut reader, &mut buf, &resolved.path, display, line + 1)? == 0 {
                break;
            }
            line += 1;
            let text = buf.trim();
            if text.is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(text).map_err(|e| {
                ConnectorError::bad_data(format!("{display} line {line}"), json_message(&e))
            })?;
            if !value.is_object() {
                return Err(ConnectorError::bad_data(
                    format!("{display} line {line}"),
                    format!("expected a JSON object, found {}", json_kind(&value)),
                ));
            }
            samples.push(value);
        }
        let schema = infer_json(display, &samples)?;
        let decoder = json_decoder(&schema, resolved.batch_size)?;
        Ok(Self {
            display: resolved.display.clone(),
            path: resolved.path.clone(),
            schema,
            reader: BufReader::new(open_data_file(&resolved.path)?),
            decoder,
            batch_size: resolved.batch_size,
            line: 0,
            pending: Vec::new(),
            failed: None,
        })
    }

    fn fail_at(&self, line: u64, message: impl Into<String>) -> ConnectorError {
        ConnectorError::bad_data(format!("{} line {line}", self.display), message)
    }

    fn read_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let mut buf = String::new();
        while self.pending.len() < self.batch_size {
            buf.clear();
            let n = read_line(
                &mut self.reader,
                &mut buf,
                &self.path,
                &self.display,
                self.line + 1,
            )?;
            if n == 0 {
                break;
            }
            self.line += 1;
            let text = buf.trim();
            if text.is_empty() {
                continue;
            }
            let before = self.decoder.len();
            let consumed = self
                .decoder
                .decode(text.as_bytes())
                .map_err(|e| self.fail_at(self.line, arrow_message(&e)))?;
            if consumed < text.len() || self.decoder.len() > before + 1 {
                return Err(self.fail_at(self.line, "more than one JSON value on one line"));
            }
            if self.decoder.has_partial_record() {
                return Err(self.fail_at(
                    self.line,
                    "incomplete JSON value; NDJSON needs one complete object per line",
                ));
            }
            self.pending.push((self.line, text.to_string()));
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        match self.decoder.flush() {
            Ok(batch) => {
                self.pending.clear();
                Ok(batch)
            }
            Err(e) => {
                for (line, text) in &self.pending {
                    let mut single = json_decoder(&self.schema, 1)?;
                    let result = single.decode(text.as_bytes()).and_then(|_| single.flush());
                    if let Err(e) = result {
                        return Err(self.fail_at(*line, arrow_message(&e)));
                    }
                }
                let (first, last) = (self.pending[0].0, self.pending[self.pending.len() - 1].0);
                Err(ConnectorError::bad_data(
                    format!("{} lines {first}-{last}", self.display),
                    arrow_message(&e),
                ))
            }
        }
    }
}

impl BatchSource for NdjsonSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if let Some(previous) = &self.failed {
            return Err(already_failed(&self.display, previous));
        }
        let result = self.read_batch();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }
}

// ---------------------------------------------------------------- JSON array

/// A file holding one top-level JSON array of objects, parsed whole.
pub struct JsonArraySource {
    display: String,
    schema: SchemaRef,
    values: std::vec::IntoIter<Value>,
    /// 0-based index of the next element.
    next_index: usize,
    decoder: arrow::json::reader::Decoder,
    batch_size: usize,
    failed: Option<String>,
}

impl JsonArraySource {
    pub fn open(resolved: &ResolvedFile) -> Result<Self, ConnectorError> {
        let display = resolved.display.as_str();
        let size = std::fs::metadata(&resolved.path)
            .map_err(|e| ConnectorError::from_io(&resolved.path, e))?
            .len();
        if size > MAX_JSON_ARRAY_BYTES {
            return Err(ConnectorError::FileTooLarge {
                path: PathBuf::from(display),
                bytes: size,
                limit: MAX_JSON_ARRAY_BYTES,
                what: "a top-level JSON array (use NDJSON for larger files)",
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        open_data_file(&resolved.path)?
            .read_to_end(&mut bytes)
            .map_err(|e| ConnectorError::from_io(&resolved.path, e))?;
        let values: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| {
            ConnectorError::bad_data(
                format!("{display} line {} column {}", e.line(), e.column()),
                json_message(&e),
            )
        })?;
        drop(bytes);
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_object()) {
            return Err(ConnectorError::bad_data(
                format!("{display} element {}", i + 1),
                format!("expected a JSON object, found {}", json_kind(v)),
            ));
        }
        let sample = &values[..values.len().min(INFER_RECORDS)];
        let schema = infer_json(display, sample)?;
        let decoder = json_decoder(&schema, resolved.batch_size)?;
        Ok(Self {
            display: resolved.display.clone(),
            schema,
            values: values.into_iter(),
            next_index: 0,
            decoder,
            batch_size: resolved.batch_size,
            failed: None,
        })
    }

    fn read_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let chunk: Vec<Value> = self.values.by_ref().take(self.batch_size).collect();
        if chunk.is_empty() {
            return Ok(None);
        }
        let start = self.next_index;
        self.next_index += chunk.len();
        let result = self
            .decoder
            .serialize(&chunk)
            .and_then(|()| self.decoder.flush());
        match result {
            Ok(batch) => Ok(batch),
            Err(e) => {
                for (offset, value) in chunk.iter().enumerate() {
                    let mut single = json_decoder(&self.schema, 1)?;
                    let result = single
                        .serialize(std::slice::from_ref(value))
                        .and_then(|()| single.flush());
                    if let Err(e) = result {
                        return Err(ConnectorError::bad_data(
                            format!("{} element {}", self.display, start + offset + 1),
                            arrow_message(&e),
                        ));
                    }
                }
                Err(ConnectorError::bad_data(
                    format!(
                        "{} elements {}-{}",
                        self.display,
                        start + 1,
                        start + chunk.len()
                    ),
                    arrow_message(&e),
                ))
            }
        }
    }
}

impl BatchSource for JsonArraySource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if let Some(previous) = &self.failed {
            return Err(already_failed(&self.display, previous));
        }
        let result = self.read_batch();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }
}

// ---------------------------------------------------------------- helpers

fn already_failed(display: &str, previous: &str) -> ConnectorError {
    ConnectorError::bad_data(display, format!("the read already failed: {previous}"))
}

/// Opens a data file positioned after a UTF-8 byte order mark, if any.
fn open_data_file(path: &Path) -> Result<File, ConnectorError> {
    let io_err = |e| ConnectorError::from_io(path, e);
    let mut file = File::open(path).map_err(io_err)?;
    let mut head = [0u8; 3];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    let start = if head[..filled] == *UTF8_BOM { 3 } else { 0 };
    file.seek(SeekFrom::Start(start)).map_err(io_err)?;
    Ok(file)
}

/// The first byte that is not whitespace (after a BOM), if any.
fn first_non_space_byte(path: &Path) -> Result<Option<u8>, ConnectorError> {
    let mut reader = BufReader::new(open_data_file(path)?);
    loop {
        let buf = reader
            .fill_buf()
            .map_err(|e| ConnectorError::from_io(path, e))?;
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some(b) = buf.iter().find(|b| !b.is_ascii_whitespace()) {
            return Ok(Some(*b));
        }
        let n = buf.len();
        reader.consume(n);
    }
}

/// Reads one line; invalid UTF-8 is bad data on `line`.
fn read_line(
    reader: &mut impl BufRead,
    buf: &mut String,
    path: &Path,
    display: &str,
    line: u64,
) -> Result<usize, ConnectorError> {
    reader.read_line(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData {
            ConnectorError::bad_data(format!("{display} line {line}"), "not valid UTF-8")
        } else {
            ConnectorError::from_io(path, e)
        }
    })
}

/// Infers an Arrow schema from sample JSON objects.
fn infer_json(display: &str, samples: &[Value]) -> Result<SchemaRef, ConnectorError> {
    if samples.is_empty() {
        return Err(ConnectorError::bad_data(
            display,
            "no JSON records to infer the columns from",
        ));
    }
    let schema = arrow::json::reader::infer_json_schema_from_iterator(
        samples.iter().map(Ok::<&Value, ArrowError>),
    )
    .map_err(|e| ConnectorError::bad_data(display, arrow_message(&e)))?;
    if schema.fields().is_empty() {
        return Err(ConnectorError::bad_data(
            display,
            "the JSON records have no fields to make columns from",
        ));
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
