//! A throwaway InfluxDB 1.x server for tests.
//!
//! [`TestInfluxdb::start`] writes a config file into a fresh temporary
//! directory (meta, data and WAL directories inside it), binds the HTTP API
//! and the RPC/backup service to two free loopback ports, disables usage
//! reporting and the internal monitor store, runs `influxd` (from the
//! Debian `influxdb` package) and waits, bounded, until `/ping` answers.
//! [`TestInfluxdb::start_with_auth`] also enables authentication and creates
//! an admin user through the API; the helper methods then authenticate as
//! that user. The server is killed and its directory removed on drop, so
//! every test may start its own server in parallel with others.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ports::free_port;

/// How long to wait for `/ping` after starting `influxd`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of every request the harness makes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when `influxd` exits at start (a port taken
/// between choosing it and binding it).
const START_ATTEMPTS: usize = 3;

/// A running `influxd` in a temporary directory; killed on drop.
pub struct TestInfluxdb {
    child: Child,
    port: u16,
    auth: Option<(String, String)>,
    http: reqwest::blocking::Client,
    // Dropped after the child is killed (fields drop in order, and `Drop`
    // runs first).
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestInfluxdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestInfluxdb")
            .field("url", &self.url())
            .field("auth", &self.auth.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl TestInfluxdb {
    /// Starts a server without authentication. Panics (with the server's
    /// log) if it does not come up in time.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a server with authentication enabled and an admin user
    /// `user` / `password`, which the helper methods use.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user.to_string(), password.to_string())))
    }

    fn start_inner(auth: Option<(String, String)>) -> Self {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(auth.clone()) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("influxd did not start: {last_error}");
    }

    fn try_start(auth: Option<(String, String)>) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("vega-influxdb-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?;
        let port = free_port();
        let mut rpc_port = free_port();
        while rpc_port == port {
            rpc_port = free_port();
        }
        let config = dir.path().join("influxdb.conf");
        fs::write(
            &config,
            config_text(dir.path(), port, rpc_port, auth.is_some()),
        )
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log_path = dir.path().join("influxd.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("creating the log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("duplicating the log handle: {e}"))?;
        let child = Command::new("influxd")
            .arg("run")
            .arg("-config")
            .arg(&config)
            .env("INFLUXDB_CONFIG_PATH", &config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("running influxd (install the Debian `influxdb` package): {e}"))?;
        let http = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("building an HTTP client: {e}"))?;
        let mut server = TestInfluxdb {
            child,
            port,
            auth: None,
            http,
            dir,
        };
        server.wait_for_ping(&log_path)?;
        if let Some((user, password)) = auth {
            // With authentication on and no user yet, InfluxDB accepts
            // exactly this statement without credentials.
            let q = format!(
                "CREATE USER {} WITH PASSWORD {} WITH ALL PRIVILEGES",
                quote_ident(&user),
                quote_string(&password)
            );
            server.try_query(None, &q)?;
            server.auth = Some((user, password));
        }
        Ok(server)
    }

    fn wait_for_ping(&mut self, log_path: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/ping", self.url());
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "influxd exited with {status} at start; log:\n{}",
                    log_tail(log_path)
                ));
            }
            if let Ok(resp) = self.http.get(&url).timeout(Duration::from_secs(2)).send() {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "influxd did not answer /ping within {START_TIMEOUT:?}; log:\n{}",
                    log_tail(log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The HTTP API's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The HTTP API's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temporary directory (config, log, data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a database. Panics on failure.
    pub fn create_database(&self, name: &str) {
        self.query(&format!("CREATE DATABASE {}", quote_ident(name)));
    }

    /// Writes line-protocol `lines` into `db` (timestamps in nanoseconds).
    /// Panics on failure.
    pub fn write_line_protocol(&self, db: &str, lines: &str) {
        let mut req = self
            .http
            .post(format!("{}/write", self.url()))
            .query(&[("db", db), ("precision", "ns")])
            .body(lines.to_string());
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("writing to InfluxDB: {e}"));
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().unwrap_or_default();
            panic!("InfluxDB refused the write ({status}): {body}");
        }
    }

    /// Runs an InfluxQL statement (as the admin user when authentication
    /// is on) and returns the JSON answer. Panics if the request fails or
    /// the answer carries an error.
    pub fn query(&self, q: &str) -> Value {
        self.try_query(self.auth.as_ref(), q)
            .unwrap_or_else(|e| panic!("InfluxDB query {q:?} failed: {e}"))
    }

    /// Runs `q` against database `db`; like [`query`](Self::query).
    pub fn query_db(&self, db: &str, q: &str) -> Value {
        self.try_query_in(self.auth.as_ref(), Some(db), q)
            .unwrap_or_else(|e| panic!("InfluxDB query {q:?} on {db:?} failed: {e}"))
    }

    fn try_query(&self, auth: Option<&(String, String)>, q: &str) -> Result<Value, String> {
        self.try_query_in(auth, None, q)
    }

    fn try_query_in(
        &self,
        auth: Option<&(String, String)>,
        db: Option<&str>,
        q: &str,
    ) -> Result<Value, String> {
        let mut form = vec![("q", q)];
        if let Some(db) = db {
            form.push(("db", db));
        }
        let mut req = self
            .http
            .post(format!("{}/query", self.url()))
            .query(&[("epoch", "ns")])
            .form(&form);
        if let Some((user, password)) = auth {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.text().map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&body)
            .map_err(|e| format!("answer ({status}) is not JSON ({e}): {body}"))?;
        if let Some(err) = value.get("error") {
            return Err(format!("{status}: {err}"));
        }
        if let Some(results) = value.get("results").and_then(Value::as_array) {
            for result in results {
                if let Some(err) = result.get("error") {
                    return Err(err.to_string());
                }
            }
        }
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        Ok(value)
    }
}

impl Drop for TestInfluxdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config file: everything under `dir`, loopback only, quiet.
fn config_text(dir: &Path, http_port: u16, rpc_port: u16, auth: bool) -> String {
    let path = |name: &str| -> String { toml_string(&dir.join(name)) };
    format!(
        r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = {meta}
  logging-enabled = false

[data]
  dir = {data}
  wal-dir = {wal}
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

[logging]
  level = "warn"
"#,
        meta = path("meta"),
        data = path("data"),
        wal = path("wal"),
    )
}

/// A TOML basic string holding `path`.
fn toml_string(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An InfluxQL quoted identifier.
fn quote_ident(name: &str) -> String {
    format!(
        "\"{}\"",
        name.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// An InfluxQL string literal.
fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The last few kilobytes of the server's log.
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let _ = file.read_to_string(&mut text);
    }
    text
}
