//! The file connector: CSV, Parquet, JSON and NDJSON files on local disk,
//! confined to configured allowed roots.
//!
//! Connection parameters: `{"root": "/abs/dir"}` (optional; relative asset
//! paths resolve against it). Asset source: `{"path": "orders.csv",
//! "format": "csv"|"parquet"|"json"|"ndjson", "csv": {"delimiter": ",",
//! "header": true, "null": ""}, "batch_size": 8192}`; only `path` is
//! required, the format is inferred from the extension (`.csv`, `.tsv`,
//! `.parquet`, `.json`, `.ndjson`, `.jsonl`).
//!
//! # Confinement
//!
//! Every path is canonicalized (following symlinks and `..`) and must then
//! lie inside one of the canonicalized allowed roots, so `../` and symlink
//! escapes are refused. With no allowed roots every path is refused. A
//! missing path is reported as missing only if it would lie inside an
//! allowed root; otherwise it is refused, so the connector does not reveal
//! what exists elsewhere.
//!
//! # Schemas
//!
//! CSV and JSON schemas are inferred from the first
//! [`INFER_RECORDS`](source::INFER_RECORDS) records; columns that are empty
//! throughout that window become nullable strings. A later record that does
//! not fit the inferred schema fails the read with
//! [`ConnectorError::BadData`] naming the file and line (for a JSON array
//! file, the element). A field in an NDJSON record that is not in the
//! inferred schema is such a misfit too, rather than being dropped.
//! A top-level JSON array is parsed whole, so such files are limited to
//! [`MAX_JSON_ARRAY_BYTES`](source::MAX_JSON_ARRAY_BYTES).

mod config;
pub mod incremental;
pub mod source;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

pub use config::{
    CsvOptions, CsvSettings, FileConnectionParams, FileFormat, FileSource, DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
};

use crate::error::ConnectorError;
use crate::BatchSource;

/// A source file that passed every check, ready to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// The canonical path of the file.
    pub path: PathBuf,
    /// The path as the source gave it, used in error locations.
    pub display: String,
    /// The format to read it as (from the source or the extension).
    pub format: FileFormat,
    /// CSV settings with defaults applied; `Some` only for CSV.
    pub csv: Option<CsvSettings>,
    /// Rows per batch.
    pub batch_size: usize,
}

/// Reads local files under a fixed set of allowed roots.
#[derive(Debug, Clone, Default)]
pub struct FileConnector {
    allowed_roots: Vec<PathBuf>,
}

impl FileConnector {
    /// A connector that may read only under `allowed_roots` (the
    /// `connectors.file.allowed_roots` setting). Roots are canonicalized
    /// when paths are checked, so they may be symlinks.
    pub fn new(allowed_roots: Vec<PathBuf>) -> Self {
        Self { allowed_roots }
    }

    /// The configured allowed roots, as given.
    pub fn allowed_roots(&self) -> &[PathBuf] {
        &self.allowed_roots
    }

    /// Parses and checks connection parameters: the root, if given, must be
    /// an absolute path to an existing directory inside an allowed root.
    /// The returned root is canonical.
    pub fn check_connection(&self, params: &Value) -> Result<FileConnectionParams, ConnectorError> {
        let parsed = FileConnectionParams::parse(params)?;
        let Some(root) = parsed.root else {
            if self.allowed_roots.is_empty() {
                return Err(ConnectorError::NoAllowedRoots {
                    path: PathBuf::from("/"),
                });
            }
            return Ok(FileConnectionParams { root: None });
        };
        if !root.is_absolute() {
            return Err(ConnectorError::invalid(
                "root",
                format!("'{}' must be an absolute path", root.display()),
            ));
        }
        let canonical = self.confine(&root)?;
        if !canonical.is_dir() {
            return Err(ConnectorError::invalid(
                "root",
                format!("'{}' is not a directory", root.display()),
            ));
        }
        Ok(FileConnectionParams {
            root: Some(canonical),
        })
    }

    /// Resolves an asset source against connection parameters: confines the
    /// path, requires a regular file, settles the format and options.
    pub fn resolve(&self, params: &Value, source: &Value) -> Result<ResolvedFile, ConnectorError> {
        let connection = self.check_connection(params)?;
        let source = FileSource::parse(source)?;
        if source.path.is_empty() {
            return Err(ConnectorError::invalid("path", "must not be empty"));
        }
        if source.path.contains('\0') {
            return Err(ConnectorError::invalid("path", "must not contain NUL"));
        }
        let given = Path::new(&source.path);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            match &connection.root {
                Some(root) => root.join(given),
                None => {
                    return Err(ConnectorError::invalid(
                        "path",
                        format!(
                            "'{}' is relative but the connection has no root; give an absolute path or set the connection's root",
                            source.path
                        ),
                    ))
                }
            }
        };
        let path = self.confine(&joined)?;
        let meta = std::fs::metadata(&path).map_err(|e| ConnectorError::from_io(&joined, e))?;
        if !meta.is_file() {
            return Err(ConnectorError::invalid(
                "path",
                format!("'{}' is not a regular file", source.path),
            ));
        }

        let format = match source.format {
            Some(f) => f,
            None => FileFormat::from_extension(&path)
                .or_else(|| FileFormat::from_extension(given))
                .ok_or_else(|| {
                    ConnectorError::invalid(
                        "format",
                        format!(
                            "cannot infer the format of '{}' from its extension; set \"format\" to csv, parquet, json or ndjson",
                            source.path
                        ),
                    )
                })?,
        };
        let csv = match format {
            FileFormat::Csv => Some(CsvSettings::from_options(source.csv.as_ref(), given)?),
            _ if source.csv.is_some() => {
                return Err(ConnectorError::invalid(
                    "csv",
                    format!("applies only to the csv format, not {}", format.as_str()),
                ))
            }
            _ => None,
        };
        Ok(ResolvedFile {
            path,
            display: source.path,
            format,
            csv,
            batch_size: config::batch_size(source.batch_size)?,
        })
    }

    /// Resolves the source and opens it for reading. Schema inference
    /// happens here, so malformed data early in the file fails here.
    pub fn open(
        &self,
        params: &Value,
        source: &Value,
    ) -> Result<Box<dyn BatchSource>, ConnectorError> {
        let resolved = self.resolve(params, source)?;
        source::open(&resolved)
    }

    /// Canonicalizes `path` and checks it lies inside an allowed root.
    fn confine(&self, path: &Path) -> Result<PathBuf, ConnectorError> {
        if self.allowed_roots.is_empty() {
            return Err(ConnectorError::NoAllowedRoots {
                path: path.to_path_buf(),
            });
        }
        let roots: Vec<PathBuf> = self
            .allowed_roots
            .iter()
            .filter_map(|r| match r.canonicalize() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(root = %r.display(), error = %e, "allowed root is not accessible");
                    None
                }
            })
            .collect();
        let inside = |p: &Path| roots.iter().any(|r| p.starts_with(r));
        match path.canonicalize() {
            Ok(canonical) if inside(&canonical) => Ok(canonical),
            Ok(_) => Err(ConnectorError::PathNotAllowed {
                path: path.to_path_buf(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Say "missing" only where reading would have been allowed.
                let lexical = normalize_lexically(path);
                let lexical_roots: Vec<PathBuf> = self
                    .allowed_roots
                    .iter()
                    .map(|r| normalize_lexically(r))
                    .collect();
                if inside(&lexical) || lexical_roots.iter().any(|r| lexical.starts_with(r)) {
                    Err(ConnectorError::PathNotFound {
                        path: path.to_path_buf(),
                    })
                } else {
                    Err(ConnectorError::PathNotAllowed {
                        path: path.to_path_buf(),
                    })
                }
            }
            Err(e) => Err(ConnectorError::from_io(path, e)),
        }
    }
}

/// Resolves `.` and `..` without touching the file system.
fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl crate::Connector for FileConnector {
    fn kind(&self) -> vega_core::ConnectorKind {
        vega_core::ConnectorKind::File
    }

    fn check_connection(&self, params: &Value) -> Result<(), ConnectorError> {
        FileConnector::check_connection(self, params).map(|_| ())
    }

    fn check_source(&self, params: &Value, source: &Value) -> Result<(), ConnectorError> {
        self.resolve(params, source).map(|_| ())
    }

    fn test(&self, params: &Value) -> Result<(), ConnectorError> {
        FileConnector::check_connection(self, params).map(|_| ())
    }

    fn open_full(
        &self,
        params: &Value,
        source: &Value,
    ) -> Result<Box<dyn BatchSource>, ConnectorError> {
        self.open(params, source)
    }

    fn open_incremental(
        &self,
        params: &Value,
        source: &Value,
        since: &crate::Watermark,
    ) -> Result<Box<dyn crate::IncrementalSource>, ConnectorError> {
        let spec = FileSource::parse(source)?;
        let cursor =
            spec.cursor_column
                .as_deref()
                .ok_or_else(|| ConnectorError::InvalidParams {
                    field: "cursor_column".into(),
                    message: "an incremental file source needs a cursor_column".into(),
                })?;
        let inner = self.open(params, source)?;
        Ok(Box::new(incremental::IncrementalFile::new(
            inner,
            cursor,
            &spec.key_columns,
            since,
        )?))
    }
}
