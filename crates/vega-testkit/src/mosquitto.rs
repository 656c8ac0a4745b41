//! A throwaway Mosquitto MQTT broker for tests.
//!
//! [`TestMosquitto::start`] writes a config file into a fresh temporary
//! directory and runs `mosquitto -c <config>` (from the Debian `mosquitto`
//! package) listening on 127.0.0.1 only, on a free port, with persistence
//! on (the database lives in the same directory), no limit on queued
//! messages per client, and anonymous clients allowed. It waits, bounded,
//! until the port accepts connections.
//!
//! Variants, through [`TestMosquitto::builder`] or the shortcuts:
//! - [`TestMosquitto::start_with_password`]: anonymous clients refused, one
//!   user in a password file (made with `mosquitto_passwd` when installed,
//!   otherwise written directly in Mosquitto's salted SHA-512 format with
//!   the `openssl` command);
//! - [`TestMosquitto::start_with_tls`]: the listener speaks TLS only, with a
//!   throwaway CA and a server certificate for `localhost` and `127.0.0.1`
//!   made with the `openssl` command ([`TestMosquitto::ca_file`] is the CA
//!   to trust); [`MosquittoBuilder::require_client_cert`] also makes a
//!   client certificate and refuses clients without one;
//! - [`MosquittoBuilder::max_inflight_messages`] and
//!   [`MosquittoBuilder::port`] (e.g. a port chosen before the broker runs,
//!   to test clients that start first).
//!
//! [`TestMosquitto::stop`] ends the broker gracefully (it saves its
//! persistence database), [`TestMosquitto::kill`] ends it abruptly, and
//! [`TestMosquitto::restart`] starts it again on the same port with the
//! same directory, so broker restarts and persistent sessions can be tested.
//!
//! Mosquitto started as root switches to the `mosquitto` user unless told
//! otherwise; the config says `user root` in that case so the broker can
//! use the temporary directory. The broker's log is printed when starting
//! fails and when the test owning the broker panics. The broker is killed
//! when the value is dropped. Failures to start panic: this is test code.

use crate::logs::log_tail;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;

/// How long to wait for the port to accept connections after starting.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with fresh ports when the broker exits at start (a port taken
/// between choosing it and binding it).
const START_ATTEMPTS: usize = 3;
/// Mosquitto's own default for in-flight messages per client.
const DEFAULT_MAX_INFLIGHT: u32 = 20;

/// Options of a [`TestMosquitto`]; see the module documentation.
#[derive(Debug, Clone)]
pub struct MosquittoBuilder {
    port: Option<u16>,
    max_inflight_messages: u32,
    password: Option<(String, String)>,
    tls: bool,
    require_client_cert: bool,
}

impl Default for MosquittoBuilder {
    fn default() -> Self {
        MosquittoBuilder {
            port: None,
            max_inflight_messages: DEFAULT_MAX_INFLIGHT,
            password: None,
            tls: false,
            require_client_cert: false,
        }
    }
}

impl MosquittoBuilder {
    /// Listens on `port` instead of a free port chosen at start.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The broker's `max_inflight_messages`: outgoing QoS 1 and 2 messages
    /// per client not yet acknowledged (0 = no limit; default 20).
    pub fn max_inflight_messages(mut self, count: u32) -> Self {
        self.max_inflight_messages = count;
        self
    }

    /// Refuses anonymous clients and accepts `user` / `password`.
    pub fn password(mut self, user: &str, password: &str) -> Self {
        self.password = Some((user.to_string(), password.to_string()));
        self
    }

    /// Makes the listener speak TLS (see [`TestMosquitto::ca_file`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Makes the listener speak TLS and refuse clients without a
    /// certificate signed by the test CA (see
    /// [`TestMosquitto::client_cert_file`]).
    pub fn require_client_cert(mut self) -> Self {
        self.tls = true;
        self.require_client_cert = true;
        self
    }

    /// Writes the config and starts the broker. Panics with the broker's
    /// log if it does not come up in time.
    pub fn start(self) -> TestMosquitto {
        let dir = tempfile::Builder::new()
            .prefix("vega-mosquitto-")
            .tempdir()
            .expect("creating a temporary directory for Mosquitto");
        fs::create_dir(dir.path().join("data")).expect("creating the persistence directory");
        if let Some((user, password)) = &self.password {
            write_password_file(&dir.path().join("passwords"), user, password)
                .unwrap_or_else(|e| panic!("making the Mosquitto password file: {e}"));
        }
        if self.tls {
            make_certificates(dir.path(), self.require_client_cert)
                .unwrap_or_else(|e| panic!("making test certificates: {e}"));
        }
        let mut broker = TestMosquitto {
            dir,
            port: 0,
            child: None,
            options: self,
        };
        let mut last_error = String::new();
        let attempts = if broker.options.port.is_some() {
            1
        } else {
            START_ATTEMPTS
        };
        for _ in 0..attempts {
            broker.port = broker.options.port.unwrap_or_else(free_port);
            match broker.try_start() {
                Ok(()) => return broker,
                Err(e) => last_error = e,
            }
        }
        panic!("mosquitto did not start: {last_error}");
    }
}

/// A running `mosquitto` in a temporary directory; killed on drop.
pub struct TestMosquitto {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    options: MosquittoBuilder,
}

impl std::fmt::Debug for TestMosquitto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestMosquitto")
            .field("port", &self.port)
            .field("tls", &self.options.tls)
            .field("user", &self.options.password.as_ref().map(|(u, _)| u))
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl TestMosquitto {
    /// Options for a broker; finish with [`MosquittoBuilder::start`].
    pub fn builder() -> MosquittoBuilder {
        MosquittoBuilder::default()
    }

    /// Starts a broker with anonymous access on a free port.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Starts a broker that only accepts `user` / `password`.
    pub fn start_with_password(user: &str, password: &str) -> Self {
        Self::builder().password(user, password).start()
    }

    /// Starts a broker whose listener speaks TLS only, with a certificate
    /// for `localhost` and `127.0.0.1` signed by [`ca_file`](Self::ca_file).
    pub fn start_with_tls() -> Self {
        Self::builder().tls().start()
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The listener's port (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory (config, log, persistence, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PEM file of the CA that signed the server certificate. Panics
    /// when TLS is off.
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.options.tls, "this test broker does not use TLS");
        self.dir.path().join("ca.crt")
    }

    /// A client certificate (PEM) signed by the test CA. Panics unless the
    /// broker was built with [`MosquittoBuilder::require_client_cert`].
    pub fn client_cert_file(&self) -> PathBuf {
        assert!(
            self.options.require_client_cert,
            "this test broker has no client certificate"
        );
        self.dir.path().join("client.crt")
    }

    /// The private key (PEM) of [`client_cert_file`](Self::client_cert_file).
    pub fn client_key_file(&self) -> PathBuf {
        assert!(
            self.options.require_client_cert,
            "this test broker has no client certificate"
        );
        self.dir.path().join("client.key")
    }

    /// The user and password, when password authentication is on.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.options
            .password
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Whether the broker process is running (started and not stopped).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the broker gracefully (SIGTERM; it saves its persistence
    /// database first), waiting for it to exit, killing it after a bound.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Kills the broker at once (SIGKILL): what it has not saved to its
    /// persistence database is lost, like in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker if it runs and starts it again on the same port
    /// with the same directory (sessions and queued messages persist when
    /// it was stopped gracefully). Panics with the log if it does not come
    /// up in time.
    pub fn restart(&mut self) {
        self.stop();
        // The port was just released; another process could take it, but
        // on loopback in a test run that is unlikely enough.
        if let Err(e) = self.try_start() {
            panic!("mosquitto did not restart on port {}: {e}", self.port);
        }
    }

    /// The broker's log so far (all runs).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn try_start(&mut self) -> Result<(), String> {
        let config = self.dir.path().join("mosquitto.conf");
        fs::write(&config, self.config_text())
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("opening the log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("duplicating the log handle: {e}"))?;
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| {
                format!("running mosquitto (install the Debian `mosquitto` package): {e}")
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => return Err("not started".into()),
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "mosquitto exited with {status} at start; log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], self.port).into(),
                Duration::from_secs(1),
            )
            .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "mosquitto did not accept connections within {START_TIMEOUT:?}; log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn config_text(&self) -> String {
        let dir = self.dir.path();
        let o = &self.options;
        let mut text = String::new();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            text.push_str("user root\n");
        }
        text.push_str(&format!(
            "per_listener_settings false\n\
             allow_anonymous {}\n\
             persistence true\n\
             persistence_location {}/\n\
             persistence_file mosquitto.db\n\
             max_queued_messages 0\n\
             max_inflight_messages {}\n\
             log_dest stderr\n\
             log_type all\n\
             connection_messages true\n",
            o.password.is_none(),
            dir.join("data").display(),
            o.max_inflight_messages,
        ));
        if o.password.is_some() {
            text.push_str(&format!(
                "password_file {}\n",
                dir.join("passwords").display()
            ));
        }
        text.push_str(&format!("listener {} 127.0.0.1\n", self.port));
        if o.tls {
            text.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                dir.join("ca.crt").display(),
                dir.join("server.crt").display(),
                dir.join("server.key").display(),
                o.require_client_cert,
            ));
        }
        text
    }
}

impl Drop for TestMosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- mosquitto log (port {}):\n{}",
                self.port,
                log_tail(&self.log_path())
            );
        }
        self.kill();
    }
}

/// `mosquitto` from the PATH, else Debian's location (`/usr/sbin` is not
/// always on a non-root PATH).
fn mosquitto_bin() -> PathBuf {
    let sbin = Path::new("/usr/sbin/mosquitto");
    if find_on_path("mosquitto").is_none() && sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("mosquitto")
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Writes a password file with one user: through `mosquitto_passwd` when
/// it is installed, otherwise in Mosquitto's `$6$` format directly.
fn write_password_file(path: &Path, user: &str, password: &str) -> Result<(), String> {
    if find_on_path("mosquitto_passwd").is_some() {
        let out = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(path)
            .args([user, password])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running mosquitto_passwd: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        return Err(format!(
            "mosquitto_passwd failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = sha512_password_line(user, password)?;
    fs::write(path, line).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A password file line in Mosquitto's salted SHA-512 format:
/// `user:$6$<base64 salt>$<base64 sha512(password ++ salt)>`.
fn sha512_password_line(user: &str, password: &str) -> Result<String, String> {
    let mut salt = [0u8; 12];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| format!("reading random bytes: {e}"))?;
    let mut input = password.as_bytes().to_vec();
    input.extend_from_slice(&salt);
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha512", "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running openssl: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("openssl has no stdin")?
        .write_all(&input)
        .map_err(|e| format!("writing to openssl: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for openssl: {e}"))?;
    if !out.status.success() || out.stdout.len() != 64 {
        return Err(format!(
            "openssl dgst failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(format!(
        "{user}:$6${}${}\n",
        base64(&salt),
        base64(&out.stdout)
    ))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Makes `ca.crt`/`ca.key`, `server.crt`/`server.key` (for `localhost` and
/// `127.0.0.1`) and, when asked, `client.crt`/`client.key` in `dir`, with
/// P-256 keys.
fn make_certificates(dir: &Path, client: bool) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Vega test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    )?;
    issue(
        dir,
        "server",
        "localhost",
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )?;
    if client {
        issue(
            dir,
            "client",
            "vega-test-client",
            "extendedKeyUsage=clientAuth\n",
        )?;
    }
    Ok(())
}

/// Issues `<name>.crt` / `<name>.key` signed by the CA in `dir`.
fn issue(dir: &Path, name: &str, common_name: &str, extensions: &str) -> Result<(), String> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let ext = format!("{name}.ext");
    let subject = format!("/CN={common_name}");
    fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"
        ),
    )
    .map_err(|e| format!("writing {ext}: {e}"))?;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &subject,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    )?;
    let serial = format!("{}", std::process::id() as u64 * 1000 + name.len() as u64);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    )
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends an MQTT 3.1.1 CONNECT with `login` and returns the CONNACK's
    /// return code.
    fn connect_code(port: u16, login: Option<(&str, &str)>) -> u8 {
        let mut body = Vec::new();
        body.extend_from_slice(&[0, 4]);
        body.extend_from_slice(b"MQTT");
        body.push(4);
        let flags = match login {
            Some(_) => 0b1100_0010,
            None => 0b0000_0010,
        };
        body.push(flags);
        body.extend_from_slice(&[0, 30]);
        let mut push_str = |s: &str| {
            body.extend_from_slice(&(s.len() as u16).to_be_bytes());
            body.extend_from_slice(s.as_bytes());
        };
        push_str("testkit-probe");
        if let Some((user, password)) = login {
            push_str(user);
            push_str(password);
        }
        assert!(body.len() < 128);
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend_from_slice(&body);
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(&packet).unwrap();
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).unwrap();
        assert_eq!(connack[0], 0x20, "not a CONNACK: {connack:?}");
        connack[3]
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn anonymous_broker_accepts_connections_and_restarts_on_its_port() {
        let mut broker = TestMosquitto::start();
        assert_eq!(connect_code(broker.port(), None), 0);
        let port = broker.port();
        broker.restart();
        assert_eq!(broker.port(), port);
        assert_eq!(connect_code(broker.port(), None), 0);
        broker.stop();
        assert!(!broker.is_running());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn sha512_password_lines_are_accepted_by_mosquitto() {
        let mut broker = TestMosquitto::start_with_password("alice", "s3cret");
        // Replace the file made by the harness with the fallback format.
        let line = sha512_password_line("alice", "s3cret").unwrap();
        fs::write(broker.dir().join("passwords"), line).unwrap();
        broker.restart();
        assert_eq!(connect_code(broker.port(), Some(("alice", "s3cret"))), 0);
        assert_eq!(connect_code(broker.port(), Some(("alice", "wrong"))), 5);
        assert_eq!(connect_code(broker.port(), None), 5);
    }
}
