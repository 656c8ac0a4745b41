//! `TestServer`: runs the real `vega` binary on port 0 in a temporary data
//! directory, reads the bound addresses back from its log, waits for
//! readiness, and prints the log when the test that owns it fails.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `vega` binary built by cargo for these tests, or the one named by
/// `BENCH_VEGA_BIN` (benchmarks run against a release build that way).
pub fn vega_bin() -> String {
    std::env::var("BENCH_VEGA_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vega").to_string())
}

/// A `vega` command with no `VEGA_*` variables inherited from the caller.
pub fn vega_command() -> Command {
    let mut cmd = Command::new(vega_bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("VEGA_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// How to start a server.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Extra YAML appended to the generated config (top-level keys).
    pub extra_yaml: String,
    pub env: Vec<(String, String)>,
    pub demo: bool,
    /// An admin key installed as the bootstrap key.
    pub admin_key: Option<String>,
    /// Reuse this data directory instead of a fresh one.
    pub data_dir: Option<PathBuf>,
    /// Allowed roots for the file connector.
    pub allowed_roots: Vec<PathBuf>,
    /// Fixed loopback ports for the API and operations servers (a node
    /// restarted behind a load balancer keeps its addresses); port 0 when
    /// unset.
    pub ports: Option<(u16, u16)>,
    /// Return once the ports are open, without waiting for `/health/ready`
    /// to answer 200 (for nodes that are meant not to be ready).
    pub skip_readiness: bool,
}

pub struct TestServer {
    child: Option<Child>,
    pub api: String,
    pub ops: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub admin_key: Option<String>,
    log_offset: usize,
    _tmp: Option<tempfile::TempDir>,
    client: reqwest::blocking::Client,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let (tmp, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let tmp = tempfile::tempdir().expect("temp dir");
                let dir = tmp.path().join("data");
                (Some(tmp), dir)
            }
        };
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let config_path = data_dir.with_extension("yaml");
        let roots: Vec<String> = options
            .allowed_roots
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect();
        let (api_port, ops_port) = options.ports.unwrap_or((0, 0));
        let mut yaml = format!(
            "data_dir: \"{}\"\napi:\n  listen: 127.0.0.1:{api_port}\nops:\n  listen: 127.0.0.1:{ops_port}\nconnectors:\n  file:\n    allowed_roots: [{}]\nshutdown:\n  grace_period: 20s\nlog:\n  format: json\n  level: info\n",
            data_dir.display(),
            roots.join(", ")
        );
        if let Some(key) = &options.admin_key {
            yaml.push_str(&format!("auth:\n  bootstrap_admin_key: \"{key}\"\n"));
        }
        yaml.push_str(&options.extra_yaml);
        std::fs::write(&config_path, yaml).expect("config");

        let log_path = data_dir.with_extension("log");
        // A restarted server appends to the same log: read only what this
        // process writes.
        let log_offset = std::fs::metadata(&log_path)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut cmd = vega_command();
        cmd.arg("--config").arg(&config_path).arg("serve");
        if options.demo {
            cmd.arg("--demo");
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn vega");
        let mut server = TestServer {
            child: Some(child),
            api: String::new(),
            ops: String::new(),
            data_dir,
            log_path,
            admin_key: options.admin_key.clone(),
            log_offset,
            _tmp: tmp,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
        };
        server.wait_ready(options.demo, options.skip_readiness);
        server
    }

    fn wait_ready(&mut self, demo: bool, skip_readiness: bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = 0;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("vega exited during start-up with {status}\n{}", self.logs());
            }
            let logs = self.logs();
            for line in logs.lines() {
                // (`logs()` only holds this process's lines.)
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if v["message"] == "vega is ready" {
                    self.api =
                        format!("http://{}", v["context"]["api"].as_str().expect("api addr"));
                    self.ops =
                        format!("http://{}", v["context"]["ops"].as_str().expect("ops addr"));
                }
                if v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("demo loaded"))
                {
                    seen = 1;
                }
            }
            if !self.api.is_empty() && (!demo || seen == 1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "vega did not become ready\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if skip_readiness {
            return;
        }
        loop {
            if let Ok(r) = self.client.get(format!("{}/health/ready", self.ops)).send() {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "readiness never turned 200\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// This process's log.
    pub fn logs(&self) -> String {
        let all = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        all.get(self.log_offset..).unwrap_or("").to_string()
    }

    /// Parsed JSON log lines.
    pub fn log_lines(&self) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    fn authed(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.admin_key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// The Prometheus text of the operations port's `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.client()
            .get(format!("{}/metrics", self.ops))
            .send()
            .and_then(|r| r.text())
            .expect("reading /metrics")
    }

    /// The sum of the samples whose lines start with `prefix` (a metric
    /// name, optionally with some of its labels); 0 when there are none.
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with(prefix) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of the first sample whose line starts with `series` (a
    /// metric name, optionally with labels).
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with(series) && !l.starts_with('#'))
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    }

    pub fn get(&self, path: &str) -> Resp {
        Resp::from(
            self.authed(self.client.get(format!("{}{path}", self.api)))
                .send(),
        )
    }

    pub fn delete(&self, path: &str) -> Resp {
        Resp::from(
            self.authed(self.client.delete(format!("{}{path}", self.api)))
                .send(),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        Resp::from(
            self.authed(self.client.post(format!("{}{path}", self.api)))
                .json(body)
                .send(),
        )
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        Resp::from(
            self.authed(self.client.put(format!("{}{path}", self.api)))
                .json(body)
                .send(),
        )
    }

    pub fn post_raw(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> Resp {
        Resp::from(
            self.authed(self.client.post(format!("{}{path}", self.api)))
                .header("content-type", "application/json")
                .body(body)
                .send(),
        )
    }

    /// Posts a text body (line protocol) with optional extra headers; the
    /// admin key (if any) as a Bearer token unless `headers` carries an
    /// Authorization header of its own.
    pub fn post_text(
        &self,
        path: &str,
        body: impl Into<reqwest::blocking::Body>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut rb = self.client.post(format!("{}{path}", self.api));
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            rb = self.authed(rb);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Resp::from(rb.body(body).send())
    }

    /// Runs SQL and returns the JSON result, panicking on an error status.
    pub fn sql(&self, sql: &str) -> Value {
        let r = self.post("/api/v1/query", &serde_json::json!({ "sql": sql }));
        assert_eq!(r.status, 200, "query {sql} failed: {}", r.text);
        r.json()
    }

    /// Creates a file connection over `root` and returns its id.
    pub fn file_connection(&self, name: &str, root: &Path) -> String {
        let r = self.post(
            "/api/v1/connections",
            &serde_json::json!({ "name": name, "type": "file", "params": { "root": root } }),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_string()
    }

    /// Creates an asset and returns its id.
    pub fn asset(&self, connection: &str, ns: &str, name: &str, source: Value) -> String {
        let r = self.post(
            "/api/v1/assets",
            &serde_json::json!({ "namespace": ns, "name": name, "connection_id": connection, "source": source }),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_string()
    }

    /// Starts a sync and waits for its job to finish; returns the job.
    pub fn sync(&self, asset: &str) -> Value {
        let r = self.post(
            &format!("/api/v1/assets/{asset}/sync?mode=full"),
            &serde_json::json!({}),
        );
        assert_eq!(r.status, 202, "{}", r.text);
        self.wait_job(r.json()["id"].as_str().unwrap())
    }

    pub fn wait_job(&self, job: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let j = self.get(&format!("/api/v1/jobs/{job}")).json();
            match j["state"].as_str() {
                Some("succeeded") | Some("failed") | Some("cancelled") => return j,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "job {job} did not finish\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the process to exit (bounded) and returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("vega did not exit within {within:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process like `kill -9` and keeps the data directory.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Hands over the temp dir so a restarted server can reuse it.
    pub fn take_tmp(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let mut err = std::io::stderr();
            let _ = writeln!(
                err,
                "----- vega log ({}) -----\n{}",
                self.log_path.display(),
                self.logs()
            );
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The `error.message` of an error body.
    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

impl From<reqwest::Result<reqwest::blocking::Response>> for Resp {
    fn from(r: reqwest::Result<reqwest::blocking::Response>) -> Self {
        let r = r.expect("request failed");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().expect("body");
        Resp {
            status,
            headers,
            text,
        }
    }
}

/// A directory of source files for the file connector.
pub struct SourceDir {
    pub dir: tempfile::TempDir,
}

impl SourceDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("canonical")
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let mut f = File::create(&path).expect("create");
        f.write_all(content.as_bytes()).expect("write");
        f.sync_all().expect("sync");
        path
    }
}

/// Starts a server whose file connector may read `src`.
pub fn server_over(src: &SourceDir) -> TestServer {
    TestServer::start_with(Options {
        allowed_roots: vec![src.path()],
        ..Options::default()
    })
}
