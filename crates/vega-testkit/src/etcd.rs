//! A throwaway single-member etcd for tests.
//!
//! [`TestEtcd::start`] runs `etcd` (from the Debian `etcd-server` package,
//! version 3.4 or later) with its data directory in a fresh temporary
//! directory, the client API on one free loopback port and the peer API on
//! another, as a one-member cluster, and waits, bounded, until `GET /health`
//! answers. [`TestEtcd::endpoint`] is the client URL; etcd 3.4 serves its v3
//! JSON gateway under `/v3/` there. [`TestEtcd::keys`] reads keys back
//! through the same gateway, so tests can look at what a client stored.
//!
//! The server's log (in the temporary directory) is printed when starting
//! fails and when the test owning the server panics. The server is killed
//! when the value is dropped, or earlier by [`TestEtcd::kill`] to test a
//! backend that goes away. Failures to start panic: this is test code.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::logs::log_tail;
use serde_json::{json, Value};

use crate::ports::free_port;

/// How long to wait for `/health` after starting `etcd` (it fsyncs its
/// first WAL entries before serving, which is slow on a busy disk).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of every request the harness makes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with fresh ports when `etcd` exits at start (a port taken
/// between choosing it and binding it).
const START_ATTEMPTS: usize = 3;
/// The member name; only used inside the one-member cluster.
const MEMBER_NAME: &str = "vega-test";

/// A running `etcd` in a temporary directory; killed on drop.
pub struct TestEtcd {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    http: reqwest::blocking::Client,
    // Dropped after the child is killed (`Drop` runs before the fields).
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEtcd")
            .field("endpoint", &self.endpoint())
            .field("peer_port", &self.peer_port)
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl TestEtcd {
    /// Starts a one-member cluster on free loopback ports. Panics (with the
    /// server's log) if it does not come up in time.
    pub fn start() -> Self {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start() {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// The temporary directory (data directory and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server at once (SIGKILL), as in a crash; the value stays
    /// usable for reading the log.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The keys (as text) under `prefix` with their values (as text), in
    /// key order, read through the v3 JSON gateway. Panics on failure.
    pub fn keys(&self, prefix: &str) -> Vec<(String, String)> {
        let body = json!({
            "key": base64_encode(prefix.as_bytes()),
            "range_end": base64_encode(&prefix_end(prefix.as_bytes())),
        });
        let answer: Value = self
            .http
            .post(format!("{}/v3/kv/range", self.endpoint()))
            .json(&body)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("reading keys under {prefix:?} from etcd: {e}"));
        let text = |v: &Value| {
            let bytes = base64_decode(v.as_str().unwrap_or_default())
                .unwrap_or_else(|| panic!("etcd answered bad base64: {answer}"));
            String::from_utf8_lossy(&bytes).into_owned()
        };
        answer["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| (text(&kv["key"]), text(&kv["value"])))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        log_tail(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("vega-etcd-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?;
        let client_port = free_port();
        let mut peer_port = free_port();
        while peer_port == client_port {
            peer_port = free_port();
        }
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path().join("etcd.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("creating the log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("duplicating the log handle: {e}"))?;
        let child = Command::new("etcd")
            .arg("--name")
            .arg(MEMBER_NAME)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{MEMBER_NAME}={peer_url}"))
            .arg("--initial-cluster-state")
            .arg("new")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("running etcd (install the Debian `etcd-server` package): {e}"))?;
        let http = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("building an HTTP client: {e}"))?;
        let mut server = TestEtcd {
            child: Some(child),
            client_port,
            peer_port,
            http,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/health", self.endpoint());
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => return Err("not started".into()),
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "etcd exited with {status} at start; log:\n{}",
                    self.log()
                ));
            }
            let healthy = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["health"] == "true");
            if healthy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "etcd did not answer /health within {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- etcd log ({}):\n{}", self.endpoint(), self.log());
        }
        self.kill();
    }
}

/// The smallest key after every key that starts with `prefix` (etcd's
/// `range_end` for a prefix): the prefix with its last byte below 0xff
/// incremented and what follows dropped; `\0` (all keys) when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Standard base64 with padding, as etcd's gateway wants `bytes` fields.
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64 (padding optional); `None` when malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::{alphabet, Engine as _};
    const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    STANDARD_ANY_PADDING.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\x00\xfe"] {
            assert_eq!(base64_decode(&base64_encode(input)).unwrap(), input);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_decode("Zm8"), Some(b"fo".to_vec()));
        assert_eq!(base64_decode("Zm$v"), None);
    }

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn serves_the_v3_gateway_and_stops_on_kill() {
        let mut etcd = TestEtcd::start();
        let put = reqwest::blocking::Client::new()
            .post(format!("{}/v3/kv/put", etcd.endpoint()))
            .json(&json!({"key": base64_encode(b"t/a"), "value": base64_encode(b"1")}))
            .send()
            .unwrap();
        assert!(put.status().is_success(), "{}", put.status());
        assert_eq!(etcd.keys("t/"), vec![("t/a".to_string(), "1".to_string())]);
        let port = etcd.port();
        etcd.kill();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
