//! [`TestS3`]: an S3-compatible server (moto's server mode, from PyPI) on
//! a free loopback port, with one bucket, stopped on drop. Tests that need
//! it fail — never skip — when it is not installed; `scripts/test` installs
//! it (`pip install 'moto[server]'`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestS3 {
    child: Child,
    port: u16,
    bucket: String,
    _dir: tempfile::TempDir,
}

impl TestS3 {
    /// Starts the server and creates the bucket `vega-test`.
    pub fn start() -> TestS3 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("s3.log")).expect("log file");
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting python3 -m moto.server");
        let mut s3 = TestS3 {
            child,
            port,
            bucket: "vega-test".into(),
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s3.child.try_wait() {
                panic!(
                    "the S3 test server exited ({status}): install it with pip install 'moto[server]' (scripts/test does)\n{}",
                    s3.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the S3 test server did not start\n{}",
                s3.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = reqwest::blocking::Client::new()
            .put(format!("{}/{}", s3.endpoint(), s3.bucket))
            .send()
            .expect("creating the bucket");
        assert!(
            r.status().is_success(),
            "creating the bucket: {}",
            r.status()
        );
        s3
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Any key works with this server.
    pub fn access_key_id(&self) -> &str {
        "vega-test-key"
    }

    pub fn secret_access_key(&self) -> &str {
        "vega-test-secret"
    }

    /// The objects under `prefix`, by name.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let text = reqwest::blocking::Client::new()
            .get(format!(
                "{}/{}?list-type=2&prefix={prefix}",
                self.endpoint(),
                self.bucket
            ))
            .send()
            .and_then(|r| r.text())
            .expect("listing the bucket");
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("s3.log")).unwrap_or_default()
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
