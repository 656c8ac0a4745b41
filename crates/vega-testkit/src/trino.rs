//! [`TrinoTestServer`]: a protocol-faithful stand-in for a Trino
//! coordinator. Trino itself cannot be installed where Vega's tests run (it
//! needs a JVM and a multi-gigabyte distribution), so this server speaks
//! Trino's client REST protocol instead, over HTTP/1.1 on a free loopback
//! port, from plain threads, and is stopped on drop.
//!
//! What it answers, the way a coordinator does:
//! - `POST /v1/statement` (the SQL in the body, `X-Trino-User` required):
//!   a `QUEUED` answer with a `nextUri`.
//! - `GET` of each `nextUri` (`/v1/statement/queued|executing/<id>/<slug>/<token>`):
//!   more `QUEUED` answers, `RUNNING` answers (first without data, then
//!   pages of `data`), and a final `FINISHED` one without `nextUri`; or a
//!   `FAILED` one with an `error` object. Asking the same `nextUri` again
//!   answers the same page, as Trino does.
//! - `DELETE` of a `nextUri`: cancels the query (204); later GETs answer
//!   `FAILED` with `USER_CANCELED`.
//! - `GET /v1/info`: the node's version and state.
//!
//! Answers are `QueryResults` documents as Trino writes them: `id`,
//! `infoUri`, `nextUri`, `columns` (`name`, `type`, `typeSignature`),
//! `data`, `stats` (`state`, `queued`, `scheduled`, `nodes`, split counts,
//! times, `processedRows`, `processedBytes`, …), `error` (`message`,
//! `errorCode`, `errorName`, `errorType`, `errorLocation`, `failureInfo`)
//! and `warnings`.
//!
//! What it answers is scripted per statement ([`TrinoTestServer::script`]):
//! columns and rows, how many pages they are split over, how many empty
//! polls come first, a failure, a delay per page, and faults on a given
//! page (a 503, a connection dropped mid-body). A statement without a
//! script fails the way Trino fails an unknown statement or table. Every
//! request is recorded with its headers.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{self, Request};
use serde_json::{json, Value};

/// How often a connection waiting for a request, or a delayed answer,
/// looks whether the server is stopping.
const STOP_POLL: Duration = Duration::from_millis(20);

/// The largest request (head and body) read; statements in tests are small.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The version `/v1/info` reports.
const NODE_VERSION: &str = "vega-test";

/// The last part of every query id: Trino's is the coordinator's id.
const COORDINATOR_ID: &str = "vtest";

/// Trino's name for an unbounded `varchar`'s length argument.
const UNBOUNDED_VARCHAR_LENGTH: i64 = 2_147_483_647;

/// The statements Trino's grammar starts with; anything else is a syntax
/// error at its first word.
const STATEMENT_KEYWORDS: &[&str] = &[
    "ALTER",
    "ANALYZE",
    "CALL",
    "COMMENT",
    "COMMIT",
    "CREATE",
    "DEALLOCATE",
    "DELETE",
    "DENY",
    "DESC",
    "DESCRIBE",
    "DROP",
    "EXECUTE",
    "EXPLAIN",
    "GRANT",
    "INSERT",
    "MERGE",
    "PREPARE",
    "REFRESH",
    "RESET",
    "REVOKE",
    "ROLLBACK",
    "SELECT",
    "SET",
    "SHOW",
    "START",
    "TABLE",
    "TRUNCATE",
    "UPDATE",
    "USE",
    "VALUES",
    "WITH",
];

/// What Trino reports for a failed statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrinoErrorSpec {
    pub error_name: String,
    /// `USER_ERROR`, `INTERNAL_ERROR`, `INSUFFICIENT_RESOURCES`, `EXTERNAL`.
    pub error_type: String,
    pub error_code: i64,
    pub message: String,
}

impl TrinoErrorSpec {
    pub fn new(error_name: &str, error_type: &str, error_code: i64, message: &str) -> Self {
        TrinoErrorSpec {
            error_name: error_name.into(),
            error_type: error_type.into(),
            error_code,
            message: message.into(),
        }
    }

    /// `SYNTAX_ERROR` (code 1) with `message` (Trino's start with
    /// `line L:C: `).
    pub fn syntax_error(message: &str) -> Self {
        Self::new("SYNTAX_ERROR", "USER_ERROR", 1, message)
    }

    /// `TABLE_NOT_FOUND` (code 46) for `table` (`catalog.schema.table`).
    pub fn table_not_found(table: &str) -> Self {
        Self::new(
            "TABLE_NOT_FOUND",
            "USER_ERROR",
            46,
            &format!("line 1:15: Table '{table}' does not exist"),
        )
    }

    /// `GENERIC_INTERNAL_ERROR` (code 65536).
    pub fn internal(message: &str) -> Self {
        Self::new("GENERIC_INTERNAL_ERROR", "INTERNAL_ERROR", 65536, message)
    }

    /// The Java exception class Trino names in `failureInfo`.
    fn exception_type(&self) -> &'static str {
        match self.error_name.as_str() {
            "SYNTAX_ERROR" => "io.trino.sql.parser.ParsingException",
            _ => "io.trino.spi.TrinoException",
        }
    }
}

/// How the server answers one statement. Answers are numbered from 0, the
/// POST's; each GET of a `nextUri` asks for the next number. In order: the
/// POST's `QUEUED` answer, `queued_polls` more `QUEUED` answers, then either
/// a `FAILED` answer (`fail_with`) or `running_polls` `RUNNING` answers
/// with columns but no data, `pages` answers sharing the rows (at least one
/// when there are rows), and a `FINISHED` answer without data.
#[derive(Clone, Debug)]
pub struct Script {
    /// Column names and Trino types (`bigint`, `decimal(10,2)`, …).
    pub columns: Vec<(String, String)>,
    /// Rows as Trino's JSON carries them (decimals and dates as strings,
    /// varbinary as base64).
    pub rows: Vec<Vec<Value>>,
    pub pages: usize,
    pub queued_polls: usize,
    pub running_polls: usize,
    pub fail_with: Option<TrinoErrorSpec>,
    /// Slept before answering each GET (not the POST).
    pub delay_per_page: Duration,
    /// The answer whose connection is closed halfway through the body
    /// (0 is the POST's).
    pub drop_connection_on_page: Option<usize>,
    /// The answer replaced by an HTTP 503, as a load balancer would (0 is
    /// the POST's).
    pub status_503_on_page: Option<usize>,
    /// How many times each fault above happens before the page is answered
    /// normally; `None` for every time.
    pub fault_times: Option<usize>,
    /// `X-Trino-Set-Session` headers (name, value) of the final answer.
    pub set_session: Vec<(String, String)>,
    /// `X-Trino-Clear-Session` headers of the final answer.
    pub clear_session: Vec<String>,
    /// `updateType` of answers after queueing (`SET SESSION`, `INSERT`).
    pub update_type: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            columns: Vec::new(),
            rows: Vec::new(),
            pages: 1,
            queued_polls: 0,
            running_polls: 0,
            fail_with: None,
            delay_per_page: Duration::ZERO,
            drop_connection_on_page: None,
            status_503_on_page: None,
            fault_times: Some(1),
            set_session: Vec::new(),
            clear_session: Vec::new(),
            update_type: None,
        }
    }
}

impl Script {
    /// A query answering `rows` of `columns` (name, Trino type) in one page.
    pub fn rows(columns: &[(&str, &str)], rows: Vec<Vec<Value>>) -> Self {
        Script {
            columns: columns
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            rows,
            ..Script::default()
        }
    }

    /// A statement that fails with `error` once it leaves the queue.
    pub fn failing(error: TrinoErrorSpec) -> Self {
        Script {
            fail_with: Some(error),
            ..Script::default()
        }
    }
}

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query string.
    pub path: String,
    /// Names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// Every value of header `name` (any case), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Clone, Debug)]
enum PageKind {
    Queued,
    Running,
    /// Rows `start..end` of the script.
    Data(usize, usize),
    Finished,
    Failed(TrinoErrorSpec),
}

struct Query {
    id: String,
    slug: String,
    script: Script,
    plan: Vec<PageKind>,
    created: Instant,
    /// Faults served per page number.
    faults: HashMap<usize, usize>,
    cancelled: bool,
}

struct State {
    scripts: Vec<(String, Script)>,
    queries: HashMap<String, Query>,
    requests: Vec<RecordedRequest>,
    cancelled: Vec<String>,
    available: bool,
    required_authorization: Option<String>,
    next_query: u64,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    /// The URL the server names in `nextUri`/`infoUri` (its own, or a
    /// front's, see [`TrinoTestServer::set_public_url`]).
    base_url: Mutex<String>,
}

impl Shared {
    fn public_url(&self) -> String {
        self.base_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A scripted Trino coordinator on `127.0.0.1`; stopped when dropped.
pub struct TrinoTestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TrinoTestServer {
    /// Binds `127.0.0.1:0` and serves from a thread (one more per
    /// connection).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the Trino test server");
        let addr = listener.local_addr().expect("the test server's address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                scripts: Vec::new(),
                queries: HashMap::new(),
                requests: Vec::new(),
                cancelled: Vec::new(),
                available: true,
                required_authorization: None,
                next_query: 1,
            }),
            stop: AtomicBool::new(false),
            base_url: Mutex::new(format!("http://{addr}")),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                thread::spawn(move || serve_connection(stream, &s));
            }
        });
        TrinoTestServer { addr, shared }
    }

    /// The coordinator URL: `http://127.0.0.1:<port>`, or the URL given
    /// to [`set_public_url`](Self::set_public_url).
    pub fn url(&self) -> String {
        self.shared.public_url()
    }

    /// Names `url` (a TLS front's, say) instead of the server's own in
    /// every `nextUri` and `infoUri`, as a coordinator behind a proxy with
    /// its external URL configured does.
    pub fn set_public_url(&self, url: &str) {
        *self
            .shared
            .base_url
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = url.trim_end_matches('/').to_string();
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers statements equal to `sql_or_prefix`, or starting with it,
    /// with `script` (an exact match wins over a prefix, a longer prefix
    /// over a shorter one; the same key again replaces the script).
    pub fn script(&self, sql_or_prefix: &str, script: Script) {
        let key = normalize(sql_or_prefix).to_string();
        let mut state = self.shared.state();
        state.scripts.retain(|(k, _)| *k != key);
        state.scripts.push((key, script));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// The SQL of every statement posted so far, in order.
    pub fn statements(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.body)
            .collect()
    }

    /// The ids of the queries cancelled by a `DELETE`, in order.
    pub fn cancelled_queries(&self) -> Vec<String> {
        self.shared.state().cancelled.clone()
    }

    /// With `false`, every request is answered 503, as a load balancer
    /// without a healthy coordinator does.
    pub fn set_available(&self, available: bool) {
        self.shared.state().available = available;
    }

    /// With `Some(value)`, requests whose `Authorization` header is not
    /// exactly `value` are answered 401.
    pub fn require_authorization(&self, value: Option<&str>) {
        self.shared.state().required_authorization = value.map(str::to_string);
    }
}

impl Drop for TrinoTestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A parsed request.
/// What to send back.
enum Reply {
    Full {
        bytes: Vec<u8>,
        delay: Duration,
    },
    /// Headers and half the body, then the connection is closed.
    Dropped {
        bytes: Vec<u8>,
        delay: Duration,
    },
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(STOP_POLL)).is_err() {
        return;
    }
    let mut buffer = Vec::new();
    while let Some(request) =
        http::read_request(&mut stream, &mut buffer, &shared.stop, MAX_REQUEST_BYTES)
    {
        match handle(shared, request) {
            Reply::Full { bytes, delay } => {
                if !sleep_unless_stopped(delay, &shared.stop) || stream.write_all(&bytes).is_err() {
                    return;
                }
            }
            Reply::Dropped { bytes, delay } => {
                if sleep_unless_stopped(delay, &shared.stop) {
                    let head_end = http::find(&bytes, b"\r\n\r\n").map_or(0, |i| i + 4);
                    let cut = head_end + (bytes.len() - head_end) / 2;
                    let _ = stream.write_all(&bytes[..cut]);
                    let _ = stream.flush();
                }
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Sleeps `delay` in steps; false when the server stopped meanwhile.
fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep(STOP_POLL.min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::SeqCst)
}

fn http_response(
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    http::response(status, content_type, headers, body, false)
}

fn text(status: u16, body: &str) -> Reply {
    Reply::Full {
        bytes: http_response(status, "text/plain", &[], body.as_bytes()),
        delay: Duration::ZERO,
    }
}

fn json_reply(document: &Value, headers: &[(String, String)], delay: Duration) -> Reply {
    let body = serde_json::to_vec(document).unwrap_or_default();
    Reply::Full {
        bytes: http_response(200, "application/json", headers, &body),
        delay,
    }
}

fn handle(shared: &Shared, request: Request) -> Reply {
    let mut state = shared.state();
    state.requests.push(RecordedRequest {
        method: request.method.clone(),
        path: request.target.clone(),
        headers: request.headers.clone(),
        body: String::from_utf8_lossy(&request.body).into_owned(),
    });
    if !state.available {
        return text(503, "Service Unavailable");
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(required) = &state.required_authorization {
        if header("authorization") != Some(required.as_str()) {
            return Reply::Full {
                bytes: http_response(
                    401,
                    "text/plain",
                    &[("WWW-Authenticate".into(), "Basic realm=\"Trino\"".into())],
                    b"Unauthorized",
                ),
                delay: Duration::ZERO,
            };
        }
    }
    let path = request.target.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "statement"]) => {
            if header("x-trino-user").is_none_or(|u| u.trim().is_empty()) {
                return text(400, "Error 400 Bad Request: User must be set");
            }
            let sql = String::from_utf8_lossy(&request.body).into_owned();
            if sql.trim().is_empty() {
                return text(400, "Error 400 Bad Request: SQL statement is empty");
            }
            let catalog = header("x-trino-catalog").map(str::to_string);
            let schema = header("x-trino-schema").map(str::to_string);
            let id = submit(&mut state, &sql, catalog.as_deref(), schema.as_deref());
            let Some(query) = state.queries.get_mut(&id) else {
                return text(404, "Query not found");
            };
            let (document, headers) = render(query, 0, &shared.public_url());
            page_reply(query, 0, document, headers, Duration::ZERO)
        }
        ("GET", ["v1", "statement", "queued" | "executing", id, slug, token]) => {
            let Some(query) = state.queries.get_mut(*id) else {
                return text(404, "Query not found");
            };
            let Ok(page) = token.parse::<usize>() else {
                return text(404, "Query not found");
            };
            if query.slug != *slug || page >= query.plan.len() {
                return text(404, "Query not found");
            }
            let delay = query.script.delay_per_page;
            let (document, headers) = if query.cancelled {
                (cancelled_document(query, &shared.public_url()), Vec::new())
            } else {
                render(query, page, &shared.public_url())
            };
            page_reply(query, page, document, headers, delay)
        }
        ("DELETE", ["v1", "statement", "queued" | "executing", id, slug, _token]) => {
            let known = match state.queries.get_mut(*id) {
                Some(query) if query.slug == *slug => {
                    let first = !query.cancelled;
                    query.cancelled = true;
                    first
                }
                _ => return text(404, "Query not found"),
            };
            if known {
                state.cancelled.push(id.to_string());
            }
            Reply::Full {
                bytes: http_response(204, "text/plain", &[], b""),
                delay: Duration::ZERO,
            }
        }
        ("GET", ["v1", "info"]) => json_reply(
            &json!({
                "nodeVersion": {"version": NODE_VERSION},
                "environment": "test",
                "coordinator": true,
                "starting": false,
                "uptime": "1.00m"
            }),
            &[],
            Duration::ZERO,
        ),
        _ => text(404, "Not Found"),
    }
}

/// Answer `page` of `query`, or the fault the script puts in its place.
fn page_reply(
    query: &mut Query,
    page: usize,
    document: Value,
    headers: Vec<(String, String)>,
    delay: Duration,
) -> Reply {
    let served = query.faults.entry(page).or_insert(0);
    let fault_due = query.script.fault_times.is_none_or(|n| *served < n);
    if fault_due && query.script.status_503_on_page == Some(page) {
        *served += 1;
        return Reply::Full {
            bytes: http_response(503, "text/plain", &[], b"Service Unavailable"),
            delay,
        };
    }
    let body = serde_json::to_vec(&document).unwrap_or_default();
    let bytes = http_response(200, "application/json", &headers, &body);
    if fault_due && query.script.drop_connection_on_page == Some(page) {
        *served += 1;
        return Reply::Dropped { bytes, delay };
    }
    Reply::Full { bytes, delay }
}

/// The statement text that scripts are matched on.
fn normalize(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

/// Registers a query for `sql` and returns its id.
fn submit(state: &mut State, sql: &str, catalog: Option<&str>, schema: Option<&str>) -> String {
    let statement = normalize(sql);
    let script = state
        .scripts
        .iter()
        .filter(|(key, _)| statement == key || statement.starts_with(key.as_str()))
        .max_by_key(|(key, _)| (statement == key, key.len()))
        .map(|(_, script)| script.clone())
        .unwrap_or_else(|| Script::failing(unknown_statement(statement, catalog, schema)));
    let number = state.next_query;
    state.next_query += 1;
    let id = format!("{}_{number:05}_{COORDINATOR_ID}", utc_stamp());
    let slug = format!("y{:08x}", number.wrapping_mul(0x9e37_79b9) & 0xffff_ffff);
    let plan = plan(&script);
    state.queries.insert(
        id.clone(),
        Query {
            id: id.clone(),
            slug,
            script,
            plan,
            created: Instant::now(),
            faults: HashMap::new(),
            cancelled: false,
        },
    );
    id
}

/// The answers of a script, in order.
fn plan(script: &Script) -> Vec<PageKind> {
    let mut plan = vec![PageKind::Queued; 1 + script.queued_polls];
    if let Some(error) = &script.fail_with {
        plan.push(PageKind::Failed(error.clone()));
        return plan;
    }
    plan.extend(std::iter::repeat_n(PageKind::Running, script.running_polls));
    let rows = script.rows.len();
    if rows > 0 {
        let pages = script.pages.clamp(1, rows);
        let per_page = rows.div_ceil(pages);
        let mut start = 0;
        while start < rows {
            let end = (start + per_page).min(rows);
            plan.push(PageKind::Data(start, end));
            start = end;
        }
    }
    plan.push(PageKind::Finished);
    plan
}

/// How Trino fails a statement nobody scripted: a syntax error at a first
/// word that starts no statement, a missing table for `… FROM <name>`, and
/// otherwise an unsupported statement.
fn unknown_statement(sql: &str, catalog: Option<&str>, schema: Option<&str>) -> TrinoErrorSpec {
    let first = sql.split_whitespace().next().unwrap_or("");
    if !STATEMENT_KEYWORDS.contains(&first.to_ascii_uppercase().as_str()) {
        let expected = STATEMENT_KEYWORDS
            .iter()
            .filter(|k| !matches!(**k, "SELECT" | "TABLE" | "VALUES" | "WITH"))
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ");
        return TrinoErrorSpec::syntax_error(&format!(
            "line 1:1: mismatched input '{first}'. Expecting: {expected}, <query>"
        ));
    }
    let upper = sql.to_ascii_uppercase();
    if let Some(at) = upper.find(" FROM ") {
        let name_start = at + " FROM ".len();
        let name: String = sql[name_start..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '"'))
            .collect();
        let name = name.replace('"', "").to_ascii_lowercase();
        let parts = name.split('.').count();
        let qualified = match (parts, catalog, schema) {
            (1, Some(c), Some(s)) => format!("{c}.{s}.{name}"),
            (2, Some(c), _) => format!("{c}.{name}"),
            _ => name,
        };
        let column =
            name_start + 1 + (sql[name_start..].len() - sql[name_start..].trim_start().len());
        return TrinoErrorSpec::new(
            "TABLE_NOT_FOUND",
            "USER_ERROR",
            46,
            &format!("line 1:{column}: Table '{qualified}' does not exist"),
        );
    }
    TrinoErrorSpec::new(
        "NOT_SUPPORTED",
        "USER_ERROR",
        13,
        &format!("line 1:1: the test server has no script for: {sql}"),
    )
}

fn state_name(kind: &PageKind) -> &'static str {
    match kind {
        PageKind::Queued => "QUEUED",
        PageKind::Running | PageKind::Data(..) => "RUNNING",
        PageKind::Finished => "FINISHED",
        PageKind::Failed(_) => "FAILED",
    }
}

/// The `QueryResults` document of answer `page` of `query`, and its extra
/// headers.
fn render(query: &Query, page: usize, base_url: &str) -> (Value, Vec<(String, String)>) {
    let kind = &query.plan[page];
    let script = &query.script;
    let mut document = serde_json::Map::new();
    document.insert("id".into(), json!(query.id));
    document.insert(
        "infoUri".into(),
        json!(format!("{base_url}/ui/query.html?{}", query.id)),
    );
    if let Some(next) = query.plan.get(page + 1) {
        let segment = if matches!(next, PageKind::Queued) {
            "queued"
        } else {
            "executing"
        };
        document.insert(
            "nextUri".into(),
            json!(format!(
                "{base_url}/v1/statement/{segment}/{}/{}/{}",
                query.id,
                query.slug,
                page + 1
            )),
        );
    }
    if matches!(kind, PageKind::Running | PageKind::Data(..)) {
        document.insert(
            "partialCancelUri".into(),
            json!(format!("{base_url}/v1/stage/{}.0", query.id)),
        );
    }
    if matches!(
        kind,
        PageKind::Running | PageKind::Data(..) | PageKind::Finished
    ) {
        let columns: Vec<Value> = script
            .columns
            .iter()
            .map(|(name, data_type)| {
                json!({
                    "name": name,
                    "type": data_type,
                    "typeSignature": type_signature(data_type),
                })
            })
            .collect();
        document.insert("columns".into(), Value::Array(columns));
        if let Some(update_type) = &script.update_type {
            document.insert("updateType".into(), json!(update_type));
        }
    }
    if let PageKind::Data(start, end) = kind {
        document.insert("data".into(), json!(script.rows[*start..*end]));
    }
    // Rows served up to and including this answer.
    let served: Vec<&Vec<Value>> = query.plan[..=page]
        .iter()
        .filter_map(|k| match k {
            PageKind::Data(s, e) => Some(&script.rows[*s..*e]),
            _ => None,
        })
        .flatten()
        .collect();
    let processed_bytes: usize = served.iter().map(|r| json!(r).to_string().len()).sum();
    document.insert(
        "stats".into(),
        stats(query, kind, page, served.len(), processed_bytes),
    );
    if let PageKind::Failed(error) = kind {
        document.insert("error".into(), error_document(error));
    }
    document.insert("warnings".into(), json!([]));
    let mut headers = Vec::new();
    if matches!(kind, PageKind::Finished) {
        for (name, value) in &script.set_session {
            headers.push((
                "X-Trino-Set-Session".to_string(),
                format!("{name}={}", percent_encode(value)),
            ));
        }
        for name in &script.clear_session {
            headers.push(("X-Trino-Clear-Session".to_string(), name.clone()));
        }
    }
    (Value::Object(document), headers)
}

/// What a GET of a cancelled query answers.
fn cancelled_document(query: &Query, base_url: &str) -> Value {
    let error = TrinoErrorSpec::new("USER_CANCELED", "USER_ERROR", 3, "Query was canceled");
    let kind = PageKind::Failed(error.clone());
    json!({
        "id": query.id,
        "infoUri": format!("{base_url}/ui/query.html?{}", query.id),
        "stats": stats(query, &kind, 0, 0, 0),
        "error": error_document(&error),
        "warnings": [],
    })
}

fn stats(query: &Query, kind: &PageKind, page: usize, rows: usize, bytes: usize) -> Value {
    let state = state_name(kind);
    let elapsed = u64::try_from(query.created.elapsed().as_millis()).unwrap_or(u64::MAX);
    let queued = matches!(kind, PageKind::Queued);
    let data_pages = query
        .plan
        .iter()
        .filter(|k| matches!(k, PageKind::Data(..)))
        .count();
    let completed = query.plan[..=page.min(query.plan.len() - 1)]
        .iter()
        .filter(|k| matches!(k, PageKind::Data(..)))
        .count();
    let finished = matches!(kind, PageKind::Finished);
    let (total, running) = if queued {
        (0, 0)
    } else {
        (data_pages, usize::from(!finished && completed < data_pages))
    };
    json!({
        "state": state,
        "queued": queued,
        "scheduled": !queued && !matches!(kind, PageKind::Failed(_)),
        "progressPercentage": if total == 0 { 0.0 } else { 100.0 * completed as f64 / total as f64 },
        "runningPercentage": 0.0,
        "nodes": if queued { 0 } else { 1 },
        "totalSplits": total,
        "queuedSplits": 0,
        "runningSplits": running,
        "completedSplits": if queued { 0 } else { completed },
        "cpuTimeMillis": elapsed / 2,
        "wallTimeMillis": elapsed,
        "queuedTimeMillis": if queued { elapsed } else { 0 },
        "elapsedTimeMillis": elapsed,
        "processedRows": rows,
        "processedBytes": bytes,
        "physicalInputBytes": bytes,
        "physicalWrittenBytes": 0,
        "peakMemoryBytes": bytes,
        "spilledBytes": 0,
    })
}

fn error_document(error: &TrinoErrorSpec) -> Value {
    // Trino's messages start with `line L:C: ` when they have a location.
    let location = error
        .message
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(line, rest)| {
            let column = rest.split(':').next()?;
            Some((line.parse::<u32>().ok()?, column.parse::<u32>().ok()?))
        });
    let location_json = location.map(|(l, c)| json!({"lineNumber": l, "columnNumber": c}));
    let mut failure = json!({
        "type": error.exception_type(),
        "message": error.message,
        "suppressed": [],
        "stack": [],
    });
    let mut document = json!({
        "message": error.message,
        "errorCode": error.error_code,
        "errorName": error.error_name,
        "errorType": error.error_type,
    });
    if let Some(location) = location_json {
        failure["errorLocation"] = location.clone();
        document["errorLocation"] = location;
    }
    document["failureInfo"] = failure;
    document
}

/// Trino's `typeSignature` of a type as Trino prints it: the raw type and
/// its arguments (`LONG` for lengths and precisions, `TYPE` for element
/// types, `NAMED_TYPE` for row fields).
fn type_signature(data_type: &str) -> Value {
    let text = data_type.trim().to_ascii_lowercase();
    let Some(open) = text.find('(') else {
        let arguments = if text == "varchar" {
            vec![json!({"kind": "LONG", "value": UNBOUNDED_VARCHAR_LENGTH})]
        } else {
            Vec::new()
        };
        return json!({"rawType": text, "arguments": arguments});
    };
    let close = matching_paren(&text, open).unwrap_or(text.len() - 1);
    let base = text[..open].trim();
    let suffix = text[close + 1..].trim();
    let raw_type = if suffix.is_empty() {
        base.to_string()
    } else {
        format!("{base} {suffix}")
    };
    let inner = &text[open + 1..close.max(open + 1)];
    let arguments: Vec<Value> = split_top_level(inner)
        .into_iter()
        .map(|arg| {
            let arg = arg.trim();
            if let Ok(n) = arg.parse::<i64>() {
                json!({"kind": "LONG", "value": n})
            } else if raw_type == "row" {
                let (name, field_type) = arg.split_once(' ').unwrap_or(("", arg));
                json!({"kind": "NAMED_TYPE", "value": {
                    "fieldName": {"name": name},
                    "typeSignature": type_signature(field_type),
                }})
            } else {
                json!({"kind": "TYPE", "value": type_signature(arg)})
            }
        })
        .collect();
    json!({"rawType": raw_type, "arguments": arguments})
}

fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !text[start..].trim().is_empty() {
        parts.push(&text[start..]);
    }
    parts
}

/// Percent-encodes all but unreserved characters, as Trino encodes
/// session values in headers.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `YYYYMMDD_HHMMSS` in UTC, the start of a Trino query id.
fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}_{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(server: &TrinoTestServer, sql: &str) -> Value {
        reqwest::blocking::Client::new()
            .post(format!("{}/v1/statement", server.url()))
            .header("X-Trino-User", "test")
            .body(sql.to_string())
            .send()
            .expect("post")
            .json()
            .expect("json")
    }

    fn get(uri: &str) -> Value {
        reqwest::blocking::get(uri)
            .expect("get")
            .json()
            .expect("json")
    }

    #[test]
    fn serves_a_scripted_query_page_by_page() {
        let server = TrinoTestServer::start();
        server.script(
            "SELECT n FROM t",
            Script {
                pages: 2,
                queued_polls: 1,
                ..Script::rows(&[("n", "integer")], vec![vec![json!(1)], vec![json!(2)]])
            },
        );
        let first = post(&server, "SELECT n FROM t;");
        assert_eq!(first["stats"]["state"], "QUEUED");
        assert!(first.get("columns").is_none());
        let mut states = vec![];
        let mut rows = vec![];
        let mut next = first["nextUri"].as_str().map(str::to_string);
        while let Some(uri) = next {
            let page = get(&uri);
            states.push(page["stats"]["state"].as_str().unwrap_or("").to_string());
            if let Some(data) = page["data"].as_array() {
                rows.extend(data.iter().cloned());
            }
            next = page["nextUri"].as_str().map(str::to_string);
        }
        assert_eq!(states, ["QUEUED", "RUNNING", "RUNNING", "FINISHED"]);
        assert_eq!(rows, vec![json!([1]), json!([2])]);
    }

    #[test]
    fn unknown_statements_fail_like_trino() {
        let server = TrinoTestServer::start();
        let syntax = unknown_statement("SELEC 1", None, None);
        assert_eq!(syntax.error_name, "SYNTAX_ERROR");
        assert!(syntax
            .message
            .starts_with("line 1:1: mismatched input 'SELEC'"));
        let table = unknown_statement("SELECT * FROM orders", Some("tpch"), Some("tiny"));
        assert_eq!(table.error_name, "TABLE_NOT_FOUND");
        assert_eq!(
            table.message,
            "line 1:15: Table 'tpch.tiny.orders' does not exist"
        );
        let first = post(&server, "SELECT * FROM nowhere");
        let failed = get(first["nextUri"].as_str().expect("nextUri"));
        assert_eq!(failed["stats"]["state"], "FAILED");
        assert_eq!(failed["error"]["errorName"], "TABLE_NOT_FOUND");
        assert_eq!(failed["error"]["errorLocation"]["columnNumber"], 15);
        assert!(failed.get("nextUri").is_none());
    }

    #[test]
    fn type_signatures_look_like_trinos() {
        assert_eq!(
            type_signature("decimal(10,2)"),
            json!({"rawType": "decimal", "arguments": [
                {"kind": "LONG", "value": 10}, {"kind": "LONG", "value": 2}]})
        );
        assert_eq!(
            type_signature("timestamp(3) with time zone")["rawType"],
            "timestamp with time zone"
        );
        assert_eq!(
            type_signature("array(varchar(3))")["arguments"][0]["value"]["rawType"],
            "varchar"
        );
        assert_eq!(
            type_signature("row(a integer, b double)")["arguments"][1]["value"]["fieldName"]
                ["name"],
            "b"
        );
    }

    #[test]
    fn unavailable_answers_503_and_records_the_request() {
        let server = TrinoTestServer::start();
        server.set_available(false);
        let status = reqwest::blocking::get(format!("{}/v1/info", server.url()))
            .expect("get")
            .status();
        assert_eq!(status.as_u16(), 503);
        assert_eq!(server.requests().len(), 1);
        assert_eq!(utc_stamp().len(), 15);
    }
}
