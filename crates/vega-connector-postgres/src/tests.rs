//! Tests against a real PostgreSQL started by `vega_testkit`.

use arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, IntervalMonthDayNanoArray, ListArray,
    StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::{json, Value};
use vega_connectors::{BatchSource, Connector, ConnectorError, Watermark};
use vega_testkit::postgres::TestPostgres;

use crate::PostgresConnector;

/// A server plus a file holding its password, referenced by the params.
struct Fixture {
    pg: TestPostgres,
    _secrets: tempfile::TempDir,
    password_file: std::path::PathBuf,
}

impl Fixture {
    fn start() -> Self {
        let pg = TestPostgres::start();
        let secrets = tempfile::tempdir().unwrap();
        let password_file = secrets.path().join("pg-password");
        std::fs::write(&password_file, format!("{}\n", pg.password())).unwrap();
        Fixture {
            pg,
            _secrets: secrets,
            password_file,
        }
    }

    fn params(&self) -> Value {
        json!({
            "host": self.pg.host(),
            "port": self.pg.port(),
            "database": self.pg.database(),
            "user": self.pg.user(),
            "password": {"file": self.password_file},
            "sslmode": "disable",
        })
    }
}

fn read_all(source: &mut dyn BatchSource) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    while let Some(b) = source.next_batch().unwrap() {
        out.push(b);
    }
    out
}

fn read_one(fx: &Fixture, source: Value) -> RecordBatch {
    let mut s = PostgresConnector.open_full(&fx.params(), &source).unwrap();
    let schema = s.schema();
    let batches = read_all(s.as_mut());
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another array type"))
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| col::<Int64Array>(b, "id").values().to_vec())
        .collect()
}

#[test]
fn scalar_types_round_trip_with_nulls() {
    let fx = Fixture::start();
    fx.pg.execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE public.all_types (
           id int8, i2 int2, i4 int4, f4 float4, f8 float8,
           dec numeric(12,3), num numeric, b bool, t text, vc varchar(10), ch char(4),
           by bytea, d date, tm time, ts timestamp, tstz timestamptz, iv interval,
           u uuid, j json, jb jsonb, m mood);
         INSERT INTO all_types VALUES
          (1, -32768, 2147483647, 1.5, -2.25, -123456789.125, 3.14159265358979323846264338327950288419716939937510, true,
           'héllo', 'abc', 'xy', '\\x00ff10', '1969-12-31', '13:45:30.123456', '2024-02-29 23:59:59.999999',
           '2024-03-01 01:00:00+02', '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
           '{\"a\": [1, 2]}', '{\"b\": null}', 'happy'),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL);",
    );
    let b = read_one(&fx, json!({"table": "public.all_types"}));
    assert_eq!(b.num_rows(), 2);
    let schema = b.schema();
    let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("dec"), DataType::Decimal128(12, 3));
    assert_eq!(ty("num"), DataType::Utf8);
    assert_eq!(
        ty("tstz"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(ty("ts"), DataType::Timestamp(TimeUnit::Microsecond, None));
    assert_eq!(ty("u"), DataType::Utf8);

    assert_eq!(col::<Int16Array>(&b, "i2").value(0), -32768);
    assert_eq!(col::<Int32Array>(&b, "i4").value(0), 2147483647);
    assert_eq!(col::<Float32Array>(&b, "f4").value(0), 1.5);
    assert_eq!(col::<Float64Array>(&b, "f8").value(0), -2.25);
    assert_eq!(col::<Decimal128Array>(&b, "dec").value(0), -123_456_789_125);
    assert_eq!(
        col::<StringArray>(&b, "num").value(0),
        "3.14159265358979323846264338327950288419716939937510"
    );
    assert!(col::<BooleanArray>(&b, "b").value(0));
    assert_eq!(col::<StringArray>(&b, "t").value(0), "héllo");
    assert_eq!(col::<StringArray>(&b, "vc").value(0), "abc");
    assert_eq!(col::<StringArray>(&b, "ch").value(0), "xy  ");
    assert_eq!(col::<BinaryArray>(&b, "by").value(0), &[0u8, 0xff, 0x10]);
    assert_eq!(col::<Date32Array>(&b, "d").value(0), -1);
    assert_eq!(
        col::<Time64MicrosecondArray>(&b, "tm").value(0),
        (13 * 3600 + 45 * 60 + 30) * 1_000_000 + 123_456
    );
    // 2024-02-29 23:59:59.999999 UTC
    assert_eq!(
        col::<TimestampMicrosecondArray>(&b, "ts").value(0),
        1_709_251_199_999_999
    );
    // 2024-03-01 01:00:00+02 = 2024-02-29 23:00:00 UTC
    assert_eq!(
        col::<TimestampMicrosecondArray>(&b, "tstz").value(0),
        1_709_247_600_000_000
    );
    assert_eq!(
        col::<IntervalMonthDayNanoArray>(&b, "iv").value(0),
        IntervalMonthDayNano::new(
            14,
            3,
            ((4 * 3600 + 5 * 60 + 6) * 1_000_000 + 789_000) * 1000
        )
    );
    assert_eq!(
        col::<StringArray>(&b, "u").value(0),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    assert_eq!(col::<StringArray>(&b, "j").value(0), "{\"a\": [1, 2]}");
    assert_eq!(col::<StringArray>(&b, "jb").value(0), "{\"b\": null}");
    assert_eq!(col::<StringArray>(&b, "m").value(0), "happy");

    for (i, field) in schema.fields().iter().enumerate().skip(1) {
        assert!(
            b.column(i).is_null(1),
            "column {} row 2 must be NULL",
            field.name()
        );
        assert!(
            b.column(i).is_valid(0),
            "column {} row 1 must not be NULL",
            field.name()
        );
    }
}

#[test]
fn arrays_become_lists_keeping_null_elements_and_null_arrays() {
    let fx = Fixture::start();
    fx.pg.execute(
        "CREATE TABLE arr (id int8, ints int4[], texts text[], decs numeric(5,2)[], stamps timestamptz[]);
         INSERT INTO arr VALUES
          (1, '{1,NULL,3}', '{a,\"b c\"}', '{1.50,-2.25}', '{\"2024-01-01 00:00:00+00\"}'),
          (2, '{}', '{}', NULL, '{}'),
          (3, NULL, '{NULL}', '{0.01}', NULL);",
    );
    let b = read_one(&fx, json!({"query": "SELECT * FROM arr ORDER BY id"}));
    let ints = col::<ListArray>(&b, "ints");
    assert_eq!(
        b.schema().field_with_name("decs").unwrap().data_type(),
        &DataType::List(std::sync::Arc::new(arrow::datatypes::Field::new(
            "item",
            DataType::Decimal128(5, 2),
            true
        )))
    );
    let first = ints.value(0);
    let first = first.as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(first.len(), 3);
    assert_eq!(first.value(0), 1);
    assert!(first.is_null(1));
    assert_eq!(first.value(2), 3);
    assert_eq!(ints.value(1).len(), 0);
    assert!(ints.is_valid(1), "an empty array is not NULL");
    assert!(ints.is_null(2));

    let texts = col::<ListArray>(&b, "texts");
    let t0 = texts.value(0);
    assert_eq!(t0.as_string::<i32>().value(1), "b c");
    assert!(texts.value(2).is_null(0));

    let decs = col::<ListArray>(&b, "decs");
    let d0 = decs.value(0);
    assert_eq!(
        d0.as_primitive::<arrow::datatypes::Decimal128Type>()
            .value(1),
        -225
    );
    assert!(decs.is_null(1));

    let stamps = col::<ListArray>(&b, "stamps");
    assert_eq!(
        stamps
            .value(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(0),
        1_704_067_200_000_000
    );
}

#[test]
fn multi_dimensional_array_fails_naming_the_column() {
    let fx = Fixture::start();
    let mut s = PostgresConnector
        .open_full(
            &fx.params(),
            &json!({"query": "SELECT '{{1,2},{3,4}}'::int4[] AS grid"}),
        )
        .unwrap();
    let err = s.next_batch().unwrap_err();
    assert!(matches!(err, ConnectorError::BadData { .. }), "{err:?}");
    assert!(err.to_string().contains("grid"), "{err}");
}

#[test]
fn infinite_timestamp_fails_naming_the_column() {
    let fx = Fixture::start();
    let mut s = PostgresConnector
        .open_full(
            &fx.params(),
            &json!({"query": "SELECT 'infinity'::timestamp AS until"}),
        )
        .unwrap();
    let err = s.next_batch().unwrap_err();
    assert!(matches!(err, ConnectorError::BadData { .. }), "{err:?}");
    assert!(err.to_string().contains("until"), "{err}");
}

#[test]
fn unsupported_type_fails_naming_column_and_type() {
    let fx = Fixture::start();
    let err = PostgresConnector
        .open_full(
            &fx.params(),
            &json!({"query": "SELECT int4range(1, 5) AS span"}),
        )
        .err()
        .unwrap();
    assert!(matches!(err, ConnectorError::Unsupported { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("span") && text.contains("int4range"),
        "{text}"
    );
}

#[test]
fn batches_are_bounded_by_batch_rows() {
    let fx = Fixture::start();
    fx.pg.execute(
        "CREATE TABLE big AS SELECT g::int8 AS id, md5(g::text) AS payload FROM generate_series(1, 50000) g;",
    );
    let mut s = PostgresConnector
        .open_full(&fx.params(), &json!({"table": "big", "batch_rows": 1000}))
        .unwrap();
    let batches = read_all(s.as_mut());
    assert!(batches
        .iter()
        .all(|b| b.num_rows() <= 1000 && b.num_rows() > 0));
    let all = ids(&batches);
    assert_eq!(all.len(), 50_000);
    assert_eq!(all.iter().sum::<i64>(), 50_000 * 50_001 / 2);
    // After the end the source stays finished.
    assert!(s.next_batch().unwrap().is_none());
}

#[test]
fn query_source_reads_the_query_result() {
    let fx = Fixture::start();
    fx.pg.execute(
        "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int8, amount numeric(10,2));
         INSERT INTO sales.orders VALUES (1, 10.50), (2, 99.99), (3, 0.01);",
    );
    let b = read_one(
        &fx,
        json!({"query": "SELECT id, amount * 2 AS doubled FROM sales.orders WHERE id > 1 ORDER BY id;"}),
    );
    assert_eq!(col::<Int64Array>(&b, "id").values().to_vec(), vec![2, 3]);
    // An expression without a declared precision is exact text.
    assert_eq!(col::<StringArray>(&b, "doubled").value(0), "199.98");
}

#[test]
fn table_source_reads_a_schema_qualified_table() {
    let fx = Fixture::start();
    fx.pg.execute(
        "CREATE SCHEMA sales; CREATE TABLE sales.\"Orders\" (id int8, amount numeric(10,2));
         INSERT INTO sales.\"Orders\" VALUES (1, 10.50), (2, 99.99);",
    );
    let b = read_one(&fx, json!({"table": "sales.Orders"}));
    assert_eq!(b.num_rows(), 2);
    assert_eq!(col::<Decimal128Array>(&b, "amount").value(1), 9999);
}

#[test]
fn test_connects_and_runs_a_query() {
    let fx = Fixture::start();
    PostgresConnector.test(&fx.params()).unwrap();
}

#[test]
fn hosts_are_tried_in_order() {
    let fx = Fixture::start();
    let mut params = fx.params();
    let obj = params.as_object_mut().unwrap();
    obj.remove("host");
    obj.insert(
        "hosts".into(),
        json!(["/nonexistent-vega-socket-dir", fx.pg.host()]),
    );
    PostgresConnector.test(&params).unwrap();
}

#[test]
fn unknown_connection_field_is_refused_by_name() {
    let err = PostgresConnector
        .check_connection(&json!({"host": "h", "database": "d", "user": "u", "hots": "x"}))
        .unwrap_err();
    match err {
        ConnectorError::InvalidParams { field, .. } => assert_eq!(field, "hots"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_source_field_is_refused_by_name() {
    let fx = Fixture::start();
    let err = PostgresConnector
        .check_source(&fx.params(), &json!({"table": "t", "batch_size": 10}))
        .unwrap_err();
    match err {
        ConnectorError::InvalidParams { field, .. } => assert_eq!(field, "batch_size"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrongly_typed_field_is_named() {
    let err = PostgresConnector
        .check_connection(&json!({"host": "h", "database": "d", "user": "u", "port": "5432"}))
        .unwrap_err();
    match err {
        ConnectorError::InvalidParams { field, .. } => assert_eq!(field, "port"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn plain_text_password_is_refused() {
    let err = PostgresConnector
        .check_connection(
            &json!({"host": "h", "database": "d", "user": "u", "password": "hunter2"}),
        )
        .unwrap_err();
    match &err {
        ConnectorError::InvalidParams { field, .. } => assert_eq!(field, "password"),
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("hunter2"));
}

fn tls_params(fx: &Fixture, mode: &str) -> Value {
    let mut params = fx.params();
    params["sslmode"] = json!(mode);
    params
}

#[test]
fn sslmode_require_connects_over_tls() {
    let pg = TestPostgres::start_with_tls();
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("pg-password");
    std::fs::write(&password_file, format!("{}\n", pg.password())).unwrap();
    let fx = Fixture {
        pg,
        _secrets: secrets,
        password_file,
    };
    let params = tls_params(&fx, "require");
    PostgresConnector.test(&params).unwrap();
    // The session really is encrypted.
    let mut s = PostgresConnector
        .open_full(
            &params,
            &json!({"query": "SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"}),
        )
        .unwrap();
    let schema = s.schema();
    let batches = read_all(s.as_mut());
    let batch = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let col = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    assert_eq!(col.value(0), "true");
}

#[test]
fn sslmode_require_refuses_a_server_without_tls() {
    let fx = Fixture::start();
    let err = PostgresConnector
        .test(&tls_params(&fx, "require"))
        .unwrap_err();
    assert!(!err.to_string().contains(fx.pg.password()));
    assert!(
        matches!(
            err,
            ConnectorError::Unreachable { .. } | ConnectorError::Remote { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn sslmode_prefer_falls_back_to_plain_connections() {
    let fx = Fixture::start();
    PostgresConnector.test(&tls_params(&fx, "prefer")).unwrap();
}

#[test]
fn table_and_query_together_are_refused() {
    let err =
        crate::PostgresSource::parse(&json!({"table": "t", "query": "SELECT 1"})).unwrap_err();
    assert!(
        matches!(err, ConnectorError::InvalidParams { .. }),
        "{err:?}"
    );
}

#[test]
fn query_that_is_not_a_select_is_refused() {
    let err = crate::PostgresSource::parse(&json!({"query": "DELETE FROM orders"})).unwrap_err();
    match err {
        ConnectorError::InvalidParams { field, .. } => assert_eq!(field, "query"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn batch_rows_out_of_range_is_refused() {
    let err = crate::PostgresSource::parse(&json!({"table": "t", "batch_rows": 0})).unwrap_err();
    match err {
        ConnectorError::InvalidParams { field, .. } => assert_eq!(field, "batch_rows"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_password_env_var_is_a_secret_ref_error_without_the_secret() {
    let fx = Fixture::start();
    let mut params = fx.params();
    params["password"] = json!({"env": "VEGA_TEST_PG_PASSWORD_SURELY_UNSET"});
    let err = PostgresConnector.test(&params).unwrap_err();
    assert!(matches!(err, ConnectorError::SecretRef { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("VEGA_TEST_PG_PASSWORD_SURELY_UNSET"),
        "{text}"
    );
    assert!(!text.contains(fx.pg.password()));
}

#[test]
fn wrong_password_is_an_auth_error_without_the_password() {
    let fx = Fixture::start();
    std::fs::write(&fx.password_file, "not-the-password").unwrap();
    let err = PostgresConnector.test(&fx.params()).unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-the-password"));
    assert!(!err.to_string().contains(fx.pg.password()));
}

#[test]
fn nothing_listening_is_unreachable() {
    let port = vega_testkit::ports::free_port();
    let params = json!({"host": "127.0.0.1", "port": port, "database": "d", "user": "u",
                        "connect_timeout_ms": 3000});
    let err = PostgresConnector.test(&params).unwrap_err();
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn missing_table_is_a_permanent_remote_error() {
    let fx = Fixture::start();
    let err = PostgresConnector
        .open_full(&fx.params(), &json!({"table": "no_such_table"}))
        .err()
        .unwrap();
    match &err {
        ConnectorError::Remote {
            permanent, message, ..
        } => {
            assert!(permanent);
            assert!(message.contains("no_such_table"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_cursor_column_is_refused_by_check_source() {
    let fx = Fixture::start();
    fx.pg.execute("CREATE TABLE ev (id int8, at timestamptz);");
    let err = PostgresConnector
        .check_source(
            &fx.params(),
            &json!({"table": "ev", "cursor_column": "updated", "key_columns": ["id"]}),
        )
        .unwrap_err();
    match err {
        ConnectorError::InvalidParams { field, message } => {
            assert_eq!(field, "cursor_column");
            assert!(message.contains("updated"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connection_lost_mid_read_is_unreachable() {
    let mut fx = Fixture::start();
    fx.pg
        .execute("CREATE TABLE big AS SELECT g::int8 AS id FROM generate_series(1, 10000) g;");
    let mut s = PostgresConnector
        .open_full(&fx.params(), &json!({"table": "big", "batch_rows": 100}))
        .unwrap();
    assert_eq!(s.next_batch().unwrap().unwrap().num_rows(), 100);
    fx.pg.stop();
    let err = s.next_batch().unwrap_err();
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert!(s.next_batch().is_err(), "a failed source stays failed");
}

fn incremental(fx: &Fixture, since: &Watermark) -> (Vec<i64>, Watermark) {
    let source = json!({"table": "events", "cursor_column": "version", "key_columns": ["id"],
                        "batch_rows": 2});
    let mut s = PostgresConnector
        .open_incremental(&fx.params(), &source, since)
        .unwrap();
    let mut batches = Vec::new();
    while let Some(b) = s.next_batch().unwrap() {
        batches.push(b);
    }
    (ids(&batches), s.watermark())
}

#[test]
fn incremental_rows_sharing_the_watermark_are_neither_lost_nor_duplicated() {
    let fx = Fixture::start();
    fx.pg.execute(
        "CREATE TABLE events (id int8 PRIMARY KEY, version int8, note text);
         INSERT INTO events VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 20, 'c'), (4, NULL, 'no cursor');",
    );
    let (first, wm) = incremental(&fx, &Watermark::default());
    assert_eq!(first, vec![1, 2, 3]);
    assert_eq!(wm.value, Some(json!(20)));
    assert_eq!(wm.keys_at_value, vec!["2".to_string(), "3".to_string()]);

    // Nothing new: nothing read, the watermark stays.
    let (again, wm2) = incremental(&fx, &wm);
    assert!(again.is_empty());
    assert_eq!(wm2, wm);

    // A row at the watermark value committed after the read, and newer ones.
    fx.pg
        .execute("INSERT INTO events VALUES (5, 20, 'late tie'), (6, 30, 'd'), (7, 30, 'e');");
    let (second, wm3) = incremental(&fx, &wm);
    assert_eq!(second, vec![5, 6, 7]);
    assert_eq!(wm3.value, Some(json!(30)));
    assert_eq!(wm3.keys_at_value, vec!["6".to_string(), "7".to_string()]);

    // Only a tie arrives: it is read, and the keys at the value accumulate.
    fx.pg
        .execute("INSERT INTO events VALUES (8, 30, 'another tie');");
    let (third, wm4) = incremental(&fx, &wm3);
    assert_eq!(third, vec![8]);
    assert_eq!(wm4.value, Some(json!(30)));
    assert_eq!(wm4.keys_at_value, vec!["6", "7", "8"]);
}

#[test]
fn incremental_by_timestamp_resumes_from_a_text_watermark() {
    let fx = Fixture::start();
    fx.pg.execute(
        "CREATE TABLE events (id int8 PRIMARY KEY, version timestamptz);
         INSERT INTO events VALUES (1, '2024-01-01 00:00:00.5+00'), (2, '2024-01-02 10:00:00+02');",
    );
    let (first, wm) = incremental(&fx, &Watermark::default());
    assert_eq!(first, vec![1, 2]);
    assert_eq!(wm.value, Some(json!("2024-01-02 08:00:00+00")));
    fx.pg.execute(
        "INSERT INTO events VALUES (3, '2024-01-02 08:00:00+00'), (4, '2024-01-01 00:00:00+00');",
    );
    let (second, _) = incremental(&fx, &wm);
    assert_eq!(second, vec![3], "the tie is read; an older row is not");
}

#[test]
fn incremental_without_key_columns_is_refused() {
    let fx = Fixture::start();
    let err = PostgresConnector
        .open_incremental(
            &fx.params(),
            &json!({"table": "t", "cursor_column": "v"}),
            &Watermark::default(),
        )
        .err()
        .unwrap();
    match err {
        ConnectorError::InvalidParams { field, .. } => assert_eq!(field, "key_columns"),
        other => panic!("{other:?}"),
    }
}
