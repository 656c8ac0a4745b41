//! [`TestConsul`]: a protocol-faithful stand-in for a Consul agent. Consul
//! cannot be installed where Vega's tests run (it is not packaged for
//! Debian and no prebuilt binary can be fetched), so this server speaks the
//! part of Consul's HTTP API that service registration and discovery use,
//! over HTTP/1.1 on a free loopback port, from plain threads, and is
//! stopped on drop.
//!
//! What it answers, with Consul's JSON shapes (PascalCase fields) and
//! status codes:
//! - `PUT /v1/agent/service/register`: a service definition `{ID, Name,
//!   Tags, Address, Port, Meta, EnableTagOverride, Check}` where `Check` is
//!   a TTL check `{TTL, DeregisterCriticalServiceAfter, ...}` or an HTTP
//!   check `{HTTP, Interval, Timeout, DeregisterCriticalServiceAfter,
//!   ...}` with Go duration strings (`"10s"`, `"1m30s"`, `"500ms"`). `ID`
//!   defaults to `Name`; the check's id is `service:<ID>`; checks start
//!   `critical`, as Consul's do. Registering the same ID again replaces the
//!   service. A body that is not such a definition is answered 400 (the
//!   stand-in also refuses unknown fields, which Consul may ignore, so that
//!   a misspelt field fails a test).
//! - `PUT /v1/agent/check/pass/<check id>`: marks a TTL check `passing`
//!   until its TTL runs out, then it is `critical` again; 404 for an
//!   unknown check, 500 for a check that is not a TTL check.
//! - `PUT /v1/agent/service/deregister/<service id>`: removes the service
//!   and its check; 404 for an unknown id.
//! - `GET /v1/health/service/<name>` with `passing` (only entries whose
//!   checks all pass), `tag` and `dc`: `[{Node: {ID, Node, Address,
//!   Datacenter, ...}, Service: {ID, Service, Tags, Address, Port, Meta,
//!   ...}, Checks: [{Node, CheckID, Name, Status, ServiceID, ServiceName,
//!   Type, ...}]}]`, with the node's `serfHealth` check first, and an
//!   `X-Consul-Index` header. A datacenter other than the agent's (`dc1`)
//!   is answered 500 `No path to datacenter`, as Consul does.
//!
//! HTTP checks are run by the stand-in itself: every `Interval` it GETs
//! the URL (bounded by `Timeout`); 2xx is `passing`, 429 `warning`,
//! anything else `critical`. A service critical for longer than its
//! `DeregisterCriticalServiceAfter` is removed (Consul's reaper runs every
//! 30 s and has a one-minute minimum; the stand-in reaps promptly, so
//! tests can use short values).
//!
//! With [`TestConsul::start_with_token`] every request must carry the token
//! in `X-Consul-Token` (or `Authorization: Bearer`, or `?token=`): a wrong
//! token is answered 403 `ACL not found`, a missing one 403 `Permission
//! denied`, as Consul answers with ACLs on and a default-deny policy.
//! Every request is recorded with its headers and body
//! ([`TestConsul::requests`]); [`TestConsul::forget_services`] drops all
//! state, as an agent restarted without its data directory does.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{self, Request};
use serde_json::{json, Map, Value};

/// How often idle connections and the check runner look whether the server
/// is stopping, and how often the check runner looks for due HTTP checks.
const POLL: Duration = Duration::from_millis(20);
/// The largest request (head and body) read; definitions are small.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Consul's default HTTP check timeout when `Timeout` is not given.
const DEFAULT_HTTP_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The agent's datacenter, Consul's default name.
const DATACENTER: &str = "dc1";
/// The agent's node name.
const NODE_NAME: &str = "vega-test-node";
/// The agent's node id (any UUID; fixed so answers are reproducible).
const NODE_ID: &str = "0b6a4a2e-4d7a-4b8e-9a55-5b1e2f0c7d01";

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path with its query string, as sent.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// What a check runs on.
#[derive(Debug, Clone)]
enum CheckKind {
    /// Passing until `passed_until`, critical after.
    Ttl {
        ttl: Duration,
        passed_until: Option<Instant>,
    },
    /// Probed by the stand-in every `interval`.
    Http {
        url: String,
        interval: Duration,
        timeout: Duration,
        next_probe: Instant,
        status: &'static str,
        output: String,
    },
}

#[derive(Debug, Clone)]
struct Service {
    id: String,
    name: String,
    tags: Vec<String>,
    address: String,
    port: u16,
    meta: Map<String, Value>,
    enable_tag_override: bool,
    check: Option<CheckKind>,
    deregister_critical_after: Option<Duration>,
    critical_since: Option<Instant>,
}

impl Service {
    fn check_status(&self, now: Instant) -> &'static str {
        match &self.check {
            None => "passing",
            Some(CheckKind::Ttl { passed_until, .. }) => match passed_until {
                Some(until) if *until > now => "passing",
                _ => "critical",
            },
            Some(CheckKind::Http { status, .. }) => status,
        }
    }

    fn check_id(&self) -> String {
        format!("service:{}", self.id)
    }
}

struct State {
    services: BTreeMap<String, Service>,
    requests: Vec<RecordedRequest>,
    token: Option<String>,
    index: u64,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A Consul agent stand-in on `127.0.0.1`; stopped when dropped.
pub struct TestConsul {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TestConsul {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestConsul")
            .field("addr", &self.addr)
            .field("acl", &self.shared.state().token.is_some())
            .finish()
    }
}

impl TestConsul {
    /// Binds `127.0.0.1:0` without ACLs and serves from threads.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Like [`start`](Self::start), with ACLs on: every request must carry
    /// `token`.
    pub fn start_with_token(token: &str) -> Self {
        Self::start_inner(Some(token.to_string()))
    }

    fn start_inner(token: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the Consul test server");
        let addr = listener.local_addr().expect("the test server's address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                services: BTreeMap::new(),
                requests: Vec::new(),
                token,
                index: 1,
            }),
            stop: AtomicBool::new(false),
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
        let s = shared.clone();
        thread::spawn(move || run_checks(&s));
        TestConsul { addr, shared }
    }

    /// `http://127.0.0.1:<port>`, the agent's HTTP address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// The ids of the registered services, sorted.
    pub fn service_ids(&self) -> Vec<String> {
        self.shared.state().services.keys().cloned().collect()
    }

    /// The status of the check of service `id` (`passing`, `warning` or
    /// `critical`), `None` when no such service is registered.
    pub fn check_status(&self, id: &str) -> Option<String> {
        let state = self.shared.state();
        let now = Instant::now();
        state
            .services
            .get(id)
            .map(|s| s.check_status(now).to_string())
    }

    /// Drops every service and check, as an agent restarted without its
    /// data directory does.
    pub fn forget_services(&self) {
        let mut state = self.shared.state();
        state.services.clear();
        state.index += 1;
    }
}

impl Drop for TestConsul {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Probes due HTTP checks and reaps services critical for too long, until
/// the server stops.
fn run_checks(shared: &Shared) {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let Ok(client) = client else { return };
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let due: Vec<(String, String, Duration)> = shared
            .state()
            .services
            .values()
            .filter_map(|s| match &s.check {
                Some(CheckKind::Http {
                    url,
                    timeout,
                    next_probe,
                    ..
                }) if *next_probe <= now => Some((s.id.clone(), url.clone(), *timeout)),
                _ => None,
            })
            .collect();
        for (id, url, timeout) in due {
            let (status, output) = match client.get(&url).timeout(timeout).send() {
                Ok(r) if r.status().is_success() => {
                    ("passing", format!("HTTP GET {url}: {}", r.status()))
                }
                Ok(r) if r.status().as_u16() == 429 => {
                    ("warning", format!("HTTP GET {url}: {}", r.status()))
                }
                Ok(r) => ("critical", format!("HTTP GET {url}: {}", r.status())),
                Err(e) => ("critical", format!("Get \"{url}\": {e}")),
            };
            let mut state = shared.state();
            if let Some(service) = state.services.get_mut(&id) {
                if let Some(CheckKind::Http {
                    interval,
                    next_probe,
                    status: s,
                    output: o,
                    ..
                }) = &mut service.check
                {
                    *next_probe = Instant::now() + *interval;
                    *s = status;
                    *o = output;
                }
            }
        }
        reap(&mut shared.state(), Instant::now());
        thread::sleep(POLL);
    }
}

/// Notes when services went critical and removes those critical for longer
/// than their `DeregisterCriticalServiceAfter`.
fn reap(state: &mut State, now: Instant) {
    let mut removed = false;
    state.services.retain(|_, service| {
        if service.check_status(now) != "critical" {
            service.critical_since = None;
            return true;
        }
        let since = *service.critical_since.get_or_insert(now);
        match service.deregister_critical_after {
            Some(after) if now.duration_since(since) >= after => {
                removed = true;
                false
            }
            _ => true,
        }
    });
    if removed {
        state.index += 1;
    }
}

/// An answer: status, extra headers, JSON or text body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: &str) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }

    fn json(status: u16, value: &Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    fn to_bytes(&self, close: bool) -> Vec<u8> {
        http::response(
            self.status,
            self.content_type,
            &self.headers,
            &self.body,
            close,
        )
    }
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut buffer = Vec::new();
    while let Some(request) =
        http::read_request(&mut stream, &mut buffer, &shared.stop, MAX_REQUEST_BYTES)
    {
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let reply = handle(shared, request);
        if stream.write_all(&reply.to_bytes(close)).is_err() || close {
            return;
        }
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
    let now = Instant::now();
    reap(&mut state, now);
    let (path, query) = match request.target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_query(q)),
        None => (request.target.clone(), BTreeMap::new()),
    };
    if let Some(expected) = state.token.clone() {
        let given = request
            .header("x-consul-token")
            .map(str::to_string)
            .or_else(|| {
                request
                    .header("authorization")
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_string)
            })
            .or_else(|| query.get("token").cloned());
        match given {
            Some(token) if token == expected => {}
            Some(_) => return Reply::text(403, "ACL not found"),
            None => return Reply::text(403, "Permission denied: anonymous token lacks permission"),
        }
    }
    let method = request.method.as_str();
    if let Some(name) = path.strip_prefix("/v1/health/service/") {
        if method != "GET" {
            return method_not_allowed(method);
        }
        return health(&state, &percent_decode(name), &query, now);
    }
    if method != "PUT" {
        return method_not_allowed(method);
    }
    if path == "/v1/agent/service/register" {
        return match parse_definition(&request.body, now) {
            Ok(service) => {
                state.services.insert(service.id.clone(), service);
                state.index += 1;
                Reply::text(200, "")
            }
            Err(message) => Reply::text(400, &message),
        };
    }
    if let Some(check_id) = path.strip_prefix("/v1/agent/check/pass/") {
        let check_id = percent_decode(check_id);
        let service = state
            .services
            .values_mut()
            .find(|s| s.check.is_some() && s.check_id() == check_id);
        return match service.and_then(|s| s.check.as_mut()) {
            Some(CheckKind::Ttl { ttl, passed_until }) => {
                *passed_until = Some(now + *ttl);
                Reply::text(200, "")
            }
            Some(CheckKind::Http { .. }) => Reply::text(
                500,
                &format!("CheckID {check_id:?} does not have associated TTL"),
            ),
            None => Reply::text(
                404,
                &format!(
                    "Unknown check ID {check_id:?}. Ensure that the check ID is passed, not the check name."
                ),
            ),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/agent/service/deregister/") {
        let id = percent_decode(id);
        return match state.services.remove(&id) {
            Some(_) => {
                state.index += 1;
                Reply::text(200, "")
            }
            None => Reply::text(
                404,
                &format!(
                    "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
                ),
            ),
        };
    }
    Reply::text(404, "")
}

fn method_not_allowed(method: &str) -> Reply {
    Reply::text(405, &format!("method {method} not allowed"))
}

fn health(state: &State, name: &str, query: &BTreeMap<String, String>, now: Instant) -> Reply {
    if let Some(dc) = query.get("dc") {
        if dc != DATACENTER {
            return Reply::text(500, "No path to datacenter");
        }
    }
    // `?passing` alone means true, as in Consul.
    let passing = query
        .get("passing")
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1");
    let tag = query.get("tag");
    let entries: Vec<Value> = state
        .services
        .values()
        .filter(|s| s.name == name)
        .filter(|s| tag.is_none_or(|t| s.tags.contains(t)))
        .filter(|s| !passing || s.check_status(now) == "passing")
        .map(|s| health_entry(s, now))
        .collect();
    let mut reply = Reply::json(200, &Value::Array(entries));
    reply
        .headers
        .push(("X-Consul-Index".into(), state.index.to_string()));
    reply
        .headers
        .push(("X-Consul-Knownleader".into(), "true".into()));
    reply
        .headers
        .push(("X-Consul-Lastcontact".into(), "0".into()));
    reply
}

fn health_entry(service: &Service, now: Instant) -> Value {
    let mut checks = vec![json!({
        "Node": NODE_NAME,
        "CheckID": "serfHealth",
        "Name": "Serf Health Status",
        "Status": "passing",
        "Notes": "",
        "Output": "Agent alive and reachable",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "",
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })];
    if let Some(check) = &service.check {
        let (kind, output) = match check {
            CheckKind::Ttl { .. } => ("ttl", String::new()),
            CheckKind::Http { output, .. } => ("http", output.clone()),
        };
        checks.push(json!({
            "Node": NODE_NAME,
            "CheckID": service.check_id(),
            "Name": format!("Service '{}' check", service.name),
            "Status": service.check_status(now),
            "Notes": "",
            "Output": output,
            "ServiceID": service.id,
            "ServiceName": service.name,
            "ServiceTags": service.tags,
            "Type": kind,
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }));
    }
    json!({
        "Node": {
            "ID": NODE_ID,
            "Node": NODE_NAME,
            "Address": "127.0.0.1",
            "Datacenter": DATACENTER,
            "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"},
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        },
        "Service": {
            "ID": service.id,
            "Service": service.name,
            "Tags": service.tags,
            "Address": service.address,
            "Meta": service.meta,
            "Port": service.port,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": service.enable_tag_override,
            "CreateIndex": 1,
            "ModifyIndex": 1,
        },
        "Checks": checks,
    })
}

/// The service definition fields the stand-in knows.
const DEFINITION_FIELDS: &[&str] = &[
    "ID",
    "Name",
    "Tags",
    "Address",
    "Port",
    "Meta",
    "EnableTagOverride",
    "Check",
];
/// The check definition fields the stand-in knows.
const CHECK_FIELDS: &[&str] = &[
    "CheckID",
    "Name",
    "Notes",
    "Status",
    "TTL",
    "HTTP",
    "Method",
    "Interval",
    "Timeout",
    "DeregisterCriticalServiceAfter",
];

/// Parses a service definition the way the agent validates it.
fn parse_definition(body: &[u8], now: Instant) -> Result<Service, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Request decode failed: {e}"))?;
    let object = value
        .as_object()
        .ok_or("Request decode failed: not a JSON object")?;
    if let Some(field) = object
        .keys()
        .find(|k| !DEFINITION_FIELDS.contains(&k.as_str()))
    {
        return Err(format!("Request decode failed: unknown field {field:?}"));
    }
    let text = |field: &str| -> Result<Option<String>, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "Request decode failed: {field} must be a string, not {other}"
            )),
        }
    };
    let name = text("Name")?
        .filter(|n| !n.is_empty())
        .ok_or("Missing service name")?;
    let id = text("ID")?
        .filter(|i| !i.is_empty())
        .unwrap_or(name.clone());
    let tags = match object.get("Tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or("Request decode failed: Tags must be strings")?,
        Some(_) => return Err("Request decode failed: Tags must be an array".into()),
    };
    let port = match object.get("Port") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("Request decode failed: Port must be a number from 0 to 65535")?,
    };
    let meta = match object.get("Meta") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => m.clone(),
        Some(_) => return Err("Request decode failed: Meta must map strings to strings".into()),
    };
    let enable_tag_override = object
        .get("EnableTagOverride")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (check, deregister_critical_after) = match object.get("Check") {
        None | Some(Value::Null) => (None, None),
        Some(check) => parse_check(check, now)?,
    };
    Ok(Service {
        id,
        name,
        tags,
        address: text("Address")?.unwrap_or_default(),
        port,
        meta,
        enable_tag_override,
        check,
        deregister_critical_after,
        critical_since: None,
    })
}

fn parse_check(
    check: &Value,
    now: Instant,
) -> Result<(Option<CheckKind>, Option<Duration>), String> {
    let object = check
        .as_object()
        .ok_or("Request decode failed: Check must be an object")?;
    if let Some(field) = object.keys().find(|k| !CHECK_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Request decode failed: unknown check field {field:?}"
        ));
    }
    let duration = |field: &str| -> Result<Option<Duration>, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_go_duration(s).map(Some).ok_or(format!(
                "Request decode failed: {field}: time: invalid duration {s:?}"
            )),
            Some(other) => Err(format!(
                "Request decode failed: {field} must be a duration string, not {other}"
            )),
        }
    };
    let deregister = duration("DeregisterCriticalServiceAfter")?;
    let ttl = duration("TTL")?;
    let http = object.get("HTTP").and_then(Value::as_str);
    let kind = match (ttl, http) {
        (Some(_), Some(_)) => {
            return Err("Invalid check: only one of TTL or HTTP may be set".into())
        }
        (Some(ttl), None) => CheckKind::Ttl {
            ttl,
            passed_until: None,
        },
        (None, Some(url)) => {
            let interval = duration("Interval")?
                .filter(|i| !i.is_zero())
                .ok_or("Invalid check: Interval must be > 0 for an HTTP check")?;
            CheckKind::Http {
                url: url.to_string(),
                interval,
                timeout: duration("Timeout")?.unwrap_or(DEFAULT_HTTP_CHECK_TIMEOUT),
                next_probe: now,
                status: "critical",
                output: String::new(),
            }
        }
        (None, None) => {
            return Err("Invalid check: TTL or HTTP and Interval must be set".into());
        }
    };
    Ok((Some(kind), deregister))
}

/// Parses a Go duration string (`"10s"`, `"1m30s"`, `"1.5s"`, `"250ms"`).
fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Some(Duration::from_secs_f64(total))
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(consul: &TestConsul, path: &str, body: Value) -> (u16, String) {
        let r = reqwest::blocking::Client::new()
            .put(format!("{}{path}", consul.url()))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn passing(consul: &TestConsul, name: &str) -> Vec<Value> {
        let r = reqwest::blocking::get(format!(
            "{}/v1/health/service/{name}?passing=true",
            consul.url()
        ))
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-consul-index"));
        r.json::<Vec<Value>>().unwrap()
    }

    #[test]
    fn go_durations_parse_like_go() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn percent_decoding_handles_escapes_and_stray_percents() {
        assert_eq!(percent_decode("service%3Aa"), "service:a");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn ttl_checks_start_critical_pass_and_expire() {
        let consul = TestConsul::start();
        let (status, _) = put(
            &consul,
            "/v1/agent/service/register",
            json!({"ID": "a1", "Name": "api", "Address": "127.0.0.1", "Port": 9000,
                   "Check": {"TTL": "300ms"}}),
        );
        assert_eq!(status, 200);
        assert_eq!(consul.check_status("a1").as_deref(), Some("critical"));
        assert!(passing(&consul, "api").is_empty());
        assert_eq!(
            put(&consul, "/v1/agent/check/pass/service:a1", json!(null)).0,
            200
        );
        let entries = passing(&consul, "api");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["Service"]["ID"], "a1");
        assert_eq!(entries[0]["Service"]["Port"], 9000);
        assert_eq!(entries[0]["Checks"][1]["Status"], "passing");
        thread::sleep(Duration::from_millis(400));
        assert!(passing(&consul, "api").is_empty());
        assert_eq!(
            put(&consul, "/v1/agent/check/pass/service:zz", json!(null)).0,
            404
        );
        assert_eq!(
            put(&consul, "/v1/agent/service/deregister/a1", json!(null)).0,
            200
        );
        assert_eq!(
            put(&consul, "/v1/agent/service/deregister/a1", json!(null)).0,
            404
        );
    }

    #[test]
    fn bad_definitions_are_refused() {
        let consul = TestConsul::start();
        let register = "/v1/agent/service/register";
        assert_eq!(put(&consul, register, json!({"ID": "x"})).0, 400);
        assert_eq!(
            put(&consul, register, json!({"Name": "x", "Prot": 1})).0,
            400
        );
        let (status, text) = put(
            &consul,
            register,
            json!({"Name": "x", "Check": {"TTL": "10"}}),
        );
        assert_eq!(status, 400, "{text}");
        assert!(consul.service_ids().is_empty());
    }

    #[test]
    fn tokens_are_checked_when_acls_are_on() {
        let consul = TestConsul::start_with_token("s3cret");
        let r = reqwest::blocking::get(format!("{}/v1/health/service/api", consul.url())).unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().unwrap().contains("Permission denied"));
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v1/health/service/api", consul.url()))
            .header("X-Consul-Token", "wrong")
            .send()
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().unwrap(), "ACL not found");
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v1/health/service/api", consul.url()))
            .header("X-Consul-Token", "s3cret")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(consul.requests().len(), 3);
    }
}
