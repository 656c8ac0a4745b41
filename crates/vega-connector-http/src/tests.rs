//! Tests of the HTTP connector against an axum server started by each test
//! on 127.0.0.1, port 0, in a background thread with its own runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use vega_connectors::{Connector, ConnectorError, Watermark};
use vega_core::{Classify, ErrorClass};

use super::*;

// ---------------------------------------------------------------- harness

/// A server on 127.0.0.1 that stops when dropped.
struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    fn start(router: Router) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("test server");
            });
        });
        Self {
            addr,
            stop: Some(stop),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connection parameters for this server with short timeouts.
    fn params(&self) -> Value {
        json!({ "base_url": self.url(), "timeout_ms": 5000, "connect_timeout_ms": 2000 })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn read_all(
    params: &Value,
    source: Value,
) -> Result<(Vec<Value>, Vec<RecordBatch>), ConnectorError> {
    let mut reader = HttpConnector::new().open_full(params, &source)?;
    let schema = reader.schema();
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch()? {
        assert_eq!(
            batch.schema(),
            schema,
            "every batch has the source's schema"
        );
        batches.push(batch);
    }
    Ok((rows_of(&batches), batches))
}

fn rows_of(batches: &[RecordBatch]) -> Vec<Value> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer.write_batches(&refs).expect("write JSON");
    writer.finish().expect("finish JSON");
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Vec::new();
    }
    serde_json::from_slice(&bytes).expect("JSON rows")
}

fn read_err(params: &Value, source: Value) -> ConnectorError {
    match read_all(params, source) {
        Ok((rows, _)) => panic!("expected an error, read {rows:?}"),
        Err(e) => e,
    }
}

fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}

fn items(range: std::ops::Range<i64>) -> Vec<Value> {
    range
        .map(|i| json!({ "id": i, "name": format!("item {i}") }))
        .collect()
}

fn json_body(value: Value) -> Response {
    axum::Json(value).into_response()
}

fn assert_invalid(err: &ConnectorError, field: &str) {
    match err {
        ConnectorError::InvalidParams { field: f, .. } => assert_eq!(f, field, "{err}"),
        other => panic!("expected InvalidParams for {field}, got {other:?}"),
    }
}

fn assert_bad_data(err: &ConnectorError, location_part: &str) {
    match err {
        ConnectorError::BadData { location, .. } => {
            assert!(
                location.contains(location_part),
                "{location} should contain {location_part}"
            )
        }
        other => panic!("expected BadData at {location_part}, got {other:?}"),
    }
}

type Params = Query<HashMap<String, String>>;

fn param(q: &Params, name: &str) -> Option<u64> {
    q.get(name).and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------- formats

#[test]
fn json_array_is_read_with_inferred_types() {
    let server = TestServer::start(Router::new().route(
        "/v1/items",
        get(|| async { json_body(json!([{"id": 1, "name": "a", "price": 1.5, "ok": true}, {"id": 2, "name": null, "price": 2, "ok": false}])) }),
    ));
    let (rows, batches) = read_all(&server.params(), json!({ "path": "/v1/items" })).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        json!({"id": 1, "name": "a", "price": 1.5, "ok": true})
    );
    assert_eq!(rows[1]["price"], json!(2.0));
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("id").unwrap().data_type(),
        &arrow::datatypes::DataType::Int64
    );
    assert_eq!(
        schema.field_with_name("price").unwrap().data_type(),
        &arrow::datatypes::DataType::Float64
    );
}

#[test]
fn ndjson_is_read_line_by_line() {
    let server = TestServer::start(Router::new().route(
        "/events",
        get(|| async { "{\"id\": 1, \"kind\": \"a\"}\n\n{\"id\": 2, \"kind\": \"b\"}\n" }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/events", "format": "ndjson" }),
    )
    .unwrap();
    assert_eq!(
        rows,
        vec![json!({"id": 1, "kind": "a"}), json!({"id": 2, "kind": "b"})]
    );
}

#[test]
fn records_are_found_under_a_json_pointer() {
    let server = TestServer::start(Router::new().route(
        "/wrapped",
        get(|| async { json_body(json!({"meta": {"count": 3}, "data": {"items": items(0..3)}})) }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/wrapped", "records": "/data/items" }),
    )
    .unwrap();
    assert_eq!(ids(&rows), vec![0, 1, 2]);
}

#[test]
fn csv_is_read_with_inferred_types() {
    let server = TestServer::start(Router::new().route(
        "/export.csv",
        get(|| async { "id,name,score\n1,alice,3.5\n2,bob,\n" }),
    ));
    let (rows, batches) = read_all(
        &server.params(),
        json!({ "path": "/export.csv", "format": "csv" }),
    )
    .unwrap();
    assert_eq!(ids(&rows), vec![1, 2]);
    assert_eq!(rows[0]["name"], "alice");
    assert_eq!(
        batches[0]
            .schema()
            .field_with_name("score")
            .unwrap()
            .data_type(),
        &arrow::datatypes::DataType::Float64
    );
}

#[test]
fn csv_delimiter_option_is_applied() {
    let server =
        TestServer::start(Router::new().route("/semi", get(|| async { "id;name\n1;a\n" })));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/semi", "format": "csv", "csv": {"delimiter": ";"} }),
    )
    .unwrap();
    assert_eq!(rows, vec![json!({"id": 1, "name": "a"})]);
}

#[test]
fn query_parameters_are_sent() {
    let server = TestServer::start(Router::new().route(
        "/filtered",
        get(|q: Params| async move {
            json_body(
                json!([{"id": 1, "status": q.get("status").cloned(), "n": q.get("n").cloned()}]),
            )
        }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/filtered", "query": {"status": "open", "n": 5} }),
    )
    .unwrap();
    assert_eq!(rows[0]["status"], "open");
    assert_eq!(rows[0]["n"], "5");
}

#[test]
fn base_url_path_is_kept_as_a_prefix() {
    let server = TestServer::start(Router::new().route(
        "/api/v2/items",
        get(|| async { json_body(json!(items(0..1))) }),
    ));
    let mut params = server.params();
    params["base_url"] = json!(format!("{}/api/", server.url()));
    let (rows, _) = read_all(&params, json!({ "path": "/v2/items" })).unwrap();
    assert_eq!(ids(&rows), vec![0]);
}

#[test]
fn batch_size_splits_a_page_into_batches() {
    let server = TestServer::start(
        Router::new().route("/many", get(|| async { json_body(json!(items(0..10))) })),
    );
    let (rows, batches) = read_all(
        &server.params(),
        json!({ "path": "/many", "batch_size": 4 }),
    )
    .unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(
        batches
            .iter()
            .map(RecordBatch::num_rows)
            .collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
}

// ---------------------------------------------------------------- pagination

/// Pages of 3 records out of 8 (ids 0..8), by page number.
fn page_of(page: u64) -> (Vec<Value>, bool) {
    let start = (page as i64 - 1) * 3;
    let end = (start + 3).min(8);
    (items(start..end), end < 8)
}

#[test]
fn next_link_pagination_follows_relative_and_absolute_links() {
    let server = TestServer::start(Router::new().route(
        "/pages",
        get(|q: Params, headers: HeaderMap| async move {
            let page = param(&q, "page").unwrap_or(1);
            let (records, more) = page_of(page);
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            // Page 1 links relatively, page 2 absolutely.
            let next = match (more, page) {
                (false, _) => Value::Null,
                (true, 1) => json!("pages?page=2"),
                (true, n) => json!(format!("http://{host}/pages?page={}", n + 1)),
            };
            json_body(json!({"items": records, "links": {"next": next}}))
        }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/pages", "records": "/items", "pagination": {"type": "next_link", "pointer": "/links/next"} }),
    )
    .unwrap();
    assert_eq!(ids(&rows), (0..8).collect::<Vec<_>>());
}

#[test]
fn link_header_pagination_follows_rel_next() {
    let server = TestServer::start(Router::new().route(
        "/linked",
        get(|q: Params| async move {
            let page = param(&q, "page").unwrap_or(1);
            let (records, more) = page_of(page);
            let mut links = vec![format!("</linked?page=1>; rel=\"first\"")];
            if more {
                links.push(format!("</linked?page={}>; rel=\"next\"", page + 1));
            }
            ([("link", links.join(", "))], json_body(json!(records))).into_response()
        }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/linked", "pagination": {"type": "link_header"} }),
    )
    .unwrap();
    assert_eq!(ids(&rows), (0..8).collect::<Vec<_>>());
}

#[test]
fn link_header_parser_finds_next_among_other_relations() {
    use crate::source::next_in_link_header;
    assert_eq!(
        next_in_link_header("<https://x/a?p=1,2>; rel=\"prev\", <https://x/a?p=3>; title=\"a, b\"; rel=\"last next\"").as_deref(),
        Some("https://x/a?p=3")
    );
    assert_eq!(
        next_in_link_header("<https://x/b>; REL=next").as_deref(),
        Some("https://x/b")
    );
    assert_eq!(next_in_link_header("<https://x/a>; rel=\"prev\""), None);
    assert_eq!(next_in_link_header("garbage"), None);
}

#[test]
fn offset_pagination_stops_on_a_short_page() {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let server = TestServer::start(Router::new().route(
        "/offset",
        get(move |q: Params| {
            let seen = seen.clone();
            async move {
                let (limit, offset) = (
                    param(&q, "lim").unwrap_or(0),
                    param(&q, "from").unwrap_or(0),
                );
                seen.lock().unwrap().push((limit, offset));
                let end = (offset + limit).min(7) as i64;
                json_body(json!(items((offset as i64).min(end)..end)))
            }
        }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/offset", "pagination": {"type": "offset", "limit_param": "lim", "offset_param": "from", "limit": 3} }),
    )
    .unwrap();
    assert_eq!(ids(&rows), (0..7).collect::<Vec<_>>());
    assert_eq!(*requests.lock().unwrap(), vec![(3, 0), (3, 3), (3, 6)]);
}

#[test]
fn offset_pagination_stops_on_an_empty_page() {
    let server = TestServer::start(Router::new().route(
        "/offset",
        get(|q: Params| async move {
            let offset = param(&q, "offset").unwrap_or(0) as i64;
            let end = (offset + 2).min(4);
            json_body(json!(items(offset.min(end)..end)))
        }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/offset", "pagination": {"type": "offset", "limit": 2} }),
    )
    .unwrap();
    assert_eq!(ids(&rows), vec![0, 1, 2, 3]);
}

#[test]
fn cursor_pagination_sends_the_cursor_back_until_it_is_null() {
    let server = TestServer::start(Router::new().route(
        "/cursor",
        get(|q: Params| async move {
            let page = match q.get("after").map(String::as_str) {
                None => 1,
                Some("c2") => 2,
                Some("c3") => 3,
                Some(_) => return StatusCode::BAD_REQUEST.into_response(),
            };
            let (records, more) = page_of(page);
            let next = if more {
                json!(format!("c{}", page + 1))
            } else {
                Value::Null
            };
            json_body(json!({"data": records, "meta": {"next": next}}))
        }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/cursor", "records": "/data", "pagination": {"type": "cursor", "cursor_param": "after", "pointer": "/meta/next"} }),
    )
    .unwrap();
    assert_eq!(ids(&rows), (0..8).collect::<Vec<_>>());
}

#[test]
fn cursor_that_does_not_change_is_refused() {
    let server = TestServer::start(Router::new().route(
        "/stuck",
        get(|| async { json_body(json!({"data": items(0..1), "next": "same"})) }),
    ));
    let err = read_err(
        &server.params(),
        json!({ "path": "/stuck", "records": "/data", "pagination": {"type": "cursor", "pointer": "/next"} }),
    );
    assert_bad_data(&err, "page 2");
    assert!(err.to_string().contains("did not change"), "{err}");
}

#[test]
fn ndjson_pages_follow_link_headers() {
    let server = TestServer::start(Router::new().route(
        "/nd",
        get(|q: Params| async move {
            let page = param(&q, "page").unwrap_or(1);
            let body = format!("{{\"id\": {page}}}\n");
            if page < 3 {
                (
                    [("link", format!("</nd?page={}>; rel=\"next\"", page + 1))],
                    body,
                )
                    .into_response()
            } else {
                body.into_response()
            }
        }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/nd", "format": "ndjson", "pagination": {"type": "link_header"} }),
    )
    .unwrap();
    assert_eq!(ids(&rows), vec![1, 2, 3]);
}

#[test]
fn csv_pages_follow_offset_pagination() {
    let server = TestServer::start(Router::new().route(
        "/csv",
        get(|q: Params| async move {
            let offset = param(&q, "offset").unwrap_or(0);
            let mut body = String::from("id,name\n");
            for i in offset..(offset + 2).min(5) {
                body.push_str(&format!("{i},n{i}\n"));
            }
            body
        }),
    ));
    let (rows, _) = read_all(
        &server.params(),
        json!({ "path": "/csv", "format": "csv", "pagination": {"type": "offset", "limit": 2} }),
    )
    .unwrap();
    assert_eq!(ids(&rows), vec![0, 1, 2, 3, 4]);
}

#[test]
fn csv_page_with_a_different_header_is_bad_data() {
    let server = TestServer::start(Router::new().route(
        "/csv",
        get(|q: Params| async move {
            match param(&q, "offset").unwrap_or(0) {
                0 => "id,name\n1,a\n".to_string(),
                _ => "id,title\n2,b\n".to_string(),
            }
        }),
    ));
    let err = read_err(
        &server.params(),
        json!({ "path": "/csv", "format": "csv", "pagination": {"type": "offset", "limit": 1} }),
    );
    assert_bad_data(&err, "page 2 line 1");
}

#[test]
fn more_pages_than_max_pages_fail_the_read() {
    let server = TestServer::start(Router::new().route(
        "/forever",
        get(|q: Params| async move {
            let page = param(&q, "page").unwrap_or(1);
            json_body(
                json!({"items": [{"id": page}], "next": format!("/forever?page={}", page + 1)}),
            )
        }),
    ));
    let mut params = server.params();
    params["max_pages"] = json!(5);
    let err = read_err(
        &params,
        json!({ "path": "/forever", "records": "/items", "pagination": {"type": "next_link", "pointer": "/next"} }),
    );
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_pages = 5"), "{err}");
}

#[test]
fn next_link_to_another_origin_is_not_followed() {
    let server = TestServer::start(Router::new().route(
        "/leaky",
        get(|| async {
            json_body(json!({"items": items(0..1), "next": "http://127.0.0.2:9/steal"}))
        }),
    ));
    let err = read_err(
        &server.params(),
        json!({ "path": "/leaky", "records": "/items", "pagination": {"type": "next_link", "pointer": "/next"} }),
    );
    assert_bad_data(&err, "page 1");
    assert!(err.to_string().contains("another origin"), "{err}");
}

// ---------------------------------------------------------------- headers and secrets

const SECRET: &str = "s3cr3t-token-value";

/// Answers 200 with the key when it matches, else 401 echoing what it got.
fn secret_server() -> TestServer {
    TestServer::start(Router::new().route(
        "/private",
        get(|headers: HeaderMap| async move {
            let got = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let accept = headers
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if got == SECRET {
                json_body(json!([{"id": 1, "accept": accept}]))
            } else {
                (StatusCode::UNAUTHORIZED, format!("bad key {got}")).into_response()
            }
        }),
    ))
}

#[test]
fn secret_header_from_a_file_reference_is_sent() {
    let server = secret_server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let mut params = server.params();
    params["headers"] =
        json!({"X-Api-Key": {"file": path}, "Accept": {"value": "application/json"}});
    let (rows, _) = read_all(&params, json!({ "path": "/private" })).unwrap();
    assert_eq!(rows, vec![json!({"id": 1, "accept": "application/json"})]);
}

#[test]
fn secret_header_from_an_env_reference_is_sent() {
    // PATH is set in any test process; reading it avoids changing the
    // environment of a multi-threaded test run.
    let expected = std::env::var("PATH").expect("PATH is set");
    let server = TestServer::start(Router::new().route(
        "/private",
        get(move |headers: HeaderMap| async move {
            let got = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if got == expected {
                json_body(json!([{"id": 1}]))
            } else {
                StatusCode::UNAUTHORIZED.into_response()
            }
        }),
    ));
    let mut params = server.params();
    params["headers"] = json!({"X-Api-Key": {"env": "PATH"}});
    let (rows, _) = read_all(&params, json!({ "path": "/private" })).unwrap();
    assert_eq!(ids(&rows), vec![1]);
}

#[test]
fn secret_value_never_appears_in_error_text() {
    // The server echoes the key it got in its 401 body; the connector must
    // scrub it from the quoted body.
    let server = TestServer::start(Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            let got = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (StatusCode::FORBIDDEN, format!("key {got} is revoked")).into_response()
        }),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, SECRET).unwrap();
    let mut params = server.params();
    params["headers"] = json!({"X-Api-Key": {"file": path}});
    let err = read_err(&params, json!({ "path": "/echo" }));
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("key *** is revoked"), "{text}");
}

#[test]
fn secret_echoed_in_bad_data_is_scrubbed_from_the_error() {
    let server = TestServer::start(Router::new().route(
        "/echo",
        get(|q: Params, headers: HeaderMap| async move {
            let got = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            match param(&q, "page").unwrap_or(1) {
                1 => json_body(json!({"items": [{"id": 1}], "next": "/echo?page=2"})),
                _ => json_body(json!({"items": [{"id": got}]})),
            }
        }),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, SECRET).unwrap();
    let mut params = server.params();
    params["headers"] = json!({"X-Api-Key": {"file": path}});
    let err = read_err(
        &params,
        json!({ "path": "/echo", "records": "/items", "pagination": {"type": "next_link", "pointer": "/next"} }),
    );
    assert_bad_data(&err, "page 2 record 1");
    assert!(!format!("{err} {err:?}").contains(SECRET), "{err}");
}

#[test]
fn plain_string_header_value_is_refused() {
    let err = HttpConnector::new()
        .check_connection(
            &json!({"base_url": "http://127.0.0.1:1", "headers": {"X-Api-Key": "hunter2"}}),
        )
        .unwrap_err();
    assert_invalid(&err, "headers.X-Api-Key");
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn authorization_header_must_be_a_secret_reference() {
    let err = HttpConnector::new()
        .check_connection(&json!({"base_url": "http://127.0.0.1:1", "headers": {"Authorization": {"value": "Bearer x"}}}))
        .unwrap_err();
    assert_invalid(&err, "headers.Authorization");
}

#[test]
fn unresolvable_secret_reference_is_a_secret_ref_error() {
    let server = secret_server();
    let mut params = server.params();
    params["headers"] = json!({"X-Api-Key": {"env": "VEGA_HTTP_TEST_SURELY_UNSET"}});
    let err = read_err(&params, json!({ "path": "/private" }));
    assert!(matches!(err, ConnectorError::SecretRef { .. }), "{err:?}");
}

// ---------------------------------------------------------------- failures

#[test]
fn slow_response_times_out_as_retryable() {
    let server = TestServer::start(Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            json_body(json!([]))
        }),
    ));
    let mut params = server.params();
    params["timeout_ms"] = json!(300);
    let started = Instant::now();
    let err = read_err(&params, json!({ "path": "/slow" }));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("300 ms"), "{err}");
    assert_eq!(err.class(), ErrorClass::Unavailable);
}

#[test]
fn unauthorized_is_an_auth_error() {
    let server = secret_server();
    let err = read_err(&server.params(), json!({ "path": "/private" }));
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
}

#[test]
fn not_found_is_permanent() {
    let server = TestServer::start(Router::new());
    let err = read_err(
        &server.params(),
        json!({ "path": "/missing", "query": {"token": "abc"} }),
    );
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("/missing"), "{err}");
    assert!(
        !err.to_string().contains("token=abc"),
        "query strings are not shown: {err}"
    );
}

#[test]
fn service_unavailable_is_retryable() {
    let server = TestServer::start(Router::new().route(
        "/busy",
        get(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "7")],
                "down for maintenance",
            )
        }),
    ));
    let err = read_err(&server.params(), json!({ "path": "/busy" }));
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Retry-After: 7"), "{err}");
    assert_eq!(err.class(), ErrorClass::Unavailable);
}

#[test]
fn too_many_requests_is_retryable() {
    let server = TestServer::start(
        Router::new().route("/limited", get(|| async { StatusCode::TOO_MANY_REQUESTS })),
    );
    let err = read_err(&server.params(), json!({ "path": "/limited" }));
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: false,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn connection_refused_is_unreachable() {
    let port = vega_testkit::ports::free_port();
    let params = json!({ "base_url": format!("http://127.0.0.1:{port}"), "timeout_ms": 2000 });
    let err = read_err(&params, json!({ "path": "/x" }));
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Unavailable);
}

#[test]
fn redirect_to_another_origin_is_not_followed() {
    let server = TestServer::start(Router::new().route(
        "/moved",
        get(|| async {
            (
                StatusCode::FOUND,
                [("location", "http://127.0.0.2:9/elsewhere")],
            )
        }),
    ));
    let err = read_err(&server.params(), json!({ "path": "/moved" }));
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not followed"), "{err}");
}

#[test]
fn redirect_within_the_origin_is_followed() {
    let server = TestServer::start(
        Router::new()
            .route(
                "/old",
                get(|| async { (StatusCode::MOVED_PERMANENTLY, [("location", "/new")]) }),
            )
            .route("/new", get(|| async { json_body(json!(items(0..2))) })),
    );
    let (rows, _) = read_all(&server.params(), json!({ "path": "/old" })).unwrap();
    assert_eq!(ids(&rows), vec![0, 1]);
}

#[test]
fn malformed_json_is_bad_data() {
    let server = TestServer::start(
        Router::new().route("/broken", get(|| async { "[{\"id\": 1}, {\"id\": " })),
    );
    let err = read_err(&server.params(), json!({ "path": "/broken" }));
    assert_bad_data(&err, "/broken page 1 line 1");
    assert!(err.to_string().contains("invalid JSON"), "{err}");
}

#[test]
fn html_body_is_bad_data() {
    let server =
        TestServer::start(Router::new().route("/html", get(|| async { "<html>oops</html>" })));
    let err = read_err(&server.params(), json!({ "path": "/html" }));
    assert_bad_data(&err, "/html page 1");
}

#[test]
fn object_document_without_a_records_pointer_is_bad_data() {
    let server = TestServer::start(
        Router::new().route("/obj", get(|| async { json_body(json!({"data": []})) })),
    );
    let err = read_err(&server.params(), json!({ "path": "/obj" }));
    assert_bad_data(&err, "page 1");
    assert!(err.to_string().contains("\"records\""), "{err}");
}

#[test]
fn missing_records_pointer_is_bad_data() {
    let server = TestServer::start(
        Router::new().route("/obj", get(|| async { json_body(json!({"data": []})) })),
    );
    let err = read_err(
        &server.params(),
        json!({ "path": "/obj", "records": "/items" }),
    );
    assert_bad_data(&err, "page 1");
}

#[test]
fn non_object_record_is_bad_data_naming_the_record() {
    let server = TestServer::start(
        Router::new().route("/mixed", get(|| async { json_body(json!([{"id": 1}, 2])) })),
    );
    let err = read_err(&server.params(), json!({ "path": "/mixed" }));
    assert_bad_data(&err, "page 1 record 2");
}

#[test]
fn record_not_fitting_the_first_page_schema_names_page_and_record() {
    let server = TestServer::start(Router::new().route(
        "/drift",
        get(|q: Params| async move {
            match param(&q, "page").unwrap_or(1) {
                1 => json_body(json!({"items": items(0..2), "next": "/drift?page=2&token=abc"})),
                _ => json_body(json!({"items": [{"id": 5, "name": "ok"}, {"id": "six", "name": "bad"}], "next": null})),
            }
        }),
    ));
    let err = read_err(
        &server.params(),
        json!({ "path": "/drift", "records": "/items", "pagination": {"type": "next_link", "pointer": "/next"} }),
    );
    assert_bad_data(&err, "/drift page 2 record 2");
    assert!(!err.to_string().contains("token=abc"), "{err}");
}

#[test]
fn field_not_in_the_first_page_schema_is_bad_data() {
    let server = TestServer::start(Router::new().route(
        "/extra",
        get(|q: Params| async move {
            match param(&q, "page").unwrap_or(1) {
                1 => json_body(json!({"items": [{"id": 1}], "next": "/extra?page=2"})),
                _ => json_body(json!({"items": [{"id": 2, "surprise": true}]})),
            }
        }),
    ));
    let err = read_err(
        &server.params(),
        json!({ "path": "/extra", "records": "/items", "pagination": {"type": "next_link", "pointer": "/next"} }),
    );
    assert_bad_data(&err, "page 2 record 1");
}

#[test]
fn ndjson_invalid_line_is_bad_data_naming_the_line() {
    let server =
        TestServer::start(Router::new().route("/nd", get(|| async { "{\"id\": 1}\n{oops}\n" })));
    let err = read_err(
        &server.params(),
        json!({ "path": "/nd", "format": "ndjson" }),
    );
    assert_bad_data(&err, "/nd page 1 line 2");
}

#[test]
fn csv_value_of_the_wrong_type_on_a_later_page_is_bad_data() {
    let server = TestServer::start(Router::new().route(
        "/csv",
        get(|q: Params| async move {
            match param(&q, "offset").unwrap_or(0) {
                0 => "id,n\n1,10\n".to_string(),
                1 => "id,n\n2,eleven\n".to_string(),
                _ => "id,n\n".to_string(),
            }
        }),
    ));
    let err = read_err(
        &server.params(),
        json!({ "path": "/csv", "format": "csv", "pagination": {"type": "offset", "limit": 1} }),
    );
    assert_bad_data(&err, "/csv page 2");
}

#[test]
fn response_over_max_response_bytes_is_refused() {
    let server = TestServer::start(
        Router::new().route("/big", get(|| async { json_body(json!(items(0..500))) })),
    );
    let mut params = server.params();
    params["max_response_bytes"] = json!(1000);
    let err = read_err(&params, json!({ "path": "/big" }));
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_response_bytes"), "{err}");
}

#[test]
fn streamed_response_over_max_response_bytes_is_refused() {
    // No Content-Length: the bound applies while reading.
    let server = TestServer::start(Router::new().route(
        "/stream",
        get(|| async {
            let chunks = (0..50).map(|_| Ok::<_, std::io::Error>(vec![b' '; 100]));
            axum::body::Body::from_stream(futures::stream::iter(chunks.collect::<Vec<_>>()))
        }),
    ));
    let mut params = server.params();
    params["max_response_bytes"] = json!(1000);
    let err = read_err(&params, json!({ "path": "/stream" }));
    assert!(err.to_string().contains("max_response_bytes"), "{err}");
}

#[test]
fn source_keeps_failing_after_an_error() {
    let server = TestServer::start(Router::new().route(
        "/drift",
        get(|q: Params| async move {
            match param(&q, "page").unwrap_or(1) {
                1 => json_body(json!({"items": [{"id": 1}], "next": "/drift?page=2"})),
                _ => json_body(json!({"items": [{"id": "x"}]})),
            }
        }),
    ));
    let mut reader = HttpConnector::new()
        .open_full(
            &server.params(),
            &json!({ "path": "/drift", "records": "/items", "pagination": {"type": "next_link", "pointer": "/next"} }),
        )
        .unwrap();
    assert!(reader.next_batch().unwrap().is_some());
    assert!(reader.next_batch().is_err());
    assert!(reader
        .next_batch()
        .unwrap_err()
        .to_string()
        .contains("already failed"));
}

#[test]
fn empty_source_is_refused_on_a_full_read() {
    let server =
        TestServer::start(Router::new().route("/none", get(|| async { json_body(json!([])) })));
    let err = read_err(&server.params(), json!({ "path": "/none" }));
    assert_bad_data(&err, "/none");
}

// ---------------------------------------------------------------- parameters

#[test]
fn unknown_connection_field_is_refused_by_name() {
    let err = HttpConnector::new()
        .check_connection(&json!({"base_url": "http://127.0.0.1:1", "bogus": 1}))
        .unwrap_err();
    assert_invalid(&err, "bogus");
}

#[test]
fn unknown_source_field_is_refused_by_name() {
    let params = json!({"base_url": "http://127.0.0.1:1"});
    let err = HttpConnector::new()
        .check_source(&params, &json!({"path": "/x", "paginate": {}}))
        .unwrap_err();
    assert_invalid(&err, "paginate");
}

#[test]
fn unknown_pagination_field_is_refused_by_name() {
    let params = json!({"base_url": "http://127.0.0.1:1"});
    let err = HttpConnector::new()
        .check_source(
            &params,
            &json!({"path": "/x", "pagination": {"type": "offset", "size": 5}}),
        )
        .unwrap_err();
    assert_invalid(&err, "pagination.size");
}

#[test]
fn unknown_pagination_type_is_refused() {
    let params = json!({"base_url": "http://127.0.0.1:1"});
    let err = HttpConnector::new()
        .check_source(
            &params,
            &json!({"path": "/x", "pagination": {"type": "pages"}}),
        )
        .unwrap_err();
    assert_invalid(&err, "pagination.type");
}

#[test]
fn non_http_scheme_is_refused() {
    for url in ["ftp://127.0.0.1/", "file:///etc/passwd"] {
        let err = HttpConnector::new()
            .check_connection(&json!({"base_url": url}))
            .unwrap_err();
        assert_invalid(&err, "base_url");
    }
}

#[test]
fn credentials_in_the_base_url_are_refused() {
    let err = HttpConnector::new()
        .check_connection(&json!({"base_url": "http://user:pw@127.0.0.1/"}))
        .unwrap_err();
    assert_invalid(&err, "base_url");
    assert!(!err.to_string().contains("pw@"));
}

#[test]
fn missing_base_url_is_named() {
    let err = HttpConnector::new()
        .check_connection(&json!({}))
        .unwrap_err();
    assert_invalid(&err, "base_url");
}

#[test]
fn zero_timeout_is_refused() {
    let err = HttpConnector::new()
        .check_connection(&json!({"base_url": "http://127.0.0.1:1", "timeout_ms": 0}))
        .unwrap_err();
    assert_invalid(&err, "timeout_ms");
}

#[test]
fn wrongly_typed_field_is_named() {
    let err = HttpConnector::new()
        .check_connection(&json!({"base_url": "http://127.0.0.1:1", "max_pages": "many"}))
        .unwrap_err();
    assert_invalid(&err, "max_pages");
}

#[test]
fn bad_source_values_are_refused_by_field() {
    let params = json!({"base_url": "http://127.0.0.1:1"});
    let connector = HttpConnector::new();
    let cases = [
        (json!({"path": "v1/items"}), "path"),
        (json!({"path": "/v1/items?x=1"}), "path"),
        (json!({"path": "/a/../b"}), "path"),
        (json!({"path": "/x", "format": "xml"}), "format"),
        (json!({"path": "/x", "records": "data"}), "records"),
        (
            json!({"path": "/x", "format": "csv", "records": "/data"}),
            "records",
        ),
        (
            json!({"path": "/x", "format": "ndjson", "pagination": {"type": "cursor", "pointer": "/c"}}),
            "pagination.type",
        ),
        (
            json!({"path": "/x", "pagination": {"type": "next_link"}}),
            "pagination.pointer",
        ),
        (
            json!({"path": "/x", "pagination": {"type": "offset", "limit": 0}}),
            "pagination.limit",
        ),
        (json!({"path": "/x", "query": {"a": [1]}}), "query.a"),
        (json!({"path": "/x", "csv": {"delimiter": ";"}}), "csv"),
        (
            json!({"path": "/x", "format": "csv", "csv": {"delimiter": ";;"}}),
            "csv.delimiter",
        ),
        (json!({"path": "/x", "batch_size": 0}), "batch_size"),
        (
            json!({"path": "/x", "incremental": {"cursor_param": "since"}}),
            "incremental.cursor_field",
        ),
    ];
    for (source, field) in cases {
        let err = connector.check_source(&params, &source).unwrap_err();
        assert_invalid(&err, field);
    }
}

#[test]
fn invalid_header_name_is_refused() {
    let err = HttpConnector::new()
        .check_connection(
            &json!({"base_url": "http://127.0.0.1:1", "headers": {"Bad Name": {"value": "x"}}}),
        )
        .unwrap_err();
    assert_invalid(&err, "headers.Bad Name");
}

// ---------------------------------------------------------------- test()

#[test]
fn connection_test_uses_the_health_path() {
    let server = TestServer::start(Router::new().route("/healthz", get(|| async { "ok" })));
    let mut params = server.params();
    params["health_path"] = json!("/healthz");
    HttpConnector::new().test(&params).unwrap();
}

#[test]
fn connection_test_reports_the_status_of_a_failing_base_url() {
    let server = TestServer::start(
        Router::new().route("/", get(|| async { StatusCode::INTERNAL_SERVER_ERROR })),
    );
    let err = HttpConnector::new().test(&server.params()).unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
    assert!(
        matches!(
            err,
            ConnectorError::Remote {
                permanent: false,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn connector_kind_is_http() {
    assert_eq!(HttpConnector::new().kind(), vega_core::ConnectorKind::Http);
}

// ---------------------------------------------------------------- incremental

/// Records with `updated` 1..=5 (two share 4); `since` filters at or after.
fn changes_server() -> TestServer {
    TestServer::start(Router::new().route(
        "/changes",
        get(|q: Params| async move {
            let all = [(1, 1), (2, 2), (3, 4), (4, 4), (5, 5)];
            let since = param(&q, "since").unwrap_or(0);
            let records: Vec<Value> = all
                .iter()
                .filter(|(_, updated)| *updated >= since)
                .map(|(id, updated)| json!({"id": id, "updated": updated}))
                .collect();
            json_body(json!(records))
        }),
    ))
}

fn read_incremental(params: &Value, source: &Value, since: &Watermark) -> (Vec<i64>, Watermark) {
    let mut reader = HttpConnector::new()
        .open_incremental(params, source, since)
        .unwrap();
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch().unwrap() {
        batches.push(batch);
    }
    (ids(&rows_of(&batches)), reader.watermark())
}

#[test]
fn incremental_read_sends_the_watermark_and_skips_rows_already_read() {
    let server = changes_server();
    let source = json!({"path": "/changes", "incremental": {"cursor_param": "since", "cursor_field": "updated", "key_field": "id"}});
    let (first, mark) = read_incremental(&server.params(), &source, &Watermark::default());
    assert_eq!(first, vec![1, 2, 3, 4, 5]);
    assert_eq!(mark.value, Some(json!(5)));
    assert_eq!(mark.keys_at_value, vec!["5".to_string()]);

    let at_four = Watermark {
        value: Some(json!(4)),
        keys_at_value: vec!["3".into()],
    };
    let (second, mark) = read_incremental(&server.params(), &source, &at_four);
    assert_eq!(
        second,
        vec![4, 5],
        "row 3 shares the watermark and was read before"
    );
    assert_eq!(mark.value, Some(json!(5)));
}

#[test]
fn incremental_read_with_nothing_new_keeps_the_watermark() {
    let server = changes_server();
    let source = json!({"path": "/changes", "incremental": {"cursor_param": "since", "cursor_field": "updated", "key_field": "id"}});
    let since = Watermark {
        value: Some(json!(5)),
        keys_at_value: vec!["5".into()],
    };
    let (rows, mark) = read_incremental(&server.params(), &source, &since);
    assert!(rows.is_empty());
    assert_eq!(mark, since);
}

#[test]
fn incremental_record_without_the_cursor_field_is_bad_data() {
    let server = TestServer::start(
        Router::new().route("/c", get(|| async { json_body(json!([{"id": 1}])) })),
    );
    let source =
        json!({"path": "/c", "incremental": {"cursor_param": "since", "cursor_field": "updated"}});
    let err = match HttpConnector::new().open_incremental(
        &server.params(),
        &source,
        &Watermark::default(),
    ) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };
    assert_bad_data(&err, "/c page 1 record 1");
}

#[test]
fn incremental_read_without_settings_is_unsupported() {
    let server = changes_server();
    let err = match HttpConnector::new().open_incremental(
        &server.params(),
        &json!({"path": "/changes"}),
        &Watermark::default(),
    ) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };
    assert!(matches!(err, ConnectorError::Unsupported { .. }), "{err:?}");
}

// ------------------------------------------------------------------ HTTPS

/// An HTTPS server on 127.0.0.1 with a self-signed certificate for
/// 127.0.0.1 and localhost (made with the `openssl` command); its
/// certificate is written to `cert` for clients to trust.
struct TlsServer {
    addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    dir: tempfile::TempDir,
}

impl TlsServer {
    fn start(router: Router) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let d = dir.path();
        let ext = d.join("leaf.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let openssl = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let p = |name: &str| d.join(name).into_os_string();
        let a = |s: &str| std::ffi::OsString::from(s);
        // A test CA, and a leaf certificate for 127.0.0.1 signed by it.
        openssl(&[
            &a("req"),
            &a("-x509"),
            &a("-newkey"),
            &a("rsa:2048"),
            &a("-nodes"),
            &a("-days"),
            &a("2"),
            &a("-subj"),
            &a("/CN=vega-test-ca"),
            &a("-keyout"),
            &p("ca.key"),
            &a("-out"),
            &p("ca.pem"),
        ]);
        openssl(&[
            &a("req"),
            &a("-newkey"),
            &a("rsa:2048"),
            &a("-nodes"),
            &a("-subj"),
            &a("/CN=localhost"),
            &a("-keyout"),
            key.as_os_str(),
            &a("-out"),
            &p("leaf.csr"),
        ]);
        openssl(&[
            &a("x509"),
            &a("-req"),
            &a("-in"),
            &p("leaf.csr"),
            &a("-CA"),
            &p("ca.pem"),
            &a("-CAkey"),
            &p("ca.key"),
            &a("-CAcreateserial"),
            &a("-days"),
            &a("2"),
            &a("-out"),
            cert.as_os_str(),
            &a("-extfile"),
            ext.as_os_str(),
        ]);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = axum_server::Handle::new();
        let serve_handle = handle.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .unwrap();
                axum_server::from_tcp_rustls(listener, config)
                    .unwrap()
                    .handle(serve_handle)
                    .serve(router.into_make_service())
                    .await
                    .unwrap();
            });
        });
        Self { addr, handle, dir }
    }

    fn params(&self, trust: bool) -> Value {
        let mut p = json!({ "base_url": format!("https://127.0.0.1:{}", self.addr.port()),
                            "timeout_ms": 5000, "connect_timeout_ms": 2000 });
        if trust {
            p["ca_file"] = json!(self.dir.path().join("ca.pem"));
        }
        p
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

#[test]
fn https_with_a_trusted_ca_file_reads_records() {
    let server = TlsServer::start(Router::new().route("/", get(|| async { "ok" })).route(
        "/v1/items",
        get(|| async { json_body(json!([{"id": 1}, {"id": 2}])) }),
    ));
    let params = server.params(true);
    // Wait for the server to listen (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match HttpConnector.test(&params) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("HTTPS server never answered: {e}"),
        }
    }
    let (rows, _) = read_all(&params, json!({ "path": "/v1/items" })).unwrap();
    assert_eq!(ids(&rows), vec![1, 2]);
}

#[test]
fn https_with_an_untrusted_certificate_is_refused() {
    let server = TlsServer::start(Router::new().route("/", get(|| async { "ok" })));
    let trusted = server.params(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while HttpConnector.test(&trusted).is_err() {
        assert!(Instant::now() < deadline, "HTTPS server never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = HttpConnector.test(&server.params(false)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("tls") || text.contains("TLS"),
        "{text}"
    );
}

#[test]
fn an_unreadable_ca_file_is_refused_naming_the_field() {
    let params = json!({ "base_url": "https://127.0.0.1:1", "ca_file": "/nonexistent/ca.pem" });
    let err = read_err(&params, json!({ "path": "/x" }));
    assert_invalid(&err, "ca_file");
}
