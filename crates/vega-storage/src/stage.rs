//! A version being written: record batches in, Parquet part files out, and a
//! manifest once everything is durable (see the crate docs for the protocol).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use vega_core::{Manifest, Segment};

use crate::error::StorageError;
use crate::options::WriteOptions;
use crate::store::{fsync_dir, schema_difference, schema_to_manifest, sha256_of, TMP_SUFFIX};

/// Rows per Parquet row group: DuckDB's own row-group size, which bounds the
/// writer's memory and lets readers scan row groups in parallel.
const MAX_ROW_GROUP_ROWS: usize = 122_880;

/// A part file being written.
struct OpenPart {
    name: String,
    tmp_path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

/// A closed, renamed part file.
struct ClosedPart {
    name: String,
    rows: u64,
}

/// A version being written under `<asset_id>/<staging_id>/`.
///
/// Write batches with [`StagedVersion::write`], then either
/// [`finish`](StagedVersion::finish) to get the manifest or
/// [`abort`](StagedVersion::abort) to remove the files. After a failed
/// `write` the version should be aborted. A staged version that is simply
/// dropped leaves its files for [`SegmentStore::remove_orphans`](crate::SegmentStore::remove_orphans).
pub struct StagedVersion {
    root: PathBuf,
    relative_dir: String,
    dir: PathBuf,
    schema: SchemaRef,
    /// The schema batches arrive with; differs from `schema` only where a
    /// type is stored differently (see [`storage_schema`]).
    input_schema: SchemaRef,
    options: WriteOptions,
    current: Option<OpenPart>,
    closed: Vec<ClosedPart>,
    rows: u64,
    closed_bytes: u64,
}

impl std::fmt::Debug for StagedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedVersion")
            .field("relative_dir", &self.relative_dir)
            .field("rows", &self.rows)
            .field(
                "parts",
                &(self.closed.len() + usize::from(self.current.is_some())),
            )
            .finish()
    }
}

impl StagedVersion {
    pub(crate) fn new(
        root: PathBuf,
        relative_dir: String,
        dir: PathBuf,
        schema: SchemaRef,
        options: WriteOptions,
    ) -> Self {
        Self {
            root,
            relative_dir,
            dir,
            schema: storage_schema(&schema),
            input_schema: schema,
            options,
            current: None,
            closed: Vec::new(),
            rows: 0,
            closed_bytes: 0,
        }
    }

    /// Appends a batch, rolling to a new part file every
    /// `rows_per_segment` rows. The batch's schema must equal the staged
    /// schema (field names, types, nullability and metadata).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StorageError> {
        if let Some(difference) = schema_difference(&self.input_schema, batch.schema().as_ref()) {
            return Err(StorageError::SchemaMismatch { difference });
        }
        let converted;
        let batch = if self.input_schema == self.schema {
            batch
        } else {
            converted = to_storage(batch, &self.schema)?;
            &converted
        };
        let per_segment = self.options.rows_per_segment as u64;
        let total = batch.num_rows();
        let mut offset = 0usize;
        while offset < total {
            if self.current.is_none() {
                self.current = Some(self.open_part()?);
            }
            let Some(part) = self.current.as_mut() else {
                unreachable!("a part was opened above");
            };
            let room = usize::try_from(per_segment - part.rows).unwrap_or(usize::MAX);
            let n = room.min(total - offset);
            part.writer
                .write(&batch.slice(offset, n))
                .map_err(|e| StorageError::parquet("write", &part.tmp_path, e))?;
            part.rows += n as u64;
            self.rows += n as u64;
            offset += n;
            if part.rows >= per_segment {
                self.close_current()?;
            }
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written so far (closed parts plus what the open part has
    /// written; rows still buffered in memory are not counted).
    pub fn bytes_written(&self) -> u64 {
        let open = self
            .current
            .as_ref()
            .map_or(0, |p| p.writer.bytes_written() as u64);
        self.closed_bytes + open
    }

    /// The staging directory relative to the root, e.g. `ast_…/job_…`; pass
    /// it in `keep_prefixes` of orphan collection while the version is in
    /// flight.
    pub fn relative_dir(&self) -> &str {
        &self.relative_dir
    }

    /// Closes the last part, makes everything durable and returns the
    /// manifest. Always yields at least one segment. On failure the staged
    /// files are removed (best effort).
    pub fn finish(mut self) -> Result<Manifest, StorageError> {
        match self.finish_inner() {
            Ok(manifest) => Ok(manifest),
            Err(e) => {
                let dir = self.dir.clone();
                drop(self.current.take());
                if let Err(cleanup) = fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %cleanup, "could not remove staged files after a failed finish");
                }
                Err(e)
            }
        }
    }

    fn finish_inner(&mut self) -> Result<Manifest, StorageError> {
        if self.current.is_some() {
            self.close_current()?;
        }
        if self.closed.is_empty() {
            // An empty version still gets a file carrying the schema.
            self.current = Some(self.open_part()?);
            self.close_current()?;
        }
        fsync_dir(&self.dir)?;
        if let Some(parent) = self.dir.parent() {
            fsync_dir(parent)?;
        }
        fsync_dir(&self.root)?;

        let mut segments = Vec::with_capacity(self.closed.len());
        for part in &self.closed {
            let path = self.dir.join(&part.name);
            let file = File::open(&path).map_err(|e| StorageError::io("open", &path, e))?;
            let (sha256, bytes) = sha256_of(file, &path)?;
            segments.push(Segment {
                path: format!("{}/{}", self.relative_dir, part.name),
                rows: part.rows,
                bytes,
                sha256,
            });
        }
        let schema = schema_to_manifest(&self.schema)?;
        Ok(Manifest { schema, segments })
    }

    /// Removes the staged files and the staging directory (and the asset
    /// directory if that leaves it empty).
    pub fn abort(mut self) -> Result<(), StorageError> {
        drop(self.current.take());
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("remove directory", &self.dir, e)),
        }
        if let Some(parent) = self.dir.parent() {
            // Fails harmlessly when other versions of the asset exist.
            let _ = fs::remove_dir(parent);
        }
        Ok(())
    }

    fn open_part(&self) -> Result<OpenPart, StorageError> {
        let name = format!("part-{:05}.parquet", self.closed.len());
        let tmp_path = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(|e| StorageError::io("create", &tmp_path, e))?;
        let props = WriterProperties::builder()
            .set_compression(self.options.compression.to_parquet())
            .set_max_row_group_row_count(Some(
                MAX_ROW_GROUP_ROWS.min(self.options.rows_per_segment),
            ))
            .build();
        let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(props))
            .map_err(|e| StorageError::parquet("create", &tmp_path, e))?;
        Ok(OpenPart {
            name,
            tmp_path,
            writer,
            rows: 0,
        })
    }

    /// Footer, flush, fsync, rename: after this the part is complete on disk
    /// under its final name.
    fn close_current(&mut self) -> Result<(), StorageError> {
        let Some(mut part) = self.current.take() else {
            return Ok(());
        };
        let tmp = part.tmp_path.clone();
        part.writer
            .finish()
            .map_err(|e| StorageError::parquet("write footer of", &tmp, e))?;
        part.writer
            .sync()
            .map_err(|e| StorageError::io("flush", &tmp, e))?;
        part.writer
            .inner_mut()
            .sync_all()
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
        drop(part.writer);
        let final_path = self.dir.join(&part.name);
        fs::rename(&tmp, &final_path).map_err(|e| StorageError::io("rename", &tmp, e))?;
        self.closed_bytes += file_len(&final_path)?;
        self.closed.push(ClosedPart {
            name: part.name,
            rows: part.rows,
        });
        Ok(())
    }
}

fn file_len(path: &Path) -> Result<u64, StorageError> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| StorageError::io("read metadata of", path, e))
}

/// The type a column is stored as. Parquet has no second-precision
/// timestamps or times and no millisecond dates; written as they are, they
/// become bare integers that readers (DuckDB among them) no longer see as
/// times. They are stored at the next precision that Parquet knows.
fn storage_type(t: &arrow::datatypes::DataType) -> arrow::datatypes::DataType {
    use arrow::datatypes::{DataType, TimeUnit};
    match t {
        DataType::Timestamp(TimeUnit::Second, tz) => {
            DataType::Timestamp(TimeUnit::Millisecond, tz.clone())
        }
        DataType::Time32(TimeUnit::Second) => DataType::Time32(TimeUnit::Millisecond),
        DataType::Date64 => DataType::Date32,
        other => other.clone(),
    }
}

/// The schema segments are written with, for batches of `input`.
pub(crate) fn storage_schema(input: &SchemaRef) -> SchemaRef {
    let fields: Vec<arrow::datatypes::FieldRef> = input
        .fields()
        .iter()
        .map(|f| {
            let stored = storage_type(f.data_type());
            if &stored == f.data_type() {
                f.clone()
            } else {
                std::sync::Arc::new(f.as_ref().clone().with_data_type(stored))
            }
        })
        .collect();
    std::sync::Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        input.metadata().clone(),
    ))
}

fn to_storage(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, StorageError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, field.data_type()).map_err(|e| {
                    StorageError::SchemaMismatch {
                        difference: format!(
                            "column '{}' cannot be stored as {}: {e}",
                            field.name(),
                            field.data_type()
                        ),
                    }
                })
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| StorageError::SchemaMismatch {
        difference: e.to_string(),
    })
}
