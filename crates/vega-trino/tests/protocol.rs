//! The client against the scripted Trino test server: paging, types,
//! errors, retries, deadlines, cancellation, dropped connections, headers
//! and the row limit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::{Array, Date32Array, Decimal128Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, TimeUnit};
use serde_json::{json, Value};
use vega_core::{Classify, ErrorClass};
use vega_testkit::trino::{RecordedRequest, Script, TrinoErrorSpec, TrinoTestServer};
use vega_trino::{
    CancellationToken, Secret, TimeoutKind, TrinoAuth, TrinoClient, TrinoConfig, TrinoError,
    MAX_FETCH_RETRIES,
};

fn config(server: &TrinoTestServer) -> TrinoConfig {
    TrinoConfig::new(server.url(), "alice")
}

fn client(config: TrinoConfig) -> TrinoClient {
    TrinoClient::new(config).expect("client")
}

async fn run(client: &TrinoClient, sql: &str) -> Result<vega_trino::TrinoResult, TrinoError> {
    client.execute(sql, CancellationToken::new()).await
}

fn numbers(n: i64) -> Vec<Vec<Value>> {
    (1..=n)
        .map(|i| vec![json!(i), json!(format!("row {i}"))])
        .collect()
}

const NUMBER_COLUMNS: &[(&str, &str)] = &[("id", "bigint"), ("label", "varchar")];

fn gets(requests: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    requests.iter().filter(|r| r.method == "GET").collect()
}

fn deletes(requests: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    requests.iter().filter(|r| r.method == "DELETE").collect()
}

/// A query that stays queued for as long as a test needs.
fn forever_queued() -> Script {
    Script {
        queued_polls: 10_000,
        delay_per_page: Duration::from_millis(30),
        ..Script::rows(NUMBER_COLUMNS, numbers(1))
    }
}

#[tokio::test]
async fn multi_page_results_are_gathered_across_next_uris() {
    let server = TrinoTestServer::start();
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            pages: 3,
            queued_polls: 2,
            running_polls: 2,
            ..Script::rows(NUMBER_COLUMNS, numbers(7))
        },
    );
    let result = run(&client(config(&server)), "SELECT id, label FROM numbers")
        .await
        .expect("query");
    assert_eq!(result.rows, numbers(7));
    assert_eq!(result.columns.len(), 2);
    assert_eq!(result.columns[0].name, "id");
    assert_eq!(result.columns[1].data_type, "varchar");
    assert_eq!(result.stats.state, "FINISHED");
    assert_eq!(result.stats.processed_rows, Some(7));
    assert!(!result.truncated);
    assert!(result.query_id.ends_with("_vtest"), "{}", result.query_id);
    assert!(result.info_uri.is_some());
    let requests = server.requests();
    // 2 more queued polls, 2 empty running polls, 3 pages of data, FINISHED.
    assert_eq!(gets(&requests).len(), 8);
    assert!(gets(&requests)[..2]
        .iter()
        .all(|r| r.path.contains("/queued/")));
    assert!(deletes(&requests).is_empty());
    assert!(server.cancelled_queries().is_empty());
}

#[tokio::test]
async fn column_types_convert_to_arrow() {
    let server = TrinoTestServer::start();
    let columns = [
        ("flag", "boolean"),
        ("small", "smallint"),
        ("big", "bigint"),
        ("ratio", "double"),
        ("price", "decimal(12,3)"),
        ("name", "varchar(10)"),
        ("code", "char(2)"),
        ("day", "date"),
        ("at", "timestamp(3)"),
        ("at_tz", "timestamp(3) with time zone"),
        ("clock", "time(3)"),
        ("doc", "json"),
        ("key", "uuid"),
        ("blob", "varbinary"),
        ("tags", "array(varchar)"),
        ("attrs", "map(varchar, integer)"),
        ("pair", "row(a integer, b varchar)"),
    ];
    let rows = vec![
        vec![
            json!(true),
            json!(-7),
            json!(1_i64 << 53),
            json!("Infinity"),
            json!("-1234.5"),
            json!("zürich"),
            json!("ab"),
            json!("2000-01-01"),
            json!("2000-01-01 00:00:01.250"),
            json!("2000-01-01 02:00:00.000 +02:00"),
            json!("23:59:59.999"),
            json!("{\"a\":[1,2]}"),
            json!("5b8e2a6e-51c0-4a2e-a7d6-7f1c2a3e4b5c"),
            json!("AAEC"),
            json!(["x", "y"]),
            json!({"k": 1}),
            json!([1, "b"]),
        ],
        vec![Value::Null; 17],
    ];
    server.script("SELECT * FROM typed", Script::rows(&columns, rows));
    let result = run(&client(config(&server)), "SELECT * FROM typed")
        .await
        .expect("query");
    let batch = result.to_arrow().expect("arrow");
    assert_eq!(batch.num_rows(), 2);
    let schema = batch.schema();
    let types: Vec<DataType> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        vec![
            DataType::Boolean,
            DataType::Int16,
            DataType::Int64,
            DataType::Float64,
            DataType::Decimal128(12, 3),
            DataType::Utf8,
            DataType::Utf8,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Utf8,
            DataType::Utf8,
            DataType::Binary,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8,
        ]
    );
    let column = |name: &str| batch.column(schema.index_of(name).expect("column")).clone();
    let big = column("big");
    assert_eq!(
        big.as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64")
            .value(0),
        1 << 53
    );
    let price = column("price");
    let price = price
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .expect("decimal");
    assert_eq!(price.value_as_string(0), "-1234.500");
    let day = column("day");
    assert_eq!(
        day.as_any()
            .downcast_ref::<Date32Array>()
            .expect("date")
            .value(0),
        10_957
    );
    let tags = column("tags");
    assert_eq!(
        tags.as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8")
            .value(0),
        "[\"x\",\"y\"]"
    );
    let pretty = arrow::util::pretty::pretty_format_batches(std::slice::from_ref(&batch))
        .expect("pretty")
        .to_string();
    assert!(pretty.contains("2000-01-01T00:00:01.250"), "{pretty}");
    assert!(pretty.contains("2000-01-01T00:00:00Z"), "{pretty}");
    assert!(pretty.contains("23:59:59.999"), "{pretty}");
    assert!(pretty.contains("000102"), "{pretty}");
    for i in 0..batch.num_columns() {
        assert!(batch.column(i).is_null(1), "column {i}");
    }
}

#[tokio::test]
async fn a_syntax_error_is_bad_input_naming_the_message() {
    let server = TrinoTestServer::start();
    let message = "line 1:10: mismatched input 'FORM'. Expecting: ',', 'FROM', <EOF>";
    server.script(
        "SELECT id FORM numbers",
        Script {
            queued_polls: 1,
            ..Script::failing(TrinoErrorSpec::syntax_error(message))
        },
    );
    let err = run(&client(config(&server)), "SELECT id FORM numbers")
        .await
        .expect_err("syntax error");
    match &err {
        TrinoError::Query {
            error_name,
            error_type,
            error_code,
            message: got,
        } => {
            assert_eq!(error_name, "SYNTAX_ERROR");
            assert_eq!(error_type, "USER_ERROR");
            assert_eq!(*error_code, 1);
            assert_eq!(got, message);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::BadInput);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("mismatched input 'FORM'"), "{err}");
    // A failed query has nothing left to cancel.
    assert!(deletes(&server.requests()).is_empty());
}

#[tokio::test]
async fn an_unscripted_table_is_not_found() {
    let server = TrinoTestServer::start();
    let mut config = config(&server);
    config.catalog = Some("hive".into());
    config.schema = Some("sales".into());
    let err = run(&client(config), "SELECT * FROM orders")
        .await
        .expect_err("missing table");
    assert_eq!(err.class(), ErrorClass::BadInput);
    assert!(
        err.to_string()
            .contains("Table 'hive.sales.orders' does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn a_503_on_a_next_uri_is_retried() {
    let server = TrinoTestServer::start();
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            pages: 2,
            status_503_on_page: Some(2),
            fault_times: Some(2),
            ..Script::rows(NUMBER_COLUMNS, numbers(4))
        },
    );
    let result = run(&client(config(&server)), "SELECT id, label FROM numbers")
        .await
        .expect("query after retries");
    assert_eq!(result.rows, numbers(4));
    let requests = server.requests();
    let page_two: Vec<_> = gets(&requests)
        .into_iter()
        .filter(|r| r.path.ends_with("/2"))
        .collect();
    assert_eq!(page_two.len(), 3, "two 503s, then the page");
}

#[tokio::test]
async fn a_503_that_persists_is_unavailable_after_bounded_retries() {
    let server = TrinoTestServer::start();
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            status_503_on_page: Some(1),
            fault_times: None,
            ..Script::rows(NUMBER_COLUMNS, numbers(2))
        },
    );
    let err = run(&client(config(&server)), "SELECT id, label FROM numbers")
        .await
        .expect_err("unavailable");
    assert!(
        matches!(
            err,
            TrinoError::Unavailable {
                submitted: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert!(err.is_retryable());
    let requests = server.requests();
    assert_eq!(gets(&requests).len(), 1 + MAX_FETCH_RETRIES as usize);
    assert_eq!(
        deletes(&requests).len(),
        1,
        "the abandoned query is cancelled"
    );
}

#[tokio::test]
async fn a_slow_page_past_the_request_timeout_is_a_timeout() {
    let server = TrinoTestServer::start();
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            delay_per_page: Duration::from_secs(3),
            ..Script::rows(NUMBER_COLUMNS, numbers(2))
        },
    );
    let mut config = config(&server);
    config.request_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = run(&client(config), "SELECT id, label FROM numbers")
        .await
        .expect_err("timeout");
    assert!(
        matches!(
            err,
            TrinoError::Timeout {
                kind: TimeoutKind::Request,
                timeout_ms: 300
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
    // A timed-out request is not repeated; the query is cancelled.
    let requests = server.requests();
    assert_eq!(gets(&requests).len(), 1);
    assert_eq!(server.cancelled_queries().len(), 1);
}

#[tokio::test]
async fn the_query_timeout_cancels_the_query() {
    let server = TrinoTestServer::start();
    server.script("SELECT id, label FROM numbers", forever_queued());
    let mut config = config(&server);
    config.query_timeout = Duration::from_millis(400);
    let started = Instant::now();
    let err = run(&client(config), "SELECT id, label FROM numbers")
        .await
        .expect_err("timeout");
    assert!(
        matches!(
            err,
            TrinoError::Timeout {
                kind: TimeoutKind::Query,
                timeout_ms: 400
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let requests = server.requests();
    assert!(gets(&requests).len() > 1, "it polled while queued");
    let cancelled = server.cancelled_queries();
    assert_eq!(cancelled.len(), 1);
    let delete = deletes(&requests)[0].clone();
    assert!(delete.path.contains(&cancelled[0]), "{}", delete.path);
    assert_eq!(delete.header("x-trino-user"), Some("alice"));
}

#[tokio::test]
async fn cancelling_sends_a_delete() {
    let server = TrinoTestServer::start();
    server.script("SELECT id, label FROM numbers", forever_queued());
    let client = client(config(&server));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let err = client
        .execute("SELECT id, label FROM numbers", cancel)
        .await
        .expect_err("cancelled");
    assert!(matches!(err, TrinoError::Cancelled), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(server.cancelled_queries().len(), 1);
    assert_eq!(deletes(&server.requests()).len(), 1);
}

#[tokio::test]
async fn a_connection_dropped_mid_page_is_unavailable() {
    let server = TrinoTestServer::start();
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            drop_connection_on_page: Some(1),
            fault_times: None,
            ..Script::rows(NUMBER_COLUMNS, numbers(50))
        },
    );
    let err = run(&client(config(&server)), "SELECT id, label FROM numbers")
        .await
        .expect_err("dropped");
    assert!(
        matches!(
            err,
            TrinoError::Unavailable {
                submitted: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // The GET of a nextUri is idempotent, so it was tried again first.
    assert_eq!(
        gets(&server.requests()).len(),
        1 + MAX_FETCH_RETRIES as usize
    );
}

#[tokio::test]
async fn a_connection_dropped_once_is_retried() {
    let server = TrinoTestServer::start();
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            pages: 2,
            drop_connection_on_page: Some(1),
            ..Script::rows(NUMBER_COLUMNS, numbers(10))
        },
    );
    let result = run(&client(config(&server)), "SELECT id, label FROM numbers")
        .await
        .expect("query after a retry");
    assert_eq!(result.rows, numbers(10));
}

#[tokio::test]
async fn the_post_is_never_retried() {
    let server = TrinoTestServer::start();
    server.script(
        "INSERT INTO t VALUES (1)",
        Script {
            drop_connection_on_page: Some(0),
            fault_times: None,
            update_type: Some("INSERT".into()),
            ..Script::rows(&[("rows", "bigint")], vec![vec![json!(1)]])
        },
    );
    let client = client(config(&server));
    let err = run(&client, "INSERT INTO t VALUES (1)")
        .await
        .expect_err("dropped");
    assert!(
        matches!(
            err,
            TrinoError::Unavailable {
                submitted: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.statements().len(), 1);

    server.set_available(false);
    let err = run(&client, "INSERT INTO t VALUES (1)")
        .await
        .expect_err("unavailable");
    assert!(
        matches!(
            err,
            TrinoError::Unavailable {
                submitted: false,
                ..
            }
        ),
        "a 503 to the POST means it was turned away: {err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(server.statements().len(), 2);

    server.set_available(true);
    server.script(
        "INSERT INTO t VALUES (1)",
        Script {
            update_type: Some("INSERT".into()),
            ..Script::rows(&[("rows", "bigint")], vec![vec![json!(1)]])
        },
    );
    let result = run(&client, "INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    assert_eq!(result.update_type.as_deref(), Some("INSERT"));
}

#[tokio::test]
async fn auth_and_session_headers_are_sent() {
    let server = TrinoTestServer::start();
    // alice:s3cret
    server.require_authorization(Some("Basic YWxpY2U6czNjcmV0"));
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            queued_polls: 1,
            ..Script::rows(NUMBER_COLUMNS, numbers(1))
        },
    );
    let mut config = config(&server);
    config.auth = TrinoAuth::Basic {
        user: "alice".into(),
        password: Secret::new("s3cret"),
    };
    config.catalog = Some("hive".into());
    config.schema = Some("sales".into());
    config.source = "vega-tests".into();
    config.session_properties = BTreeMap::from([
        ("query_max_run_time".into(), "5m".into()),
        ("hive.compression_codec".into(), "ZSTD".into()),
    ]);
    config.client_tags = vec!["vega".into(), "federated".into()];
    config.client_info = Some("dashboard 7".into());
    let client = client(config);
    assert!(!format!("{client:?}").contains("s3cret"));
    run(&client, "SELECT id, label FROM numbers")
        .await
        .expect("query");
    let requests = server.requests();
    let post = &requests[0];
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, "/v1/statement");
    assert_eq!(post.body, "SELECT id, label FROM numbers");
    assert_eq!(post.header("x-trino-user"), Some("alice"));
    assert_eq!(post.header("x-trino-source"), Some("vega-tests"));
    assert_eq!(post.header("x-trino-catalog"), Some("hive"));
    assert_eq!(post.header("x-trino-schema"), Some("sales"));
    assert_eq!(
        post.header_values("x-trino-session"),
        vec!["hive.compression_codec=ZSTD", "query_max_run_time=5m"]
    );
    assert_eq!(post.header("x-trino-client-tags"), Some("vega,federated"));
    assert_eq!(post.header("x-trino-client-info"), Some("dashboard 7"));
    assert_eq!(post.header("authorization"), Some("Basic YWxpY2U6czNjcmV0"));
    for get in gets(&requests) {
        assert_eq!(get.header("authorization"), Some("Basic YWxpY2U6czNjcmV0"));
        assert_eq!(get.header("x-trino-user"), Some("alice"));
        assert!(
            get.header("x-trino-session").is_none(),
            "session only on the POST"
        );
    }
}

#[tokio::test]
async fn wrong_credentials_are_unauthenticated() {
    let server = TrinoTestServer::start();
    server.require_authorization(Some("Bearer right-token"));
    server.script(
        "SELECT 1",
        Script::rows(&[("_col0", "integer")], vec![vec![json!(1)]]),
    );
    let mut config = config(&server);
    config.auth = TrinoAuth::Bearer {
        token: Secret::new("wrong-token"),
    };
    let err = run(&client(config.clone()), "SELECT 1")
        .await
        .expect_err("refused");
    assert_eq!(err.class(), ErrorClass::Unauthenticated);
    assert!(!format!("{err:?} {err}").contains("wrong-token"));
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer wrong-token")
    );
    config.auth = TrinoAuth::Bearer {
        token: Secret::new("right-token"),
    };
    let result = run(&client(config), "SELECT 1").await.expect("accepted");
    assert_eq!(result.rows, vec![vec![json!(1)]]);
}

#[tokio::test]
async fn max_rows_truncates_and_cancels() {
    let server = TrinoTestServer::start();
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            pages: 5,
            ..Script::rows(NUMBER_COLUMNS, numbers(10))
        },
    );
    let mut config = config(&server);
    config.max_rows = 3;
    let result = run(&client(config), "SELECT id, label FROM numbers")
        .await
        .expect("query");
    assert!(result.truncated);
    assert_eq!(result.rows, numbers(3));
    assert_eq!(result.to_arrow().expect("arrow").num_rows(), 3);
    // Pages of 2 rows: the second page passes the limit; no more are read.
    let requests = server.requests();
    assert_eq!(gets(&requests).len(), 2);
    assert_eq!(server.cancelled_queries(), vec![result.query_id.clone()]);
}

#[tokio::test]
async fn session_changes_are_reported() {
    let server = TrinoTestServer::start();
    server.script(
        "SET SESSION query_max_run_time",
        Script {
            set_session: vec![("query_max_run_time".into(), "10 m".into())],
            clear_session: vec!["join_distribution_type".into()],
            update_type: Some("SET SESSION".into()),
            ..Script::default()
        },
    );
    let result = run(
        &client(config(&server)),
        "SET SESSION query_max_run_time = '10 m'",
    )
    .await
    .expect("set session");
    assert_eq!(
        result
            .session
            .set
            .get("query_max_run_time")
            .map(String::as_str),
        Some("10 m")
    );
    assert!(result.session.cleared.contains("join_distribution_type"));
    assert_eq!(result.update_type.as_deref(), Some("SET SESSION"));
    assert!(result.rows.is_empty());
}

/// An `https` coordinator whose certificate a private CA signed: trusted
/// through `ca_file`, every page fetched over TLS; without it, the
/// certificate is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_coordinator_is_trusted_through_its_ca_file() {
    let server = TrinoTestServer::start();
    let front = vega_testkit::tls::TlsFront::start(server.addr());
    server.set_public_url(&front.url());
    server.script(
        "SELECT id, label FROM numbers",
        Script {
            pages: 3,
            ..Script::rows(NUMBER_COLUMNS, numbers(6))
        },
    );
    let mut trusted = TrinoConfig::new(front.url(), "alice");
    trusted.ca_file = Some(front.ca_file());
    let result = run(&client(trusted), "SELECT id, label FROM numbers")
        .await
        .expect("the query over TLS");
    assert_eq!(result.rows.len(), 6);
    assert!(
        gets(&server.requests()).len() >= 3,
        "pages fetched over the front"
    );

    let untrusted = TrinoConfig::new(front.url(), "alice");
    let error = run(&client(untrusted), "SELECT id, label FROM numbers")
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Unavailable, "{error}");

    let mut missing = TrinoConfig::new(front.url(), "alice");
    missing.ca_file = Some(std::path::PathBuf::from("/nonexistent/ca.pem"));
    match TrinoClient::new(missing) {
        Err(TrinoError::Config(message)) => {
            assert!(message.contains("/nonexistent/ca.pem"), "{message}")
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
