//! Behaviour of the file connector on real files in temporary directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use serde_json::{json, Value};
use vega_core::{Classify, ErrorClass};

use super::*;
use crate::ConnectorError;

struct Fixture {
    _dir: tempfile::TempDir,
    /// The allowed root (canonical).
    root: PathBuf,
    /// A directory next to the root, outside it.
    outside: PathBuf,
    connector: FileConnector,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let root = base.join("data");
    let outside = base.join("elsewhere");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let connector = FileConnector::new(vec![root.clone()]);
    Fixture {
        _dir: dir,
        root,
        outside,
        connector,
    }
}

impl Fixture {
    fn params(&self) -> Value {
        json!({ "root": self.root })
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join(name);
        fs::write(&path, content).unwrap();
        path
    }

    fn read_all(&self, source: Value) -> Result<(Arc<Schema>, Vec<RecordBatch>), ConnectorError> {
        let mut src = self.connector.open(&self.params(), &source)?;
        let schema = src.schema();
        let mut batches = Vec::new();
        while let Some(b) = src.next_batch()? {
            assert_eq!(b.schema(), schema);
            batches.push(b);
        }
        Ok((schema, batches))
    }

    fn read_err(&self, source: Value) -> ConnectorError {
        match self.read_all(source) {
            Ok(_) => panic!("read should have failed"),
            Err(e) => e,
        }
    }
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

fn assert_bad_data(err: &ConnectorError, expected_location: &str) {
    match err {
        ConnectorError::BadData { location, .. } => {
            assert_eq!(location, expected_location, "{err}")
        }
        other => panic!("expected BadData at {expected_location}, got {other}"),
    }
    assert_eq!(err.class(), ErrorClass::RuleBroken);
    assert!(!err.is_retryable());
}

fn assert_invalid_field(err: &ConnectorError, expected_field: &str) {
    match err {
        ConnectorError::InvalidParams { field, .. } => assert_eq!(field, expected_field, "{err}"),
        other => panic!("expected InvalidParams for {expected_field}, got {other}"),
    }
    assert_eq!(err.class(), ErrorClass::RuleBroken);
}

/// `n` rows of `id,amount,name` after a header.
fn csv_rows(n: usize) -> String {
    let mut s = String::from("id,amount,name\n");
    for i in 1..=n {
        s.push_str(&format!("{i},{i}.5,n{i}\n"));
    }
    s
}

// ------------------------------------------------------------------ CSV

#[test]
fn csv_reads_rows_with_inferred_types() {
    let f = fixture();
    f.write(
        "orders.csv",
        "id,name,amount,active,day\n1,ann,1.5,true,2024-01-02\n2,,2.25,false,2024-01-03\n",
    );
    let (schema, batches) = f.read_all(json!({"path": "orders.csv"})).unwrap();

    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        [
            &DataType::Int64,
            &DataType::Utf8,
            &DataType::Float64,
            &DataType::Boolean,
            &DataType::Date32
        ]
    );
    assert_eq!(rows(&batches), 2);
    let b = &batches[0];
    assert_eq!(col::<Int64Array>(b, "id").values(), &[1, 2]);
    assert_eq!(col::<StringArray>(b, "name").value(0), "ann");
    assert!(
        col::<StringArray>(b, "name").is_null(1),
        "empty field is NULL"
    );
    assert_eq!(col::<Float64Array>(b, "amount").value(1), 2.25);
    assert!(!col::<BooleanArray>(b, "active").value(1));
}

#[test]
fn csv_batches_follow_batch_size() {
    let f = fixture();
    f.write("orders.csv", csv_rows(10));
    let (_, batches) = f
        .read_all(json!({"path": "orders.csv", "batch_size": 4}))
        .unwrap();
    let sizes: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
    assert_eq!(sizes, [4, 4, 2]);
}

#[test]
fn tsv_extension_means_csv_with_tabs() {
    let f = fixture();
    f.write("orders.tsv", "id\tname\n1\ta,b\n2\tc\n");
    let resolved = f
        .connector
        .resolve(&f.params(), &json!({"path": "orders.tsv"}))
        .unwrap();
    assert_eq!(resolved.format, FileFormat::Csv);
    let (schema, batches) = f.read_all(json!({"path": "orders.tsv"})).unwrap();
    assert_eq!(schema.fields().len(), 2);
    assert_eq!(col::<StringArray>(&batches[0], "name").value(0), "a,b");
}

#[test]
fn csv_options_set_delimiter_header_and_null() {
    let f = fixture();
    f.write("plain.txt", "1;NA\n2;x\n");
    let (schema, batches) = f
        .read_all(json!({
            "path": "plain.txt",
            "format": "csv",
            "csv": {"delimiter": ";", "header": false, "null": "NA"}
        }))
        .unwrap();
    assert_eq!(schema.field(0).name(), "column_1");
    let b = &batches[0];
    assert_eq!(col::<Int64Array>(b, "column_1").values(), &[1, 2]);
    assert!(col::<StringArray>(b, "column_2").is_null(0));
    assert_eq!(col::<StringArray>(b, "column_2").value(1), "x");
}

#[test]
fn csv_byte_order_mark_is_not_part_of_the_first_column_name() {
    let f = fixture();
    f.write("bom.csv", b"\xEF\xBB\xBFid,name\n1,a\n");
    let (schema, _) = f.read_all(json!({"path": "bom.csv"})).unwrap();
    assert_eq!(schema.field(0).name(), "id");
}

#[test]
fn csv_with_only_a_header_has_string_columns_and_no_rows() {
    let f = fixture();
    f.write("empty.csv", "id,name\n");
    let (schema, batches) = f.read_all(json!({"path": "empty.csv"})).unwrap();
    assert_eq!(schema.fields().len(), 2);
    assert!(schema
        .fields()
        .iter()
        .all(|f| f.data_type() == &DataType::Utf8 && f.is_nullable()));
    assert_eq!(rows(&batches), 0);
}

#[test]
fn csv_empty_file_is_refused() {
    let f = fixture();
    f.write("nothing.csv", "");
    let err = f.read_err(json!({"path": "nothing.csv"}));
    assert_bad_data(&err, "nothing.csv");
}

#[test]
fn csv_duplicate_header_names_are_refused() {
    let f = fixture();
    f.write("dup.csv", "id,id\n1,2\n");
    let err = f.read_err(json!({"path": "dup.csv"}));
    assert_bad_data(&err, "dup.csv line 1");
    assert!(err.to_string().contains("'id'"), "{err}");
}

#[test]
fn csv_bad_value_beyond_the_inference_window_names_its_line() {
    let f = fixture();
    // Header on line 1, data row i on line i + 1; the bad value is on line 1300.
    let mut text = csv_rows(1500);
    text = text.replace("\n1299,1299.5,", "\n1299,oops,");
    f.write("orders.csv", text);
    for batch_size in [100, 8192] {
        let err = f.read_err(json!({"path": "orders.csv", "batch_size": batch_size}));
        assert_bad_data(&err, "orders.csv line 1300");
        let text = err.to_string();
        assert!(
            text.contains("'amount'") && text.contains("'oops'") && text.contains("Float64"),
            "{text}"
        );
    }
}

#[test]
fn csv_wrong_field_count_within_the_inference_window_names_its_line() {
    let f = fixture();
    f.write(
        "orders.csv",
        "id,amount,name\n1,1.5,a\n2,2.5,b\n3,3.5\n4,4.5,d\n",
    );
    let err = match f
        .connector
        .open(&f.params(), &json!({"path": "orders.csv"}))
    {
        Ok(_) => panic!("open should fail"),
        Err(e) => e,
    };
    assert_bad_data(&err, "orders.csv line 4");
    assert!(
        err.to_string().contains("expected 3 fields, found 2"),
        "{err}"
    );
}

#[test]
fn csv_wrong_field_count_beyond_the_inference_window_names_its_line() {
    let f = fixture();
    let text = csv_rows(1500).replace("\n1400,1400.5,n1400\n", "\n1400,1400.5,n1400,extra\n");
    f.write("orders.csv", text);
    let err = f.read_err(json!({"path": "orders.csv", "batch_size": 256}));
    assert_bad_data(&err, "orders.csv line 1401");
    assert!(
        err.to_string().contains("expected 3 fields, found 4"),
        "{err}"
    );
}

#[test]
fn csv_line_numbers_count_blank_lines_and_multi_line_fields() {
    let f = fixture();
    let mut text = String::from("id,note\n");
    for i in 0..1100 {
        text.push_str(&format!("{i},n\n"));
    }
    text.push('\n');
    text.push_str("5,\"two\nlines\"\n");
    text.push_str("bad,c\n");
    // header + 1100 rows = lines 1..=1101, blank 1102, quoted 1103-1104, bad 1105.
    f.write("notes.csv", text);
    let err = f.read_err(json!({"path": "notes.csv", "batch_size": 500}));
    assert_bad_data(&err, "notes.csv line 1105");
}

#[test]
fn csv_source_keeps_failing_after_an_error() {
    let f = fixture();
    f.write("orders.csv", csv_rows(1200).replace("\n1100,", "\nbad,"));
    let mut src = f
        .connector
        .open(
            &f.params(),
            &json!({"path": "orders.csv", "batch_size": 2000}),
        )
        .unwrap();
    assert!(src.next_batch().is_err());
    let again = src.next_batch().unwrap_err();
    assert!(again.to_string().contains("already failed"), "{again}");
}

// ------------------------------------------------------------------ Parquet

fn write_parquet(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
        ],
    )
    .unwrap();
    let file = fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_reads_rows_with_the_file_schema() {
    let f = fixture();
    write_parquet(&f.root.join("items.parquet"));
    let (schema, batches) = f
        .read_all(json!({"path": "items.parquet", "batch_size": 2}))
        .unwrap();
    assert_eq!(schema.field(0), &Field::new("id", DataType::Int64, false));
    assert_eq!(rows(&batches), 3);
    assert_eq!(col::<Int64Array>(&batches[0], "id").values(), &[1, 2]);
    assert!(col::<StringArray>(&batches[0], "name").is_null(1));
}

#[test]
fn parquet_garbage_is_bad_data() {
    let f = fixture();
    f.write("broken.parquet", "this is not parquet");
    let err = f.read_err(json!({"path": "broken.parquet"}));
    assert_bad_data(&err, "broken.parquet");
}

// ------------------------------------------------------------------ JSON

#[test]
fn ndjson_reads_rows_with_inferred_types() {
    let f = fixture();
    f.write(
        "events.ndjson",
        "{\"id\": 1, \"kind\": \"a\", \"v\": 1.5, \"ok\": true}\n\n{\"id\": 2, \"kind\": null, \"v\": 2, \"ok\": false}\r\n",
    );
    let (schema, batches) = f.read_all(json!({"path": "events.ndjson"})).unwrap();
    assert_eq!(
        schema.field_with_name("id").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(
        schema.field_with_name("kind").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        schema.field_with_name("v").unwrap().data_type(),
        &DataType::Float64
    );
    assert_eq!(
        schema.field_with_name("ok").unwrap().data_type(),
        &DataType::Boolean
    );
    assert_eq!(rows(&batches), 2);
    let b = &batches[0];
    assert_eq!(col::<Int64Array>(b, "id").values(), &[1, 2]);
    assert!(col::<StringArray>(b, "kind").is_null(1));
    assert_eq!(col::<Float64Array>(b, "v").value(1), 2.0);
}

#[test]
fn jsonl_extension_means_ndjson() {
    let f = fixture();
    f.write("events.jsonl", "{\"id\": 1}\n{\"id\": 2}\n");
    let resolved = f
        .connector
        .resolve(&f.params(), &json!({"path": "events.jsonl"}))
        .unwrap();
    assert_eq!(resolved.format, FileFormat::Ndjson);
    let (_, batches) = f.read_all(json!({"path": "events.jsonl"})).unwrap();
    assert_eq!(rows(&batches), 2);
}

#[test]
fn json_file_with_a_top_level_array_is_read() {
    let f = fixture();
    f.write(
        "items.json",
        "  [\n {\"id\": 1, \"name\": \"a\"},\n {\"id\": 2, \"name\": \"b\"},\n {\"id\": 3}\n]\n",
    );
    let (schema, batches) = f
        .read_all(json!({"path": "items.json", "batch_size": 2}))
        .unwrap();
    assert_eq!(
        schema.field_with_name("id").unwrap().data_type(),
        &DataType::Int64
    );
    let sizes: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
    assert_eq!(sizes, [2, 1]);
    assert!(col::<StringArray>(&batches[1], "name").is_null(0));
}

#[test]
fn json_file_with_one_object_per_line_is_read_as_ndjson() {
    let f = fixture();
    f.write("items.json", "{\"id\": 1}\n{\"id\": 2}\n");
    let (_, batches) = f.read_all(json!({"path": "items.json"})).unwrap();
    assert_eq!(rows(&batches), 2);
}

#[test]
fn ndjson_invalid_json_names_its_line() {
    let f = fixture();
    f.write(
        "events.ndjson",
        "{\"id\": 1}\n{\"id\": 2}\n{\"id\": \n{\"id\": 4}\n",
    );
    let err = f.read_err(json!({"path": "events.ndjson"}));
    assert_bad_data(&err, "events.ndjson line 3");
}

#[test]
fn ndjson_value_of_the_wrong_type_beyond_the_inference_window_names_its_line() {
    let f = fixture();
    let mut text = String::new();
    for i in 1..=1500 {
        if i == 1234 {
            text.push_str("{\"id\": \"not a number\"}\n");
        } else {
            text.push_str(&format!("{{\"id\": {i}}}\n"));
        }
    }
    f.write("events.ndjson", text);
    let err = f.read_err(json!({"path": "events.ndjson", "batch_size": 100}));
    assert_bad_data(&err, "events.ndjson line 1234");
}

#[test]
fn ndjson_field_not_in_the_inferred_schema_names_its_line() {
    let f = fixture();
    let mut text = String::new();
    for i in 1..=1200 {
        text.push_str(&format!("{{\"id\": {i}}}\n"));
    }
    text.push_str("{\"id\": 1201, \"surprise\": true}\n");
    f.write("events.ndjson", text);
    let err = f.read_err(json!({"path": "events.ndjson"}));
    assert_bad_data(&err, "events.ndjson line 1201");
    assert!(err.to_string().contains("surprise"), "{err}");
}

#[test]
fn ndjson_two_values_on_one_line_are_refused() {
    let f = fixture();
    let mut text = String::new();
    for i in 1..=1100 {
        text.push_str(&format!("{{\"id\": {i}}}\n"));
    }
    text.push_str("{\"id\": 1} {\"id\": 2}\n");
    f.write("events.ndjson", text);
    let err = f.read_err(json!({"path": "events.ndjson"}));
    assert_bad_data(&err, "events.ndjson line 1101");
}

#[test]
fn json_array_element_that_is_not_an_object_is_named() {
    let f = fixture();
    f.write("items.json", "[{\"id\": 1}, 2, {\"id\": 3}]");
    let err = f.read_err(json!({"path": "items.json"}));
    assert_bad_data(&err, "items.json element 2");
}

#[test]
fn json_array_with_invalid_json_names_line_and_column() {
    let f = fixture();
    f.write("items.json", "[\n{\"id\": 1},\n{\"id\": oops}\n]");
    let err = f.read_err(json!({"path": "items.json"}));
    assert_bad_data(&err, "items.json line 3 column 8");
}

#[test]
fn json_array_element_of_the_wrong_type_is_named() {
    let f = fixture();
    let mut items: Vec<Value> = (1..=1100).map(|i| json!({"id": i})).collect();
    items[1049] = json!({"id": "x"});
    f.write("items.json", serde_json::to_vec(&items).unwrap());
    let err = f.read_err(json!({"path": "items.json", "batch_size": 100}));
    assert_bad_data(&err, "items.json element 1050");
}

#[test]
fn json_array_over_the_size_bound_is_refused() {
    let f = fixture();
    let path = f.write("huge.json", "[");
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(source::MAX_JSON_ARRAY_BYTES + 1).unwrap(); // sparse
    let err = f.read_err(json!({"path": "huge.json"}));
    assert!(matches!(err, ConnectorError::FileTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("huge.json"), "{err}");
}

#[test]
fn empty_json_file_is_refused() {
    let f = fixture();
    f.write("none.ndjson", "\n\n");
    let err = f.read_err(json!({"path": "none.ndjson"}));
    assert_bad_data(&err, "none.ndjson");
}

// ------------------------------------------------------------------ formats

#[test]
fn format_is_inferred_from_the_extension() {
    let f = fixture();
    for (name, format) in [
        ("a.csv", FileFormat::Csv),
        ("a.CSV", FileFormat::Csv),
        ("a.parquet", FileFormat::Parquet),
        ("a.json", FileFormat::Json),
        ("a.ndjson", FileFormat::Ndjson),
    ] {
        f.write(name, "x");
        let resolved = f
            .connector
            .resolve(&f.params(), &json!({"path": name}))
            .unwrap();
        assert_eq!(resolved.format, format, "{name}");
    }
}

#[test]
fn explicit_format_overrides_the_extension() {
    let f = fixture();
    f.write("export.dat", "{\"id\": 1}\n");
    let (_, batches) = f
        .read_all(json!({"path": "export.dat", "format": "ndjson"}))
        .unwrap();
    assert_eq!(rows(&batches), 1);
}

#[test]
fn unknown_extension_without_format_is_refused() {
    let f = fixture();
    f.write("data.xml", "<x/>");
    let err = f
        .connector
        .resolve(&f.params(), &json!({"path": "data.xml"}))
        .unwrap_err();
    assert_invalid_field(&err, "format");
    assert!(err.to_string().contains("data.xml"), "{err}");
}

#[test]
fn unknown_format_name_is_refused() {
    let f = fixture();
    f.write("data.csv", "a\n1\n");
    let err = f
        .connector
        .resolve(&f.params(), &json!({"path": "data.csv", "format": "xml"}))
        .unwrap_err();
    assert_invalid_field(&err, "format");
    assert!(err.to_string().contains("xml"), "{err}");
}

#[test]
fn csv_options_on_another_format_are_refused() {
    let f = fixture();
    f.write("a.ndjson", "{}");
    let err = f
        .connector
        .resolve(
            &f.params(),
            &json!({"path": "a.ndjson", "csv": {"header": false}}),
        )
        .unwrap_err();
    assert_invalid_field(&err, "csv");
}

#[test]
fn bad_delimiter_is_refused() {
    let f = fixture();
    f.write("a.csv", "a\n");
    let err = f
        .connector
        .resolve(
            &f.params(),
            &json!({"path": "a.csv", "csv": {"delimiter": ";;"}}),
        )
        .unwrap_err();
    assert_invalid_field(&err, "csv.delimiter");
}

#[test]
fn batch_size_out_of_range_is_refused() {
    let f = fixture();
    f.write("a.csv", "a\n");
    for bad in [json!(0), json!(MAX_BATCH_SIZE + 1), json!(-1), json!("10")] {
        let err = f
            .connector
            .resolve(&f.params(), &json!({"path": "a.csv", "batch_size": bad}))
            .unwrap_err();
        assert_invalid_field(&err, "batch_size");
    }
}

// ------------------------------------------------------------------ params

#[test]
fn unknown_connection_param_is_refused_by_name() {
    let f = fixture();
    let err = f
        .connector
        .check_connection(&json!({"root": f.root, "rooot": "/x"}))
        .unwrap_err();
    assert_invalid_field(&err, "rooot");
}

#[test]
fn unknown_source_fields_are_refused_by_name() {
    let f = fixture();
    f.write("a.csv", "a\n");
    let err = f
        .connector
        .resolve(&f.params(), &json!({"path": "a.csv", "pathh": "b.csv"}))
        .unwrap_err();
    assert_invalid_field(&err, "pathh");
    let err = f
        .connector
        .resolve(
            &f.params(),
            &json!({"path": "a.csv", "csv": {"delim": ";"}}),
        )
        .unwrap_err();
    assert_invalid_field(&err, "csv.delim");
}

#[test]
fn missing_path_field_is_named() {
    let f = fixture();
    let err = f
        .connector
        .resolve(&f.params(), &json!({"format": "csv"}))
        .unwrap_err();
    assert_invalid_field(&err, "path");
}

#[test]
fn non_object_params_are_refused() {
    let f = fixture();
    let err = f.connector.check_connection(&json!("/data")).unwrap_err();
    assert_invalid_field(&err, "params");
}

#[test]
fn connection_without_root_accepts_absolute_paths_only() {
    let f = fixture();
    let path = f.write("a.csv", "a\n1\n");
    let params = json!({});
    assert_eq!(f.connector.check_connection(&params).unwrap().root, None);
    let resolved = f
        .connector
        .resolve(&params, &json!({"path": path}))
        .unwrap();
    assert_eq!(resolved.path, path);
    let err = f
        .connector
        .resolve(&params, &json!({"path": "a.csv"}))
        .unwrap_err();
    assert_invalid_field(&err, "path");
}

#[test]
fn connection_root_must_be_an_absolute_existing_directory_inside_the_roots() {
    let f = fixture();
    let file = f.write("a.csv", "a\n");
    let err = f
        .connector
        .check_connection(&json!({"root": "data"}))
        .unwrap_err();
    assert_invalid_field(&err, "root");
    let err = f
        .connector
        .check_connection(&json!({"root": file}))
        .unwrap_err();
    assert_invalid_field(&err, "root");
    let missing = f.root.join("nope");
    let err = f
        .connector
        .check_connection(&json!({"root": missing}))
        .unwrap_err();
    assert!(matches!(err, ConnectorError::PathNotFound { .. }), "{err}");
    let err = f
        .connector
        .check_connection(&json!({"root": f.outside}))
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::PathNotAllowed { .. }),
        "{err}"
    );
    let sub = f.root.join("sub");
    fs::create_dir(&sub).unwrap();
    let ok = f.connector.check_connection(&json!({"root": sub})).unwrap();
    assert_eq!(ok.root, Some(sub));
}

// ------------------------------------------------------------------ confinement

#[test]
fn relative_path_escaping_the_root_is_refused() {
    let f = fixture();
    fs::write(f.outside.join("secret.csv"), "a\n1\n").unwrap();
    let err = f
        .connector
        .resolve(&f.params(), &json!({"path": "../elsewhere/secret.csv"}))
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::PathNotAllowed { .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::RuleBroken);
}

#[test]
fn absolute_path_outside_the_roots_is_refused() {
    let f = fixture();
    let secret = f.outside.join("secret.csv");
    fs::write(&secret, "a\n1\n").unwrap();
    let err = f
        .connector
        .resolve(&f.params(), &json!({"path": secret}))
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::PathNotAllowed { .. }),
        "{err}"
    );
}

#[test]
fn missing_path_outside_the_roots_is_refused_not_reported_missing() {
    let f = fixture();
    let err = f
        .connector
        .resolve(&f.params(), &json!({"path": "/definitely/not/here.csv"}))
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::PathNotAllowed { .. }),
        "{err}"
    );
}

#[test]
fn symlink_escaping_the_root_is_refused() {
    let f = fixture();
    let secret = f.outside.join("secret.csv");
    fs::write(&secret, "a\n1\n").unwrap();
    std::os::unix::fs::symlink(&secret, f.root.join("link.csv")).unwrap();
    std::os::unix::fs::symlink(&f.outside, f.root.join("linkdir")).unwrap();
    for path in ["link.csv", "linkdir/secret.csv"] {
        let err = f
            .connector
            .resolve(&f.params(), &json!({"path": path}))
            .unwrap_err();
        assert!(
            matches!(err, ConnectorError::PathNotAllowed { .. }),
            "{path}: {err}"
        );
    }
}

#[test]
fn symlink_within_the_root_is_followed() {
    let f = fixture();
    let target = f.write("real.csv", "a\n1\n");
    std::os::unix::fs::symlink(&target, f.root.join("alias.csv")).unwrap();
    let resolved = f
        .connector
        .resolve(&f.params(), &json!({"path": "alias.csv"}))
        .unwrap();
    assert_eq!(resolved.path, target);
    assert_eq!(resolved.display, "alias.csv");
}

#[test]
fn missing_file_is_path_not_found_naming_the_path() {
    let f = fixture();
    let err = f
        .connector
        .resolve(&f.params(), &json!({"path": "nope.csv"}))
        .unwrap_err();
    match &err {
        ConnectorError::PathNotFound { path } => assert_eq!(path, &f.root.join("nope.csv")),
        other => panic!("expected PathNotFound, got {other}"),
    }
    assert!(err.to_string().contains("nope.csv"));
    assert_eq!(err.class(), ErrorClass::RuleBroken);
}

#[test]
fn directory_as_path_is_refused() {
    let f = fixture();
    fs::create_dir(f.root.join("sub.csv")).unwrap();
    let err = f
        .connector
        .resolve(&f.params(), &json!({"path": "sub.csv"}))
        .unwrap_err();
    assert_invalid_field(&err, "path");
}

#[test]
fn no_allowed_roots_refuses_every_path_with_the_setting_hint() {
    let f = fixture();
    let path = f.write("a.csv", "a\n1\n");
    let connector = FileConnector::new(vec![]);
    let err = connector
        .resolve(&json!({}), &json!({"path": path}))
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::NoAllowedRoots { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("connectors.file.allowed_roots"),
        "{err}"
    );
    let err = connector
        .check_connection(&json!({"root": f.root}))
        .unwrap_err();
    assert!(
        err.to_string().contains("connectors.file.allowed_roots"),
        "{err}"
    );
}

#[test]
fn io_errors_are_retryable() {
    let err = ConnectorError::from_io(
        "/x",
        std::io::Error::new(std::io::ErrorKind::TimedOut, "slow disk"),
    );
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert!(err.is_retryable());
}
