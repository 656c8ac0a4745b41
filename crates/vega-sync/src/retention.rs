//! Retention: rows older than an asset's retention period are removed by
//! writing a new version. Segments wholly past the cutoff are dropped,
//! segments wholly within it are kept as they are (the new manifest points
//! at the same immutable files), and a segment that straddles the cutoff is
//! rewritten with only its recent rows. Rows whose time is NULL are kept.
//! The previous version stays in the history, so a retention run can be
//! rolled back like any publish.

use std::fs::File;

use arrow::array::{Array, BooleanArray, TimestampMillisecondArray};
use arrow::compute::kernels::cmp::gt_eq;
use arrow::compute::{cast, filter_record_batch, is_null, or};
use arrow::datatypes::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use vega_core::{Id, Manifest};
use vega_storage::{schema_from_manifest, SegmentStore, WriteOptions};

use crate::error::SyncError;

/// What a retention run decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Trimmed {
    pub manifest: Manifest,
    pub rows_removed: u64,
    pub segments_dropped: usize,
    pub segments_rewritten: usize,
}

fn bad(message: String) -> SyncError {
    SyncError::CheckFailed(message)
}

/// `batch` with exactly `schema`'s columns (by name; missing ones NULL):
/// a stream asset whose columns grew has older segments with fewer.
fn conform(
    batch: &arrow::record_batch::RecordBatch,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<arrow::record_batch::RecordBatch, SyncError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    arrow::record_batch::RecordBatch::try_new(schema.clone(), columns).map_err(|e| {
        SyncError::Internal(format!("aligning a segment to the version's schema: {e}"))
    })
}

/// Computes the manifest that keeps rows with `column >= cutoff_ms` (or a
/// NULL `column`). Returns `None` when nothing is older than the cutoff.
/// Blocking: call on a blocking thread.
pub fn trim(
    store: &SegmentStore,
    asset_id: &Id,
    staging_id: &str,
    manifest: &Manifest,
    column: &str,
    cutoff_ms: i64,
    options: WriteOptions,
) -> Result<Option<Trimmed>, SyncError> {
    let schema = std::sync::Arc::new(schema_from_manifest(manifest)?);
    let index = schema
        .index_of(column)
        .map_err(|_| bad(format!("retention: the asset has no column '{column}'")))?;
    match schema.field(index).data_type() {
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {}
        other => {
            return Err(bad(format!(
                "retention: column '{column}' has type {other}; it must be a date or timestamp"
            )))
        }
    }
    let target = DataType::Timestamp(TimeUnit::Millisecond, None);
    let mut kept = Vec::new();
    let mut staged = None;
    let (mut removed, mut dropped, mut rewritten) = (0u64, 0usize, 0usize);
    for segment in &manifest.segments {
        let path = store.absolute(&segment.path)?;
        let file = File::open(&path)
            .map_err(|e| SyncError::Internal(format!("opening {}: {e}", path.display())))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| SyncError::Internal(format!("reading {}: {e}", path.display())))?;
        let mut batches = Vec::new();
        let mut keep_rows = 0u64;
        for batch in reader {
            let batch = batch
                .map_err(|e| SyncError::Internal(format!("reading {}: {e}", path.display())))?;
            let times = cast(batch.column(index), &target)
                .map_err(|e| SyncError::Internal(e.to_string()))?;
            let times = times
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .ok_or_else(|| SyncError::Internal("cast to timestamp failed".into()))?;
            let cutoff = TimestampMillisecondArray::new_scalar(cutoff_ms);
            let recent = gt_eq(times, &cutoff).map_err(|e| SyncError::Internal(e.to_string()))?;
            let nulls = is_null(times).map_err(|e| SyncError::Internal(e.to_string()))?;
            let mask: BooleanArray =
                or(&recent, &nulls).map_err(|e| SyncError::Internal(e.to_string()))?;
            let keep = mask.true_count() as u64;
            keep_rows += keep;
            removed += batch.num_rows() as u64 - keep;
            if keep > 0 {
                batches.push(
                    filter_record_batch(&batch, &mask)
                        .map_err(|e| SyncError::Internal(e.to_string()))?,
                );
            }
        }
        if keep_rows == segment.rows {
            kept.push(segment.clone());
        } else if keep_rows == 0 {
            dropped += 1;
        } else {
            rewritten += 1;
            if staged.is_none() {
                staged = Some(store.stage(asset_id, staging_id, schema.clone(), options)?);
            }
            if let Some(s) = staged.as_mut() {
                for batch in &batches {
                    s.write(&conform(batch, &schema)?)?;
                }
            }
        }
    }
    if removed == 0 {
        if let Some(s) = staged {
            s.abort()?;
        }
        return Ok(None);
    }
    let mut segments = kept;
    if let Some(s) = staged {
        segments.extend(s.finish()?.segments);
    }
    if segments.is_empty() {
        // Every row is past retention: an empty segment keeps the schema.
        let s = store.stage(asset_id, staging_id, schema.clone(), options)?;
        segments = s.finish()?.segments;
    }
    Ok(Some(Trimmed {
        manifest: Manifest {
            schema: manifest.schema.clone(),
            segments,
        },
        rows_removed: removed,
        segments_dropped: dropped,
        segments_rewritten: rewritten,
    }))
}
