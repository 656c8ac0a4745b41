//! [`TestHaproxy`]: a real HAProxy (Debian package `haproxy`) on a given
//! configuration, in a temporary directory, killed when dropped. Tests
//! that need it fail — never skip — when it is not installed
//! (`scripts/test` installs it); `VEGA_TEST_HAPROXY` may name another
//! binary.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long HAProxy may take to accept connections after start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The `haproxy` binary, or a panic naming the package to install.
pub fn haproxy_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("VEGA_TEST_HAPROXY") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "VEGA_TEST_HAPROXY={} is not a file; unset it to use the Debian package `haproxy`",
            path.display()
        );
        return path;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the `haproxy` binary is not installed (looked in PATH and /usr/sbin): \
                 install the Debian package `haproxy` (apt-get install -y haproxy); \
                 scripts/test installs it"
            )
        })
}

/// `haproxy -c -f <file>` on `config`: whether it passed, and its output.
pub fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, config).expect("writing haproxy.cfg");
    let out = Command::new(haproxy_bin())
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("running haproxy -c");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A running HAProxy.
pub struct TestHaproxy {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestHaproxy {
    /// Starts HAProxy in the foreground on `config`, waiting (bounded) until
    /// `frontend` accepts connections. `Err` with the log if it exits.
    pub fn start(config: &str, frontend: SocketAddr) -> Result<TestHaproxy, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).expect("writing haproxy.cfg");
        let log = dir.path().join("haproxy.log");
        let out = std::fs::File::create(&log).expect("creating the log file");
        let err = out.try_clone().expect("cloning the log file");
        let child = Command::new(haproxy_bin())
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting haproxy");
        let mut proxy = TestHaproxy {
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                return Err(format!("haproxy exited ({status}):\n{}", proxy.log_text()));
            }
            if TcpStream::connect_timeout(&frontend, Duration::from_millis(200)).is_ok() {
                return Ok(proxy);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "haproxy did not accept connections on {frontend} within {START_TIMEOUT:?}:\n{}",
                    proxy.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What HAProxy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestHaproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- haproxy log:\n{}", self.log_text());
        }
    }
}
