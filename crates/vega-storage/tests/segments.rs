//! Behaviour of the segment store on real files in temporary directories.

use std::collections::HashSet;
use std::fs;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use vega_core::{Classify, ErrorClass, Id, IdKind, Manifest};
use vega_storage::{schema_from_manifest, SegmentStore, StorageError, WriteOptions};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
    ]))
}

fn batch(start: i64, n: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|i| (i % 3 != 0).then(|| format!("n{i}")))
        .collect();
    let at: Vec<i64> = ids.iter().map(|i| 1_700_000_000_000 + i).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(TimestampMillisecondArray::from(at).with_timezone("UTC")),
        ],
    )
    .unwrap()
}

fn store() -> (tempfile::TempDir, SegmentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path().join("segments")).unwrap();
    (dir, store)
}

fn asset() -> Id {
    Id::generate(IdKind::Asset)
}

fn write_version(
    store: &SegmentStore,
    rows_per_segment: usize,
    batches: &[RecordBatch],
) -> Manifest {
    let options = WriteOptions {
        rows_per_segment,
        ..WriteOptions::default()
    };
    let mut staged = store.stage(&asset(), "job_1", schema(), options).unwrap();
    for b in batches {
        staged.write(b).unwrap();
    }
    staged.finish().unwrap()
}

fn read_back(store: &SegmentStore, manifest: &Manifest) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for seg in &manifest.segments {
        let file = fs::File::open(store.absolute(&seg.path).unwrap()).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            out.push(b.unwrap());
        }
    }
    out
}

#[test]
fn open_creates_the_root_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/segments");
    let store = SegmentStore::open(&root).unwrap();
    assert!(root.is_dir());
    assert_eq!(store.root(), root.as_path());
}

#[test]
fn written_version_round_trips_through_parquet() {
    let (_d, store) = store();
    let manifest = write_version(&store, 1000, &[batch(0, 10), batch(10, 5)]);

    assert_eq!(manifest.rows(), 15);
    assert_eq!(manifest.segments.len(), 1);
    let seg = &manifest.segments[0];
    assert!(
        seg.path.ends_with("/job_1/part-00000.parquet"),
        "{}",
        seg.path
    );
    assert_eq!(seg.sha256.len(), 64);
    assert_eq!(
        seg.bytes,
        fs::metadata(store.absolute(&seg.path).unwrap())
            .unwrap()
            .len()
    );
    store.validate(&manifest).unwrap();
    store.verify_checksums(&manifest).unwrap();
    assert_eq!(schema_from_manifest(&manifest).unwrap(), *schema());

    let batches = read_back(&store, &manifest);
    assert_eq!(batches[0].schema(), schema());
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, (0..15).collect::<Vec<_>>());
    let names = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert!(names.is_null(0));
    assert_eq!(names.value(1), "n1");
    let at = batches[0]
        .column(2)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(at.value(4), 1_700_000_000_004);
}

#[test]
fn manifest_schema_is_arrow_schema_serde_json() {
    let (_d, store) = store();
    let manifest = write_version(&store, 1000, &[batch(0, 1)]);
    assert_eq!(
        manifest.schema,
        serde_json::to_value(schema().as_ref()).unwrap()
    );
}

#[test]
fn rows_roll_into_several_files_by_rows_per_segment() {
    let (_d, store) = store();
    let manifest = write_version(&store, 4, &[batch(0, 3), batch(3, 7)]);

    let rows: Vec<u64> = manifest.segments.iter().map(|s| s.rows).collect();
    assert_eq!(rows, vec![4, 4, 2]);
    let names: Vec<&str> = manifest
        .segments
        .iter()
        .map(|s| s.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet"
        ]
    );
    store.validate(&manifest).unwrap();
    let total: usize = read_back(&store, &manifest)
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(total, 10);
}

#[test]
fn exactly_full_segment_does_not_leave_an_empty_extra_file() {
    let (_d, store) = store();
    let manifest = write_version(&store, 5, &[batch(0, 10)]);
    let rows: Vec<u64> = manifest.segments.iter().map(|s| s.rows).collect();
    assert_eq!(rows, vec![5, 5]);
}

#[test]
fn empty_version_has_one_readable_zero_row_segment() {
    let (_d, store) = store();
    let manifest = write_version(&store, 100, &[]);

    assert_eq!(manifest.segments.len(), 1);
    assert_eq!(manifest.segments[0].rows, 0);
    store.validate(&manifest).unwrap();
    let file = fs::File::open(store.absolute(&manifest.segments[0].path).unwrap()).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(builder.schema(), &schema());
    assert_eq!(builder.metadata().file_metadata().num_rows(), 0);
}

#[test]
fn finish_leaves_no_tmp_files() {
    let (_d, store) = store();
    let manifest = write_version(&store, 3, &[batch(0, 7)]);
    let dir = store
        .absolute(manifest.segments[0].path.rsplit_once('/').unwrap().0)
        .unwrap();
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| n.ends_with(".parquet")), "{names:?}");
}

#[test]
fn rows_and_bytes_written_are_tracked() {
    let (_d, store) = store();
    let options = WriteOptions {
        rows_per_segment: 2,
        ..WriteOptions::default()
    };
    let mut staged = store.stage(&asset(), "job_1", schema(), options).unwrap();
    staged.write(&batch(0, 5)).unwrap();
    assert_eq!(staged.rows(), 5);
    assert!(staged.bytes_written() > 0);
}

#[test]
fn write_with_a_mismatched_schema_is_refused_naming_the_column() {
    let (_d, store) = store();
    let mut staged = store
        .stage(&asset(), "job_1", schema(), WriteOptions::default())
        .unwrap();
    let other = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Int64, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
    ]));
    let bad = RecordBatch::try_new(
        other,
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![2])),
            Arc::new(TimestampMillisecondArray::from(vec![3]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    let err = staged.write(&bad).unwrap_err();
    assert!(matches!(err, StorageError::SchemaMismatch { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::RuleBroken);
    let text = err.to_string();
    assert!(
        text.contains("'name'") && text.contains("Int64") && text.contains("Utf8"),
        "{text}"
    );
    assert_eq!(staged.rows(), 0);
}

#[test]
fn staging_into_a_non_empty_directory_is_refused() {
    let (_d, store) = store();
    let id = asset();
    let mut first = store
        .stage(&id, "job_1", schema(), WriteOptions::default())
        .unwrap();
    first.write(&batch(0, 1)).unwrap();
    let err = store
        .stage(&id, "job_1", schema(), WriteOptions::default())
        .unwrap_err();
    assert!(matches!(err, StorageError::StagingExists { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Conflict);
}

#[test]
fn staging_with_bad_ids_or_zero_rows_per_segment_is_refused() {
    let (_d, store) = store();
    for bad in ["", "..", "a/b", "x y"] {
        let err = store
            .stage(&asset(), bad, schema(), WriteOptions::default())
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::BadInput, "{bad:?}: {err}");
    }
    let options = WriteOptions {
        rows_per_segment: 0,
        ..WriteOptions::default()
    };
    let err = store
        .stage(&asset(), "job_1", schema(), options)
        .unwrap_err();
    assert!(err.to_string().contains("rows_per_segment"), "{err}");
}

#[test]
fn validate_detects_a_missing_file() {
    let (_d, store) = store();
    let manifest = write_version(&store, 2, &[batch(0, 4)]);
    let victim = &manifest.segments[1].path;
    fs::remove_file(store.absolute(victim).unwrap()).unwrap();
    let err = store.validate(&manifest).unwrap_err();
    assert!(
        matches!(&err, StorageError::SegmentMissing { path } if path == victim),
        "{err}"
    );
    assert!(err.to_string().contains(victim.as_str()));
}

#[test]
fn validate_detects_a_truncated_file() {
    let (_d, store) = store();
    let mut manifest = write_version(&store, 100, &[batch(0, 50)]);
    let seg_path = manifest.segments[0].path.clone();
    let path = store.absolute(&seg_path).unwrap();
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let err = store.validate(&manifest).unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
    assert!(err.to_string().contains(&seg_path), "{err}");

    // Even when the manifest's size is fixed up, the footer is unreadable.
    manifest.segments[0].bytes = (bytes.len() / 2) as u64;
    let err = store.validate(&manifest).unwrap_err();
    assert!(matches!(err, StorageError::SegmentInvalid { .. }), "{err}");
    assert!(err.to_string().contains("footer"), "{err}");
}

#[test]
fn validate_detects_a_wrong_row_count() {
    let (_d, store) = store();
    let mut manifest = write_version(&store, 100, &[batch(0, 5)]);
    manifest.segments[0].rows = 6;
    let err = store.validate(&manifest).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("5 rows") && text.contains("says 6"), "{text}");
    assert_eq!(err.class(), ErrorClass::RuleBroken);
}

#[test]
fn validate_detects_a_schema_that_differs_from_the_manifest() {
    let (_d, store) = store();
    let mut manifest = write_version(&store, 100, &[batch(0, 5)]);
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[0] = Field::new("id", DataType::Int32, false);
    manifest.schema = serde_json::to_value(Schema::new(fields)).unwrap();
    let err = store.validate(&manifest).unwrap_err();
    assert!(err.to_string().contains("schema"), "{err}");
    assert!(err.to_string().contains("'id'"), "{err}");
}

#[test]
fn validate_refuses_a_manifest_without_segments() {
    let (_d, store) = store();
    let mut manifest = write_version(&store, 100, &[batch(0, 1)]);
    manifest.segments.clear();
    assert!(matches!(
        store.validate(&manifest),
        Err(StorageError::EmptyManifest)
    ));
}

#[test]
fn validate_refuses_a_manifest_path_outside_the_root() {
    let (_d, store) = store();
    let mut manifest = write_version(&store, 100, &[batch(0, 1)]);
    manifest.segments[0].path = "../outside.parquet".into();
    let err = store.validate(&manifest).unwrap_err();
    assert!(matches!(err, StorageError::InvalidPath { .. }), "{err}");
}

#[test]
fn verify_checksums_names_the_corrupted_file() {
    let (_d, store) = store();
    let manifest = write_version(&store, 2, &[batch(0, 6)]);
    store.verify_checksums(&manifest).unwrap();
    let victim = &manifest.segments[1].path;
    let path = store.absolute(victim).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 0xFF;
    fs::write(&path, bytes).unwrap();

    let err = store.verify_checksums(&manifest).unwrap_err();
    match &err {
        StorageError::ChecksumMismatch { path, expected, .. } => {
            assert_eq!(path, victim);
            assert_eq!(expected, &manifest.segments[1].sha256);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains(victim.as_str()));
}

#[test]
fn abort_removes_the_staged_files() {
    let (_d, store) = store();
    let id = asset();
    let options = WriteOptions {
        rows_per_segment: 2,
        ..WriteOptions::default()
    };
    let mut staged = store.stage(&id, "job_1", schema(), options).unwrap();
    staged.write(&batch(0, 5)).unwrap();
    let dir = store.absolute(staged.relative_dir()).unwrap();
    assert!(dir.is_dir());
    staged.abort().unwrap();
    assert!(!dir.exists());
    assert!(!store.absolute(id.as_str()).unwrap().exists());
}

#[test]
fn remove_orphans_keeps_referenced_and_in_flight_files() {
    let (_d, store) = store();
    let manifest = write_version(&store, 2, &[batch(0, 4)]);
    let referenced: HashSet<String> = manifest.segments.iter().map(|s| s.path.clone()).collect();

    let mut in_flight = store
        .stage(
            &asset(),
            "job_2",
            schema(),
            WriteOptions {
                rows_per_segment: 2,
                ..WriteOptions::default()
            },
        )
        .unwrap();
    in_flight.write(&batch(0, 3)).unwrap(); // one closed part, one open .tmp part
    let keep = vec![in_flight.relative_dir().to_string()];

    let report = store.remove_orphans(&referenced, &keep).unwrap();
    assert_eq!(report.files_removed, 0, "{report:?}");
    store.validate(&manifest).unwrap();
    let in_flight_manifest = in_flight.finish().unwrap();
    store.validate(&in_flight_manifest).unwrap();
}

#[test]
fn remove_orphans_removes_unreferenced_tmp_files_and_empty_dirs() {
    let (_d, store) = store();
    let kept = write_version(&store, 100, &[batch(0, 4)]);
    let dropped = write_version(&store, 100, &[batch(0, 4)]);
    let referenced: HashSet<String> = kept.segments.iter().map(|s| s.path.clone()).collect();

    let kept_dir = kept.segments[0]
        .path
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    let leftover = store
        .absolute(&format!("{kept_dir}/part-00009.parquet.tmp"))
        .unwrap();
    fs::write(&leftover, b"partial").unwrap();
    let empty_dir = store.absolute("ast_gone/job_gone").unwrap();
    fs::create_dir_all(&empty_dir).unwrap();
    let dropped_path = store.absolute(&dropped.segments[0].path).unwrap();
    let dropped_asset_dir = dropped_path
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();

    let report = store.remove_orphans(&referenced, &[]).unwrap();

    assert_eq!(report.files_removed, 2, "{report:?}");
    assert_eq!(report.bytes_removed, dropped.segments[0].bytes + 7);
    assert!(!dropped_path.exists());
    assert!(!leftover.exists());
    assert!(!dropped_asset_dir.exists());
    assert!(!store.absolute("ast_gone").unwrap().exists());
    assert_eq!(report.dirs_removed, 4, "{report:?}");
    assert!(store.root().is_dir());
    store.validate(&kept).unwrap();
}

#[test]
fn remove_orphans_keeps_an_empty_in_flight_directory() {
    let (_d, store) = store();
    let staged = store
        .stage(&asset(), "job_1", schema(), WriteOptions::default())
        .unwrap();
    let keep = vec![staged.relative_dir().to_string()];
    store.remove_orphans(&HashSet::new(), &keep).unwrap();
    assert!(store.absolute(staged.relative_dir()).unwrap().is_dir());
    staged.finish().unwrap();
}

#[test]
fn absolute_refuses_parent_and_absolute_paths() {
    let (_d, store) = store();
    for bad in ["../x", "/etc/passwd", "a/../../x", "", "a//b", "./a"] {
        let err = store.absolute(bad).unwrap_err();
        assert!(matches!(err, StorageError::InvalidPath { .. }), "{bad:?}");
        assert_eq!(err.class(), ErrorClass::BadInput);
    }
    assert_eq!(
        store.absolute("ast_1/job_1/part-00000.parquet").unwrap(),
        store
            .root()
            .join("ast_1")
            .join("job_1")
            .join("part-00000.parquet")
    );
}

#[test]
fn check_writable_succeeds_and_leaves_nothing_behind() {
    let (_d, store) = store();
    store.check_writable().unwrap();
    assert_eq!(fs::read_dir(store.root()).unwrap().count(), 0);
}

#[test]
fn check_writable_fails_when_the_root_is_gone() {
    let (_d, store) = store();
    fs::remove_dir(store.root()).unwrap();
    let err = store.check_writable().unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains(".probe"), "{err}");
}

#[test]
fn disk_usage_reports_file_system_and_root_bytes() {
    let (_d, store) = store();
    let manifest = write_version(&store, 100, &[batch(0, 10)]);
    let usage = store.disk_usage().unwrap();
    assert!(usage.total_bytes > 0);
    assert!(usage.available_bytes <= usage.total_bytes);
    assert_eq!(usage.used_by_root_bytes, manifest.bytes());
}

#[test]
fn schema_from_manifest_refuses_garbage() {
    let manifest = Manifest {
        schema: serde_json::json!({"fields": 3}),
        segments: vec![],
    };
    let err = schema_from_manifest(&manifest).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Internal);
}

#[test]
fn a_shared_root_keeps_unreferenced_files_younger_than_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("segments");
    // Another node's flush, not yet committed: unreferenced but young.
    let other = SegmentStore::open(&root).unwrap();
    let theirs = write_version(&other, 100, &[batch(0, 4)]);
    let shared = SegmentStore::open_shared(&root, std::time::Duration::from_secs(3600)).unwrap();
    let report = shared.remove_orphans(&HashSet::new(), &[]).unwrap();
    assert_eq!(report.files_removed, 0, "{report:?}");
    shared.validate(&theirs).unwrap();
    // With no grace (one node owns the root), the same files are orphans.
    let report = other.remove_orphans(&HashSet::new(), &[]).unwrap();
    assert_eq!(report.files_removed, 1, "{report:?}");
}

/// Segments pushed to an object store (here object_store's in-memory one)
/// are fetched by another node's store, checked against the manifest; a
/// corrupted object is refused, naming the segment, and nothing is put in
/// place.
#[test]
fn pushed_segments_are_pulled_checked_and_a_corrupt_object_is_refused() {
    use object_store::ObjectStore;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bucket: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let remote = vega_storage::RemoteSegments::new(bucket.clone(), "segments");
    let (_d1, a) = store();
    let a = a.with_remote(remote.clone());
    let manifest = write_version(&a, 2, &[batch(0, 5)]);
    runtime.block_on(a.push(&manifest)).unwrap();

    let (_d2, b) = store();
    let b = b.with_remote(remote);
    assert_eq!(
        runtime.block_on(b.pull(&manifest)).unwrap(),
        manifest.segments.len()
    );
    b.validate(&manifest).unwrap();
    // Present now: nothing more to fetch.
    assert_eq!(runtime.block_on(b.pull(&manifest)).unwrap(), 0);

    // A third node, and an object damaged in the bucket.
    let victim = &manifest.segments[1];
    runtime
        .block_on(bucket.put(
            &object_store::path::Path::from(format!("segments/{}", victim.path)),
            object_store::PutPayload::from(vec![0u8; victim.bytes as usize]),
        ))
        .unwrap();
    let (_d3, c) = store();
    let c = c.with_remote(vega_storage::RemoteSegments::new(bucket, "segments"));
    match runtime.block_on(c.pull(&manifest)) {
        Err(StorageError::ChecksumMismatch { path, .. }) => assert_eq!(path, victim.path),
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(!c.absolute(&victim.path).unwrap().exists());
}
