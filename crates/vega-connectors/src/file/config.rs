//! The JSON parameters of the file connector: the connection's
//! `{"root": …}` and the asset's `{"path": …, "format": …, "csv": …,
//! "batch_size": …}`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ConnectorError;
use crate::params::{self, Fields};

/// Rows per batch when the source does not say.
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// The largest accepted `batch_size`.
pub const MAX_BATCH_SIZE: usize = 1_000_000;

/// Connection parameters: `{"root": "/abs/dir"}`, root optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConnectionParams {
    /// Directory that relative asset paths resolve against; must be an
    /// absolute path inside an allowed root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

impl FileConnectionParams {
    pub(crate) fn parse(value: &Value) -> Result<Self, ConnectorError> {
        params::parse(
            "params",
            value,
            &Fields {
                known: &["root"],
                nested: &[],
            },
        )
    }
}

/// The formats the file connector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma- (or otherwise) separated values; `.csv`, `.tsv`.
    Csv,
    /// Apache Parquet; `.parquet`.
    Parquet,
    /// JSON: either a top-level array of objects or newline-delimited
    /// objects, told apart by the first non-space byte; `.json`.
    Json,
    /// Newline-delimited JSON objects; `.ndjson`, `.jsonl`.
    Ndjson,
}

impl FileFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
            FileFormat::Json => "json",
            FileFormat::Ndjson => "ndjson",
        }
    }

    /// The format implied by a file's extension (case-insensitive).
    pub fn from_extension(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" => Some(FileFormat::Csv),
            "parquet" => Some(FileFormat::Parquet),
            "json" => Some(FileFormat::Json),
            "ndjson" | "jsonl" => Some(FileFormat::Ndjson),
            _ => None,
        }
    }
}

/// Asset source: which file to read and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// The file, absolute or relative to the connection's root.
    pub path: String,
    /// The format; inferred from the extension when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// CSV options (only for the CSV format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvOptions>,
    /// Rows per batch (1 to 1,000,000; default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// For incremental syncs: the column whose growing values mark new
    /// rows (an integer, float, text, date or timestamp column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_column: Option<String>,
    /// For incremental syncs: columns that identify a row, so rows sharing
    /// the watermark's cursor value are neither lost nor read twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_columns: Vec<String>,
}

impl FileSource {
    pub(crate) fn parse(value: &Value) -> Result<Self, ConnectorError> {
        params::parse(
            "source",
            value,
            &Fields {
                known: &[
                    "path",
                    "format",
                    "csv",
                    "batch_size",
                    "cursor_column",
                    "key_columns",
                ],
                nested: &[("csv", &["delimiter", "header", "null"])],
            },
        )
    }
}

/// CSV options as written in the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// One ASCII character; `,` by default (tab for `.tsv` files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Whether the first line names the columns; `true` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
    /// The text that means NULL; the empty string by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null: Option<String>,
}

/// CSV options with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSettings {
    pub delimiter: u8,
    pub header: bool,
    pub null: String,
}

impl CsvSettings {
    /// Applies defaults (tab for `.tsv`) and checks the values.
    pub(crate) fn from_options(
        options: Option<&CsvOptions>,
        path: &Path,
    ) -> Result<Self, ConnectorError> {
        let is_tsv = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
        let default_delimiter = if is_tsv { b'\t' } else { b',' };
        let options = options.cloned().unwrap_or_default();
        let delimiter = match options.delimiter.as_deref() {
            None => default_delimiter,
            Some(d) => match d.as_bytes() {
                [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => *b,
                _ => {
                    return Err(ConnectorError::invalid(
                        "csv.delimiter",
                        format!(
                            "'{d}' must be exactly one ASCII character other than '\"' and newline"
                        ),
                    ))
                }
            },
        };
        let null = options.null.unwrap_or_default();
        if null.contains(['\n', '\r']) {
            return Err(ConnectorError::invalid(
                "csv.null",
                "must not contain a newline",
            ));
        }
        Ok(Self {
            delimiter,
            header: options.header.unwrap_or(true),
            null,
        })
    }
}

/// Checks `batch_size` and applies the default.
pub(crate) fn batch_size(value: Option<usize>) -> Result<usize, ConnectorError> {
    match value {
        None => Ok(DEFAULT_BATCH_SIZE),
        Some(n) if (1..=MAX_BATCH_SIZE).contains(&n) => Ok(n),
        Some(n) => Err(ConnectorError::invalid(
            "batch_size",
            format!("{n} is out of range; use 1 to {MAX_BATCH_SIZE}"),
        )),
    }
}
